//! Listeners and protocols: HTTP/2 with prior knowledge, TLS with ALPN, malformed and oversized
//! requests, proxy headers.

use super::*;

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
