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

mod any;
pub mod capabilities;
mod chain;
mod deadline;
pub mod engine;
pub mod exchange;
pub mod fault;
pub mod filter;
pub mod instance;
mod output;
pub mod shim;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Linker;

pub use any::AnyPlugin;
pub use capabilities::weir::plugin::types::{Interests, Reply, RequestAction};
use capabilities::{
    GrantSource, GrantSources, Grants, HostState, PluginIdentity, PluginPre, SharedCapabilities, direct,
};
pub use chain::{Chain, ChainLink, build_chains};
use engine::{CompileCache, content_hash};
pub use filter::{Filter, FilterLease, FilterPlugin, FilterPre};
use instance::{InstantiateError, LoadedPlugin, Origin, PluginLimits, RouteSlot, World};
pub use instance::{Lease, PluginFault};
pub use shim::{ProviderShim, ShimLease, ShimPlugin};
use weir_state::SharedState;

use weir_config::{Config, PluginName, PluginSettings, RouteName, plugin_config_json, read_manifest};

/// Why a plugin could not be loaded. Messages name the file or the route
/// and plugin, and the reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginLoadError {
    /// `NAME.wasm` does not exist.
    #[error("plugin {plugin}: no file {}{}", file.display(), route.as_ref().map(|r| format!(" (used by route {r})")).unwrap_or_default())]
    Missing {
        /// The plugin.
        plugin: PluginName,
        /// The expected file.
        file: PathBuf,
        /// A route that uses it.
        route: Option<RouteName>,
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

/// Everything plugins share in one gateway: engine, linker, compile cache,
/// and the capabilities that outlive a config (the shared state, the
/// outbound client).
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    /// The imports that never wait: a filter that links against these
    /// alone is called directly, without a fiber.
    direct_linker: Linker<HostState>,
    cache: CompileCache,
    state: Arc<SharedState>,
    outbound: capabilities::OutboundClient,
    /// The largest `.wasm` file read.
    max_file_bytes: u64,
}

/// A plugin file read, checked, compiled and linked; not yet configured.
#[derive(Clone)]
pub struct PluginSource {
    /// The plugin's name.
    pub name: PluginName,
    /// The `.wasm` file.
    pub file: PathBuf,
    /// SHA-256 of the file: its version.
    pub content_hash: String,
    /// Whether compiled code came from the cache.
    pub from_cache: bool,
    /// How long reading and compiling (or loading from cache) took.
    pub compile_time: Duration,
    /// The manifest beside the file, if any.
    pub manifest: Option<PluginSettings>,
    pre: PluginExports,
}

impl PluginSource {
    /// What the component exports: a filter or a provider shim.
    pub fn exports(&self) -> &PluginExports {
        &self.pre
    }

    fn origin<'a, W: World>(&'a self, pre: &'a W::Pre) -> Origin<'a, W> {
        Origin {
            file: &self.file,
            content_hash: &self.content_hash,
            from_cache: self.from_cache,
            pre,
        }
    }
}

/// What a plugin component is, by the world it exports: a filter in route
/// chains, or a provider shim for AI targets. Checked once, at compile.
#[derive(Clone)]
pub enum PluginExports {
    /// Exports `weir:plugin/filter`.
    Filter(<Filter as World>::Pre),
    /// Exports `weir:plugin/provider`.
    Shim(<ProviderShim as World>::Pre),
}

impl PluginExports {
    /// Whether this is a provider shim.
    pub fn is_shim(&self) -> bool {
        matches!(self, PluginExports::Shim(_))
    }
}

impl PluginRuntime {
    /// A runtime for `config`: the engine, the linker with every import,
    /// the compile cache; plugins' `kv` goes to `state`.
    pub fn new(config: &Config, state: Arc<SharedState>) -> anyhow::Result<Self> {
        let engine = engine::shared_engine().map_err(anyhow::Error::msg)?;
        let mut linker = Linker::new(&engine);
        capabilities::add_to_linker(&mut linker).map_err(|e| anyhow::anyhow!("linking host imports: {e:#}"))?;
        let mut direct_linker = Linker::new(&engine);
        capabilities::add_direct_to_linker(&mut direct_linker, state.redis().is_none())
            .map_err(|e| anyhow::anyhow!("linking host imports: {e:#}"))?;
        let cache_dir = config
            .plugins
            .cache_dir
            .as_ref()
            .map(|d| config.resolve(d))
            .or_else(CompileCache::default_dir);
        Ok(PluginRuntime {
            engine,
            linker,
            direct_linker,
            cache: CompileCache::new(cache_dir),
            state,
            outbound: capabilities::OutboundClient::new().map_err(anyhow::Error::msg)?,
            max_file_bytes: config.plugins.max_file_mb.saturating_mul(1 << 20),
        })
    }

    /// The shared state (kv, budgets, caches).
    pub fn state(&self) -> &Arc<SharedState> {
        &self.state
    }

    /// The capabilities plugins configured under `config` get: its secrets,
    /// and the runtime's long-lived store and client.
    pub fn capabilities_for(&self, config: &Config) -> anyhow::Result<Arc<SharedCapabilities>> {
        if config.state_config() != *self.state.config() {
            tracing::warn!("the [state] settings changed; they take effect at the next restart");
        }
        Ok(Arc::new(SharedCapabilities {
            state: self.state.clone(),
            secrets: resolve_secrets(config)?,
            outbound: self.outbound.clone(),
        }))
    }

    /// Read `dir/NAME.wasm` (and `NAME.toml`), check it is a component,
    /// compile it (or take it from the cache) and link it. `route` names a
    /// route that uses it, for the message when the file is missing.
    pub async fn compile(
        &self,
        dir: &Path,
        name: &PluginName,
        route: Option<&RouteName>,
    ) -> Result<PluginSource, PluginLoadError> {
        let started = Instant::now();
        let file = dir.join(format!("{name}.wasm"));
        let invalid = |reason: String| PluginLoadError::Invalid {
            plugin: name.clone(),
            file: file.clone(),
            reason,
        };
        // Only a regular file within the size limit, read off the async
        // workers: a FIFO or a link to a device is refused, never waited on.
        let bytes = match weir_core::files::read_async(&file, self.max_file_bytes).await {
            Ok(b) => b,
            Err(weir_core::files::FileError::NotFound) => {
                return Err(PluginLoadError::Missing {
                    plugin: name.clone(),
                    file: file.clone(),
                    route: route.cloned(),
                });
            }
            Err(e) => return Err(invalid(format!("{e}"))),
        };
        let manifest = read_manifest(&dir.join(format!("{name}.toml"))).map_err(invalid)?;
        check_component_header(&bytes).map_err(invalid)?;
        let content_hash = content_hash(&bytes);
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        let hash = content_hash.clone();
        // Compiling takes a while; keep it off the async workers.
        let compiled = tokio::task::spawn_blocking(move || cache.component(&engine, &bytes, &hash))
            .await
            .map_err(|e| invalid(format!("compilation panicked: {e}")))?;
        let (component, from_cache) =
            compiled.map_err(|e| invalid(format!("not a valid WebAssembly component: {}", first_line(&e))))?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            invalid(format!(
                "does not fit the weir:plugin/plugin world (imports): {}",
                first_line(&e)
            ))
        })?;
        // Checks the exports, so a wrong world is reported with the file.
        let pre = match capabilities::PluginPre::new(instance_pre.clone()) {
            Ok(pre) => PluginExports::Filter(self.filter_pre(&component, pre)),
            Err(filter_error) => match capabilities::shim::ShimPre::new(instance_pre) {
                Ok(pre) => PluginExports::Shim(pre),
                Err(_) => {
                    return Err(invalid(format!(
                        "exports neither weir:plugin/filter@0.1.0 nor weir:plugin/provider@0.1.0: {}",
                        first_line(&filter_error)
                    )));
                }
            },
        };
        let compile_time = started.elapsed();
        tracing::info!(
            plugin = %name,
            version = &content_hash[..12],
            from_cache,
            direct_calls = matches!(pre, PluginExports::Filter(FilterPre::Direct(_))),
            ms = compile_time.as_millis() as u64,
            "plugin compiled"
        );
        Ok(PluginSource {
            name: name.clone(),
            file,
            content_hash,
            from_cache,
            compile_time,
            manifest,
            pre,
        })
    }

    /// How a filter is called: directly if every import it has is one that
    /// never waits, else on a fiber.
    fn filter_pre(&self, component: &wasmtime::component::Component, fiber: PluginPre<HostState>) -> FilterPre {
        self.direct_linker
            .instantiate_pre(component)
            .and_then(direct::PluginPre::new)
            .map_or(FilterPre::Fiber(fiber), FilterPre::Direct)
    }

    /// Configure `source` for every route of `config` that uses it: one
    /// instance runs `configure` for each route, which is where a plugin
    /// rejects a route's config. That instance becomes the first warm one.
    pub async fn configure(
        &self,
        source: &PluginSource,
        config: &Config,
        capabilities: &Arc<SharedCapabilities>,
    ) -> Result<AnyPlugin, PluginLoadError> {
        Ok(match source.exports() {
            PluginExports::Filter(pre) => AnyPlugin::Filter(
                self.configure_as(source, source.origin(pre), config, capabilities)
                    .await?,
            ),
            PluginExports::Shim(pre) => AnyPlugin::Shim(
                self.configure_as(source, source.origin(pre), config, capabilities)
                    .await?,
            ),
        })
    }

    async fn configure_as<W: World>(
        &self,
        source: &PluginSource,
        origin: Origin<'_, W>,
        config: &Config,
        capabilities: &Arc<SharedCapabilities>,
    ) -> Result<Arc<LoadedPlugin<W>>, PluginLoadError> {
        let name = &source.name;
        let invalid = |reason: String| PluginLoadError::Invalid {
            plugin: name.clone(),
            file: source.file.clone(),
            reason,
        };
        let slots = route_slots(name, source.exports().is_shim(), config).map_err(invalid)?;

        let own = config.plugin_settings(name);
        let settings = own.over(&source.manifest.clone().unwrap_or_default());
        if let Some(manifest) = &source.manifest {
            let at = format!("manifest {}", source.file.with_extension("toml").display());
            if let Some(problem) = manifest.problems(&at, config).into_iter().next() {
                return Err(invalid(format!("{}: {}", problem.path, problem.message)));
            }
            let granted = manifest.granted();
            if !config.plugins.manifest_grants && !granted.is_empty() {
                return Err(invalid(format!(
                    "{at} grants {}, but [plugins] manifest_grants = false: only the config may grant \
                     (in [plugin.{name}])",
                    granted.join(", ")
                )));
            }
        }
        // A field the config sets wins over the manifest's (see `over`).
        let source_of = |in_config: bool| {
            if in_config {
                GrantSource::Config
            } else {
                GrantSource::Manifest
            }
        };
        let limits = PluginLimits {
            deadline: Duration::from_millis(settings.deadline_ms.unwrap_or(config.plugins.deadline_ms)),
            memory_bytes: (settings.memory_mb.unwrap_or(config.plugins.memory_mb) as usize) << 20,
            fail_open: settings.fail_open.unwrap_or(false),
            mode: settings.instance.unwrap_or_default(),
            max_idle: config.plugins.max_idle_instances,
        };
        let identity = Arc::new(PluginIdentity {
            name: name.clone(),
            routes: slots.iter().map(|s| s.route.clone()).collect(),
            state_policies: slots.iter().map(|s| config.state_policy(&s.route)).collect(),
            grants: Grants {
                kv: settings.kv.unwrap_or(false),
                secrets: settings.secrets.clone().unwrap_or_default(),
                outbound_hosts: settings.outbound_hosts.clone().unwrap_or_default(),
                outbound_timeout: Duration::from_millis(settings.outbound_timeout_ms.unwrap_or(5_000)),
                sources: GrantSources {
                    kv: source_of(own.kv.is_some()),
                    secrets: source_of(own.secrets.is_some()),
                    outbound_hosts: source_of(own.outbound_hosts.is_some()),
                },
            },
        });
        let all: Vec<usize> = (0..slots.len()).collect();
        let mut plugin = LoadedPlugin::new(identity, origin, limits, slots, capabilities.clone());
        let (first, interests) = plugin.instantiate(&all, true).await.map_err(|e| match e {
            InstantiateError::Rejected { route, reason } => PluginLoadError::Configure {
                plugin: name.clone(),
                route,
                reason,
            },
            InstantiateError::Fault(fault) => PluginLoadError::Fault {
                plugin: name.clone(),
                fault,
            },
        })?;
        // Not shared yet: the interests learnt from the first instance can
        // still be written in place.
        for (slot, interests) in plugin.routes.iter_mut().zip(interests) {
            slot.interests = interests;
        }
        if plugin.limits.mode == weir_config::InstanceMode::Pooled {
            plugin.put_back(first);
        }
        Ok(Arc::new(plugin))
    }

    /// Configure every plugin `config` uses, taking its compiled source
    /// from `compiled` when there (the version serving now) and compiling
    /// it from the plugin directory otherwise. Returns every error found,
    /// not just the first.
    pub async fn load(
        &self,
        config: &Config,
        capabilities: &Arc<SharedCapabilities>,
        compiled: &HashMap<PluginName, PluginSource>,
    ) -> Result<LoadedSet, Vec<PluginLoadError>> {
        let dir = config.plugin_dir();
        let mut errors = Vec::new();
        let mut set = LoadedSet::default();
        for name in config.used_plugins() {
            let source = match compiled.get(&name) {
                Some(source) => source.clone(),
                None => match self.compile(&dir, &name, config.routes_using(&name).next()).await {
                    Ok(source) => source,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                },
            };
            match self.configure(&source, config, capabilities).await {
                Ok(plugin) => {
                    set.plugins.insert(name.clone(), plugin);
                    set.sources.insert(name, source);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() { Ok(set) } else { Err(errors) }
    }
}

/// Where `plugin` is used: the slots of route chains (a filter) or of AI
/// targets (a shim). Using it in the other role is an error naming the
/// route.
fn route_slots(plugin: &PluginName, is_shim: bool, config: &Config) -> Result<Vec<RouteSlot>, String> {
    let no_interests = Interests {
        on_request: false,
        request_body: false,
        on_response: false,
        response_body: false,
        response_chunks: false,
    };
    let mut slots = Vec::new();
    for route in &config.routes {
        for (position, p) in route.plugins.iter().enumerate() {
            if p.name != *plugin {
                continue;
            }
            if is_shim {
                return Err(format!(
                    "is a provider shim; it cannot be in the plugin chain of route {} (use it as an AI target's shim)",
                    route.name
                ));
            }
            slots.push(RouteSlot {
                route: route.name.clone(),
                position,
                config_json: plugin_config_json(&p.config),
                interests: no_interests,
            });
        }
        for (position, target) in route.ai.iter().flat_map(|ai| ai.targets.iter().enumerate()) {
            if target.shim != *plugin {
                continue;
            }
            if !is_shim {
                return Err(format!(
                    "is a filter, not a provider shim; route {} target {} needs a plugin exporting weir:plugin/provider",
                    route.name, target.name
                ));
            }
            slots.push(RouteSlot {
                route: route.name.clone(),
                position,
                config_json: target.shim_config_json(),
                interests: no_interests,
            });
        }
    }
    Ok(slots)
}

/// The shim serving target `target` (by index) of `route`, and the
/// target's slot in it; `None` when the shim is not loaded or is not
/// configured for that target.
pub fn shim_for_target(
    plugins: &HashMap<PluginName, AnyPlugin>,
    shim: &PluginName,
    route: &RouteName,
    target: usize,
) -> Option<(Arc<ShimPlugin>, usize)> {
    let plugin = plugins.get(shim)?.as_shim()?;
    let slot = plugin.slot_of(route, target)?;
    Some((plugin.clone(), slot))
}

/// Compiled sources and configured plugins, by name.
#[derive(Default, Clone)]
pub struct LoadedSet {
    /// What each plugin was built from.
    pub sources: HashMap<PluginName, PluginSource>,
    /// Each plugin configured for its routes.
    pub plugins: HashMap<PluginName, AnyPlugin>,
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
        let value = source
            .read(&format!("secrets.{name}"), config)
            .map_err(anyhow::Error::msg)?;
        secrets.insert(name.clone(), value);
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::check_component_header;

    #[test]
    fn header_check_names_the_problem() {
        assert!(check_component_header(b"").unwrap_err().contains("empty"));
        assert!(
            check_component_header(b"hello world")
                .unwrap_err()
                .contains("not a WebAssembly")
        );
        assert!(
            check_component_header(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        assert!(check_component_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
