//! The in-memory key-value store behind the `kv` capability: values with
//! optional expiry, atomic increment, compare-and-swap and token-bucket
//! take. The whole store with `state = "memory"`; with Redis, the local
//! fallback of routes whose policy is `local`.
//!
//! Keys are sharded over a fixed set of mutexes, so plugins on different
//! workers rarely contend. Expired entries are dropped when touched and by
//! a sweep that runs every few thousand writes.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::bucket::{Bucket, Outcome, State, Taken};

const SHARDS: usize = 32;
const SWEEP_EVERY_WRITES: u64 = 4096;
/// Largest value accepted, so one plugin cannot exhaust the gateway's memory.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Largest key accepted.
pub const MAX_KEY_BYTES: usize = 1024;

struct Entry {
    value: Value,
    expires: Option<Instant>,
}

/// A stored value. A token bucket is kept as its state, so taking tokens
/// neither formats nor parses it; read as bytes it is its stored form, the
/// same text the Redis store keeps.
enum Value {
    Bytes(Vec<u8>),
    Bucket(State),
}

impl Value {
    fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Value::Bytes(bytes) => bytes.as_slice().into(),
            Value::Bucket(state) => state.encode().into_bytes().into(),
        }
    }
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

/// Why a store operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The key or value is too large.
    #[error("{0}")]
    TooLarge(String),
    /// `increment` on a value that is not a decimal i64.
    #[error("value at {0:?} is not an integer")]
    NotAnInteger(String),
    /// `increment` would overflow.
    #[error("increment of {0:?} overflows")]
    Overflow(String),
    /// A token bucket that makes no sense (no capacity, a cost above it).
    #[error("{0}")]
    Invalid(String),
}

/// The store. Cheap to share behind an `Arc`.
pub struct KvStore {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    hasher: RandomState,
    writes: AtomicU64,
}

impl Default for KvStore {
    fn default() -> Self {
        KvStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            writes: AtomicU64::new(0),
        }
    }
}

fn expiry(ttl: Option<Duration>, now: Instant) -> Option<Instant> {
    ttl.and_then(|ttl| now.checked_add(ttl))
}

impl KvStore {
    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A panic while holding a shard cannot leave an entry half-written
        // (every update is a single insert), so a poisoned lock is usable.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check(key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(KvError::TooLarge(format!("key longer than {MAX_KEY_BYTES} bytes")));
        }
        if value.is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
            return Err(KvError::TooLarge(format!("value larger than {MAX_VALUE_BYTES} bytes")));
        }
        Ok(())
    }

    fn wrote(&self) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY_WRITES == SWEEP_EVERY_WRITES - 1 {
            self.sweep();
        }
    }

    /// Drop every expired entry.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, e| e.live(now));
        }
    }

    /// The live value of `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        self.shard(key)
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| e.value.bytes().into_owned())
    }

    /// Set `key`, expiring after `ttl`.
    pub fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        Self::check(key, Some(value))?;
        let now = Instant::now();
        self.shard(key).insert(
            key.to_string(),
            Entry {
                value: Value::Bytes(value.to_vec()),
                expires: expiry(ttl, now),
            },
        );
        self.wrote();
        Ok(())
    }

    /// Delete `key`; true if a live entry was removed.
    pub fn delete(&self, key: &str) -> bool {
        let now = Instant::now();
        self.shard(key).remove(key).is_some_and(|e| e.live(now))
    }

    /// Add `delta` to the integer at `key` (absent counts as 0); `ttl`
    /// applies when the entry is created.
    pub fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, KvError> {
        Self::check(key, None)?;
        let now = Instant::now();
        let mut shard = self.shard(key);
        let (current, expires) = match shard.get(key).filter(|e| e.live(now)) {
            Some(e) => {
                let bytes = e.value.bytes();
                let text = std::str::from_utf8(&bytes).map_err(|_| KvError::NotAnInteger(key.into()))?;
                (
                    text.parse::<i64>().map_err(|_| KvError::NotAnInteger(key.into()))?,
                    e.expires,
                )
            }
            None => (0, expiry(ttl, now)),
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| KvError::Overflow(key.into()))?;
        shard.insert(
            key.to_string(),
            Entry {
                value: Value::Bytes(next.to_string().into_bytes()),
                expires,
            },
        );
        drop(shard);
        self.wrote();
        Ok(next)
    }

    /// Take `cost` tokens from the token bucket at `key` (absent: full),
    /// reading, refilling and storing it under the shard's lock.
    pub fn take_tokens(&self, key: &str, bucket: Bucket, cost: u32) -> Result<Taken, KvError> {
        Self::check(key, None)?;
        bucket.check(cost).map_err(KvError::Invalid)?;
        let now = Instant::now();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut shard = self.shard(key);
        let prior = shard.get(key).filter(|e| e.live(now)).and_then(|e| match &e.value {
            Value::Bucket(state) => Some(*state),
            Value::Bytes(bytes) => State::decode(bytes),
        });
        let outcome = bucket.take(prior, now_ms, cost);
        if let Outcome::Allowed { state, ttl_ms, .. } = outcome {
            let entry = Entry {
                value: Value::Bucket(state),
                expires: expiry(Some(Duration::from_millis(ttl_ms)), now),
            };
            // The key is copied only when the bucket is new.
            match shard.get_mut(key) {
                Some(existing) => *existing = entry,
                None => {
                    shard.insert(key.to_string(), entry);
                }
            }
            drop(shard);
            self.wrote();
        }
        Ok(outcome.taken())
    }

    /// Set `key` to `value` if its live value equals `expected` (`None`:
    /// absent). True if swapped.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        Self::check(key, Some(value))?;
        let now = Instant::now();
        let mut shard = self.shard(key);
        let current = shard.get(key).filter(|e| e.live(now)).map(|e| e.value.bytes());
        if current.as_deref() != expected {
            return Ok(false);
        }
        drop(current);
        shard.insert(
            key.to_string(),
            Entry {
                value: Value::Bytes(value.to_vec()),
                expires: expiry(ttl, now),
            },
        );
        drop(shard);
        self.wrote();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_values_are_gone() {
        let kv = KvStore::default();
        kv.set("a", b"1", Some(Duration::ZERO)).unwrap();
        assert_eq!(kv.get("a"), None);
        kv.set("b", b"2", Some(Duration::from_secs(60))).unwrap();
        assert_eq!(kv.get("b").as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn increment_counts_from_zero_and_rejects_non_integers() {
        let kv = KvStore::default();
        assert_eq!(kv.increment("n", 5, None), Ok(5));
        assert_eq!(kv.increment("n", -2, None), Ok(3));
        kv.set("s", b"abc", None).unwrap();
        assert_eq!(kv.increment("s", 1, None), Err(KvError::NotAnInteger("s".into())));
        kv.set("max", i64::MAX.to_string().as_bytes(), None).unwrap();
        assert_eq!(kv.increment("max", 1, None), Err(KvError::Overflow("max".into())));
    }

    #[test]
    fn compare_and_swap_only_swaps_on_match() {
        let kv = KvStore::default();
        assert_eq!(kv.compare_and_swap("k", None, b"1", None), Ok(true));
        assert_eq!(kv.compare_and_swap("k", None, b"2", None), Ok(false));
        assert_eq!(kv.compare_and_swap("k", Some(b"1"), b"2", None), Ok(true));
        assert_eq!(kv.get("k").as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn concurrent_increments_are_not_lost() {
        let kv = std::sync::Arc::new(KvStore::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let kv = kv.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        kv.increment("c", 1, None).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(kv.get("c").as_deref(), Some(&b"8000"[..]));
    }

    #[test]
    fn concurrent_takes_admit_exactly_the_capacity() {
        let kv = std::sync::Arc::new(KvStore::default());
        // One token back per 1000 s: none comes back during the test.
        let bucket = Bucket {
            capacity: 500,
            refill_per_second: 0.001,
        };
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let kv = kv.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|_| kv.take_tokens("b", bucket, 1).unwrap().allowed)
                        .count()
                })
            })
            .collect();
        let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(allowed, 500);
        let refused = kv.take_tokens("b", bucket, 1).unwrap();
        assert!(!refused.allowed);
        assert!(refused.retry_after_secs >= 999, "{refused:?}");
        assert!(matches!(kv.take_tokens("b", bucket, 501), Err(KvError::Invalid(_))));
    }

    #[test]
    fn a_bucket_reads_as_its_stored_form_and_a_stored_form_is_a_bucket() {
        let kv = KvStore::default();
        let bucket = Bucket {
            capacity: 10,
            refill_per_second: 0.001,
        };
        assert_eq!(kv.take_tokens("b", bucket, 3).unwrap().remaining, 7);
        let stored = kv.get("b").expect("the bucket is stored");
        let state = State::decode(&stored).expect("read as its stored form");
        assert!((state.tokens - 7.0).abs() < 1e-6, "{state:?}");
        // A plugin's compare-and-swap sees the same bytes.
        assert!(kv.compare_and_swap("b", Some(&stored), b"2,0", None).unwrap());
        // Written as bytes, it is a bucket again: 2 tokens, refilled since
        // the epoch to the capacity.
        assert_eq!(kv.take_tokens("b", bucket, 1).unwrap().remaining, 9);
        kv.set("c", format!("1,{}", u64::MAX / 2).as_bytes(), None).unwrap();
        assert!(!kv.take_tokens("c", bucket, 2).unwrap().allowed);
    }

    #[test]
    fn oversized_values_are_refused() {
        let kv = KvStore::default();
        assert!(matches!(
            kv.set("big", &vec![0; MAX_VALUE_BYTES + 1], None),
            Err(KvError::TooLarge(_))
        ));
    }
}
