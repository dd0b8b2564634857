//! The `weir:plugin/log` interface: a plugin's log lines go to the
//! gateway's log under the target `weir::plugin`, tagged with the plugin
//! and the route of the current call. Needs no grant. One line is cut at
//! 4096 bytes (on a character boundary), so a plugin cannot make a line
//! cost more than that.

use wasmtime::Result;

use super::HostState;
use super::weir::plugin::log::{Host, Level};

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> Result<()> {
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
