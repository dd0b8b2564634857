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
//! The bucket is updated by `kv::take_tokens`, which the store does in one
//! atomic step on one clock, so concurrent requests on any number of
//! instances and gateways never get more than the bucket holds. A failing
//! kv store (with a shared backend: one that is unreachable while the
//! route fails closed) is handled by `on_kv_error`.
//!
//! The numbers for the response headers travel from `on_request` to
//! `on_response` in request properties (`rate-limit.*`). With several
//! rate limits on one route, the one with the fewest tokens left wins.
//!
//! See README.md for the config fields.

mod bucket;
mod bucket_key;
mod settings;

use std::cell::OnceCell;

use serde_json::json;
use weir_sdk::{
    Action, Config, Error, HeaderEdit, Interests, Plugin, Reply, Request, Response, export_plugin, kv, log,
};

use bucket::Bucket;
use bucket_key::{key_prefix, keyed};
use settings::{OnKvError, Settings};

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
    /// The start of the published property, `limit;`.
    published_head: String,
    /// Its end, `;policy`.
    published_tail: String,
    /// The two key prefixes (by the configured property, by the fallback),
    /// made on the first request: without a `bucket` name the bucket set
    /// is the route, read from the `route` property once (a handler serves
    /// one route), not per request.
    prefixes: OnceCell<[String; 2]>,
}

impl Plugin for RateLimit {
    fn configure(config: Config) -> Result<Self, String> {
        let settings: Settings = config.settings()?;
        let bucket = settings.bucket_shape();
        let policy = format!("{};w={}", bucket.capacity, bucket.window_secs());
        Ok(RateLimit {
            settings,
            bucket,
            published_head: format!("{};", bucket.capacity),
            published_tail: format!(";{policy}"),
            policy,
            prefixes: OnceCell::new(),
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
        let taken = kv::take_tokens(
            &key,
            self.bucket.capacity,
            self.bucket.refill_per_second,
            self.settings.cost,
        );
        match taken {
            Ok(taken) if taken.allowed => {
                self.publish(request, taken.remaining, taken.reset_secs);
                Action::Continue
            }
            Ok(taken) => {
                self.publish(request, 0, taken.reset_secs);
                Action::Respond(self.limited(taken.retry_after_secs.max(1), taken.reset_secs))
            }
            Err(e) => match self.settings.on_kv_error {
                OnKvError::Deny => {
                    let cause = kv_error_text(&e);
                    log::error(&format!(
                        "bucket {key:?}: kv failed, denying (on_kv_error = \"deny\"): {cause}"
                    ));
                    Action::Respond(
                        Reply::new(503)
                            .header("retry-after", "1")
                            .json(&json!({ "error": format!("rate limiter unavailable: {cause}") })),
                    )
                }
                OnKvError::Allow => {
                    log::error(&format!(
                        "bucket {key:?}: kv failed, allowing (on_kv_error = \"allow\"): {}",
                        kv_error_text(&e)
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
        let [by_key, by_fallback] = self.prefixes.get_or_init(|| {
            let route;
            let set = match &self.settings.bucket {
                Some(bucket) => bucket.as_str(),
                None => {
                    route = request.property("route").unwrap_or_default();
                    route.as_str()
                }
            };
            [key_prefix(set, &self.settings.key), key_prefix(set, FALLBACK_PROPERTY)]
        });
        if let Some(value) = request.property(&self.settings.key) {
            return keyed(by_key, &value);
        }
        let value = request.property(FALLBACK_PROPERTY).unwrap_or_else(|| {
            log::warn(&format!(
                "request has neither property {:?} nor {FALLBACK_PROPERTY:?}; using one shared bucket",
                self.settings.key
            ));
            String::new()
        });
        keyed(by_fallback, &value)
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
        // Written out rather than formatted: this runs on every request.
        let (mut remaining_text, mut reset_text) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (remaining_text, reset_text) = (remaining_text.format(remaining), reset_text.format(reset_secs));
        let published = [
            self.published_head.as_str(),
            remaining_text,
            ";",
            reset_text,
            &self.published_tail,
        ]
        .concat();
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

/// The message of a kv error.
fn kv_error_text(error: &Error) -> String {
    match error {
        Error::NotGranted(what) => format!("not granted: {what}"),
        Error::Invalid(why) | Error::Failed(why) => why.clone(),
    }
}

export_plugin!(RateLimit);

/// Every config the README shows is accepted by `configure`.
#[cfg(test)]
#[test]
fn readme_configs_are_accepted() {
    weir_sdk::testing::check_readme_configs(
        include_str!("../README.md"),
        env!("CARGO_PKG_NAME"),
        RateLimit::configure,
    );
}
