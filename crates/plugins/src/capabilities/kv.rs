//! The `weir:plugin/kv` interface: a key-value store shared by every
//! instance of a plugin (and, with Redis, by every gateway).
//!
//! Invariants:
//! - without the `kv` grant every call returns `error.not-granted`
//!   naming the grant (`[plugin.NAME] kv = true`);
//! - a plugin's keys live in its own namespace (its name), so plugins
//!   never see each other's keys;
//! - when the store is unavailable, the current route's policy
//!   (`OnUnavailable`) decides; a failure reaches the plugin as
//!   `error.failed`, a refused key or value as `error.invalid`.

use std::sync::Arc;

use wasmtime::Result;
use weir_config::{OnUnavailable, PluginName};
use weir_state::bucket::Bucket;
use weir_state::{SharedState, StateError};

use super::HostState;
use super::bindings::direct::weir::plugin::kv as direct;
use super::direct_io::at_once;
use super::weir::plugin::kv::{Host, TokensTaken};
use super::weir::plugin::types::Error as CapError;

impl HostState {
    /// What a `kv` call needs: the store, the plugin's name (its keys'
    /// namespace) and the current route's policy for an unavailable
    /// store; refused when the plugin lacks the `kv` grant.
    fn kv_call(&self) -> Result<KvCall, CapError> {
        if !self.identity.grants.kv {
            return Err(CapError::NotGranted(format!(
                "kv (grant it with [plugin.{}] kv = true)",
                self.identity.name
            )));
        }
        let policy = self
            .slot
            .and_then(|slot| self.identity.state_policies.get(slot).copied())
            .unwrap_or_default();
        Ok(KvCall {
            state: self.shared.state.clone(),
            owner: self.identity.name.clone(),
            policy,
        })
    }
}

/// See [`HostState::kv_call`].
struct KvCall {
    state: Arc<SharedState>,
    owner: PluginName,
    policy: OnUnavailable,
}

fn state_error(error: StateError) -> CapError {
    match error {
        StateError::Invalid(message) => CapError::Invalid(message),
        StateError::Unavailable(message) => CapError::Failed(message),
    }
}

// Each call checks the grant, then goes to the shared state (memory, or
// Redis with the route's fallback policy).
impl Host for HostState {
    async fn get(&mut self, key: String) -> Result<Result<Option<Vec<u8>>, CapError>> {
        let kv = self.kv_call();
        Ok(async {
            let kv = kv?;
            kv.state
                .get(kv.owner.as_str(), &key, kv.policy)
                .await
                .map_err(state_error)
        }
        .await)
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<Result<(), CapError>> {
        let kv = self.kv_call();
        Ok(async {
            let kv = kv?;
            kv.state
                .set(kv.owner.as_str(), &key, value, ttl_ms, kv.policy)
                .await
                .map_err(state_error)
        }
        .await)
    }

    async fn delete(&mut self, key: String) -> Result<Result<bool, CapError>> {
        let kv = self.kv_call();
        Ok(async {
            let kv = kv?;
            kv.state
                .delete(kv.owner.as_str(), &key, kv.policy)
                .await
                .map_err(state_error)
        }
        .await)
    }

    async fn increment(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> Result<Result<i64, CapError>> {
        let kv = self.kv_call();
        Ok(async {
            let kv = kv?;
            kv.state
                .increment(kv.owner.as_str(), &key, delta, ttl_ms, kv.policy)
                .await
                .map_err(state_error)
        }
        .await)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<Result<bool, CapError>> {
        let kv = self.kv_call();
        Ok(async {
            let kv = kv?;
            kv.state
                .compare_and_swap(kv.owner.as_str(), &key, expected, value, ttl_ms, kv.policy)
                .await
                .map_err(state_error)
        }
        .await)
    }

    async fn take_tokens(
        &mut self,
        key: String,
        capacity: u32,
        refill_per_second: f64,
        cost: u32,
    ) -> Result<Result<TokensTaken, CapError>> {
        let kv = self.kv_call();
        let bucket = Bucket {
            capacity,
            refill_per_second,
        };
        Ok(async {
            let kv = kv?;
            let taken = kv
                .state
                .take_tokens(kv.owner.as_str(), &key, bucket, cost, kv.policy)
                .await
                .map_err(state_error)?;
            Ok(TokensTaken {
                allowed: taken.allowed,
                remaining: taken.remaining,
                retry_after_secs: taken.retry_after_secs,
                reset_secs: taken.reset_secs,
            })
        }
        .await)
    }
}

/// `kv` for a plugin called directly: the same calls, over the in-memory
/// store, which answers at once. (With Redis, plugins that import `kv` are
/// called on a fiber; a call that had to wait here would trap.)
impl direct::Host for HostState {
    fn get(&mut self, key: String) -> Result<Result<Option<Vec<u8>>, CapError>> {
        at_once(Host::get(self, key))?
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<Result<(), CapError>> {
        at_once(Host::set(self, key, value, ttl_ms))?
    }

    fn delete(&mut self, key: String) -> Result<Result<bool, CapError>> {
        at_once(Host::delete(self, key))?
    }

    fn increment(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> Result<Result<i64, CapError>> {
        at_once(Host::increment(self, key, delta, ttl_ms))?
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<Result<bool, CapError>> {
        at_once(Host::compare_and_swap(self, key, expected, value, ttl_ms))?
    }

    fn take_tokens(
        &mut self,
        key: String,
        capacity: u32,
        refill_per_second: f64,
        cost: u32,
    ) -> Result<Result<direct::TokensTaken, CapError>> {
        let taken = at_once(Host::take_tokens(self, key, capacity, refill_per_second, cost))??;
        Ok(taken.map(|t| direct::TokensTaken {
            allowed: t.allowed,
            remaining: t.remaining,
            retry_after_secs: t.retry_after_secs,
            reset_secs: t.reset_secs,
        }))
    }
}
