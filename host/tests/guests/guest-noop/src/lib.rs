//! Used by the plugin-overhead benchmarks: takes part in on-request and
//! on-response and does nothing, so a call's cost is the boundary alone.

use weir_sdk::{Config, Plugin, export_plugin};

struct GuestNoop;

impl Plugin for GuestNoop {
    fn configure(_config: Config) -> Result<Self, String> {
        Ok(GuestNoop)
    }
}

export_plugin!(GuestNoop);
