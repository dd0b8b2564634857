//! The Redis store: shared state for several gateways.
//!
//! Every operation that must be atomic across gateways (increment with a
//! TTL, compare-and-swap, token-bucket take, budget reservations) runs as
//! one server-side Lua script, so no gateway ever reads, decides and writes
//! in separate steps. Scripts are sent by hash and loaded on first use.
//!
//! # Availability
//! Each operation waits at most `timeout_ms`. A connection error or a
//! timeout marks the store down; from then on operations fail at once,
//! without touching the network, so no request waits on a store known to be
//! gone. A background probe reconnects with backoff (50 ms doubling to 2 s)
//! and marks the store up when Redis answers again. What a request does
//! meanwhile is its route's policy (see [`super::SharedState`]).
//!
//! # TLS and login
//! A `rediss://` store speaks TLS, trusting `[state] ca` or the system's
//! roots (see [`weir_core::tls`]); the roots and the password are read once,
//! when the store starts, and every reconnection reuses them. The password
//! (`password_env`, `password_file`, or the URL's) is sent with `HELLO` /
//! `AUTH` on each connection and appears in no message: the URL is kept
//! only in its redacted form.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::bucket::{Bucket, Taken};
use weir_config::{StateConfig, redacted_url};

/// First wait between reconnection attempts; it doubles up to [`PROBE_MAX`].
const PROBE_START: Duration = Duration::from_millis(50);
/// Longest wait between reconnection attempts.
const PROBE_MAX: Duration = Duration::from_secs(2);
/// How long a stored token bucket outlives the moment it would be full.
const BUCKET_TTL_MARGIN_MS: u64 = 1_000;

/// Why an operation on Redis failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteError {
    /// Redis cannot be reached (down, timed out, or still reconnecting).
    Unavailable(String),
    /// Redis answered with an error (a wrong type, a script error).
    Refused(String),
}

/// What the store was last seen doing.
#[derive(Debug, Clone, Default)]
struct Status {
    /// Why it is down (the last error), while it is.
    error: Option<String>,
    /// When it last went up or down, Unix ms.
    since_ms: i64,
}

/// A Redis server shared by several gateways.
pub struct RedisStore {
    /// The URL, password hidden.
    url: String,
    prefix: String,
    timeout: Duration,
    client: redis::Client,
    culprits: Culprits,
    connection: Mutex<Option<ConnectionManager>>,
    up: AtomicBool,
    probing: AtomicBool,
    status: Mutex<Status>,
    /// Operations that found the store unavailable.
    unavailable_ops: AtomicU64,
    /// Times the store went down.
    outages: AtomicU64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

/// The store's state, for metrics and the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RedisStatus {
    /// The URL, password hidden.
    pub url: String,
    /// Whether operations go to Redis now.
    pub up: bool,
    /// Why it is down, while it is.
    pub error: Option<String>,
    /// When it last went up or down, Unix ms.
    pub since_ms: i64,
    /// Operations that found it unavailable, since start.
    pub unavailable_ops: u64,
    /// Times it went down, since start.
    pub outages: u64,
}

impl RedisStore {
    /// A store for `config`, connected if Redis answers within the
    /// timeout. A gateway that starts while Redis is down still starts:
    /// the store reconnects in the background and routes follow their
    /// policy until then.
    pub async fn start(config: &StateConfig) -> anyhow::Result<Arc<RedisStore>> {
        let url = redacted_url(&config.store);
        let client = client(config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let store = Arc::new(RedisStore {
            url,
            prefix: config.key_prefix.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            client,
            culprits: Culprits::of(config),
            connection: Mutex::new(None),
            up: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            status: Mutex::new(Status {
                error: Some("not connected yet".into()),
                since_ms: weir_core::clock::now_ms(),
            }),
            unavailable_ops: AtomicU64::new(0),
            outages: AtomicU64::new(0),
        });
        match store.connect().await {
            Ok(()) => {
                store.up.store(true, Ordering::Release);
                store.set_status(None);
                tracing::info!("shared state in {}", store.url);
            }
            Err(e) => {
                tracing::warn!(
                    "shared state store {} is unavailable, retrying in the background: {e}",
                    store.url
                );
                // Down from the start is an outage too, counted like one
                // that begins later.
                store.outages.fetch_add(1, Ordering::Relaxed);
                store.set_status(Some(e));
                store.probe();
            }
        }
        Ok(store)
    }

    /// The URL, password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `prefix` + `parts` joined by `:` — every key the gateway writes.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                key.push(':');
            }
            key.push_str(part);
        }
        key
    }

    /// Whether operations go to Redis now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The store's state now.
    pub fn status(&self) -> RedisStatus {
        let status = self.status.lock().unwrap_or_else(PoisonError::into_inner).clone();
        RedisStatus {
            url: self.url.clone(),
            up: self.is_up(),
            error: status.error,
            since_ms: status.since_ms,
            unavailable_ops: self.unavailable_ops.load(Ordering::Relaxed),
            outages: self.outages.load(Ordering::Relaxed),
        }
    }

    fn set_status(&self, error: Option<String>) {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = Status {
            error,
            since_ms: weir_core::clock::now_ms(),
        };
    }

    /// Open a new connection and check it answers.
    async fn connect(&self) -> Result<(), String> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(PROBE_MAX);
        let connecting = ConnectionManager::new_with_config(self.client.clone(), config);
        // The manager retries inside; bound the whole attempt too.
        let mut manager = tokio::time::timeout(self.timeout * 4, connecting)
            .await
            .map_err(|_| format!("no connection within {} ms", (self.timeout * 4).as_millis()))?
            .map_err(|e| self.culprits.explain(&e))?;
        let _: String = tokio::time::timeout(self.timeout, redis::cmd("PING").query_async(&mut manager))
            .await
            .map_err(|_| format!("no answer within {} ms", self.timeout.as_millis()))?
            .map_err(|e| self.culprits.explain(&e))?;
        *self.connection.lock().unwrap_or_else(PoisonError::into_inner) = Some(manager);
        Ok(())
    }

    /// Mark the store down because of `error` and start reconnecting.
    fn went_down(self: &Arc<Self>, error: String) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.outages.fetch_add(1, Ordering::Relaxed);
            tracing::error!("shared state store {} is unavailable: {error}", self.url);
            self.set_status(Some(error));
        }
        self.probe();
    }

    /// Reconnect in the background until Redis answers (one probe at a
    /// time; it ends by itself when the store is dropped).
    fn probe(self: &Arc<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.probing.store(false, Ordering::Release);
            return;
        };
        let store: Weak<RedisStore> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut delay = PROBE_START;
            loop {
                tokio::time::sleep(delay).await;
                let Some(store) = store.upgrade() else { return };
                // A fresh connection each time: nothing of the broken one
                // is trusted.
                store.connection.lock().unwrap_or_else(PoisonError::into_inner).take();
                match store.connect().await {
                    Ok(()) => {
                        store.probing.store(false, Ordering::Release);
                        store.up.store(true, Ordering::Release);
                        store.set_status(None);
                        tracing::info!("shared state store {} is back", store.url);
                        return;
                    }
                    Err(e) => {
                        store.set_status(Some(e));
                        delay = (delay * 2).min(PROBE_MAX);
                    }
                }
            }
        });
    }

    /// Why operations fail now, for the error they return.
    fn unavailable(&self) -> RemoteError {
        self.unavailable_ops.fetch_add(1, Ordering::Relaxed);
        let error = self.status.lock().unwrap_or_else(PoisonError::into_inner).error.clone();
        RemoteError::Unavailable(format!(
            "state store {} is unavailable: {}",
            self.url,
            error.as_deref().unwrap_or("reconnecting")
        ))
    }

    /// Run `op` on the connection within the timeout; a connection error
    /// or the timeout marks the store down.
    pub async fn run<T, F, Fut>(self: &Arc<Self>, op: F) -> Result<T, RemoteError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let connection = if self.is_up() {
            self.connection.lock().unwrap_or_else(PoisonError::into_inner).clone()
        } else {
            None
        };
        let Some(connection) = connection else {
            return Err(self.unavailable());
        };
        match tokio::time::timeout(self.timeout, op(connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if is_unavailability(&e) => {
                self.went_down(e.to_string());
                Err(self.unavailable())
            }
            Ok(Err(e)) => Err(RemoteError::Refused(e.to_string())),
            Err(_) => {
                self.went_down(format!("no answer within {} ms", self.timeout.as_millis()));
                Err(self.unavailable())
            }
        }
    }

    /// The value of `key`.
    pub async fn get(self: &Arc<Self>, key: String) -> Result<Option<Vec<u8>>, RemoteError> {
        self.run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
            .await
    }

    /// Set `key`, expiring after `ttl_ms` if given.
    pub async fn set(self: &Arc<Self>, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), RemoteError> {
        self.run(|mut c| async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value);
            if let Some(ttl) = ttl_ms {
                cmd.arg("PX").arg(ttl.max(1));
            }
            cmd.query_async(&mut c).await
        })
        .await
    }

    /// Delete `key`; true if it existed.
    pub async fn delete(self: &Arc<Self>, key: String) -> Result<bool, RemoteError> {
        self.run(|mut c| async move {
            let removed: u64 = redis::cmd("DEL").arg(key).query_async(&mut c).await?;
            Ok(removed > 0)
        })
        .await
    }

    /// Add `delta` to the integer at `key`; `ttl_ms` applies when the key
    /// is created.
    pub async fn increment(self: &Arc<Self>, key: String, delta: i64, ttl_ms: Option<u64>) -> Result<i64, RemoteError> {
        self.run(|mut c| async move {
            INCREMENT
                .key(key)
                .arg(delta)
                .arg(ttl_ms.unwrap_or(0))
                .invoke_async(&mut c)
                .await
        })
        .await
    }

    /// Set `key` to `value` if its value is `expected` (`None`: absent).
    pub async fn compare_and_swap(
        self: &Arc<Self>,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<bool, RemoteError> {
        self.run(|mut c| async move {
            let swapped: i64 = COMPARE_AND_SWAP
                .key(key)
                .arg(if expected.is_some() { "1" } else { "0" })
                .arg(expected.unwrap_or_default())
                .arg(value)
                .arg(ttl_ms.unwrap_or(0))
                .invoke_async(&mut c)
                .await?;
            Ok(swapped == 1)
        })
        .await
    }

    /// Take `cost` tokens from the bucket at `key`, on Redis's clock.
    pub async fn take_tokens(self: &Arc<Self>, key: String, bucket: Bucket, cost: u32) -> Result<Taken, RemoteError> {
        self.run(|mut c| async move {
            let (allowed, remaining, retry_after_secs, reset_secs): (i64, u64, u64, u64) = TAKE_TOKENS
                .key(key)
                .arg(bucket.capacity)
                .arg(bucket.refill_per_second)
                .arg(cost)
                .arg(BUCKET_TTL_MARGIN_MS)
                .invoke_async(&mut c)
                .await?;
            Ok(Taken {
                allowed: allowed == 1,
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                retry_after_secs,
                reset_secs,
            })
        })
        .await
    }
}

/// The client for `config`: the URL, the credentials from `username` and
/// `password_env` / `password_file`, and for `rediss://` the trusted roots.
/// The error names the setting at fault, never the password.
fn client(config: &StateConfig) -> Result<redis::Client, String> {
    use redis::IntoConnectionInfo;
    let url = redacted_url(&config.store);
    let mut info = config
        .store
        .as_str()
        .into_connection_info()
        .map_err(|e| format!("state.store: {url}: {}", describe(&e)))?;
    let password = config.password()?;
    if config.username.is_some() || password.is_some() {
        let mut settings = info.redis_settings().clone();
        if let Some(username) = &config.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = password {
            settings = settings.set_password(password);
        }
        info = info.set_redis_settings(settings);
    }
    if !config.is_tls() {
        return redis::Client::open(info).map_err(|e| format!("state.store: {url}: {}", describe(&e)));
    }
    let anchors = weir_core::tls::anchors(config.ca.as_deref()).map_err(|e| format!("state.ca: {e}"))?;
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(weir_core::tls::pem(&anchors)),
    };
    redis::Client::build_with_tls(info, certificates).map_err(|e| format!("state.store: {url}: {}", describe(&e)))
}

/// What a Redis error says, for a person. Errors carry no URL or password;
/// the detail says what the server or TLS answered.
pub fn describe(error: &redis::RedisError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// Which settings a failed connection points at, so that its message
/// names them: the password's source and the trusted roots.
#[derive(Debug, Clone)]
struct Culprits {
    /// `state.password_env`, `state.password_file`, the URL, or none.
    password: &'static str,
    /// `state.ca`, the system's roots, or none (plain `redis://`).
    roots: Option<&'static str>,
}

impl Culprits {
    fn of(config: &StateConfig) -> Culprits {
        let password = if config.password_env.is_some() {
            "state.password_env"
        } else if config.password_file.is_some() {
            "state.password_file"
        } else if url::Url::parse(&config.store).is_ok_and(|url| url.password().is_some()) {
            "the password in state.store"
        } else {
            "no password (set state.password_env or state.password_file)"
        };
        let roots = match (config.is_tls(), &config.ca) {
            (false, _) => None,
            (true, Some(_)) => Some("the CA in state.ca"),
            (true, None) => Some("the system's roots (set state.ca for a private CA)"),
        };
        Culprits { password, roots }
    }

    /// `error`'s text, with the setting it points at.
    fn explain(&self, error: &redis::RedisError) -> String {
        let text = describe(error);
        let upper = text.to_ascii_uppercase();
        if matches!(error.kind(), redis::ErrorKind::AuthenticationFailed)
            || upper.contains("WRONGPASS")
            || upper.contains("NOAUTH")
            || upper.contains("NOPERM")
        {
            return format!("{text} (login refused: check state.username and {})", self.password);
        }
        if let Some(roots) = self.roots
            && (text.contains("certificate") || text.contains("Certificate"))
        {
            return format!("{text} (the server's certificate is not trusted by {roots})");
        }
        text
    }
}

/// Whether `error` means Redis cannot be reached (rather than that it
/// refused the operation).
fn is_unavailability(error: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        )
}

/// `INCRBY`, setting the TTL (ARGV[2] ms, 0: none) only on a new key.
static INCREMENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local existed = redis.call('EXISTS', KEYS[1])
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
",
    )
});

/// Set KEYS[1] to ARGV[3] (TTL ARGV[4] ms, 0: none) if its value is
/// ARGV[2] (ARGV[1] = '1') or it is absent (ARGV[1] = '0'). 1 if swapped.
static COMPARE_AND_SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
local matches
if ARGV[1] == '0' then
  matches = (current == false)
else
  matches = (current == ARGV[2])
end
if not matches then
  return 0
end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[3])
end
return 1
",
    )
});

/// The arithmetic of `bucket.rs`, on Redis's clock. ARGV: capacity,
/// refill per second, cost, TTL margin ms. Returns {allowed (1/0), whole
/// tokens left, retry-after s, reset s}; the stored form is
/// `tokens,updated_ms` as in `bucket::State`.
static TAKE_TOKENS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2]) / 1000
local cost = tonumber(ARGV[3])
local margin = tonumber(ARGV[4])
local eps = 1e-9
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local tokens, updated = capacity, now
local stored = redis.call('GET', KEYS[1])
if stored then
  local sep = string.find(stored, ',', 1, true)
  if sep then
    local t = tonumber(string.sub(stored, 1, sep - 1))
    local u = tonumber(string.sub(stored, sep + 1))
    if t and u and t == t and t >= 0 and t < math.huge then
      local elapsed = now - u
      if elapsed < 0 then elapsed = 0 end
      tokens = math.min(t + elapsed * per_ms, capacity)
      if u > now then updated = u end
    end
  end
end
local function ceil_secs(ms)
  local s = math.ceil(ms / 1000 - eps)
  if s < 0 then s = 0 end
  return s
end
if tokens + eps >= cost then
  local left = tokens - cost
  if left < 0 then left = 0 end
  local full_in = (capacity - left) / per_ms
  redis.call('SET', KEYS[1], string.format('%.17g,%d', left, updated), 'PX', math.ceil(full_in) + margin)
  return {1, math.floor(left + eps), 0, ceil_secs(full_in)}
end
local retry = ceil_secs((cost - tokens) / per_ms)
if retry < 1 then retry = 1 end
return {0, 0, retry, ceil_secs((capacity - tokens) / per_ms)}
",
    )
});
