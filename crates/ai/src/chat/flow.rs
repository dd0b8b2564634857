//! A chat request's course, from its body to the plan of targets: the
//! fields the host reads itself, the route's cache, the consumer's
//! budgets, then failover over the targets serving the model.
//!
//! Invariants: a request that cannot be parsed, or names a model the
//! route does not serve, is answered before any cache, budget or target
//! is asked, and leaves no usage record. From there every request leaves
//! exactly one: a cache hit, a budget refusal (target `-`), a target's
//! answer or refusal, or the failure of every target. A request is
//! admitted only once its estimate (its prompt at about four bytes a
//! token, plus its output limit) is reserved against every budget that
//! applies; a budget that can never fit it is a 400, not a 429 with a
//! `retry-after` to follow for ever; budgets that cannot be checked
//! (their shared store is down, the route failing closed) are a 503.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::{HeaderValue, Response, header};
use serde_json::Value;

use super::AiRequest;
use super::accounting::{Accounting, RecordSlot};
use super::answer::{cached_answer, deliver};
use super::failover::{Tried, exhausted_response, try_plan};
use super::response::error_response;
use crate::budget::Denied;
use crate::now_ms;
use crate::usage::UsageRecord;
use crate::wire::api_error;
use weir_core::body::Body;
use weir_plugins::capabilities::shim::exports::weir::plugin::provider::{ApiError, Exchange};

/// The fields of a chat request the host reads itself.
pub(super) struct ChatHead {
    model: String,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
    max_tokens: Option<u64>,
}

fn chat_head(request: &Value) -> Result<ChatHead, ApiError> {
    let Some(object) = request.as_object() else {
        return Err(api_error(
            400,
            "invalid_request_error",
            "the request body must be a JSON object",
        ));
    };
    let model = match object.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(ApiError {
                param: Some("model".into()),
                ..api_error(
                    400,
                    "invalid_request_error",
                    "model is required (a string naming the model)",
                )
            });
        }
    };
    let stream = match object.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError {
                param: Some("stream".into()),
                ..api_error(400, "invalid_request_error", "stream must be a boolean")
            });
        }
    };
    let include_usage = object
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|field| object.get(*field).and_then(Value::as_u64));
    Ok(ChatHead {
        model,
        stream,
        include_usage,
        max_tokens,
    })
}

/// Answer a `POST .../chat/completions`.
pub(super) async fn chat(mut request: AiRequest<'_>) -> Response<Body> {
    let started = Instant::now();
    let arrived_ms = now_ms();
    let route = request.route;
    let parsed: Value = match serde_json::from_slice(&request.call.body) {
        Ok(v) => v,
        Err(e) => {
            return error_response(&api_error(
                400,
                "invalid_request_error",
                &format!("the request body is not JSON: {e}"),
            ));
        }
    };
    let head = match chat_head(&parsed) {
        Ok(head) => head,
        Err(error) => return error_response(&error),
    };
    let plan = route.plan(&head.model, arrived_ms);
    if plan.is_empty() {
        let message = format!(
            "the model {:?} is not served here; models: {}",
            head.model,
            route.models().join(", ")
        );
        return error_response(&ApiError {
            code: Some("model_not_found".into()),
            param: Some("model".into()),
            ..api_error(404, "invalid_request_error", &message)
        });
    }
    let consumer = request.call.properties.get("consumer").map(str::to_string);
    let id = completion_id();
    let record = UsageRecord {
        time_ms: arrived_ms,
        request_id: id.clone(),
        consumer: consumer.clone(),
        route: route.name.to_string(),
        target: String::new(),
        model: head.model.clone(),
        prompt_tokens: 0,
        completion_tokens: 0,
        cost: 0.0,
        latency_ms: 0,
        ttft_ms: None,
        status: 0,
        streamed: head.stream,
        cached: false,
    };

    let cache_key = route
        .cache
        .as_ref()
        .and_then(|cache| cache.key(route.name.as_str(), consumer.as_deref(), &parsed));
    // `x-weir-cache` and the access log's `cache`: none without a cache.
    let cache_status = match (&route.cache, &cache_key) {
        (None, _) => None,
        (Some(_), None) => Some("bypass"),
        (Some(_), Some(_)) => Some("miss"),
    };
    let account = RecordSlot {
        slot: request.call.account.clone(),
        cache: cache_status,
    };
    if let (Some(cache), Some(key)) = (&route.cache, &cache_key) {
        let answer = cache.get(key).await;
        let metrics = &request.services.observer.metrics;
        metrics.ai_cache_lookup(route.name.as_str(), answer.is_some());
        if let Some(answer) = answer {
            let account = RecordSlot {
                cache: Some("hit"),
                ..account
            };
            let accounting = Accounting::new(request.services.clone(), record, None, 0, started, account);
            return cached_answer(&answer, &id, arrived_ms, &head, accounting);
        }
    }

    // Reserve what the request may use: its prompt (about four bytes a
    // token) and its output limit.
    let output = head.max_tokens.unwrap_or(u64::from(route.default_max_tokens));
    let estimate = (request.call.body.len() as u64).div_ceil(4) + output;
    let admitted = match request
        .services
        .budgets
        .admit(consumer.as_deref(), estimate, arrived_ms, route.state_policy)
        .await
    {
        Ok(reservation) => Ok(reservation),
        Err(Denied::Exceeded(exceeded)) => {
            request
                .services
                .observer
                .metrics
                .ai_budget_rejection(route.name.as_str());
            if exceeded.can_never_fit() {
                // No wait will let it through: not a 429, and no
                // `retry-after` for a client to follow for ever.
                Err(error_response(&ApiError {
                    code: Some("request_exceeds_budget".into()),
                    ..api_error(400, "invalid_request_error", &exceeded.to_string())
                }))
            } else {
                let mut response = error_response(&ApiError {
                    code: Some("budget_exceeded".into()),
                    ..api_error(429, "rate_limit_error", &exceeded.to_string())
                });
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(exceeded.retry_after_secs.max(1)));
                Err(response)
            }
        }
        Err(Denied::Unavailable(cause)) => {
            let mut response = error_response(&ApiError {
                code: Some("budget_store_unavailable".into()),
                ..api_error(503, "api_error", &format!("token budgets cannot be checked: {cause}"))
            });
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Err(response)
        }
    };
    let reservation = match admitted {
        Ok(reservation) => reservation,
        Err(response) => {
            // A refused request is a usage row too: its status, no target
            // (`-`), no tokens.
            let status = response.status().as_u16();
            let record = UsageRecord {
                target: "-".into(),
                ..record
            };
            Accounting::new(request.services.clone(), record, None, 0, started, account).complete(None, status);
            return response;
        }
    };
    let mut accounting = Accounting::new(
        request.services.clone(),
        record,
        Some(reservation),
        estimate,
        started,
        account,
    );

    let exchange = Exchange {
        id: id.clone(),
        created: (arrived_ms / 1000).max(0) as u64,
        include_usage: head.include_usage,
    };
    match try_plan(&mut request, &plan, head.stream, &exchange, &mut accounting.record).await {
        Tried::Answered(target, answer) => deliver(answer, target, route, cache_key, cache_status, accounting).await,
        Tried::Refused(error) => {
            accounting.complete(None, error.status);
            error_response(&error)
        }
        Tried::Exhausted(error) => {
            accounting.complete(None, error.status);
            exhausted_response(&error, &plan)
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A completion id unique in this process and unlikely to repeat across
/// restarts.
fn completion_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("chatcmpl-weir{:x}{:06x}", now_ms(), n & 0xff_ffff)
}
