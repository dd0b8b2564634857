//! Upstreams: verified TLS, failures answered 502/504, round robin past a dead target, connection
//! reuse, and the resend of an idempotent request on a connection the upstream closed.

use super::*;

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
