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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use weir_config::OnUnavailable;
use weir_state::redis::RedisStore;

pub mod shared;

/// The consumer name under which requests without a consumer are counted.
pub const NO_CONSUMER: &str = "-";

pub use weir_config::budget::{BudgetConfig, BudgetRule, Period};

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
fn seconds_until(at_ms: i64, now_ms: i64) -> u64 {
    let ms = u64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0);
    ms.div_ceil(1000).max(1)
}

/// What a refusing limit reports; the caller adds the consumer.
struct Refusal {
    limit: LimitKind,
    limit_tokens: u64,
    used_tokens: u64,
    reserved_tokens: u64,
    retry_after_secs: u64,
}

/// A calendar-period budget.
#[derive(Debug)]
struct PeriodAccount {
    limit: u64,
    period: Period,
    end_ms: i64,
    used: u64,
    reserved: u64,
}

impl PeriodAccount {
    fn new(limit: u64, period: Period, now_ms: i64) -> PeriodAccount {
        PeriodAccount {
            limit,
            period,
            end_ms: period.window_end_ms(now_ms),
            used: 0,
            reserved: 0,
        }
    }

    /// Start a new window if `now_ms` is past this one. Reservations carry
    /// over: they are charged to whichever window they settle in.
    fn roll(&mut self, now_ms: i64) {
        if now_ms >= self.end_ms {
            self.end_ms = self.period.window_end_ms(now_ms);
            self.used = 0;
        }
    }

    fn refusal(&self, estimate: u64, now_ms: i64) -> Option<Refusal> {
        let wanted = self.used.saturating_add(self.reserved).saturating_add(estimate);
        (wanted > self.limit).then(|| Refusal {
            limit: LimitKind::Budget { period: self.period },
            limit_tokens: self.limit,
            used_tokens: self.used,
            reserved_tokens: self.reserved,
            retry_after_secs: seconds_until(self.end_ms, now_ms),
        })
    }
}

/// A rolling 60 s window, kept as tokens charged per second.
#[derive(Debug)]
struct MinuteAccount {
    limit: u64,
    /// (second since the epoch, tokens charged in it), oldest first.
    seconds: VecDeque<(i64, u64)>,
    used: u64,
    reserved: u64,
}

impl MinuteAccount {
    fn new(limit: u64) -> MinuteAccount {
        MinuteAccount {
            limit,
            seconds: VecDeque::new(),
            used: 0,
            reserved: 0,
        }
    }

    /// Forget the seconds that have left the window.
    fn expire(&mut self, now_ms: i64) {
        let now = now_ms.div_euclid(1000);
        while let Some(&(second, tokens)) = self.seconds.front() {
            if second > now - 60 {
                break;
            }
            self.used = self.used.saturating_sub(tokens);
            self.seconds.pop_front();
        }
    }

    fn charge(&mut self, tokens: u64, now_ms: i64) {
        let now = now_ms.div_euclid(1000);
        self.used = self.used.saturating_add(tokens);
        match self.seconds.back_mut() {
            // A clock read a little earlier on another thread lands in the
            // newest second rather than breaking the order.
            Some((second, charged)) if *second >= now => *charged = charged.saturating_add(tokens),
            _ => self.seconds.push_back((now, tokens)),
        }
    }

    fn refusal(&self, estimate: u64, now_ms: i64) -> Option<Refusal> {
        let wanted = self.used.saturating_add(self.reserved).saturating_add(estimate);
        if wanted <= self.limit {
            return None;
        }
        // Wait for the oldest seconds to expire until enough is freed; if
        // expiry alone cannot free enough (requests in flight hold it), wait
        // for everything charged to expire.
        let mut excess = wanted - self.limit;
        let mut free_at = now_ms;
        for &(second, tokens) in &self.seconds {
            free_at = (second + 60) * 1000;
            excess = excess.saturating_sub(tokens);
            if excess == 0 {
                break;
            }
        }
        Some(Refusal {
            limit: LimitKind::TokensPerMinute,
            limit_tokens: self.limit,
            used_tokens: self.used,
            reserved_tokens: self.reserved,
            retry_after_secs: seconds_until(free_at, now_ms),
        })
    }
}

/// One consumer's counts, one account per limit its rule sets.
#[derive(Debug)]
struct Account {
    period: Option<PeriodAccount>,
    minute: Option<MinuteAccount>,
}

impl Account {
    fn new(rule: &BudgetRule, now_ms: i64) -> Account {
        Account {
            period: rule
                .tokens
                .map(|limit| PeriodAccount::new(limit, rule.period.unwrap_or_default(), now_ms)),
            minute: rule.tokens_per_minute.map(MinuteAccount::new),
        }
    }

    fn advance(&mut self, now_ms: i64) {
        if let Some(period) = &mut self.period {
            period.roll(now_ms);
        }
        if let Some(minute) = &mut self.minute {
            minute.expire(now_ms);
        }
    }
}

/// Every consumer's budget state. Shared by all requests behind an `Arc`.
pub struct Budgets {
    default: Option<BudgetRule>,
    consumers: HashMap<String, BudgetRule>,
    /// The counts in this process: all of them, or with Redis, the local
    /// fallback.
    accounts: Mutex<HashMap<String, Account>>,
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

/// Why [`Budgets::admit`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// It could take the consumer over a limit.
    Exceeded(BudgetExceeded),
    /// The shared budget store is unavailable and the route fails closed.
    Unavailable(String),
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

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Account>> {
        // Every update is a few additions that cannot panic halfway, so a
        // poisoned lock still holds consistent counts.
        self.accounts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where `consumer`'s current budget window starts, or `None` when it
    /// has no period budget. After a restart, sum the ledger from here and
    /// pass the sum to [`Budgets::restore`].
    pub fn period_start_ms(&self, consumer: &str, now_ms: i64) -> Option<i64> {
        let rule = self.rule(consumer)?;
        rule.tokens?;
        Some(rule.period.unwrap_or_default().window_start_ms(now_ms))
    }

    /// Record that `consumer` already spent `spent_tokens` in the current
    /// window (read from the usage ledger after a restart). Takes the larger
    /// of this and what is already counted, so restoring twice does not
    /// count twice. The rolling minute is not restored.
    pub fn restore(&self, consumer: &str, spent_tokens: u64, now_ms: i64) {
        let Some(rule) = self.rule(consumer) else { return };
        let mut accounts = self.lock();
        let account = accounts
            .entry(consumer.to_owned())
            .or_insert_with(|| Account::new(rule, now_ms));
        account.advance(now_ms);
        if let Some(period) = &mut account.period {
            period.used = period.used.max(spent_tokens);
        }
    }

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
            .or_insert_with(|| Account::new(rule, now_ms));
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
    held: Option<Held>,
}

#[derive(Debug)]
enum Held {
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

#[cfg(test)]
mod tests {
    use super::*;
    use weir_config::budget::{DAY_MS, HOUR_MS, days_from_civil};

    /// 2026-02-15T12:00:00Z.
    const FEB_15_NOON: i64 = 1_771_156_800_000;

    fn ms(year: i64, month: u32, day: u32) -> i64 {
        days_from_civil(year, month, day) * DAY_MS
    }

    fn budgets(yaml_like: serde_json::Value) -> Arc<Budgets> {
        let config: BudgetConfig = serde_json::from_value(yaml_like).expect("budget config");
        Arc::new(Budgets::new(&config))
    }

    fn alice_budget(tokens: u64, period: &str) -> Arc<Budgets> {
        budgets(serde_json::json!({ "consumers": { "alice": { "tokens": tokens, "period": period } } }))
    }

    /// (used, reserved) of the consumer's period budget and rolling minute.
    fn counts(budgets: &Budgets, consumer: &str) -> ((u64, u64), (u64, u64)) {
        let accounts = budgets.lock();
        let account = &accounts[consumer];
        (
            account.period.as_ref().map_or((0, 0), |p| (p.used, p.reserved)),
            account.minute.as_ref().map_or((0, 0), |m| (m.used, m.reserved)),
        )
    }

    #[test]
    fn reserve_holds_the_estimate_and_settle_charges_the_actual_count() {
        let budgets = alice_budget(1000, "day");
        let first = budgets.reserve(Some("alice"), 300, FEB_15_NOON).unwrap();
        let second = budgets.reserve(Some("alice"), 500, FEB_15_NOON).unwrap();
        assert_eq!(counts(&budgets, "alice").0, (0, 800));
        first.settle(120, FEB_15_NOON);
        assert_eq!(counts(&budgets, "alice").0, (120, 500));
        second.settle(480, FEB_15_NOON);
        assert_eq!(counts(&budgets, "alice").0, (600, 0));
        // 600 used + 400 = 1000 exactly fits; one more token does not.
        assert!(budgets.reserve(Some("alice"), 401, FEB_15_NOON).is_err());
        budgets
            .reserve(Some("alice"), 400, FEB_15_NOON)
            .unwrap()
            .settle(400, FEB_15_NOON);
        assert_eq!(counts(&budgets, "alice").0, (1000, 0));
    }

    #[test]
    fn refusal_names_the_consumer_the_limit_and_the_numbers() {
        let budgets = alice_budget(10_000, "day");
        budgets.restore("alice", 9_800, FEB_15_NOON);
        let _in_flight = budgets.reserve(Some("alice"), 150, FEB_15_NOON).unwrap();
        let refused = budgets.reserve(Some("alice"), 400, FEB_15_NOON).unwrap_err();
        assert_eq!(
            refused,
            BudgetExceeded {
                consumer: "alice".into(),
                limit: LimitKind::Budget { period: Period::Day },
                limit_tokens: 10_000,
                used_tokens: 9_800,
                reserved_tokens: 150,
                requested_tokens: 400,
                retry_after_secs: 12 * 3600,
            }
        );
        assert_eq!(
            refused.to_string(),
            "consumer alice: token budget of 10000 per day exhausted (9800 used, 150 reserved by requests in \
             flight, this request needs up to 400); retry in 43200 s"
        );
        assert!(!refused.can_never_fit());
    }

    #[test]
    fn a_request_larger_than_the_whole_limit_is_refused_at_once() {
        let budgets = alice_budget(1000, "hour");
        let refused = budgets.reserve(Some("alice"), 1001, FEB_15_NOON).unwrap_err();
        assert!(refused.can_never_fit());
        assert_eq!(
            refused.to_string(),
            "consumer alice: this request needs up to 1001 tokens, more than the whole token budget of 1000 per \
             hour; it can never be admitted (ask for fewer with max_tokens)"
        );
        assert_eq!(counts(&budgets, "alice").0, (0, 0));
    }

    #[test]
    fn listed_consumers_follow_their_rule_and_the_rest_the_default() {
        let budgets = budgets(serde_json::json!({
            "default": { "tokens": 100 },
            "consumers": { "alice": { "tokens": 1000 }, "root": {} }
        }));
        budgets
            .reserve(Some("alice"), 1000, FEB_15_NOON)
            .unwrap()
            .settle(1000, FEB_15_NOON);
        assert_eq!(
            budgets.reserve(Some("bob"), 101, FEB_15_NOON).unwrap_err().limit_tokens,
            100
        );
        budgets
            .reserve(Some("bob"), 100, FEB_15_NOON)
            .unwrap()
            .settle(100, FEB_15_NOON);
        // Each consumer under the default has its own 100, and requests
        // without a consumer share one as `-`.
        budgets
            .reserve(Some("carol"), 100, FEB_15_NOON)
            .unwrap()
            .settle(100, FEB_15_NOON);
        budgets
            .reserve(None, 100, FEB_15_NOON)
            .unwrap()
            .settle(100, FEB_15_NOON);
        let anonymous = budgets.reserve(None, 1, FEB_15_NOON).unwrap_err();
        assert_eq!(anonymous.consumer, "-");
        // An empty rule exempts a consumer from the default.
        let root = budgets.reserve(Some("root"), u64::MAX, FEB_15_NOON).unwrap();
        assert!(!root.is_limited());
        assert_eq!(budgets.period_start_ms("root", FEB_15_NOON), None);
        assert_eq!(budgets.period_start_ms("bob", FEB_15_NOON), Some(ms(2026, 2, 15)));
    }

    #[test]
    fn consumers_without_any_rule_are_unlimited() {
        let budgets = Arc::new(Budgets::new(&BudgetConfig::default()));
        let reservation = budgets.reserve(Some("anyone"), u64::MAX, FEB_15_NOON).unwrap();
        assert!(!reservation.is_limited());
        reservation.settle(u64::MAX, FEB_15_NOON);
        assert!(budgets.lock().is_empty(), "no state is kept for them");
        assert_eq!(budgets.period_start_ms("anyone", FEB_15_NOON), None);
    }

    #[test]
    fn a_day_budget_starts_again_at_midnight_utc() {
        let budgets = alice_budget(1000, "day");
        budgets
            .reserve(Some("alice"), 1000, FEB_15_NOON)
            .unwrap()
            .settle(1000, FEB_15_NOON);
        let refused = budgets.reserve(Some("alice"), 1, ms(2026, 2, 16) - 1).unwrap_err();
        assert_eq!(refused.retry_after_secs, 1);
        budgets
            .reserve(Some("alice"), 1000, ms(2026, 2, 16))
            .unwrap()
            .settle(10, ms(2026, 2, 16));
        assert_eq!(counts(&budgets, "alice").0, (10, 0));
    }

    #[test]
    fn a_month_budget_covers_the_calendar_month() {
        let budgets = alice_budget(1000, "month");
        budgets
            .reserve(Some("alice"), 900, ms(2026, 2, 1))
            .unwrap()
            .settle(900, ms(2026, 2, 1));
        let refused = budgets
            .reserve(Some("alice"), 200, ms(2026, 2, 28) + 23 * HOUR_MS)
            .unwrap_err();
        assert_eq!(refused.retry_after_secs, 3600, "February 2026 ends after the 28th");
        assert_eq!(refused.limit, LimitKind::Budget { period: Period::Month });
        budgets
            .reserve(Some("alice"), 1000, ms(2026, 3, 1))
            .unwrap()
            .settle(1000, ms(2026, 3, 1));
        assert!(budgets.reserve(Some("alice"), 1, ms(2026, 3, 31)).is_err());
        assert!(budgets.reserve(Some("alice"), 1, ms(2026, 4, 1)).is_ok());
    }

    #[test]
    fn a_request_in_flight_over_midnight_is_charged_to_the_new_day() {
        let budgets = alice_budget(1000, "day");
        let late = budgets.reserve(Some("alice"), 600, ms(2026, 2, 16) - 1000).unwrap();
        // The new day starts with nothing used, but the reservation still
        // holds its room.
        assert!(budgets.reserve(Some("alice"), 401, ms(2026, 2, 16)).is_err());
        late.settle(500, ms(2026, 2, 16) + 1000);
        assert_eq!(counts(&budgets, "alice").0, (500, 0));
    }

    #[test]
    fn the_rolling_minute_frees_tokens_sixty_seconds_after_they_were_used() {
        let budgets = budgets(serde_json::json!({ "consumers": { "alice": { "tokens_per_minute": 1000 } } }));
        let start = FEB_15_NOON;
        budgets.reserve(Some("alice"), 600, start).unwrap().settle(600, start);
        budgets
            .reserve(Some("alice"), 400, start + 20_000)
            .unwrap()
            .settle(400, start + 20_000);
        let refused = budgets.reserve(Some("alice"), 500, start + 30_000).unwrap_err();
        assert_eq!(refused.limit, LimitKind::TokensPerMinute);
        assert_eq!(refused.retry_after_secs, 30, "the first 600 expire at +60 s");
        assert_eq!(
            refused.to_string(),
            "consumer alice: limit of 1000 tokens per minute reached (1000 used in the last 60 s, 0 reserved by \
             requests in flight, this request needs up to 500); retry in 30 s"
        );
        assert!(budgets.reserve(Some("alice"), 500, start + 59_999).is_err());
        budgets
            .reserve(Some("alice"), 600, start + 60_000)
            .unwrap()
            .settle(600, start + 60_000);
        assert_eq!(counts(&budgets, "alice").1, (1000, 0));
        let refused = budgets.reserve(Some("alice"), 1000, start + 61_000).unwrap_err();
        assert_eq!(refused.retry_after_secs, 59, "both later charges must expire");
        assert!(budgets.reserve(Some("alice"), 1000, start + 120_000).is_ok());
    }

    #[test]
    fn with_both_limits_the_one_that_frees_last_is_reported() {
        let budgets = budgets(serde_json::json!({
            "consumers": { "alice": { "tokens": 1000, "period": "hour", "tokens_per_minute": 500 } }
        }));
        budgets
            .reserve(Some("alice"), 500, FEB_15_NOON)
            .unwrap()
            .settle(500, FEB_15_NOON);
        let minute = budgets.reserve(Some("alice"), 100, FEB_15_NOON + 1000).unwrap_err();
        assert_eq!(minute.limit, LimitKind::TokensPerMinute);
        budgets
            .reserve(Some("alice"), 500, FEB_15_NOON + 60_000)
            .unwrap()
            .settle(500, FEB_15_NOON + 60_000);
        let both = budgets.reserve(Some("alice"), 100, FEB_15_NOON + 61_000).unwrap_err();
        assert_eq!(both.limit, LimitKind::Budget { period: Period::Hour });
        assert_eq!(both.retry_after_secs, 3600 - 61);
    }

    #[test]
    fn dropping_a_reservation_releases_it_and_charges_nothing() {
        let budgets = budgets(serde_json::json!({
            "consumers": { "alice": { "tokens": 1000, "tokens_per_minute": 1000 } }
        }));
        let failed = budgets.reserve(Some("alice"), 1000, FEB_15_NOON).unwrap();
        assert!(budgets.reserve(Some("alice"), 1, FEB_15_NOON).is_err());
        drop(failed);
        assert_eq!(counts(&budgets, "alice"), ((0, 0), (0, 0)));
        assert!(budgets.reserve(Some("alice"), 1000, FEB_15_NOON).is_ok());
    }

    #[test]
    fn restore_counts_what_the_ledger_says_was_spent() {
        let budgets = alice_budget(1000, "month");
        let now = ms(2026, 2, 20);
        assert_eq!(budgets.period_start_ms("alice", now), Some(ms(2026, 2, 1)));
        budgets.restore("alice", 700, now);
        budgets.restore("alice", 700, now);
        assert_eq!(
            counts(&budgets, "alice").0,
            (700, 0),
            "restoring twice does not count twice"
        );
        assert_eq!(budgets.reserve(Some("alice"), 301, now).unwrap_err().used_tokens, 700);
        assert!(budgets.reserve(Some("alice"), 300, now).is_ok());
        budgets.restore("nobody", 5, now);
        assert!(
            !budgets.lock().contains_key("nobody"),
            "consumers without a rule keep no state"
        );
    }

    /// 64 threads reserving and settling for one consumer: with estimates
    /// that bound the actual count, `used + reserved` never passes the
    /// limit, and the budget still fills up.
    #[test]
    fn sixty_four_threads_never_exceed_the_limit() {
        const LIMIT: u64 = 50_000;
        let budgets = budgets(serde_json::json!({
            "consumers": { "alice": { "tokens": LIMIT, "tokens_per_minute": LIMIT } }
        }));
        std::thread::scope(|scope| {
            for thread in 0..64u64 {
                let budgets = &budgets;
                scope.spawn(move || {
                    for i in 0..400u64 {
                        let estimate = 1 + (thread * 7 + i * 13) % 100;
                        let now = FEB_15_NOON + (i % 50) as i64;
                        let Ok(reservation) = budgets.reserve(Some("alice"), estimate, now) else {
                            continue;
                        };
                        match i % 5 {
                            0 => drop(reservation),
                            1 => reservation.settle(estimate / 2, now),
                            _ => reservation.settle(estimate, now),
                        }
                        let ((used, reserved), (minute_used, minute_reserved)) = counts(budgets, "alice");
                        assert!(used + reserved <= LIMIT, "{used} + {reserved}");
                        assert!(
                            minute_used + minute_reserved <= LIMIT,
                            "{minute_used} + {minute_reserved}"
                        );
                    }
                });
            }
        });
        let ((used, reserved), _) = counts(&budgets, "alice");
        assert_eq!(reserved, 0, "every reservation was released");
        assert!(used <= LIMIT, "used {used}");
        // Nothing leaked: what is left can still be spent, to the token.
        while let Ok(reservation) = budgets.reserve(Some("alice"), 1, FEB_15_NOON) {
            reservation.settle(1, FEB_15_NOON);
        }
        assert_eq!(counts(&budgets, "alice").0, (LIMIT, 0));
    }

    /// When actual counts exceed estimates by `OVER`, the overshoot is at
    /// most `OVER` per request that was in flight at once (64 here).
    #[test]
    fn sixty_four_threads_overshoot_by_at_most_the_excess_of_requests_in_flight() {
        const LIMIT: u64 = 50_000;
        const OVER: u64 = 10;
        let budgets = alice_budget(LIMIT, "day");
        std::thread::scope(|scope| {
            for thread in 0..64u64 {
                let budgets = &budgets;
                scope.spawn(move || {
                    for i in 0..400u64 {
                        let estimate = 1 + (thread * 7 + i * 13) % 100;
                        if let Ok(reservation) = budgets.reserve(Some("alice"), estimate, FEB_15_NOON) {
                            reservation.settle(estimate + OVER, FEB_15_NOON);
                        }
                    }
                });
            }
        });
        let ((used, reserved), _) = counts(&budgets, "alice");
        assert_eq!(reserved, 0);
        assert!(used <= LIMIT + 64 * OVER, "used {used}");
    }

    #[test]
    fn config_refuses_unknown_keys_and_reports_a_period_without_tokens() {
        let unknown = serde_json::from_value::<BudgetConfig>(serde_json::json!({
            "consumers": { "alice": { "token": 5 } }
        }));
        assert!(unknown.unwrap_err().to_string().contains("token"));
        let config: BudgetConfig = serde_json::from_value(serde_json::json!({
            "default": { "period": "hour" },
            "consumers": { "bob": { "tokens_per_minute": 5, "period": "month" }, "alice": { "tokens": 5 } }
        }))
        .unwrap();
        assert_eq!(
            config.validate(),
            [
                "default.period: a period needs `tokens` to say the budget",
                "consumers.bob.period: a period needs `tokens` to say the budget",
            ]
        );
    }
}
