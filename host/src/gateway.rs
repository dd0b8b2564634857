//! Putting a gateway together from a config: load plugins, build upstream
//! pools and the route table, bind listeners and the admin API, serve until
//! told to stop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError};
use crate::plugins::{Chain, PluginLoadError, PluginRuntime};
use crate::proxy::router::{Route, RouteTable};
use crate::proxy::upstream::UpstreamPool;
use crate::proxy::{Proxy, SharedProxy, listener};

/// Why a config cannot be served. Lists every problem found.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The config file itself is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Plugins failed to load or configure.
    #[error("{}", plugin_problems(.0))]
    Plugins(Vec<PluginLoadError>),
    /// Anything else that stops the gateway from starting (secrets,
    /// certificates, upstream TLS settings).
    #[error("{0:#}")]
    Other(anyhow::Error),
}

fn plugin_problems(errors: &[PluginLoadError]) -> String {
    let mut text = format!("{} plugin problem{}", errors.len(), if errors.len() == 1 { "" } else { "s" });
    for e in errors {
        text.push_str("\n  ");
        text.push_str(&e.to_string());
    }
    text
}

/// A config with everything it needs loaded and checked, ready to serve.
pub struct Gateway {
    config: Config,
    proxy: SharedProxy,
    // Kept alive for the gateway's lifetime: owns the linker and shared
    // capabilities the plugins use.
    _runtime: Arc<PluginRuntime>,
}

impl Gateway {
    /// Read and validate the config file, load every plugin and configure
    /// it for its routes.
    pub async fn load_file(path: &Path) -> Result<Gateway, LoadError> {
        Gateway::load(Config::load(path)?).await
    }

    /// Load every plugin of a validated config.
    pub async fn load(config: Config) -> Result<Gateway, LoadError> {
        let runtime = Arc::new(PluginRuntime::new(&config).map_err(LoadError::Other)?);
        let proxy = build_proxy(&config, &runtime).await?;
        Ok(Gateway { config, proxy: Arc::new(ArcSwap::from_pointee(proxy)), _runtime: runtime })
    }

    /// The config being served.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Bind every listener and the admin API and start serving.
    pub async fn start(self) -> anyhow::Result<RunningGateway> {
        let (shutdown, signal) = watch::channel(false);
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        for l in &self.config.listeners {
            let tls = match &l.tls {
                Some(tls) => Some(listener::tls_acceptor(&self.config.resolve(&tls.cert), &self.config.resolve(&tls.key))?),
                None => None,
            };
            let (socket, addr) = listener::bind(&l.address).await?;
            bound.push((socket, tls));
            listeners.push(addr);
        }
        let mut tasks = Vec::new();
        for (socket, tls) in bound {
            tasks.push(tokio::spawn(listener::serve(
                socket,
                tls,
                self.proxy.clone(),
                self.config.limits.clone(),
                signal.clone(),
            )));
        }
        let admin = match &self.config.admin {
            Some(admin) => {
                let token = admin.token.clone().or_else(|| admin.token_env.as_ref().and_then(|v| std::env::var(v).ok()));
                let (socket, addr) = listener::bind(&admin.address).await?;
                tasks.push(tokio::spawn(crate::admin::serve(socket, token, self.proxy.clone(), signal.clone())));
                Some(addr)
            }
            None => None,
        };
        for addr in &listeners {
            tracing::info!("listening on {addr}");
        }
        if let Some(addr) = admin {
            tracing::info!("admin API on {addr}");
        }
        Ok(RunningGateway { listeners, admin, shutdown, tasks, _gateway: self })
    }
}

/// Build the route table for `config` with freshly loaded plugins.
async fn build_proxy(config: &Config, runtime: &PluginRuntime) -> Result<Proxy, LoadError> {
    let set = runtime.load(config).await.map_err(LoadError::Plugins)?;
    let mut upstreams = HashMap::new();
    for (name, upstream) in &config.upstreams {
        upstreams.insert(name.clone(), Arc::new(UpstreamPool::new(name, upstream, config).map_err(LoadError::Other)?));
    }
    let mut routes = Vec::new();
    for route in &config.routes {
        let upstream = upstreams
            .get(&route.upstream)
            .cloned()
            .ok_or_else(|| LoadError::Other(anyhow::anyhow!("route {}: unknown upstream {}", route.name, route.upstream)))?;
        let chain = set.chains.get(&route.name).cloned().unwrap_or_else(Chain::default);
        routes.push(Route::new(route, upstream, Arc::new(chain)));
    }
    let mut plugins: Vec<_> = set.plugins.values().cloned().collect();
    plugins.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(Proxy { routes: RouteTable::new(routes), limits: config.limits.clone(), plugins })
}

/// A gateway that is serving.
pub struct RunningGateway {
    /// The bound address of each listener, in config order.
    pub listeners: Vec<SocketAddr>,
    /// The admin API's address.
    pub admin: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _gateway: Gateway,
}

impl RunningGateway {
    /// Stop accepting, let open requests finish, and return.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Validate a config and load and configure every plugin without serving.
/// On success, returns a summary line per plugin.
pub async fn check(path: &Path) -> Result<Vec<String>, LoadError> {
    let config = Config::load(path)?;
    let runtime = PluginRuntime::new(&config).map_err(LoadError::Other)?;
    let proxy = build_proxy(&config, &runtime).await?;
    for l in &config.listeners {
        if let Some(tls) = &l.tls {
            listener::tls_acceptor(&config.resolve(&tls.cert), &config.resolve(&tls.key)).map_err(LoadError::Other)?;
        }
    }
    Ok(proxy
        .plugins
        .iter()
        .map(|p| {
            let routes: Vec<&str> = p.routes.iter().map(|r| r.route.as_str()).collect();
            format!("plugin {} ({}) ok for routes: {}", p.name(), &p.content_hash[..12], routes.join(", "))
        })
        .collect())
}
