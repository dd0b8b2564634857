//! Used by the plugin-memory-limit tests: unbounded allocation must hit the
//! linear-memory cap and fail the request, not the gateway.
//!
//! Allocates 1 MiB blocks forever in `on_request` when the path contains
//! `/alloc`; otherwise continues.

use weir_sdk::{Action, Config, Plugin, Request, export_plugin};

struct GuestAlloc;

impl Plugin for GuestAlloc {
    fn configure(_config: Config) -> Result<Self, String> {
        Ok(GuestAlloc)
    }

    fn on_request(&self, request: &Request) -> Action {
        if request.path().contains("/alloc") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Non-zero fill so every page is really touched; black_box so
                // the allocations cannot be optimized away.
                hoard.push(core::hint::black_box(vec![1u8; 1 << 20]));
                core::hint::black_box(&hoard);
            }
        }
        Action::Continue
    }
}

export_plugin!(GuestAlloc);
