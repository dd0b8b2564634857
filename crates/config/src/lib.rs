//! The gateway config file: its schema, defaults and validation.
//!
//! A config is read from TOML into [`Config`] (unknown fields are errors,
//! every one of them listed by its path; see [`Config::read`]), then
//! [`Config::validate`] checks it whole and reports every problem with the
//! path of the field at fault (`routes[2].plugins[0].name`). Paths in
//! the file (plugin directory, certificates, secret files) are relative to
//! the directory of the config file.
//!
//! ```toml
//! [[listeners]]
//! address = "127.0.0.1:8080"
//!
//! [plugins]
//! dir = "plugins"
//!
//! [plugin.rate-limit]
//! kv = true
//!
//! [upstreams.echo]
//! targets = ["127.0.0.1:9000"]
//!
//! [[routes]]
//! name = "api"
//! path_prefix = "/api"
//! upstream = "echo"
//!
//! [[routes.plugins]]
//! name = "api-key-auth"
//! config = { keys = { alice = "alice-key" } }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod ai;
pub mod budget;
mod observe;
mod read;
mod secret;
mod state;
mod upstream;
pub mod usage;

pub use ai::*;
pub use observe::*;
pub use read::{ConfigReading, MAX_UNKNOWN_FIELDS};
pub use secret::SecretSetting;
pub use state::*;
pub use upstream::*;

/// A route's name, unique within a config.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(transparent)]
pub struct RouteName(pub String);

/// A plugin's name: the file stem of `NAME.wasm` in the plugin directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(transparent)]
pub struct PluginName(pub String);

/// An upstream pool's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(transparent)]
pub struct UpstreamName(pub String);

macro_rules! display_name {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl $t {
            /// The name as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    )*};
}
display_name!(RouteName, PluginName, UpstreamName);

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the gateway accepts client traffic.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// The admin API (loopback only).
    pub admin: Option<AdminConfig>,
    /// Size limits applied to every request.
    #[serde(default)]
    pub limits: Limits,
    /// How request paths are made canonical before routing.
    #[serde(default)]
    pub http: HttpConfig,
    /// The access log.
    #[serde(default)]
    pub access_log: AccessLogConfig,
    /// Trace export over OTLP.
    #[serde(default)]
    pub tracing: TracingConfig,
    /// Where shared state (kv, rate limits, AI budgets and cache) lives.
    #[serde(default)]
    pub state: StateSetting,
    /// The plugin directory and default plugin limits.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Per-plugin settings: grants, limits, fault behaviour, instance mode.
    #[serde(default)]
    pub plugin: BTreeMap<PluginName, PluginSettings>,
    /// Named secrets that plugins may be granted.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Named upstream pools.
    #[serde(default)]
    pub upstreams: BTreeMap<UpstreamName, UpstreamConfig>,
    /// Routes, matched in order; the first match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Settings for every AI route: usage database, prices, budgets.
    #[serde(default)]
    pub ai: AiConfig,
    /// The directory the config file lives in; relative paths resolve here.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// One listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `IP:PORT` to bind; port 0 picks a free port.
    pub address: String,
    /// Serve TLS with this certificate and key (PEM). HTTP/2 and HTTP/1.1
    /// are offered by ALPN. Without it, plain HTTP/1.1 and HTTP/2 (prior
    /// knowledge) are both served.
    pub tls: Option<TlsConfig>,
}

/// Certificate chain and private key files, PEM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The admin API listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Loopback `IP:PORT` to bind.
    pub address: String,
    /// Bearer token required on every admin request.
    pub token: Option<String>,
    /// Name of an environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// `IP:PORT` of the probe listener (`GET /healthz`, `GET /readyz`, no
    /// token; `GET /metrics`), for orchestrators, load balancers and
    /// Prometheus reaching it from outside the host; any address. Absent:
    /// no probe listener.
    pub health_address: Option<String>,
    /// Host names, besides `localhost` and loopback addresses, that
    /// requests to the admin API may be addressed to (`Host`), e.g. a name
    /// for this host an operator's browser uses. Any other `Host` is
    /// refused (DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Name of an environment variable holding the bearer token that
    /// `GET /metrics` on the probe listener requires (absent, with
    /// `metrics_token_file`: no token).
    pub metrics_token_env: Option<String>,
    /// File holding that token (trailing newline trimmed; relative to the
    /// config file).
    pub metrics_token_file: Option<PathBuf>,
}

impl AdminConfig {
    /// Where the probe listener's metrics token comes from.
    pub fn metrics_token(&self) -> SecretSetting<'_> {
        SecretSetting {
            at: "admin.metrics_token",
            env: self.metrics_token_env.as_deref(),
            file: self.metrics_token_file.as_deref(),
        }
    }
}

/// How the gateway reads requests: the canonical form of paths (see
/// [`weir_core::path`]).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Merge runs of `/` in a path into one.
    pub merge_slashes: bool,
    /// `reject` (400) or `keep` paths holding `%2F`, `%5C` or `\`.
    pub escaped_slashes: weir_core::path::EscapedSlashes,
}

impl Default for HttpConfig {
    fn default() -> Self {
        let policy = weir_core::path::PathPolicy::default();
        HttpConfig {
            merge_slashes: policy.merge_slashes,
            escaped_slashes: policy.escaped_slashes,
        }
    }
}

impl HttpConfig {
    /// The path policy these settings make.
    pub fn path_policy(&self) -> weir_core::path::PathPolicy {
        weir_core::path::PathPolicy {
            merge_slashes: self.merge_slashes,
            escaped_slashes: self.escaped_slashes,
        }
    }
}

/// Size limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body buffered for a plugin that asked for it
    /// (over it: 413).
    pub max_request_body_bytes: usize,
    /// Largest response body buffered for a plugin that asked for it
    /// (over it: 502).
    pub max_response_body_bytes: usize,
    /// Largest request head (request line and headers) accepted over
    /// HTTP/1.1 (over it: 431). At least 8192.
    pub max_header_bytes: usize,
    /// Most headers accepted in one request (over it: 431).
    pub max_headers: usize,
    /// Most requests in flight in the whole gateway, counted until their
    /// response body ends; more are answered 503 with `retry-after` at once
    /// instead of queueing. Absent: no limit.
    pub max_concurrent_requests: Option<usize>,
    /// Time a client has to send a request's head, in milliseconds; a
    /// slower one is disconnected (slowloris). For a connection's first
    /// request it counts from the moment the connection was accepted, TLS
    /// handshake and protocol detection included, so a connection that
    /// sends nothing is closed too.
    pub header_read_timeout_ms: u64,
    /// How long a client connection may stay open with no request in
    /// flight (HTTP/1.1 keep-alive between requests, HTTP/2 with no open
    /// stream), in milliseconds, before the gateway closes it.
    pub idle_timeout_ms: u64,
    /// How often an HTTP/2 connection is pinged, in milliseconds; a client
    /// that does not answer a ping within `http2_keepalive_timeout_ms` is
    /// disconnected. 0: no pings.
    pub http2_keepalive_interval_ms: u64,
    /// How long an HTTP/2 ping may go unanswered, in milliseconds.
    pub http2_keepalive_timeout_ms: u64,
    /// The longest pause between two pieces of a request body, in
    /// milliseconds; a longer one ends the request with 408.
    pub request_body_timeout_ms: u64,
    /// The slowest a client may send a request body, in bytes per second,
    /// counted over the time the gateway waited for it (not while the
    /// upstream was slow to take it) once `request_body_rate_grace_ms`
    /// have passed; a slower one ends the request with 408. 0: no minimum.
    pub min_request_body_rate: u64,
    /// How long a request body may be slower than `min_request_body_rate`
    /// before the rate is enforced, in milliseconds.
    pub request_body_rate_grace_ms: u64,
    /// Most open client connections; further ones wait in the kernel's
    /// accept queue until one closes. Absent: no limit.
    pub max_connections: Option<usize>,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// On shutdown (SIGTERM, SIGINT), how long requests in flight may take
    /// to finish before their connections are closed, in milliseconds.
    pub shutdown_grace_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_body_bytes: 1 << 20,
            max_response_body_bytes: 8 << 20,
            max_header_bytes: 64 << 10,
            max_headers: 100,
            max_concurrent_requests: None,
            header_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            http2_keepalive_interval_ms: 30_000,
            http2_keepalive_timeout_ms: 20_000,
            request_body_timeout_ms: 30_000,
            min_request_body_rate: 240,
            request_body_rate_grace_ms: 5_000,
            max_connections: None,
            max_concurrent_streams: 256,
            shutdown_grace_ms: 30_000,
        }
    }
}

/// The plugin directory and the defaults for every plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Directory holding `NAME.wasm` files.
    pub dir: PathBuf,
    /// Where compiled plugins are cached; default `$XDG_CACHE_HOME/weir` or
    /// `~/.cache/weir`.
    pub cache_dir: Option<PathBuf>,
    /// Default deadline for one plugin call, in milliseconds.
    pub deadline_ms: u64,
    /// Default linear-memory cap per plugin instance, in MiB.
    pub memory_mb: u64,
    /// Default most idle warm instances kept per plugin.
    pub max_idle_instances: usize,
    /// The largest plugin file read, in MiB; a larger one is refused as a
    /// load error (the old version keeps serving).
    pub max_file_mb: u64,
    /// Whether a plugin's manifest (`NAME.toml`) may grant it capabilities
    /// (`kv`, `secrets`, `outbound_hosts`). With false, a manifest that
    /// grants any is refused as a load error, so only this config grants.
    pub manifest_grants: bool,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: PathBuf::from("plugins"),
            cache_dir: None,
            deadline_ms: 100,
            memory_mb: 64,
            max_idle_instances: 64,
            max_file_mb: 128,
            manifest_grants: true,
        }
    }
}

/// How a plugin's instances are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceMode {
    /// Warm instances are reused from a pool (fast; the default).
    #[default]
    Pooled,
    /// A fresh instance for every request (stronger isolation).
    Fresh,
}

/// Settings for one plugin, shared by every route that uses it. The same
/// fields make up a plugin's manifest (`NAME.toml` beside `NAME.wasm`);
/// a field set in the gateway config's `[plugin.NAME]` wins over the
/// manifest's, which wins over the defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Deadline for one call, in milliseconds (default: `plugins.deadline_ms`).
    pub deadline_ms: Option<u64>,
    /// Linear-memory cap per instance, in MiB (default: `plugins.memory_mb`).
    pub memory_mb: Option<u64>,
    /// Skip this plugin when it faults instead of failing the request
    /// (default false). Never set this on an authentication plugin.
    pub fail_open: Option<bool>,
    /// `pooled` (default) or `fresh`.
    pub instance: Option<InstanceMode>,
    /// Grant the key-value store (default false).
    pub kv: Option<bool>,
    /// Secrets this plugin may read, by name.
    pub secrets: Option<Vec<String>>,
    /// Hosts this plugin may call: `host:port`, or `host` for any port.
    pub outbound_hosts: Option<Vec<String>>,
    /// Ceiling on an outbound call's duration, in milliseconds (default 5000).
    pub outbound_timeout_ms: Option<u64>,
}

impl PluginSettings {
    /// These settings, with fields they leave unset taken from `base`.
    pub fn over(&self, base: &PluginSettings) -> PluginSettings {
        PluginSettings {
            deadline_ms: self.deadline_ms.or(base.deadline_ms),
            memory_mb: self.memory_mb.or(base.memory_mb),
            fail_open: self.fail_open.or(base.fail_open),
            instance: self.instance.or(base.instance),
            kv: self.kv.or(base.kv),
            secrets: self.secrets.clone().or_else(|| base.secrets.clone()),
            outbound_hosts: self.outbound_hosts.clone().or_else(|| base.outbound_hosts.clone()),
            outbound_timeout_ms: self.outbound_timeout_ms.or(base.outbound_timeout_ms),
        }
    }

    /// The capabilities these settings grant, as written (`kv = true`,
    /// `secrets = ["name"]`, `outbound_hosts = ["host"]`); settings that
    /// grant nothing (`kv = false`, an empty list) are not listed.
    pub fn granted(&self) -> Vec<String> {
        let mut granted = Vec::new();
        if self.kv == Some(true) {
            granted.push("kv = true".to_string());
        }
        for (field, list) in [("secrets", &self.secrets), ("outbound_hosts", &self.outbound_hosts)] {
            if let Some(list) = list.as_ref().filter(|l| !l.is_empty()) {
                granted.push(format!("{field} = {list:?}"));
            }
        }
        granted
    }

    /// Check the settings against the config (`at` prefixes each path).
    pub fn problems(&self, at: &str, config: &Config) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| problems.push(Problem { path, message });
        if self.deadline_ms == Some(0) {
            problem(format!("{at}.deadline_ms"), "must be at least 1".into());
        }
        if let Some(mb) = self.memory_mb
            && (mb == 0 || mb > 4096)
        {
            problem(format!("{at}.memory_mb"), "must be between 1 and 4096".into());
        }
        if self.outbound_timeout_ms == Some(0) {
            problem(format!("{at}.outbound_timeout_ms"), "must be at least 1".into());
        }
        for (j, secret) in self.secrets.iter().flatten().enumerate() {
            if !config.secrets.contains_key(secret) {
                problem(format!("{at}.secrets[{j}]"), format!("unknown secret {secret:?}"));
            }
        }
        for (j, host) in self.outbound_hosts.iter().flatten().enumerate() {
            if host.is_empty() || host.contains('/') || host.contains("://") {
                problem(
                    format!("{at}.outbound_hosts[{j}]"),
                    format!("{host:?} is not host or host:port"),
                );
            }
        }
        problems
    }
}

/// A plugin's manifest: `NAME.toml` beside `NAME.wasm`, holding
/// [`PluginSettings`].
pub fn read_manifest(file: &Path) -> Result<Option<PluginSettings>, String> {
    match weir_core::files::read_regular_text(file, MAX_SMALL_FILE_BYTES) {
        Ok(text) => toml::from_str(&text)
            .map(Some)
            .map_err(|e| format!("manifest {}: {}", file.display(), e.message())),
        Err(weir_core::files::FileError::NotFound) => Ok(None),
        Err(e) => Err(format!("manifest {}: {e}", file.display())),
    }
}

pub use weir_core::files::MAX_SMALL_FILE_BYTES;

/// Where a secret's value comes from: exactly one of the fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// The value itself (for examples and tests).
    pub value: Option<String>,
    /// An environment variable holding the value.
    pub env: Option<String>,
    /// A file holding the value (trailing newline trimmed).
    pub file: Option<PathBuf>,
}

/// A route: what it matches, its plugin chain and where it goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name, used in logs, errors and the admin API.
    pub name: RouteName,
    /// Match this host (case-insensitive, port ignored); `*.example.com`
    /// matches any subdomain. Absent: any host.
    pub host: Option<String>,
    /// Match paths under this prefix, at a segment boundary (`/api`
    /// matches `/api` and `/api/x`, not `/apix`).
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    /// Match only these methods. Absent: any method.
    pub methods: Option<Vec<String>>,
    /// The upstream pool requests go to (set this or `ai`).
    pub upstream: Option<UpstreamName>,
    /// Serve the OpenAI chat completions API from provider targets (set
    /// this or `upstream`).
    pub ai: Option<AiRouteConfig>,
    /// Send the client's `host` to the upstream instead of the target's.
    #[serde(default)]
    pub preserve_host: bool,
    /// Most requests in flight on this route; more are answered 503 with
    /// `retry-after` at once. Absent: only the gateway's limit applies.
    pub max_concurrent_requests: Option<usize>,
    /// What this route does while a shared (Redis) state store is
    /// unavailable; absent: `state.on_unavailable`.
    pub state_unavailable: Option<OnUnavailable>,
    /// The plugin chain, run in order on requests and in reverse on
    /// responses.
    #[serde(default)]
    pub plugins: Vec<RoutePlugin>,
}

fn default_path_prefix() -> String {
    "/".to_string()
}

/// One plugin in a route's chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePlugin {
    /// The plugin (file `NAME.wasm` in the plugin directory).
    pub name: PluginName,
    /// This route's config for the plugin, handed to its `configure`.
    #[serde(default = "empty_table")]
    pub config: toml::Value,
}

fn empty_table() -> toml::Value {
    toml::Value::Table(Default::default())
}

/// Every problem found in a config file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// One entry per problem: where and what.
    pub problems: Vec<Problem>,
}

/// One problem: the path of the field at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// e.g. `routes[1].plugins[0].name`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "config {}: {} problem{}",
            self.file.display(),
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {}: {}", p.path, p.message)?;
        }
        Ok(())
    }
}

impl Config {
    /// Read, parse and validate a config file (see [`Config::read`]).
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        Config::read(file).into_result()
    }

    /// Parse and validate config text; `file` is used in messages only.
    pub fn parse(text: &str, file: &Path, base_dir: &Path) -> Result<Config, ConfigError> {
        Config::read_text(text, file, base_dir).into_result()
    }

    /// A path from the config resolved against the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// The plugin directory, resolved.
    pub fn plugin_dir(&self) -> PathBuf {
        self.resolve(&self.plugins.dir)
    }

    /// What `route` does while the shared state store is unavailable.
    pub fn state_policy(&self, route: &RouteName) -> OnUnavailable {
        self.routes
            .iter()
            .find(|r| &r.name == route)
            .and_then(|r| r.state_unavailable)
            .unwrap_or_else(|| self.state.config().on_unavailable)
    }

    /// The config's own settings for a plugin (all unset when it has none).
    pub fn plugin_settings(&self, name: &PluginName) -> PluginSettings {
        self.plugin.get(name).cloned().unwrap_or_default()
    }

    /// The routes whose chain or targets use `plugin`, in config order.
    pub fn routes_using<'a>(&'a self, plugin: &'a PluginName) -> impl Iterator<Item = &'a RouteName> + 'a {
        self.routes
            .iter()
            .filter(|r| {
                r.plugins.iter().any(|p| p.name == *plugin)
                    || r.ai.iter().any(|ai| ai.targets.iter().any(|t| t.shim == *plugin))
            })
            .map(|r| &r.name)
    }

    /// Every plugin some route uses, in its chain or as a target's shim,
    /// each once.
    pub fn used_plugins(&self) -> BTreeSet<PluginName> {
        self.routes
            .iter()
            .flat_map(|r| {
                let shims = r.ai.iter().flat_map(|ai| ai.targets.iter().map(|t| t.shim.clone()));
                r.plugins.iter().map(|p| p.name.clone()).chain(shims)
            })
            .collect()
    }

    /// Whether any route serves AI traffic.
    pub fn has_ai_routes(&self) -> bool {
        self.routes.iter().any(|r| r.ai.is_some())
    }

    /// Check the config whole; an empty list means it is valid. Checks that
    /// need the plugins themselves (files, `configure`) happen when they are
    /// loaded.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| problems.push(Problem { path, message });

        if self.listeners.is_empty() {
            problem("listeners".into(), "at least one listener is required".into());
        }
        for p in self
            .tracing
            .problems()
            .into_iter()
            .chain(self.access_log.problems(self))
            .chain(self.state.config().problems(self))
        {
            problem(p.path, p.message);
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if let Err(e) = l.address.parse::<SocketAddr>() {
                problem(
                    format!("listeners[{i}].address"),
                    format!("{:?} is not IP:PORT: {e}", l.address),
                );
            }
            if let Some(tls) = &l.tls {
                for (field, path) in [("cert", &tls.cert), ("key", &tls.key)] {
                    let full = self.resolve(path);
                    if !full.is_file() {
                        problem(
                            format!("listeners[{i}].tls.{field}"),
                            format!("no such file {}", full.display()),
                        );
                    }
                }
            }
        }

        if let Some(admin) = &self.admin {
            match admin.address.parse::<SocketAddr>() {
                Ok(addr) if !addr.ip().is_loopback() => problem(
                    "admin.address".into(),
                    format!(
                        "{} is not a loopback address; the admin API is served on loopback only",
                        admin.address
                    ),
                ),
                Ok(_) => {}
                Err(e) => problem(
                    "admin.address".into(),
                    format!("{:?} is not IP:PORT: {e}", admin.address),
                ),
            }
            if let Some(health) = &admin.health_address {
                match health.parse::<SocketAddr>() {
                    Ok(addr) => {
                        // Two binds clash on one port when the addresses are
                        // equal or either is a wildcard; port 0 never clashes.
                        let clash = |other: SocketAddr| {
                            addr.port() != 0
                                && addr.port() == other.port()
                                && (addr.ip() == other.ip()
                                    || addr.ip().is_unspecified()
                                    || other.ip().is_unspecified())
                        };
                        let mut taken: Vec<(&str, &String)> =
                            self.listeners.iter().map(|l| ("a listener", &l.address)).collect();
                        taken.push(("the admin address", &admin.address));
                        for (what, other) in taken {
                            if other.parse::<SocketAddr>().is_ok_and(clash) {
                                problem(
                                    "admin.health_address".into(),
                                    format!(
                                        "{health} is also {what} ({other}); the probe listener needs a port of its own"
                                    ),
                                );
                            }
                        }
                    }
                    Err(e) => problem("admin.health_address".into(), format!("{health:?} is not IP:PORT: {e}")),
                }
            }
            for (j, host) in admin.allowed_hosts.iter().enumerate() {
                let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
                let name = !bare.is_empty()
                    && bare
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
                if !name && bare.parse::<std::net::IpAddr>().is_err() {
                    problem(
                        format!("admin.allowed_hosts[{j}]"),
                        format!("{host:?} is not a host name or address (no port, scheme or path)"),
                    );
                }
            }
            let metrics_token = admin.metrics_token();
            if metrics_token.is_set() && admin.health_address.is_none() {
                problem(
                    "admin.health_address".into(),
                    "metrics_token_env or metrics_token_file is set, but there is no probe listener to serve metrics"
                        .into(),
                );
            }
            for p in metrics_token.problems(self) {
                problem(p.path, p.message);
            }
            if let Some(var) = &admin.token_env {
                if admin.token.is_some() {
                    problem("admin.token_env".into(), "set token or token_env, not both".into());
                } else if std::env::var(var).map(|v| v.is_empty()).unwrap_or(true) {
                    problem(
                        "admin.token_env".into(),
                        format!("environment variable {var} is not set"),
                    );
                }
            }
        }

        if self.limits.max_header_bytes < 8192 {
            problem("limits.max_header_bytes".into(), "must be at least 8192".into());
        }
        if self.limits.max_headers == 0 {
            problem("limits.max_headers".into(), "must be at least 1".into());
        }
        for (field, value) in [
            ("max_concurrent_requests", self.limits.max_concurrent_requests),
            ("max_connections", self.limits.max_connections),
        ] {
            if value == Some(0) {
                problem(format!("limits.{field}"), "must be at least 1".into());
            }
        }
        for (field, value) in [
            ("header_read_timeout_ms", self.limits.header_read_timeout_ms),
            ("idle_timeout_ms", self.limits.idle_timeout_ms),
            ("http2_keepalive_timeout_ms", self.limits.http2_keepalive_timeout_ms),
            ("request_body_timeout_ms", self.limits.request_body_timeout_ms),
        ] {
            if value == 0 {
                problem(format!("limits.{field}"), "must be at least 1".into());
            }
        }
        if self.limits.max_concurrent_streams == 0 {
            problem("limits.max_concurrent_streams".into(), "must be at least 1".into());
        }

        if self.plugins.max_file_mb == 0 {
            problem("plugins.max_file_mb".into(), "must be at least 1".into());
        }
        if self.plugins.deadline_ms == 0 {
            problem("plugins.deadline_ms".into(), "must be at least 1".into());
        }
        if self.plugins.memory_mb == 0 || self.plugins.memory_mb > 4096 {
            problem("plugins.memory_mb".into(), "must be between 1 and 4096".into());
        }
        let used = self.used_plugins();
        for (name, settings) in &self.plugin {
            let at = format!("plugin.{name}");
            if !valid_plugin_name(name.as_str()) {
                problem(at.clone(), "plugin names use letters, digits, '-' and '_'".into());
            }
            for p in settings.problems(&at, self) {
                problem(p.path, p.message);
            }
            if !used.contains(name) {
                tracing::warn!(plugin = %name, "plugin.{name} is configured but no route uses it");
            }
        }

        for (name, secret) in &self.secrets {
            let at = format!("secrets.{name}");
            let sources = [secret.value.is_some(), secret.env.is_some(), secret.file.is_some()];
            match sources.iter().filter(|s| **s).count() {
                1 => {}
                0 => problem(at.clone(), "needs one of value, env, file".into()),
                _ => problem(at.clone(), "set only one of value, env, file".into()),
            }
            if let Some(var) = &secret.env
                && std::env::var_os(var).is_none()
            {
                problem(format!("{at}.env"), format!("environment variable {var} is not set"));
            }
            if let Some(file) = &secret.file {
                let full = self.resolve(file);
                if !full.is_file() {
                    problem(format!("{at}.file"), format!("no such file {}", full.display()));
                }
            }
        }

        for (name, upstream) in &self.upstreams {
            for p in upstream.problems(&format!("upstreams.{name}"), self) {
                problem(p.path, p.message);
            }
        }

        for p in self.usage_store_problems() {
            problem(p.path, p.message);
        }
        for message in self.ai.budgets.validate() {
            let (path, message) = message.split_once(": ").unwrap_or(("", &message));
            problem(format!("ai.budgets.{path}"), message.to_string());
        }

        let mut seen = BTreeSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            if route.name.0.is_empty() {
                problem(format!("{at}.name"), "must not be empty".into());
            } else if !seen.insert(&route.name) {
                problem(format!("{at}.name"), format!("duplicate route name {:?}", route.name.0));
            }
            if route.max_concurrent_requests == Some(0) {
                problem(format!("{at}.max_concurrent_requests"), "must be at least 1".into());
            }
            if !route.path_prefix.starts_with('/') {
                problem(
                    format!("{at}.path_prefix"),
                    format!("{:?} must start with '/'", route.path_prefix),
                );
            } else {
                // Requests are matched by their canonical path, so a prefix
                // in any other form would never match.
                match weir_core::path::normalize(&route.path_prefix, self.http.path_policy()) {
                    Ok(canonical) if canonical != route.path_prefix => problem(
                        format!("{at}.path_prefix"),
                        format!(
                            "{:?} is not a canonical path (requests are matched as {canonical:?}); write it that way",
                            route.path_prefix
                        ),
                    ),
                    Ok(_) => {}
                    Err(e) => problem(format!("{at}.path_prefix"), format!("{:?}: {e}", route.path_prefix)),
                }
            }
            if let Some(host) = &route.host
                && (host.is_empty() || host.contains('/'))
            {
                problem(format!("{at}.host"), format!("{host:?} is not a host name"));
            }
            if let Some(methods) = &route.methods {
                for (j, m) in methods.iter().enumerate() {
                    if http::Method::from_bytes(m.as_bytes()).is_err() {
                        problem(format!("{at}.methods[{j}]"), format!("{m:?} is not an HTTP method"));
                    }
                }
            }
            match (&route.upstream, &route.ai) {
                (Some(upstream), None) => {
                    if !self.upstreams.contains_key(upstream) {
                        problem(format!("{at}.upstream"), format!("unknown upstream {:?}", upstream.0));
                    }
                }
                (None, Some(ai)) => {
                    for p in self.ai_route_problems(&format!("{at}.ai"), ai) {
                        problem(p.path, p.message);
                    }
                }
                (Some(_), Some(_)) => problem(at.clone(), "set upstream or ai, not both".into()),
                (None, None) => problem(at.clone(), "needs upstream or ai".into()),
            }
            for (j, p) in route.plugins.iter().enumerate() {
                if !valid_plugin_name(p.name.as_str()) {
                    problem(
                        format!("{at}.plugins[{j}].name"),
                        format!("{:?}: plugin names use letters, digits, '-' and '_'", p.name.0),
                    );
                }
                if !p.config.is_table() {
                    problem(format!("{at}.plugins[{j}].config"), "must be a table".into());
                }
                for p in prompt_template_problems(&format!("{at}.plugins[{j}]"), route, p) {
                    problem(p.path, p.message);
                }
            }
        }
        problems
    }
}

/// Plugin names double as file names, so keep them plain.
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The route's plugin config as JSON, for `configure`.
pub fn plugin_config_json(value: &toml::Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"), Path::new("."))
    }

    const MINIMAL: &str = r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["127.0.0.1:9000"]
        [[routes]]
        name = "api"
        upstream = "echo"
    "#;

    #[test]
    fn minimal_config_is_valid_with_defaults() {
        let config = parse(MINIMAL).expect("valid");
        assert_eq!(config.routes[0].path_prefix, "/");
        assert_eq!(config.plugins.deadline_ms, 100);
        assert_eq!(config.plugins.memory_mb, 64);
    }

    #[test]
    fn unknown_field_is_rejected_with_its_name() {
        let err = parse(&format!("{MINIMAL}\nbogus = 1\n")).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn every_unknown_field_is_listed_by_its_path_beside_the_other_problems() {
        let text = r#"
            [[listeners]]
            address = "127.0.0.1:0"
            bogus_field = 1
            [upstreams.echo]
            targets = [{ address = "127.0.0.1:9", wieght = 2 }]
            [plugin.auth]
            kv = true
            grant = "all"
            [[routes]]
            name = "api"
            upstream = "nowhere"
            [[routes.plugins]]
            name = "auth"
            typo = true
        "#;
        let reading = Config::read_text(text, Path::new("test.toml"), Path::new("."));
        let mut paths: Vec<_> = reading.problems.iter().map(|p| p.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            [
                "listeners[0].bogus_field",
                "plugin.auth.grant",
                "routes[0].plugins[0].typo",
                "routes[0].upstream",
                "upstreams.echo.targets[0].wieght",
            ]
        );
        let bogus = reading.problems.iter().find(|p| p.path == "listeners[0].bogus_field");
        let message = bogus.map(|p| p.message.as_str()).unwrap_or_default();
        assert!(
            message.contains("unknown field; expected `address` or `tls`"),
            "{message}"
        );
        assert!(message.contains("(line 4)"), "{message}");
        // The rest of the file was read: the config is there, fields left out.
        let config = reading.config.expect("read past the unknown fields");
        assert_eq!(config.routes[0].plugins[0].name.as_str(), "auth");
        assert!(parse(text).is_err());
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_by_its_path_and_line() {
        let text = "[[listeners]]\naddress = \"127.0.0.1:0\"\nbogus = 1\n[[routes]]\nname = \"a\"\nmethods = \"GET\"\n";
        let reading = Config::read_text(text, Path::new("test.toml"), Path::new("."));
        assert!(reading.config.is_none());
        let paths: Vec<_> = reading.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["listeners[0].bogus", "routes[0].methods"]);
        assert!(
            reading.problems[1].message.contains("(line 6)"),
            "{:?}",
            reading.problems
        );
    }

    #[test]
    fn upstream_targets_take_weights_and_bad_pool_settings_are_named() {
        let pool = |settings: &str| {
            parse(&format!(
                "[[listeners]]\naddress = \"127.0.0.1:0\"\n[upstreams.echo]\n{settings}\n\
                 [[routes]]\nname = \"r\"\nupstream = \"echo\"\n"
            ))
        };
        let config = pool(
            r#"targets = ["127.0.0.1:1", { address = "127.0.0.1:2", weight = 5 }]
            balance = "least_requests""#,
        )
        .unwrap();
        let echo = &config.upstreams[&UpstreamName("echo".into())];
        let weights: Vec<_> = echo.targets.iter().map(|t| (t.address(), t.weight())).collect();
        assert_eq!(weights, [("127.0.0.1:1", 1), ("127.0.0.1:2", 5)]);
        assert_eq!(echo.balance, Balance::LeastRequests);

        for (settings, culprit) in [
            (
                r#"targets = [{ address = "127.0.0.1:2", weight = 0 }]"#,
                "upstreams.echo.targets[0].weight",
            ),
            (r#"targets = [{ adress = "127.0.0.1:2" }]"#, "adress"),
            (r#"targets = [7]"#, "an address"),
            (
                r#"targets = ["127.0.0.1:1"]
                balance = "random""#,
                "random",
            ),
            (
                r#"targets = ["127.0.0.1:1"]
                idle_timeout_ms = 0"#,
                "upstreams.echo.idle_timeout_ms",
            ),
            (
                r#"targets = ["127.0.0.1:1"]
                total_timeout_ms = 0"#,
                "upstreams.echo.total_timeout_ms",
            ),
            (
                r#"targets = ["127.0.0.1:1"]
                circuit_breaker = { failure_rate_percent = 150 }"#,
                "upstreams.echo.circuit_breaker.failure_rate_percent",
            ),
        ] {
            let err = pool(settings).unwrap_err().to_string();
            assert!(err.contains(culprit), "{settings}: {err}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
            [[listeners]]
            address = "nonsense"
            [admin]
            address = "0.0.0.0:9000"
            [upstreams.echo]
            targets = []
            [[routes]]
            name = "a"
            upstream = "nowhere"
            path_prefix = "api"
            [[routes.plugins]]
            name = "../evil"
            [[routes]]
            name = "a"
            upstream = "echo"
            methods = ["GE T"]
        "#;
        let err = parse(text).unwrap_err();
        let paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "listeners[0].address",
            "admin.address",
            "upstreams.echo.targets",
            "routes[0].upstream",
            "routes[0].path_prefix",
            "routes[0].plugins[0].name",
            "routes[1].name",
            "routes[1].methods[0]",
        ] {
            assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
        }
        assert!(err.to_string().contains("unknown upstream \"nowhere\""), "{err}");
    }

    #[test]
    fn grants_must_name_defined_secrets() {
        let text = format!("{MINIMAL}\n[plugin.auth]\nsecrets = [\"missing\"]\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.problems[0].path, "plugin.auth.secrets[0]");
    }

    #[test]
    fn targets_parse_with_default_ports() {
        assert_eq!(parse_target("10.0.0.1:81").unwrap().authority.as_str(), "10.0.0.1:81");
        assert_eq!(parse_target("http://a.test").unwrap().authority.as_str(), "a.test:80");
        let t = parse_target("https://a.test").unwrap();
        assert_eq!((t.scheme.as_str(), t.authority.as_str()), ("https", "a.test:443"));
        assert!(parse_target("ftp://a.test").is_err());
        assert!(parse_target("http://a.test/x").is_err());
    }
}
