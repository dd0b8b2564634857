//! The AI gateway: one OpenAI-compatible API in front of many providers.
//!
//! An AI route (a route with `ai` instead of `upstream`) serves OpenAI's
//! `POST .../chat/completions` (streamed and not) and `GET .../models`
//! under its prefix, after the route's plugin chain has run (so the
//! request carries a `consumer` from an auth plugin, and a template plugin
//! may have written the body). For each request the host:
//!
//! 1. reads the body and the few fields it needs itself (model, stream,
//!    max tokens, temperature) — the provider shims read the rest;
//! 2. answers from the route's [`cache`] when it can;
//! 3. reserves the request's estimated tokens against the consumer's
//!    [`budget`]s, refusing with 429 when a budget is exhausted;
//! 4. tries the [`targets`] serving the requested model, by priority and
//!    weight: the target's shim translates the request, the host inserts
//!    the target's key and sends it, and moves on to the next target on a
//!    connect error, timeout, 429 or 5xx — as long as nothing has been
//!    sent to the client ([`chat`]);
//! 5. answers with the shim's translation, or relays the stream through
//!    the shim chunk by chunk ([`relay`]), ending a stream that breaks
//!    with an OpenAI-style error event;
//! 6. settles the reservation with the provider's token counts and
//!    records the request in the [`usage`] ledger.

pub mod budget;
pub mod cache;
pub mod chat;
pub mod redact;
pub mod targets;
pub mod usage;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;

use budget::Budgets;
use usage::UsageLedger;
use weir_config::ModelPrice;

/// What every AI route of a config shares: the usage ledger (which
/// outlives config reloads), budgets and prices.
pub struct AiServices {
    /// Where usage is recorded.
    pub ledger: Arc<UsageLedger>,
    /// Token budgets per consumer.
    pub budgets: Arc<Budgets>,
    /// Prices per provider model.
    pub prices: BTreeMap<String, ModelPrice>,
    /// Where AI usage is reported (metrics, the dashboard).
    pub observer: Arc<weir_observe::Observer>,
}

impl AiServices {
    /// The cost of a request's tokens on `model` (0 without a price).
    pub fn cost(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        self.prices.get(model).map_or(0.0, |p| {
            (prompt_tokens as f64 * p.input_per_million + completion_tokens as f64 * p.output_per_million) / 1e6
        })
    }
}

pub use weir_core::clock::now_ms;
