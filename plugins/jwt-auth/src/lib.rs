//! `jwt-auth`: let a request through only if it carries a valid JSON Web
//! Token, and name its consumer.
//!
//! The token is read from `authorization: Bearer <jwt>` by default (or the
//! configured header and scheme), else from a query parameter or a cookie
//! if configured. Its header is checked first: `alg` must be one of the
//! route's `algorithms` (never `none`). Then a key is chosen by `kid` and
//! algorithm among the route's keys — inline `keys`, an inline `jwks`, a
//! secret (`key_secret`) and a fetched JWKS (`jwks_url`) — where every key
//! is bound to its own kind, so an RSA public key is never tried as an
//! HMAC secret. After the signature, the claims: `exp`, `nbf`, `iat` with
//! a leeway, `iss`, `aud`, required claims, and the consumer claim.
//!
//! On success the request property `consumer` is the `sub` claim (or
//! `consumer_claim`), chosen claims are copied to properties and upstream
//! headers, and the token is removed from the request. A missing token is
//! answered 401 with a `Bearer` challenge, a refused one 401 with
//! `error="invalid_token"` and a short reason.
//!
//! `key_secret` is read on the first request (a host need not offer
//! capabilities in `configure`) and kept for the life of the instance; if
//! it cannot be read requests get 500 and the next one tries again. The
//! JWKS at `jwks_url` is fetched through the host's outbound HTTP, cached
//! per instance, and refreshed on an unknown `kid` no more than once per
//! `jwks_min_refresh_secs`.
//!
//! See README.md for the config fields.

mod auth;
mod claims;
mod jwks;
mod keys;
mod settings;
mod source;
#[cfg(test)]
mod tests;
mod token;

use std::cell::{OnceCell, RefCell};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value, json};
use weir_sdk::{
    Action, Config, HeaderEdit, Interests, Plugin, Reply, Request, export_plugin, http, log, query, secrets,
};

use auth::{Policy, Refusal, Remote, authenticate};
use claims::{ClaimRules, claim_headers, claim_properties};
use jwks::{JwksCache, JwksFetcher};
use keys::{KeySet, parse_secret};
use settings::Settings;

/// Largest JWKS document accepted from `jwks_url`.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// `jwt-auth` configured for one route.
struct JwtAuth {
    settings: Settings,
    algorithms: Vec<Algorithm>,
    rules: ClaimRules,
    /// Inline `keys` and `jwks`, checked in `configure`.
    inline: KeySet,
    /// The keys of `key_secret`, once read.
    secret: OnceCell<KeySet>,
    /// The `jwks_url` cache.
    remote: Option<RefCell<JwksCache>>,
    fetcher: HostFetcher,
}

/// Where the token was found: a header with another scheme is left alone.
#[derive(PartialEq)]
enum Found {
    Header,
    Elsewhere,
}

impl Plugin for JwtAuth {
    fn configure(config: Config) -> Result<Self, String> {
        let settings: Settings = config.settings()?;
        let algorithms = settings.algorithms()?;
        let mut inline = settings.inline_keys()?;
        if let Some(jwks) = settings.inline_jwks()? {
            inline.extend(jwks.keys);
        }
        let remote = settings.jwks_url.as_ref().map(|url| {
            RefCell::new(JwksCache::new(
                url.clone(),
                settings.jwks_cache_secs,
                settings.jwks_min_refresh_secs,
            ))
        });
        Ok(JwtAuth {
            rules: settings.claim_rules(),
            fetcher: HostFetcher {
                timeout_ms: settings.jwks_timeout_ms,
            },
            algorithms,
            inline: KeySet::new(inline),
            secret: OnceCell::new(),
            remote,
            settings,
        })
    }

    fn interests(&self) -> Interests {
        Interests {
            on_request: true,
            on_response: false,
            ..Interests::default()
        }
    }

    fn on_request(&self, request: &Request) -> Action {
        let Some((raw, found)) = self.presented_token(request) else {
            return Action::Respond(self.unauthorized(&self.settings.challenge(), "missing token"));
        };
        let Some(now) = unix_now() else {
            log::error("the clock reads before 1970; refusing tokens");
            return Action::Respond(error_reply(500, "clock unavailable"));
        };
        let secret_keys = match self.secret_keys() {
            Ok(keys) => keys,
            Err(reply) => return Action::Respond(reply),
        };
        let local: Vec<&KeySet> = [Some(&self.inline), secret_keys]
            .into_iter()
            .flatten()
            .filter(|set| !set.is_empty())
            .collect();
        let policy = Policy {
            algorithms: &self.algorithms,
            rules: &self.rules,
            local: &local,
        };
        let verdict = match &self.remote {
            Some(cache) => {
                let mut cache = cache.borrow_mut();
                let verdict = authenticate(
                    &raw,
                    now,
                    &policy,
                    Some(Remote {
                        cache: &mut cache,
                        fetcher: &self.fetcher,
                    }),
                );
                for problem in cache.take_problems() {
                    log::warn(&problem);
                }
                verdict
            }
            None => authenticate(&raw, now, &policy, None),
        };
        match verdict {
            Ok(verified) => self.admit(request, found, &verified.consumer, &verified.claims),
            Err(Refusal::Invalid(why)) => Action::Respond(self.unauthorized(
                &self.settings.invalid_token_challenge(),
                &format!("invalid token: {why}"),
            )),
            Err(Refusal::KeysUnavailable) => Action::Respond(error_reply(503, "token keys unavailable")),
        }
    }
}

impl JwtAuth {
    /// The token from the header, else the query parameter, else the
    /// cookie; empty counts as missing.
    fn presented_token(&self, request: &Request) -> Option<(String, Found)> {
        let s = &self.settings;
        if let Some(value) = request.header(&s.header).filter(|v| !v.is_empty()) {
            let token = if s.scheme.is_empty() {
                Some(value.trim())
            } else {
                source::after_scheme(&value, &s.scheme)
            };
            if let Some(token) = token {
                return Some((token.to_string(), Found::Header));
            }
        }
        if let Some(param) = &s.query_param
            && let Some(token) = query::find_param(&request.path(), param)
        {
            return Some((String::from_utf8_lossy(&token).into_owned(), Found::Elsewhere));
        }
        let name = s.cookie.as_deref()?;
        source::cookie_value(&request.header_all("cookie"), name).map(|token| (token, Found::Elsewhere))
    }

    /// The keys of `key_secret`, reading and parsing it if not done yet;
    /// `None` when there is no such secret.
    fn secret_keys(&self) -> Result<Option<&KeySet>, Reply> {
        let Some(name) = &self.settings.key_secret else {
            return Ok(None);
        };
        if let Some(keys) = self.secret.get() {
            return Ok(Some(keys));
        }
        let text = secrets::get(name).map_err(|e| {
            log::error(&format!("key_secret {name:?}: cannot read the secret: {e:?}"));
            error_reply(500, "token keys unavailable")
        })?;
        let jwks = parse_secret(&text).map_err(|e| {
            log::error(&format!("key_secret {name:?}: {e}"));
            error_reply(500, "token keys unavailable")
        })?;
        for problem in &jwks.problems {
            log::warn(&format!("key_secret {name:?}: skipped {problem}"));
        }
        if !jwks
            .keys
            .iter()
            .any(|k| k.algorithms().iter().any(|a| self.algorithms.contains(a)))
        {
            log::error(&format!(
                "key_secret {name:?}: no key in it checks any of the algorithms"
            ));
            return Err(error_reply(500, "token keys unavailable"));
        }
        Ok(Some(self.secret.get_or_init(|| KeySet::new(jwks.keys))))
    }

    /// Publish the consumer and claims, strip the token, continue.
    fn admit(&self, request: &Request, found: Found, consumer: &str, claims: &Map<String, Value>) -> Action {
        let s = &self.settings;
        request.set_property("consumer", consumer);
        for (property, text) in claim_properties(&s.claims_to_properties, claims) {
            request.set_property(&property, &text);
        }
        let mut edits = Vec::new();
        if s.strip {
            if found == Found::Header {
                edits.push(HeaderEdit::Remove(s.header.clone()));
            }
            // The query parameter and cookie go wherever the token came
            // from: a second copy must not reach the upstream either.
            if let Some(name) = &s.cookie {
                let cookies = request.header_all("cookie");
                if source::has_cookie(&cookies, name) {
                    edits.push(match source::without_cookie(&cookies, name) {
                        Some(rest) => HeaderEdit::Set(("cookie".to_string(), rest)),
                        None => HeaderEdit::Remove("cookie".to_string()),
                    });
                }
            }
            if let Some(param) = &s.query_param {
                let path = request.path();
                let stripped = query::remove_param(&path, param);
                if stripped != path
                    && let Err(e) = request.set_path(&stripped)
                {
                    log::error(&format!("could not strip query parameter {param:?}: {e:?}"));
                    return Action::Respond(error_reply(500, "could not forward the request"));
                }
            }
        }
        // Every configured header is set from its claim or removed, so a
        // client can never pass its own value through.
        for (header, value) in claim_headers(&s.claims_to_headers, claims) {
            edits.push(match value {
                Some(text) => HeaderEdit::Set((header, text)),
                None => HeaderEdit::Remove(header),
            });
        }
        if !edits.is_empty()
            && let Err(e) = request.edit_headers(&edits)
        {
            log::error(&format!("could not rewrite request headers: {e:?}"));
            return Action::Respond(error_reply(500, "could not forward the request"));
        }
        Action::Continue
    }

    /// 401 with a challenge and a JSON body naming what was wrong.
    fn unauthorized(&self, challenge: &str, error: &str) -> Reply {
        Reply::new(401)
            .header("www-authenticate", challenge)
            .json(&json!({ "error": error }))
    }
}

/// A JSON error reply with no challenge; details go to the log only.
fn error_reply(status: u16, error: &str) -> Reply {
    Reply::new(status).json(&json!({ "error": error }))
}

/// Seconds since the epoch; `None` if the clock reads earlier.
fn unix_now() -> Option<u64> {
    SystemTime::now().duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Fetches `jwks_url` through the host's outbound HTTP.
struct HostFetcher {
    timeout_ms: u32,
}

impl JwksFetcher for HostFetcher {
    fn fetch(&self, url: &str) -> Result<String, String> {
        let accept = [("accept".to_string(), "application/json".to_string())];
        let response = http::send("GET", url, &accept, &[], Some(self.timeout_ms)).map_err(|e| format!("{e:?}"))?;
        if response.status != 200 {
            return Err(format!("answered status {}", response.status));
        }
        if response.body.len() > MAX_JWKS_BYTES {
            return Err(format!("document larger than {MAX_JWKS_BYTES} bytes"));
        }
        String::from_utf8(response.body).map_err(|_| "document is not UTF-8".to_string())
    }
}

export_plugin!(JwtAuth);

/// Every config the README shows is accepted by `configure`.
#[cfg(test)]
#[test]
fn readme_configs_are_accepted() {
    weir_sdk::testing::check_readme_configs(include_str!("../README.md"), env!("CARGO_PKG_NAME"), JwtAuth::configure);
}
