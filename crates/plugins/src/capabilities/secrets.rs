//! The `weir:plugin/secrets` interface: a plugin reads a secret by name
//! from the gateway's `[secrets]`, resolved once per config load.
//!
//! Invariants: a secret not in the plugin's `secrets` grant returns
//! `error.not-granted` naming it and the grant to add, whether or not it
//! is defined (so an ungranted plugin cannot even learn which secrets
//! exist); a granted secret that is not defined is `error.failed`.

use wasmtime::Result;

use super::HostState;
use super::weir::plugin::secrets::Host;
use super::weir::plugin::types::Error as CapError;

impl Host for HostState {
    fn get(&mut self, name: String) -> Result<Result<String, CapError>> {
        if !self.identity.grants.secrets.contains(&name) {
            return Ok(Err(CapError::NotGranted(format!(
                "secret {name:?} (grant it with [plugin.{}] secrets = [\"{name}\"])",
                self.identity.name
            ))));
        }
        Ok(self
            .shared
            .secrets
            .get(&name)
            .cloned()
            .ok_or_else(|| CapError::Failed(format!("secret {name:?} is not defined"))))
    }
}
