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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use terrarium_spec::formats::{self, ExportNote, Format};
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

/// The fewest round trips each export format must compare over all the cases: whole (but
/// for the fields it drops), and at all (whole, or but for the fields its notes say it
/// changes). What it compares today; raise a floor when a format compares more.
const COMPARED_FLOOR: &[(Format, usize, usize)] = &[
    (Format::Native, 9, 9),
    (Format::AmlV2, 8, 9),
    (Format::AmlV1, 8, 9),
    (Format::Conda, 8, 9),
    (Format::Requirements, 9, 9),
    (Format::Dockerfile, 1, 7),
];

/// What became of the exports to one format.
#[derive(Debug, Default)]
struct Counts {
    /// Round trips compared whole: the content hash of what came back is the original's
    /// without the fields the export dropped.
    whole: usize,
    /// Round trips whose notes say the format changes some fields: compared without those
    /// fields, and what came back exports to the same files.
    but_changed: usize,
    /// Exports the format refused (their error is a golden file).
    refused: usize,
}

/// How a round trip was compared.
enum Compared {
    Whole,
    ButChanged,
}

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
    let mut counts: BTreeMap<&str, Counts> = BTreeMap::new();
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
            let count = counts.entry(export_format.name()).or_default();
            let exported = match formats::export(&imported.definition, *export_format) {
                Ok(exported) => exported,
                Err(err) => {
                    count.refused += 1;
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
            match round_trip(
                case,
                &imported.definition,
                *export_format,
                &exported,
                &mut failures,
            ) {
                Some(Compared::Whole) => count.whole += 1,
                Some(Compared::ButChanged) => count.but_changed += 1,
                None => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatch(es):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    for (format, whole_floor, compared_floor) in COMPARED_FLOOR {
        let count = counts.remove(format.name()).unwrap_or_default();
        let compared = count.whole + count.but_changed;
        eprintln!(
            "golden round trips to {format}: {} compared whole (floor {whole_floor}), {} but for \
             the fields their notes change ({compared} compared, floor {compared_floor}), {} refused",
            count.whole, count.but_changed, count.refused
        );
        assert!(
            count.whole >= *whole_floor && compared >= *compared_floor,
            "{format}: fewer round trips compared than the floors ({whole_floor} whole, \
             {compared_floor} at all): {count:?}"
        );
    }
    assert!(counts.is_empty(), "formats without a floor: {counts:?}");
}

/// Write the export to disk, import it back, and compare hashes (and for an export that
/// changes fields, export what came back). Returns how the round trip was compared; `None`
/// when it could not be (a failure says why).
fn round_trip(
    case: &str,
    original: &Definition,
    format: Format,
    exported: &formats::Exported,
    failures: &mut Vec<String>,
) -> Option<Compared> {
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
            return None;
        }
    };
    // Exports with lossy notes transform a field rather than drop it (e.g. pip-only -> conda);
    // the notes name the fields, which are left out of the comparison.
    let changed: Vec<String> = exported
        .notes
        .iter()
        .flat_map(ExportNote::changes)
        .map(|field| field.to_string())
        .collect();
    let gone = [exported.dropped.clone(), changed.clone()].concat();
    let expected = formats::without_fields(original, &gone);
    let back_unchanged = formats::without_fields(&back, &changed);
    if content_hash(&back_unchanged) != content_hash(&expected) {
        failures.push(format!(
            "{case} -> {format} -> import: content hash changed (not counting {changed:?})\n{}",
            terrarium_spec::diff(&expected, &back_unchanged)
        ));
    }
    if changed.is_empty() {
        return Some(Compared::Whole);
    }
    // What the export changed, it writes back the same way.
    match formats::export(&back, format) {
        Ok(again) if again.files == exported.files => {}
        Ok(again) => failures.push(format!(
            "{case} -> {format} -> import -> {format}: the files differ\n{:#?}\nfirst export:\n{:#?}",
            again.files, exported.files
        )),
        Err(err) => failures.push(format!(
            "{case} -> {format} -> import -> {format}: refused: {err}"
        )),
    }
    Some(Compared::ButChanged)
}
