//! Tells the benches where host/build.rs put the plugins it built.

use std::path::{Path, PathBuf};

fn main() {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is TARGET/PROFILE/build/weir-benches-HASH/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .expect("target directory");
    let plugins = target_dir.join("wasm-plugins").join("wasm32-wasip2").join("plugin");
    println!("cargo:rustc-env=WEIR_BUILT_PLUGINS={}", plugins.display());
}
