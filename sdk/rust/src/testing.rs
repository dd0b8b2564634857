//! Helpers for a plugin crate's own tests (`#[cfg(test)]`), behind the
//! `testing` feature so that `toml` is built only for tests:
//!
//! ```toml
//! [dependencies]
//! weir-sdk = { path = "weir-sdk" }
//!
//! [dev-dependencies]
//! weir-sdk = { path = "weir-sdk", features = ["testing"] }
//! ```
//!
//! A plugin's README shows gateway configs; [`check_readme_configs`] keeps
//! them true by running each through the plugin's `configure`.

use crate::Config;

/// How many configs a README must show at least: one small, one using
/// most fields. Fewer means the README's TOML blocks no longer name the
/// plugin, and the check would pass on nothing.
pub const MIN_README_CONFIGS: usize = 2;

/// The `config` of every `[[routes.plugins]]` entry named `plugin` in the
/// ```` ```toml ```` blocks of `readme` (a Markdown page), as the gateway
/// hands it to `configure`; `{}` for an entry without one. Routes may be
/// written as `[[routes]]` or as a `[routes]` table.
///
/// # Panics
///
/// If a TOML block does not parse: an example that is not TOML is a
/// README bug the test should report.
pub fn readme_configs(readme: &str, plugin: &str) -> Vec<Config> {
    let mut configs = Vec::new();
    for block in readme.split("```toml\n").skip(1) {
        let text = block.split("```").next().unwrap_or_default();
        let doc: toml::Table =
            toml::from_str(text).unwrap_or_else(|e| panic!("a TOML block in the README: {e}\n{text}"));
        let routes = match doc.get("routes") {
            Some(toml::Value::Array(routes)) => routes.iter().collect(),
            Some(route) => vec![route],
            None => Vec::new(),
        };
        let entries = routes
            .into_iter()
            .filter_map(|route| route.get("plugins").and_then(toml::Value::as_array))
            .flatten()
            .filter(|entry| entry.get("name").and_then(toml::Value::as_str) == Some(plugin));
        for entry in entries {
            let config = entry
                .get("config")
                .cloned()
                .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
            let json = serde_json::to_string(&config).unwrap_or_else(|e| panic!("{plugin} config {config}: {e}"));
            configs.push(Config::new(json));
        }
    }
    configs
}

/// Run every config [`readme_configs`] finds through `configure` (the
/// plugin's [`Plugin::configure`](crate::Plugin::configure), natively).
///
/// ```ignore
/// #[test]
/// fn readme_configs_are_accepted() {
///     weir_sdk::testing::check_readme_configs(include_str!("../README.md"), "my-plugin", MyPlugin::configure);
/// }
/// ```
///
/// # Panics
///
/// If `configure` refuses one (naming it and the error), or the README
/// shows fewer than [`MIN_README_CONFIGS`].
pub fn check_readme_configs<T>(readme: &str, plugin: &str, configure: impl Fn(Config) -> Result<T, String>) {
    let configs = readme_configs(readme, plugin);
    assert!(
        configs.len() >= MIN_README_CONFIGS,
        "expected at least {MIN_README_CONFIGS} {plugin} configs in the README, found {}",
        configs.len()
    );
    for config in configs {
        let json = config.as_json().to_string();
        if let Err(e) = configure(config) {
            panic!("README config {json} refused: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = r#"# a-plugin

```toml
[[routes.plugins]]
name = "other"
config = { x = 1 }

[[routes.plugins]]
name = "a-plugin"
config = { keys = { alice = "k-1" } }
```

```sh
echo not toml
```

```toml
[[routes]]
name = "api"
plugins = [{ name = "a-plugin" }, { name = "a-plugin", config = { strip = false } }]
```
"#;

    #[test]
    fn configs_are_found_in_route_tables_and_arrays() {
        let configs: Vec<String> = readme_configs(README, "a-plugin")
            .iter()
            .map(|c| c.as_json().to_string())
            .collect();
        assert_eq!(configs, [r#"{"keys":{"alice":"k-1"}}"#, "{}", r#"{"strip":false}"#]);
        assert!(readme_configs(README, "absent").is_empty());
    }

    #[test]
    fn every_config_goes_through_configure() {
        let seen = std::cell::RefCell::new(Vec::new());
        check_readme_configs(README, "a-plugin", |config| {
            seen.borrow_mut().push(config.as_json().to_string());
            Ok(())
        });
        assert_eq!(seen.borrow().len(), 3);
    }

    #[test]
    #[should_panic(expected = r#"README config {"strip":false} refused: strip: no"#)]
    fn a_refused_config_fails_the_check() {
        check_readme_configs(README, "a-plugin", |config| match config.as_json() {
            r#"{"strip":false}"# => Err("strip: no".to_string()),
            _ => Ok(()),
        });
    }

    #[test]
    #[should_panic(expected = "expected at least 2 other configs")]
    fn too_few_configs_fail_the_check() {
        check_readme_configs(README, "other", |_| Ok(()));
    }

    #[test]
    #[should_panic(expected = "a TOML block in the README")]
    fn a_block_that_is_not_toml_fails() {
        readme_configs("```toml\n[[routes.plugins]\n```\n", "a-plugin");
    }
}
