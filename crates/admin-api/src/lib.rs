//! The admin API's answers, as plain types: the gateway builds them and
//! serializes them, `weir status` and the tests deserialize them, and an
//! outside client can do the same with nothing of the gateway but this
//! crate (it depends on serde alone).
//!
//! What each answers:
//!
//! - `GET /healthz`: [`Health`].
//! - `GET /plugins`: [`PluginList`], each plugin a [`PluginEntry`]: its
//!   [`PluginStatus`] (file, version, state, routes, [`Grant`]s, the last
//!   failed load) and, while a version of it serves, the
//!   [`PluginLimits`] the server adds.
//! - `GET /routes`: [`RouteList`], each route a [`RouteEntry`]: its
//!   plugin chain, the plugins it names that are missing, and its
//!   [`RouteBackend`]: an upstream with each target's [`TargetStatus`],
//!   or AI models with each [`AiTarget`].
//! - `GET /state`: [`SharedState`], with [`RedisState`] when the store
//!   is Redis.
//! - `POST /reload`: [`ReloadAnswer`].
//! - `GET /dashboard/data`: [`DashboardData`], the history the dashboard
//!   draws and `weir status` summarizes.
//! - Any refusal or failure: [`ErrorBody`].
//!
//! `GET /usage` answers the usage ledger's own report (`weir_ai::usage`)
//! and `GET /metrics` Prometheus text; neither is here.
//!
//! The field names are the wire format: the dashboard's JavaScript
//! (`crates/admin/src/dashboard/app.js`) reads the same JSON by these
//! names, so renaming a field breaks it. A field written as absent stays
//! absent (`skip_serializing_if`, or a flattened `Option` for a group of
//! fields that come together); one written as `null` stays `null`. No
//! type refuses unknown fields, so a client keeps reading answers from a
//! newer gateway.

mod dashboard;
mod plugins;
mod routes;

pub use dashboard::{
    AiPoint, AiRow, AiTotals, AiUsage, DashboardData, LastMinuteTraffic, PluginMinute, PluginTime, RecentError,
    RouteTraffic, TargetAttempts, TargetMinute, TrafficPoint,
};
pub use plugins::{Grant, GrantSource, PluginEntry, PluginLimits, PluginList, PluginState, PluginStatus};
pub use routes::{
    AiBackend, AiTarget, CircuitState, RouteBackend, RouteEntry, RouteList, TargetStatus, UpstreamBackend,
};

use serde::{Deserialize, Serialize};

/// `GET /healthz`: the gateway is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

impl Health {
    /// What a gateway that is up answers.
    pub fn ok() -> Health {
        Health { status: "ok".into() }
    }

    /// Whether the answer says the gateway is up.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// The body of every refusal and failure (401, 403, 404, 405, 421, 500,
/// ...), whatever the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}

impl ErrorBody {
    /// An error body saying `error`.
    pub fn new(error: impl Into<String>) -> ErrorBody {
        ErrorBody { error: error.into() }
    }
}

/// `POST /reload`: whether the config file was re-read and now serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadAnswer {
    /// Whether the new config serves (200), or the old one still does (422).
    pub reloaded: bool,
    /// Every problem that kept the new config out, one a line; absent when
    /// it reloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<String>>,
}

/// `GET /state`: where shared state (plugins' kv, budgets, caches) lives
/// and whether it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedState {
    /// `memory`, or the Redis URL with its password hidden.
    pub store: String,
    /// Whether operations go to the store now (memory always does).
    pub up: bool,
    /// Only when the store is Redis: its health and policy.
    #[serde(flatten)]
    pub redis: Option<RedisState>,
}

/// What [`SharedState`] adds when the store is Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisState {
    /// Why it is down, while it is (`null` while up).
    pub error: Option<String>,
    /// When it last went up or down, Unix ms.
    pub since_ms: i64,
    /// What routes do by default while it is down.
    pub on_unavailable: OnUnavailable,
    /// Operations that found it unavailable, since start.
    pub unavailable_operations: u64,
    /// Times it went down, since start.
    pub outages: u64,
}

/// What a route does while the shared store is down (`[state]
/// on_unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnUnavailable {
    /// Refuse what needs the store (503).
    FailClosed,
    /// Carry on with the gateway's own in-memory state.
    Local,
}

impl OnUnavailable {
    /// The policy's name, as in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnavailable::FailClosed => "fail-closed",
            OnUnavailable::Local => "local",
        }
    }
}

#[cfg(test)]
mod tests;
