//! The TLS settings of every client Weir makes: upstream pools, AI
//! targets and plugins' outbound calls.
//!
//! The system's root certificates are read and parsed once per process,
//! the first time a client needs them, and every client without an extra
//! CA shares one rustls [`ClientConfig`] built on them. Reading them costs
//! milliseconds and a few hundred KiB; doing it per upstream made a config
//! with thousands of upstreams take seconds per load and hundreds of MiB.
//! A client with its own `ca` gets a root store of its own: the shared
//! roots (cloned, not read again) plus that file's certificates.
//!
//! The roots are not re-read on a config reload: a certificate added to
//! the system store is trusted after a restart.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use rustls::{ClientConfig, RootCertStore};

/// How many times the system roots were read (at most once per process).
static ROOT_LOADS: AtomicUsize = AtomicUsize::new(0);

/// The system's root certificates, read on first use.
static SYSTEM_ROOTS: LazyLock<Arc<RootCertStore>> = LazyLock::new(|| {
    ROOT_LOADS.fetch_add(1, Ordering::Relaxed);
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!("skipping a system root certificate: {error}");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system root certificates loaded");
    Arc::new(roots)
});

/// The config every client without an extra CA shares.
static SHARED_CONFIG: LazyLock<Result<ClientConfig, String>> =
    LazyLock::new(|| config_with_roots(SYSTEM_ROOTS.clone()));

/// Errors building a client's TLS settings.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    /// The extra CA file cannot be read or holds no usable certificate.
    #[error("{}: {reason}", file.display())]
    Ca {
        /// The CA file.
        file: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the settings (no usable protocol version).
    #[error("TLS client settings: {0}")]
    Settings(String),
}

/// The TLS client config for a client trusting the system roots and, if
/// given, the certificates in the PEM file `ca`. Without `ca` this is a
/// copy of one shared config (its root store and session cache shared).
pub fn client_config(ca: Option<&Path>) -> Result<ClientConfig, ClientTlsError> {
    let Some(file) = ca else {
        return SHARED_CONFIG.clone().map_err(ClientTlsError::Settings);
    };
    use rustls_pki_types::pem::PemObject;
    let bad = |reason: String| ClientTlsError::Ca {
        file: file.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::clone(&SYSTEM_ROOTS);
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(file).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    config_with_roots(Arc::new(roots)).map_err(ClientTlsError::Settings)
}

fn config_with_roots(roots: Arc<RootCertStore>) -> Result<ClientConfig, String> {
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// How many times this process has read the system's root certificates:
/// 0 before the first client, 1 after.
pub fn system_root_loads() -> usize {
    ROOT_LOADS.load(Ordering::Relaxed)
}
