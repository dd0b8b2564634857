//! The provider-shim world (`weir:plugin/provider`): plugins that
//! translate between the OpenAI chat format and a provider's own, one
//! adapter per AI target. A stream translator lives in the instance from
//! [`Lease::open_stream`] until [`Lease::close_stream`].

use wasmtime::component::ResourceAny;
use wasmtime::{Engine, Store};

use super::PluginFault;
use super::capabilities::HostState;
use super::capabilities::shim::exports::weir::plugin::provider::{
    ApiError, Completion, Exchange, ProviderRequest, StreamOutput,
};
use super::capabilities::shim::{Shim, ShimPre};
use super::capabilities::weir::plugin::types::Interests;
use super::instance::{Lease, LoadedPlugin, World};

/// The provider-shim world.
pub struct ProviderShim;

/// A provider shim, configured for its AI targets.
pub type ShimPlugin = LoadedPlugin<ProviderShim>;

/// A shim instance checked out for a call.
pub type ShimLease = Lease<ProviderShim>;

impl World for ProviderShim {
    type Pre = ShimPre<HostState>;
    type Bindings = Shim;

    fn engine(pre: &Self::Pre) -> &Engine {
        pre.engine()
    }

    fn waits(_: &Self::Pre) -> bool {
        true
    }

    async fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Shim> {
        pre.instantiate_async(store).await
    }

    async fn configure(
        bindings: &Shim,
        store: &mut Store<HostState>,
        config_json: &str,
    ) -> wasmtime::Result<Result<ResourceAny, String>> {
        bindings
            .weir_plugin_provider()
            .adapter()
            .call_configure(store, config_json)
            .await
    }

    async fn interests(
        _bindings: &Shim,
        _store: &mut Store<HostState>,
        _handler: ResourceAny,
    ) -> wasmtime::Result<Option<Interests>> {
        Ok(None)
    }
}

impl Lease<ProviderShim> {
    /// Run the shim's `translate-request`.
    pub async fn translate_request(
        &mut self,
        slot: usize,
        body: &[u8],
    ) -> Result<Result<ProviderRequest, ApiError>, PluginFault> {
        let call = self.enter(slot)?;
        let result = call
            .bindings
            .weir_plugin_provider()
            .adapter()
            .call_translate_request(call.store, call.handler, body)
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
        let call = self.enter(slot)?;
        let result = call
            .bindings
            .weir_plugin_provider()
            .adapter()
            .call_translate_response(call.store, call.handler, exchange, body)
            .await;
        result.map_err(|e| self.failed(e))
    }

    /// Run the shim's `translate-error`.
    pub async fn translate_error(&mut self, slot: usize, status: u16, body: &[u8]) -> Result<ApiError, PluginFault> {
        let call = self.enter(slot)?;
        let result = call
            .bindings
            .weir_plugin_provider()
            .adapter()
            .call_translate_error(call.store, call.handler, status, body)
            .await;
        result.map_err(|e| self.failed(e))
    }

    /// Run the shim's `open-stream`; the stream lives in this instance
    /// until [`Lease::close_stream`].
    pub async fn open_stream(&mut self, slot: usize, exchange: &Exchange) -> Result<ResourceAny, PluginFault> {
        let call = self.enter(slot)?;
        let result = call
            .bindings
            .weir_plugin_provider()
            .adapter()
            .call_open_stream(call.store, call.handler, exchange)
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
        let call = self.enter(slot)?;
        let translator = call.bindings.weir_plugin_provider().stream_translator();
        let result = if end {
            translator.call_finish(call.store, stream).await
        } else {
            translator.call_push(call.store, stream, bytes).await
        };
        result.map_err(|e| self.failed(e))
    }

    /// Drop a stream the shim made, so the instance can be reused.
    pub async fn close_stream(&mut self, stream: ResourceAny) -> Result<(), PluginFault> {
        let Some(store) = self.store_mut() else {
            return Ok(());
        };
        let result = stream.resource_drop_async(store).await;
        result.map_err(|e| self.failed(e))
    }
}
