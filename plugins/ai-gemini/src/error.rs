//! Gemini error bodies (`{"error": {"code", "message", "status"}}`) →
//! OpenAI errors.
//!
//! The client gets Gemini's HTTP status, which is always a standard one
//! (400 `INVALID_ARGUMENT`/`FAILED_PRECONDITION`, 403 `PERMISSION_DENIED`,
//! 404 `NOT_FOUND`, 429 `RESOURCE_EXHAUSTED`, 500 `INTERNAL`, 503
//! `UNAVAILABLE`, 504 `DEADLINE_EXCEEDED`, ...), with one exception: Gemini
//! answers a wrong API key with 400 (reason `API_KEY_INVALID`), which is a
//! 401 to OpenAI clients.

use serde_json::Value;
use weir_sdk::ai::ApiError;

use crate::PROVIDER;
use crate::wire::{ErrorBody, ErrorDetail};

/// The most of a non-JSON error body quoted in the message.
const QUOTED_BODY: usize = 300;

/// Map an error response.
pub fn translate(status: u16, body: &[u8]) -> ApiError {
    match parse(body) {
        Some(detail) => from_detail(status, &detail),
        None => ApiError::for_status(status, &format!("{PROVIDER} answered {status}: {}", quote(body))),
    }
}

/// An error event in a stream: its own `code` is the status.
pub fn from_event(detail: &ErrorDetail) -> ApiError {
    let status = detail
        .code
        .filter(|code| (400..600).contains(code))
        .or_else(|| detail.status.as_deref().map(status_of))
        .unwrap_or(502);
    from_detail(status, detail)
}

fn from_detail(status: u16, detail: &ErrorDetail) -> ApiError {
    let api_key_invalid = detail.reason() == Some("API_KEY_INVALID");
    let status = if api_key_invalid { 401 } else { status };
    let message = detail.message.as_deref().unwrap_or("no message");
    let message = match &detail.status {
        Some(state) => format!("{PROVIDER}: {message} ({state})"),
        None => format!("{PROVIDER}: {message}"),
    };
    let code = if api_key_invalid {
        Some("invalid_api_key".to_string())
    } else {
        detail.status.as_ref().map(|s| s.to_ascii_lowercase())
    };
    ApiError {
        code,
        ..ApiError::for_status(status, &message)
    }
}

/// `{"error": ...}`, or the same as the only element of a JSON array (the
/// shape of a failed `streamGenerateContent` without `alt=sse`).
fn parse(body: &[u8]) -> Option<ErrorDetail> {
    let value = match serde_json::from_slice(body).ok()? {
        Value::Array(mut list) if !list.is_empty() => list.swap_remove(0),
        value => value,
    };
    if !value.get("error").is_some_and(Value::is_object) {
        return None;
    }
    serde_json::from_value::<ErrorBody>(value).ok().map(|body| body.error)
}

/// The HTTP status of a canonical error code, for an error event without
/// a numeric `code`.
fn status_of(state: &str) -> u16 {
    match state {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ALREADY_EXISTS" | "ABORTED" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

/// A body for a message: lossy UTF-8, trimmed, cut at a char boundary.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    match text.char_indices().nth(QUOTED_BODY) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
