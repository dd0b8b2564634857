//! The probe listener (`[admin] health_address`): liveness and readiness
//! for orchestrators and load balancers, on an address of its own and
//! without the admin token. `/readyz` fails while the config is loading and
//! from the moment shutdown begins, while requests in flight finish.
//! Prometheus scrapes `/metrics` there, behind a token of its own if one is
//! set (`[admin] metrics_token_env` / `metrics_token_file`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use weir::admin::probes::ProbeListener;
use weir::config::Config;

/// `GET path` on a probe listener: status and body.
async fn probe(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let response = client().get(format!("http://{addr}{path}")).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

#[tokio::test]
async fn the_probe_listener_answers_liveness_and_readiness_without_a_token_and_nothing_else() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        token = "admin-secret"
        health_address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "all"
        upstream = "echo"
        "#
    );
    let gw = TestGateway::start(&config, &[]).await;
    let health = gw.running.as_ref().unwrap().health.expect("probe listener bound");
    assert_ne!(Some(health), gw.running.as_ref().unwrap().admin);

    let (status, body) = probe(health, "/healthz").await.unwrap();
    assert_eq!((status, body.trim()), (200, r#"{"status":"ok"}"#));
    let (status, body) = probe(health, "/readyz").await.unwrap();
    assert_eq!((status, body.trim()), (200, r#"{"status":"ready"}"#));

    // Nothing else of the admin API is reachable here, token or not.
    for path in ["/", "/routes", "/plugins", "/usage", "/dashboard/data", "/healthz/x"] {
        assert_eq!(probe(health, path).await.unwrap().0, 404, "{path}");
    }
    let authorized = client()
        .get(format!("http://{health}/routes"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(authorized.status(), 404);
    // Metrics are, with no token of their own set.
    let (status, body) = probe(health, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("weir_state_store_up") && body.ends_with("# EOF\n"),
        "{body}"
    );
    let reload = client().post(format!("http://{health}/reload")).send().await.unwrap();
    assert_eq!(reload.status(), 404);
    let post = client().post(format!("http://{health}/readyz")).send().await.unwrap();
    assert_eq!(post.status(), 404);

    // The admin API itself still wants its token.
    let admin = client().get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(admin.status(), 401);
    gw.stop().await;
}

#[tokio::test]
async fn readyz_fails_until_the_first_config_serves_and_the_listener_closes_after_shutdown() {
    // The order `weir run` follows: the probe listener first, then the
    // (slow) loading of the config's plugins, then serving.
    let probes = ProbeListener::bind("127.0.0.1:0").await.unwrap();
    let health = probes.addr();
    let (status, body) = probe(health, "/readyz").await.unwrap();
    assert_eq!((status, body.trim()), (503, r#"{"status":"starting"}"#));
    assert_eq!(probe(health, "/healthz").await.unwrap().0, 200, "live while loading");
    let (status, body) = probe(health, "/metrics").await.unwrap();
    assert_eq!(
        (status, body.trim()),
        (503, r#"{"status":"starting"}"#),
        "no metrics before serving"
    );

    let upstream = echo_upstream("echo").await;
    let dir = TestGateway::dir_with_plugins(&[("version", "guest-version-a")]);
    let file = dir.path().join("weir.toml");
    std::fs::write(
        &file,
        with_cache(&format!(
            r#"
            [access_log]
            to = "off"
            [[listeners]]
            address = "127.0.0.1:0"
            [admin]
            address = "127.0.0.1:0"
            health_address = "127.0.0.1:0"
            [upstreams.echo]
            targets = ["{upstream}"]
            [[routes]]
            name = "versioned"
            upstream = "echo"
            [[routes.plugins]]
            name = "version"
            "#
        )),
    )
    .unwrap();
    let gateway = weir::gateway::Gateway::load_file(&file).await.unwrap();
    assert_eq!(
        probe(health, "/readyz").await.unwrap().0,
        503,
        "plugins loaded, not serving yet"
    );
    let running = weir::running::start_with_probes(gateway, Some(probes)).await.unwrap();
    assert_eq!(running.health, Some(health), "the listener bound first is the one used");
    assert_eq!(probe(health, "/readyz").await.unwrap().0, 200);
    assert!(!running.readiness().is_draining());
    assert_eq!(probe(health, "/metrics").await.unwrap().0, 200, "metrics once serving");

    running.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(health).await.is_err(),
        "the probe listener is closed once shutdown is done"
    );
}

#[test]
fn health_address_problems_name_the_field() {
    let parse = |admin: &str| {
        let text =
            format!("[[listeners]]\naddress = \"0.0.0.0:8080\"\n[admin]\naddress = \"127.0.0.1:9901\"\n{admin}\n");
        Config::parse(&text, Path::new("weir.toml"), Path::new("."))
    };
    // Any address will do, unlike the admin API's.
    for fine in ["0.0.0.0:9902", "[::]:9902", "10.1.2.3:9902", "127.0.0.1:0"] {
        assert!(parse(&format!("health_address = {fine:?}")).is_ok(), "{fine}");
    }
    for (address, reason) in [
        ("nonsense", "is not IP:PORT"),
        (":9902", "is not IP:PORT"),
        ("127.0.0.1:9901", "is also the admin address"),
        ("127.0.0.1:8080", "is also a listener"),
        ("0.0.0.0:8080", "is also a listener"),
    ] {
        let err = parse(&format!("health_address = {address:?}")).unwrap_err();
        let problem = err
            .problems
            .iter()
            .find(|p| p.path == "admin.health_address")
            .unwrap_or_else(|| panic!("{address}: {err}"));
        assert!(problem.message.contains(reason), "{address}: {}", problem.message);
    }
}

#[tokio::test]
async fn metrics_on_the_probe_listener_need_their_own_token_when_one_is_set() {
    const TOKEN: &str = "scrape-token-93c1";
    let upstream = echo_upstream("echo").await;
    let dir = TestGateway::dir_with_plugins(&[]);
    // Beside the config, as a mounted Kubernetes secret would be.
    std::fs::write(dir.path().join("metrics-token"), format!("{TOKEN}\n")).unwrap();
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        token = "admin-secret"
        health_address = "127.0.0.1:0"
        metrics_token_file = "metrics-token"
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "all"
        upstream = "echo"
        "#
    );
    let running = start_in(dir.path(), &config).await.unwrap();
    let health = running.health.expect("probe listener bound");
    let proxied = client()
        .get(format!("http://{}/counted", running.listeners[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200);

    let scrape = |token: Option<&'static str>| {
        let mut request = client().get(format!("http://{health}/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let challenge = response.headers().get("www-authenticate").cloned();
            let content_type = response.headers().get("content-type").cloned();
            (status, challenge, content_type, response.text().await.unwrap())
        }
    };
    for wrong in [None, Some("admin-secret"), Some("scrape-token-93c")] {
        let (status, challenge, _, body) = scrape(wrong).await;
        assert_eq!(status, 401, "{wrong:?}");
        assert_eq!(challenge.unwrap(), "Bearer");
        assert!(!body.contains(TOKEN), "{body}");
    }
    let (status, _, content_type, body) = scrape(Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert!(
        content_type
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "OpenMetrics, as the admin API serves"
    );
    assert!(body.contains("route=\"all\""), "the proxied request is counted: {body}");
    assert!(!body.contains(TOKEN));
    // Probes still need no token.
    assert_eq!(probe(health, "/readyz").await.unwrap().0, 200);
    running.shutdown().await;
}

#[test]
fn metrics_token_problems_name_the_field() {
    let parse = |admin: &str| {
        let text =
            format!("[[listeners]]\naddress = \"0.0.0.0:8080\"\n[admin]\naddress = \"127.0.0.1:9901\"\n{admin}\n");
        Config::parse(&text, Path::new("weir.toml"), Path::new("."))
    };
    for (admin, path, says) in [
        (
            "health_address = \"0.0.0.0:9902\"\nmetrics_token_env = \"WEIR_TEST_NEVER_SET_TOKEN\"",
            "admin.metrics_token_env",
            "WEIR_TEST_NEVER_SET_TOKEN is not set",
        ),
        (
            "health_address = \"0.0.0.0:9902\"\nmetrics_token_file = \"no-such-token\"",
            "admin.metrics_token_file",
            "no such file",
        ),
        (
            "health_address = \"0.0.0.0:9902\"\nmetrics_token_env = \"A\"\nmetrics_token_file = \"b\"",
            "admin.metrics_token_env",
            "not both",
        ),
        (
            "metrics_token_file = \"weir.toml\"",
            "admin.health_address",
            "no probe listener",
        ),
    ] {
        let err = parse(admin).unwrap_err();
        let problem = err
            .problems
            .iter()
            .find(|p| p.path == path)
            .unwrap_or_else(|| panic!("{admin}: {err}"));
        assert!(problem.message.contains(says), "{admin}: {}", problem.message);
    }
}

/// An upstream that takes requests and answers none until `release`
/// flips: a request through it stays in flight as long as a test needs.
async fn held_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<()>, watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let (release, released) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let arrived = arrived.clone();
            let mut released = released.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = arrived.send(());
                let _ = released.wait_for(|r| *r).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndone")
                    .await;
            });
        }
    });
    (addr, arrivals, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_on_sigterm_while_a_slow_request_is_still_in_flight() {
    let (upstream, mut arrivals, release) = held_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [access_log]
            to = "off"
            [[listeners]]
            address = "127.0.0.1:0"
            [admin]
            address = "127.0.0.1:0"
            health_address = "127.0.0.1:0"
            [limits]
            shutdown_grace_ms = 20000
            [upstreams.echo]
            targets = ["{upstream}"]
            response_timeout_ms = 30000
            [[routes]]
            name = "all"
            upstream = "echo"
            "#
        ),
    )
    .unwrap();
    // `weir run FILE`, the form the container image's entrypoint uses.
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("run")
        .arg(&config)
        .env("WEIR_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    let stderr = child.stderr.take().unwrap();
    let (found, addresses) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            for (what, marker) in [("listener", "listening on "), ("probes", "readiness probes on ")] {
                if let Some(at) = line.find(marker) {
                    let rest = &line[at + marker.len()..];
                    let address = rest.split_whitespace().next().unwrap_or_default().to_string();
                    let _ = found.send((what, address));
                }
            }
        }
    });
    let (mut listener, mut health) = (None, None);
    while listener.is_none() || health.is_none() {
        let (what, address) = addresses
            .recv_timeout(Duration::from_secs(30))
            .expect("weir reported its addresses");
        let address: SocketAddr = address.parse().expect("an address");
        match what {
            "listener" => listener = Some(address),
            _ => health = Some(address),
        }
    }
    let (listener, health) = (listener.unwrap(), health.unwrap());
    wait_for("ready", Duration::from_secs(10), || async {
        (probe(health, "/readyz").await?.0 == 200).then_some(())
    })
    .await;

    let slow = tokio::spawn(async move {
        let response = client().get(format!("http://{listener}/slow")).send().await?;
        let status = response.status().as_u16();
        Ok::<_, reqwest::Error>((status, response.text().await?))
    });
    tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
        .await
        .expect("the request reached the upstream")
        .unwrap();

    let kill = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(kill.success());

    let body = wait_for("/readyz to fail after SIGTERM", Duration::from_secs(10), || async {
        let (status, body) = probe(health, "/readyz").await?;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(body.trim(), r#"{"status":"draining"}"#);
    assert!(!slow.is_finished(), "the slow request is still in flight");
    assert_eq!(
        probe(health, "/healthz").await.unwrap().0,
        200,
        "still live while draining"
    );
    wait_for("the listener to stop accepting", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(listener).await.is_err().then_some(())
    })
    .await;

    release.send(true).unwrap();
    let (status, text) = slow.await.unwrap().expect("the slow request finished");
    assert_eq!((status, text.as_str()), (200, "done"));
    let exit = wait_for("weir to exit", Duration::from_secs(15), || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(exit.success(), "exit status {exit}");
}
