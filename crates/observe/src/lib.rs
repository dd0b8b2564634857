//! Seeing what the gateway does: each request's [`RequestRecord`], filled
//! in along the request path, is reported once its response has ended to
//! the [`Metrics`](metrics::Metrics) (`GET /metrics` on the admin listener),
//! the [access log](access_log) and, when configured, [OTLP traces](trace).

pub mod access_log;
pub mod ai;
pub mod history;
pub mod metrics;
pub mod record;
pub mod trace;

pub use ai::{AiSlot, AiSummary, UsageRecord};
pub use record::{
    Attempt, AttemptOutcome, ChunkCalls, Phase, PluginCall, PluginOutcome, Reported, RequestRecord, ShimCalls,
    TraceContext,
};

/// Where finished requests are reported. One per gateway; it outlives
/// config reloads, so counters keep counting.
#[derive(Default)]
pub struct Observer {
    /// The Prometheus metrics.
    pub metrics: metrics::Metrics,
    /// The access log, unless it is off.
    pub access_log: Option<access_log::AccessLog>,
    /// The OTLP trace exporter, when an endpoint is configured.
    pub tracing: Option<trace::Tracing>,
    /// The last fifteen minutes, for the dashboard and `weir status`.
    pub history: history::History,
}

impl Observer {
    /// An observer for `config`: metrics, and the access log and trace
    /// export it asks for.
    pub fn new(config: &weir_config::Config) -> anyhow::Result<Observer> {
        let access_log = match config.access_log.destination(config) {
            None => None,
            Some(destination) => Some(
                access_log::AccessLog::start(destination)
                    .map_err(|e| anyhow::anyhow!("access_log.to: {}: {e}", config.access_log.to))?,
            ),
        };
        Ok(Observer {
            metrics: metrics::Metrics::new(),
            access_log,
            tracing: trace::Tracing::start(&config.tracing)?,
            history: history::History::new(),
        })
    }

    /// Report a finished request.
    pub fn finish(&self, record: &RequestRecord) {
        self.metrics.in_flight.dec();
        self.metrics.observe(record);
        self.history.record(record);
        if let Some(log) = &self.access_log {
            log.write(record);
        }
        if let Some(tracing) = &self.tracing {
            tracing.export(record);
        }
    }

    /// Report a settled AI request (`priced`: its model has a price).
    pub fn ai_usage(&self, usage: &UsageRecord, priced: bool) {
        self.metrics.observe_ai(usage);
        self.history.ai_usage(
            &usage.route,
            &usage.target,
            &usage.model,
            usage.consumer.as_deref(),
            usage.prompt_tokens,
            usage.completion_tokens,
            priced.then_some(usage.cost),
        );
    }

    /// Write the access log lines still queued and send the spans still
    /// batched (at shutdown).
    pub fn shutdown(&self) {
        if let Some(log) = &self.access_log {
            log.shutdown();
        }
        if let Some(tracing) = &self.tracing {
            tracing.shutdown();
        }
    }
}
