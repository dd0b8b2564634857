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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::record::{AttemptOutcome, PluginOutcome, RequestRecord};

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
    ai: Vec<AiSlot>,
    errors: VecDeque<RecentError>,
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
                ai: (0..AI_SLOTS).map(|_| AiSlot::default()).collect(),
                errors: VecDeque::with_capacity(RECENT_ERRORS),
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
            let tally = slot.targets.get(&format!("{upstream} {}", attempt.target));
            tally.attempts += 1;
            tally.failures += u64::from(attempt_failed(attempt.outcome));
        }
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

    /// The last `minutes` (1 to 15) as JSON: per route its points over
    /// time, totals and last minute; per plugin and target their totals;
    /// the recent errors, newest first; and AI usage per minute.
    pub fn snapshot(&self, minutes: u64) -> Value {
        self.snapshot_at(minutes, weir_core::clock::now_ms())
    }

    fn snapshot_at(&self, minutes: u64, now_ms: i64) -> Value {
        let minutes = minutes.clamp(1, WINDOW_MINUTES);
        let Ok(inner) = self.inner.lock() else {
            return json!({"error": "history unavailable"});
        };
        let now_bucket = bucket_of(now_ms);
        let first_bucket = (now_bucket + 1).saturating_sub(minutes * BUCKETS_PER_MINUTE);
        let last_minute_from = (now_bucket + 1).saturating_sub(BUCKETS_PER_MINUTE);
        let mut buckets: Vec<&Slot> = inner
            .slots
            .iter()
            .filter(|s| s.used && s.index >= first_bucket && s.index <= now_bucket)
            .collect();
        buckets.sort_by_key(|s| s.index);

        // Seconds of traffic a bucket (or the last minute) really covers:
        // the current bucket only up to now, nothing before the start.
        let covered =
            |from_ms: i64, to_ms: i64| ((to_ms.min(now_ms) - from_ms.max(self.started_ms)) as f64 / 1000.0).max(1.0);

        let mut routes: BTreeMap<&str, RouteSeries> = BTreeMap::new();
        let mut plugins: BTreeMap<&str, (PluginTally, PluginTally)> = BTreeMap::new();
        let mut targets: BTreeMap<&str, (TargetTally, TargetTally)> = BTreeMap::new();
        let mut all = RouteSeries::default();
        for slot in &buckets {
            let start_ms = (slot.index * BUCKET_SECS * 1000) as i64;
            let secs = covered(start_ms, start_ms + (BUCKET_SECS * 1000) as i64);
            let in_last_minute = slot.index >= last_minute_from;
            let mut bucket_all = RouteTally::default();
            for (route, tally) in &slot.routes.map {
                routes
                    .entry(route)
                    .or_default()
                    .add(start_ms, secs, tally, in_last_minute);
                bucket_all.merge(tally);
            }
            all.add(start_ms, secs, &bucket_all, in_last_minute);
            for (plugin, tally) in &slot.plugins.map {
                let entry = plugins.entry(plugin).or_default();
                entry.0.merge(tally);
                if in_last_minute {
                    entry.1.merge(tally);
                }
            }
            for (target, tally) in &slot.targets.map {
                let entry = targets.entry(target).or_default();
                entry.0.merge(tally);
                if in_last_minute {
                    entry.1.merge(tally);
                }
            }
        }
        let last_minute_secs = covered((last_minute_from * BUCKET_SECS * 1000) as i64, now_ms);

        let mut plugin_list: Vec<Value> = plugins
            .iter()
            .map(|(name, (window, minute))| {
                json!({
                    "plugin": name,
                    "calls": window.calls,
                    "faults": window.faults,
                    "total_ms": window.total_us as f64 / 1000.0,
                    "mean_ms": window.total_us as f64 / 1000.0 / window.calls.max(1) as f64,
                    "last_minute": {"calls": minute.calls, "faults": minute.faults, "total_ms": minute.total_us as f64 / 1000.0},
                })
            })
            .collect();
        plugin_list.sort_by(|a, b| {
            b["total_ms"]
                .as_f64()
                .partial_cmp(&a["total_ms"].as_f64())
                .unwrap_or(std::cmp::Ordering::Equal)
        });

        json!({
            "now_ms": now_ms,
            "from_ms": (first_bucket * BUCKET_SECS * 1000) as i64,
            "started_ms": self.started_ms,
            "minutes": minutes,
            "bucket_secs": BUCKET_SECS,
            "totals": all.to_json("*", last_minute_secs, false),
            "routes": routes.iter().map(|(name, s)| s.to_json(name, last_minute_secs, true)).collect::<Vec<_>>(),
            "plugins": plugin_list,
            "targets": targets.iter().map(|(key, (window, minute))| {
                let (upstream, target) = key.split_once(' ').unwrap_or(("-", key));
                json!({
                    "upstream": upstream,
                    "target": target,
                    "attempts": window.attempts,
                    "failures": window.failures,
                    "last_minute": {"attempts": minute.attempts, "failures": minute.failures},
                })
            }).collect::<Vec<_>>(),
            "errors": inner.errors.iter().rev().map(RecentError::to_json).collect::<Vec<_>>(),
            "ai": ai_json(&inner.ai, minute_of(now_ms), minutes),
        })
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

/// One bucket of request data.
#[derive(Default)]
struct Slot {
    /// The bucket's number (Unix seconds / [`BUCKET_SECS`]).
    index: u64,
    used: bool,
    routes: Labelled<RouteTally>,
    plugins: Labelled<PluginTally>,
    targets: Labelled<TargetTally>,
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

    fn ai_slot(&mut self, minute: u64) -> &mut AiSlot {
        let slot = &mut self.ai[(minute % AI_SLOTS as u64) as usize];
        if !slot.used || slot.minute != minute {
            *slot = AiSlot {
                minute,
                used: true,
                ..AiSlot::default()
            };
        }
        slot
    }
}

/// Tallies by label, at most [`MAX_LABELS`] of them.
struct Labelled<T> {
    map: HashMap<Arc<str>, T>,
}

impl<T> Default for Labelled<T> {
    fn default() -> Self {
        Labelled { map: HashMap::new() }
    }
}

impl<T: Default> Labelled<T> {
    fn get(&mut self, label: &str) -> &mut T {
        let label = if self.map.contains_key(label) || self.map.len() < MAX_LABELS - 1 {
            label
        } else {
            OTHER
        };
        if !self.map.contains_key(label) {
            self.map.insert(Arc::from(label), T::default());
        }
        self.map.get_mut(label).expect("inserted above")
    }
}

#[derive(Default, Clone)]
struct RouteTally {
    requests: u64,
    errors: u64,
    latency: Latency,
}

impl RouteTally {
    fn merge(&mut self, other: &RouteTally) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
    }
}

#[derive(Default, Clone)]
struct PluginTally {
    calls: u64,
    faults: u64,
    total_us: u64,
}

impl PluginTally {
    fn merge(&mut self, other: &PluginTally) {
        self.calls += other.calls;
        self.faults += other.faults;
        self.total_us += other.total_us;
    }
}

#[derive(Default, Clone)]
struct TargetTally {
    attempts: u64,
    failures: u64,
}

impl TargetTally {
    fn merge(&mut self, other: &TargetTally) {
        self.attempts += other.attempts;
        self.failures += other.failures;
    }
}

/// One route's points and totals while a snapshot is assembled.
#[derive(Default)]
struct RouteSeries {
    points: Vec<Value>,
    window: RouteTally,
    last_minute: RouteTally,
}

impl RouteSeries {
    fn add(&mut self, start_ms: i64, secs: f64, tally: &RouteTally, in_last_minute: bool) {
        if tally.requests == 0 {
            return;
        }
        self.points.push(json!({
            "t": start_ms,
            "secs": secs,
            "requests": tally.requests,
            "errors": tally.errors,
            "rps": tally.requests as f64 / secs,
            "p50_ms": tally.latency.quantile_ms(0.5),
            "p99_ms": tally.latency.quantile_ms(0.99),
        }));
        self.window.merge(tally);
        if in_last_minute {
            self.last_minute.merge(tally);
        }
    }

    fn to_json(&self, name: &str, last_minute_secs: f64, with_points: bool) -> Value {
        let summary = |t: &RouteTally| {
            json!({
                "requests": t.requests,
                "errors": t.errors,
                "error_rate": t.errors as f64 / t.requests.max(1) as f64,
                "p50_ms": t.latency.quantile_ms(0.5),
                "p99_ms": t.latency.quantile_ms(0.99),
            })
        };
        let mut value = summary(&self.window);
        let mut minute = summary(&self.last_minute);
        minute["rps"] = json!(self.last_minute.requests as f64 / last_minute_secs);
        value["last_minute"] = minute;
        value["route"] = json!(name);
        if with_points {
            value["points"] = Value::Array(self.points.clone());
        }
        value
    }
}

/// Latency bins: bin 0 up to 100 µs, then each bound √2 times the last,
/// up to 52 s; the last bin holds the rest. A quantile is interpolated
/// within its bin, so it is off by at most the bin's width (41%), and
/// usually far less.
const LATENCY_BINS: usize = 40;
const FIRST_BOUND_US: f64 = 100.0;

/// A small log-scale latency histogram.
#[derive(Clone)]
struct Latency {
    bins: [u32; LATENCY_BINS],
    count: u64,
    max_us: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            bins: [0; LATENCY_BINS],
            count: 0,
            max_us: 0,
        }
    }
}

/// The upper bound of bin `i` (not the last), in µs.
fn bin_bound_us(i: usize) -> f64 {
    FIRST_BOUND_US * 2f64.powf(i as f64 / 2.0)
}

fn bin_of(us: u64) -> usize {
    if us as f64 <= FIRST_BOUND_US {
        return 0;
    }
    let mut i = (2.0 * (us as f64 / FIRST_BOUND_US).log2()).ceil() as usize;
    // Rounding may put a value on a bound one bin off; settle it exactly.
    while i > 0 && (us as f64) <= bin_bound_us(i - 1) {
        i -= 1;
    }
    while i < LATENCY_BINS - 1 && (us as f64) > bin_bound_us(i) {
        i += 1;
    }
    i.min(LATENCY_BINS - 1)
}

impl Latency {
    fn add(&mut self, latency: Duration) {
        let us = latency.as_micros() as u64;
        let bin = &mut self.bins[bin_of(us)];
        *bin = bin.saturating_add(1);
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    fn merge(&mut self, other: &Latency) {
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a = a.saturating_add(*b);
        }
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The `q` quantile in milliseconds, or `None` with no data.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut below = 0u64;
        for (i, &n) in self.bins.iter().enumerate() {
            let n = u64::from(n);
            if n == 0 || below + n < rank {
                below += n;
                continue;
            }
            let lower = if i == 0 { 0.0 } else { bin_bound_us(i - 1) };
            let upper = if i == LATENCY_BINS - 1 {
                self.max_us as f64
            } else {
                bin_bound_us(i)
            };
            let fraction = (rank - below) as f64 / n as f64;
            let us = (lower + (upper - lower) * fraction).min(self.max_us as f64);
            return Some(us.round() / 1000.0);
        }
        Some(self.max_us as f64 / 1000.0)
    }
}

/// One request that ended in an error.
struct RecentError {
    unix_ms: i64,
    route: Option<String>,
    method: String,
    path: String,
    status: u16,
    error: Option<&'static str>,
}

impl RecentError {
    fn to_json(&self) -> Value {
        json!({
            "time_ms": self.unix_ms,
            "route": self.route,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "error": self.error,
        })
    }
}

/// AI usage: calls, tokens and cost.
#[derive(Default, Clone, Debug, PartialEq)]
struct AiTally {
    calls: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost: f64,
    /// Whether any of it had a price (else `cost` means nothing).
    priced: bool,
}

impl AiTally {
    fn merge(&mut self, other: &AiTally) {
        self.calls += other.calls;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost += other.cost;
        self.priced |= other.priced;
    }

    fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    fn to_json(&self) -> Value {
        json!({
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.tokens(),
            "cost": self.priced.then_some(self.cost),
        })
    }
}

/// One minute of AI usage.
#[derive(Default)]
struct AiSlot {
    minute: u64,
    used: bool,
    models: TopTally,
    consumers: TopTally,
    targets: TopTally,
    total: AiTally,
}

/// AI usage by label, the biggest [`AI_TRACKED`] apart and the rest in
/// `other`.
#[derive(Default)]
struct TopTally {
    map: HashMap<Arc<str>, AiTally>,
    other: AiTally,
}

impl TopTally {
    fn add(&mut self, label: &str, usage: &AiTally) {
        if let Some(tally) = self.map.get_mut(label) {
            tally.merge(usage);
            return;
        }
        if self.map.len() >= AI_TRACKED {
            // Full: the new label replaces the smallest, unless it is
            // smaller still.
            let smallest = self
                .map
                .iter()
                .min_by_key(|(_, t)| t.tokens())
                .map(|(label, t)| (label.clone(), t.tokens()));
            match smallest {
                Some((victim, tokens)) if tokens < usage.tokens() => {
                    if let Some(evicted) = self.map.remove(&victim) {
                        self.other.merge(&evicted);
                    }
                }
                _ => {
                    self.other.merge(usage);
                    return;
                }
            }
        }
        self.map.insert(Arc::from(label), usage.clone());
    }
}

/// The AI part of a snapshot: per minute, totals and the biggest models,
/// consumers and targets over the window, each with its minutes.
fn ai_json(slots: &[AiSlot], now_minute: u64, minutes: u64) -> Value {
    let first = (now_minute + 1).saturating_sub(minutes);
    let mut window: Vec<&AiSlot> = slots
        .iter()
        .filter(|s| s.used && s.minute >= first && s.minute <= now_minute)
        .collect();
    window.sort_by_key(|s| s.minute);
    let mut total = AiTally::default();
    for slot in &window {
        total.merge(&slot.total);
    }
    let dimension = |pick: fn(&AiSlot) -> &TopTally| -> Vec<Value> {
        let mut sums: HashMap<&str, AiTally> = HashMap::new();
        for slot in &window {
            for (label, tally) in &pick(slot).map {
                sums.entry(label).or_default().merge(tally);
            }
        }
        let mut ranked: Vec<(&str, AiTally)> = sums.into_iter().collect();
        ranked.sort_by(|a, b| b.1.tokens().cmp(&a.1.tokens()).then(a.0.cmp(b.0)));
        let shown: Vec<&str> = ranked.iter().take(AI_TOP).map(|(label, _)| *label).collect();
        let mut rows: Vec<Value> = ranked
            .iter()
            .take(AI_TOP)
            .map(|(label, tally)| {
                let points = window
                    .iter()
                    .filter_map(|slot| pick(slot).map.get(*label).map(|t| (slot.minute, t)))
                    .map(|(minute, t)| point(minute, t))
                    .collect::<Vec<_>>();
                let mut row = tally.to_json();
                row["name"] = json!(label);
                row["points"] = json!(points);
                row
            })
            .collect();
        // Everything not shown: the caps' `other` and the labels past the top.
        let mut other_total = AiTally::default();
        let mut other_points = Vec::new();
        for slot in &window {
            let table = pick(slot);
            let mut minute = table.other.clone();
            for (label, tally) in &table.map {
                if !shown.contains(&label.as_ref()) {
                    minute.merge(tally);
                }
            }
            if minute.calls > 0 {
                other_points.push(point(slot.minute, &minute));
                other_total.merge(&minute);
            }
        }
        if other_total.calls > 0 {
            let mut row = other_total.to_json();
            row["name"] = json!(OTHER);
            row["points"] = json!(other_points);
            rows.push(row);
        }
        rows
    };
    let mut value = total.to_json();
    value["minutes"] = json!(window.iter().map(|s| point(s.minute, &s.total)).collect::<Vec<_>>());
    value["models"] = json!(dimension(|s| &s.models));
    value["consumers"] = json!(dimension(|s| &s.consumers));
    value["targets"] = json!(dimension(|s| &s.targets));
    value
}

fn point(minute: u64, tally: &AiTally) -> Value {
    let mut value = tally.to_json();
    value["t"] = json!(minute * 60_000);
    value
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Instant;

    use http::Method;

    use super::*;
    use crate::record::Phase;
    use weir_config::{PluginName, RouteName};

    /// A moment well after the epoch, on a minute's start.
    const T0: i64 = 1_700_000_040_000;

    fn request(route: Option<&str>, status: u16, error: Option<&'static str>) -> RequestRecord {
        let mut record = RequestRecord::new(Method::GET, "/items", IpAddr::V4(Ipv4Addr::LOCALHOST));
        record.route = route.map(|r| RouteName(r.into()));
        record.status = status;
        record.error = error;
        record
    }

    fn history() -> History {
        History::starting_at(T0)
    }

    fn route<'a>(snapshot: &'a Value, name: &str) -> &'a Value {
        snapshot["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == name)
            .unwrap_or_else(|| panic!("no route {name} in {snapshot:#}"))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn requests_fall_into_five_second_buckets() {
        let h = history();
        // Three in the first bucket, one at its last millisecond, one in
        // the next bucket.
        for at in [0, 1_000, 4_999] {
            h.record_at(&request(Some("api"), 200, None), ms(1), T0 + at);
        }
        h.record_at(&request(Some("api"), 502, Some("upstream-connect")), ms(1), T0 + 5_000);
        let snap = h.snapshot_at(1, T0 + 9_000);
        let api = route(&snap, "api");
        let points = api["points"].as_array().unwrap();
        assert_eq!(points.len(), 2, "{api:#}");
        assert_eq!(points[0]["t"], T0);
        assert_eq!(points[0]["requests"], 3);
        assert_eq!(points[0]["errors"], 0);
        assert_eq!(points[0]["rps"], 3.0 / 5.0);
        assert_eq!(points[1]["t"], T0 + 5_000);
        assert_eq!(points[1]["errors"], 1);
        // The current bucket covers only the 4 s up to now.
        assert_eq!(points[1]["secs"], 4.0);
        assert_eq!(api["requests"], 4);
        assert_eq!(api["errors"], 1);
        assert_eq!(api["error_rate"], 0.25);
        assert_eq!(snap["totals"]["requests"], 4);
    }

    #[test]
    fn errors_are_server_errors_and_gateway_errors() {
        assert!(!is_error(200, None));
        assert!(!is_error(401, None), "a plugin's refusal is an answer, not an error");
        assert!(is_error(404, Some("no-route")));
        assert!(is_error(500, None));
        assert!(is_error(503, Some("plugin-missing")));
        assert!(!attempt_failed(AttemptOutcome::Answered(404)));
        assert!(attempt_failed(AttemptOutcome::Answered(503)));
        assert!(attempt_failed(AttemptOutcome::ConnectError));
        assert!(attempt_failed(AttemptOutcome::Timeout));
    }

    #[test]
    fn the_window_and_the_last_minute_leave_older_buckets_out() {
        let h = history();
        h.record_at(&request(Some("api"), 200, None), ms(1), T0);
        h.record_at(&request(Some("api"), 200, None), ms(1), T0 + 70_000);
        h.record_at(&request(Some("api"), 500, None), ms(1), T0 + 100_000);
        let now = T0 + 119_000;
        let one = h.snapshot_at(1, now);
        assert_eq!(route(&one, "api")["requests"], 2, "the last minute only");
        let two = h.snapshot_at(2, now);
        let api = route(&two, "api");
        assert_eq!(api["requests"], 3);
        assert_eq!(api["last_minute"]["requests"], 2);
        assert_eq!(api["last_minute"]["errors"], 1);
        // The last minute covers the buckets from T0+60s to now: 59 s.
        assert_eq!(api["last_minute"]["rps"], 2.0 / 59.0);
        // Out of range asks are clamped to 1..=15 minutes.
        assert_eq!(h.snapshot_at(0, now)["minutes"], 1);
        assert_eq!(h.snapshot_at(60, now)["minutes"], 15);
    }

    #[test]
    fn a_bucket_is_reused_once_the_window_has_passed_it() {
        let h = history();
        h.record_at(&request(Some("old"), 200, None), ms(1), T0);
        // Exactly one window later: the same slot, a new bucket.
        let later = T0 + (WINDOW_MINUTES * 60_000) as i64;
        h.record_at(&request(Some("new"), 200, None), ms(1), later);
        let snap = h.snapshot_at(15, later);
        assert_eq!(snap["routes"].as_array().unwrap().len(), 1, "{snap:#}");
        assert_eq!(route(&snap, "new")["requests"], 1);
        let inner = h.inner.lock().unwrap();
        assert_eq!(inner.slots.len(), SLOTS);
        assert_eq!(inner.slots.iter().filter(|s| !s.routes.map.is_empty()).count(), 1);
    }

    #[test]
    fn quantiles_come_from_the_log_histogram_within_a_bin() {
        let mut latency = Latency::default();
        assert_eq!(latency.quantile_ms(0.5), None);
        for n in 1..=100 {
            latency.add(ms(n));
        }
        let p50 = latency.quantile_ms(0.5).unwrap();
        let p99 = latency.quantile_ms(0.99).unwrap();
        assert!((35.0..=71.0).contains(&p50), "p50 {p50}");
        assert!((70.0..=100.0).contains(&p99), "p99 {p99}");
        // Never past the largest value seen.
        assert!(latency.quantile_ms(1.0).unwrap() <= 100.0);

        let mut one = Latency::default();
        one.add(Duration::from_micros(50));
        assert_eq!(one.quantile_ms(0.99), Some(0.05));

        // Beyond the last bound: the maximum.
        let mut slow = Latency::default();
        slow.add(Duration::from_secs(120));
        assert_eq!(slow.quantile_ms(0.5), Some(120_000.0));
    }

    #[test]
    fn bins_follow_the_bounds() {
        assert_eq!(bin_of(0), 0);
        assert_eq!(bin_of(100), 0);
        assert_eq!(bin_of(101), 1);
        assert_eq!(bin_of(141), 1);
        assert_eq!(bin_of(142), 2);
        assert_eq!(bin_of(200), 2);
        assert_eq!(bin_of(201), 3);
        assert_eq!(bin_of(u64::MAX), LATENCY_BINS - 1);
        for us in [1u64, 99, 150, 1_000, 12_345, 1_000_000, 52_000_000] {
            let i = bin_of(us);
            let lower = if i == 0 { 0.0 } else { bin_bound_us(i - 1) };
            assert!(lower < us as f64 && us as f64 <= bin_bound_us(i), "{us} in bin {i}");
        }
    }

    #[test]
    fn plugins_and_targets_are_tallied() {
        let h = history();
        let mut record = request(Some("api"), 200, None);
        record.upstream = Some("echo".into());
        let auth = PluginName("auth".into());
        record.plugin_call(&auth, Phase::Request, Instant::now(), PluginOutcome::Continue);
        record.plugins[0].duration = ms(2);
        record.plugin_call(&auth, Phase::Response, Instant::now(), PluginOutcome::Continue);
        record.plugins[1].duration = ms(3);
        record.attempt(
            "127.0.0.1:1".into(),
            [1; 8],
            Instant::now(),
            AttemptOutcome::ConnectError,
        );
        record.attempt(
            "127.0.0.1:2".into(),
            [2; 8],
            Instant::now(),
            AttemptOutcome::Answered(200),
        );
        h.record_at(&record, ms(10), T0);
        h.record_at(&record, ms(10), T0 + 1);
        let snap = h.snapshot_at(5, T0 + 2_000);
        let plugin = &snap["plugins"][0];
        assert_eq!(plugin["plugin"], "auth");
        assert_eq!(plugin["calls"], 4);
        assert_eq!(plugin["total_ms"], 10.0);
        assert_eq!(plugin["mean_ms"], 2.5);
        let targets = snap["targets"].as_array().unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0]["upstream"], "echo");
        assert_eq!(targets[0]["target"], "127.0.0.1:1");
        assert_eq!(targets[0]["attempts"], 2);
        assert_eq!(targets[0]["failures"], 2);
        assert_eq!(targets[1]["failures"], 0);
    }

    #[test]
    fn labels_past_the_cap_count_as_other() {
        let h = history();
        for i in 0..MAX_LABELS + 50 {
            let name = format!("r{i}");
            h.record_at(&request(Some(&name), 200, None), ms(1), T0);
        }
        let snap = h.snapshot_at(1, T0);
        let routes = snap["routes"].as_array().unwrap();
        assert_eq!(routes.len(), MAX_LABELS);
        assert_eq!(route(&snap, OTHER)["requests"], 51);
        assert_eq!(snap["totals"]["requests"], (MAX_LABELS + 50) as u64);
        // A label already kept keeps counting apart.
        h.record_at(&request(Some("r0"), 200, None), ms(1), T0);
        assert_eq!(route(&h.snapshot_at(1, T0), "r0")["requests"], 2);
    }

    #[test]
    fn the_error_ring_keeps_the_last_fifty_newest_first() {
        let h = history();
        for i in 0..RECENT_ERRORS as i64 + 10 {
            let mut record = request(Some("api"), 500, Some("plugin-trap"));
            record.unix_ms = T0 + i;
            record.path = format!("/e/{i}");
            h.record_at(&record, ms(1), T0 + i);
        }
        h.record_at(&request(Some("api"), 200, None), ms(1), T0 + 100);
        let long = "x".repeat(10_000);
        let snap = h.snapshot_at(1, T0 + 1_000);
        let errors = snap["errors"].as_array().unwrap();
        assert_eq!(errors.len(), RECENT_ERRORS);
        assert_eq!(errors[0]["path"], "/e/59");
        assert_eq!(errors[0]["status"], 500);
        assert_eq!(errors[0]["error"], "plugin-trap");
        assert_eq!(errors[0]["route"], "api");
        assert_eq!(errors[0]["method"], "GET");
        assert_eq!(errors[RECENT_ERRORS - 1]["path"], "/e/10");
        let mut record = request(None, 404, Some("no-route"));
        record.path = long;
        h.record_at(&record, ms(1), T0 + 2_000);
        let snap = h.snapshot_at(1, T0 + 2_000);
        let path = snap["errors"][0]["path"].as_str().unwrap();
        assert_eq!(path.chars().count(), MAX_PATH + 1);
        assert!(snap["errors"][0]["route"].is_null());
    }

    fn usage(prompt: u64, completion: u64, cost: Option<f64>) -> AiTally {
        AiTally {
            calls: 1,
            prompt_tokens: prompt,
            completion_tokens: completion,
            cost: cost.unwrap_or(0.0),
            priced: cost.is_some(),
        }
    }

    #[test]
    fn ai_usage_is_kept_per_minute_by_model_and_consumer() {
        let h = history();
        h.ai_usage_at("chat", "openai", "gpt-4o", Some("alice"), usage(10, 5, Some(0.5)), T0);
        h.ai_usage_at(
            "chat",
            "openai",
            "gpt-4o",
            Some("bob"),
            usage(20, 10, Some(1.0)),
            T0 + 30_000,
        );
        h.ai_usage_at("chat", "local", "llama", None, usage(100, 50, None), T0 + 61_000);
        let snap = h.snapshot_at(15, T0 + 61_000);
        let ai = &snap["ai"];
        assert_eq!(ai["calls"], 3);
        assert_eq!(ai["tokens"], 195);
        assert_eq!(ai["cost"], 1.5);
        let minutes = ai["minutes"].as_array().unwrap();
        assert_eq!(minutes.len(), 2);
        assert_eq!(minutes[0]["t"], T0);
        assert_eq!(minutes[0]["tokens"], 45);
        assert_eq!(minutes[1]["cost"], Value::Null, "no priced usage in that minute");
        let models = ai["models"].as_array().unwrap();
        assert_eq!(models[0]["name"], "llama", "biggest first");
        assert_eq!(models[0]["cost"], Value::Null);
        assert_eq!(models[1]["name"], "gpt-4o");
        assert_eq!(models[1]["prompt_tokens"], 30);
        assert_eq!(models[1]["completion_tokens"], 15);
        assert_eq!(models[1]["points"].as_array().unwrap().len(), 1);
        let consumers = ai["consumers"].as_array().unwrap();
        let names: Vec<&str> = consumers.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, [ANONYMOUS, "bob", "alice"]);
        assert_eq!(ai["targets"][0]["name"], "chat/local");
        // The last minute only.
        let recent = h.snapshot_at(1, T0 + 61_000);
        assert_eq!(recent["ai"]["calls"], 1);
        // No AI traffic: empty lists, not an error.
        let empty = history().snapshot_at(15, T0);
        assert_eq!(empty["ai"]["calls"], 0);
        assert_eq!(empty["ai"]["models"], json!([]));
    }

    #[test]
    fn the_twenty_biggest_consumers_are_listed_and_the_rest_is_other() {
        let h = history();
        for i in 0..30u64 {
            let name = format!("c{i:02}");
            h.ai_usage_at("chat", "t", "m", Some(&name), usage(100 + i, 0, None), T0);
        }
        let snap = h.snapshot_at(1, T0);
        let consumers = snap["ai"]["consumers"].as_array().unwrap();
        assert_eq!(consumers.len(), AI_TOP + 1);
        assert_eq!(consumers[0]["name"], "c29");
        assert_eq!(consumers[AI_TOP - 1]["name"], "c10");
        let other = &consumers[AI_TOP];
        assert_eq!(other["name"], OTHER);
        assert_eq!(other["calls"], 10);
        assert_eq!(other["tokens"], (100..110).sum::<u64>());
        assert_eq!(other["points"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn ai_labels_past_the_cap_push_the_smallest_into_other() {
        let h = history();
        for i in 0..AI_TRACKED as u64 * 3 {
            let name = format!("c{i}");
            // Growing usage: each new consumer is bigger than any before.
            h.ai_usage_at("chat", "t", "m", Some(&name), usage(i + 1, 0, None), T0);
        }
        {
            let inner = h.inner.lock().unwrap();
            let slot = inner.ai.iter().find(|s| s.used).unwrap();
            assert_eq!(slot.consumers.map.len(), AI_TRACKED);
            assert!(slot.consumers.map.contains_key("c299"), "the biggest are kept");
            assert!(!slot.consumers.map.contains_key("c0"));
            assert_eq!(slot.consumers.other.calls, AI_TRACKED as u64 * 2);
        }
        // A newcomer smaller than every one kept goes straight to other.
        h.ai_usage_at("chat", "t", "m", Some("tiny"), usage(1, 0, None), T0);
        let inner = h.inner.lock().unwrap();
        let slot = inner.ai.iter().find(|s| s.used).unwrap();
        assert!(!slot.consumers.map.contains_key("tiny"));
        assert_eq!(slot.consumers.other.calls, AI_TRACKED as u64 * 2 + 1);
        // Nothing is lost: the total counts every call.
        assert_eq!(slot.total.calls, AI_TRACKED as u64 * 3 + 1);
    }

    #[test]
    fn ai_minutes_older_than_the_window_are_dropped() {
        let h = history();
        h.ai_usage_at("chat", "t", "old", None, usage(1, 1, None), T0);
        let later = T0 + (AI_SLOTS as i64) * 60_000;
        h.ai_usage_at("chat", "t", "new", None, usage(1, 1, None), later);
        let snap = h.snapshot_at(15, later);
        assert_eq!(snap["ai"]["calls"], 1);
        assert_eq!(snap["ai"]["models"][0]["name"], "new");
        assert_eq!(h.inner.lock().unwrap().ai.len(), AI_SLOTS);
    }
}
