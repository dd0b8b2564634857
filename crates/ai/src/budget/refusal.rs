//! What a budget answers when it refuses a request: which limit refused
//! it, with the numbers behind the refusal and how long to wait.
//!
//! Invariants: a refusal always carries the consumer (`-` for requests
//! without one), the limit and its counts at the moment of refusal, and a
//! wait of at least one second. A request that needs more than the whole
//! limit says so ([`BudgetExceeded::can_never_fit`]), since no wait will
//! let it through.

use std::fmt;

use super::Period;

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// The token budget of a calendar period.
    Budget {
        /// The budget's period.
        period: Period,
    },
    /// The rolling tokens-per-minute limit.
    TokensPerMinute,
}

/// A request refused because it could take a consumer over a limit.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub struct BudgetExceeded {
    /// The consumer (`-` for requests without one).
    pub consumer: String,
    /// The limit that refused it.
    pub limit: LimitKind,
    /// That limit, in tokens.
    pub limit_tokens: u64,
    /// Tokens charged in the current window.
    pub used_tokens: u64,
    /// Tokens reserved by requests in flight.
    pub reserved_tokens: u64,
    /// This request's estimate.
    pub requested_tokens: u64,
    /// Seconds until the window frees enough (at least 1). A hint only when
    /// requests in flight hold the room, or when the request can never fit.
    pub retry_after_secs: u64,
}

impl BudgetExceeded {
    /// Whether the request needs more than the whole limit, so that no wait
    /// will let it through.
    pub fn can_never_fit(&self) -> bool {
        self.requested_tokens > self.limit_tokens
    }
}

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, used_when, verb) = match self.limit {
            LimitKind::Budget { period } => (
                format!("token budget of {} per {period}", self.limit_tokens),
                "used",
                "exhausted",
            ),
            LimitKind::TokensPerMinute => (
                format!("limit of {} tokens per minute", self.limit_tokens),
                "used in the last 60 s",
                "reached",
            ),
        };
        if self.can_never_fit() {
            return write!(
                f,
                "consumer {}: this request needs up to {} tokens, more than the whole {what}; it can never be \
                 admitted (ask for fewer with max_tokens)",
                self.consumer, self.requested_tokens
            );
        }
        write!(
            f,
            "consumer {}: {what} {verb} ({} {used_when}, {} reserved by requests in flight, \
             this request needs up to {}); retry in {} s",
            self.consumer, self.used_tokens, self.reserved_tokens, self.requested_tokens, self.retry_after_secs
        )
    }
}

/// Seconds from `now_ms` until `at_ms`, rounded up, at least 1.
pub(super) fn seconds_until(at_ms: i64, now_ms: i64) -> u64 {
    let ms = u64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0);
    ms.div_ceil(1000).max(1)
}

/// What a refusing limit reports; the caller adds the consumer.
pub(super) struct Refusal {
    pub(super) limit: LimitKind,
    pub(super) limit_tokens: u64,
    pub(super) used_tokens: u64,
    pub(super) reserved_tokens: u64,
    pub(super) retry_after_secs: u64,
}

/// Why [`Budgets::admit`](super::Budgets::admit) refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// It could take the consumer over a limit.
    Exceeded(BudgetExceeded),
    /// The shared budget store is unavailable and the route fails closed.
    Unavailable(String),
}
