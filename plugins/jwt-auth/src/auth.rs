//! Judging one token: header, key choice, signature, then claims.

use std::rc::Rc;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::claims::ClaimRules;
use crate::jwks::{JwksCache, JwksFetcher};
use crate::keys::{KeySet, VerifyKey};
use crate::token::{Invalid, Token};

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The token is no good: 401.
    Invalid(Invalid),
    /// The token cannot be judged: `jwks_url` never gave keys and no other
    /// key fits (503).
    KeysUnavailable,
}

impl From<Invalid> for Refusal {
    fn from(invalid: Invalid) -> Refusal {
        Refusal::Invalid(invalid)
    }
}

/// A token that passed every check.
#[derive(Debug)]
pub struct Verified {
    /// The consumer claim's text.
    pub consumer: String,
    /// Every claim, for copying to properties and headers.
    pub claims: Map<String, Value>,
}

/// The remote key source of a route and how to reach it.
pub struct Remote<'a> {
    /// The cached JWKS.
    pub cache: &'a mut JwksCache,
    /// What fetches it.
    pub fetcher: &'a dyn JwksFetcher,
}

/// What one route accepts.
pub struct Policy<'a> {
    /// The algorithms a token may use.
    pub algorithms: &'a [Algorithm],
    /// The claim checks.
    pub rules: &'a ClaimRules,
    /// Keys known without a fetch (inline, `jwks`, `key_secret`).
    pub local: &'a [&'a KeySet],
}

/// Judge `raw` at `now` (seconds since the epoch).
pub fn authenticate(raw: &str, now: u64, policy: &Policy, remote: Option<Remote>) -> Result<Verified, Refusal> {
    let token = Token::parse(raw, policy.algorithms)?;
    let (kid, alg) = (token.kid.as_deref(), token.alg);
    let has_candidate = |set: &KeySet| set.candidates(kid, alg).next().is_some();
    let local_fits = policy.local.iter().any(|set| has_candidate(set));

    let mut remote_keys: Option<Rc<KeySet>> = None;
    if let Some(Remote { cache, fetcher }) = remote {
        remote_keys = cache.keys(now, fetcher);
        let remote_fits = remote_keys.as_deref().is_some_and(has_candidate);
        if !remote_fits && !local_fits {
            // Perhaps the issuer rotated keys since the last fetch.
            if let Some(fresh) = cache.refresh_for_unknown_key(now, fetcher) {
                remote_keys = Some(fresh);
            }
        }
        let remote_fits = remote_keys.as_deref().is_some_and(has_candidate);
        if !remote_fits && !local_fits && remote_keys.is_none() {
            return Err(Refusal::KeysUnavailable);
        }
    }

    let candidates: Vec<&VerifyKey> = policy
        .local
        .iter()
        .copied()
        .chain(remote_keys.as_deref())
        .flat_map(|set| set.candidates(kid, alg))
        .collect();
    if candidates.is_empty() {
        return Err(Invalid::UnknownKey.into());
    }
    if !token.signed_by(candidates) {
        return Err(Invalid::BadSignature.into());
    }
    let claims = token.claims()?;
    let consumer = policy.rules.check(&claims, now)?;
    Ok(Verified { consumer, claims })
}
