//! Whole-token checks: real tokens signed with the fixture keys, judged by
//! `authenticate` as a request would be.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, crypto, encode};
use serde_json::{Value, json};
use weir_sdk::Settings as _;

use crate::auth::{Policy, Refusal, Remote, Verified, authenticate};
use crate::claims::ClaimRules;
use crate::jwks::tests::{FakeFetcher, cache};
use crate::keys::tests::fixture;
use crate::keys::{KeySet, hmac_key, parse_jwks_text, parse_secret, pem_key};
use crate::settings::Settings;
use crate::token::Invalid;

const NOW: u64 = 1_700_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

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

fn claims() -> Value {
    json!({"sub": "alice", "exp": NOW + 600, "iat": NOW - 10, "email": "alice@example.com"})
}

/// Sign `claims` with the private key fixture `key` (or the HMAC secret).
fn sign(alg: Algorithm, kid: Option<&str>, key: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    let key = match key {
        "secret" => EncodingKey::from_secret(SECRET),
        pem => {
            let text = fixture(pem);
            match alg {
                Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(text.as_bytes()),
                Algorithm::EdDSA => EncodingKey::from_ed_pem(text.as_bytes()),
                _ => EncodingKey::from_rsa_pem(text.as_bytes()),
            }
            .unwrap()
        }
    };
    encode(&header, claims, &key).unwrap()
}

/// Judge `token` against `keys` with every algorithm accepted.
fn judge(token: &str, keys: &KeySet) -> Result<Verified, Refusal> {
    judge_with(
        token,
        keys,
        &[
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ],
        &rules(),
    )
}

fn judge_with(token: &str, keys: &KeySet, algorithms: &[Algorithm], rules: &ClaimRules) -> Result<Verified, Refusal> {
    let policy = Policy {
        algorithms,
        rules,
        local: &[keys],
    };
    authenticate(token, NOW, &policy, None)
}

fn invalid(why: Invalid) -> Result<String, Refusal> {
    Err(Refusal::Invalid(why))
}

fn consumer(verdict: Result<Verified, Refusal>) -> Result<String, Refusal> {
    verdict.map(|v| v.consumer)
}

fn hmac_keys() -> KeySet {
    KeySet::new(vec![hmac_key(SECRET, None, Some(Algorithm::HS256)).unwrap()])
}

fn pem_keys(name: &str) -> KeySet {
    KeySet::new(vec![pem_key(&fixture(name), None, None).unwrap()])
}

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

#[test]
fn valid_hs256_token_names_the_consumer() {
    let token = sign(Algorithm::HS256, None, "secret", &claims());
    let verified = judge(&token, &hmac_keys()).unwrap();
    assert_eq!(verified.consumer, "alice");
    assert_eq!(verified.claims["email"], "alice@example.com");
}

#[test]
fn valid_rs256_token_is_accepted() {
    let token = sign(Algorithm::RS256, None, "rsa-private.pem", &claims());
    assert_eq!(consumer(judge(&token, &pem_keys("rsa-public.pem"))), Ok("alice".into()));
}

#[test]
fn valid_ps256_token_is_accepted() {
    let token = sign(Algorithm::PS256, None, "rsa-private.pem", &claims());
    assert_eq!(consumer(judge(&token, &pem_keys("rsa-public.pem"))), Ok("alice".into()));
}

#[test]
fn valid_es256_token_is_accepted() {
    let token = sign(Algorithm::ES256, None, "ec-private.pem", &claims());
    assert_eq!(consumer(judge(&token, &pem_keys("ec-public.pem"))), Ok("alice".into()));
}

#[test]
fn valid_es384_and_eddsa_tokens_are_accepted() {
    let token = sign(Algorithm::ES384, None, "ec384-private.pem", &claims());
    assert_eq!(
        consumer(judge(&token, &pem_keys("ec384-public.pem"))),
        Ok("alice".into())
    );
    let token = sign(Algorithm::EdDSA, None, "ed25519-private.pem", &claims());
    assert_eq!(
        consumer(judge(&token, &pem_keys("ed25519-public.pem"))),
        Ok("alice".into())
    );
}

#[test]
fn expired_token_is_refused() {
    let token = sign(
        Algorithm::HS256,
        None,
        "secret",
        &json!({"sub": "a", "exp": NOW - 3600}),
    );
    assert_eq!(consumer(judge(&token, &hmac_keys())), invalid(Invalid::Expired));
}

#[test]
fn not_yet_valid_token_is_refused() {
    let token = sign(
        Algorithm::HS256,
        None,
        "secret",
        &json!({"sub": "a", "exp": NOW + 7200, "nbf": NOW + 3600}),
    );
    assert_eq!(consumer(judge(&token, &hmac_keys())), invalid(Invalid::NotYetValid));
}

#[test]
fn wrong_issuer_is_refused() {
    let rules = ClaimRules {
        issuers: Some(vec!["https://idp.example".into()]),
        ..rules()
    };
    let mut c = claims();
    c["iss"] = json!("https://evil.example");
    let token = sign(Algorithm::HS256, None, "secret", &c);
    let verdict = judge_with(&token, &hmac_keys(), &[Algorithm::HS256], &rules);
    assert_eq!(consumer(verdict), invalid(Invalid::WrongIssuer));
}

#[test]
fn wrong_audience_is_refused() {
    let rules = ClaimRules {
        audiences: Some(vec!["orders".into()]),
        ..rules()
    };
    let mut c = claims();
    c["aud"] = json!(["billing"]);
    let token = sign(Algorithm::HS256, None, "secret", &c);
    let verdict = judge_with(&token, &hmac_keys(), &[Algorithm::HS256], &rules);
    assert_eq!(consumer(verdict), invalid(Invalid::WrongAudience));
}

#[test]
fn algorithm_outside_the_list_is_refused() {
    let token = sign(Algorithm::HS256, None, "secret", &claims());
    let verdict = judge_with(&token, &hmac_keys(), &[Algorithm::RS256], &rules());
    assert_eq!(consumer(verdict), invalid(Invalid::AlgNotAccepted));
}

#[test]
fn alg_none_token_is_refused() {
    let token = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&claims().to_string())
    );
    assert_eq!(consumer(judge(&token, &hmac_keys())), invalid(Invalid::AlgNone));
}

/// The classic confusion: the attacker knows the RSA public key and signs
/// an HS256 token with the PEM text as the HMAC secret.
fn hs256_signed_with_rsa_public_pem() -> String {
    let pem = fixture("rsa-public.pem");
    let header = b64(r#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64(&claims().to_string());
    let input = format!("{header}.{payload}");
    let signature = crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(pem.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{input}.{signature}")
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let token = hs256_signed_with_rsa_public_pem();
    // Inline PEM, from a secret, and from a JWKS: never an HMAC secret,
    // even with HS256 accepted on the route.
    let algorithms = [Algorithm::RS256, Algorithm::HS256];
    for keys in [
        pem_keys("rsa-public.pem"),
        KeySet::new(parse_secret(&fixture("rsa-public.pem")).unwrap().keys),
        KeySet::new(parse_jwks_text(&fixture("jwks.json")).unwrap().keys),
    ] {
        let verdict = judge_with(&token, &keys, &algorithms, &rules());
        assert_eq!(consumer(verdict), invalid(Invalid::UnknownKey));
    }
}

#[test]
fn an_rsa_key_never_checks_an_hmac_signature_even_when_asked_directly() {
    let token = hs256_signed_with_rsa_public_pem();
    let (input, signature) = token.rsplit_once('.').unwrap();
    let key = pem_key(&fixture("rsa-public.pem"), None, None).unwrap();
    assert!(!key.verifies(input.as_bytes(), signature, Algorithm::HS256));
    // And the crate refuses the pairing on its own too.
    let rsa = DecodingKey::from_rsa_pem(fixture("rsa-public.pem").as_bytes()).unwrap();
    assert!(crypto::verify(signature, input.as_bytes(), &rsa, Algorithm::HS256).is_err());
}

#[test]
fn bad_signature_is_refused() {
    // Signed by another RSA key.
    let token = sign(Algorithm::RS256, None, "rsa2-private.pem", &claims());
    assert_eq!(
        consumer(judge(&token, &pem_keys("rsa-public.pem"))),
        invalid(Invalid::BadSignature)
    );
    // Claims changed after signing.
    let token = sign(Algorithm::HS256, None, "secret", &claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = b64(&json!({"sub": "admin", "exp": NOW + 600}).to_string());
    parts[1] = &forged;
    assert_eq!(
        consumer(judge(&parts.join("."), &hmac_keys())),
        invalid(Invalid::BadSignature)
    );
    // No signature at all.
    let (unsigned, _) = token.rsplit_once('.').unwrap();
    assert_eq!(
        consumer(judge(&format!("{unsigned}."), &hmac_keys())),
        invalid(Invalid::BadSignature)
    );
}

#[test]
fn malformed_token_is_refused() {
    for token in ["", "garbage", "a.b.c", "Bearer x.y.z"] {
        assert_eq!(
            consumer(judge(token, &hmac_keys())),
            invalid(Invalid::Malformed),
            "{token}"
        );
    }
}

#[test]
fn unknown_kid_is_refused() {
    let keys = KeySet::new(vec![
        hmac_key(SECRET, Some("k1".into()), Some(Algorithm::HS256)).unwrap(),
    ]);
    let token = sign(Algorithm::HS256, Some("k2"), "secret", &claims());
    assert_eq!(consumer(judge(&token, &keys)), invalid(Invalid::UnknownKey));
    let token = sign(Algorithm::HS256, Some("k1"), "secret", &claims());
    assert_eq!(consumer(judge(&token, &keys)), Ok("alice".into()));
}

#[test]
fn jwks_keys_are_chosen_by_kid() {
    let keys = KeySet::new(parse_jwks_text(&fixture("jwks.json")).unwrap().keys);
    let token = sign(Algorithm::RS256, Some("rsa-2"), "rsa2-private.pem", &claims());
    assert_eq!(consumer(judge(&token, &keys)), Ok("alice".into()));
    let token = sign(Algorithm::ES256, Some("ec-1"), "ec-private.pem", &claims());
    assert_eq!(consumer(judge(&token, &keys)), Ok("alice".into()));
    // The right signer under another key's kid: only that kid's key is tried.
    let token = sign(Algorithm::RS256, Some("rsa-1"), "rsa2-private.pem", &claims());
    assert_eq!(consumer(judge(&token, &keys)), invalid(Invalid::BadSignature));
    // A kid-less token is tried against every key of its algorithm.
    let token = sign(Algorithm::RS256, None, "rsa2-private.pem", &claims());
    assert_eq!(consumer(judge(&token, &keys)), Ok("alice".into()));
}

fn judge_remote(
    token: &str,
    cache: &mut crate::jwks::JwksCache,
    fetcher: &FakeFetcher,
    now: u64,
) -> Result<String, Refusal> {
    let algorithms = [Algorithm::RS256, Algorithm::ES256];
    let rules = ClaimRules {
        require_exp: false,
        ..rules()
    };
    let policy = Policy {
        algorithms: &algorithms,
        rules: &rules,
        local: &[],
    };
    consumer(authenticate(token, now, &policy, Some(Remote { cache, fetcher })))
}

#[test]
fn remote_jwks_is_fetched_and_used() {
    let fetcher = FakeFetcher::serving_fixture();
    let mut cache = cache();
    let token = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        "rsa-private.pem",
        &json!({"sub": "bob"}),
    );
    assert_eq!(judge_remote(&token, &mut cache, &fetcher, NOW), Ok("bob".into()));
    assert_eq!(judge_remote(&token, &mut cache, &fetcher, NOW + 5), Ok("bob".into()));
    assert_eq!(fetcher.calls.get(), 1);
}

#[test]
fn unknown_kid_refreshes_the_jwks_to_find_a_rotated_key() {
    let mut only_first: Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    only_first["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] == "rsa-1");
    let fetcher = FakeFetcher::new(vec![Ok(only_first.to_string()), Ok(fixture("jwks.json"))]);
    let mut cache = cache();
    let old = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        "rsa-private.pem",
        &json!({"sub": "old"}),
    );
    assert_eq!(judge_remote(&old, &mut cache, &fetcher, NOW), Ok("old".into()));
    let rotated = sign(
        Algorithm::RS256,
        Some("rsa-2"),
        "rsa2-private.pem",
        &json!({"sub": "new"}),
    );
    assert_eq!(judge_remote(&rotated, &mut cache, &fetcher, NOW + 60), Ok("new".into()));
    assert_eq!(fetcher.calls.get(), 2);
}

#[test]
fn a_flood_of_unknown_kids_fetches_the_jwks_once_per_min_refresh() {
    let fetcher = FakeFetcher::serving_fixture();
    let mut cache = cache();
    for i in 0..100 {
        let token = sign(
            Algorithm::RS256,
            Some(&format!("made-up-{i}")),
            "rsa-private.pem",
            &claims(),
        );
        let verdict = judge_remote(&token, &mut cache, &fetcher, NOW + i / 10);
        assert_eq!(verdict, invalid(Invalid::UnknownKey));
    }
    // The first fetch at NOW; nothing more within 30 s.
    assert_eq!(fetcher.calls.get(), 1);
    let token = sign(Algorithm::RS256, Some("made-up"), "rsa-private.pem", &claims());
    assert_eq!(
        judge_remote(&token, &mut cache, &fetcher, NOW + 30),
        invalid(Invalid::UnknownKey)
    );
    assert_eq!(fetcher.calls.get(), 2);
}

#[test]
fn unreachable_jwks_refuses_with_keys_unavailable() {
    let fetcher = FakeFetcher::new(vec![Err("connection refused".into())]);
    let mut cache = cache();
    let token = sign(Algorithm::RS256, Some("rsa-1"), "rsa-private.pem", &claims());
    assert_eq!(
        judge_remote(&token, &mut cache, &fetcher, NOW),
        Err(Refusal::KeysUnavailable)
    );
}

#[test]
fn an_unreachable_jwks_does_not_stop_local_keys() {
    let fetcher = FakeFetcher::new(vec![Err("connection refused".into())]);
    let mut cache = cache();
    let local = hmac_keys();
    let policy = Policy {
        algorithms: &[Algorithm::HS256, Algorithm::RS256],
        rules: &rules(),
        local: &[&local],
    };
    let token = sign(Algorithm::HS256, None, "secret", &claims());
    let remote = Some(Remote {
        cache: &mut cache,
        fetcher: &fetcher,
    });
    assert_eq!(consumer(authenticate(&token, NOW, &policy, remote)), Ok("alice".into()));
}

#[test]
fn a_config_with_inline_pem_keys_accepts_its_tokens() {
    let pem = serde_json::to_string(&fixture("rsa-public.pem")).unwrap();
    let config = format!(
        r#"{{"keys":[{{"kid":"r1","alg":"RS256","pem":{pem}}},{{"alg":"HS256","secret":"{}"}}],
            "issuers":["https://idp.example"]}}"#,
        std::str::from_utf8(SECRET).unwrap()
    );
    let settings = Settings::from_json(&config).unwrap();
    let keys = KeySet::new(settings.inline_keys().unwrap());
    let algorithms = settings.algorithms().unwrap();
    let rules = settings.claim_rules();
    let mut c = claims();
    c["iss"] = json!("https://idp.example");
    for token in [
        sign(Algorithm::RS256, Some("r1"), "rsa-private.pem", &c),
        sign(Algorithm::HS256, None, "secret", &c),
    ] {
        assert_eq!(
            consumer(judge_with(&token, &keys, &algorithms, &rules)),
            Ok("alice".into())
        );
    }
    // The RS256 key is bound to RS256: a PS256 token is refused.
    let token = sign(Algorithm::PS256, Some("r1"), "rsa-private.pem", &c);
    let verdict = judge_with(&token, &keys, &[Algorithm::RS256, Algorithm::PS256], &rules);
    assert_eq!(consumer(verdict), invalid(Invalid::UnknownKey));
}
