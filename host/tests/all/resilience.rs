//! Upstream resilience: retries of unavailable answers on another target
//! within a budget, and passive ejection of a target that keeps failing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;

/// What a scripted upstream does with each request.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// 200 with its name as the body.
    Answer,
    /// 503.
    Unavailable,
    /// Never answers.
    Hang,
    /// Answers the head and part of the body, then nothing more.
    Stall,
    /// A chunked body, a byte every 50 ms, never ending.
    Trickle,
    /// Waits until `open` is called, then answers.
    Gate,
}

/// An upstream on raw TCP whose behaviour a test sets and changes, counting
/// the requests it received.
struct Scripted {
    addr: std::net::SocketAddr,
    hits: Arc<AtomicUsize>,
    mode: Arc<std::sync::atomic::AtomicU8>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Scripted {
    async fn start(name: &'static str, mode: Mode) -> Scripted {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scripted = Scripted {
            addr: listener.local_addr().unwrap(),
            hits: Arc::default(),
            mode: Arc::new((mode as u8).into()),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        let (hits, modes, gate) = (scripted.hits.clone(), scripted.mode.clone(), scripted.gate.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(Self::connection(
                    stream,
                    name,
                    hits.clone(),
                    modes.clone(),
                    gate.clone(),
                ));
            }
        });
        scripted
    }

    async fn connection(
        mut stream: tokio::net::TcpStream,
        name: &'static str,
        hits: Arc<AtomicUsize>,
        mode: Arc<std::sync::atomic::AtomicU8>,
        gate: Arc<tokio::sync::Semaphore>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // One request head per turn; bodies here are empty.
            while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            let end = buffer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            buffer.drain(..end);
            hits.fetch_add(1, Ordering::SeqCst);
            let answer =
                |status: &str, body: &str| format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}", body.len());
            let mode = mode.load(Ordering::SeqCst);
            let reply = if mode == Mode::Answer as u8 {
                answer("200 OK", name)
            } else if mode == Mode::Unavailable as u8 {
                answer("503 Service Unavailable", "down")
            } else if mode == Mode::Gate as u8 {
                let Ok(permit) = gate.acquire().await else { return };
                permit.forget();
                answer("200 OK", name)
            } else if mode == Mode::Stall as u8 {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nthe first ten")
                    .await;
                std::future::pending::<()>().await;
                return;
            } else if mode == Mode::Trickle as u8 {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                while stream.write_all(b"1\r\nx\r\n").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                return;
            } else {
                std::future::pending::<()>().await;
                return;
            };
            if stream.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Let `n` gated requests be answered.
    fn open(&self, n: usize) {
        self.gate.add_permits(n);
    }
}

/// An upstream answering 503 to everything, counting what it received.
async fn unavailable_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let upstream = Scripted::start("bad", Mode::Unavailable).await;
    (upstream.addr, upstream.hits)
}

fn config(bad: std::net::SocketAddr, good: std::net::SocketAddr) -> String {
    pool_config(&format!(
        r#"targets = ["{bad}", "{good}"]
        eject_after_failures = 3
        eject_ms = 60000"#
    ))
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
    let routes: serde_json::Value = gw.admin_json("/routes").await;
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
    let a_addr = crate::common::dead_address().await;
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

/// The admin API's view of the first route's targets: circuit per target.
async fn circuits(gw: &TestGateway) -> Vec<String> {
    let routes: serde_json::Value = gw.admin_json("/routes").await;
    routes["routes"][0]["target_status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["circuit"].as_str().unwrap().to_string())
        .collect()
}

fn pool_config(pool: &str) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        [upstreams.pool]
        {pool}
        [[routes]]
        name = "all"
        upstream = "pool"
        "#
    )
}

#[tokio::test]
async fn weighted_targets_get_their_share_of_requests() {
    let heavy = echo_upstream("heavy").await;
    let light = echo_upstream("light").await;
    let gw = TestGateway::start(
        &pool_config(&format!(
            r#"targets = [{{ address = "{heavy}", weight = 3 }}, "{light}"]"#
        )),
        &[],
    )
    .await;
    let mut heavy_served = 0;
    for _ in 0..40 {
        let response = client().get(gw.url("/x")).send().await.unwrap();
        if echoed(response).await["upstream"] == "heavy" {
            heavy_served += 1;
        }
    }
    assert_eq!(heavy_served, 30, "weight 3 against 1 over 40 requests");
    gw.stop().await;
}

#[tokio::test]
async fn least_requests_sends_past_a_target_that_is_still_busy() {
    let busy = Scripted::start("busy", Mode::Gate).await;
    let free = echo_upstream("free").await;
    let gw = TestGateway::start(
        &pool_config(&format!(
            r#"targets = ["{}", "{free}"]
            balance = "least_requests""#,
            busy.addr
        )),
        &[],
    )
    .await;
    // The first request goes to the first target, which holds it.
    let held = tokio::spawn(client().get(gw.url("/held")).send());
    wait_for(
        "the held request at the busy target",
        Duration::from_secs(10),
        || async { (busy.hits() == 1).then_some(()) },
    )
    .await;
    for i in 0..10 {
        let response = client().get(gw.url(&format!("/next/{i}"))).send().await.unwrap();
        assert_eq!(echoed(response).await["upstream"], "free", "request {i}");
    }
    assert_eq!(busy.hits(), 1, "round robin would have sent every other request to it");
    busy.open(1);
    let held = held.await.unwrap().unwrap();
    assert_eq!(held.status(), 200);
    assert_eq!(held.text().await.unwrap(), "busy");
    gw.stop().await;
}

#[tokio::test]
async fn a_slow_upstream_times_out_and_retries_stay_within_the_budget() {
    let slow = Scripted::start("slow", Mode::Hang).await;
    let fast = echo_upstream("fast").await;
    let gw = TestGateway::start(
        &pool_config(&format!(
            r#"targets = ["{}", "{fast}"]
            response_timeout_ms = 500
            eject_after_failures = 0
            retry_budget_percent = 20"#,
            slow.addr
        )),
        &[],
    )
    .await;
    let (mut served, mut timed_out) = (0, 0);
    for i in 0..40 {
        let response = client().get(gw.url(&format!("/r/{i}"))).send().await.unwrap();
        match response.status().as_u16() {
            200 => served += 1,
            504 => {
                assert_eq!(response.headers()["x-weir-error"], "upstream-timeout");
                timed_out += 1;
            }
            status => panic!("request {i}: {status}"),
        }
    }
    // Every other request tried the slow target first; only those could
    // be retried, on the fast one, while the budget lasted: it starts with
    // 10 retries and each request adds a fifth of one, so the budget runs
    // dry after 17 of those 20. The other 3 answered 504 at the timeout.
    assert_eq!(slow.hits(), 20, "the slow target is never a retry's choice");
    assert_eq!((served, timed_out), (20 + 17, 3));
    gw.stop().await;
}

#[tokio::test]
async fn a_stalled_or_endless_response_body_is_cut_off() {
    let stalled = Scripted::start("stalled", Mode::Stall).await;
    let endless = Scripted::start("endless", Mode::Trickle).await;
    let fine = echo_upstream("fine").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.stalled]
        targets = ["{}"]
        idle_timeout_ms = 200
        [upstreams.endless]
        targets = ["{}"]
        total_timeout_ms = 600
        [upstreams.fine]
        targets = ["{fine}"]
        idle_timeout_ms = 200
        total_timeout_ms = 600
        [[routes]]
        name = "stalled"
        path_prefix = "/stalled"
        upstream = "stalled"
        [[routes]]
        name = "endless"
        path_prefix = "/endless"
        upstream = "endless"
        [[routes]]
        name = "fine"
        upstream = "fine"
        "#,
        stalled.addr, endless.addr
    );
    let gw = TestGateway::start(&config, &[]).await;
    // A client with no timeout of its own: only the gateway can end these.
    let untimed = reqwest::Client::builder().no_proxy().http1_only().build().unwrap();
    for (path, limit_ms) in [("/stalled", 200), ("/endless", 600)] {
        let started = std::time::Instant::now();
        let response = untimed.get(gw.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}: the head arrived in time");
        let body = tokio::time::timeout(Duration::from_secs(10), response.bytes())
            .await
            .unwrap_or_else(|_| panic!("{path}: the body was never cut off"));
        let took = started.elapsed();
        assert!(body.is_err(), "{path}: the body must be cut off, got {body:?}");
        // Cut at the configured time: not before it, and well within a
        // margin after it.
        assert!(took >= Duration::from_millis(limit_ms), "{path}: cut after {took:?}");
        assert!(
            took < Duration::from_millis(limit_ms + 2000),
            "{path}: cut after {took:?}"
        );
    }
    let response = client().get(gw.url("/other")).send().await.unwrap();
    assert_eq!(echoed(response).await["upstream"], "fine");
    gw.stop().await;
}

#[tokio::test]
async fn a_circuit_opens_on_its_failure_rate_and_a_half_open_trial_decides() {
    let flaky = Scripted::start("flaky", Mode::Unavailable).await;
    let good = echo_upstream("good").await;
    let gw = TestGateway::start(
        &pool_config(&format!(
            r#"targets = ["{}", "{good}"]
            eject_after_failures = 0
            eject_ms = 2000
            retry_budget_percent = 100
            circuit_breaker = {{ failure_rate_percent = 50, min_requests = 4, window_ms = 60000 }}"#,
            flaky.addr
        )),
        &[],
    )
    .await;
    let get = |n: usize| {
        let url = gw.url("/x");
        async move {
            for _ in 0..n {
                let response = client().get(&url).send().await.unwrap();
                assert_eq!(response.status(), 200, "failures are retried on the good target");
            }
        }
    };
    get(20).await;
    assert_eq!(flaky.hits(), 4, "four failures of four requests open the circuit");
    assert_eq!(circuits(&gw).await, ["open", "closed"]);

    // Half-open after two seconds: one trial, which fails and opens it
    // again for twice as long (time enough for the ten requests below).
    wait_for("half-open", Duration::from_secs(10), || async {
        (circuits(&gw).await[0] == "half_open").then_some(())
    })
    .await;
    while flaky.hits() == 4 {
        get(1).await;
    }
    assert_eq!(flaky.hits(), 5);
    assert_eq!(circuits(&gw).await[0], "open");
    get(10).await;
    assert_eq!(flaky.hits(), 5, "no request reaches an open circuit");

    // Recovered: the next trial succeeds and closes the circuit.
    flaky.set(Mode::Answer);
    wait_for("half-open again", Duration::from_secs(10), || async {
        (circuits(&gw).await[0] == "half_open").then_some(())
    })
    .await;
    while flaky.hits() == 5 {
        get(1).await;
    }
    assert_eq!(circuits(&gw).await[0], "closed");
    get(10).await;
    assert!(flaky.hits() >= 10, "traffic is shared again: {}", flaky.hits());
    gw.stop().await;
}
