//! Plugins in the config: the plugin directory and the defaults for every
//! plugin (`[plugins]`), each plugin's own settings (`[plugin.NAME]`, or
//! its manifest `NAME.toml`: grants, limits, fault behaviour, instance
//! mode), and the rule for plugin names, which double as file names.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Config, MAX_SMALL_FILE_BYTES, Problem};

/// The plugin directory and the defaults for every plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Directory holding `NAME.wasm` files.
    pub dir: PathBuf,
    /// Where compiled plugins are cached; default `$XDG_CACHE_HOME/weir` or
    /// `~/.cache/weir`.
    pub cache_dir: Option<PathBuf>,
    /// Default deadline for one plugin call, in milliseconds.
    pub deadline_ms: u64,
    /// Default linear-memory cap per plugin instance, in MiB.
    pub memory_mb: u64,
    /// Default most idle warm instances kept per plugin.
    pub max_idle_instances: usize,
    /// The largest plugin file read, in MiB; a larger one is refused as a
    /// load error (the old version keeps serving).
    pub max_file_mb: u64,
    /// Whether a plugin's manifest (`NAME.toml`) may grant it capabilities
    /// (`kv`, `secrets`, `outbound_hosts`). With false, a manifest that
    /// grants any is refused as a load error, so only this config grants.
    pub manifest_grants: bool,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: PathBuf::from("plugins"),
            cache_dir: None,
            deadline_ms: 100,
            memory_mb: 64,
            max_idle_instances: 64,
            max_file_mb: 128,
            manifest_grants: true,
        }
    }
}

/// How a plugin's instances are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceMode {
    /// Warm instances are reused from a pool (fast; the default).
    #[default]
    Pooled,
    /// A fresh instance for every request (stronger isolation).
    Fresh,
}

/// Settings for one plugin, shared by every route that uses it. The same
/// fields make up a plugin's manifest (`NAME.toml` beside `NAME.wasm`);
/// a field set in the gateway config's `[plugin.NAME]` wins over the
/// manifest's, which wins over the defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Deadline for one call, in milliseconds (default: `plugins.deadline_ms`).
    pub deadline_ms: Option<u64>,
    /// Linear-memory cap per instance, in MiB (default: `plugins.memory_mb`).
    pub memory_mb: Option<u64>,
    /// Skip this plugin when it faults instead of failing the request
    /// (default false). Never set this on an authentication plugin.
    pub fail_open: Option<bool>,
    /// `pooled` (default) or `fresh`.
    pub instance: Option<InstanceMode>,
    /// Grant the key-value store (default false).
    pub kv: Option<bool>,
    /// Secrets this plugin may read, by name.
    pub secrets: Option<Vec<String>>,
    /// Hosts this plugin may call: `host:port`, or `host` for any port.
    pub outbound_hosts: Option<Vec<String>>,
    /// Ceiling on an outbound call's duration, in milliseconds (default 5000).
    pub outbound_timeout_ms: Option<u64>,
}

impl PluginSettings {
    /// These settings, with fields they leave unset taken from `base`.
    pub fn over(&self, base: &PluginSettings) -> PluginSettings {
        PluginSettings {
            deadline_ms: self.deadline_ms.or(base.deadline_ms),
            memory_mb: self.memory_mb.or(base.memory_mb),
            fail_open: self.fail_open.or(base.fail_open),
            instance: self.instance.or(base.instance),
            kv: self.kv.or(base.kv),
            secrets: self.secrets.clone().or_else(|| base.secrets.clone()),
            outbound_hosts: self.outbound_hosts.clone().or_else(|| base.outbound_hosts.clone()),
            outbound_timeout_ms: self.outbound_timeout_ms.or(base.outbound_timeout_ms),
        }
    }

    /// The capabilities these settings grant, as written (`kv = true`,
    /// `secrets = ["name"]`, `outbound_hosts = ["host"]`); settings that
    /// grant nothing (`kv = false`, an empty list) are not listed.
    pub fn granted(&self) -> Vec<String> {
        let mut granted = Vec::new();
        if self.kv == Some(true) {
            granted.push("kv = true".to_string());
        }
        for (field, list) in [("secrets", &self.secrets), ("outbound_hosts", &self.outbound_hosts)] {
            if let Some(list) = list.as_ref().filter(|l| !l.is_empty()) {
                granted.push(format!("{field} = {list:?}"));
            }
        }
        granted
    }

    /// Check the settings against the config (`at` prefixes each path).
    pub fn problems(&self, at: &str, config: &Config) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| problems.push(Problem { path, message });
        if self.deadline_ms == Some(0) {
            problem(format!("{at}.deadline_ms"), "must be at least 1".into());
        }
        if let Some(mb) = self.memory_mb
            && (mb == 0 || mb > 4096)
        {
            problem(format!("{at}.memory_mb"), "must be between 1 and 4096".into());
        }
        if self.outbound_timeout_ms == Some(0) {
            problem(format!("{at}.outbound_timeout_ms"), "must be at least 1".into());
        }
        for (j, secret) in self.secrets.iter().flatten().enumerate() {
            if !config.secrets.contains_key(secret) {
                problem(format!("{at}.secrets[{j}]"), format!("unknown secret {secret:?}"));
            }
        }
        for (j, host) in self.outbound_hosts.iter().flatten().enumerate() {
            if host.is_empty() || host.contains('/') || host.contains("://") {
                problem(
                    format!("{at}.outbound_hosts[{j}]"),
                    format!("{host:?} is not host or host:port"),
                );
            }
        }
        problems
    }
}

/// A plugin's manifest: `NAME.toml` beside `NAME.wasm`, holding
/// [`PluginSettings`].
pub fn read_manifest(file: &Path) -> Result<Option<PluginSettings>, String> {
    match weir_core::files::read_regular_text(file, MAX_SMALL_FILE_BYTES) {
        Ok(text) => toml::from_str(&text)
            .map(Some)
            .map_err(|e| format!("manifest {}: {}", file.display(), e.message())),
        Err(weir_core::files::FileError::NotFound) => Ok(None),
        Err(e) => Err(format!("manifest {}: {e}", file.display())),
    }
}

/// Plugin names double as file names, so keep them plain.
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The route's plugin config as JSON, for `configure`.
pub fn plugin_config_json(value: &toml::Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string())
}
