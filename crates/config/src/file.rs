//! The config file as a whole ([`Config`]): its sections, and what is
//! asked of it whole — paths resolved against the file's directory, the
//! plugins its routes use, the state policy of a route.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    AccessLogConfig, AdminConfig, AiConfig, HttpConfig, Limits, ListenerConfig, OnUnavailable, PluginName,
    PluginSettings, PluginsConfig, RouteConfig, RouteName, SecretSource, StateSetting, TracingConfig, UpstreamConfig,
    UpstreamName,
};

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the gateway accepts client traffic.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// The admin API (loopback only).
    pub admin: Option<AdminConfig>,
    /// Size limits applied to every request.
    #[serde(default)]
    pub limits: Limits,
    /// How request paths are made canonical before routing.
    #[serde(default)]
    pub http: HttpConfig,
    /// The access log.
    #[serde(default)]
    pub access_log: AccessLogConfig,
    /// Trace export over OTLP.
    #[serde(default)]
    pub tracing: TracingConfig,
    /// Where shared state (kv, rate limits, AI budgets and cache) lives.
    #[serde(default)]
    pub state: StateSetting,
    /// The plugin directory and default plugin limits.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Per-plugin settings: grants, limits, fault behaviour, instance mode.
    #[serde(default)]
    pub plugin: BTreeMap<PluginName, PluginSettings>,
    /// Named secrets that plugins may be granted.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Named upstream pools.
    #[serde(default)]
    pub upstreams: BTreeMap<UpstreamName, UpstreamConfig>,
    /// Routes, matched in order; the first match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Settings for every AI route: usage database, prices, budgets.
    #[serde(default)]
    pub ai: AiConfig,
    /// The directory the config file lives in; relative paths resolve here.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl Config {
    /// A path from the config resolved against the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// The plugin directory, resolved.
    pub fn plugin_dir(&self) -> PathBuf {
        self.resolve(&self.plugins.dir)
    }

    /// What `route` does while the shared state store is unavailable.
    pub fn state_policy(&self, route: &RouteName) -> OnUnavailable {
        self.routes
            .iter()
            .find(|r| &r.name == route)
            .and_then(|r| r.state_unavailable)
            .unwrap_or_else(|| self.state.config().on_unavailable)
    }

    /// The config's own settings for a plugin (all unset when it has none).
    pub fn plugin_settings(&self, name: &PluginName) -> PluginSettings {
        self.plugin.get(name).cloned().unwrap_or_default()
    }

    /// The routes whose chain or targets use `plugin`, in config order.
    pub fn routes_using<'a>(&'a self, plugin: &'a PluginName) -> impl Iterator<Item = &'a RouteName> + 'a {
        self.routes
            .iter()
            .filter(|r| {
                r.plugins.iter().any(|p| p.name == *plugin)
                    || r.ai.iter().any(|ai| ai.targets.iter().any(|t| t.shim == *plugin))
            })
            .map(|r| &r.name)
    }

    /// Every plugin some route uses, in its chain or as a target's shim,
    /// each once.
    pub fn used_plugins(&self) -> BTreeSet<PluginName> {
        self.routes
            .iter()
            .flat_map(|r| {
                let shims = r.ai.iter().flat_map(|ai| ai.targets.iter().map(|t| t.shim.clone()));
                r.plugins.iter().map(|p| p.name.clone()).chain(shims)
            })
            .collect()
    }

    /// Whether any route serves AI traffic.
    pub fn has_ai_routes(&self) -> bool {
        self.routes.iter().any(|r| r.ai.is_some())
    }
}
