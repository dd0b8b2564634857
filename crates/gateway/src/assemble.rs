//! Building what a config needs to be served, off the request path: the
//! upstream pools, the AI services (ledger, budgets restored from it,
//! prices), the answer caches, and the proxy with its route table.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use super::{LoadError, Serving};
use weir_ai::AiServices;
use weir_ai::budget::Budgets;
use weir_ai::cache::AnswerCache;
use weir_ai::chat::AiRouteBackend;
use weir_ai::targets::AiRoute;
use weir_ai::usage::UsageLedger;
use weir_config::{Config, UpstreamName};
use weir_observe::Observer;
use weir_plugins::{build_chains, shim_for_target};
use weir_proxy::Proxy;
use weir_proxy::router::{Backend, Route, RouteTable};
use weir_proxy::upstream::UpstreamPool;

pub(super) fn build_upstreams(config: &Config) -> Result<HashMap<UpstreamName, Arc<UpstreamPool>>, LoadError> {
    let mut upstreams = HashMap::new();
    for (name, upstream) in &config.upstreams {
        let pool = Arc::new(UpstreamPool::new(name, upstream, config).map_err(LoadError::Other)?);
        pool.start_health_checks();
        upstreams.insert(name.clone(), pool);
    }
    Ok(upstreams)
}

/// The usage ledger, budgets and prices for `config`, if it has AI routes.
/// The ledger is opened once and kept; budgets start from what the ledger
/// says each consumer spent in the current window, so neither a restart
/// nor a reload hands out a budget twice.
pub(super) async fn ai_services(
    config: &Config,
    ledger: &Mutex<Option<Arc<UsageLedger>>>,
    observer: &Arc<Observer>,
    state: &weir_state::SharedState,
) -> Result<Option<Arc<AiServices>>, LoadError> {
    if !config.has_ai_routes() {
        return Ok(None);
    }
    // Errors name the field the store came from, never a password.
    let field = config.ai.usage_field();
    let ledger = {
        let mut slot = ledger.lock().await;
        match slot.as_ref() {
            Some(open) => open.clone(),
            None => {
                let store = config
                    .usage_store()
                    .map_err(|p| LoadError::Other(anyhow::anyhow!("{}: {}", p.path, p.message)))?;
                let open = Arc::new(
                    UsageLedger::open_store(&store)
                        .await
                        .map_err(|e| LoadError::Other(anyhow::anyhow!("{field}: {e}")))?,
                );
                *slot = Some(open.clone());
                open
            }
        }
    };
    // Shared budgets live in Redis; the in-memory counts restored below are
    // their fallback while it is unavailable.
    let budgets = Arc::new(match state.redis() {
        Some(redis) => Budgets::shared(&config.ai.budgets, redis.clone()),
        None => Budgets::new(&config.ai.budgets),
    });
    let now = weir_core::clock::now_ms();
    let mut starts: std::collections::BTreeSet<i64> = config
        .ai
        .budgets
        .consumers
        .keys()
        .filter_map(|consumer| budgets.period_start_ms(consumer, now))
        .collect();
    // Consumers without a rule of their own share the default's window.
    starts.extend(budgets.period_start_ms("\u{0}unlisted", now));
    for start in starts {
        let spent = ledger
            .tokens_by_consumer_since(start)
            .await
            .map_err(|e| LoadError::Other(anyhow::anyhow!("{field}: {e}")))?;
        for (consumer, tokens) in spent {
            if budgets.period_start_ms(&consumer, now) == Some(start) {
                budgets.restore(&consumer, tokens, now);
            }
        }
    }
    Ok(Some(Arc::new(AiServices {
        ledger,
        budgets,
        prices: config.ai.prices.clone(),
        observer: observer.clone(),
    })))
}

/// An answer cache for each AI route that asks for one (in Redis when
/// the state is shared).
pub(super) fn answer_caches(
    config: &Config,
    state: &weir_state::SharedState,
) -> HashMap<weir_config::RouteName, AnswerCache> {
    config
        .routes
        .iter()
        .filter_map(|r| {
            let cache = r.ai.as_ref()?.cache.as_ref()?;
            Some((r.name.clone(), AnswerCache::with_store(cache, state.redis().cloned())))
        })
        .collect()
}

/// The route table for what is serving.
pub(super) fn build_proxy(serving: &Serving) -> Result<Proxy, LoadError> {
    let config = &serving.config;
    let mut chains = build_chains(config, &serving.loaded.plugins);
    let mut routes = Vec::new();
    for route in &config.routes {
        let backend = match (&route.upstream, &route.ai) {
            (Some(upstream), _) => match serving.upstreams.get(upstream) {
                Some(pool) => Backend::Upstream(pool.clone()),
                // Validation guarantees the upstream exists.
                None => continue,
            },
            (None, Some(ai)) => {
                let shim = |index: usize, target: &weir_config::AiTargetConfig| {
                    shim_for_target(&serving.loaded.plugins, &target.shim, &route.name, index)
                        .ok_or_else(|| target.shim.clone())
                };
                let secret = |name: &str| serving.capabilities.secrets.get(name).cloned();
                let services = serving
                    .ai
                    .clone()
                    .ok_or_else(|| LoadError::Other(anyhow::anyhow!("AI services are not set up")))?;
                let route = AiRoute::new(
                    &route.name,
                    ai,
                    config,
                    shim,
                    secret,
                    serving.caches.get(&route.name).cloned(),
                )
                .map_err(LoadError::Other)?;
                Backend::Ai(Arc::new(AiRouteBackend {
                    route: Arc::new(route),
                    services,
                }))
            }
            (None, None) => continue,
        };
        let chain = chains.remove(&route.name).unwrap_or_default();
        routes.push(Route::new(route, backend, Arc::new(chain)));
    }
    let mut plugins: Vec<_> = serving.loaded.plugins.values().cloned().collect();
    plugins.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(Proxy {
        routes: RouteTable::new(routes),
        limits: config.limits.clone(),
        plugins,
        observer: serving.observer.clone(),
        paths: config.http.path_policy(),
        in_flight: config
            .limits
            .max_concurrent_requests
            .map(weir_proxy::router::InFlightLimit::new),
    })
}
