//! `rate-limit`: a token bucket per client, kept in the shared kv store so
//! every instance (and, with a shared backend, every gateway) counts
//! together.
//!
//! A request takes `cost` tokens from its bucket. The bucket is chosen by a
//! request property (`consumer` by default, as set by an auth plugin),
//! falling back to `client-ip`. Buckets are per route unless routes share
//! a `bucket` name. An empty bucket answers 429 with `retry-after` and the
//! IETF draft `ratelimit-*` fields; an allowed request gets the same fields
//! on its response.
//!
//! The bucket is updated with `kv::get` then `kv::compare_and_swap`,
//! retried a few times when another request got there first; if it is
//! still contended, the request is answered 429 (the bucket is evidently
//! hot). A failing kv store is handled by `on_kv_error`.
//!
//! The numbers for the response headers travel from `on_request` to
//! `on_response` in request properties (`rate-limit.*`). With several
//! rate limits on one route, the one with the fewest tokens left wins.
//!
//! See README.md for the config fields.

mod bucket;
mod bucket_key;
#[cfg(test)]
#[path = "../../readme_examples.rs"]
mod readme_examples;
mod settings;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use weir_sdk::{
    Action, Config, Error, HeaderEdit, Interests, Plugin, Reply, Request, Response, export_plugin, kv, log,
};

use bucket::{Bucket, Outcome, State};
use bucket_key::bucket_key;
use settings::{OnKvError, Settings};

/// Attempts at the read-modify-swap before giving up on a contended bucket.
const MAX_ATTEMPTS: usize = 8;

/// The request property a bucket falls back to when `key` is unset.
const FALLBACK_PROPERTY: &str = "client-ip";

/// The request property carrying the response header values from the
/// request phase to the response phase, as `limit;remaining;reset;policy`
/// (one property: every host call costs a boundary crossing).
const PROP_HEADERS: &str = "rate-limit";

/// `rate-limit` configured for one route.
struct RateLimit {
    settings: Settings,
    bucket: Bucket,
    /// `ratelimit-policy` value, e.g. `10;w=10`.
    policy: String,
}

/// Why a take did not produce an [`Outcome`].
enum TakeError {
    /// The kv store failed.
    Kv(Error),
    /// Every attempt lost the compare-and-swap race.
    Contended,
}

impl Plugin for RateLimit {
    fn configure(config: Config) -> Result<Self, String> {
        let settings = Settings::from_json(config.as_json())?;
        let bucket = settings.bucket_shape();
        let policy = format!("{};w={}", bucket.capacity, bucket.window_secs());
        Ok(RateLimit {
            settings,
            bucket,
            policy,
        })
    }

    fn interests(&self) -> Interests {
        Interests {
            on_request: true,
            on_response: true,
            ..Interests::default()
        }
    }

    fn on_request(&self, request: &Request) -> Action {
        let key = self.key_for(request);
        match self.take(&key) {
            Ok(Outcome::Allowed {
                remaining, reset_secs, ..
            }) => {
                self.publish(request, remaining, reset_secs);
                Action::Continue
            }
            Ok(Outcome::Limited {
                retry_after_secs,
                reset_secs,
            }) => {
                self.publish(request, 0, reset_secs);
                Action::Respond(self.limited(retry_after_secs, reset_secs))
            }
            Err(TakeError::Contended) => {
                log::warn(&format!(
                    "bucket {key:?}: still contended after {MAX_ATTEMPTS} attempts; answering 429"
                ));
                let reset = self.bucket.window_secs();
                self.publish(request, 0, reset);
                Action::Respond(self.limited(1, reset))
            }
            Err(TakeError::Kv(e)) => match self.settings.on_kv_error {
                OnKvError::Deny => {
                    log::error(&format!(
                        "bucket {key:?}: kv failed, denying (on_kv_error = \"deny\"): {e:?}"
                    ));
                    Action::Respond(Reply::new(500).json(&json!({ "error": "rate limiter unavailable" })))
                }
                OnKvError::Allow => {
                    log::error(&format!(
                        "bucket {key:?}: kv failed, allowing (on_kv_error = \"allow\"): {e:?}"
                    ));
                    Action::Continue
                }
            },
        }
    }

    fn on_response(&self, response: &Response) {
        let Some(published) = response.property(PROP_HEADERS) else {
            return;
        };
        let mut fields = published.splitn(4, ';');
        let (Some(limit), Some(remaining), Some(reset), Some(policy)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return;
        };
        // One host call for the four fields.
        let edits = [
            ("ratelimit-limit", limit),
            ("ratelimit-remaining", remaining),
            ("ratelimit-reset", reset),
            ("ratelimit-policy", policy),
        ]
        .map(|(name, value)| HeaderEdit::Set((name.to_string(), value.to_string())));
        if let Err(e) = response.edit_headers(&edits) {
            log::warn(&format!("could not set the ratelimit fields: {e:?}"));
        }
    }
}

impl RateLimit {
    /// The kv key of the bucket this request takes from.
    fn key_for(&self, request: &Request) -> String {
        let set = self
            .settings
            .bucket
            .clone()
            .or_else(|| request.property("route"))
            .unwrap_or_default();
        let by_key = request
            .property(&self.settings.key)
            .map(|v| (self.settings.key.as_str(), v));
        let (property, value) = by_key
            .or_else(|| request.property(FALLBACK_PROPERTY).map(|v| (FALLBACK_PROPERTY, v)))
            .unwrap_or_else(|| {
                log::warn(&format!(
                    "request has neither property {:?} nor {FALLBACK_PROPERTY:?}; using one shared bucket",
                    self.settings.key
                ));
                (FALLBACK_PROPERTY, String::new())
            });
        bucket_key(&set, property, &value)
    }

    /// Take `cost` tokens from the bucket at `key`, retrying lost races.
    fn take(&self, key: &str) -> Result<Outcome, TakeError> {
        for _ in 0..MAX_ATTEMPTS {
            let stored = kv::get(key).map_err(TakeError::Kv)?;
            let prior = stored.as_deref().and_then(State::decode);
            let outcome = self.bucket.take(prior, now_ms(), self.settings.cost);
            let Outcome::Allowed { state, ttl_ms, .. } = outcome else {
                // Nothing to store: the bucket only refills with time.
                return Ok(outcome);
            };
            let ttl = Some(Duration::from_millis(ttl_ms));
            let swapped =
                kv::compare_and_swap(key, stored.as_deref(), state.encode().as_bytes(), ttl).map_err(TakeError::Kv)?;
            if swapped {
                return Ok(outcome);
            }
        }
        Err(TakeError::Contended)
    }

    /// Record this limit's numbers for `on_response`, unless a rate limit
    /// earlier in the chain already recorded fewer tokens left.
    fn publish(&self, request: &Request, remaining: u32, reset_secs: u64) {
        let tighter = request
            .property(PROP_HEADERS)
            .and_then(|p| p.split(';').nth(1).and_then(|r| r.parse::<u32>().ok()))
            .is_some_and(|earlier| earlier < remaining);
        if tighter {
            return;
        }
        let published = format!("{};{remaining};{reset_secs};{}", self.bucket.capacity, self.policy);
        request.set_property(PROP_HEADERS, &published);
    }

    /// The 429 answer.
    fn limited(&self, retry_after_secs: u64, reset_secs: u64) -> Reply {
        Reply::new(429)
            .header("retry-after", &retry_after_secs.to_string())
            .header("ratelimit-limit", &self.bucket.capacity.to_string())
            .header("ratelimit-remaining", "0")
            .header("ratelimit-reset", &reset_secs.to_string())
            .header("ratelimit-policy", &self.policy)
            .json(&json!({ "error": "rate limit exceeded" }))
    }
}

/// Wall-clock milliseconds since the Unix epoch (shared with other
/// gateways through kv, so not a monotonic clock).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

export_plugin!(RateLimit);
