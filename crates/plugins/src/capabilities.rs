//! The host side of the plugin contract: the store's state and every
//! import a plugin can call — the `request`/`response` handles, `log`,
//! `kv`, `secrets` and `outbound-http`.
//!
//! Capabilities follow three steps. Once per process the imports are added
//! to the [`Linker`]. Once per plugin load its grants are checked against
//! the config ([`Grants`]). Per instance, [`HostState`] is built cheaply
//! from shared parts. A call to a capability the plugin was not granted
//! returns `error.not-granted` naming the missing grant.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Result};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::outbound::OutboundClient;
use super::output::PluginOutput;
pub use super::state::{RequestState, ResponseState};
use weir_config::{OnUnavailable, PluginName, RouteName};
use weir_state::bucket::Bucket;
use weir_state::{SharedState, StateError};

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
        "weir:plugin/types.request": RequestState,
        "weir:plugin/types.response": ResponseState,
    },
});

/// Bindings for the `shim` world: provider shims export `provider`
/// instead of `filter`, and import the same capabilities (the host
/// implementations above serve both worlds).
pub mod shim {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "weir:plugin/shim",
        exports: { default: async },
        with: {
            "weir:plugin/types": crate::capabilities::weir::plugin::types,
            "weir:plugin/log": crate::capabilities::weir::plugin::log,
            "weir:plugin/kv": crate::capabilities::weir::plugin::kv,
            "weir:plugin/secrets": crate::capabilities::weir::plugin::secrets,
            "weir:plugin/outbound-http": crate::capabilities::weir::plugin::outbound_http,
        },
    });
}

use self::weir::plugin::types::{Error as CapError, Header, HeaderEdit};

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

/// Caps linear memory per instance and remembers when the cap was hit, so
/// the resulting trap is reported as a memory fault.
pub struct MemoryCap {
    limit: usize,
    /// Set when a grow beyond the limit was refused.
    pub exceeded: bool,
}

impl MemoryCap {
    /// A cap of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        MemoryCap { limit, exceeded: false }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Err(wasmtime::format_err!("memory cap of {} MiB reached", self.limit >> 20));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The data of one plugin instance's store.
pub struct HostState {
    wasi: WasiCtx,
    /// Handles passed to the plugin during a call.
    pub table: ResourceTable,
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
        // only through the capabilities above. What they print (a Rust
        // panic message, say) goes to the log, tagged with the plugin.
        let wasi = WasiCtx::builder()
            .stdout(PluginOutput::new(identity.name.clone(), "stdout"))
            .stderr(PluginOutput::new(identity.name.clone(), "stderr"))
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap::new(memory_limit),
            ticks_left: 0,
            slot: None,
            outbound_calls: 0,
            identity,
            shared,
        }
    }

    fn route_name(&self) -> &str {
        self.slot
            .and_then(|slot| self.identity.routes.get(slot))
            .map_or("-", RouteName::as_str)
    }

    /// What a `kv` call needs: the store, the plugin's name (its keys'
    /// namespace) and the current route's policy for an unavailable
    /// store; refused when the plugin lacks the `kv` grant.
    fn kv_call(&self) -> Result<KvCall, CapError> {
        if !self.identity.grants.kv {
            return Err(CapError::NotGranted(format!(
                "kv (grant it with [plugin.{}] kv = true)",
                self.identity.name
            )));
        }
        let policy = self
            .slot
            .and_then(|slot| self.identity.state_policies.get(slot).copied())
            .unwrap_or_default();
        Ok(KvCall {
            state: self.shared.state.clone(),
            owner: self.identity.name.to_string(),
            policy,
        })
    }
}

/// See [`HostState::kv_call`].
struct KvCall {
    state: Arc<SharedState>,
    owner: String,
    policy: OnUnavailable,
}

fn state_error(error: StateError) -> CapError {
    match error {
        StateError::Invalid(message) => CapError::Invalid(message),
        StateError::Unavailable(message) => CapError::Failed(message),
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

/// Add WASI and every Weir import to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    Plugin::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

fn header_name(name: &str) -> Result<HeaderName, CapError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| CapError::Invalid(format!("{name:?} is not a header name")))
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue, CapError> {
    HeaderValue::from_str(value)
        .map_err(|_| CapError::Invalid(format!("value of {name:?} is not a valid header value")))
}

fn first_header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn all_headers(headers: &HeaderMap) -> Vec<Header> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// A `HeaderMap` holds at most 32768 distinct names (its `insert` and
/// `append` panic past that); a plugin that adds more gets this error.
fn too_many_headers(name: &HeaderName) -> CapError {
    CapError::Invalid(format!("{name:?}: too many header names"))
}

fn insert_checked(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) -> Result<(), CapError> {
    let refused = too_many_headers(&name);
    headers.try_insert(name, value).map(drop).map_err(|_| refused)
}

fn append_checked(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) -> Result<(), CapError> {
    let refused = too_many_headers(&name);
    headers.try_append(name, value).map(drop).map_err(|_| refused)
}

fn set_header(headers: &mut HeaderMap, name: &str, value: &str) -> Result<(), CapError> {
    insert_checked(headers, header_name(name)?, header_value(name, value)?)
}

fn append_header(headers: &mut HeaderMap, name: &str, value: &str) -> Result<(), CapError> {
    append_checked(headers, header_name(name)?, header_value(name, value)?)
}

/// Headers a plugin hands over as a list (a reply's, a provider shim's
/// request), checked: every name and value valid, and no more names than
/// a `HeaderMap` holds.
pub fn header_list(pairs: &[Header]) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        append_header(&mut headers, name, value).map_err(|e| match e {
            CapError::NotGranted(m) | CapError::Invalid(m) | CapError::Failed(m) => m,
        })?;
    }
    Ok(headers)
}

fn remove_header(headers: &mut HeaderMap, name: &str) {
    if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
        headers.remove(name);
    }
}

/// Remove every value of `name`, returning the first.
fn take_header(headers: &mut HeaderMap, name: &str) -> Option<String> {
    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
    headers
        .remove(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// A header edit with its name and value checked.
enum CheckedEdit {
    Set(HeaderName, HeaderValue),
    Append(HeaderName, HeaderValue),
    Remove(HeaderName),
    Rename(Vec<(HeaderName, HeaderName)>),
}

impl CheckedEdit {
    /// How many names the edit may add to a map, at most.
    fn names_added(&self) -> usize {
        match self {
            CheckedEdit::Set(..) | CheckedEdit::Append(..) => 1,
            CheckedEdit::Remove(_) => 0,
            CheckedEdit::Rename(pairs) => pairs.len(),
        }
    }
}

/// A map with at most this many names, even under the hash-collision
/// defence that grows it early, stays far from `HeaderMap`'s limit.
const NAMES_WITHOUT_UNDO: usize = 4096;

/// Apply `edits` in order, after checking every name and value: one
/// invalid edit refuses them all, so a plugin never sees half its changes.
fn edit_headers(headers: &mut HeaderMap, edits: &[HeaderEdit]) -> Result<(), CapError> {
    let checked = edits
        .iter()
        .map(|edit| {
            Ok(match edit {
                HeaderEdit::Set((name, value)) => CheckedEdit::Set(header_name(name)?, header_value(name, value)?),
                HeaderEdit::Append((name, value)) => {
                    CheckedEdit::Append(header_name(name)?, header_value(name, value)?)
                }
                HeaderEdit::Remove(name) => CheckedEdit::Remove(header_name(name)?),
                HeaderEdit::Rename(pairs) => CheckedEdit::Rename(
                    pairs
                        .iter()
                        .map(|(old, new)| Ok((header_name(old)?, header_name(new)?)))
                        .collect::<Result<_, CapError>>()?,
                ),
            })
        })
        .collect::<Result<Vec<_>, CapError>>()?;
    // Only the map's size limit can refuse an edit now. A map that may
    // reach it is copied first, so the edits can be undone and a plugin
    // still never sees half its changes; a small one (nearly every map)
    // cannot, and is not copied.
    let added: usize = checked.iter().map(CheckedEdit::names_added).sum();
    let undo = (headers.keys_len().saturating_add(added) > NAMES_WITHOUT_UNDO).then(|| headers.clone());
    for edit in checked {
        let applied = match edit {
            CheckedEdit::Set(name, value) => insert_checked(headers, name, value),
            CheckedEdit::Append(name, value) => append_checked(headers, name, value),
            CheckedEdit::Remove(name) => {
                headers.remove(name);
                Ok(())
            }
            CheckedEdit::Rename(pairs) => rename_headers(headers, &pairs),
        };
        if let Err(error) = applied {
            if let Some(before) = undo {
                *headers = before;
            }
            return Err(error);
        }
    }
    Ok(())
}

/// Move the values of each `old` to its `new`, all pairs at once. A `new`
/// keeps its own values when its `old` has none.
fn rename_headers(headers: &mut HeaderMap, pairs: &[(HeaderName, HeaderName)]) -> Result<(), CapError> {
    let moved: Vec<(&HeaderName, Vec<HeaderValue>)> = pairs
        .iter()
        .map(|(old, new)| (new, headers.get_all(old).iter().cloned().collect::<Vec<_>>()))
        .filter(|(_, values)| !values.is_empty())
        .collect();
    for (old, _) in pairs {
        headers.remove(old);
    }
    for (new, _) in &moved {
        headers.remove(*new);
    }
    for (new, values) in moved {
        for value in values {
            append_checked(headers, new.clone(), value)?;
        }
    }
    Ok(())
}

/// The methods `request` and `response` handles share: headers, body and
/// properties, over the state behind the handle.
macro_rules! handle_methods {
    ($state:ty) => {
        fn header(&mut self, r: Resource<$state>, name: String) -> Result<Option<String>> {
            Ok(first_header(&self.table.get(&r)?.parts.headers, &name))
        }

        fn header_all(&mut self, r: Resource<$state>, name: String) -> Result<Vec<String>> {
            let headers = &self.table.get(&r)?.parts.headers;
            Ok(headers.get_all(name.as_str()).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect())
        }

        fn headers(&mut self, r: Resource<$state>) -> Result<Vec<Header>> {
            Ok(all_headers(&self.table.get(&r)?.parts.headers))
        }

        fn set_header(&mut self, r: Resource<$state>, name: String, value: String) -> Result<Result<(), CapError>> {
            Ok(set_header(&mut self.table.get_mut(&r)?.parts.headers, &name, &value))
        }

        fn append_header(&mut self, r: Resource<$state>, name: String, value: String) -> Result<Result<(), CapError>> {
            Ok(append_header(&mut self.table.get_mut(&r)?.parts.headers, &name, &value))
        }

        fn remove_header(&mut self, r: Resource<$state>, name: String) -> Result<()> {
            remove_header(&mut self.table.get_mut(&r)?.parts.headers, &name);
            Ok(())
        }

        fn take_header(&mut self, r: Resource<$state>, name: String) -> Result<Option<String>> {
            Ok(take_header(&mut self.table.get_mut(&r)?.parts.headers, &name))
        }

        fn edit_headers(&mut self, r: Resource<$state>, edits: Vec<HeaderEdit>) -> Result<Result<(), CapError>> {
            Ok(edit_headers(&mut self.table.get_mut(&r)?.parts.headers, &edits))
        }

        fn body(&mut self, r: Resource<$state>) -> Result<Option<Vec<u8>>> {
            let state = self.table.get(&r)?;
            Ok(if state.body_visible || state.body_replaced {
                Some(state.body.as_deref().unwrap_or_default().to_vec())
            } else {
                None
            })
        }

        fn set_body(&mut self, r: Resource<$state>, body: Vec<u8>) -> Result<()> {
            let state = self.table.get_mut(&r)?;
            state.body = Some(Bytes::from(body));
            state.body_replaced = true;
            Ok(())
        }

        fn property(&mut self, r: Resource<$state>, name: String) -> Result<Option<String>> {
            Ok(self.table.get(&r)?.properties.get(&name).map(str::to_string))
        }

        fn set_property(&mut self, r: Resource<$state>, name: String, value: String) -> Result<()> {
            if let Err(reason) = self.table.get_mut(&r)?.properties.set(&name, &value) {
                tracing::warn!(plugin = %self.identity.name, route = self.route_name(), "set-property refused: {reason}");
            }
            Ok(())
        }

        fn drop(&mut self, _r: Resource<$state>) -> Result<()> {
            // The host owns these handles and takes them back after each
            // call; the guest only ever borrows them.
            Ok(())
        }
    };
}

impl weir::plugin::types::Host for HostState {}

impl weir::plugin::types::HostRequest for HostState {
    fn method(&mut self, r: Resource<RequestState>) -> Result<String> {
        Ok(self.table.get(&r)?.parts.method.to_string())
    }

    fn set_method(&mut self, r: Resource<RequestState>, method: String) -> Result<Result<(), CapError>> {
        let parsed = match http::Method::from_bytes(method.as_bytes()) {
            Ok(m) => m,
            Err(_) => return Ok(Err(CapError::Invalid(format!("{method:?} is not an HTTP method")))),
        };
        self.table.get_mut(&r)?.parts.method = parsed;
        Ok(Ok(()))
    }

    fn path(&mut self, r: Resource<RequestState>) -> Result<String> {
        let uri = &self.table.get(&r)?.parts.uri;
        Ok(uri
            .path_and_query()
            .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string()))
    }

    fn set_path(&mut self, r: Resource<RequestState>, path: String) -> Result<Result<(), CapError>> {
        if !path.starts_with('/') {
            return Ok(Err(CapError::Invalid(format!("path {path:?} must start with '/'"))));
        }
        let parsed = match http::uri::PathAndQuery::from_maybe_shared(Bytes::from(path.clone())) {
            Ok(pq) => pq,
            Err(_) => return Ok(Err(CapError::Invalid(format!("{path:?} is not a valid path")))),
        };
        let state = self.table.get_mut(&r)?;
        let mut parts = std::mem::take(&mut state.parts.uri).into_parts();
        parts.path_and_query = Some(parsed);
        match http::Uri::from_parts(parts) {
            Ok(uri) => {
                state.parts.uri = uri;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(CapError::Invalid(format!("{path:?}: {e}")))),
        }
    }

    fn authority(&mut self, r: Resource<RequestState>) -> Result<Option<String>> {
        let parts = &self.table.get(&r)?.parts;
        Ok(weir_core::forwarding::request_authority(&parts.uri, &parts.headers).map(str::to_string))
    }

    handle_methods!(RequestState);
}

impl weir::plugin::types::HostResponse for HostState {
    fn status(&mut self, r: Resource<ResponseState>) -> Result<u16> {
        Ok(self.table.get(&r)?.parts.status.as_u16())
    }

    fn set_status(&mut self, r: Resource<ResponseState>, status: u16) -> Result<Result<(), CapError>> {
        match http::StatusCode::from_u16(status) {
            Ok(code) => {
                self.table.get_mut(&r)?.parts.status = code;
                Ok(Ok(()))
            }
            Err(_) => Ok(Err(CapError::Invalid(format!("{status} is not a status code")))),
        }
    }

    handle_methods!(ResponseState);
}

impl weir::plugin::log::Host for HostState {
    fn log(&mut self, level: weir::plugin::log::Level, message: String) -> Result<()> {
        use self::weir::plugin::log::Level;
        let plugin = self.identity.name.as_str();
        let route = self.route_name();
        // Cap what one line can cost.
        let message = if message.len() > 4096 {
            &message[..message.floor_char_boundary(4096)]
        } else {
            &message
        };
        match level {
            Level::Trace => tracing::trace!(target: "weir::plugin", plugin, route, "{message}"),
            Level::Debug => tracing::debug!(target: "weir::plugin", plugin, route, "{message}"),
            Level::Info => tracing::info!(target: "weir::plugin", plugin, route, "{message}"),
            Level::Warn => tracing::warn!(target: "weir::plugin", plugin, route, "{message}"),
            Level::Error => tracing::error!(target: "weir::plugin", plugin, route, "{message}"),
        }
        Ok(())
    }
}

// Each call checks the grant, then goes to the shared state (memory, or
// Redis with the route's fallback policy).
impl weir::plugin::kv::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Result<Option<Vec<u8>>, CapError>> {
        let kv = self.kv_call();
        Ok(async {
            let kv = kv?;
            kv.state.get(&kv.owner, &key, kv.policy).await.map_err(state_error)
        }
        .await)
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<Result<(), CapError>> {
        let kv = self.kv_call();
        Ok(async {
            let kv = kv?;
            kv.state
                .set(&kv.owner, &key, value, ttl_ms, kv.policy)
                .await
                .map_err(state_error)
        }
        .await)
    }

    async fn delete(&mut self, key: String) -> Result<Result<bool, CapError>> {
        let kv = self.kv_call();
        Ok(async {
            let kv = kv?;
            kv.state.delete(&kv.owner, &key, kv.policy).await.map_err(state_error)
        }
        .await)
    }

    async fn increment(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> Result<Result<i64, CapError>> {
        let kv = self.kv_call();
        Ok(async {
            let kv = kv?;
            kv.state
                .increment(&kv.owner, &key, delta, ttl_ms, kv.policy)
                .await
                .map_err(state_error)
        }
        .await)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<Result<bool, CapError>> {
        let kv = self.kv_call();
        Ok(async {
            let kv = kv?;
            kv.state
                .compare_and_swap(&kv.owner, &key, expected, value, ttl_ms, kv.policy)
                .await
                .map_err(state_error)
        }
        .await)
    }

    async fn take_tokens(
        &mut self,
        key: String,
        capacity: u32,
        refill_per_second: f64,
        cost: u32,
    ) -> Result<Result<weir::plugin::kv::TokensTaken, CapError>> {
        let kv = self.kv_call();
        let bucket = Bucket {
            capacity,
            refill_per_second,
        };
        Ok(async {
            let kv = kv?;
            let taken = kv
                .state
                .take_tokens(&kv.owner, &key, bucket, cost, kv.policy)
                .await
                .map_err(state_error)?;
            Ok(weir::plugin::kv::TokensTaken {
                allowed: taken.allowed,
                remaining: taken.remaining,
                retry_after_secs: taken.retry_after_secs,
                reset_secs: taken.reset_secs,
            })
        }
        .await)
    }
}

impl weir::plugin::secrets::Host for HostState {
    fn get(&mut self, name: String) -> Result<Result<String, CapError>> {
        if !self.identity.grants.secrets.contains(&name) {
            return Ok(Err(CapError::NotGranted(format!(
                "secret {name:?} (grant it with [plugin.{}] secrets = [\"{name}\"])",
                self.identity.name
            ))));
        }
        Ok(self
            .shared
            .secrets
            .get(&name)
            .cloned()
            .ok_or_else(|| CapError::Failed(format!("secret {name:?} is not defined"))))
    }
}

impl weir::plugin::outbound_http::Host for HostState {
    async fn send(
        &mut self,
        request: weir::plugin::outbound_http::OutgoingRequest,
    ) -> Result<Result<weir::plugin::outbound_http::IncomingResponse, CapError>> {
        // Waiting on the network does not use up the plugin's deadline
        // (see `ticks_left`); the grant's timeout bounds each call, and the
        // number of calls is capped so one request cannot fan out.
        self.outbound_calls += 1;
        if self.outbound_calls > super::outbound::MAX_CALLS_PER_PLUGIN_CALL {
            return Ok(Err(CapError::Failed(format!(
                "more than {} outbound calls in one plugin call",
                super::outbound::MAX_CALLS_PER_PLUGIN_CALL
            ))));
        }
        Ok(self
            .shared
            .outbound
            .send(&self.identity.name, &self.identity.grants, request)
            .await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn list(headers: &HeaderMap) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        pairs.sort();
        pairs
    }

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.to_string(), value.to_string())
    }

    #[test]
    fn edits_apply_in_order() {
        let mut headers = map(&[("x-a", "1"), ("x-a", "2"), ("x-gone", "g")]);
        let edits = [
            HeaderEdit::Remove("x-gone".into()),
            HeaderEdit::Set(pair("x-a", "3")),
            HeaderEdit::Append(pair("x-a", "4")),
            HeaderEdit::Set(pair("x-b", "b")),
        ];
        edit_headers(&mut headers, &edits).unwrap();
        assert_eq!(
            list(&headers),
            vec![pair("x-a", "3"), pair("x-a", "4"), pair("x-b", "b")]
        );
    }

    #[test]
    fn renames_move_every_value_at_once() {
        let mut headers = map(&[("a", "1"), ("a", "2"), ("b", "3"), ("c", "kept")]);
        let swap = vec![pair("a", "b"), pair("b", "a"), pair("absent", "c")];
        edit_headers(&mut headers, &[HeaderEdit::Rename(swap)]).unwrap();
        assert_eq!(
            list(&headers),
            vec![pair("a", "3"), pair("b", "1"), pair("b", "2"), pair("c", "kept")]
        );
    }

    #[test]
    fn one_invalid_edit_refuses_them_all_naming_it() {
        let mut headers = map(&[("x-a", "1")]);
        let edits = [
            HeaderEdit::Remove("x-a".into()),
            HeaderEdit::Set(pair("x-ok", "fine")),
            HeaderEdit::Append(pair("x-bad", "line\nbreak")),
        ];
        let error = edit_headers(&mut headers, &edits).unwrap_err();
        assert!(
            matches!(&error, CapError::Invalid(m) if m.contains("x-bad")),
            "{error:?}"
        );
        assert_eq!(list(&headers), vec![pair("x-a", "1")], "nothing applied");
        let error = edit_headers(&mut headers, &[HeaderEdit::Remove("bad name".into())]).unwrap_err();
        assert!(
            matches!(&error, CapError::Invalid(m) if m.contains("bad name")),
            "{error:?}"
        );
    }

    #[test]
    fn more_header_names_than_a_map_holds_are_refused_not_a_panic() {
        let mut headers = HeaderMap::new();
        let refused = (0..40_000).find(|i| set_header(&mut headers, &format!("x-{i}"), "v").is_err());
        let full = headers.clone();
        assert!(refused.is_some(), "40000 names accepted");
        assert!(append_header(&mut headers, "x-one-more", "v").is_err());
        let edits: Vec<HeaderEdit> = (0..40_000)
            .map(|i| HeaderEdit::Set(pair(&format!("y-{i}"), "v")))
            .collect();
        assert!(edit_headers(&mut headers, &edits).is_err());
        assert!(headers == full, "a refused edit list changed the headers");
        let pairs: Vec<Header> = (0..40_000).map(|i| pair(&format!("z-{i}"), "v")).collect();
        assert!(header_list(&pairs).is_err());
    }

    #[test]
    fn take_header_returns_the_first_value_and_removes_all() {
        let mut headers = map(&[("x-key", "first"), ("x-key", "second"), ("x-other", "o")]);
        assert_eq!(take_header(&mut headers, "X-Key").as_deref(), Some("first"));
        assert_eq!(list(&headers), vec![pair("x-other", "o")]);
        assert_eq!(take_header(&mut headers, "x-key"), None);
        assert_eq!(take_header(&mut headers, "not a name"), None);
    }
}
