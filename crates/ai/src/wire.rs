//! OpenAI's shapes on the wire, as every part of an AI route writes them:
//! the error body (`{"error": {...}}`) and server-sent events.
//!
//! Invariant: an event's data never ends the event early — each line of
//! it is its own `data:` line.

use bytes::BytesMut;
use serde_json::{Value, json};

use weir_plugins::capabilities::shim::exports::weir::plugin::provider::ApiError;

/// An error with `status`, `kind` and `message`.
pub fn api_error(status: u16, kind: &str, message: &str) -> ApiError {
    ApiError {
        status,
        kind: kind.to_string(),
        message: message.to_string(),
        param: None,
        code: None,
    }
}

/// `{"error": {...}}`, OpenAI's error shape.
pub fn error_json(error: &ApiError) -> Value {
    json!({"error": {
        "message": error.message,
        "type": error.kind,
        "param": error.param,
        "code": error.code,
    }})
}

/// Append a server-sent event carrying `data` to `out`. Each line of
/// `data` becomes a `data:` line (the client joins them with `\n`), so a
/// chunk with line breaks in it stays one event and cannot end it early.
pub fn push_event(out: &mut BytesMut, data: &str) {
    let mut rest = data;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest.as_bytes()[..end]);
        out.extend_from_slice(b"\n");
        let Some(next) = rest[end..].strip_prefix("\r\n").or_else(|| rest.get(end + 1..)) else {
            break;
        };
        rest = next;
    }
    out.extend_from_slice(b"\n");
}
