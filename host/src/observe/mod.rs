//! Seeing what the gateway does: each request's [`RequestRecord`], filled
//! in along the request path, is reported once its response has ended to
//! the [`Metrics`](metrics::Metrics) (`GET /metrics` on the admin listener)
//! and the [access log](access_log).

pub mod access_log;
pub mod metrics;
pub mod record;

pub use record::{Attempt, AttemptOutcome, Phase, PluginCall, PluginOutcome, Reported, RequestRecord};

/// Where finished requests are reported. One per gateway; it outlives
/// config reloads, so counters keep counting.
#[derive(Default)]
pub struct Observer {
    /// The Prometheus metrics.
    pub metrics: metrics::Metrics,
    /// The access log, unless it is off.
    pub access_log: Option<access_log::AccessLog>,
}

impl Observer {
    /// An observer for `config`: metrics, and the access log it asks for.
    pub fn new(config: &crate::config::Config) -> std::io::Result<Observer> {
        let access_log = match config.access_log.destination(config) {
            None => None,
            Some(destination) => Some(access_log::AccessLog::start(destination)?),
        };
        Ok(Observer {
            metrics: metrics::Metrics::new(),
            access_log,
        })
    }

    /// Report a finished request.
    pub fn finish(&self, record: &RequestRecord) {
        self.metrics.in_flight.dec();
        self.metrics.observe(record);
        if let Some(log) = &self.access_log {
            log.write(record);
        }
    }
}
