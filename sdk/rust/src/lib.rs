//! Write Weir gateway plugins in Rust.
//!
//! A plugin is a type that implements [`Plugin`]. The gateway calls
//! [`Plugin::configure`] once for every route that uses the plugin, with
//! that route's config, and then calls the phase methods for each request on
//! that route. Every phase method has a default that does nothing, so a
//! plugin implements only what it needs. [`export_plugin!`] turns the type
//! into the component's exports.
//!
//! The route's config is read into a type that implements [`Settings`]:
//! serde reads it, refusing unknown fields, and [`Settings::validate`]
//! checks what the types cannot. [`Config::settings`] does both and
//! returns an error naming the field at fault, which `configure` passes on.
//!
//! ```no_run
//! use weir_sdk::{export_plugin, Action, Config, Plugin, Reply, Request, Settings};
//!
//! /// Answers 403 unless the request carries `x-team: <team>`.
//! struct TeamGate {
//!     team: String,
//! }
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct TeamSettings {
//!     team: String,
//! }
//!
//! impl Settings for TeamSettings {
//!     fn validate(&self) -> Result<(), String> {
//!         if self.team.is_empty() {
//!             return Err("team: must not be empty".into());
//!         }
//!         Ok(())
//!     }
//! }
//!
//! impl Plugin for TeamGate {
//!     fn configure(config: Config) -> Result<Self, String> {
//!         let settings: TeamSettings = config.settings()?;
//!         Ok(TeamGate { team: settings.team })
//!     }
//!
//!     fn on_request(&self, request: &Request) -> Action {
//!         match request.header("x-team") {
//!             Some(team) if team == self.team => {
//!                 request.set_property("consumer", &team);
//!                 Action::Continue
//!             }
//!             _ => Action::Respond(Reply::new(403).text("wrong team\n")),
//!         }
//!     }
//! }
//!
//! export_plugin!(TeamGate);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (the crate
//! type must be `cdylib`) and drop the `.wasm` file into the gateway's
//! plugin directory.
//!
//! Host capabilities — [`log`], [`kv`], [`secrets`], [`http`] — are plain
//! functions. Each must be granted to the plugin in the gateway config; an
//! ungranted call returns [`Error::NotGranted`].
//!
//! Also here: [`query`], to read and remove a query parameter; [`ai`], to
//! write provider shims; and, with the `testing` feature, `testing`, to
//! check in a plugin's own tests that its README's configs are accepted.
#![deny(missing_docs)]

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "weir:plugin/plugin@0.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_weir_plugin",
        default_bindings_module: "weir_sdk::bindings",
    });
}

#[doc(hidden)]
pub mod shim_bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "weir:plugin/shim@0.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_weir_shim",
        default_bindings_module: "weir_sdk::shim_bindings",
        with: {
            "weir:plugin/types@0.1.0": crate::bindings::weir::plugin::types,
            "weir:plugin/log@0.1.0": crate::bindings::weir::plugin::log,
            "weir:plugin/kv@0.1.0": crate::bindings::weir::plugin::kv,
            "weir:plugin/secrets@0.1.0": crate::bindings::weir::plugin::secrets,
            "weir:plugin/outbound-http@0.1.0": crate::bindings::weir::plugin::outbound_http,
        },
    });
}

pub mod ai;
pub mod query;
mod settings;
#[cfg(feature = "testing")]
pub mod testing;

pub use settings::Settings;

use bindings::exports::weir::plugin::filter;
use bindings::weir::plugin::types;

/// Why a host call or an edit failed.
pub use types::Error;
/// One change for `edit_headers`, which applies several in one host call.
pub use types::HeaderEdit;
/// Which phases a plugin takes part in and which bodies it needs.
pub use types::Interests;
/// The request as it passes along the chain; valid during the call only.
pub use types::Request;
/// The upstream's response as it passes back; valid during the call only.
pub use types::Response;

/// An HTTP header: lowercase name and value.
pub type Header = (String, String);

impl Default for Interests {
    /// `on-request` and `on-response`; no bodies, no chunks.
    fn default() -> Self {
        Interests {
            on_request: true,
            request_body: false,
            on_response: true,
            response_body: false,
            response_chunks: false,
        }
    }
}

/// The route's config for this plugin, as the gateway config gave it.
pub struct Config {
    json: String,
}

impl Config {
    /// A config from its JSON, as the gateway hands it to
    /// [`Plugin::configure`]: for driving a plugin natively (tests).
    pub fn new(json: impl Into<String>) -> Self {
        Config { json: json.into() }
    }

    /// The config as a JSON string (`{}` when the route gave none).
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// Read and check the config as `T` ([`Settings::from_json`]); the
    /// error names the field at fault. Return it from `configure` as it is.
    pub fn settings<T: Settings>(&self) -> Result<T, String> {
        T::from_json(&self.json)
    }

    /// Deserialize the config into any serde type, unchecked; the error is
    /// serde's. Prefer [`Config::settings`].
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.json).map_err(|e| e.to_string())
    }
}

/// A response made by the plugin instead of calling the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers to send.
    pub headers: Vec<Header>,
    /// Body to send.
    pub body: Vec<u8>,
}

impl Reply {
    /// An empty response with this status.
    pub fn new(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Set a plain-text body.
    pub fn text(mut self, body: &str) -> Self {
        self.headers
            .push(("content-type".into(), "text/plain; charset=utf-8".into()));
        self.body = body.as_bytes().to_vec();
        self
    }

    /// Set a JSON body.
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.headers.push(("content-type".into(), "application/json".into()));
        self.body = body.to_string().into_bytes();
        self
    }
}

/// What [`Plugin::on_request`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Pass the request on along the chain.
    Continue,
    /// Answer the client now.
    Respond(Reply),
}

/// A gateway plugin configured for one route.
///
/// Methods take `&self`: one value serves every request on its route, one
/// at a time per instance. Keep per-stream state for
/// [`Plugin::on_response_chunk`] in a `RefCell`.
pub trait Plugin: Sized + 'static {
    /// Build the plugin for one route from that route's config. Return an
    /// error naming what is wrong; the gateway refuses the config with it.
    fn configure(config: Config) -> Result<Self, String>;

    /// Which phases to call and which bodies to buffer. The default calls
    /// `on_request` and `on_response` and buffers nothing.
    fn interests(&self) -> Interests {
        Interests::default()
    }

    /// Request phase: inspect or rewrite the request, or answer it. The
    /// default continues.
    fn on_request(&self, request: &Request) -> Action {
        let _ = request;
        Action::Continue
    }

    /// Response phase: inspect or rewrite status, headers and body. The
    /// default does nothing.
    fn on_response(&self, response: &Response) {
        let _ = response;
    }

    /// One chunk of a streamed response body (only if `interests` asked for
    /// chunks). Chunks split at arbitrary byte offsets; hold back partial
    /// data and return it on a later call. `end` marks the last call. The
    /// default passes the chunk through.
    fn on_response_chunk(&self, chunk: Vec<u8>, end: bool) -> Vec<u8> {
        let _ = end;
        chunk
    }
}

/// Glue between a [`Plugin`] and the generated `handler` resource.
#[doc(hidden)]
pub struct Handler<P: Plugin> {
    plugin: P,
}

impl<P: Plugin> filter::GuestHandler for Handler<P> {
    fn configure(config: String) -> Result<filter::Handler, String> {
        let plugin = P::configure(Config { json: config })?;
        Ok(filter::Handler::new(Handler { plugin }))
    }

    fn interests(&self) -> Interests {
        self.plugin.interests()
    }

    fn on_request(&self, request: &Request) -> types::RequestAction {
        match self.plugin.on_request(request) {
            Action::Continue => types::RequestAction::Continue,
            Action::Respond(reply) => types::RequestAction::Respond(types::Reply {
                status: reply.status,
                headers: reply.headers,
                body: reply.body,
            }),
        }
    }

    fn on_response(&self, response: &Response) {
        self.plugin.on_response(response)
    }

    fn on_response_chunk(&self, chunk: Vec<u8>, end: bool) -> Vec<u8> {
        self.plugin.on_response_chunk(chunk, end)
    }
}

/// Export a [`Plugin`] type as the component's `filter` implementation.
///
/// Call it once, at the crate root of a `cdylib` crate.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        struct __WeirPluginExports;

        impl $crate::bindings::exports::weir::plugin::filter::Guest for __WeirPluginExports {
            type Handler = $crate::Handler<$plugin>;
        }

        $crate::bindings::__export_weir_plugin!(__WeirPluginExports with_types_in $crate::bindings);
    };
}

/// Log lines, written by the gateway tagged with plugin and route.
pub mod log {
    use crate::bindings::weir::plugin::log::{Level, log};

    /// Log at trace level.
    pub fn trace(message: &str) {
        log(Level::Trace, message)
    }
    /// Log at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }
    /// Log at info level.
    pub fn info(message: &str) {
        log(Level::Info, message)
    }
    /// Log at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
    /// Log at error level.
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}

/// Key-value state shared by all instances of this plugin (grant: `kv`).
pub mod kv {
    use crate::Error;
    use crate::bindings::weir::plugin::kv as host;
    use std::time::Duration;

    fn millis(ttl: Option<Duration>) -> Option<u64> {
        ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
    }

    /// The value of a key, if present and not expired.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
        host::get(key)
    }
    /// Set a key, optionally expiring after `ttl`.
    pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        host::set(key, value, millis(ttl))
    }
    /// Delete a key; true if it existed.
    pub fn delete(key: &str) -> Result<bool, Error> {
        host::delete(key)
    }
    /// Atomically add `delta` to the integer at `key` and return the result.
    /// `ttl` applies when the key is created.
    pub fn increment(key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, Error> {
        host::increment(key, delta, millis(ttl))
    }
    /// Atomically set `key` to `value` if its value is `expected` (`None`:
    /// absent). True if it was swapped.
    pub fn compare_and_swap(
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, Error> {
        host::compare_and_swap(key, expected, value, millis(ttl))
    }

    pub use host::TokensTaken;

    /// Atomically take `cost` tokens from the token bucket at `key`, which
    /// holds at most `capacity` and gains `refill_per_second` a second (a
    /// missing bucket is full). With a shared backend, every gateway takes
    /// from the same bucket on one clock.
    pub fn take_tokens(key: &str, capacity: u32, refill_per_second: f64, cost: u32) -> Result<TokensTaken, Error> {
        host::take_tokens(key, capacity, refill_per_second, cost)
    }
}

/// Named secrets (grant: each secret's name).
pub mod secrets {
    use crate::Error;

    /// The value of the named secret.
    pub fn get(name: &str) -> Result<String, Error> {
        crate::bindings::weir::plugin::secrets::get(name)
    }
}

/// Outbound HTTP to granted hosts (grant: `outbound-hosts`).
pub mod http {
    use crate::bindings::weir::plugin::outbound_http as host;
    use crate::{Error, Header};

    /// A response from [`send`].
    pub use host::IncomingResponse;

    /// Send a request and wait for the whole response.
    pub fn send(
        method: &str,
        url: &str,
        headers: &[Header],
        body: &[u8],
        timeout_ms: Option<u32>,
    ) -> Result<IncomingResponse, Error> {
        host::send(&host::OutgoingRequest {
            method: method.to_string(),
            url: url.to_string(),
            headers: headers.to_vec(),
            body: body.to_vec(),
            timeout_ms,
        })
    }
}
