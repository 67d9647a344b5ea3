//! The docs cite tests by name; every cited test must exist, so a renamed or deleted test cannot
//! leave a claim in `docs/threat-model.md` without its proof.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;

/// Every `.rs` file under `dir`, skipping build output.
fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "corpus" | "artifacts") {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// Test names cited as `` `crate::file test_name` ``, `` `crate module::tests::test_name` `` or,
/// continuing the previous citation, `` `…test_name` ``.
fn cited_tests(doc: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, span) in doc.split('`').enumerate() {
        if i % 2 == 0 {
            continue;
        }
        let name = if let Some(rest) = span.strip_prefix('…') {
            rest
        } else if let Some((krate, path)) = span.split_once(' ') {
            let crate_like = krate.split("::").next().unwrap_or("");
            if crate_like.is_empty()
                || !crate_like.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                || path.contains(' ')
            {
                continue;
            }
            path.rsplit("::").next().unwrap_or(path)
        } else {
            continue;
        };
        // Test names are snake_case with at least two words (`cargo fuzz` is not a test).
        if name.contains('_')
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            names.push(name.to_string());
        }
    }
    names
}

#[test]
fn every_test_the_threat_model_cites_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/threat-model.md")).unwrap();
    let mut files = Vec::new();
    sources(root, &mut files);
    let cited = cited_tests(&doc);
    assert!(cited.len() >= 40, "the citation parser found only {cited:?}");
    let missing: Vec<_> = cited
        .iter()
        .filter(|name| !files.iter().any(|f| f.contains(&format!("fn {name}("))))
        .collect();
    assert!(missing.is_empty(), "docs/threat-model.md cites tests that do not exist: {missing:?}");
}

#[test]
fn the_citation_parser_sees_all_three_forms() {
    let doc = "`enclave-core::invariants tampered_aad` `…other_one` `signer-protocol messages::tests::third_one` `not a test` `cargo fuzz` `plain`";
    assert_eq!(cited_tests(doc), ["tampered_aad", "other_one", "third_one"]);
}
