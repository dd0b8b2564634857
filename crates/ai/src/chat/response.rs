//! What an AI route's responses look like: errors in OpenAI's shape
//! (`crate::wire`) as responses, JSON and event-stream content types, and
//! the `x-weir-target` / `x-weir-cache` headers saying who answered.
//!
//! Invariant: an error response's status is always a 4xx or 5xx; an
//! error carrying anything else (a shim's mistake) goes out as 502.

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::Value;

use crate::targets::AiTarget;
use crate::wire::{api_error, error_json};
use weir_core::body::{Body, full_body};
use weir_plugins::capabilities::shim::exports::weir::plugin::provider::ApiError;

/// An error as the client sees it.
pub fn error_response(error: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(error.status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    json_response(status, &error_json(error))
}

pub(super) fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error_response(&api_error(
        405,
        "invalid_request_error",
        &format!("this endpoint takes {allow}"),
    ));
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

pub(super) fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(full_body(value.to_string()));
    *response.status_mut() = status;
    set_json(&mut response);
    response
}

pub(super) fn set_json(response: &mut Response<Body>) {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
}

pub(super) fn set_event_stream(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

/// Say which target answered, and whether the cache was asked.
pub(super) fn tag(response: &mut Response<Body>, target: &AiTarget, cache: Option<&'static str>) {
    let headers = response.headers_mut();
    if let Ok(name) = HeaderValue::from_str(&target.name) {
        headers.insert("x-weir-target", name);
    }
    if let Some(status) = cache {
        headers.insert("x-weir-cache", HeaderValue::from_static(status));
    }
}
