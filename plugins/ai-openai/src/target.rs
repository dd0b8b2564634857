//! The target's config: model, path or Azure deployment, extra fields.

use serde::Deserialize;
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
    azure: Option<AzureOptions>,
    #[serde(default)]
    allow: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct AzureOptions {
    deployment: String,
    api_version: String,
}

/// One configured target, checked.
#[derive(Debug, Clone)]
pub struct Target {
    /// The model sent in every request.
    pub model: String,
    /// Path and query of the chat completions endpoint.
    pub path: String,
    /// `authorization: Bearer` for OpenAI, `api-key` for Azure.
    pub key: KeyPlacement,
    /// Top-level fields passed through besides OpenAI's own.
    pub allow: Vec<String>,
    /// The name used in error messages.
    pub provider: &'static str,
}

const DEFAULT_PATH: &str = "/v1/chat/completions";

impl weir_sdk::Settings for Options {}

impl TryFrom<Options> for Target {
    type Error = String;

    /// Check the config and build the target; the error names what is wrong.
    fn try_from(options: Options) -> Result<Target, String> {
        if options.model.trim().is_empty() {
            return Err("model must not be empty".into());
        }
        let (path, key, provider) = match options.azure {
            Some(azure) => {
                if options.path.is_some() {
                    return Err("path and azure exclude each other: with azure the path is \
                                /openai/deployments/{deployment}/chat/completions"
                        .into());
                }
                check_url_token("azure.deployment", &azure.deployment)?;
                check_url_token("azure.api-version", &azure.api_version)?;
                let path = format!(
                    "/openai/deployments/{}/chat/completions?api-version={}",
                    azure.deployment, azure.api_version
                );
                let key = KeyPlacement::Header(("api-key".into(), String::new()));
                (path, key, "Azure OpenAI")
            }
            None => {
                let path = options.path.unwrap_or_else(|| DEFAULT_PATH.into());
                if !path.starts_with('/') || path.contains(char::is_whitespace) || path.contains('#') {
                    return Err(format!(
                        "path must start with / and hold no whitespace or fragment, got {path:?}"
                    ));
                }
                let key = KeyPlacement::Header(("authorization".into(), "Bearer ".into()));
                (path, key, "OpenAI")
            }
        };
        Ok(Target {
            model: options.model,
            path,
            key,
            allow: options.allow,
            provider,
        })
    }
}

/// Deployment names and API versions go into the URL as they are, so
/// they are limited to the characters that need no escaping.
fn check_url_token(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} must be letters, digits, '-', '_' or '.', got {value:?}"
        ))
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
    fn openai_uses_bearer_and_the_default_path() {
        let target = checked(r#"{"model": "gpt-4o"}"#).unwrap();
        assert_eq!(target.path, "/v1/chat/completions");
        assert!(
            matches!(&target.key, KeyPlacement::Header((name, prefix)) if name == "authorization" && prefix == "Bearer ")
        );
        let target = checked(r#"{"model": "m", "path": "/chat/completions", "allow": ["top_k"]}"#).unwrap();
        assert_eq!(target.path, "/chat/completions");
        assert_eq!(target.allow, ["top_k"]);
    }

    #[test]
    fn azure_names_the_deployment_in_the_path_and_uses_api_key() {
        let target =
            checked(r#"{"model": "gpt-4o", "azure": {"deployment": "prod-4o", "api-version": "2024-10-21"}}"#).unwrap();
        assert_eq!(
            target.path,
            "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
        );
        assert!(matches!(&target.key, KeyPlacement::Header((name, prefix)) if name == "api-key" && prefix.is_empty()));
    }

    #[test]
    fn bad_configs_are_refused_naming_the_problem() {
        for (json, expected) in [
            (r#"{"model": "m", "temprature": 1}"#, "temprature"),
            (r#"{"path": "/v1/chat/completions"}"#, "model"),
            (r#"{"model": " "}"#, "model"),
            (r#"{"model": "m", "path": "v1/chat"}"#, "path"),
            (r#"{"model": "m", "azure": {"deployment": "d"}}"#, "api-version"),
            (
                r#"{"model": "m", "azure": {"deployment": "a/b", "api-version": "1"}}"#,
                "azure.deployment",
            ),
            (
                r#"{"model": "m", "azure": {"deployment": "d", "api-version": "1", "region": "x"}}"#,
                "region",
            ),
            (
                r#"{"model": "m", "path": "/x", "azure": {"deployment": "d", "api-version": "1"}}"#,
                "path and azure",
            ),
        ] {
            let error = checked(json).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }
}
