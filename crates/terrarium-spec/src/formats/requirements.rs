//! pip `requirements.txt`: `-r` includes, index options, markers, extras, direct URLs, `--hash`,
//! comments and line continuations.

use std::path::Path;

use crate::error::SpecError;
use crate::formats::{dropped, Exported, Format, Imported};
use crate::model::Definition;
use crate::pip;
use crate::source::SourceFile;

pub fn import(path: &Path) -> Result<Imported, SpecError> {
    let source = SourceFile::read(path)?;
    let parsed = pip::parse_requirements_file(&source)?;
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
                "version",
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
