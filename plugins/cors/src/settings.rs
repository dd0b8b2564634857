//! The plugin's config: schema, defaults and validation.

use serde::Deserialize;

use crate::origin::OriginRule;

/// The config as written in the gateway config, before checking: the
/// checks are made while building [`Settings`] from it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    origins: Vec<String>,
    #[serde(default = "default_methods")]
    methods: Vec<String>,
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default)]
    credentials: bool,
    max_age_secs: Option<u32>,
}

/// The CORS-safelisted methods: what a browser sends without asking.
fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST"].map(String::from).to_vec()
}

/// The route's checked config for `cors`.
#[derive(Debug)]
pub struct Settings {
    /// Allowed origins.
    pub origins: Vec<OriginRule>,
    /// Allowed methods, as written (methods are case-sensitive).
    pub methods: Vec<String>,
    /// Allowed request headers, lowercase.
    pub headers: Vec<String>,
    /// Response headers the page may read, lowercase.
    pub expose_headers: Vec<String>,
    /// Allow cookies and HTTP authentication on cross-origin requests.
    pub credentials: bool,
    /// How long a browser may cache a preflight answer.
    pub max_age_secs: Option<u32>,
}

impl weir_sdk::Settings for Fields {}

impl TryFrom<Fields> for Settings {
    type Error = String;

    /// Check the config and build it; the error names the field at fault.
    fn try_from(fields: Fields) -> Result<Settings, String> {
        if fields.origins.is_empty() {
            return Err("origins: must list at least one origin".into());
        }
        let origins = fields
            .origins
            .iter()
            .enumerate()
            .map(|(i, entry)| OriginRule::parse(entry).map_err(|why| format!("origins[{i}]: {entry:?} {why}")))
            .collect::<Result<Vec<_>, _>>()?;
        if fields.credentials && origins.contains(&OriginRule::Any) {
            return Err(
                "origins: \"*\" cannot be used with credentials = true (the CORS standard forbids it); list the origins"
                    .into(),
            );
        }
        if fields.methods.is_empty() {
            return Err("methods: must list at least one method".into());
        }
        check_tokens("methods", &fields.methods)?;
        check_tokens("headers", &fields.headers)?;
        check_tokens("expose_headers", &fields.expose_headers)?;
        let lowercase = |names: Vec<String>| names.into_iter().map(|n| n.to_ascii_lowercase()).collect();
        Ok(Settings {
            origins,
            methods: fields.methods,
            headers: lowercase(fields.headers),
            expose_headers: lowercase(fields.expose_headers),
            credentials: fields.credentials,
            max_age_secs: fields.max_age_secs,
        })
    }
}

impl Settings {
    /// True if `*` is among the origins: every origin is allowed and
    /// answered with a literal `*`.
    pub fn any_origin(&self) -> bool {
        self.origins.contains(&OriginRule::Any)
    }
}

/// What `configure` builds from `json`, for tests.
#[cfg(test)]
pub fn checked(json: &str) -> Result<Settings, String> {
    Settings::try_from(weir_sdk::Config::new(json).settings::<Fields>()?)
}

/// Every entry must be an HTTP token (a method or header name), and not
/// `*`, which this plugin does not expand: list the names.
fn check_tokens(field: &str, entries: &[String]) -> Result<(), String> {
    for (i, entry) in entries.iter().enumerate() {
        if entry == "*" {
            return Err(format!("{field}[{i}]: \"*\" is not supported; list the names"));
        }
        let is_token = !entry.is_empty()
            && entry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !is_token {
            return Err(format!("{field}[{i}]: {entry:?} is not a valid name"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_to_a_minimal_config() {
        let s = checked(r#"{"origins":["https://app.example.com"]}"#).unwrap();
        assert_eq!(s.methods, ["GET", "HEAD", "POST"]);
        assert!(s.headers.is_empty());
        assert!(s.expose_headers.is_empty());
        assert!(!s.credentials);
        assert_eq!(s.max_age_secs, None);
        assert!(!s.any_origin());
    }

    #[test]
    fn origins_are_required_and_not_empty() {
        assert!(checked("{}").unwrap_err().contains("origins"));
        let err = checked(r#"{"origins":[]}"#).unwrap_err();
        assert!(err.starts_with("origins:"), "{err}");
    }

    #[test]
    fn a_bad_origin_is_named_with_its_index() {
        let err = checked(r#"{"origins":["https://a.example.com","https://b.example.com/"]}"#).unwrap_err();
        assert!(
            err.starts_with(r#"origins[1]: "https://b.example.com/" is not an origin"#),
            "{err}"
        );
    }

    #[test]
    fn credentials_with_star_origin_is_a_config_error() {
        let err = checked(r#"{"origins":["*"],"credentials":true}"#).unwrap_err();
        assert!(err.starts_with("origins:") && err.contains("credentials"), "{err}");
        let err = checked(r#"{"origins":["https://a.example.com","*"],"credentials":true}"#).unwrap_err();
        assert!(err.starts_with("origins:"), "{err}");
    }

    #[test]
    fn credentials_with_listed_origins_and_patterns_is_fine() {
        let s = checked(r#"{"origins":["https://*.example.com"],"credentials":true}"#).unwrap();
        assert!(s.credentials);
    }

    #[test]
    fn star_is_not_a_method_or_header() {
        for field in ["methods", "headers", "expose_headers"] {
            let err = checked(&format!(r#"{{"origins":["*"],"{field}":["*"]}}"#)).unwrap_err();
            assert!(err.starts_with(&format!("{field}[0]:")), "{err}");
        }
    }

    #[test]
    fn bad_names_are_refused() {
        let err = checked(r#"{"origins":["*"],"headers":["x-ok","x bad"]}"#).unwrap_err();
        assert_eq!(err, r#"headers[1]: "x bad" is not a valid name"#);
        let err = checked(r#"{"origins":["*"],"methods":[]}"#).unwrap_err();
        assert!(err.starts_with("methods:"), "{err}");
        let err = checked(r#"{"origins":["*"],"expose_headers":[""]}"#).unwrap_err();
        assert!(err.starts_with("expose_headers[0]:"), "{err}");
    }

    #[test]
    fn header_names_are_lowercased_and_methods_kept() {
        let s = checked(
            r#"{"origins":["*"],"methods":["PATCH"],"headers":["Content-Type"],"expose_headers":["X-Request-Id"]}"#,
        )
        .unwrap();
        assert_eq!(s.methods, ["PATCH"]);
        assert_eq!(s.headers, ["content-type"]);
        assert_eq!(s.expose_headers, ["x-request-id"]);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = checked(r#"{"origins":["*"],"allow_credentials":true}"#).unwrap_err();
        assert!(err.contains("allow_credentials"), "{err}");
    }
}
