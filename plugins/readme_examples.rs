//! Every config in a plugin's README.md must pass its config checks.
//! Shared by the first-party plugins through `#[path]`.

use crate::settings::Settings;

/// The plugin's name: its crate name.
const PLUGIN: &str = env!("CARGO_PKG_NAME");

/// The `config` of every `[[routes.plugins]]` entry for this plugin in
/// the README's TOML blocks, as the JSON the host would pass.
fn readme_configs() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut configs = Vec::new();
    for block in readme.split("```toml\n").skip(1) {
        let toml_text = block.split("```").next().unwrap_or_default();
        let doc: toml::Table = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
        let plugins = doc
            .get("routes")
            .and_then(|r| r.get("plugins"))
            .and_then(|p| p.as_array())
            .cloned()
            .unwrap_or_default();
        for plugin in plugins
            .iter()
            .filter(|p| p.get("name").and_then(|n| n.as_str()) == Some(PLUGIN))
        {
            let config = plugin
                .get("config")
                .cloned()
                .unwrap_or(toml::Value::Table(Default::default()));
            configs.push(serde_json::to_string(&config).unwrap());
        }
    }
    configs
}

#[test]
fn readme_examples_are_valid_configs() {
    let configs = readme_configs();
    assert!(configs.len() >= 2, "expected examples in README.md, found {configs:?}");
    for json in configs {
        if let Err(e) = Settings::from_json(&json) {
            panic!("README example {json} rejected: {e}");
        }
    }
}
