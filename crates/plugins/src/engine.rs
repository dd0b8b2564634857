//! The one wasmtime [`Engine`] of the process, its epoch ticker, and the
//! on-disk cache of compiled plugins.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. Plugin deadlines are checked, and busy
/// plugins yield to the async runtime, once per tick. (A 1 ms tick cost the
/// proxy about 3% of its throughput in context switches.)
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The largest linear memory any plugin may be granted.
pub const MAX_PLUGIN_MEMORY: usize = 4 << 30;

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();

/// The process-wide engine: pooling allocator, epoch interruption, async
/// support. Created on first use, with its epoch ticker thread.
pub fn shared_engine() -> Result<Engine, String> {
    ENGINE
        .get_or_init(|| {
            let engine = build_engine().map_err(|e| format!("cannot create the wasm engine: {e:#}"))?;
            let ticker = engine.weak();
            std::thread::Builder::new()
                .name("weir-epoch".into())
                .spawn(move || {
                    while let Some(engine) = ticker.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })
                .map_err(|e| format!("cannot start the epoch ticker: {e}"))?;
            Ok(engine)
        })
        .clone()
}

fn build_engine() -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    // Virtual reservations only: slots are cheap until used. The limits are
    // sized for plugins in every supported language (Python and JavaScript
    // components carry several core instances, memories and large tables).
    pool.total_component_instances(2_000)
        .total_core_instances(8_000)
        .total_memories(4_000)
        .total_tables(8_000)
        .total_stacks(2_000)
        .max_component_instance_size(1 << 20)
        .max_core_instances_per_component(64)
        .max_memories_per_component(16)
        .max_tables_per_component(32)
        .table_elements(100_000)
        .max_memory_size(MAX_PLUGIN_MEMORY);
    // Linear memory is returned to the kernel when an instance is dropped:
    // keeping it resident (`linear_memory_keep_resident`) was measured to
    // cost more in zeroing than it saves in page faults. Tables are small,
    // and zeroing them beats a madvise call. Decommits are batched, one
    // flush per 16 dropped instances. Together these took a fresh-instance
    // request from 32.9 to 26.4 µs in the criterion pipeline bench.
    pool.table_keep_resident(64 << 10).decommit_batch_size(16);
    // A freed slot keeps the memory image of the plugin version it last
    // held (an open mapping, and a file descriptor for code loaded from
    // the compile cache) so that version instantiates faster next time.
    // After many plugin reloads those would be old versions: keep few.
    pool.max_unused_warm_slots(32);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// What the process's allocator does around compiles, set once by the
/// binary that owns the allocator. Compiling a plugin allocates far more
/// than serving does; an allocator tuned to keep freed memory for reuse
/// would hold on to all of it.
pub trait CompileMemory: Send + Sync {
    /// A compile starts while none was running.
    fn begin(&self);
    /// The last running compile ended: hand back what the compiles freed.
    fn end(&self);
}

static COMPILE_MEMORY: OnceLock<Box<dyn CompileMemory>> = OnceLock::new();
static COMPILING: AtomicUsize = AtomicUsize::new(0);

/// Install the allocator's [`CompileMemory`]; only the first call counts.
pub fn set_compile_memory(hook: Box<dyn CompileMemory>) {
    let _ = COMPILE_MEMORY.set(hook);
}

/// A compile in progress, for [`CompileMemory`].
struct Compiling;

impl Compiling {
    fn start() -> Compiling {
        if COMPILING.fetch_add(1, Ordering::AcqRel) == 0
            && let Some(hook) = COMPILE_MEMORY.get()
        {
            hook.begin();
        }
        Compiling
    }
}

impl Drop for Compiling {
    fn drop(&mut self) {
        if COMPILING.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(hook) = COMPILE_MEMORY.get()
        {
            hook.end();
        }
    }
}

/// Compiled plugins on disk, keyed by the file's content hash and the
/// engine's settings, so a restart or a reload of a file seen before skips
/// compilation.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    /// A cache in `dir`, or no cache.
    pub fn new(dir: Option<PathBuf>) -> Self {
        CompileCache { dir }
    }

    /// The default cache directory: `$XDG_CACHE_HOME/weir` or `~/.cache/weir`.
    pub fn default_dir() -> Option<PathBuf> {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("weir"))
    }

    /// Compile `bytes`, or load the compiled form from the cache. Returns the
    /// component and whether it came from the cache.
    // Deserializing compiled code is unsafe: see the SAFETY note below.
    #[allow(unsafe_code)]
    pub fn component(&self, engine: &Engine, bytes: &[u8], content_hash: &str) -> wasmtime::Result<(Component, bool)> {
        let _compiling = Compiling::start();
        let Some(path) = self.entry_path(engine, content_hash) else {
            return Ok((Component::new(engine, bytes)?, false));
        };
        if path.is_file() {
            // SAFETY: the file is one this cache wrote with
            // `Component::serialize` for an engine with the same
            // compatibility hash (part of the file name); wasmtime checks
            // the header and refuses anything else.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => tracing::warn!(file = %path.display(), "ignoring unusable compile cache entry: {e:#}"),
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = store_atomically(&path, &component.serialize()?) {
            tracing::warn!(file = %path.display(), "cannot write compile cache entry: {e}");
        }
        Ok((component, false))
    }

    fn entry_path(&self, engine: &Engine, content_hash: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Some(dir.join(format!("{content_hash}-{:016x}.cwasm", hasher.finish())))
    }
}

fn store_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Hex SHA-256 of a plugin file: its version in logs and the admin API.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
