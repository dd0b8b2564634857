//! The access log: one JSON line per request, written by a thread of its
//! own so the request path never waits on a disk.
//!
//! Lines go to stdout or to a file rotated by size (`access.log`,
//! `access.log.1`, … up to `keep` old files). If the writer falls behind by
//! more than [`QUEUE`] lines, further lines are dropped and counted rather
//! than queued without bound; the count is logged.
//!
//! The writer drains the queue every [`DRAIN_EVERY`] instead of waiting on
//! it: a waiting receiver must be woken by each line sent, a system call
//! and a context switch on the request path, which under load cost more
//! than the line itself. Lines reach the output at most that much later;
//! [`AccessLog::shutdown`] writes what is still queued.
//!
//! Nothing secret is written: the path without its query, never a header,
//! never a body.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::record::RequestRecord;

/// Lines waiting for the writer, at most.
pub const QUEUE: usize = 65_536;

/// How often the writer takes what is queued.
pub const DRAIN_EVERY: Duration = Duration::from_millis(20);

pub use weir_config::Destination;

/// The sending side of the access log.
pub struct AccessLog {
    lines: SyncSender<String>,
    dropped: AtomicU64,
    stop: Arc<AtomicBool>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl AccessLog {
    /// Start the writer thread for `destination`.
    pub fn start(destination: Destination) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match &destination {
            Destination::Stdout => Box::new(std::io::stdout()),
            Destination::File { path, max_bytes, keep } => {
                // Open once here so a path that cannot be written is an
                // error now, not a silent loss later.
                std::fs::OpenOptions::new().create(true).append(true).open(path)?;
                Box::new(file_rotate::FileRotate::new(
                    path,
                    file_rotate::suffix::AppendCount::new(*keep),
                    file_rotate::ContentLimit::BytesSurpassed((*max_bytes).max(1)),
                    file_rotate::compression::Compression::None,
                    None,
                ))
            }
        };
        let (lines, receiver) = std::sync::mpsc::sync_channel(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let writer = std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || write_lines(receiver, out, &stopping))?;
        Ok(AccessLog {
            lines,
            dropped: AtomicU64::new(0),
            stop,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Write every line queued so far and stop the writer (at shutdown).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }

    /// Queue the line for `record`.
    pub fn write(&self, record: &RequestRecord) {
        let line = line(record);
        match self.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!("the access log writer is behind; {dropped} lines dropped so far");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Lines dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Every [`DRAIN_EVERY`], write what is queued and flush; until the
/// senders are gone or `stop` is set, then once more.
fn write_lines(receiver: Receiver<String>, out: Box<dyn Write + Send>, stop: &AtomicBool) {
    let mut out = std::io::BufWriter::with_capacity(64 << 10, out);
    let mut failed = false;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let mut result = Ok(());
        let mut wrote = false;
        let closed = loop {
            match receiver.try_recv() {
                Ok(line) => {
                    result = result.and_then(|()| writeln!(out, "{line}"));
                    wrote = true;
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        if wrote {
            result = result.and_then(|()| out.flush());
            match (result, failed) {
                (Err(e), false) => {
                    tracing::error!("writing the access log: {e}");
                    failed = true;
                }
                (Ok(()), true) => failed = false,
                _ => {}
            }
        }
        if closed || stopping {
            return;
        }
        std::thread::sleep(DRAIN_EVERY);
    }
}

/// One request's line.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    trace_id: String,
    client: String,
    method: &'a str,
    path: &'a str,
    route: Option<&'a str>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    bytes_in: u64,
    bytes_out: u64,
    consumer: Option<&'a str>,
    upstream: Option<&'a str>,
    target: Option<&'a str>,
    duration_ms: f64,
    upstream_ms: Option<f64>,
    plugins: Vec<PluginEntry<'a>>,
    attempts: Vec<AttemptEntry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ai: Option<AiEntry<'a>>,
    completed: bool,
}

/// What an AI route made of the request.
#[derive(Serialize)]
struct AiEntry<'a> {
    target: &'a str,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<&'static str>,
    prompt_tokens: u64,
    completion_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttft_ms: Option<u64>,
}

#[derive(Serialize)]
struct PluginEntry<'a> {
    plugin: &'a str,
    phase: &'static str,
    #[serde(skip_serializing_if = "is_one")]
    calls: u32,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fault: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<bool>,
    ms: f64,
}

#[derive(Serialize)]
struct AttemptEntry<'a> {
    target: &'a str,
    result: String,
    ms: f64,
}

fn is_one(calls: &u32) -> bool {
    *calls == 1
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1_000.0
}

/// The JSON line for `record`.
pub fn line(record: &RequestRecord) -> String {
    use super::record::PluginOutcome;
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(record.unix_ms).unwrap_or(0));
    let last = record.attempts.last();
    let ai = record.ai();
    let line = Line {
        time: humantime::format_rfc3339_millis(time).to_string(),
        trace_id: record.trace.trace_hex(),
        client: record.client.to_string(),
        method: record.method.as_str(),
        path: &record.path,
        route: record.route.as_ref().map(|r| r.as_str()),
        status: record.status,
        error: record.error,
        bytes_in: record.bytes_in.load(Ordering::Relaxed),
        bytes_out: record.bytes_out,
        consumer: record.consumer.as_deref(),
        upstream: record.upstream.as_ref().map(|u| u.as_str()),
        target: last
            .map(|a| &*a.target)
            .or(ai.map(|ai| ai.usage.target.as_str()).filter(|t| !t.is_empty())),
        duration_ms: millis(record.elapsed()),
        upstream_ms: last.map(|a| millis(a.duration)),
        plugins: record
            .plugins
            .iter()
            .map(|call| PluginEntry {
                plugin: call.plugin.as_str(),
                phase: call.phase.as_str(),
                calls: call.calls,
                outcome: call.outcome.as_str(),
                status: match call.outcome {
                    PluginOutcome::Responded(status) => Some(status),
                    _ => None,
                },
                fault: match call.outcome {
                    PluginOutcome::Fault { kind, .. } => Some(kind),
                    _ => None,
                },
                skipped: match call.outcome {
                    PluginOutcome::Fault { skipped, .. } => Some(skipped),
                    _ => None,
                },
                ms: millis(call.duration),
            })
            .collect(),
        attempts: record
            .attempts
            .iter()
            .map(|a| AttemptEntry {
                target: &a.target,
                result: a.outcome.as_str().into_owned(),
                ms: millis(a.duration),
            })
            .collect(),
        ai: ai.map(|ai| AiEntry {
            target: &ai.usage.target,
            model: &ai.usage.model,
            cache: ai.cache,
            prompt_tokens: ai.usage.prompt_tokens,
            completion_tokens: ai.usage.completion_tokens,
            cost: ai.priced.then_some(ai.usage.cost),
            ttft_ms: ai.usage.ttft_ms,
        }),
        completed: record.completed,
    };
    serde_json::to_string(&line).unwrap_or_default()
}
