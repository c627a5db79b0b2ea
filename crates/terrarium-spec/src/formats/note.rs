//! What an export says about what it wrote, besides the fields it could not carry
//! ([`super::Exported::dropped`]).

use std::fmt;

use super::Format;

/// A note of an export: a field the format carries in another form, so that it reads back
/// changed (see [`ExportNote::changes`]), or a file written where the definition does not
/// say, which reads back the same. `Display` is the text the CLI and the API show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportNote {
    /// A pip-only environment is written as a conda file, its Python version as the conda
    /// dependency `python=VERSION`: the export reads back as a conda environment. `format` is
    /// the one written: aml-v1, aml-v2 or conda.
    PipOnlyAsConda { format: Format },
    /// Azure ML v2 builds a Dockerfile from a folder: the inline Dockerfile is written to
    /// `docker-context/Dockerfile`, and reads back inline.
    InlineDockerfileInContext,
    /// Variables whose values reference secrets are not written into a Dockerfile, where
    /// they would end up in the image.
    SecretVariablesNotWritten { names: Vec<String> },
    /// A Dockerfile carries the packages as build steps: it reads back as a user-managed
    /// docker environment built from that Dockerfile.
    PackagesAsBuildSteps,
}

impl ExportNote {
    /// The fields of the definition that do not read back as they were; empty for a note that
    /// only says where something was written.
    pub fn changes(&self) -> &'static [&'static str] {
        match self {
            Self::PipOnlyAsConda { .. } => &["python.version", "conda"],
            Self::InlineDockerfileInContext => &[],
            Self::SecretVariablesNotWritten { .. } => &["environment_variables"],
            Self::PackagesAsBuildSteps => &[
                "runtime",
                "python.version",
                "python.user_managed",
                "python.pip",
                "python.index",
                "conda",
                "environment_variables",
                "docker.base_image",
                "docker.base_dockerfile",
            ],
        }
    }

    /// Whether the export reads back changed (the note is more than where a file went).
    pub fn is_lossy(&self) -> bool {
        !self.changes().is_empty()
    }
}

impl fmt::Display for ExportNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PipOnlyAsConda {
                format: Format::AmlV1,
            } => f.write_str(
                "Azure ML v1 builds every environment with conda: this pip-only environment is \
                 written as a conda file, so importing it back gives a conda environment",
            ),
            Self::PipOnlyAsConda {
                format: Format::AmlV2,
            } => f.write_str(
                "the Python version of a pip-only environment is written as the conda \
                 dependency `python=VERSION`",
            ),
            Self::PipOnlyAsConda { .. } => f.write_str(
                "a pip-only environment's Python version is written as the conda dependency \
                 `python=VERSION`; importing the file back gives a conda environment",
            ),
            Self::InlineDockerfileInContext => {
                f.write_str("the inline Dockerfile is written to docker-context/Dockerfile")
            }
            Self::SecretVariablesNotWritten { names } => write!(
                f,
                "variables that reference secrets are not written into an image: {}",
                names.join(", ")
            ),
            Self::PackagesAsBuildSteps => f.write_str(
                "a Dockerfile carries the packages as build steps; importing it back gives a \
                 user-managed docker environment",
            ),
        }
    }
}
