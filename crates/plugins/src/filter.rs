//! The filter world (`weir:plugin/filter`): plugins in a route's chain.
//! Each call lends the request or response to the plugin as a handle for
//! the length of the call and always takes it back, even when the call
//! faulted, so a fail-open plugin can be skipped with the exchange intact.

use wasmtime::component::{Resource, ResourceAny};
use wasmtime::{Engine, Store};

use super::PluginFault;
use super::capabilities::weir::plugin::types::{Interests, RequestAction};
use super::capabilities::{HostState, Plugin, PluginPre};
use super::exchange::{Lendable, RequestState, ResponseState};
use super::instance::{Entered, Lease, LoadedPlugin, World};

/// The filter world.
pub struct Filter;

/// A filter plugin, configured for its routes.
pub type FilterPlugin = LoadedPlugin<Filter>;

/// A filter instance checked out for a call.
pub type FilterLease = Lease<Filter>;

impl World for Filter {
    type Pre = PluginPre<HostState>;
    type Bindings = Plugin;

    fn engine(pre: &Self::Pre) -> &Engine {
        pre.engine()
    }

    async fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Plugin> {
        pre.instantiate_async(store).await
    }

    async fn configure(
        bindings: &Plugin,
        store: &mut Store<HostState>,
        config_json: &str,
    ) -> wasmtime::Result<Result<ResourceAny, String>> {
        bindings
            .weir_plugin_filter()
            .handler()
            .call_configure(store, config_json)
            .await
    }

    async fn interests(
        bindings: &Plugin,
        store: &mut Store<HostState>,
        handler: ResourceAny,
    ) -> wasmtime::Result<Option<Interests>> {
        let interests = bindings
            .weir_plugin_filter()
            .handler()
            .call_interests(store, handler)
            .await?;
        Ok(Some(interests))
    }
}

impl Lease<Filter> {
    /// Run `on-request`. The request state always comes back, even when the
    /// call faulted, so a fail-open plugin can be skipped.
    pub async fn on_request(
        &mut self,
        slot: usize,
        state: RequestState,
    ) -> (RequestState, Result<RequestAction, PluginFault>) {
        let (call, request) = match self.lend(slot, state) {
            Ok(lent) => lent,
            Err((state, fault)) => return (state, Err(fault)),
        };
        let handler = call.bindings.weir_plugin_filter().handler();
        let result = handler.call_on_request(call.store, call.handler, request).await;
        self.returned(result)
    }

    /// Run `on-response`; the response state always comes back.
    pub async fn on_response(&mut self, slot: usize, state: ResponseState) -> (ResponseState, Result<(), PluginFault>) {
        let (call, response) = match self.lend(slot, state) {
            Ok(lent) => lent,
            Err((state, fault)) => return (state, Err(fault)),
        };
        let handler = call.bindings.weir_plugin_filter().handler();
        let result = handler.call_on_response(call.store, call.handler, response).await;
        self.returned(result)
    }

    /// Start a call on `slot` with `state` lent to it: the call and the
    /// handle to pass, or the state back with the fault.
    fn lend<T: Lendable>(
        &mut self,
        slot: usize,
        state: T,
    ) -> Result<(Entered<'_, Filter>, Resource<T>), (T, PluginFault)> {
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
    fn returned<T: Lendable, R>(&mut self, result: wasmtime::Result<R>) -> (T, Result<R, PluginFault>) {
        match self.store_mut().and_then(|store| store.data_mut().lent.take_back()) {
            Some(state) => (state, result.map_err(|e| self.failed(e))),
            None => panic!("a lent request or response vanished during its call"),
        }
    }

    /// Run `on-response-chunk`.
    pub async fn on_response_chunk(&mut self, slot: usize, chunk: &[u8], end: bool) -> Result<Vec<u8>, PluginFault> {
        let call = self.enter(slot)?;
        let result = call
            .bindings
            .weir_plugin_filter()
            .handler()
            .call_on_response_chunk(call.store, call.handler, chunk, end)
            .await;
        result.map_err(|e| self.failed(e))
    }
}
