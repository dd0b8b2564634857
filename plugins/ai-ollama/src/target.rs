//! The target's config: model, path, keep-alive and where a key goes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weir_sdk::ai::KeyPlacement;

/// The config as written: `{"model": ..., ...options}`; checked while
/// building the [`Target`] from it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Options {
    model: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    keep_alive: Option<serde_json::Value>,
    #[serde(default)]
    key: Option<KeyOption>,
}

/// How long Ollama keeps the model loaded after a request: a duration
/// (`"10m"`, `"1h"`) or seconds (`0` unloads at once, negative keeps it
/// loaded). Sent as `keep_alive` as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum KeepAlive {
    /// Seconds.
    Seconds(serde_json::Number),
    /// A Go duration string.
    Duration(String),
}

/// `key = "bearer"`: a key for an Ollama behind an authenticating proxy.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KeyOption {
    Bearer,
}

/// One configured target, checked.
#[derive(Debug, Clone)]
pub struct Target {
    /// The model sent in every request.
    pub model: String,
    /// Path of the chat endpoint.
    pub path: String,
    /// `keep_alive`, if configured.
    pub keep_alive: Option<KeepAlive>,
    /// Nowhere by default: Ollama itself takes no key.
    pub key: KeyPlacement,
}

const DEFAULT_PATH: &str = "/api/chat";

impl weir_sdk::Settings for Options {}

impl TryFrom<Options> for Target {
    type Error = String;

    /// Check the config and build the target; the error names what is wrong.
    fn try_from(options: Options) -> Result<Target, String> {
        if options.model.trim().is_empty() {
            return Err("model must not be empty".into());
        }
        let path = options.path.unwrap_or_else(|| DEFAULT_PATH.into());
        if !path.starts_with('/') || path.contains(char::is_whitespace) || path.contains('#') {
            return Err(format!(
                "path must start with / and hold no whitespace or fragment, got {path:?}"
            ));
        }
        let keep_alive = match options.keep_alive {
            None => None,
            Some(Value::Number(seconds)) => Some(KeepAlive::Seconds(seconds)),
            Some(Value::String(duration)) if !duration.trim().is_empty() => Some(KeepAlive::Duration(duration)),
            Some(other) => {
                return Err(format!(
                    "keep-alive must be a duration such as \"10m\" or a number of seconds, got {other}"
                ));
            }
        };
        let key = match options.key {
            Some(KeyOption::Bearer) => KeyPlacement::Header(("authorization".into(), "Bearer ".into())),
            None => KeyPlacement::None,
        };
        Ok(Target {
            model: options.model,
            path,
            keep_alive,
            key,
        })
    }
}

/// What `configure` builds from `json`, for tests.
#[cfg(test)]
pub fn checked(json: &str) -> Result<Target, String> {
    Target::try_from(weir_sdk::ai::TargetConfig::new(json).settings::<Options>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_chat_path_and_no_key() {
        let target = checked(r#"{"model": "llama3.2"}"#).unwrap();
        assert_eq!(target.path, "/api/chat");
        assert!(matches!(target.key, KeyPlacement::None));
        assert_eq!(target.keep_alive, None);
    }

    #[test]
    fn options_are_read() {
        let target =
            checked(r#"{"model": "llama3.2", "path": "/ollama/api/chat", "keep-alive": "10m", "key": "bearer"}"#)
                .unwrap();
        assert_eq!(target.path, "/ollama/api/chat");
        assert_eq!(target.keep_alive, Some(KeepAlive::Duration("10m".into())));
        assert!(
            matches!(&target.key, KeyPlacement::Header((name, prefix)) if name == "authorization" && prefix == "Bearer ")
        );
        let target = checked(r#"{"model": "llama3.2", "keep-alive": -1}"#).unwrap();
        assert_eq!(serde_json::to_string(&target.keep_alive).unwrap(), "-1");
    }

    #[test]
    fn bad_configs_are_refused_naming_the_problem() {
        for (json, expected) in [
            (r#"{"model": "m", "keepalive": "5m"}"#, "keepalive"),
            (r#"{"path": "/api/chat"}"#, "model"),
            (r#"{"model": ""}"#, "model"),
            (r#"{"model": "m", "path": "api/chat"}"#, "path"),
            (r#"{"model": "m", "key": "x-api-key"}"#, "bearer"),
            (r#"{"model": "m", "keep-alive": true}"#, "keep-alive"),
            (r#"{"model": "m", "keep-alive": ""}"#, "keep-alive"),
        ] {
            let error = checked(json).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }
}
