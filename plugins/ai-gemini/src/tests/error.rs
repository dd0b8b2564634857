use crate::error::translate;

#[test]
fn gemini_errors_keep_their_status_and_message() {
    let cases: [(u16, &[u8], u16, &str, &str); 8] = [
        (
            400,
            include_bytes!("../../fixtures/error_400.json"),
            400,
            "invalid_request_error",
            "contents is not specified",
        ),
        (
            400,
            include_bytes!("../../fixtures/error_api_key_invalid.json"),
            401,
            "authentication_error",
            "API key not valid",
        ),
        (
            403,
            include_bytes!("../../fixtures/error_403.json"),
            403,
            "permission_error",
            "unregistered callers",
        ),
        (
            404,
            include_bytes!("../../fixtures/error_404.json"),
            404,
            "invalid_request_error",
            "is not found",
        ),
        (
            429,
            include_bytes!("../../fixtures/error_429.json"),
            429,
            "rate_limit_error",
            "exceeded your current quota",
        ),
        (
            500,
            include_bytes!("../../fixtures/error_500.json"),
            500,
            "api_error",
            "internal error",
        ),
        (
            503,
            include_bytes!("../../fixtures/error_503.json"),
            503,
            "api_error",
            "overloaded",
        ),
        (
            504,
            include_bytes!("../../fixtures/error_504.json"),
            504,
            "api_error",
            "Deadline expired",
        ),
    ];
    for (status, body, client_status, kind, text) in cases {
        let error = translate(status, body);
        assert_eq!(error.status, client_status, "{error:?}");
        assert_eq!(error.kind, kind, "{error:?}");
        assert!(error.message.starts_with("Gemini: "), "{error:?}");
        assert!(error.message.contains(text), "{error:?}");
    }
    assert_eq!(
        translate(429, include_bytes!("../../fixtures/error_429.json"))
            .code
            .as_deref(),
        Some("resource_exhausted")
    );
    assert_eq!(
        translate(400, include_bytes!("../../fixtures/error_api_key_invalid.json"))
            .code
            .as_deref(),
        Some("invalid_api_key")
    );
}

#[test]
fn an_error_wrapped_in_a_json_array_is_read() {
    let body = format!("[{}]", include_str!("../../fixtures/error_500.json"));
    let error = translate(500, body.as_bytes());
    assert!(error.message.contains("internal error"), "{error:?}");
}

#[test]
fn a_non_json_error_body_is_quoted_and_cut() {
    let error = translate(502, b"<html><body>Bad Gateway</body></html>");
    assert_eq!(error.status, 502);
    assert!(error.message.contains("Bad Gateway"), "{error:?}");
    let long = "é".repeat(5000);
    let error = translate(500, long.as_bytes());
    assert!(error.message.chars().count() < 400, "{}", error.message.len());
    assert!(error.message.ends_with('…'));
    assert!(translate(503, b"").message.contains("empty body"));
}
