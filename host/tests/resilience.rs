//! Upstream resilience: retries of unavailable answers on another target
//! within a budget, and passive ejection of a target that keeps failing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;

/// An upstream answering 503 to everything, counting what it received.
async fn unavailable_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request head per read loop; bodies here are empty.
                    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buffer.drain(..end);
                    counter.fetch_add(1, Ordering::SeqCst);
                    let answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, hits)
}

fn config(bad: std::net::SocketAddr, good: std::net::SocketAddr) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        [upstreams.pool]
        targets = ["{bad}", "{good}"]
        eject_after_failures = 3
        eject_ms = 60000
        [[routes]]
        name = "all"
        upstream = "pool"
        "#
    )
}

#[tokio::test]
async fn unavailable_answers_are_retried_elsewhere_and_a_failing_target_is_ejected() {
    let (bad, bad_hits) = unavailable_upstream().await;
    let good = echo_upstream("good").await;
    let gw = TestGateway::start(&config(bad, good), &[]).await;
    for i in 0..20 {
        let response = client().get(gw.url(&format!("/item/{i}"))).send().await.unwrap();
        assert_eq!(response.status(), 200, "request {i}");
        assert_eq!(echoed(response).await["upstream"], "good");
    }
    // Three 503s in a row ejected the bad target; it saw nothing after.
    assert_eq!(bad_hits.load(Ordering::SeqCst), 3);
    let routes: serde_json::Value = client()
        .get(gw.admin_url("/routes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        routes["routes"][0]["ejected"],
        serde_json::json!([format!("http://{bad}")])
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_non_idempotent_request_is_not_retried_after_the_upstream_answered() {
    let (bad, bad_hits) = unavailable_upstream().await;
    let good = echo_upstream("good").await;
    let gw = TestGateway::start(&config(bad, good), &[]).await;
    // Round robin starts at the first target: the bad one.
    let response = client().post(gw.url("/orders")).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(bad_hits.load(Ordering::SeqCst), 1);
    gw.stop().await;
}

#[tokio::test]
async fn retries_stay_within_the_budget_when_every_target_is_down() {
    let (one, one_hits) = unavailable_upstream().await;
    let (two, two_hits) = unavailable_upstream().await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.pool]
        targets = ["{one}", "{two}"]
        eject_after_failures = 0
        retry_budget_percent = 20
        [[routes]]
        name = "all"
        upstream = "pool"
        "#
    );
    let gw = TestGateway::start(&config, &[]).await;
    for _ in 0..100 {
        let response = client().get(gw.url("/x")).send().await.unwrap();
        assert_eq!(response.status(), 503);
    }
    let attempts = one_hits.load(Ordering::SeqCst) + two_hits.load(Ordering::SeqCst);
    // 100 requests, at most 10 saved-up retries plus 20% of 100.
    assert!(
        (100..=130).contains(&attempts),
        "{attempts} upstream attempts for 100 requests"
    );
    assert!(attempts > 100, "nothing was retried");
    gw.stop().await;
}
