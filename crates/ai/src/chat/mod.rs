//! Serving one request on an AI route: `GET .../models` and
//! `POST .../chat/completions`, with cache, budgets, failover across the
//! route's targets, and usage accounting.
//!
//! [`AiRouteBackend`] is what the proxy hands an AI route's requests to
//! (as a `weir_proxy::AiBackend`); [`serve`] tells the two endpoints
//! apart. A chat request then goes through, one module each:
//!
//! - `flow`: the request's course: the fields the host reads itself, the
//!   cache lookup, the budget reservation, then the plan of targets;
//! - `failover`: the targets in the order `weir_select` planned, moving
//!   on while nothing has reached the client, and each target's health;
//! - `attempt`: one try of one target through its provider shim, and
//!   whether its failure is the target's (try another) or the request's;
//! - `provider_request`: the HTTP request a shim's translation becomes,
//!   with the target's key where the shim said;
//! - `answer`: the answer reaching the client, whole, streamed through
//!   the relay, or replayed from the cache;
//! - `relay`: a provider's stream fed through its shim's translator and
//!   framed as server-sent events;
//! - `accounting`: the reservation settled and the usage recorded, once;
//! - `response`: errors (in OpenAI's shape, `crate::wire`) as responses,
//!   and the response headers.
//!
//! Invariants: every failure the client sees is an OpenAI-shaped error
//! response; nothing is sent to the client before a target has answered,
//! so failing over never repeats or mixes answers; every request that got
//! past parsing leaves exactly one usage record, whether it was answered,
//! refused, broken or abandoned by its client.

mod accounting;
mod answer;
mod attempt;
mod failover;
mod flow;
mod provider_request;
mod relay;
mod response;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::AiServices;
use crate::targets::AiRoute;
use weir_core::body::Body;
use weir_plugins::capabilities::shim::exports::weir::plugin::provider::ApiError;
use weir_proxy::{AiBackend, AiCall};

use crate::wire::api_error;
pub use provider_request::{Endpoint, provider_request};
pub use response::error_response;

use response::{json_response, method_not_allowed};

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
    flow::chat(request).await
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
