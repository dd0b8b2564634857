//! Settling a request's budget reservation and recording its usage.
//!
//! An [`Accounting`] goes with a request from the budget check to the end
//! of its answer: into the relay for a stream, so the record is written
//! when the stream ends rather than when the response head leaves.
//!
//! Invariants: it settles exactly once: `complete` or `broken`, or else
//! its drop (the client went away, recorded as 499). The reservation is
//! charged with the provider's token counts when it reported them, with
//! the estimate when tokens were produced but not reported, and released
//! without a charge when nothing reached a provider's model.

use std::sync::Arc;
use std::time::Instant;

use crate::budget::Reservation;
use crate::usage::UsageRecord;
use crate::{AiServices, now_ms};
use weir_observe::{AiSlot, AiSummary};
use weir_plugins::capabilities::shim::exports::weir::plugin::provider::Usage;

/// Where a request's settled usage goes besides the ledger: its slot in
/// the request's record, with the cache status.
pub(super) struct RecordSlot {
    pub(super) slot: AiSlot,
    pub(super) cache: Option<&'static str>,
}

/// Settles a request's reservation and records its usage, once: when the
/// answer is complete, broken, or dropped (the client went away).
pub(crate) struct Accounting {
    services: Arc<AiServices>,
    pub(crate) record: UsageRecord,
    reservation: Option<Reservation>,
    estimate: u64,
    started: Instant,
    produced: bool,
    account: RecordSlot,
}

impl Accounting {
    pub(super) fn new(
        services: Arc<AiServices>,
        record: UsageRecord,
        reservation: Option<Reservation>,
        estimate: u64,
        started: Instant,
        account: RecordSlot,
    ) -> Self {
        Accounting {
            services,
            record,
            reservation,
            estimate,
            started,
            produced: false,
            account,
        }
    }

    /// The first chunk went to the client.
    pub(crate) fn first_token(&mut self) {
        if self.record.ttft_ms.is_none() {
            self.record.ttft_ms = Some(self.started.elapsed().as_millis() as u64);
        }
        self.produced = true;
    }

    /// The answer is complete (or refused) with this status.
    pub(crate) fn complete(mut self, usage: Option<&Usage>, status: u16) {
        if status < 300 {
            self.produced = true;
        }
        self.settle(usage, status);
    }

    /// A stream broke after it started.
    pub(crate) fn broken(mut self, usage: Option<&Usage>, status: u16) {
        self.settle(usage, status);
    }

    fn settle(&mut self, usage: Option<&Usage>, status: u16) {
        // Settled once: `complete` or `broken`, then the drop finds it done.
        if self.record.status != 0 {
            return;
        }
        let (prompt, completion) =
            usage.map_or((0, 0), |u| (u64::from(u.prompt_tokens), u64::from(u.completion_tokens)));
        let now = now_ms();
        if let Some(reservation) = self.reservation.take() {
            match usage {
                Some(_) => reservation.settle(prompt + completion, now),
                // Tokens were spent but not reported: charge the estimate.
                None if self.produced => reservation.settle(self.estimate, now),
                // Nothing reached a provider's model: release it.
                None => drop(reservation),
            }
        }
        self.record.status = status;
        self.record.prompt_tokens = prompt;
        self.record.completion_tokens = completion;
        self.record.cost = self.services.cost(&self.record.model, prompt, completion);
        self.record.latency_ms = self.started.elapsed().as_millis() as u64;
        let priced = self.services.prices.contains_key(&self.record.model);
        self.services.observer.ai_usage(&self.record, priced);
        let _ = self.account.slot.set(AiSummary {
            usage: self.record.clone(),
            cache: self.account.cache,
            priced,
        });
        self.services.ledger.record(self.record.clone());
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        // 499: the client closed the connection before the answer ended.
        self.settle(None, 499);
    }
}
