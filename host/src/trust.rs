//! The certificates Weir's own TLS clients trust: the Redis store
//! (`rediss://`) and the PostgreSQL usage store.
//!
//! Either the system's roots, read once per process (reading them opens and
//! parses every file of the system's store: far too much to do on each
//! reconnection), or the certificates of one CA file named in the config,
//! which are then the only ones trusted: a private server is vouched for
//! by its private CA, not by every public one.

use std::path::Path;
use std::sync::LazyLock;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The system's root certificates that rustls accepts as trust anchors,
/// read on first use.
static SYSTEM_ROOTS: LazyLock<Vec<CertificateDer<'static>>> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!("skipping a system root certificate: {error}");
    }
    found
        .certs
        .into_iter()
        .filter(|cert| RootCertStore::empty().add(cert.clone()).is_ok())
        .collect()
});

/// The system's roots (read once per process).
pub fn system_roots() -> &'static [CertificateDer<'static>] {
    &SYSTEM_ROOTS
}

/// Every certificate in the PEM file at `path`; at least one. The error
/// names the file and what is wrong with it.
pub fn ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
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
