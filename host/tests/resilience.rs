//! Upstream resilience: retries of unavailable answers on another target
//! within a budget, and passive ejection of a target that keeps failing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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

/// An echo upstream on its own runtime, so that dropping the runtime
/// kills it whole: listener and open connections.
fn killable_upstream(addr: std::net::SocketAddr, name: &str) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let name = name.to_string();
    let (ready, bound) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        let listener = socket.listen(128).unwrap();
        ready.send(()).unwrap();
        weir::demo::serve(listener, name).await;
    });
    bound.recv().unwrap();
    runtime
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_killed_and_restarted_is_taken_out_and_back_in_while_no_client_fails() {
    let a_addr = common::dead_address().await;
    let a = killable_upstream(a_addr, "a");
    let b = echo_upstream("b").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        [upstreams.pool]
        targets = ["{a_addr}", "{b}"]
        eject_after_failures = 0
        health_check = {{ path = "/healthz", interval_ms = 100, timeout_ms = 500, healthy_threshold = 2, unhealthy_threshold = 2 }}
        [[routes]]
        name = "all"
        upstream = "pool"
        "#
    );
    let gw = TestGateway::start(&config, &[]).await;
    let ejected = |gw: &TestGateway| {
        let url = gw.admin_url("/routes");
        async move {
            let routes: serde_json::Value = client().get(url).send().await.ok()?.json().await.ok()?;
            Some(routes["routes"][0]["ejected"].as_array()?.len())
        }
    };

    // Steady traffic throughout; every request must succeed (a request
    // caught mid-flight by the kill is retried on the other target).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let url = gw.url("/item");
        let stop = stop.clone();
        tokio::spawn(async move {
            let http = client();
            let mut served: Vec<String> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let response = http.get(&url).send().await.expect("no request may fail or hang");
                assert_eq!(response.status(), 200);
                served.push(echoed(response).await["upstream"].as_str().unwrap().to_string());
            }
            served
        })
    };

    wait_for("both targets in", Duration::from_secs(10), || async {
        (ejected(&gw).await == Some(0)).then_some(())
    })
    .await;
    a.shutdown_background();
    wait_for("the killed target taken out", Duration::from_secs(10), || async {
        (ejected(&gw).await == Some(1)).then_some(())
    })
    .await;
    let a = killable_upstream(a_addr, "a");
    wait_for("the restarted target back in", Duration::from_secs(10), || async {
        (ejected(&gw).await == Some(0)).then_some(())
    })
    .await;
    // Traffic reaches it again.
    wait_for(
        "a request served by the restarted target",
        Duration::from_secs(10),
        || async {
            let response = client().get(gw.url("/again")).send().await.ok()?;
            (echoed(response).await["upstream"] == "a").then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let served = traffic.await.expect("traffic task");
    assert!(served.len() > 10, "too little traffic: {}", served.len());
    a.shutdown_background();
    gw.stop().await;
}
