//! Python plugins: an `app.py` module built into a component by
//! `componentize-py` (pinned to one version, since its bindings and the
//! CPython it embeds change between releases).
//!
//! componentize-py looks for the resources of an exported interface in a
//! top-level module named after the interface, so the `handler` resource of
//! `filter` must be `filter.Handler`. The project keeps everything in
//! `app.py`; the build adds a small `filter` module that re-exports
//! `app.Handler` (a project's own `filter.py`, if it has one, wins).
//!
//! componentize-py snapshots the interpreter after importing `app`, and the
//! component has no file system at run time: every module the plugin uses
//! must be imported at the top of `app.py` (or something it imports).

use std::path::Path;
use std::process::Command;

use super::{Lang, ToolchainError, io_error, run, write_file};

/// The componentize-py release plugins are built with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

const INSTALL: &str = "pip install componentize-py==0.25.1";

const TEMPLATE_APP: &str = include_str!("../../../sdk/python/template/app.py");
const TEMPLATE_README: &str = include_str!("../../../sdk/python/template/README.md");

/// The `filter` module the build adds beside the project.
const FILTER_SHIM: &str = r#"# Written by `weir plugin build`: componentize-py takes the exported `filter`
# interface's `handler` resource from `filter.Handler`.
import app as _app

try:
    Handler = _app.Handler
except AttributeError:
    raise ImportError(
        "app.py must define `class Handler(filter.Handler)`, the plugin's "
        "implementation of the `handler` resource (see `weir plugin new --lang python`)"
    ) from None

# A method left out would only show when the gateway calls `configure`.
_missing = sorted(getattr(Handler, "__abstractmethods__", ()))
if _missing:
    raise ImportError(
        "app.Handler does not define " + ", ".join(_missing)
        + ": every method of the `handler` resource is needed, even those `interests` turns off"
    )
"#;

/// A Python project has an `app.py` (and is not a Rust or JS project).
pub fn detect(dir: &Path) -> bool {
    dir.join("app.py").is_file() && !dir.join("Cargo.toml").is_file() && !dir.join("package.json").is_file()
}

/// Write the template: `app.py`, `README.md` and `.gitignore`.
pub fn scaffold(name: &str, dir: &Path) -> Result<(), ToolchainError> {
    write_file(&dir.join("app.py"), TEMPLATE_APP.replace("PLUGIN_NAME", name))?;
    write_file(&dir.join("README.md"), TEMPLATE_README.replace("PLUGIN_NAME", name))?;
    write_file(&dir.join(".gitignore"), "/build\n/bindings\n__pycache__/\n")
}

/// `componentize-py -d wit -w plugin componentize app -o OUT`, run in the
/// project with the `filter` shim on the module path.
pub fn build(dir: &Path, out: &Path) -> Result<(), ToolchainError> {
    check_version()?;
    let shim = tempfile::tempdir().map_err(io_error(Path::new("temporary directory")))?;
    write_file(&shim.path().join("filter.py"), FILTER_SHIM)?;
    let mut command = Command::new("componentize-py");
    command
        .current_dir(dir)
        .arg("-d")
        .arg(dir.join("wit"))
        .args(["-w", "plugin", "componentize", "-p"])
        .arg(dir)
        .arg("-p")
        .arg(shim.path())
        .arg("app")
        .arg("-o")
        .arg(out)
        // Python errors are what matters; componentize-py's own backtrace is noise.
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0");
    run(command, Lang::Python, INSTALL)?;
    Ok(())
}

/// `componentize-py --version` must report the pinned version.
fn check_version() -> Result<(), ToolchainError> {
    let mut command = Command::new("componentize-py");
    command.arg("--version");
    let reported = run(command, Lang::Python, INSTALL)?;
    let found = reported.split_whitespace().last().unwrap_or("").to_string();
    if found == COMPONENTIZE_PY_VERSION {
        return Ok(());
    }
    Err(ToolchainError::Missing {
        lang: Lang::Python.name(),
        tool: format!(
            "componentize-py {COMPONENTIZE_PY_VERSION} ({} is installed)",
            if found.is_empty() { "an unknown version" } else { &found }
        ),
        install: INSTALL.into(),
    })
}
