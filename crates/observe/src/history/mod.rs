//! The last fifteen minutes of traffic, kept in memory for the dashboard
//! (`GET /` on the admin listener) and `weir status`.
//!
//! Every finished request is added to the five-second bucket it finished
//! in: per route its count, errors (status ≥ 500, or an error the gateway
//! itself answered with) and a small log-scale latency histogram, from
//! which p50 and p99 are read; per plugin its calls and the time they took;
//! per upstream target its attempts and failures. A ring of the last
//! [`RECENT_ERRORS`] errors keeps what each one was. AI usage is kept per
//! minute, by model, by consumer and by target.
//!
//! Memory is bounded whatever the traffic: the ring of buckets covers the
//! window and no more, each bucket holds at most [`MAX_LABELS`] routes,
//! plugins and targets (the rest are counted under `(other)`), and each
//! AI minute at most [`AI_TRACKED`] models, consumers and targets (a new
//! one pushes the smallest into `(other)`).
//!
//! This module owns the window and what is fed into it; `tally` is what
//! one bucket keeps per route, plugin and target, `latency` the histogram
//! quantiles come from, `ai_usage` what one minute of AI usage keeps, and
//! `snapshot` what the dashboard and `weir status` read (the admin API's
//! `DashboardData`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use weir_admin_api::DashboardData;

use crate::record::{AttemptOutcome, PluginOutcome, RequestRecord};

mod ai_usage;
mod latency;
mod snapshot;
mod tally;
#[cfg(test)]
mod tests;

use ai_usage::{AiMinute, AiTally};
use tally::{RecentError, Slot};

/// Seconds one bucket of request data covers.
pub const BUCKET_SECS: u64 = 5;
/// Minutes of history kept.
pub const WINDOW_MINUTES: u64 = 15;
/// Routes, plugins and targets kept apart in one bucket; the rest are
/// counted under [`OTHER`].
pub const MAX_LABELS: usize = 256;
/// Errors kept in the ring of recent errors.
pub const RECENT_ERRORS: usize = 50;
/// Models, consumers and targets kept apart in one minute of AI usage.
pub const AI_TRACKED: usize = 100;
/// Models, consumers and targets a snapshot lists; the rest are summed
/// under [`OTHER`].
pub const AI_TOP: usize = 20;
/// The label of everything past a cap.
pub const OTHER: &str = "(other)";
/// The consumer of AI usage no plugin named.
pub const ANONYMOUS: &str = "(anonymous)";

const SLOTS: usize = (WINDOW_MINUTES * 60 / BUCKET_SECS) as usize;
const BUCKETS_PER_MINUTE: u64 = 60 / BUCKET_SECS;
const AI_SLOTS: usize = WINDOW_MINUTES as usize;
/// Longest path kept in the ring of recent errors.
const MAX_PATH: usize = 256;

/// Recent traffic, fed by [`History::record`] and [`History::ai_usage`],
/// read by [`History::snapshot`].
pub struct History {
    inner: Mutex<Inner>,
    started_ms: i64,
}

struct Inner {
    slots: Vec<Slot>,
    ai: Vec<AiMinute>,
    errors: VecDeque<RecentError>,
    /// Where a target's label is written, kept to be written again.
    key: String,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    /// An empty history starting now.
    pub fn new() -> Self {
        History::starting_at(weir_core::clock::now_ms())
    }

    fn starting_at(now_ms: i64) -> Self {
        History {
            inner: Mutex::new(Inner {
                slots: (0..SLOTS).map(|_| Slot::default()).collect(),
                ai: (0..AI_SLOTS).map(|_| AiMinute::default()).collect(),
                errors: VecDeque::with_capacity(RECENT_ERRORS),
                key: String::new(),
            }),
            started_ms: now_ms,
        }
    }

    /// Add a finished request.
    pub fn record(&self, record: &RequestRecord) {
        self.record_at(record, record.elapsed(), weir_core::clock::now_ms());
    }

    fn record_at(&self, record: &RequestRecord, latency: Duration, now_ms: i64) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let mut key = std::mem::take(&mut inner.key);
        let slot = inner.slot(bucket_of(now_ms));
        let route = record.route.as_ref().map_or("-", |r| r.as_str());
        let failed = is_error(record.status, record.error);
        let tally = slot.routes.get(route);
        tally.requests += 1;
        tally.errors += u64::from(failed);
        tally.latency.add(latency);
        for call in &record.plugins {
            let tally = slot.plugins.get(call.plugin.as_str());
            tally.calls += 1;
            tally.faults += u64::from(matches!(call.outcome, PluginOutcome::Fault { .. }));
            tally.total_us += call.duration.as_micros() as u64;
        }
        let upstream = record.attempts_of();
        for attempt in &record.attempts {
            key.clear();
            key.extend([upstream, " ", &attempt.target]);
            let tally = slot.targets.get(&key);
            tally.attempts += 1;
            tally.failures += u64::from(attempt_failed(attempt.outcome));
        }
        inner.key = key;
        if failed {
            if inner.errors.len() == RECENT_ERRORS {
                inner.errors.pop_front();
            }
            inner.errors.push_back(RecentError {
                unix_ms: record.unix_ms,
                route: record.route.as_ref().map(|r| r.to_string()),
                method: record.method.to_string(),
                path: truncate(&record.path, MAX_PATH),
                status: record.status,
                error: record.error,
            });
        }
    }

    /// Add the usage of one AI request: its route, the target that
    /// answered, the model, the consumer (if a plugin named one), its
    /// tokens and its cost (`None` when the model has no price).
    #[allow(clippy::too_many_arguments)]
    pub fn ai_usage(
        &self,
        route: &str,
        target: &str,
        model: &str,
        consumer: Option<&str>,
        prompt_tokens: u64,
        completion_tokens: u64,
        cost: Option<f64>,
    ) {
        let usage = AiTally {
            calls: 1,
            prompt_tokens,
            completion_tokens,
            cost: cost.unwrap_or(0.0),
            priced: cost.is_some(),
        };
        self.ai_usage_at(route, target, model, consumer, usage, weir_core::clock::now_ms());
    }

    fn ai_usage_at(&self, route: &str, target: &str, model: &str, consumer: Option<&str>, usage: AiTally, now_ms: i64) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let slot = inner.ai_slot(minute_of(now_ms));
        slot.models.add(model, &usage);
        slot.consumers.add(consumer.unwrap_or(ANONYMOUS), &usage);
        slot.targets.add(&format!("{route}/{target}"), &usage);
        slot.total.merge(&usage);
    }

    /// The last `minutes` (1 to 15), as the admin API answers them: per
    /// route its points over time, totals and last minute; per plugin and
    /// target their totals; the recent errors, newest first; and AI usage
    /// per minute.
    pub fn snapshot(&self, minutes: u64) -> DashboardData {
        self.snapshot_at(minutes, weir_core::clock::now_ms())
    }
}

/// Whether a request counts as an error: a server error, or an error the
/// gateway answered with itself (no route, body too large, ...).
fn is_error(status: u16, error: Option<&str>) -> bool {
    status >= 500 || error.is_some()
}

/// Whether an attempt failed the target: no answer, or a server error.
fn attempt_failed(outcome: AttemptOutcome) -> bool {
    !matches!(outcome, AttemptOutcome::Answered(status) if status < 500) && outcome != AttemptOutcome::ClientBody
}

fn bucket_of(now_ms: i64) -> u64 {
    now_ms.max(0) as u64 / 1000 / BUCKET_SECS
}

fn minute_of(now_ms: i64) -> u64 {
    now_ms.max(0) as u64 / 60_000
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

impl Inner {
    /// The slot for bucket `index`, emptied first if it held an older one.
    fn slot(&mut self, index: u64) -> &mut Slot {
        let slot = &mut self.slots[(index % SLOTS as u64) as usize];
        if !slot.used || slot.index != index {
            slot.index = index;
            slot.used = true;
            slot.routes.map.clear();
            slot.plugins.map.clear();
            slot.targets.map.clear();
        }
        slot
    }

    fn ai_slot(&mut self, minute: u64) -> &mut AiMinute {
        let slot = &mut self.ai[(minute % AI_SLOTS as u64) as usize];
        if !slot.used || slot.minute != minute {
            *slot = AiMinute {
                minute,
                used: true,
                ..AiMinute::default()
            };
        }
        slot
    }
}
