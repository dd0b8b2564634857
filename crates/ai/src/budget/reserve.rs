//! Reserve, then settle: room held in the in-memory counts for each
//! request in flight, and given back with the request's actual count.
//!
//! Invariants: a request is admitted only if, for every limit its
//! consumer's rule sets, `used + reserved + estimate <= limit`, checked
//! and reserved under one lock, never held across an await. A
//! [`Reservation`] is released exactly once: settled with the tokens
//! used, charged to the window holding the time of settling, or dropped
//! unsettled, which takes its estimate back and charges nothing. When
//! both limits refuse, the one that frees last is reported. Consumers
//! without a rule are admitted without locking and keep no state.

use std::sync::Arc;

use super::accounts::ConsumerAccount;
use super::{BudgetExceeded, Budgets, NO_CONSUMER, shared};
use weir_state::redis::RedisStore;

impl Budgets {
    /// Admit a request that may use up to `estimate` tokens, or refuse it
    /// with the limit it would break. Requests without a consumer count as
    /// consumer `-`. Consumers without a rule are admitted without locking.
    pub fn reserve(
        self: &Arc<Self>,
        consumer: Option<&str>,
        estimate: u64,
        now_ms: i64,
    ) -> Result<Reservation, BudgetExceeded> {
        let consumer = consumer.unwrap_or(NO_CONSUMER);
        let Some(rule) = self.rule(consumer) else {
            return Ok(Reservation { held: None });
        };
        let mut accounts = self.lock();
        let account = accounts
            .entry(consumer.to_owned())
            .or_insert_with(|| ConsumerAccount::new(rule, now_ms));
        account.advance(now_ms);

        let refusals = [
            account
                .period
                .as_ref()
                .and_then(|period| period.refusal(estimate, now_ms)),
            account
                .minute
                .as_ref()
                .and_then(|minute| minute.refusal(estimate, now_ms)),
        ];
        // When both refuse, report the one that frees last.
        if let Some(refusal) = refusals
            .into_iter()
            .flatten()
            .max_by_key(|refusal| refusal.retry_after_secs)
        {
            return Err(BudgetExceeded {
                consumer: consumer.to_owned(),
                limit: refusal.limit,
                limit_tokens: refusal.limit_tokens,
                used_tokens: refusal.used_tokens,
                reserved_tokens: refusal.reserved_tokens,
                requested_tokens: estimate,
                retry_after_secs: refusal.retry_after_secs,
            });
        }
        if let Some(period) = &mut account.period {
            period.reserved = period.reserved.saturating_add(estimate);
        }
        if let Some(minute) = &mut account.minute {
            minute.reserved = minute.reserved.saturating_add(estimate);
        }
        Ok(Reservation {
            held: Some(Held::Local {
                budgets: Arc::clone(self),
                consumer: consumer.to_owned(),
                estimate,
            }),
        })
    }

    /// Take `estimate` out of the consumer's reservations and, when the
    /// request finished, charge what it used at `now_ms`.
    fn release(&self, consumer: &str, estimate: u64, charge: Option<(u64, i64)>) {
        let mut accounts = self.lock();
        let Some(account) = accounts.get_mut(consumer) else {
            return;
        };
        if let Some((_, now_ms)) = charge {
            account.advance(now_ms);
        }
        if let Some(period) = &mut account.period {
            period.reserved = period.reserved.saturating_sub(estimate);
            if let Some((actual, _)) = charge {
                period.used = period.used.saturating_add(actual);
            }
        }
        if let Some(minute) = &mut account.minute {
            minute.reserved = minute.reserved.saturating_sub(estimate);
            if let Some((actual, now_ms)) = charge {
                minute.charge(actual, now_ms);
            }
        }
    }
}

/// Room held for one request in flight. Settle it with the tokens the request
/// used; dropping it unsettled gives the room back and charges nothing.
#[derive(Debug)]
#[must_use = "dropping a reservation releases it at once"]
pub struct Reservation {
    /// `None` for consumers without limits.
    pub(super) held: Option<Held>,
}

/// What a reservation holds, and where.
#[derive(Debug)]
pub(super) enum Held {
    /// Counted in this process.
    Local {
        budgets: Arc<Budgets>,
        consumer: String,
        estimate: u64,
    },
    /// Counted in Redis under reservation `id`.
    Shared {
        budgets: Arc<Budgets>,
        redis: Arc<RedisStore>,
        consumer: String,
        id: String,
        estimate: u64,
    },
}

impl Held {
    /// Give the room back, charging `charge` (tokens, at ms) if given.
    fn release(self, charge: Option<(u64, i64)>) {
        match self {
            Held::Local {
                budgets,
                consumer,
                estimate,
            } => budgets.release(&consumer, estimate, charge),
            Held::Shared {
                budgets,
                redis,
                consumer,
                id,
                estimate,
            } => {
                let Some(rule) = budgets.rule(&consumer).cloned() else {
                    return;
                };
                shared::release(redis, consumer, rule, id, estimate, charge);
            }
        }
    }
}

impl Reservation {
    /// Release the estimate and charge `actual_tokens` to the window holding
    /// `now_ms`.
    pub fn settle(mut self, actual_tokens: u64, now_ms: i64) {
        if let Some(held) = self.held.take() {
            held.release(Some((actual_tokens, now_ms)));
        }
    }

    /// Whether a limit applies to this request (false for unlimited
    /// consumers, whose reservations do nothing).
    pub fn is_limited(&self) -> bool {
        self.held.is_some()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            held.release(None);
        }
    }
}
