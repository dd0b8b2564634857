//! The gateway config file: its schema, defaults and validation.
//!
//! A config is read from TOML into [`Config`] (unknown fields are errors,
//! every one of them listed by its path; see [`Config::read`]), then
//! [`Config::validate`] checks it whole and reports every problem with the
//! path of the field at fault (`routes[2].plugins[0].name`). Paths in
//! the file (plugin directory, certificates, secret files) are relative to
//! the directory of the config file.
//!
//! ```toml
//! [[listeners]]
//! address = "127.0.0.1:8080"
//!
//! [plugins]
//! dir = "plugins"
//!
//! [plugin.rate-limit]
//! kv = true
//!
//! [upstreams.echo]
//! targets = ["127.0.0.1:9000"]
//!
//! [[routes]]
//! name = "api"
//! path_prefix = "/api"
//! upstream = "echo"
//!
//! [[routes.plugins]]
//! name = "api-key-auth"
//! config = { keys = { alice = "alice-key" } }
//! ```
//!
//! One module a section of the file, each owning its schema and defaults:
//! `listener` (listeners, admin), `limits` (request limits, path form),
//! `plugin`, `secret`, `upstream`, `route`, `ai`, `state`, `observe`
//! (access log, tracing), `budget`, `usage`; `names` holds the newtype
//! names, `file` the [`Config`] whole, `read` reads it, `validate` checks
//! it and `problem` says what is wrong. Every item is re-exported here, so
//! other crates name `weir_config::X`, never the module it lives in; only
//! `budget` and `usage` are public modules, named by their path.

mod ai;
pub mod budget;
mod file;
mod limits;
mod listener;
mod names;
mod observe;
mod plugin;
mod problem;
mod read;
mod route;
mod secret;
mod state;
mod upstream;
pub mod usage;
mod validate;

pub use ai::*;
pub use file::Config;
pub use limits::{HttpConfig, Limits};
pub use listener::{AdminConfig, ListenerConfig, TlsConfig};
pub use names::{PluginName, RouteName, UpstreamName};
pub use observe::*;
pub use plugin::{InstanceMode, PluginSettings, PluginsConfig, plugin_config_json, read_manifest, valid_plugin_name};
pub use problem::{ConfigError, Problem};
pub use read::{ConfigReading, MAX_UNKNOWN_FIELDS};
pub use route::{RouteConfig, RoutePlugin};
pub use secret::{SecretSetting, SecretSource};
pub use state::*;
pub use upstream::*;
pub use weir_core::files::MAX_SMALL_FILE_BYTES;
