//! Used by the plugin-trap tests: a trap must answer 500, and the trapped
//! instance must be thrown away while the gateway carries on.
//!
//! Panics (which traps) in `on_request` when the path contains `/trap`;
//! otherwise continues.

use weir_sdk::{Action, Config, Plugin, Request, export_plugin};

struct GuestTrap;

impl Plugin for GuestTrap {
    fn configure(_config: Config) -> Result<Self, String> {
        Ok(GuestTrap)
    }

    fn on_request(&self, request: &Request) -> Action {
        let path = request.path();
        if path.contains("/trap") {
            panic!("guest-trap: trapping on {path}");
        }
        Action::Continue
    }
}

export_plugin!(GuestTrap);
