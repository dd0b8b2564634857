//! The plugin's config: schema, defaults and validation.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The route's config for `headers`, as written in the gateway config.
/// Every field is optional; an empty config changes nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Edits to the request's headers, before it goes upstream.
    #[serde(default)]
    pub request: HeaderEdits,
    /// Edits to the response's headers, before it goes to the client.
    #[serde(default)]
    pub response: HeaderEdits,
    /// Rewrite the start of the request path.
    pub path_prefix: Option<PathPrefix>,
}

/// Header edits for one direction, applied in the order rename, remove,
/// set, add.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEdits {
    /// Move every value of header `old` to header `new` (`{ old = "new" }`),
    /// replacing any values `new` had. Renames happen all at once, so
    /// `{ a = "b", b = "a" }` swaps two headers. Absent headers are skipped.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Remove every value of these headers.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Replace every value of a header with this one (`{ name = "value" }`).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Add a value, or a list of values, keeping existing ones
    /// (`{ name = "value" }` or `{ name = ["v1", "v2"] }`).
    #[serde(default)]
    pub add: BTreeMap<String, Values>,
}

/// One header value or several.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
pub enum Values {
    /// `name = "value"`
    One(String),
    /// `name = ["v1", "v2"]`
    Many(Vec<String>),
}

impl Values {
    /// The values, in order.
    pub fn as_slice(&self) -> &[String] {
        match self {
            Values::One(value) => std::slice::from_ref(value),
            Values::Many(values) => values,
        }
    }
}

/// Replace a leading path segment (or several) with another.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathPrefix {
    /// The prefix to match, at a segment boundary (`/api` matches `/api`,
    /// `/api/x`, `/api?q`, not `/apix`). Starts with `/`.
    pub from: String,
    /// What replaces it. Starts with `/`.
    pub to: String,
}

/// Headers whose values frame the message; the host owns them.
const FRAMING_HEADERS: [&str; 2] = ["content-length", "transfer-encoding"];

impl weir_sdk::Settings for Settings {
    fn validate(&self) -> Result<(), String> {
        self.request.validate("request")?;
        self.response.validate("response")?;
        if let Some(prefix) = &self.path_prefix {
            check_path("path_prefix.from", &prefix.from)?;
            check_path("path_prefix.to", &prefix.to)?;
        }
        Ok(())
    }
}

impl HeaderEdits {
    /// True if there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.rename.is_empty() && self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    fn validate(&self, at: &str) -> Result<(), String> {
        for (old, new) in &self.rename {
            check_name(&format!("{at}.rename"), old)?;
            check_name(&format!("{at}.rename.{old}"), new)?;
            if old == new {
                return Err(format!("{at}.rename.{old}: renames a header to itself"));
            }
        }
        for (i, name) in self.remove.iter().enumerate() {
            check_name(&format!("{at}.remove[{i}]"), name)?;
        }
        for (name, value) in &self.set {
            check_name(&format!("{at}.set"), name)?;
            check_value(&format!("{at}.set.{name}"), value)?;
        }
        for (name, values) in &self.add {
            check_name(&format!("{at}.add"), name)?;
            for value in values.as_slice() {
                check_value(&format!("{at}.add.{name}"), value)?;
            }
        }
        Ok(())
    }
}

/// A lowercase HTTP token that is not a framing header.
fn check_name(at: &str, name: &str) -> Result<(), String> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(format!("{at}: {name:?} is not a lowercase header name"));
    }
    if FRAMING_HEADERS.contains(&name) {
        return Err(format!("{at}: {name:?} is managed by the gateway and cannot be edited"));
    }
    Ok(())
}

/// A header value: no control characters other than tab.
fn check_value(at: &str, value: &str) -> Result<(), String> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!("{at}: value must not contain control characters"));
    }
    Ok(())
}

/// An absolute path without query, fragment or whitespace.
fn check_path(at: &str, path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{at}: {path:?} must start with \"/\""));
    }
    if path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{at}: {path:?} must be a plain path (no query, fragment or spaces)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use weir_sdk::Settings as _;

    use super::*;

    fn err(json: &str) -> String {
        Settings::from_json(json).unwrap_err()
    }

    #[test]
    fn empty_config_is_a_no_op() {
        let s = Settings::from_json("{}").unwrap();
        assert!(s.request.is_empty() && s.response.is_empty() && s.path_prefix.is_none());
    }

    #[test]
    fn a_full_config_parses() {
        let s = Settings::from_json(
            r#"{"request":{"add":{"x-a":"1","x-b":["2","3"]},"set":{"x-c":"4"},
                "remove":["cookie"],"rename":{"x-old":"x-new"}},
               "response":{"remove":["server"]},
               "path_prefix":{"from":"/api","to":"/"}}"#,
        )
        .unwrap();
        assert_eq!(s.request.add["x-b"].as_slice(), ["2", "3"]);
        assert_eq!(s.request.add["x-a"].as_slice(), ["1"]);
        assert_eq!(s.response.remove, ["server"]);
        assert_eq!(
            s.path_prefix,
            Some(PathPrefix {
                from: "/api".into(),
                to: "/".into()
            })
        );
    }

    #[test]
    fn uppercase_names_are_rejected_with_their_path() {
        assert_eq!(
            err(r#"{"request":{"set":{"X-A":"1"}}}"#),
            r#"request.set: "X-A" is not a lowercase header name"#
        );
        assert!(err(r#"{"response":{"remove":["ok","bad name"]}}"#).starts_with("response.remove[1]:"));
        assert!(err(r#"{"request":{"rename":{"a":"B"}}}"#).starts_with("request.rename.a:"));
        assert!(err(r#"{"request":{"add":{"":"1"}}}"#).starts_with("request.add:"));
    }

    #[test]
    fn framing_headers_are_rejected() {
        assert!(err(r#"{"request":{"set":{"content-length":"1"}}}"#).contains("managed by the gateway"));
        assert!(err(r#"{"response":{"remove":["transfer-encoding"]}}"#).contains("managed by the gateway"));
    }

    #[test]
    fn control_characters_in_values_are_rejected() {
        assert!(err(r#"{"request":{"set":{"x-a":"1\r\nx-b: 2"}}}"#).starts_with("request.set.x-a:"));
        assert!(err(r#"{"response":{"add":{"x-a":["ok","\u0000"]}}}"#).starts_with("response.add.x-a:"));
        assert!(Settings::from_json(r#"{"request":{"set":{"x-a":"tab\there, ünïcode"}}}"#).is_ok());
    }

    #[test]
    fn rename_to_itself_is_rejected() {
        assert!(err(r#"{"request":{"rename":{"x-a":"x-a"}}}"#).contains("to itself"));
    }

    #[test]
    fn path_prefix_paths_must_start_with_a_slash() {
        assert!(err(r#"{"path_prefix":{"from":"api","to":"/"}}"#).starts_with("path_prefix.from:"));
        assert!(err(r#"{"path_prefix":{"from":"/api","to":"v1"}}"#).starts_with("path_prefix.to:"));
        assert!(err(r#"{"path_prefix":{"from":"/api","to":"/v1?x=1"}}"#).starts_with("path_prefix.to:"));
        assert!(err(r#"{"path_prefix":{"from":"/api"}}"#).contains("to"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(err(r#"{"requests":{}}"#).contains("requests"));
        assert!(err(r#"{"request":{"append":{}}}"#).contains("append"));
        assert!(err(r#"{"path_prefix":{"from":"/a","to":"/","strip":true}}"#).contains("strip"));
    }

    #[test]
    fn add_values_must_be_strings() {
        assert!(err(r#"{"request":{"add":{"x-a":5}}}"#).contains("a string or a list of strings"));
    }
}
