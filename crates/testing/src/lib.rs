//! What Weir's tests share below the gateway: the plugins built from this
//! tree (by this crate's build script, the only one that builds plugins),
//! real PostgreSQL and Redis servers started on loopback and stopped when
//! dropped, test certificates, and waiting on a condition instead of
//! sleeping.
//!
//! It depends on no crate of the gateway, so any layer's tests can use it.

pub mod certs;
pub mod postgres;
pub mod redis;

use std::path::PathBuf;
use std::time::Duration;

/// Where the build script put the plugins it built.
pub fn built_plugins() -> PathBuf {
    PathBuf::from(env!("WEIR_BUILT_PLUGINS"))
}

/// The built `.wasm` for a crate (`api-key-auth` → `api_key_auth.wasm`).
pub fn built_plugin(crate_name: &str) -> PathBuf {
    let path = built_plugins().join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(
        path.is_file(),
        "{} was not built (see crates/testing/build.rs)",
        path.display()
    );
    path
}

/// Poll `check` every 20 ms until it returns `Some`, or panic after
/// `timeout` saying what was awaited.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
