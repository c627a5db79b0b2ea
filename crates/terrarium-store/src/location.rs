//! Where a workspace's database is, as a setting names it, and opening it.
//!
//! A setting is `postgres://...` (or `postgresql://...`), `sqlite://DIR`, or a plain directory
//! (SQLite). A team server's `http(s)://` URL is not a database: its client lives with the
//! server, and the caller tells it apart before it asks for a database.

use std::ffi::OsStr;
use std::path::PathBuf;

use crate::{PostgresStore, SqliteStore, Store, StoreError};

/// A workspace database, as named by a setting.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A workspace directory holding `workspace.db`.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL, which may hold a password: never shown (see `Debug`).
    Postgres(String),
}

impl Location {
    /// Read a setting: `postgres://...`, `postgresql://...`, `sqlite://DIR`, else a directory.
    pub fn parse(setting: &OsStr) -> Self {
        let text = setting.to_string_lossy();
        if is_database_url(&text) {
            return Self::Postgres(text.into_owned());
        }
        match text.strip_prefix("sqlite://") {
            Some(path) => Self::Sqlite(PathBuf::from(path)),
            // A plain directory is taken as given, whatever bytes its name has.
            None => Self::Sqlite(PathBuf::from(setting)),
        }
    }

    /// Open the database (creating and migrating it if needed), without seeding it.
    pub fn open(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(match self {
            Self::Sqlite(dir) => Box::new(SqliteStore::open(dir)?),
            Self::Postgres(url) => Box::new(PostgresStore::connect(url)?),
        })
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(dir) => f.debug_tuple("Sqlite").field(dir).finish(),
            Self::Postgres(_) => f.write_str("Postgres(<redacted>)"),
        }
    }
}

/// Whether a setting names a PostgreSQL database rather than a directory.
pub fn is_database_url(setting: &str) -> bool {
    setting.starts_with("postgres://") || setting.starts_with("postgresql://")
}

/// Open the workspace database a setting names (see [`Location::parse`]), without seeding it.
pub fn open(setting: impl AsRef<OsStr>) -> Result<Box<dyn Store>, StoreError> {
    Location::parse(setting.as_ref()).open()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let parse = |s: &str| Location::parse(OsStr::new(s));
        assert_eq!(parse("/w"), Location::Sqlite("/w".into()));
        assert_eq!(parse("sqlite:///w"), Location::Sqlite("/w".into()));
        assert_eq!(parse("sqlite://w"), Location::Sqlite("w".into()));
        let url = "postgres://u:secret@h/db";
        assert_eq!(parse(url), Location::Postgres(url.into()));
        assert!(matches!(parse("postgresql://h/db"), Location::Postgres(_)));
        assert!(!format!("{:?}", parse(url)).contains("secret"));
    }

    #[test]
    fn a_directory_opens_as_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path().join("ws")).unwrap();
        assert!(store.list(false).unwrap().is_empty());
        assert!(dir
            .path()
            .join("ws")
            .join(crate::sqlite::DATABASE_FILE)
            .is_file());
    }
}
