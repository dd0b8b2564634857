//! Upstream pools: targets, balancing, timeouts, circuit breaking, retries
//! and health checks.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Config, Problem};

/// An upstream pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Targets: `host:port`, `http://host:port` or `https://host:port`,
    /// or `{ address = "...", weight = N }`.
    pub targets: Vec<UpstreamTarget>,
    /// How a request's target is chosen.
    #[serde(default)]
    pub balance: Balance,
    /// Connect timeout per attempt, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time allowed for the upstream's response head (time to first
    /// byte), in milliseconds, per attempt.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// Longest pause allowed between two pieces of the response body, in
    /// milliseconds; a stalled response is cut off.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Time allowed for the whole exchange, retries and the response body
    /// included, in milliseconds (absent: no limit beyond the others).
    pub total_timeout_ms: Option<u64>,
    /// Extra CA certificate (PEM) trusted for `https` targets.
    pub ca: Option<PathBuf>,
    /// Failures in a row (connect errors, timeouts, 502/503/504) that open
    /// a target's circuit: requests skip it for a while; 0: never.
    #[serde(default = "default_eject_after_failures")]
    pub eject_after_failures: u32,
    /// How long the circuit first stays open, in milliseconds; each
    /// further opening doubles it, up to five minutes. Then one trial
    /// request at a time decides.
    #[serde(default = "default_eject_ms")]
    pub eject_ms: u64,
    /// Retries on another target of 502/503/504 answers, broken
    /// connections and response timeouts, as a percentage of requests
    /// (idempotent methods with a replayable body only).
    #[serde(default = "default_retry_budget_percent")]
    pub retry_budget_percent: u32,
    /// Probe each target actively (absent: only passive ejection).
    pub health_check: Option<HealthCheckConfig>,
    /// Also open a target's circuit when too large a share of its recent
    /// requests fail (absent: only failures in a row count).
    pub circuit_breaker: Option<CircuitBreakerConfig>,
}

/// An upstream target, with or without a weight.
#[derive(Debug, Clone)]
pub enum UpstreamTarget {
    /// `host:port`, `http://host:port` or `https://host:port`; weight 1.
    Address(String),
    /// An address and its weight.
    Weighted(WeightedTarget),
}

/// `{ address = "...", weight = N }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedTarget {
    /// As in the plain form.
    pub address: String,
    /// Share of requests relative to the pool's other targets (1-1000).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// A string or a table; a table's own errors (an unknown field, a missing
/// `address`) are reported as they are.
impl<'de> Deserialize<'de> for UpstreamTarget {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UpstreamTarget;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"an address ("host:port") or a table { address = "...", weight = N }"#)
            }

            fn visit_str<E: serde::de::Error>(self, address: &str) -> Result<Self::Value, E> {
                Ok(UpstreamTarget::Address(address.to_string()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                WeightedTarget::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(UpstreamTarget::Weighted)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl UpstreamTarget {
    /// The target's address as written.
    pub fn address(&self) -> &str {
        match self {
            UpstreamTarget::Address(address) => address,
            UpstreamTarget::Weighted(t) => &t.address,
        }
    }

    /// The target's weight.
    pub fn weight(&self) -> u32 {
        match self {
            UpstreamTarget::Address(_) => 1,
            UpstreamTarget::Weighted(t) => t.weight,
        }
    }
}

/// How an upstream pool spreads requests over its targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// In turn, in proportion to the weights.
    #[default]
    RoundRobin,
    /// To the target with the fewest requests in flight for its weight.
    LeastRequests,
}

/// When a target's circuit opens on its failure rate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Share of failed requests (connect errors, timeouts, 502/503/504)
    /// within a window that opens the circuit, in percent.
    pub failure_rate_percent: u32,
    /// Requests a window needs before its rate counts (default 20).
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    /// The window's length, in milliseconds (default 10000).
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
}

fn default_min_requests() -> u32 {
    20
}

fn default_window_ms() -> u64 {
    10_000
}

fn default_idle_timeout_ms() -> u64 {
    60_000
}

/// Active health checks of an upstream's targets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// The path probed with `GET`; a 2xx or 3xx answer is healthy.
    pub path: String,
    /// Time between probes of a target, in milliseconds (default 5000).
    #[serde(default = "default_probe_interval_ms")]
    pub interval_ms: u64,
    /// Time a probe may take, in milliseconds (default 2000).
    #[serde(default = "default_probe_timeout_ms")]
    pub timeout_ms: u64,
    /// Good probes in a row that bring a target back (default 2).
    #[serde(default = "default_threshold")]
    pub healthy_threshold: u32,
    /// Failed probes in a row that take a target out (default 2).
    #[serde(default = "default_threshold")]
    pub unhealthy_threshold: u32,
}

fn default_probe_interval_ms() -> u64 {
    5_000
}

fn default_probe_timeout_ms() -> u64 {
    2_000
}

fn default_threshold() -> u32 {
    2
}

pub(super) fn default_eject_after_failures() -> u32 {
    5
}

pub(super) fn default_weight() -> u32 {
    1
}

pub(super) fn default_eject_ms() -> u64 {
    10_000
}

fn default_retry_budget_percent() -> u32 {
    20
}

pub(super) fn default_connect_timeout_ms() -> u64 {
    2_000
}

fn default_response_timeout_ms() -> u64 {
    30_000
}

impl UpstreamConfig {
    /// What is wrong with this pool; `at` is its path in the file.
    pub fn problems(&self, at: &str, config: &Config) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| problems.push(Problem { path, message });
        let upstream = self;
        if upstream.targets.is_empty() {
            problem(format!("{at}.targets"), "at least one target is required".into());
        }
        for (j, target) in upstream.targets.iter().enumerate() {
            if let Err(e) = parse_target(target.address()) {
                problem(format!("{at}.targets[{j}]"), e);
            }
            if !(1..=MAX_WEIGHT).contains(&target.weight()) {
                problem(
                    format!("{at}.targets[{j}].weight"),
                    format!("must be between 1 and {MAX_WEIGHT}"),
                );
            }
        }
        for (field, value) in [
            ("connect_timeout_ms", Some(upstream.connect_timeout_ms)),
            ("response_timeout_ms", Some(upstream.response_timeout_ms)),
            ("idle_timeout_ms", Some(upstream.idle_timeout_ms)),
            ("total_timeout_ms", upstream.total_timeout_ms),
        ] {
            if value == Some(0) {
                problem(format!("{at}.{field}"), "must be at least 1".into());
            }
        }
        if let Some(breaker) = &upstream.circuit_breaker {
            let at = format!("{at}.circuit_breaker");
            if !(1..=100).contains(&breaker.failure_rate_percent) {
                problem(format!("{at}.failure_rate_percent"), "must be between 1 and 100".into());
            }
            if breaker.min_requests == 0 {
                problem(format!("{at}.min_requests"), "must be at least 1".into());
            }
            if breaker.window_ms == 0 {
                problem(format!("{at}.window_ms"), "must be at least 1".into());
            }
        }
        if upstream.eject_ms == 0 {
            problem(format!("{at}.eject_ms"), "must be at least 1".into());
        }
        if upstream.retry_budget_percent > 100 {
            problem(format!("{at}.retry_budget_percent"), "must be at most 100".into());
        }
        if let Some(check) = &upstream.health_check {
            let at = format!("{at}.health_check");
            if !check.path.starts_with('/') {
                problem(format!("{at}.path"), format!("{:?} must start with '/'", check.path));
            }
            for (field, value) in [
                ("interval_ms", check.interval_ms),
                ("timeout_ms", check.timeout_ms),
                ("healthy_threshold", u64::from(check.healthy_threshold)),
                ("unhealthy_threshold", u64::from(check.unhealthy_threshold)),
            ] {
                if value == 0 {
                    problem(format!("{at}.{field}"), "must be at least 1".into());
                }
            }
        }
        if let Some(ca) = &upstream.ca {
            let full = config.resolve(ca);
            if !full.is_file() {
                problem(format!("{at}.ca"), format!("no such file {}", full.display()));
            }
        }
        problems
    }
}

/// The largest weight of an upstream target.
pub const MAX_WEIGHT: u32 = 1000;

/// An upstream target: scheme and `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// `host:port`.
    pub authority: http::uri::Authority,
    /// `host:port` as text, shared by every record of an attempt at it.
    pub name: std::sync::Arc<str>,
}

/// Parse `host:port`, `http://host:port` or `https://host[:port]`.
pub fn parse_target(text: &str) -> Result<Target, String> {
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let uri: http::Uri = with_scheme
        .parse()
        .map_err(|e| format!("{text:?} is not a target: {e}"))?;
    let scheme = uri.scheme().cloned().ok_or_else(|| format!("{text:?} has no scheme"))?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(format!("{text:?}: scheme must be http or https"));
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(format!("{text:?}: a target has no path"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("{text:?} has no host"))?;
    let authority = if authority.port().is_some() {
        authority
    } else {
        let port = if scheme == http::uri::Scheme::HTTPS { 443 } else { 80 };
        format!("{}:{port}", authority.host())
            .parse()
            .map_err(|e| format!("{text:?}: {e}"))?
    };
    let name = authority.as_str().into();
    Ok(Target {
        scheme,
        authority,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UpstreamName;
    use crate::validate::tests::parse;

    #[test]
    fn upstream_targets_take_weights_and_bad_pool_settings_are_named() {
        let pool = |settings: &str| {
            parse(&format!(
                "[[listeners]]\naddress = \"127.0.0.1:0\"\n[upstreams.echo]\n{settings}\n\
                 [[routes]]\nname = \"r\"\nupstream = \"echo\"\n"
            ))
        };
        let config = pool(
            r#"targets = ["127.0.0.1:1", { address = "127.0.0.1:2", weight = 5 }]
            balance = "least_requests""#,
        )
        .unwrap();
        let echo = &config.upstreams[&UpstreamName("echo".into())];
        let weights: Vec<_> = echo.targets.iter().map(|t| (t.address(), t.weight())).collect();
        assert_eq!(weights, [("127.0.0.1:1", 1), ("127.0.0.1:2", 5)]);
        assert_eq!(echo.balance, Balance::LeastRequests);

        for (settings, culprit) in [
            (
                r#"targets = [{ address = "127.0.0.1:2", weight = 0 }]"#,
                "upstreams.echo.targets[0].weight",
            ),
            (r#"targets = [{ adress = "127.0.0.1:2" }]"#, "adress"),
            (r#"targets = [7]"#, "an address"),
            (
                r#"targets = ["127.0.0.1:1"]
                balance = "random""#,
                "random",
            ),
            (
                r#"targets = ["127.0.0.1:1"]
                idle_timeout_ms = 0"#,
                "upstreams.echo.idle_timeout_ms",
            ),
            (
                r#"targets = ["127.0.0.1:1"]
                total_timeout_ms = 0"#,
                "upstreams.echo.total_timeout_ms",
            ),
            (
                r#"targets = ["127.0.0.1:1"]
                circuit_breaker = { failure_rate_percent = 150 }"#,
                "upstreams.echo.circuit_breaker.failure_rate_percent",
            ),
        ] {
            let err = pool(settings).unwrap_err().to_string();
            assert!(err.contains(culprit), "{settings}: {err}");
        }
    }

    #[test]
    fn targets_parse_with_default_ports() {
        assert_eq!(parse_target("10.0.0.1:81").unwrap().authority.as_str(), "10.0.0.1:81");
        assert_eq!(parse_target("http://a.test").unwrap().authority.as_str(), "a.test:80");
        let t = parse_target("https://a.test").unwrap();
        assert_eq!((t.scheme.as_str(), t.authority.as_str()), ("https", "a.test:443"));
        assert!(parse_target("ftp://a.test").is_err());
        assert!(parse_target("http://a.test/x").is_err());
    }
}
