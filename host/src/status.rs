//! `weir status`: a terminal summary of a running gateway, read from its
//! admin API — health first (so an unreachable API or a refused token is
//! told apart before anything else is asked), then routes with their
//! targets' circuits, plugins with their grants and last load errors, the
//! last minute's traffic, shared state and the latest errors — printed as
//! plain text tables. It only reads; every request has a 10 s limit.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use weir_admin_api::{
    DashboardData, Grant, Health, LastMinuteTraffic, PluginList, RouteBackend, RouteList, SharedState,
};

/// Errors shown: the newest few.
const ERRORS_SHOWN: usize = 5;

struct Admin {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Admin {
    /// `GET path`, its answer read as a `T`.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let mut request = http::Request::get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Empty::new()).context("bad admin URL")?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        };
        let (status, body) = match tokio::time::timeout(Duration::from_secs(10), exchange).await {
            Err(_) => bail!("the admin API at {} did not answer within 10 s", self.base),
            Ok(Err(e)) => bail!(
                "cannot reach the admin API at {}: {} (is the gateway running, with its [admin] listener at that address?)",
                self.base,
                source_chain(e.as_ref())
            ),
            Ok(Ok(answer)) => answer,
        };
        if status == http::StatusCode::UNAUTHORIZED {
            match self.token {
                Some(_) => bail!("the admin API at {} refused the token", self.base),
                None => bail!(
                    "the admin API at {} needs a token: pass --token or set WEIR_ADMIN_TOKEN",
                    self.base
                ),
            }
        }
        if !status.is_success() {
            bail!(
                "GET {path} on the admin API answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            );
        }
        serde_json::from_slice(&body).with_context(|| {
            format!(
                "GET {path} on the admin API at {}: the answer is not what this weir status reads (is the gateway another version?)",
                self.base
            )
        })
    }
}

fn source_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let _ = write!(text, ": {e}");
        source = e.source();
    }
    text
}

/// The summary of the gateway whose admin API is at `admin`.
pub async fn report(admin: &str, token: Option<String>) -> anyhow::Result<String> {
    let base = admin.trim_end_matches('/').to_string();
    if !base.starts_with("http://") {
        bail!("--admin must be an http:// URL (the admin API serves plain HTTP on loopback), not {base:?}");
    }
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let admin = Admin { base, token, client };
    // Health first: it tells an unreachable API or a refused token apart
    // before anything else is asked.
    let health: Health = admin.get("/healthz").await?;
    let (routes, plugins, data, state) = tokio::try_join!(
        admin.get("/routes"),
        admin.get("/plugins"),
        admin.get("/dashboard/data?minutes=1"),
        admin.get("/state"),
    )?;
    Ok(render(&admin.base, &health, &routes, &plugins, &data, &state))
}

fn render(
    base: &str,
    health: &Health,
    routes: &RouteList,
    plugins: &PluginList,
    data: &DashboardData,
    state: &SharedState,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "weir at {base}: {}",
        if health.is_ok() { "up" } else { "NOT healthy" }
    );
    match &state.redis {
        Some(redis) if !state.up => {
            let _ = writeln!(
                out,
                "shared state: {} UNAVAILABLE ({}; routes follow {} by default)",
                state.store,
                redis.error.as_deref().unwrap_or("-"),
                redis.on_unavailable.as_str()
            );
        }
        _ => {
            let _ = writeln!(out, "shared state: {}", state.store);
        }
    }
    let totals = &data.totals.last_minute;
    let _ = writeln!(out, "last minute: {}", traffic(totals));

    let _ = writeln!(out, "\nroutes");
    for route in &routes.routes {
        let name = &route.name;
        let backend = match &route.backend {
            Some(RouteBackend::Upstream(upstream)) => format!("upstream {}", upstream.upstream),
            Some(RouteBackend::Ai(ai)) => format!("AI models {}", list(&ai.models)),
            None => "no backend".to_string(),
        };
        let _ = writeln!(out, "  {name} → {backend}");
        match &route.backend {
            Some(RouteBackend::Upstream(upstream)) => {
                for target in &upstream.target_status {
                    let _ = writeln!(
                        out,
                        "    {}  circuit {}  weight {}  in flight {}",
                        target.target,
                        target.circuit.as_str(),
                        target.weight,
                        target.in_flight
                    );
                }
            }
            Some(RouteBackend::Ai(ai)) => {
                for target in &ai.ai_targets {
                    let _ = writeln!(
                        out,
                        "    {}  model {}  {}  circuit {}{}",
                        target.name,
                        target.model,
                        target.url,
                        target.circuit.as_str(),
                        if target.shim_loaded { "" } else { "  (shim not loaded)" }
                    );
                }
            }
            None => {}
        }
        if !route.plugins.is_empty() {
            let _ = writeln!(out, "    plugins: {}", list(&route.plugins));
        }
        if !route.missing_plugins.is_empty() {
            let _ = writeln!(
                out,
                "    MISSING plugins (answers 503): {}",
                list(&route.missing_plugins)
            );
        }
        match data.routes.iter().find(|r| &r.route == name) {
            Some(stats) => {
                let _ = writeln!(out, "    last minute: {}", traffic(&stats.last_minute));
            }
            None => {
                let _ = writeln!(out, "    last minute: no requests");
            }
        }
    }

    let _ = writeln!(out, "\nplugins");
    if plugins.plugins.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for plugin in &plugins.plugins {
        let plugin = &plugin.status;
        let version = plugin.version.as_deref().map_or("-", |v| v.get(..12).unwrap_or(v));
        let _ = writeln!(
            out,
            "  {}  {}  version {}  routes {}",
            plugin.name,
            plugin.state.as_str(),
            version,
            list(&plugin.routes)
        );
        let _ = writeln!(out, "    grants: {}", grants(&plugin.grants));
        if let Some(error) = &plugin.last_error {
            let when = plugin.last_error_at.map_or(String::new(), |s| {
                format!(" at {}", time(s.saturating_mul(1000) as i64))
            });
            let _ = writeln!(out, "    LAST ERROR{when}: {error}");
        }
    }

    let errors = &data.errors;
    let _ = writeln!(
        out,
        "\nrecent errors{}",
        if errors.is_empty() { ": none" } else { " (newest first)" }
    );
    for error in errors.iter().take(ERRORS_SHOWN) {
        let _ = writeln!(
            out,
            "  {}  {} {}  {} {}  route {}",
            time(error.time_ms),
            error.status,
            error.error.as_deref().unwrap_or("-"),
            error.method,
            error.path,
            error.route.as_deref().unwrap_or("-")
        );
    }
    out
}

/// "2.50 req/s, 10.0% errors (3 of 30), p50 1.2 ms, p99 8.0 ms"
fn traffic(stats: &LastMinuteTraffic) -> String {
    let (requests, errors) = (stats.requests, stats.errors);
    let mut line = format!(
        "{:.2} req/s, {:.1}% errors ({errors} of {requests})",
        stats.rps,
        stats.error_rate * 100.0
    );
    if let (Some(p50), Some(p99)) = (stats.p50_ms, stats.p99_ms) {
        let _ = write!(line, ", p50 {p50:.1} ms, p99 {p99:.1} ms");
    }
    line
}

/// "kv (config), secret \"token\" (manifest)", or "none".
fn grants(grants: &[Grant]) -> String {
    if grants.is_empty() {
        return "none".into();
    }
    grants
        .iter()
        .map(|g| {
            let name = g.name.as_ref().map_or(String::new(), |n| format!(" {n:?}"));
            format!("{}{name} ({})", g.grant, g.source.as_str())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn list(values: &[String]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    values.join(", ")
}

fn time(unix_ms: i64) -> String {
    let unix_ms = u64::try_from(unix_ms).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}
