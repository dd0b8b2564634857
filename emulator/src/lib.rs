//! A provider emulator: speaks the wire formats of OpenAI, Anthropic, Ollama,
//! Gemini and Azure OpenAI (including streaming), answers deterministically
//! and injects faults on request, so it can stand in for real providers in
//! end-to-end tests.
//!
//! Replies echo the last user message (`Echo: <text>`). Faults are chosen by
//! the `x-emulator-fault` header or a `[fault:...]` marker in the last user
//! message: `429[:N]`, `500`, `slow:MS`, `cut:N`, `malformed`, `split`, `crlf`,
//! `quote-key` (given as a header or standing fault only), `hold`,
//! comma-separated.

mod anthropic;
mod common;
mod gemini;
mod ollama;
mod openai;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

pub use common::Faults;

/// Error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response body.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// One request the emulator received.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Received {
    /// `openai`, `anthropic`, `ollama`, `gemini`, `azure` or `unknown`.
    pub provider: String,
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Header names (lower case) to values (repeated values joined by `, `).
    pub headers: std::collections::BTreeMap<String, String>,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

impl Received {
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// The emulator's shared state; cheap to clone.
#[derive(Clone, Default)]
pub struct Emulator {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    seq: AtomicU64,
    standing_faults: Mutex<Option<String>>,
    /// Set by `release`: held answers go on.
    released: std::sync::atomic::AtomicBool,
    release: tokio::sync::Notify,
}

impl Emulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every provider request received so far, oldest first.
    pub fn requests(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// How many provider requests were received.
    pub fn count(&self) -> usize {
        self.inner.received.lock().unwrap().len()
    }

    /// Inject these faults (the `x-emulator-fault` syntax) into every
    /// request that carries none of its own, until set to `None`: an
    /// emulator standing in for a provider that is down or rate limited.
    pub fn set_faults(&self, spec: Option<&str>) {
        *self.inner.standing_faults.lock().unwrap() = spec.map(str::to_string);
    }

    /// Let every answer held by the `hold` fault go on, and those asked
    /// for later too.
    pub fn release(&self) {
        self.inner.released.store(true, Ordering::SeqCst);
        self.inner.release.notify_waiters();
    }

    /// Wait for [`Self::release`].
    async fn released(&self) {
        loop {
            let notified = self.inner.release.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.released.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Forget the received requests.
    pub fn clear(&self) {
        self.inner.received.lock().unwrap().clear();
    }

    fn next_seq(&self) -> u64 {
        self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Serve the emulator on `listener` forever.
pub async fn serve(listener: TcpListener, state: Emulator) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(request, state).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

pub(crate) fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}

pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    full(status, "application/json", value.to_string())
}

/// What a provider handler decided to answer.
pub(crate) enum Answer {
    /// A complete response (errors, non-streamed bodies without faults that alter them).
    Done(Response<Body>),
    /// A body made of events (SSE events or NDJSON lines, each complete with
    /// its line ends), subject to the stream faults.
    Events {
        status: StatusCode,
        content_type: &'static str,
        headers: Vec<(&'static str, String)>,
        events: Vec<String>,
        /// The SSE or NDJSON text of a malformed event, for the `malformed` fault.
        malformed: String,
        sse: bool,
    },
}

/// The request as the handlers see it.
pub(crate) struct Req {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub seq: u64,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
}

fn provider_of(path: &str) -> &'static str {
    if path.starts_with("/v1/messages") {
        "anthropic"
    } else if path.starts_with("/v1beta/") || path.starts_with("/v1/models/") && path.contains(':') {
        "gemini"
    } else if path.starts_with("/openai/") {
        "azure"
    } else if path.starts_with("/v1/") {
        "openai"
    } else if path.starts_with("/api/") {
        "ollama"
    } else {
        "unknown"
    }
}

/// `body` with `{key}` replaced by the key the request carried, wherever
/// a provider takes it: a bearer token, `x-api-key`, `api-key`,
/// `x-goog-api-key`, or the `key` query parameter.
fn quote_key(body: &Bytes, headers: &HeaderMap, query: &str) -> Bytes {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let key = header("authorization")
        .map(|v| v.trim_start_matches("Bearer ").to_string())
        .or_else(|| header("x-api-key").map(str::to_string))
        .or_else(|| header("api-key").map(str::to_string))
        .or_else(|| header("x-goog-api-key").map(str::to_string))
        .or_else(|| query_key(query))
        .unwrap_or_default();
    let text = String::from_utf8_lossy(body).replace("{key}", &key);
    Bytes::from(text)
}

fn query_key(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .map(str::to_string)
}

async fn handle(request: Request<Incoming>, state: Emulator) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    if path == "/_emulator/requests" {
        if parts.method == Method::DELETE {
            state.clear();
            return full(StatusCode::NO_CONTENT, "text/plain", "");
        }
        return json_response(StatusCode::OK, &serde_json::to_value(state.requests()).unwrap());
    }
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let provider = provider_of(&path);
    let headers: std::collections::BTreeMap<String, String> = parts
        .headers
        .keys()
        .map(|k| {
            let values: Vec<_> = parts
                .headers
                .get_all(k)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            (k.as_str().to_string(), values.join(", "))
        })
        .collect();
    state.inner.received.lock().unwrap().push(Received {
        provider: provider.to_string(),
        method: parts.method.to_string(),
        path: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()).to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let mut headers = parts.headers;
    if !headers.contains_key("x-emulator-fault")
        && let Some(spec) = state.inner.standing_faults.lock().unwrap().as_deref()
        && let Ok(value) = http::HeaderValue::from_str(spec)
    {
        headers.insert("x-emulator-fault", value);
    }
    let body = match headers.get("x-emulator-fault").and_then(|v| v.to_str().ok()) {
        Some(spec) if Faults::parse(spec).quote_key => quote_key(&body, &headers, &query),
        _ => body,
    };
    let req = Req {
        method: parts.method,
        path,
        query,
        headers,
        body,
        seq: state.next_seq(),
    };
    tracing::debug!(provider, path = %req.path, "emulator request");
    let (answer, faults) = match provider {
        "openai" => openai::handle(&req, openai::Flavor::OpenAi),
        "azure" => openai::handle(&req, openai::Flavor::Azure),
        "anthropic" => anthropic::handle(&req),
        "ollama" => ollama::handle(&req),
        "gemini" => gemini::handle(&req),
        _ => (
            Answer::Done(json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": format!("no emulated endpoint for {} {}", req.method, req.path)}),
            )),
            Faults::default(),
        ),
    };
    if faults.hold {
        state.released().await;
    }
    if let Some(ms) = faults.slow_ms {
        tokio::time::sleep(Duration::from_millis(ms.min(120_000))).await;
    }
    match answer {
        Answer::Done(response) => response,
        Answer::Events {
            status,
            content_type,
            headers,
            events,
            malformed,
            sse,
        } => events_response(status, content_type, headers, events, malformed, sse, &faults, req.seq),
    }
}

#[derive(Debug)]
struct Cut;
impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("emulator fault: stream cut")
    }
}
impl std::error::Error for Cut {}

#[allow(clippy::too_many_arguments)]
fn events_response(
    status: StatusCode,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    mut events: Vec<String>,
    malformed: String,
    sse: bool,
    faults: &Faults,
    seq: u64,
) -> Response<Body> {
    if faults.malformed && !events.is_empty() {
        let at = events.len().div_ceil(2).min(events.len());
        events.insert(at, malformed);
    }
    let mut cut = false;
    if let Some(n) = faults.cut
        && n < events.len()
    {
        events.truncate(n);
        cut = true;
    }
    if faults.crlf && sse {
        for event in &mut events {
            *event = event.replace('\n', "\r\n");
        }
    }
    let mut pieces: Vec<Bytes> = Vec::new();
    if faults.split {
        let all: Vec<u8> = events.concat().into_bytes();
        let mut rng = common::Rng::new(seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ all.len() as u64);
        let mut at = 0;
        while at < all.len() {
            let n = (1 + rng.next() % 7) as usize;
            let end = (at + n).min(all.len());
            pieces.push(Bytes::copy_from_slice(&all[at..end]));
            at = end;
        }
    } else {
        pieces = events.into_iter().map(Bytes::from).collect();
    }
    let split = faults.split;
    let stream = futures_util::stream::unfold(
        (pieces.into_iter(), cut, false),
        move |(mut it, cut, finished)| async move {
            if finished {
                return None;
            }
            match it.next() {
                Some(piece) => {
                    if split {
                        tokio::task::yield_now().await;
                    }
                    Some((Ok(Frame::data(piece)), (it, cut, false)))
                }
                None if cut => {
                    // Let hyper flush what was written before the connection is aborted.
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                    }
                    Some((Err(Box::new(Cut) as BoxError), (it, cut, true)))
                }
                None => None,
            }
        },
    );
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    if sse {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
    }
    for (name, value) in headers {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
