//! The record of one request, filled in along the request path and handed
//! to the observers (metrics, access log) once the response body has ended
//! or the client went away.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body::{Body as _, Frame, SizeHint};

use super::Observer;
use crate::config::{PluginName, RouteName};
use crate::plugins::PluginFault;
use crate::proxy::{Body, BoxError};

/// What happened to one request.
#[derive(Debug)]
pub struct RequestRecord {
    /// When it arrived.
    pub started: Instant,
    /// When it arrived, Unix milliseconds.
    pub unix_ms: i64,
    /// Its method.
    pub method: Method,
    /// Its path, without the query (which may carry credentials).
    pub path: String,
    /// The client's address.
    pub client: IpAddr,
    /// The route that matched, if any.
    pub route: Option<RouteName>,
    /// The upstream pool it went to, if any.
    pub upstream: Option<String>,
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
}

impl Phase {
    /// The phase's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::Response => "response",
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
    /// How long it took (waiting for an instance included).
    pub duration: Duration,
    /// What came of it.
    pub outcome: PluginOutcome,
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
    pub fn fault(fault: &PluginFault, skipped: bool) -> Self {
        let kind = match fault {
            PluginFault::Trap { .. } => "trap",
            PluginFault::Deadline { .. } => "deadline",
            PluginFault::Memory { .. } => "memory",
            PluginFault::Unavailable { .. } => "unavailable",
        };
        PluginOutcome::Fault { kind, skipped }
    }
}

/// One attempt at an upstream target.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The target (`host:port`).
    pub target: String,
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
        }
    }
}

impl RequestRecord {
    /// A record for a request arriving now.
    pub fn new(method: Method, path: &str, client: IpAddr) -> Self {
        RequestRecord {
            started: Instant::now(),
            unix_ms: crate::ai::now_ms(),
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
            outcome,
        });
    }

    /// Record an attempt that started at `started`.
    pub fn attempt(&mut self, target: String, started: Instant, outcome: AttemptOutcome) {
        self.attempts.push(Attempt {
            target,
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
        let ended = self.body.is_end_stream();
        self.report(ended);
    }
}
