//! Reading definition files safely: bounded size, UTF-8 checked, with line-accurate errors.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Location, SpecError};

/// Definition files larger than this are refused before they are parsed.
///
/// Real environment files are a few kilobytes; a requirements file with hashes for a large
/// project is well under a megabyte. A bound keeps a mistaken `-f big.bin` from eating memory.
pub const MAX_DEFINITION_BYTES: u64 = 8 * 1024 * 1024;

/// A text file that has been read and checked.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    /// Read `path`, refusing files over [`MAX_DEFINITION_BYTES`] and files that are not UTF-8.
    pub fn read(path: &Path) -> Result<Self, SpecError> {
        let file = std::fs::File::open(path).map_err(|e| SpecError::io(path, "cannot open", e))?;
        let meta = file
            .metadata()
            .map_err(|e| SpecError::io(path, "cannot read", e))?;
        if meta.is_dir() {
            return Err(SpecError::invalid(
                Location::file(path),
                "is a directory, not a definition file",
            ));
        }
        let mut bytes = Vec::new();
        file.take(MAX_DEFINITION_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| SpecError::io(path, "cannot read", e))?;
        if bytes.len() as u64 > MAX_DEFINITION_BYTES {
            return Err(SpecError::invalid(
                Location::file(path),
                format!(
                    "file is larger than {} MiB ({} bytes on disk); definition files are small, \
                     is this the right file?",
                    MAX_DEFINITION_BYTES / 1024 / 1024,
                    meta.len()
                ),
            ));
        }
        Self::from_bytes(path, bytes)
    }

    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, SpecError> {
        match String::from_utf8(bytes) {
            Ok(mut text) => {
                if text.starts_with('\u{feff}') {
                    text.remove(0);
                }
                Ok(Self {
                    path: path.to_path_buf(),
                    text,
                })
            }
            Err(err) => {
                let valid = err.utf8_error().valid_up_to();
                let bytes = err.as_bytes();
                let line = bytes[..valid].iter().filter(|&&b| b == b'\n').count() + 1;
                let column = valid
                    - bytes[..valid]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |p| p + 1)
                    + 1;
                Err(SpecError::invalid(
                    Location::line(path, line),
                    format!(
                        "file is not valid UTF-8 (invalid byte 0x{:02x} at column {column}); \
                         save it as UTF-8",
                        bytes[valid]
                    ),
                ))
            }
        }
    }

    pub fn from_text(path: &Path, text: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            text: text.to_string(),
        }
    }
}
