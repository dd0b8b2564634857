//! The one validation pass over a config ([`Config::validate`]): every
//! problem found, each by the path of the field at fault
//! (`routes[2].plugins[0].name`), none stopping the pass. Sections with
//! checks of their own (upstreams, AI routes, budgets, the usage store,
//! state, tracing, the access log, plugin settings, settings that name a
//! secret) are asked for theirs here, so this pass is the one list.
//! Checks that need the plugins themselves (their files, `configure`)
//! happen when the plugins are loaded.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::ai::prompt_template_problems;
use super::{Config, Problem, valid_plugin_name};

impl Config {
    /// Check the config whole; an empty list means it is valid. Checks that
    /// need the plugins themselves (files, `configure`) happen when they are
    /// loaded.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| problems.push(Problem { path, message });

        if self.listeners.is_empty() {
            problem("listeners".into(), "at least one listener is required".into());
        }
        for p in self
            .tracing
            .problems()
            .into_iter()
            .chain(self.access_log.problems(self))
            .chain(self.state.config().problems(self))
        {
            problem(p.path, p.message);
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if let Err(e) = l.address.parse::<SocketAddr>() {
                problem(
                    format!("listeners[{i}].address"),
                    format!("{:?} is not IP:PORT: {e}", l.address),
                );
            }
            if let Some(tls) = &l.tls {
                for (field, path) in [("cert", &tls.cert), ("key", &tls.key)] {
                    let full = self.resolve(path);
                    if !full.is_file() {
                        problem(
                            format!("listeners[{i}].tls.{field}"),
                            format!("no such file {}", full.display()),
                        );
                    }
                }
            }
        }

        if let Some(admin) = &self.admin {
            match admin.address.parse::<SocketAddr>() {
                Ok(addr) if !addr.ip().is_loopback() => problem(
                    "admin.address".into(),
                    format!(
                        "{} is not a loopback address; the admin API is served on loopback only",
                        admin.address
                    ),
                ),
                Ok(_) => {}
                Err(e) => problem(
                    "admin.address".into(),
                    format!("{:?} is not IP:PORT: {e}", admin.address),
                ),
            }
            if let Some(health) = &admin.health_address {
                match health.parse::<SocketAddr>() {
                    Ok(addr) => {
                        // Two binds clash on one port when the addresses are
                        // equal or either is a wildcard; port 0 never clashes.
                        let clash = |other: SocketAddr| {
                            addr.port() != 0
                                && addr.port() == other.port()
                                && (addr.ip() == other.ip()
                                    || addr.ip().is_unspecified()
                                    || other.ip().is_unspecified())
                        };
                        let mut taken: Vec<(&str, &String)> =
                            self.listeners.iter().map(|l| ("a listener", &l.address)).collect();
                        taken.push(("the admin address", &admin.address));
                        for (what, other) in taken {
                            if other.parse::<SocketAddr>().is_ok_and(clash) {
                                problem(
                                    "admin.health_address".into(),
                                    format!(
                                        "{health} is also {what} ({other}); the probe listener needs a port of its own"
                                    ),
                                );
                            }
                        }
                    }
                    Err(e) => problem("admin.health_address".into(), format!("{health:?} is not IP:PORT: {e}")),
                }
            }
            for (j, host) in admin.allowed_hosts.iter().enumerate() {
                let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
                let name = !bare.is_empty()
                    && bare
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
                if !name && bare.parse::<std::net::IpAddr>().is_err() {
                    problem(
                        format!("admin.allowed_hosts[{j}]"),
                        format!("{host:?} is not a host name or address (no port, scheme or path)"),
                    );
                }
            }
            let metrics_token = admin.metrics_token();
            if metrics_token.is_set() && admin.health_address.is_none() {
                problem(
                    "admin.health_address".into(),
                    "metrics_token_env or metrics_token_file is set, but there is no probe listener to serve metrics"
                        .into(),
                );
            }
            for p in metrics_token.problems(self) {
                problem(p.path, p.message);
            }
            if let Some(var) = &admin.token_env {
                if admin.token.is_some() {
                    problem("admin.token_env".into(), "set token or token_env, not both".into());
                } else if std::env::var(var).map(|v| v.is_empty()).unwrap_or(true) {
                    problem(
                        "admin.token_env".into(),
                        format!("environment variable {var} is not set"),
                    );
                }
            }
        }

        if self.limits.max_header_bytes < 8192 {
            problem("limits.max_header_bytes".into(), "must be at least 8192".into());
        }
        if self.limits.max_headers == 0 {
            problem("limits.max_headers".into(), "must be at least 1".into());
        }
        for (field, value) in [
            ("max_concurrent_requests", self.limits.max_concurrent_requests),
            ("max_connections", self.limits.max_connections),
        ] {
            if value == Some(0) {
                problem(format!("limits.{field}"), "must be at least 1".into());
            }
        }
        for (field, value) in [
            ("header_read_timeout_ms", self.limits.header_read_timeout_ms),
            ("idle_timeout_ms", self.limits.idle_timeout_ms),
            ("http2_keepalive_timeout_ms", self.limits.http2_keepalive_timeout_ms),
            ("request_body_timeout_ms", self.limits.request_body_timeout_ms),
        ] {
            if value == 0 {
                problem(format!("limits.{field}"), "must be at least 1".into());
            }
        }
        if self.limits.max_concurrent_streams == 0 {
            problem("limits.max_concurrent_streams".into(), "must be at least 1".into());
        }

        if self.plugins.max_file_mb == 0 {
            problem("plugins.max_file_mb".into(), "must be at least 1".into());
        }
        if self.plugins.deadline_ms == 0 {
            problem("plugins.deadline_ms".into(), "must be at least 1".into());
        }
        if self.plugins.memory_mb == 0 || self.plugins.memory_mb > 4096 {
            problem("plugins.memory_mb".into(), "must be between 1 and 4096".into());
        }
        let used = self.used_plugins();
        for (name, settings) in &self.plugin {
            let at = format!("plugin.{name}");
            if !valid_plugin_name(name.as_str()) {
                problem(at.clone(), "plugin names use letters, digits, '-' and '_'".into());
            }
            for p in settings.problems(&at, self) {
                problem(p.path, p.message);
            }
            if !used.contains(name) {
                tracing::warn!(plugin = %name, "plugin.{name} is configured but no route uses it");
            }
        }

        for (name, secret) in &self.secrets {
            for p in secret.problems(&format!("secrets.{name}"), self) {
                problem(p.path, p.message);
            }
        }

        for (name, upstream) in &self.upstreams {
            for p in upstream.problems(&format!("upstreams.{name}"), self) {
                problem(p.path, p.message);
            }
        }

        for p in self.usage_store_problems() {
            problem(p.path, p.message);
        }
        for message in self.ai.budgets.validate() {
            let (path, message) = message.split_once(": ").unwrap_or(("", &message));
            problem(format!("ai.budgets.{path}"), message.to_string());
        }

        let mut seen = BTreeSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            if route.name.0.is_empty() {
                problem(format!("{at}.name"), "must not be empty".into());
            } else if !seen.insert(&route.name) {
                problem(format!("{at}.name"), format!("duplicate route name {:?}", route.name.0));
            }
            if route.max_concurrent_requests == Some(0) {
                problem(format!("{at}.max_concurrent_requests"), "must be at least 1".into());
            }
            if !route.path_prefix.starts_with('/') {
                problem(
                    format!("{at}.path_prefix"),
                    format!("{:?} must start with '/'", route.path_prefix),
                );
            } else {
                // Requests are matched by their canonical path, so a prefix
                // in any other form would never match.
                match weir_core::path::normalize(&route.path_prefix, self.http.path_policy()) {
                    Ok(canonical) if canonical != route.path_prefix => problem(
                        format!("{at}.path_prefix"),
                        format!(
                            "{:?} is not a canonical path (requests are matched as {canonical:?}); write it that way",
                            route.path_prefix
                        ),
                    ),
                    Ok(_) => {}
                    Err(e) => problem(format!("{at}.path_prefix"), format!("{:?}: {e}", route.path_prefix)),
                }
            }
            if let Some(host) = &route.host
                && (host.is_empty() || host.contains('/'))
            {
                problem(format!("{at}.host"), format!("{host:?} is not a host name"));
            }
            if let Some(methods) = &route.methods {
                for (j, m) in methods.iter().enumerate() {
                    if http::Method::from_bytes(m.as_bytes()).is_err() {
                        problem(format!("{at}.methods[{j}]"), format!("{m:?} is not an HTTP method"));
                    }
                }
            }
            match (&route.upstream, &route.ai) {
                (Some(upstream), None) => {
                    if !self.upstreams.contains_key(upstream) {
                        problem(format!("{at}.upstream"), format!("unknown upstream {:?}", upstream.0));
                    }
                }
                (None, Some(ai)) => {
                    for p in self.ai_route_problems(&format!("{at}.ai"), ai) {
                        problem(p.path, p.message);
                    }
                }
                (Some(_), Some(_)) => problem(at.clone(), "set upstream or ai, not both".into()),
                (None, None) => problem(at.clone(), "needs upstream or ai".into()),
            }
            for (j, p) in route.plugins.iter().enumerate() {
                if !valid_plugin_name(p.name.as_str()) {
                    problem(
                        format!("{at}.plugins[{j}].name"),
                        format!("{:?}: plugin names use letters, digits, '-' and '_'", p.name.0),
                    );
                }
                if !p.config.is_table() {
                    problem(format!("{at}.plugins[{j}].config"), "must be a table".into());
                }
                for p in prompt_template_problems(&format!("{at}.plugins[{j}]"), route, p) {
                    problem(p.path, p.message);
                }
            }
        }
        problems
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;
    use crate::ConfigError;

    /// Parse and validate `text` as the config file `test.toml`.
    pub(crate) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"), Path::new("."))
    }

    /// The smallest valid config: one listener, one upstream, one route.
    pub(crate) const MINIMAL: &str = r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["127.0.0.1:9000"]
        [[routes]]
        name = "api"
        upstream = "echo"
    "#;

    #[test]
    fn minimal_config_is_valid_with_defaults() {
        let config = parse(MINIMAL).expect("valid");
        assert_eq!(config.routes[0].path_prefix, "/");
        assert_eq!(config.plugins.deadline_ms, 100);
        assert_eq!(config.plugins.memory_mb, 64);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
            [[listeners]]
            address = "nonsense"
            [admin]
            address = "0.0.0.0:9000"
            [upstreams.echo]
            targets = []
            [[routes]]
            name = "a"
            upstream = "nowhere"
            path_prefix = "api"
            [[routes.plugins]]
            name = "../evil"
            [[routes]]
            name = "a"
            upstream = "echo"
            methods = ["GE T"]
        "#;
        let err = parse(text).unwrap_err();
        let paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "listeners[0].address",
            "admin.address",
            "upstreams.echo.targets",
            "routes[0].upstream",
            "routes[0].path_prefix",
            "routes[0].plugins[0].name",
            "routes[1].name",
            "routes[1].methods[0]",
        ] {
            assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
        }
        assert!(err.to_string().contains("unknown upstream \"nowhere\""), "{err}");
    }

    #[test]
    fn grants_must_name_defined_secrets() {
        let text = format!("{MINIMAL}\n[plugin.auth]\nsecrets = [\"missing\"]\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.problems[0].path, "plugin.auth.secrets[0]");
    }
}
