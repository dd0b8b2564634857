//! The plugin's config: schema, defaults and validation.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::keys::{Consumer, KeyStore};

/// The route's config for `api-key-auth`, as written in the gateway config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Request header that carries the key (lowercase).
    #[serde(default = "default_header")]
    pub header: String,
    /// Consumers and their keys, inline: `{ consumer-name = "key" }`.
    pub keys: Option<BTreeMap<String, String>>,
    /// Name of a secret holding more consumers and keys, read on the first
    /// request: a JSON object `{"consumer": "key"}` or lines of
    /// `consumer:key`.
    pub keys_secret: Option<String>,
    /// Also accept the key from this query-string parameter (the header
    /// wins when both are present).
    pub query_param: Option<String>,
    /// Remove the key (header and query parameter) before the request goes
    /// upstream.
    #[serde(default = "default_strip")]
    pub strip: bool,
    /// Realm named in the `www-authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// An authentication scheme the header's value starts with (`Bearer`):
    /// the key is what follows it. With `header = "authorization"` this
    /// accepts what OpenAI client libraries send.
    pub scheme: Option<String>,
}

fn default_header() -> String {
    "x-api-key".to_string()
}

fn default_strip() -> bool {
    true
}

fn default_realm() -> String {
    "weir".to_string()
}

impl weir_sdk::Settings for Settings {
    fn validate(&self) -> Result<(), String> {
        if !is_header_name(&self.header) {
            return Err(format!("header: {:?} is not a lowercase header name", self.header));
        }
        if self.keys.is_none() && self.keys_secret.is_none() {
            return Err("keys: one of keys or keys_secret is required".to_string());
        }
        if let Some(keys) = &self.keys {
            if keys.is_empty() {
                return Err("keys: must not be empty".to_string());
            }
            // Building the store checks names, keys and duplicates.
            KeyStore::new(self.inline_consumers()).map_err(|e| format!("keys: {e}"))?;
        }
        if let Some(secret) = &self.keys_secret
            && secret.is_empty()
        {
            return Err("keys_secret: must not be empty".to_string());
        }
        if let Some(param) = &self.query_param
            && (param.is_empty() || param.contains(['&', '=', '#', '?']))
        {
            return Err(format!("query_param: {param:?} is not a query parameter name"));
        }
        if let Some(scheme) = &self.scheme
            && (scheme.is_empty()
                || !scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~+/".contains(c)))
        {
            return Err(format!("scheme: {scheme:?} is not an authentication scheme name"));
        }
        // The realm goes into a quoted-string; keep it to plain visible text.
        if self.realm.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
            return Err(format!(
                "realm: {:?} must not contain quotes, backslashes or control characters",
                self.realm
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// The inline `keys` as consumers (empty when there are none).
    pub fn inline_consumers(&self) -> Vec<Consumer> {
        self.keys
            .iter()
            .flatten()
            .map(|(name, key)| Consumer {
                name: name.clone(),
                key: key.clone(),
            })
            .collect()
    }

    /// The `www-authenticate` challenge sent with every 401.
    pub fn challenge(&self) -> String {
        format!("ApiKey realm=\"{}\", header=\"{}\"", self.realm, self.header)
    }
}

/// A lowercase HTTP token: what the host accepts as a header name.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use weir_sdk::Settings as _;

    use super::*;

    #[test]
    fn defaults_apply_to_a_minimal_config() {
        let s = Settings::from_json(r#"{"keys":{"alice":"k1"}}"#).unwrap();
        assert_eq!(s.header, "x-api-key");
        assert!(s.strip);
        assert_eq!(s.realm, "weir");
        assert_eq!(s.query_param, None);
        assert_eq!(s.challenge(), r#"ApiKey realm="weir", header="x-api-key""#);
    }

    #[test]
    fn a_key_source_is_required() {
        let err = Settings::from_json("{}").unwrap_err();
        assert!(err.starts_with("keys:"), "{err}");
    }

    #[test]
    fn empty_keys_are_rejected() {
        let err = Settings::from_json(r#"{"keys":{}}"#).unwrap_err();
        assert_eq!(err, "keys: must not be empty");
    }

    #[test]
    fn a_secret_alone_is_enough() {
        assert!(Settings::from_json(r#"{"keys_secret":"api-keys"}"#).is_ok());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = Settings::from_json(r#"{"keys":{"a":"b"},"hedaer":"x"}"#).unwrap_err();
        assert!(err.contains("hedaer"), "{err}");
    }

    #[test]
    fn uppercase_header_is_rejected() {
        let err = Settings::from_json(r#"{"keys":{"a":"b"},"header":"X-Key"}"#).unwrap_err();
        assert!(err.starts_with("header:"), "{err}");
    }

    #[test]
    fn shared_keys_are_rejected() {
        let err = Settings::from_json(r#"{"keys":{"a":"k-shared","b":"k-shared"}}"#).unwrap_err();
        assert!(err.starts_with("keys:"), "{err}");
        assert!(!err.contains("k-shared"), "error must not echo the key: {err}");
    }

    #[test]
    fn quote_in_realm_is_rejected() {
        let err = Settings::from_json(r#"{"keys":{"a":"b"},"realm":"a\"b"}"#).unwrap_err();
        assert!(err.starts_with("realm:"), "{err}");
    }

    #[test]
    fn bad_query_param_is_rejected() {
        let err = Settings::from_json(r#"{"keys":{"a":"b"},"query_param":"a=b"}"#).unwrap_err();
        assert!(err.starts_with("query_param:"), "{err}");
    }
}
