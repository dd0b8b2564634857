//! Listeners: accept connections, terminate TLS (rustls, ALPN h2 and
//! http/1.1), and serve HTTP/1.1 and HTTP/2 on each connection with hyper.
//! Plain listeners detect HTTP/2 by its connection preface (prior
//! knowledge).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::{Peer, SharedProxy};
use crate::config::Limits;

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
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("certificate {}: no certificates found", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("private key {}: {e}", key.display()))?;
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
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_concurrent_streams)
        // A client resetting streams as fast as it opens them (the HTTP/2
        // rapid-reset attack) is disconnected once this many resets are
        // pending, instead of keeping the gateway busy.
        .max_pending_accept_reset_streams(Some(64))
        .max_local_error_reset_streams(Some(256));
    builder
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
    let graceful = GracefulShutdown::new();
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
        let _ = stream.set_nodelay(true);
        let peer = Peer {
            addr,
            tls: tls.is_some(),
        };
        let proxy = proxy.clone();
        let service = service_fn(move |request| {
            let proxy = proxy.load_full();
            async move { Ok::<_, Infallible>(proxy.handle(request, peer).await) }
        });
        let builder = builder.clone();
        match &tls {
            None => {
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = connection.await {
                        tracing::debug!(client = %addr, "connection ended: {e}");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _slot = slot;
                    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => return tracing::debug!(client = %addr, "TLS handshake failed: {e}"),
                        Err(_) => return tracing::debug!(client = %addr, "TLS handshake timed out"),
                    };
                    let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    if let Err(e) = watcher.watch(connection).await {
                        tracing::debug!(client = %addr, "connection ended: {e}");
                    }
                });
            }
        }
    }
    drop(listener);
    let grace = Duration::from_millis(limits.shutdown_grace_ms);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            "connections still open {} ms after shutdown began; closing them",
            grace.as_millis()
        );
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
