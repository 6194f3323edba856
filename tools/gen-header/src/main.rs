//! Regenerates `include/rgrpc.h` from the `rgrpc` crate (`src/`, the C ABI) with the pinned cbindgen.
//!
//! Usage (from the repository root): `cargo run -p rgrpc-gen-header`.
//! `cargo run -p rgrpc-gen-header -- --check` exits 1 when the committed
//! header differs from what cbindgen generates.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// The header's version macros. The version is the workspace's (`[workspace.package]
/// version` in the root Cargo.toml, which this crate inherits): the one place it
/// is written for the library, its soname, the header, CMake, pkg-config and
/// the Python package.
fn version_macros() -> String {
    format!(
        r#"#define RGRPC_VERSION_MAJOR {}
#define RGRPC_VERSION_MINOR {}
#define RGRPC_VERSION_PATCH {}
/** The version as one number: 0xMMmmpp (major, minor, patch). */
#define RGRPC_VERSION_NUMBER ((RGRPC_VERSION_MAJOR << 16) | (RGRPC_VERSION_MINOR << 8) | RGRPC_VERSION_PATCH)
/** True when the header is at least version x.y.z. */
#define RGRPC_AT_LEAST_VERSION(x, y, z) (RGRPC_VERSION_NUMBER >= (((x) << 16) | ((y) << 8) | (z)))
"#,
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
    )
}

/// The header text cbindgen generates for the crate at `root`, with the
/// version macros from Cargo.toml.
pub fn generate(root: &Path) -> String {
    let mut config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    config.after_includes = Some(version_macros());
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut out);
    String::from_utf8(out).expect("utf-8 header")
}

fn main() {
    let root = root();
    let text = generate(&root);
    let path = root.join("include/rgrpc.h");
    if std::env::args().any(|a| a == "--check") {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != text {
            eprintln!("include/rgrpc.h is stale: run `cargo run -p rgrpc-gen-header`");
            std::process::exit(1);
        }
        println!("include/rgrpc.h is up to date");
        return;
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    println!("wrote {}", path.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_header_is_current() {
        let root = root();
        let current =
            std::fs::read_to_string(root.join("include/rgrpc.h")).expect("include/rgrpc.h");
        assert!(
            current == generate(&root),
            "include/rgrpc.h is stale: run `cargo run -p rgrpc-gen-header` and commit it"
        );
    }

    /// Every name the header defines is in rgrpc's namespace: a stray
    /// `pub const` in the core would otherwise become a bare C macro.
    #[test]
    fn every_name_is_prefixed() {
        let header = generate(&root());
        let mut bad = Vec::new();
        for line in header.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let name = match words.as_slice() {
                ["#define", name, ..] => name,
                ["typedef", "struct", name, ..] | ["typedef", "enum", name, ..] => name,
                ["struct", name, ..] | ["enum", name, ..] => name,
                _ => continue,
            };
            let name = name
                .trim_end_matches([';', '{'])
                .split('(')
                .next()
                .unwrap_or("");
            if !(name.starts_with("rgrpc_") || name.starts_with("RGRPC_") || name.is_empty()) {
                bad.push(name.to_string());
            }
        }
        assert!(bad.is_empty(), "unprefixed names in the header: {bad:?}");
    }

    /// The committed header's macros carry `[workspace.package] version` of
    /// the root Cargo.toml (read here as text, not through cargo).
    #[test]
    fn version_macros_match_cargo_toml() {
        let root = root();
        let toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let section = toml
            .split("\n[workspace.package]\n")
            .nth(1)
            .expect("[workspace.package] in Cargo.toml");
        let line = section
            .lines()
            .take_while(|l| !l.starts_with('['))
            .find(|l| l.starts_with("version = "))
            .expect("version line in [workspace.package]");
        let v = line.trim_start_matches("version = ").trim_matches('"');
        assert_eq!(
            v,
            env!("CARGO_PKG_VERSION"),
            "gen-header inherits the workspace version"
        );
        let parts: Vec<&str> = v.split('.').collect();
        let header = std::fs::read_to_string(root.join("include/rgrpc.h")).unwrap();
        for (name, val) in ["MAJOR", "MINOR", "PATCH"].iter().zip(parts) {
            let want = format!("#define RGRPC_VERSION_{name} {val}\n");
            assert!(header.contains(&want), "header lacks {want:?}");
        }
    }
}
