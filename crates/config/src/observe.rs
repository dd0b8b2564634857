//! Observability settings: the access log and trace export.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Config, Problem};

/// Where the access log goes: one JSON line per request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// `"stdout"` (the default), `"off"`, or a file path (relative to the
    /// config file's directory).
    #[serde(default = "default_access_log_to")]
    pub to: String,
    /// A file is rotated when it passes this size, in KiB (default 102400).
    #[serde(default = "default_access_log_max_kb")]
    pub max_size_kb: u64,
    /// Rotated files kept (`access.log.1` …), default 5.
    #[serde(default = "default_access_log_keep")]
    pub keep: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            to: default_access_log_to(),
            max_size_kb: default_access_log_max_kb(),
            keep: default_access_log_keep(),
        }
    }
}

fn default_access_log_to() -> String {
    "stdout".into()
}

fn default_access_log_max_kb() -> u64 {
    100 * 1024
}

fn default_access_log_keep() -> usize {
    5
}

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Standard output.
    Stdout,
    /// A file, rotated when it passes `max_bytes`, keeping `keep` old ones.
    File {
        /// The file.
        path: PathBuf,
        /// Size that starts a new file.
        max_bytes: usize,
        /// Old files kept.
        keep: usize,
    },
}

impl AccessLogConfig {
    /// Where lines go; `None` when the log is off.
    pub fn destination(&self, config: &Config) -> Option<Destination> {
        match self.to.as_str() {
            "off" => None,
            "stdout" => Some(Destination::Stdout),
            path => Some(Destination::File {
                path: config.resolve(Path::new(path)),
                max_bytes: usize::try_from(self.max_size_kb.saturating_mul(1024)).unwrap_or(usize::MAX),
                keep: self.keep,
            }),
        }
    }
}

/// Exporting traces over OTLP/HTTP. W3C `traceparent` headers are read
/// and sent on whether or not this is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Where spans are sent, e.g. `http://127.0.0.1:4318/v1/traces`
    /// (absent: nothing is exported).
    pub otlp_endpoint: Option<String>,
    /// `"http/protobuf"` (the default) or `"http/json"`.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// The `service.name` of the spans (default `weir`).
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// How long spans wait to be sent in a batch, in milliseconds (default
    /// 1000).
    #[serde(default = "default_batch_delay_ms")]
    pub batch_delay_ms: u64,
    /// Time allowed for one export, in milliseconds (default 5000).
    #[serde(default = "default_export_timeout_ms")]
    pub export_timeout_ms: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            protocol: OtlpProtocol::default(),
            service_name: default_service_name(),
            batch_delay_ms: default_batch_delay_ms(),
            export_timeout_ms: default_export_timeout_ms(),
        }
    }
}

/// The OTLP/HTTP encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// Protobuf.
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// JSON.
    #[serde(rename = "http/json")]
    HttpJson,
}

fn default_service_name() -> String {
    "weir".into()
}

fn default_batch_delay_ms() -> u64 {
    1_000
}

fn default_export_timeout_ms() -> u64 {
    5_000
}

impl AccessLogConfig {
    /// What is wrong with the access log settings.
    pub fn problems(&self, config: &Config) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |path: &str, message: String| {
            problems.push(Problem {
                path: path.into(),
                message,
            })
        };
        if !matches!(self.to.as_str(), "off" | "stdout") {
            let file = config.resolve(Path::new(&self.to));
            if !file.parent().is_some_and(Path::is_dir) {
                problem(
                    "access_log.to",
                    format!("{}: its directory does not exist", file.display()),
                );
            }
            if self.max_size_kb == 0 {
                problem("access_log.max_size_kb", "must be at least 1".into());
            }
        }
        problems
    }
}

impl TracingConfig {
    /// What is wrong with the tracing settings.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(endpoint) = &self.otlp_endpoint {
            match endpoint.parse::<http::Uri>() {
                Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {}
                _ => problems.push(Problem {
                    path: "tracing.otlp_endpoint".into(),
                    message: format!("{endpoint:?} is not an http:// or https:// URL"),
                }),
            }
        }
        for (field, value) in [
            ("batch_delay_ms", self.batch_delay_ms),
            ("export_timeout_ms", self.export_timeout_ms),
        ] {
            if value == 0 {
                problems.push(Problem {
                    path: format!("tracing.{field}"),
                    message: "must be at least 1".into(),
                });
            }
        }
        problems
    }
}
