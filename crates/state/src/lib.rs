//! Shared state: the plugins' `kv` store (and so the rate limits built on
//! it), AI budgets and the AI answer cache.
//!
//! With `state = "memory"` (the default) everything lives in this process.
//! With `state = "redis://…"` it lives in Redis so several gateways count
//! together, and the in-memory store stays as the local fallback: while
//! Redis is unavailable a route whose policy is `local` carries on with
//! this gateway's own counts, and one whose policy is `fail-closed` gets
//! an error naming the cause (see [`weir_config::OnUnavailable`]).

pub mod bucket;
pub mod memory;
pub mod redis;

use std::sync::Arc;

use bucket::{Bucket, Taken};
use memory::{KvError, KvStore};
use redis::{RedisStatus, RedisStore, RemoteError};
use weir_config::{OnUnavailable, StateConfig};

/// Why a shared-state operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The operation itself was refused (a key too long, a value that is
    /// not an integer, …).
    #[error("{0}")]
    Invalid(String),
    /// The shared store is unavailable and the route fails closed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<KvError> for StateError {
    fn from(error: KvError) -> Self {
        StateError::Invalid(error.to_string())
    }
}

/// The gateway's shared state.
pub struct SharedState {
    /// The whole store in memory mode; the local fallback with Redis.
    local: KvStore,
    redis: Option<Arc<RedisStore>>,
    config: StateConfig,
}

impl SharedState {
    /// State kept in this process only.
    pub fn memory() -> SharedState {
        SharedState {
            local: KvStore::default(),
            redis: None,
            config: StateConfig::default(),
        }
    }

    /// The state `config` asks for, connecting to Redis if it names it
    /// (without waiting past the store's timeout when Redis is down).
    pub async fn start(config: &StateConfig) -> anyhow::Result<SharedState> {
        let redis = if config.is_redis() {
            Some(RedisStore::start(config).await?)
        } else {
            None
        };
        Ok(SharedState {
            local: KvStore::default(),
            redis,
            config: config.clone(),
        })
    }

    /// The settings it was started with (a change takes a restart).
    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    /// The Redis store, when there is one.
    pub fn redis(&self) -> Option<&Arc<RedisStore>> {
        self.redis.as_ref()
    }

    /// The Redis store's state, when there is one.
    pub fn status(&self) -> Option<RedisStatus> {
        self.redis.as_ref().map(|r| r.status())
    }

    /// The in-memory store.
    pub fn local(&self) -> &KvStore {
        &self.local
    }

    /// Run `remote` on Redis, or `local` on the in-memory store: without
    /// Redis, or while it is unavailable under the `local` policy.
    async fn either<T, R, Fut>(
        &self,
        policy: OnUnavailable,
        remote: R,
        local: impl FnOnce(&KvStore) -> Result<T, KvError>,
    ) -> Result<T, StateError>
    where
        R: FnOnce(Arc<RedisStore>) -> Fut,
        Fut: Future<Output = Result<T, RemoteError>>,
    {
        let Some(redis) = &self.redis else {
            return Ok(local(&self.local)?);
        };
        match remote(redis.clone()).await {
            Ok(value) => Ok(value),
            Err(RemoteError::Refused(message)) => Err(StateError::Invalid(message)),
            Err(RemoteError::Unavailable(message)) => match policy {
                OnUnavailable::Local => Ok(local(&self.local)?),
                OnUnavailable::FailClosed => Err(StateError::Unavailable(message)),
            },
        }
    }

    /// The key of plugin `owner`'s `key`, in memory and in Redis.
    fn keys(&self, owner: &str, key: &str) -> Result<(String, String), StateError> {
        if key.len() > memory::MAX_KEY_BYTES {
            return Err(KvError::TooLarge(format!("key longer than {} bytes", memory::MAX_KEY_BYTES)).into());
        }
        let local = format!("{owner}\u{0}{key}");
        let remote = self
            .redis
            .as_ref()
            .map_or_else(String::new, |r| r.key(&["kv", owner, key]));
        Ok((local, remote))
    }

    /// The value of `owner`'s `key`.
    pub async fn get(&self, owner: &str, key: &str, policy: OnUnavailable) -> Result<Option<Vec<u8>>, StateError> {
        let (local, remote) = self.keys(owner, key)?;
        self.either(policy, |r| async move { r.get(remote).await }, |m| Ok(m.get(&local)))
            .await
    }

    /// Set `owner`'s `key`, expiring after `ttl_ms`.
    pub async fn set(
        &self,
        owner: &str,
        key: &str,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
        policy: OnUnavailable,
    ) -> Result<(), StateError> {
        let (local, remote) = self.keys(owner, key)?;
        if value.len() > memory::MAX_VALUE_BYTES {
            return Err(KvError::TooLarge(format!("value larger than {} bytes", memory::MAX_VALUE_BYTES)).into());
        }
        let ttl = ttl_ms.map(std::time::Duration::from_millis);
        if self.redis.is_none() {
            return Ok(self.local.set(&local, &value, ttl)?);
        }
        let kept = value.clone();
        self.either(
            policy,
            |r| async move { r.set(remote, value, ttl_ms).await },
            |m| m.set(&local, &kept, ttl),
        )
        .await
    }

    /// Delete `owner`'s `key`; true if it existed.
    pub async fn delete(&self, owner: &str, key: &str, policy: OnUnavailable) -> Result<bool, StateError> {
        let (local, remote) = self.keys(owner, key)?;
        self.either(
            policy,
            |r| async move { r.delete(remote).await },
            |m| Ok(m.delete(&local)),
        )
        .await
    }

    /// Add `delta` to the integer at `owner`'s `key`.
    pub async fn increment(
        &self,
        owner: &str,
        key: &str,
        delta: i64,
        ttl_ms: Option<u64>,
        policy: OnUnavailable,
    ) -> Result<i64, StateError> {
        let (local, remote) = self.keys(owner, key)?;
        let ttl = ttl_ms.map(std::time::Duration::from_millis);
        let result = self
            .either(
                policy,
                |r| async move { r.increment(remote, delta, ttl_ms).await },
                |m| m.increment(&local, delta, ttl),
            )
            .await;
        // Redis's words for the two refusals, in the memory store's.
        result.map_err(|e| match e {
            StateError::Invalid(message) if message.contains("overflow") => KvError::Overflow(key.into()).into(),
            StateError::Invalid(message) if message.contains("not an integer") => {
                KvError::NotAnInteger(key.into()).into()
            }
            other => other,
        })
    }

    /// Set `owner`'s `key` to `value` if its value is `expected`.
    pub async fn compare_and_swap(
        &self,
        owner: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
        policy: OnUnavailable,
    ) -> Result<bool, StateError> {
        let (local, remote) = self.keys(owner, key)?;
        if value.len() > memory::MAX_VALUE_BYTES {
            return Err(KvError::TooLarge(format!("value larger than {} bytes", memory::MAX_VALUE_BYTES)).into());
        }
        let ttl = ttl_ms.map(std::time::Duration::from_millis);
        if self.redis.is_none() {
            return Ok(self.local.compare_and_swap(&local, expected.as_deref(), &value, ttl)?);
        }
        let (kept_expected, kept_value) = (expected.clone(), value.clone());
        self.either(
            policy,
            |r| async move { r.compare_and_swap(remote, expected, value, ttl_ms).await },
            |m| m.compare_and_swap(&local, kept_expected.as_deref(), &kept_value, ttl),
        )
        .await
    }

    /// Take `cost` tokens from `owner`'s token bucket at `key`.
    pub async fn take_tokens(
        &self,
        owner: &str,
        key: &str,
        bucket: Bucket,
        cost: u32,
        policy: OnUnavailable,
    ) -> Result<Taken, StateError> {
        let (local, remote) = self.keys(owner, key)?;
        bucket.check(cost).map_err(StateError::Invalid)?;
        self.either(
            policy,
            |r| async move { r.take_tokens(remote, bucket, cost).await },
            |m| m.take_tokens(&local, bucket, cost),
        )
        .await
    }
}
