//! SIGTERM under steady load: the `weir` binary stops accepting, finishes
//! every request it accepted, and exits 0 within its grace period.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--config"])
        .arg(&config)
        .env("WEIR_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    // The bound address, from the log.
    let stderr = child.stderr.take().unwrap();
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on ") {
                let _ = found.send(line[at + "listening on ".len()..].trim().to_string());
            }
        }
    });
    let address = address
        .recv_timeout(Duration::from_secs(30))
        .expect("weir reported its address");
    let url = format!("http://{address}/slow/300");

    // Eight clients in a loop; each request remembers whether it was sent
    // before the signal.
    let signalled = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        let signalled = signalled.clone();
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
                    (true, true) => before_ok += 1,
                    (true, false) => before_failed.push("a request sent before SIGTERM failed"),
                    // After the signal, refusals are expected: stop.
                    (false, _) => return (before_ok, before_failed),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    signalled.store(true, Ordering::SeqCst);
    let kill = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(kill.success());
    let signal_at = Instant::now();

    let mut total_ok = 0;
    for task in clients {
        let (ok, failed) = task.await.unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        total_ok += ok;
    }
    assert!(total_ok >= 8, "the load never got going: {total_ok} requests");
    let status = wait_for("weir to exit", Duration::from_secs(15), || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(status.success(), "exit status {status}");
    assert!(
        signal_at.elapsed() < Duration::from_secs(10),
        "exited {:?} after SIGTERM, past the 5 s grace period",
        signal_at.elapsed()
    );
}
