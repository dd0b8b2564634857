//! A loaded plugin, its pool of warm instances, and calls into them under
//! the plugin's limits.
//!
//! Every instance is configured for every route that uses the plugin: it
//! holds one handler per route, in the order of [`LoadedPlugin::routes`]
//! (a route's *slot*). A request checks an instance out with a [`Lease`],
//! calls it, and the lease puts it back when dropped — unless the instance
//! faulted (trap, deadline, memory cap), in which case it is thrown away.
//!
//! Idle instances wait in one list per thread: a worker takes back the
//! instances it used last, whose memory is still in its core's cache, and
//! workers do not contend for one lock. A worker whose list is empty takes
//! one from another's before making a new one; `max_idle` caps them all
//! together.
//!
//! The pool, the limits and the fault handling are the same for every
//! plugin; what can be called depends on the world the component exports,
//! a [`World`]: [`Filter`](crate::filter::Filter) (route chains) or
//! [`ProviderShim`](crate::shim::ProviderShim) (AI targets). Each world
//! adds its own calls to `Lease<W>`, so a filter call on a shim cannot be
//! written, and [`AnyPlugin`](crate::AnyPlugin) holds either kind where the gateway keeps
//! both.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use wasmtime::component::ResourceAny;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::capabilities::weir::plugin::types::Interests;
use super::capabilities::{HostState, PluginIdentity, SharedCapabilities};
use super::deadline::begin_call;
use weir_config::{InstanceMode, PluginName, RouteName};

pub use super::fault::PluginFault;

/// One exported world of the plugin contract: how to instantiate a
/// component that exports it and how to configure a handler in it. The
/// world's calls are methods on `Lease<Self>`.
pub trait World: Sized + Send + Sync + 'static {
    /// The component, linked and checked against the world's exports.
    type Pre: Clone + Send + Sync;
    /// An instance's typed exports.
    type Bindings: Send + Sync;

    /// The engine the component was compiled by.
    fn engine(pre: &Self::Pre) -> &Engine;

    /// Whether the component's calls run on a fiber, which can wait and
    /// gives the worker back between epoch ticks; otherwise they run
    /// directly and a busy call holds the worker until its deadline.
    fn waits(pre: &Self::Pre) -> bool;

    /// Make an instance.
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<HostState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Bindings>> + Send;

    /// Run the world's `configure` for one route's config: a handler, or
    /// the plugin's reason for rejecting the config.
    fn configure(
        bindings: &Self::Bindings,
        store: &mut Store<HostState>,
        config_json: &str,
    ) -> impl Future<Output = wasmtime::Result<Result<ResourceAny, String>>> + Send;

    /// What a configured handler asks of the gateway, where the world has
    /// such a question (filters do; shims do not).
    fn interests(
        bindings: &Self::Bindings,
        store: &mut Store<HostState>,
        handler: ResourceAny,
    ) -> impl Future<Output = wasmtime::Result<Option<Interests>>> + Send;
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
pub struct LoadedPlugin<W: World> {
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
    pre: W::Pre,
    shared: Arc<SharedCapabilities>,
    /// Idle warm instances, one list per thread (see the module docs).
    idle: thread_local::ThreadLocal<Mutex<Vec<PluginInstance<W>>>>,
    /// Idle instances in all the lists.
    idle_count: AtomicUsize,
}

/// One live instance and its handlers (one per route slot; `None` for
/// slots a fresh instance did not configure).
pub struct PluginInstance<W: World> {
    store: Store<HostState>,
    bindings: W::Bindings,
    handlers: Vec<Option<ResourceAny>>,
}

/// The compiled component and where it came from, as a plugin load needs
/// them.
pub struct Origin<'a, W: World> {
    /// The `.wasm` file.
    pub file: &'a PathBuf,
    /// SHA-256 of the file.
    pub content_hash: &'a str,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
    /// The component, linked for the world.
    pub pre: &'a W::Pre,
}

impl<W: World> LoadedPlugin<W> {
    /// Link a compiled plugin; `configure` runs later, per instance.
    pub fn new(
        identity: Arc<PluginIdentity>,
        origin: Origin<'_, W>,
        limits: PluginLimits,
        routes: Vec<RouteSlot>,
        shared: Arc<SharedCapabilities>,
    ) -> Self {
        LoadedPlugin {
            identity,
            file: origin.file.clone(),
            content_hash: origin.content_hash.to_string(),
            loaded_at: SystemTime::now(),
            from_cache: origin.from_cache,
            limits,
            routes,
            pre: origin.pre.clone(),
            shared,
            idle: thread_local::ThreadLocal::new(),
            idle_count: AtomicUsize::new(0),
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &PluginName {
        &self.identity.name
    }

    /// The slot of `route`'s use at `position` (its place in the chain, or
    /// its target's index), if this version is configured for it.
    pub fn slot_of(&self, route: &RouteName, position: usize) -> Option<usize> {
        self.routes
            .iter()
            .position(|s| s.route == *route && s.position == position)
    }

    /// `direct` (on the worker's stack) or `fiber`: how its calls are made.
    pub fn calls(&self) -> &'static str {
        if W::waits(&self.pre) { "fiber" } else { "direct" }
    }

    /// Idle warm instances right now.
    pub fn idle_instances(&self) -> usize {
        self.idle_count.load(Ordering::Relaxed)
    }

    /// An idle instance: this thread's last used, else another thread's.
    fn take_idle(&self) -> Option<PluginInstance<W>> {
        if self.idle_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let own = self.idle.get_or_default();
        let taken = pop(own).or_else(|| self.idle.iter().filter(|list| !std::ptr::eq(*list, own)).find_map(pop));
        if taken.is_some() {
            self.idle_count.fetch_sub(1, Ordering::Relaxed);
        }
        taken
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
    /// interests, where the world has them (needed once, at load).
    pub async fn instantiate(
        &self,
        slots: &[usize],
        learn_interests: bool,
    ) -> Result<(PluginInstance<W>, Vec<Interests>), InstantiateError> {
        let state = HostState::new(self.identity.clone(), self.shared.clone(), self.limits.memory_bytes);
        let mut store = Store::new(W::engine(&self.pre), state);
        store.limiter(|s| &mut s.memory);
        let waits = W::waits(&self.pre);
        store.epoch_deadline_callback(move |mut ctx| {
            let data = ctx.data_mut();
            data.ticks_left = data.ticks_left.saturating_sub(1);
            if data.ticks_left == 0 {
                Ok(UpdateDeadline::Interrupt)
            } else if waits {
                // Give the runtime back its worker between ticks.
                Ok(UpdateDeadline::Yield(1))
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        begin_call(&mut store, self.limits.deadline, None);
        let bindings = match W::instantiate(&self.pre, &mut store).await {
            Ok(b) => b,
            Err(e) => return Err(InstantiateError::Fault(self.fault(&store, e))),
        };
        let mut handlers = vec![None; self.routes.len()];
        let mut interests = Vec::with_capacity(slots.len());
        for &slot in slots {
            let route = &self.routes[slot];
            begin_call(&mut store, self.limits.deadline, Some(slot));
            let handler = match W::configure(&bindings, &mut store, &route.config_json).await {
                Ok(Ok(h)) => h,
                Ok(Err(reason)) => {
                    return Err(InstantiateError::Rejected {
                        route: route.route.clone(),
                        reason,
                    });
                }
                Err(e) => return Err(InstantiateError::Fault(self.fault(&store, e))),
            };
            if learn_interests {
                begin_call(&mut store, self.limits.deadline, Some(slot));
                match W::interests(&bindings, &mut store, handler).await {
                    Ok(Some(i)) => interests.push(i),
                    Ok(None) => {}
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
    pub async fn lease(self: &Arc<Self>, slot: usize) -> Result<Lease<W>, PluginFault> {
        if self.limits.mode == InstanceMode::Pooled
            && let Some(instance) = self.take_idle()
        {
            return Ok(Lease {
                plugin: self.clone(),
                instance: Some(instance),
                reusable: true,
            });
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

    /// Keep a warm instance for later, in this thread's list, unless
    /// enough are idle already.
    pub fn put_back(&self, instance: PluginInstance<W>) {
        if self.idle_count.fetch_add(1, Ordering::Relaxed) >= self.limits.max_idle {
            self.idle_count.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        match self.idle.get_or_default().lock() {
            Ok(mut idle) => idle.push(instance),
            Err(_) => {
                self.idle_count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// The last instance put in `list`, if any.
fn pop<W: World>(list: &Mutex<Vec<PluginInstance<W>>>) -> Option<PluginInstance<W>> {
    list.lock().ok().and_then(|mut idle| idle.pop())
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
pub struct Lease<W: World> {
    plugin: Arc<LoadedPlugin<W>>,
    instance: Option<PluginInstance<W>>,
    reusable: bool,
}

/// A call's parts: the store, the instance's exports and the slot's
/// handler, with the call's clock started.
pub(crate) struct Entered<'a, W: World> {
    pub store: &'a mut Store<HostState>,
    pub bindings: &'a W::Bindings,
    pub handler: ResourceAny,
}

impl<W: World> Lease<W> {
    /// The plugin this instance belongs to.
    pub fn plugin(&self) -> &Arc<LoadedPlugin<W>> {
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

    /// Start a call on `slot`'s handler: its deadline is armed.
    pub(crate) fn enter(&mut self, slot: usize) -> Result<Entered<'_, W>, PluginFault> {
        let plugin = &self.plugin;
        let instance = self.instance.as_mut().ok_or_else(|| PluginFault::Unavailable {
            plugin: plugin.identity.name.clone(),
            detail: "instance was discarded".into(),
        })?;
        let handler = instance
            .handlers
            .get(slot)
            .copied()
            .flatten()
            .ok_or_else(|| PluginFault::Unavailable {
                plugin: plugin.identity.name.clone(),
                detail: format!("no handler for slot {slot}"),
            })?;
        begin_call(&mut instance.store, plugin.limits.deadline, Some(slot));
        Ok(Entered {
            store: &mut instance.store,
            bindings: &instance.bindings,
            handler,
        })
    }

    /// The instance's store, unless the instance was discarded.
    pub(crate) fn store_mut(&mut self) -> Option<&mut Store<HostState>> {
        self.instance.as_mut().map(|instance| &mut instance.store)
    }

    /// Turn a failed call into the plugin's fault; the instance is not
    /// reused.
    pub(crate) fn failed(&mut self, error: wasmtime::Error) -> PluginFault {
        self.reusable = false;
        match &self.instance {
            Some(instance) => self.plugin.fault(&instance.store, error),
            None => PluginFault::Unavailable {
                plugin: self.plugin.identity.name.clone(),
                detail: format!("{error:#}"),
            },
        }
    }
}

impl<W: World> Drop for Lease<W> {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.take()
            && self.reusable
        {
            self.plugin.put_back(instance);
        }
    }
}
