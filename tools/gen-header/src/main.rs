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
    use std::collections::BTreeSet;

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
    /// The identifier starting at `s` (letters, digits, `_`).
    fn ident(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    }

    /// The functions the header declares: top-level lines (not comments,
    /// not typedefs) with an `rgrpc_` name followed by `(`.
    fn functions(header: &str) -> Vec<String> {
        let mut out = Vec::new();
        for line in header.lines() {
            if line.starts_with([' ', '*', '/', '#', '}'])
                || line.starts_with("typedef")
                || line.is_empty()
            {
                continue;
            }
            let mut rest = line;
            while let Some(i) = rest.find("rgrpc_") {
                let name = ident(&rest[i..]);
                if rest[i + name.len()..].starts_with('(') {
                    out.push(name.to_string());
                    break;
                }
                rest = &rest[i + name.len()..];
            }
        }
        out
    }

    /// The type names the header defines (structs, enums, integer typedefs).
    fn types(header: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for line in header.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["typedef", _, .., name] = words.as_slice() {
                let name = name.trim_end_matches(';');
                if name.starts_with("rgrpc_") && ident(name) == name {
                    out.insert(name.to_string());
                }
            }
        }
        out
    }

    /// Each doc comment with a "Methods:" index, as (the type declared right
    /// after the comment, the names listed): the paragraph from "Methods:"
    /// to the next blank comment line or the end of the comment.
    fn methods_lists(header: &str) -> Vec<(String, Vec<String>)> {
        let lines: Vec<&str> = header.lines().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let Some(col) = lines[i].find("Methods:") else {
                i += 1;
                continue;
            };
            let mut listed = Vec::new();
            let mut text = lines[i][col + "Methods:".len()..].to_string();
            loop {
                for part in text.split('`').skip(1).step_by(2) {
                    listed.push(part.to_string());
                }
                i += 1;
                let l = lines[i].trim();
                if l == "*" || l == "*/" {
                    break;
                }
                text = l.trim_start_matches('*').to_string();
            }
            while !lines[i].trim_start().starts_with("*/") {
                i += 1;
            }
            let decl = lines[i + 1];
            let ty = decl
                .trim_end_matches(';')
                .split_whitespace()
                .last()
                .unwrap_or("")
                .to_string();
            assert!(
                decl.starts_with("typedef") && ty.starts_with("rgrpc_"),
                "a Methods: index documents {decl:?}, not an rgrpc type"
            );
            out.push((ty, listed));
            i += 1;
        }
        out
    }

    /// Every "Methods:" index lists exactly its type's functions: each name
    /// is a declared function whose name belongs to the type (`rgrpc_<type>_`,
    /// with the longest matching type, so `rgrpc_call_options_new` belongs
    /// to `rgrpc_call_options`, not `rgrpc_call`), listed once, and every
    /// function of the type is listed.
    #[test]
    fn methods_indexes_list_exactly_their_functions() {
        let header = generate(&root());
        let functions = functions(&header);
        let types = types(&header);
        assert!(functions.len() > 50, "found only {functions:?}");
        let owner = |f: &str| -> Option<String> {
            types
                .iter()
                .filter(|t| f.starts_with(&format!("{t}_")))
                .max_by_key(|t| t.len())
                .cloned()
        };
        let lists = methods_lists(&header);
        assert!(
            lists.len() >= 10,
            "found only {} Methods: indexes",
            lists.len()
        );
        let mut problems = Vec::new();
        for (ty, listed) in &lists {
            let mut seen = BTreeSet::new();
            for name in listed {
                if !seen.insert(name) {
                    problems.push(format!("{ty}: {name} is listed twice"));
                }
                if !functions.contains(name) {
                    problems.push(format!("{ty}: {name} is not a declared function"));
                } else if owner(name).as_deref() != Some(ty) {
                    problems.push(format!("{ty}: {name} is not a function of {ty}"));
                }
            }
            for f in functions.iter().filter(|f| owner(f).as_deref() == Some(ty)) {
                if !listed.contains(f) {
                    problems.push(format!("{ty}: {f} is missing from Methods:"));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "Methods: indexes:\n{}",
            problems.join("\n")
        );
    }
}
