//! SIGTERM: the `weir` binary stops accepting, finishes every request it
//! accepted, and exits 0 within its grace period; a request still running
//! when the grace period ends is cut off, and the process exits then.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_steady_load_fails_no_accepted_request_and_exits_within_the_grace_period() {
    let upstream = echo_upstream("echo").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [[listeners]]
            address = "127.0.0.1:0"
            [limits]
            shutdown_grace_ms = 5000
            [upstreams.echo]
            targets = ["{upstream}"]
            [[routes]]
            name = "all"
            upstream = "echo"
            "#
        ),
    )
    .unwrap();
    let mut child = WeirProcess::start(&config);
    let address = child.logged("listening on ").await;
    let url = format!("http://{address}/slow/300");

    // Eight clients in a loop; each request remembers whether it was sent
    // before the signal.
    let signalled = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        let signalled = signalled.clone();
        let served = served.clone();
        clients.push(tokio::spawn(async move {
            let http = client();
            let (mut before_ok, mut before_failed) = (0, Vec::new());
            loop {
                let sent_before = !signalled.load(Ordering::SeqCst);
                let outcome = http.get(&url).send().await;
                let ok = match outcome {
                    Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
                    Err(_) => false,
                };
                match (sent_before, ok) {
                    (true, true) => {
                        before_ok += 1;
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                    (true, false) => before_failed.push("a request sent before SIGTERM failed"),
                    // After the signal, refusals are expected: stop.
                    (false, _) => return (before_ok, before_failed),
                }
            }
        }));
    }
    // The signal comes once the load is going: every client has been
    // served and is on its next request.
    wait_for("the load to get going", Duration::from_secs(30), || async {
        (served.load(Ordering::SeqCst) >= 16).then_some(())
    })
    .await;
    signalled.store(true, Ordering::SeqCst);
    child.signal("TERM");
    let signal_at = Instant::now();

    let mut total_ok = 0;
    for task in clients {
        let (ok, failed) = task.await.unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        total_ok += ok;
    }
    assert!(total_ok >= 8, "the load never got going: {total_ok} requests");
    let status = child.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    assert!(
        signal_at.elapsed() < Duration::from_secs(10),
        "exited {:?} after SIGTERM, past the 5 s grace period",
        signal_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_past_the_grace_period_is_cut_off_and_weir_exits_when_the_grace_ends() {
    let upstream = echo_upstream("echo").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [[listeners]]
            address = "127.0.0.1:0"
            [admin]
            address = "127.0.0.1:0"
            [access_log]
            to = "off"
            [limits]
            shutdown_grace_ms = 1000
            [upstreams.echo]
            targets = ["{upstream}"]
            [[routes]]
            name = "all"
            upstream = "echo"
            "#
        ),
    )
    .unwrap();
    let mut child = WeirProcess::start(&config);
    let address = child.logged("listening on ").await;
    let admin = child.logged("admin API on ").await;
    // Twenty seconds upstream, through a client with no timeout of its own.
    let held = tokio::spawn(async move {
        let untimed = reqwest::Client::builder().no_proxy().build().unwrap();
        match untimed.get(format!("http://{address}/slow/20000")).send().await {
            Ok(response) => response.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    });
    wait_for("the held request in flight", Duration::from_secs(10), || async {
        let text = client()
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .any(|l| l.starts_with("weir_requests_in_flight ") && l.ends_with(" 1"))
            .then_some(())
    })
    .await;

    child.signal("TERM");
    let signal_at = Instant::now();
    let status = child.wait_exit(Duration::from_secs(15)).await;
    let took = signal_at.elapsed();
    assert!(status.success(), "exit status {status}");
    // It waited for the held request until the grace ended, then no longer.
    assert!(
        took >= Duration::from_millis(900),
        "exited {took:?} after SIGTERM, before the grace ran out"
    );
    assert!(
        took < Duration::from_millis(1000 + 3000),
        "exited {took:?} after SIGTERM, long past the 1 s grace"
    );
    let fate = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("the held request ends with the process")
        .unwrap();
    assert!(
        fate.is_err(),
        "a request running past the grace is cut off, not completed"
    );
}
