//! A small harness for integration tests: real upstream servers, the real
//! gateway on `127.0.0.1:0`, and plugins built from this tree.
#![allow(dead_code)]

// `sighup.rs` includes this module too and uses only part of it.
#[allow(unused_imports)]
pub use weir_testing::{built_plugin, certs, postgres, redis, wait_for};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use weir::gateway::Gateway;
use weir::running::RunningGateway;

/// An echo upstream (the same one `weir demo-upstream` runs).
pub async fn echo_upstream(name: &str) -> SocketAddr {
    let (listener, addr) = weir::proxy::listener::bind("127.0.0.1:0").await.expect("bind upstream");
    tokio::spawn(weir::demo::serve(listener, name.to_string()));
    addr
}

/// An address nothing listens on.
pub async fn dead_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// A gateway under test: a temporary directory holding its config and
/// plugins, and the running gateway.
pub struct TestGateway {
    pub dir: tempfile::TempDir,
    pub running: Option<RunningGateway>,
}

impl TestGateway {
    /// A temporary gateway directory with `plugins/` holding the given
    /// built crates under their plugin names (`(plugin name, crate name)`).
    pub fn dir_with_plugins(plugins: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("plugins")).expect("mkdir plugins");
        for (name, krate) in plugins {
            std::fs::copy(
                built_plugin(krate),
                dir.path().join("plugins").join(format!("{name}.wasm")),
            )
            .expect("copy plugin");
        }
        dir
    }

    /// Write `config` (TOML) into a directory with `plugins`, load and start
    /// it. The config gets a shared compile cache so tests compile each
    /// plugin once.
    pub async fn start(config: &str, plugins: &[(&str, &str)]) -> TestGateway {
        let dir = Self::dir_with_plugins(plugins);
        let running = start_in(dir.path(), config)
            .await
            .unwrap_or_else(|e| panic!("gateway failed to start:\n{e}"));
        TestGateway {
            dir,
            running: Some(running),
        }
    }

    /// The first listener's base URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr(0))
    }

    /// Listener `i`'s address.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.running.as_ref().expect("running").listeners[i]
    }

    /// The admin API's base URL.
    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.running.as_ref().expect("running").admin.expect("admin configured")
        )
    }

    /// `GET path` on the admin API (no token), as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        client()
            .get(self.admin_url(path))
            .send()
            .await
            .expect("admin API")
            .json()
            .await
            .expect("admin JSON")
    }

    /// `GET path` on the admin API, read as its answer's type.
    pub async fn admin_answer<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let response = client().get(self.admin_url(path)).send().await.expect("admin API");
        let body = response.text().await.expect("admin answer");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

/// The compile cache shared by all tests of a run.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("weir-compile-cache")
}

/// Write `config` into `dir/weir.toml` (adding the test compile cache, and
/// turning the access log off unless the config sets it) and start it.
pub async fn start_in(dir: &Path, config: &str) -> Result<RunningGateway, String> {
    let file = write_config(dir, config);
    let gateway = Gateway::load_file(&file).await.map_err(|e| e.to_string())?;
    weir::running::start(gateway).await.map_err(|e| format!("{e:#}"))
}

/// Write `config` into `dir/weir.toml` as the tests run it: with the
/// shared compile cache, and the access log off unless the config sets it.
pub fn write_config(dir: &Path, config: &str) -> PathBuf {
    let mut config = with_cache(config);
    if !config.contains("[access_log]") {
        config = format!("[access_log]\nto = \"off\"\n{config}");
    }
    let file = dir.join("weir.toml");
    std::fs::write(&file, &config).expect("write config");
    file
}

/// Add `cache_dir` to a config's `[plugins]` table.
pub fn with_cache(config: &str) -> String {
    if config.contains("cache_dir") {
        return config.to_string();
    }
    let cache = format!("cache_dir = {:?}", cache_dir().display().to_string());
    if config.contains("[plugins]") {
        config.replacen("[plugins]", &format!("[plugins]\n{cache}"), 1)
    } else {
        format!("[plugins]\n{cache}\n{config}")
    }
}

/// Replace `dst` the way `mv` does: write beside it, then rename over it.
pub fn replace_by_rename(src: &Path, dst: &Path) {
    let tmp = dst.with_file_name(format!(".{}.tmp", dst.file_name().unwrap().to_string_lossy()));
    std::fs::copy(src, &tmp).expect("copy");
    std::fs::rename(&tmp, dst).expect("rename");
}

/// Replace `dst` the way `cp` does: truncate it and write it in place, in
/// two steps with a pause between, so a watcher may see it half-written.
pub async fn replace_in_place(src: &Path, dst: &Path) {
    use std::io::Write;
    let bytes = std::fs::read(src).expect("read");
    let mut file = std::fs::File::create(dst).expect("create");
    let half = bytes.len() / 2;
    file.write_all(&bytes[..half]).expect("write");
    file.flush().expect("flush");
    tokio::time::sleep(Duration::from_millis(30)).await;
    file.write_all(&bytes[half..]).expect("write");
}

/// A plain HTTP/1.1 client (no proxy from the environment).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// An HTTP/2 client using prior knowledge (no TLS).
pub fn h2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// The echo upstream's JSON for a response.
pub async fn echoed(response: reqwest::Response) -> serde_json::Value {
    let status = response.status();
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("status {status}: not echo JSON ({e}): {text}"))
}

/// Metrics scraped from the admin API and parsed as Prometheus text.
pub struct Scraped(pub prometheus_parse::Scrape);

impl Scraped {
    /// Scrape `GET /metrics` of `gw`'s admin API (no token).
    pub async fn from(gw: &TestGateway) -> Scraped {
        let response = client().get(gw.admin_url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text"),
        );
        let text = response.text().await.unwrap();
        if std::env::var_os("WEIR_PRINT_METRICS").is_some() {
            println!("{text}");
        }
        let lines = text.lines().map(|l| Ok(l.to_string()));
        Scraped(prometheus_parse::Scrape::parse(lines).expect("the exposition parses"))
    }

    /// The value of the one sample of `metric` whose labels include
    /// `labels`; 0 if there is none (a counter never touched).
    pub fn value(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<_> = self
            .0
            .samples
            .iter()
            .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect();
        assert!(matching.len() <= 1, "{metric} {labels:?}: {} samples", matching.len());
        match matching.first().map(|s| &s.value) {
            None => 0.0,
            Some(prometheus_parse::Value::Counter(v))
            | Some(prometheus_parse::Value::Gauge(v))
            | Some(prometheus_parse::Value::Untyped(v)) => *v,
            Some(prometheus_parse::Value::Histogram(buckets)) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Some(other) => panic!("{metric}: unexpected {other:?}"),
        }
    }
}

/// A provider emulator (OpenAI, Anthropic, Gemini, Ollama wire formats)
/// on a free loopback port: its state (request count, faults) and address.
pub async fn emulator() -> (weir_emulator::Emulator, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind emulator");
    let addr = listener.local_addr().expect("addr");
    let state = weir_emulator::Emulator::new();
    tokio::spawn(weir_emulator::serve(listener, state.clone()));
    (state, addr)
}

/// The access log's lines, once there are `count` of them across the
/// current file and its rotated ones. The files are read twice and used
/// only when both reads agree and every line is whole, so a rotation or a
/// write in the middle of reading is read again rather than misread.
pub async fn access_lines(dir: &std::path::Path, count: usize) -> Vec<serde_json::Value> {
    let read = || -> Option<String> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("access.log"))
            .collect();
        // access.log.N is older the larger N; access.log is the newest.
        files.sort_by_key(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            std::cmp::Reverse(name.rsplit('.').next().and_then(|n| n.parse::<u32>().ok()).unwrap_or(0))
        });
        files.iter().map(|f| std::fs::read_to_string(f).ok()).collect()
    };
    wait_for("the access log lines", std::time::Duration::from_secs(10), || async {
        let text = read()?;
        if read()? != text || !text.ends_with('\n') {
            return None;
        }
        let lines: Vec<serde_json::Value> = text.lines().map(serde_json::from_str).collect::<Result<_, _>>().ok()?;
        (lines.len() >= count).then_some(lines)
    })
    .await
}

/// A gateway with an echo upstream, a route `api` (`/api`) behind
/// `api-key-auth` (key `alice-key`), a route `faulty` (`/faulty`) through
/// the trapping test plugin (granted `kv` by the config), and an admin
/// API with `token`, if given.
pub async fn api_and_faulty_gateway(token: Option<&str>) -> TestGateway {
    let echo = echo_upstream("echo").await;
    let token = token.map(|t| format!("token = {t:?}")).unwrap_or_default();
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        {token}
        [plugin.trap]
        kv = true
        [upstreams.echo]
        targets = ["{echo}"]

        [[routes]]
        name = "api"
        path_prefix = "/api"
        upstream = "echo"
        [[routes.plugins]]
        name = "api-key-auth"
        config = {{ keys = {{ alice = "alice-key" }} }}

        [[routes]]
        name = "faulty"
        path_prefix = "/faulty"
        upstream = "echo"
        [[routes.plugins]]
        name = "trap"
        "#
    );
    TestGateway::start(&config, &[("api-key-auth", "api-key-auth"), ("trap", "guest-trap")]).await
}

/// The `weir` binary running a config file, with its log lines collected;
/// killed when dropped.
pub struct WeirProcess {
    pub process: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl WeirProcess {
    /// `weir run --config CONFIG`, logging at info level.
    pub fn start(config: &Path) -> WeirProcess {
        use std::io::BufRead;
        let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "--config"])
            .arg(config)
            .env("WEIR_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start weir");
        let stderr = process.stderr.take().expect("piped stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        WeirProcess { process, log }
    }

    /// The text after `marker` in the first log line holding it (say,
    /// `listening on ` for the address).
    pub async fn logged(&self, marker: &str) -> String {
        wait_for(marker, Duration::from_secs(60), || async {
            let log = self.log.lock().unwrap();
            log.iter()
                .find_map(|l| Some(l[l.find(marker)? + marker.len()..].trim().to_string()))
        })
        .await
    }

    /// How many log lines hold `marker`.
    pub fn count(&self, marker: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.contains(marker)).count()
    }

    /// Send signal `name` (`TERM`, `HUP`) with the shell's `kill`.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.process.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// How many file descriptors it has open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.process.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// What its open descriptors are, by kind (`socket`,
    /// `anon_inode:[eventfd]`, files), for a failure message.
    pub fn fd_kinds(&self) -> std::collections::BTreeMap<String, usize> {
        let mut kinds = std::collections::BTreeMap::new();
        let entries = std::fs::read_dir(format!("/proc/{}/fd", self.process.id()));
        for entry in entries.into_iter().flatten().flatten() {
            let target = std::fs::read_link(entry.path())
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            let kind = target.split(':').next().unwrap_or_default().to_string();
            *kinds.entry(kind).or_insert(0) += 1;
        }
        kinds
    }

    /// Its resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Its exit status, once it exits; panics after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.process.try_wait().expect("wait for weir") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "weir did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The `weir` binary serving `config` from a directory with `plugins`,
/// written as [`TestGateway::start`] writes it (the shared compile cache,
/// no access log unless set). For tests that measure the gateway's own
/// process — its memory, its descriptors — apart from the tests running
/// beside them in this one.
pub struct SpawnedGateway {
    pub dir: tempfile::TempDir,
    pub process: WeirProcess,
    addr: String,
}

impl SpawnedGateway {
    pub async fn start(config: &str, plugins: &[(&str, &str)]) -> SpawnedGateway {
        let dir = TestGateway::dir_with_plugins(plugins);
        let process = WeirProcess::start(&write_config(dir.path(), config));
        let addr = process.logged("listening on ").await;
        SpawnedGateway { dir, process, addr }
    }

    /// The first listener's base URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, and the exit status within `within`.
    pub async fn stop(mut self, within: Duration) -> std::process::ExitStatus {
        self.process.signal("TERM");
        self.process.wait_exit(within).await
    }
}
