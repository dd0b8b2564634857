//! `GET /dashboard/data?minutes=N`: the last N minutes (1 to 15) of the
//! gateway's traffic, in buckets of a few seconds, as the dashboard draws
//! it and `weir status` sums it up. Rates are over the seconds a bucket
//! (or the last minute) really covers; latency quantiles are `null` when
//! no request was timed.

use serde::{Deserialize, Serialize};

/// The history the dashboard draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DashboardData {
    /// When the snapshot was taken, Unix ms.
    pub now_ms: i64,
    /// Where its window starts, Unix ms.
    pub from_ms: i64,
    /// When the gateway started, Unix ms.
    pub started_ms: i64,
    /// The window, in minutes.
    pub minutes: u64,
    /// Each bucket's length, in seconds.
    pub bucket_secs: u64,
    /// Every route together (`route` is `*`, no points).
    pub totals: RouteTraffic,
    /// Each route that had requests in the window, by name.
    pub routes: Vec<RouteTraffic>,
    /// Each plugin called in the window, the most time first.
    pub plugins: Vec<PluginTime>,
    /// Each upstream target tried in the window.
    pub targets: Vec<TargetAttempts>,
    /// The recent requests that ended in an error, newest first.
    pub errors: Vec<RecentError>,
    /// AI usage per minute.
    pub ai: AiUsage,
}

/// One route's traffic over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteTraffic {
    /// The route's name.
    pub route: String,
    /// Requests answered.
    pub requests: u64,
    /// Those that were errors (a 5xx, or an error the gateway answered).
    pub errors: u64,
    /// `errors / requests` (0 without requests).
    pub error_rate: f64,
    /// Median latency.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency.
    pub p99_ms: Option<f64>,
    /// The same over the last minute, with its rate.
    pub last_minute: LastMinuteTraffic,
    /// Each bucket with requests, oldest first; absent in the totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<Vec<TrafficPoint>>,
}

/// A route's traffic over the last minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastMinuteTraffic {
    /// Requests answered.
    pub requests: u64,
    /// Those that were errors.
    pub errors: u64,
    /// `errors / requests` (0 without requests).
    pub error_rate: f64,
    /// Median latency.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency.
    pub p99_ms: Option<f64>,
    /// Requests per second.
    pub rps: f64,
}

/// One bucket of a route's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficPoint {
    /// The bucket's start, Unix ms.
    pub t: i64,
    /// The seconds of it the rate is over.
    pub secs: f64,
    /// Requests answered.
    pub requests: u64,
    /// Those that were errors.
    pub errors: u64,
    /// Requests per second.
    pub rps: f64,
    /// Median latency.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency.
    pub p99_ms: Option<f64>,
}

/// One plugin's calls over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginTime {
    /// The plugin's name.
    pub plugin: String,
    /// Calls made.
    pub calls: u64,
    /// Those that faulted (a trap, the deadline, the memory cap, ...).
    pub faults: u64,
    /// Time spent in it.
    pub total_ms: f64,
    /// Time per call.
    pub mean_ms: f64,
    /// The same over the last minute.
    pub last_minute: PluginMinute,
}

/// One plugin's calls over the last minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginMinute {
    /// Calls made.
    pub calls: u64,
    /// Those that faulted.
    pub faults: u64,
    /// Time spent in it.
    pub total_ms: f64,
}

/// One upstream target's attempts over the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetAttempts {
    /// Its upstream pool.
    pub upstream: String,
    /// The target.
    pub target: String,
    /// Attempts sent to it.
    pub attempts: u64,
    /// Those with no answer or a server error.
    pub failures: u64,
    /// The same over the last minute.
    pub last_minute: TargetMinute,
}

/// One upstream target's attempts over the last minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetMinute {
    /// Attempts sent to it.
    pub attempts: u64,
    /// Those with no answer or a server error.
    pub failures: u64,
}

/// A request that ended in an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentError {
    /// When it ended, Unix ms.
    pub time_ms: i64,
    /// Its route, if it found one.
    pub route: Option<String>,
    /// Its method.
    pub method: String,
    /// Its path, without the query string, cut to a bounded length.
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// The gateway's name for the error (`plugin-trap`, `no-route`, ...),
    /// if it answered one itself.
    pub error: Option<String>,
}

/// AI calls, tokens and cost: over the window, then per minute and for the
/// biggest models, consumers and targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiUsage {
    /// Over the whole window.
    #[serde(flatten)]
    pub totals: AiTotals,
    /// Each minute with calls, oldest first.
    pub minutes: Vec<AiPoint>,
    /// The biggest models by tokens, then `(other)`.
    pub models: Vec<AiRow>,
    /// The biggest consumers by tokens, then `(other)`.
    pub consumers: Vec<AiRow>,
    /// The biggest targets (`route/target`) by tokens, then `(other)`.
    pub targets: Vec<AiRow>,
}

/// AI calls, tokens and cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiTotals {
    /// Calls answered.
    pub calls: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Both.
    pub tokens: u64,
    /// What it cost, if any of it had a price.
    pub cost: Option<f64>,
}

/// One minute of AI usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiPoint {
    /// The minute's start, Unix ms.
    pub t: u64,
    /// Its calls, tokens and cost.
    #[serde(flatten)]
    pub totals: AiTotals,
}

/// One model, consumer or target of AI usage, with its minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiRow {
    /// The model, the consumer (`(anonymous)` without one), the
    /// `route/target`, or `(other)` for the rest.
    pub name: String,
    /// Over the window.
    #[serde(flatten)]
    pub totals: AiTotals,
    /// Each minute it had calls, oldest first.
    pub points: Vec<AiPoint>,
}
