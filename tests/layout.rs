//! The layout the README and `src/lib.rs` promise, checked against the code: every
//! `crate::` path in `src/` points down the dependency order (wire types ← config,
//! memory ← metrics, stream ← fan-out, bus ← hub ← transport ← server), never up or across,
//! and the producer path does not reach into the subscriber module.

#![allow(missing_docs)]

use std::{collections::BTreeSet, fs, path::Path};

/// Each top-level module of the server crate and its rank: a module may use only
/// modules of a lower rank.
const RANKS: &[(&str, u32)] = &[
    ("codec", 0),
    ("delta", 0),
    ("model", 0),
    ("projection", 0),
    ("summary", 0),
    ("sched", 0),
    ("config", 1),
    ("memory", 1),
    ("workload", 1),
    ("metrics", 2),
    ("stream", 2),
    ("fanout", 3),
    ("bus", 3),
    ("hub", 4),
    ("transport", 5),
    ("demo", 5),
    ("server", 6),
];

fn rank(module: &str) -> u32 {
    RANKS
        .iter()
        .find(|(m, _)| *m == module)
        .unwrap_or_else(|| panic!("module {module} is not in the layout: add it to RANKS"))
        .1
}

/// Every `crate::a` path (and each name in `crate::{a, b::c}`) in `text`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find("};").unwrap_or(group.len())];
            // Top-level names in the group: at brace depth 0, after a comma or the start.
            let mut depth = 0;
            let mut start = true;
            let mut name = String::new();
            for c in inner.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if depth == 0 && start && (c.is_alphanumeric() || c == '_') => name.push(c),
                    _ => {
                        if !name.is_empty() {
                            found.insert(std::mem::take(&mut name));
                        }
                        if depth == 0 && !c.is_whitespace() {
                            start = false;
                        }
                    }
                }
            }
            if !name.is_empty() {
                found.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_uses_only_the_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        for used in crate_paths(&text) {
            if used == top {
                continue;
            }
            if rank(&used) >= rank(&top) {
                wrong.push(format!("{}: uses crate::{used}", relative.display()));
            }
        }
        // The producer path stands alone from the subscriber path.
        if relative.starts_with("transport/producer.rs") && text.contains("subscriber::") {
            wrong.push(format!(
                "{}: uses the subscriber module",
                relative.display()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layout:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_nested_paths() {
    let text = "use crate::{\n    codec::{self, Encoding},\n    metrics::Metrics,\n};\nlet x = crate::hub::Hub::new();";
    let found: Vec<_> = crate_paths(text).into_iter().collect();
    assert_eq!(found, vec!["codec", "hub", "metrics"]);
}
