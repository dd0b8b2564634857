//! Listeners: accept connections, terminate TLS (rustls, ALPN h2 and
//! http/1.1), and serve HTTP/1.1 and HTTP/2 on each connection with hyper.
//! Plain listeners detect HTTP/2 by its connection preface (prior
//! knowledge).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::{Body, BoxError, Peer, SharedProxy};
use weir_config::Limits;

/// How long a connection asked to close may wait for its client to take
/// part in an orderly close (answer HTTP/2's GOAWAY ping) before it is
/// dropped, when no request is in flight on it.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long a client may take to finish a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Load a certificate chain and key into a rustls server config offering
/// HTTP/2 and HTTP/1.1.
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    Ok(reloadable_tls_acceptor(cert, key)?.0)
}

/// A TLS acceptor whose certificate can be replaced while it serves: the
/// listener's certificate and key files are watched, and connections made
/// after a change get the new certificate.
pub fn reloadable_tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<(TlsAcceptor, Arc<ReloadableCert>)> {
    let reloadable = Arc::new(ReloadableCert {
        current: arc_swap::ArcSwap::from_pointee(certified_key(cert, key)?),
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(reloadable.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), reloadable))
}

/// A listener's certificate and key, replaceable while serving.
pub struct ReloadableCert {
    current: arc_swap::ArcSwap<rustls::sign::CertifiedKey>,
    cert: PathBuf,
    key: PathBuf,
}

impl std::fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableCert").field("cert", &self.cert).finish()
    }
}

impl ReloadableCert {
    /// The certificate and key files.
    pub fn files(&self) -> [&Path; 2] {
        [&self.cert, &self.key]
    }

    /// Read the files again; on any problem the current certificate stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        self.current.store(Arc::new(certified_key(&self.cert, &self.key)?));
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Read a certificate chain and its private key (PEM), checking they match.
fn certified_key(cert: &Path, key: &Path) -> anyhow::Result<rustls::sign::CertifiedKey> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let limit = weir_config::MAX_SMALL_FILE_BYTES;
    let cert_pem = weir_core::files::read_regular(cert, limit)
        .map_err(|e| anyhow::anyhow!("certificate {}: {e}", cert.display()))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("certificate {}: no certificates found", cert.display());
    }
    let key_pem = weir_core::files::read_regular(key, limit)
        .map_err(|e| anyhow::anyhow!("private key {}: {e}", key.display()))?;
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| anyhow::anyhow!("private key {}: {e}", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| anyhow::anyhow!("certificate {} and its key: {e}", cert.display()))
}

/// The hyper connection builder with the gateway's limits.
fn connection_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    let keepalive =
        (limits.http2_keepalive_interval_ms > 0).then(|| Duration::from_millis(limits.http2_keepalive_interval_ms));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_concurrent_streams)
        // A client that stops answering pings is gone, streams or not.
        .keep_alive_interval(keepalive)
        .keep_alive_timeout(Duration::from_millis(limits.http2_keepalive_timeout_ms))
        // A client resetting streams as fast as it opens them (the HTTP/2
        // rapid-reset attack) is disconnected once this many resets are
        // pending, instead of keeping the gateway busy.
        .max_pending_accept_reset_streams(Some(64))
        .max_local_error_reset_streams(Some(256));
    builder
}

/// When a client connection with no request in flight is closed.
#[derive(Debug, Clone, Copy)]
struct IdleTimeouts {
    /// From accept to the first request's head (TLS handshake and
    /// protocol detection included).
    first_request: Duration,
    /// Between the end of one request and the head of the next.
    between_requests: Duration,
}

/// Accept connections on `listener` until `shutdown` flips, then let open
/// connections finish their requests.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    proxy: SharedProxy,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(connection_builder(&limits));
    let idle = IdleTimeouts {
        first_request: Duration::from_millis(limits.header_read_timeout_ms),
        between_requests: Duration::from_millis(limits.idle_timeout_ms),
    };
    // Each connection's task holds a sender; when all are gone, every
    // connection has ended.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    let connections = limits.max_connections.map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
    loop {
        // At the connection limit, stop accepting until one closes: new
        // clients wait in the kernel's queue rather than in our memory.
        let slot = match &connections {
            None => None,
            Some(limit) => tokio::select! {
                permit = limit.clone().acquire_owned() => permit.ok(),
                _ = shutdown.changed() => break,
            },
        };
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let accepted = Instant::now();
        let _ = stream.set_nodelay(true);
        let peer = Peer {
            addr,
            tls: tls.is_some(),
        };
        let activity = Arc::new(Activity::new(accepted));
        let service = ConnectionService {
            proxy: proxy.clone(),
            peer,
            activity: activity.clone(),
        };
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let open = open_tx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _open = open;
            let ended = match tls {
                None => drive(&builder, stream, service, &activity, idle, shutdown).await,
                Some(acceptor) => {
                    let handshake = TLS_HANDSHAKE_TIMEOUT.min(idle.first_request);
                    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => drive(&builder, stream, service, &activity, idle, shutdown).await,
                        Ok(Err(e)) => return tracing::debug!(client = %addr, "TLS handshake failed: {e}"),
                        Err(_) => return tracing::debug!(client = %addr, "TLS handshake timed out"),
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(client = %addr, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    drop(open_tx);
    let grace = Duration::from_millis(limits.shutdown_grace_ms);
    if tokio::time::timeout(grace, open_rx.recv()).await.is_err() {
        tracing::warn!(
            "connections still open {} ms after shutdown began; closing them",
            grace.as_millis()
        );
    }
}

/// Serve one connection until it ends. It is asked to close (gracefully:
/// an HTTP/2 GOAWAY, or an HTTP/1.1 connection closed between requests)
/// when the gateway shuts down, and when no request has been in flight for
/// the idle timeout: from accept until the first request, from the end of
/// each request until the next.
async fn drive<S>(
    builder: &auto::Builder<TokioExecutor>,
    stream: S,
    service: ConnectionService,
    activity: &Activity,
    idle: IdleTimeouts,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BoxError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // Once asked to close: an HTTP/1.1 connection closes at once, an
    // HTTP/2 one after the client answers the GOAWAY's ping. A client that
    // never answers is dropped after CLOSE_GRACE with nothing in flight.
    let mut closing = false;
    let close_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(close_timer);
    // The idle timer is not moved as requests come and go (that would wake
    // this task once per request): when it fires, it looks at what
    // happened since and either closes the connection or is set again for
    // the idle time after the last request ended.
    let timer = tokio::time::sleep_until(activity.accepted + idle.first_request);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            ended = connection.as_mut() => return ended,
            _ = shutdown.changed(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
                close_timer.as_mut().reset(Instant::now() + CLOSE_GRACE);
            }
            _ = close_timer.as_mut(), if closing => {
                if activity.in_flight.load(Ordering::Acquire) == 0 {
                    return Ok(());
                }
                close_timer.as_mut().reset(Instant::now() + CLOSE_GRACE);
            }
            _ = timer.as_mut(), if !closing => {
                let now = Instant::now();
                match activity.idle_deadline(idle) {
                    // A request is in flight: look again an idle time later.
                    None => timer.as_mut().reset(now + idle.between_requests),
                    Some(deadline) if deadline > now => timer.as_mut().reset(deadline),
                    Some(_) => {
                        tracing::debug!("closing an idle client connection");
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                        close_timer.as_mut().reset(now + CLOSE_GRACE);
                    }
                }
            }
        }
    }
}

/// A connection's requests: how many are in flight, and when the last one
/// ended.
struct Activity {
    /// When the connection was accepted.
    accepted: Instant,
    in_flight: AtomicUsize,
    /// Nanoseconds from the connection's accept to the end of its last
    /// request; 0 before any request ended.
    last_end_ns: AtomicU64,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Activity {
            accepted,
            in_flight: AtomicUsize::new(0),
            last_end_ns: AtomicU64::new(0),
        }
    }

    /// When the connection is to close if nothing starts before: the
    /// first-request timeout from its accept until a request has ended,
    /// then the idle timeout from the last request's end; `None` while a
    /// request is in flight.
    fn idle_deadline(&self, idle: IdleTimeouts) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(match self.last_end_ns.load(Ordering::Acquire) {
            0 => self.accepted + idle.first_request,
            ended => self.accepted + Duration::from_nanos(ended) + idle.between_requests,
        })
    }
}

/// A request in flight on its connection, until dropped.
struct ActiveRequest(Arc<Activity>);

impl ActiveRequest {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        ActiveRequest(activity.clone())
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        // The end is written before the count drops, so a timer that sees
        // no request in flight also sees when the last one ended.
        let activity = &self.0;
        let ended = Instant::now().saturating_duration_since(activity.accepted);
        let ended = u64::try_from(ended.as_nanos()).unwrap_or(u64::MAX).max(1);
        activity.last_end_ns.fetch_max(ended, Ordering::AcqRel);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The hyper service of one connection: each request goes to the proxy
/// current at its arrival, and counts as in flight on the connection
/// until its response body ends or is dropped.
#[derive(Clone)]
struct ConnectionService {
    proxy: SharedProxy,
    peer: Peer,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = TrackedResponse;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let active = ActiveRequest::start(&self.activity);
        TrackedResponse {
            inner: self.proxy.load_full().handle(request, self.peer),
            active: Some(active),
        }
    }
}

/// The proxy's answer, with the request's place on its connection.
struct TrackedResponse {
    inner: futures_util::future::BoxFuture<'static, Response<Body>>,
    active: Option<ActiveRequest>,
}

impl Future for TrackedResponse {
    type Output = Result<Response<Tracked>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = std::task::ready!(self.inner.as_mut().poll(cx));
        let active = self.active.take();
        Poll::Ready(Ok(response.map(|body| Tracked { body, _active: active })))
    }
}

/// A response body that holds its request's place on the connection.
struct Tracked {
    body: Body,
    _active: Option<ActiveRequest>,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Bind `address`, reporting the address in the error.
pub async fn bind(address: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
