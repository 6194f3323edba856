//! Build script: exposes the versions of key dependencies (read from
//! Cargo.lock) to `rgrpc_version()`, sets the shared library's soname, and
//! copies the committed header to OUT_DIR for dependent crates. It never
//! writes to the source tree.

use std::path::PathBuf;

fn lock_version(lock: &str, name: &str) -> String {
    let needle = format!("name = \"{name}\"\nversion = \"");
    lock.find(&needle)
        .map(|i| {
            let rest = &lock[i + needle.len()..];
            rest[..rest.find('"').unwrap_or(0)].to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    for (dep, var) in [
        ("h2", "RGRPC_DEP_H2"),
        ("tokio", "RGRPC_DEP_TOKIO"),
        ("http", "RGRPC_DEP_HTTP"),
    ] {
        println!("cargo:rustc-env={var}={}", lock_version(&lock, dep));
    }
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=include/rgrpc.h");

    // Shared library soname, from the workspace version in Cargo.toml (the
    // one place it is written): while 0.x, librgrpc.so.0.<minor>, from 1.0
    // librgrpc.so.<major> (README.md, "Versions and ABI"). CMake derives the
    // same name, and links the installed library from librgrpc.a with the
    // version node RGRPC_<soversion> (cmake/rgrpc_link_shared.cmake: rustc's
    // own version script for cdylibs leaves no room for one here).
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap();
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
        let soname = if major == "0" {
            format!("librgrpc.so.0.{minor}")
        } else {
            format!("librgrpc.so.{major}")
        };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }

    // Make the committed header available to crates that link us.
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("include");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::copy(root.join("include/rgrpc.h"), out.join("rgrpc.h"));
    println!("cargo:include={}", out.display());
}
