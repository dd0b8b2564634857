//! The generated side of the plugin contract, sealed here: `bindgen!` for
//! the two worlds a plugin can be, and nothing else.
//!
//! - `weir:plugin/plugin` (a filter): its imports (`types`, `log`, `kv`,
//!   `secrets`, `outbound-http`) become the `weir::plugin::*` modules the
//!   sibling modules implement for [`HostState`](super::HostState), and its
//!   `filter` export becomes [`Plugin`] / [`PluginPre`].
//! - `weir:plugin/shim` (a provider shim): exports `provider` instead of
//!   `filter` and imports the same interfaces, so its bindings reuse the
//!   filter world's (`with:`) and one host implementation serves both.
//!
//! `kv` and `outbound-http.send` are async (they wait on the shared state
//! or the network); every import is trappable, so a host failure (a stale
//! handle) traps the instance instead of reaching the guest. The
//! `request` and `response` resources are the host's own
//! [`RequestState`](crate::exchange::RequestState) /
//! [`ResponseState`](crate::exchange::ResponseState). `path` is relative to the crate
//! root (`crates/plugins`).

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "weir:plugin/plugin",
    imports: {
        "weir:plugin/outbound-http.send": async | trappable,
        "weir:plugin/kv": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "weir:plugin/types.request": crate::exchange::RequestState,
        "weir:plugin/types.response": crate::exchange::ResponseState,
    },
});

/// Bindings for the `shim` world: provider shims export `provider`
/// instead of `filter`, and import the same interfaces, bound to the
/// filter world's modules so one host implementation serves both.
pub mod shim {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "weir:plugin/shim",
        exports: { default: async },
        with: {
            "weir:plugin/types": crate::capabilities::bindings::weir::plugin::types,
            "weir:plugin/log": crate::capabilities::bindings::weir::plugin::log,
            "weir:plugin/kv": crate::capabilities::bindings::weir::plugin::kv,
            "weir:plugin/secrets": crate::capabilities::bindings::weir::plugin::secrets,
            "weir:plugin/outbound-http": crate::capabilities::bindings::weir::plugin::outbound_http,
        },
    });
}

/// Bindings for filters called directly, on the worker's stack instead of
/// a fiber: the `filter` export's calls are synchronous, and so is `kv`
/// (over the in-memory store). The other interfaces are the filter
/// world's, so the same host implementation serves both.
pub mod direct {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "weir:plugin/plugin",
        imports: { default: trappable },
        require_store_data_send: true,
        with: {
            "weir:plugin/types": crate::capabilities::bindings::weir::plugin::types,
            "weir:plugin/log": crate::capabilities::bindings::weir::plugin::log,
            "weir:plugin/secrets": crate::capabilities::bindings::weir::plugin::secrets,
            "weir:plugin/outbound-http": crate::capabilities::bindings::weir::plugin::outbound_http,
        },
    });
}
