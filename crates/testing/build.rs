//! Builds the first-party plugins (`plugins/`) and the guest test programs
//! (`host/tests/guests/`) for `wasm32-wasip2`, so the tests and the benches
//! use plugins built from this tree. This is the only build script that
//! builds plugins: the gateway itself builds without them. The nested cargo
//! uses its own target directory so it never waits on the outer build's
//! lock.

use std::path::{Path, PathBuf};
use std::process::Command;

fn crate_dirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().join("Cargo.toml").is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("crates/testing is inside the workspace")
        .to_path_buf();
    for watched in ["plugins", "sdk/rust", "wit", "host/tests/guests", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is TARGET/PROFILE/build/weir-testing-HASH/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.join("target"));
    let wasm_target_dir = target_dir.join("wasm-plugins");
    let wasm_out = wasm_target_dir.join("wasm32-wasip2").join("plugin");
    println!("cargo:rustc-env=WEIR_BUILT_PLUGINS={}", wasm_out.display());

    let mut packages = crate_dirs(&root.join("plugins"));
    packages.extend(crate_dirs(&root.join("host/tests/guests")));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args([
            "build",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&wasm_target_dir);
    for p in &packages {
        command.args(["-p", p]);
    }
    // Settings meant for the outer build must not leak into this one.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "TARGET",
        "HOST",
        "OPT_LEVEL",
        "PROFILE",
        "DEBUG",
    ] {
        command.env_remove(var);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the plugins: {e}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
            "\nhint: run `rustup target add wasm32-wasip2` (or `make test`, which does it for you)"
        } else {
            ""
        };
        panic!("building the plugins for wasm32-wasip2 failed:\n{stderr}{hint}");
    }
}
