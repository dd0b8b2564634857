//! Serving one request on an AI route: `GET .../models` and
//! `POST .../chat/completions`, with cache, budgets, failover across the
//! route's targets, and usage accounting.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::budget::{Denied, Reservation};
use super::cache::CachedAnswer;
use super::redact::{StreamRedactor, redact};
use super::relay::{Relay, Shim};
use super::targets::{AiRoute, AiTarget};
use super::usage::UsageRecord;
use super::{AiServices, now_ms};
use weir_config::Target;
use weir_core::body::{Body, full_body};
use weir_core::error::error_chain;
use weir_core::forwarding;
use weir_observe::{AiSlot, AiSummary, Phase, ShimCalls};
use weir_plugins::PluginFault;
use weir_plugins::capabilities::header_list;
use weir_plugins::capabilities::shim::exports::weir::plugin::provider::{
    ApiError, Completion, Exchange, KeyPlacement, ProviderRequest, Usage,
};
use weir_proxy::{AiBackend, AiCall, TargetAttempt};

/// Largest provider error body read for its message.
const MAX_ERROR_BODY: usize = 64 << 10;

/// What one request on an AI route needs: the route, the AI services, and
/// the request as the proxy hands it over.
pub struct AiRequest<'a> {
    /// The route.
    pub route: &'a AiRoute,
    /// Ledger, budgets, prices.
    pub services: &'a Arc<AiServices>,
    /// The request.
    pub call: AiCall<'a>,
}

/// An AI route as the proxy's backend for it.
pub struct AiRouteBackend {
    /// The route's targets and settings.
    pub route: Arc<AiRoute>,
    /// Ledger, budgets, prices.
    pub services: Arc<AiServices>,
}

impl AiBackend for AiRouteBackend {
    fn serve<'a>(&'a self, call: AiCall<'a>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send + 'a>> {
        Box::pin(serve(AiRequest {
            route: &self.route,
            services: &self.services,
            call,
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Answer a request on an AI route. Every failure is an OpenAI-shaped
/// error response.
pub async fn serve(request: AiRequest<'_>) -> Response<Body> {
    let path = request.call.parts.uri.path().trim_end_matches('/');
    if path.ends_with("/models") || path == "/models" {
        if request.call.parts.method != Method::GET && request.call.parts.method != Method::HEAD {
            return method_not_allowed("GET");
        }
        return models(request.route);
    }
    if !path.ends_with("/chat/completions") {
        let message =
            format!("no AI endpoint at {path}: this route serves POST .../chat/completions and GET .../models");
        return error_response(&ApiError {
            code: Some("not_found".into()),
            ..api_error(404, "invalid_request_error", &message)
        });
    }
    if request.call.parts.method != Method::POST {
        return method_not_allowed("POST");
    }
    chat(request).await
}

/// `GET .../models`: the model names the route offers.
fn models(route: &AiRoute) -> Response<Body> {
    let data: Vec<Value> = route
        .models()
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "weir"}))
        .collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

/// The fields of a chat request the host reads itself.
struct ChatHead {
    model: String,
    stream: bool,
    include_usage: bool,
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

async fn chat(request: AiRequest<'_>) -> Response<Body> {
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
    let account = Account {
        slot: request.call.account.clone(),
        cache: cache_status,
    };
    if let (Some(cache), Some(key)) = (&route.cache, &cache_key) {
        let answer = cache.get(key).await;
        let metrics = &request.services.observer.metrics;
        metrics.ai_cache_lookup(route.name.as_str(), answer.is_some());
        if let Some(answer) = answer {
            let account = Account {
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
    let mut failures: Vec<String> = Vec::new();
    let mut last: Option<ApiError> = None;
    for (index, target) in plan.iter().enumerate() {
        accounting.record.target = target.name.clone();
        accounting.record.model = target.model.clone();
        // A half-open circuit takes this request as its trial.
        let _ = target.health.admit(target.breaker, now_ms());
        let asked = Instant::now();
        let outcome = attempt(
            target,
            &request.call.body,
            head.stream,
            &exchange,
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
            Ok(Answer::Whole(completion)) => {
                let usage = completion.usage;
                if let (Some(cache), Some(key)) = (&route.cache, cache_key.clone())
                    && let Some(answer) = CachedAnswer::from_completion(&completion.body, &target.name, &target.model)
                {
                    cache.put(key, answer).await;
                }
                accounting.complete(usage.as_ref(), 200);
                let mut response = Response::new(full_body(completion.body));
                set_json(&mut response);
                tag(&mut response, target, cache_status);
                return response;
            }
            Ok(Answer::Stream(relay)) => {
                let store = match (&route.cache, cache_key.clone()) {
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
                return response;
            }
            Err(Outcome::Refused(error)) => {
                accounting.complete(None, error.status);
                return error_response(&error);
            }
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
    accounting.complete(None, error.status);
    let mut response = error_response(&error);
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

/// A cached answer, whole or replayed as a stream, under a new id.
fn cached_answer(
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

enum Answer {
    Whole(Completion),
    Stream(Box<Relay>),
}

enum Outcome {
    /// The target failed in a way another target may not: try the next.
    Retry(ApiError),
    /// The request itself was refused: answer the client.
    Refused(ApiError),
}

/// Whether a provider error is the target's trouble (try another) rather
/// than the request's.
fn retryable(status: u16) -> bool {
    status == 429 || status >= 500
}

/// One try of one target: translate, send, and translate the answer or
/// prime its stream. Nothing reaches the client here.
async fn attempt(
    target: &Arc<AiTarget>,
    body: &Bytes,
    stream: bool,
    exchange: &Exchange,
    max_response_bytes: usize,
    calls: &ShimCalls,
) -> Result<Answer, Outcome> {
    let retry = |status: u16, message: String| Outcome::Retry(api_error(status, "api_error", &message));
    let fault = |fault: PluginFault| retry(500, format!("the provider shim failed: {fault}"));
    let (plugin, slot) = match &target.shim {
        Ok((plugin, slot)) => (plugin, *slot),
        Err(name) => {
            return Err(retry(
                503,
                format!("the provider shim {name} is not loaded (its file is missing)"),
            ));
        }
    };
    // Each call to the shim is counted, faulted or not.
    let counted = |phase: Phase, started: Instant, fault: Option<&PluginFault>| {
        calls.add(plugin.name(), phase, started, fault.map(PluginFault::kind));
    };
    let started = Instant::now();
    let leased = plugin.lease(slot).await;
    let mut lease = match leased {
        Ok(lease) => lease,
        Err(e) => {
            counted(Phase::Request, started, Some(&e));
            return Err(fault(e));
        }
    };
    let translated = lease.translate_request(slot, body).await;
    counted(Phase::Request, started, translated.as_ref().err());
    let provider_request = match translated.map_err(fault)? {
        Ok(r) => r,
        Err(error) => return Err(Outcome::Refused(error)),
    };
    let http_request = build_request(target, provider_request).map_err(|e| retry(500, e))?;
    let response = match tokio::time::timeout(target.response_timeout, target.client.request(http_request)).await {
        Err(_) => {
            return Err(retry(
                504,
                format!("no answer within {} ms", target.response_timeout.as_millis()),
            ));
        }
        Ok(Err(e)) => return Err(retry(502, format!("cannot reach the provider: {}", error_chain(&e)))),
        Ok(Ok(response)) => response,
    };
    let status = response.status().as_u16();
    if !response.status().is_success() {
        if status == 429 {
            let wait_secs = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
            target
                .health
                .rest_until(now_ms().saturating_add((wait_secs.min(3600) * 1000) as i64));
        }
        let bytes = read_body(response.into_body(), MAX_ERROR_BODY, target)
            .await
            .unwrap_or_default();
        // Providers quote a rejected key back: the shim never sees it.
        let bytes = redact(&bytes, target.key.as_deref());
        let started = Instant::now();
        let translated = lease.translate_error(slot, status, &bytes).await;
        counted(Phase::Response, started, translated.as_ref().err());
        let error = translated.map_err(fault)?;
        return Err(if retryable(status) {
            Outcome::Retry(error)
        } else {
            Outcome::Refused(error)
        });
    }
    let upstream = response.into_body().map_err(weir_core::body::box_error).boxed_unsync();
    if !stream {
        let bytes = read_body(upstream, max_response_bytes, target)
            .await
            .map_err(|e| retry(502, e))?;
        let bytes = redact(&bytes, target.key.as_deref());
        let started = Instant::now();
        let translated = lease.translate_response(slot, exchange, &bytes).await;
        counted(Phase::Response, started, translated.as_ref().err());
        return match translated.map_err(fault)? {
            Ok(completion) => Ok(Answer::Whole(completion)),
            Err(error) if retryable(error.status) => Err(Outcome::Retry(error)),
            Err(error) => Err(Outcome::Refused(error)),
        };
    }
    let started = Instant::now();
    let opened = lease.open_stream(slot, exchange).await;
    counted(Phase::Response, started, opened.as_ref().err());
    let translator = opened.map_err(fault)?;
    let shim = Shim {
        plugin: plugin.name().clone(),
        calls: calls.clone(),
        redactor: StreamRedactor::new(target.key.as_deref()),
    };
    let mut relay = Relay::new(lease, slot, translator, upstream, target.response_timeout, shim);
    match relay.prime().await {
        Ok(()) => Ok(Answer::Stream(Box::new(relay))),
        Err(error) if retryable(error.status) => Err(Outcome::Retry(error)),
        Err(error) => Err(Outcome::Refused(error)),
    }
}

/// The HTTP request for a target: its base URL plus the shim's path, the
/// shim's headers, and the key where the shim said.
fn build_request(target: &AiTarget, request: ProviderRequest) -> Result<Request<Body>, String> {
    let endpoint = Endpoint {
        name: &target.name,
        base: &target.base,
        base_path: &target.base_path,
        key: target.key.as_deref(),
    };
    provider_request(&endpoint, request)
}

/// What [`provider_request`] needs of a target.
pub struct Endpoint<'a> {
    /// The target's name, for messages.
    pub name: &'a str,
    /// Scheme and authority of its base URL.
    pub base: &'a Target,
    /// The base URL's path, without trailing `/`.
    pub base_path: &'a str,
    /// The provider key, if the target has one.
    pub key: Option<&'a str>,
}

/// The HTTP request a shim's [`ProviderRequest`] becomes for `endpoint`.
/// Whatever the shim returned, the result goes to the endpoint's scheme
/// and authority, under its base path, with valid headers and a
/// `content-length` that is the body's; a value it cannot make so is
/// refused with a message.
pub fn provider_request(endpoint: &Endpoint<'_>, request: ProviderRequest) -> Result<Request<Body>, String> {
    let shim_said =
        |what: &str, detail: &dyn std::fmt::Display| format!("the provider shim gave an invalid {what}: {detail}");
    // A fragment is never sent: the key's query parameter would go with it.
    if !request.path.starts_with('/') || request.path.contains('#') {
        return Err(shim_said("path", &format!("{:?}", request.path)));
    }
    let mut path = format!("{}{}", endpoint.base_path, request.path);
    let method = Method::from_bytes(request.method.as_bytes()).map_err(|e| shim_said("method", &e))?;
    let mut headers = header_list(&request.headers).map_err(|e| shim_said("header", &e))?;
    // Connection-level fields are the host's to set, as for any message
    // it forwards.
    forwarding::strip_hop_by_hop(&mut headers);
    if let Some(key) = endpoint.key {
        match &request.key {
            KeyPlacement::None => {}
            KeyPlacement::Header((name, prefix)) => {
                let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| shim_said("key header", &e))?;
                // The host sets these itself: a key there would be lost or
                // would change how the request is framed or routed.
                if name == header::CONTENT_LENGTH || name == header::HOST || forwarding::is_hop_by_hop(&name) {
                    return Err(shim_said("key header", &name));
                }
                let mut value = HeaderValue::from_str(&format!("{prefix}{key}"))
                    .map_err(|_| format!("the key of target {} is not a valid header value", endpoint.name))?;
                value.set_sensitive(true);
                headers
                    .try_insert(name, value)
                    .map_err(|e| shim_said("header list", &e))?;
            }
            KeyPlacement::Query(name) => {
                let pair: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair(name, key)
                    .finish();
                path.push(if path.contains('?') { '&' } else { '?' });
                path.push_str(&pair);
            }
        }
    }
    headers
        .try_insert(header::CONTENT_LENGTH, HeaderValue::from(request.body.len()))
        .map_err(|e| shim_said("header list", &e))?;
    let uri = http::Uri::builder()
        .scheme(endpoint.base.scheme.clone())
        .authority(endpoint.base.authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|e| shim_said("path", &e))?;
    let mut http_request = Request::builder()
        .method(method)
        .uri(uri)
        .body(full_body(request.body))
        .map_err(|e| e.to_string())?;
    *http_request.headers_mut() = headers;
    Ok(http_request)
}

/// Read a provider body whole, refusing more than `limit` bytes or a gap
/// longer than the target's timeout.
async fn read_body<B>(body: B, limit: usize, target: &AiTarget) -> Result<Bytes, String>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut body = body;
    let mut buffer = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(target.response_timeout, body.frame()).await {
            Err(_) => {
                return Err(format!(
                    "the provider's body stalled for {} ms",
                    target.response_timeout.as_millis()
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(format!("reading the provider's body: {e}")),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                return Err(format!("the provider's answer is larger than {limit} bytes"));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

/// Where a request's settled usage goes besides the ledger: its slot in
/// the request's record, with the cache status.
struct Account {
    slot: AiSlot,
    cache: Option<&'static str>,
}

/// Settles a request's reservation and records its usage, once: when the
/// answer is complete, broken, or dropped (the client went away).
pub(super) struct Accounting {
    services: Arc<AiServices>,
    pub(super) record: UsageRecord,
    reservation: Option<Reservation>,
    estimate: u64,
    started: Instant,
    produced: bool,
    account: Account,
}

impl Accounting {
    fn new(
        services: Arc<AiServices>,
        record: UsageRecord,
        reservation: Option<Reservation>,
        estimate: u64,
        started: Instant,
        account: Account,
    ) -> Self {
        Accounting {
            services,
            record,
            reservation,
            estimate,
            started,
            produced: false,
            account,
        }
    }

    /// The first chunk went to the client.
    pub(super) fn first_token(&mut self) {
        if self.record.ttft_ms.is_none() {
            self.record.ttft_ms = Some(self.started.elapsed().as_millis() as u64);
        }
        self.produced = true;
    }

    /// The answer is complete (or refused) with this status.
    pub(super) fn complete(mut self, usage: Option<&Usage>, status: u16) {
        if status < 300 {
            self.produced = true;
        }
        self.settle(usage, status);
    }

    /// A stream broke after it started.
    pub(super) fn broken(mut self, usage: Option<&Usage>, status: u16) {
        self.settle(usage, status);
    }

    fn settle(&mut self, usage: Option<&Usage>, status: u16) {
        // Settled once: `complete` or `broken`, then the drop finds it done.
        if self.record.status != 0 {
            return;
        }
        let (prompt, completion) =
            usage.map_or((0, 0), |u| (u64::from(u.prompt_tokens), u64::from(u.completion_tokens)));
        let now = now_ms();
        if let Some(reservation) = self.reservation.take() {
            match usage {
                Some(_) => reservation.settle(prompt + completion, now),
                // Tokens were spent but not reported: charge the estimate.
                None if self.produced => reservation.settle(self.estimate, now),
                // Nothing reached a provider's model: release it.
                None => drop(reservation),
            }
        }
        self.record.status = status;
        self.record.prompt_tokens = prompt;
        self.record.completion_tokens = completion;
        self.record.cost = self.services.cost(&self.record.model, prompt, completion);
        self.record.latency_ms = self.started.elapsed().as_millis() as u64;
        let priced = self.services.prices.contains_key(&self.record.model);
        self.services.observer.ai_usage(&self.record, priced);
        let _ = self.account.slot.set(AiSummary {
            usage: self.record.clone(),
            cache: self.account.cache,
            priced,
        });
        self.services.ledger.record(self.record.clone());
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        // 499: the client closed the connection before the answer ended.
        self.settle(None, 499);
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A completion id unique in this process and unlikely to repeat across
/// restarts.
fn completion_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("chatcmpl-weir{:x}{:06x}", now_ms(), n & 0xff_ffff)
}

/// An error with `status`, `kind` and `message`.
pub(super) fn api_error(status: u16, kind: &str, message: &str) -> ApiError {
    ApiError {
        status,
        kind: kind.to_string(),
        message: message.to_string(),
        param: None,
        code: None,
    }
}

/// `{"error": {...}}`, OpenAI's error shape.
pub(super) fn error_json(error: &ApiError) -> Value {
    json!({"error": {
        "message": error.message,
        "type": error.kind,
        "param": error.param,
        "code": error.code,
    }})
}

/// An error as the client sees it.
pub fn error_response(error: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(error.status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    json_response(status, &error_json(error))
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error_response(&api_error(
        405,
        "invalid_request_error",
        &format!("this endpoint takes {allow}"),
    ));
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(full_body(value.to_string()));
    *response.status_mut() = status;
    set_json(&mut response);
    response
}

fn set_json(response: &mut Response<Body>) {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
}

fn set_event_stream(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

/// Say which target answered, and whether the cache was asked.
fn tag(response: &mut Response<Body>, target: &AiTarget, cache: Option<&'static str>) {
    let headers = response.headers_mut();
    if let Ok(name) = HeaderValue::from_str(&target.name) {
        headers.insert("x-weir-target", name);
    }
    if let Some(status) = cache {
        headers.insert("x-weir-cache", HeaderValue::from_static(status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_config::parse_target;

    fn shim_request(path: &str, key: KeyPlacement, headers: &[(&str, &str)]) -> ProviderRequest {
        ProviderRequest {
            method: "POST".into(),
            path: path.into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: b"{}".to_vec(),
            key,
        }
    }

    fn build(request: ProviderRequest) -> Result<Request<Body>, String> {
        let base = parse_target("https://api.provider.test").unwrap();
        let endpoint = Endpoint {
            name: "t",
            base: &base,
            base_path: "/v1",
            key: Some("sk-secret"),
        };
        provider_request(&endpoint, request)
    }

    #[test]
    fn the_key_goes_where_the_shim_says() {
        let request = build(shim_request("/chat?x=1", KeyPlacement::Query("key".into()), &[])).unwrap();
        assert_eq!(
            request.uri().to_string(),
            "https://api.provider.test:443/v1/chat?x=1&key=sk-secret"
        );
        let header = KeyPlacement::Header(("authorization".into(), "Bearer ".into()));
        let request = build(shim_request("/chat", header, &[])).unwrap();
        assert_eq!(request.headers()["authorization"], "Bearer sk-secret");
        assert!(request.headers()["authorization"].is_sensitive());
        assert_eq!(request.headers()[header::CONTENT_LENGTH], "2");
    }

    #[test]
    fn a_path_with_a_fragment_is_refused_rather_than_losing_the_key() {
        let error = build(shim_request("/chat#x", KeyPlacement::Query("key".into()), &[])).unwrap_err();
        assert!(error.contains("invalid path"), "{error}");
    }

    #[test]
    fn the_key_cannot_go_in_a_header_the_host_sets() {
        for name in ["content-length", "Host", "transfer-encoding", "connection"] {
            let placement = KeyPlacement::Header((name.into(), String::new()));
            let error = build(shim_request("/chat", placement, &[])).unwrap_err();
            assert!(error.contains("key header"), "{name}: {error}");
        }
    }

    #[test]
    fn connection_fields_from_a_shim_are_dropped_and_the_length_is_the_bodys() {
        let headers = [
            ("transfer-encoding", "chunked"),
            ("connection", "x-a"),
            ("x-a", "1"),
            ("content-length", "99"),
        ];
        let request = build(shim_request("/chat", KeyPlacement::None, &headers)).unwrap();
        let names: Vec<&str> = request.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-length"]);
        assert_eq!(request.headers()[header::CONTENT_LENGTH], "2");
    }
}
