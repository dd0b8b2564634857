//! The wall clock, in the one unit the gateway keeps time in: Unix
//! milliseconds. Code that decides by time (breakers, budgets, buckets)
//! takes `now_ms` as an argument, so tests can hand it any time; only the
//! edges read the clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 before it, `i64::MAX` past what
/// fits).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
