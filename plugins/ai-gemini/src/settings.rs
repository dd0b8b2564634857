//! The target's config: `{"model": "...", "api-version": "v1beta"}`.

use serde::Deserialize;

/// One target's config, as the gateway passes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// The Gemini model: `gemini-2.5-flash`, or a resource name
    /// (`models/gemini-2.5-flash`, `tunedModels/my-model`).
    pub model: String,
    /// The API version in the request path.
    #[serde(default = "default_api_version")]
    pub api_version: String,
}

fn default_api_version() -> String {
    "v1beta".to_string()
}

impl weir_sdk::Settings for Settings {
    fn validate(&self) -> Result<(), String> {
        let resource = self.resource();
        let name = resource.split_once('/').map_or("", |(_, name)| name);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(format!(
                "model: `{}` is not a Gemini model name (letters, digits, `-`, `_` and `.`, optionally after `models/` or `tunedModels/`)",
                self.model
            ));
        }
        if self.api_version.is_empty() || !self.api_version.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "api-version: `{}` is not an API version such as `v1beta`",
                self.api_version
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// The model's resource name: `models/{model}` unless the config gave
    /// a resource name already.
    pub fn resource(&self) -> String {
        if self.model.starts_with("models/") || self.model.starts_with("tunedModels/") {
            self.model.clone()
        } else {
            format!("models/{}", self.model)
        }
    }

    /// The model to report when Gemini does not name one.
    pub fn reported_model(&self) -> &str {
        self.model.strip_prefix("models/").unwrap_or(&self.model)
    }

    /// The request path for a whole or a streamed answer.
    pub fn path(&self, stream: bool) -> String {
        let method = if stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        format!("/{}/{}:{method}", self.api_version, self.resource())
    }
}

#[cfg(test)]
mod tests {
    use weir_sdk::Settings as _;

    use super::*;

    #[test]
    fn paths_use_the_version_and_the_model_resource() {
        let settings = Settings::from_json(r#"{"model": "gemini-2.5-flash"}"#).unwrap();
        assert_eq!(settings.path(false), "/v1beta/models/gemini-2.5-flash:generateContent");
        assert_eq!(
            settings.path(true),
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        let settings = Settings::from_json(r#"{"model": "tunedModels/mine-7", "api-version": "v1"}"#).unwrap();
        assert_eq!(settings.path(false), "/v1/tunedModels/mine-7:generateContent");
        assert_eq!(settings.reported_model(), "tunedModels/mine-7");
        let settings = Settings::from_json(r#"{"model": "models/gemini-2.0-flash"}"#).unwrap();
        assert_eq!(settings.path(false), "/v1beta/models/gemini-2.0-flash:generateContent");
        assert_eq!(settings.reported_model(), "gemini-2.0-flash");
    }

    #[test]
    fn bad_configs_name_the_field() {
        let unknown = Settings::from_json(r#"{"model": "gemini-2.5-flash", "region": "eu"}"#).unwrap_err();
        assert!(unknown.contains("region"), "{unknown}");
        let missing = Settings::from_json(r#"{"api-version": "v1"}"#).unwrap_err();
        assert!(missing.contains("model"), "{missing}");
        for model in ["", "models/", "gemini 2.5", "gemini/../x", "gemini?x=1"] {
            let error = Settings::from_json(&format!(r#"{{"model": "{model}"}}"#)).unwrap_err();
            assert!(error.starts_with("model:"), "{model}: {error}");
        }
        let error = Settings::from_json(r#"{"model": "gemini-2.5-flash", "api-version": "v1/x"}"#).unwrap_err();
        assert!(error.starts_with("api-version:"), "{error}");
    }
}
