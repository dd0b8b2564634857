//! The host side of the plugin contract: a plugin's calls on the
//! `request` and `response` handles (and `log`, `kv`, `secrets`), with
//! arbitrary names, values, methods, paths and statuses, through the
//! host's own `Host*` implementations on a real `HostState`.
//!
//! Never a panic or a trap; a refused call changes nothing; after every
//! call the request and response are valid HTTP: a path that starts with
//! `/` and survives printing and parsing, a status in 100..=999, header
//! values without line breaks; what was set reads back.

#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use wasmtime::component::Resource;
use weir::config::{OnUnavailable, PluginName, RouteName};
use weir::plugins::capabilities::OutboundClient;
use weir::plugins::capabilities::weir::plugin::types::{Error as CapError, HeaderEdit, HostRequest, HostResponse};
use weir::plugins::capabilities::weir::plugin::{kv, log, secrets};
use weir::plugins::capabilities::{Grants, HostState, PluginIdentity, SharedCapabilities};
use weir::plugins::exchange::{Lendable, Properties, RequestState, ResponseState};
use weir::state::SharedState;

/// A string the fuzzer makes, or one of the names plugins and HTTP care
/// about, or a long one.
#[derive(Arbitrary, Debug, Clone)]
enum Text {
    Raw(String),
    Known(u8),
    Long { piece: String, times: u16 },
}

const KNOWN: &[&str] = &[
    "",
    "content-length",
    "Content-Type",
    "transfer-encoding",
    "host",
    ":path",
    "x-a",
    "X-A",
    "x-b",
    "set-cookie",
    "x-bad\r\nx-injected: 1",
    "bad name",
    "valu\u{e9}",
    "/",
    "/a?b=c",
    "/a#frag",
    "//evil.test/x",
    "*",
    "GET",
    "CONNECT",
    "consumer",
];

impl Text {
    fn get(&self) -> String {
        match self {
            Text::Raw(s) => s.clone(),
            Text::Known(i) => KNOWN[usize::from(*i) % KNOWN.len()].to_string(),
            // Up to 1 MiB: huge names, values, paths and bodies.
            Text::Long { piece, times } => piece.repeat(usize::from(*times).min((1 << 20) / piece.len().max(1))),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Set(Text, Text),
    Append(Text, Text),
    Remove(Text),
    Rename(Vec<(Text, Text)>),
}

#[derive(Arbitrary, Debug)]
enum HandleOp {
    Header(Text),
    HeaderAll(Text),
    Headers,
    SetHeader(Text, Text),
    AppendHeader(Text, Text),
    RemoveHeader(Text),
    TakeHeader(Text),
    EditHeaders(Vec<Edit>),
    /// Many distinct names, one call each (or in one edit list).
    Flood {
        base: Text,
        count: u16,
        append: bool,
        batched: bool,
    },
    Body,
    SetBody(Vec<u8>),
    Property(Text),
    SetProperty(Text, Text),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Request(HandleOp),
    Response(HandleOp),
    Method,
    SetMethod(Text),
    Path,
    SetPath(Text),
    Authority,
    Status,
    SetStatus(u16),
    Log(u8, Text),
    KvSet(Text, Vec<u8>, Option<u64>),
    KvGet(Text),
    KvIncrement(Text, i64, Option<u64>),
    KvDelete(Text),
    KvSwap(Text, Option<Vec<u8>>, Vec<u8>),
    KvTake(Text, u32, f64, u32),
    Secret(Text),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// An HTTP/2 request's URI carries scheme and authority.
    absolute_uri: bool,
    kv_granted: bool,
    request_body: Option<Vec<u8>>,
    body_visible: bool,
    ops: Vec<Op>,
}

fn shared() -> Arc<SharedCapabilities> {
    static SHARED: OnceLock<Arc<SharedCapabilities>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            Arc::new(SharedCapabilities {
                state: Arc::new(SharedState::memory()),
                secrets: HashMap::from([("granted".to_string(), "s3cret".to_string())]),
                outbound: OutboundClient::new().expect("an outbound client (system root certificates)"),
            })
        })
        .clone()
}

fn request(absolute_uri: bool) -> RequestState {
    let uri = if absolute_uri {
        "https://api.test/v1/things?x=1"
    } else {
        "/v1/things?x=1"
    };
    let (parts, ()) = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("host", "api.test")
        .header("x-a", "1")
        .body(())
        .expect("a valid request")
        .into_parts();
    RequestState {
        parts,
        body: None,
        body_replaced: false,
        body_visible: false,
        properties: Properties::default(),
    }
}

fn response() -> ResponseState {
    let (parts, ()) = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(())
        .expect("a valid response")
        .into_parts();
    ResponseState {
        parts,
        body: None,
        body_replaced: false,
        body_visible: false,
        properties: Properties::default(),
    }
}

/// `Ok` from the host call: an `Err` would trap the plugin.
/// The output of a host call that never waits (the in-memory kv store).
fn now<F: std::future::Future>(future: F) -> F::Output {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("an in-memory kv call waited"),
    }
}

fn ok<T>(result: wasmtime::Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("a host call trapped: {e:#}"))
}

fn valid_headers(headers: &HeaderMap) {
    for (name, value) in headers {
        assert!(
            HeaderValue::from_bytes(value.as_bytes()).is_ok(),
            "{name}: invalid value {value:?}"
        );
        assert!(
            !value.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)),
            "{name}: {value:?}"
        );
    }
}

/// The handle calls the two resources share, over one macro so both get
/// exactly the same checks.
macro_rules! handle_op {
    ($trait:ident, $host:expr, $res:expr, $op:expr) => {{
        let host: &mut HostState = $host;
        let r = || Resource::new_borrow($res.rep());
        match $op {
            HandleOp::Header(name) => {
                ok($trait::header(host, r(), name.get()));
            }
            HandleOp::HeaderAll(name) => {
                ok($trait::header_all(host, r(), name.get()));
            }
            HandleOp::Headers => {
                let listed = ok($trait::headers(host, r()));
                assert_eq!(listed.len(), headers(host, &$res).len());
            }
            HandleOp::SetHeader(name, value) => {
                let (name, value) = (name.get(), value.get());
                let before = headers(host, &$res).clone();
                match ok($trait::set_header(host, r(), name.clone(), value.clone())) {
                    Ok(()) => assert_eq!(ok($trait::header(host, r(), name)), Some(value)),
                    Err(e) => refused(&e, &before, headers(host, &$res)),
                }
            }
            HandleOp::AppendHeader(name, value) => {
                let (name, value) = (name.get(), value.get());
                let before = headers(host, &$res).clone();
                match ok($trait::append_header(host, r(), name.clone(), value.clone())) {
                    Ok(()) => assert_eq!(ok($trait::header_all(host, r(), name)).last(), Some(&value)),
                    Err(e) => refused(&e, &before, headers(host, &$res)),
                }
            }
            HandleOp::RemoveHeader(name) => {
                let name = name.get();
                ok($trait::remove_header(host, r(), name.clone()));
                assert_eq!(ok($trait::header(host, r(), name)), None);
            }
            HandleOp::TakeHeader(name) => {
                let name = name.get();
                let first = ok($trait::header(host, r(), name.clone()));
                assert_eq!(ok($trait::take_header(host, r(), name.clone())), first);
                assert_eq!(ok($trait::header(host, r(), name)), None);
            }
            HandleOp::EditHeaders(edits) => {
                let edits: Vec<HeaderEdit> = edits.iter().map(edit).collect();
                let before = headers(host, &$res).clone();
                if let Err(e) = ok($trait::edit_headers(host, r(), edits)) {
                    refused(&e, &before, headers(host, &$res));
                }
            }
            HandleOp::Flood {
                base,
                count,
                append,
                batched,
            } => {
                // A short base: the flood is of names, not of bytes.
                let base: String = base.get().chars().take(32).collect();
                let names = (0..count).map(|i| format!("{base}{i}"));
                if batched {
                    let before = headers(host, &$res).clone();
                    let edits = names
                        .map(|n| {
                            if append {
                                HeaderEdit::Append((n, "v".into()))
                            } else {
                                HeaderEdit::Set((n, "v".into()))
                            }
                        })
                        .collect();
                    if let Err(e) = ok($trait::edit_headers(host, r(), edits)) {
                        refused(&e, &before, headers(host, &$res));
                    }
                } else {
                    for name in names {
                        let before_len = headers(host, &$res).len();
                        let result = if append {
                            ok($trait::append_header(host, r(), name, "v".into()))
                        } else {
                            ok($trait::set_header(host, r(), name, "v".into()))
                        };
                        if result.is_err() {
                            assert_eq!(
                                headers(host, &$res).len(),
                                before_len,
                                "a refused call changed the headers"
                            );
                            break;
                        }
                    }
                }
            }
            HandleOp::Body => {
                ok($trait::body(host, r()));
            }
            HandleOp::SetBody(body) => {
                ok($trait::set_body(host, r(), body.clone()));
                assert_eq!(ok($trait::body(host, r())), Some(body));
            }
            HandleOp::Property(name) => {
                ok($trait::property(host, r(), name.get()));
            }
            HandleOp::SetProperty(name, value) => {
                let (name, value) = (name.get(), value.get());
                let before = ok($trait::property(host, r(), name.clone()));
                ok($trait::set_property(host, r(), name.clone(), value.clone()));
                let after = ok($trait::property(host, r(), name));
                assert!(
                    after == Some(value) || after == before,
                    "set-property left a third value"
                );
            }
        }
    }};
}

fn edit(edit: &Edit) -> HeaderEdit {
    match edit {
        Edit::Set(n, v) => HeaderEdit::Set((n.get(), v.get())),
        Edit::Append(n, v) => HeaderEdit::Append((n.get(), v.get())),
        Edit::Remove(n) => HeaderEdit::Remove(n.get()),
        Edit::Rename(pairs) => HeaderEdit::Rename(pairs.iter().map(|(a, b)| (a.get(), b.get())).collect()),
    }
}

/// A refused edit is `invalid`, says why, and left the headers alone.
fn refused(error: &CapError, before: &HeaderMap, after: &HeaderMap) {
    match error {
        CapError::Invalid(message) => assert!(!message.is_empty()),
        other => panic!("a header edit refused with {other:?}"),
    }
    assert!(before == after, "a refused edit changed the headers");
}

/// What the two handles' states share.
trait Message: Send + 'static {
    fn headers(&self) -> &HeaderMap;
}

impl Message for RequestState {
    fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }
}

impl Message for ResponseState {
    fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }
}

fn headers<'a, T: Message + Lendable>(host: &'a HostState, res: &Resource<T>) -> &'a HeaderMap {
    host.lent.get(res).expect("the handle is lent").headers()
}

/// The request is still one a proxy can send.
fn valid_request(state: &RequestState) {
    let uri = &state.parts.uri;
    assert!(uri.path().starts_with('/'), "path {:?}", uri.path());
    let printed = uri.to_string();
    let parsed: http::Uri = printed
        .parse()
        .unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
    assert_eq!(&parsed, uri, "the URI does not survive printing");
    valid_headers(&state.parts.headers);
}

fn valid_response(state: &ResponseState) {
    let status = state.parts.status.as_u16();
    assert!((100..=999).contains(&status), "status {status}");
    valid_headers(&state.parts.headers);
}

fuzz_target!(|input: Input| {
    let identity = Arc::new(PluginIdentity {
        name: PluginName("fuzz".into()),
        routes: vec![RouteName("route".into())],
        state_policies: vec![OnUnavailable::FailClosed],
        grants: Grants {
            kv: input.kv_granted,
            secrets: vec!["granted".into(), "undefined".into()],
            outbound_hosts: Vec::new(),
            outbound_timeout: Duration::from_secs(1),
            sources: Default::default(),
        },
    });
    let mut host = HostState::new(identity, shared(), 64 << 20);
    host.slot = Some(0);
    let mut req = request(input.absolute_uri);
    req.body = input.request_body.map(Into::into);
    req.body_visible = input.body_visible;
    // Both are lent at once here, so every call can reach either.
    let req = host.lent.lend(Box::new(req));
    let resp = host.lent.lend(Box::new(response()));

    for op in input.ops {
        let host = &mut host;
        let r = || Resource::<RequestState>::new_borrow(req.rep());
        let s = || Resource::<ResponseState>::new_borrow(resp.rep());
        match op {
            Op::Request(op) => handle_op!(HostRequest, host, req, op),
            Op::Response(op) => handle_op!(HostResponse, host, resp, op),
            Op::Method => {
                ok(HostRequest::method(host, r()));
            }
            Op::SetMethod(method) => {
                let method = method.get();
                let before = ok(HostRequest::method(host, r()));
                match ok(HostRequest::set_method(host, r(), method.clone())) {
                    Ok(()) => assert_eq!(ok(HostRequest::method(host, r())), method),
                    Err(_) => assert_eq!(ok(HostRequest::method(host, r())), before),
                }
            }
            Op::Path => {
                ok(HostRequest::path(host, r()));
            }
            Op::SetPath(path) => {
                let path = path.get();
                let before = ok(HostRequest::path(host, r()));
                match ok(HostRequest::set_path(host, r(), path.clone())) {
                    Ok(()) if !path.contains('#') => assert_eq!(ok(HostRequest::path(host, r())), path),
                    Ok(()) => {}
                    Err(_) => assert_eq!(ok(HostRequest::path(host, r())), before),
                }
            }
            Op::Authority => {
                ok(HostRequest::authority(host, r()));
            }
            Op::Status => {
                ok(HostResponse::status(host, s()));
            }
            Op::SetStatus(status) => {
                let before = ok(HostResponse::status(host, s()));
                match ok(HostResponse::set_status(host, s(), status)) {
                    Ok(()) => assert_eq!(ok(HostResponse::status(host, s())), status),
                    Err(_) => assert_eq!(ok(HostResponse::status(host, s())), before),
                }
            }
            Op::Log(level, message) => {
                let level = match level % 5 {
                    0 => log::Level::Trace,
                    1 => log::Level::Debug,
                    2 => log::Level::Info,
                    3 => log::Level::Warn,
                    _ => log::Level::Error,
                };
                ok(log::Host::log(host, level, message.get()));
            }
            Op::KvSet(key, value, ttl) => {
                let granted = ok(now(kv::Host::set(host, key.get(), value, ttl))).is_ok();
                assert!(!granted || input.kv_granted);
            }
            Op::KvGet(key) => {
                ok(now(kv::Host::get(host, key.get()))).ok();
            }
            Op::KvIncrement(key, delta, ttl) => {
                ok(now(kv::Host::increment(host, key.get(), delta, ttl))).ok();
            }
            Op::KvDelete(key) => {
                ok(now(kv::Host::delete(host, key.get()))).ok();
            }
            Op::KvSwap(key, expected, value) => {
                ok(now(kv::Host::compare_and_swap(host, key.get(), expected, value, None))).ok();
            }
            Op::KvTake(key, capacity, refill, cost) => {
                if let Ok(taken) = ok(now(kv::Host::take_tokens(host, key.get(), capacity, refill, cost))) {
                    assert!(taken.remaining <= capacity, "{taken:?} from a bucket of {capacity}");
                    assert!(taken.allowed || taken.retry_after_secs >= 1, "{taken:?}");
                }
            }
            Op::Secret(name) => {
                let name = name.get();
                let value = ok(secrets::Host::get(host, name.clone()));
                assert_eq!(value.is_ok(), name == "granted", "secret {name:?}: {value:?}");
            }
        }
        valid_request(host.lent.get(&req).expect("the request handle"));
        valid_response(host.lent.get(&resp).expect("the response handle"));
    }
    let _: Box<RequestState> = host.lent.take_back().expect("the request comes back");
    let _: Box<ResponseState> = host.lent.take_back().expect("the response comes back");
});
