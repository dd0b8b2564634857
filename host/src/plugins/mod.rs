//! The plugin runtime: loading `.wasm` components, configuring them for
//! their routes, and running them under limits.
//!
//! # Loading
//!
//! For every plugin some route uses, [`PluginRuntime::load`] reads
//! `plugins.dir/NAME.wasm`, checks that it is a component, compiles it (or
//! takes the compiled form from the [`engine::CompileCache`]), links it
//! against the host's imports (`instantiate_pre`), and makes a first
//! instance that runs `configure` for every route using the plugin. Any
//! failure is reported naming the file or the route and plugin, and the
//! whole plugin set is refused: a gateway never serves with a plugin that
//! rejected its config.
//!
//! # Running
//!
//! The proxy calls a route's [`Chain`]. Each [`ChainLink`] leases an
//! instance from its plugin's pool ([`instance::Lease`]): warm instances
//! are reused; an instance that faulted is thrown away. Every call runs
//! under the plugin's deadline (epoch interruption, checked every
//! [`engine::EPOCH_TICK`], yielding to tokio in between) and memory cap.

pub mod capabilities;
pub mod engine;
pub mod instance;
pub mod kv;
pub mod outbound;
mod output;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::Linker;

pub use capabilities::weir::plugin::types::{Interests, Reply, RequestAction};
use capabilities::{Grants, HostState, PluginIdentity, SharedCapabilities};
use engine::{CompileCache, content_hash};
use instance::{InstantiateError, LoadedPlugin, PluginLimits, RouteSlot};
pub use instance::{Lease, PluginFault};

use crate::config::{Config, PluginName, RouteName, plugin_config_json};

/// Why a plugin could not be loaded. Messages name the file or the route
/// and plugin, and the reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginLoadError {
    /// `NAME.wasm` does not exist.
    #[error("plugin {plugin}: no file {} (used by route {route})", file.display())]
    Missing {
        /// The plugin.
        plugin: PluginName,
        /// The expected file.
        file: PathBuf,
        /// A route that uses it.
        route: RouteName,
    },
    /// The file is not a usable component for this host.
    #[error("plugin {plugin} ({}): {reason}", file.display())]
    Invalid {
        /// The plugin.
        plugin: PluginName,
        /// The file.
        file: PathBuf,
        /// Why: unreadable, truncated, not a component, wrong world.
        reason: String,
    },
    /// `configure` rejected a route's config.
    #[error("plugin {plugin} on route {route}: configure failed: {reason}")]
    Configure {
        /// The plugin.
        plugin: PluginName,
        /// The route whose config was rejected.
        route: RouteName,
        /// The plugin's message.
        reason: String,
    },
    /// Instantiation or `configure` faulted.
    #[error("plugin {plugin}: {fault}")]
    Fault {
        /// The plugin.
        plugin: PluginName,
        /// The fault.
        fault: PluginFault,
    },
}

/// Everything plugins share in one gateway: engine, linker, capabilities.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    shared: Arc<SharedCapabilities>,
    cache: CompileCache,
}

impl PluginRuntime {
    /// A runtime for `config`: resolves its secrets and builds the linker.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let engine = engine::shared_engine().map_err(anyhow::Error::msg)?;
        let mut linker = Linker::new(&engine);
        capabilities::add_to_linker(&mut linker).map_err(|e| anyhow::anyhow!("linking host imports: {e:#}"))?;
        let secrets = resolve_secrets(config)?;
        let shared = Arc::new(SharedCapabilities {
            kv: Default::default(),
            secrets,
            outbound: outbound::OutboundClient::new().map_err(anyhow::Error::msg)?,
        });
        let cache_dir = config.plugins.cache_dir.as_ref().map(|d| config.resolve(d)).or_else(CompileCache::default_dir);
        Ok(PluginRuntime { engine, linker, shared, cache: CompileCache::new(cache_dir) })
    }

    /// Load and configure every plugin `config` uses. Returns every error
    /// found, not just the first.
    pub async fn load(&self, config: &Config) -> Result<PluginSet, Vec<PluginLoadError>> {
        let dir = config.plugin_dir();
        let mut uses: BTreeMap<PluginName, Vec<RouteSlot>> = BTreeMap::new();
        for route in &config.routes {
            for p in &route.plugins {
                uses.entry(p.name.clone()).or_default().push(RouteSlot {
                    route: route.name.clone(),
                    config_json: plugin_config_json(&p.config),
                    interests: Interests {
                        on_request: false,
                        request_body: false,
                        on_response: false,
                        response_body: false,
                        response_chunks: false,
                    },
                });
            }
        }

        let mut errors = Vec::new();
        let mut plugins = HashMap::new();
        for (name, slots) in uses {
            match self.load_one(config, &dir, &name, slots).await {
                Ok(plugin) => {
                    plugins.insert(name, Arc::new(plugin));
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let mut chains = HashMap::new();
        for route in &config.routes {
            let mut links = Vec::new();
            for p in &route.plugins {
                let plugin = plugins[&p.name].clone();
                let slot = plugin
                    .routes
                    .iter()
                    .position(|s| s.route == route.name)
                    .expect("every route using a plugin has a slot");
                links.push(ChainLink { interests: plugin.routes[slot].interests, plugin, slot });
            }
            chains.insert(route.name.clone(), Chain { links });
        }
        Ok(PluginSet { plugins, chains })
    }

    async fn load_one(
        &self,
        config: &Config,
        dir: &Path,
        name: &PluginName,
        mut slots: Vec<RouteSlot>,
    ) -> Result<LoadedPlugin, PluginLoadError> {
        let file = dir.join(format!("{name}.wasm"));
        let invalid = |reason: String| PluginLoadError::Invalid { plugin: name.clone(), file: file.clone(), reason };
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PluginLoadError::Missing {
                    plugin: name.clone(),
                    file: file.clone(),
                    route: slots[0].route.clone(),
                });
            }
            Err(e) => return Err(invalid(format!("cannot read: {e}"))),
        };
        check_component_header(&bytes).map_err(invalid)?;
        let hash = content_hash(&bytes);
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        let hash_for_compile = hash.clone();
        // Compiling takes a while; keep it off the async workers.
        let compiled = tokio::task::spawn_blocking(move || cache.component(&engine, &bytes, &hash_for_compile))
            .await
            .map_err(|e| invalid(format!("compilation panicked: {e}")))?;
        let (component, from_cache) =
            compiled.map_err(|e| invalid(format!("not a valid WebAssembly component: {}", first_line(&e))))?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            invalid(format!("does not fit the weir:plugin/plugin world (imports): {}", first_line(&e)))
        })?;

        let settings = config.plugin_settings(name);
        let limits = PluginLimits {
            deadline: Duration::from_millis(settings.deadline_ms.unwrap_or(config.plugins.deadline_ms)),
            memory_bytes: (settings.memory_mb.unwrap_or(config.plugins.memory_mb) as usize) << 20,
            fail_open: settings.fail_open,
            mode: settings.instance,
            max_idle: config.plugins.max_idle_instances,
        };
        let identity = Arc::new(PluginIdentity {
            name: name.clone(),
            grants: Grants {
                kv: settings.kv,
                secrets: settings.secrets.clone(),
                outbound_hosts: settings.outbound_hosts.clone(),
                outbound_timeout: Duration::from_millis(settings.outbound_timeout_ms),
            },
        });
        let all: Vec<usize> = (0..slots.len()).collect();
        let probe = LoadedPlugin::new(
            identity.clone(),
            file.clone(),
            hash.clone(),
            from_cache,
            limits.clone(),
            slots.clone(),
            instance_pre.clone(),
            self.shared.clone(),
        )
        .map_err(|e| invalid(format!("does not export weir:plugin/filter@0.1.0: {}", first_line(&e))))?;
        // One instance configures every route: this is where a plugin
        // rejects a route's config.
        let (first, interests) = probe.instantiate(&all).await.map_err(|e| match e {
            InstantiateError::Rejected { route, reason } => {
                PluginLoadError::Configure { plugin: name.clone(), route, reason }
            }
            InstantiateError::Fault(fault) => PluginLoadError::Fault { plugin: name.clone(), fault },
        })?;
        for (slot, interests) in slots.iter_mut().zip(interests) {
            slot.interests = interests;
        }
        let plugin = LoadedPlugin::new(identity, file.clone(), hash, from_cache, limits, slots, instance_pre, self.shared.clone())
            .map_err(|e| invalid(first_line(&e)))?;
        if plugin.limits.mode == crate::config::InstanceMode::Pooled {
            plugin.put_back(first);
        }
        tracing::info!(plugin = %name, hash = &plugin.content_hash[..12], from_cache, "plugin loaded");
        Ok(plugin)
    }
}

fn first_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().to_string()
}

/// Tell apart the common ways a file is not a component, with a message a
/// plugin author can act on.
fn check_component_header(bytes: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err("not a WebAssembly file (no \\0asm header)".into());
    }
    match bytes[4..8] {
        [0x01, 0x00, 0x00, 0x00] => Err("a core WebAssembly module, not a component; build for wasm32-wasip2 \
             or wrap it with `wasm-tools component new`"
            .into()),
        [_, _, 0x01, 0x00] => Ok(()),
        _ => Err("unsupported WebAssembly version or layer".into()),
    }
}

fn resolve_secrets(config: &Config) -> anyhow::Result<HashMap<String, String>> {
    let mut secrets = HashMap::new();
    for (name, source) in &config.secrets {
        let value = if let Some(v) = &source.value {
            v.clone()
        } else if let Some(var) = &source.env {
            std::env::var(var).map_err(|_| anyhow::anyhow!("secrets.{name}.env: {var} is not set"))?
        } else if let Some(file) = &source.file {
            let path = config.resolve(file);
            std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("secrets.{name}.file: cannot read {}: {e}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string()
        } else {
            anyhow::bail!("secrets.{name}: needs one of value, env, file");
        };
        secrets.insert(name.clone(), value);
    }
    Ok(secrets)
}

/// The plugins of one config and each route's chain.
pub struct PluginSet {
    /// Loaded plugins by name.
    pub plugins: HashMap<PluginName, Arc<LoadedPlugin>>,
    /// Each route's chain.
    pub chains: HashMap<RouteName, Chain>,
}

/// A route's plugins, in request order.
#[derive(Clone, Default)]
pub struct Chain {
    /// The links, in order.
    pub links: Vec<ChainLink>,
}

impl Chain {
    /// Whether any link needs the request body buffered.
    pub fn needs_request_body(&self) -> bool {
        self.links.iter().any(|l| l.interests.request_body)
    }
}

/// One plugin in a route's chain.
#[derive(Clone)]
pub struct ChainLink {
    /// The plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// The route's slot in the plugin.
    pub slot: usize,
    /// What the route's handler asked for.
    pub interests: Interests,
}

#[cfg(test)]
mod tests {
    use super::check_component_header;

    #[test]
    fn header_check_names_the_problem() {
        assert!(check_component_header(b"").unwrap_err().contains("empty"));
        assert!(check_component_header(b"hello world").unwrap_err().contains("not a WebAssembly"));
        assert!(check_component_header(b"\0asm\x01\0\0\0").unwrap_err().contains("core WebAssembly module"));
        assert!(check_component_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
