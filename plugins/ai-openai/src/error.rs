//! OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`,
//! read into the gateway's error with the same fields.

use serde_json::Value;
use weir_sdk::ai::{ApiError, body_excerpt};

/// The client's error for the provider's error response.
///
/// The status stays the provider's: OpenAI-compatible statuses mean the
/// same to the client. Besides OpenAI's shape this reads Azure's (`code`
/// holding the status as a string, `type` absent) and the flat
/// `{"object": "error", "message", "type", "code"}` of older vLLM.
pub fn from_response(provider: &str, status: u16, body: &[u8]) -> ApiError {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => from_value(provider, status, &value).unwrap_or_else(|| unreadable(provider, status, body)),
        Err(_) => unreadable(provider, status, body),
    }
}

/// The error a JSON value describes, if it is an error object.
pub fn from_value(provider: &str, status: u16, value: &Value) -> Option<ApiError> {
    let without_message = || format!("{provider} answered {status} without a message");
    let error = match value.get("error") {
        Some(Value::String(message)) if !message.is_empty() => return Some(ApiError::for_status(status, message)),
        Some(Value::String(_)) => return Some(ApiError::for_status(status, &without_message())),
        Some(error @ Value::Object(_)) => error,
        _ if value.get("object").and_then(Value::as_str) == Some("error") => value,
        _ => return None,
    };
    let message = match error.get("message").and_then(Value::as_str) {
        Some(message) if !message.is_empty() => message.to_string(),
        _ => without_message(),
    };
    let mut api_error = ApiError::for_status(status, &message);
    if let Some(kind) = error.get("type").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        api_error.kind = kind.to_string();
    }
    api_error.param = error.get("param").and_then(Value::as_str).map(str::to_string);
    api_error.code = match error.get("code") {
        Some(Value::String(code)) => Some(code.clone()),
        Some(Value::Number(code)) => Some(code.to_string()),
        _ => None,
    };
    Some(api_error)
}

fn unreadable(provider: &str, status: u16, body: &[u8]) -> ApiError {
    ApiError::for_status(status, &format!("{provider} answered {status}: {}", body_excerpt(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(error: &ApiError) -> (u16, &str, &str, Option<&str>, Option<&str>) {
        (
            error.status,
            error.kind.as_str(),
            error.message.as_str(),
            error.param.as_deref(),
            error.code.as_deref(),
        )
    }

    #[test]
    fn openai_errors_keep_their_fields_and_status() {
        let error = from_response("OpenAI", 400, include_bytes!("../fixtures/error_400.json"));
        assert_eq!(
            fields(&error),
            (
                400,
                "invalid_request_error",
                "This model's maximum context length is 128000 tokens. However, your messages resulted in 130412 tokens. Please reduce the length of the messages.",
                Some("messages"),
                Some("context_length_exceeded")
            )
        );
        let error = from_response("OpenAI", 401, include_bytes!("../fixtures/error_401.json"));
        assert_eq!((error.status, error.kind.as_str()), (401, "invalid_request_error"));
        assert_eq!(error.code.as_deref(), Some("invalid_api_key"));
        assert!(error.message.starts_with("Incorrect API key provided"));
        let error = from_response("OpenAI", 404, include_bytes!("../fixtures/error_404.json"));
        assert_eq!((error.status, error.code.as_deref()), (404, Some("model_not_found")));
        let error = from_response("OpenAI", 429, include_bytes!("../fixtures/error_429.json"));
        assert_eq!(
            (error.status, error.kind.as_str(), error.code.as_deref()),
            (429, "requests", Some("rate_limit_exceeded"))
        );
        let error = from_response("OpenAI", 500, include_bytes!("../fixtures/error_500.json"));
        assert_eq!(
            fields(&error),
            (
                500,
                "server_error",
                "The server had an error while processing your request. Sorry about that!",
                None,
                None
            )
        );
    }

    #[test]
    fn azure_errors_without_a_type_get_one_from_the_status() {
        let error = from_response("Azure OpenAI", 401, include_bytes!("../fixtures/error_azure_401.json"));
        assert_eq!((error.status, error.kind.as_str()), (401, "authentication_error"));
        assert_eq!(error.code.as_deref(), Some("401"));
        assert!(
            error
                .message
                .starts_with("Access denied due to invalid subscription key")
        );
        let error = from_response(
            "Azure OpenAI",
            400,
            include_bytes!("../fixtures/error_azure_content_filter.json"),
        );
        assert_eq!(
            (
                error.status,
                error.kind.as_str(),
                error.param.as_deref(),
                error.code.as_deref()
            ),
            (400, "invalid_request_error", Some("prompt"), Some("content_filter"))
        );
    }

    #[test]
    fn an_empty_error_string_still_gives_a_message() {
        let error = from_response("OpenAI", 502, br#"{"error": ""}"#);
        assert_eq!(error.message, "OpenAI answered 502 without a message");
        let error = from_response("OpenAI", 429, br#"{"error": "slow down"}"#);
        assert_eq!((error.status, error.message.as_str()), (429, "slow down"));
    }

    #[test]
    fn other_error_shapes_still_give_a_message() {
        let error = from_response(
            "OpenAI",
            400,
            br#"{"object": "error", "message": "top_k must be positive", "type": "BadRequestError", "param": null, "code": 400}"#,
        );
        assert_eq!(
            fields(&error),
            (400, "BadRequestError", "top_k must be positive", None, Some("400"))
        );
        let error = from_response("OpenAI", 502, b"<html><body>502 Bad Gateway</body></html>");
        assert_eq!((error.status, error.kind.as_str()), (502, "api_error"));
        assert_eq!(
            error.message,
            "OpenAI answered 502: <html><body>502 Bad Gateway</body></html>"
        );
        let error = from_response("OpenAI", 503, br#"{"detail": "overloaded"}"#);
        assert!(error.message.contains(r#"{"detail": "overloaded"}"#));
        let long = "x".repeat(5000);
        assert!(from_response("OpenAI", 500, long.as_bytes()).message.len() < 1000);
    }
}
