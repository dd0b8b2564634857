//! `api-key-auth`: let a request through only if it carries a known API key,
//! and name its consumer.
//!
//! The key is read from a header (default `x-api-key`) or, if configured,
//! a query parameter. A match sets the request property `consumer`, which
//! later plugins (rate limits, usage accounting) key on; by default the key
//! itself is then removed so the upstream never sees it. A missing or wrong
//! key is answered with 401 and a `www-authenticate: ApiKey ...` challenge.
//!
//! Keys come from the route's config (`keys`), from a secret
//! (`keys_secret`), or both. The secret is read on the first request that
//! needs it — not in `configure`, where a host need not offer capabilities —
//! and cached for the life of the instance; rotate a secret's keys by
//! reloading the plugin or the config. If it cannot be read, requests get
//! 500 (fail closed) and the reason is logged, and the next request tries
//! again.
//!
//! See README.md for the config fields.

mod keys;
mod settings;

use std::cell::OnceCell;

use serde_json::json;
use weir_sdk::{Action, Config, Interests, Plugin, Reply, Request, export_plugin, log, query, secrets};

use keys::{KeyStore, parse_secret};
use settings::Settings;

/// `api-key-auth` configured for one route.
struct ApiKeyAuth {
    settings: Settings,
    /// Every accepted key. Filled in `configure` when all keys are inline,
    /// else on the first request that can read `keys_secret`.
    store: OnceCell<KeyStore>,
}

impl Plugin for ApiKeyAuth {
    fn configure(config: Config) -> Result<Self, String> {
        let settings: Settings = config.settings()?;
        let store = OnceCell::new();
        if settings.keys_secret.is_none() {
            let inline = KeyStore::new(settings.inline_consumers()).map_err(|e| format!("keys: {e}"))?;
            let _ = store.set(inline);
        }
        Ok(ApiKeyAuth { settings, store })
    }

    fn interests(&self) -> Interests {
        Interests {
            on_request: true,
            on_response: false,
            ..Interests::default()
        }
    }

    fn on_request(&self, request: &Request) -> Action {
        let Some(presented) = self.presented_key(request) else {
            return Action::Respond(self.unauthorized("missing API key"));
        };
        let store = match self.store() {
            Ok(store) => store,
            Err(reply) => return Action::Respond(reply),
        };
        let Some(consumer) = store.find(&presented) else {
            return Action::Respond(self.unauthorized("invalid API key"));
        };
        request.set_property("consumer", consumer);
        if self.settings.strip {
            self.strip_key(request);
        }
        Action::Continue
    }
}

/// The credentials after `scheme` in an `authorization`-style value
/// (`Bearer KEY`); the scheme is case-insensitive. `None` if the value has
/// another scheme or nothing after it.
fn after_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    let key = rest.trim();
    (given.eq_ignore_ascii_case(scheme) && !key.is_empty()).then_some(key)
}

impl ApiKeyAuth {
    /// The key from the header, else from the query parameter; empty counts
    /// as missing.
    /// The key from the header (taken off the request at once when the
    /// key is stripped: one host call) or the query parameter.
    fn presented_key(&self, request: &Request) -> Option<Vec<u8>> {
        let header = if self.settings.strip {
            request.take_header(&self.settings.header)
        } else {
            request.header(&self.settings.header)
        };
        if let Some(value) = header.filter(|v| !v.is_empty()) {
            return match &self.settings.scheme {
                Some(scheme) => after_scheme(&value, scheme).map(|key| key.as_bytes().to_vec()),
                None => Some(value.into_bytes()),
            };
        }
        let param = self.settings.query_param.as_deref()?;
        query::find_param(&request.path(), param)
    }

    /// The key store, reading and parsing `keys_secret` if not done yet.
    fn store(&self) -> Result<&KeyStore, Reply> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let mut consumers = self.settings.inline_consumers();
        if let Some(name) = &self.settings.keys_secret {
            let text = secrets::get(name).map_err(|e| {
                log::error(&format!("keys_secret {name:?}: cannot read the secret: {e:?}"));
                unavailable()
            })?;
            let listed = parse_secret(&text).map_err(|e| {
                log::error(&format!("keys_secret {name:?}: {e}"));
                unavailable()
            })?;
            consumers.extend(listed);
        }
        let store = KeyStore::new(consumers).map_err(|e| {
            log::error(&format!("keys and keys_secret together: {e}"));
            unavailable()
        })?;
        Ok(self.store.get_or_init(|| store))
    }

    /// Remove the key header and query parameter before the upstream.
    /// Remove the key from the query (the header was taken already).
    fn strip_key(&self, request: &Request) {
        if let Some(param) = &self.settings.query_param {
            let path = request.path();
            let stripped = query::remove_param(&path, param);
            if stripped != path
                && let Err(e) = request.set_path(&stripped)
            {
                log::warn(&format!("could not strip query parameter {param:?}: {e:?}"));
            }
        }
    }

    /// 401 with the challenge and a JSON body naming what was wrong.
    fn unauthorized(&self, error: &str) -> Reply {
        Reply::new(401)
            .header("www-authenticate", &self.settings.challenge())
            .json(&json!({ "error": error }))
    }
}

/// 500 when the keys cannot be loaded: fail closed, details in the log.
fn unavailable() -> Reply {
    Reply::new(500).json(&json!({ "error": "API keys unavailable" }))
}

export_plugin!(ApiKeyAuth);

/// Every config the README shows is accepted by `configure`.
#[cfg(test)]
#[test]
fn readme_configs_are_accepted() {
    weir_sdk::testing::check_readme_configs(
        include_str!("../README.md"),
        env!("CARGO_PKG_NAME"),
        ApiKeyAuth::configure,
    );
}

#[cfg(test)]
mod tests {
    use super::after_scheme;

    #[test]
    fn the_key_is_what_follows_the_scheme() {
        assert_eq!(after_scheme("Bearer k-1", "Bearer"), Some("k-1"));
        assert_eq!(after_scheme("bearer  k-1 ", "Bearer"), Some("k-1"));
        assert_eq!(after_scheme("Basic k-1", "Bearer"), None);
        assert_eq!(after_scheme("Bearer", "Bearer"), None);
        assert_eq!(after_scheme("Bearer ", "Bearer"), None);
        assert_eq!(after_scheme("k-1", "Bearer"), None);
    }
}
