//! What a hostile client tries, performed at the level it happens: raw
//! bytes on a socket, raw HTTP/2 frames. Path tricks past a route's
//! plugins, connections that send nothing, request bodies that trickle or
//! break, and requests a strict server must refuse.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod connections;
mod files;

/// A response read off a raw socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Parse what a server sent before closing (one response).
fn parse(bytes: &[u8]) -> Raw {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Raw {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Send `request` as written (it should say `connection: close`) and read
/// until the gateway closes.
async fn raw(addr: SocketAddr, request: &str) -> Raw {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the gateway answers and closes within 10 s")
        .expect("read");
    parse(&out)
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: gw.test\r\n{extra}connection: close\r\n\r\n")
}

fn admin_and_public_routes(echo: SocketAddr, extra: &str) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        {extra}
        [upstreams.echo]
        targets = ["{echo}"]

        [[routes]]
        name = "admin"
        path_prefix = "/api/admin"
        upstream = "echo"
        [[routes.plugins]]
        name = "api-key-auth"
        config = {{ keys = {{ alice = "alice-key" }} }}

        [[routes]]
        name = "public"
        path_prefix = "/api"
        upstream = "echo"
        "#
    )
}

const TRICKS: [&str; 6] = [
    "/api/x/../admin/x",
    "/api/./admin/x",
    "/api//admin/x",
    "/api/%61dmin/x",
    "/api/x/%2e%2e/admin/x",
    "/api/public/../../api/admin/x",
];

#[tokio::test]
async fn path_tricks_reach_the_route_they_name_and_the_upstream_gets_the_canonical_path() {
    let echo = echo_upstream("echo").await;
    let gw = TestGateway::start(&admin_and_public_routes(echo, ""), &[("api-key-auth", "api-key-auth")]).await;
    let addr = gw.addr(0);

    for path in TRICKS {
        let refused = raw(addr, &get(path, "")).await;
        assert_eq!(
            refused.status, 401,
            "{path} must meet the admin route's auth: {refused:?}"
        );
        let admitted = raw(addr, &get(&format!("{path}?q=/../x"), "x-api-key: alice-key\r\n")).await;
        assert_eq!(admitted.status, 200, "{path}: {admitted:?}");
        let echoed: serde_json::Value = serde_json::from_str(&admitted.body).expect("echo JSON");
        assert_eq!(
            echoed["path"], "/api/admin/x?q=/../x",
            "{path}: the upstream gets the canonical path, the query untouched"
        );
    }
    // The public route still serves what is really under it.
    let public = raw(addr, &get("/api/admin/../public/./x", "")).await;
    assert_eq!(public.status, 200);
    let echoed: serde_json::Value = serde_json::from_str(&public.body).unwrap();
    assert_eq!(echoed["path"], "/api/public/x");

    // Encoded separators and bad escapes are refused, naming why.
    for (path, why) in [
        ("/api/x%2F..%2Fadmin/x", "encoded '/'"),
        ("/api/x%5c..%5cadmin/x", "encoded '/'"),
        ("/api/%zz", "two hex digits"),
    ] {
        let refused = raw(addr, &get(path, "")).await;
        assert_eq!(refused.status, 400, "{path}: {refused:?}");
        assert_eq!(refused.header("x-weir-error"), Some("bad-request"));
        assert!(refused.body.contains(why), "{path}: {}", refused.body);
    }

    // The same over HTTP/2, frames sent as written.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    for path in TRICKS {
        let request = http::Request::get(format!("http://gw.test{path}")).body(()).unwrap();
        assert_eq!(request.uri().path(), path, "sent as written");
        let (response, _) = client.send_request(request, true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 401, "HTTP/2 {path}");
        client = client.ready().await.unwrap();
    }
    gw.stop().await;
}

#[tokio::test]
async fn escaped_slashes_can_be_kept_and_slashes_left_unmerged() {
    let echo = echo_upstream("echo").await;
    let extra = "[http]\nescaped_slashes = \"keep\"\nmerge_slashes = false";
    let gw = TestGateway::start(
        &admin_and_public_routes(echo, extra),
        &[("api-key-auth", "api-key-auth")],
    )
    .await;
    let kept = raw(gw.addr(0), &get("/api/a%2fb//c/../d", "")).await;
    assert_eq!(kept.status, 200, "{kept:?}");
    let echoed: serde_json::Value = serde_json::from_str(&kept.body).unwrap();
    assert_eq!(echoed["path"], "/api/a%2Fb//d");
    gw.stop().await;
}

#[tokio::test]
async fn malformed_request_bodies_are_client_errors_and_open_no_circuit() {
    let (a, b) = (echo_upstream("a").await, echo_upstream("b").await);
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        [upstreams.pool]
        targets = ["{a}", "{b}"]
        eject_after_failures = 2
        [[routes]]
        name = "all"
        upstream = "pool"
        "#
    );
    let gw = TestGateway::start(&config, &[]).await;
    let addr = gw.addr(0);
    for i in 0..8 {
        let bad = "POST /upload HTTP/1.1\r\nhost: gw.test\r\ntransfer-encoding: chunked\r\n\
                   connection: close\r\n\r\n5\r\nhello\r\nfffffffffffffffffffffff\r\n";
        let answer = raw(addr, bad).await;
        assert_eq!(answer.status, 400, "request {i}: {answer:?}");
        assert_eq!(answer.header("x-weir-error"), Some("request-body"));
        for internal in [
            a.to_string(),
            b.to_string(),
            "SendRequest".into(),
            "client error".into(),
        ] {
            assert!(
                !answer.body.contains(&internal),
                "the answer leaks {internal:?}: {}",
                answer.body
            );
        }
    }
    let routes = gw.admin_json("/routes").await;
    let targets = routes["routes"][0]["target_status"]
        .as_array()
        .expect("targets")
        .clone();
    assert_eq!(targets.len(), 2, "{routes}");
    for target in &targets {
        assert_eq!(
            target["circuit"], "closed",
            "a client's bad body is not the target's failure: {routes}"
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let answer = client().get(gw.url("/x")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        seen.insert(answer.headers()["x-upstream"].to_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "both targets still serve");
    gw.stop().await;
}

#[tokio::test]
async fn upstream_failures_are_answered_without_internals() {
    let dead = dead_address().await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.gone]
        targets = ["{dead}"]
        [[routes]]
        name = "all"
        upstream = "gone"
        "#
    );
    let gw = TestGateway::start(&config, &[]).await;
    let answer = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(answer.status(), 502);
    let body = answer.text().await.unwrap();
    assert!(body.contains("upstream gone"), "names the upstream: {body}");
    assert!(!body.contains(&dead.to_string()), "no target address: {body}");
    assert!(!body.contains("Connection refused"), "no error chain: {body}");
    gw.stop().await;
}

#[tokio::test]
async fn requests_a_strict_server_refuses_are_refused() {
    let echo = echo_upstream("echo").await;
    let named = echo_upstream("named").await;
    // An upstream that switches protocols nobody asked for.
    let switching = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let switching_addr = switching.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = switching.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: raw\r\nconnection: upgrade\r\n\r\nhello")
                    .await;
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{echo}"]
        [upstreams.named]
        targets = ["{named}"]
        [upstreams.switching]
        targets = ["{switching_addr}"]
        [[routes]]
        name = "named"
        host = "named.test"
        upstream = "named"
        [[routes]]
        name = "trace"
        path_prefix = "/trace"
        methods = ["TRACE"]
        upstream = "echo"
        [[routes]]
        name = "switch"
        path_prefix = "/switch"
        upstream = "switching"
        [[routes]]
        name = "all"
        upstream = "echo"
        "#
    );
    let gw = TestGateway::start(&config, &[]).await;
    let addr = gw.addr(0);

    let no_host = raw(addr, "GET /x HTTP/1.1\r\nconnection: close\r\n\r\n").await;
    assert_eq!(no_host.status, 400, "{no_host:?}");
    assert!(no_host.body.contains("host header"), "{}", no_host.body);
    let two_hosts = raw(
        addr,
        "GET /x HTTP/1.1\r\nhost: a.test\r\nhost: named.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(two_hosts.status, 400, "{two_hosts:?}");
    let http10 = raw(addr, "GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(http10.status, 200, "HTTP/1.0 needs no host: {http10:?}");

    let connect = raw(
        addr,
        "CONNECT gw.test:443 HTTP/1.1\r\nhost: gw.test:443\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(connect.status, 405, "{connect:?}");
    let trace = raw(addr, "TRACE /x HTTP/1.1\r\nhost: gw.test\r\nconnection: close\r\n\r\n").await;
    assert_eq!(trace.status, 405, "{trace:?}");
    assert_eq!(trace.header("x-weir-error"), Some("method-not-allowed"));
    let allowed = raw(
        addr,
        "TRACE /trace HTTP/1.1\r\nhost: gw.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(allowed.status, 200, "a route naming TRACE takes it: {allowed:?}");

    let switched = raw(addr, &get("/switch", "")).await;
    assert_eq!(switched.status, 502, "an unasked 101 is not passed on: {switched:?}");
    assert!(!switched.body.contains("hello"));

    let spoofed = raw(addr, &get("/x", "x-real-ip: 203.0.113.7\r\n")).await;
    let echoed: serde_json::Value = serde_json::from_str(&spoofed.body).unwrap();
    assert_eq!(echoed["headers"]["x-real-ip"], "127.0.0.1", "{echoed}");

    let dotted = raw(
        addr,
        "GET /x HTTP/1.1\r\nhost: named.test.\r\nconnection: close\r\n\r\n",
    )
    .await;
    let echoed: serde_json::Value = serde_json::from_str(&dotted.body).unwrap();
    assert_eq!(dotted.status, 200);
    assert_eq!(echoed["upstream"], "named", "a trailing dot names the same host");
    gw.stop().await;
}

#[tokio::test]
async fn a_plugins_forwarding_header_wins_and_a_clients_does_not() {
    let echo = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{echo}"]
        [[routes]]
        name = "behind-tls"
        path_prefix = "/tls"
        upstream = "echo"
        [[routes.plugins]]
        name = "headers"
        config = {{ request = {{ set = {{ x-forwarded-proto = "https" }} }} }}
        [[routes]]
        name = "plain"
        upstream = "echo"
        "#
    );
    let gw = TestGateway::start(&config, &[("headers", "headers")]).await;
    let spoof = "x-forwarded-proto: https\r\nx-forwarded-host: evil.test\r\nx-real-ip: 203.0.113.7\r\n";
    let plain = raw(gw.addr(0), &get("/x", spoof)).await;
    let seen: serde_json::Value = serde_json::from_str(&plain.body).unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-host"], "gw.test", "{seen}");
    assert_eq!(seen["headers"]["x-real-ip"], "127.0.0.1", "{seen}");
    let set = raw(gw.addr(0), &get("/tls/x", "")).await;
    let seen: serde_json::Value = serde_json::from_str(&set.body).unwrap();
    assert_eq!(
        seen["headers"]["x-forwarded-proto"], "https",
        "the plugin's set wins: {seen}"
    );
    gw.stop().await;
}
