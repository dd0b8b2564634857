//! Choosing targets: the one engine behind upstream pools and AI routes.
//!
//! - [`plan`]: the order in which a request tries its targets (priority,
//!   weighted round robin or least requests, targets that are not ready
//!   last);
//! - [`health`]: what is known of each target (active checks, the circuit
//!   breaker fed by requests, a rest the target asked for, requests in
//!   flight) and the retry budget that keeps retries a bounded share of
//!   the traffic.
//!
//! Callers report back what happened; nothing here reads the clock.

pub mod health;
pub mod plan;

pub use health::{
    Admission, BreakerPolicy, CircuitState, FailureRate, InFlight, ProbeTally, RetryBudget, TargetHealth,
};
pub use plan::{Balance, Member, Plan, Planner, Standing};
