//! Weir: a programmable API and AI gateway whose request path runs through
//! sandboxed WebAssembly component plugins.
//!
//! Reading order follows a request: [`config`] (what the operator wrote),
//! [`proxy`] (listeners, routing, upstreams, the chain of phases),
//! [`plugins`] (the runtime that loads and calls plugins, and the host
//! capabilities they import), [`ai`] (AI routes: provider targets, failover,
//! usage, budgets, cache), [`observe`] (each request's record: metrics and
//! the access log), [`admin`] (the admin API; its answers' types in
//! [`admin_api`]), [`gateway`] (putting it together and
//! swapping in new versions), [`check`] (`weir check`: every problem of a config
//! in one run, nothing served or written), [`watch`] (noticing changes) and [`toolchain`]
//! (plugin projects in each language: `weir plugin new` and `weir plugin build`).
//! [`tls`] holds the TLS settings every outbound client shares.

pub use weir_admin as admin;
pub use weir_admin_api as admin_api;
pub use weir_ai as ai;
pub mod check;
pub use weir_config as config;
pub mod demo;
pub use weir_core::files;
pub use weir_gateway as gateway;
pub use weir_observe as observe;
pub use weir_plugins as plugins;
pub use weir_proxy as proxy;
pub mod running;
pub use weir_core::tls;
pub use weir_state as state;
pub mod toolchain;
pub mod watch;
