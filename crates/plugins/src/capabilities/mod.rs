//! The host side of the plugin contract: what a plugin was granted, the
//! state of one instance's store ([`HostState`]), and every import a
//! plugin can call, one module per interface.
//!
//! - [`bindings`]: the generated side, both worlds (filter and provider
//!   shim), sealed in one module; its items are re-exported here.
//! - `types` (the `request` and `response` handles), `log`, `kv`,
//!   `secrets`, `outbound_http`: one `Host` implementation for
//!   [`HostState`] each, serving both worlds.
//! - `headers`: checking and editing header maps for the handles, and
//!   [`header_list`] for the proxy and the AI layer.
//! - `memory`: the per-instance memory cap, [`MemoryCap`].
//!
//! Capabilities follow three steps. Once per process the imports are added
//! to the [`Linker`] ([`add_to_linker`]). Once per plugin load its grants
//! are checked against the config ([`Grants`]). Per instance, [`HostState`]
//! is built cheaply from shared parts ([`SharedCapabilities`], an
//! [`Arc`]'d [`PluginIdentity`]).
//!
//! Invariants:
//! - a call to a capability the plugin was not granted returns
//!   `error.not-granted` naming the missing grant and how to grant it;
//!   `log` and the handles need no grant;
//! - a plugin reaches the world only through these imports: its WASI
//!   context has no files, sockets or environment, and what it prints goes
//!   to the log tagged with the plugin;
//! - what a plugin hands the host is checked, and a bad value is an
//!   `error.invalid` naming it, never a panic; a handle that is gone traps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Result;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use super::exchange::{RequestState, ResponseState};
use super::output::PluginOutput;
use direct_io::{DirectIo, DirectIoData};
pub use outbound_http::OutboundClient;
use weir_config::{OnUnavailable, PluginName, RouteName};
use weir_state::SharedState;

pub mod bindings;
mod direct_io;
mod headers;
mod kv;
mod log;
mod memory;
pub mod outbound_http;
mod secrets;
mod types;

pub use bindings::{Plugin, PluginIndices, PluginPre, direct, exports, shim, weir};
pub use headers::header_list;
pub use memory::MemoryCap;

/// What a plugin was granted, from its `[plugin.NAME]` settings in the
/// config or, for fields the config leaves unset, its manifest
/// (`NAME.toml`, unless `[plugins] manifest_grants = false`).
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// May use the key-value store.
    pub kv: bool,
    /// Secret names it may read.
    pub secrets: Vec<String>,
    /// `host:port` or `host` entries it may call.
    pub outbound_hosts: Vec<String>,
    /// Ceiling on an outbound call.
    pub outbound_timeout: Duration,
    /// Where each grant came from.
    pub sources: GrantSources,
}

/// Where a grant came from: the file that an operator must read to
/// know what a plugin may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantSource {
    /// The gateway config's `[plugin.NAME]`.
    #[default]
    Config,
    /// The plugin's manifest, `NAME.toml` beside `NAME.wasm`.
    Manifest,
}

impl GrantSource {
    /// `config` or `manifest`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantSource::Config => "config",
            GrantSource::Manifest => "manifest",
        }
    }
}

/// The source of each field of [`Grants`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrantSources {
    /// Of `kv`.
    pub kv: GrantSource,
    /// Of `secrets`.
    pub secrets: GrantSource,
    /// Of `outbound_hosts`.
    pub outbound_hosts: GrantSource,
}

/// One thing a plugin may do that plugins cannot by default, and where
/// that was granted: what the admin API lists and reloads log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct GrantEntry {
    /// `kv`, `secret` or `outbound_host`.
    pub grant: &'static str,
    /// The secret's name or the host; absent for `kv`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where it was granted.
    pub source: GrantSource,
}

impl std::fmt::Display for GrantEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{} {name:?}", self.grant),
            None => f.write_str(self.grant),
        }
    }
}

impl Grants {
    /// Every grant, one entry per secret and per host, in a stable order.
    pub fn entries(&self) -> Vec<GrantEntry> {
        let mut entries = Vec::new();
        if self.kv {
            entries.push(GrantEntry {
                grant: "kv",
                name: None,
                source: self.sources.kv,
            });
        }
        entries.extend(self.secrets.iter().map(|secret| GrantEntry {
            grant: "secret",
            name: Some(secret.clone()),
            source: self.sources.secrets,
        }));
        entries.extend(self.outbound_hosts.iter().map(|host| GrantEntry {
            grant: "outbound_host",
            name: Some(host.clone()),
            source: self.sources.outbound_hosts,
        }));
        entries.sort();
        entries.dedup();
        entries
    }
}

/// Parts shared by every plugin instance of a gateway.
pub struct SharedCapabilities {
    /// The shared state behind `kv`.
    pub state: Arc<SharedState>,
    /// Secret values by name.
    pub secrets: HashMap<String, String>,
    /// Client for outbound calls.
    pub outbound: OutboundClient,
}

/// Who is calling: the plugin's identity and grants.
#[derive(Debug)]
pub struct PluginIdentity {
    /// The plugin's name.
    pub name: PluginName,
    /// The routes it is configured for, by slot.
    pub routes: Vec<RouteName>,
    /// What each slot's route does while the shared state store is
    /// unavailable.
    pub state_policies: Vec<OnUnavailable>,
    /// What it may use.
    pub grants: Grants,
}

/// The data of one plugin instance's store.
pub struct HostState {
    wasi: WasiCtx,
    /// WASI's handles (streams), and a shim's stream translators.
    pub table: ResourceTable,
    /// The request or response lent for the current call.
    pub lent: crate::exchange::Lent,
    /// The memory cap.
    pub memory: MemoryCap,
    /// Epoch ticks the current call may still run for; the call is
    /// interrupted when they are spent. Ticks are counted only while the
    /// plugin's code runs, so time spent waiting in a host call (outbound
    /// HTTP) or waiting for the worker after a yield is not charged.
    pub ticks_left: u32,
    /// The route slot of the current call, for logs (an index into the
    /// plugin's routes, so starting a call allocates nothing).
    pub slot: Option<usize>,
    /// Outbound HTTP calls made during the current call.
    pub outbound_calls: u32,
    identity: Arc<PluginIdentity>,
    shared: Arc<SharedCapabilities>,
}

impl HostState {
    /// State for a new instance of the plugin `identity`.
    pub fn new(identity: Arc<PluginIdentity>, shared: Arc<SharedCapabilities>, memory_limit: usize) -> Self {
        // No files, no sockets, no environment: plugins reach the world
        // only through Weir's imports. What they print (a Rust
        // panic message, say) goes to the log, tagged with the plugin.
        let wasi = WasiCtx::builder()
            .stdout(PluginOutput::new(identity.name.clone(), "stdout"))
            .stderr(PluginOutput::new(identity.name.clone(), "stderr"))
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            lent: crate::exchange::Lent::default(),
            memory: MemoryCap::new(memory_limit),
            ticks_left: 0,
            slot: None,
            outbound_calls: 0,
            identity,
            shared,
        }
    }

    /// The current call's route, for log lines; `-` between calls.
    fn route_name(&self) -> &str {
        self.slot
            .and_then(|slot| self.identity.routes.get(slot))
            .map_or("-", RouteName::as_str)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Add WASI and every Weir import to `linker`, for plugins called on a
/// fiber: imports that wait (outbound HTTP, `kv` over Redis, WASI's clocks
/// and streams) suspend the call and give the worker back.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    Plugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

/// Add the imports that never wait to `linker`, for plugins called
/// directly on the worker's stack, without a fiber: Weir's `types`, `log`
/// and `secrets`, `kv` when `kv_at_once` (the in-memory store), and WASI's
/// command-line interfaces (environment, exit, stdio on Weir's own
/// streams), wall clock, random numbers and I/O. A component that imports
/// anything else — outbound HTTP, `kv` over Redis, WASI's monotonic clock
/// (timers), files or sockets — does not link here and is called on a
/// fiber.
pub fn add_direct_to_linker(linker: &mut Linker<HostState>, kv_at_once: bool) -> Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, io, random, sync};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

    let l = linker;
    cli::environment::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::exit::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stdin::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stdout::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stderr::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_input::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_output::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    clocks::wall_clock::add_to_linker::<HostState, WasiClocks>(l, HostState::clocks)?;
    random::random::add_to_linker::<HostState, WasiRandom>(l, HostState::random)?;
    random::insecure::add_to_linker::<HostState, WasiRandom>(l, HostState::random)?;
    random::insecure_seed::add_to_linker::<HostState, WasiRandom>(l, HostState::random)?;
    io::error::add_to_linker::<HostState, HasSelf<ResourceTable>>(l, |s| &mut s.table)?;
    sync::io::poll::add_to_linker::<HostState, DirectIoData>(l, |s| DirectIo(&mut s.table))?;
    sync::io::streams::add_to_linker::<HostState, DirectIoData>(l, |s| DirectIo(&mut s.table))?;
    weir::plugin::types::add_to_linker::<HostState, HasSelf<HostState>>(l, |s| s)?;
    weir::plugin::log::add_to_linker::<HostState, HasSelf<HostState>>(l, |s| s)?;
    weir::plugin::secrets::add_to_linker::<HostState, HasSelf<HostState>>(l, |s| s)?;
    if kv_at_once {
        bindings::direct::weir::plugin::kv::add_to_linker::<HostState, HasSelf<HostState>>(l, |s| s)?;
    }
    Ok(())
}
