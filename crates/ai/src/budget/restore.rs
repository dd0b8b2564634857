//! Budgets at start-up: what the usage ledger says each consumer already
//! spent in its current window is counted again, so a restart does not
//! hand out a fresh budget.
//!
//! Invariants: restoring takes the larger of the ledger's sum and what is
//! already counted, so restoring twice does not count twice; only period
//! budgets are restored (the rolling minute starts empty); consumers
//! without a rule keep no state. Budgets kept in Redis need no restore.

use super::Budgets;
use super::accounts::ConsumerAccount;

impl Budgets {
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
            .or_insert_with(|| ConsumerAccount::new(rule, now_ms));
        account.advance(now_ms);
        if let Some(period) = &mut account.period {
            period.used = period.used.max(spent_tokens);
        }
    }
}
