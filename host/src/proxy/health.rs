//! Health of upstream targets — active checks and passive ejection — and
//! the retry budget of a pool.
//!
//! With `health_check` set, each target is probed (`GET path`) every
//! interval; `unhealthy_threshold` failed probes in a row mark it down and
//! `healthy_threshold` good ones bring it back. Requests skip targets that
//! are down or ejected.
//!
//! A target that fails several times in a row — connect errors, timeouts,
//! 502/503/504 answers — is ejected: requests skip it for a while, longer
//! each time it is ejected again (doubling, up to five minutes), shorter
//! again once it answers well. If every target is ejected, they are tried
//! anyway rather than failing every request.
//!
//! Retrying a 502/503/504 on another target costs from a budget that each
//! request tops up by a fraction, so retries stay a bounded share of the
//! traffic and cannot multiply an outage.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

/// The longest ejection.
const MAX_EJECTION_MS: i64 = 300_000;

/// What the pool has learnt about one target.
#[derive(Debug, Default)]
pub struct TargetHealth {
    consecutive_failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ms: AtomicI64,
    /// Marked down by active health checks.
    down: std::sync::atomic::AtomicBool,
}

/// When and for how long targets are ejected.
#[derive(Debug, Clone, Copy)]
pub struct EjectionPolicy {
    /// Failures in a row that eject a target (0: never).
    pub after_failures: u32,
    /// The first ejection's length.
    pub base_ms: i64,
}

impl TargetHealth {
    /// Whether requests should skip the target now.
    pub fn is_ejected(&self, now_ms: i64) -> bool {
        self.down.load(Ordering::Relaxed) || self.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// Record what active health checks concluded.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
        if !down {
            // Back up: earlier passive failures no longer count.
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.ejected_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Whether active health checks say the target is down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// The target answered well.
    pub fn succeeded(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if self.ejections.load(Ordering::Relaxed) > 0 {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// The target failed; true if this ejected it.
    pub fn failed(&self, policy: EjectionPolicy, now_ms: i64) -> bool {
        if policy.after_failures == 0 {
            return false;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < policy.after_failures {
            return false;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let times = self.ejections.fetch_add(1, Ordering::Relaxed).min(16);
        let length = policy.base_ms.saturating_mul(1 << times).min(MAX_EJECTION_MS);
        self.ejected_until_ms
            .store(now_ms.saturating_add(length), Ordering::Relaxed);
        true
    }
}

/// Counts probe results into up/down decisions with thresholds.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProbeTally {
    good: u32,
    bad: u32,
}

impl ProbeTally {
    /// Add a probe result; `Some(down)` when the target's state should
    /// change given its current state `was_down`.
    pub fn record(&mut self, ok: bool, was_down: bool, healthy: u32, unhealthy: u32) -> Option<bool> {
        if ok {
            self.good += 1;
            self.bad = 0;
            (was_down && self.good >= healthy).then_some(false)
        } else {
            self.bad += 1;
            self.good = 0;
            (!was_down && self.bad >= unhealthy).then_some(true)
        }
    }
}

/// Retries allowed as a share of requests, in thousandths of a retry.
#[derive(Debug)]
pub struct RetryBudget {
    balance: AtomicU64,
    per_request: u64,
    cap: u64,
}

impl RetryBudget {
    /// Each request adds `percent`% of a retry; at most `burst` retries
    /// are saved up, and the budget starts full.
    pub fn new(percent: u32, burst: u32) -> Self {
        let cap = u64::from(burst) * 1000;
        RetryBudget {
            balance: AtomicU64::new(cap),
            per_request: u64::from(percent) * 10,
            cap,
        }
    }

    /// A request arrived.
    pub fn deposit(&self) {
        let _ = self.balance.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
            Some((b + self.per_request).min(self.cap))
        });
    }

    /// Take one retry, if the budget has it.
    pub fn try_spend(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1000))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: EjectionPolicy = EjectionPolicy {
        after_failures: 3,
        base_ms: 1_000,
    };

    #[test]
    fn failures_in_a_row_eject_for_longer_each_time_and_success_forgives() {
        let health = TargetHealth::default();
        assert!(!health.failed(POLICY, 0));
        assert!(!health.failed(POLICY, 0));
        health.succeeded();
        assert!(!health.failed(POLICY, 0));
        assert!(!health.failed(POLICY, 0));
        assert!(health.failed(POLICY, 0), "the third failure in a row ejects");
        assert!(health.is_ejected(999) && !health.is_ejected(1_000));
        for _ in 0..3 {
            health.failed(POLICY, 1_000);
        }
        assert!(
            health.is_ejected(2_999) && !health.is_ejected(3_000),
            "the second ejection is twice as long"
        );
        health.succeeded();
        for _ in 0..3 {
            health.failed(POLICY, 10_000);
        }
        assert!(!health.is_ejected(11_000), "a success resets the length");
        let never = EjectionPolicy {
            after_failures: 0,
            base_ms: 1_000,
        };
        for _ in 0..100 {
            assert!(!health.failed(never, 20_000));
        }
    }

    #[test]
    fn probes_mark_a_target_down_and_up_by_their_thresholds() {
        let mut tally = ProbeTally::default();
        assert_eq!(tally.record(false, false, 2, 3), None);
        assert_eq!(tally.record(false, false, 2, 3), None);
        assert_eq!(
            tally.record(true, false, 2, 3),
            None,
            "a good probe resets the bad count"
        );
        assert_eq!(tally.record(false, false, 2, 3), None);
        assert_eq!(tally.record(false, false, 2, 3), None);
        assert_eq!(tally.record(false, false, 2, 3), Some(true));
        assert_eq!(tally.record(true, true, 2, 3), None);
        assert_eq!(tally.record(true, true, 2, 3), Some(false));
        let health = TargetHealth::default();
        health.set_down(true);
        assert!(health.is_ejected(0) && health.is_down());
        health.set_down(false);
        assert!(!health.is_ejected(0));
    }

    #[test]
    fn ejections_are_capped_at_five_minutes() {
        let health = TargetHealth::default();
        for round in 0..40 {
            for _ in 0..3 {
                health.failed(POLICY, round);
            }
        }
        assert!(!health.is_ejected(39 + MAX_EJECTION_MS));
    }

    #[test]
    fn retries_are_a_bounded_share_of_requests() {
        let budget = RetryBudget::new(20, 2);
        assert!(budget.try_spend() && budget.try_spend());
        assert!(!budget.try_spend(), "the saved-up retries are spent");
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(!budget.try_spend(), "four requests at 20% are not a retry yet");
        budget.deposit();
        assert!(budget.try_spend(), "five are");
        for _ in 0..1_000 {
            budget.deposit();
        }
        assert!(
            budget.try_spend() && budget.try_spend() && !budget.try_spend(),
            "saving is capped"
        );
    }
}
