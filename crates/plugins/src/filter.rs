//! The filter world (`weir:plugin/filter`): plugins in a route's chain.
//! Each call lends the request or response to the plugin as a handle for
//! the length of the call and always takes it back, even when the call
//! faulted, so a fail-open plugin can be skipped with the exchange intact.
//!
//! A filter is called one of two ways, fixed when it is loaded
//! ([`FilterPre`]): directly, on the worker's own stack, when every import
//! it has answers at once; or on a fiber, which a call can suspend, when it
//! imports something that waits (outbound HTTP, `kv` over Redis, WASI's
//! timers). A direct call costs less; a plugin busy on a direct call holds
//! its worker until its deadline, where a fiber gives the worker back
//! between epoch ticks.

use wasmtime::component::{Resource, ResourceAny};
use wasmtime::{Engine, Store};

use super::PluginFault;
use super::capabilities::weir::plugin::types::{Interests, RequestAction};
use super::capabilities::{HostState, Plugin, PluginPre, direct};
use super::exchange::{Lendable, RequestState, ResponseState};
use super::instance::{Entered, Lease, LoadedPlugin, World};

/// The filter world.
pub struct Filter;

/// A filter plugin, configured for its routes.
pub type FilterPlugin = LoadedPlugin<Filter>;

/// A filter instance checked out for a call.
pub type FilterLease = Lease<Filter>;

/// A filter component, linked for the way it is called.
#[derive(Clone)]
pub enum FilterPre {
    /// Called directly: every import answers at once.
    Direct(direct::PluginPre<HostState>),
    /// Called on a fiber: some import may wait.
    Fiber(PluginPre<HostState>),
}

/// A filter instance's exports.
pub enum FilterBindings {
    /// See [`FilterPre::Direct`].
    Direct(direct::Plugin),
    /// See [`FilterPre::Fiber`].
    Fiber(Plugin),
}

/// Call one of the `handler` exports of `$bindings`: directly, or on the
/// instance's fiber. The two bindings are generated apart, so their calls
/// have the same names but not the same types.
macro_rules! call_handler {
    ($bindings:expr, $method:ident($($arg:expr),*)) => {
        match $bindings {
            FilterBindings::Direct(b) => b.weir_plugin_filter().handler().$method($($arg),*),
            FilterBindings::Fiber(b) => b.weir_plugin_filter().handler().$method($($arg),*).await,
        }
    };
}

impl World for Filter {
    type Pre = FilterPre;
    type Bindings = FilterBindings;

    fn engine(pre: &Self::Pre) -> &Engine {
        match pre {
            FilterPre::Direct(pre) => pre.engine(),
            FilterPre::Fiber(pre) => pre.engine(),
        }
    }

    fn waits(pre: &Self::Pre) -> bool {
        matches!(pre, FilterPre::Fiber(_))
    }

    async fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<FilterBindings> {
        Ok(match pre {
            FilterPre::Direct(pre) => FilterBindings::Direct(pre.instantiate(store)?),
            FilterPre::Fiber(pre) => FilterBindings::Fiber(pre.instantiate_async(store).await?),
        })
    }

    async fn configure(
        bindings: &FilterBindings,
        store: &mut Store<HostState>,
        config_json: &str,
    ) -> wasmtime::Result<Result<ResourceAny, String>> {
        call_handler!(bindings, call_configure(store, config_json))
    }

    async fn interests(
        bindings: &FilterBindings,
        store: &mut Store<HostState>,
        handler: ResourceAny,
    ) -> wasmtime::Result<Option<Interests>> {
        Ok(Some(call_handler!(bindings, call_interests(store, handler))?))
    }
}

/// A call entered with a value lent to it: the call and the handle to pass.
type LentCall<'a, T> = (Entered<'a, Filter>, Resource<T>);

impl Lease<Filter> {
    /// Run `on-request`. The request state always comes back, even when the
    /// call faulted, so a fail-open plugin can be skipped.
    pub async fn on_request(
        &mut self,
        slot: usize,
        state: Box<RequestState>,
    ) -> (Box<RequestState>, Result<RequestAction, PluginFault>) {
        let (call, request) = match self.lend(slot, state) {
            Ok(lent) => lent,
            Err((state, fault)) => return (state, Err(fault)),
        };
        let result = call_handler!(call.bindings, call_on_request(call.store, call.handler, request));
        self.returned(result)
    }

    /// Run `on-response`; the response state always comes back.
    pub async fn on_response(
        &mut self,
        slot: usize,
        state: Box<ResponseState>,
    ) -> (Box<ResponseState>, Result<(), PluginFault>) {
        let (call, response) = match self.lend(slot, state) {
            Ok(lent) => lent,
            Err((state, fault)) => return (state, Err(fault)),
        };
        let result = call_handler!(call.bindings, call_on_response(call.store, call.handler, response));
        self.returned(result)
    }

    /// Start a call on `slot` with `state` lent to it: the call and the
    /// handle to pass, or the state back with the fault.
    fn lend<T: Lendable>(&mut self, slot: usize, state: Box<T>) -> Result<LentCall<'_, T>, (Box<T>, PluginFault)> {
        match self.enter(slot) {
            Ok(call) => {
                let handle = call.store.data_mut().lent.lend(state);
                Ok((call, handle))
            }
            Err(fault) => Err((state, fault)),
        }
    }

    /// End a call that was lent a `T`: the value back (the guest only
    /// borrowed it, so it is always there), and the call's result.
    fn returned<T: Lendable, R>(&mut self, result: wasmtime::Result<R>) -> (Box<T>, Result<R, PluginFault>) {
        match self.store_mut().and_then(|store| store.data_mut().lent.take_back()) {
            Some(state) => (state, result.map_err(|e| self.failed(e))),
            None => panic!("a lent request or response vanished during its call"),
        }
    }

    /// Run `on-response-chunk`.
    pub async fn on_response_chunk(&mut self, slot: usize, chunk: &[u8], end: bool) -> Result<Vec<u8>, PluginFault> {
        let call = self.enter(slot)?;
        let result = call_handler!(
            call.bindings,
            call_on_response_chunk(call.store, call.handler, chunk, end)
        );
        result.map_err(|e| self.failed(e))
    }
}
