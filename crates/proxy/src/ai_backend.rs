//! The seam between the proxy and the AI gateway above it.
//!
//! A route with `[routes.ai]` is served by the AI gateway, which depends on
//! the proxy, not the other way round: the proxy runs the route's plugins,
//! reads the body whole, and hands the request to the route's
//! [`AiBackend`]; the AI gateway reports, through [`AiCall`], each target
//! it asked (attempts of the request, as an upstream's are), its calls to
//! the provider shims, and its account of the request.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use bytes::Bytes;
use http::Response;
use weir_core::body::Body;

use weir_observe::{AiSlot, ShimCalls};
use weir_plugins::exchange::Properties;

/// One request for an AI route, after the route's plugins.
pub struct AiCall<'a> {
    /// The request as the route's plugins left it.
    pub parts: http::request::Parts,
    /// Its body, read whole.
    pub body: Bytes,
    /// Its properties (`consumer`).
    pub properties: &'a Properties,
    /// Largest provider answer read whole.
    pub max_response_bytes: usize,
    /// Where the request's account (target, tokens, cache) is left for
    /// its access-log line.
    pub account: AiSlot,
    /// Where each target tried is recorded.
    pub attempts: &'a mut Vec<TargetAttempt>,
    /// Where the calls to the targets' shims are counted, as a route's
    /// plugin calls are.
    pub shim_calls: ShimCalls,
}

/// One AI target tried for a request: what the request's record makes an
/// attempt of.
#[derive(Debug, Clone)]
pub struct TargetAttempt {
    /// The target's name.
    pub target: String,
    /// When it was asked.
    pub started: Instant,
    /// The status it answered with (a provider error's status, 502 or 504
    /// for a connection that failed or timed out).
    pub status: u16,
}

/// What serves an AI route.
pub trait AiBackend: Send + Sync + 'static {
    /// Answer one request. Every failure is an answer (an OpenAI-shaped
    /// error), never an error of the proxy's.
    fn serve<'a>(&'a self, call: AiCall<'a>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send + 'a>>;

    /// The backend itself, for the admin API to show.
    fn as_any(&self) -> &dyn Any;
}
