//! Putting a gateway together and keeping it current: load a config and
//! its plugins, serve them, and swap in new versions — of one plugin file,
//! or of the whole config — without dropping a request.
//!
//! Every change is built completely off the request path (compile, link,
//! `configure` for every route) and swapped in atomically only if all of it
//! succeeded. Requests hold the [`Proxy`] they started with, so requests in
//! flight finish on the old version while new ones see the new one. A
//! change that fails leaves the old version serving and is recorded in the
//! plugin's status (log and admin API).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::Mutex;

pub use weir_admin_api::PluginStatus;
use weir_admin_api::{Grant, PluginState};
use weir_ai::AiServices;
use weir_ai::cache::AnswerCache;
use weir_ai::usage::UsageLedger;
use weir_config::{Config, ConfigError, PluginName, UpstreamName};
use weir_observe::Observer;
use weir_observe::metrics::ReloadLabels;
use weir_plugins::AnyPlugin;
use weir_plugins::capabilities::{GrantEntry, GrantSource, SharedCapabilities};
use weir_plugins::{LoadedSet, PluginLoadError, PluginRuntime};
use weir_proxy::SharedProxy;
use weir_proxy::upstream::UpstreamPool;

mod assemble;

use assemble::{ai_services, answer_caches, build_proxy, build_upstreams};

/// Why a config cannot be served. Lists every problem found.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The config file itself is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Plugins failed to load or configure.
    #[error("{}", plugin_problems(.0))]
    Plugins(Vec<PluginLoadError>),
    /// Anything else that stops the config from being served (secrets,
    /// certificates, upstream TLS settings).
    #[error("{0:#}")]
    Other(anyhow::Error),
}

fn plugin_problems(errors: &[PluginLoadError]) -> String {
    let mut text = format!(
        "{} plugin problem{}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for e in errors {
        text.push_str("\n  ");
        text.push_str(&e.to_string());
    }
    text
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The config and plugins being served, changed only by reloads (one at a
/// time).
struct Serving {
    config: Config,
    capabilities: Arc<SharedCapabilities>,
    upstreams: HashMap<UpstreamName, Arc<UpstreamPool>>,
    loaded: LoadedSet,
    ai: Option<Arc<AiServices>>,
    /// Each AI route's answer cache, made with the config.
    caches: HashMap<weir_config::RouteName, AnswerCache>,
    /// Where requests are reported; the same across reloads.
    observer: Arc<Observer>,
}

/// A loaded gateway: its config, plugins and the proxy built from them,
/// with the operations that change them.
pub struct Gateway {
    config_file: Option<PathBuf>,
    runtime: PluginRuntime,
    proxy: SharedProxy,
    serving: Mutex<Serving>,
    status: RwLock<BTreeMap<PluginName, PluginStatus>>,
    /// The usage ledger, opened with the first config that has AI routes
    /// and kept across reloads.
    ledger: Mutex<Option<Arc<UsageLedger>>>,
}

impl Gateway {
    /// Read and validate the config file, load every plugin and configure
    /// it for its routes. The file is re-read on [`Gateway::reload_config`].
    pub async fn load_file(path: &Path) -> Result<Gateway, LoadError> {
        let config = Config::load(path)?;
        Gateway::build(config, Some(path.to_path_buf())).await
    }

    /// Load every plugin of a validated config (which has no file to
    /// reload from).
    pub async fn load(config: Config) -> Result<Gateway, LoadError> {
        Gateway::build(config, None).await
    }

    async fn build(config: Config, config_file: Option<PathBuf>) -> Result<Gateway, LoadError> {
        let state = weir_state::SharedState::start(&config.state_config())
            .await
            .map_err(LoadError::Other)?;
        let runtime = PluginRuntime::new(&config, Arc::new(state)).map_err(LoadError::Other)?;
        let capabilities = runtime.capabilities_for(&config).map_err(LoadError::Other)?;
        let loaded = runtime
            .load(&config, &capabilities, &HashMap::new())
            .await
            .map_err(LoadError::Plugins)?;
        for (name, plugin) in &loaded.plugins {
            log_grant_changes(name, None, plugin);
        }
        let upstreams = build_upstreams(&config)?;
        let ledger = Mutex::new(None);
        let observer = Arc::new(Observer::new(&config).map_err(LoadError::Other)?);
        let ai = ai_services(&config, &ledger, &observer, runtime.state()).await?;
        let serving = Serving {
            caches: answer_caches(&config, runtime.state()),
            config,
            capabilities,
            upstreams,
            loaded,
            ai,
            observer,
        };
        let proxy = Arc::new(ArcSwap::from_pointee(build_proxy(&serving)?));
        let gateway = Gateway {
            config_file,
            runtime,
            proxy,
            serving: Mutex::new(serving),
            status: RwLock::new(BTreeMap::new()),
            ledger,
        };
        gateway.refresh_status(&*gateway.serving.lock().await);
        Ok(gateway)
    }

    /// The shared state (kv, budgets, caches): in memory or in Redis.
    pub fn state(&self) -> &Arc<weir_state::SharedState> {
        self.runtime.state()
    }

    /// The config being served.
    pub async fn current_config(&self) -> Config {
        self.serving.lock().await.config.clone()
    }

    /// The proxy serving now.
    pub fn proxy(&self) -> &SharedProxy {
        &self.proxy
    }

    /// The config file, if the gateway was loaded from one.
    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }

    /// The plugin directory of the config serving now.
    pub async fn plugin_dir(&self) -> PathBuf {
        self.serving.lock().await.config.plugin_dir()
    }

    /// Every plugin's status, by name.
    pub fn plugin_status(&self) -> Vec<PluginStatus> {
        self.status
            .read()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Re-read the config file and, if it is valid and every plugin it uses
    /// loads and configures, serve it. Otherwise keep serving the old one
    /// and return every problem.
    pub async fn reload_config(&self) -> Result<(), LoadError> {
        let Some(file) = &self.config_file else {
            return Err(LoadError::Other(anyhow::anyhow!(
                "the gateway was not loaded from a config file"
            )));
        };
        let result = self.try_reload_config(file).await;
        self.observer()
            .metrics
            .config_reloads
            .get_or_create(&ReloadLabels {
                result: if result.is_ok() { "ok" } else { "failed" },
            })
            .inc();
        match &result {
            Ok(()) => tracing::info!(file = %file.display(), "config reloaded"),
            Err(e) => {
                tracing::error!(file = %file.display(), "config reload refused; the old config keeps serving:\n{e}")
            }
        }
        result
    }

    async fn try_reload_config(&self, file: &Path) -> Result<(), LoadError> {
        let config = Config::load(file)?;
        let mut serving = self.serving.lock().await;
        warn_about_restart_only_changes(&serving.config, &config);
        let capabilities = self.runtime.capabilities_for(&config).map_err(LoadError::Other)?;
        let upstreams = build_upstreams(&config)?;

        // Plugins keep the version serving now; new ones are read from disk.
        let none = HashMap::new();
        let serving_now = if config.plugin_dir() == serving.config.plugin_dir() {
            &serving.loaded.sources
        } else {
            &none
        };
        let loaded = self
            .runtime
            .load(&config, &capabilities, serving_now)
            .await
            .map_err(LoadError::Plugins)?;
        let ai = ai_services(&config, &self.ledger, &serving.observer, self.runtime.state()).await?;
        let next = Serving {
            caches: answer_caches(&config, self.runtime.state()),
            config,
            capabilities,
            upstreams,
            loaded,
            ai,
            observer: serving.observer.clone(),
        };
        let proxy = build_proxy(&next)?;
        for (name, plugin) in &next.loaded.plugins {
            log_grant_changes(name, Some(grants_of(serving.loaded.plugins.get(name))), plugin);
        }
        *serving = next;
        self.proxy.store(Arc::new(proxy));
        self.refresh_status(&serving);
        Ok(())
    }

    /// The file `NAME.wasm` (or its manifest) changed, appeared or
    /// disappeared: load the new version and swap it in if it configures
    /// for every route using it; if the file is gone, its routes answer
    /// 503 until it is back.
    pub async fn reload_plugin(&self, name: &PluginName) {
        let mut serving = self.serving.lock().await;
        let dir = serving.config.plugin_dir();
        let used = serving.config.used_plugins().contains(name);
        let route = serving.config.routes_using(name).next().cloned();
        let source = match self.runtime.compile(&dir, name, route.as_ref()).await {
            Ok(source) => source,
            Err(PluginLoadError::Missing { .. }) => {
                let had = serving.loaded.plugins.remove(name).is_some();
                serving.loaded.sources.remove(name);
                if had {
                    tracing::warn!(plugin = %name, "plugin file removed; routes using it answer 503 until it is back");
                    self.store_proxy(&serving);
                }
                self.refresh_status(&serving);
                return;
            }
            Err(e) => return self.record_failure(&serving, name, &e.to_string()),
        };
        let unchanged =
            serving.loaded.sources.get(name).is_some_and(|current| {
                current.content_hash == source.content_hash && current.manifest == source.manifest
            });
        if unchanged && serving.loaded.plugins.contains_key(name) {
            self.clear_failure(name);
            return;
        }
        if !used {
            // Nothing routes to it; keep it ready for a config that will.
            tracing::info!(plugin = %name, version = &source.content_hash[..12], "plugin ready (no route uses it yet)");
            serving.loaded.sources.insert(name.clone(), source);
            self.refresh_status(&serving);
            return;
        }
        match self
            .runtime
            .configure(&source, &serving.config, &serving.capabilities)
            .await
        {
            Ok(plugin) => {
                tracing::info!(plugin = %name, version = &source.content_hash[..12], "new plugin version serving");
                log_grant_changes(name, Some(grants_of(serving.loaded.plugins.get(name))), &plugin);
                self.count_plugin_reload(&serving, "ok");
                serving.loaded.plugins.insert(name.clone(), plugin);
                serving.loaded.sources.insert(name.clone(), source);
                self.store_proxy(&serving);
                self.refresh_status(&serving);
                // The same file with a fixed manifest is the same version:
                // the success must still clear the failure it follows.
                self.clear_failure(name);
            }
            Err(e) => {
                let error = format!(
                    "{} (version {}): {e}",
                    source.file.display(),
                    &source.content_hash[..12]
                );
                self.record_failure(&serving, name, &error)
            }
        }
    }

    /// Serve a new proxy for `serving` (after a plugin changed; the config
    /// it was built from already built once, so this fails only if a
    /// target's client cannot be made again).
    fn store_proxy(&self, serving: &Serving) {
        match build_proxy(serving) {
            Ok(proxy) => self.proxy.store(Arc::new(proxy)),
            Err(e) => tracing::error!("cannot rebuild the routes; the old ones keep serving: {e}"),
        }
    }

    /// The usage ledger, if the gateway has AI routes.
    pub async fn usage_ledger(&self) -> Option<Arc<UsageLedger>> {
        self.ledger.lock().await.clone()
    }

    /// Write every usage record still queued (at shutdown).
    pub async fn close_usage(&self) {
        if let Some(ledger) = self.ledger.lock().await.as_ref()
            && let Err(e) = ledger.close().await
        {
            tracing::error!("closing the usage ledger: {e}");
        }
    }

    fn count_plugin_reload(&self, serving: &Serving, result: &'static str) {
        serving
            .observer
            .metrics
            .plugin_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    /// Where requests are reported.
    pub fn observer(&self) -> Arc<Observer> {
        self.proxy.load().observer.clone()
    }

    fn record_failure(&self, serving: &Serving, name: &PluginName, error: &str) {
        tracing::error!(plugin = %name, "new plugin version refused; the old one keeps serving: {error}");
        self.count_plugin_reload(serving, "failed");
        self.refresh_status(serving);
        if let Ok(mut status) = self.status.write() {
            let entry = status
                .entry(name.clone())
                .or_insert_with(|| missing_status(serving, name));
            if entry.state == PluginState::Missing {
                entry.state = PluginState::Failed;
            }
            entry.last_error = Some(error.to_string());
            entry.last_error_at = Some(now_secs());
        }
    }

    fn clear_failure(&self, name: &PluginName) {
        if let Ok(mut status) = self.status.write()
            && let Some(entry) = status.get_mut(name)
        {
            entry.last_error = None;
            entry.last_error_at = None;
        }
    }

    /// Rebuild every status from what is serving, keeping recorded errors
    /// for plugins whose serving version did not change.
    fn refresh_status(&self, serving: &Serving) {
        let Ok(mut status) = self.status.write() else { return };
        let mut names: Vec<PluginName> = serving.config.used_plugins().into_iter().collect();
        names.extend(serving.loaded.sources.keys().cloned());
        names.sort();
        names.dedup();
        let mut fresh = BTreeMap::new();
        for name in names {
            let mut entry = match serving.loaded.sources.get(&name) {
                Some(source) => PluginStatus {
                    name: name.to_string(),
                    file: source.file.display().to_string(),
                    state: PluginState::Loaded,
                    version: Some(source.content_hash.clone()),
                    loaded_at: serving.loaded.plugins.get(&name).map(|p| {
                        p.loaded_at()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0)
                    }),
                    compiled_from_cache: Some(source.from_cache),
                    compile_ms: Some(source.compile_time.as_millis() as u64),
                    routes: routes_using(serving, &name),
                    grants: listed_grants(serving.loaded.plugins.get(&name)),
                    manifest: source
                        .manifest
                        .as_ref()
                        .map(|_| source.file.with_extension("toml").display().to_string()),
                    last_error: None,
                    last_error_at: None,
                },
                None => missing_status(serving, &name),
            };
            if let Some(old) = status.get(&name)
                && old.version == entry.version
            {
                entry.last_error = old.last_error.clone();
                entry.last_error_at = old.last_error_at;
            }
            fresh.insert(name, entry);
        }
        *status = fresh;
    }
}

/// The grants of a plugin version; none without one.
fn grants_of(plugin: Option<&AnyPlugin>) -> Vec<GrantEntry> {
    plugin.map(|p| p.identity().grants.entries()).unwrap_or_default()
}

/// The grants of a plugin version as the admin API lists them.
fn listed_grants(plugin: Option<&AnyPlugin>) -> Vec<Grant> {
    grants_of(plugin)
        .into_iter()
        .map(|entry| Grant {
            grant: entry.grant.to_string(),
            name: entry.name,
            source: match entry.source {
                GrantSource::Config => weir_admin_api::GrantSource::Config,
                GrantSource::Manifest => weir_admin_api::GrantSource::Manifest,
            },
        })
        .collect()
}

/// Log at warn level every grant a reload gave `name`, took from it, or
/// moved between the config and its manifest, naming the grant and where
/// it now comes from; `old` holds the grants before the reload. At the
/// first load (`old` is `None`), grants from a manifest are logged at info
/// level.
fn log_grant_changes(name: &PluginName, old: Option<Vec<GrantEntry>>, new: &AnyPlugin) {
    let manifest = new.file().with_extension("toml");
    let from = |source: GrantSource| match source {
        GrantSource::Config => "the config".to_string(),
        GrantSource::Manifest => format!("its manifest {}", manifest.display()),
    };
    let new_entries = new.identity().grants.entries();
    let Some(old_entries) = old else {
        for entry in new_entries.iter().filter(|e| e.source == GrantSource::Manifest) {
            tracing::info!(plugin = %name, grant = %entry, source = %entry.source.as_str(), "plugin {name} granted {entry} by {}", from(entry.source));
        }
        return;
    };
    let same_grant = |a: &GrantEntry, b: &GrantEntry| a.grant == b.grant && a.name == b.name;
    for entry in &new_entries {
        match old_entries.iter().find(|o| same_grant(o, entry)) {
            None => tracing::warn!(
                plugin = %name, grant = %entry, source = %entry.source.as_str(),
                "plugin {name} now granted {entry} by {}", from(entry.source)
            ),
            Some(was) if was.source != entry.source => tracing::warn!(
                plugin = %name, grant = %entry, source = %entry.source.as_str(),
                "plugin {name}: grant {entry} now comes from {} (was {})", from(entry.source), from(was.source)
            ),
            Some(_) => {}
        }
    }
    for entry in old_entries
        .iter()
        .filter(|o| !new_entries.iter().any(|e| same_grant(o, e)))
    {
        tracing::warn!(
            plugin = %name, grant = %entry, source = %entry.source.as_str(),
            "plugin {name} no longer granted {entry} (it came from {})", from(entry.source)
        );
    }
}

fn routes_using(serving: &Serving, name: &PluginName) -> Vec<String> {
    serving.config.routes_using(name).map(|r| r.to_string()).collect()
}

fn missing_status(serving: &Serving, name: &PluginName) -> PluginStatus {
    PluginStatus {
        name: name.to_string(),
        file: serving
            .config
            .plugin_dir()
            .join(format!("{name}.wasm"))
            .display()
            .to_string(),
        state: PluginState::Missing,
        version: None,
        loaded_at: None,
        compiled_from_cache: None,
        compile_ms: None,
        routes: routes_using(serving, name),
        grants: Vec::new(),
        manifest: None,
        last_error: None,
        last_error_at: None,
    }
}

/// Listener and admin addresses are bound once, at start.
fn warn_about_restart_only_changes(old: &Config, new: &Config) {
    let addresses = |c: &Config| {
        let mut a: Vec<String> = c
            .listeners
            .iter()
            .map(|l| format!("{}{}", l.address, if l.tls.is_some() { " tls" } else { "" }))
            .collect();
        a.push(c.admin.as_ref().map(|a| a.address.clone()).unwrap_or_default());
        a.push(
            c.admin
                .as_ref()
                .and_then(|a| a.health_address.clone())
                .unwrap_or_default(),
        );
        a
    };
    if addresses(old) != addresses(new) {
        tracing::warn!("listener, admin and probe address changes take effect only after a restart");
    }
    let admin_access = |c: &Config| c.admin.as_ref().map(|a| (a.token.clone(), a.allowed_hosts.clone()));
    if admin_access(old) != admin_access(new) {
        tracing::warn!("admin token and allowed_hosts changes take effect only after a restart");
    }
    if old.limits.max_header_bytes != new.limits.max_header_bytes || old.limits.max_headers != new.limits.max_headers {
        tracing::warn!("header limits take effect only after a restart");
    }
    if old.access_log != new.access_log || old.tracing != new.tracing {
        tracing::warn!("access log and tracing changes take effect only after a restart");
    }
}
