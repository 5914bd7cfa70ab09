//! The README's configuration table stays true: every setting of `config.default.toml` is
//! listed with its default, and the table lists nothing else.

use std::collections::BTreeSet;

const README: &str = include_str!("../../README.md");

#[test]
fn the_readme_lists_every_setting_with_its_default() {
    let rows: Vec<&str> = README
        .lines()
        .filter(|line| line.starts_with("| `DMS_"))
        .collect();
    let mut documented = BTreeSet::new();
    for row in &rows {
        let name = row[3..].split('`').next().unwrap();
        documented.insert(name.to_owned());
    }
    let mut expected = BTreeSet::new();
    for line in dms::config::DEFAULTS
        .lines()
        .filter(|line| !line.starts_with('#'))
    {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let name = format!("DMS_{}", key.trim().to_uppercase());
        let value = value.trim().trim_matches('"');
        let shown = if value.is_empty() {
            "(empty)".to_owned()
        } else {
            format!("`{value}`")
        };
        let row = rows
            .iter()
            .find(|row| row.starts_with(&format!("| `{name}`")))
            .unwrap_or_else(|| panic!("README's configuration table lacks {name}"));
        assert!(
            row.contains(&format!(" | {shown} | ")),
            "README shows the wrong default for {name}: {row}"
        );
        expected.insert(name);
    }
    assert_eq!(
        documented, expected,
        "README lists settings that do not exist"
    );
}

#[test]
fn each_setting_has_its_own_description() {
    let mut seen: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for row in README.lines().filter(|line| line.starts_with("| `DMS_")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let (name, description) = (cells[0], cells[cells.len() - 1]);
        if let Some(other) = seen.insert(description, name) {
            panic!(
                "README describes {name} and {other} alike; say what each one does: {description}"
            );
        }
    }
}
