//! The JSON a snapshot of the history answers ([`History::snapshot`]):
//! per route its points over the window, totals and last minute (rates
//! over the seconds a bucket really covers); per plugin and target their
//! totals; the recent errors, newest first; and AI usage per minute with
//! its biggest models, consumers and targets.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::ai_usage::{AiMinute, AiTally, TopTally};
use super::tally::{PluginTally, RecentError, RouteTally, Slot, TargetTally};
use super::{AI_TOP, BUCKET_SECS, BUCKETS_PER_MINUTE, History, OTHER, WINDOW_MINUTES, bucket_of, minute_of};

impl History {
    pub(super) fn snapshot_at(&self, minutes: u64, now_ms: i64) -> Value {
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

/// The AI part of a snapshot: per minute, totals and the biggest models,
/// consumers and targets over the window, each with its minutes.
fn ai_json(slots: &[AiMinute], now_minute: u64, minutes: u64) -> Value {
    let first = (now_minute + 1).saturating_sub(minutes);
    let mut window: Vec<&AiMinute> = slots
        .iter()
        .filter(|s| s.used && s.minute >= first && s.minute <= now_minute)
        .collect();
    window.sort_by_key(|s| s.minute);
    let mut total = AiTally::default();
    for slot in &window {
        total.merge(&slot.total);
    }
    let dimension = |pick: fn(&AiMinute) -> &TopTally| -> Vec<Value> {
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
