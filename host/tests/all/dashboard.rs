//! The live dashboard: the admin token is exchanged for a session cookie,
//! the data endpoint reports the traffic, and headless Chromium, driven
//! over WebDriver, draws it — charts with points, the plugin's load error —
//! and leaves a screenshot in `$CARGO_TARGET_TMPDIR/dashboard.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`make setup`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};
use weir::admin_api::{DashboardData, PluginList};

const TOKEN: &str = "dashboard-admin-token";

async fn start() -> TestGateway {
    api_and_faulty_gateway(Some(TOKEN)).await
}

/// One round of mixed traffic: a success, a refused key, a plugin trap.
async fn traffic_round(http: &reqwest::Client, base: &str) {
    let gw_url = |path: &str| format!("{base}{path}");
    let ok = http
        .get(gw_url("/api/items"))
        .header("x-api-key", "alice-key")
        .send()
        .await;
    assert_eq!(ok.map(|r| r.status().as_u16()).ok(), Some(200));
    let refused = http.get(gw_url("/api/items")).send().await;
    assert_eq!(refused.map(|r| r.status().as_u16()).ok(), Some(401));
    let trapped = http.get(gw_url("/faulty/trap")).send().await;
    assert_eq!(trapped.map(|r| r.status().as_u16()).ok(), Some(500));
}

/// Overwrite the auth plugin's file with garbage and wait until the admin
/// API reports the refused load; the error text.
async fn break_auth_plugin(gw: &TestGateway) -> String {
    let file = gw.dir.path().join("plugins/api-key-auth.wasm");
    let scratch = tempfile::tempdir().unwrap();
    let garbage = scratch.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not a component").unwrap();
    replace_by_rename(&garbage, &file);
    wait_for("the plugin's load error", Duration::from_secs(20), || async {
        let plugins: PluginList = admin_get(gw, "/plugins").await;
        plugins.get("api-key-auth")?.status.last_error.clone()
    })
    .await
}

async fn admin_get<T: serde::de::DeserializeOwned>(gw: &TestGateway, path: &str) -> T {
    client()
        .get(gw.admin_url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin API")
        .json()
        .await
        .expect("admin JSON")
}

#[tokio::test]
async fn the_token_in_the_address_is_exchanged_for_a_session_cookie() {
    let gw = start().await;
    // No redirects followed: the test looks at each answer.
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Without a token: the page says how to sign in; the API refuses.
    let page = http.get(gw.admin_url("/")).send().await.unwrap();
    assert_eq!(page.status(), 401);
    assert!(page.text().await.unwrap().contains("/?token="));
    assert_eq!(
        http.get(gw.admin_url("/dashboard/data")).send().await.unwrap().status(),
        401
    );
    let wrong = http.get(gw.admin_url("/?token=wrong")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    // The right token: a cookie, and a redirect that drops it from the URL.
    let login = http
        .get(gw.admin_url(&format!("/?token={TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    assert_eq!(login.headers()["location"], "/");
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(
        !cookie.contains(TOKEN),
        "the cookie holds a hash, not the token: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();

    // The cookie opens the page, its files and every endpoint.
    for (path, content_type) in [
        ("/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
        ("/dashboard/data?minutes=5", "application/json"),
        ("/plugins", "application/json"),
    ] {
        let response = http
            .get(gw.admin_url(path))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let given = response.headers()["content-type"].to_str().unwrap();
        assert!(given.starts_with(content_type), "{path}: {given}");
        if path == "/" {
            let policy = response.headers()["content-security-policy"].to_str().unwrap();
            assert!(policy.contains("default-src 'none'"), "{policy}");
        }
    }
    // A forged cookie does not.
    let forged = http
        .get(gw.admin_url("/plugins"))
        .header("cookie", "weir_admin=0000")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // The bearer header still works as before.
    let bearer = http
        .get(gw.admin_url("/routes"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn the_data_endpoint_reports_routes_plugins_targets_and_errors() {
    let gw = start().await;
    let http = client();
    for _ in 0..3 {
        traffic_round(&http, &gw.url("")).await;
    }
    assert_eq!(http.get(gw.url("/nowhere")).send().await.unwrap().status(), 404);

    // The data is recorded as each response ends, so wait for the last.
    let data = wait_for("all ten requests in the data", Duration::from_secs(10), || async {
        let data: DashboardData = admin_get(&gw, "/dashboard/data?minutes=5").await;
        (data.totals.requests == 10).then_some(data)
    })
    .await;
    assert_eq!(data.minutes, 5);
    let route = |name: &str| {
        data.routes
            .iter()
            .find(|r| r.route == name)
            .unwrap_or_else(|| panic!("no route {name}: {data:#?}"))
    };
    let api = route("api");
    assert_eq!(api.requests, 6);
    assert_eq!(api.errors, 0, "a 401 from a plugin is not an error");
    assert!(api.p99_ms.unwrap() > 0.0);
    assert!(!api.points.as_ref().unwrap().is_empty());
    let faulty = route("faulty");
    assert_eq!(faulty.requests, 3);
    assert_eq!(faulty.errors, 3);
    assert_eq!(route("-").errors, 1, "no route is a gateway error");

    let plugin = |name: &str| {
        data.plugins
            .iter()
            .find(|p| p.plugin == name)
            .unwrap_or_else(|| panic!("no plugin {name}: {data:#?}"))
    };
    // api-key-auth has only a request phase: 3 admitted, 3 refused.
    assert_eq!(plugin("api-key-auth").calls, 6, "{data:#?}");
    assert_eq!(plugin("trap").faults, 3);
    assert_eq!(data.targets[0].upstream, "echo");
    assert_eq!(data.targets[0].attempts, 3, "the successful api requests");

    let errors = &data.errors;
    assert_eq!(errors.len(), 4);
    assert_eq!(errors[0].error.as_deref(), Some("no-route"));
    assert_eq!(errors[1].route.as_deref(), Some("faulty"));
    assert_eq!(errors[1].status, 500);
    assert_eq!(errors[1].error.as_deref(), Some("plugin-trap"));
    assert_eq!(errors[1].path, "/faulty/trap");
    assert_eq!(data.ai.totals.calls, 0);
    gw.stop().await;
}

/// Chromium and chromedriver, found on the PATH.
fn browser_tools() -> (PathBuf, PathBuf) {
    let find = |names: &[&str]| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
            .find(|p| p.is_file())
    };
    match (find(&["chromium", "chromium-browser"]), find(&["chromedriver"])) {
        (Some(chromium), Some(driver)) => (chromium, driver),
        (chromium, driver) => panic!(
            "the dashboard test needs Chromium and chromedriver (found chromium: {chromium:?}, chromedriver: {driver:?}); \
             run `make setup`, which installs Debian's chromium and chromium-driver"
        ),
    }
}

/// A running chromedriver and its browser session; both end when this is
/// dropped, whether the test passed or not.
struct Browser {
    driver: std::process::Child,
    base: String,
    session: Option<String>,
    http: reqwest::Client,
}

impl Browser {
    /// Start chromedriver on a free port, wait until it is ready, and open
    /// a headless Chromium session.
    async fn start(chromium: &Path, chromedriver: &Path, log: &Path) -> Browser {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let driver = std::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: None,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        wait_for("chromedriver to be ready", Duration::from_secs(30), || async {
            let status: Value = browser
                .http
                .get(format!("{}/status", browser.base))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (status["value"]["ready"] == true).then_some(())
        })
        .await;
        let created = browser
            .command(
                reqwest::Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium.display().to_string(),
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--window-size=1400,2300",
                            "--hide-scrollbars",
                        ],
                    },
                }}}),
            )
            .await;
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"));
        browser.session = Some(id.to_string());
        browser
    }

    /// A WebDriver command; its `value`.
    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if method == reqwest::Method::POST {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        let status = response.status();
        let answer: Value = response.json().await.expect("WebDriver JSON");
        assert!(status.is_success(), "WebDriver {path}: {status} {answer}");
        answer["value"].clone()
    }

    fn session_path(&self, tail: &str) -> String {
        format!("/session/{}{tail}", self.session.as_deref().expect("session"))
    }

    async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, &self.session_path("/url"), json!({ "url": url }))
            .await;
    }

    async fn run(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            &self.session_path("/execute/sync"),
            json!({"script": script, "args": []}),
        )
        .await
    }

    async fn screenshot(&self) -> Vec<u8> {
        let encoded = self
            .command(reqwest::Method::GET, &self.session_path("/screenshot"), Value::Null)
            .await;
        decode_base64(encoded.as_str().expect("base64 PNG"))
    }

    /// End the session, then chromedriver.
    async fn quit(mut self) {
        if let Some(id) = self.session.take() {
            self.command(reqwest::Method::DELETE, &format!("/session/{id}"), Value::Null)
                .await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // On a failed test, close the session over plain blocking HTTP (no
        // runtime to lean on in a drop), so Chromium goes with it.
        if let Some(id) = self.session.take() {
            let addr = self.base.trim_start_matches("http://").to_string();
            if let Ok(mut stream) = std::net::TcpStream::connect(&addr) {
                use std::io::{Read, Write};
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    stream,
                    "DELETE /session/{id} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// What the page shows, read by a script in the page.
const PAGE_STATE: &str = r##"
    const points = (name) => {
        const chart = document.querySelector(`svg[data-chart="${name}"]`);
        return chart ? Number(chart.getAttribute("data-points")) : -1;
    };
    const error = document.querySelector('[data-plugin-error="api-key-auth"]');
    return {
        url: location.href,
        refreshes: Number(document.body.dataset.refreshes || 0),
        requests: points("requests"),
        errors: points("errors"),
        latency: points("latency"),
        plugins: points("plugin-time"),
        ai_models: points("ai-models"),
        plugin_error: error ? error.textContent : null,
        error_rows: document.querySelector("#error-table").innerText,
        targets: document.querySelector("#targets").innerText,
        ai_empty: !document.querySelector("#ai-empty").hidden,
        trap_grants: document.querySelector('[data-grants="trap"]')?.innerText ?? null,
    };
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_draws_live_traffic_and_the_plugin_load_error() {
    let (chromium, chromedriver) = browser_tools();
    let started = Instant::now();
    let gw = start().await;

    // Traffic in the background until the test is done (bounded anyway).
    let running = Arc::new(AtomicBool::new(true));
    let traffic = {
        let running = running.clone();
        let base = gw.url("");
        tokio::spawn(async move {
            let http = client();
            for _ in 0..3000 {
                if !running.load(Ordering::Relaxed) {
                    break;
                }
                traffic_round(&http, &base).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let last_error = break_auth_plugin(&gw).await;
    assert!(last_error.contains("api-key-auth.wasm"), "{last_error}");

    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let browser = Browser::start(&chromium, &chromedriver, &tmp.join("chromedriver.log")).await;
    browser.open(&gw.admin_url(&format!("/?token={TOKEN}"))).await;

    let state = wait_for(
        "the dashboard to draw traffic and the plugin error",
        Duration::from_secs(60),
        || async {
            let state = browser.run(PAGE_STATE).await;
            let drawn = state["requests"].as_i64() > Some(0)
                && state["latency"].as_i64() > Some(0)
                && state["plugins"].as_i64() > Some(0)
                && state["refreshes"].as_i64() >= Some(2)
                && state["plugin_error"].as_str().is_some_and(|e| e.contains(&last_error))
                && state["error_rows"].as_str().is_some_and(|e| e.contains("plugin-trap"));
            drawn.then_some(state)
        },
    )
    .await;
    // The token left the address bar.
    assert!(!state["url"].as_str().unwrap().contains(TOKEN), "{state}");
    assert!(state["errors"].as_i64() > Some(0), "{state}");
    assert!(state["targets"].as_str().unwrap().contains("upstream echo"), "{state}");
    assert!(state["targets"].as_str().unwrap().contains("closed"), "{state}");
    // No AI traffic: the empty state, and an empty chart.
    assert_eq!(state["ai_empty"], true, "{state}");
    assert_eq!(state["ai_models"], 0, "{state}");
    // The plugin table lists each grant with where it came from.
    let grants = state["trap_grants"].as_str().unwrap_or_default();
    assert!(grants.contains("kv") && grants.contains("config"), "{state}");

    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let artifact = tmp.join("dashboard.png");
    std::fs::write(&artifact, &png).unwrap();
    println!(
        "screenshot: {} ({} bytes); browser test took {:?}",
        artifact.display(),
        png.len(),
        started.elapsed()
    );

    browser.quit().await;
    running.store(false, Ordering::Relaxed);
    traffic.await.unwrap();
    gw.stop().await;
}
