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
pub mod source;
pub mod yaml;
mod yaml_out;

pub use canonical::{canonical_json, content_hash};
pub use diff::{diff, Diff};
pub use error::{Location, SpecError, Warning};
pub use formats::{export, import, Exported, Format, Imported};
pub use model::Definition;
