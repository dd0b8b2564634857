//! JavaScript and TypeScript plugins: an npm project whose `src/plugin.js`
//! (or `src/plugin.ts`) exports `filter = { Handler }`, turned into a
//! component by `@bytecodealliance/componentize-js` (the SpiderMonkey
//! engine with the module pre-initialized inside it).
//!
//! The build installs the project's npm packages when they are missing,
//! writes the build script (`sdk/js/build.mjs`) into `build/weir-build.mjs`
//! and runs it with node: esbuild bundles the entry point and what it
//! imports (and compiles TypeScript), componentize-js does the rest. The
//! contract's TypeScript declarations are refreshed in
//! `types/weir-plugin.d.ts` on every build, as `wit/plugin.wit` is.

use std::path::Path;
use std::process::Command;

use super::{Lang, ToolchainError, io_error, run, write_file};

/// The componentize-js release projects are made with.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
/// The oldest Node.js componentize-js 0.23 runs on (its parser, oxc-parser,
/// needs 20).
const NODE_MAJOR_MIN: u32 = 20;

const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js";

const NODE_INSTALL: &str = "apt-get install nodejs npm (Node.js 20 or newer: Debian 13 has it; \
     Debian 12's nodejs is 18, too old)";
const NPM_INSTALL: &str = "apt-get install npm";

const BUILD_SCRIPT: &str = include_str!("../../../sdk/js/build.mjs");
const TYPES: &str = include_str!("../../../sdk/js/weir-plugin.d.ts");
const TEMPLATE_PACKAGE: &str = include_str!("../../../sdk/js/template/package.json");
/// The whole dependency tree, pinned: `npm ci` installs exactly this (a
/// fresh resolution can pick up transitive releases that break, and npm 9
/// skips platform binaries on a fresh install).
const TEMPLATE_LOCK: &str = include_str!("../../../sdk/js/template/package-lock.json");
const TEMPLATE_PLUGIN: &str = include_str!("../../../sdk/js/template/src/plugin.js");
const TEMPLATE_README: &str = include_str!("../../../sdk/js/template/README.md");
const TEMPLATE_TSCONFIG: &str = include_str!("../../../sdk/js/template/tsconfig.json");

/// A JavaScript or TypeScript project has a `package.json`.
pub fn detect(dir: &Path) -> bool {
    dir.join("package.json").is_file()
}

/// Write the template project.
pub fn scaffold(name: &str, dir: &Path) -> Result<(), ToolchainError> {
    write_file(&dir.join("package.json"), TEMPLATE_PACKAGE.replace("PLUGIN_NAME", name))?;
    write_file(
        &dir.join("package-lock.json"),
        TEMPLATE_LOCK.replace("PLUGIN_NAME", name),
    )?;
    write_file(
        &dir.join("src").join("plugin.js"),
        TEMPLATE_PLUGIN.replace("PLUGIN_NAME", name),
    )?;
    write_file(&dir.join("README.md"), TEMPLATE_README.replace("PLUGIN_NAME", name))?;
    write_file(&dir.join("tsconfig.json"), TEMPLATE_TSCONFIG)?;
    write_file(&dir.join("types").join("weir-plugin.d.ts"), TYPES)?;
    write_file(&dir.join(".gitignore"), "/node_modules\n/build\n")
}

/// Install the npm packages if any is missing, then bundle and componentize
/// with the build script.
pub fn build(dir: &Path, out: &Path) -> Result<(), ToolchainError> {
    check_node()?;
    let manifest = read_manifest(dir)?;
    let declared = declared_packages(&manifest);
    if !declared.iter().any(|p| p == COMPONENTIZE_JS) {
        return Err(ToolchainError::Invalid(format!(
            "{}: {COMPONENTIZE_JS} is not a dependency; add it with: \
             npm install --save-dev --save-exact {COMPONENTIZE_JS}@{COMPONENTIZE_JS_VERSION} \
             @bytecodealliance/preview2-shim@0.25.0",
            dir.join("package.json").display()
        )));
    }
    if declared.iter().any(|p| !installed(dir, p)) {
        npm_install(dir)?;
    }
    if !installed(dir, COMPONENTIZE_JS) {
        return Err(ToolchainError::Failed(format!(
            "npm install left {COMPONENTIZE_JS} missing from {}",
            dir.join("node_modules").display()
        )));
    }
    write_file(&dir.join("types").join("weir-plugin.d.ts"), TYPES)?;
    let script = dir.join("build").join("weir-build.mjs");
    write_file(&script, BUILD_SCRIPT)?;
    let mut node = Command::new("node");
    node.current_dir(dir).arg(&script).arg(out);
    run(node, Lang::Js, NODE_INSTALL)?;
    Ok(())
}

/// Node.js is installed and new enough.
fn check_node() -> Result<(), ToolchainError> {
    let mut node = Command::new("node");
    node.arg("--version");
    let version = run(node, Lang::Js, NODE_INSTALL)?;
    let version = version.trim();
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(major) if major >= NODE_MAJOR_MIN => Ok(()),
        _ => Err(ToolchainError::Missing {
            lang: Lang::Js.name(),
            tool: format!("Node.js {NODE_MAJOR_MIN} or newer (found {version})"),
            install: NODE_INSTALL.to_string(),
        }),
    }
}

/// `npm ci` when the project has a lock file, `npm install` otherwise.
fn npm_install(dir: &Path) -> Result<(), ToolchainError> {
    let mut npm = Command::new("npm");
    npm.current_dir(dir);
    if dir.join("package-lock.json").is_file() {
        npm.arg("ci");
    } else {
        npm.arg("install");
    }
    npm.args(["--no-audit", "--no-fund"]);
    run(npm, Lang::Js, NPM_INSTALL)?;
    Ok(())
}

fn read_manifest(dir: &Path) -> Result<serde_json::Value, ToolchainError> {
    let path = dir.join("package.json");
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    serde_json::from_str(&text).map_err(|e| ToolchainError::Invalid(format!("{}: {e}", path.display())))
}

/// The names in `dependencies` and `devDependencies`.
fn declared_packages(manifest: &serde_json::Value) -> Vec<String> {
    ["dependencies", "devDependencies"]
        .iter()
        .filter_map(|key| manifest.get(*key).and_then(|d| d.as_object()))
        .flat_map(|deps| deps.keys().cloned())
        .collect()
}

fn installed(dir: &Path, package: &str) -> bool {
    let mut path = dir.join("node_modules");
    path.extend(package.split('/'));
    path.join("package.json").is_file()
}
