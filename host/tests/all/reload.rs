//! Hot reload: plugin files and the config change while the gateway serves,
//! and no request is lost.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;
use weir::admin_api::{GrantSource, PluginEntry, PluginList, PluginState, ReloadAnswer};

fn version_config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "versioned"
        upstream = "echo"
        [[routes.plugins]]
        name = "version"
        "#
    )
}

async fn start_versioned() -> (TestGateway, PathBuf) {
    let upstream = echo_upstream("echo").await;
    let gw = TestGateway::start(&version_config(upstream), &[("version", "guest-version-a")]).await;
    let file = gw.dir.path().join("plugins/version.wasm");
    (gw, file)
}

/// The version that handled the response phase, if the request succeeded.
async fn served_version(url: &str) -> Option<String> {
    let response = client().get(url).send().await.ok()?;
    if response.status() != 200 {
        return None;
    }
    response
        .headers()
        .get("x-version")
        .map(|v| v.to_str().unwrap_or_default().to_string())
}

async fn plugin_status(gw: &TestGateway, name: &str) -> PluginEntry {
    let all: PluginList = gw.admin_answer("/plugins").await;
    all.get(name).cloned().expect("the plugin is listed")
}

/// What one load request saw.
struct Seen {
    started: Instant,
    outcome: Result<String, String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_plugin_twenty_times_under_load_loses_no_request() {
    let (gw, file) = start_versioned().await;
    let url = gw.url("/");
    let running = Arc::new(AtomicBool::new(true));

    // Eight connections, each sending requests back to back.
    let mut load = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        let running = running.clone();
        load.push(tokio::spawn(async move {
            let http = client();
            let mut seen = Vec::new();
            while running.load(Ordering::Relaxed) {
                let started = Instant::now();
                let outcome = async {
                    let response = http
                        .get(&url)
                        .send()
                        .await
                        .map_err(|e| format!("request failed: {e}"))?;
                    let status = response.status();
                    let version = response
                        .headers()
                        .get("x-version")
                        .map(|v| v.to_str().unwrap_or("?").to_string());
                    let body = response.text().await.map_err(|e| format!("body cut: {e}"))?;
                    if status != 200 {
                        return Err(format!("status {status}: {body}"));
                    }
                    let echoed: Value = serde_json::from_str(&body).map_err(|e| format!("partial body ({e})"))?;
                    let upstream_saw = echoed["headers"]["x-version"].as_str().map(str::to_string);
                    // One version served the whole exchange.
                    match (version, upstream_saw) {
                        (Some(v), Some(u)) if v == u => Ok(v),
                        (v, u) => Err(format!("mixed versions: response {v:?}, request {u:?}")),
                    }
                }
                .await;
                seen.push(Seen { started, outcome });
            }
            seen
        }));
    }

    // Twenty swaps, alternating builds b, a, b, ... and alternating how
    // the file is written: renamed over (`mv`) or rewritten in place (`cp`).
    let builds = [built_plugin("guest-version-a"), built_plugin("guest-version-b")];
    let mut final_swap = Instant::now();
    for i in 0..20 {
        let next = (i + 1) % 2;
        let wanted = ["a", "b"][next];
        if i % 2 == 0 {
            replace_by_rename(&builds[next], &file);
        } else {
            replace_in_place(&builds[next], &file).await;
        }
        // Wait for each swap before the next, so every one really happens.
        // (How long a swap takes is measured by the load harness,
        // benches/load/run.sh; the limit here only catches a hang.)
        wait_for(
            &format!("swap {i} to version {wanted}"),
            Duration::from_secs(20),
            || async { (served_version(&url).await.as_deref() == Some(wanted)).then_some(()) },
        )
        .await;
        final_swap = Instant::now();
    }
    let final_version = "a";
    // Keep the load going a little past the final swap, then stop it.
    wait_for("requests after the final swap", Duration::from_secs(10), || async {
        (Instant::now() - final_swap > Duration::from_millis(300)).then_some(())
    })
    .await;
    running.store(false, Ordering::Relaxed);

    let mut total = 0;
    let mut failures = Vec::new();
    let mut versions = std::collections::BTreeMap::new();
    for task in load {
        for seen in task.await.unwrap() {
            total += 1;
            match &seen.outcome {
                Ok(v) => {
                    *versions.entry(v.clone()).or_insert(0) += 1;
                    if seen.started > final_swap && v != final_version {
                        failures.push(format!("old version {v} after the final swap"));
                    }
                }
                Err(e) => failures.push(e.clone()),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        versions.len() == 2 && total > 100,
        "load saw {versions:?} in {total} requests"
    );
    let plugin = plugin_status(&gw, "version").await.status;
    assert_eq!(plugin.state, PluginState::Loaded);
    assert_eq!(plugin.last_error, None, "{plugin:?}");
    gw.stop().await;
}

#[tokio::test]
async fn broken_files_leave_the_old_version_serving_and_report_why() {
    let (gw, file) = start_versioned().await;
    let url = gw.url("/");
    let dir = file.parent().unwrap().to_path_buf();
    let good_b = built_plugin("guest-version-b");
    let b_bytes = std::fs::read(&good_b).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let write_scratch = |name: &str, bytes: &[u8]| {
        let path = scratch.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };

    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "truncated",
            write_scratch("cut.wasm", &b_bytes[..b_bytes.len() / 3]),
            "not a valid WebAssembly component",
        ),
        (
            "core module",
            write_scratch("core.wasm", b"\0asm\x01\0\0\0"),
            "core WebAssembly module",
        ),
        (
            "wrong world",
            write_scratch("empty.wasm", b"\0asm\x0d\0\x01\0"),
            "weir:plugin/filter",
        ),
        ("configure rejects", built_plugin("api-key-auth"), "configure failed"),
    ];
    for (case, bytes, reason) in cases {
        replace_by_rename(&bytes, &file);
        let plugin = wait_for(
            &format!("{case}: error in admin API"),
            Duration::from_secs(10),
            || async {
                let plugin = plugin_status(&gw, "version").await.status;
                let error = plugin.last_error.as_deref().unwrap_or_default();
                error.contains(reason).then_some(plugin)
            },
        )
        .await;
        assert_eq!(plugin.state, PluginState::Loaded, "{case}: {plugin:?}");
        assert!(
            plugin.last_error.as_deref().unwrap().contains("version.wasm"),
            "{case}: names the file: {plugin:?}"
        );
        assert_eq!(
            served_version(&url).await.as_deref(),
            Some("a"),
            "{case}: old version keeps serving"
        );
    }

    // A manifest that does not parse, beside a good new build.
    std::fs::write(dir.join("version.toml"), "deadline_ms = \"soon\"\n").unwrap();
    replace_by_rename(&good_b, &file);
    wait_for("manifest error", Duration::from_secs(10), || async {
        let error = plugin_status(&gw, "version").await.status.last_error;
        let error = error.unwrap_or_default();
        (error.contains("manifest") && error.contains("version.toml")).then_some(())
    })
    .await;
    assert_eq!(served_version(&url).await.as_deref(), Some("a"));

    // Fix the manifest: the new build serves and the error clears.
    std::fs::write(dir.join("version.toml"), "deadline_ms = 200\n").unwrap();
    wait_for("version b after the fix", Duration::from_secs(10), || async {
        (served_version(&url).await.as_deref() == Some("b")).then_some(())
    })
    .await;
    let plugin = plugin_status(&gw, "version").await;
    assert_eq!(plugin.status.last_error, None, "{plugin:?}");
    let deadline_ms = plugin.limits.as_ref().map(|l| l.deadline_ms);
    assert_eq!(deadline_ms, Some(200), "manifest applied: {plugin:?}");
    gw.stop().await;
}

#[tokio::test]
async fn removing_a_plugin_fails_its_routes_closed_until_it_is_back() {
    let (gw, file) = start_versioned().await;
    let url = gw.url("/");
    std::fs::remove_file(&file).unwrap();
    let body = wait_for("503 after removal", Duration::from_secs(10), || async {
        let response = client().get(&url).send().await.ok()?;
        if response.status() != 503 {
            return None;
        }
        Some(response.text().await.unwrap())
    })
    .await;
    assert!(body.contains("plugin version"), "names the plugin: {body}");
    assert_eq!(plugin_status(&gw, "version").await.status.state, PluginState::Missing);

    std::fs::copy(built_plugin("guest-version-b"), &file).unwrap();
    wait_for("restored plugin", Duration::from_secs(10), || async {
        (served_version(&url).await.as_deref() == Some("b")).then_some(())
    })
    .await;
    assert_eq!(plugin_status(&gw, "version").await.status.state, PluginState::Loaded);
    gw.stop().await;
}

#[tokio::test]
async fn config_edits_apply_when_valid_and_are_refused_whole_when_not() {
    let upstream = echo_upstream("echo").await;
    let base = version_config(upstream);
    let gw = TestGateway::start(&base, &[("version", "guest-version-a"), ("headers", "headers")]).await;
    let config_file = gw.dir.path().join("weir.toml");
    let http = client();
    let admin_reload = || http.post(gw.admin_url("/reload")).send();

    // The route's plugin swapped for `headers` with a config it rejects.
    let rejected = with_cache(&base).replace(
        "name = \"version\"",
        "name = \"headers\"\n        config = { request = { set = { \"bad header\" = \"x\" } } }",
    );

    // Invalid: an unknown upstream and a plugin that rejects its config.
    let invalid = format!("{}\n[[routes]]\nname = \"bad\"\nupstream = \"nowhere\"\n", rejected);
    std::fs::write(&config_file, &invalid).unwrap();
    let response = admin_reload().await.unwrap();
    assert_eq!(response.status(), 422);
    let answer: ReloadAnswer = response.json().await.unwrap();
    assert!(!answer.reloaded, "{answer:?}");
    let problems = answer.problems.unwrap_or_default().join("\n");
    assert!(problems.contains("routes[1].upstream"), "{problems}");
    assert_eq!(
        served_version(&gw.url("/")).await.as_deref(),
        Some("a"),
        "old config keeps serving"
    );

    // Valid config, but a plugin rejects its route's config.

    std::fs::write(&config_file, &rejected).unwrap();
    let response = admin_reload().await.unwrap();
    assert_eq!(response.status(), 422);
    let problems = response.text().await.unwrap();
    assert!(
        problems.contains("plugin headers on route versioned: configure failed"),
        "{problems}"
    );
    assert_eq!(served_version(&gw.url("/")).await.as_deref(), Some("a"));

    // Valid: a new route appears, picked up by the file watcher alone.
    let valid = format!(
        "{}\n[[routes]]\nname = \"new\"\npath_prefix = \"/new\"\nupstream = \"echo\"\n[[routes.plugins]]\nname = \"headers\"\nconfig = {{ response = {{ set = {{ x-new = \"yes\" }} }} }}\n",
        with_cache(&base).replace(
            "upstream = \"echo\"\n        [[routes.plugins]]",
            "path_prefix = \"/old\"\n        upstream = \"echo\"\n        [[routes.plugins]]"
        )
    );
    std::fs::write(&config_file, &valid).unwrap();
    wait_for("the new route", Duration::from_secs(10), || async {
        let response = client().get(gw.url("/new/x")).send().await.ok()?;
        (response.headers().get("x-new").map(|v| v == "yes") == Some(true)).then_some(())
    })
    .await;
    assert_eq!(served_version(&gw.url("/old")).await.as_deref(), Some("a"));
    let response = client().get(gw.url("/elsewhere")).send().await.unwrap();
    assert_eq!(response.status(), 404, "the catch-all route became /old");
    assert_eq!(admin_reload().await.unwrap().status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_restart_with_a_warm_cache_skips_compilation() {
    let upstream = echo_upstream("echo").await;
    let cache = tempfile::tempdir().unwrap();
    let config = format!(
        "[plugins]\ncache_dir = {:?}\n{}",
        cache.path().display().to_string(),
        version_config(upstream)
    );
    let dir = TestGateway::dir_with_plugins(&[("version", "guest-version-a")]);
    for (run, expect_cached) in [(1, false), (2, true)] {
        let running = start_in(dir.path(), &config).await.unwrap();
        let admin = running.admin.unwrap();
        let all: PluginList = client()
            .get(format!("http://{admin}/plugins"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            all.plugins[0].status.compiled_from_cache,
            Some(expect_cached),
            "run {run}: {all:?}"
        );
        running.shutdown().await;
    }
}

#[tokio::test]
async fn a_replaced_certificate_is_served_to_new_connections_without_a_restart() {
    let logs = captured_logs();
    let upstream = echo_upstream("echo").await;
    let dir = TestGateway::dir_with_plugins(&[]);
    let first = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, first.cert.pem()).unwrap();
    std::fs::write(&key_file, first.signing_key.serialize_pem()).unwrap();
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        tls = {{ cert = "cert.pem", key = "key.pem" }}
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "all"
        upstream = "echo"
        "#
    );
    let running = start_in(dir.path(), &config).await.unwrap();
    let port = running.listeners[0].port();
    // A fresh client (no pooled connection) trusting only `cert`.
    let get = |cert: &rcgen::CertifiedKey<rcgen::KeyPair>| {
        let client = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
            .tls_built_in_root_certs(false)
            .resolve("localhost", ([127, 0, 0, 1], port).into())
            .build()
            .unwrap();
        async move { client.get(format!("https://localhost:{port}/x")).send().await }
    };
    assert_eq!(get(&first).await.unwrap().status(), 200);

    let second = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let swap = |path: &std::path::Path, text: String| {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    };
    swap(&key_file, second.signing_key.serialize_pem());
    swap(&cert_file, second.cert.pem());
    wait_for("the new certificate", Duration::from_secs(10), || async {
        get(&second).await.ok().filter(|r| r.status() == 200).map(|_| ())
    })
    .await;
    assert!(
        get(&first).await.is_err(),
        "new connections still get the old certificate"
    );

    // A pair that does not load leaves the current one serving: a key
    // that does not match the certificate, then a corrupt certificate.
    // Counted for this gateway's certificate only: the log is the whole
    // test binary's.
    let refusals = || {
        let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
        let cert = cert_file.display().to_string();
        text.lines()
            .filter(|l| l.contains("certificate not reloaded") && l.contains(&cert))
            .count()
    };
    let third = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let corrupt = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    for (what, file, text) in [
        (
            "a key that does not match",
            &key_file,
            third.signing_key.serialize_pem(),
        ),
        ("a corrupt certificate", &cert_file, corrupt.to_string()),
    ] {
        let before = refusals();
        swap(file, text);
        wait_for(&format!("{what} refused"), Duration::from_secs(10), || async {
            (refusals() > before).then_some(())
        })
        .await;
        assert_eq!(
            get(&second).await.map(|r| r.status()).ok(),
            Some(reqwest::StatusCode::OK),
            "{what}: the current certificate keeps serving"
        );
    }
    running.shutdown().await;
}

/// Every log line of this test binary from the first call on (the
/// gateway logs through `tracing`; this installs the process's
/// subscriber). Other tests' gateways log here too: a test looks only for
/// lines naming what is its own.
fn captured_logs() -> Arc<std::sync::Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                if let Ok(mut logs) = self.0.lock() {
                    logs.extend_from_slice(bytes);
                }
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Capture(writer.clone()))
            .try_init();
        logs
    })
    .clone()
}

/// A gateway whose route runs the capability probe plugin `probe`, with
/// a secret `token` the config does not grant it.
async fn start_probe(plugins_settings: &str) -> TestGateway {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        [plugins]
        {plugins_settings}
        [secrets.token]
        value = "s3cret"
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "probe"
        upstream = "echo"
        [[routes.plugins]]
        name = "probe"
        "#
    );
    TestGateway::start(&config, &[("probe", "guest-echo-config")]).await
}

/// `GET /secret/token` through the probe: its status and body.
async fn read_secret(gw: &TestGateway) -> (u16, String) {
    let response = client().get(gw.url("/secret/token")).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_dropped_manifest_granting_a_secret_is_shown_with_its_source_and_logged() {
    let logs = captured_logs();
    let gw = start_probe("").await;
    let (status, text) = read_secret(&gw).await;
    assert_eq!(status, 403, "not granted by the config: {text}");
    assert_eq!(plugin_status(&gw, "probe").await.status.grants, []);

    let manifest = gw.dir.path().join("plugins/probe.toml");
    std::fs::write(&manifest, "secrets = [\"token\"]\n").unwrap();
    let plugin = wait_for(
        "the manifest's grant in the admin API",
        Duration::from_secs(10),
        || async {
            let plugin = plugin_status(&gw, "probe").await.status;
            (plugin.grants.len() == 1).then_some(plugin)
        },
    )
    .await;
    let grants: Vec<_> = plugin
        .grants
        .iter()
        .map(|g| (&*g.grant, g.name.as_deref(), g.source))
        .collect();
    assert_eq!(grants, [("secret", Some("token"), GrantSource::Manifest)], "{plugin:?}");
    assert_eq!(plugin.manifest, Some(manifest.display().to_string()), "{plugin:?}");
    assert_eq!(read_secret(&gw).await, (200, "s3cret".to_string()));

    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("plugin probe now granted secret") && l.contains(&manifest.display().to_string()))
        .unwrap_or_else(|| panic!("no grant line naming {} in the log:\n{text}", manifest.display()));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("\"token\"") && line.contains("source=manifest"), "{line}");
    assert!(line.contains("probe.toml"), "names the manifest: {line}");
    assert!(!line.contains("s3cret"), "never the value: {line}");
    gw.stop().await;
}

#[tokio::test]
async fn with_manifest_grants_off_a_granting_manifest_is_refused_and_grants_nothing() {
    let gw = start_probe("manifest_grants = false").await;
    let dir = gw.dir.path().join("plugins");
    std::fs::write(dir.join("probe.toml"), "secrets = [\"token\"]\nkv = true\n").unwrap();
    let plugin = wait_for("the refused manifest", Duration::from_secs(10), || async {
        let plugin = plugin_status(&gw, "probe").await.status;
        plugin.last_error.is_some().then_some(plugin)
    })
    .await;
    let error = plugin.last_error.as_deref().unwrap();
    for needle in [
        "probe.toml",
        "secrets = [\"token\"]",
        "kv = true",
        "manifest_grants = false",
    ] {
        assert!(error.contains(needle), "missing {needle:?} in {error}");
    }
    assert_eq!(plugin.state, PluginState::Loaded, "old version serving: {plugin:?}");
    assert_eq!(plugin.grants, [], "{plugin:?}");
    let (code, text) = read_secret(&gw).await;
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("NotGranted"), "{text}");

    // A manifest that grants nothing is still read.
    std::fs::write(dir.join("probe.toml"), "deadline_ms = 200\n").unwrap();
    wait_for("the grant-free manifest applied", Duration::from_secs(10), || async {
        let plugin = plugin_status(&gw, "probe").await;
        (plugin.limits.map(|l| l.deadline_ms) == Some(200) && plugin.status.last_error.is_none()).then_some(())
    })
    .await;
    assert_eq!(read_secret(&gw).await.0, 403);
    gw.stop().await;
}
