//! Errors and warnings, each tied to a place in a file; and `error_chain`, which puts any
//! error and its causes on one line.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a problem is: a file, and when known a line and a field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub file: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Location {
    pub fn file(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            field: None,
        }
    }

    pub fn line(file: &Path, line: usize) -> Self {
        Self {
            file: file.to_path_buf(),
            line: Some(line),
            field: None,
        }
    }

    /// A field's place; the empty field is the document itself, which names no field.
    pub fn field(file: &Path, line: usize, field: &str) -> Self {
        Self {
            file: file.to_path_buf(),
            line: Some(line),
            field: (!field.is_empty()).then(|| field.to_string()),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        Ok(())
    }
}

/// Something a user should know about but that does not stop the import or export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Errors from reading, validating or writing environment definitions.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A file or directory could not be read or written.
    #[error("{}: {action}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The input is not a valid definition; the location says where.
    #[error("{location}: {message}")]
    Invalid { location: Location, message: String },
    /// The definition is valid but cannot be written in the requested format.
    #[error("cannot export to {format}: {message}")]
    Unsupported {
        format: &'static str,
        message: String,
    },
}

impl SpecError {
    pub fn invalid(location: Location, message: impl Into<String>) -> Self {
        Self::Invalid {
            location,
            message: message.into(),
        }
    }

    pub fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    /// The location of the problem, when it is in an input file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::Invalid { location, .. } => Some(location),
            _ => None,
        }
    }
}

/// A reference (`NAME`, `NAME:VERSION`, `NAME@LABEL`) that does not parse: always the user's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference `{}`: {reason}", text.escape_debug())]
pub struct ReferenceError {
    /// The reference as given.
    pub text: String,
    /// Which part is wrong, and the rule it breaks.
    pub reason: String,
}

/// An error and all its causes on one line, for messages from libraries whose `Display`
/// shows only the outermost layer.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
