//! What a hostile client tries, performed at the level it happens: raw
//! bytes on a socket, raw HTTP/2 frames. Path tricks past a route's
//! plugins, connections that send nothing, request bodies that trickle or
//! break, and requests a strict server must refuse.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read off a raw socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Parse what a server sent before closing (one response).
fn parse(bytes: &[u8]) -> Raw {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Raw {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Send `request` as written (it should say `connection: close`) and read
/// until the gateway closes.
async fn raw(addr: SocketAddr, request: &str) -> Raw {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the gateway answers and closes within 10 s")
        .expect("read");
    parse(&out)
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: gw.test\r\n{extra}connection: close\r\n\r\n")
}

fn admin_and_public_routes(echo: SocketAddr, extra: &str) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        {extra}
        [upstreams.echo]
        targets = ["{echo}"]

        [[routes]]
        name = "admin"
        path_prefix = "/api/admin"
        upstream = "echo"
        [[routes.plugins]]
        name = "api-key-auth"
        config = {{ keys = {{ alice = "alice-key" }} }}

        [[routes]]
        name = "public"
        path_prefix = "/api"
        upstream = "echo"
        "#
    )
}

const TRICKS: [&str; 6] = [
    "/api/x/../admin/x",
    "/api/./admin/x",
    "/api//admin/x",
    "/api/%61dmin/x",
    "/api/x/%2e%2e/admin/x",
    "/api/public/../../api/admin/x",
];

#[tokio::test]
async fn path_tricks_reach_the_route_they_name_and_the_upstream_gets_the_canonical_path() {
    let echo = echo_upstream("echo").await;
    let gw = TestGateway::start(&admin_and_public_routes(echo, ""), &[("api-key-auth", "api-key-auth")]).await;
    let addr = gw.addr(0);

    for path in TRICKS {
        let refused = raw(addr, &get(path, "")).await;
        assert_eq!(
            refused.status, 401,
            "{path} must meet the admin route's auth: {refused:?}"
        );
        let admitted = raw(addr, &get(&format!("{path}?q=/../x"), "x-api-key: alice-key\r\n")).await;
        assert_eq!(admitted.status, 200, "{path}: {admitted:?}");
        let echoed: serde_json::Value = serde_json::from_str(&admitted.body).expect("echo JSON");
        assert_eq!(
            echoed["path"], "/api/admin/x?q=/../x",
            "{path}: the upstream gets the canonical path, the query untouched"
        );
    }
    // The public route still serves what is really under it.
    let public = raw(addr, &get("/api/admin/../public/./x", "")).await;
    assert_eq!(public.status, 200);
    let echoed: serde_json::Value = serde_json::from_str(&public.body).unwrap();
    assert_eq!(echoed["path"], "/api/public/x");

    // Encoded separators and bad escapes are refused, naming why.
    for (path, why) in [
        ("/api/x%2F..%2Fadmin/x", "encoded '/'"),
        ("/api/x%5c..%5cadmin/x", "encoded '/'"),
        ("/api/%zz", "two hex digits"),
    ] {
        let refused = raw(addr, &get(path, "")).await;
        assert_eq!(refused.status, 400, "{path}: {refused:?}");
        assert_eq!(refused.header("x-weir-error"), Some("bad-request"));
        assert!(refused.body.contains(why), "{path}: {}", refused.body);
    }

    // The same over HTTP/2, frames sent as written.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    for path in TRICKS {
        let request = http::Request::get(format!("http://gw.test{path}")).body(()).unwrap();
        assert_eq!(request.uri().path(), path, "sent as written");
        let (response, _) = client.send_request(request, true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 401, "HTTP/2 {path}");
        client = client.ready().await.unwrap();
    }
    gw.stop().await;
}

#[tokio::test]
async fn escaped_slashes_can_be_kept_and_slashes_left_unmerged() {
    let echo = echo_upstream("echo").await;
    let extra = "[http]\nescaped_slashes = \"keep\"\nmerge_slashes = false";
    let gw = TestGateway::start(
        &admin_and_public_routes(echo, extra),
        &[("api-key-auth", "api-key-auth")],
    )
    .await;
    let kept = raw(gw.addr(0), &get("/api/a%2fb//c/../d", "")).await;
    assert_eq!(kept.status, 200, "{kept:?}");
    let echoed: serde_json::Value = serde_json::from_str(&kept.body).unwrap();
    assert_eq!(echoed["path"], "/api/a%2Fb//d");
    gw.stop().await;
}

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

#[tokio::test]
async fn malformed_request_bodies_are_client_errors_and_open_no_circuit() {
    let (a, b) = (echo_upstream("a").await, echo_upstream("b").await);
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        [upstreams.pool]
        targets = ["{a}", "{b}"]
        eject_after_failures = 2
        [[routes]]
        name = "all"
        upstream = "pool"
        "#
    );
    let gw = TestGateway::start(&config, &[]).await;
    let addr = gw.addr(0);
    for i in 0..8 {
        let bad = "POST /upload HTTP/1.1\r\nhost: gw.test\r\ntransfer-encoding: chunked\r\n\
                   connection: close\r\n\r\n5\r\nhello\r\nfffffffffffffffffffffff\r\n";
        let answer = raw(addr, bad).await;
        assert_eq!(answer.status, 400, "request {i}: {answer:?}");
        assert_eq!(answer.header("x-weir-error"), Some("request-body"));
        for internal in [
            a.to_string(),
            b.to_string(),
            "SendRequest".into(),
            "client error".into(),
        ] {
            assert!(
                !answer.body.contains(&internal),
                "the answer leaks {internal:?}: {}",
                answer.body
            );
        }
    }
    let routes = gw.admin_json("/routes").await;
    let targets = routes["routes"][0]["target_status"]
        .as_array()
        .expect("targets")
        .clone();
    assert_eq!(targets.len(), 2, "{routes}");
    for target in &targets {
        assert_eq!(
            target["circuit"], "closed",
            "a client's bad body is not the target's failure: {routes}"
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let answer = client().get(gw.url("/x")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        seen.insert(answer.headers()["x-upstream"].to_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "both targets still serve");
    gw.stop().await;
}

#[tokio::test]
async fn upstream_failures_are_answered_without_internals() {
    let dead = dead_address().await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.gone]
        targets = ["{dead}"]
        [[routes]]
        name = "all"
        upstream = "gone"
        "#
    );
    let gw = TestGateway::start(&config, &[]).await;
    let answer = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(answer.status(), 502);
    let body = answer.text().await.unwrap();
    assert!(body.contains("upstream gone"), "names the upstream: {body}");
    assert!(!body.contains(&dead.to_string()), "no target address: {body}");
    assert!(!body.contains("Connection refused"), "no error chain: {body}");
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

#[tokio::test]
async fn requests_a_strict_server_refuses_are_refused() {
    let echo = echo_upstream("echo").await;
    let named = echo_upstream("named").await;
    // An upstream that switches protocols nobody asked for.
    let switching = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let switching_addr = switching.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = switching.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: raw\r\nconnection: upgrade\r\n\r\nhello")
                    .await;
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{echo}"]
        [upstreams.named]
        targets = ["{named}"]
        [upstreams.switching]
        targets = ["{switching_addr}"]
        [[routes]]
        name = "named"
        host = "named.test"
        upstream = "named"
        [[routes]]
        name = "trace"
        path_prefix = "/trace"
        methods = ["TRACE"]
        upstream = "echo"
        [[routes]]
        name = "switch"
        path_prefix = "/switch"
        upstream = "switching"
        [[routes]]
        name = "all"
        upstream = "echo"
        "#
    );
    let gw = TestGateway::start(&config, &[]).await;
    let addr = gw.addr(0);

    let no_host = raw(addr, "GET /x HTTP/1.1\r\nconnection: close\r\n\r\n").await;
    assert_eq!(no_host.status, 400, "{no_host:?}");
    assert!(no_host.body.contains("host header"), "{}", no_host.body);
    let two_hosts = raw(
        addr,
        "GET /x HTTP/1.1\r\nhost: a.test\r\nhost: named.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(two_hosts.status, 400, "{two_hosts:?}");
    let http10 = raw(addr, "GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(http10.status, 200, "HTTP/1.0 needs no host: {http10:?}");

    let connect = raw(
        addr,
        "CONNECT gw.test:443 HTTP/1.1\r\nhost: gw.test:443\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(connect.status, 405, "{connect:?}");
    let trace = raw(addr, "TRACE /x HTTP/1.1\r\nhost: gw.test\r\nconnection: close\r\n\r\n").await;
    assert_eq!(trace.status, 405, "{trace:?}");
    assert_eq!(trace.header("x-weir-error"), Some("method-not-allowed"));
    let allowed = raw(
        addr,
        "TRACE /trace HTTP/1.1\r\nhost: gw.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(allowed.status, 200, "a route naming TRACE takes it: {allowed:?}");

    let switched = raw(addr, &get("/switch", "")).await;
    assert_eq!(switched.status, 502, "an unasked 101 is not passed on: {switched:?}");
    assert!(!switched.body.contains("hello"));

    let spoofed = raw(addr, &get("/x", "x-real-ip: 203.0.113.7\r\n")).await;
    let echoed: serde_json::Value = serde_json::from_str(&spoofed.body).unwrap();
    assert_eq!(echoed["headers"]["x-real-ip"], "127.0.0.1", "{echoed}");

    let dotted = raw(
        addr,
        "GET /x HTTP/1.1\r\nhost: named.test.\r\nconnection: close\r\n\r\n",
    )
    .await;
    let echoed: serde_json::Value = serde_json::from_str(&dotted.body).unwrap();
    assert_eq!(dotted.status, 200);
    assert_eq!(echoed["upstream"], "named", "a trailing dot names the same host");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_files_in_the_plugin_directory_are_refused_and_reload_sighup_and_sigterm_still_work() {
    let echo = echo_upstream("echo").await;
    let dir = TestGateway::dir_with_plugins(&[("version", "guest-version-a")]);
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        with_cache(&format!(
            r#"
            [[listeners]]
            address = "127.0.0.1:0"
            [admin]
            address = "127.0.0.1:0"
            [access_log]
            to = "off"
            [limits]
            shutdown_grace_ms = 2000
            [plugins]
            dir = "plugins"
            max_file_mb = 1
            [upstreams.echo]
            targets = ["{echo}"]
            [[routes]]
            name = "all"
            upstream = "echo"
            [[routes.plugins]]
            name = "version"
            "#
        )),
    )
    .unwrap();
    let child = WeirProcess::start(&config);
    let url = format!("http://{}/", child.logged("listening on ").await);
    let admin = format!("http://{}", child.logged("admin API on ").await);
    let version = || async {
        let answer = client().get(&url).send().await.ok()?;
        answer.headers().get("x-version")?.to_str().ok().map(str::to_string)
    };
    assert_eq!(version().await.as_deref(), Some("a"));
    let status = || async {
        let all: serde_json::Value = client()
            .get(format!("{admin}/plugins"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        all["plugins"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == "version")
            .cloned()
    };

    let plugins = dir.path().join("plugins");
    let file = plugins.join("version.wasm");
    let fifo = plugins.join(".fifo");
    let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let large = plugins.join(".large");
    std::fs::File::create(&large).unwrap().set_len(3 << 20).unwrap();
    let zero = plugins.join(".zero");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let rss_before = child.rss_kib();

    for (special, reason) in [
        (&fifo, "is not a regular file (it is a FIFO)"),
        (&large, "is 3145728 bytes, over the limit of 1048576 bytes"),
        (&zero, "is not a regular file (it is a character device)"),
    ] {
        std::fs::rename(special, &file).unwrap();
        let seen = wait_for(reason, Duration::from_secs(20), || async {
            let status = status().await?;
            status["last_error"].as_str()?.contains(reason).then_some(status)
        })
        .await;
        assert!(seen["last_error"].as_str().unwrap().contains("version.wasm"), "{seen}");
        assert_eq!(version().await.as_deref(), Some("a"), "the old version keeps serving");

        // POST /reload still answers, and so does SIGHUP.
        let reloads = child.count("config reloaded");
        let answer = tokio::time::timeout(Duration::from_secs(20), client().post(format!("{admin}/reload")).send())
            .await
            .expect("POST /reload answers")
            .unwrap();
        assert_eq!(answer.status(), 200);
        child.signal("HUP");
        wait_for("a reload on SIGHUP", Duration::from_secs(20), || async {
            (child.count("config reloaded") >= reloads + 2).then_some(())
        })
        .await;
    }
    let grown = child.rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 << 10, "memory grew by {grown} KiB reading special files");

    // A good file brings a new version; then SIGTERM ends the process.
    replace_by_rename(&built_plugin("guest-version-b"), &file);
    wait_for("version b", Duration::from_secs(20), || async {
        (version().await.as_deref() == Some("b")).then_some(())
    })
    .await;
    let mut child = child;
    child.signal("TERM");
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.process.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no exit 20 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_plugins_forwarding_header_wins_and_a_clients_does_not() {
    let echo = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{echo}"]
        [[routes]]
        name = "behind-tls"
        path_prefix = "/tls"
        upstream = "echo"
        [[routes.plugins]]
        name = "headers"
        config = {{ request = {{ set = {{ x-forwarded-proto = "https" }} }} }}
        [[routes]]
        name = "plain"
        upstream = "echo"
        "#
    );
    let gw = TestGateway::start(&config, &[("headers", "headers")]).await;
    let spoof = "x-forwarded-proto: https\r\nx-forwarded-host: evil.test\r\nx-real-ip: 203.0.113.7\r\n";
    let plain = raw(gw.addr(0), &get("/x", spoof)).await;
    let seen: serde_json::Value = serde_json::from_str(&plain.body).unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-host"], "gw.test", "{seen}");
    assert_eq!(seen["headers"]["x-real-ip"], "127.0.0.1", "{seen}");
    let set = raw(gw.addr(0), &get("/tls/x", "")).await;
    let seen: serde_json::Value = serde_json::from_str(&set.body).unwrap();
    assert_eq!(
        seen["headers"]["x-forwarded-proto"], "https",
        "the plugin's set wins: {seen}"
    );
    gw.stop().await;
}
