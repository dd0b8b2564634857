//! Clients that hold the gateway's places: silent and quiet connections, slow request bodies.

use super::*;

/// Read from `stream` until it closes; how long that took, or `None` if
/// it stayed open for `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut sink = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn connections_that_send_nothing_or_go_quiet_are_closed() {
    let echo = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [limits]
        max_connections = 2
        header_read_timeout_ms = 400
        idle_timeout_ms = 400
        [upstreams.echo]
        targets = ["{echo}"]
        [[routes]]
        name = "all"
        upstream = "echo"
        "#
    );
    let gw = TestGateway::start(&config, &[]).await;
    let addr = gw.addr(0);
    let bound = Duration::from_secs(5);

    // Two silent connections take every place; a third client waits.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut preface_only = TcpStream::connect(addr).await.unwrap();
    preface_only
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let answer = raw(addr, &get("/x", "")).await;
        (answer.status, started.elapsed())
    });
    let silent_for = closed_within(&mut silent, bound)
        .await
        .expect("a connection that sends nothing is closed");
    let preface_for = closed_within(&mut preface_only, bound)
        .await
        .expect("an HTTP/2 connection with no stream is closed");
    for (what, took) in [("silent", silent_for), ("preface only", preface_for)] {
        assert!(
            took >= Duration::from_millis(250),
            "{what} closed by the timeout, not at once: {took:?}"
        );
    }
    let (status, waited) = waiting.await.unwrap();
    assert_eq!(
        status, 200,
        "the waiting client is served once the silent ones are gone"
    );
    assert!(waited < bound, "{waited:?}");

    // HTTP/1.1 keep-alive: after its request, a quiet connection is closed.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /x HTTP/1.1\r\nhost: gw.test\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let idle_for = closed_within(&mut kept, bound)
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(idle_for >= Duration::from_millis(250), "{idle_for:?}");

    // A request in flight longer than the idle timeout is not cut.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get("http://gw.test/slow/1000").body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = response.await.expect("a slow answer on a busy connection arrives");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        chunk.expect("the whole body arrives");
    }
    drop(client);
    // The connection then goes idle and is closed (the driver ends).
    tokio::time::timeout(bound, driver)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .unwrap()
        .ok();
    gw.stop().await;
}

/// Send `head`, then the body one byte every `every`, for as long as the
/// gateway reads; the answer and when it came.
async fn trickle(addr: SocketAddr, head: &str, every: Duration) -> (Raw, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        for _ in 0..200 {
            tokio::time::sleep(every).await;
            if writer.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), reader.read_to_end(&mut out)).await;
    writing.abort();
    (parse(&out), started.elapsed())
}

#[tokio::test]
async fn slow_request_bodies_end_in_408_and_give_their_places_back() {
    let echo = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [limits]
        max_concurrent_requests = 4
        min_request_body_rate = 100
        request_body_rate_grace_ms = 500
        request_body_timeout_ms = 700
        [upstreams.echo]
        targets = ["{echo}"]
        [[routes]]
        name = "buffered"
        path_prefix = "/buffered"
        upstream = "echo"
        [[routes.plugins]]
        name = "body"
        [[routes]]
        name = "streamed"
        upstream = "echo"
        "#
    );
    let gw = TestGateway::start(&config, &[("body", "guest-body")]).await;
    let addr = gw.addr(0);
    let head = |path: &str| {
        format!("POST {path} HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n")
    };

    // Four clients trickling a byte every 100 ms (10 bytes/s) hold every
    // place of the gateway, on a buffering route and a streaming one...
    let mut slow = Vec::new();
    for i in 0..4 {
        let path = if i % 2 == 0 { "/buffered/up" } else { "/up" };
        let head = head(path);
        slow.push(tokio::spawn(async move {
            trickle(addr, &head, Duration::from_millis(100)).await
        }));
    }
    wait_for(
        "the slow clients to hold every place",
        Duration::from_secs(10),
        || async {
            let answer = client().get(gw.url("/x")).send().await.ok()?;
            (answer.status() == 503).then_some(())
        },
    )
    .await;
    // ... until the minimum rate cuts them off, well before they finish.
    for client in slow {
        let (answer, took) = client.await.unwrap();
        assert_eq!(answer.status, 408, "{answer:?}");
        assert_eq!(answer.header("x-weir-error"), Some("request-body-timeout"));
        assert!(answer.body.contains("bytes/s"), "{}", answer.body);
        assert!(
            took < Duration::from_secs(10),
            "cut off by the rate, not by finishing: {took:?}"
        );
    }
    let answer = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(answer.status(), 200, "the places are free again");

    // A body that stops is ended at the pause limit.
    for path in ["/buffered/up", "/up"] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        stream
            .write_all(format!("{}{}", head(path), "x".repeat(500)).as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
            .await
            .expect("a stalled body is answered")
            .unwrap();
        let answer = parse(&out);
        assert_eq!(answer.status, 408, "{path}: {answer:?}");
        assert!(
            answer.body.contains("no request body data for 700 ms"),
            "{}",
            answer.body
        );
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "{:?}",
            started.elapsed()
        );
    }
    gw.stop().await;
}
