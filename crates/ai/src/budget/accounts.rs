//! The counts kept in this process for each consumer: one account per
//! limit its rule sets, a calendar-period budget and a rolling minute.
//!
//! Invariants: `used` is what finished requests were charged in the
//! current window and `reserved` what requests in flight hold; a limit
//! refuses whenever `used + reserved + estimate` would pass it. A period
//! account starts again from zero `used` when its window ends, keeping
//! its reservations; the rolling minute forgets the tokens charged in a
//! second 60 s later. Counting saturates rather than overflows.

use std::collections::VecDeque;

use super::refusal::{LimitKind, Refusal, seconds_until};
use super::{BudgetRule, Period};

/// A calendar-period budget.
#[derive(Debug)]
pub(super) struct PeriodAccount {
    limit: u64,
    period: Period,
    end_ms: i64,
    pub(super) used: u64,
    pub(super) reserved: u64,
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

    pub(super) fn refusal(&self, estimate: u64, now_ms: i64) -> Option<Refusal> {
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
pub(super) struct MinuteAccount {
    limit: u64,
    /// (second since the epoch, tokens charged in it), oldest first.
    seconds: VecDeque<(i64, u64)>,
    pub(super) used: u64,
    pub(super) reserved: u64,
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

    pub(super) fn charge(&mut self, tokens: u64, now_ms: i64) {
        let now = now_ms.div_euclid(1000);
        self.used = self.used.saturating_add(tokens);
        match self.seconds.back_mut() {
            // A clock read a little earlier on another thread lands in the
            // newest second rather than breaking the order.
            Some((second, charged)) if *second >= now => *charged = charged.saturating_add(tokens),
            _ => self.seconds.push_back((now, tokens)),
        }
    }

    pub(super) fn refusal(&self, estimate: u64, now_ms: i64) -> Option<Refusal> {
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
pub(super) struct ConsumerAccount {
    pub(super) period: Option<PeriodAccount>,
    pub(super) minute: Option<MinuteAccount>,
}

impl ConsumerAccount {
    pub(super) fn new(rule: &BudgetRule, now_ms: i64) -> ConsumerAccount {
        ConsumerAccount {
            period: rule
                .tokens
                .map(|limit| PeriodAccount::new(limit, rule.period.unwrap_or_default(), now_ms)),
            minute: rule.tokens_per_minute.map(MinuteAccount::new),
        }
    }

    pub(super) fn advance(&mut self, now_ms: i64) {
        if let Some(period) = &mut self.period {
            period.roll(now_ms);
        }
        if let Some(minute) = &mut self.minute {
            minute.expire(now_ms);
        }
    }
}
