//! Upstream pools: targets chosen round robin, one pooled keep-alive client
//! per pool, connect and response timeouts, and a retry on the next target
//! when a connection cannot be made and the request can be replayed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::Body;
use super::error::GatewayError;
use super::health::{EjectionPolicy, ProbeTally, RetryBudget, TargetHealth};
use crate::config::HealthCheckConfig;
use crate::config::{Config, Target, UpstreamConfig, UpstreamName, parse_target};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A pooled HTTP/1.1 client for `http` and `https` targets.
pub type HttpClient = Client<Connector, Body>;

/// A named set of targets and the client that reaches them.
pub struct UpstreamPool {
    /// The pool's name.
    pub name: UpstreamName,
    targets: Vec<Target>,
    health: Vec<TargetHealth>,
    ejection: EjectionPolicy,
    retries: RetryBudget,
    health_check: Option<HealthCheckConfig>,
    next: AtomicUsize,
    client: HttpClient,
    response_timeout: Duration,
}

/// A request body the pool may send more than once.
pub enum UpstreamBody {
    /// Already in memory (or empty): safe to retry on another target.
    Replayable(Bytes),
    /// Streaming from the client: one attempt only.
    Streaming(Body),
}

impl UpstreamPool {
    /// Build a pool from validated config.
    pub fn new(name: &UpstreamName, config: &UpstreamConfig, gateway: &Config) -> anyhow::Result<Self> {
        let targets = config
            .targets
            .iter()
            .map(|t| parse_target(t).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let client = http_client(
            Duration::from_millis(config.connect_timeout_ms),
            config.ca.as_ref().map(|ca| gateway.resolve(ca)).as_deref(),
            &format!("upstreams.{name}.ca"),
        )?;
        Ok(UpstreamPool {
            name: name.clone(),
            targets,
            next: AtomicUsize::new(0),
            client,
            response_timeout: Duration::from_millis(config.response_timeout_ms),
            health: config.targets.iter().map(|_| TargetHealth::default()).collect(),
            ejection: EjectionPolicy {
                after_failures: config.eject_after_failures,
                base_ms: i64::try_from(config.eject_ms).unwrap_or(i64::MAX),
            },
            retries: RetryBudget::new(config.retry_budget_percent, 10),
            health_check: config.health_check.clone(),
        })
    }

    /// The pool's targets.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Start probing the targets, if the pool has health checks. The
    /// probing stops when the pool is dropped (a config reload replaces it).
    pub fn start_health_checks(self: &std::sync::Arc<Self>) {
        let Some(check) = self.health_check.clone() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = std::sync::Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tallies = Vec::new();
            let mut interval = tokio::time::interval(Duration::from_millis(check.interval_ms));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                tallies.resize(pool.targets.len(), ProbeTally::default());
                let probes = pool.targets.iter().map(|t| pool.probe(t, &check));
                let results = futures_util::future::join_all(probes).await;
                for (index, ok) in results.into_iter().enumerate() {
                    let health = &pool.health[index];
                    let change = tallies[index].record(
                        ok,
                        health.is_down(),
                        check.healthy_threshold,
                        check.unhealthy_threshold,
                    );
                    if let Some(down) = change {
                        health.set_down(down);
                        let target = &pool.targets[index].authority;
                        if down {
                            tracing::warn!(upstream = %pool.name, %target, "target failed its health checks; taken out");
                        } else {
                            tracing::info!(upstream = %pool.name, %target, "target passed its health checks; back in");
                        }
                    }
                }
            }
        });
    }

    /// One probe: `GET path`, healthy on 2xx or 3xx within the timeout.
    async fn probe(&self, target: &Target, check: &HealthCheckConfig) -> bool {
        let Ok(uri) = http::Uri::builder()
            .scheme(target.scheme.clone())
            .authority(target.authority.clone())
            .path_and_query(check.path.as_str())
            .build()
        else {
            return false;
        };
        let Ok(request) = Request::get(uri).body(super::full_body(Bytes::new())) else {
            return false;
        };
        let timeout = Duration::from_millis(check.timeout_ms);
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Ok(Ok(response)) => {
                let ok = response.status().is_success() || response.status().is_redirection();
                // Read the body so the connection can be reused.
                let _ = tokio::time::timeout(timeout, response.into_body().collect()).await;
                ok
            }
            _ => false,
        }
    }

    /// Whether target `index` is ejected now (for the admin API).
    pub fn is_ejected(&self, index: usize) -> bool {
        self.health
            .get(index)
            .is_some_and(|h| h.is_ejected(crate::ai::now_ms()))
    }

    /// Targets in the order to try them: round robin from the next one,
    /// ejected targets last.
    fn order(&self) -> Vec<usize> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = crate::ai::now_ms();
        let count = self.targets.len();
        let (mut ready, ejected): (Vec<usize>, Vec<usize>) = (0..count)
            .map(|i| (start + i) % count)
            .partition(|&i| !self.health[i].is_ejected(now));
        ready.extend(ejected);
        ready
    }

    fn failed(&self, index: usize) {
        if self.health[index].failed(self.ejection, crate::ai::now_ms()) {
            tracing::warn!(upstream = %self.name, target = %self.targets[index].authority, "target ejected after repeated failures");
        }
    }

    /// Send `head` with `body` to the next target. A connection failure
    /// moves on to the following target when the body is replayable, until
    /// every target was tried once; so does a 502, 503 or 504 answer to an
    /// idempotent request, while the retry budget allows.
    pub async fn send(&self, head: http::request::Parts, body: UpstreamBody) -> Result<Response<Body>, GatewayError> {
        self.retries.deposit();
        let order = self.order();
        let idempotent = matches!(
            head.method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::PUT | http::Method::DELETE
        );
        let (mut streaming, replay) = match body {
            UpstreamBody::Streaming(b) => (Some(b), None),
            UpstreamBody::Replayable(bytes) => (None, Some(bytes)),
        };
        let attempts = if replay.is_some() { self.targets.len() } else { 1 };
        let mut last_error = None;
        let path_and_query = head
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let mut head = Some(head);
        for (attempt, &index) in order.iter().enumerate().take(attempts) {
            let target = &self.targets[index];
            // Only a request that may be retried needs a copy of its head.
            let parts = if attempt + 1 == attempts {
                head.take()
            } else {
                head.clone()
            };
            let Some(parts) = parts else { break };
            let uri = http::Uri::builder()
                .scheme(target.scheme.clone())
                .authority(target.authority.clone())
                .path_and_query(path_and_query.clone())
                .build()
                .map_err(|e| GatewayError::UpstreamFailed {
                    upstream: self.name.clone(),
                    target: target.authority.to_string(),
                    detail: format!("bad URI: {e}"),
                })?;
            let body = match (&replay, streaming.take()) {
                (Some(bytes), _) => super::full_body(bytes.clone()),
                (None, Some(body)) => body,
                (None, None) => break,
            };
            let mut request = Request::from_parts(parts, body);
            *request.uri_mut() = uri;
            *request.version_mut() = http::Version::HTTP_11;
            match tokio::time::timeout(self.response_timeout, self.client.request(request)).await {
                Err(_) => {
                    self.failed(index);
                    return Err(GatewayError::UpstreamTimeout {
                        upstream: self.name.clone(),
                        target: target.authority.to_string(),
                        timeout_ms: self.response_timeout.as_millis() as u64,
                    });
                }
                Ok(Ok(response)) => {
                    let unavailable = matches!(response.status().as_u16(), 502..=504);
                    if !unavailable {
                        self.health[index].succeeded();
                        return Ok(response.map(|b| b.map_err(super::box_error).boxed_unsync()));
                    }
                    self.failed(index);
                    let retry = idempotent && attempt + 1 < attempts && self.retries.try_spend();
                    if !retry {
                        return Ok(response.map(|b| b.map_err(super::box_error).boxed_unsync()));
                    }
                    tracing::debug!(upstream = %self.name, target = %target.authority, status = response.status().as_u16(), "retrying on the next target");
                    last_error = Some(GatewayError::UpstreamFailed {
                        upstream: self.name.clone(),
                        target: target.authority.to_string(),
                        detail: format!("answered {}", response.status()),
                    });
                }
                Ok(Err(e)) if e.is_connect() => {
                    self.failed(index);
                    tracing::warn!(upstream = %self.name, target = %target.authority, "connect failed: {}", error_chain(&e));
                    last_error = Some(GatewayError::UpstreamConnect {
                        upstream: self.name.clone(),
                        target: target.authority.to_string(),
                        detail: error_chain(&e),
                    });
                }
                Ok(Err(e)) => {
                    // The connection broke after the request went out (the
                    // upstream died mid-request): like a 502, retried
                    // elsewhere only when that is safe and budgeted.
                    self.failed(index);
                    let error = GatewayError::UpstreamFailed {
                        upstream: self.name.clone(),
                        target: target.authority.to_string(),
                        detail: error_chain(&e),
                    };
                    if !(idempotent && attempt + 1 < attempts && self.retries.try_spend()) {
                        return Err(error);
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| GatewayError::UpstreamConnect {
            upstream: self.name.clone(),
            target: "-".into(),
            detail: "no targets".into(),
        }))
    }
}

/// The client every upstream and AI target uses: keep-alive pool, TCP
/// connect timeout, `http` and `https` (system roots plus `ca`, if given;
/// `at` names the setting in messages).
pub fn http_client(connect_timeout: Duration, ca: Option<&std::path::Path>, at: &str) -> anyhow::Result<HttpClient> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_roots();
    roots.add_parsable_certificates(native);
    if let Some(path) = ca {
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| anyhow::anyhow!("{at}: {}: {e}", path.display()))?
        {
            let cert = cert.map_err(|e| anyhow::anyhow!("{at}: {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("{at}: {}: {e}", path.display()))?;
        }
    }
    let tls =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector))
}

fn rustls_native_roots() -> Vec<rustls_pki_types::CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!("skipping a system root certificate: {error}");
    }
    found.certs
}

/// The error and its causes on one line: hyper's top-level messages alone
/// ("client error (Connect)") do not say what happened.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
