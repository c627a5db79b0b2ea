//! Environment definitions: the model, every import/export format, the canonical form with its
//! content hash, and diffs.
//!
//! This crate only describes environments; it never resolves, installs or stores them.
//! Design goals:
//! - every error names the file, line and field;
//! - the same definition, written in any format that can carry it, has the same content hash;
//! - exports never drop a field silently.

pub mod canonical;
pub mod conda;
pub mod context;
pub mod diff;
pub mod error;
pub mod formats;
pub mod model;
pub mod names;
pub mod pip;
pub mod run_state;
pub mod source;
pub mod yaml;
mod yaml_out;

pub use canonical::{canonical_json, content_hash};
pub use diff::{diff, Diff};
pub use error::{Location, ReferenceError, SpecError, Warning};
pub use formats::{export, import, ExportNote, Exported, Format, Imported};
pub use model::Definition;
pub use run_state::RunState;

/// Check a definition that did not come from a file (e.g. JSON sent to the server) with the
/// same rules as an imported one: it is written as native YAML and read back, so every
/// requirement, match spec, name and secret reference is parsed. Returns the normalized
/// definition. The error names the field; its line refers to the native YAML form.
pub fn validate(definition: &Definition) -> Result<Definition, SpecError> {
    let mut definition = definition.clone();
    definition.normalize();
    if definition.name.is_empty() {
        return Err(SpecError::invalid(
            Location {
                file: "definition".into(),
                line: None,
                field: Some("name".to_string()),
            },
            "an environment needs a name",
        ));
    }
    let exported = formats::native::export(&definition);
    let text = exported
        .files
        .first()
        .map(|(_, text)| text.clone())
        .unwrap_or_default();
    let source = source::SourceFile::from_text(std::path::Path::new("definition.yml"), &text);
    let mut reread = formats::native::import_source(&source)?.definition;
    reread.normalize();
    if content_hash(&reread) != content_hash(&definition) {
        let fields: Vec<String> = diff(&definition, &reread)
            .changes
            .iter()
            .map(|c| format!("{}.{}", c.section, c.key))
            .collect();
        return Err(SpecError::invalid(
            Location {
                file: "definition".into(),
                line: None,
                field: Some(fields.first().cloned().unwrap_or_default()),
            },
            format!(
                "these fields do not hold valid values: {}",
                fields.join(", ")
            ),
        ));
    }
    Ok(definition)
}
