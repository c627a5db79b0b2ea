//! The PostgreSQL backend: one database shared by many server replicas and CLI processes.
//!
//! The versioning guarantees live in the database, not in process memory: a registration locks
//! its environment's row (`SELECT ... FOR UPDATE`), so numbering is gap-free and identical
//! content finds the version another process just created; `PRIMARY KEY (name, version)` is the
//! final guard, and a unique violation or serialization failure is retried.
//!
//! The operations and their SQL are in [`crate::sql`]; this module connects, migrates, and runs
//! the transactions.

use std::sync::Mutex;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Transaction};

use crate::sql::{Backend, Column, Conn, Row, Value};
use crate::{now, StoreError};

/// Migrations, applied in order; an applied migration is never edited.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_registry.sql"),
    include_str!("../../migrations/postgres/0002_access.sql"),
    include_str!("../../migrations/postgres/0003_deployments.sql"),
    include_str!("../../migrations/postgres/0004_image_builds.sql"),
    include_str!("../../migrations/postgres/0005_contexts.sql"),
    include_str!("../../migrations/postgres/0006_versions_latest.sql"),
    include_str!("../../migrations/postgres/0007_compute.sql"),
];

/// Serializes concurrent migrators (any constant shared by all Terrarium processes).
const MIGRATION_LOCK: i64 = 0x7465_7272_6172_6975;

pub struct PostgresStore {
    client: Mutex<Client>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl From<postgres::Error> for StoreError {
    fn from(err: postgres::Error) -> Self {
        Self::Database(Box::new(err))
    }
}

impl PostgresStore {
    /// Connect to `postgres://...` and migrate.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let mut client = Client::connect(url, NoTls)?;
        migrate(&mut client)?;
        Ok(Self {
            client: Mutex::new(client),
        })
    }
}

fn is_conflict(err: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    err.downcast_ref::<postgres::Error>()
        .and_then(|e| e.code())
        .is_some_and(|code| {
            *code == SqlState::UNIQUE_VIOLATION
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
        })
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS terrarium_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")?;
    let applied: i64 = tx
        .query_one("SELECT COUNT(*) FROM terrarium_migrations", &[])?
        .get(0);
    let applied = applied as usize;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Invalid(format!(
            "this workspace has schema version {applied}, newer than this terrarium knows ({}); upgrade terrarium",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO terrarium_migrations (version, applied_at) VALUES ($1, $2)",
            &[&(index as i32 + 1), &now()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

impl Backend for PostgresStore {
    fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.client.lock().expect("store mutex poisoned");
        let mut tx = client.build_transaction().read_only(true).start()?;
        let out = f(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in a transaction, retrying when the database reports a conflict.
    fn write<T>(
        &self,
        f: impl Fn(&mut dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.client.lock().expect("store mutex poisoned");
        let mut attempt = 0;
        loop {
            let mut tx = client.transaction()?;
            let result = f(&mut tx).and_then(|value| {
                crate::audit::commit(
                    tx,
                    |tx, entry| crate::sql::insert_audit(tx, entry),
                    |tx| Ok(tx.commit()?),
                )
                .map(|_| value)
            });
            match result {
                Err(StoreError::Database(err)) if attempt < 20 && is_conflict(err.as_ref()) => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5 * attempt));
                }
                other => return other,
            }
        }
    }
}

impl Conn for Transaction<'_> {
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, StoreError> {
        Ok(Transaction::execute(self, &numbered(sql), &bind(params))?)
    }

    fn query(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Vec<Row>, StoreError> {
        let rows = Transaction::query(self, &numbered(sql), &bind(params))?;
        rows.iter().map(row).collect()
    }

    fn for_update(&self) -> &'static str {
        " FOR UPDATE"
    }

    /// `seq` is a `BIGSERIAL`.
    fn next_seq(&self, _table: &str) -> String {
        "DEFAULT".to_string()
    }
}

/// The core's SQL with PostgreSQL's placeholders: `?1` becomes `$1` outside string literals.
/// (A single pass over a short string, next to a round trip to the server: not worth caching.)
fn numbered(sql: &str) -> String {
    let mut in_literal = false;
    sql.chars()
        .map(|c| match c {
            '\'' => {
                in_literal = !in_literal;
                c
            }
            '?' if !in_literal => '$',
            c => c,
        })
        .collect()
}

fn bind<'a>(params: &'a [Value<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params
        .iter()
        .map(|value| -> &(dyn ToSql + Sync) {
            match value {
                Value::I32(n) => n,
                Value::I64(n) => n,
                Value::Bool(b) => b,
                Value::Text(text) => text,
                Value::Bytes(bytes) => bytes,
            }
        })
        .collect()
}

/// A result row, by the types of the core's columns (booleans as 0 and 1).
fn row(row: &postgres::Row) -> Result<Row, StoreError> {
    let mut columns = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let value = match column.type_().name() {
            "int4" => (row.try_get::<_, Option<i32>>(i)?).map(|n| Column::Int(n.into())),
            "int8" => (row.try_get::<_, Option<i64>>(i)?).map(Column::Int),
            "bool" => (row.try_get::<_, Option<bool>>(i)?).map(|b| Column::Int(b.into())),
            "text" => (row.try_get::<_, Option<String>>(i)?).map(Column::Text),
            "bytea" => (row.try_get::<_, Option<Vec<u8>>>(i)?).map(Column::Bytes),
            other => {
                return Err(StoreError::Corrupt(format!(
                    "column {i} of a result has type {other}"
                )))
            }
        };
        columns.push(value.unwrap_or(Column::Null));
    }
    Ok(Row(columns))
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered_outside_literals() {
        assert_eq!(
            super::numbered("SELECT '?1', x FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1', x FROM t WHERE a = $1 AND b = $12"
        );
    }
}
