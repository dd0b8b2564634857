//! AI routes: their targets (provider endpoints reached through shims),
//! answer cache, prices and budgets; and where usage is recorded (a SQLite
//! file, or a PostgreSQL URL given directly or through an environment
//! variable).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::usage::{PostgresStore, UsageStore, redact_url};

use super::route::empty_table;
use super::upstream::{
    Target, default_connect_timeout_ms, default_eject_after_failures, default_eject_ms, default_weight, parse_target,
};
use super::{Config, PluginName, Problem, RouteConfig, RoutePlugin, plugin_config_json, valid_plugin_name};

/// Settings shared by every AI route.
#[derive(Clone, Deserialize)]
#[serde(from = "AiConfigFile")]
pub struct AiConfig {
    /// Where usage is recorded: a SQLite file (relative to the config
    /// file), or a `postgres://` / `postgresql://` URL of a database
    /// several gateways share.
    pub usage_db: PathBuf,
    /// The name of an environment variable holding `usage_db` instead (so
    /// that a URL with a password need not sit in the file).
    pub usage_db_env: Option<String>,
    /// The name a PostgreSQL store's rows carry in their `instance` column
    /// (default: `HOSTNAME:PID`).
    pub usage_instance: Option<String>,
    /// PEM file of the CA that signed PostgreSQL's certificate (relative to
    /// the config file), trusted instead of the system's roots where the
    /// URL's `sslmode` checks certificates.
    pub usage_db_ca: Option<PathBuf>,
    /// Prices per model (the provider's model name), for the cost of each
    /// request.
    pub prices: BTreeMap<String, ModelPrice>,
    /// Per-consumer token budgets and tokens-per-minute limits.
    pub budgets: super::budget::BudgetConfig,
    /// Whether the file set `usage_db` (which, beside `usage_db_env`, is
    /// refused).
    usage_db_given: bool,
}

impl Default for AiConfig {
    fn default() -> Self {
        AiConfigFile::default().into()
    }
}

/// Shows `usage_db` without a password.
impl fmt::Debug for AiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AiConfig")
            .field("usage_db", &redact_url(&self.usage_db.to_string_lossy()))
            .field("usage_db_env", &self.usage_db_env)
            .field("usage_instance", &self.usage_instance)
            .field("usage_db_ca", &self.usage_db_ca)
            .field("prices", &self.prices)
            .field("budgets", &self.budgets)
            .finish()
    }
}

/// `[ai]` as written in the file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AiConfigFile {
    usage_db: Option<PathBuf>,
    usage_db_env: Option<String>,
    usage_instance: Option<String>,
    usage_db_ca: Option<PathBuf>,
    prices: BTreeMap<String, ModelPrice>,
    budgets: super::budget::BudgetConfig,
}

impl From<AiConfigFile> for AiConfig {
    fn from(file: AiConfigFile) -> AiConfig {
        AiConfig {
            usage_db_given: file.usage_db.is_some(),
            usage_db: file.usage_db.unwrap_or_else(|| PathBuf::from("weir-usage.db")),
            usage_db_env: file.usage_db_env,
            usage_instance: file.usage_instance,
            usage_db_ca: file.usage_db_ca,
            prices: file.prices,
            budgets: file.budgets,
        }
    }
}

impl AiConfig {
    /// The field the usage store comes from, for messages: `ai.usage_db`
    /// or `ai.usage_db_env`.
    pub fn usage_field(&self) -> &'static str {
        if self.usage_db_env.is_some() {
            "ai.usage_db_env"
        } else {
            "ai.usage_db"
        }
    }
}

/// What a model's tokens cost, per million.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Price of a million prompt tokens.
    pub input_per_million: f64,
    /// Price of a million completion tokens.
    pub output_per_million: f64,
}

/// An AI route: OpenAI's `POST .../chat/completions` and `GET .../models`
/// under the route's prefix, served by its targets through their shims.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiRouteConfig {
    /// The provider targets, tried by priority, balanced by weight.
    pub targets: Vec<AiTargetConfig>,
    /// Output tokens reserved against a budget when the client sets no
    /// `max_tokens` (default 4096).
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
    /// Most targets tried for one request (default: every target serving
    /// the model).
    pub max_attempts: Option<usize>,
    /// Cache answers (off when absent).
    pub cache: Option<AiCacheConfig>,
}

fn default_max_tokens() -> u32 {
    4096
}

/// One provider endpoint of an AI route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiTargetConfig {
    /// Unique within the route; used in logs, usage and errors.
    pub name: String,
    /// The provider shim plugin (`NAME.wasm` in the plugin directory).
    pub shim: PluginName,
    /// `http(s)://host[:port][/path]`; the shim's paths are appended.
    pub base_url: String,
    /// The provider's model name.
    pub model: String,
    /// The model name clients ask for to reach this target (default:
    /// `model`). Targets sharing an alias fail over to each other.
    pub alias: Option<String>,
    /// The secret holding the provider key (none: send no key).
    pub key_secret: Option<String>,
    /// Share of traffic among targets of the same priority (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Lower is tried first (default 0).
    #[serde(default)]
    pub priority: u32,
    /// Connect timeout, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time allowed for the response head, and between streamed chunks,
    /// in milliseconds (default 60000).
    #[serde(default = "default_ai_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// Extra CA certificate (PEM) trusted for an `https` base URL.
    pub ca: Option<PathBuf>,
    /// Failures in a row (connect errors, timeouts, 5xx) that open the
    /// target's circuit: it is then tried only after the others; 0 never.
    #[serde(default = "default_eject_after_failures")]
    pub eject_after_failures: u32,
    /// How long the circuit first stays open, in milliseconds (doubling
    /// each time, up to five minutes); then one trial request at a time.
    #[serde(default = "default_eject_ms")]
    pub eject_ms: u64,
    /// Options for the shim (see the shim's README), passed to its
    /// `configure` with `model`.
    #[serde(default = "empty_table")]
    pub options: toml::Value,
}

impl AiTargetConfig {
    /// The name clients use for this target's model.
    pub fn alias(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.model)
    }

    /// The JSON handed to the shim's `configure`: the options and `model`.
    pub fn shim_config_json(&self) -> String {
        let mut config = match &self.options {
            toml::Value::Table(t) => t.clone(),
            _ => Default::default(),
        };
        config.insert("model".into(), toml::Value::String(self.model.clone()));
        plugin_config_json(&toml::Value::Table(config))
    }
}

fn default_ai_response_timeout_ms() -> u64 {
    60_000
}

/// The AI response cache of a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiCacheConfig {
    /// How long an answer is served from the cache, in seconds (default 300).
    #[serde(default = "default_cache_ttl_secs")]
    pub ttl_secs: u64,
    /// Memory the cached answers may take, in MiB (default 64).
    #[serde(default = "default_cache_mb")]
    pub max_mb: u64,
    /// Also cache requests with `temperature` above 0, whose answers are
    /// meant to vary (default false).
    #[serde(default)]
    pub include_nonzero_temperature: bool,
}

fn default_cache_ttl_secs() -> u64 {
    300
}

fn default_cache_mb() -> u64 {
    64
}

impl Config {
    /// Where usage is recorded: `ai.usage_db`, or the variable
    /// `ai.usage_db_env` names, as a SQLite path resolved against the
    /// config file's directory or a PostgreSQL URL. The problem names the
    /// field at fault and never shows a password.
    pub fn usage_store(&self) -> Result<UsageStore, Problem> {
        let ai = &self.ai;
        let problem = |path: &str, message: String| Problem {
            path: path.to_owned(),
            message,
        };
        let setting = match &ai.usage_db_env {
            Some(_) if ai.usage_db_given => {
                return Err(problem(
                    "ai.usage_db_env",
                    "set usage_db or usage_db_env, not both".into(),
                ));
            }
            Some(var) => match std::env::var(var) {
                Ok(value) if !value.is_empty() => value,
                _ => {
                    return Err(problem(
                        "ai.usage_db_env",
                        format!("environment variable {var} is not set"),
                    ));
                }
            },
            None => ai.usage_db.to_string_lossy().into_owned(),
        };
        let field = ai.usage_field();
        if ai.usage_instance.as_deref() == Some("") {
            return Err(problem("ai.usage_instance", "must not be empty".into()));
        }
        if setting.is_empty() {
            return Err(problem(field, "must not be empty".into()));
        }
        let ca = ai.usage_db_ca.as_ref().map(|ca| self.resolve(ca));
        if UsageStore::is_postgres_url(&setting) {
            if let Some(ca) = &ca
                && let Err(e) = weir_core::tls::ca_file(ca)
            {
                return Err(problem("ai.usage_db_ca", e));
            }
            let instance = match &ai.usage_instance {
                Some(instance) => instance.clone(),
                None => PostgresStore::default_instance(),
            };
            return PostgresStore::new(&setting, &instance, ca)
                .map(UsageStore::Postgres)
                .map_err(|message| problem(field, message));
        }
        if ca.is_some() {
            return Err(problem(
                "ai.usage_db_ca",
                "only used with a postgres:// usage store".into(),
            ));
        }
        if setting.contains("://") {
            return Err(problem(
                field,
                format!(
                    "{}: a usage store is a file path or a postgres:// or postgresql:// URL",
                    redact_url(&setting)
                ),
            ));
        }
        Ok(UsageStore::Sqlite(self.resolve(std::path::Path::new(&setting))))
    }

    /// Problems with the usage store settings (see [`Config::usage_store`]),
    /// for [`Config::validate`]. With AI routes (which open the store), a
    /// SQLite file's directory must exist: the file is created, never its
    /// directory.
    pub fn usage_store_problems(&self) -> Vec<Problem> {
        match self.usage_store() {
            Err(problem) => vec![problem],
            Ok(UsageStore::Sqlite(file)) if self.has_ai_routes() => file
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty() && !dir.is_dir())
                .map(|dir| Problem {
                    path: self.ai.usage_field().into(),
                    message: format!("{}: its directory {} does not exist", file.display(), dir.display()),
                })
                .into_iter()
                .collect(),
            Ok(_) => Vec::new(),
        }
    }

    pub(super) fn ai_route_problems(&self, at: &str, ai: &AiRouteConfig) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| problems.push(Problem { path, message });
        if ai.targets.is_empty() {
            problem(format!("{at}.targets"), "at least one target is required".into());
        }
        if ai.max_attempts == Some(0) {
            problem(format!("{at}.max_attempts"), "must be at least 1".into());
        }
        if let Some(cache) = &ai.cache {
            if cache.ttl_secs == 0 {
                problem(format!("{at}.cache.ttl_secs"), "must be at least 1".into());
            }
            if cache.max_mb == 0 {
                problem(format!("{at}.cache.max_mb"), "must be at least 1".into());
            }
        }
        let mut names = BTreeSet::new();
        for (j, target) in ai.targets.iter().enumerate() {
            let at = format!("{at}.targets[{j}]");
            if target.name.is_empty() {
                problem(format!("{at}.name"), "must not be empty".into());
            } else if !names.insert(&target.name) {
                problem(format!("{at}.name"), format!("duplicate target name {:?}", target.name));
            }
            if !valid_plugin_name(target.shim.as_str()) {
                problem(
                    format!("{at}.shim"),
                    format!("{:?}: plugin names use letters, digits, '-' and '_'", target.shim.0),
                );
            }
            if let Err(e) = parse_base_url(&target.base_url) {
                problem(format!("{at}.base_url"), e);
            }
            if target.model.is_empty() {
                problem(format!("{at}.model"), "must not be empty".into());
            }
            if let Some(secret) = &target.key_secret
                && !self.secrets.contains_key(secret)
            {
                problem(format!("{at}.key_secret"), format!("unknown secret {secret:?}"));
            }
            if target.weight == 0 {
                problem(format!("{at}.weight"), "must be at least 1".into());
            }
            if target.connect_timeout_ms == 0 {
                problem(format!("{at}.connect_timeout_ms"), "must be at least 1".into());
            }
            if target.response_timeout_ms == 0 {
                problem(format!("{at}.response_timeout_ms"), "must be at least 1".into());
            }
            if target.eject_ms == 0 {
                problem(format!("{at}.eject_ms"), "must be at least 1".into());
            }
            if !target.options.is_table() {
                problem(format!("{at}.options"), "must be a table".into());
            }
            if let Some(ca) = &target.ca {
                let full = self.resolve(ca);
                if !full.is_file() {
                    problem(format!("{at}.ca"), format!("no such file {}", full.display()));
                }
            }
        }
        problems
    }
}

/// The first-party plugin that publishes prompt templates under a path
/// prefix of its own (`plugins/prompt-template`).
const PROMPT_TEMPLATE: &str = "prompt-template";

/// Its `prefix` when the route's config sets none.
const PROMPT_TEMPLATE_DEFAULT_PREFIX: &str = "/prompts/";

/// A `prompt-template` plugin's `prefix` must lie under its route's
/// `path_prefix` (at a segment boundary): requests under a prefix outside
/// it never reach the route, so its templates could never be called.
/// `at` is the plugin's place in the route (`routes[i].plugins[j]`). A
/// prefix that is not a string or does not start with `/` is left to the
/// plugin's own `configure`, which names it.
pub(super) fn prompt_template_problems(at: &str, route: &RouteConfig, plugin: &RoutePlugin) -> Vec<Problem> {
    if plugin.name.as_str() != PROMPT_TEMPLATE {
        return Vec::new();
    }
    let (prefix, which) = match plugin.config.get("prefix") {
        None => (PROMPT_TEMPLATE_DEFAULT_PREFIX, "the default prefix"),
        Some(toml::Value::String(prefix)) if prefix.starts_with('/') => (prefix.as_str(), "prefix"),
        Some(_) => return Vec::new(),
    };
    let calls = if prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    let base = route.path_prefix.trim_end_matches('/');
    if base.is_empty() || calls.starts_with(&format!("{base}/")) {
        return Vec::new();
    }
    vec![Problem {
        path: format!("{at}.config.prefix"),
        message: format!(
            "{which} {prefix:?} lies outside the route's path_prefix {:?}: template calls under it never reach \
             this route (set a prefix under {:?})",
            route.path_prefix,
            format!("{base}/")
        ),
    }]
}

/// A target's base URL: scheme and authority, and a path prefix (no
/// trailing `/`) the shim's paths are appended to.
pub fn parse_base_url(text: &str) -> Result<(Target, String), String> {
    let uri: http::Uri = text.parse().map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    let scheme = uri.scheme().cloned().ok_or_else(|| format!("{text:?} has no scheme"))?;
    if uri.query().is_some() {
        return Err(format!("{text:?}: a base URL has no query"));
    }
    let base = format!(
        "{}://{}",
        scheme,
        uri.authority().map(|a| a.as_str()).unwrap_or_default()
    );
    let target = parse_target(&base)?;
    Ok((target, uri.path().trim_end_matches('/').to_string()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(ai: &str) -> Result<Config, super::super::ConfigError> {
        let text = format!("[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[ai]\n{ai}\n");
        Config::parse(&text, Path::new("/etc/weir/weir.toml"), Path::new("/etc/weir"))
    }

    fn config(ai: &str) -> Config {
        parse(ai).expect("config parses")
    }

    /// The one usage store problem of `[ai]` holding `ai`, whether
    /// validation or opening the store finds it.
    fn problem(ai: &str) -> Problem {
        let problems = match parse(ai) {
            Ok(config) => config.usage_store_problems(),
            Err(error) => error.problems,
        };
        assert_eq!(problems.len(), 1, "{ai}: {problems:?}");
        problems[0].clone()
    }

    #[test]
    fn the_usage_store_is_a_sqlite_file_beside_the_config_by_default() {
        let store = config("").usage_store().unwrap();
        assert_eq!(store, UsageStore::Sqlite(PathBuf::from("/etc/weir/weir-usage.db")));
        let store = config("usage_db = \"/var/lib/weir/usage.db\"").usage_store().unwrap();
        assert_eq!(store, UsageStore::Sqlite(PathBuf::from("/var/lib/weir/usage.db")));
    }

    #[test]
    fn a_postgres_url_is_a_shared_store_shown_without_its_password() {
        let config = config("usage_db = \"postgresql://weir:hunter2@db.internal:5432/weir\"");
        let UsageStore::Postgres(store) = config.usage_store().unwrap() else {
            panic!("not a PostgreSQL store")
        };
        assert_eq!(store.shown(), "postgresql://weir:***@db.internal:5432/weir");
        assert_eq!(store.instance(), PostgresStore::default_instance());
        assert!(!format!("{config:?}").contains("hunter2"));

        let named = self::config("usage_db = \"postgres://db/weir\"\nusage_instance = \"eu-1\"");
        let UsageStore::Postgres(store) = named.usage_store().unwrap() else {
            panic!("not a PostgreSQL store")
        };
        assert_eq!(store.instance(), "eu-1");
    }

    #[test]
    fn usage_store_problems_name_the_field_and_hide_the_password() {
        let both = problem("usage_db = \"usage.db\"\nusage_db_env = \"WEIR_USAGE_DB\"");
        assert_eq!(both.path, "ai.usage_db_env");
        assert_eq!(both.message, "set usage_db or usage_db_env, not both");

        let unset = problem("usage_db_env = \"WEIR_TEST_USAGE_DB_NEVER_SET\"");
        assert_eq!(unset.path, "ai.usage_db_env");
        assert_eq!(
            unset.message,
            "environment variable WEIR_TEST_USAGE_DB_NEVER_SET is not set"
        );

        for (ai, path, shown) in [
            (
                "usage_db = \"postgres://weir:hunter2@db:port/weir\"",
                "ai.usage_db",
                "postgres://weir:***@db:port/weir",
            ),
            (
                "usage_db = \"postgres://weir:hunter2@db/weir?sslmode=verify\"",
                "ai.usage_db",
                "sslmode=verify:",
            ),
            (
                "usage_db = \"postgres://weir:hunter2@db/weir?sslmode=verify-full\"\nusage_db_ca = \"absent.pem\"",
                "ai.usage_db_ca",
                "absent.pem",
            ),
            (
                "usage_db = \"weir.db\"\nusage_db_ca = \"absent.pem\"",
                "ai.usage_db_ca",
                "only used with a postgres://",
            ),
            (
                "usage_db = \"mysql://weir:hunter2@db/weir\"",
                "ai.usage_db",
                "mysql://weir:***@db/weir",
            ),
            ("usage_db = \"\"", "ai.usage_db", "must not be empty"),
            (
                "usage_db = \"postgres://db/weir\"\nusage_instance = \"\"",
                "ai.usage_instance",
                "must not be empty",
            ),
        ] {
            let problem = problem(ai);
            assert_eq!(problem.path, path, "{ai}");
            assert!(problem.message.contains(shown), "{ai}: {}", problem.message);
            assert!(!problem.message.contains("hunter2"), "{ai}: {}", problem.message);
        }
        assert!(config("").usage_store_problems().is_empty());
    }
}
