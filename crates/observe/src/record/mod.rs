//! The record of one request, filled in along the request path and handed
//! to the observers (metrics, access log) once the response body has ended
//! or the client went away.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::Method;
use http_body::{Body as _, Frame, SizeHint};

use super::Observer;
use super::ai::{AiSlot, AiSummary};
use weir_config::{PluginName, RouteName, UpstreamName};
use weir_core::body::{Body, BoxError};

mod calls;
mod trace_context;

pub use calls::{ChunkCalls, ShimCalls};
pub use trace_context::{TraceContext, new_span_id, parse_traceparent};

/// What happened to one request.
#[derive(Debug)]
pub struct RequestRecord {
    /// When it arrived.
    pub started: Instant,
    /// When it arrived, by the wall clock.
    pub start_time: SystemTime,
    /// When it arrived, Unix milliseconds.
    pub unix_ms: i64,
    /// Its place in a distributed trace.
    pub trace: TraceContext,
    /// Its method.
    pub method: Method,
    /// Its path, without the query (which may carry credentials).
    pub path: String,
    /// The client's address.
    pub client: IpAddr,
    /// The route that matched, if any.
    pub route: Option<RouteName>,
    /// The upstream pool it went to, if any.
    pub upstream: Option<UpstreamName>,
    /// The status sent to the client.
    pub status: u16,
    /// The gateway's error kind (`x-weir-error`), when the gateway answered
    /// with an error.
    pub error: Option<&'static str>,
    /// Request body bytes read from the client (counted as the body is
    /// read, which may end after the response began).
    pub bytes_in: Arc<AtomicU64>,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// Each plugin call, in order.
    pub plugins: Vec<PluginCall>,
    /// Each attempt at an upstream target, in order.
    pub attempts: Vec<Attempt>,
    /// The `consumer` property a plugin set, if any.
    pub consumer: Option<String>,
    /// Plugin calls tallied away from the request's own flow (the
    /// plugins' `on-response-chunk` calls while the body streams, an AI
    /// route's shim calls), added to `plugins` when the record is reported.
    pub chunk_calls: Vec<ChunkCalls>,
    /// What an AI route made of the request, filled in when its usage is
    /// settled (before the response body ends).
    pub ai: Option<AiSlot>,
    /// Whether the response body was sent to its end (false: the client
    /// went away or the body failed).
    pub completed: bool,
}

/// The phase of a plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `on-request`.
    Request,
    /// `on-response`.
    Response,
    /// `on-response-chunk`: one entry per response, covering all its
    /// chunk calls.
    Chunk,
}

impl Phase {
    /// The phase's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::Response => "response",
            Phase::Chunk => "chunk",
        }
    }
}

/// One plugin call.
#[derive(Debug, Clone)]
pub struct PluginCall {
    /// The plugin.
    pub plugin: PluginName,
    /// The phase.
    pub phase: Phase,
    /// When the call started, from the request's start.
    pub offset: Duration,
    /// How long it took (waiting for an instance included); for the
    /// chunk phase, the time of all its calls added up.
    pub duration: Duration,
    /// Calls made: 1, or for the chunk phase, one per chunk plus the
    /// final one.
    pub calls: u32,
    /// What came of it (for the chunk phase, a fault if any call faulted).
    pub outcome: PluginOutcome,
}

impl PluginCall {
    /// Count one more call, started at `started`: the first sets the
    /// offset from `request_started`; the first fault is kept.
    pub fn count(&mut self, started: Instant, request_started: Instant, fault: Option<PluginOutcome>) {
        if self.calls == 0 {
            self.offset = started.saturating_duration_since(request_started);
        }
        self.calls += 1;
        self.duration += started.elapsed();
        if let Some(fault) = fault
            && !matches!(self.outcome, PluginOutcome::Fault { .. })
        {
            self.outcome = fault;
        }
    }
}

/// What came of a plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginOutcome {
    /// The request or response went on.
    Continue,
    /// The plugin answered the request itself with this status.
    Responded(u16),
    /// The plugin faulted (`trap`, `deadline`, `memory`, `unavailable`);
    /// `skipped` when it is fail-open and the request went on without it.
    Fault {
        /// The kind of fault.
        kind: &'static str,
        /// Whether the request went on without the plugin.
        skipped: bool,
    },
}

impl PluginOutcome {
    /// The outcome's name: `continue`, `responded` or `fault`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginOutcome::Continue => "continue",
            PluginOutcome::Responded(_) => "responded",
            PluginOutcome::Fault { .. } => "fault",
        }
    }

    /// The outcome of a faulted call.
    pub fn fault(kind: &'static str, skipped: bool) -> Self {
        PluginOutcome::Fault { kind, skipped }
    }
}

/// One attempt at an upstream target.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The target (`host:port`).
    pub target: Arc<str>,
    /// The attempt's span, the parent named in the `traceparent` sent.
    pub span_id: [u8; 8],
    /// When the attempt started, from the request's start.
    pub offset: Duration,
    /// Until the response head arrived or the attempt failed.
    pub duration: Duration,
    /// What came of it.
    pub outcome: AttemptOutcome,
}

/// What came of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The target answered with this status.
    Answered(u16),
    /// No connection could be made.
    ConnectError,
    /// No response head within the timeout.
    Timeout,
    /// The connection broke before the response head.
    Broken,
    /// The client's request body failed (malformed, too slow) while it
    /// was being sent: the client's fault, not the target's.
    ClientBody,
}

impl AttemptOutcome {
    /// The outcome's name: the status, or `connect-error`, `timeout`,
    /// `broken`.
    pub fn as_str(self) -> std::borrow::Cow<'static, str> {
        match self {
            AttemptOutcome::Answered(status) => status.to_string().into(),
            AttemptOutcome::ConnectError => "connect-error".into(),
            AttemptOutcome::Timeout => "timeout".into(),
            AttemptOutcome::Broken => "broken".into(),
            AttemptOutcome::ClientBody => "client-body".into(),
        }
    }
}

impl RequestRecord {
    /// A record for a request arriving now.
    pub fn new(method: Method, path: &str, client: IpAddr) -> Self {
        RequestRecord {
            started: Instant::now(),
            start_time: SystemTime::now(),
            unix_ms: weir_core::clock::now_ms(),
            trace: TraceContext::new(None),
            method,
            path: path.to_string(),
            client,
            route: None,
            upstream: None,
            status: 0,
            error: None,
            bytes_in: Arc::default(),
            bytes_out: 0,
            plugins: Vec::new(),
            attempts: Vec::new(),
            consumer: None,
            chunk_calls: Vec::new(),
            ai: None,
            completed: false,
        }
    }

    /// Time since the request arrived.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Record a plugin call that started at `started`.
    pub fn plugin_call(&mut self, plugin: &PluginName, phase: Phase, started: Instant, outcome: PluginOutcome) {
        self.plugins.push(PluginCall {
            plugin: plugin.clone(),
            phase,
            offset: started.saturating_duration_since(self.started),
            duration: started.elapsed(),
            calls: 1,
            outcome,
        });
    }

    /// Start tallying chunk-phase calls for `plugins`, in chain order; the
    /// streaming body adds to entry `i` for the `i`th plugin.
    pub fn chunk_calls(&mut self, plugins: impl Iterator<Item = PluginName>) -> ChunkCalls {
        let calls = plugins
            .map(|plugin| PluginCall {
                plugin,
                phase: Phase::Chunk,
                offset: Duration::ZERO,
                duration: Duration::ZERO,
                calls: 0,
                outcome: PluginOutcome::Continue,
            })
            .collect();
        let calls = Arc::new(Mutex::new(calls));
        self.chunk_calls.push(calls.clone());
        calls
    }

    /// Start tallying an AI route's shim calls for this request.
    pub fn shim_calls(&mut self) -> ShimCalls {
        let calls = ChunkCalls::default();
        self.chunk_calls.push(calls.clone());
        ShimCalls::new(calls, self.started)
    }

    /// The AI account of this request, once settled.
    pub fn ai(&self) -> Option<&AiSummary> {
        self.ai.as_ref().and_then(|slot| slot.get())
    }

    /// Move the chunk calls made into `plugins`.
    fn gather_chunk_calls(&mut self) {
        for calls in std::mem::take(&mut self.chunk_calls) {
            let calls = std::mem::take(&mut *calls.lock().unwrap_or_else(|e| e.into_inner()));
            self.plugins.extend(calls.into_iter().filter(|call| call.calls > 0));
        }
    }

    /// What the attempts' targets belong to, for metrics and the
    /// dashboard: the upstream, or for an AI request its route (whose AI
    /// targets they are); `-` for neither.
    pub fn attempts_of(&self) -> &str {
        self.attempts_name().map_or("-", |name| name)
    }

    /// [`RequestRecord::attempts_of`], shared: `None` for `-`.
    pub fn attempts_name(&self) -> Option<&std::sync::Arc<str>> {
        match (&self.upstream, &self.ai, &self.route) {
            (Some(upstream), _, _) => Some(&upstream.0),
            (None, Some(_), Some(route)) => Some(&route.0),
            _ => None,
        }
    }

    /// Record an attempt with span `span_id` that started at `started`.
    pub fn attempt(&mut self, target: Arc<str>, span_id: [u8; 8], started: Instant, outcome: AttemptOutcome) {
        self.attempts.push(Attempt {
            target,
            span_id,
            offset: started.saturating_duration_since(self.started),
            duration: started.elapsed(),
            outcome,
        });
    }
}

/// A response body that counts what it sends and reports the request's
/// record when it ends — or when it is dropped unfinished.
pub struct Reported {
    body: Body,
    record: Option<Box<RequestRecord>>,
    observer: Arc<Observer>,
}

impl Reported {
    /// Report `record` when `body` ends.
    pub fn new(body: Body, record: Box<RequestRecord>, observer: Arc<Observer>) -> Self {
        Reported {
            body,
            record: Some(record),
            observer,
        }
    }

    fn report(&mut self, completed: bool) {
        if let Some(mut record) = self.record.take() {
            record.completed = completed;
            record.gather_chunk_calls();
            self.observer.finish(&record);
        }
    }
}

impl http_body::Body for Reported {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(record)) = (frame.data_ref(), this.record.as_mut()) {
                    record.bytes_out += data.len() as u64;
                }
                if this.body.is_end_stream() {
                    this.report(true);
                }
            }
            Poll::Ready(Some(Err(_))) => this.report(false),
            Poll::Ready(None) => this.report(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Reported {
    fn drop(&mut self) {
        // An empty body is never polled; a body dropped half-sent means
        // the client went away.
        if self.record.is_some() {
            // Drop the body first: what it settles on drop (an AI
            // request's usage) belongs in the report.
            let ended = self.body.is_end_stream();
            drop(std::mem::replace(&mut self.body, weir_core::body::empty_body()));
            self.report(ended);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UsageRecord;

    /// A body that settles an AI account when dropped, as an AI stream
    /// cut short by the client does.
    struct SettlesOnDrop(AiSlot);

    impl http_body::Body for SettlesOnDrop {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Pending
        }
    }

    impl Drop for SettlesOnDrop {
        fn drop(&mut self) {
            let usage = UsageRecord {
                target: "t".into(),
                model: "m".into(),
                completion_tokens: 3,
                status: 499,
                ..Default::default()
            };
            let _ = self.0.set(AiSummary {
                usage,
                cache: None,
                priced: false,
            });
        }
    }

    #[test]
    fn a_body_dropped_unfinished_settles_before_the_record_is_reported() {
        use http_body_util::BodyExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let destination = super::super::access_log::Destination::File {
            path: path.clone(),
            max_bytes: 1 << 20,
            keep: 1,
        };
        let observer = Arc::new(Observer {
            access_log: Some(super::super::access_log::AccessLog::start(destination).unwrap()),
            ..Observer::default()
        });
        let mut record = Box::new(RequestRecord::new(
            Method::POST,
            "/v1/chat/completions",
            [127, 0, 0, 1].into(),
        ));
        let slot = AiSlot::default();
        record.ai = Some(slot.clone());
        drop(Reported::new(
            SettlesOnDrop(slot).boxed_unsync(),
            record,
            observer.clone(),
        ));
        drop(observer);
        let line = (0..500)
            .find_map(|_| {
                let text = std::fs::read_to_string(&path).unwrap();
                if text.is_empty() {
                    std::thread::sleep(Duration::from_millis(10));
                    return None;
                }
                Some(text)
            })
            .expect("the line is written");
        let line: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(line["completed"], false);
        assert_eq!(line["ai"]["target"], "t", "{line}");
        assert_eq!(line["ai"]["completion_tokens"], 3);
    }
}
