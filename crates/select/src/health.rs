//! Health of targets — upstream targets and AI targets alike: active
//! checks, a circuit breaker per target, a rest a target asked for — and
//! the retry budget of a pool.
//!
//! With `health_check` set, each target is probed (`GET path`) every
//! interval; `unhealthy_threshold` failed probes in a row mark it down and
//! `healthy_threshold` good ones bring it back. Requests skip targets that
//! are down.
//!
//! Each target also has a circuit breaker fed by the requests themselves.
//! It opens when the target fails several times in a row (connect errors,
//! timeouts, 502/503/504 answers), or, with a failure-rate rule, when too
//! large a share of a window's requests fail. While open, requests skip
//! the target; the first opening lasts `eject_ms`, each further one twice
//! as long, up to five minutes. Then the circuit is half-open: one trial
//! request at a time goes to the target; its success closes the circuit
//! (and resets the length), its failure opens it again for longer. If every
//! target is unavailable they are tried anyway rather than failing every
//! request.
//!
//! A target may also ask for a rest (a 429 with `retry-after`): until it
//! ends the target goes after the others, as a last resort. A rest is not a
//! fault and does not feed the breaker.
//!
//! Retrying on another target costs from a budget that each request tops
//! up by a fraction, so retries stay a bounded share of the traffic and
//! cannot multiply an outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

/// The longest time a circuit stays open.
const MAX_OPEN_MS: i64 = 300_000;

/// What the pool has learnt about one target.
#[derive(Debug, Default)]
pub struct TargetHealth {
    consecutive_failures: AtomicU32,
    openings: AtomicU32,
    /// When the open circuit turns half-open; 0 while closed.
    open_until_ms: AtomicI64,
    /// When the running half-open trial started; 0 when none runs.
    trial_since_ms: AtomicI64,
    window: FailureWindow,
    /// Marked down by active health checks.
    down: AtomicBool,
    /// Requests sent and not yet answered in full.
    in_flight: AtomicU32,
    /// Unix ms until which the target asked not to be sent requests.
    rest_until_ms: AtomicI64,
}

/// When circuits open, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    /// Failures in a row that open the circuit (0: this rule is off).
    pub after_failures: u32,
    /// The first opening's length.
    pub base_ms: i64,
    /// The failure-rate rule, if configured.
    pub failure_rate: Option<FailureRate>,
    /// A half-open trial not reported back within this time is given up,
    /// so that another request may try.
    pub trial_timeout_ms: i64,
}

/// Open when at least `percent`% of a window's requests failed, once the
/// window saw `min_requests`.
#[derive(Debug, Clone, Copy)]
pub struct FailureRate {
    /// The share of failures, in percent.
    pub percent: u32,
    /// Requests needed before the rate counts.
    pub min_requests: u32,
    /// The window's length.
    pub window_ms: i64,
}

/// Whether a request may go to a target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The circuit is closed.
    Closed,
    /// The circuit is half-open and this request is its trial.
    Trial,
    /// Down, open, or half-open with a trial already running.
    Refused,
}

/// A circuit's state, for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests flow.
    Closed,
    /// Requests skip the target.
    Open,
    /// One trial request at a time.
    HalfOpen,
    /// Active health checks failed.
    Down,
}

impl CircuitState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Down => "down",
        }
    }
}

impl TargetHealth {
    /// The target's state at `now_ms`.
    pub fn state(&self, now_ms: i64) -> CircuitState {
        let until = self.open_until_ms.load(Ordering::Relaxed);
        if self.down.load(Ordering::Relaxed) {
            CircuitState::Down
        } else if until == 0 {
            CircuitState::Closed
        } else if until > now_ms {
            CircuitState::Open
        } else {
            CircuitState::HalfOpen
        }
    }

    /// Whether requests should skip the target now (down or open).
    pub fn is_ejected(&self, now_ms: i64) -> bool {
        matches!(self.state(now_ms), CircuitState::Down | CircuitState::Open)
    }

    /// Whether [`admit`](Self::admit) would let a request through, without
    /// taking the half-open trial.
    pub fn is_available(&self, policy: BreakerPolicy, now_ms: i64) -> bool {
        match self.state(now_ms) {
            CircuitState::Closed => true,
            CircuitState::HalfOpen => !self.trial_running(policy, now_ms),
            CircuitState::Open | CircuitState::Down => false,
        }
    }

    /// Let a request through, or not; a half-open circuit lets one trial
    /// through at a time.
    pub fn admit(&self, policy: BreakerPolicy, now_ms: i64) -> Admission {
        match self.state(now_ms) {
            CircuitState::Closed => Admission::Closed,
            CircuitState::Open | CircuitState::Down => Admission::Refused,
            CircuitState::HalfOpen => {
                let since = self.trial_since_ms.load(Ordering::Relaxed);
                if since != 0 && now_ms - since < policy.trial_timeout_ms {
                    return Admission::Refused;
                }
                match self
                    .trial_since_ms
                    .compare_exchange(since, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => Admission::Trial,
                    Err(_) => Admission::Refused,
                }
            }
        }
    }

    fn trial_running(&self, policy: BreakerPolicy, now_ms: i64) -> bool {
        let since = self.trial_since_ms.load(Ordering::Relaxed);
        since != 0 && now_ms - since < policy.trial_timeout_ms
    }

    /// Record what active health checks concluded.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
        if !down {
            // Back up: earlier failures no longer count.
            self.close();
        }
    }

    /// Whether active health checks say the target is down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    fn close(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.openings.store(0, Ordering::Relaxed);
        self.open_until_ms.store(0, Ordering::Relaxed);
        self.trial_since_ms.store(0, Ordering::Relaxed);
    }

    /// The target answered well: a half-open circuit closes.
    pub fn succeeded(&self, policy: BreakerPolicy, now_ms: i64) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if let Some(rate) = policy.failure_rate {
            self.window.record(false, now_ms, rate.window_ms);
        }
        if self.open_until_ms.load(Ordering::Relaxed) != 0 || self.openings.load(Ordering::Relaxed) != 0 {
            self.close();
        }
    }

    /// A request that says nothing of the target ended (the client's own
    /// body failed): the half-open trial it may have held is given back.
    pub fn released(&self) {
        self.trial_since_ms.store(0, Ordering::Relaxed);
    }

    /// The target failed; true if this opened its circuit.
    pub fn failed(&self, policy: BreakerPolicy, now_ms: i64) -> bool {
        match self.state(now_ms) {
            // Requests sent before the circuit opened change nothing.
            CircuitState::Open => false,
            // The trial failed, or a request tried anyway did.
            CircuitState::HalfOpen | CircuitState::Down => {
                self.open(policy, now_ms);
                true
            }
            CircuitState::Closed => {
                let in_a_row = policy.after_failures > 0
                    && self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1 >= policy.after_failures;
                let by_rate = policy.failure_rate.is_some_and(|rate| {
                    let (requests, failures) = self.window.record(true, now_ms, rate.window_ms);
                    requests >= rate.min_requests
                        && u64::from(failures) * 100 >= u64::from(rate.percent) * u64::from(requests)
                });
                if in_a_row || by_rate {
                    self.open(policy, now_ms);
                }
                in_a_row || by_rate
            }
        }
    }

    fn open(&self, policy: BreakerPolicy, now_ms: i64) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.window.reset(now_ms);
        let times = self.openings.fetch_add(1, Ordering::Relaxed).min(16);
        let length = policy.base_ms.saturating_mul(1 << times).min(MAX_OPEN_MS);
        self.open_until_ms
            .store(now_ms.saturating_add(length).max(1), Ordering::Relaxed);
        self.trial_since_ms.store(0, Ordering::Relaxed);
    }

    /// The target asked for a rest until `until_ms` (a later rest asked
    /// for meanwhile wins).
    pub fn rest_until(&self, until_ms: i64) {
        self.rest_until_ms.fetch_max(until_ms, Ordering::Relaxed);
    }

    /// Milliseconds left of a rest the target asked for, if any.
    pub fn resting_for(&self, now_ms: i64) -> Option<i64> {
        let until = self.rest_until_ms.load(Ordering::Relaxed);
        (until > now_ms).then_some(until - now_ms)
    }

    /// Whether a request should go to the target now, before others that
    /// should not: not down, its circuit would admit a request, and it is
    /// not resting.
    pub fn is_ready(&self, policy: BreakerPolicy, now_ms: i64) -> bool {
        self.is_available(policy, now_ms) && self.resting_for(now_ms).is_none()
    }

    /// Requests to this target not yet answered in full.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Count a request in flight until the returned guard is dropped.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request counted in flight at a target; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight(Arc<TargetHealth>);

impl InFlight {
    /// The target's health.
    pub fn health(&self) -> &TargetHealth {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Requests and failures in the current fixed window.
#[derive(Debug, Default)]
struct FailureWindow {
    start_ms: AtomicI64,
    requests: AtomicU32,
    failures: AtomicU32,
}

impl FailureWindow {
    /// Count one request; the window's requests and failures so far.
    fn record(&self, failed: bool, now_ms: i64, window_ms: i64) -> (u32, u32) {
        let start = self.start_ms.load(Ordering::Relaxed);
        if now_ms - start >= window_ms
            && self
                .start_ms
                .compare_exchange(start, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.requests.store(0, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
        }
        let requests = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let failures = if failed {
            self.failures.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.failures.load(Ordering::Relaxed)
        };
        (requests, failures)
    }

    fn reset(&self, now_ms: i64) {
        self.start_ms.store(now_ms, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
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

    const POLICY: BreakerPolicy = BreakerPolicy {
        after_failures: 3,
        base_ms: 1_000,
        failure_rate: None,
        trial_timeout_ms: 500,
    };

    #[test]
    fn failures_in_a_row_open_the_circuit_for_longer_each_time() {
        let health = TargetHealth::default();
        assert!(!health.failed(POLICY, 0));
        assert!(!health.failed(POLICY, 0));
        health.succeeded(POLICY, 0);
        assert!(!health.failed(POLICY, 0));
        assert!(!health.failed(POLICY, 0));
        assert!(health.failed(POLICY, 0), "the third failure in a row opens");
        assert_eq!(health.state(999), CircuitState::Open);
        assert_eq!(health.admit(POLICY, 999), Admission::Refused);
        assert!(!health.failed(POLICY, 500), "failures while open change nothing");
        assert_eq!(health.state(1_000), CircuitState::HalfOpen);
        assert_eq!(health.admit(POLICY, 1_000), Admission::Trial);
        assert!(health.failed(POLICY, 1_100), "a failed trial opens again at once");
        assert_eq!(
            health.state(3_099),
            CircuitState::Open,
            "the second opening is twice as long"
        );
        assert_eq!(health.state(3_100), CircuitState::HalfOpen);
        assert_eq!(health.admit(POLICY, 3_100), Admission::Trial);
        health.succeeded(POLICY, 3_200);
        assert_eq!(health.state(3_200), CircuitState::Closed, "a good trial closes");
        for _ in 0..3 {
            health.failed(POLICY, 10_000);
        }
        assert_eq!(health.state(11_000), CircuitState::HalfOpen, "and resets the length");
        let never = BreakerPolicy {
            after_failures: 0,
            ..POLICY
        };
        let health = TargetHealth::default();
        for _ in 0..100 {
            assert!(!health.failed(never, 20_000));
        }
    }

    #[test]
    fn a_half_open_circuit_lets_one_trial_through_at_a_time() {
        let health = TargetHealth::default();
        for _ in 0..3 {
            health.failed(POLICY, 0);
        }
        assert!(!health.is_available(POLICY, 999));
        assert!(health.is_available(POLICY, 1_000));
        assert_eq!(health.admit(POLICY, 1_000), Admission::Trial);
        assert!(!health.is_available(POLICY, 1_001));
        assert_eq!(health.admit(POLICY, 1_001), Admission::Refused, "one trial runs");
        assert_eq!(
            health.admit(POLICY, 1_500),
            Admission::Trial,
            "a trial never reported back is given up after its timeout"
        );
    }

    #[test]
    fn a_high_failure_rate_opens_the_circuit_without_failures_in_a_row() {
        let policy = BreakerPolicy {
            after_failures: 0,
            failure_rate: Some(FailureRate {
                percent: 50,
                min_requests: 10,
                window_ms: 1_000,
            }),
            ..POLICY
        };
        let health = TargetHealth::default();
        // Alternating: never two failures in a row, but half fail.
        for i in 0..4 {
            health.succeeded(policy, i);
            assert!(!health.failed(policy, i), "too few requests yet ({i})");
        }
        health.succeeded(policy, 5);
        assert!(health.failed(policy, 5), "5 of 10 failed");
        assert_eq!(health.state(6), CircuitState::Open);

        let health = TargetHealth::default();
        for i in 0..9 {
            health.succeeded(policy, i);
        }
        for i in 0..4 {
            assert!(!health.failed(policy, 10 + i), "4 of 13 is under half");
        }
        // A new window forgets the old one.
        for i in 0..10 {
            health.succeeded(policy, 2_000 + i);
        }
        assert!(!health.failed(policy, 2_100));
    }

    #[test]
    fn in_flight_requests_are_counted_until_their_guard_drops() {
        let health = Arc::new(TargetHealth::default());
        let one = health.start_request();
        let two = health.start_request();
        assert_eq!(health.in_flight(), 2);
        drop(one);
        assert_eq!(health.in_flight(), 1);
        drop(two);
        assert_eq!(health.in_flight(), 0);
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
        assert_eq!(health.admit(POLICY, 0), Admission::Refused);
        health.set_down(false);
        assert!(!health.is_ejected(0));
    }

    #[test]
    fn openings_are_capped_at_five_minutes() {
        let health = TargetHealth::default();
        let mut now = 0;
        for _ in 0..40 {
            for _ in 0..3 {
                health.failed(POLICY, now);
            }
            now += MAX_OPEN_MS;
        }
        // The last opening started at now - MAX_OPEN_MS.
        assert_eq!(health.state(now - 1), CircuitState::Open);
        assert_eq!(health.state(now), CircuitState::HalfOpen);
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
