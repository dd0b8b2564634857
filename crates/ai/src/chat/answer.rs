//! An answer reaching the client: a target's whole answer, its stream
//! relayed through the shim, or an answer from the route's cache replayed
//! under the request's own id.
//!
//! Invariants: a target's answer names it in `x-weir-target`, and says
//! `x-weir-cache` (`miss` or `bypass`) when the route has a cache; only a
//! complete answer goes into the cache (a stream's once it has ended
//! whole); a cached answer is recorded as cached, with the target and
//! model that first gave it, and with no tokens charged.

use http::{HeaderValue, Response};
use serde_json::Value;

use super::accounting::Accounting;
use super::attempt::Answer;
use super::flow::ChatHead;
use super::response::{set_event_stream, set_json, tag};
use crate::cache::CachedAnswer;
use crate::targets::{AiRoute, AiTarget};
use weir_core::body::{Body, full_body};

/// The client's response for `target`'s answer. A whole answer is settled
/// here; a stream's `accounting` goes with its body.
pub(super) async fn deliver(
    answer: Answer,
    target: &AiTarget,
    route: &AiRoute,
    cache_key: Option<String>,
    cache_status: Option<&'static str>,
    accounting: Accounting,
) -> Response<Body> {
    match answer {
        Answer::Whole(completion) => {
            let usage = completion.usage;
            if let (Some(cache), Some(key)) = (&route.cache, cache_key)
                && let Some(answer) = CachedAnswer::from_completion(&completion.body, &target.name, &target.model)
            {
                cache.put(key, answer).await;
            }
            accounting.complete(usage.as_ref(), 200);
            let mut response = Response::new(full_body(completion.body));
            set_json(&mut response);
            tag(&mut response, target, cache_status);
            response
        }
        Answer::Stream(relay) => {
            let store = match (&route.cache, cache_key) {
                (Some(cache), Some(key)) => {
                    let cache = cache.clone();
                    let (target, model) = (target.name.clone(), target.model.clone());
                    Some(Box::new(move |completion: Value| {
                        cache.put_later(
                            key,
                            CachedAnswer {
                                completion,
                                target,
                                model,
                            },
                        )
                    }) as Box<dyn FnOnce(Value) + Send>)
                }
                _ => None,
            };
            let mut response = Response::new(relay.into_body(accounting, store));
            set_event_stream(&mut response);
            tag(&mut response, target, cache_status);
            response
        }
    }
}

/// A cached answer, whole or replayed as a stream, under a new id.
pub(super) fn cached_answer(
    answer: &CachedAnswer,
    id: &str,
    arrived_ms: i64,
    head: &ChatHead,
    accounting: Accounting,
) -> Response<Body> {
    let mut accounting = accounting;
    accounting.record.target = answer.target.clone();
    accounting.record.model = answer.model.clone();
    accounting.record.cached = true;
    accounting.complete(None, 200);
    let body = answer.replay(id, arrived_ms / 1000, head.stream, head.include_usage);
    let mut response = Response::new(full_body(body));
    if head.stream {
        set_event_stream(&mut response);
    } else {
        set_json(&mut response);
    }
    let headers = response.headers_mut();
    headers.insert("x-weir-cache", HeaderValue::from_static("hit"));
    if let Ok(target) = HeaderValue::from_str(&answer.target) {
        headers.insert("x-weir-target", target);
    }
    response
}
