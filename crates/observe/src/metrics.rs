//! Prometheus metrics, served at `GET /metrics` on the admin listener in
//! the OpenMetrics text format.
//!
//! Labels are bounded: route, method (the standard ones, else `OTHER`),
//! status class, plugin, phase, upstream and target — never raw paths or
//! consumers. Counters and histograms live for the whole process (a config
//! reload keeps them); the gauges of target and instance-pool state are
//! taken afresh at each scrape.

use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rustc_hash::FxHasher;

use super::record::{AttemptOutcome, PluginOutcome, RequestRecord};

/// A label value shared with the name it comes from (a route, plugin or
/// upstream): labelling a request's counters copies no string.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Label(Arc<str>);

impl Label {
    /// The label's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&Arc<str>> for Label {
    fn from(name: &Arc<str>) -> Self {
        Label(name.clone())
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

/// `-`: the label of a request that matched no route.
static NO_ROUTE: LazyLock<Label> = LazyLock::new(|| Label(Arc::from("-")));

/// Labels of a request.
#[derive(Clone, Debug, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route, or `-` when none matched.
    pub route: Label,
    /// The method, or `OTHER`.
    pub method: &'static str,
    /// `2xx`, `4xx`, ...
    pub status: &'static str,
}

/// Labels of a route.
#[derive(Clone, Debug, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route, or `-` when none matched.
    pub route: Label,
}

/// Labels of a plugin call.
#[derive(Clone, Debug, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// The plugin.
    pub plugin: Label,
    /// `request` or `response`.
    pub phase: &'static str,
}

/// Labels of a plugin call's result.
#[derive(Clone, Debug, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginResultLabels {
    /// The plugin.
    pub plugin: Label,
    /// `request` or `response`.
    pub phase: &'static str,
    /// `continue`, `responded`, `trap`, `deadline`, `memory`, `unavailable`.
    pub result: &'static str,
}

/// Labels of a plugin's own answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginAnswerLabels {
    /// The plugin.
    pub plugin: Label,
    /// The status it answered with.
    pub status: u16,
}

/// Labels of an error the gateway answered with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The route, or `-`.
    pub route: Label,
    /// The error's kind, as in `x-weir-error`.
    pub kind: &'static str,
}

/// Labels of a plugin (reloads, skips, instances).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginNameLabels {
    /// The plugin.
    pub plugin: String,
}

/// Labels of an upstream target.
#[derive(Clone, Debug, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// The upstream pool.
    pub upstream: Label,
    /// The target.
    pub target: Label,
}

/// Labels of an attempt's result.
#[derive(Clone, Debug, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// The upstream pool.
    pub upstream: Label,
    /// The target.
    pub target: Label,
    /// The status class, or `connect-error`, `timeout`, `broken`.
    pub result: &'static str,
}

/// `Hash` for a label set counted on every request: its fields hashed once
/// with Fx, and the metric family's map (SipHash, which prometheus-client
/// fixes) given that one word instead of every field's text. Label values
/// come from the config (route, plugin and target names) and fixed lists,
/// never from a client, so a fast hash is safe here.
macro_rules! hash_once {
    ($($set:ident { $($field:ident),+ })+) => {$(
        impl Hash for $set {
            fn hash<H: Hasher>(&self, state: &mut H) {
                let mut fx = FxHasher::default();
                $( self.$field.hash(&mut fx); )+
                state.write_u64(fx.finish());
            }
        }
    )+};
}

hash_once! {
    RequestLabels { route, method, status }
    RouteLabels { route }
    PluginLabels { plugin, phase }
    PluginResultLabels { plugin, phase, result }
    TargetLabels { upstream, target }
    AttemptLabels { upstream, target, result }
}

/// Labels of a target's circuit state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// The upstream pool.
    pub upstream: String,
    /// The target.
    pub target: String,
    /// `closed`, `open`, `half_open`, `down`.
    pub state: &'static str,
}

/// Labels of an AI route's target and model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AiLabels {
    /// The AI route.
    pub route: String,
    /// The target.
    pub target: String,
    /// The provider's model.
    pub model: String,
}

/// Labels of AI tokens.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AiTokenLabels {
    /// The AI route.
    pub route: String,
    /// The target.
    pub target: String,
    /// The provider's model.
    pub model: String,
    /// `prompt` or `completion`.
    pub kind: &'static str,
}

/// Labels of an AI route's answer cache.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AiCacheLabels {
    /// The AI route.
    pub route: String,
    /// `hit` or `miss`.
    pub result: &'static str,
}

/// Labels of a reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `ok` or `failed`.
    pub result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the gateway keeps.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by route, method and status class.
    pub requests: Family<RequestLabels, Counter>,
    /// Requests being served now.
    pub in_flight: Gauge,
    /// Time from a request's arrival to the end of its response body.
    pub request_duration: HistogramFamily<RouteLabels>,
    /// Time in one plugin call.
    pub plugin_duration: HistogramFamily<PluginLabels>,
    /// Plugin calls by result.
    pub plugin_calls: Family<PluginResultLabels, Counter>,
    /// Fail-open plugins skipped after a fault.
    pub plugin_skips: Family<PluginNameLabels, Counter>,
    /// Requests a plugin answered itself (401s, 429s, ...), by status.
    pub plugin_answers: Family<PluginAnswerLabels, Counter>,
    /// Errors the gateway answered with, by kind (overloaded, no-route,
    /// plugin-trap, upstream-timeout, ...).
    pub errors: Family<ErrorLabels, Counter>,
    /// Time to an upstream target's response head.
    pub upstream_duration: HistogramFamily<TargetLabels>,
    /// Attempts at upstream targets by result.
    pub upstream_attempts: Family<AttemptLabels, Counter>,
    /// Attempts beyond a request's first (retries and failovers).
    pub upstream_retries: Family<TargetLabels, Counter>,
    /// Each upstream target's circuit state (1 for the current state).
    pub target_state: Family<StateLabels, Gauge>,
    /// Idle warm instances per plugin.
    pub idle_instances: Family<PluginNameLabels, Gauge>,
    /// Plugin reloads by result.
    pub plugin_reloads: Family<ReloadLabels, Counter>,
    /// Config reloads by result.
    pub config_reloads: Family<ReloadLabels, Counter>,
    /// AI tokens, by route, target, model and kind.
    pub ai_tokens: Family<AiTokenLabels, Counter>,
    /// AI cost in the configured prices' currency.
    pub ai_cost: Family<AiLabels, Counter<f64, AtomicU64>>,
    /// AI requests answered from or past the cache.
    pub ai_cache: Family<AiCacheLabels, Counter>,
    /// AI targets failed over from (the request went on to another).
    pub ai_failovers: Family<AiLabels, Counter>,
    /// AI requests refused by a token budget.
    pub ai_budget_rejections: Family<RouteLabels, Counter>,
    /// Whether the shared state store answers (1) or not (0); memory
    /// always answers.
    pub state_store_up: Gauge,
    /// Operations that found the shared state store unavailable (taken
    /// from the store at each scrape).
    pub state_unavailable_ops: Counter,
    /// Times the shared state store went down.
    pub state_outages: Counter,
}

fn duration_histogram() -> Histogram {
    // 100 µs to about 52 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

fn histograms<L: EncodeLabelSet + Clone + std::hash::Hash + Eq>() -> HistogramFamily<L> {
    HistogramFamily::new_with_constructor(duration_histogram)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        let metrics = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            in_flight: Gauge::default(),
            request_duration: histograms(),
            plugin_duration: histograms(),
            plugin_calls: Family::default(),
            plugin_skips: Family::default(),
            plugin_answers: Family::default(),
            errors: Family::default(),
            upstream_duration: histograms(),
            upstream_attempts: Family::default(),
            upstream_retries: Family::default(),
            target_state: Family::default(),
            idle_instances: Family::default(),
            state_store_up: Gauge::default(),
            state_unavailable_ops: Counter::default(),
            state_outages: Counter::default(),
            plugin_reloads: Family::default(),
            config_reloads: Family::default(),
            ai_tokens: Family::default(),
            ai_cost: Family::default(),
            ai_cache: Family::default(),
            ai_failovers: Family::default(),
            ai_budget_rejections: Family::default(),
        };
        let mut registry = Registry::with_prefix("weir");
        registry.register("requests", "Requests answered", metrics.requests.clone());
        registry.register("requests_in_flight", "Requests being served", metrics.in_flight.clone());
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to the end of its response",
            metrics.request_duration.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Time in one plugin call, waiting for an instance included (phase chunk: a response's chunk calls added up)",
            metrics.plugin_duration.clone(),
        );
        registry.register(
            "plugin_calls",
            "Plugin calls by result (phase chunk: one per streamed response, a fault if any chunk call faulted)",
            metrics.plugin_calls.clone(),
        );
        registry.register(
            "plugin_fail_open_skips",
            "Fail-open plugins skipped after a fault",
            metrics.plugin_skips.clone(),
        );
        registry.register(
            "plugin_answers",
            "Requests a plugin answered itself, by status",
            metrics.plugin_answers.clone(),
        );
        registry.register(
            "errors",
            "Errors the gateway answered with, by kind",
            metrics.errors.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time to an upstream target's response head",
            metrics.upstream_duration.clone(),
        );
        registry.register(
            "upstream_attempts",
            "Attempts at upstream targets by result",
            metrics.upstream_attempts.clone(),
        );
        registry.register(
            "upstream_retries",
            "Attempts beyond a request's first, by the target retried on",
            metrics.upstream_retries.clone(),
        );
        registry.register(
            "upstream_target_state",
            "Each upstream target's circuit: 1 for its current state",
            metrics.target_state.clone(),
        );
        registry.register(
            "plugin_idle_instances",
            "Warm instances waiting in a plugin's pool",
            metrics.idle_instances.clone(),
        );
        registry.register(
            "state_store_up",
            "Whether the shared state store (Redis) answers: 1 yes, 0 no; always 1 in memory",
            metrics.state_store_up.clone(),
        );
        registry.register(
            "state_unavailable_operations",
            "Shared-state operations that found the store unavailable (then refused or served locally by route policy)",
            metrics.state_unavailable_ops.clone(),
        );
        registry.register(
            "state_outages",
            "Times the shared state store became unavailable",
            metrics.state_outages.clone(),
        );
        registry.register(
            "plugin_reloads",
            "Plugin reloads by result",
            metrics.plugin_reloads.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads by result",
            metrics.config_reloads.clone(),
        );
        registry.register("ai_tokens", "AI tokens by kind", metrics.ai_tokens.clone());
        registry.register(
            "ai_cost",
            "AI cost in the configured prices' currency",
            metrics.ai_cost.clone(),
        );
        registry.register(
            "ai_cache",
            "AI answer cache lookups by result",
            metrics.ai_cache.clone(),
        );
        registry.register(
            "ai_failovers",
            "AI targets failed over from, the request going on to another",
            metrics.ai_failovers.clone(),
        );
        registry.register(
            "ai_budget_rejections",
            "AI requests refused by a token budget",
            metrics.ai_budget_rejections.clone(),
        );
        Metrics { registry, ..metrics }
    }

    /// Count a finished request.
    pub fn observe(&self, record: &RequestRecord) {
        let route = record
            .route
            .as_ref()
            .map_or_else(|| NO_ROUTE.clone(), |r| Label::from(&r.0));
        if let Some(kind) = record.error {
            self.errors
                .get_or_create(&ErrorLabels {
                    route: route.clone(),
                    kind,
                })
                .inc();
        }
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                method: method_label(&record.method),
                status: status_class(record.status),
            })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels { route })
            .observe(record.elapsed().as_secs_f64());
        for call in &record.plugins {
            let plugin = Label::from(&call.plugin.0);
            let result = match call.outcome {
                PluginOutcome::Continue => "continue",
                PluginOutcome::Responded(status) => {
                    self.plugin_answers
                        .get_or_create(&PluginAnswerLabels {
                            plugin: plugin.clone(),
                            status,
                        })
                        .inc();
                    "responded"
                }
                PluginOutcome::Fault { kind, skipped } => {
                    if skipped {
                        self.plugin_skips
                            .get_or_create(&PluginNameLabels {
                                plugin: plugin.as_str().to_string(),
                            })
                            .inc();
                    }
                    kind
                }
            };
            self.plugin_duration
                .get_or_create(&PluginLabels {
                    plugin: plugin.clone(),
                    phase: call.phase.as_str(),
                })
                .observe(call.duration.as_secs_f64());
            self.plugin_calls
                .get_or_create(&PluginResultLabels {
                    plugin,
                    phase: call.phase.as_str(),
                    result,
                })
                .inc();
        }
        let upstream = record.attempts_name().map_or_else(|| NO_ROUTE.clone(), Label::from);
        for (i, attempt) in record.attempts.iter().enumerate() {
            let target = TargetLabels {
                upstream: upstream.clone(),
                target: Label::from(&attempt.target),
            };
            if i > 0 {
                self.upstream_retries.get_or_create(&target).inc();
            }
            self.upstream_duration
                .get_or_create(&target)
                .observe(attempt.duration.as_secs_f64());
            let result = match attempt.outcome {
                AttemptOutcome::Answered(status) => status_class(status),
                AttemptOutcome::ConnectError => "connect-error",
                AttemptOutcome::Timeout => "timeout",
                AttemptOutcome::Broken => "broken",
                AttemptOutcome::ClientBody => "client-body",
            };
            self.upstream_attempts
                .get_or_create(&AttemptLabels {
                    upstream: target.upstream,
                    target: target.target,
                    result,
                })
                .inc();
        }
    }

    /// Count a settled AI request: its tokens and cost.
    pub fn observe_ai(&self, usage: &super::UsageRecord) {
        let labels = AiLabels {
            route: usage.route.clone(),
            target: usage.target.clone(),
            model: usage.model.clone(),
        };
        for (kind, tokens) in [("prompt", usage.prompt_tokens), ("completion", usage.completion_tokens)] {
            if tokens > 0 {
                self.ai_tokens
                    .get_or_create(&AiTokenLabels {
                        route: labels.route.clone(),
                        target: labels.target.clone(),
                        model: labels.model.clone(),
                        kind,
                    })
                    .inc_by(tokens);
            }
        }
        if usage.cost > 0.0 {
            self.ai_cost.get_or_create(&labels).inc_by(usage.cost);
        }
    }

    /// Count an AI answer-cache lookup.
    pub fn ai_cache_lookup(&self, route: &str, hit: bool) {
        self.ai_cache
            .get_or_create(&AiCacheLabels {
                route: route.to_string(),
                result: if hit { "hit" } else { "miss" },
            })
            .inc();
    }

    /// Count a target failed over from.
    pub fn ai_failover(&self, route: &str, target: &str, model: &str) {
        self.ai_failovers
            .get_or_create(&AiLabels {
                route: route.to_string(),
                target: target.to_string(),
                model: model.to_string(),
            })
            .inc();
    }

    /// Count a request a token budget refused.
    pub fn ai_budget_rejection(&self, route: &str) {
        self.ai_budget_rejections
            .get_or_create(&RouteLabels {
                route: Label(Arc::from(route)),
            })
            .inc();
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The method as a label: the standard methods, else `OTHER`.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// `1xx` … `5xx`, or `other`.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}
