//! Golden tests for every format: each fixture under `fixtures/import` is imported, and the
//! result (definition, hash, warnings) and its export to every format are compared with the
//! files under `golden/`. Each export is imported back and must have the content hash of the
//! original minus the fields the export said it dropped.
//!
//! Regenerate after an intended change with `TERRARIUM_UPDATE_GOLDEN=1 cargo test -p terrarium-spec --test golden`,
//! then review the diff.

use std::path::{Path, PathBuf};

use terrarium_spec::formats::{self, Format};
use terrarium_spec::{content_hash, Definition};

const CASES: &[(&str, &str, Format)] = &[
    ("native-full", "native/full.yml", Format::Native),
    ("aml-v2", "aml-v2/environment.yml", Format::AmlV2),
    ("aml-v1-rich", "aml-v1-rich", Format::AmlV1),
    ("aml-v1-dockerfile", "aml-v1-dockerfile", Format::AmlV1),
    ("conda", "conda/environment.yml", Format::Conda),
    (
        "requirements",
        "requirements/requirements.txt",
        Format::Requirements,
    ),
    ("dockerfile", "dockerfile/Dockerfile", Format::Dockerfile),
    ("conda-prefix", "conda-prefix", Format::CondaPrefix),
    ("venv", "venv", Format::Venv),
];

const EXPORTS: &[Format] = &[
    Format::Native,
    Format::AmlV2,
    Format::AmlV1,
    Format::Conda,
    Format::Requirements,
    Format::Dockerfile,
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import")
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn updating() -> bool {
    std::env::var_os("TERRARIUM_UPDATE_GOLDEN").is_some()
}

/// Compare `actual` with the golden file, or write it when updating. Returns a mismatch.
fn check(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if updating() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures.push(format!(
            "{} differs:\n--- expected\n{expected}\n+++ actual\n{actual}",
            path.display()
        )),
        Err(_) => failures.push(format!(
            "{} is missing (run with TERRARIUM_UPDATE_GOLDEN=1)",
            path.display()
        )),
    }
}

fn relative(text: &str) -> String {
    text.replace(&format!("{}/", fixtures().display()), "")
}

#[test]
fn golden_imports_exports_and_round_trips() {
    let mut failures = Vec::new();
    for (case, input, format) in CASES {
        let path = fixtures().join(input);
        // Detection must find the same format as the explicit one.
        let detected = formats::detect(&path).unwrap();
        assert_eq!(detected, *format, "detected format of {case}");

        let imported =
            formats::import(&path, Some(*format)).unwrap_or_else(|e| panic!("{case}: {e}"));
        let snapshot = serde_json::json!({
            "format": imported.format.name(),
            "content_hash": content_hash(&imported.definition),
            "warnings": imported.warnings.iter().map(|w| relative(&w.to_string())).collect::<Vec<_>>(),
            "definition": imported.definition,
        });
        let text = relative(
            &serde_json::to_string_pretty(&terrarium_spec::canonical::sorted(snapshot)).unwrap(),
        ) + "\n";
        check(
            &golden_dir().join(format!("{case}/import.json")),
            &text,
            &mut failures,
        );

        for export_format in EXPORTS {
            let out = golden_dir().join(format!("{case}/export-{}", export_format.name()));
            let exported = match formats::export(&imported.definition, *export_format) {
                Ok(exported) => exported,
                Err(err) => {
                    check(
                        &out.with_extension("error"),
                        &format!("{err}\n"),
                        &mut failures,
                    );
                    continue;
                }
            };
            let mut summary = String::new();
            summary.push_str(&format!("dropped: {}\n", exported.dropped.join(", ")));
            for note in &exported.notes {
                summary.push_str(&format!("note: {note}\n"));
            }
            for (name, text) in &exported.files {
                let name = if name.is_empty() { "file" } else { name };
                summary.push_str(&format!("=== {name}\n{text}"));
                if !text.ends_with('\n') {
                    summary.push('\n');
                }
            }
            check(
                &out.with_extension("txt"),
                &relative(&summary),
                &mut failures,
            );
            round_trip(
                case,
                &imported.definition,
                *export_format,
                &exported,
                &mut failures,
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatch(es):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Write the export to disk, import it back, and compare hashes.
fn round_trip(
    case: &str,
    original: &Definition,
    format: Format,
    exported: &formats::Exported,
    failures: &mut Vec<String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let target = match format {
        Format::AmlV1 | Format::AmlV2 => dir.path().join("out"),
        Format::Native => dir.path().join("environment.yml"),
        Format::Conda => dir.path().join("environment.yml"),
        Format::Requirements => dir.path().join("requirements.txt"),
        Format::Dockerfile => dir.path().join("Dockerfile"),
        _ => unreachable!(),
    };
    for (name, text) in &exported.files {
        let path = if name.is_empty() {
            target.clone()
        } else {
            target.join(name)
        };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let read_path = if format == Format::AmlV2 {
        target.join("environment.yml")
    } else {
        target.clone()
    };
    let back = match formats::import(&read_path, Some(format)) {
        Ok(back) => back.definition,
        Err(err) => {
            failures.push(format!(
                "{case} -> {format}: cannot import the export back: {err}"
            ));
            return;
        }
    };
    // Exports with notes transform a field rather than drop it (e.g. pip-only -> conda); the
    // notes say so, and those pairs are not expected to round-trip exactly.
    if !exported.notes.is_empty() && !notes_are_harmless(&exported.notes) {
        return;
    }
    let expected = formats::without_fields(original, &exported.dropped);
    if content_hash(&back) != content_hash(&expected) {
        failures.push(format!(
            "{case} -> {format} -> import: content hash changed\n{}",
            terrarium_spec::diff(&expected, &back)
        ));
    }
}

/// Notes that describe where something was written, not a change to the definition.
fn notes_are_harmless(notes: &[String]) -> bool {
    notes
        .iter()
        .all(|n| n.starts_with("only the Dockerfile") || n.starts_with("the inline Dockerfile"))
}
