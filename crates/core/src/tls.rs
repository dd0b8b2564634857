//! The certificates Weir's TLS clients trust, and the settings of every
//! client it makes: upstream pools, AI targets, plugins' outbound calls,
//! the Redis store (`rediss://`) and the PostgreSQL usage store.
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
//!
//! The stores of shared state differ in one way: a CA file named for them
//! ([`anchors`]) is the only one trusted, since a private server is vouched
//! for by its private CA, not by every public one.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// How many times the system roots were read (at most once per process).
static ROOT_LOADS: AtomicUsize = AtomicUsize::new(0);

/// The system's root certificates that rustls accepts as trust anchors,
/// read on first use.
static SYSTEM_ROOT_CERTS: LazyLock<Vec<CertificateDer<'static>>> = LazyLock::new(|| {
    ROOT_LOADS.fetch_add(1, Ordering::Relaxed);
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!("skipping a system root certificate: {error}");
    }
    let certs: Vec<_> = found
        .certs
        .into_iter()
        .filter(|cert| RootCertStore::empty().add(cert.clone()).is_ok())
        .collect();
    tracing::debug!(added = certs.len(), "system root certificates loaded");
    certs
});

/// The same, as a root store.
static SYSTEM_ROOTS: LazyLock<Arc<RootCertStore>> = LazyLock::new(|| Arc::new(root_store(&SYSTEM_ROOT_CERTS)));

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
    let bad = |reason: String| ClientTlsError::Ca {
        file: file.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::clone(&SYSTEM_ROOTS);
    for cert in ca_certificates(file).map_err(bad)? {
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

/// The system's roots (read once per process).
pub fn system_roots() -> &'static [CertificateDer<'static>] {
    &SYSTEM_ROOT_CERTS
}

/// Every certificate in the PEM file at `path`; at least one. The error
/// names the file and what is wrong with it.
pub fn ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = ca_certificates(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    for cert in &certs {
        RootCertStore::empty()
            .add(cert.clone())
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(certs)
}

/// The certificates of a PEM file (a regular file of sensible size).
fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = crate::files::read_regular(path, crate::files::MAX_SMALL_FILE_BYTES).map_err(|e| e.to_string())?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// The anchors for a client: the CA file's certificates if `ca` is given,
/// else the system's roots.
pub fn anchors(ca: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, String> {
    match ca {
        Some(path) => ca_file(path),
        None => Ok(system_roots().to_vec()),
    }
}

/// `certs` as a root store.
pub fn root_store(certs: &[CertificateDer<'static>]) -> RootCertStore {
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(certs.iter().cloned());
    store
}

/// `certs` as PEM text, for a library that takes its roots that way.
pub fn pem(certs: &[CertificateDer<'_>]) -> Vec<u8> {
    use base64::Engine;
    /// PEM's line length.
    const LINE: usize = 64;
    let mut text = String::new();
    for cert in certs {
        let encoded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        text.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in encoded.as_bytes().chunks(LINE) {
            text.push_str(&String::from_utf8_lossy(line));
            text.push('\n');
        }
        text.push_str("-----END CERTIFICATE-----\n");
    }
    text.into_bytes()
}

/// How many times this process has read the system's root certificates:
/// 0 before the first client, 1 after.
pub fn system_root_loads() -> usize {
    ROOT_LOADS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_a_bad_ca_file_is_named() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der = cert.cert.der().clone();
        let text = pem(std::slice::from_ref(&der));
        let back: Vec<_> = CertificateDer::pem_slice_iter(&text).collect::<Result<_, _>>().unwrap();
        assert_eq!(back, vec![der]);

        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here").unwrap();
        let error = ca_file(&empty).unwrap_err();
        assert!(
            error.contains("empty.pem") && error.contains("no PEM certificate"),
            "{error}"
        );
        let error = ca_file(&dir.path().join("absent.pem")).unwrap_err();
        assert!(error.contains("absent.pem"), "{error}");
    }
}
