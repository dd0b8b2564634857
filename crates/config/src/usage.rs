//! Where the AI usage ledger keeps its rows, as the config names it
//! (`[ai] usage_db`, `usage_db_ca`, `usage_instance`): a SQLite file, or a
//! PostgreSQL URL with libpq's `sslmode`. The URL holds the password, so
//! it is only ever shown with the password replaced by `***`. Opening and
//! writing the store is the AI gateway's (`ai::usage`).

use std::fmt;
use std::path::PathBuf;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it.
    Prefer,
    /// TLS, the certificate unchecked unless a CA is given.
    Require,
    /// TLS, the certificate's chain checked.
    VerifyCa,
    /// TLS, the chain and the host's name checked.
    VerifyFull,
}

impl SslMode {
    /// The mode's name in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Option<SslMode> {
        [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ]
        .into_iter()
        .find(|mode| mode.as_str() == value)
    }
}

/// The `sslmode` of `url` (default `prefer`), and the URL as tokio-postgres
/// must read it (a verifying mode written as `require`). The error names
/// the bad value (which is never a secret).
pub fn split_ssl_mode(url: &str) -> Result<(SslMode, String), String> {
    let Some((head, query)) = url.split_once('?') else {
        return Ok((SslMode::Prefer, url.to_owned()));
    };
    let mut mode = SslMode::Prefer;
    let mut parameters = Vec::new();
    for parameter in query.split('&') {
        match parameter.split_once('=') {
            Some(("sslmode", value)) => {
                mode = SslMode::parse(value).ok_or_else(|| {
                    format!("sslmode={value}: use disable, prefer, require, verify-ca or verify-full")
                })?;
                let passed = match mode {
                    SslMode::VerifyCa | SslMode::VerifyFull => SslMode::Require,
                    other => other,
                };
                parameters.push(format!("sslmode={}", passed.as_str()));
            }
            _ => parameters.push(parameter.to_owned()),
        }
    }
    Ok((mode, format!("{head}?{}", parameters.join("&"))))
}

/// The TLS settings of a PostgreSQL store: the mode and the CA file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// From the URL's `sslmode`.
    pub mode: SslMode,
    /// `[ai] usage_db_ca`, resolved.
    pub ca: Option<PathBuf>,
}

impl TlsSettings {
    /// What to tell a person whose connection failed with `reason`: the
    /// setting that decides which certificates are trusted, when the
    /// failure is about the server's certificate.
    pub fn explain(&self, reason: String) -> String {
        if !reason.contains("certificate") {
            return reason;
        }
        let trusted = match &self.ca {
            Some(_) => "the CA in ai.usage_db_ca",
            None => "the system's roots (set ai.usage_db_ca for a private CA)",
        };
        format!(
            "{reason} (sslmode={}: the server's certificate is not trusted by {trusted})",
            self.mode.as_str()
        )
    }
}

/// A PostgreSQL database for the ledger, and the name its rows carry. The
/// URL holds the password, so it is only ever shown with the password
/// replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresStore {
    /// As tokio-postgres reads it (a verifying `sslmode` written as
    /// `require`).
    url: String,
    shown: String,
    instance: String,
    tls: TlsSettings,
}

impl PostgresStore {
    /// A store at `url` (`postgres://` or `postgresql://`, in the form
    /// libpq and tokio-postgres read, `sslmode` as libpq reads it) whose
    /// rows name `instance`, trusting the CA file `ca` (else the system's
    /// roots) where `sslmode` checks certificates. Refuses a URL that does
    /// not parse, and a CA with `sslmode=disable`; the message shows the
    /// URL without its password.
    pub fn new(url: &str, instance: &str, ca: Option<std::path::PathBuf>) -> Result<PostgresStore, String> {
        let shown = redact_url(url);
        if !UsageStore::is_postgres_url(url) {
            return Err(format!("{shown}: not a postgres:// or postgresql:// URL"));
        }
        let (mode, url) = split_ssl_mode(url).map_err(|e| format!("{shown}: {e}"))?;
        let _: tokio_postgres::Config = url.parse().map_err(|e| format!("{shown}: {}", describe(&e)))?;
        if mode == SslMode::Disable && ca.is_some() {
            return Err(format!(
                "{shown}: sslmode=disable, yet ai.usage_db_ca is set; use sslmode=verify-full"
            ));
        }
        if instance.is_empty() {
            return Err("the instance name must not be empty".into());
        }
        Ok(PostgresStore {
            url,
            shown,
            instance: instance.to_owned(),
            tls: TlsSettings { mode, ca },
        })
    }

    /// The URL as tokio-postgres reads it (holds the password: never
    /// shown).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TLS settings: the mode and the CA file.
    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    /// The URL's `sslmode`.
    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode
    }

    /// The URL with its password replaced by `***`.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The name written in the `instance` column of this gateway's rows.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The instance name when none is configured: `HOSTNAME:PID`, which
    /// tells gateways on different machines, and processes on one, apart.
    pub fn default_instance() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown-host".to_owned());
        format!("{host}:{}", std::process::id())
    }
}

/// Shows the URL without its password.
impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.shown)
            .field("instance", &self.instance)
            .field("tls", &self.tls)
            .finish()
    }
}

/// `url` with its password, if any, replaced by `***`: the one in the user
/// information (`scheme://user:password@host`) and a `password=` parameter.
/// Like tokio-postgres, takes the user information to end at the first `@`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (credentials, rest) = match rest.split_once('@') {
        Some((credentials, rest)) => (Some(credentials), rest),
        None => (None, rest),
    };
    let mut shown = format!("{scheme}://");
    if let Some(credentials) = credentials {
        match credentials.split_once(':') {
            Some((user, _)) => shown.push_str(&format!("{user}:***@")),
            None => shown.push_str(&format!("{credentials}@")),
        }
    }
    match rest.split_once('?') {
        None => shown.push_str(rest),
        Some((path, query)) => {
            let parameters: Vec<String> = query
                .split('&')
                .map(|parameter| match parameter.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => parameter.to_owned(),
                })
                .collect();
            shown.push_str(&format!("{path}?{}", parameters.join("&")));
        }
    }
    shown
}

/// Where a ledger keeps its rows.
#[derive(Clone, PartialEq, Eq)]
pub enum UsageStore {
    /// A SQLite file, this gateway's own.
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by every gateway given its URL.
    Postgres(PostgresStore),
}

impl UsageStore {
    /// Whether `setting` names a PostgreSQL database (`postgres://…` or
    /// `postgresql://…`) rather than a SQLite file.
    pub fn is_postgres_url(setting: &str) -> bool {
        setting.starts_with("postgres://") || setting.starts_with("postgresql://")
    }
}

/// The file's path, or the URL with its password replaced by `***`.
impl fmt::Display for UsageStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageStore::Sqlite(path) => write!(f, "{}", path.display()),
            UsageStore::Postgres(store) => f.write_str(store.shown()),
        }
    }
}

/// Never shows a password.
impl fmt::Debug for UsageStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageStore::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            UsageStore::Postgres(store) => f.debug_tuple("Postgres").field(store).finish(),
        }
    }
}

/// What an error from tokio-postgres says, for a person: the failure and
/// its cause.
fn describe(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_read_and_verifying_modes_reach_tokio_postgres_as_require() {
        for (url, mode, passed) in [
            ("postgres://h/db", SslMode::Prefer, "postgres://h/db"),
            (
                "postgres://h/db?sslmode=disable",
                SslMode::Disable,
                "postgres://h/db?sslmode=disable",
            ),
            (
                "postgres://u:pw@h/db?application_name=a&sslmode=verify-full",
                SslMode::VerifyFull,
                "postgres://u:pw@h/db?application_name=a&sslmode=require",
            ),
            (
                "postgres://h/db?sslmode=verify-ca",
                SslMode::VerifyCa,
                "postgres://h/db?sslmode=require",
            ),
            (
                "postgres://h/db?sslmode=require",
                SslMode::Require,
                "postgres://h/db?sslmode=require",
            ),
        ] {
            assert_eq!(split_ssl_mode(url).unwrap(), (mode, passed.to_owned()), "{url}");
        }
        let error = split_ssl_mode("postgres://u:pw@h/db?sslmode=verify").unwrap_err();
        assert!(error.contains("sslmode=verify:") && !error.contains("pw"), "{error}");
    }
}
