//! The `weir:plugin/outbound-http` interface: a plugin's HTTP calls, sent
//! by the gateway's [`OutboundClient`] (`client.rs`),
//! which checks the plugin's `outbound_hosts` grant (a host not granted
//! is `error.not-granted` naming it) and bounds each call by the grant's
//! timeout.
//!
//! Here: at most [`MAX_CALLS_PER_PLUGIN_CALL`] calls in one plugin call,
//! so one request cannot fan out; waiting on the network is not charged
//! to the plugin's deadline (see [`HostState::ticks_left`]).

use wasmtime::Result;

use super::HostState;
use super::weir::plugin::outbound_http::{Host, IncomingResponse, OutgoingRequest};
use super::weir::plugin::types::Error as CapError;

mod client;

pub use client::{MAX_CALLS_PER_PLUGIN_CALL, MAX_RESPONSE_BYTES, OutboundClient};

impl Host for HostState {
    async fn send(&mut self, request: OutgoingRequest) -> Result<Result<IncomingResponse, CapError>> {
        // Waiting on the network does not use up the plugin's deadline
        // (see `ticks_left`); the grant's timeout bounds each call, and the
        // number of calls is capped so one request cannot fan out.
        self.outbound_calls += 1;
        if self.outbound_calls > MAX_CALLS_PER_PLUGIN_CALL {
            return Ok(Err(CapError::Failed(format!(
                "more than {} outbound calls in one plugin call",
                MAX_CALLS_PER_PLUGIN_CALL
            ))));
        }
        Ok(self
            .shared
            .outbound
            .send(&self.identity.name, &self.identity.grants, request)
            .await)
    }
}
