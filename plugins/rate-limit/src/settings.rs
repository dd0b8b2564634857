//! The plugin's config: schema, defaults and validation.

use serde::Deserialize;

use crate::bucket::Bucket;

/// The route's config for `rate-limit`, as written in the gateway config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Most requests (of cost 1) let through in one burst; the bucket's
    /// size. Required, at least 1.
    pub capacity: u32,
    /// Tokens added back per second (fractions allowed: `0.5` is one
    /// request every two seconds). Required, above 0.
    pub refill_per_second: f64,
    /// Request property that names whose bucket a request takes from. When
    /// the request lacks it, the property `client-ip` is used instead.
    #[serde(default = "default_key")]
    pub key: String,
    /// Tokens each request takes; at most `capacity`.
    #[serde(default = "default_cost")]
    pub cost: u32,
    /// What to do when the kv store fails (or is not granted): `"deny"`
    /// answers 500, `"allow"` lets the request through unlimited. Both log.
    #[serde(default)]
    pub on_kv_error: OnKvError,
    /// Buckets are per route by default; routes that give the same
    /// `bucket` name share their buckets instead.
    pub bucket: Option<String>,
}

/// The `on_kv_error` policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnKvError {
    /// Fail closed: answer 500.
    #[default]
    Deny,
    /// Fail open: let the request through.
    Allow,
}

fn default_key() -> String {
    "consumer".to_string()
}

fn default_cost() -> u32 {
    1
}

impl weir_sdk::Settings for Settings {
    fn validate(&self) -> Result<(), String> {
        if self.capacity == 0 {
            return Err("capacity: must be at least 1".to_string());
        }
        if !(self.refill_per_second.is_finite() && self.refill_per_second > 0.0) {
            return Err(format!(
                "refill_per_second: must be a number above 0, not {}",
                self.refill_per_second
            ));
        }
        if self.key.is_empty() {
            return Err("key: must not be empty".to_string());
        }
        if self.cost == 0 || self.cost > self.capacity {
            return Err(format!(
                "cost: must be between 1 and capacity ({}), not {}",
                self.capacity, self.cost
            ));
        }
        if self.bucket.as_deref() == Some("") {
            return Err("bucket: must not be empty".to_string());
        }
        Ok(())
    }
}

impl Settings {
    /// The bucket shape these settings describe.
    pub fn bucket_shape(&self) -> Bucket {
        Bucket {
            capacity: self.capacity,
            refill_per_second: self.refill_per_second,
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_sdk::Settings as _;

    use super::*;

    #[test]
    fn defaults_apply_to_a_minimal_config() {
        let s = Settings::from_json(r#"{"capacity":10,"refill_per_second":1}"#).unwrap();
        assert_eq!(s.key, "consumer");
        assert_eq!(s.cost, 1);
        assert_eq!(s.on_kv_error, OnKvError::Deny);
        assert_eq!(s.bucket, None);
    }

    #[test]
    fn capacity_and_rate_are_required() {
        let err = Settings::from_json(r#"{"refill_per_second":1}"#).unwrap_err();
        assert!(err.contains("capacity"), "{err}");
        let err = Settings::from_json(r#"{"capacity":1}"#).unwrap_err();
        assert!(err.contains("refill_per_second"), "{err}");
    }

    #[test]
    fn zero_or_negative_values_are_rejected() {
        let err = Settings::from_json(r#"{"capacity":0,"refill_per_second":1}"#).unwrap_err();
        assert!(err.starts_with("capacity:"), "{err}");
        let err = Settings::from_json(r#"{"capacity":-1,"refill_per_second":1}"#).unwrap_err();
        assert!(err.contains("-1"), "{err}");
        let err = Settings::from_json(r#"{"capacity":1,"refill_per_second":0}"#).unwrap_err();
        assert!(err.starts_with("refill_per_second:"), "{err}");
        let err = Settings::from_json(r#"{"capacity":1,"refill_per_second":-0.5}"#).unwrap_err();
        assert!(err.starts_with("refill_per_second:"), "{err}");
    }

    #[test]
    fn cost_must_fit_in_the_bucket() {
        let err = Settings::from_json(r#"{"capacity":2,"refill_per_second":1,"cost":3}"#).unwrap_err();
        assert!(err.starts_with("cost:"), "{err}");
        let err = Settings::from_json(r#"{"capacity":2,"refill_per_second":1,"cost":0}"#).unwrap_err();
        assert!(err.starts_with("cost:"), "{err}");
    }

    #[test]
    fn on_kv_error_takes_deny_or_allow() {
        let s = Settings::from_json(r#"{"capacity":1,"refill_per_second":1,"on_kv_error":"allow"}"#).unwrap();
        assert_eq!(s.on_kv_error, OnKvError::Allow);
        let err = Settings::from_json(r#"{"capacity":1,"refill_per_second":1,"on_kv_error":"maybe"}"#).unwrap_err();
        assert!(err.contains("maybe"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = Settings::from_json(r#"{"capacity":1,"refill_per_second":1,"burst":5}"#).unwrap_err();
        assert!(err.contains("burst"), "{err}");
    }
}
