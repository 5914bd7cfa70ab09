//! The layers of docs/ARCHITECTURE.md hold in the code: each module of the server uses only
//! the modules listed before it in the document's "Layers" table, never one listed after it.
//! A `use crate::…` (or any `crate::…` path outside a comment) against the order fails here,
//! naming the file and the edge.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ARCHITECTURE: &str = include_str!("../../docs/ARCHITECTURE.md");
const LIB: &str = include_str!("../../host/src/lib.rs");

/// The modules in the order of the "Layers" table: `(layer, module)`.
fn layers(document: &str) -> Vec<(String, String)> {
    let section = document
        .split("\n## Layers\n")
        .nth(1)
        .expect("docs/ARCHITECTURE.md has a \"## Layers\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|line| line.starts_with('|'))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | layer | `module` | what it holds |
            let module = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((cells[1].to_owned(), module.to_owned()))
        })
        .collect()
}

/// The top-level modules `source` names with `crate::` (`crate::store::…`, and each of
/// `crate::{store::…, domain::…}`), outside comments.
fn uses(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |text: &str| -> String {
        text.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut used = BTreeSet::new();
    for (index, _) in code.match_indices("crate::") {
        // `dms_crate::` or `$crate::` are not this crate's paths.
        let before = code[..index].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[index + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            used.insert(ident(rest));
            continue;
        };
        // The names at the group's top level: after `{` and after each comma at depth 0.
        let mut depth = 0;
        let mut start = true;
        for (at, c) in group.char_indices() {
            if start && !c.is_whitespace() {
                used.insert(ident(&group[at..]));
                start = false;
            }
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => start = true,
                _ => {}
            }
        }
    }
    used.remove("");
    used
}

/// The edges of `module`'s `source` that go against `order`.
fn violations(order: &[String], module: &str, file: &str, source: &str) -> Vec<String> {
    let rank = |name: &str| order.iter().position(|listed| listed == name);
    let Some(own) = rank(module) else {
        return vec![format!(
            "{file}: module `{module}` is not in the Layers table"
        )];
    };
    uses(source)
        .into_iter()
        .filter(|used| used != module)
        .filter_map(|used| match rank(&used) {
            Some(theirs) if theirs < own => None,
            Some(_) => Some(format!(
                "{file}: `{module}` uses `{used}`, which the Layers table lists after it"
            )),
            None => Some(format!(
                "{file}: `{module}` uses `{used}`, which is not in the Layers table"
            )),
        })
        .collect()
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

fn order() -> Vec<String> {
    layers(ARCHITECTURE)
        .into_iter()
        .map(|(_, module)| module)
        .collect()
}

#[test]
fn every_module_is_in_the_layers_table_once() {
    let order = order();
    let listed: BTreeSet<&String> = order.iter().collect();
    assert_eq!(listed.len(), order.len(), "a module is listed twice");
    let declared: BTreeSet<String> = LIB
        .lines()
        .filter_map(|line| line.strip_prefix("pub mod "))
        .map(|name| name.trim_end_matches(';').to_owned())
        .collect();
    let listed: BTreeSet<String> = order.into_iter().collect();
    assert_eq!(
        declared, listed,
        "host/src/lib.rs's modules and the Layers table of docs/ARCHITECTURE.md differ"
    );
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let order = order();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut problems = Vec::new();
    for path in files {
        let relative = path.strip_prefix(&root).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_str().unwrap().trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let file = format!("host/src/{}", relative.display());
        problems.extend(violations(&order, module, &file, &source));
    }
    assert!(
        problems.is_empty(),
        "imports against docs/ARCHITECTURE.md's layers:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_back_edge_is_caught() {
    let order = order();
    // The store reaching up into the API, the use cases or the server's state.
    for back in [
        "use crate::api::error::ApiError;",
        "    let x = crate::use_cases::messages::Error::NotFound;",
        "use crate::{domain::ids::UserId, state::AppState};",
    ] {
        let found = violations(&order, "store", "host/src/store/x.rs", back);
        assert_eq!(found.len(), 1, "{back:?} was not caught: {found:?}");
        assert!(found[0].contains("which the Layers table lists after it"));
    }
    // Downward edges, comments and other crates' paths pass.
    let fine = "use crate::domain::ids::UserId;\n// see crate::api\n/// [x](crate::api::x)\nuse dms_crate::api;";
    assert!(violations(&order, "store", "host/src/store/x.rs", fine).is_empty());
    // A module missing from the table is reported.
    assert_eq!(
        violations(&order, "nowhere", "host/src/nowhere.rs", fine).len(),
        1
    );
}
