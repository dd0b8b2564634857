//! Where shared state lives: the plugins' key-value store, rate limits,
//! AI budgets and the AI response cache. In memory (one gateway) by
//! default, or in Redis so that several gateways count together.
//!
//! ```toml
//! state = "redis://127.0.0.1:6379"        # short form
//!
//! [state]                                 # or the table
//! store = "redis://127.0.0.1:6379"
//! timeout_ms = 200
//! on_unavailable = "fail-closed"          # or "local"; routes may override
//! ```
//!
//! # TLS and credentials
//! `rediss://` speaks TLS (rustls). The server's certificate is checked
//! against `ca` when set (a private CA, which then is the only one trusted),
//! else against the system's roots, and its name against the URL's host.
//! There is no setting that turns the check off.
//!
//! The ACL password comes from `password_env` or `password_file`, so that
//! the file holds no secret; `username` names the ACL user (absent: the
//! `default` user). A password written in the URL still works, but is shown
//! as `***` in every message. The password is read when the store starts
//! and is never logged.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Config, Problem, SecretSetting};

/// The `state` setting: a store URL (or `"memory"`), or a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateSetting {
    /// `state = "memory"` or `state = "redis://…"`.
    Store(String),
    /// `[state]`.
    Table(StateConfig),
}

impl Default for StateSetting {
    fn default() -> Self {
        StateSetting::Table(StateConfig::default())
    }
}

impl<'de> Deserialize<'de> for StateSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // By hand rather than `untagged`, so a mistake inside the table is
        // reported as itself (an unknown field, a bad policy), not as "no
        // variant matched".
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StateSetting;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"memory\", a redis:// URL, or a [state] table")
            }

            fn visit_str<E: serde::de::Error>(self, store: &str) -> Result<StateSetting, E> {
                Ok(StateSetting::Store(store.to_string()))
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<StateSetting, M::Error> {
                StateConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(StateSetting::Table)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl StateSetting {
    /// The settings, the short form filled in with defaults.
    pub fn config(&self) -> StateConfig {
        match self {
            StateSetting::Store(store) => StateConfig {
                store: store.clone(),
                ..StateConfig::default()
            },
            StateSetting::Table(table) => table.clone(),
        }
    }
}

/// The shared state store's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `"memory"` (the default), a `redis://` URL, or a `rediss://` URL
    /// (TLS).
    #[serde(default = "default_store")]
    pub store: String,
    /// PEM file of the CA that signed Redis's certificate (relative to the
    /// config file), trusted instead of the system's roots; `rediss://`
    /// only.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The Redis ACL user (absent: `default`, or the URL's user).
    #[serde(default)]
    pub username: Option<String>,
    /// Name of an environment variable holding the Redis password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the Redis password (trailing newline trimmed; relative
    /// to the config file).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Longest wait for one Redis operation, in milliseconds (default 200).
    /// Past it the store counts as unavailable.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// What routes do while Redis is unavailable, unless a route says
    /// otherwise (`state_unavailable`).
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
    /// Prefix of every key the gateway writes (default `weir:`), so
    /// several gateway fleets can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            store: default_store(),
            ca: None,
            username: None,
            password_env: None,
            password_file: None,
            timeout_ms: default_timeout_ms(),
            on_unavailable: OnUnavailable::default(),
            key_prefix: default_key_prefix(),
        }
    }
}

fn default_store() -> String {
    "memory".into()
}

fn default_timeout_ms() -> u64 {
    200
}

fn default_key_prefix() -> String {
    "weir:".into()
}

/// What a route does while the shared store is unavailable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnUnavailable {
    /// Refuse what needs the store: a plugin's kv call fails (the
    /// rate-limit plugin answers 503 naming the cause), an AI budget
    /// check answers 503.
    #[default]
    FailClosed,
    /// Carry on with this gateway's own in-memory state: limits hold per
    /// gateway instead of across them until the store is back.
    Local,
}

impl OnUnavailable {
    /// The policy's config name.
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnavailable::FailClosed => "fail-closed",
            OnUnavailable::Local => "local",
        }
    }
}

impl StateConfig {
    /// Whether the store is Redis (rather than memory).
    pub fn is_redis(&self) -> bool {
        self.store != "memory"
    }

    /// Whether the store is Redis over TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.store.starts_with("rediss://")
    }

    /// What is wrong with the settings; `config` resolves the file paths.
    pub fn problems(&self, config: &Config) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |path: &str, message: String| {
            problems.push(Problem {
                path: path.into(),
                message,
            })
        };
        let mut url_password = false;
        if self.is_redis() {
            match url::Url::parse(&self.store) {
                Ok(url) if url.scheme() == "redis" || url.scheme() == "rediss" => {
                    url_password = url.password().is_some();
                    if url.fragment().is_some() {
                        problem(
                            "state.store",
                            format!(
                                "{}: a fragment (#insecure) is not allowed; the certificate is always checked",
                                redacted_url(&self.store)
                            ),
                        );
                    }
                }
                _ => problem(
                    "state.store",
                    format!(
                        "{:?} is neither \"memory\" nor a redis:// or rediss:// URL",
                        redacted_url(&self.store)
                    ),
                ),
            }
        }
        if let Some(ca) = &self.ca {
            let full = config.resolve(ca);
            if !self.is_tls() {
                problem("state.ca", "only used with a rediss:// store".into());
            } else if let Err(e) = weir_core::tls::ca_file(&full) {
                problem("state.ca", e);
            }
        }
        let redis_only = |what: &str| format!("{what} is only used with a Redis store");
        if !self.is_redis() {
            for (field, set) in [
                ("state.username", self.username.is_some()),
                ("state.password_env", self.password_env.is_some()),
                ("state.password_file", self.password_file.is_some()),
            ] {
                if set {
                    problem(field, redis_only(&field["state.".len()..]));
                }
            }
        }
        let secret = self.password_setting();
        for p in secret.problems(config) {
            problem(&p.path, p.message);
        }
        if self.username.is_some() && !url_password && !secret.is_set() {
            problem(
                "state.username",
                "a Redis user needs a password: set password_env or password_file".into(),
            );
        }
        if url_password && (self.password_env.is_some() || self.password_file.is_some()) {
            problem(
                "state.store",
                format!(
                    "{}: the URL holds a password and so does password_env or password_file; keep one",
                    redacted_url(&self.store)
                ),
            );
        }
        if self.username.as_deref() == Some("") {
            problem("state.username", "must not be empty".into());
        }
        if self.timeout_ms == 0 {
            problem("state.timeout_ms", "must be at least 1".into());
        }
        if self.key_prefix.is_empty() {
            problem("state.key_prefix", "must not be empty".into());
        }
        problems
    }

    /// Where the password comes from.
    fn password_setting(&self) -> SecretSetting<'_> {
        SecretSetting {
            at: "state.password",
            env: self.password_env.as_deref(),
            file: self.password_file.as_deref(),
        }
    }

    /// The password `password_env` or `password_file` holds, if either is
    /// set (the file resolved, as [`Config::state_config`] gives it). The
    /// error names the setting, never the value.
    pub fn password(&self) -> Result<Option<String>, String> {
        self.password_setting().read()
    }
}

impl Config {
    /// The shared state settings with `ca` and `password_file` resolved
    /// against the config file's directory.
    pub fn state_config(&self) -> StateConfig {
        let mut state = self.state.config();
        state.ca = super::secret::resolved(self, &state.ca);
        state.password_file = super::secret::resolved(self, &state.password_file);
        state
    }
}

/// `url` with any password replaced by `***`, for logs and errors.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL: it may still hold a secret, so show only its scheme.
        Err(_) => match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None => url.chars().take(16).collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(default)]
        state: StateSetting,
    }

    fn parse(text: &str) -> StateConfig {
        toml::from_str::<Holder>(text).unwrap().state.config()
    }

    /// What is wrong with `[state]` in `text`, paths resolved against `base`.
    fn problems_in(text: &str, base: &std::path::Path) -> Vec<Problem> {
        let mut config: Config = toml::from_str(text).unwrap();
        config.base_dir = base.to_path_buf();
        config.state.config().problems(&config)
    }

    fn problems(text: &str) -> Vec<Problem> {
        problems_in(text, std::path::Path::new("."))
    }

    #[test]
    fn the_short_form_and_the_table_read_alike() {
        assert_eq!(parse(""), StateConfig::default());
        assert!(!parse("").is_redis());
        let short = parse("state = \"redis://127.0.0.1:6379\"");
        assert_eq!(short.store, "redis://127.0.0.1:6379");
        assert_eq!(short.timeout_ms, 200);
        let table =
            parse("[state]\nstore = \"redis://h:1\"\ntimeout_ms = 50\non_unavailable = \"local\"\nkey_prefix = \"a:\"");
        assert_eq!(table.on_unavailable, OnUnavailable::Local);
        assert_eq!((table.timeout_ms, table.key_prefix.as_str()), (50, "a:"));
        assert!(problems("[state]\nstore = \"redis://h:1\"\ntimeout_ms = 50").is_empty());
        let error = toml::from_str::<Holder>("[state]\nstroe = \"memory\"")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("unknown field `stroe`"), "{error}");
        let error = toml::from_str::<Holder>("[state]\non_unavailable = \"open\"")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("fail-closed"), "{error}");
        assert!(toml::from_str::<Holder>("state = 5").is_err());
    }

    #[test]
    fn a_bad_store_is_named_without_its_password() {
        let problems = problems("state = \"http://user:hunter2@h:1\"");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "state.store");
        assert!(problems[0].message.contains("***"), "{}", problems[0].message);
        assert!(!problems[0].message.contains("hunter2"), "{}", problems[0].message);
        let found = self::problems("[state]\nstore = \"redis://h:1\"\ntimeout_ms = 0\nkey_prefix = \"\"");
        let paths: Vec<_> = found.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["state.timeout_ms", "state.key_prefix"]);
        assert_eq!(redacted_url("redis://:pw@h:6379/0"), "redis://:***@h:6379/0");
        assert!(self::problems("state = \"rediss://:pw@h:6380\"").is_empty());
        let found = self::problems("state = \"rediss://:pw@h:6380/#insecure\"");
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("always checked"), "{}", found[0].message);
        assert!(!found[0].message.contains("pw@"), "{}", found[0].message);
    }

    #[test]
    fn tls_and_credential_settings_are_checked_by_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
        let paths = |text: &str| -> Vec<String> {
            problems_in(text, dir.path())
                .into_iter()
                .map(|p| {
                    assert!(!p.message.contains("s3cret"), "{}", p.message);
                    p.path
                })
                .collect()
        };
        // A user and a password file beside the config: fine.
        assert!(paths("[state]\nstore = \"rediss://h:1\"\nusername = \"weir\"\npassword_file = \"pw\"").is_empty());
        assert_eq!(paths("[state]\nstore = \"redis://h:1\"\nca = \"ca.pem\""), ["state.ca"]);
        assert_eq!(
            paths("[state]\nstore = \"rediss://h:1\"\nca = \"ca.pem\""),
            ["state.ca"]
        );
        assert_eq!(
            paths("[state]\nstore = \"rediss://h:1\"\nca = \"bad.pem\""),
            ["state.ca"]
        );
        assert_eq!(
            paths("[state]\nstore = \"rediss://h:1\"\npassword_file = \"nope\""),
            ["state.password_file"]
        );
        assert_eq!(
            paths("[state]\nstore = \"rediss://h:1\"\npassword_env = \"WEIR_TEST_UNSET_VAR\""),
            ["state.password_env"]
        );
        assert_eq!(
            paths("[state]\nstore = \"rediss://h:1\"\npassword_env = \"X\"\npassword_file = \"pw\""),
            ["state.password_env"]
        );
        assert_eq!(
            paths("[state]\nstore = \"rediss://h:1\"\nusername = \"weir\""),
            ["state.username"]
        );
        assert_eq!(
            paths("[state]\nstore = \"rediss://:pw@h:1\"\npassword_file = \"pw\""),
            ["state.store"]
        );
        assert_eq!(paths("[state]\npassword_file = \"pw\""), ["state.password_file"]);

        let mut resolved: Config = toml::from_str("[state]\nstore = \"rediss://h:1\"\npassword_file = \"pw\"").unwrap();
        resolved.base_dir = dir.path().to_path_buf();
        let state = resolved.state_config();
        assert_eq!(state.password_file.as_deref(), Some(dir.path().join("pw").as_path()));
        assert_eq!(state.password().unwrap().as_deref(), Some("s3cret"));
    }
}
