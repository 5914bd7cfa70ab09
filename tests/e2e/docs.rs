//! The Markdown documents (README.md and docs/*.md) stay true to the repository: every link
//! stays inside it and names a file or folder that exists (and, for a heading anchor, a heading
//! that exists), no code span sends the reader outside it (`../…`), every `host/src/…` path
//! they name exists, and every `Type::member` they name is declared in host/src or
//! plugin-sdk/src. Read at run time, so a new document is checked too.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// The repository's root (the `dms` package lives in `host/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_owned()
}

/// README.md and every Markdown file in docs/, as paths relative to the root.
fn documents() -> Vec<PathBuf> {
    let mut documents = vec![PathBuf::from("README.md")];
    let mut in_docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| Path::new("docs").join(path.file_name().expect("a file name")))
        .collect();
    in_docs.sort();
    documents.extend(in_docs);
    documents
}

/// Every Rust source file under host/src and plugin-sdk/src (the SDK's types, such as
/// `MessagePayload`, are named in the plugin guide), concatenated.
fn host_sources() -> String {
    fn walk(folder: &Path, text: &mut String) {
        for entry in std::fs::read_dir(folder).expect("the sources are readable") {
            let path = entry.expect("a source entry").path();
            if path.is_dir() {
                walk(&path, text);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                text.push_str(&std::fs::read_to_string(&path).expect("a source file"));
                text.push('\n');
            }
        }
    }
    let mut text = String::new();
    walk(&root().join("host/src"), &mut text);
    walk(&root().join("plugin-sdk/src"), &mut text);
    text
}

/// Whether `word` occurs in `text` as a whole identifier after `before` (`fn `, `struct `…);
/// a `word` ending in `*` matches any identifier it starts.
fn declared(text: &str, before: &str, word: &str) -> bool {
    let (stem, prefix) = match word.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (word, false),
    };
    let needle = format!("{before}{stem}");
    text.match_indices(&needle).any(|(at, _)| {
        let start_ok = !text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let end_ok = prefix
            || !text[at + needle.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
        start_ok && end_ok
    })
}

/// What is wrong with a code span naming `Type::member` (`Store::prune_*`,
/// `Policies::hooks(tenant)`), if it is one and either is not declared in `sources`.
fn check_member(span: &str, sources: &str) -> Option<String> {
    let path = span.split('(').next().unwrap_or_default();
    let (ty, member) = path.split_once("::")?;
    let is_ident = |s: &str| {
        !s.is_empty()
            && s.trim_end_matches('*')
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_')
    };
    if !ty.starts_with(|c: char| c.is_ascii_uppercase()) || !is_ident(ty) || !is_ident(member) {
        return None;
    }
    let type_declared = ["struct ", "enum ", "trait ", "type "]
        .iter()
        .any(|kind| declared(sources, kind, ty));
    if !type_declared {
        return Some(format!(
            "`{span}`: no type {ty} is declared in host/src or plugin-sdk/src"
        ));
    }
    // A method (`fn name`), or a variant of an enum (`Name,` `Name(` `Name {`).
    let member_declared = if member.starts_with(|c: char| c.is_ascii_uppercase()) {
        declared(sources, "", member)
    } else {
        declared(sources, "fn ", member)
    };
    (!member_declared)
        .then(|| format!("`{span}`: no {member} is declared in host/src or plugin-sdk/src"))
}

/// One line of prose (outside fenced code blocks), with its number.
struct Line {
    number: usize,
    text: String,
}

/// The lines of `text` outside fenced code blocks.
fn prose(text: &str) -> Vec<Line> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            lines.push(Line {
                number: index + 1,
                text: line.to_owned(),
            });
        }
    }
    lines
}

/// The code spans of a line (`…`, single backticks), and the line with them removed.
fn split_code(line: &str) -> (Vec<String>, String) {
    let mut spans = Vec::new();
    let mut rest = String::new();
    let mut parts = line.split('`');
    rest.push_str(parts.next().unwrap_or_default());
    while let Some(code) = parts.next() {
        if let Some(after) = parts.next() {
            spans.push(code.to_owned());
            rest.push_str(after);
        } else {
            // An unmatched backtick: the rest is text.
            rest.push('`');
            rest.push_str(code);
        }
    }
    (spans, rest)
}

/// The targets of the inline links `[text](target "title")` and of the reference definitions
/// `[label]: target` in a line whose code spans are removed.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        let target = after[..end].split_whitespace().next().unwrap_or_default();
        targets.push(target.trim_matches(['<', '>']).to_owned());
        rest = &after[end..];
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[')
        && let Some((label, target)) = trimmed.split_once("]:")
        && !label.contains(']')
        && let Some(target) = target.split_whitespace().next()
    {
        targets.push(target.to_owned());
    }
    targets
}

/// `target` (a relative path) resolved against `from` (a folder relative to the root), or
/// `None` when it leaves the repository.
fn resolve(from: &Path, target: &str) -> Option<PathBuf> {
    let joined = from.join(target);
    let mut resolved: Vec<&std::ffi::OsStr> = Vec::new();
    for component in joined.components() {
        match component {
            Component::Normal(part) => resolved.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(resolved.iter().collect())
}

/// GitHub's anchors for the headings of a Markdown text: lower case, spaces as hyphens, other
/// punctuation dropped.
fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .iter()
        .filter_map(|line| {
            let heading = line.text.trim_start_matches('#');
            (heading.len() < line.text.len() && heading.starts_with(' ')).then_some(heading)
        })
        .map(|heading| {
            heading
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// What is wrong with one link target of `document`, if anything.
fn check_link(document: &Path, text: &str, target: &str) -> Option<String> {
    let lower = target.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:")
    {
        return None;
    }
    if target.contains("://") || target.starts_with('/') || target.starts_with('\\') {
        return Some("points outside the repository (write a path relative to this file)".into());
    }
    let (path, fragment) = target
        .split_once('#')
        .map_or((target, None), |(path, fragment)| (path, Some(fragment)));
    if path.is_empty() {
        let fragment = fragment.unwrap_or_default();
        return (!anchors(text).contains(fragment))
            .then(|| format!("names the heading #{fragment}, which this document does not have"));
    }
    let folder = document.parent().unwrap_or(Path::new(""));
    let Some(file) = resolve(folder, path) else {
        return Some("points outside the repository".into());
    };
    let on_disk = root().join(&file);
    if !on_disk.exists() {
        return Some(format!("names {}, which does not exist", file.display()));
    }
    if let Some(fragment) = fragment
        && file.extension().is_some_and(|ext| ext == "md")
    {
        let linked = std::fs::read_to_string(&on_disk).expect("a linked document is readable");
        if !anchors(&linked).contains(fragment) {
            return Some(format!(
                "names the heading #{fragment}, which {} does not have",
                file.display()
            ));
        }
    }
    None
}

/// Every problem with the links and code spans of one document, one line each.
fn problems(document: &Path, text: &str, sources: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in prose(text) {
        let (spans, without_code) = split_code(&line.text);
        for target in link_targets(&without_code) {
            if let Some(problem) = check_link(document, text, &target) {
                found.push(format!(
                    "{}:{}: the link to {target} {problem}",
                    document.display(),
                    line.number
                ));
            }
        }
        for span in spans {
            if let Some(problem) = check_member(&span, sources) {
                found.push(format!("{}:{}: {problem}", document.display(), line.number));
            }
            // Documents name files from the repository's root: `../` leaves it.
            if span.starts_with("../") {
                found.push(format!(
                    "{}:{}: `{span}` points outside the repository; say what is needed instead",
                    document.display(),
                    line.number
                ));
            }
            for word in span.split_whitespace() {
                let path = word.trim_end_matches([',', ';', ':', '.', ')']);
                if path.starts_with("host/src/") && !root().join(path).exists() {
                    found.push(format!(
                        "{}:{}: `{path}` does not exist",
                        document.display(),
                        line.number
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn links_paths_and_names_in_the_documents_exist_in_the_repository() {
    let sources = host_sources();
    let mut found = Vec::new();
    let mut links = 0;
    for document in documents() {
        let text = std::fs::read_to_string(root().join(&document))
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", document.display()));
        links += prose(&text)
            .iter()
            .map(|line| link_targets(&split_code(&line.text).1).len())
            .sum::<usize>();
        found.extend(problems(&document, &text, &sources));
    }
    assert!(links > 10, "the link parser found only {links} links");
    assert!(
        found.is_empty(),
        "documents that are not true to the repository:\n{}",
        found.join("\n")
    );
}

#[test]
fn architecture_names_host_src_paths() {
    // The check above would pass vacuously if the map stopped naming files this way.
    let text = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("readable");
    let named = prose(&text)
        .iter()
        .flat_map(|line| split_code(&line.text).0)
        .filter(|span| span.starts_with("host/src/"))
        .count();
    assert!(
        named > 20,
        "docs/ARCHITECTURE.md names {named} host/src paths"
    );
}

#[test]
fn the_checks_catch_what_they_are_for() {
    let document = Path::new("docs/EXAMPLE.md");
    let text = "# A heading\n\
        [fine](../README.md), [here](#a-heading), [web](https://example.com), [up](../host/src/)\n\
        [outside](../../shared/DESIGN.md)\n\
        [absolute](/etc/passwd)\n\
        [missing](ARCHITECTURE_GONE.md)\n\
        [bad anchor](OPERATIONS.md#no-such-heading)\n\
        The design is in `../shared/DESIGN.md`; code in `host/src/gone.rs`, `host/src/app.rs`.\n\
        ```text\n[in a fence](nowhere.md) `../fenced`\n```\n\
        `[in code](nowhere.md)` and [not here](#no-heading)\n\
        `Status::can_become`, `Status::can_transition_to`, `Store::prune_*`, `Run::Simulated(now)`\n\
        `Gone::new`, `Store::prune_nothing_*`, `Run::Imagined`, `HashMap::new`, `a::b`\n";
    let sources = host_sources();
    let found = problems(document, text, &sources);
    let lines: Vec<&str> = found
        .iter()
        .map(|problem| problem.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "docs/EXAMPLE.md:3",
            "docs/EXAMPLE.md:4",
            "docs/EXAMPLE.md:5",
            "docs/EXAMPLE.md:6",
            "docs/EXAMPLE.md:7",
            "docs/EXAMPLE.md:7",
            "docs/EXAMPLE.md:11",
            "docs/EXAMPLE.md:12",
            "docs/EXAMPLE.md:13",
            "docs/EXAMPLE.md:13",
            "docs/EXAMPLE.md:13",
            "docs/EXAMPLE.md:13"
        ],
        "{found:#?}"
    );
}
