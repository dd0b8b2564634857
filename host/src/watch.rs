//! Noticing changes: the plugin directory, the config file and the TLS
//! listeners' certificate and key files are watched (debounced, since
//! editors and `cp` write a file in several steps), and SIGHUP reloads the
//! config. Each change is handed to the [`Gateway`], or for certificates
//! to the listener's [`ReloadableCert`].
//!
//! A change is recognised by what a file holds, not by the name an event
//! carries. That matters for files reached through symlinks, as in a
//! Kubernetes ConfigMap or Secret volume: there `weir.toml` is a link to
//! `..data/weir.toml`, `..data` a link to a timestamped directory, and an
//! update writes a new timestamped directory and renames a new `..data`
//! over the old one — no event ever names `weir.toml`. So after any change
//! in a watched directory:
//!
//! - the config file and each certificate and key are read again and
//!   compared with what was last seen (they are small);
//! - the plugin directory is listed and each `NAME.wasm` and `NAME.toml`
//!   compared by where it leads, its size and modification time, besides
//!   the plugins that events name directly. The gateway compares content
//!   before swapping anything in, so a plugin that merely moved is cheap.
//!
//! Each watched file is watched in the directory holding its name and in
//! the one holding its content (after symlinks), and the second is
//! re-resolved after every change, since the old one may be gone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use weir_config::{PluginName, valid_plugin_name};
use weir_gateway::Gateway;
use weir_proxy::listener::ReloadableCert;

/// How long a file must be quiet before a change to it is acted on.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// What a batch of file events asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Changes {
    config: bool,
    certs: bool,
    plugins: BTreeSet<PluginName>,
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The plugin a file in the plugin directory belongs to: `NAME.wasm` and
/// its manifest `NAME.toml` are plugin `NAME`.
fn plugin_of(file_name: &str) -> Option<PluginName> {
    let stem = file_name
        .strip_suffix(".wasm")
        .or_else(|| file_name.strip_suffix(".toml"))?;
    valid_plugin_name(stem).then(|| PluginName(stem.into()))
}

/// The plugins that changed paths name directly.
fn named_plugins(paths: &[PathBuf], plugin_dir: &Path) -> BTreeSet<PluginName> {
    paths
        .iter()
        .filter(|path| path.parent().map(canonical).as_deref() == Some(plugin_dir))
        .filter_map(|path| plugin_of(path.file_name()?.to_str()?))
        .collect()
}

/// Whether an event can mean new content. Reads (access events, which the
/// gateway's own reloads and the comparisons here cause) are not changes.
fn is_change(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
    )
}

/// A small file watched for new content: the config, a certificate, a key.
struct WatchedFile {
    /// The path as configured, made absolute but not resolved.
    path: PathBuf,
    /// SHA-256 of the content last seen; `None` while it cannot be read.
    seen: Option<[u8; 32]>,
}

impl WatchedFile {
    fn new(path: &Path) -> WatchedFile {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let seen = content_hash(&path);
        WatchedFile { path, seen }
    }

    /// Where events can say this file changed: the directory holding its
    /// name and the one holding its content now.
    fn dirs(&self) -> impl Iterator<Item = PathBuf> {
        let named = self.path.parent().map(Path::to_path_buf);
        let content = canonical(&self.path).parent().map(Path::to_path_buf);
        named.into_iter().chain(content)
    }

    /// Whether the content differs from what was last seen; remembers it.
    fn changed(&mut self) -> bool {
        let now = content_hash(&self.path);
        let changed = now != self.seen;
        self.seen = now;
        changed
    }
}

fn content_hash(path: &Path) -> Option<[u8; 32]> {
    weir_core::files::read_regular(path, weir_config::MAX_SMALL_FILE_BYTES)
        .ok()
        .map(|bytes| Sha256::digest(&bytes).into())
}

/// What a plugin file leads to now: the file its symlinks end at, its size
/// and modification time. Taken without opening the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    target: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

/// Every `NAME.wasm` and `NAME.toml` in `dir`, by file name.
fn plugin_files(dir: &Path) -> BTreeMap<String, FileStamp> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            plugin_of(&name)?;
            let path = entry.path();
            // Follows symlinks; a dangling one counts as absent.
            let meta = std::fs::metadata(&path).ok()?;
            let stamp = FileStamp {
                target: canonical(&path),
                len: meta.len(),
                modified: meta.modified().ok(),
            };
            Some((name, stamp))
        })
        .collect()
}

/// The plugins with a file that appeared, disappeared or changed between
/// two listings.
fn changed_plugins(before: &BTreeMap<String, FileStamp>, after: &BTreeMap<String, FileStamp>) -> BTreeSet<PluginName> {
    before
        .keys()
        .chain(after.keys())
        .filter(|name| before.get(*name) != after.get(*name))
        .filter_map(|name| plugin_of(name))
        .collect()
}

/// Start watching `plugin_dir`, the gateway's config file and the
/// certificates, and handle changes until `shutdown` flips. The watches
/// are in place when this returns, so no change made after it is missed.
pub fn spawn(
    gateway: Arc<Gateway>,
    plugin_dir: &Path,
    certs: Vec<Arc<ReloadableCert>>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let (tx, rx) = mpsc::unbounded_channel::<DebounceEventResult>();
    let debouncer = match new_debouncer(DEBOUNCE, None, move |result| {
        let _ = tx.send(result);
    }) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("cannot watch for file changes; reload with SIGHUP or POST /reload: {e}");
            return tokio::spawn(wait_for_signals(gateway, shutdown));
        }
    };
    let plugin_dir = canonical(plugin_dir);
    let mut watching = Watching {
        debouncer,
        watched: BTreeSet::new(),
        unwatchable: BTreeSet::new(),
        plugin_files: plugin_files(&plugin_dir),
        plugin_dir,
        config_file: gateway.config_file().map(WatchedFile::new),
        cert_files: certs.iter().flat_map(|c| c.files().map(WatchedFile::new)).collect(),
        certs,
    };
    watching.rewatch();
    tokio::spawn(watching.run(gateway, rx, shutdown))
}

struct Watching {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    /// The directories watched now.
    watched: BTreeSet<PathBuf>,
    /// Directories that could not be watched, warned about once.
    unwatchable: BTreeSet<PathBuf>,
    plugin_dir: PathBuf,
    plugin_files: BTreeMap<String, FileStamp>,
    config_file: Option<WatchedFile>,
    cert_files: Vec<WatchedFile>,
    certs: Vec<Arc<ReloadableCert>>,
}

impl Watching {
    /// Watch the directories where changes can show now, and stop watching
    /// those where they no longer can (such as a ConfigMap's old
    /// timestamped directory, already deleted).
    fn rewatch(&mut self) {
        let mut wanted: BTreeSet<PathBuf> = BTreeSet::from([self.plugin_dir.clone()]);
        for file in self.config_file.iter().chain(&self.cert_files) {
            wanted.extend(file.dirs());
        }
        for gone in self.watched.difference(&wanted) {
            let _ = self.debouncer.unwatch(gone);
        }
        self.watched.retain(|dir| wanted.contains(dir));
        for dir in wanted {
            if self.watched.contains(&dir) {
                continue;
            }
            match self.debouncer.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.unwatchable.remove(&dir);
                    self.watched.insert(dir);
                }
                Err(e) => {
                    if self.unwatchable.insert(dir.clone()) {
                        tracing::warn!(dir = %dir.display(), "cannot watch for changes: {e}");
                    }
                }
            }
        }
    }

    /// What changed, after events in the watched directories.
    fn changes(&mut self, paths: &[PathBuf]) -> Changes {
        let config = self.config_file.as_mut().is_some_and(WatchedFile::changed);
        let mut certs = false;
        for file in &mut self.cert_files {
            // Every file is compared, so that each remembers what it holds.
            certs |= file.changed();
        }
        let now = plugin_files(&self.plugin_dir);
        let mut plugins = changed_plugins(&self.plugin_files, &now);
        self.plugin_files = now;
        plugins.extend(named_plugins(paths, &self.plugin_dir));
        Changes { config, certs, plugins }
    }

    async fn run(
        mut self,
        gateway: Arc<Gateway>,
        mut events: mpsc::UnboundedReceiver<DebounceEventResult>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut hangup = hangup_signal();
        loop {
            let changes = tokio::select! {
                Some(result) = events.recv() => match result {
                    Ok(events) => {
                        let paths: Vec<PathBuf> = events
                            .into_iter()
                            .filter(|e| is_change(&e.kind))
                            .flat_map(|e| e.event.paths)
                            .collect();
                        if paths.is_empty() {
                            continue;
                        }
                        self.changes(&paths)
                    }
                    Err(errors) => {
                        for e in errors {
                            tracing::warn!("file watch error: {e}");
                        }
                        continue;
                    }
                },
                _ = recv_hangup(&mut hangup) => Changes { config: true, ..Default::default() },
                _ = shutdown.changed() => return,
            };
            if changes.certs {
                for cert in &self.certs {
                    match cert.reload() {
                        Ok(()) => tracing::info!(cert = %cert.files()[0].display(), "certificate reloaded"),
                        // Often the key and certificate are written one
                        // after the other: the next event tries again.
                        Err(e) => tracing::warn!(
                            cert = %cert.files()[0].display(),
                            "certificate not reloaded; the current one keeps serving: {e:#}"
                        ),
                    }
                }
            }
            if changes.config {
                // Errors are logged by the gateway; the old config keeps serving.
                let _ = gateway.reload_config().await;
                let dir = canonical(&gateway.plugin_dir().await);
                if dir != self.plugin_dir {
                    self.plugin_files = plugin_files(&dir);
                    self.plugin_dir = dir;
                }
            }
            for name in &changes.plugins {
                gateway.reload_plugin(name).await;
            }
            self.rewatch();
        }
    }
}

async fn wait_for_signals(gateway: Arc<Gateway>, mut shutdown: watch::Receiver<bool>) {
    let mut hangup = hangup_signal();
    loop {
        tokio::select! {
            _ = recv_hangup(&mut hangup) => { let _ = gateway.reload_config().await; }
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

async fn recv_hangup(hangup: &mut Hangup) {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        signal.recv().await;
        return;
    }
    let _ = hangup;
    std::future::pending::<()>().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_plugins_by_their_wasm_file_or_manifest() {
        let plugins = canonical(&std::env::temp_dir());
        let paths = vec![
            plugins.join("auth.wasm"),
            plugins.join("auth.toml"),
            plugins.join("rate-limit.wasm"),
            plugins.join(".auth.wasm.swp"),
            plugins.join("notes.txt"),
            plugins.join("..data"),
            PathBuf::from("/elsewhere/x.wasm"),
        ];
        let names: Vec<String> = named_plugins(&paths, &plugins).iter().map(|p| p.to_string()).collect();
        assert_eq!(names, ["auth", "rate-limit"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_plugin_reached_through_a_swapped_symlink_counts_as_changed() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("..v1"), dir.path().join("..v2"));
        for version in [&old, &new] {
            std::fs::create_dir(version).unwrap();
            std::fs::write(version.join("auth.wasm"), b"same bytes").unwrap();
            std::fs::write(version.join("other.wasm"), b"same bytes").unwrap();
        }
        std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/auth.wasm", dir.path().join("auth.wasm")).unwrap();
        let before = plugin_files(dir.path());
        assert_eq!(before.keys().collect::<Vec<_>>(), ["auth.wasm"]);

        std::os::unix::fs::symlink("..v2", dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        let after = plugin_files(dir.path());
        let changed: Vec<String> = changed_plugins(&before, &after).iter().map(|p| p.to_string()).collect();
        assert_eq!(changed, ["auth"]);
        assert!(changed_plugins(&after, &plugin_files(dir.path())).is_empty());
    }
}
