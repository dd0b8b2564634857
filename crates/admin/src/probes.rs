//! The probe listener, for orchestrators and load balancers: the admin API
//! stays on loopback, but a kubelet, a load balancer or Prometheus reaches
//! the gateway from outside the host. It serves three answers and nothing
//! else:
//!
//! - `GET /healthz` — 200 while the process serves: it is alive. No token.
//! - `GET /readyz` — 200 while the gateway serves traffic; 503 before the
//!   first config serves (plugins still compiling) and from the moment
//!   shutdown begins, so a load balancer stops sending new requests while
//!   those in flight finish. No token.
//! - `GET /metrics` — the admin API's Prometheus metrics; 503 until the
//!   first config serves. When `[admin] metrics_token_env` or
//!   `metrics_token_file` is set, only with `authorization: Bearer TOKEN`
//!   (else 401); the token is compared in constant time and never logged.
//!
//! Anything else is 404. The listener is bound before the config's
//! plugins load and closed only after the listeners have drained, so the
//! probes stay reachable for the whole life of the process.
//!
//! Metrics share this port rather than have one of their own because a
//! pod then exposes one port for everything the cluster asks of it (as
//! linkerd's proxy and Envoy's admin port do), and a Prometheus
//! `prometheus.io/port` annotation names one port per pod.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use arc_swap::ArcSwapOption;

use weir_core::body::{Body, full_body};
use weir_gateway::Gateway;

/// The port is open to the network: a client that connects and sends
/// nothing is dropped after this long, and at most this many connections
/// are served at once (probes are short; more wait in the kernel's queue).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 64;

/// Where the gateway is in its life, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Loading the config and its plugins; not serving yet.
    Starting,
    /// Serving traffic.
    Serving,
    /// Shutdown has begun: requests in flight finish, no new ones should
    /// be sent.
    Draining,
}

/// The gateway's phase, shared between the code that starts and stops it
/// and the probe listener. Reading it is one atomic load.
#[derive(Debug)]
pub struct Readiness(AtomicU8);

impl Readiness {
    /// A gateway that is not serving yet.
    pub fn starting() -> Arc<Readiness> {
        Arc::new(Readiness(AtomicU8::new(Phase::Starting as u8)))
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Serving,
            _ => Phase::Draining,
        }
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.phase() == Phase::Draining
    }

    /// The gateway serves. A gateway already draining stays draining.
    pub fn set_serving(&self) {
        let _ = self.0.compare_exchange(
            Phase::Starting as u8,
            Phase::Serving as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Shutdown has begun.
    pub fn set_draining(&self) {
        self.0.store(Phase::Draining as u8, Ordering::Release);
    }
}

/// What `GET /metrics` reads: the gateway (weakly: the listener does not
/// keep it alive) and the token it requires.
struct MetricsSource {
    gateway: Weak<Gateway>,
    token: Option<String>,
}

/// The metrics source, set once the gateway serves.
type MetricsSlot = Arc<ArcSwapOption<MetricsSource>>;

/// A bound probe listener, answering from the moment it is bound.
pub struct ProbeListener {
    addr: SocketAddr,
    readiness: Arc<Readiness>,
    metrics: MetricsSlot,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ProbeListener {
    /// Bind `address` and start answering: live, not ready.
    pub async fn bind(address: &str) -> anyhow::Result<ProbeListener> {
        let (listener, addr) = weir_proxy::listener::bind(address).await?;
        let readiness = Readiness::starting();
        let metrics = MetricsSlot::default();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, readiness.clone(), metrics.clone(), stopped));
        Ok(ProbeListener {
            addr,
            readiness,
            metrics,
            stop,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The phase it reports.
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.readiness
    }

    /// Serve `gateway`'s metrics on `GET /metrics`, requiring `token` as a
    /// bearer token if given.
    pub fn serve_metrics(&self, gateway: &Arc<Gateway>, token: Option<String>) {
        self.metrics.store(Some(Arc::new(MetricsSource {
            gateway: Arc::downgrade(gateway),
            token,
        })));
    }

    /// Stop accepting and return once the listener is closed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn serve(
    listener: TcpListener,
    readiness: Arc<Readiness>,
    metrics: MetricsSlot,
    mut stop: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("probe listener accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let readiness = readiness.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request| {
                let phase = readiness.phase();
                let source = metrics.load_full();
                async move { Ok::<_, Infallible>(answer(&request, phase, source.as_deref())) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(request: &Request<Incoming>, phase: Phase, metrics: Option<&MetricsSource>) -> Response<Body> {
    if request.method() == Method::GET && request.uri().path() == "/metrics" {
        match metrics.map(|m| (m.gateway.upgrade(), m.token.as_deref())) {
            Some((Some(gateway), token)) => {
                if let Some(token) = token
                    && !bearer_matches(request.headers(), token)
                {
                    let mut response = json(StatusCode::UNAUTHORIZED, r#"{"error":"missing or wrong bearer token"}"#);
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
                    return response;
                }
                return crate::metrics(&gateway);
            }
            _ => return json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"starting"}"#),
        }
    }
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => (StatusCode::OK, r#"{"status":"ok"}"#),
        (&Method::GET, "/readyz") => match phase {
            Phase::Serving => (StatusCode::OK, r#"{"status":"ready"}"#),
            Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"starting"}"#),
            Phase::Draining => (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#),
        },
        _ => (StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
    };
    json(status, body)
}

/// Whether the request carries `authorization: Bearer TOKEN`.
fn bearer_matches(headers: &http::HeaderMap, token: &str) -> bool {
    let expected = format!("Bearer {token}");
    headers
        .get(header::AUTHORIZATION)
        .is_some_and(|given| crate::constant_time_eq(given.as_bytes(), expected.as_bytes()))
}

fn json(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(full_body(format!("{body}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    response
}
