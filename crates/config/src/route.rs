//! Routes: what a route matches, where it sends requests (an upstream
//! pool or AI targets) and its chain of plugins with their config.

use serde::Deserialize;

use super::{AiRouteConfig, OnUnavailable, PluginName, RouteName, UpstreamName};

/// A route: what it matches, its plugin chain and where it goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name, used in logs, errors and the admin API.
    pub name: RouteName,
    /// Match this host (case-insensitive, port ignored); `*.example.com`
    /// matches any subdomain. Absent: any host.
    pub host: Option<String>,
    /// Match paths under this prefix, at a segment boundary (`/api`
    /// matches `/api` and `/api/x`, not `/apix`).
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    /// Match only these methods. Absent: any method.
    pub methods: Option<Vec<String>>,
    /// The upstream pool requests go to (set this or `ai`).
    pub upstream: Option<UpstreamName>,
    /// Serve the OpenAI chat completions API from provider targets (set
    /// this or `upstream`).
    pub ai: Option<AiRouteConfig>,
    /// Send the client's `host` to the upstream instead of the target's.
    #[serde(default)]
    pub preserve_host: bool,
    /// Most requests in flight on this route; more are answered 503 with
    /// `retry-after` at once. Absent: only the gateway's limit applies.
    pub max_concurrent_requests: Option<usize>,
    /// What this route does while a shared (Redis) state store is
    /// unavailable; absent: `state.on_unavailable`.
    pub state_unavailable: Option<OnUnavailable>,
    /// The plugin chain, run in order on requests and in reverse on
    /// responses.
    #[serde(default)]
    pub plugins: Vec<RoutePlugin>,
}

fn default_path_prefix() -> String {
    "/".to_string()
}

/// One plugin in a route's chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePlugin {
    /// The plugin (file `NAME.wasm` in the plugin directory).
    pub name: PluginName,
    /// This route's config for the plugin, handed to its `configure`.
    #[serde(default = "empty_table")]
    pub config: toml::Value,
}

/// An empty TOML table: a route plugin's config when none is written.
pub(super) fn empty_table() -> toml::Value {
    toml::Value::Table(Default::default())
}
