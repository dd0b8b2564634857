//! How the gateway reads client requests: the size and time limits every
//! request and connection is held to (each default written once, in
//! `Default`), and the canonical form of request paths.

use serde::Deserialize;

/// How the gateway reads requests: the canonical form of paths (see
/// [`weir_core::path`]).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Merge runs of `/` in a path into one.
    pub merge_slashes: bool,
    /// `reject` (400) or `keep` paths holding `%2F`, `%5C` or `\`.
    pub escaped_slashes: weir_core::path::EscapedSlashes,
}

impl Default for HttpConfig {
    fn default() -> Self {
        let policy = weir_core::path::PathPolicy::default();
        HttpConfig {
            merge_slashes: policy.merge_slashes,
            escaped_slashes: policy.escaped_slashes,
        }
    }
}

impl HttpConfig {
    /// The path policy these settings make.
    pub fn path_policy(&self) -> weir_core::path::PathPolicy {
        weir_core::path::PathPolicy {
            merge_slashes: self.merge_slashes,
            escaped_slashes: self.escaped_slashes,
        }
    }
}

/// Size limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body buffered for a plugin that asked for it
    /// (over it: 413).
    pub max_request_body_bytes: usize,
    /// Largest response body buffered for a plugin that asked for it
    /// (over it: 502).
    pub max_response_body_bytes: usize,
    /// Largest request head (request line and headers) accepted over
    /// HTTP/1.1 (over it: 431). At least 8192.
    pub max_header_bytes: usize,
    /// Most headers accepted in one request (over it: 431).
    pub max_headers: usize,
    /// Most requests in flight in the whole gateway, counted until their
    /// response body ends; more are answered 503 with `retry-after` at once
    /// instead of queueing. Absent: no limit.
    pub max_concurrent_requests: Option<usize>,
    /// Time a client has to send a request's head, in milliseconds; a
    /// slower one is disconnected (slowloris). For a connection's first
    /// request it counts from the moment the connection was accepted, TLS
    /// handshake and protocol detection included, so a connection that
    /// sends nothing is closed too.
    pub header_read_timeout_ms: u64,
    /// How long a client connection may stay open with no request in
    /// flight (HTTP/1.1 keep-alive between requests, HTTP/2 with no open
    /// stream), in milliseconds, before the gateway closes it.
    pub idle_timeout_ms: u64,
    /// How often an HTTP/2 connection is pinged, in milliseconds; a client
    /// that does not answer a ping within `http2_keepalive_timeout_ms` is
    /// disconnected. 0: no pings.
    pub http2_keepalive_interval_ms: u64,
    /// How long an HTTP/2 ping may go unanswered, in milliseconds.
    pub http2_keepalive_timeout_ms: u64,
    /// The longest pause between two pieces of a request body, in
    /// milliseconds; a longer one ends the request with 408.
    pub request_body_timeout_ms: u64,
    /// The slowest a client may send a request body, in bytes per second,
    /// counted over the time the gateway waited for it (not while the
    /// upstream was slow to take it) once `request_body_rate_grace_ms`
    /// have passed; a slower one ends the request with 408. 0: no minimum.
    pub min_request_body_rate: u64,
    /// How long a request body may be slower than `min_request_body_rate`
    /// before the rate is enforced, in milliseconds.
    pub request_body_rate_grace_ms: u64,
    /// Most open client connections; further ones wait in the kernel's
    /// accept queue until one closes. Absent: no limit.
    pub max_connections: Option<usize>,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// On shutdown (SIGTERM, SIGINT), how long requests in flight may take
    /// to finish before their connections are closed, in milliseconds.
    pub shutdown_grace_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_body_bytes: 1 << 20,
            max_response_body_bytes: 8 << 20,
            max_header_bytes: 64 << 10,
            max_headers: 100,
            max_concurrent_requests: None,
            header_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            http2_keepalive_interval_ms: 30_000,
            http2_keepalive_timeout_ms: 20_000,
            request_body_timeout_ms: 30_000,
            min_request_body_rate: 240,
            request_body_rate_grace_ms: 5_000,
            max_connections: None,
            max_concurrent_streams: 256,
            shutdown_grace_ms: 30_000,
        }
    }
}
