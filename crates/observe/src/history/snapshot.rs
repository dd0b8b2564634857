//! A snapshot of the history ([`History::snapshot`]), as the admin API's
//! [`DashboardData`]: per route its points over the window, totals and
//! last minute (rates over the seconds a bucket really covers); per plugin
//! and target their totals; the recent errors, newest first; and AI usage
//! per minute with its biggest models, consumers and targets.

use std::collections::{BTreeMap, HashMap};
use std::sync::PoisonError;

use weir_admin_api::{
    AiPoint, AiRow, AiUsage, DashboardData, LastMinuteTraffic, PluginMinute, PluginTime, RouteTraffic, TargetAttempts,
    TargetMinute, TrafficPoint,
};

use super::ai_usage::{AiMinute, AiTally, TopTally};
use super::tally::{PluginTally, RouteTally, Slot, TargetTally};
use super::{AI_TOP, BUCKET_SECS, BUCKETS_PER_MINUTE, History, OTHER, WINDOW_MINUTES, bucket_of, minute_of};

impl History {
    pub(super) fn snapshot_at(&self, minutes: u64, now_ms: i64) -> DashboardData {
        let minutes = minutes.clamp(1, WINDOW_MINUTES);
        // The tallies are plain counts: a panic elsewhere leaves none half
        // written that a snapshot should not show.
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
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

        let mut plugin_list: Vec<PluginTime> = plugins
            .iter()
            .map(|(name, (window, minute))| PluginTime {
                plugin: name.to_string(),
                calls: window.calls,
                faults: window.faults,
                total_ms: window.total_us as f64 / 1000.0,
                mean_ms: window.total_us as f64 / 1000.0 / window.calls.max(1) as f64,
                last_minute: PluginMinute {
                    calls: minute.calls,
                    faults: minute.faults,
                    total_ms: minute.total_us as f64 / 1000.0,
                },
            })
            .collect();
        plugin_list.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));

        DashboardData {
            now_ms,
            from_ms: (first_bucket * BUCKET_SECS * 1000) as i64,
            started_ms: self.started_ms,
            minutes,
            bucket_secs: BUCKET_SECS,
            totals: all.traffic("*", last_minute_secs, false),
            routes: routes
                .iter()
                .map(|(name, s)| s.traffic(name, last_minute_secs, true))
                .collect(),
            plugins: plugin_list,
            targets: targets
                .iter()
                .map(|(key, (window, minute))| {
                    let (upstream, target) = key.split_once(' ').unwrap_or(("-", key));
                    TargetAttempts {
                        upstream: upstream.to_string(),
                        target: target.to_string(),
                        attempts: window.attempts,
                        failures: window.failures,
                        last_minute: TargetMinute {
                            attempts: minute.attempts,
                            failures: minute.failures,
                        },
                    }
                })
                .collect(),
            errors: inner.errors.iter().rev().map(|e| e.to_answer()).collect(),
            ai: ai_usage(&inner.ai, minute_of(now_ms), minutes),
        }
    }
}

/// One route's points and totals while a snapshot is assembled.
#[derive(Default)]
struct RouteSeries {
    points: Vec<TrafficPoint>,
    window: RouteTally,
    last_minute: RouteTally,
}

impl RouteSeries {
    fn add(&mut self, start_ms: i64, secs: f64, tally: &RouteTally, in_last_minute: bool) {
        if tally.requests == 0 {
            return;
        }
        self.points.push(TrafficPoint {
            t: start_ms,
            secs,
            requests: tally.requests,
            errors: tally.errors,
            rps: tally.requests as f64 / secs,
            p50_ms: tally.latency.quantile_ms(0.5),
            p99_ms: tally.latency.quantile_ms(0.99),
        });
        self.window.merge(tally);
        if in_last_minute {
            self.last_minute.merge(tally);
        }
    }

    fn traffic(&self, name: &str, last_minute_secs: f64, with_points: bool) -> RouteTraffic {
        let error_rate = |t: &RouteTally| t.errors as f64 / t.requests.max(1) as f64;
        let (window, minute) = (&self.window, &self.last_minute);
        RouteTraffic {
            route: name.to_string(),
            requests: window.requests,
            errors: window.errors,
            error_rate: error_rate(window),
            p50_ms: window.latency.quantile_ms(0.5),
            p99_ms: window.latency.quantile_ms(0.99),
            last_minute: LastMinuteTraffic {
                requests: minute.requests,
                errors: minute.errors,
                error_rate: error_rate(minute),
                p50_ms: minute.latency.quantile_ms(0.5),
                p99_ms: minute.latency.quantile_ms(0.99),
                rps: minute.requests as f64 / last_minute_secs,
            },
            points: with_points.then(|| self.points.clone()),
        }
    }
}

/// The AI part of a snapshot: per minute, totals and the biggest models,
/// consumers and targets over the window, each with its minutes.
fn ai_usage(slots: &[AiMinute], now_minute: u64, minutes: u64) -> AiUsage {
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
    let dimension = |pick: fn(&AiMinute) -> &TopTally| -> Vec<AiRow> {
        let mut sums: HashMap<&str, AiTally> = HashMap::new();
        for slot in &window {
            for (label, tally) in &pick(slot).map {
                sums.entry(label).or_default().merge(tally);
            }
        }
        let mut ranked: Vec<(&str, AiTally)> = sums.into_iter().collect();
        ranked.sort_by(|a, b| b.1.tokens().cmp(&a.1.tokens()).then(a.0.cmp(b.0)));
        let shown: Vec<&str> = ranked.iter().take(AI_TOP).map(|(label, _)| *label).collect();
        let mut rows: Vec<AiRow> = ranked
            .iter()
            .take(AI_TOP)
            .map(|(label, tally)| AiRow {
                name: label.to_string(),
                totals: tally.totals(),
                points: window
                    .iter()
                    .filter_map(|slot| pick(slot).map.get(*label).map(|t| point(slot.minute, t)))
                    .collect(),
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
            rows.push(AiRow {
                name: OTHER.to_string(),
                totals: other_total.totals(),
                points: other_points,
            });
        }
        rows
    };
    AiUsage {
        totals: total.totals(),
        minutes: window.iter().map(|s| point(s.minute, &s.total)).collect(),
        models: dimension(|s| &s.models),
        consumers: dimension(|s| &s.consumers),
        targets: dimension(|s| &s.targets),
    }
}

fn point(minute: u64, tally: &AiTally) -> AiPoint {
    AiPoint {
        t: minute * 60_000,
        totals: tally.totals(),
    }
}
