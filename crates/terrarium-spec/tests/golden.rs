//! Golden tests for every format: each fixture under `fixtures/import` is imported, and the
//! result (definition, hash, warnings) and its export to every format are compared with the
//! files under `golden/`. Each export is imported back and must have the content hash of the
//! original minus the fields the export said it dropped.
//!
//! An export whose notes say it changes some fields (a pip-only environment written as a conda
//! one, packages written as a Dockerfile's build steps) is compared without those fields, and
//! what came back must export to the same files.
//!
//! The round trips are counted per export format, and each count has a floor: an export that
//! stops being compared (an error, or a note that excuses more fields) fails the test instead
//! of passing unseen. Run with `--nocapture` to see the counts.
//!
//! Regenerate after an intended change with `TERRARIUM_UPDATE_GOLDEN=1 cargo test -p terrarium-spec --test golden`,
//! then review the diff.

mod common;

use std::path::{Path, PathBuf};

use common::{Floor, Tally, EXPORTS};
use terrarium_spec::content_hash;
use terrarium_spec::formats::{self, Format};

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

/// The fewest round trips each export format must compare over all the cases: whole (but
/// for the fields it drops), and at all (whole, or but for the fields its notes say it
/// changes). What it compares today; raise a floor when a format compares more.
const FLOORS: &[Floor] = &[
    Floor::new(Format::Native, 9, 9),
    Floor::new(Format::AmlV2, 8, 9),
    Floor::new(Format::AmlV1, 8, 9),
    Floor::new(Format::Conda, 8, 9),
    Floor::new(Format::Requirements, 9, 9),
    Floor::new(Format::Dockerfile, 1, 7),
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
    let mut tally = Tally::default();
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

        for export_format in &EXPORTS {
            let out = golden_dir().join(format!("{case}/export-{}", export_format.name()));
            let exported = match formats::export(&imported.definition, *export_format) {
                Ok(exported) => exported,
                Err(err) => {
                    tally.refused(*export_format);
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
            match common::round_trip(&imported.definition, *export_format, &exported) {
                Ok(compared) => tally.compared(*export_format, compared),
                Err(err) => failures.push(format!("{case} -> {err}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatch(es):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    tally.assert_floors("golden round trips", FLOORS);
}
