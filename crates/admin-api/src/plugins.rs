//! `GET /plugins`: each plugin the config uses or the plugin directory
//! holds, what serves of it, and what it may do.

use serde::{Deserialize, Serialize};

/// `GET /plugins`: every plugin, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginList {
    /// The plugins, by name.
    pub plugins: Vec<PluginEntry>,
}

impl PluginList {
    /// The plugin named `name`, if listed.
    pub fn get(&self, name: &str) -> Option<&PluginEntry> {
        self.plugins.iter().find(|p| p.status.name == name)
    }
}

/// One plugin: its status and, while a version of it serves, its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginEntry {
    /// What the gateway keeps of the plugin across reloads.
    #[serde(flatten)]
    pub status: PluginStatus,
    /// The serving version's limits; absent while none serves.
    #[serde(flatten)]
    pub limits: Option<PluginLimits>,
}

/// A plugin's file, version, state and grants, and its last failed load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStatus {
    /// The plugin's name.
    pub name: String,
    /// Its file.
    pub file: String,
    /// Whether it serves.
    pub state: PluginState,
    /// SHA-256 of the file serving now.
    pub version: Option<String>,
    /// When the serving version was loaded (seconds since the epoch).
    pub loaded_at: Option<u64>,
    /// Whether its compiled code came from the cache.
    pub compiled_from_cache: Option<bool>,
    /// Milliseconds spent reading and compiling it.
    pub compile_ms: Option<u64>,
    /// Routes using it.
    pub routes: Vec<String>,
    /// What the serving version was granted, each with where.
    pub grants: Vec<Grant>,
    /// The manifest beside the file serving now, if it has one.
    pub manifest: Option<String>,
    /// The last failed attempt to load a new version, if it has not been
    /// followed by a successful one.
    pub last_error: Option<String>,
    /// When that was (seconds since the epoch).
    pub last_error_at: Option<u64>,
}

/// Whether a plugin serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    /// A version of it serves.
    Loaded,
    /// Its file was removed: its routes answer 503.
    Missing,
    /// It never loaded: see `last_error`.
    Failed,
}

impl PluginState {
    /// `loaded`, `missing` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Loaded => "loaded",
            PluginState::Missing => "missing",
            PluginState::Failed => "failed",
        }
    }
}

/// One thing a plugin may do, and who granted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `kv`, `secret` or `outbound_host`.
    pub grant: String,
    /// The secret's name or the host; absent for `kv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where it was granted.
    pub source: GrantSource,
}

/// The file an operator reads to know what a plugin may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantSource {
    /// The gateway config's `[plugin.NAME]`.
    Config,
    /// The plugin's manifest, `NAME.toml` beside `NAME.wasm`.
    Manifest,
}

impl GrantSource {
    /// `config` or `manifest`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantSource::Config => "config",
            GrantSource::Manifest => "manifest",
        }
    }
}

/// What a serving plugin version is held to, and its idle instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginLimits {
    /// Instances ready in its pool now.
    pub idle_instances: u64,
    /// Each call's deadline.
    pub deadline_ms: u64,
    /// Each instance's memory cap, in MiB.
    pub memory_mb: u64,
    /// Whether a fault skips the plugin instead of failing the request.
    pub fail_open: bool,
    /// Each outbound HTTP call's timeout.
    pub outbound_timeout_ms: u64,
    /// How its calls are made: `direct` (on the worker's stack: every
    /// import it has answers at once) or `fiber` (some import may wait).
    pub calls: String,
}
