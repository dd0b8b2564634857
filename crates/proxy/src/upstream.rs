//! Upstream pools: targets chosen round robin or by fewest requests in
//! flight, in proportion to their weights; one pooled keep-alive client per
//! pool; timeouts for connecting, the response head, pauses in the
//! response body and the whole exchange; a circuit breaker per target; and
//! retries on another target when a connection cannot be made, or, for
//! idempotent requests, when the target answered 502/503/504, broke the
//! connection or timed out.
//!
//! A kept-alive connection the target closes just as a request goes out
//! on it ends with no answer; the target did nothing wrong. So an
//! idempotent request whose body is in memory, on a connection that
//! ended before any answer, is sent once more to the same target (on
//! another connection) before any other, without counting against the
//! target's health or the retry budget (it happens at most once a
//! request).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use super::Body;
use super::error::GatewayError;
use weir_config::{Balance, HealthCheckConfig};
use weir_config::{Config, Target, UpstreamConfig, UpstreamName, parse_target};
use weir_core::clock::now_ms;
use weir_observe::record::new_span_id;
use weir_observe::{AttemptOutcome, RequestRecord};
use weir_select::{
    Admission, BreakerPolicy, CircuitState, FailureRate, InFlight, Member, Planner, ProbeTally, RetryBudget, Standing,
    TargetHealth,
};

pub use weir_core::error::error_chain;

mod watched;
use watched::WatchedBody;

const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A pooled HTTP/1.1 client for `http` and `https` targets.
pub type HttpClient = Client<Connector, Body>;

/// A named set of targets and the client that reaches them.
pub struct UpstreamPool {
    /// The pool's name.
    pub name: UpstreamName,
    targets: Vec<Target>,
    /// Each target's `host` field, made once: the client would otherwise
    /// format it from the URI on every request.
    hosts: Vec<HeaderValue>,
    weights: Vec<u32>,
    health: Vec<Arc<TargetHealth>>,
    breaker: BreakerPolicy,
    retries: RetryBudget,
    health_check: Option<HealthCheckConfig>,
    /// The order each request tries the targets in.
    planner: Planner,
    client: HttpClient,
    response_timeout: Duration,
    idle_timeout: Duration,
    total_timeout: Option<Duration>,
}

/// A request body the pool may send more than once.
pub enum UpstreamBody {
    /// Already in memory (or empty): safe to retry on another target.
    Replayable(Bytes),
    /// Streaming from the client: one attempt only.
    Streaming(Body),
}

/// What the admin API shows of a target.
#[derive(Debug, Clone, Copy)]
pub struct TargetStatus<'a> {
    /// The target.
    pub target: &'a Target,
    /// Its weight.
    pub weight: u32,
    /// Its circuit.
    pub state: CircuitState,
    /// Requests not yet answered in full.
    pub in_flight: u32,
}

impl UpstreamPool {
    /// Build a pool from validated config.
    pub fn new(name: &UpstreamName, config: &UpstreamConfig, gateway: &Config) -> anyhow::Result<Self> {
        let targets = config
            .targets
            .iter()
            .map(|t| parse_target(t.address()).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let weights: Vec<u32> = config.targets.iter().map(|t| t.weight().max(1)).collect();
        let client = http_client(
            Duration::from_millis(config.connect_timeout_ms),
            config.ca.as_ref().map(|ca| gateway.resolve(ca)).as_deref(),
            &format!("upstreams.{name}.ca"),
        )?;
        let millis = |ms: u64| i64::try_from(ms).unwrap_or(i64::MAX);
        let members: Vec<Member> = weights.iter().map(|&weight| Member { weight, priority: 0 }).collect();
        let balance = match config.balance {
            Balance::RoundRobin => weir_select::Balance::RoundRobin,
            Balance::LeastRequests => weir_select::Balance::LeastRequests,
        };
        let hosts = targets.iter().map(host_field).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(UpstreamPool {
            name: name.clone(),
            planner: Planner::new(&members, balance),
            hosts,
            weights,
            targets,
            client,
            response_timeout: Duration::from_millis(config.response_timeout_ms),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            total_timeout: config.total_timeout_ms.map(Duration::from_millis),
            health: config.targets.iter().map(|_| Arc::default()).collect(),
            breaker: BreakerPolicy {
                after_failures: config.eject_after_failures,
                base_ms: millis(config.eject_ms),
                failure_rate: config.circuit_breaker.as_ref().map(|b| FailureRate {
                    percent: b.failure_rate_percent,
                    min_requests: b.min_requests,
                    window_ms: millis(b.window_ms),
                }),
                trial_timeout_ms: millis(config.connect_timeout_ms.saturating_add(config.response_timeout_ms)),
            },
            retries: RetryBudget::new(config.retry_budget_percent, 10),
            health_check: config.health_check.clone(),
        })
    }

    /// The pool's targets.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Each target's weight, circuit and load, for the admin API.
    pub fn status(&self) -> impl Iterator<Item = TargetStatus<'_>> {
        let now = now_ms();
        self.targets.iter().enumerate().map(move |(i, target)| TargetStatus {
            target,
            weight: self.weights[i],
            state: self.health[i].state(now),
            in_flight: self.health[i].in_flight(),
        })
    }

    /// Start probing the targets, if the pool has health checks. The
    /// probing stops when the pool is dropped (a config reload replaces it).
    pub fn start_health_checks(self: &Arc<Self>) {
        let Some(check) = self.health_check.clone() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = Arc::downgrade(self);
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

    /// Whether target `index` is skipped now: down or its circuit open.
    pub fn is_ejected(&self, index: usize) -> bool {
        self.health.get(index).is_some_and(|h| h.is_ejected(now_ms()))
    }

    /// Targets in the order to try them: the balancer's choice first, then
    /// the others; those the breaker would refuse last.
    fn order(&self, now: i64) -> weir_select::Plan {
        self.planner.plan(|i| Standing {
            in_flight: self.health[i].in_flight(),
            ready: self.health[i].is_ready(self.breaker, now),
        })
    }

    /// The next target to try in `candidates` order whose breaker admits
    /// the request; when the breaker refused them all, the first refused.
    fn next_candidate(
        &self,
        candidates: &mut impl Iterator<Item = usize>,
        refused: &mut VecDeque<usize>,
        admitted_any: &mut bool,
    ) -> Option<usize> {
        loop {
            match candidates.next() {
                Some(i) if self.health[i].admit(self.breaker, now_ms()) == Admission::Refused => {
                    refused.push_back(i);
                }
                Some(i) => {
                    *admitted_any = true;
                    return Some(i);
                }
                None if *admitted_any => return None,
                None => return refused.pop_front(),
            }
        }
    }

    fn failed(&self, index: usize) {
        if self.health[index].failed(self.breaker, now_ms()) {
            tracing::warn!(upstream = %self.name, target = %self.targets[index].authority, "circuit opened after failures");
        }
    }

    /// Send `head` with `body` to a target. A connection failure moves on
    /// to the next target when the body is replayable, until every target
    /// was tried once; so do a 502, 503 or 504 answer, a broken connection
    /// and a response timeout for an idempotent request, while the retry
    /// budget allows; a connection that ended before any answer first
    /// gets the same target once more (see the module docs).
    pub async fn send(
        &self,
        head: http::request::Parts,
        body: UpstreamBody,
        record: &mut RequestRecord,
    ) -> Result<Response<Body>, GatewayError> {
        let deadline = self.total_timeout.map(|t| Instant::now() + t);
        self.retries.deposit();
        let idempotent = matches!(
            head.method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::PUT | http::Method::DELETE
        );
        let (mut streaming, replay) = match body {
            UpstreamBody::Streaming(b) => (Some(b), None),
            UpstreamBody::Replayable(bytes) => (None, Some(bytes)),
        };
        let attempts = if replay.is_some() { self.targets.len() } else { 1 };
        // One more try of the same target after a connection that ended
        // before any answer, for a request that can be sent again.
        let mut resend_left = idempotent && replay.is_some();
        let mut resend: Option<usize> = None;
        let mut candidates = self.order(now_ms()).into_iter();
        // Targets the breaker refused: tried only if it refuses them all.
        let mut refused = VecDeque::new();
        let mut admitted_any = false;
        let mut last_error = None;
        let path_and_query = head
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let mut head = Some(head);
        let mut attempt = 0;
        while attempt < attempts {
            let index = if let Some(index) = resend.take() {
                Some(index)
            } else {
                self.next_candidate(&mut candidates, &mut refused, &mut admitted_any)
            };
            let Some(index) = index else { break };
            let target = &self.targets[index];
            let wait = match deadline {
                Some(deadline) => self
                    .response_timeout
                    .min(deadline.saturating_duration_since(Instant::now())),
                None => self.response_timeout,
            };
            if wait.is_zero() {
                break;
            }
            // Only a request that may be retried needs a copy of its head.
            let parts = if attempt + 1 == attempts && !resend_left {
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
            if let http::header::Entry::Vacant(host) = request.headers_mut().entry(http::header::HOST) {
                host.insert(self.hosts[index].clone());
            }
            // Each attempt is a span of the request's trace; the upstream
            // continues the trace from it.
            let span_id = new_span_id();
            request
                .headers_mut()
                .insert(TRACEPARENT, record.trace.traceparent(span_id));
            let in_flight = self.health[index].start_request();
            let started = Instant::now();
            let attempted = |record: &mut RequestRecord, outcome| {
                record.attempt(target.name.clone(), span_id, started.into_std(), outcome);
            };
            // Whether a failed idempotent attempt may go to another target.
            let may_retry = || idempotent && attempt + 1 < attempts && self.retries.try_spend();
            let error = match tokio::time::timeout(wait, self.client.request(request)).await {
                Err(_) => {
                    attempted(record, AttemptOutcome::Timeout);
                    self.failed(index);
                    let error = GatewayError::UpstreamTimeout {
                        upstream: self.name.clone(),
                        target: target.authority.to_string(),
                        timeout_ms: wait.as_millis() as u64,
                    };
                    if !may_retry() {
                        return Err(error);
                    }
                    error
                }
                Ok(Ok(response)) if response.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                    // Nothing asked to switch: `upgrade` never goes upstream.
                    attempted(record, AttemptOutcome::Answered(101));
                    self.failed(index);
                    return Err(GatewayError::UpstreamFailed {
                        upstream: self.name.clone(),
                        target: target.authority.to_string(),
                        detail: "answered 101 Switching Protocols to a request that did not ask to switch".into(),
                    });
                }
                Ok(Ok(response)) => {
                    attempted(record, AttemptOutcome::Answered(response.status().as_u16()));
                    let unavailable = matches!(response.status().as_u16(), 502..=504);
                    if !unavailable {
                        self.health[index].succeeded(self.breaker, now_ms());
                        return Ok(self.watch(response, index, in_flight, deadline));
                    }
                    self.failed(index);
                    if !may_retry() {
                        return Ok(self.watch(response, index, in_flight, deadline));
                    }
                    tracing::debug!(upstream = %self.name, target = %target.authority, status = response.status().as_u16(), "retrying on the next target");
                    GatewayError::UpstreamFailed {
                        upstream: self.name.clone(),
                        target: target.authority.to_string(),
                        detail: format!("answered {}", response.status()),
                    }
                }
                Ok(Err(e)) if e.is_connect() => {
                    attempted(record, AttemptOutcome::ConnectError);
                    self.failed(index);
                    tracing::warn!(upstream = %self.name, target = %target.authority, "connect failed: {}", error_chain(&e));
                    GatewayError::UpstreamConnect {
                        upstream: self.name.clone(),
                        target: target.authority.to_string(),
                        detail: error_chain(&e),
                    }
                }
                Ok(Err(e)) => {
                    if let Some(fault) = super::client_body::client_fault(&e) {
                        // The client's body failed on the way through: its
                        // fault, answered as such, and not counted against
                        // a target that did nothing wrong.
                        attempted(record, AttemptOutcome::ClientBody);
                        self.health[index].released();
                        return Err(fault.clone().into());
                    }
                    attempted(record, AttemptOutcome::Broken);
                    let error = GatewayError::UpstreamFailed {
                        upstream: self.name.clone(),
                        target: target.authority.to_string(),
                        detail: error_chain(&e),
                    };
                    // The connection ended before any answer: perhaps a
                    // kept-alive one the target closed as the request went
                    // out. The same target once more, on another connection.
                    // At most once a request, so outside the retry budget.
                    if resend_left {
                        resend_left = false;
                        resend = Some(index);
                        tracing::debug!(upstream = %self.name, target = %target.authority, "connection ended before an answer, sending again: {}", error_chain(&e));
                        last_error = Some(error);
                        continue;
                    }
                    // The connection broke after the request went out (the
                    // upstream died mid-request): like a 502, retried
                    // elsewhere only when that is safe and budgeted.
                    self.failed(index);
                    if !may_retry() {
                        return Err(error);
                    }
                    error
                }
            };
            last_error = Some(error);
            attempt += 1;
        }
        Err(last_error.unwrap_or_else(|| match deadline {
            Some(_) => GatewayError::UpstreamTimeout {
                upstream: self.name.clone(),
                target: "-".into(),
                timeout_ms: self.total_timeout.unwrap_or_default().as_millis() as u64,
            },
            None => GatewayError::UpstreamConnect {
                upstream: self.name.clone(),
                target: "-".into(),
                detail: "no targets".into(),
            },
        }))
    }

    /// The response with its body watched: cut off when it pauses longer
    /// than the idle timeout or runs past the total deadline, and counted
    /// in flight at its target until it ends.
    fn watch(
        &self,
        response: Response<hyper::body::Incoming>,
        index: usize,
        in_flight: InFlight,
        deadline: Option<Instant>,
    ) -> Response<Body> {
        response.map(|body| {
            WatchedBody {
                body: body.map_err(super::box_error).boxed_unsync(),
                idle_timeout: self.idle_timeout,
                idle: None,
                total: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
                in_flight: Some(in_flight),
                breaker: self.breaker,
                upstream: self.name.clone(),
                target: self.targets[index].name.clone(),
            }
            .boxed_unsync()
        })
    }
}

/// The `host` field for requests to `target`: its host, and its port
/// unless that is the scheme's default (as hyper's client would write it).
fn host_field(target: &Target) -> anyhow::Result<HeaderValue> {
    let authority = &target.authority;
    let default_port = match target.scheme.as_str() {
        "https" => 443,
        _ => 80,
    };
    let text = match authority.port_u16() {
        Some(port) if port != default_port => format!("{}:{port}", authority.host()),
        _ => authority.host().to_string(),
    };
    HeaderValue::from_maybe_shared(Bytes::from(text))
        .map_err(|e| anyhow::anyhow!("target {authority}: not a valid host field: {e}"))
}

/// The client every upstream and AI target uses: keep-alive pool, TCP
/// connect timeout, `http` and `https` (system roots plus `ca`, if given;
/// `at` names the setting in messages).
pub fn http_client(connect_timeout: Duration, ca: Option<&std::path::Path>, at: &str) -> anyhow::Result<HttpClient> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    // The system roots are read once per process and shared (see `tls`).
    let tls = weir_core::tls::client_config(ca).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
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
