//! What one bucket of the history keeps: per route its requests, errors
//! and latency, per plugin its calls, faults and time, per upstream target
//! its attempts and failures — each table capped at [`MAX_LABELS`] labels,
//! the rest under [`OTHER`] — and what the ring of recent errors keeps of
//! a request.

use rustc_hash::FxHashMap;
use std::sync::Arc;

use super::latency::Latency;
use super::{MAX_LABELS, OTHER};

/// One bucket of request data.
#[derive(Default)]
pub(super) struct Slot {
    /// The bucket's number (Unix seconds / [`BUCKET_SECS`](super::BUCKET_SECS)).
    pub(super) index: u64,
    pub(super) used: bool,
    pub(super) routes: Labelled<RouteTally>,
    pub(super) plugins: Labelled<PluginTally>,
    pub(super) targets: Labelled<TargetTally>,
}

/// Tallies by label, at most [`MAX_LABELS`] of them.
/// Labels are route, plugin and target names from the config, so the map
/// uses Fx, a fast hash, rather than one that resists chosen keys.
pub(super) struct Labelled<T> {
    pub(super) map: FxHashMap<Arc<str>, T>,
}

impl<T> Default for Labelled<T> {
    fn default() -> Self {
        Labelled {
            map: FxHashMap::default(),
        }
    }
}

impl<T: Default> Labelled<T> {
    pub(super) fn get(&mut self, label: &str) -> &mut T {
        // A known label (nearly always) costs two Fx lookups and no
        // allocation; a new one is added while there is room, and past
        // that counts as OTHER.
        if self.map.contains_key(label) {
            return self.map.get_mut(label).expect("present");
        }
        let label = if self.map.len() < MAX_LABELS - 1 { label } else { OTHER };
        self.map.entry(Arc::from(label)).or_default()
    }
}

#[derive(Default, Clone)]
pub(super) struct RouteTally {
    pub(super) requests: u64,
    pub(super) errors: u64,
    pub(super) latency: Latency,
}

impl RouteTally {
    pub(super) fn merge(&mut self, other: &RouteTally) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
    }
}

#[derive(Default, Clone)]
pub(super) struct PluginTally {
    pub(super) calls: u64,
    pub(super) faults: u64,
    pub(super) total_us: u64,
}

impl PluginTally {
    pub(super) fn merge(&mut self, other: &PluginTally) {
        self.calls += other.calls;
        self.faults += other.faults;
        self.total_us += other.total_us;
    }
}

#[derive(Default, Clone)]
pub(super) struct TargetTally {
    pub(super) attempts: u64,
    pub(super) failures: u64,
}

impl TargetTally {
    pub(super) fn merge(&mut self, other: &TargetTally) {
        self.attempts += other.attempts;
        self.failures += other.failures;
    }
}

/// One request that ended in an error.
pub(super) struct RecentError {
    pub(super) unix_ms: i64,
    pub(super) route: Option<String>,
    pub(super) method: String,
    pub(super) path: String,
    pub(super) status: u16,
    pub(super) error: Option<&'static str>,
}

impl RecentError {
    /// As the admin API lists it.
    pub(super) fn to_answer(&self) -> weir_admin_api::RecentError {
        weir_admin_api::RecentError {
            time_ms: self.unix_ms,
            route: self.route.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            status: self.status,
            error: self.error.map(str::to_string),
        }
    }
}
