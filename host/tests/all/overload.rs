//! Load protection: requests beyond a limit are shed at once with 503 and
//! `retry-after`, admitted ones complete, and the limit frees up again.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::common::*;

/// An upstream that answers each request's head and first chunk at once,
/// then holds the body open until `release` turns true.
async fn hanging_upstream(release: tokio::sync::watch::Receiver<bool>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut release = release.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&byte[..n]),
                    }
                }
                let start = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";
                if stream.write_all(start).await.is_err() {
                    return;
                }
                let _ = release.wait_for(|released| *released).await;
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    addr
}

fn config(upstream: std::net::SocketAddr, hang: std::net::SocketAddr) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [limits]
        max_concurrent_requests = 6
        header_read_timeout_ms = 500
        [upstreams.echo]
        targets = ["{upstream}"]
        [upstreams.hang]
        targets = ["{hang}"]

        [[routes]]
        name = "hang"
        path_prefix = "/hang"
        upstream = "hang"

        [[routes]]
        name = "narrow"
        path_prefix = "/narrow"
        upstream = "echo"
        max_concurrent_requests = 2
        [[routes.plugins]]
        name = "headers"
        config = {{ path_prefix = {{ from = "/narrow", to = "/" }} }}

        [[routes]]
        name = "wide"
        upstream = "echo"
        "#
    )
}

/// Send `count` requests at once to `path`; the statuses, and the error
/// kind and retry-after of each 503.
async fn burst(url: String, count: usize) -> Vec<(u16, Option<String>, Option<String>)> {
    let mut tasks = Vec::new();
    for _ in 0..count {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let response = client().get(url).send().await.expect("request");
            let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
            let shed = (header("x-weir-error"), header("retry-after"));
            let status = response.status().as_u16();
            response.bytes().await.expect("body");
            (status, shed.0, shed.1)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    results
}

#[tokio::test]
async fn a_burst_past_a_routes_limit_is_shed_with_503_and_admitted_requests_complete() {
    let upstream = echo_upstream("echo").await;
    let hang = crate::common::dead_address().await;
    let gw = TestGateway::start(&config(upstream, hang), &[("headers", "headers")]).await;
    // Each admitted request holds its place for 3 s upstream; the burst of
    // 10 arrives well within that.
    let results = burst(gw.url("/narrow/slow/3000"), 10).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let shed: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert_eq!(ok, 2, "{results:?}");
    assert_eq!(shed.len(), 8, "{results:?}");
    for (_, kind, retry_after) in shed {
        assert_eq!(kind.as_deref(), Some("overloaded"));
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    // The places are free again once those answers ended.
    let results = burst(gw.url("/narrow/slow/10"), 2).await;
    assert!(results.iter().all(|r| r.0 == 200), "{results:?}");
    gw.stop().await;
}

#[tokio::test]
async fn the_gateways_limit_sheds_across_routes_and_counts_until_the_body_ends() {
    let upstream = echo_upstream("echo").await;
    let (release, released) = tokio::sync::watch::channel(false);
    let hang = hanging_upstream(released).await;
    let gw = TestGateway::start(&config(upstream, hang), &[("headers", "headers")]).await;
    let results = burst(gw.url("/slow/3000"), 15).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let shed = results.iter().filter(|r| r.0 == 503).count();
    assert_eq!((ok, shed), (6, 9), "{results:?}");

    // A streamed body holds its place while it streams: with six bodies
    // still open, the seventh request is shed, on any route.
    let mut open = Vec::new();
    for _ in 0..6 {
        let response = client().get(gw.url("/hang")).send().await.expect("request");
        assert_eq!(response.status(), 200);
        open.push(response);
    }
    let response = client().get(gw.url("/hello")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    // Once they end, requests are admitted again.
    release.send_replace(true);
    for response in open {
        assert_eq!(response.text().await.unwrap(), "hello");
    }
    let response = client().get(gw.url("/hello")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_many_times_the_limit_are_shed_while_memory_stays_bounded() {
    let upstream = echo_upstream("echo").await;
    let (release, released) = tokio::sync::watch::channel(false);
    let hang = hanging_upstream(released).await;
    // The gateway runs as the `weir` binary: its memory is measured apart
    // from the other tests in this process.
    let gw = SpawnedGateway::start(&config(upstream, hang), &[("headers", "headers")]).await;
    // Six open streams fill the gateway's limit of six.
    let mut open = Vec::new();
    for _ in 0..6 {
        let response = client().get(gw.url("/hang")).send().await.expect("request");
        assert_eq!(response.status(), 200);
        open.push(response);
    }
    // Waves of 300 requests at once, fifty times the limit: every one is
    // shed, none waits in a queue, and memory does not grow wave on wave.
    let mut rss = Vec::new();
    for wave in 0..6 {
        let results = burst(gw.url("/hello"), 300).await;
        assert!(
            results
                .iter()
                .all(|r| r.0 == 503 && r.1.as_deref() == Some("overloaded")),
            "wave {wave}: {results:?}"
        );
        rss.push(gw.process.rss_kib());
    }
    eprintln!("bursts: RSS after each wave {rss:?} KiB");
    let growth = rss[5].saturating_sub(rss[0]);
    assert!(growth <= 16 << 10, "RSS grew {growth} KiB over five waves: {rss:?}");
    release.send_replace(true);
    for response in open {
        assert_eq!(response.text().await.unwrap(), "hello");
    }
    let response = client().get(gw.url("/hello")).send().await.unwrap();
    assert_eq!(response.status(), 200, "admitted again once the streams ended");
    assert!(gw.stop(std::time::Duration::from_secs(10)).await.success());
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = echo_upstream("echo").await;
    let hang = crate::common::dead_address().await;
    let gw = TestGateway::start(&config(upstream, hang), &[("headers", "headers")]).await;
    let mut slow = tokio::net::TcpStream::connect(gw.addr(0)).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ").await.unwrap();
    // The gateway closes it after header_read_timeout_ms (500 ms), with a
    // 408 or without a word; either way the read ends.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the slow client's connection was kept open");
    // Everyone else is served meanwhile.
    let response = client().get(gw.url("/hello")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_rapid_reset_flood_does_not_stop_the_gateway_serving_others() {
    let upstream = echo_upstream("echo").await;
    let hang = crate::common::dead_address().await;
    let gw = TestGateway::start(&config(upstream, hang), &[("headers", "headers")]).await;
    let addr = gw.addr(0);

    // The attacker: one HTTP/2 connection opening streams and resetting
    // each at once, until the others are done (or 20 s pass, or the
    // gateway ends the connection). It says when the flood is under way.
    let opened = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let others_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flooding, under_way) = tokio::sync::oneshot::channel::<()>();
    let attacker = {
        let (opened, others_done) = (opened.clone(), others_done.clone());
        tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut streams, connection) = h2::client::handshake(tcp).await.unwrap();
            let driver = tokio::spawn(connection);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let mut flooding = Some(flooding);
            let ended = loop {
                if others_done.load(Ordering::SeqCst) || std::time::Instant::now() > deadline {
                    break None;
                }
                streams = match streams.ready().await {
                    Ok(ready) => ready,
                    Err(e) => break Some(e),
                };
                let request = http::Request::get(format!("http://{addr}/slow/1000")).body(()).unwrap();
                match streams.send_request(request, true) {
                    Ok((response, _)) => drop(response),
                    Err(e) => break Some(e),
                }
                if opened.fetch_add(1, Ordering::SeqCst) + 1 == 100
                    && let Some(flooding) = flooding.take()
                {
                    let _ = flooding.send(());
                }
            };
            driver.abort();
            ended
        })
    };
    under_way
        .await
        .expect("the flood got going: 100 streams opened and reset");
    let before = opened.load(Ordering::SeqCst);

    // Everyone else keeps being served meanwhile, and afterwards.
    let http = h2_client();
    for _ in 0..20 {
        let response = http
            .get(gw.url("/hello"))
            .send()
            .await
            .expect("served during the flood");
        assert_eq!(response.status(), 200);
    }
    let during = opened.load(Ordering::SeqCst) - before;
    others_done.store(true, Ordering::SeqCst);
    let ended = attacker.await.unwrap();
    match &ended {
        // The gateway cut the flooding connection: with a GOAWAY saying why.
        Some(e) => assert!(
            e.is_go_away() && e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM),
            "the flooding connection ended otherwise: {e:?}"
        ),
        // Or it was still flooding while every other request was served.
        None => assert!(during > 0, "the flood stopped before the others were served"),
    }
    println!(
        "rapid reset: {} streams opened, {during} while others were served; connection {}",
        opened.load(Ordering::SeqCst),
        ended.map_or("still open".to_string(), |e| format!("ended: {e}"))
    );
    let response = client().get(gw.url("/hello")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    gw.stop().await;
}
