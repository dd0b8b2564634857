//! Failover: the route's targets tried in the order `weir_select` planned
//! for the request, until one answers.
//!
//! Invariants: each target of the plan is tried at most once, in order,
//! and only while nothing has reached the client. Trying stops at the
//! first answer, or at a refusal of the request itself (another target
//! would refuse it too). Each try is recorded as one of the request's
//! attempts, with its status (200 for an answer). A target's health
//! learns of every try: a half-open circuit takes the request as its
//! trial, an answer closes it, and a failure counts towards opening it,
//! except a 429, which is the target asking for time (its rest), not a
//! fault. When every target failed, the client gets the last failure,
//! with every target's message when there were several, and a 429 says in
//! `retry-after` when the first target's rest ends.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Response, header};

use super::AiRequest;
use super::attempt::{Answer, Outcome, attempt};
use super::response::error_response;
use crate::now_ms;
use crate::targets::AiTarget;
use crate::usage::UsageRecord;
use crate::wire::api_error;
use weir_core::body::Body;
use weir_plugins::capabilities::shim::exports::weir::plugin::provider::{ApiError, Exchange};
use weir_proxy::TargetAttempt;

/// How trying the plan ended.
pub(super) enum Tried<'p> {
    /// This target answered: deliver it.
    Answered(&'p Arc<AiTarget>, Answer),
    /// A target refused the request itself: answer the client with this.
    Refused(ApiError),
    /// Every target failed: answer with this ([`exhausted_response`]).
    Exhausted(ApiError),
}

/// Try `plan`'s targets in order until one answers or refuses the
/// request. `record` names the target being tried, so that the usage
/// record names the last one tried.
pub(super) async fn try_plan<'p>(
    request: &mut AiRequest<'_>,
    plan: &'p [Arc<AiTarget>],
    stream: bool,
    exchange: &Exchange,
    record: &mut UsageRecord,
) -> Tried<'p> {
    let route = request.route;
    let mut failures: Vec<String> = Vec::new();
    let mut last: Option<ApiError> = None;
    for (index, target) in plan.iter().enumerate() {
        record.target = target.name.clone();
        record.model = target.model.clone();
        // A half-open circuit takes this request as its trial.
        let _ = target.health.admit(target.breaker, now_ms());
        let asked = Instant::now();
        let outcome = attempt(
            target,
            &request.call.body,
            stream,
            exchange,
            request.call.max_response_bytes,
            &request.call.shim_calls,
        )
        .await;
        request.call.attempts.push(TargetAttempt {
            target: target.name.clone(),
            started: asked,
            status: match &outcome {
                Ok(_) => 200,
                Err(Outcome::Retry(error) | Outcome::Refused(error)) => error.status,
            },
        });
        match &outcome {
            Ok(_) => target.health.succeeded(target.breaker, now_ms()),
            // A 429 is the target asking for time (its cool-down), not a fault.
            Err(Outcome::Retry(failure)) if failure.status != 429 => {
                if target.health.failed(target.breaker, now_ms()) {
                    tracing::warn!(route = %route.name, target = %target.name, "circuit opened after failures");
                }
            }
            Err(_) => {}
        }
        match outcome {
            Ok(answer) => return Tried::Answered(target, answer),
            Err(Outcome::Refused(error)) => return Tried::Refused(error),
            Err(Outcome::Retry(failure)) => {
                tracing::warn!(route = %route.name, target = %target.name, "AI target failed, trying the next: {}", failure.message);
                if index + 1 < plan.len() {
                    let metrics = &request.services.observer.metrics;
                    metrics.ai_failover(route.name.as_str(), &target.name, &target.model);
                }
                failures.push(format!("{}: {}", target.name, failure.message));
                last = Some(failure);
            }
        }
    }

    // Every target failed before anything reached the client.
    let mut error = last.unwrap_or_else(|| api_error(502, "api_error", "no target could be tried"));
    if failures.len() > 1 {
        error.message = format!("every target failed: {}", failures.join("; "));
    }
    Tried::Exhausted(error)
}

/// The client's answer when every target failed with `error`: a 429 says
/// when the first of the plan's targets is out of its rest (1 s when none
/// asked for one).
pub(super) fn exhausted_response(error: &ApiError, plan: &[Arc<AiTarget>]) -> Response<Body> {
    let mut response = error_response(error);
    if error.status == 429 {
        let now = now_ms();
        let wait = plan
            .iter()
            .filter_map(|t| t.health.resting_for(now))
            .min()
            .unwrap_or(1_000);
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from((wait as u64).div_ceil(1000).max(1)),
        );
    }
    response
}
