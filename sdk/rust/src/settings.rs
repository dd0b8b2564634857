//! A plugin's settings: the route's (or target's) `config` read into a
//! type and checked, in one step, with one shape of error.
//!
//! A plugin describes its config as a serde type and implements
//! [`Settings`] for it, adding in [`Settings::validate`] the checks the
//! types alone cannot make (a number's range, fields that exclude each
//! other). [`Config::settings`](crate::Config::settings) — or
//! [`TargetConfig::settings`](crate::ai::TargetConfig::settings) for a
//! provider shim — reads and checks it; `configure` returns its error as
//! it is, and the gateway refuses the config naming route, plugin and
//! that error.
//!
//! Invariants of the errors, which operators read:
//! - A field serde refused is named by its path before serde's message:
//!   `rules[0].methods: invalid type: string "POST", expected a sequence
//!   at line 1 column 30`. An error about the document as a whole (not
//!   JSON, a required field missing at the top) is serde's message alone.
//! - What `validate` returns is passed on unchanged, so it should start
//!   with the field at fault the same way: `capacity: must be at least 1`.
//! - Unknown fields are refused only if the type says so:
//!   `#[serde(deny_unknown_fields)]` on every struct, or a typo in an
//!   operator's config is silently ignored.
//!
//! When checking builds something else — parsed networks, a compiled
//! policy — keep the type as written apart from the built form: implement
//! [`Settings`] for the written form (with no `validate` if building it is
//! the check) and build the other from it in `configure`.

use serde::de::DeserializeOwned;

/// A plugin's config as a type: what the route's `config` table (a
/// target's model and options, for a shim) deserializes into, and the
/// checks serde cannot make.
///
/// ```
/// use weir_sdk::Settings;
///
/// #[derive(Debug, serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Limits {
///     capacity: u32,
///     #[serde(default = "one")]
///     cost: u32,
/// }
///
/// fn one() -> u32 {
///     1
/// }
///
/// impl Settings for Limits {
///     fn validate(&self) -> Result<(), String> {
///         if self.cost > self.capacity {
///             return Err(format!("cost: {} is more than capacity {}", self.cost, self.capacity));
///         }
///         Ok(())
///     }
/// }
///
/// assert_eq!(Limits::from_json(r#"{"capacity": 10}"#).map(|l| l.cost), Ok(1));
/// assert_eq!(
///     Limits::from_json(r#"{"capacity": 1, "cost": 2}"#).err().as_deref(),
///     Some("cost: 2 is more than capacity 1")
/// );
/// assert!(Limits::from_json(r#"{"capacity": 1, "burst": 2}"#).unwrap_err().starts_with("burst: unknown field"));
/// ```
pub trait Settings: DeserializeOwned {
    /// Check what deserializing cannot; the error starts with the field
    /// at fault (`cost: ...`). The default accepts everything.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// Deserialize `json`, naming the field serde refused, then
    /// [`validate`](Settings::validate). This is what
    /// [`Config::settings`](crate::Config::settings) does; call it directly
    /// to test settings natively. Not meant to be overridden: every plugin
    /// reports config errors the same way.
    fn from_json(json: &str) -> Result<Self, String> {
        let settings = deserialize::<Self>(json)?;
        settings.validate()?;
        Ok(settings)
    }
}

/// `json` as a `T`; the error names the path of the field at fault, if
/// serde was inside one.
fn deserialize<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| match e.path().to_string() {
        path if path == "." => e.inner().to_string(),
        path => format!("{path}: {}", e.inner()),
    })?;
    // Anything after the value (`{} {}`) is an error, as in `serde_json::from_str`.
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Route {
        capacity: u32,
        #[serde(default)]
        rules: Vec<Rule>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        #[serde(default)]
        methods: Vec<String>,
    }

    impl Settings for Route {
        fn validate(&self) -> Result<(), String> {
            if self.capacity == 0 {
                return Err("capacity: must be at least 1".into());
            }
            Ok(())
        }
    }

    fn error(json: &str) -> String {
        Route::from_json(json).unwrap_err()
    }

    #[test]
    fn a_good_config_is_read_and_checked() {
        let route = Route::from_json(r#"{"capacity": 3, "rules": [{"methods": ["GET"]}]}"#).unwrap();
        assert_eq!(
            (route.capacity, route.rules[0].methods.as_slice()),
            (3, &["GET".to_string()][..])
        );
    }

    #[test]
    fn a_validation_error_is_passed_on_unchanged() {
        assert_eq!(error(r#"{"capacity": 0}"#), "capacity: must be at least 1");
    }

    #[test]
    fn a_field_serde_refuses_is_named_by_its_path() {
        assert!(error(r#"{"capacity": -1}"#).starts_with("capacity: invalid value: integer `-1`"));
        let nested = error(r#"{"capacity": 1, "rules": [{}, {"methods": "GET"}]}"#);
        assert!(
            nested.starts_with("rules[1].methods: invalid type: string \"GET\""),
            "{nested}"
        );
        let unknown = error(r#"{"capacity": 1, "rules": [{"method": []}]}"#);
        assert!(
            unknown.starts_with("rules[0].method: unknown field `method`"),
            "{unknown}"
        );
    }

    #[test]
    fn an_error_about_the_whole_document_has_no_path() {
        assert!(error("{}").starts_with("missing field `capacity`"));
        assert!(error("[").starts_with("EOF while parsing"));
        assert!(error("").starts_with("EOF while parsing"));
    }

    #[test]
    fn anything_after_the_config_is_refused() {
        assert!(error(r#"{"capacity": 1} {}"#).starts_with("trailing characters"));
        assert!(Route::from_json("{\"capacity\": 1}\n").is_ok());
    }
}
