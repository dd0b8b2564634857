//! One try of one target: the request translated by the target's provider
//! shim, sent with the target's key, and the provider's answer translated
//! back (whole) or its stream primed (streamed).
//!
//! Invariants: nothing reaches the client here, so any failure can still
//! be failed over. A failure is classified once, as an [`Outcome`]: the
//! target's trouble (no shim loaded, a shim fault, a connect error, a
//! timeout, a 429 or a 5xx: try the next target) or the request's (the
//! shim or the provider refused it: answer the client). A 429 also puts
//! the target to rest for as long as it asked (at most an hour). Every
//! call to the shim is counted, faulted or not, and a provider's body is
//! redacted of the target's key before the shim sees it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header;
use http_body_util::BodyExt;

use super::provider_request::build_request;
use super::relay::{Relay, Shim};
use crate::now_ms;
use crate::redact::{StreamRedactor, redact};
use crate::targets::AiTarget;
use crate::wire::api_error;
use weir_core::error::error_chain;
use weir_observe::{Phase, ShimCalls};
use weir_plugins::PluginFault;
use weir_plugins::capabilities::shim::exports::weir::plugin::provider::{ApiError, Completion, Exchange};

/// Largest provider error body read for its message.
const MAX_ERROR_BODY: usize = 64 << 10;

/// What a target answered, ready for the client.
pub(super) enum Answer {
    /// The shim's translation of a whole answer.
    Whole(Completion),
    /// A stream primed: its first chunk is ready, nothing sent yet.
    Stream(Box<Relay>),
}

/// Why a target did not answer.
pub(super) enum Outcome {
    /// The target failed in a way another target may not: try the next.
    Retry(ApiError),
    /// The request itself was refused: answer the client.
    Refused(ApiError),
}

/// Whether a provider error is the target's trouble (try another) rather
/// than the request's.
pub(super) fn retryable(status: u16) -> bool {
    status == 429 || status >= 500
}

/// One try of one target: translate, send, and translate the answer or
/// prime its stream. Nothing reaches the client here.
pub(super) async fn attempt(
    target: &Arc<AiTarget>,
    body: &Bytes,
    stream: bool,
    exchange: &Exchange,
    max_response_bytes: usize,
    calls: &ShimCalls,
) -> Result<Answer, Outcome> {
    let retry = |status: u16, message: String| Outcome::Retry(api_error(status, "api_error", &message));
    let fault = |fault: PluginFault| retry(500, format!("the provider shim failed: {fault}"));
    let (plugin, slot) = match &target.shim {
        Ok((plugin, slot)) => (plugin, *slot),
        Err(name) => {
            return Err(retry(
                503,
                format!("the provider shim {name} is not loaded (its file is missing)"),
            ));
        }
    };
    // Each call to the shim is counted, faulted or not.
    let counted = |phase: Phase, started: Instant, fault: Option<&PluginFault>| {
        calls.add(plugin.name(), phase, started, fault.map(PluginFault::kind));
    };
    let started = Instant::now();
    let leased = plugin.lease(slot).await;
    let mut lease = match leased {
        Ok(lease) => lease,
        Err(e) => {
            counted(Phase::Request, started, Some(&e));
            return Err(fault(e));
        }
    };
    let translated = lease.translate_request(slot, body).await;
    counted(Phase::Request, started, translated.as_ref().err());
    let provider_request = match translated.map_err(fault)? {
        Ok(r) => r,
        Err(error) => return Err(Outcome::Refused(error)),
    };
    let http_request = build_request(target, provider_request).map_err(|e| retry(500, e))?;
    let response = match tokio::time::timeout(target.response_timeout, target.client.request(http_request)).await {
        Err(_) => {
            return Err(retry(
                504,
                format!("no answer within {} ms", target.response_timeout.as_millis()),
            ));
        }
        Ok(Err(e)) => return Err(retry(502, format!("cannot reach the provider: {}", error_chain(&e)))),
        Ok(Ok(response)) => response,
    };
    let status = response.status().as_u16();
    if !response.status().is_success() {
        if status == 429 {
            let wait_secs = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
            target
                .health
                .rest_until(now_ms().saturating_add((wait_secs.min(3600) * 1000) as i64));
        }
        let bytes = read_body(response.into_body(), MAX_ERROR_BODY, target)
            .await
            .unwrap_or_default();
        // Providers quote a rejected key back: the shim never sees it.
        let bytes = redact(&bytes, target.key.as_deref());
        let started = Instant::now();
        let translated = lease.translate_error(slot, status, &bytes).await;
        counted(Phase::Response, started, translated.as_ref().err());
        let error = translated.map_err(fault)?;
        return Err(if retryable(status) {
            Outcome::Retry(error)
        } else {
            Outcome::Refused(error)
        });
    }
    let upstream = response.into_body().map_err(weir_core::body::box_error).boxed_unsync();
    if !stream {
        let bytes = read_body(upstream, max_response_bytes, target)
            .await
            .map_err(|e| retry(502, e))?;
        let bytes = redact(&bytes, target.key.as_deref());
        let started = Instant::now();
        let translated = lease.translate_response(slot, exchange, &bytes).await;
        counted(Phase::Response, started, translated.as_ref().err());
        return match translated.map_err(fault)? {
            Ok(completion) => Ok(Answer::Whole(completion)),
            Err(error) if retryable(error.status) => Err(Outcome::Retry(error)),
            Err(error) => Err(Outcome::Refused(error)),
        };
    }
    let started = Instant::now();
    let opened = lease.open_stream(slot, exchange).await;
    counted(Phase::Response, started, opened.as_ref().err());
    let translator = opened.map_err(fault)?;
    let shim = Shim {
        plugin: plugin.name().clone(),
        calls: calls.clone(),
        redactor: StreamRedactor::new(target.key.as_deref()),
    };
    let mut relay = Relay::new(lease, slot, translator, upstream, target.response_timeout, shim);
    match relay.prime().await {
        Ok(()) => Ok(Answer::Stream(Box::new(relay))),
        Err(error) if retryable(error.status) => Err(Outcome::Retry(error)),
        Err(error) => Err(Outcome::Refused(error)),
    }
}

/// Read a provider body whole, refusing more than `limit` bytes or a gap
/// longer than the target's timeout.
async fn read_body<B>(body: B, limit: usize, target: &AiTarget) -> Result<Bytes, String>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut body = body;
    let mut buffer = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(target.response_timeout, body.frame()).await {
            Err(_) => {
                return Err(format!(
                    "the provider's body stalled for {} ms",
                    target.response_timeout.as_millis()
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(format!("reading the provider's body: {e}")),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                return Err(format!("the provider's answer is larger than {limit} bytes"));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}
