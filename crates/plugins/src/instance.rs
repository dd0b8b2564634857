//! A loaded plugin, its pool of warm instances, and calls into them under
//! the plugin's limits.
//!
//! Every instance is configured for every route that uses the plugin: it
//! holds one `handler` per route, in the order of [`LoadedPlugin::routes`]
//! (a route's *slot*). A request checks an instance out with a [`Lease`],
//! calls it, and the lease puts it back when dropped — unless the instance
//! faulted (trap, deadline, memory cap), in which case it is thrown away.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use wasmtime::component::{Resource, ResourceAny};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::PluginSource;
use super::capabilities::shim::exports::weir::plugin::provider::{
    ApiError, Completion, Exchange, ProviderRequest, StreamOutput,
};
use super::capabilities::shim::{Shim, ShimPre};
use super::capabilities::weir::plugin::types::{Interests, RequestAction};
use super::capabilities::{HostState, Plugin, PluginIdentity, PluginPre, SharedCapabilities};
use super::deadline::begin_call;
use super::exchange::{RequestState, ResponseState};
use weir_config::{InstanceMode, PluginName, RouteName};

pub use super::fault::PluginFault;

/// What a plugin component is, by what it exports: a filter in route
/// chains, or a provider shim for AI targets. Checked once, at compile.
#[derive(Clone)]
pub enum PluginExports {
    /// Exports `weir:plugin/filter`.
    Filter(PluginPre<HostState>),
    /// Exports `weir:plugin/provider`.
    Shim(ShimPre<HostState>),
}

impl PluginExports {
    /// Whether this is a provider shim.
    pub fn is_shim(&self) -> bool {
        matches!(self, PluginExports::Shim(_))
    }

    /// `filter` or `provider shim`, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginExports::Filter(_) => "filter",
            PluginExports::Shim(_) => "provider shim",
        }
    }

    fn engine(&self) -> &wasmtime::Engine {
        match self {
            PluginExports::Filter(pre) => pre.engine(),
            PluginExports::Shim(pre) => pre.engine(),
        }
    }
}

/// An instance's typed exports.
enum Bindings {
    Filter(Plugin),
    Shim(Shim),
}

/// The limits and fault behaviour of one plugin.
#[derive(Debug, Clone)]
pub struct PluginLimits {
    /// Deadline per call.
    pub deadline: Duration,
    /// Linear-memory cap per instance, in bytes.
    pub memory_bytes: usize,
    /// Skip the plugin on fault instead of failing the request.
    pub fail_open: bool,
    /// Pooled or fresh instances.
    pub mode: InstanceMode,
    /// Most idle instances kept.
    pub max_idle: usize,
}

/// One route's use of a plugin: a place in its chain (filters) or one of
/// its AI targets (shims).
#[derive(Debug, Clone)]
pub struct RouteSlot {
    /// The route.
    pub route: RouteName,
    /// Where in the route's chain, or which of its targets (a plugin may
    /// appear more than once).
    pub position: usize,
    /// The route's config for the plugin (a shim: the target's), as JSON.
    pub config_json: String,
    /// What the handler asked for, learnt at load.
    pub interests: Interests,
}

/// A plugin file, compiled, linked and configured for its routes.
pub struct LoadedPlugin {
    /// Name, grants.
    pub identity: Arc<PluginIdentity>,
    /// The file it came from.
    pub file: PathBuf,
    /// SHA-256 of the file: the version.
    pub content_hash: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
    /// Limits and fault behaviour.
    pub limits: PluginLimits,
    /// The routes that use it, by slot.
    pub routes: Vec<RouteSlot>,
    pre: PluginExports,
    shared: Arc<SharedCapabilities>,
    idle: Mutex<Vec<PluginInstance>>,
}

/// One live instance and its handlers (one per route slot; `None` for
/// slots a fresh instance did not configure).
pub struct PluginInstance {
    store: Store<HostState>,
    bindings: Bindings,
    handlers: Vec<Option<ResourceAny>>,
}

impl LoadedPlugin {
    /// Link a compiled plugin; `configure` runs later, per instance.
    pub fn new(
        identity: Arc<PluginIdentity>,
        source: &PluginSource,
        limits: PluginLimits,
        routes: Vec<RouteSlot>,
        shared: Arc<SharedCapabilities>,
    ) -> Self {
        LoadedPlugin {
            identity,
            file: source.file.clone(),
            content_hash: source.content_hash.clone(),
            loaded_at: SystemTime::now(),
            from_cache: source.from_cache,
            limits,
            routes,
            pre: source.pre.clone(),
            shared,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &PluginName {
        &self.identity.name
    }

    /// Idle warm instances right now.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    fn fault(&self, store: &Store<HostState>, error: wasmtime::Error) -> PluginFault {
        let plugin = self.identity.name.clone();
        if store.data().memory.exceeded {
            return PluginFault::Memory {
                plugin,
                limit_mb: (self.limits.memory_bytes >> 20) as u64,
            };
        }
        if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return PluginFault::Deadline {
                plugin,
                deadline_ms: self.limits.deadline.as_millis() as u64,
            };
        }
        PluginFault::Trap {
            plugin,
            detail: format!("{error:#}").lines().next().unwrap_or_default().to_string(),
        }
    }

    /// Instantiate and run `configure` for the given slots (all, for a
    /// pooled instance; none, to measure instantiation alone). With
    /// `learn_interests`, also asks each configured handler for its
    /// interests (needed once, at load).
    pub async fn instantiate(
        &self,
        slots: &[usize],
        learn_interests: bool,
    ) -> Result<(PluginInstance, Vec<Interests>), InstantiateError> {
        let state = HostState::new(self.identity.clone(), self.shared.clone(), self.limits.memory_bytes);
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_callback(|mut ctx| {
            let data = ctx.data_mut();
            data.ticks_left = data.ticks_left.saturating_sub(1);
            if data.ticks_left == 0 {
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Give the runtime back its worker between ticks.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        begin_call(&mut store, self.limits.deadline, None);
        let instantiated = match &self.pre {
            PluginExports::Filter(pre) => pre.instantiate_async(&mut store).await.map(Bindings::Filter),
            PluginExports::Shim(pre) => pre.instantiate_async(&mut store).await.map(Bindings::Shim),
        };
        let bindings = match instantiated {
            Ok(b) => b,
            Err(e) => return Err(InstantiateError::Fault(self.fault(&store, e))),
        };
        let mut handlers = vec![None; self.routes.len()];
        let mut interests = Vec::with_capacity(slots.len());
        for &slot in slots {
            let route = &self.routes[slot];
            begin_call(&mut store, self.limits.deadline, Some(slot));
            let configured = match &bindings {
                Bindings::Filter(b) => {
                    b.weir_plugin_filter()
                        .handler()
                        .call_configure(&mut store, &route.config_json)
                        .await
                }
                Bindings::Shim(b) => {
                    b.weir_plugin_provider()
                        .adapter()
                        .call_configure(&mut store, &route.config_json)
                        .await
                }
            };
            let handler = match configured {
                Ok(Ok(h)) => h,
                Ok(Err(reason)) => {
                    return Err(InstantiateError::Rejected {
                        route: route.route.clone(),
                        reason,
                    });
                }
                Err(e) => return Err(InstantiateError::Fault(self.fault(&store, e))),
            };
            if learn_interests && let Bindings::Filter(b) = &bindings {
                begin_call(&mut store, self.limits.deadline, Some(slot));
                match b
                    .weir_plugin_filter()
                    .handler()
                    .call_interests(&mut store, handler)
                    .await
                {
                    Ok(i) => interests.push(i),
                    Err(e) => return Err(InstantiateError::Fault(self.fault(&store, e))),
                }
            }
            handlers[slot] = Some(handler);
        }
        Ok((
            PluginInstance {
                store,
                bindings,
                handlers,
            },
            interests,
        ))
    }

    /// Check out an instance able to serve `slot`.
    pub async fn lease(self: &Arc<Self>, slot: usize) -> Result<Lease, PluginFault> {
        if self.limits.mode == InstanceMode::Pooled {
            let warm = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            if let Some(instance) = warm {
                return Ok(Lease {
                    plugin: self.clone(),
                    instance: Some(instance),
                    reusable: true,
                });
            }
        }
        let slots: Vec<usize> = match self.limits.mode {
            InstanceMode::Pooled => (0..self.routes.len()).collect(),
            InstanceMode::Fresh => vec![slot],
        };
        match self.instantiate(&slots, false).await {
            Ok((instance, _)) => Ok(Lease {
                plugin: self.clone(),
                instance: Some(instance),
                reusable: self.limits.mode == InstanceMode::Pooled,
            }),
            Err(InstantiateError::Fault(fault)) => Err(fault),
            Err(InstantiateError::Rejected { route, reason }) => Err(PluginFault::Unavailable {
                plugin: self.identity.name.clone(),
                detail: format!("configure for route {route} failed: {reason}"),
            }),
        }
    }

    /// Keep a warm instance for later, unless enough are idle already.
    pub fn put_back(&self, instance: PluginInstance) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.limits.max_idle
        {
            idle.push(instance);
        }
    }
}

/// Why an instance could not be made.
#[derive(Debug)]
pub enum InstantiateError {
    /// Instantiation or a configure call faulted.
    Fault(PluginFault),
    /// `configure` returned an error for a route.
    Rejected {
        /// The route whose config was rejected.
        route: RouteName,
        /// The plugin's message.
        reason: String,
    },
}

/// An instance checked out of a plugin's pool. Dropping it returns the
/// instance to the pool if it is still fit to serve.
pub struct Lease {
    plugin: Arc<LoadedPlugin>,
    instance: Option<PluginInstance>,
    reusable: bool,
}

impl Lease {
    /// The plugin this instance belongs to.
    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        &self.plugin
    }

    /// Mark the instance unfit for reuse (e.g. a stream it was transforming
    /// was cut off, leaving partial state in it).
    pub fn discard_on_drop(&mut self) {
        self.reusable = false;
    }

    /// Allow reuse again once a stream finished cleanly.
    pub fn reuse_on_drop(&mut self) {
        self.reusable = self.plugin.limits.mode == InstanceMode::Pooled;
    }

    fn parts(&mut self, slot: usize) -> Result<(&mut PluginInstance, ResourceAny), PluginFault> {
        let plugin = self.plugin.identity.name.clone();
        let instance = self.instance.as_mut().ok_or_else(|| PluginFault::Unavailable {
            plugin: plugin.clone(),
            detail: "instance was discarded".into(),
        })?;
        let handler = instance
            .handlers
            .get(slot)
            .copied()
            .flatten()
            .ok_or_else(|| PluginFault::Unavailable {
                plugin,
                detail: format!("no handler for slot {slot}"),
            })?;
        Ok((instance, handler))
    }

    fn failed(&mut self, error: wasmtime::Error) -> PluginFault {
        self.reusable = false;
        match &self.instance {
            Some(instance) => self.plugin.fault(&instance.store, error),
            None => PluginFault::Unavailable {
                plugin: self.plugin.identity.name.clone(),
                detail: format!("{error:#}"),
            },
        }
    }

    /// Hand `state` to the instance as a handle and start a call's clock.
    /// On failure the state comes straight back.
    fn enter<T: Send + 'static>(
        &mut self,
        slot: usize,
        state: T,
    ) -> Result<(&mut PluginInstance, ResourceAny, Resource<T>), (T, PluginFault)> {
        let deadline = self.plugin.limits.deadline;
        let (instance, handler) = match self.parts(slot) {
            Ok(p) => p,
            Err(fault) => return Err((state, fault)),
        };
        let resource = match instance.store.data_mut().table.push(state) {
            Ok(r) => r,
            Err(e) => unreachable_table(e),
        };
        begin_call(&mut instance.store, deadline, Some(slot));
        Ok((instance, handler, resource))
    }

    /// Run `on-request`. The request state always comes back, even when the
    /// call faulted, so a fail-open plugin can be skipped.
    pub async fn on_request(
        &mut self,
        slot: usize,
        state: RequestState,
    ) -> (RequestState, Result<RequestAction, PluginFault>) {
        let (instance, handler, resource) = match self.enter(slot, state) {
            Ok(entered) => entered,
            Err((state, fault)) => return (state, Err(fault)),
        };
        let borrowed = Resource::new_borrow(resource.rep());
        let result = match &instance.bindings {
            Bindings::Filter(b) => {
                b.weir_plugin_filter()
                    .handler()
                    .call_on_request(&mut instance.store, handler, borrowed)
                    .await
            }
            Bindings::Shim(_) => Err(not_a_filter()),
        };
        let state = take_back(&mut instance.store, resource);
        (state, result.map_err(|e| self.failed(e)))
    }

    /// Run `on-response`; the response state always comes back.
    pub async fn on_response(&mut self, slot: usize, state: ResponseState) -> (ResponseState, Result<(), PluginFault>) {
        let (instance, handler, resource) = match self.enter(slot, state) {
            Ok(entered) => entered,
            Err((state, fault)) => return (state, Err(fault)),
        };
        let borrowed = Resource::new_borrow(resource.rep());
        let result = match &instance.bindings {
            Bindings::Filter(b) => {
                b.weir_plugin_filter()
                    .handler()
                    .call_on_response(&mut instance.store, handler, borrowed)
                    .await
            }
            Bindings::Shim(_) => Err(not_a_filter()),
        };
        let state = take_back(&mut instance.store, resource);
        (state, result.map_err(|e| self.failed(e)))
    }

    /// Run `on-response-chunk`.
    pub async fn on_response_chunk(&mut self, slot: usize, chunk: &[u8], end: bool) -> Result<Vec<u8>, PluginFault> {
        let deadline = self.plugin.limits.deadline;
        let (instance, handler) = self.parts(slot)?;
        begin_call(&mut instance.store, deadline, Some(slot));
        let result = match &instance.bindings {
            Bindings::Filter(b) => {
                b.weir_plugin_filter()
                    .handler()
                    .call_on_response_chunk(&mut instance.store, handler, chunk, end)
                    .await
            }
            Bindings::Shim(_) => Err(not_a_filter()),
        };
        result.map_err(|e| self.failed(e))
    }

    /// The shim's bindings and the adapter for `slot`, with the call's
    /// clock started.
    fn shim(&mut self, slot: usize) -> Result<(&mut Store<HostState>, &Shim, ResourceAny), PluginFault> {
        let deadline = self.plugin.limits.deadline;
        let plugin = self.plugin.identity.name.clone();
        let (instance, adapter) = self.parts(slot)?;
        begin_call(&mut instance.store, deadline, Some(slot));
        match &instance.bindings {
            Bindings::Shim(b) => Ok((&mut instance.store, b, adapter)),
            Bindings::Filter(_) => Err(PluginFault::Unavailable {
                plugin,
                detail: "a filter plugin, not a provider shim".into(),
            }),
        }
    }

    /// Run the shim's `translate-request`.
    pub async fn translate_request(
        &mut self,
        slot: usize,
        body: &[u8],
    ) -> Result<Result<ProviderRequest, ApiError>, PluginFault> {
        let (store, shim, adapter) = self.shim(slot)?;
        let result = shim
            .weir_plugin_provider()
            .adapter()
            .call_translate_request(store, adapter, body)
            .await;
        result.map_err(|e| self.failed(e))
    }

    /// Run the shim's `translate-response`.
    pub async fn translate_response(
        &mut self,
        slot: usize,
        exchange: &Exchange,
        body: &[u8],
    ) -> Result<Result<Completion, ApiError>, PluginFault> {
        let (store, shim, adapter) = self.shim(slot)?;
        let result = shim
            .weir_plugin_provider()
            .adapter()
            .call_translate_response(store, adapter, exchange, body)
            .await;
        result.map_err(|e| self.failed(e))
    }

    /// Run the shim's `translate-error`.
    pub async fn translate_error(&mut self, slot: usize, status: u16, body: &[u8]) -> Result<ApiError, PluginFault> {
        let (store, shim, adapter) = self.shim(slot)?;
        let result = shim
            .weir_plugin_provider()
            .adapter()
            .call_translate_error(store, adapter, status, body)
            .await;
        result.map_err(|e| self.failed(e))
    }

    /// Run the shim's `open-stream`; the stream lives in this instance
    /// until [`Lease::close_stream`].
    pub async fn open_stream(&mut self, slot: usize, exchange: &Exchange) -> Result<ResourceAny, PluginFault> {
        let (store, shim, adapter) = self.shim(slot)?;
        let result = shim
            .weir_plugin_provider()
            .adapter()
            .call_open_stream(store, adapter, exchange)
            .await;
        result.map_err(|e| self.failed(e))
    }

    /// Feed the next bytes of a provider's stream (`end`: the body ended;
    /// `bytes` is then empty and `finish` is called).
    pub async fn stream_step(
        &mut self,
        slot: usize,
        stream: ResourceAny,
        bytes: &[u8],
        end: bool,
    ) -> Result<Result<StreamOutput, ApiError>, PluginFault> {
        let (store, shim, _) = self.shim(slot)?;
        let translator = shim.weir_plugin_provider().stream_translator();
        let result = if end {
            translator.call_finish(store, stream).await
        } else {
            translator.call_push(store, stream, bytes).await
        };
        result.map_err(|e| self.failed(e))
    }

    /// Drop a stream the shim made, so the instance can be reused.
    pub async fn close_stream(&mut self, stream: ResourceAny) -> Result<(), PluginFault> {
        let Some(instance) = self.instance.as_mut() else {
            return Ok(());
        };
        let result = stream.resource_drop_async(&mut instance.store).await;
        result.map_err(|e| self.failed(e))
    }
}

/// A filter call on a shim's instance: the route tables never make one.
fn not_a_filter() -> wasmtime::Error {
    wasmtime::format_err!("a provider shim cannot run in a route's plugin chain")
}

/// The table only fails to push past 2^32 live handles; a call holds one.
fn unreachable_table(e: wasmtime::component::ResourceTableError) -> ! {
    panic!("resource table full with a single handle: {e}")
}

fn take_back<T: 'static>(store: &mut Store<HostState>, resource: Resource<T>) -> T {
    match store.data_mut().table.delete(resource) {
        Ok(state) => state,
        // The handle was pushed by us and only borrowed by the guest, which
        // cannot delete host-owned entries.
        Err(e) => panic!("request handle vanished from the table: {e}"),
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.take()
            && self.reusable
        {
            self.plugin.put_back(instance);
        }
    }
}
