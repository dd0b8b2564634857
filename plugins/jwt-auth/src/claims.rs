//! The claim checks a verified token must still pass (times, issuer,
//! audience, required claims) and how claims become text for properties
//! and headers.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::token::Invalid;

/// What a route demands of a token's claims.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    /// `exp` must be present.
    pub require_exp: bool,
    /// Allowed clock skew, in seconds, for `exp`, `nbf` and `iat`.
    pub leeway_secs: u64,
    /// `iss` must be one of these, if set.
    pub issuers: Option<Vec<String>>,
    /// `aud` must contain one of these, if set.
    pub audiences: Option<Vec<String>>,
    /// Claims that must be present (and not null).
    pub required: Vec<String>,
    /// The claim naming the consumer; it must be present.
    pub consumer_claim: String,
}

/// A NumericDate claim: absent, or a number (seconds since the epoch,
/// possibly fractional).
fn date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, Invalid> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .map(Some)
            .ok_or_else(|| Invalid::BadClaim(name.to_string())),
    }
}

impl ClaimRules {
    /// Check the claims at `now` (seconds since the epoch) and return the
    /// consumer's name.
    pub fn check(&self, claims: &Map<String, Value>, now: u64) -> Result<String, Invalid> {
        // Whole seconds are exact in an f64 for the next 285 million years.
        let now = now as f64;
        let leeway = self.leeway_secs as f64;
        match date(claims, "exp")? {
            Some(exp) if now >= exp + leeway => return Err(Invalid::Expired),
            Some(_) => {}
            None if self.require_exp => return Err(Invalid::MissingClaim("exp".to_string())),
            None => {}
        }
        if let Some(nbf) = date(claims, "nbf")?
            && now + leeway < nbf
        {
            return Err(Invalid::NotYetValid);
        }
        if let Some(iat) = date(claims, "iat")?
            && iat > now + leeway
        {
            return Err(Invalid::IssuedInFuture);
        }
        if let Some(issuers) = &self.issuers {
            let iss = claims
                .get("iss")
                .ok_or_else(|| Invalid::MissingClaim("iss".to_string()))?;
            if !issuers.iter().any(|i| iss.as_str() == Some(i)) {
                return Err(Invalid::WrongIssuer);
            }
        }
        if let Some(audiences) = &self.audiences {
            let aud = claims
                .get("aud")
                .ok_or_else(|| Invalid::MissingClaim("aud".to_string()))?;
            // `aud` is one string or a list of them.
            let named: Vec<&str> = match aud {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !named.iter().any(|n| audiences.iter().any(|a| a == n)) {
                return Err(Invalid::WrongAudience);
            }
        }
        for name in &self.required {
            if claims.get(name).is_none_or(Value::is_null) {
                return Err(Invalid::MissingClaim(name.clone()));
            }
        }
        let consumer = claims
            .get(&self.consumer_claim)
            .filter(|v| !v.is_null())
            .ok_or_else(|| Invalid::MissingClaim(self.consumer_claim.clone()))?;
        match claim_text(consumer) {
            Some(text) if !text.is_empty() && !text.chars().any(char::is_control) => Ok(text),
            _ => Err(Invalid::BadClaim(self.consumer_claim.clone())),
        }
    }
}

/// A claim as text: strings as they are, numbers and booleans written out.
/// Other values (objects, lists, null) have no text.
pub fn claim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A claim as a header value: its text, unless that has control
/// characters (a CR or LF must never reach a header).
pub fn header_text(value: &Value) -> Option<String> {
    claim_text(value).filter(|t| !t.chars().any(|c| c.is_control() && c != '\t'))
}

/// `(property, text)` for each `property → claim` entry whose claim has
/// text; the others are left unset.
pub fn claim_properties(map: &BTreeMap<String, String>, claims: &Map<String, Value>) -> Vec<(String, String)> {
    map.iter()
        .filter_map(|(property, claim)| Some((property.clone(), claim_text(claims.get(claim)?)?)))
        .collect()
}

/// `(header, value)` for each `header → claim` entry: the claim's text, or
/// `None` — remove the header — when it has none, so that a value the
/// client sent never passes as if it came from the token.
pub fn claim_headers(map: &BTreeMap<String, String>, claims: &Map<String, Value>) -> Vec<(String, Option<String>)> {
    map.iter()
        .map(|(header, claim)| (header.clone(), claims.get(claim).and_then(header_text)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn rules() -> ClaimRules {
        ClaimRules {
            require_exp: true,
            leeway_secs: 60,
            issuers: None,
            audiences: None,
            required: Vec::new(),
            consumer_claim: "sub".to_string(),
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn a_current_token_names_its_consumer() {
        let c = claims(json!({"sub": "alice", "exp": NOW + 10, "nbf": NOW - 10, "iat": NOW - 10}));
        assert_eq!(rules().check(&c, NOW), Ok("alice".to_string()));
    }

    #[test]
    fn expired_beyond_the_leeway_is_refused() {
        let c = claims(json!({"sub": "a", "exp": NOW - 61}));
        assert_eq!(rules().check(&c, NOW), Err(Invalid::Expired));
        let c = claims(json!({"sub": "a", "exp": NOW - 59}));
        assert!(rules().check(&c, NOW).is_ok());
        let strict = ClaimRules {
            leeway_secs: 0,
            ..rules()
        };
        let c = claims(json!({"sub": "a", "exp": NOW}));
        assert_eq!(strict.check(&c, NOW), Err(Invalid::Expired));
    }

    #[test]
    fn not_yet_valid_beyond_the_leeway_is_refused() {
        let c = claims(json!({"sub": "a", "exp": NOW + 999, "nbf": NOW + 61}));
        assert_eq!(rules().check(&c, NOW), Err(Invalid::NotYetValid));
        let c = claims(json!({"sub": "a", "exp": NOW + 999, "nbf": NOW + 59}));
        assert!(rules().check(&c, NOW).is_ok());
    }

    #[test]
    fn issued_in_the_future_is_refused() {
        let c = claims(json!({"sub": "a", "exp": NOW + 999, "iat": NOW + 120}));
        assert_eq!(rules().check(&c, NOW), Err(Invalid::IssuedInFuture));
    }

    #[test]
    fn exp_is_required_unless_switched_off() {
        let c = claims(json!({"sub": "a"}));
        assert_eq!(rules().check(&c, NOW), Err(Invalid::MissingClaim("exp".into())));
        let lax = ClaimRules {
            require_exp: false,
            ..rules()
        };
        assert!(lax.check(&c, NOW).is_ok());
    }

    #[test]
    fn dates_that_are_not_numbers_are_refused() {
        let c = claims(json!({"sub": "a", "exp": "tomorrow"}));
        assert_eq!(rules().check(&c, NOW), Err(Invalid::BadClaim("exp".into())));
        let c = claims(json!({"sub": "a", "exp": NOW + 10, "nbf": null}));
        assert_eq!(rules().check(&c, NOW), Err(Invalid::BadClaim("nbf".into())));
    }

    #[test]
    fn fractional_dates_are_accepted() {
        let c = claims(json!({"sub": "a", "exp": NOW as f64 + 0.5 - 60.0}));
        assert!(rules().check(&c, NOW).is_ok());
    }

    #[test]
    fn wrong_issuer_is_refused() {
        let r = ClaimRules {
            issuers: Some(vec!["https://idp.example".into()]),
            ..rules()
        };
        let c = claims(json!({"sub": "a", "exp": NOW + 9, "iss": "https://idp.example"}));
        assert!(r.check(&c, NOW).is_ok());
        let c = claims(json!({"sub": "a", "exp": NOW + 9, "iss": "https://evil.example"}));
        assert_eq!(r.check(&c, NOW), Err(Invalid::WrongIssuer));
        let c = claims(json!({"sub": "a", "exp": NOW + 9, "iss": ["https://idp.example"]}));
        assert_eq!(r.check(&c, NOW), Err(Invalid::WrongIssuer));
        let c = claims(json!({"sub": "a", "exp": NOW + 9}));
        assert_eq!(r.check(&c, NOW), Err(Invalid::MissingClaim("iss".into())));
    }

    #[test]
    fn wrong_audience_is_refused() {
        let r = ClaimRules {
            audiences: Some(vec!["api".into(), "billing".into()]),
            ..rules()
        };
        for aud in [json!("api"), json!(["other", "billing"])] {
            let c = claims(json!({"sub": "a", "exp": NOW + 9, "aud": aud}));
            assert!(r.check(&c, NOW).is_ok(), "{aud}");
        }
        for aud in [json!("apis"), json!(["other"]), json!(5), json!([])] {
            let c = claims(json!({"sub": "a", "exp": NOW + 9, "aud": aud}));
            assert_eq!(r.check(&c, NOW), Err(Invalid::WrongAudience), "{aud}");
        }
        let c = claims(json!({"sub": "a", "exp": NOW + 9}));
        assert_eq!(r.check(&c, NOW), Err(Invalid::MissingClaim("aud".into())));
    }

    #[test]
    fn required_claims_must_be_present() {
        let r = ClaimRules {
            required: vec!["tenant".into()],
            ..rules()
        };
        let c = claims(json!({"sub": "a", "exp": NOW + 9, "tenant": "t1"}));
        assert!(r.check(&c, NOW).is_ok());
        for c in [
            json!({"sub": "a", "exp": NOW + 9}),
            json!({"sub": "a", "exp": NOW + 9, "tenant": null}),
        ] {
            assert_eq!(r.check(&claims(c), NOW), Err(Invalid::MissingClaim("tenant".into())));
        }
    }

    #[test]
    fn the_consumer_claim_is_required_and_plain_text() {
        let c = claims(json!({"exp": NOW + 9}));
        assert_eq!(rules().check(&c, NOW), Err(Invalid::MissingClaim("sub".into())));
        let c = claims(json!({"exp": NOW + 9, "sub": {"id": 1}}));
        assert_eq!(rules().check(&c, NOW), Err(Invalid::BadClaim("sub".into())));
        let c = claims(json!({"exp": NOW + 9, "sub": "a\nb"}));
        assert_eq!(rules().check(&c, NOW), Err(Invalid::BadClaim("sub".into())));
        let r = ClaimRules {
            consumer_claim: "client_id".into(),
            ..rules()
        };
        let c = claims(json!({"exp": NOW + 9, "client_id": 42}));
        assert_eq!(r.check(&c, NOW), Ok("42".into()));
    }

    fn mapping(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn claims_are_copied_to_properties() {
        let map = mapping(&[
            ("jwt.email", "email"),
            ("jwt.admin", "admin"),
            ("jwt.level", "level"),
            ("jwt.team", "team"),
            ("jwt.roles", "roles"),
        ]);
        let c = claims(json!({"email": "a@example.com", "admin": false, "level": 3, "roles": ["x"]}));
        assert_eq!(
            claim_properties(&map, &c),
            [
                ("jwt.admin".to_string(), "false".to_string()),
                ("jwt.email".to_string(), "a@example.com".to_string()),
                ("jwt.level".to_string(), "3".to_string()),
            ]
        );
    }

    #[test]
    fn header_claims_are_set_or_removed() {
        let map = mapping(&[
            ("x-user-email", "email"),
            ("x-user-team", "team"),
            ("x-user-note", "note"),
        ]);
        let c = claims(json!({"email": "a@example.com", "note": "a\r\nx-admin: yes"}));
        assert_eq!(
            claim_headers(&map, &c),
            [
                ("x-user-email".to_string(), Some("a@example.com".to_string())),
                ("x-user-note".to_string(), None),
                ("x-user-team".to_string(), None),
            ]
        );
    }

    #[test]
    fn claims_as_text() {
        assert_eq!(claim_text(&json!("x")), Some("x".into()));
        assert_eq!(claim_text(&json!(1.5)), Some("1.5".into()));
        assert_eq!(claim_text(&json!(true)), Some("true".into()));
        assert_eq!(claim_text(&json!(["a"])), None);
        assert_eq!(claim_text(&json!(null)), None);
        assert_eq!(header_text(&json!("a\r\nx-admin: 1")), None);
        assert_eq!(header_text(&json!("a\tb")), Some("a\tb".into()));
    }
}
