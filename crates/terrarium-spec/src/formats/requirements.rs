//! pip `requirements.txt`: `-r` includes, index options, markers, extras, direct URLs, `--hash`,
//! comments and line continuations.

use std::path::Path;

use crate::error::{Location, SpecError, Warning};
use crate::formats::{dropped, Exported, Format, Imported};
use crate::model::Definition;
use crate::pip;
use crate::source::SourceFile;

pub fn import(path: &Path) -> Result<Imported, SpecError> {
    let source = SourceFile::read(path)?;
    let mut parsed = pip::parse_requirements_file(&source)?;
    if parsed.requirements.is_empty() {
        // A valid file (a placeholder, or everything commented out): say so, and let the
        // environment be a Python with no packages.
        parsed.warnings.push(Warning {
            location: Location::file(path),
            message: "has no requirements (only comments, options or blank lines)".to_string(),
        });
    }
    let mut definition = Definition::default();
    definition.python.pip = parsed.requirements;
    definition.python.index = parsed.index;
    Ok(Imported {
        definition,
        format: Format::Requirements,
        warnings: parsed.warnings,
        files: parsed.files,
    })
}

pub fn export(d: &Definition) -> Exported {
    Exported {
        files: vec![(
            String::new(),
            pip::write_requirements(&d.python.index, &d.python.pip),
        )],
        dropped: dropped(
            d,
            &[
                "description",
                "tags",
                "runtime",
                "python.version",
                "python.interpreter",
                "python.user_managed",
                "conda",
                "environment_variables",
                "docker.base_image",
                "docker.base_dockerfile",
                "docker.build_context",
                "docker.dockerfile_path",
                "docker.shm_size",
                "docker.gpu",
                "docker.platform",
                "spark.repositories",
                "spark.packages",
                "spark.precache",
                "inference",
                "extensions",
            ],
        ),
        notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::testing::{assert_drops_exactly, variants, write};

    #[test]
    fn drops_exactly_what_it_cannot_carry() {
        let compared = assert_drops_exactly(
            Format::Requirements,
            &[
                "description",
                "tags",
                "runtime",
                "python.interpreter",
                "python.user_managed",
                "conda",
                "environment_variables",
                "docker.base_image",
                "docker.base_dockerfile",
                "docker.build_context",
                "docker.dockerfile_path",
                "docker.shm_size",
                "docker.gpu",
                "docker.platform",
                "spark.repositories",
                "spark.packages",
                "spark.precache",
                "inference",
                "extensions",
            ],
        );
        assert_eq!(compared, variants().len() + 1);
    }

    #[test]
    fn a_file_without_requirements_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "requirements.txt",
            "# pinned later\n\n   # nothing yet\n--index-url https://pypi.example.com/simple\n",
        );
        let imported = import(&path).unwrap();
        assert!(imported.definition.python.pip.is_empty());
        let warnings: Vec<String> = imported.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            warnings,
            [format!(
                "{}: has no requirements (only comments, options or blank lines)",
                path.display()
            )]
        );
        // Every format writes such an environment, and the requirements file reads back.
        for format in [
            Format::Native,
            Format::AmlV2,
            Format::AmlV1,
            Format::Conda,
            Format::Requirements,
        ] {
            crate::formats::export(&imported.definition, format)
                .unwrap_or_else(|e| panic!("{format}: {e}"));
        }
        let text = &crate::formats::export(&imported.definition, Format::Requirements)
            .unwrap()
            .files[0]
            .1;
        let again = write(dir.path(), "again.txt", text);
        assert_eq!(
            crate::content_hash(&import(&again).unwrap().definition),
            crate::content_hash(&imported.definition)
        );
    }
}
