//! Where the gateway listens: client listeners (with their TLS files) and
//! the admin API's listener, with its token and probe listener.

use std::path::PathBuf;

use serde::Deserialize;

use super::SecretSetting;

/// One listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `IP:PORT` to bind; port 0 picks a free port.
    pub address: String,
    /// Serve TLS with this certificate and key (PEM). HTTP/2 and HTTP/1.1
    /// are offered by ALPN. Without it, plain HTTP/1.1 and HTTP/2 (prior
    /// knowledge) are both served.
    pub tls: Option<TlsConfig>,
}

/// Certificate chain and private key files, PEM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The admin API listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Loopback `IP:PORT` to bind.
    pub address: String,
    /// Bearer token required on every admin request.
    pub token: Option<String>,
    /// Name of an environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// `IP:PORT` of the probe listener (`GET /healthz`, `GET /readyz`, no
    /// token; `GET /metrics`), for orchestrators, load balancers and
    /// Prometheus reaching it from outside the host; any address. Absent:
    /// no probe listener.
    pub health_address: Option<String>,
    /// Host names, besides `localhost` and loopback addresses, that
    /// requests to the admin API may be addressed to (`Host`), e.g. a name
    /// for this host an operator's browser uses. Any other `Host` is
    /// refused (DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Name of an environment variable holding the bearer token that
    /// `GET /metrics` on the probe listener requires (absent, with
    /// `metrics_token_file`: no token).
    pub metrics_token_env: Option<String>,
    /// File holding that token (trailing newline trimmed; relative to the
    /// config file).
    pub metrics_token_file: Option<PathBuf>,
}

impl AdminConfig {
    /// Where the probe listener's metrics token comes from.
    pub fn metrics_token(&self) -> SecretSetting<'_> {
        SecretSetting {
            at: "admin.metrics_token",
            env: self.metrics_token_env.as_deref(),
            file: self.metrics_token_file.as_deref(),
        }
    }
}
