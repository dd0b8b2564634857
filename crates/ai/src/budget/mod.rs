//! Per-consumer token budgets (so many tokens per minute, hour, day or month)
//! and tokens-per-minute limits, which concurrent requests cannot overshoot.
//!
//! # Reserve, then settle
//! A request's size is only known once the provider has answered, but the
//! decision to send it must be made before. So each limit keeps two counts:
//! `used`, the tokens charged by finished requests, and `reserved`, the
//! estimates of requests still in flight. [`Budgets::reserve`] admits a request
//! only if `used + reserved + estimate <= limit` for every limit that applies,
//! and then adds its estimate to `reserved`. [`Reservation::settle`] takes the
//! estimate back out and charges the actual count; dropping a reservation
//! unsettled (the request failed before the provider answered) only takes the
//! estimate back out.
//!
//! So in-flight requests can overshoot a limit only by what their actual
//! counts exceed their estimates: with an upper-bound estimate (prompt tokens
//! plus `max_tokens`) a limit is never exceeded at all.
//!
//! # Windows
//! Budgets are calendar-aligned in UTC: a day budget resets at 00:00 UTC, a
//! month budget on the 1st. When a window ends, `used` starts again from zero
//! while reservations still in flight stay reserved, and are charged to the
//! new window when they settle. The tokens-per-minute limit is a rolling 60 s
//! window kept to the second: tokens charged during second `s` stop counting
//! at second `s + 60`.
//!
//! Every function takes the time as `now_ms` (Unix ms), so callers pass the
//! clock and tests control it. State lives in memory behind one mutex, never
//! held across an await; after a restart, [`Budgets::restore`] puts back what
//! the usage ledger says each consumer spent in the current window.
//!
//! # Shared by several gateways
//! With Redis as the gateway's `state`, [`Budgets::admit`] keeps the same
//! counts in Redis instead, one hash per consumer, reserved and settled by
//! server-side scripts ([`shared`]), so gateways sharing it admit no more
//! between them than one would alone. While Redis is unavailable a route
//! either refuses (fail closed) or falls back to the in-memory counts above
//! (`local`).
//!
//! # Where each part lives
//! This module holds the rules as loaded (a consumer's own, or the
//! default) and [`Budgets::admit`], which counts in Redis or in memory.
//! `refusal` is what a refused request is told, `accounts` the in-memory
//! counts of each limit, `reserve` reserving and settling them
//! ([`Reservation`]), `restore` the counts put back at start-up, and
//! [`shared`] the same counts kept in Redis.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use weir_config::OnUnavailable;
use weir_state::redis::RedisStore;

mod accounts;
mod refusal;
mod reserve;
mod restore;
pub mod shared;
#[cfg(test)]
mod tests;

pub use refusal::{BudgetExceeded, Denied, LimitKind};
pub use reserve::Reservation;

use accounts::ConsumerAccount;
use reserve::Held;

/// The consumer name under which requests without a consumer are counted.
pub const NO_CONSUMER: &str = "-";

pub use weir_config::budget::{BudgetConfig, BudgetRule, Period};

/// Every consumer's budget state. Shared by all requests behind an `Arc`.
pub struct Budgets {
    default: Option<BudgetRule>,
    consumers: HashMap<String, BudgetRule>,
    /// The counts in this process: all of them, or with Redis, the local
    /// fallback.
    accounts: Mutex<HashMap<String, ConsumerAccount>>,
    /// Where gateways sharing budgets keep them.
    shared: Option<Arc<RedisStore>>,
}

impl fmt::Debug for Budgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budgets")
            .field("default", &self.default)
            .field("consumers", &self.consumers)
            .field("shared", &self.shared.as_ref().map(|r| r.url().to_string()))
            .finish_non_exhaustive()
    }
}

impl Budgets {
    /// Budgets with nothing spent yet, kept in this process.
    pub fn new(config: &BudgetConfig) -> Budgets {
        Budgets {
            default: config.default.clone(),
            consumers: config.consumers.clone(),
            accounts: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// Budgets kept in `redis`, shared with every gateway using it (and in
    /// this process while it is unavailable, for routes that fall back).
    pub fn shared(config: &BudgetConfig, redis: Arc<RedisStore>) -> Budgets {
        Budgets {
            shared: Some(redis),
            ..Budgets::new(config)
        }
    }

    /// Whether the counts live in Redis (so a restart keeps them and the
    /// ledger need not restore them).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Admit a request that may use up to `estimate` tokens: in Redis when
    /// budgets are shared (following `policy` while it is unavailable), in
    /// this process otherwise.
    pub async fn admit(
        self: &Arc<Self>,
        consumer: Option<&str>,
        estimate: u64,
        now_ms: i64,
        policy: OnUnavailable,
    ) -> Result<Reservation, Denied> {
        let Some(redis) = &self.shared else {
            return self.reserve(consumer, estimate, now_ms).map_err(Denied::Exceeded);
        };
        let consumer = consumer.unwrap_or(NO_CONSUMER);
        let Some(rule) = self.rule(consumer) else {
            return Ok(Reservation { held: None });
        };
        match shared::reserve(redis, consumer, rule, estimate, now_ms).await {
            Ok(Ok(id)) => Ok(Reservation {
                held: Some(Held::Shared {
                    budgets: Arc::clone(self),
                    redis: redis.clone(),
                    consumer: consumer.to_owned(),
                    id,
                    estimate,
                }),
            }),
            Ok(Err(exceeded)) => Err(Denied::Exceeded(exceeded)),
            Err(unavailable) => match policy {
                OnUnavailable::Local => self.reserve(Some(consumer), estimate, now_ms).map_err(Denied::Exceeded),
                OnUnavailable::FailClosed => Err(Denied::Unavailable(unavailable)),
            },
        }
    }

    /// The rule for `consumer`, if it limits anything.
    fn rule(&self, consumer: &str) -> Option<&BudgetRule> {
        self.consumers
            .get(consumer)
            .or(self.default.as_ref())
            .filter(|rule| rule.limits_anything())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, ConsumerAccount>> {
        // Every update is a few additions that cannot panic halfway, so a
        // poisoned lock still holds consistent counts.
        self.accounts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
