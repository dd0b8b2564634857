//! Used by the plugin-deadline tests: an infinite loop must end as 504
//! within the deadline while other requests carry on.
//!
//! Loops forever in `on_request` when the path contains `/loop`;
//! otherwise continues and sets `x-guest: loop` on the response.

use weir_sdk::{Action, Config, Plugin, Request, Response, export_plugin};

struct GuestLoop;

impl Plugin for GuestLoop {
    fn configure(_config: Config) -> Result<Self, String> {
        Ok(GuestLoop)
    }

    fn on_request(&self, request: &Request) -> Action {
        if request.path().contains("/loop") {
            let mut spins = 0u64;
            loop {
                // black_box keeps the optimizer from proving the loop empty.
                spins = core::hint::black_box(spins.wrapping_add(1));
            }
        }
        Action::Continue
    }

    fn on_response(&self, response: &Response) {
        let _ = response.set_header("x-guest", "loop");
    }
}

export_plugin!(GuestLoop);
