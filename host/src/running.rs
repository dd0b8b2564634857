//! A gateway serving: its listeners, the admin API, the probe listener and
//! the watchers bound and started, and its shutdown (readiness fails
//! first, then listeners drain, then the usage ledger and the trace
//! exporter flush).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use weir_admin::probes::{ProbeListener, Readiness};
use weir_gateway::Gateway;
use weir_proxy::listener;

/// Bind every listener, the admin API and the probe listener, and start
/// serving.
pub async fn start(gateway: Gateway) -> anyhow::Result<RunningGateway> {
    start_with_probes(gateway, None).await
}

/// [`start`], with a probe listener bound before the config
/// loaded (it answered "not ready" meanwhile). Without one, it is bound
/// here if the config has `[admin] health_address`.
pub async fn start_with_probes(gateway: Gateway, probes: Option<ProbeListener>) -> anyhow::Result<RunningGateway> {
    let gateway = Arc::new(gateway);
    let (shutdown, signal) = watch::channel(false);
    let config = gateway.current_config().await;
    let probes = match (probes, config.admin.as_ref().and_then(|a| a.health_address.as_deref())) {
        (Some(probes), _) => Some(probes),
        (None, Some(address)) => Some(ProbeListener::bind(address).await?),
        (None, None) => None,
    };
    if let (Some(probes), Some(admin)) = (&probes, &config.admin) {
        // Read once, at start; a change takes a restart, like the
        // address.
        let file = admin.metrics_token_file.as_ref().map(|f| config.resolve(f));
        let token = weir_config::SecretSetting {
            file: file.as_deref(),
            ..admin.metrics_token()
        }
        .read()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        probes.serve_metrics(&gateway, token);
    }
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    let mut certs = Vec::new();
    for l in &config.listeners {
        let tls = match &l.tls {
            Some(tls) => {
                let (acceptor, cert) =
                    listener::reloadable_tls_acceptor(&config.resolve(&tls.cert), &config.resolve(&tls.key))?;
                certs.push(cert);
                Some(acceptor)
            }
            None => None,
        };
        let (socket, addr) = listener::bind(&l.address).await?;
        bound.push((socket, tls));
        listeners.push(addr);
    }
    let mut tasks = Vec::new();
    for (socket, tls) in bound {
        let proxy = gateway.proxy().clone();
        tasks.push(tokio::spawn(listener::serve(
            socket,
            tls,
            proxy,
            config.limits.clone(),
            signal.clone(),
        )));
    }
    let admin = match &config.admin {
        Some(admin) => {
            let token = admin
                .token
                .clone()
                .or_else(|| admin.token_env.as_ref().and_then(|v| std::env::var(v).ok()));
            let (socket, addr) = listener::bind(&admin.address).await?;
            tasks.push(tokio::spawn(weir_admin::serve(
                socket,
                token,
                admin.allowed_hosts.clone(),
                gateway.clone(),
                signal.clone(),
            )));
            Some(addr)
        }
        None => None,
    };
    tasks.push(crate::watch::spawn(
        gateway.clone(),
        &config.plugin_dir(),
        certs,
        signal.clone(),
    ));
    for addr in &listeners {
        tracing::info!("listening on {addr}");
    }
    if let Some(addr) = admin {
        tracing::info!("admin API on {addr}");
    }
    let readiness = match &probes {
        Some(probes) => {
            tracing::info!("health and readiness probes on {}", probes.addr());
            probes.readiness().clone()
        }
        None => Readiness::starting(),
    };
    readiness.set_serving();
    Ok(RunningGateway {
        listeners,
        admin,
        health: probes.as_ref().map(ProbeListener::addr),
        shutdown,
        tasks,
        gateway,
        probes,
        readiness,
    })
}
/// A gateway that is serving.
pub struct RunningGateway {
    /// The bound address of each listener, in config order.
    pub listeners: Vec<SocketAddr>,
    /// The admin API's address.
    pub admin: Option<SocketAddr>,
    /// The probe listener's address (`[admin] health_address`).
    pub health: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    gateway: Arc<Gateway>,
    /// Closed after the listeners have drained, so `/readyz` answers 503
    /// for as long as requests are still finishing.
    probes: Option<ProbeListener>,
    readiness: Arc<Readiness>,
}

impl RunningGateway {
    /// The gateway, to reload it.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Serving, or draining since shutdown began (one atomic load).
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.readiness
    }

    /// Stop accepting, let open requests finish, and return. Readiness
    /// fails first, so a load balancer probing `/readyz` stops sending
    /// while requests in flight finish.
    pub async fn shutdown(self) {
        self.readiness.set_draining();
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(probes) = self.probes {
            probes.stop().await;
        }
        // Requests have finished: every usage record is queued, every span
        // batched.
        self.gateway.close_usage().await;
        let observer = self.gateway.observer();
        let _ = tokio::task::spawn_blocking(move || observer.shutdown()).await;
    }
}
