//! A compact JWS token taken apart: its header read and checked before any
//! key is touched, its claims read only after the signature is good.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::keys::VerifyKey;

/// Longest token looked at; anything longer is refused unread.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused. The text is the short reason the client sees
/// in `{"error":"invalid token: <reason>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Not three base64url parts with a JSON header and claims.
    Malformed,
    /// `alg: none`.
    AlgNone,
    /// An `alg` not in the route's `algorithms`.
    AlgNotAccepted,
    /// A `crit` header: no extension is understood, so none may be required.
    CriticalHeader,
    /// No configured key has the token's kid and algorithm.
    UnknownKey,
    /// No key's signature check passed.
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    NotYetValid,
    /// `iat` is ahead (beyond the leeway).
    IssuedInFuture,
    /// `iss` is not one of `issuers`.
    WrongIssuer,
    /// `aud` names none of `audiences`.
    WrongAudience,
    /// A required claim is absent.
    MissingClaim(String),
    /// A claim has the wrong type (a date that is not a number, ...).
    BadClaim(String),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Malformed => f.write_str("malformed token"),
            Invalid::AlgNone => f.write_str("alg none is not accepted"),
            Invalid::AlgNotAccepted => f.write_str("algorithm not accepted"),
            Invalid::CriticalHeader => f.write_str("unsupported critical header"),
            Invalid::UnknownKey => f.write_str("unknown key"),
            Invalid::BadSignature => f.write_str("bad signature"),
            Invalid::Expired => f.write_str("expired"),
            Invalid::NotYetValid => f.write_str("not yet valid"),
            Invalid::IssuedInFuture => f.write_str("issued in the future"),
            Invalid::WrongIssuer => f.write_str("wrong issuer"),
            Invalid::WrongAudience => f.write_str("wrong audience"),
            Invalid::MissingClaim(name) => write!(f, "missing claim {name}"),
            Invalid::BadClaim(name) => write!(f, "bad claim {name}"),
        }
    }
}

/// The header fields looked at. Unknown fields are ignored; a duplicated
/// field is a parse error, so no two readers can see different values.
#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
}

/// A token whose header passed the checks; its signature is not yet
/// checked.
#[derive(Debug)]
pub struct Token<'a> {
    /// The signing algorithm, one of the accepted ones.
    pub alg: Algorithm,
    /// The key id, if the header named one.
    pub kid: Option<String>,
    /// `header.payload`: what the signature covers.
    signing_input: &'a str,
    payload: &'a str,
    signature: &'a str,
}

fn decode_part(part: &str) -> Result<Vec<u8>, Invalid> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| Invalid::Malformed)
}

impl<'a> Token<'a> {
    /// Split `raw` and check its header: the algorithm must be one of
    /// `accepted` (never `none`) and no `crit` extension may be asked for.
    pub fn parse(raw: &'a str, accepted: &[Algorithm]) -> Result<Token<'a>, Invalid> {
        if raw.len() > MAX_TOKEN_BYTES {
            return Err(Invalid::Malformed);
        }
        let mut parts = raw.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Invalid::Malformed);
        };
        if header.is_empty() || payload.is_empty() {
            return Err(Invalid::Malformed);
        }
        let header: Header = serde_json::from_slice(&decode_part(header)?).map_err(|_| Invalid::Malformed)?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(Invalid::AlgNone);
        }
        let alg = header.alg.parse::<Algorithm>().map_err(|_| Invalid::AlgNotAccepted)?;
        if !accepted.contains(&alg) {
            return Err(Invalid::AlgNotAccepted);
        }
        if header.crit.is_some() {
            return Err(Invalid::CriticalHeader);
        }
        Ok(Token {
            alg,
            kid: header.kid,
            signing_input: &raw[..raw.len() - signature.len() - 1],
            payload,
            signature,
        })
    }

    /// Whether one of `keys` verifies the signature. Every candidate is
    /// tried (a kid-less token may match several).
    pub fn signed_by<'k>(&self, keys: impl IntoIterator<Item = &'k VerifyKey>) -> bool {
        if self.signature.is_empty() {
            return false;
        }
        keys.into_iter()
            .any(|key| key.verifies(self.signing_input.as_bytes(), self.signature, self.alg))
    }

    /// The claims: a JSON object. Call only once the signature is good.
    pub fn claims(&self) -> Result<Map<String, Value>, Invalid> {
        serde_json::from_slice(&decode_part(self.payload)?).map_err(|_| Invalid::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(claims))
    }

    const HS: &[Algorithm] = &[Algorithm::HS256];

    #[test]
    fn header_gives_alg_and_kid() {
        let raw = token(r#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#, "{}");
        let t = Token::parse(&raw, HS).unwrap();
        assert_eq!(t.alg, Algorithm::HS256);
        assert_eq!(t.kid.as_deref(), Some("k1"));
        assert_eq!(t.signature, "c2ln");
        assert!(t.claims().unwrap().is_empty());
    }

    #[test]
    fn alg_none_is_refused_in_any_case() {
        for alg in ["none", "None", "NONE"] {
            let raw = format!("{}.{}.", b64(&format!(r#"{{"alg":"{alg}"}}"#)), b64("{}"));
            assert_eq!(Token::parse(&raw, HS).unwrap_err(), Invalid::AlgNone);
        }
    }

    #[test]
    fn algorithms_outside_the_list_are_refused() {
        let raw = token(r#"{"alg":"RS256"}"#, "{}");
        assert_eq!(Token::parse(&raw, HS).unwrap_err(), Invalid::AlgNotAccepted);
        let raw = token(r#"{"alg":"XS999"}"#, "{}");
        assert_eq!(Token::parse(&raw, HS).unwrap_err(), Invalid::AlgNotAccepted);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let bad = [
            "".to_string(),
            "abc".to_string(),
            "a.b".to_string(),
            "a.b.c.d.e".to_string(),
            format!("{}..sig", b64(r#"{"alg":"HS256"}"#)),
            format!("{}.{}.sig", b64("not json"), b64("{}")),
            format!("{}.{}.sig", b64(r#"{"alg":5}"#), b64("{}")),
            format!("{}.{}.sig", b64(r#"{"alg":"HS256","alg":"none"}"#), b64("{}")),
            format!("{}=.{}.sig", b64(r#"{"alg":"HS256"}"#), b64("{}")),
            format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), "x".repeat(MAX_TOKEN_BYTES)),
        ];
        for raw in bad {
            assert_eq!(Token::parse(&raw, HS).unwrap_err(), Invalid::Malformed, "{raw:.60}");
        }
    }

    #[test]
    fn claims_that_are_not_an_object_are_malformed() {
        let raw = token(r#"{"alg":"HS256"}"#, "[1,2]");
        assert_eq!(
            Token::parse(&raw, HS).unwrap().claims().unwrap_err(),
            Invalid::Malformed
        );
    }

    #[test]
    fn a_critical_header_is_refused() {
        let raw = token(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#, "{}");
        assert_eq!(Token::parse(&raw, HS).unwrap_err(), Invalid::CriticalHeader);
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(Invalid::AlgNone.to_string(), "alg none is not accepted");
        assert_eq!(Invalid::MissingClaim("sub".into()).to_string(), "missing claim sub");
    }
}
