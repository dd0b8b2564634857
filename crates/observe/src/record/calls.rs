//! Plugin calls tallied away from the request's own flow: a response's
//! chunk-phase calls while its body streams, and an AI route's calls to its
//! provider shims, which go on while the answer streams. The request's
//! record moves them into its plugin calls when it is reported.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Phase, PluginCall, PluginOutcome};
use weir_config::PluginName;

/// A request's chunk-phase plugin calls, shared with the streaming body.
pub type ChunkCalls = Arc<Mutex<Vec<PluginCall>>>;

/// An AI route's calls to its provider shims for one request, which go on
/// while the answer streams: each adds to its plugin and phase's entry
/// (translation of the request, of the answer or error, of the stream's
/// pieces), so a shim's calls count as any plugin's do.
#[derive(Clone)]
pub struct ShimCalls {
    calls: ChunkCalls,
    request_started: Instant,
}

impl ShimCalls {
    /// A tally kept in `calls`, for a request that arrived at `request_started`.
    pub(super) fn new(calls: ChunkCalls, request_started: Instant) -> ShimCalls {
        ShimCalls { calls, request_started }
    }

    /// Add a call that started at `started`; `fault` if it faulted.
    pub fn add(&self, plugin: &PluginName, phase: Phase, started: Instant, fault: Option<&'static str>) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let index = match calls.iter().position(|c| c.phase == phase && c.plugin == *plugin) {
            Some(index) => index,
            None => {
                calls.push(PluginCall {
                    plugin: plugin.clone(),
                    phase,
                    offset: Duration::ZERO,
                    duration: Duration::ZERO,
                    calls: 0,
                    outcome: PluginOutcome::Continue,
                });
                calls.len() - 1
            }
        };
        let fault = fault.map(|kind| PluginOutcome::fault(kind, false));
        calls[index].count(started, self.request_started, fault);
    }
}
