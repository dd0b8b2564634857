//! C plugins: C sources compiled with clang for `wasm32-wasi` against
//! wasi-libc, on bindings generated from the contract by wit-bindgen's C
//! generator (used here as a library, so no `wit-bindgen` CLI is needed).
//!
//! `build` runs, in `DIR`:
//!
//! 1. bindings: `wit/` → `build/bindings/plugin.h`, `plugin.c` and
//!    `plugin_component_type.o` (the world's type, linked into the module so
//!    that the component encoder knows the world);
//! 2. clang: every `*.c` at the top level and in `src/`, plus the generated
//!    `plugin.c`, compiled with `-O2` and linked as a WASI reactor
//!    (`-mexec-model=reactor`, no `main`) into `build/NAME.core.wasm`;
//! 3. componentize: the core module plus the WASI preview1 reactor adapter
//!    (from wasmtime's `wasi-preview1-component-adapter-provider`) become a
//!    component, written to `out`.
//!
//! Needs clang with the wasm32 target and wasm-ld, wasi-libc and the
//! compiler-rt builtins for wasm32; on Debian/Ubuntu all four come from
//! `apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Lang, ToolchainError, io_error, run, write_file};

/// How to install everything a C build needs (Debian 12 / Ubuntu).
const INSTALL: &str = "apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32";

/// The world the bindings are generated for.
const WORLD: &str = "weir:plugin/plugin@0.1.0";

/// Where the generated bindings go, relative to the project.
const BINDINGS_DIR: &str = "build/bindings";

const TEMPLATE_C: &str = include_str!("../../../sdk/c/template/filter.c");
const TEMPLATE_README: &str = include_str!("../../../sdk/c/template/README.md");

/// A C project has at least one `.c` file at its top level or in `src/`.
pub fn detect(dir: &Path) -> bool {
    !sources(dir).is_empty()
}

/// Write the template project.
pub fn scaffold(name: &str, dir: &Path) -> Result<(), ToolchainError> {
    write_file(
        &dir.join("src").join("filter.c"),
        TEMPLATE_C.replace("PLUGIN_NAME", name),
    )?;
    write_file(&dir.join("README.md"), TEMPLATE_README.replace("PLUGIN_NAME", name))?;
    write_file(&dir.join(".gitignore"), "/build\n")
}

/// Generate the bindings, compile and link the core module, and turn it
/// into a component at `out`.
pub fn build(dir: &Path, out: &Path) -> Result<(), ToolchainError> {
    let toolchain = Toolchain::find()?;
    let sources = sources(dir);
    if sources.is_empty() {
        return Err(ToolchainError::Invalid(format!(
            "{} has no .c files (at its top level or in src/)",
            dir.display()
        )));
    }
    let bindings = dir.join(BINDINGS_DIR);
    let generated = generate_bindings(&dir.join("wit"), &bindings)?;

    let core = out.with_extension("core.wasm");
    let mut clang = Command::new(&toolchain.clang);
    clang
        .current_dir(dir)
        .arg("--target=wasm32-wasi")
        .arg(format!("--sysroot={}", toolchain.sysroot.display()))
        .args(["-O2", "-mexec-model=reactor", "-Wall"])
        .arg("-I")
        .arg(&bindings)
        .arg("-I")
        .arg(dir.join("src"))
        .arg("-I")
        .arg(dir)
        .args(&sources)
        .args(&generated)
        // A reactor has no `main`; its exports are the bindings' functions
        // (marked with `export_name`) and `_initialize`.
        .args(["-Wl,--no-entry", "-Wl,--strip-debug", "-o"])
        .arg(&core);
    run(clang, Lang::C, INSTALL)?;

    let module = std::fs::read(&core).map_err(io_error(&core))?;
    let component = componentize(&module)
        .map_err(|e| ToolchainError::Failed(format!("{}: could not make a component: {e:#}", core.display())))?;
    write_file(out, component)
}

/// The project's C sources: `*.c` at the top level and in `src/`, sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("src")] {
        let Ok(entries) = std::fs::read_dir(&sub) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "c") && path.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The compiler and the wasi-libc sysroot.
struct Toolchain {
    clang: PathBuf,
    sysroot: PathBuf,
}

impl Toolchain {
    fn find() -> Result<Toolchain, ToolchainError> {
        let missing = |tool: &str| ToolchainError::Missing {
            lang: Lang::C.name(),
            tool: tool.to_string(),
            install: INSTALL.to_string(),
        };
        // `CC` if it names a clang, else `clang`, else Debian's `clang-14`.
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(cc) = std::env::var_os("CC").map(PathBuf::from)
            && cc.file_name().is_some_and(|n| n.to_string_lossy().starts_with("clang"))
        {
            candidates.push(cc);
        }
        candidates.extend(["clang", "clang-14"].map(PathBuf::from));
        let clang = candidates
            .into_iter()
            .find(|c| {
                Command::new(c)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .ok_or_else(|| missing("clang"))?;
        let targets = Command::new(&clang)
            .arg("--print-targets")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if !targets.lines().any(|l| l.trim_start().starts_with("wasm32")) {
            return Err(missing(&format!("{} with the wasm32 target", clang.display())));
        }

        // wasi-libc: `WASI_SYSROOT`, Debian's multiarch layout under /usr,
        // or a wasi-sdk.
        let mut roots: Vec<PathBuf> = Vec::new();
        if let Some(root) = std::env::var_os("WASI_SYSROOT") {
            roots.push(root.into());
        }
        if let Some(sdk) = std::env::var_os("WASI_SDK_PATH") {
            roots.push(PathBuf::from(sdk).join("share").join("wasi-sysroot"));
        }
        roots.extend(["/usr", "/opt/wasi-sdk/share/wasi-sysroot", "/usr/share/wasi-sysroot"].map(PathBuf::from));
        let sysroot = roots
            .into_iter()
            .find(|r| r.join("lib").join("wasm32-wasi").join("libc.a").is_file())
            .ok_or_else(|| missing("wasi-libc (the C library for wasm32-wasi)"))?;

        // The linker and compiler-rt's builtins, as clang would look them up.
        let linker = clang_print(&clang, &sysroot, "--print-prog-name=wasm-ld");
        if !Path::new(&linker).is_absolute() {
            return Err(missing("wasm-ld (from lld)"));
        }
        let builtins = clang_print(&clang, &sysroot, "--print-libgcc-file-name");
        if !Path::new(&builtins).is_file() {
            return Err(missing(&format!("the wasm32 compiler-rt builtins ({builtins})")));
        }
        Ok(Toolchain { clang, sysroot })
    }
}

/// What `clang --target=wasm32-wasi --sysroot=ROOT FLAG` prints.
fn clang_print(clang: &Path, sysroot: &Path, flag: &str) -> String {
    Command::new(clang)
        .arg("--target=wasm32-wasi")
        .arg(format!("--sysroot={}", sysroot.display()))
        .arg("-rtlib=compiler-rt")
        .arg(flag)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Generate the C bindings of the world in `wit` into `into`; returns the
/// generated files to compile and link (`plugin.c`,
/// `plugin_component_type.o`).
fn generate_bindings(wit: &Path, into: &Path) -> Result<Vec<PathBuf>, ToolchainError> {
    let failed = |e: anyhow::Error| ToolchainError::Failed(format!("{}: {e:#}", wit.display()));
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_path(wit).map_err(failed)?;
    let world = resolve.select_world(&[package], Some(WORLD)).map_err(failed)?;
    let mut files = wit_bindgen_core::Files::default();
    let opts = wit_bindgen_c::Opts {
        // The glue drops the borrowed `request`/`response` handle when an
        // export returns (the component model requires it), so plugin code
        // never has to.
        autodrop_borrows: wit_bindgen_c::Enabled::Yes,
        ..Default::default()
    };
    opts.build().generate(&resolve, world, &mut files).map_err(failed)?;
    if into.exists() {
        std::fs::remove_dir_all(into).map_err(io_error(into))?;
    }
    let mut link = Vec::new();
    for (name, contents) in files.iter() {
        let path = into.join(name);
        write_file(&path, contents)?;
        if name.ends_with(".c") || name.ends_with(".o") {
            link.push(path);
        }
    }
    Ok(link)
}

/// The core module plus the WASI preview1 reactor adapter, as a component.
fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    use wasi_preview1_component_adapter_provider::{
        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    };
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
}
