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

use serde::Deserialize;

use super::Problem;

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
    /// `"memory"` (the default) or a `redis://` URL (TLS, `rediss://`, is
    /// not supported yet).
    #[serde(default = "default_store")]
    pub store: String,
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

    /// What is wrong with the settings.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.is_redis() {
            match url::Url::parse(&self.store) {
                Ok(url) if url.scheme() == "redis" => {}
                Ok(url) if url.scheme() == "rediss" => problems.push(Problem {
                    path: "state.store".into(),
                    message: format!(
                        "{}: TLS to Redis (rediss://) is not supported yet; use redis:// on a trusted network",
                        redacted_url(&self.store)
                    ),
                }),
                _ => problems.push(Problem {
                    path: "state.store".into(),
                    message: format!(
                        "{:?} is neither \"memory\" nor a redis:// URL",
                        redacted_url(&self.store)
                    ),
                }),
            }
        }
        if self.timeout_ms == 0 {
            problems.push(Problem {
                path: "state.timeout_ms".into(),
                message: "must be at least 1".into(),
            });
        }
        if self.key_prefix.is_empty() {
            problems.push(Problem {
                path: "state.key_prefix".into(),
                message: "must not be empty".into(),
            });
        }
        problems
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
        assert!(table.problems().is_empty());
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
        let problems = parse("state = \"http://user:hunter2@h:1\"").problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "state.store");
        assert!(problems[0].message.contains("***"), "{}", problems[0].message);
        assert!(!problems[0].message.contains("hunter2"), "{}", problems[0].message);
        let problems = parse("[state]\nstore = \"redis://h:1\"\ntimeout_ms = 0\nkey_prefix = \"\"").problems();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["state.timeout_ms", "state.key_prefix"]);
        assert_eq!(redacted_url("redis://:pw@h:6379/0"), "redis://:***@h:6379/0");
        let problems = parse("state = \"rediss://:pw@h:6380\"").problems();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("not supported"), "{}", problems[0].message);
        assert!(!problems[0].message.contains("pw@"), "{}", problems[0].message);
    }
}
