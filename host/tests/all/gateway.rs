//! The gateway end to end: real HTTP over HTTP/1.1, HTTP/2 and TLS through
//! chains of plugins built from `plugins/`, to a real upstream.

use crate::common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const AUTH_RATE_HEADERS: &[(&str, &str)] = &[
    ("api-key-auth", "api-key-auth"),
    ("rate-limit", "rate-limit"),
    ("headers", "headers"),
];

fn three_plugin_config(upstream: std::net::SocketAddr, capacity: u32) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"

        [plugin.rate-limit]
        kv = true

        [upstreams.echo]
        targets = ["{upstream}"]

        [[routes]]
        name = "api"
        path_prefix = "/api"
        upstream = "echo"

        [[routes.plugins]]
        name = "api-key-auth"
        config = {{ keys = {{ alice = "alice-key", bob = "bob-key" }} }}

        [[routes.plugins]]
        name = "rate-limit"
        config = {{ capacity = {capacity}, refill_per_second = 0.001 }}

        [[routes.plugins]]
        name = "headers"
        config = {{ request = {{ set = {{ x-team = "platform" }}, remove = ["x-drop-me"] }}, response = {{ add = {{ x-served-by = "weir" }} }}, path_prefix = {{ from = "/api", to = "/v1" }} }}
        "#
    )
}

#[tokio::test]
async fn chain_of_three_plugins_authenticates_rewrites_and_limits() {
    let upstream = echo_upstream("echo").await;
    let gw = TestGateway::start(&three_plugin_config(upstream, 3), AUTH_RATE_HEADERS).await;
    let http = client();

    // No key: 401 with a challenge, and the upstream is never reached.
    let response = http.get(gw.url("/api/items")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with("ApiKey"), "{challenge}");
    assert!(response.headers().get("x-upstream").is_none());

    // Wrong key: 401 too.
    let response = http
        .get(gw.url("/api/items"))
        .header("x-api-key", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("invalid API key"));

    // Right key: 200; rewrites visible at the upstream and to the client.
    for expected_remaining in ["2", "1", "0"] {
        let response = http
            .get(gw.url("/api/items?page=2"))
            .header("x-api-key", "alice-key")
            .header("x-drop-me", "secret")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-served-by"], "weir");
        assert_eq!(response.headers()["ratelimit-limit"], "3");
        assert_eq!(response.headers()["ratelimit-remaining"], expected_remaining);
        let seen = echoed(response).await;
        assert_eq!(seen["path"], "/v1/items?page=2");
        assert_eq!(seen["headers"]["x-team"], "platform");
        assert!(seen["headers"].get("x-drop-me").is_none(), "{seen}");
        assert!(
            seen["headers"].get("x-api-key").is_none(),
            "key must not reach the upstream: {seen}"
        );
    }

    // Bucket empty: 429 with retry-after and ratelimit-* headers.
    let response = http
        .get(gw.url("/api/items"))
        .header("x-api-key", "alice-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "retry-after {retry_after}");
    assert_eq!(response.headers()["ratelimit-remaining"], "0");
    assert_eq!(response.headers()["ratelimit-limit"], "3");
    assert!(response.headers().contains_key("ratelimit-reset"));
    // Only plugins that ran before the answer see the response: headers
    // comes after rate-limit in the chain.
    assert!(response.headers().get("x-served-by").is_none());

    // Another consumer has its own bucket.
    let response = http
        .get(gw.url("/api/items"))
        .header("x-api-key", "bob-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn http2_with_prior_knowledge_runs_the_same_chain() {
    let upstream = echo_upstream("echo").await;
    let gw = TestGateway::start(&three_plugin_config(upstream, 100), AUTH_RATE_HEADERS).await;
    let http = h2_client();
    let response = http.get(gw.url("/api/x")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 401);
    let response = http
        .get(gw.url("/api/x"))
        .header("x-api-key", "bob-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-served-by"], "weir");
    let seen = echoed(response).await;
    assert_eq!(seen["path"], "/v1/x");
    gw.stop().await;
}

#[tokio::test]
async fn tls_listener_serves_http2_and_http1_by_alpn() {
    let upstream = echo_upstream("echo").await;
    let dir = TestGateway::dir_with_plugins(AUTH_RATE_HEADERS);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let config = three_plugin_config(upstream, 100).replacen(
        "address = \"127.0.0.1:0\"",
        "address = \"127.0.0.1:0\"\n        tls = { cert = \"cert.pem\", key = \"key.pem\" }",
        1,
    );
    let running = start_in(dir.path(), &config).await.unwrap();
    let port = running.listeners[0].port();
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let url = format!("https://localhost:{port}/api/tls");

    let h2 = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(root.clone())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let response = h2.get(&url).header("x-api-key", "alice-key").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2, "ALPN should pick h2");
    let seen = echoed(response).await;
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");

    let h1 = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .add_root_certificate(root)
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let response = h1.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 401);
    running.shutdown().await;
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_configured_ca() {
    let dir = TestGateway::dir_with_plugins(&[]);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("upstream.pem"), dir.path().join("upstream-key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let tls = weir::proxy::listener::tls_acceptor(&cert_file, &key_file).unwrap();
    let (listener, addr) = weir::proxy::listener::bind("127.0.0.1:0").await.unwrap();
    tokio::spawn(weir::demo::serve_tls(listener, "secure".into(), tls));
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.trusted]
        targets = ["https://localhost:{port}"]
        ca = "upstream.pem"
        [upstreams.untrusted]
        targets = ["https://localhost:{port}"]
        [[routes]]
        name = "trusted"
        path_prefix = "/trusted"
        upstream = "trusted"
        [[routes]]
        name = "untrusted"
        path_prefix = "/untrusted"
        upstream = "untrusted"
        "#,
        port = addr.port()
    );
    let running = start_in(dir.path(), &config).await.unwrap();
    let base = format!("http://{}", running.listeners[0]);
    let response = client().get(format!("{base}/trusted/x")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-upstream"], "secure");
    // Without the CA the upstream's certificate is refused: 502, not a
    // silently unverified connection.
    let response = client().get(format!("{base}/untrusted/x")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    running.shutdown().await;
}

#[tokio::test]
async fn routes_have_their_own_chains() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{upstream}"]

        [[routes]]
        name = "first"
        path_prefix = "/first"
        upstream = "echo"
        [[routes.plugins]]
        name = "echo-config"
        config = {{ name = "one", route = "first" }}
        [[routes.plugins]]
        name = "headers"
        config = {{ request = {{ add = {{ x-only-first = "yes" }} }} }}

        [[routes]]
        name = "second"
        path_prefix = "/second"
        methods = ["POST"]
        upstream = "echo"
        [[routes.plugins]]
        name = "echo-config"
        config = {{ name = "two", route = "second" }}
        [[routes.plugins]]
        name = "echo-config-fresh"
        config = {{ name = "three", route = "second" }}

        [[routes]]
        name = "twice"
        path_prefix = "/twice"
        upstream = "echo"
        [[routes.plugins]]
        name = "headers"
        config = {{ request = {{ set = {{ x-step = "one", x-first = "yes" }} }} }}
        [[routes.plugins]]
        name = "headers"
        config = {{ request = {{ set = {{ x-step = "two" }} }} }}

        [plugin.echo-config-fresh]
        instance = "fresh"
        "#
    );
    let gw = TestGateway::start(
        &config,
        &[
            ("echo-config", "guest-echo-config"),
            ("echo-config-fresh", "guest-echo-config"),
            ("headers", "headers"),
        ],
    )
    .await;
    let http = client();

    let seen = echoed(http.get(gw.url("/first/a")).send().await.unwrap()).await;
    let config_seen: Value = serde_json::from_str(seen["headers"]["x-config"].as_str().unwrap()).unwrap();
    assert_eq!(config_seen["route"], "first");
    assert_eq!(seen["headers"]["x-only-first"], "yes");

    let seen = echoed(http.post(gw.url("/second/b")).body("hi").send().await.unwrap()).await;
    let config_seen: Value = serde_json::from_str(seen["headers"]["x-config"].as_str().unwrap()).unwrap();
    assert_eq!(config_seen["route"], "second");
    assert!(seen["headers"].get("x-only-first").is_none());
    assert_eq!(seen["body"], "hi");
    // Properties travel along the chain: each plugin appended its name.
    assert_eq!(seen["headers"]["x-seen-by"], "two,three");
    // The fresh-instance plugin never sees a second request; the pooled
    // one reuses its warm instance.
    let seen = echoed(http.post(gw.url("/second/b")).send().await.unwrap()).await;
    assert_eq!(
        seen["headers"]["x-instance-calls"], "1",
        "fresh instance per request: {seen}"
    );
    let first = echoed(http.get(gw.url("/first/a")).send().await.unwrap()).await;
    let calls: u64 = first["headers"]["x-instance-calls"].as_str().unwrap().parse().unwrap();
    assert!(calls >= 2, "pooled instance is reused: {first}");

    // One plugin twice in a chain: each place keeps its own config.
    let seen = echoed(http.get(gw.url("/twice")).send().await.unwrap()).await;
    assert_eq!(seen["headers"]["x-first"], "yes");
    assert_eq!(seen["headers"]["x-step"], "two");

    // Method and prefix matching: GET /second matches no route.
    let response = http.get(gw.url("/second/b")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-weir-error"], "no-route");
    let response = http.get(gw.url("/firstly")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    gw.stop().await;
}

/// One listener and one route, with no plugins, to the echo upstream.
fn plain_config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "plain"
        upstream = "echo"
        "#
    )
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_gateway_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = echo_upstream("echo").await;
    let gw = TestGateway::start(&plain_config(upstream), &[]).await;
    for garbage in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nbad header line\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
    ] {
        let mut stream = tokio::net::TcpStream::connect(gw.addr(0)).await.unwrap();
        stream.write_all(garbage).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{garbage:?} got {answer:?}");
    }
    assert_eq!(client().get(gw.url("/")).send().await.unwrap().status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn proxy_headers_follow_rfc_9110() {
    let upstream = echo_upstream("echo").await;
    let gw = TestGateway::start(&plain_config(upstream), &[]).await;
    let response = client()
        .get(gw.url("/x"))
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "must-not-pass")
        .header("keep-alive", "timeout=5")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    let seen = echoed(response).await;
    let headers = &seen["headers"];
    assert!(headers.get("x-hop").is_none(), "{headers}");
    assert!(headers.get("keep-alive").is_none(), "{headers}");
    assert_eq!(headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert!(
        headers["forwarded"]
            .as_str()
            .unwrap()
            .starts_with("for=127.0.0.1;proto=http")
    );
    // The upstream sees its own address as host unless preserve_host is set.
    assert_eq!(headers["host"], upstream.to_string());
    gw.stop().await;
}

#[tokio::test]
async fn upstream_failures_answer_502_and_504_naming_the_upstream() {
    let dead = dead_address().await;
    let slow = echo_upstream("slow").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.down]
        targets = ["{dead}"]
        [upstreams.slow]
        targets = ["{slow}"]
        response_timeout_ms = 200
        [[routes]]
        name = "down"
        path_prefix = "/down"
        upstream = "down"
        [[routes]]
        name = "slow"
        path_prefix = "/slow"
        upstream = "slow"
        "#
    );
    let gw = TestGateway::start(&config, &[]).await;
    let response = client().get(gw.url("/down")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let body = response.text().await.unwrap();
    // Named by its upstream; the target's address stays in the log.
    assert!(
        body.contains("upstream down: cannot connect") && !body.contains(&dead.to_string()),
        "{body}"
    );

    let started = std::time::Instant::now();
    let response = client().get(gw.url("/slow/5000")).send().await.unwrap();
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert!(response.text().await.unwrap().contains("upstream slow"));
    gw.stop().await;
}

#[tokio::test]
async fn round_robin_spreads_requests_and_skips_a_dead_target() {
    let a = echo_upstream("a").await;
    let b = echo_upstream("b").await;
    let dead = dead_address().await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.pool]
        targets = ["{a}", "{dead}", "{b}"]
        [[routes]]
        name = "pool"
        upstream = "pool"
        "#
    );
    let gw = TestGateway::start(&config, &[]).await;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..12 {
        let response = client().get(gw.url("/")).send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "a dead target is skipped for a replayable request"
        );
        let name = response.headers()["x-upstream"].to_str().unwrap().to_string();
        *seen.entry(name).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.values().all(|n| *n >= 4), "{seen:?}");
    gw.stop().await;
}

#[tokio::test]
async fn upstream_connections_are_reused_after_every_kind_of_response() {
    let upstream = echo_upstream("echo").await;
    let gw = TestGateway::start(&plain_config(upstream), &[]).await;
    let client = client();
    let peer = |seen: Value| seen["peer"].as_str().unwrap().to_string();
    let first = peer(echoed(client.get(gw.url("/a")).send().await.unwrap()).await);
    // Between two echoes, responses of every shape: chunked, empty, HEAD,
    // error status, and a request with a body.
    let others: Vec<reqwest::RequestBuilder> = vec![
        client.get(gw.url("/stream/3")),
        client.get(gw.url("/status/204")),
        client.head(gw.url("/c")),
        client.get(gw.url("/status/404")),
        client.post(gw.url("/d")).body("payload"),
    ];
    for other in others {
        let response = other.send().await.unwrap();
        let status = response.status();
        response.bytes().await.unwrap();
        assert!(status.as_u16() < 500, "{status}");
        let again = peer(echoed(client.get(gw.url("/b")).send().await.unwrap()).await);
        assert_eq!(again, first, "one upstream connection serves sequential requests");
    }
    gw.stop().await;
}

/// An upstream that answers the first request on each connection (kept
/// alive, nothing says it will close) and, when another request comes on
/// that connection, closes it without an answer: the race of a server
/// whose idle timeout fires just as a request goes out on a kept-alive
/// connection, forced every time. Counts connections accepted and
/// requests dropped so.
async fn closing_upstream() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (a, d) = (accepted.clone(), dropped.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let dropped = d.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nclosed")
                    .await;
                // The next request on this connection is read, then the
                // connection closed with no answer.
                if let Ok(n) = stream.read(&mut chunk).await
                    && n > 0
                {
                    dropped.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, accepted, dropped)
}

#[tokio::test]
async fn an_idempotent_request_on_a_connection_the_upstream_closed_is_sent_again_on_another() {
    let (upstream, accepted, dropped) = closing_upstream().await;
    let gw = TestGateway::start(&plain_config(upstream), &[]).await;
    let client = client();
    for i in 0..20 {
        let response = client.get(gw.url(&format!("/{i}"))).send().await.unwrap();
        assert_eq!(response.status(), 200, "request {i}");
        assert_eq!(response.text().await.unwrap(), "closed");
    }
    // Every request after the first went out on the kept-alive connection,
    // which the upstream closed; each was sent again on a new one.
    assert_eq!(dropped.load(Ordering::SeqCst), 19, "the race was not forced every time");
    assert_eq!(accepted.load(Ordering::SeqCst), 20);

    // A POST may have been acted on: it is not sent again.
    let response = client.post(gw.url("/order")).body("once").send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-weir-error"], "upstream-failed");
    assert_eq!(dropped.load(Ordering::SeqCst), 20);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        20,
        "the POST was sent on a new connection"
    );
    gw.stop().await;
}

#[tokio::test]
async fn oversized_headers_get_431_and_oversized_buffered_bodies_413() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [limits]
        max_request_body_bytes = 1024
        max_header_bytes = 8192
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "body"
        path_prefix = "/body"
        upstream = "echo"
        [[routes.plugins]]
        name = "body"
        [[routes]]
        name = "plain"
        upstream = "echo"
        "#
    );
    let gw = TestGateway::start(&config, &[("body", "guest-body")]).await;
    let http = client();

    let response = http
        .get(gw.url("/"))
        .header("x-big", "a".repeat(16 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);

    let response = http.post(gw.url("/body")).body(vec![b'x'; 4096]).send().await.unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["x-weir-error"], "request-body-too-large");

    // Under the limit, the plugin sees and rewrites both bodies.
    let response = http.post(gw.url("/body")).body("abc").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.ends_with('!'), "response body rewritten: {text}");
    let seen: Value = serde_json::from_str(text.trim_end_matches('!')).unwrap();
    assert_eq!(seen["body"], "cba");

    // A route without a body plugin streams large bodies untouched.
    let seen = echoed(
        http.post(gw.url("/plain"))
            .body(vec![b'y'; 64 * 1024])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen["body"].as_str().unwrap().len(), 64 * 1024);

    // The gateway still serves after all of that.
    assert_eq!(http.get(gw.url("/")).send().await.unwrap().status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn streamed_response_chunks_are_transformed_by_plugins() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "stream"
        upstream = "echo"
        [[routes.plugins]]
        name = "upper"
        "#
    );
    let gw = TestGateway::start(&config, &[("upper", "guest-chunks")]).await;
    for _ in 0..3 {
        let response = client().get(gw.url("/stream/50")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let expected: String = (0..50).map(|i| format!("CHUNK {i}\n")).collect();
        assert_eq!(text, expected);
    }
    gw.stop().await;
}

#[tokio::test]
async fn capabilities_need_grants() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [secrets.token]
        value = "s3cret"
        [secrets.other]
        value = "not-yours"
        [plugin.granted]
        kv = true
        secrets = ["token"]
        outbound_hosts = ["{upstream}"]
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "granted"
        host = "granted.test"
        upstream = "echo"
        [[routes.plugins]]
        name = "granted"
        [[routes]]
        name = "bare"
        host = "bare.test"
        upstream = "echo"
        [[routes.plugins]]
        name = "bare"
        "#
    );
    let gw = TestGateway::start(
        &config,
        &[("granted", "guest-echo-config"), ("bare", "guest-echo-config")],
    )
    .await;
    let http = client();
    // The first path segment picks the route by host; the plugin sees the rest.
    let get = |path: &str| {
        let (host, rest) = path.trim_start_matches('/').split_once('/').unwrap();
        http.get(gw.url(&format!("/{rest}")))
            .header("host", format!("{host}.test"))
            .send()
    };

    // kv: granted counts; not granted gets a clear error value.
    assert_eq!(get("/granted/kv").await.unwrap().text().await.unwrap(), "1");
    assert_eq!(get("/granted/kv").await.unwrap().text().await.unwrap(), "2");
    let response = get("/bare/kv").await.unwrap();
    assert_eq!(response.status(), 500);
    let text = response.text().await.unwrap();
    assert!(text.contains("NotGranted") && text.contains("kv"), "{text}");

    // Secrets: only the granted one.
    assert_eq!(
        get("/granted/secret/token").await.unwrap().text().await.unwrap(),
        "s3cret"
    );
    let text = get("/granted/secret/other").await.unwrap().text().await.unwrap();
    assert!(text.contains("NotGranted") && text.contains("other"), "{text}");

    // Outbound HTTP: only to granted hosts.
    let response = get(&format!("/granted/fetch?url=http://{upstream}/hello"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("\"/hello\""));
    let response = get(&format!("/bare/fetch?url=http://{upstream}/hello")).await.unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.text().await.unwrap().contains("NotGranted"));
    // Nor to a cloud metadata address it was not granted.
    let response = get("/granted/fetch?url=http://169.254.169.254/latest/meta-data/")
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.text().await.unwrap().contains("NotGranted"));
    // One plugin call cannot fan out into unbounded outbound calls.
    let text = get(&format!("/granted/fetch-many?url=http://{upstream}/hello"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with("16 ok ") && text.contains("more than 16 outbound calls"),
        "{text}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn admin_api_lists_plugins_and_routes_behind_a_token() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        token = "admin-token"
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "api"
        upstream = "echo"
        [[routes.plugins]]
        name = "headers"
        "#
    );
    let gw = TestGateway::start(&config, &[("headers", "headers")]).await;
    let http = client();
    assert_eq!(http.get(gw.admin_url("/plugins")).send().await.unwrap().status(), 401);
    let plugins: Value = http
        .get(gw.admin_url("/plugins"))
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plugin = &plugins["plugins"][0];
    assert_eq!(plugin["name"], "headers");
    assert_eq!(plugin["version"].as_str().unwrap().len(), 64);
    assert_eq!(plugin["routes"][0], "api");
    let routes: Value = http
        .get(gw.admin_url("/routes"))
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(routes["routes"][0]["plugins"][0], "headers");
    gw.stop().await;
}

/// Config reloads the admin API has counted (ok and failed).
async fn config_reloads(http: &reqwest::Client, admin: &str) -> f64 {
    let text = http
        .get(format!("{admin}/metrics"))
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "weir_config_reloads_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn admin_api_refuses_foreign_hosts_and_cross_site_state_changes() {
    let upstream = echo_upstream("echo").await;
    for token in [None, Some("admin-token")] {
        let config = format!(
            r#"
            [[listeners]]
            address = "127.0.0.1:0"
            [admin]
            address = "127.0.0.1:0"
            allowed_hosts = ["weir-admin.test"]
            {}
            [upstreams.echo]
            targets = ["{upstream}"]
            [[routes]]
            name = "api"
            upstream = "echo"
            "#,
            token.map(|t| format!("token = {t:?}")).unwrap_or_default()
        );
        let gw = TestGateway::start(&config, &[]).await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let admin = gw.admin_url("");
        let port = gw.running.as_ref().unwrap().admin.unwrap().port();
        let with_token = |request: reqwest::RequestBuilder| match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let case = format!("token {token:?}");

        // DNS rebinding: a page whose name now points at 127.0.0.1 sends its
        // own name as Host. Every endpoint refuses it, naming the host.
        for host in ["attacker.example".to_string(), format!("attacker.example:{port}")] {
            for path in ["/", "/plugins", "/routes", "/metrics", "/usage", "/state", "/healthz"] {
                let response = with_token(http.get(format!("{admin}{path}")).header("host", &host))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 421, "{case}: {host} {path}");
                let body: Value = response.json().await.unwrap();
                let error = body["error"].as_str().unwrap_or_default();
                assert!(
                    error.contains(&format!("host {host:?}")),
                    "{case}: names the host: {body}"
                );
            }
        }
        // The names and addresses of this host answer, with or without port.
        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            "localhost".to_string(),
            format!("[::1]:{port}"),
            "127.0.0.2".to_string(),
            format!("weir-admin.test:{port}"),
        ] {
            let response = with_token(http.get(format!("{admin}/plugins")).header("host", &host))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{case}: {host}");
        }

        // A cross-site "simple" POST (no preflight) does not reload.
        let reloads = config_reloads(&http, &admin).await;
        let foreign = [
            vec![("origin", "http://attacker.example".to_string())],
            vec![("origin", "null".to_string())],
            vec![("origin", "http://127.0.0.1:1".to_string())],
            vec![("sec-fetch-site", "cross-site".to_string())],
        ];
        for headers in &foreign {
            let mut request = with_token(http.post(format!("{admin}/reload")))
                .header("content-type", "text/plain")
                .body("x");
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 403, "{case}: {headers:?}");
            let body: Value = response.json().await.unwrap();
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.starts_with("POST from origin"), "{case}: {body}");
        }
        // Nor does it on an endpoint that does not take POST, or with the
        // dashboard's session cookie.
        let response = with_token(http.post(format!("{admin}/plugins")))
            .header("origin", "http://attacker.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{case}");
        if let Some(token) = token {
            let login = http.get(format!("{admin}/?token={token}")).send().await.unwrap();
            assert_eq!(login.status(), 303);
            let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
            assert!(
                cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
                "{cookie}"
            );
            let session = cookie.split(';').next().unwrap().to_string();
            let response = http
                .post(format!("{admin}/reload"))
                .header("cookie", &session)
                .header("origin", "http://attacker.example")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 403, "{case}: cookie");
            let page = http
                .get(format!("{admin}/"))
                .header("cookie", &session)
                .send()
                .await
                .unwrap();
            assert_eq!(page.status(), 200, "{case}: the cookie still opens the dashboard");
        }
        assert_eq!(config_reloads(&http, &admin).await, reloads, "{case}: nothing reloaded");

        // The admin API's own page, and tools that send no Origin, may.
        for origin in [Some(format!("http://127.0.0.1:{port}")), None] {
            let mut request = with_token(http.post(format!("{admin}/reload")));
            if let Some(origin) = &origin {
                request = request.header("origin", origin);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{case}: {origin:?}");
        }
        assert_eq!(config_reloads(&http, &admin).await, reloads + 2.0, "{case}");
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_plugins_unsendable_answer_is_refused_with_500_and_the_gateway_keeps_serving() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "all"
        upstream = "echo"
        [[routes.plugins]]
        name = "echo-config"
        "#
    );
    let gw = TestGateway::start(&config, &[("echo-config", "guest-echo-config")]).await;
    // The plugin answers as asked: a fine answer first, to show the probe.
    let fine = client().get(gw.url("/reply/201/x-fine")).send().await.unwrap();
    assert_eq!(fine.status(), 201);
    assert_eq!(fine.headers()["x-fine"], "x");
    for (path, what) in [
        ("/reply/42", "status"),
        ("/reply/1000", "status"),
        ("/reply/200/bad%20name", "headers"),
        ("/reply/200/x:y", "headers"),
    ] {
        let response = client().get(gw.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 500, "{path}");
        assert_eq!(response.headers()["x-weir-error"], "plugin-output", "{path}");
        let body = response.text().await.unwrap();
        assert!(
            body.contains(&format!("plugin echo-config produced an invalid {what}")),
            "{path}: {body}"
        );
    }
    let after = client().get(gw.url("/anything")).send().await.unwrap();
    assert_eq!(after.status(), 200, "the gateway keeps serving");
    gw.stop().await;
}
