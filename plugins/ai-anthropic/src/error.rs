//! Anthropic errors → OpenAI errors.
//!
//! Anthropic answers `{"type": "error", "error": {"type", "message"}}`
//! with 400 `invalid_request_error`, 401 `authentication_error`, 403
//! `permission_error`, 404 `not_found_error`, 413 `request_too_large`, 429
//! `rate_limit_error`, 500 `api_error` or 529 `overloaded_error`; the same
//! object can arrive as an `error` event mid-stream. The client keeps the
//! status, except 529, which has no OpenAI equivalent and becomes 503.
//! Anthropic's error type is kept as the error's `code`.

use serde::Deserialize;
use weir_sdk::ai::ApiError;

/// How much of a body that is not an Anthropic error goes in the message.
const MAX_BODY_IN_MESSAGE: usize = 512;

/// An Anthropic error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

/// The `error` object of an error body or event.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `overloaded_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong.
    #[serde(default)]
    pub message: String,
}

/// The status Anthropic sends with an error type, for errors that arrive
/// without one (in a stream).
fn status_of(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// The status the client gets for Anthropic's `status`.
fn client_status(status: u16) -> u16 {
    match status {
        529 => 503,
        other => other,
    }
}

/// Map an unsuccessful response (status 400 and up).
pub fn translate(status: u16, body: &[u8]) -> ApiError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => from_detail(client_status(status), &error),
        Err(_) => ApiError::for_status(client_status(status), &unexpected_body(status, body)),
    }
}

/// Map an `error` event of a stream.
pub fn from_event(error: &ErrorDetail) -> ApiError {
    from_detail(client_status(status_of(&error.kind)), error)
}

fn from_detail(status: u16, error: &ErrorDetail) -> ApiError {
    let message = if error.message.is_empty() {
        format!("Anthropic: {}", error.kind)
    } else {
        format!("Anthropic: {}", error.message)
    };
    ApiError {
        code: Some(error.kind.clone()),
        ..ApiError::for_status(status, &message)
    }
}

/// A message for a body that is not an Anthropic error (a proxy's HTML
/// page, say), with the start of the body.
fn unexpected_body(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("Anthropic answered HTTP {status} with an empty body");
    }
    match text.char_indices().nth(MAX_BODY_IN_MESSAGE) {
        Some((cut, _)) => format!("Anthropic answered HTTP {status}: {}…", &text[..cut]),
        None => format!("Anthropic answered HTTP {status}: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_anthropic_error_keeps_its_status_and_message() {
        for (status, fixture, kind, code, message) in [
            (
                400,
                include_str!("../fixtures/error_400.json"),
                "invalid_request_error",
                "invalid_request_error",
                "Anthropic: max_tokens: Field required",
            ),
            (
                401,
                include_str!("../fixtures/error_401.json"),
                "authentication_error",
                "authentication_error",
                "Anthropic: invalid x-api-key",
            ),
            (
                429,
                include_str!("../fixtures/error_429.json"),
                "rate_limit_error",
                "rate_limit_error",
                "Anthropic: Number of request tokens has exceeded your per-minute rate limit",
            ),
            (
                500,
                include_str!("../fixtures/error_500.json"),
                "api_error",
                "api_error",
                "Anthropic: Internal server error",
            ),
        ] {
            let error = translate(status, fixture.as_bytes());
            assert_eq!(error.status, status);
            assert_eq!(error.kind, kind);
            assert_eq!(error.code.as_deref(), Some(code));
            assert_eq!(error.message, message);
        }
    }

    #[test]
    fn other_documented_statuses_map_to_their_openai_kinds() {
        let body = |kind: &str| format!(r#"{{"type": "error", "error": {{"type": "{kind}", "message": "m"}}}}"#);
        for (status, kind, openai_kind) in [
            (403, "permission_error", "permission_error"),
            (404, "not_found_error", "invalid_request_error"),
            (413, "request_too_large", "invalid_request_error"),
        ] {
            let error = translate(status, body(kind).as_bytes());
            assert_eq!((error.status, error.kind.as_str()), (status, openai_kind));
        }
    }

    #[test]
    fn overloaded_529_becomes_503() {
        let error = translate(529, include_bytes!("../fixtures/error_529.json"));
        assert_eq!(error.status, 503);
        assert_eq!(error.kind, "api_error");
        assert_eq!(error.code.as_deref(), Some("overloaded_error"));
        assert_eq!(error.message, "Anthropic: Overloaded");
    }

    #[test]
    fn a_body_that_is_not_an_anthropic_error_still_explains() {
        let error = translate(413, b"<html><body>413 Request Entity Too Large</body></html>");
        assert_eq!(error.status, 413);
        assert!(
            error.message.contains("413 Request Entity Too Large"),
            "{}",
            error.message
        );
        let error = translate(502, b"");
        assert_eq!(error.status, 502);
        assert!(error.message.contains("empty body"));
        let long = "é".repeat(2000);
        let error = translate(500, long.as_bytes());
        assert!(error.message.chars().count() < 600, "{}", error.message.len());
    }

    #[test]
    fn a_stream_error_event_gets_the_status_of_its_type() {
        let detail = |kind: &str| ErrorDetail {
            kind: kind.into(),
            message: "m".into(),
        };
        assert_eq!(from_event(&detail("overloaded_error")).status, 503);
        assert_eq!(from_event(&detail("rate_limit_error")).status, 429);
        assert_eq!(from_event(&detail("api_error")).status, 500);
        assert_eq!(from_event(&detail("something_new")).status, 500);
    }
}
