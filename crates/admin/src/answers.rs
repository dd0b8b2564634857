//! The admin API's answers about what serves now — plugins, routes,
//! shared state — built as `weir_admin_api` types from the proxy, the
//! gateway's plugin status and the state store.

use weir_admin_api::{
    AiBackend, AiTarget, CircuitState, OnUnavailable, PluginEntry, PluginLimits, PluginList, RedisState, RouteBackend,
    RouteEntry, RouteList, SharedState, TargetStatus, UpstreamBackend,
};
use weir_ai::chat::AiRouteBackend;
use weir_config::Target;
use weir_proxy::router::Backend;

use weir_gateway::Gateway;

/// `GET /plugins`: each plugin's status, with the limits of the version
/// serving now.
pub(super) fn plugins(gateway: &Gateway) -> PluginList {
    let proxy = gateway.proxy().load();
    let plugins = gateway
        .plugin_status()
        .into_iter()
        .map(|status| {
            let limits = proxy
                .plugins
                .iter()
                .find(|p| p.name().as_str() == status.name)
                .map(|p| PluginLimits {
                    idle_instances: p.idle_instances() as u64,
                    deadline_ms: p.limits().deadline.as_millis() as u64,
                    memory_mb: (p.limits().memory_bytes >> 20) as u64,
                    fail_open: p.limits().fail_open,
                    outbound_timeout_ms: p.identity().grants.outbound_timeout.as_millis() as u64,
                    calls: p.calls().into(),
                });
            PluginEntry { status, limits }
        })
        .collect();
    PluginList { plugins }
}

/// `GET /routes`: each route's chain and backend, with its targets' health.
pub(super) fn routes(gateway: &Gateway) -> RouteList {
    let proxy = gateway.proxy().load();
    let routes = proxy
        .routes
        .iter()
        .map(|r| RouteEntry {
            name: r.name.to_string(),
            plugins: r.chain.links.iter().map(|l| l.plugin.name().to_string()).collect(),
            missing_plugins: r.chain.missing.iter().map(|p| p.to_string()).collect(),
            backend: backend(&r.backend),
        })
        .collect();
    RouteList { routes }
}

fn backend(backend: &Backend) -> Option<RouteBackend> {
    match backend {
        Backend::Upstream(pool) => Some(RouteBackend::Upstream(UpstreamBackend {
            upstream: pool.name.to_string(),
            targets: pool.targets().iter().map(url).collect(),
            ejected: pool
                .targets()
                .iter()
                .enumerate()
                .filter(|(i, _)| pool.is_ejected(*i))
                .map(|(_, t)| url(t))
                .collect(),
            target_status: pool
                .status()
                .map(|s| TargetStatus {
                    target: url(s.target),
                    weight: s.weight,
                    circuit: circuit(s.state),
                    in_flight: s.in_flight,
                })
                .collect(),
        })),
        Backend::Ai(backend) => {
            let ai = &backend.as_any().downcast_ref::<AiRouteBackend>()?.route;
            let now_ms = weir_core::clock::now_ms();
            Some(RouteBackend::Ai(AiBackend {
                models: ai.models().into_iter().map(str::to_string).collect(),
                ai_targets: ai
                    .targets
                    .iter()
                    .map(|t| AiTarget {
                        name: t.name.clone(),
                        model: t.model.clone(),
                        alias: t.alias.clone(),
                        url: format!("{}{}", url(&t.base), t.base_path),
                        shim: match &t.shim {
                            Ok((p, _)) => p.name().to_string(),
                            Err(name) => name.to_string(),
                        },
                        shim_loaded: t.shim.is_ok(),
                        weight: t.weight,
                        priority: t.priority,
                        cooling_ms: t.health.resting_for(now_ms),
                        circuit: circuit(t.health.state(now_ms)),
                    })
                    .collect(),
            }))
        }
    }
}

/// `scheme://authority`.
fn url(target: &Target) -> String {
    format!("{}://{}", target.scheme, target.authority)
}

fn circuit(state: weir_select::CircuitState) -> CircuitState {
    match state {
        weir_select::CircuitState::Closed => CircuitState::Closed,
        weir_select::CircuitState::Open => CircuitState::Open,
        weir_select::CircuitState::HalfOpen => CircuitState::HalfOpen,
        weir_select::CircuitState::Down => CircuitState::Down,
    }
}

/// `GET /state`: memory, or the Redis URL (password hidden) with whether it
/// answers, the last error while down, when it last went up or down, the
/// policy routes follow by default, and counts of unavailable operations
/// and outages.
pub(super) fn state(gateway: &Gateway) -> SharedState {
    let state = gateway.state();
    match state.status() {
        None => SharedState {
            store: "memory".into(),
            up: true,
            redis: None,
        },
        Some(redis) => SharedState {
            store: redis.url,
            up: redis.up,
            redis: Some(RedisState {
                error: redis.error,
                since_ms: redis.since_ms,
                on_unavailable: match state.config().on_unavailable {
                    weir_config::OnUnavailable::FailClosed => OnUnavailable::FailClosed,
                    weir_config::OnUnavailable::Local => OnUnavailable::Local,
                },
                unavailable_operations: redis.unavailable_ops,
                outages: redis.outages,
            }),
        },
    }
}
