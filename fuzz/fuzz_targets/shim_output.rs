//! What the host does with the values a provider shim returns: the
//! provider request it builds from a shim's method, path, headers and key
//! placement; the server-sent events it frames a shim's chunks in; the
//! whole answer it builds from chunks and caches; the error response it
//! makes of a shim's `api-error`.
//!
//! Never a panic. A provider request goes to the target's scheme and
//! authority under its base path, with valid headers and one
//! `content-length` that is the body's, and the key where the shim said;
//! an event stream decodes back to exactly the chunks; an error response
//! has a 4xx or 5xx status.

#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use http::header;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use weir::ai::cache::{CachedAnswer, CompletionBuilder};
use weir::ai::chat::{Endpoint, error_response, provider_request};
use weir::ai::wire::push_event;
use weir::config::parse_base_url;
use weir::plugins::capabilities::shim::exports::weir::plugin::provider::{ApiError, KeyPlacement, ProviderRequest};
use weir_sdk::ai::stream::SseDecoder;

/// A string the fuzzer makes, or one that means something to HTTP.
#[derive(Arbitrary, Debug)]
enum Text {
    Raw(String),
    Known(u8),
}

const KNOWN: &[&str] = &[
    "",
    "/",
    "/v1/chat/completions",
    "/v1/messages?beta=true",
    "/a#fragment",
    "//evil.test/x",
    "/a b",
    "/%zz",
    "x",
    "POST",
    "GET",
    "content-length",
    "Content-Length",
    "transfer-encoding",
    "host",
    "authorization",
    "x-api-key",
    "Bearer ",
    "key",
    "a&b=c",
    "bad\r\nname",
];

impl Text {
    fn get(&self) -> String {
        match self {
            Text::Raw(s) => s.clone(),
            Text::Known(i) => KNOWN[usize::from(*i) % KNOWN.len()].to_string(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Key {
    None,
    Header(Text, Text),
    Query(Text),
}

#[derive(Arbitrary, Debug)]
struct Request {
    base_url: u8,
    key: Option<String>,
    method: Text,
    path: Text,
    headers: Vec<(Text, Text)>,
    /// 255: more header names on top of `headers` than a map holds
    /// (rarely, as it is slow).
    flood: u8,
    body: Vec<u8>,
    placement: Key,
}

#[derive(Arbitrary, Debug)]
enum Input {
    Request(Request),
    Chunks(Vec<String>),
    Completion { body: Vec<u8>, include_usage: bool },
    Error { status: u16, kind: String, message: String },
}

const BASE_URLS: &[&str] = &[
    "https://api.provider.test",
    "http://127.0.0.1:8080/openai/v1/",
    "https://[::1]:8443/base",
];

fn request(input: Request) {
    let base_url = BASE_URLS[usize::from(input.base_url) % BASE_URLS.len()];
    let (base, base_path) = parse_base_url(base_url).expect("a valid base URL");
    let endpoint = Endpoint {
        name: "target",
        base: &base,
        base_path: &base_path,
        key: input.key.as_deref(),
    };
    let mut headers: Vec<(String, String)> = input.headers.iter().map(|(n, v)| (n.get(), v.get())).collect();
    if input.flood == u8::MAX {
        headers.extend((0..30_000).map(|i| (format!("x-{i}"), "v".to_string())));
    }
    let body_len = input.body.len();
    let placement = match &input.placement {
        Key::None => KeyPlacement::None,
        Key::Header(name, prefix) => KeyPlacement::Header((name.get(), prefix.get())),
        Key::Query(name) => KeyPlacement::Query(name.get()),
    };
    let shim = ProviderRequest {
        method: input.method.get(),
        path: input.path.get(),
        headers,
        body: input.body,
        key: placement,
    };
    let built = match provider_request(&endpoint, shim) {
        Ok(built) => built,
        Err(message) => {
            assert!(!message.is_empty());
            return;
        }
    };
    let uri = built.uri();
    assert_eq!(uri.scheme(), Some(&base.scheme), "the scheme moved");
    assert_eq!(
        uri.authority(),
        Some(&base.authority),
        "the request left the target: {uri}"
    );
    assert!(uri.path().starts_with(&base_path), "{uri} is not under {base_path:?}");
    let lengths: Vec<_> = built.headers().get_all(header::CONTENT_LENGTH).iter().collect();
    assert_eq!(lengths.len(), 1, "content-length: {lengths:?}");
    assert_eq!(lengths[0].to_str().ok(), Some(body_len.to_string().as_str()));
    for (name, value) in built.headers() {
        assert!(!weir::proxy::forwarding::is_hop_by_hop(name), "hop-by-hop {name} sent");
        assert!(
            !value.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)),
            "{name}: {value:?}"
        );
    }
    if let Some(key) = &input.key {
        match &input.placement {
            Key::None => {}
            Key::Header(name, prefix) => {
                let (name, prefix) = (name.get(), prefix.get());
                let value = built.headers().get(name.as_str()).expect("the key header");
                assert_eq!(value.as_bytes(), format!("{prefix}{key}").as_bytes());
                assert!(value.is_sensitive(), "the key header is not marked sensitive");
            }
            Key::Query(name) => {
                let name = name.get();
                let query = uri.query().unwrap_or_default();
                let found = form_urlencoded_pairs(query).any(|(n, v)| n == name && v == *key);
                assert!(found, "key {name:?} missing from {query:?}");
            }
        }
    }
}

/// `name=value` pairs of a query, decoded.
fn form_urlencoded_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        Some((decode(n)?, decode(v)?))
    })
}

fn decode(text: &str) -> Option<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Frame `chunks` as the relay does and decode them as a client would.
fn chunks(chunks: Vec<String>) {
    let mut framed = BytesMut::new();
    for chunk in &chunks {
        push_event(&mut framed, chunk);
    }
    let mut decoder = SseDecoder::new();
    let mut events = decoder.push(&framed).expect("the relay's events are UTF-8");
    events.extend(decoder.finish().expect("UTF-8"));
    let data: Vec<String> = events.into_iter().map(|e| e.data).collect();
    let expected: Vec<String> = chunks
        .iter()
        .map(|c| c.replace("\r\n", "\n").replace('\r', "\n"))
        .collect();
    assert_eq!(data, expected, "the events are not the chunks");

    let mut builder = CompletionBuilder::default();
    for chunk in &chunks {
        builder.add(chunk);
    }
    let completion = builder.finish();
    assert!(completion.is_object());
    answer(completion.to_string().as_bytes(), true);
}

/// A shim's whole answer, cached and replayed both ways.
fn answer(body: &[u8], include_usage: bool) {
    let Some(answer) = CachedAnswer::from_completion(body, "target", "model") else {
        return;
    };
    let whole = answer.replay("chatcmpl-new", 1_700_000_000, false, include_usage);
    let value: Value = serde_json::from_slice(&whole).expect("a replayed answer is JSON");
    assert_eq!(value["id"], "chatcmpl-new");
    let stream = answer.replay("chatcmpl-new", 1_700_000_000, true, include_usage);
    let mut decoder = SseDecoder::new();
    let mut events = decoder.push(&stream).expect("UTF-8");
    events.extend(decoder.finish().expect("UTF-8"));
    let (last, chunks) = events.split_last().expect("at least [DONE]");
    assert_eq!(last.data, "[DONE]");
    for chunk in chunks {
        let value: Value = serde_json::from_str(&chunk.data).expect("a replayed chunk is JSON");
        assert!(value.is_object());
    }
}

fuzz_target!(|input: Input| {
    match input {
        Input::Request(r) => request(r),
        Input::Chunks(c) => chunks(c),
        Input::Completion { body, include_usage } => answer(&body, include_usage),
        Input::Error { status, kind, message } => {
            let response = error_response(&ApiError {
                status,
                kind,
                message,
                param: None,
                code: None,
            });
            let status = response.status();
            assert!(status.is_client_error() || status.is_server_error(), "{status}");
        }
    }
});
