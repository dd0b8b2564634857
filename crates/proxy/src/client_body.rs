//! The client's request body as the gateway reads it: counted, and held
//! to a pace. A client that pauses longer than `request_body_timeout_ms`
//! between two pieces, or sends slower than `min_request_body_rate` bytes
//! a second once `request_body_rate_grace_ms` have passed, has its body
//! ended with an error (the request is answered 408), so a handful of
//! clients trickling bytes cannot hold the gateway's places for as long as
//! they like.
//!
//! Only time spent waiting on the client counts: while the upstream is
//! slow to take the body, the gateway does not poll it, and the clock for
//! the rate stands still.
//!
//! Every error this body returns is a [`ClientBodyError`], so whoever sees
//! it further on — the upstream client wrapping it in its own error — can
//! tell a client's fault from a target's (see [`client_fault`]).

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::BoxError;
use super::error::GatewayError;
use weir_config::Limits;

/// How fast a client must send its request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPace {
    /// The longest pause between two pieces.
    pub idle: Duration,
    /// The slowest rate, in bytes a second; 0 for none.
    pub min_rate: u64,
    /// Waiting time before the rate counts.
    pub grace: Duration,
}

impl BodyPace {
    /// The pace `limits` sets.
    pub fn new(limits: &Limits) -> Self {
        BodyPace {
            idle: Duration::from_millis(limits.request_body_timeout_ms),
            min_rate: limits.min_request_body_rate,
            grace: Duration::from_millis(limits.request_body_rate_grace_ms),
        }
    }

    /// The waiting time at which `received` bytes fall below the minimum
    /// rate; `None` when there is no minimum.
    fn rate_due(&self, received: u64) -> Option<Duration> {
        (self.min_rate > 0).then(|| {
            let at_rate = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
            self.grace.max(at_rate)
        })
    }
}

/// Why a client's request body ended before it was whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientBodyError {
    /// The body was not valid HTTP (bad chunk framing, a length it did not
    /// keep), or the client went away mid-body.
    #[error("the request body is malformed or was cut off: {0}")]
    Malformed(String),
    /// A pause longer than the timeout.
    #[error("the client sent no request body data for {ms} ms")]
    Stalled {
        /// The timeout.
        ms: u64,
    },
    /// Slower than the minimum rate.
    #[error("the client sent its request body at {rate} bytes/s, below the minimum of {min} bytes/s")]
    TooSlow {
        /// The rate so far.
        rate: u64,
        /// The minimum.
        min: u64,
    },
}

impl From<ClientBodyError> for GatewayError {
    fn from(error: ClientBodyError) -> Self {
        match error {
            ClientBodyError::Malformed(_) => GatewayError::RequestBody(error.to_string()),
            ClientBodyError::Stalled { .. } | ClientBodyError::TooSlow { .. } => {
                GatewayError::RequestBodyTimeout(error.to_string())
            }
        }
    }
}

/// The client's fault behind `error`, if a [`ClientBody`] error is in its
/// chain of sources.
pub fn client_fault<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a ClientBodyError> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(fault) = error.downcast_ref::<ClientBodyError>() {
            return Some(fault);
        }
        next = error.source();
    }
    None
}

/// The request body from the client, counted into `bytes_in` and held to
/// a [`BodyPace`].
pub struct ClientBody {
    inner: Incoming,
    bytes_in: Arc<AtomicU64>,
    pace: BodyPace,
    received: u64,
    /// Waiting time before the current wait.
    waited: Duration,
    /// When the current wait began.
    waiting_since: Option<Instant>,
    /// Made at the first wait: most bodies arrive whole and need none.
    timer: Option<Pin<Box<Sleep>>>,
}

impl ClientBody {
    /// `inner`, counted into `bytes_in` and held to `pace`.
    pub fn new(inner: Incoming, bytes_in: Arc<AtomicU64>, pace: BodyPace) -> Self {
        ClientBody {
            inner,
            bytes_in,
            pace,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            timer: None,
        }
    }

    /// The rate so far, in bytes a second of waiting.
    fn rate(&self, waited: Duration) -> u64 {
        (self.received as f64 / waited.as_secs_f64().max(0.001)) as u64
    }

    /// The error for a wait that reached its deadline after `waited`.
    fn overdue(&self, waited: Duration, this_wait: Duration) -> ClientBodyError {
        if this_wait >= self.pace.idle {
            ClientBodyError::Stalled {
                ms: self.pace.idle.as_millis() as u64,
            }
        } else {
            ClientBodyError::TooSlow {
                rate: self.rate(waited),
                min: self.pace.min_rate,
            }
        }
    }
}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    this.bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if this.pace.rate_due(this.received).is_some_and(|due| this.waited > due) {
                    let error = ClientBodyError::TooSlow {
                        rate: this.rate(this.waited),
                        min: this.pace.min_rate,
                    };
                    return Poll::Ready(Some(Err(Box::new(error))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(ClientBodyError::Malformed(e.to_string()))))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let now = Instant::now();
                let since = *this.waiting_since.get_or_insert(now);
                // The wait ends in error at the pause limit, or when the
                // waiting so far reaches the time the rate allows.
                let mut deadline = since + this.pace.idle;
                if let Some(due) = this.pace.rate_due(this.received) {
                    deadline = deadline.min(since + due.saturating_sub(this.waited));
                }
                let timer = match &mut this.timer {
                    Some(timer) => {
                        if timer.deadline() != deadline {
                            timer.as_mut().reset(deadline);
                        }
                        timer
                    }
                    None => this.timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                if timer.as_mut().poll(cx).is_ready() {
                    let this_wait = now.saturating_duration_since(since);
                    let error = this.overdue(this.waited + this_wait, this_wait);
                    return Poll::Ready(Some(Err(Box::new(error))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_due_after_the_grace_or_when_the_bytes_run_out() {
        let pace = BodyPace {
            idle: Duration::from_secs(30),
            min_rate: 100,
            grace: Duration::from_secs(5),
        };
        assert_eq!(pace.rate_due(0), Some(Duration::from_secs(5)));
        assert_eq!(pace.rate_due(1_000), Some(Duration::from_secs(10)));
        let none = BodyPace { min_rate: 0, ..pace };
        assert_eq!(none.rate_due(1_000), None);
    }

    #[test]
    fn client_faults_are_found_behind_other_errors() {
        #[derive(Debug, thiserror::Error)]
        #[error("wrapper")]
        struct Wrapper(#[source] Box<dyn std::error::Error + Send + Sync>);
        let inner: BoxError = Box::new(ClientBodyError::Stalled { ms: 5 });
        let wrapped = Wrapper(Box::new(Wrapper(inner)));
        assert_eq!(client_fault(&wrapped), Some(&ClientBodyError::Stalled { ms: 5 }));
        let unrelated = Wrapper(Box::new(std::io::Error::other("x")));
        assert_eq!(client_fault(&unrelated), None);
        let mapped: GatewayError = ClientBodyError::TooSlow { rate: 1, min: 2 }.into();
        assert_eq!(mapped.status().as_u16(), 408);
        let mapped: GatewayError = ClientBodyError::Malformed("x".into()).into();
        assert_eq!(mapped.status().as_u16(), 400);
    }
}
