//! The embedded SQLite backend: one file, `workspace.db`, safe for many processes at once.
//!
//! Concurrency: WAL mode, a generous busy timeout, and every mutation in a `BEGIN IMMEDIATE`
//! transaction, so writers queue instead of failing and readers never block. The
//! `PRIMARY KEY (name, version)` constraint is the final guard against duplicate versions.
//!
//! The operations and their SQL are in [`crate::sql`]; this module opens the database,
//! migrates it, and runs the transactions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use crate::sql::{Backend, Column, Conn, Row, Value};
use crate::StoreError;

/// Migrations, applied in order; an applied migration is never edited.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_registry.sql"),
    include_str!("../../migrations/sqlite/0002_locks_runs.sql"),
    include_str!("../../migrations/sqlite/0003_access.sql"),
    include_str!("../../migrations/sqlite/0004_deployments.sql"),
    include_str!("../../migrations/sqlite/0005_image_builds.sql"),
    include_str!("../../migrations/sqlite/0006_contexts.sql"),
    include_str!("../../migrations/sqlite/0007_versions_latest.sql"),
    include_str!("../../migrations/sqlite/0008_compute.sql"),
];

/// The database file inside a workspace directory.
pub const DATABASE_FILE: &str = "workspace.db";

pub struct SqliteStore {
    /// One connection, shared by the threads of this process in turn.
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Taken around every write transaction; shared by all of this process's stores on the
    /// same database file.
    write_gate: Arc<Gate>,
}

/// One write gate per database file in this process. SQLite lets one writer in at a time and
/// makes the others wait in its busy handler, which sleeps (1, 2, 5, 10, ... ms) between
/// tries, so concurrent registrations through a server's connections spent milliseconds each
/// asleep. Writers of one process queue here instead, first come first served, and start the
/// moment the previous one commits; other processes still meet at SQLite's lock.
fn write_gate(path: &Path) -> Arc<Gate> {
    type Gates = Mutex<HashMap<PathBuf, Arc<Gate>>>;
    static GATES: OnceLock<Gates> = OnceLock::new();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut gates = GATES
        .get_or_init(Gates::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Arc::clone(gates.entry(key).or_default())
}

/// Writers wait their turn in order: a plain mutex lets the writer that just finished take it
/// again ahead of those waiting, and a condvar wakes every waiter for one to go on; parking_lot's
/// fair mutex hands the lock straight to the next in line.
type Gate = parking_lot::FairMutex<()>;

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Open (creating if needed) the workspace in `dir`, and migrate it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join(DATABASE_FILE);
        let mut conn = open_connection(&path)?;
        migrate(&mut conn)?;
        fold_long_log(&conn, &path);
        Ok(Self {
            conn: Mutex::new(conn),
            write_gate: write_gate(&path),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The connection's setup, all of it: busy timeout, WAL, foreign keys, synchronous.
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Switching to WAL needs a moment of exclusive access; when many processes open a new
    // workspace at once, some see SQLITE_BUSY here without the busy handler's help.
    let mut attempts = 0;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => break,
            Err(err) if attempts < 200 && is_busy(&err) => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(err) => return Err(err.into()),
        }
    }
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")?;
    // The last connection to close would checkpoint the log into the database and delete it,
    // and the next process's first write would create it again: five syncs, most of a short
    // command's time (`terrarium run` of a warm environment, `env create` of an unchanged
    // file). The log stays instead (`workspace.db-wal`, part of the workspace: copy the
    // directory, not the file) and is checkpointed as it grows, by SQLite's automatic
    // checkpoint every 1,000 pages.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    Ok(conn)
}

/// How long a connection waits for another process's write.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// A write-ahead log longer than this is folded into the database when a process opens the
/// workspace.
const LONG_LOG_BYTES: u64 = 1 << 20;

/// The log is kept between processes (see [`open_connection`]), and the first connection of a
/// process rebuilds its index by reading all of it: up to 4 MiB before SQLite's own checkpoint,
/// most of a short command's time. When it has grown past [`LONG_LOG_BYTES`], it is folded
/// into the database and emptied here, once per megabyte written rather than once per process.
/// A checkpoint that cannot finish at once (another process reading or writing) is left for
/// the next process.
fn fold_long_log(conn: &Connection, path: &Path) {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let long = std::fs::metadata(&wal).is_ok_and(|m| m.len() > LONG_LOG_BYTES);
    if long {
        // Never wait for it: with another process reading or writing, the checkpoint would
        // wait in the busy handler; it is tried again by the next process instead.
        let _ = conn.busy_timeout(Duration::ZERO);
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        let _ = conn.busy_timeout(BUSY_TIMEOUT);
    }
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    // Up to date (every open but the first): nothing to write, so no write transaction, which
    // would dirty the database header and cost the checkpoint on close two more syncs.
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == MIGRATIONS.len() as i64 {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: usize = tx.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Invalid(format!(
            "this workspace has schema version {current}, newer than this terrarium knows ({}); upgrade terrarium",
            MIGRATIONS.len()
        )));
    }
    for sql in &MIGRATIONS[current..] {
        tx.execute_batch(sql)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {}", MIGRATIONS.len()))?;
    tx.commit()?;
    Ok(())
}

impl Backend for SqliteStore {
    fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().expect("store mutex poisoned");
        // A deferred transaction gives a consistent snapshot across the several queries.
        let tx = conn.transaction()?;
        let out = f(&mut Tx(&tx))?;
        tx.commit()?;
        Ok(out)
    }

    fn write<T>(
        &self,
        f: impl Fn(&mut dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _turn = self.write_gate.lock();
        let mut conn = self.conn.lock().expect("store mutex poisoned");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&mut Tx(&tx))?;
        crate::audit::commit(
            tx,
            |tx, entry| crate::sql::insert_audit(&mut Tx(tx), entry),
            |tx| Ok(tx.commit()?),
        )?;
        Ok(out)
    }
}

/// A SQLite transaction (any connection inside one) as the store's operations use it.
struct Tx<'a>(&'a Connection);

impl Conn for Tx<'_> {
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, StoreError> {
        let mut statement = self.0.prepare_cached(sql)?;
        Ok(statement.execute(rusqlite::params_from_iter(params))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Vec<Row>, StoreError> {
        let mut statement = self.0.prepare_cached(sql)?;
        let width = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let columns = (0..width)
                .map(|i| column(row.get_ref(i)?))
                .collect::<Result<_, StoreError>>()?;
            out.push(Row(columns));
        }
        Ok(out)
    }

    fn for_update(&self) -> &'static str {
        ""
    }

    fn next_seq(&self, table: &str) -> String {
        format!("(SELECT COALESCE(MAX(seq), 0) + 1 FROM {table})")
    }
}

fn column(value: ValueRef<'_>) -> Result<Column, StoreError> {
    Ok(match value {
        ValueRef::Null => Column::Null,
        ValueRef::Integer(n) => Column::Int(n),
        ValueRef::Text(text) => Column::Text(
            String::from_utf8(text.to_vec())
                .map_err(|_| StoreError::Corrupt("a text column is not UTF-8".to_string()))?,
        ),
        ValueRef::Blob(bytes) => Column::Bytes(bytes.to_vec()),
        ValueRef::Real(_) => {
            return Err(StoreError::Corrupt(
                "a column holds a real number".to_string(),
            ))
        }
    })
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Value::I32(n) => n.to_sql(),
            Value::I64(n) => n.to_sql(),
            Value::Bool(b) => b.to_sql(),
            Value::Text(text) => text.to_sql(),
            Value::Bytes(bytes) => bytes.to_sql(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    /// A log grown past a megabyte is folded into the database by the next process to open the
    /// workspace, and what it held is all there.
    #[test]
    fn a_long_log_is_folded_when_the_workspace_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join(format!("{DATABASE_FILE}-wal"));
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            let value = "x".repeat(100_000);
            for i in 0..16 {
                store.meta_set(&format!("k{i}"), &value).unwrap();
            }
        }
        assert!(std::fs::metadata(&wal).unwrap().len() > LONG_LOG_BYTES);
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
        assert_eq!(
            store.meta_get("k15").unwrap().map(|v| v.len()),
            Some(100_000)
        );
    }
}
