//! Verification keys: what kind each is, which algorithms it may check, and
//! how inline config, PEM text, secrets and JWKS documents become keys.
//!
//! Every key is bound to one kind (HMAC secret, RSA, P-256, P-384, Ed25519)
//! when it is loaded, and only that kind's algorithms are ever tried with
//! it, whatever a token's header claims. An RSA public key is never used as
//! an HMAC secret: that is what defeats the HS256/RS256 confusion attack.

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::{Algorithm, DecodingKey, crypto};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use serde_json::Value;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus the RSA crate verifies with, in bits.
const MAX_RSA_BITS: usize = 4096;
/// Smallest HMAC secret accepted, in bytes (RFC 7518 §3.2: at least the
/// hash's size, so 32 for HS256).
pub const MIN_HMAC_BYTES: usize = 32;

/// JWK members are base64url; padding is tolerated there.
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a key is, which fixes the algorithms it can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A shared secret (HS256, HS384, HS512).
    Hmac,
    /// An RSA public key (RS256..RS512, PS256..PS512).
    Rsa,
    /// A P-256 public key (ES256).
    P256,
    /// A P-384 public key (ES384).
    P384,
    /// An Ed25519 public key (EdDSA).
    Ed25519,
}

impl KeyKind {
    /// Every algorithm a key of this kind can check.
    pub fn algorithms(self) -> &'static [Algorithm] {
        use Algorithm::*;
        match self {
            KeyKind::Hmac => &[HS256, HS384, HS512],
            KeyKind::Rsa => &[RS256, RS384, RS512, PS256, PS384, PS512],
            KeyKind::P256 => &[ES256],
            KeyKind::P384 => &[ES384],
            KeyKind::Ed25519 => &[EdDSA],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            KeyKind::Hmac => "an HMAC secret",
            KeyKind::Rsa => "an RSA key",
            KeyKind::P256 => "a P-256 key",
            KeyKind::P384 => "a P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
        }
    }
}

/// The name of an algorithm as a token's `alg` spells it.
pub fn alg_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// Parse an algorithm name from config. `none` is never an algorithm.
pub fn parse_alg(name: &str) -> Result<Algorithm, String> {
    if name.eq_ignore_ascii_case("none") {
        return Err("\"none\" is never accepted".to_string());
    }
    name.parse::<Algorithm>()
        .map_err(|_| format!("{name:?} is not a supported algorithm"))
}

/// One key a token's signature may be checked with.
pub struct VerifyKey {
    kid: Option<String>,
    kind: KeyKind,
    /// The algorithms this key checks: its kind's, narrowed to the one
    /// the config or JWK named, if any.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

impl VerifyKey {
    fn new(
        kid: Option<String>,
        kind: KeyKind,
        alg: Option<Algorithm>,
        allowed: Vec<Algorithm>,
        key: DecodingKey,
    ) -> Result<VerifyKey, String> {
        if kid.as_deref() == Some("") {
            return Err("kid must not be empty".to_string());
        }
        let algorithms = match alg {
            Some(alg) if allowed.contains(&alg) => vec![alg],
            Some(alg) if kind.algorithms().contains(&alg) => {
                return Err(format!("the secret is too short for {}", alg_name(alg)));
            }
            Some(alg) => {
                return Err(format!("{} cannot be used with {}", alg_name(alg), kind.describe()));
            }
            None => allowed,
        };
        Ok(VerifyKey {
            kid,
            kind,
            algorithms,
            key,
        })
    }

    /// The key id, if the key has one.
    #[cfg(test)]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// What the key is.
    #[cfg(test)]
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The algorithms this key checks.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Whether this key may check a token with this `kid` and `alg`. A key
    /// or token without a kid matches any kid.
    pub fn matches(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        let kid_fits = match (self.kid.as_deref(), kid) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        };
        kid_fits && self.algorithms.contains(&alg)
    }

    /// Check a signature (base64url text) over `signing_input`.
    pub fn verifies(&self, signing_input: &[u8], signature: &str, alg: Algorithm) -> bool {
        // Never outside the key's own kind, whatever the caller asked.
        if !self.algorithms.contains(&alg) || self.key.family() != alg.family() {
            return false;
        }
        matches!(crypto::verify(signature, signing_input, &self.key, alg), Ok(true))
    }
}

/// The bytes an HMAC algorithm's key must have at least.
fn hmac_min_bytes(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => MIN_HMAC_BYTES,
    }
}

/// An HMAC key. Without `alg` it checks every HS algorithm its length
/// allows.
pub fn hmac_key(secret: &[u8], kid: Option<String>, alg: Option<Algorithm>) -> Result<VerifyKey, String> {
    if secret.len() < MIN_HMAC_BYTES {
        return Err(format!("an HMAC secret needs at least {MIN_HMAC_BYTES} bytes"));
    }
    let allowed = KeyKind::Hmac
        .algorithms()
        .iter()
        .copied()
        .filter(|&a| secret.len() >= hmac_min_bytes(a))
        .collect();
    VerifyKey::new(kid, KeyKind::Hmac, alg, allowed, DecodingKey::from_secret(secret))
}

/// The label of the first PEM block (`PUBLIC KEY` in
/// `-----BEGIN PUBLIC KEY-----`).
fn pem_label(pem: &str) -> Option<&str> {
    let rest = pem.trim_start().strip_prefix("-----BEGIN ")?;
    rest.split_once("-----").map(|(label, _)| label)
}

/// A public key in PEM (`PUBLIC KEY`, or `RSA PUBLIC KEY` for PKCS#1):
/// RSA, P-256, P-384 or Ed25519. Without `alg` it checks every algorithm
/// of its kind. Private keys are refused: the gateway needs only the
/// public half.
pub fn pem_key(pem: &str, kid: Option<String>, alg: Option<Algorithm>) -> Result<VerifyKey, String> {
    match pem_label(pem) {
        Some("PUBLIC KEY" | "RSA PUBLIC KEY") => {}
        Some(label) if label.contains("PRIVATE") => {
            return Err("the PEM is a private key; give the public key".to_string());
        }
        Some(label) => return Err(format!("a PEM {label:?} is not a public key")),
        None => return Err("not PEM text (-----BEGIN PUBLIC KEY-----)".to_string()),
    }
    let bytes = pem.as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        let public =
            RsaPublicKey::from_pkcs1_der(key.as_bytes()).map_err(|_| "malformed RSA public key".to_string())?;
        check_rsa_size(&public)?;
        return typed_key(kid, KeyKind::Rsa, alg, key);
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        // An uncompressed SEC1 point: 0x04, then x and y.
        let kind = match key.as_bytes().len() {
            65 => KeyKind::P256,
            97 => KeyKind::P384,
            _ => return Err("EC key on an unsupported curve (P-256 and P-384 are)".to_string()),
        };
        return typed_key(kid, kind, alg, key);
    }
    if let Ok(key) = DecodingKey::from_ed_pem(bytes)
        && key.as_bytes().len() == 32
    {
        return typed_key(kid, KeyKind::Ed25519, alg, key);
    }
    Err("not an RSA, EC (P-256, P-384) or Ed25519 public key".to_string())
}

fn typed_key(
    kid: Option<String>,
    kind: KeyKind,
    alg: Option<Algorithm>,
    key: DecodingKey,
) -> Result<VerifyKey, String> {
    VerifyKey::new(kid, kind, alg, kind.algorithms().to_vec(), key)
}

fn check_rsa_size(key: &RsaPublicKey) -> Result<(), String> {
    let bits = key.size() * 8;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "RSA key of {bits} bits; {MIN_RSA_BITS} to {MAX_RSA_BITS} are accepted"
        ));
    }
    Ok(())
}

/// The keys of a JWKS document, and why any others were left out.
#[derive(Debug, Default)]
pub struct Jwks {
    /// The usable signature keys.
    pub keys: Vec<VerifyKey>,
    /// One line per key that was not usable (`keys[2]: ...`). Keys marked
    /// for encryption (`use: enc`) are skipped silently.
    pub problems: Vec<String>,
}

/// Parse a JWKS document (`{"keys": [...]}`). An error only when it is
/// not one at all or no key in it is usable.
pub fn parse_jwks(doc: &Value) -> Result<Jwks, String> {
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "not a JWKS: no \"keys\" list".to_string())?;
    let mut jwks = Jwks::default();
    for (i, jwk) in list.iter().enumerate() {
        match jwk_key(jwk) {
            Ok(Some(key)) => jwks.keys.push(key),
            Ok(None) => {}
            Err(e) => jwks.problems.push(format!("keys[{i}]: {e}")),
        }
    }
    if jwks.keys.is_empty() {
        let why = jwks.problems.first().map(|p| format!(" ({p})")).unwrap_or_default();
        return Err(format!("the JWKS has no usable signature key{why}"));
    }
    Ok(jwks)
}

/// Parse JWKS text; errors give a position, never the contents.
pub fn parse_jwks_text(text: &str) -> Result<Jwks, String> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON (line {}, column {})", e.line(), e.column()))?;
    parse_jwks(&doc)
}

/// One JWK as a key; `None` if it is not meant for signatures.
fn jwk_key(jwk: &Value) -> Result<Option<VerifyKey>, String> {
    let Some(obj) = jwk.as_object() else {
        return Err("not an object".to_string());
    };
    let text = |name: &str| -> Result<Option<&str>, String> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("{name} is not a string")),
        }
    };
    let required = |name: &str| -> Result<Vec<u8>, String> {
        let value = text(name)?.ok_or_else(|| format!("{name} is missing"))?;
        JWK_BASE64.decode(value).map_err(|_| format!("{name} is not base64url"))
    };
    if text("use")?.is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if let Some(ops) = obj.get("key_ops").and_then(Value::as_array)
        && !ops.iter().any(|op| op == "verify")
    {
        return Ok(None);
    }
    let kid = text("kid")?.map(str::to_string);
    let alg = text("alg")?.map(parse_alg).transpose()?;
    let kty = text("kty")?.ok_or("kty is missing")?;
    let crv = text("crv")?;
    match kty {
        "RSA" => {
            let (n, e) = (required("n")?, required("e")?);
            let public = RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e))
                .map_err(|_| "malformed RSA key".to_string())?;
            check_rsa_size(&public)?;
            let key = DecodingKey::from_rsa_raw_components(&n, &e);
            typed_key(kid, KeyKind::Rsa, alg, key).map(Some)
        }
        "EC" => {
            let (kind, size) = match crv {
                Some("P-256") => (KeyKind::P256, 32),
                Some("P-384") => (KeyKind::P384, 48),
                Some(other) => return Err(format!("crv {other:?} is not supported")),
                None => return Err("crv is missing".to_string()),
            };
            let (x, y) = (required("x")?, required("y")?);
            if x.len() != size || y.len() != size {
                return Err("x or y has the wrong length for the curve".to_string());
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            typed_key(kid, kind, alg, DecodingKey::from_ec_der(&point)).map(Some)
        }
        "OKP" => {
            if crv != Some("Ed25519") {
                return Err(format!("OKP curve {crv:?} is not supported (Ed25519 is)"));
            }
            let x = required("x")?;
            if x.len() != 32 {
                return Err("x has the wrong length for Ed25519".to_string());
            }
            typed_key(kid, KeyKind::Ed25519, alg, DecodingKey::from_ed_der(&x)).map(Some)
        }
        "oct" => hmac_key(&required("k")?, kid, alg).map(Some),
        other => Err(format!("kty {other:?} is not supported")),
    }
}

/// The keys in a secret's text: a JWKS (`{...}`), a PEM public key
/// (`-----BEGIN ...`), or else an HMAC secret (surrounding whitespace,
/// such as a file's last newline, trimmed). Errors never quote the
/// secret.
pub fn parse_secret(text: &str) -> Result<Jwks, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        return parse_jwks_text(trimmed);
    }
    let key = if trimmed.starts_with("-----BEGIN") {
        pem_key(trimmed, None, None)?
    } else {
        hmac_key(trimmed.as_bytes(), None, None)?
    };
    Ok(Jwks {
        keys: vec![key],
        problems: Vec::new(),
    })
}

/// Every key one source gave.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
}

impl KeySet {
    /// A set of these keys.
    pub fn new(keys: Vec<VerifyKey>) -> KeySet {
        KeySet { keys }
    }

    /// The keys that may check a token with this `kid` and `alg`.
    pub fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> impl Iterator<Item = &VerifyKey> {
        self.keys.iter().filter(move |k| k.matches(kid, alg))
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixture's text.
    pub fn fixture(name: &str) -> String {
        let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn pem_keys_get_their_kind() {
        assert_eq!(
            pem_key(&fixture("rsa-public.pem"), None, None).unwrap().kind(),
            KeyKind::Rsa
        );
        assert_eq!(
            pem_key(&fixture("ec-public.pem"), None, None).unwrap().kind(),
            KeyKind::P256
        );
        assert_eq!(
            pem_key(&fixture("ec384-public.pem"), None, None).unwrap().kind(),
            KeyKind::P384
        );
        assert_eq!(
            pem_key(&fixture("ed25519-public.pem"), None, None).unwrap().kind(),
            KeyKind::Ed25519
        );
    }

    #[test]
    fn a_pem_key_checks_only_its_own_algorithms() {
        let rsa = pem_key(&fixture("rsa-public.pem"), None, None).unwrap();
        assert!(rsa.algorithms().contains(&Algorithm::RS256));
        assert!(rsa.algorithms().contains(&Algorithm::PS256));
        assert!(!rsa.algorithms().contains(&Algorithm::HS256));
        let narrowed = pem_key(&fixture("rsa-public.pem"), None, Some(Algorithm::RS256)).unwrap();
        assert_eq!(narrowed.algorithms(), [Algorithm::RS256]);
    }

    #[test]
    fn a_pem_key_with_another_kinds_algorithm_is_refused() {
        let err = pem_key(&fixture("rsa-public.pem"), None, Some(Algorithm::HS256)).unwrap_err();
        assert_eq!(err, "HS256 cannot be used with an RSA key");
        let err = pem_key(&fixture("ec-public.pem"), None, Some(Algorithm::ES384)).unwrap_err();
        assert_eq!(err, "ES384 cannot be used with a P-256 key");
    }

    #[test]
    fn private_keys_are_refused() {
        let err = pem_key(&fixture("rsa-private.pem"), None, None).unwrap_err();
        assert!(err.contains("private key"), "{err}");
    }

    #[test]
    fn weak_rsa_keys_are_refused() {
        let err = pem_key(&fixture("rsa1024-public.pem"), None, None).unwrap_err();
        assert!(err.contains("1024 bits"), "{err}");
    }

    #[test]
    fn garbage_pem_is_refused() {
        assert!(pem_key("hello", None, None).is_err());
        assert!(
            pem_key(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                None,
                None
            )
            .is_err()
        );
        assert!(
            pem_key(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                None,
                None
            )
            .is_err()
        );
    }

    #[test]
    fn short_hmac_secrets_are_refused() {
        assert!(hmac_key(&[7; 31], None, None).is_err());
        let err = hmac_key(&[7; 32], None, Some(Algorithm::HS512)).unwrap_err();
        assert_eq!(err, "the secret is too short for HS512");
        let err = hmac_key(&[7; 64], None, Some(Algorithm::RS256)).unwrap_err();
        assert_eq!(err, "RS256 cannot be used with an HMAC secret");
    }

    #[test]
    fn an_hmac_secret_checks_the_algorithms_its_length_allows() {
        assert_eq!(hmac_key(&[7; 40], None, None).unwrap().algorithms(), [Algorithm::HS256]);
        assert_eq!(hmac_key(&[7; 64], None, None).unwrap().algorithms().len(), 3);
    }

    #[test]
    fn kid_matching() {
        let key = hmac_key(&[7; 32], Some("k1".into()), None).unwrap();
        assert!(key.matches(Some("k1"), Algorithm::HS256));
        assert!(key.matches(None, Algorithm::HS256));
        assert!(!key.matches(Some("k2"), Algorithm::HS256));
        assert!(!key.matches(Some("k1"), Algorithm::RS256));
        let anonymous = hmac_key(&[7; 32], None, None).unwrap();
        assert!(anonymous.matches(Some("whatever"), Algorithm::HS256));
    }

    #[test]
    fn jwks_fixture_parses_with_kids_and_kinds() {
        let jwks = parse_jwks_text(&fixture("jwks.json")).unwrap();
        let got: Vec<_> = jwks.keys.iter().map(|k| (k.kid().unwrap(), k.kind())).collect();
        assert_eq!(
            got,
            [
                ("rsa-1", KeyKind::Rsa),
                ("rsa-2", KeyKind::Rsa),
                ("ec-1", KeyKind::P256)
            ]
        );
        // The `use: enc` key is left out without a complaint.
        assert!(jwks.problems.is_empty(), "{:?}", jwks.problems);
    }

    #[test]
    fn jwks_keys_that_cannot_be_used_are_reported_and_skipped() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"},
            {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
            {"kty": "RSA", "alg": "HS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "oct", "alg": "RS256", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
            {"kty": "oct", "alg": "none", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"},
            "nonsense"
        ]});
        let jwks = parse_jwks(&doc).unwrap();
        assert_eq!(jwks.keys.len(), 1);
        assert_eq!(jwks.keys[0].kind(), KeyKind::Hmac);
        assert_eq!(jwks.problems.len(), 6, "{:?}", jwks.problems);
        assert!(
            jwks.problems[2].starts_with("keys[3]: RS256 cannot be used with an HMAC"),
            "{:?}",
            jwks.problems
        );
    }

    #[test]
    fn a_jwks_without_usable_keys_is_an_error() {
        assert!(parse_jwks_text(r#"{"keys": []}"#).is_err());
        assert!(parse_jwks_text(r#"{"nokeys": 1}"#).is_err());
        let err = parse_jwks_text("{not json").unwrap_err();
        assert!(err.starts_with("not JSON"), "{err}");
    }

    #[test]
    fn a_secret_is_a_jwks_a_pem_or_an_hmac_secret() {
        let jwks = parse_secret(&fixture("jwks.json")).unwrap();
        assert_eq!(jwks.keys.len(), 3);
        let pem = parse_secret(&fixture("ec-public.pem")).unwrap();
        assert_eq!(pem.keys[0].kind(), KeyKind::P256);
        let hmac = parse_secret("0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(hmac.keys[0].kind(), KeyKind::Hmac);
        let err = parse_secret("hunter2").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        // A broken PEM is an error, never an HMAC secret.
        assert!(parse_secret("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
    }

    #[test]
    fn none_is_never_an_algorithm() {
        assert!(parse_alg("none").is_err());
        assert!(parse_alg("NONE").is_err());
        assert!(parse_alg("HS1").is_err());
        assert_eq!(parse_alg("ES256"), Ok(Algorithm::ES256));
    }
}
