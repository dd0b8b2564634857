//! An upstream response body under its pool's idle and total timeouts,
//! counted in flight at its target until it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::super::{Body, BoxError};
use weir_config::UpstreamName;
use weir_core::clock::now_ms;
use weir_select::{BreakerPolicy, InFlight};

/// An upstream response body under the pool's idle and total timeouts.
pub(super) struct WatchedBody {
    pub(super) body: Body,
    pub(super) idle_timeout: Duration,
    /// Started when the body first waits for data; pushed back with each
    /// piece that arrives.
    pub(super) idle: Option<Pin<Box<Sleep>>>,
    pub(super) total: Option<Pin<Box<Sleep>>>,
    /// Present until the body ends.
    pub(super) in_flight: Option<InFlight>,
    pub(super) breaker: BreakerPolicy,
    pub(super) upstream: UpstreamName,
    pub(super) target: Arc<str>,
}

/// A response body cut off by a timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream {upstream:?} target {target}: {what}")]
struct BodyTimeout {
    upstream: UpstreamName,
    target: Arc<str>,
    what: String,
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.in_flight.is_none() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(idle) = &mut this.idle {
                    idle.as_mut().reset(Instant::now() + this.idle_timeout);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(end) => {
                this.in_flight = None;
                Poll::Ready(end)
            }
            Poll::Pending => {
                let idle_timeout = this.idle_timeout;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle_timeout)));
                let what = if idle.as_mut().poll(cx).is_ready() {
                    format!("no response data for {} ms", idle_timeout.as_millis())
                } else if this.total.as_mut().is_some_and(|t| t.as_mut().poll(cx).is_ready()) {
                    "the exchange ran past its total timeout".to_string()
                } else {
                    return Poll::Pending;
                };
                tracing::warn!(upstream = %this.upstream, target = %this.target, "response cut off: {what}");
                if let Some(in_flight) = this.in_flight.take() {
                    in_flight.health().failed(this.breaker, now_ms());
                }
                Poll::Ready(Some(Err(Box::new(BodyTimeout {
                    upstream: this.upstream.clone(),
                    target: this.target.clone(),
                    what,
                }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.in_flight.is_none() || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
