//! The plugin's config: schema, defaults and validation.

use std::collections::BTreeMap;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;

use crate::claims::ClaimRules;
use crate::keys::{Jwks, VerifyKey, alg_name, hmac_key, parse_alg, parse_jwks, pem_key};

/// The route's config for `jwt-auth`, as written in the gateway config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Request header that carries the token (lowercase).
    #[serde(default = "default_header")]
    pub header: String,
    /// Authentication scheme before the token in `header`; empty: the
    /// header's whole value is the token.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// Also accept the token from this query parameter.
    pub query_param: Option<String>,
    /// Also accept the token from this cookie.
    pub cookie: Option<String>,
    /// Remove the token (header, query parameter, cookie) before the
    /// request goes upstream.
    #[serde(default = "yes")]
    pub strip: bool,
    /// Realm named in the `www-authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// The algorithms a token may use. Defaults to those of the inline
    /// `keys`; required with any other key source.
    pub algorithms: Option<Vec<String>>,
    /// Inline keys.
    pub keys: Option<Vec<KeyConfig>>,
    /// Name of a secret holding a PEM public key, an HMAC secret or a
    /// JWKS, read on the first request.
    pub key_secret: Option<String>,
    /// An inline JWKS: a JSON string or a table with `keys`.
    pub jwks: Option<Value>,
    /// URL of a JWKS to fetch (the host must grant its host).
    pub jwks_url: Option<String>,
    /// How long fetched JWKS keys are used before fetching again.
    #[serde(default = "default_jwks_cache_secs")]
    pub jwks_cache_secs: u64,
    /// Least time between two fetches, whatever tokens arrive.
    #[serde(default = "default_jwks_min_refresh_secs")]
    pub jwks_min_refresh_secs: u64,
    /// Timeout of one JWKS fetch.
    #[serde(default = "default_jwks_timeout_ms")]
    pub jwks_timeout_ms: u32,
    /// Refuse tokens without `exp`.
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// Clock skew allowed for `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// `iss` must be one of these.
    pub issuers: Option<Vec<String>>,
    /// `aud` must contain one of these.
    pub audiences: Option<Vec<String>>,
    /// Claims that must be present.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// The claim published as the request property `consumer`.
    #[serde(default = "default_consumer_claim")]
    pub consumer_claim: String,
    /// Request property → claim, copied on success.
    #[serde(default)]
    pub claims_to_properties: BTreeMap<String, String>,
    /// Upstream request header → claim, copied on success.
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
}

/// One inline key: an HMAC `secret` or a `pem` public key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Key id; a token naming a kid is checked only with the key of that
    /// kid (and keys without one).
    pub kid: Option<String>,
    /// The one algorithm this key checks.
    pub alg: String,
    /// HMAC secret (HS256, HS384, HS512), as text.
    pub secret: Option<String>,
    /// PEM public key (RS*, PS*, ES256, ES384, EdDSA).
    pub pem: Option<String>,
}

fn default_header() -> String {
    "authorization".to_string()
}
fn default_scheme() -> String {
    "Bearer".to_string()
}
fn default_realm() -> String {
    "weir".to_string()
}
fn yes() -> bool {
    true
}
fn default_jwks_cache_secs() -> u64 {
    300
}
fn default_jwks_min_refresh_secs() -> u64 {
    30
}
fn default_jwks_timeout_ms() -> u32 {
    5000
}
fn default_leeway_secs() -> u64 {
    60
}
fn default_consumer_claim() -> String {
    "sub".to_string()
}

/// Properties the host or this plugin sets; a claim must not overwrite
/// them.
const RESERVED_PROPERTIES: [&str; 3] = ["consumer", "client-ip", "route"];
/// Headers that frame or route the request; a claim must not set them.
const RESERVED_HEADERS: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
];

impl weir_sdk::Settings for Settings {
    fn validate(&self) -> Result<(), String> {
        if !is_token(&self.header) || self.header.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!("header: {:?} is not a lowercase header name", self.header));
        }
        if !self.scheme.is_empty()
            && !self
                .scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~+/".contains(c))
        {
            return Err(format!(
                "scheme: {:?} is not an authentication scheme name",
                self.scheme
            ));
        }
        if let Some(param) = &self.query_param
            && (param.is_empty() || param.contains(['&', '=', '#', '?']))
        {
            return Err(format!("query_param: {param:?} is not a query parameter name"));
        }
        if let Some(cookie) = &self.cookie
            && !is_token(cookie)
        {
            return Err(format!("cookie: {cookie:?} is not a cookie name"));
        }
        if self.realm.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
            return Err(format!(
                "realm: {:?} must not contain quotes, backslashes or control characters",
                self.realm
            ));
        }
        if self.keys.is_none() && self.key_secret.is_none() && self.jwks.is_none() && self.jwks_url.is_none() {
            return Err("keys: one of keys, key_secret, jwks or jwks_url is required".to_string());
        }
        let algorithms = self.algorithms()?;
        let inline = self.inline_keys()?;
        for (i, key) in inline.iter().enumerate() {
            if let Some(alg) = key.algorithms().iter().find(|a| !algorithms.contains(a)) {
                return Err(format!("keys[{i}].alg: {} is not in algorithms", alg_name(*alg)));
            }
        }
        if let Some(jwks) = self.inline_jwks()?
            && !jwks
                .keys
                .iter()
                .any(|k| k.algorithms().iter().any(|a| algorithms.contains(a)))
        {
            return Err("jwks: no key checks any of the algorithms".to_string());
        }
        if let Some(secret) = &self.key_secret
            && secret.is_empty()
        {
            return Err("key_secret: must not be empty".to_string());
        }
        if let Some(url) = &self.jwks_url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .ok_or_else(|| format!("jwks_url: {url:?} is not an http:// or https:// URL"))?;
            if rest.is_empty() || rest.starts_with('/') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("jwks_url: {url:?} is not an http:// or https:// URL"));
            }
        }
        if self.jwks_cache_secs == 0 {
            return Err("jwks_cache_secs: must be at least 1".to_string());
        }
        if self.jwks_min_refresh_secs == 0 {
            return Err("jwks_min_refresh_secs: must be at least 1".to_string());
        }
        if self.jwks_timeout_ms == 0 {
            return Err("jwks_timeout_ms: must be at least 1".to_string());
        }
        for (field, list) in [("issuers", &self.issuers), ("audiences", &self.audiences)] {
            if let Some(list) = list
                && (list.is_empty() || list.iter().any(String::is_empty))
            {
                return Err(format!("{field}: must be a non-empty list of non-empty strings"));
            }
        }
        if self.required_claims.iter().any(String::is_empty) {
            return Err("required_claims: claim names must not be empty".to_string());
        }
        if self.consumer_claim.is_empty() {
            return Err("consumer_claim: must not be empty".to_string());
        }
        for (property, claim) in &self.claims_to_properties {
            if property.is_empty() || claim.is_empty() {
                return Err("claims_to_properties: property and claim names must not be empty".to_string());
            }
            if RESERVED_PROPERTIES.contains(&property.as_str()) {
                return Err(format!("claims_to_properties: {property:?} is set by the gateway"));
            }
        }
        for (header, claim) in &self.claims_to_headers {
            if !is_token(header) || header.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(format!("claims_to_headers: {header:?} is not a lowercase header name"));
            }
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(format!("claims_to_headers: {header:?} cannot be set from a claim"));
            }
            if claim.is_empty() {
                return Err(format!("claims_to_headers: the claim for {header:?} must not be empty"));
            }
        }
        Ok(())
    }
}

impl Settings {
    /// The accepted algorithms: `algorithms`, or else the inline keys'.
    pub fn algorithms(&self) -> Result<Vec<Algorithm>, String> {
        let Some(names) = &self.algorithms else {
            let other_source = self.key_secret.is_some() || self.jwks.is_some() || self.jwks_url.is_some();
            if other_source {
                return Err("algorithms: required with key_secret, jwks or jwks_url".to_string());
            }
            let mut algs = Vec::new();
            for (i, key) in self.keys.iter().flatten().enumerate() {
                let alg = parse_alg(&key.alg).map_err(|e| format!("keys[{i}].alg: {e}"))?;
                if !algs.contains(&alg) {
                    algs.push(alg);
                }
            }
            return Ok(algs);
        };
        if names.is_empty() {
            return Err("algorithms: must not be empty".to_string());
        }
        names
            .iter()
            .map(|n| parse_alg(n).map_err(|e| format!("algorithms: {e}")))
            .collect()
    }

    /// The inline `keys`, checked.
    pub fn inline_keys(&self) -> Result<Vec<VerifyKey>, String> {
        let Some(keys) = &self.keys else {
            return Ok(Vec::new());
        };
        if keys.is_empty() {
            return Err("keys: must not be empty".to_string());
        }
        keys.iter()
            .enumerate()
            .map(|(i, k)| {
                let alg = parse_alg(&k.alg).map_err(|e| format!("keys[{i}].alg: {e}"))?;
                let kid = k.kid.clone();
                match (&k.secret, &k.pem, alg.family()) {
                    (Some(secret), None, jsonwebtoken::AlgorithmFamily::Hmac) => {
                        hmac_key(secret.as_bytes(), kid, Some(alg)).map_err(|e| format!("keys[{i}].secret: {e}"))
                    }
                    (None, Some(pem), family) if family != jsonwebtoken::AlgorithmFamily::Hmac => {
                        pem_key(pem, kid, Some(alg)).map_err(|e| format!("keys[{i}].pem: {e}"))
                    }
                    (Some(_), Some(_), _) => Err(format!("keys[{i}]: give secret or pem, not both")),
                    (_, _, jsonwebtoken::AlgorithmFamily::Hmac) => {
                        Err(format!("keys[{i}]: {} needs a secret", alg_name(alg)))
                    }
                    _ => Err(format!("keys[{i}]: {} needs a pem public key", alg_name(alg))),
                }
            })
            .collect()
    }

    /// The inline `jwks`, checked: every key in it must be usable.
    pub fn inline_jwks(&self) -> Result<Option<Jwks>, String> {
        let Some(jwks) = &self.jwks else {
            return Ok(None);
        };
        let doc = match jwks {
            Value::String(text) => serde_json::from_str(text)
                .map_err(|e| format!("jwks: not JSON (line {}, column {})", e.line(), e.column()))?,
            other => other.clone(),
        };
        let parsed = parse_jwks(&doc).map_err(|e| format!("jwks: {e}"))?;
        if let Some(problem) = parsed.problems.first() {
            return Err(format!("jwks: {problem}"));
        }
        Ok(Some(parsed))
    }

    /// The claim checks.
    pub fn claim_rules(&self) -> ClaimRules {
        ClaimRules {
            require_exp: self.require_exp,
            leeway_secs: self.leeway_secs,
            issuers: self.issuers.clone(),
            audiences: self.audiences.clone(),
            required: self.required_claims.clone(),
            consumer_claim: self.consumer_claim.clone(),
        }
    }

    /// The `www-authenticate` challenge for a missing token.
    pub fn challenge(&self) -> String {
        format!("Bearer realm=\"{}\"", self.realm)
    }

    /// The `www-authenticate` challenge for a token that was refused.
    pub fn invalid_token_challenge(&self) -> String {
        format!("Bearer realm=\"{}\", error=\"invalid_token\"", self.realm)
    }
}

/// An HTTP token (header or cookie name).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use weir_sdk::Settings as _;

    use super::*;
    use crate::keys::tests::fixture;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn hs_config(extra: &str) -> String {
        format!(r#"{{"keys":[{{"alg":"HS256","secret":"{SECRET}"}}]{extra}}}"#)
    }

    fn err(json: &str) -> String {
        Settings::from_json(json).unwrap_err()
    }

    #[test]
    fn defaults_apply_to_a_minimal_config() {
        let s = Settings::from_json(&hs_config("")).unwrap();
        assert_eq!(s.header, "authorization");
        assert_eq!(s.scheme, "Bearer");
        assert!(s.strip && s.require_exp);
        assert_eq!(
            (s.leeway_secs, s.jwks_cache_secs, s.jwks_min_refresh_secs),
            (60, 300, 30)
        );
        assert_eq!(s.consumer_claim, "sub");
        assert_eq!(s.algorithms().unwrap(), [Algorithm::HS256]);
        assert_eq!(s.challenge(), r#"Bearer realm="weir""#);
        assert_eq!(
            s.invalid_token_challenge(),
            r#"Bearer realm="weir", error="invalid_token""#
        );
    }

    #[test]
    fn a_key_source_is_required() {
        assert!(err("{}").starts_with("keys:"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(err(&hs_config(r#","isuers":["x"]"#)).contains("isuers"));
        let e = err(r#"{"keys":[{"alg":"HS256","secret":"x","kidd":"a"}]}"#);
        assert!(e.contains("kidd"), "{e}");
    }

    #[test]
    fn none_is_refused_in_algorithms() {
        let e = err(&hs_config(r#","algorithms":["HS256","none"]"#));
        assert!(e.starts_with("algorithms:"), "{e}");
    }

    #[test]
    fn algorithms_are_required_with_remote_keys() {
        let e = err(r#"{"jwks_url":"https://idp.example/jwks"}"#);
        assert!(e.starts_with("algorithms:"), "{e}");
        let ok = r#"{"jwks_url":"https://idp.example/jwks","algorithms":["RS256"]}"#;
        assert!(Settings::from_json(ok).is_ok());
    }

    #[test]
    fn an_inline_key_outside_algorithms_is_refused() {
        let e = err(&hs_config(r#","algorithms":["RS256"]"#));
        assert_eq!(e, "keys[0].alg: HS256 is not in algorithms");
    }

    #[test]
    fn an_rsa_pem_cannot_be_an_hmac_key() {
        let pem = serde_json::to_string(&fixture("rsa-public.pem")).unwrap();
        let e = err(&format!(r#"{{"keys":[{{"alg":"HS256","pem":{pem}}}]}}"#));
        assert_eq!(e, "keys[0]: HS256 needs a secret");
        let e = err(&format!(r#"{{"keys":[{{"alg":"RS256","secret":{pem}}}]}}"#));
        assert_eq!(e, "keys[0]: RS256 needs a pem public key");
        let e = err(&format!(r#"{{"keys":[{{"alg":"ES256","pem":{pem}}}]}}"#));
        assert_eq!(e, "keys[0].pem: ES256 cannot be used with an RSA key");
    }

    #[test]
    fn a_short_hmac_secret_is_refused() {
        let e = err(r#"{"keys":[{"alg":"HS256","secret":"short"}]}"#);
        assert!(e.starts_with("keys[0].secret:"), "{e}");
        assert!(!e.contains("short\""), "{e}");
    }

    #[test]
    fn inline_jwks_as_text_or_table() {
        let text = serde_json::to_string(&fixture("jwks.json")).unwrap();
        let s = Settings::from_json(&format!(r#"{{"jwks":{text},"algorithms":["RS256"]}}"#)).unwrap();
        assert_eq!(s.inline_jwks().unwrap().unwrap().keys.len(), 3);
        let table = fixture("jwks.json");
        assert!(Settings::from_json(&format!(r#"{{"jwks":{table},"algorithms":["ES256"]}}"#)).is_ok());
        let e = err(r#"{"jwks":{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]},"algorithms":["RS256"]}"#);
        assert!(e.starts_with("jwks:"), "{e}");
        let e = err(&format!(r#"{{"jwks":{table},"algorithms":["HS256"]}}"#));
        assert_eq!(e, "jwks: no key checks any of the algorithms");
    }

    #[test]
    fn bad_jwks_url_is_refused() {
        for url in [
            "ftp://x/jwks",
            "https://",
            "https:///jwks",
            "idp.example/jwks",
            "https://a b/",
        ] {
            let e = err(&format!(r#"{{"jwks_url":"{url}","algorithms":["RS256"]}}"#));
            assert!(e.starts_with("jwks_url:"), "{url}: {e}");
        }
    }

    #[test]
    fn a_zero_refresh_interval_is_refused() {
        let e = err(r#"{"jwks_url":"https://i/j","algorithms":["RS256"],"jwks_min_refresh_secs":0}"#);
        assert!(e.starts_with("jwks_min_refresh_secs:"), "{e}");
    }

    #[test]
    fn claims_cannot_overwrite_gateway_properties_or_framing_headers() {
        let e = err(&hs_config(r#","claims_to_properties":{"consumer":"email"}"#));
        assert!(e.starts_with("claims_to_properties:"), "{e}");
        let e = err(&hs_config(r#","claims_to_headers":{"host":"aud"}"#));
        assert!(e.starts_with("claims_to_headers:"), "{e}");
        let e = err(&hs_config(r#","claims_to_headers":{"X-User":"sub"}"#));
        assert!(e.starts_with("claims_to_headers:"), "{e}");
    }

    #[test]
    fn bad_token_locations_are_refused() {
        assert!(err(&hs_config(r#","header":"Authorization""#)).starts_with("header:"));
        assert!(err(&hs_config(r#","scheme":"Bear er""#)).starts_with("scheme:"));
        assert!(err(&hs_config(r#","query_param":"a=b""#)).starts_with("query_param:"));
        assert!(err(&hs_config(r#","cookie":"a;b""#)).starts_with("cookie:"));
        assert!(err(&hs_config(r#","realm":"a\"b""#)).starts_with("realm:"));
        assert!(Settings::from_json(&hs_config(r#","header":"x-jwt","scheme":"""#)).is_ok());
    }

    #[test]
    fn empty_issuers_or_audiences_are_refused() {
        assert!(err(&hs_config(r#","issuers":[]"#)).starts_with("issuers:"));
        assert!(err(&hs_config(r#","audiences":[""]"#)).starts_with("audiences:"));
    }
}
