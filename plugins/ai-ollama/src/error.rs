//! Ollama's error body, `{"error": "message"}`, as an OpenAI error.

use serde_json::Value;
use weir_sdk::ai::{ApiError, body_excerpt};

/// The client's error for Ollama's error response. The status stays
/// Ollama's: 400 (a bad request, a model that does not support tools),
/// 404 (model not pulled), 500 (the runner failed), 503 (queue full).
pub fn from_response(status: u16, body: &[u8]) -> ApiError {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| from_value(status, &value))
        .unwrap_or_else(|| {
            // A plain-text answer, such as the router's "404 page not
            // found" for a wrong path, or a proxy's page.
            ApiError::for_status(status, &format!("Ollama answered {status}: {}", body_excerpt(body)))
        })
}

/// The error an `{"error": "..."}` object describes, if it is one.
pub fn from_value(status: u16, value: &Value) -> Option<ApiError> {
    let message = match value.get("error")? {
        Value::String(message) => message.clone(),
        other => other.to_string(),
    };
    let mut error = ApiError::for_status(status, &format!("Ollama: {message}"));
    if status == 404 {
        error.code = Some("model_not_found".into());
    }
    Some(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_errors_keep_message_and_status() {
        for (status, body, kind, message) in [
            (
                400,
                &include_bytes!("../fixtures/error_400.json")[..],
                "invalid_request_error",
                "Ollama: registry.ollama.ai/library/gemma2:latest does not support tools",
            ),
            (
                401,
                include_bytes!("../fixtures/error_401.json"),
                "authentication_error",
                "Ollama: unauthorized",
            ),
            (
                404,
                include_bytes!("../fixtures/error_404.json"),
                "invalid_request_error",
                "Ollama: model \"llama3.3\" not found, try pulling it first",
            ),
            (
                500,
                include_bytes!("../fixtures/error_500.json"),
                "api_error",
                "Ollama: llama runner process has terminated: exit status 2",
            ),
            (
                503,
                include_bytes!("../fixtures/error_503.json"),
                "api_error",
                "Ollama: server busy, please try again.  maximum pending requests exceeded",
            ),
            (
                429,
                br#"{"error": "too many requests, please retry later"}"#,
                "rate_limit_error",
                "Ollama: too many requests, please retry later",
            ),
        ] {
            let error = from_response(status, body);
            assert_eq!(
                (error.status, error.kind.as_str(), error.message.as_str()),
                (status, kind, message)
            );
        }
        assert_eq!(
            from_response(404, include_bytes!("../fixtures/error_404.json"))
                .code
                .as_deref(),
            Some("model_not_found")
        );
    }

    #[test]
    fn a_plain_text_error_still_says_what_happened() {
        let error = from_response(404, b"404 page not found");
        assert_eq!(
            (error.status, error.message.as_str()),
            (404, "Ollama answered 404: 404 page not found")
        );
        let error = from_response(502, "x".repeat(10_000).as_bytes());
        assert!(error.message.len() < 1000);
    }
}
