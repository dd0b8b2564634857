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
use serde_json::Value;

/// Errors shown: the newest few.
const ERRORS_SHOWN: usize = 5;

struct Admin {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Admin {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
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
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: the answer is not JSON"))
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
    let health = admin.get("/healthz").await?;
    let (routes, plugins, data, state) = tokio::try_join!(
        admin.get("/routes"),
        admin.get("/plugins"),
        admin.get("/dashboard/data?minutes=1"),
        admin.get("/state"),
    )?;
    Ok(render(&admin.base, &health, &routes, &plugins, &data, &state))
}

fn render(base: &str, health: &Value, routes: &Value, plugins: &Value, data: &Value, state: &Value) -> String {
    let mut out = String::new();
    let healthy = health["status"] == "ok";
    let _ = writeln!(out, "weir at {base}: {}", if healthy { "up" } else { "NOT healthy" });
    match (&state["store"], &state["up"]) {
        (Value::String(store), Value::Bool(false)) => {
            let _ = writeln!(
                out,
                "shared state: {store} UNAVAILABLE ({}; routes follow {} by default)",
                text(&state["error"]),
                text(&state["on_unavailable"])
            );
        }
        (Value::String(store), _) => {
            let _ = writeln!(out, "shared state: {store}");
        }
        _ => {}
    }
    let totals = &data["totals"]["last_minute"];
    let _ = writeln!(out, "last minute: {}", traffic(totals));

    let _ = writeln!(out, "\nroutes");
    let empty = Vec::new();
    let route_stats = data["routes"].as_array().unwrap_or(&empty);
    for route in routes["routes"].as_array().unwrap_or(&empty) {
        let name = route["name"].as_str().unwrap_or("?");
        let backend = match (&route["upstream"], &route["models"]) {
            (Value::String(upstream), _) => format!("upstream {upstream}"),
            (_, Value::Array(models)) => format!("AI models {}", list(models)),
            _ => "no backend".to_string(),
        };
        let _ = writeln!(out, "  {name} → {backend}");
        for target in route["target_status"].as_array().unwrap_or(&empty) {
            let _ = writeln!(
                out,
                "    {}  circuit {}  weight {}  in flight {}",
                text(&target["target"]),
                text(&target["circuit"]),
                target["weight"],
                target["in_flight"]
            );
        }
        for target in route["ai_targets"].as_array().unwrap_or(&empty) {
            let _ = writeln!(
                out,
                "    {}  model {}  {}  circuit {}{}",
                text(&target["name"]),
                text(&target["model"]),
                text(&target["url"]),
                text(&target["circuit"]),
                if target["shim_loaded"] == false {
                    "  (shim not loaded)"
                } else {
                    ""
                }
            );
        }
        if let Some(chain) = route["plugins"].as_array().filter(|c| !c.is_empty()) {
            let _ = writeln!(out, "    plugins: {}", list(chain));
        }
        if let Some(missing) = route["missing_plugins"].as_array().filter(|m| !m.is_empty()) {
            let _ = writeln!(out, "    MISSING plugins (answers 503): {}", list(missing));
        }
        match route_stats.iter().find(|r| r["route"] == name) {
            Some(stats) => {
                let _ = writeln!(out, "    last minute: {}", traffic(&stats["last_minute"]));
            }
            None => {
                let _ = writeln!(out, "    last minute: no requests");
            }
        }
    }

    let _ = writeln!(out, "\nplugins");
    let plugins = plugins["plugins"].as_array().unwrap_or(&empty);
    if plugins.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for plugin in plugins {
        let version = plugin["version"].as_str().map_or("-", |v| &v[..v.len().min(12)]);
        let _ = writeln!(
            out,
            "  {}  {}  version {}  routes {}",
            text(&plugin["name"]),
            text(&plugin["state"]),
            version,
            plugin["routes"].as_array().map_or("-".to_string(), |r| list(r))
        );
        let _ = writeln!(out, "    grants: {}", grants(&plugin["grants"]));
        if let Some(error) = plugin["last_error"].as_str() {
            let when = plugin["last_error_at"]
                .as_u64()
                .map_or(String::new(), |s| format!(" at {}", time(s * 1000)));
            let _ = writeln!(out, "    LAST ERROR{when}: {error}");
        }
    }

    let errors = data["errors"].as_array().unwrap_or(&empty);
    let _ = writeln!(
        out,
        "\nrecent errors{}",
        if errors.is_empty() { ": none" } else { " (newest first)" }
    );
    for error in errors.iter().take(ERRORS_SHOWN) {
        let _ = writeln!(
            out,
            "  {}  {} {}  {} {}  route {}",
            time(error["time_ms"].as_u64().unwrap_or(0)),
            error["status"],
            error["error"].as_str().unwrap_or("-"),
            text(&error["method"]),
            text(&error["path"]),
            error["route"].as_str().unwrap_or("-")
        );
    }
    out
}

/// "2.50 req/s, 10.0% errors (3 of 30), p50 1.2 ms, p99 8.0 ms"
fn traffic(stats: &Value) -> String {
    let requests = stats["requests"].as_u64().unwrap_or(0);
    let errors = stats["errors"].as_u64().unwrap_or(0);
    let mut line = format!(
        "{:.2} req/s, {:.1}% errors ({errors} of {requests})",
        stats["rps"].as_f64().unwrap_or(0.0),
        stats["error_rate"].as_f64().unwrap_or(0.0) * 100.0
    );
    if let (Some(p50), Some(p99)) = (stats["p50_ms"].as_f64(), stats["p99_ms"].as_f64()) {
        let _ = write!(line, ", p50 {p50:.1} ms, p99 {p99:.1} ms");
    }
    line
}

/// "kv (config), secret \"token\" (manifest)", or "none".
fn grants(grants: &Value) -> String {
    let Some(grants) = grants.as_array().filter(|g| !g.is_empty()) else {
        return "none".into();
    };
    grants
        .iter()
        .map(|g| {
            let name = g["name"].as_str().map_or(String::new(), |n| format!(" {n:?}"));
            format!("{}{name} ({})", text(&g["grant"]), text(&g["source"]))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn list(values: &[Value]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    values.iter().map(text).collect::<Vec<_>>().join(", ")
}

fn time(unix_ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}
