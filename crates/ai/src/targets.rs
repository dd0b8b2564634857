//! An AI route's targets and the order they are tried in.
//!
//! Targets serving the requested model are tried in the order the shared
//! target planner gives (`weir_select::plan`, as for upstream pools): by
//! priority (lower first); within one priority the first chosen by smooth
//! weighted round robin, so traffic splits by weight exactly over every
//! cycle, and the others following in rotation. A target that answered 429
//! rests until its `retry-after` passes, and a target whose circuit is
//! open waits; both go to the back of the order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use weir_config::{AiRouteConfig, AiTargetConfig, Config, PluginName, RouteName, Target, parse_base_url};
use weir_plugins::ShimPlugin;
use weir_proxy::upstream::{HttpClient, http_client};
use weir_select::{Balance, BreakerPolicy, Member, Planner, Standing, TargetHealth};

use super::cache::AnswerCache;

/// One provider endpoint of an AI route.
pub struct AiTarget {
    /// Its name in the config.
    pub name: String,
    /// The model name clients ask for.
    pub alias: String,
    /// The provider's model name.
    pub model: String,
    /// The shim and the target's slot in it; `Err` names a shim that is
    /// not loaded (its file was removed).
    pub shim: Result<(Arc<ShimPlugin>, usize), PluginName>,
    /// Scheme and authority of the base URL.
    pub base: Target,
    /// The base URL's path, without trailing `/`.
    pub base_path: String,
    /// The provider key, from the target's secret.
    pub key: Option<String>,
    /// Share of traffic within its priority.
    pub weight: u32,
    /// Lower is tried first.
    pub priority: u32,
    /// The pooled client.
    pub client: HttpClient,
    /// For the response head, and between streamed chunks.
    pub response_timeout: Duration,
    /// Its circuit breaker and any rest it asked for (429).
    pub health: Arc<TargetHealth>,
    /// When its circuit opens.
    pub breaker: BreakerPolicy,
}

/// The targets serving one model name, and the order they are tried in.
struct ModelTargets {
    /// Indices into the route's targets, in config order.
    targets: Vec<usize>,
    planner: Planner,
}

/// An AI route's targets, cache and settings.
pub struct AiRoute {
    /// The route.
    pub name: RouteName,
    /// Its targets, in config order.
    pub targets: Vec<Arc<AiTarget>>,
    /// Output tokens reserved when the client sets no limit.
    pub default_max_tokens: u32,
    /// Most targets tried per request.
    pub max_attempts: Option<usize>,
    /// The answer cache, if on.
    pub cache: Option<AnswerCache>,
    /// What the route does while shared budgets are unavailable.
    pub state_policy: weir_config::OnUnavailable,
    /// By model name (a target's alias).
    models: HashMap<String, ModelTargets>,
}

impl AiRoute {
    /// Build a validated AI route. `shim` finds a target's loaded shim and
    /// its slot; `secret` a secret's value; `cache` is the route's answer
    /// cache (kept while the config is, across plugin reloads).
    pub fn new(
        route: &RouteName,
        ai: &AiRouteConfig,
        config: &Config,
        shim: impl Fn(usize, &AiTargetConfig) -> Result<(Arc<ShimPlugin>, usize), PluginName>,
        secret: impl Fn(&str) -> Option<String>,
        cache: Option<AnswerCache>,
    ) -> anyhow::Result<AiRoute> {
        let mut targets = Vec::with_capacity(ai.targets.len());
        for (index, t) in ai.targets.iter().enumerate() {
            let at = format!("routes.{route}.ai.targets[{index}]");
            let (base, base_path) = parse_base_url(&t.base_url).map_err(|e| anyhow::anyhow!("{at}.base_url: {e}"))?;
            let client = http_client(
                Duration::from_millis(t.connect_timeout_ms),
                t.ca.as_ref().map(|ca| config.resolve(ca)).as_deref(),
                &format!("{at}.ca"),
            )?;
            let key = match &t.key_secret {
                Some(name) => {
                    Some(secret(name).ok_or_else(|| anyhow::anyhow!("{at}.key_secret: unknown secret {name:?}"))?)
                }
                None => None,
            };
            targets.push(Arc::new(AiTarget {
                name: t.name.clone(),
                alias: t.alias().to_string(),
                model: t.model.clone(),
                shim: shim(index, t),
                base,
                base_path,
                key,
                weight: t.weight.max(1),
                priority: t.priority,
                client,
                response_timeout: Duration::from_millis(t.response_timeout_ms),
                health: Arc::default(),
                breaker: BreakerPolicy {
                    after_failures: t.eject_after_failures,
                    base_ms: i64::try_from(t.eject_ms).unwrap_or(i64::MAX),
                    failure_rate: None,
                    trial_timeout_ms: i64::try_from(t.connect_timeout_ms.saturating_add(t.response_timeout_ms))
                        .unwrap_or(i64::MAX),
                },
            }));
        }
        Ok(AiRoute {
            name: route.clone(),
            default_max_tokens: ai.default_max_tokens,
            max_attempts: ai.max_attempts,
            cache,
            state_policy: config.state_policy(route),
            models: plan_by_model(&targets),
            targets,
        })
    }

    /// The model names clients may ask for, each once, in config order.
    pub fn models(&self) -> Vec<&str> {
        let mut models: Vec<&str> = Vec::new();
        for t in &self.targets {
            if !models.contains(&t.alias.as_str()) {
                models.push(&t.alias);
            }
        }
        models
    }

    /// The targets to try for `model`, in order (empty: no target serves
    /// it), at most `max_attempts` of them.
    pub fn plan(&self, model: &str, now_ms: i64) -> Vec<Arc<AiTarget>> {
        let Some(serving) = self.models.get(model) else {
            return Vec::new();
        };
        let order = serving.planner.plan(|k| {
            let target = &self.targets[serving.targets[k]];
            Standing {
                in_flight: 0,
                ready: target.health.is_ready(target.breaker, now_ms),
            }
        });
        let most = self.max_attempts.unwrap_or(usize::MAX);
        order
            .into_iter()
            .take(most)
            .map(|k| self.targets[serving.targets[k]].clone())
            .collect()
    }
}

/// A planner for each model name over the targets serving it.
fn plan_by_model(targets: &[Arc<AiTarget>]) -> HashMap<String, ModelTargets> {
    let mut models: HashMap<String, ModelTargets> = HashMap::new();
    for alias in targets.iter().map(|t| t.alias.as_str()) {
        if models.contains_key(alias) {
            continue;
        }
        let serving: Vec<usize> = (0..targets.len()).filter(|&i| targets[i].alias == alias).collect();
        let members: Vec<Member> = serving
            .iter()
            .map(|&i| Member {
                weight: targets[i].weight,
                priority: targets[i].priority,
            })
            .collect();
        models.insert(
            alias.to_string(),
            ModelTargets {
                planner: Planner::new(&members, Balance::RoundRobin),
                targets: serving,
            },
        );
    }
    models
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(targets: &[(&str, &str, u32, u32)]) -> AiRoute {
        let toml = format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[routes]]\nname = \"ai\"\n[routes.ai]\n{}",
            targets
                .iter()
                .map(|(name, alias, weight, priority)| format!(
                    "[[routes.ai.targets]]\nname = \"{name}\"\nshim = \"s\"\nbase_url = \"http://127.0.0.1:1\"\nmodel = \"m-{name}\"\nalias = \"{alias}\"\nweight = {weight}\npriority = {priority}\n"
                ))
                .collect::<String>()
        );
        let config = Config::parse(&toml, std::path::Path::new("t.toml"), std::path::Path::new(".")).unwrap();
        let ai = config.routes[0].ai.clone().unwrap();
        AiRoute::new(
            &config.routes[0].name,
            &ai,
            &config,
            |_, t| Err(t.shim.clone()),
            |_| None,
            None,
        )
        .unwrap()
    }

    fn names(plan: &[Arc<AiTarget>]) -> Vec<&str> {
        plan.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn weights_split_the_lead_within_a_priority_and_priorities_go_in_order() {
        let route = route(&[
            ("a", "m", 3, 0),
            ("b", "m", 1, 0),
            ("c", "m", 1, 1),
            ("x", "other", 1, 0),
        ]);
        let mut leads = std::collections::HashMap::new();
        for _ in 0..400 {
            let plan = route.plan("m", 0);
            assert_eq!(plan.len(), 3);
            assert_eq!(plan[2].name, "c", "the lower priority comes last");
            *leads.entry(plan[0].name.clone()).or_insert(0) += 1;
        }
        assert_eq!(leads["a"], 300);
        assert_eq!(leads["b"], 100);
        assert_eq!(names(&route.plan("other", 0)), ["x"]);
        assert!(route.plan("nothing", 0).is_empty());
        assert_eq!(route.models(), ["m", "other"]);
    }

    #[test]
    fn a_cooling_target_goes_last_until_its_time_passes() {
        let route = route(&[("a", "m", 1, 0), ("b", "m", 1, 1)]);
        route.targets[0].health.rest_until(1_000);
        assert_eq!(names(&route.plan("m", 500)), ["b", "a"]);
        assert_eq!(route.targets[0].health.resting_for(500), Some(500));
        assert_eq!(names(&route.plan("m", 1_000)), ["a", "b"]);
    }
}
