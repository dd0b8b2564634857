//! The memory cap on one plugin instance: a [`ResourceLimiter`] refusing
//! linear memory past the plugin's `memory_mb`, and remembering that it
//! did, so the trap that follows is reported as a memory fault rather
//! than a plain trap. Tables are bounded too (a million elements), so a
//! guest cannot grow the host's memory through them either.

use wasmtime::{ResourceLimiter, Result};

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
