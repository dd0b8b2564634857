//! The admin API, served on loopback:
//!
//! - `GET /healthz` — the gateway is up.
//! - `GET /plugins` — each plugin: file, version (SHA-256), load time,
//!   state, routes, limits, its grants (`kv`, secrets, outbound hosts) each
//!   with its source (`config` or `manifest`), its manifest file, and the
//!   last failed load if any.
//! - `GET /routes` — each route: upstream, targets (weight, circuit state,
//!   requests in flight), plugin chain.
//! - `GET /metrics` — Prometheus metrics, OpenMetrics text format (see
//!   `observe::metrics`).
//! - `GET /state` — where shared state lives (memory, or Redis: whether it
//!   answers, the last error, outages).
//! - `POST /reload` — re-read the config file; answers 200, or 422 with
//!   every problem (the old config keeps serving).
//! - `GET /usage` — AI usage records, newest first, with totals over every
//!   record matching the filters (`consumer`, `route`, `target`, `model`,
//!   `since_ms`, `until_ms`, `limit`, `group_by` =
//!   consumer|route|target|model) in the query string.
//! - `GET /` — the live dashboard (its script and style at
//!   `/dashboard/app.js` and `/dashboard/app.css`, embedded in the binary).
//! - `GET /dashboard/data?minutes=N` — the last N (1–15) minutes of traffic
//!   the dashboard draws (see `observe::history`).
//!
//! Each JSON answer is a type of `weir_admin_api` ([`weir_admin_api`]),
//! built in `answers.rs` or by the layer that owns the data, so the server,
//! `weir status` and the tests read one definition of it.
//!
//! Before anything else, a request must be addressed to the admin API
//! (its `Host` a loopback name or address, or one of `[admin]
//! allowed_hosts`; 421 otherwise) and a state-changing one must come from
//! the admin API's own origin (403 otherwise): see [`access`], which keeps
//! web pages in a browser on the same host out (DNS rebinding, cross-site
//! `POST`).
//!
//! When a token is set, every request needs `authorization: Bearer TOKEN`
//! or the session cookie. A browser cannot send a header when it navigates,
//! so `GET /?token=TOKEN` with the right token sets the cookie (`HttpOnly;
//! SameSite=Strict`, holding a hash of the token, not the token) and
//! redirects to `/`, which takes the token out of the address bar.
//!
//! Orchestrators probe from outside the host, so liveness and readiness
//! have a listener of their own, on any address and without a token
//! ([`probes`], `[admin] health_address`); it serves `GET /metrics` too,
//! behind a token of its own if one is set.

pub mod access;
mod answers;
pub mod probes;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use self::access::AllowedHosts;
use weir_admin_api::{ErrorBody, Health, ReloadAnswer};
use weir_ai::usage::UsageFilter;
use weir_core::body::{Body, full_body};
use weir_gateway::Gateway;
use weir_proxy::router::Backend;

/// Serve the admin API until `shutdown` flips. `allowed_hosts` are the
/// names, besides loopback ones, requests may be addressed to.
pub async fn serve(
    listener: TcpListener,
    token: Option<String>,
    allowed_hosts: Vec<String>,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
) {
    let own = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!("admin API not served: its listener has no address: {e}");
            return;
        }
    };
    let allowed = Arc::new(AllowedHosts::new(own, &allowed_hosts));
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let gateway = gateway.clone();
        let token = token.clone();
        let allowed = allowed.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let gateway = gateway.clone();
                let token = token.clone();
                let allowed = allowed.clone();
                async move { Ok::<_, Infallible>(handle(request, token.as_deref(), &allowed, &gateway).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn json_response(status: StatusCode, answer: &impl Serialize) -> Response<Body> {
    let (status, body) = match serde_json::to_string_pretty(answer) {
        Ok(body) => (status, body),
        // Only a type serde cannot write as JSON fails here: a bug, told as one.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::to_string(&ErrorBody::new(format!("answer not serialized: {e}"))).unwrap_or_default(),
        ),
    };
    let mut response = Response::new(full_body(format!("{body}\n")));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

async fn handle(
    request: Request<Incoming>,
    token: Option<&str>,
    allowed: &AllowedHosts,
    gateway: &Gateway,
) -> Response<Body> {
    if let Err(refusal) = allowed.check(&request) {
        return json_response(refusal.status(), &ErrorBody::new(refusal.to_string()));
    }
    if let Some(token) = token {
        let navigating = request.method() == Method::GET && request.uri().path() == "/";
        if navigating && let Some(given) = query_token(request.uri().query()) {
            return login(given, token);
        }
        if !authorized(request.headers(), token) {
            if navigating {
                return dashboard::page_response(
                    StatusCode::UNAUTHORIZED,
                    dashboard::LOGIN_PAGE,
                    "text/html; charset=utf-8",
                );
            }
            return json_response(
                StatusCode::UNAUTHORIZED,
                &ErrorBody::new("missing or wrong bearer token"),
            );
        }
    }
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => dashboard::page_response(StatusCode::OK, dashboard::INDEX, "text/html; charset=utf-8"),
        (&Method::GET, "/dashboard/app.js") => {
            dashboard::page_response(StatusCode::OK, dashboard::SCRIPT, "text/javascript; charset=utf-8")
        }
        (&Method::GET, "/dashboard/app.css") => {
            dashboard::page_response(StatusCode::OK, dashboard::STYLE, "text/css; charset=utf-8")
        }
        (&Method::GET, "/dashboard/data") => {
            let minutes = request
                .uri()
                .query()
                .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "minutes"))
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .unwrap_or(weir_observe::history::WINDOW_MINUTES);
            json_response(StatusCode::OK, &gateway.observer().history.snapshot(minutes))
        }
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, &Health::ok()),
        (&Method::GET, "/plugins") => json_response(StatusCode::OK, &answers::plugins(gateway)),
        (&Method::GET, "/routes") => json_response(StatusCode::OK, &answers::routes(gateway)),
        (&Method::GET, "/metrics") => metrics(gateway),
        (&Method::GET, "/state") => json_response(StatusCode::OK, &answers::state(gateway)),
        (&Method::GET, "/usage") => usage(gateway, request.uri().query().unwrap_or_default()).await,
        (&Method::POST, "/reload") => match gateway.reload_config().await {
            Ok(()) => json_response(
                StatusCode::OK,
                &ReloadAnswer {
                    reloaded: true,
                    problems: None,
                },
            ),
            Err(e) => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &ReloadAnswer {
                    reloaded: false,
                    problems: Some(e.to_string().lines().map(|l| l.trim().to_string()).collect()),
                },
            ),
        },
        (
            _,
            "/" | "/dashboard/app.js" | "/dashboard/app.css" | "/dashboard/data" | "/healthz" | "/plugins" | "/routes"
            | "/state" | "/reload" | "/usage" | "/metrics",
        ) => json_response(StatusCode::METHOD_NOT_ALLOWED, &ErrorBody::new("method not allowed")),
        _ => json_response(StatusCode::NOT_FOUND, &ErrorBody::new("no such admin endpoint")),
    }
}

/// The Prometheus metrics, with the gauges of what is serving now (target
/// circuits, idle instances) taken afresh.
pub fn metrics(gateway: &Gateway) -> Response<Body> {
    use weir_observe::metrics::{PluginNameLabels, StateLabels};
    let proxy = gateway.proxy().load();
    let metrics = &proxy.observer.metrics;
    metrics.target_state.clear();
    let mut seen = std::collections::HashSet::new();
    for route in proxy.routes.iter() {
        let Backend::Upstream(pool) = &route.backend else {
            continue;
        };
        if !seen.insert(pool.name.clone()) {
            continue;
        }
        for status in pool.status() {
            metrics
                .target_state
                .get_or_create(&StateLabels {
                    upstream: pool.name.to_string(),
                    target: status.target.authority.to_string(),
                    state: status.state.as_str(),
                })
                .set(1);
        }
    }
    metrics.idle_instances.clear();
    for plugin in &proxy.plugins {
        metrics
            .idle_instances
            .get_or_create(&PluginNameLabels {
                plugin: plugin.name().to_string(),
            })
            .set(plugin.idle_instances() as i64);
    }
    match gateway.state().status() {
        Some(redis) => {
            metrics.state_store_up.set(i64::from(redis.up));
            metrics
                .state_unavailable_ops
                .inner()
                .store(redis.unavailable_ops, Ordering::Relaxed);
            metrics.state_outages.inner().store(redis.outages, Ordering::Relaxed);
        }
        None => {
            metrics.state_store_up.set(1);
        }
    }
    let mut response = Response::new(full_body(metrics.encode()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

async fn usage(gateway: &Gateway, query: &str) -> Response<Body> {
    let filter: UsageFilter = match serde_urlencoded::from_str(query) {
        Ok(filter) => filter,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, &ErrorBody::new(format!("bad query: {e}"))),
    };
    let Some(ledger) = gateway.usage_ledger().await else {
        return json_response(
            StatusCode::NOT_FOUND,
            &ErrorBody::new("no AI routes: nothing is recorded"),
        );
    };
    match ledger.query(filter).await {
        Ok(report) => json_response(StatusCode::OK, &report),
        Err(e) => json_response(StatusCode::INTERNAL_SERVER_ERROR, &ErrorBody::new(e.to_string())),
    }
}

/// The session cookie's name.
const COOKIE: &str = "weir_admin";

/// The session cookie's value for `token`: a hash, so the token itself is
/// never stored by the browser.
fn cookie_value(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("weir admin session\0{token}").as_bytes()))
}

/// Whether a request carries the bearer token or the session cookie.
fn authorized(headers: &http::HeaderMap, token: &str) -> bool {
    let expected = format!("Bearer {token}");
    let bearer = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| constant_time_eq(v.as_bytes(), expected.as_bytes()));
    if bearer {
        return true;
    }
    let expected = cookie_value(token);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == COOKIE && constant_time_eq(value.as_bytes(), expected.as_bytes()))
}

/// The `token` parameter of a query string, if any.
fn query_token(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// `GET /?token=...`: with the right token, set the session cookie and
/// send the browser to `/`, so the token leaves the address bar.
fn login(given: String, token: &str) -> Response<Body> {
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return dashboard::page_response(
            StatusCode::UNAUTHORIZED,
            dashboard::LOGIN_PAGE,
            "text/html; charset=utf-8",
        );
    }
    let mut response = Response::new(full_body(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, http::HeaderValue::from_static("/"));
    headers.insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, http::HeaderValue::from_static("no-referrer"));
    if let Ok(cookie) = http::HeaderValue::from_str(&format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        cookie_value(token)
    )) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The dashboard's files, embedded in the binary.
mod dashboard {
    use super::*;

    /// The page.
    pub const INDEX: &str = include_str!("dashboard/index.html");
    /// Its script.
    pub const SCRIPT: &str = include_str!("dashboard/app.js");
    /// Its style.
    pub const STYLE: &str = include_str!("dashboard/app.css");
    /// What a browser without the session cookie sees.
    pub const LOGIN_PAGE: &str = include_str!("dashboard/login.html");

    /// A page or asset. The page loads nothing but its own files and the
    /// admin API: the policy forbids any other origin, and inline script.
    pub fn page_response(status: StatusCode, body: &'static str, content_type: &'static str) -> Response<Body> {
        let mut response = Response::new(full_body(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            http::HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                 base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
            ),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            http::HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::REFERRER_POLICY, http::HeaderValue::from_static("no-referrer"));
        response
    }
}

/// Compare secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
