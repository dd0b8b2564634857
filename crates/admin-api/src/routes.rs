//! `GET /routes`: each route's plugin chain and backend, with the health
//! of every target it may send to.

use serde::{Deserialize, Serialize};

/// `GET /routes`: every route, in config order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteList {
    /// The routes, in config order.
    pub routes: Vec<RouteEntry>,
}

impl RouteList {
    /// The route named `name`, if listed.
    pub fn get(&self, name: &str) -> Option<&RouteEntry> {
        self.routes.iter().find(|r| r.name == name)
    }
}

/// One route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteEntry {
    /// The route's name.
    pub name: String,
    /// Its plugin chain, in order, as serving.
    pub plugins: Vec<String>,
    /// Plugins it names that are not loaded: it answers 503 until they are.
    pub missing_plugins: Vec<String>,
    /// Where it sends requests; absent if the gateway cannot tell.
    #[serde(flatten)]
    pub backend: Option<RouteBackend>,
}

/// Where a route sends requests: its fields sit beside the route's own.
/// Which one it is shows by its fields (`upstream`, or `models`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RouteBackend {
    /// An upstream pool.
    Upstream(UpstreamBackend),
    /// AI targets behind model names.
    Ai(AiBackend),
}

/// An upstream pool and its targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamBackend {
    /// The pool's name.
    pub upstream: String,
    /// Each target, `scheme://authority`.
    pub targets: Vec<String>,
    /// The targets skipped now: down, or their circuit open.
    pub ejected: Vec<String>,
    /// Each target's weight, circuit and requests in flight.
    pub target_status: Vec<TargetStatus>,
}

/// One upstream target now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// `scheme://authority`.
    pub target: String,
    /// Its share of traffic.
    pub weight: u32,
    /// Its circuit.
    pub circuit: CircuitState,
    /// Requests not yet answered in full.
    pub in_flight: u32,
}

/// A target's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Requests flow.
    Closed,
    /// Requests skip the target.
    Open,
    /// One trial request at a time.
    HalfOpen,
    /// Active health checks failed.
    Down,
}

impl CircuitState {
    /// `closed`, `open`, `half_open` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Down => "down",
        }
    }
}

/// An AI route's models and targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiBackend {
    /// The model names clients may ask for, each once, in config order.
    pub models: Vec<String>,
    /// Each provider endpoint, in config order.
    pub ai_targets: Vec<AiTarget>,
}

/// One provider endpoint of an AI route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiTarget {
    /// Its name in the config.
    pub name: String,
    /// The provider's model name.
    pub model: String,
    /// The model name clients ask for.
    pub alias: String,
    /// Its base URL.
    pub url: String,
    /// The provider shim plugin it goes through.
    pub shim: String,
    /// Whether that shim is loaded (if not, the target is skipped).
    pub shim_loaded: bool,
    /// Share of traffic within its priority.
    pub weight: u32,
    /// Lower is tried first.
    pub priority: u32,
    /// Milliseconds left of a rest it asked for (429), if any.
    pub cooling_ms: Option<i64>,
    /// Its circuit.
    pub circuit: CircuitState,
}
