//! Plugin projects: `weir plugin new` scaffolds one from a template in
//! Rust, JavaScript/TypeScript, Python or C, and `weir plugin build` turns
//! one into a component, checks it against the contract and optionally
//! installs it into a plugin directory.
//!
//! Each language lives in its own module with the same three functions:
//! `detect` (is this directory a project in that language), `scaffold`
//! (write the template) and `build` (produce the component; it is given
//! the project directory and the output path already made absolute). Missing tools
//! are reported by name with the command that installs them.

pub mod c;
pub mod js;
pub mod python;
pub mod rust;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The contract the gateway speaks, written into every project's
/// `wit/plugin.wit` (and refreshed on every build).
pub const CONTRACT_WIT: &str = include_str!("../../../wit/plugin.wit");

/// A language plugins can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the `weir-sdk` crate.
    Rust,
    /// JavaScript or TypeScript, through componentize-js.
    Js,
    /// Python, through componentize-py.
    Python,
    /// C, through wit-bindgen's C generator, clang and wasi-libc.
    C,
}

impl Lang {
    /// Every language, in the order projects are detected.
    pub const ALL: [Lang; 4] = [Lang::Rust, Lang::Js, Lang::Python, Lang::C];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
            Lang::C => "c",
        }
    }

    fn detect(self, dir: &Path) -> bool {
        match self {
            Lang::Rust => rust::detect(dir),
            Lang::Js => js::detect(dir),
            Lang::Python => python::detect(dir),
            Lang::C => c::detect(dir),
        }
    }
}

/// Why a project could not be created or built.
#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    /// A tool the language needs is not installed.
    #[error("{tool} is needed to build {lang} plugins and was not found; install it with: {install}")]
    Missing {
        /// The language.
        lang: &'static str,
        /// The missing tool.
        tool: String,
        /// The command (or package) that installs it.
        install: String,
    },
    /// A build step failed; the message carries the tool's own output.
    #[error("{0}")]
    Failed(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The arguments or the project are not usable.
    #[error("{0}")]
    Invalid(String),
}

/// Shorthand for an I/O error on `path`.
pub fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ToolchainError + '_ {
    move |source| ToolchainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `contents` to `path`, creating parent directories.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), ToolchainError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    std::fs::write(path, contents).map_err(io_error(path))
}

/// Run `command`; on failure the error shows the command and its output.
/// A program that cannot be started is reported as missing, with
/// `install` as the remedy.
pub fn run(mut command: Command, lang: Lang, install: &str) -> Result<String, ToolchainError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let shown = format!(
        "{program} {}",
        command
            .get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ToolchainError::Missing {
                lang: lang.name(),
                tool: program,
                install: install.to_string(),
            });
        }
        Err(e) => return Err(ToolchainError::Failed(format!("`{shown}` could not start: {e}"))),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(ToolchainError::Failed(format!(
            "`{shown}` failed ({}):\n{stdout}{stderr}",
            output.status
        )));
    }
    Ok(stdout)
}

/// The language of the project in `dir`.
pub fn detect(dir: &Path) -> Result<Lang, ToolchainError> {
    if !dir.is_dir() {
        return Err(ToolchainError::Invalid(format!("{} is not a directory", dir.display())));
    }
    Lang::ALL.into_iter().find(|lang| lang.detect(dir)).ok_or_else(|| {
        ToolchainError::Invalid(format!(
            "{} is not a plugin project: expected Cargo.toml (Rust), package.json (JavaScript/TypeScript), \
             app.py (Python) or a .c file (C)",
            dir.display()
        ))
    })
}

/// A plugin name: what the file in the plugin directory will be called.
pub fn check_name(name: &str) -> Result<(), ToolchainError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ToolchainError::Invalid(format!(
            "{name:?} is not a plugin name: use lowercase letters, digits and '-', starting with a letter"
        )))
    }
}

/// Create the project `dir/NAME` for `lang` from its template.
pub fn new_project(name: &str, lang: Lang, dir: &Path) -> Result<PathBuf, ToolchainError> {
    check_name(name)?;
    let project = dir.join(name);
    if project.exists()
        && std::fs::read_dir(&project)
            .map_err(io_error(&project))?
            .next()
            .is_some()
    {
        return Err(ToolchainError::Invalid(format!(
            "{} already exists and is not empty",
            project.display()
        )));
    }
    std::fs::create_dir_all(&project).map_err(io_error(&project))?;
    write_file(&project.join("wit").join("plugin.wit"), CONTRACT_WIT)?;
    match lang {
        Lang::Rust => rust::scaffold(name, &project)?,
        Lang::Js => js::scaffold(name, &project)?,
        Lang::Python => python::scaffold(name, &project)?,
        Lang::C => c::scaffold(name, &project)?,
    }
    Ok(project)
}

/// A built plugin.
#[derive(Debug)]
pub struct Built {
    /// The project's language.
    pub lang: Lang,
    /// The component.
    pub wasm: PathBuf,
    /// Where it was installed, if it was.
    pub installed: Option<PathBuf>,
}

/// The plugin's name: the name of the project directory `dir` (absolute).
fn project_name(dir: &Path) -> Result<String, ToolchainError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    check_name(&name).map_err(|_| {
        ToolchainError::Invalid(format!(
            "the project directory's name {name:?} is used as the plugin's name and must be lowercase letters, digits and '-'"
        ))
    })?;
    Ok(name)
}

/// Build the project in `dir` into `dir/build/NAME.wasm`, check it against
/// the contract, and copy it into `install` (a plugin directory) if given.
pub async fn build(dir: &Path, install: Option<&Path>) -> Result<Built, ToolchainError> {
    // Absolute, so tools run inside the project see the same paths.
    let dir = &dir.canonicalize().map_err(io_error(dir))?;
    let lang = detect(dir)?;
    let name = project_name(dir)?;
    // The contract the gateway speaks wins over the project's copy.
    write_file(&dir.join("wit").join("plugin.wit"), CONTRACT_WIT)?;
    let wasm = dir.join("build").join(format!("{name}.wasm"));
    if let Some(parent) = wasm.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let project = dir.to_path_buf();
    let out = wasm.clone();
    tokio::task::spawn_blocking(move || match lang {
        Lang::Rust => rust::build(&project, &out),
        Lang::Js => js::build(&project, &out),
        Lang::Python => python::build(&project, &out),
        Lang::C => c::build(&project, &out),
    })
    .await
    .map_err(|e| ToolchainError::Failed(format!("the build panicked: {e}")))??;
    if !wasm.is_file() {
        return Err(ToolchainError::Failed(format!(
            "the {} build finished but wrote no component at {}",
            lang.name(),
            wasm.display()
        )));
    }
    // The compile lands in the default compile cache, where a gateway
    // loading the plugin finds it.
    let cache = weir_plugins::engine::CompileCache::default_dir();
    validate(&wasm, &name, cache.as_deref()).await?;
    let installed = match install {
        Some(plugin_dir) => Some(install_into(&wasm, plugin_dir, &name)?),
        None => None,
    };
    Ok(Built { lang, wasm, installed })
}

/// Compile and link `wasm` the way the gateway would, so a component that
/// does not fit the contract is caught at build time. The compiled code is
/// kept in `cache_dir` (none: a throwaway cache, so it always compiles).
pub async fn validate(wasm: &Path, name: &str, cache_dir: Option<&Path>) -> Result<(), ToolchainError> {
    let scratch = tempfile::tempdir().map_err(io_error(Path::new("temporary directory")))?;
    let plugins = scratch.path().join("plugins");
    std::fs::create_dir_all(&plugins).map_err(io_error(&plugins))?;
    std::fs::copy(wasm, plugins.join(format!("{name}.wasm"))).map_err(io_error(wasm))?;
    let config_file = scratch.path().join("weir.toml");
    let cache = cache_dir.map_or_else(|| scratch.path().join("cache"), Path::to_path_buf);
    write_file(
        &config_file,
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n[plugins]\ndir = \"plugins\"\ncache_dir = {:?}\n",
            cache.display().to_string()
        ),
    )?;
    let config = weir_config::Config::load(&config_file).map_err(|e| ToolchainError::Failed(e.to_string()))?;
    let state = std::sync::Arc::new(weir_state::SharedState::memory());
    let runtime =
        weir_plugins::PluginRuntime::new(&config, state).map_err(|e| ToolchainError::Failed(format!("{e:#}")))?;
    let plugin_name = weir_config::PluginName(name.into());
    runtime
        .compile(&plugins, &plugin_name, None)
        .await
        .map(|_| ())
        .map_err(|e| ToolchainError::Failed(format!("{} does not fit the plugin contract: {e}", wasm.display())))
}

/// Copy `wasm` into `plugin_dir` as `NAME.wasm`, whole: written beside it
/// and renamed over, so a watching gateway never reads half a file.
fn install_into(wasm: &Path, plugin_dir: &Path, name: &str) -> Result<PathBuf, ToolchainError> {
    std::fs::create_dir_all(plugin_dir).map_err(io_error(plugin_dir))?;
    let target = plugin_dir.join(format!("{name}.wasm"));
    let staging = plugin_dir.join(format!(".{name}.wasm.installing"));
    std::fs::copy(wasm, &staging).map_err(io_error(&staging))?;
    std::fs::rename(&staging, &target).map_err(io_error(&target))?;
    Ok(target)
}
