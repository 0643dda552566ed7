//! The crate's layering, checked on its source: run `cargo test --test layers`.
//!
//! - The remote layer's calling side (`src/remote/client/`) and serving side
//!   (`src/remote/server/`) never name each other, and its shared base (the files directly in
//!   `src/remote/`) names neither, nor the node that composes them (`src/remote/node/`).
//! - No file inside the crate imports through one of its faces: `lib.rs`'s re-exports
//!   (`use crate::Balancer`), `src/error.rs` (`crate::error::PickError`) or `remote/mod.rs`
//!   (`crate::remote::Node`); each names the module that defines what it uses.
//! - `src/error.rs` is a face: documentation and `pub use` only.
//! - No hand-written file of the remote layer is over 500 lines.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// Every `.rs` file under `dir`, generated protobuf code aside.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().unwrap() != "proto" {
                out.extend(sources(&path));
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The code of a file without its comments (doc comments included: a link in a doc names a
/// public path on purpose).
fn code(path: &Path) -> String {
    strip(&fs::read_to_string(path).unwrap())
}

/// `text` without its `//` comments.
fn strip(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file's code names: every `a::b::c` run of identifiers, with `{` groups
/// flattened (`crate::{x::Y, z}` gives `crate::x::Y` and `crate::z`).
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_alphabetic() || bytes[i] == '_' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_alphanumeric() || bytes[i] == '_' || bytes[i] == ':')
            {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            if word.ends_with("::") && i < bytes.len() && bytes[i] == '{' {
                let (group, end) = group(&bytes, i);
                for inner in split_group(&group) {
                    let within = paths(&inner);
                    if within.is_empty() {
                        // A plain name (`x`, `x as y`, `self`).
                        let name: String = inner
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if !name.is_empty() {
                            out.push(format!("{word}{name}"));
                        }
                    }
                    for p in within {
                        out.push(format!("{word}{p}"));
                    }
                }
                i = end;
            } else if word.contains("::") {
                out.push(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The text inside the braces opening at `open`, and the index after the closing one.
fn group(chars: &[char], open: usize) -> (String, usize) {
    let mut depth = 0;
    for (k, &c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return (chars[open + 1..k].iter().collect(), k + 1);
                }
            }
            _ => {}
        }
    }
    (chars[open + 1..].iter().collect(), chars.len())
}

/// A `{ .. }` group's items, split at its top-level commas.
fn split_group(group: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_owned()).collect()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(src()).unwrap().display().to_string()
}

#[test]
fn the_remote_layers_client_and_server_never_name_each_other() {
    let remote = src().join("remote");
    let mut found = Vec::new();
    for file in sources(&remote) {
        let rel = relative(&file);
        let depth = file.strip_prefix(&remote).unwrap().components().count();
        let forbidden: &[&str] = if rel.starts_with("remote/client/") {
            &["server::"]
        } else if rel.starts_with("remote/server/") {
            &["client::"]
        } else if depth == 1 && rel != "remote/mod.rs" {
            &["client::", "server::", "node::"]
        } else {
            &[]
        };
        for p in paths(&code(&file)) {
            let names = |f: &&str| {
                p.starts_with(f)
                    || p.contains(&format!("remote::{f}"))
                    || p.starts_with(&format!("super::{f}"))
            };
            if forbidden.iter().any(names) {
                found.push(format!("{rel}: {p}"));
            }
        }
    }
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}

#[test]
fn nothing_imports_through_the_crates_faces() {
    let mut found = Vec::new();
    for file in sources(&src()) {
        let rel = relative(&file);
        if rel == "lib.rs" || rel == "error.rs" || rel.starts_with("docs/") {
            continue;
        }
        for p in paths(&code(&file)) {
            let Some(rest) = p.strip_prefix("crate::") else {
                continue;
            };
            let face = rest.starts_with(|c: char| c.is_ascii_uppercase())
                || rest.starts_with("error::")
                || rest
                    .strip_prefix("remote::")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_uppercase()));
            if face {
                found.push(format!("{rel}: {p}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "imports through lib.rs, error.rs or remote/mod.rs:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_error_module_is_a_face() {
    let code = code(&src().join("error.rs"));
    let mut statements = code.split(';').map(str::trim).filter(|s| !s.is_empty());
    let strays: Vec<_> = statements
        .by_ref()
        .filter(|s| {
            let s = s.trim_start_matches("#[cfg(feature = \"remote\")]").trim();
            !s.starts_with("pub use ")
        })
        .collect();
    assert!(
        strays.is_empty(),
        "src/error.rs holds more than `pub use`: {strays:?}"
    );
}

#[test]
fn no_hand_written_remote_file_is_over_500_lines() {
    let long: Vec<_> = sources(&src().join("remote"))
        .into_iter()
        .map(|f| {
            (
                relative(&f),
                fs::read_to_string(&f).unwrap().lines().count(),
            )
        })
        .filter(|(_, n)| *n > 500)
        .collect();
    assert!(long.is_empty(), "{long:?}");
}

/// The checks above would pass on nothing: they do find what they look for.
#[test]
fn the_checks_find_what_they_look_for() {
    let found = paths("use crate::{remote::{server::Served, x}, Balancer};\nfn f() { super::client::Peers::new() }");
    assert_eq!(
        found,
        [
            "crate::remote::server::Served",
            "crate::remote::x",
            "crate::Balancer",
            "super::client::Peers::new",
        ]
    );
    let stripped = strip("let a = 1; // gone\n/// doc\nlet b = \"//\";");
    assert_eq!(stripped, "let a = 1; \n\nlet b = \"//\";");
}

/// Every public async fn of the remote layer says what dropping its future does.
#[test]
fn every_public_async_fn_of_the_remote_layer_has_a_cancel_safety_section() {
    let mut missing = Vec::new();
    for file in sources(&src().join("remote")) {
        let text = fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let Some(at) = line.find("pub async fn ") else {
                continue;
            };
            let name: String = line[at + 13..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let doc = lines[..n]
                .iter()
                .rev()
                .take_while(|l| {
                    l.trim_start().starts_with("///") || l.trim_start().starts_with("#[")
                })
                .any(|l| l.contains("# Cancel safety"));
            if !doc {
                missing.push(format!("{}: {name}", relative(&file)));
            }
        }
    }
    assert!(missing.is_empty(), "no `# Cancel safety`: {missing:?}");
}
