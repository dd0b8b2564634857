//! What an AI route reports of one request: its usage record (the row
//! the usage ledger keeps, and what the AI metrics count) and, for the
//! access log, the cache status beside it.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

/// One AI request the gateway served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// When the request arrived, in Unix milliseconds.
    pub time_ms: i64,
    /// The gateway's id for the request.
    pub request_id: String,
    /// Who made it, when the request was authenticated.
    pub consumer: Option<String>,
    /// The route that served it.
    pub route: String,
    /// The target (provider) it was sent to.
    pub target: String,
    /// The model that answered.
    pub model: String,
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens in the completion.
    pub completion_tokens: u64,
    /// What the request cost, in the currency of the configured prices.
    pub cost: f64,
    /// From arrival to the last byte of the answer.
    pub latency_ms: u64,
    /// Time to first token, for streamed answers.
    pub ttft_ms: Option<u64>,
    /// The HTTP status answered.
    pub status: u16,
    /// Whether the answer was streamed.
    pub streamed: bool,
    /// Whether the answer came from the cache.
    pub cached: bool,
}

/// Where an AI route leaves its account of a request.
pub type AiSlot = Arc<OnceLock<AiSummary>>;

/// An AI route's account of one request, for the access log.
#[derive(Debug, Clone)]
pub struct AiSummary {
    /// The usage record (target, model, tokens, cost, latencies).
    pub usage: UsageRecord,
    /// `hit`, `miss`, or `bypass` (not cacheable); `None` when the route
    /// has no cache.
    pub cache: Option<&'static str>,
    /// Whether the model has a price (otherwise the cost means nothing).
    pub priced: bool,
}
