//! Rust plugins: a `cdylib` crate on the `weir-sdk` crate, built with
//! cargo for `wasm32-wasip2` (rustc produces a component directly).
//!
//! The SDK is vendored into each new project (`weir-sdk/`), so a project
//! builds anywhere without a registry copy of the SDK.

use std::path::Path;
use std::process::Command;

use super::{Lang, ToolchainError, run, write_file};

const SDK_LIB: &str = include_str!("../../../sdk/rust/src/lib.rs");

/// The SDK's other source files, by path under `src/`.
const SDK_MODULES: &[(&str, &str)] = &[
    ("ai/mod.rs", include_str!("../../../sdk/rust/src/ai/mod.rs")),
    (
        "ai/openai/mod.rs",
        include_str!("../../../sdk/rust/src/ai/openai/mod.rs"),
    ),
    (
        "ai/openai/chunks.rs",
        include_str!("../../../sdk/rust/src/ai/openai/chunks.rs"),
    ),
    ("ai/stream.rs", include_str!("../../../sdk/rust/src/ai/stream.rs")),
    ("ai/testing.rs", include_str!("../../../sdk/rust/src/ai/testing.rs")),
    ("query.rs", include_str!("../../../sdk/rust/src/query.rs")),
    ("settings.rs", include_str!("../../../sdk/rust/src/settings.rs")),
    ("testing.rs", include_str!("../../../sdk/rust/src/testing.rs")),
];

const SDK_MANIFEST: &str = r#"[package]
name = "weir-sdk"
description = "Write Weir gateway plugins in Rust"
version = "0.1.0"
edition = "2024"
publish = false

[features]
# `weir_sdk::testing`, for the plugin's own tests (enable under [dev-dependencies]).
testing = ["dep:toml"]

[dependencies]
wit-bindgen = "0.46"
serde = { version = "1", features = ["derive"] }
serde_json = "1"
serde_path_to_error = "0.1"
toml = { version = "0.9", optional = true }
"#;

const TEMPLATE_LIB: &str = r#"//! PLUGIN_NAME: a Weir plugin. It adds `x-PLUGIN_NAME: on` to every request
//! and, when the route's config sets `greeting`, answers `/hello` itself.

use weir_sdk::{Action, Config, Plugin, Reply, Request, export_plugin};

struct PluginType {
    greeting: Option<String>,
}

/// The route's config. `validate` checks what the types cannot.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    greeting: Option<String>,
}

impl weir_sdk::Settings for Settings {
    fn validate(&self) -> Result<(), String> {
        if self.greeting.as_deref() == Some("") {
            return Err("greeting: must not be empty (leave it out to answer nothing)".into());
        }
        Ok(())
    }
}

impl Plugin for PluginType {
    fn configure(config: Config) -> Result<Self, String> {
        let settings: Settings = config.settings()?;
        Ok(PluginType {
            greeting: settings.greeting,
        })
    }

    fn on_request(&self, request: &Request) -> Action {
        if let (Some(greeting), "/hello") = (&self.greeting, request.path().as_str()) {
            return Action::Respond(Reply::new(200).text(greeting));
        }
        let _ = request.set_header("x-PLUGIN_NAME", "on");
        Action::Continue
    }
}

export_plugin!(PluginType);
"#;

const TEMPLATE_README: &str = r#"# PLUGIN_NAME

A Weir plugin in Rust. Build it into a component and install it into a
gateway's plugin directory (hot reload picks it up):

```sh
weir plugin build . --install /path/to/plugins
```

`weir plugin build` runs `cargo build --release --target wasm32-wasip2`
(install the target once with `rustup target add wasm32-wasip2`) and checks
the result against the plugin contract in `wit/plugin.wit`. The `weir-sdk`
crate is vendored in `weir-sdk/`; its documentation is in `weir-sdk/src/lib.rs`.

Use it on a route:

```toml
[[routes]]
name = "api"
upstream = "backend"
plugins = [{ name = "PLUGIN_NAME", config = { greeting = "hello" } }]
```
"#;

/// A Rust project has a `Cargo.toml`.
pub fn detect(dir: &Path) -> bool {
    dir.join("Cargo.toml").is_file()
}

/// Write the template crate and the vendored SDK.
pub fn scaffold(name: &str, dir: &Path) -> Result<(), ToolchainError> {
    let type_name = type_name(name);
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [lib]\ncrate-type = [\"cdylib\"]\n\n\
         [dependencies]\nweir-sdk = {{ path = \"weir-sdk\" }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n\
         # A workspace of its own, wherever the project sits.\n[workspace]\n\n\
         [profile.release]\nopt-level = \"s\"\nstrip = \"debuginfo\"\n"
    );
    write_file(&dir.join("Cargo.toml"), manifest)?;
    write_file(
        &dir.join("src").join("lib.rs"),
        TEMPLATE_LIB
            .replace("PluginType", &type_name)
            .replace("PLUGIN_NAME", name),
    )?;
    write_file(&dir.join("README.md"), TEMPLATE_README.replace("PLUGIN_NAME", name))?;
    write_file(&dir.join(".gitignore"), "/target\n/build\n")?;
    vendor_sdk(dir)
}

/// `weir-sdk/` inside the project, generating its bindings from the
/// project's `wit/`.
pub fn vendor_sdk(dir: &Path) -> Result<(), ToolchainError> {
    let sdk = dir.join("weir-sdk");
    write_file(&sdk.join("Cargo.toml"), SDK_MANIFEST)?;
    let lib = SDK_LIB.replace(r#"path: "../../wit""#, r#"path: "../wit""#);
    write_file(&sdk.join("src").join("lib.rs"), lib)?;
    for (path, text) in SDK_MODULES {
        write_file(&sdk.join("src").join(path), *text)?;
    }
    Ok(())
}

/// `cargo build --release --target wasm32-wasip2`, then copy the component.
pub fn build(dir: &Path, out: &Path) -> Result<(), ToolchainError> {
    let installed = run(
        {
            let mut c = Command::new("rustup");
            c.args(["target", "list", "--installed"]);
            c
        },
        Lang::Rust,
        "https://rustup.rs (rustup provides cargo and the wasm32-wasip2 target)",
    )?;
    if !installed.lines().any(|l| l.trim() == "wasm32-wasip2") {
        return Err(ToolchainError::Missing {
            lang: "rust",
            tool: "the wasm32-wasip2 target".into(),
            install: "rustup target add wasm32-wasip2".into(),
        });
    }
    let target_dir = dir.join("target");
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(dir)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir)
        // Settings of an enclosing cargo (tests run under one) must not leak in.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS");
    run(cargo, Lang::Rust, "https://rustup.rs")?;
    let package = package_name(dir)?;
    let built = target_dir
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    std::fs::copy(&built, out).map_err(|e| {
        ToolchainError::Failed(format!(
            "cargo built no component at {} ({e}); is the crate type \"cdylib\"?",
            built.display()
        ))
    })?;
    Ok(())
}

/// The `[package] name` of the crate in `dir`.
fn package_name(dir: &Path) -> Result<String, ToolchainError> {
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(super::io_error(&path))?;
    let manifest: toml::Table =
        toml::from_str(&text).map_err(|e| ToolchainError::Invalid(format!("{}: {e}", path.display())))?;
    manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .ok_or_else(|| ToolchainError::Invalid(format!("{}: no [package] name", path.display())))
}

/// `my-plugin` → `MyPlugin`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}
