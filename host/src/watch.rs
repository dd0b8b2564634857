//! Noticing changes: the plugin directory, the config file and the TLS
//! listeners' certificate and key files are watched (debounced, since
//! editors and `cp` write a file in several steps), and SIGHUP reloads the
//! config. Each change is handed to the [`Gateway`], or for certificates
//! to the listener's [`ReloadableCert`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{PluginName, valid_plugin_name};
use crate::gateway::Gateway;
use crate::proxy::listener::ReloadableCert;

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

/// Sort changed paths into a config reload and plugin reloads. `NAME.wasm`
/// and its manifest `NAME.toml` in the plugin directory are plugin `NAME`.
fn classify(paths: &[PathBuf], plugin_dir: &Path, config_file: Option<&Path>) -> Changes {
    let mut changes = Changes::default();
    for path in paths {
        let parent = path.parent().map(canonical);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(config) = config_file
            && parent.as_deref() == config.parent()
            && config.file_name().and_then(|n| n.to_str()) == Some(name)
        {
            changes.config = true;
            continue;
        }
        if parent.as_deref() != Some(plugin_dir) {
            continue;
        }
        let stem = name.strip_suffix(".wasm").or_else(|| name.strip_suffix(".toml"));
        if let Some(stem) = stem.filter(|s| valid_plugin_name(s)) {
            changes.plugins.insert(PluginName(stem.to_string()));
        }
    }
    changes
}

/// Whether an event can mean new content. Reads (access events, which the
/// gateway's own reloads cause) are not changes.
fn is_change(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
    )
}

/// Start watching `plugin_dir` and the gateway's config file, and handle
/// changes until `shutdown` flips. The watches are in place when this
/// returns, so no change made after it is missed.
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
    let mut watching = Watching {
        debouncer,
        plugin_dir: canonical(plugin_dir),
        config_file: gateway.config_file().map(canonical),
        cert_files: certs.iter().flat_map(|c| c.files().map(canonical)).collect(),
        certs,
    };
    let cert_dirs: BTreeSet<PathBuf> = watching
        .cert_files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    for dir in cert_dirs {
        if let Err(e) = watching.debouncer.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), "cannot watch the certificates' directory: {e}");
        }
    }
    if let Some(dir) = watching.config_file.clone().as_ref().and_then(|f| f.parent())
        && let Err(e) = watching.debouncer.watch(dir, RecursiveMode::NonRecursive)
    {
        tracing::warn!(dir = %dir.display(), "cannot watch the config file's directory: {e}");
    }
    watching.watch_plugin_dir();
    tokio::spawn(watching.run(gateway, rx, shutdown))
}

struct Watching {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    plugin_dir: PathBuf,
    config_file: Option<PathBuf>,
    cert_files: Vec<PathBuf>,
    certs: Vec<Arc<ReloadableCert>>,
}

impl Watching {
    fn watch_plugin_dir(&mut self) {
        if let Err(e) = self.debouncer.watch(&self.plugin_dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %self.plugin_dir.display(), "cannot watch the plugin directory: {e}");
        }
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
                        let mut changes = classify(&paths, &self.plugin_dir, self.config_file.as_deref());
                        changes.certs = paths.iter().any(|p| self.cert_files.contains(&canonical(p)));
                        changes
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
                        Err(e) => tracing::warn!("certificate not reloaded; the current one keeps serving: {e:#}"),
                    }
                }
            }
            if changes.config {
                // Errors are logged by the gateway; the old config keeps serving.
                let _ = gateway.reload_config().await;
                let dir = canonical(&gateway.plugin_dir().await);
                if dir != self.plugin_dir {
                    let _ = self.debouncer.unwatch(&self.plugin_dir);
                    self.plugin_dir = dir;
                    self.watch_plugin_dir();
                }
            }
            for name in &changes.plugins {
                gateway.reload_plugin(name).await;
            }
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
    fn paths_are_sorted_into_plugins_and_config() {
        let dir = std::env::temp_dir();
        let plugins = canonical(&dir);
        let config = plugins.join("weir.toml");
        let paths = vec![
            plugins.join("auth.wasm"),
            plugins.join("auth.toml"),
            plugins.join("rate-limit.wasm"),
            plugins.join(".auth.wasm.swp"),
            plugins.join("notes.txt"),
            plugins.join("weir.toml"),
            PathBuf::from("/elsewhere/x.wasm"),
        ];
        let changes = classify(&paths, &plugins, Some(&config));
        assert!(changes.config);
        let names: Vec<&str> = changes.plugins.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["auth", "rate-limit"]);
    }
}
