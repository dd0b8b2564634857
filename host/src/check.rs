//! `weir check`: everything wrong with a config file, found in one run and
//! listed by path, with nothing of the operator's written.
//!
//! The file is read as far as it goes ([`Config::read`]): every unknown
//! field and every problem [`Config::validate`] finds. Then each part
//! whose own settings are valid is built as `weir run` would build it,
//! without serving: listener certificates, upstream pools (without health
//! checks), the plugins of every route whose plugin entries and AI
//! targets have no problem (a route's unknown upstream or bad path does
//! not stop its plugins being configured), the AI routes' targets,
//! and the usage store. A plugin's problem is named by where it is used:
//! `routes[i].plugins[j]`, or `routes[i].ai.targets[j].shim`.
//!
//! Invariant: nothing is written but the compiled-plugin cache
//! (`plugins.cache_dir`). The usage database is checked without being
//! created or opened for writing (a PostgreSQL one is not connected to:
//! connecting brings its schema up to date); the access log is not opened;
//! no listener is bound.

use std::path::Path;
use std::sync::Arc;

use weir_ai::targets::AiRoute;
use weir_ai::usage::UsageLedger;
use weir_config::{Config, ConfigError, ConfigReading, PluginName, Problem, RouteName, StateConfig};
use weir_plugins::{PluginLoadError, PluginRuntime, shim_for_target};
use weir_proxy::listener;
use weir_proxy::upstream::UpstreamPool;

/// Check the config file at `path` and everything it names. On success,
/// returns a line per plugin; otherwise every problem found.
pub async fn check(path: &Path) -> Result<Vec<String>, ConfigError> {
    let ConfigReading {
        file,
        config,
        mut problems,
    } = Config::read(path);
    let Some(config) = config else {
        return Err(ConfigError { file, problems });
    };
    // Problems found so far mark the parts not worth building.
    let found = problems.clone();
    let bad = |prefix: &str| found.iter().any(|p| lies_under(&p.path, prefix));
    let mut problem = |path: String, message: String| problems.push(Problem { path, message });

    for (i, l) in config.listeners.iter().enumerate() {
        let at = format!("listeners[{i}]");
        if let Some(tls) = l.tls.as_ref().filter(|_| !bad(&at))
            && let Err(e) = listener::tls_acceptor(&config.resolve(&tls.cert), &config.resolve(&tls.key))
        {
            problem(format!("{at}.tls"), format!("{e:#}"));
        }
    }
    for (name, upstream) in &config.upstreams {
        let at = format!("upstreams.{name}");
        if !bad(&at)
            && let Err(e) = UpstreamPool::new(name, upstream, &config)
        {
            problem(at, format!("{e:#}"));
        }
    }
    if config.has_ai_routes()
        && !bad(config.ai.usage_field())
        && let Ok(store) = config.usage_store()
        && let Err(e) = UsageLedger::check_store(&store)
    {
        problem(config.ai.usage_field().into(), e.to_string());
    }

    let mut lines = Vec::new();
    if !bad("plugins") {
        let usable = usable_part(&config, &found, &bad);
        for p in check_plugins(&config, &usable, bad("state"), &mut lines).await {
            problem(p.path, p.message);
        }
    }
    if problems.is_empty() {
        Ok(lines)
    } else {
        Err(ConfigError { file, problems })
    }
}

/// Whether `path` is `prefix` or a field under it: `routes[1]` holds
/// `routes[1].name`, not `routes[10]`.
fn lies_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// `config` with only the routes whose plugins can be configured — no
/// problem with the route as a whole, its name, its plugin entries or its
/// AI targets, nor in the settings of a plugin it uses (a problem with
/// where it sends requests, its path or its methods does not stop its
/// plugins being checked) — and only the secrets that have none: what the
/// plugins are loaded and configured for.
fn usable_part(config: &Config, found: &[Problem], bad: &impl Fn(&str) -> bool) -> Config {
    let mut usable = config.clone();
    let mut index = 0;
    usable.routes.retain(|route| {
        let at = format!("routes[{index}]");
        index += 1;
        let blocks = |p: &Problem| {
            p.path == at
                || ["name", "plugins", "ai"]
                    .iter()
                    .any(|part| lies_under(&p.path, &format!("{at}.{part}")))
        };
        let shims = route.ai.iter().flat_map(|ai| ai.targets.iter().map(|t| &t.shim));
        let mut plugins = route.plugins.iter().map(|p| &p.name).chain(shims);
        !found.iter().any(blocks) && !plugins.any(|name| bad(&format!("plugin.{name}")))
    });
    usable.secrets.retain(|name, _| !bad(&format!("secrets.{name}")));
    usable
}

/// Load and configure every plugin `usable` uses, and build its AI
/// routes' targets; pushes a line per plugin that loaded onto `lines` and
/// returns the problems, named by their paths in `config` (which `usable`
/// was cut from). With `bad_state`, plugins get an in-memory store.
async fn check_plugins(config: &Config, usable: &Config, bad_state: bool, lines: &mut Vec<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let state_config = if bad_state {
        StateConfig::default()
    } else {
        usable.state_config()
    };
    let state = match weir_state::SharedState::start(&state_config).await {
        Ok(state) => state,
        Err(e) => {
            problems.push(Problem {
                path: "state".into(),
                message: format!("{e:#}"),
            });
            return problems;
        }
    };
    let runtime = match PluginRuntime::new(usable, Arc::new(state)) {
        Ok(runtime) => runtime,
        Err(e) => {
            problems.push(Problem {
                path: "plugins".into(),
                message: format!("{e:#}"),
            });
            return problems;
        }
    };
    let capabilities = match runtime.capabilities_for(usable) {
        Ok(capabilities) => capabilities,
        Err(e) => {
            // A secret that cannot be read: "secrets.NAME.file: ...".
            let text = format!("{e:#}");
            let (path, message) = text.split_once(": ").unwrap_or(("secrets", &text));
            problems.push(Problem {
                path: path.into(),
                message: message.into(),
            });
            return problems;
        }
    };

    let dir = usable.plugin_dir();
    let mut loaded = std::collections::HashMap::new();
    for name in usable.used_plugins() {
        let plugin = match runtime.compile(&dir, &name, usable.routes_using(&name).next()).await {
            Ok(source) => runtime
                .configure(&source, usable, &capabilities)
                .await
                .map(|plugin| (plugin, source.content_hash)),
            Err(e) => Err(e),
        };
        match plugin {
            Ok((plugin, version)) => {
                let routes: Vec<String> = usable.routes_using(&name).map(|r| r.to_string()).collect();
                lines.push(format!(
                    "plugin {name} ({}) ok for routes: {}",
                    version.get(..12).unwrap_or(&version),
                    routes.join(", ")
                ));
                loaded.insert(name, plugin);
            }
            Err(e) => problems.push(plugin_problem(config, &e)),
        }
    }

    for route in &usable.routes {
        let Some(ai) = &route.ai else { continue };
        let shim = |index: usize, target: &weir_config::AiTargetConfig| {
            shim_for_target(&loaded, &target.shim, &route.name, index).ok_or_else(|| target.shim.clone())
        };
        let secret = |name: &str| capabilities.secrets.get(name).cloned();
        if let Err(e) = AiRoute::new(&route.name, ai, usable, shim, secret, None) {
            let at = config
                .routes
                .iter()
                .position(|r| r.name == route.name)
                .map_or_else(|| "routes".to_string(), |i| format!("routes[{i}].ai"));
            problems.push(Problem {
                path: at,
                message: format!("{e:#}"),
            });
        }
    }
    problems
}

/// A plugin's problem, at the first place `config` uses it (on the route
/// the problem names, if it names one).
fn plugin_problem(config: &Config, error: &PluginLoadError) -> Problem {
    let (plugin, route) = match error {
        PluginLoadError::Missing { plugin, route, .. } => (plugin, route.as_ref()),
        PluginLoadError::Configure { plugin, route, .. } => (plugin, Some(route)),
        PluginLoadError::Invalid { plugin, .. } | PluginLoadError::Fault { plugin, .. } => (plugin, None),
    };
    let path = uses(config, plugin)
        .find(|(name, _)| route.is_none_or(|route| route == *name))
        .map_or_else(|| format!("plugin.{plugin}"), |(_, path)| path);
    Problem {
        path,
        message: error.to_string(),
    }
}

/// Where `config` uses `plugin`, in config order: each place in a route's
/// chain and each AI target it is the shim of, by path, with the route.
fn uses<'a>(config: &'a Config, plugin: &'a PluginName) -> impl Iterator<Item = (&'a RouteName, String)> + 'a {
    config.routes.iter().enumerate().flat_map(move |(i, route)| {
        let chain = route
            .plugins
            .iter()
            .enumerate()
            .filter(move |(_, p)| p.name == *plugin)
            .map(move |(j, _)| format!("routes[{i}].plugins[{j}]"));
        let shims = route
            .ai
            .iter()
            .flat_map(|ai| ai.targets.iter().enumerate())
            .filter(move |(_, t)| t.shim == *plugin)
            .map(move |(j, _)| format!("routes[{i}].ai.targets[{j}].shim"));
        chain.chain(shims).map(move |path| (&route.name, path))
    })
}

#[cfg(test)]
mod tests {
    use super::lies_under;

    #[test]
    fn a_path_lies_under_its_own_prefix_only() {
        assert!(lies_under("routes[1]", "routes[1]"));
        assert!(lies_under("routes[1].name", "routes[1]"));
        assert!(lies_under("routes[1].plugins[0]", "routes[1]"));
        assert!(!lies_under("routes[10].name", "routes[1]"));
        assert!(lies_under("plugins.memory_mb", "plugins"));
        assert!(!lies_under("plugin.auth.kv", "plugins"));
        assert!(!lies_under("ai_x", "ai"));
    }
}
