//! The embedded SQLite backend: one file, `workspace.db`, safe for many processes at once.
//!
//! Concurrency: WAL mode, a generous busy timeout, and every mutation in a `BEGIN IMMEDIATE`
//! transaction, so writers queue instead of failing and readers never block. The
//! `PRIMARY KEY (name, version)` constraint is the final guard against duplicate versions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use terrarium_spec::names::{self, Reference};
use terrarium_spec::Definition;

use crate::{
    now, AuditEntry, DeploymentRecord, Event, ImageBuildRecord, MetadataUpdate, RegisterOutcome,
    RegisterRequest, RunRecord, Source, Store, StoreError, TokenRecord, VersionRecord,
};

/// Migrations, applied in order; an applied migration is never edited.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_registry.sql"),
    include_str!("../../migrations/sqlite/0002_locks_runs.sql"),
    include_str!("../../migrations/sqlite/0003_access.sql"),
    include_str!("../../migrations/sqlite/0004_deployments.sql"),
    include_str!("../../migrations/sqlite/0005_image_builds.sql"),
    include_str!("../../migrations/sqlite/0006_contexts.sql"),
    include_str!("../../migrations/sqlite/0007_versions_latest.sql"),
];

/// The database file inside a workspace directory.
pub const DATABASE_FILE: &str = "workspace.db";

pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

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
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(Duration::from_secs(60))?;
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
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().expect("store mutex poisoned");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        crate::audit::commit(
            tx,
            |tx, entry| {
                insert_audit(tx, entry)?;
                Ok(tx.last_insert_rowid())
            },
            |tx| Ok(tx.commit()?),
        )?;
        Ok(out)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().expect("store mutex poisoned");
        // A deferred transaction gives a consistent snapshot across the several queries.
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
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

fn insert_lock(tx: &Connection, lock_hash: &str, lock: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO locks (lock_hash, lock, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (lock_hash) DO NOTHING",
        params![lock_hash, lock, now()],
    )?;
    Ok(())
}

const SELECT_RUN: &str =
    "SELECT id, experiment, name, version, lock_hash, command, cwd, target, actor, \
     started_at, finished_at, exit_code, log_path FROM runs";

fn insert_audit(tx: &Connection, entry: &AuditEntry) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, target, status, remote) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![entry.at, entry.actor, entry.action, entry.target, entry.status, entry.remote],
    )?;
    Ok(())
}

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let command: String = r.get(5)?;
    Ok(RunRecord {
        id: r.get(0)?,
        experiment: r.get(1)?,
        environment: r.get(2)?,
        version: r.get(3)?,
        lock_hash: r.get(4)?,
        command: serde_json::from_str(&command).unwrap_or_else(|_| vec![command]),
        cwd: r.get(6)?,
        target: r.get(7)?,
        actor: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
        exit_code: r.get(11)?,
        log_path: r.get(12)?,
    })
}

fn refuse_curated(name: &str) -> Result<(), StoreError> {
    if names::is_curated(name) {
        Err(StoreError::Curated(name.to_string()))
    } else {
        Ok(())
    }
}

fn event(
    tx: &Connection,
    name: &str,
    version: Option<&str>,
    action: &str,
    detail: Option<String>,
    actor: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO events (name, version, action, detail, actor, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![name, version, action, detail, actor, now()],
    )?;
    Ok(())
}

/// (version, content_hash) of the latest non-archived version.
fn latest(conn: &Connection, name: &str) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT version, content_hash FROM versions WHERE name = ?1 AND archived = 0 ORDER BY seq DESC LIMIT 1",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

fn env_state(conn: &Connection, name: &str) -> Result<Option<bool>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT archived FROM environments WHERE name = ?1",
            params![name],
            |r| r.get::<_, bool>(0),
        )
        .optional()?)
}

fn require_version(conn: &Connection, name: &str, version: &str) -> Result<(), StoreError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM versions WHERE name = ?1 AND version = ?2)",
        params![name, version],
        |r| r.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("version {name}:{version}")))
    }
}

const SELECT_VERSION: &str =
    "SELECT v.name, v.version, v.content_hash, v.definition, v.description, v.tags, \
     v.archived, e.archived, v.created_at, v.created_by, v.source, v.parent, v.lock_hash \
     FROM versions v JOIN environments e ON e.name = v.name";

fn load(conn: &Connection, name: &str, version: &str) -> Result<VersionRecord, StoreError> {
    let sql = format!("{SELECT_VERSION} WHERE v.name = ?1 AND v.version = ?2");
    let mut records = query_records(conn, &sql, params![name, version])?;
    records
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("version {name}:{version}")))
}

fn query_records(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<VersionRecord>, StoreError> {
    struct Row {
        name: String,
        version: String,
        hash: String,
        definition: String,
        description: Option<String>,
        tags: String,
        archived: bool,
        env_archived: bool,
        created_at: String,
        created_by: String,
        source: String,
        parent: Option<String>,
        lock_hash: Option<String>,
    }
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(params, |r| {
            Ok(Row {
                name: r.get(0)?,
                version: r.get(1)?,
                hash: r.get(2)?,
                definition: r.get(3)?,
                description: r.get(4)?,
                tags: r.get(5)?,
                archived: r.get(6)?,
                env_archived: r.get(7)?,
                created_at: r.get(8)?,
                created_by: r.get(9)?,
                source: r.get(10)?,
                parent: r.get(11)?,
                lock_hash: r.get(12)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    let mut latest_cache: BTreeMap<String, Option<String>> = BTreeMap::new();
    for row in rows {
        let latest_version = match latest_cache.get(&row.name) {
            Some(v) => v.clone(),
            None => {
                let v = latest(conn, &row.name)?.map(|(v, _)| v);
                latest_cache.insert(row.name.clone(), v.clone());
                v
            }
        };
        let mut labels: Vec<String> = conn
            .prepare_cached(
                "SELECT label FROM labels WHERE name = ?1 AND version = ?2 ORDER BY label",
            )?
            .query_map(params![row.name, row.version], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if !row.env_archived && latest_version.as_deref() == Some(row.version.as_str()) {
            labels.insert(0, names::LATEST.to_string());
        }
        let corrupt = |what: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("{} of {}:{}: {e}", what, row.name, row.version))
        };
        let mut definition: Definition =
            serde_json::from_str(&row.definition).map_err(|e| corrupt("definition", e))?;
        let tags: BTreeMap<String, String> =
            serde_json::from_str(&row.tags).map_err(|e| corrupt("tags", e))?;
        let source: Source = serde_json::from_str(&row.source).map_err(|e| corrupt("source", e))?;
        definition.description = row.description.clone();
        definition.tags = tags.clone();
        out.push(VersionRecord {
            curated: names::is_curated(&row.name),
            name: row.name,
            version: row.version,
            content_hash: row.hash,
            labels,
            archived: row.archived || row.env_archived,
            created_at: row.created_at,
            created_by: row.created_by,
            source,
            parent: row.parent,
            lock_hash: row.lock_hash,
            description: row.description,
            tags,
            definition,
        });
    }
    Ok(out)
}

impl Store for SqliteStore {
    fn register(&self, request: RegisterRequest) -> Result<RegisterOutcome, StoreError> {
        let mut definition = request.definition;
        definition.normalize();
        let name = definition.name.clone();
        let hash = crate::check_registration(&definition, request.allow_curated)?;
        let tags_json = serde_json::to_string(&definition.tags).expect("tags serialize");
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO environments (name, created_at) VALUES (?1, ?2)",
                params![name, now()],
            )?;
            let previous = latest(tx, &name)?;
            let version = match &definition.version {
                Some(version) => {
                    let existing: Option<String> = tx
                        .query_row(
                            "SELECT content_hash FROM versions WHERE name = ?1 AND version = ?2",
                            params![name, version],
                            |r| r.get(0),
                        )
                        .optional()?;
                    match existing {
                        Some(existing) if existing == hash => {
                            return Ok(RegisterOutcome {
                                record: load(tx, &name, version)?,
                                created: false,
                            });
                        }
                        Some(existing) => {
                            return Err(StoreError::VersionConflict {
                                name: name.clone(),
                                version: version.clone(),
                                existing,
                            })
                        }
                        None => {
                            if let Ok(number) = version.parse::<i64>() {
                                tx.execute(
                                    "UPDATE environments SET next_version = MAX(next_version, ?2) WHERE name = ?1",
                                    params![name, number + 1],
                                )?;
                            }
                            version.clone()
                        }
                    }
                }
                None => {
                    if let Some((version, existing)) = previous.as_ref().filter(|_| !request.force_new) {
                        if *existing == hash {
                            let record = load(tx, &name, version)?;
                            // Same content: description and tags may still be new.
                            let description_changed = definition.description.is_some()
                                && definition.description != record.description;
                            let tags_changed =
                                !definition.tags.is_empty() && definition.tags != record.tags;
                            if description_changed || tags_changed {
                                tx.execute(
                                    "UPDATE versions SET description = COALESCE(?3, description), tags = ?4 WHERE name = ?1 AND version = ?2",
                                    params![name, version, definition.description, if tags_changed { tags_json.clone() } else { serde_json::to_string(&record.tags).expect("tags") }],
                                )?;
                                event(tx, &name, Some(version), "update", Some("description/tags from re-registration".into()), &request.actor)?;
                                return Ok(RegisterOutcome { record: load(tx, &name, version)?, created: false });
                            }
                            return Ok(RegisterOutcome { record, created: false });
                        }
                    }
                    let mut number: i64 = tx.query_row(
                        "SELECT next_version FROM environments WHERE name = ?1",
                        params![name],
                        |r| r.get(0),
                    )?;
                    // An explicit version may already have taken this number.
                    while tx.query_row(
                        "SELECT EXISTS (SELECT 1 FROM versions WHERE name = ?1 AND version = ?2)",
                        params![name, number.to_string()],
                        |r| r.get::<_, bool>(0),
                    )? {
                        number += 1;
                    }
                    tx.execute(
                        "UPDATE environments SET next_version = ?2 WHERE name = ?1",
                        params![name, number + 1],
                    )?;
                    number.to_string()
                }
            };
            let parent = request
                .parent
                .clone()
                .or_else(|| previous.as_ref().map(|(v, _)| format!("{name}:{v}")));
            let seq: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM versions", [], |r| r.get(0))?;
            let mut stored = definition.clone();
            stored.version = Some(version.clone());
            let definition_json = serde_json::to_string(&stored).expect("definition serializes");
            let source_json = serde_json::to_string(&request.source).expect("source serializes");
            let lock_hash = match &request.lock {
                Some((lock_hash, lock)) => {
                    insert_lock(tx, lock_hash, lock)?;
                    Some(lock_hash.clone())
                }
                None => None,
            };
            tx.execute(
                "INSERT INTO versions (name, version, seq, content_hash, definition, description, tags, created_at, created_by, source, parent, lock_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![name, version, seq, hash, definition_json, definition.description, tags_json, now(), request.actor, source_json, parent, lock_hash],
            )?;
            if env_state(tx, &name)? == Some(true) {
                tx.execute("UPDATE environments SET archived = 0 WHERE name = ?1", params![name])?;
                event(tx, &name, Some(&version), "restore", Some("a new version was registered".into()), &request.actor)?;
            }
            Ok(RegisterOutcome {
                record: load(tx, &name, &version)?,
                created: true,
            })
        })
    }

    fn resolve(&self, reference: &Reference) -> Result<VersionRecord, StoreError> {
        self.read(|conn| {
            let name = reference.name();
            let Some(env_archived) = env_state(conn, name)? else {
                return Err(StoreError::NotFound(format!("environment `{name}`")));
            };
            match reference {
                Reference::Version(name, version) => load(conn, name, version),
                Reference::Label(name, label) => {
                    let version: Option<String> = conn
                        .query_row(
                            "SELECT version FROM labels WHERE name = ?1 AND label = ?2",
                            params![name, label],
                            |r| r.get(0),
                        )
                        .optional()?;
                    let version = version
                        .ok_or_else(|| StoreError::NotFound(format!("label {name}@{label}")))?;
                    load(conn, name, &version)
                }
                Reference::Latest(name) => {
                    if env_archived {
                        return Err(StoreError::Archived(format!(
                            "environment `{name}` is archived"
                        )));
                    }
                    match latest(conn, name)? {
                        Some((version, _)) => load(conn, name, &version),
                        None => {
                            let any: bool = conn.query_row(
                                "SELECT EXISTS (SELECT 1 FROM versions WHERE name = ?1)",
                                params![name],
                                |r| r.get(0),
                            )?;
                            if any {
                                Err(StoreError::Archived(format!(
                                    "every version of `{name}` is archived"
                                )))
                            } else {
                                Err(StoreError::NotFound(format!(
                                    "environment `{name}` (it has no versions)"
                                )))
                            }
                        }
                    }
                }
            }
        })
    }

    fn list(&self, include_archived: bool) -> Result<Vec<VersionRecord>, StoreError> {
        self.read(|conn| {
            // The latest non-archived version of each environment; with `include_archived`, the
            // newest version of environments that have no such version too.
            let sql = format!(
                "{SELECT_VERSION} WHERE v.seq = (SELECT MAX(seq) FROM versions x WHERE x.name = v.name AND x.archived = 0) \
                 AND (?1 OR e.archived = 0) \
                 UNION ALL {SELECT_VERSION} WHERE ?1 AND v.seq = (SELECT MAX(seq) FROM versions x WHERE x.name = v.name) \
                 AND NOT EXISTS (SELECT 1 FROM versions x WHERE x.name = v.name AND x.archived = 0) \
                 ORDER BY 1"
            );
            query_records(conn, &sql, params![include_archived])
        })
    }

    fn versions(&self, name: &str) -> Result<Vec<VersionRecord>, StoreError> {
        self.read(|conn| {
            if env_state(conn, name)?.is_none() {
                return Err(StoreError::NotFound(format!("environment `{name}`")));
            }
            let sql = format!("{SELECT_VERSION} WHERE v.name = ?1 ORDER BY v.seq");
            query_records(conn, &sql, params![name])
        })
    }

    fn events(&self, name: &str) -> Result<Vec<Event>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, version, action, detail, actor, at FROM events WHERE name = ?1 ORDER BY id",
            )?;
            let events = stmt
                .query_map(params![name], |r| {
                    Ok(Event {
                        name: r.get(0)?,
                        version: r.get(1)?,
                        action: r.get(2)?,
                        detail: r.get(3)?,
                        actor: r.get(4)?,
                        at: r.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(events)
        })
    }

    fn set_label(
        &self,
        name: &str,
        version: &str,
        label: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        refuse_curated(name)?;
        names::validate_label(label).map_err(StoreError::Invalid)?;
        self.write(|tx| {
            require_version(tx, name, version)?;
            let previous: Option<String> = tx
                .query_row(
                    "SELECT version FROM labels WHERE name = ?1 AND label = ?2",
                    params![name, label],
                    |r| r.get(0),
                )
                .optional()?;
            tx.execute(
                "INSERT INTO labels (name, label, version, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (name, label) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                params![name, label, version, now(), actor],
            )?;
            let detail = match previous {
                Some(p) if p != version => format!("{label}: {p} -> {version}"),
                Some(_) => format!("{label} (unchanged)"),
                None => label.to_string(),
            };
            event(tx, name, Some(version), "label", Some(detail), actor)
        })
    }

    fn remove_label(&self, name: &str, label: &str, actor: &str) -> Result<(), StoreError> {
        refuse_curated(name)?;
        names::validate_label(label).map_err(StoreError::Invalid)?;
        self.write(|tx| {
            let version: Option<String> = tx
                .query_row(
                    "SELECT version FROM labels WHERE name = ?1 AND label = ?2",
                    params![name, label],
                    |r| r.get(0),
                )
                .optional()?;
            let version =
                version.ok_or_else(|| StoreError::NotFound(format!("label {name}@{label}")))?;
            tx.execute(
                "DELETE FROM labels WHERE name = ?1 AND label = ?2",
                params![name, label],
            )?;
            event(
                tx,
                name,
                Some(&version),
                "unlabel",
                Some(label.to_string()),
                actor,
            )
        })
    }

    fn update_metadata(
        &self,
        name: &str,
        version: &str,
        update: &MetadataUpdate,
        actor: &str,
    ) -> Result<VersionRecord, StoreError> {
        refuse_curated(name)?;
        self.write(|tx| {
            let record = load(tx, name, version)?;
            let mut tags = record.tags.clone();
            for key in &update.remove_tags {
                tags.remove(key);
            }
            tags.extend(update.set_tags.clone());
            let description = match &update.description {
                Some(d) => d.clone(),
                None => record.description.clone(),
            };
            tx.execute(
                "UPDATE versions SET description = ?3, tags = ?4 WHERE name = ?1 AND version = ?2",
                params![
                    name,
                    version,
                    description,
                    serde_json::to_string(&tags).expect("tags")
                ],
            )?;
            let mut what = Vec::new();
            if update.description.is_some() {
                what.push("description".to_string());
            }
            what.extend(update.set_tags.keys().map(|k| format!("tag {k}")));
            what.extend(update.remove_tags.iter().map(|k| format!("untag {k}")));
            event(
                tx,
                name,
                Some(version),
                "update",
                Some(what.join(", ")),
                actor,
            )?;
            load(tx, name, version)
        })
    }

    fn set_archived(
        &self,
        name: &str,
        version: Option<&str>,
        archived: bool,
        actor: &str,
    ) -> Result<(), StoreError> {
        refuse_curated(name)?;
        let action = if archived { "archive" } else { "restore" };
        self.write(|tx| {
            if env_state(tx, name)?.is_none() {
                return Err(StoreError::NotFound(format!("environment `{name}`")));
            }
            match version {
                Some(version) => {
                    require_version(tx, name, version)?;
                    tx.execute(
                        "UPDATE versions SET archived = ?3 WHERE name = ?1 AND version = ?2",
                        params![name, version, archived],
                    )?;
                }
                None => {
                    tx.execute(
                        "UPDATE environments SET archived = ?2 WHERE name = ?1",
                        params![name, archived],
                    )?;
                }
            }
            event(tx, name, version, action, None, actor)
        })
    }

    fn delete_version(&self, name: &str, version: &str, actor: &str) -> Result<(), StoreError> {
        refuse_curated(name)?;
        self.write(|tx| {
            require_version(tx, name, version)?;
            let labels: Vec<String> = tx
                .prepare("SELECT label FROM labels WHERE name = ?1 AND version = ?2 ORDER BY label")?
                .query_map(params![name, version], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if !labels.is_empty() {
                return Err(StoreError::Referenced {
                    reference: format!("{name}:{version}"),
                    reason: format!(
                        "label(s) {} point to it",
                        labels.join(", ")
                    ),
                });
            }
            let runs: i64 = tx.query_row(
                "SELECT COUNT(*) FROM runs WHERE name = ?1 AND version = ?2",
                params![name, version],
                |r| r.get(0),
            )?;
            if runs > 0 {
                return Err(StoreError::Referenced {
                    reference: format!("{name}:{version}"),
                    reason: format!("{runs} recorded run(s) used it"),
                });
            }
            let deployments: Vec<String> = tx
                .prepare("SELECT name FROM deployments WHERE env_name = ?1 AND env_version = ?2 ORDER BY name")?
                .query_map(params![name, version], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if !deployments.is_empty() {
                return Err(StoreError::Referenced {
                    reference: format!("{name}:{version}"),
                    reason: format!("deployment(s) {} serve it", deployments.join(", ")),
                });
            }
            let images: i64 = tx.query_row(
                "SELECT COUNT(*) FROM image_builds WHERE env_name = ?1 AND env_version = ?2",
                params![name, version],
                |r| r.get(0),
            )?;
            if images > 0 {
                return Err(StoreError::Referenced {
                    reference: format!("{name}:{version}"),
                    reason: format!("{images} image(s) were built from it"),
                });
            }
            tx.execute("DELETE FROM versions WHERE name = ?1 AND version = ?2", params![name, version])?;
            event(tx, name, Some(version), "delete", None, actor)
        })
    }

    fn set_lock(
        &self,
        name: &str,
        version: &str,
        lock_hash: &str,
        lock: &str,
    ) -> Result<String, StoreError> {
        self.write(|tx| {
            require_version(tx, name, version)?;
            let existing: Option<String> = tx.query_row(
                "SELECT lock_hash FROM versions WHERE name = ?1 AND version = ?2",
                params![name, version],
                |r| r.get(0),
            )?;
            if let Some(existing) = existing {
                return Ok(existing);
            }
            insert_lock(tx, lock_hash, lock)?;
            tx.execute(
                "UPDATE versions SET lock_hash = ?3 WHERE name = ?1 AND version = ?2 AND lock_hash IS NULL",
                params![name, version, lock_hash],
            )?;
            Ok(lock_hash.to_string())
        })
    }

    fn get_lock(&self, lock_hash: &str) -> Result<String, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT lock FROM locks WHERE lock_hash = ?1",
                params![lock_hash],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("lock {lock_hash}")))
        })
    }

    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.write(|tx| {
            require_version(tx, &run.environment, &run.version)?;
            let seq: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM runs", [], |r| r.get(0))?;
            tx.execute(
                "INSERT INTO runs (id, seq, experiment, name, version, lock_hash, command, cwd, target, actor, started_at, log_path) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    run.id, seq, run.experiment, run.environment, run.version, run.lock_hash,
                    serde_json::to_string(&run.command).expect("command serializes"),
                    run.cwd, run.target, run.actor, run.started_at, run.log_path
                ],
            )?;
            Ok(())
        })
    }

    fn finish_run(&self, id: &str, finished_at: &str, exit_code: i32) -> Result<(), StoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE runs SET finished_at = ?2, exit_code = ?3 WHERE id = ?1",
                params![id, finished_at, exit_code],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("run {id}")));
            }
            Ok(())
        })
    }

    fn list_runs(
        &self,
        experiment: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        self.read(|conn| {
            let sql = format!(
                "{SELECT_RUN} WHERE (?1 IS NULL OR experiment = ?1) ORDER BY seq DESC LIMIT ?2"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let runs = stmt
                .query_map(
                    params![experiment, i64::try_from(limit).unwrap_or(i64::MAX)],
                    run_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(runs)
        })
    }

    fn get_run(&self, id: &str) -> Result<RunRecord, StoreError> {
        self.read(|conn| {
            let sql = format!("{SELECT_RUN} WHERE id = ?1");
            conn.query_row(&sql, params![id], run_from_row)
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("run {id}")))
        })
    }

    fn add_image_build(&self, build: &ImageBuildRecord) -> Result<(), StoreError> {
        let record = serde_json::to_string(build).expect("a build serializes");
        self.write(|tx| {
            require_version(tx, &build.environment, &build.version)?;
            tx.execute(
                "INSERT INTO image_builds (env_name, env_version, record) VALUES (?1, ?2, ?3)",
                params![build.environment, build.version, record],
            )?;
            Ok(())
        })
    }

    fn list_image_builds(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Vec<ImageBuildRecord>, StoreError> {
        let records: Vec<String> = self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT record FROM image_builds WHERE env_name = ?1 AND (?2 IS NULL OR env_version = ?2) ORDER BY id DESC",
            )?;
            let rows = stmt
                .query_map(params![name, version], |r| r.get(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        crate::error::decode_records(&records, "image build")
    }

    fn put_deployment(&self, deployment: &DeploymentRecord) -> Result<(), StoreError> {
        names::validate_name(&deployment.name).map_err(StoreError::Invalid)?;
        let record = serde_json::to_string(deployment).expect("a deployment serializes");
        self.write(|tx| {
            require_version(tx, &deployment.environment, &deployment.version)?;
            tx.execute(
                "INSERT INTO deployments (name, env_name, env_version, record, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (name) DO UPDATE SET env_name = excluded.env_name, env_version = excluded.env_version, \
                 record = excluded.record, updated_at = excluded.updated_at",
                params![deployment.name, deployment.environment, deployment.version, record, now()],
            )?;
            Ok(())
        })
    }

    fn get_deployment(&self, name: &str) -> Result<DeploymentRecord, StoreError> {
        let record: String = self.read(|conn| {
            conn.query_row(
                "SELECT record FROM deployments WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("deployment {name}")))
        })?;
        serde_json::from_str(&record)
            .map_err(|e| StoreError::Corrupt(format!("deployment {name}: {e}")))
    }

    fn list_deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        let records: Vec<String> = self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT record FROM deployments ORDER BY name")?;
            let rows = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        crate::error::decode_records(&records, "deployment")
    }

    fn put_context(&self, digest: &str, archive: &[u8]) -> Result<(), StoreError> {
        crate::check_context_digest(digest)?;
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO contexts (digest, archive, created_at) VALUES (?1, ?2, ?3)",
                params![digest, archive, now()],
            )?;
            Ok(())
        })
    }

    fn has_context(&self, digest: &str) -> Result<bool, StoreError> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM contexts WHERE digest = ?1)",
                params![digest],
                |r| r.get(0),
            )?)
        })
    }

    fn get_context(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT archive FROM contexts WHERE digest = ?1",
                params![digest],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("build context {digest}")))
        })
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                    r.get(0)
                })
                .optional()?)
        })
    }

    fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
    }

    fn put_run_log(&self, id: &str, log: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
                params![id],
                |r| r.get(0),
            )?;
            if !exists {
                return Err(StoreError::NotFound(format!("run {id}")));
            }
            tx.execute(
                "INSERT INTO run_logs (id, log) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET log = excluded.log",
                params![id, log],
            )?;
            Ok(())
        })
    }

    fn get_run_log(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_row("SELECT log FROM run_logs WHERE id = ?1", params![id], |r| {
                    r.get(0)
                })
                .optional()?)
        })
    }

    fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tokens (id, name, role, token_hash, created_at, created_by, expires_at, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    token.id, token.name, token.role, token.token_hash, token.created_at,
                    token.created_by, token.expires_at, token.revoked_at
                ],
            )?;
            Ok(())
        })
    }

    fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.read(|conn| {
            let sql = format!("{SELECT_TOKEN} WHERE token_hash = ?1");
            Ok(conn
                .prepare_cached(&sql)?
                .query_row(params![token_hash], token_from_row)
                .optional()?)
        })
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(|conn| {
            let sql = format!("{SELECT_TOKEN} ORDER BY created_at, id");
            let mut stmt = conn.prepare(&sql)?;
            let tokens = stmt
                .query_map([], token_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(tokens)
        })
    }

    fn revoke_token(&self, id: &str, at: &str) -> Result<TokenRecord, StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                params![id, at],
            )?;
            let sql = format!("{SELECT_TOKEN} WHERE id = ?1");
            tx.query_row(&sql, params![id], token_from_row)
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("token {id}")))
        })
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.write(|tx| insert_audit(tx, entry))
    }

    fn set_audit_status(&self, id: i64, status: i32) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE audit SET status = ?1 WHERE id = ?2",
                params![status, id],
            )?;
            Ok(())
        })
    }

    fn list_audit(&self, limit: usize, offset: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, at, actor, action, target, status, remote FROM audit ORDER BY id DESC LIMIT ?1 OFFSET ?2",
            )?;
            let entries = stmt
                .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX), i64::try_from(offset).unwrap_or(i64::MAX)], |r| {
                    Ok(AuditEntry {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        target: r.get(4)?,
                        status: r.get(5)?,
                        remote: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(entries)
        })
    }
}

const SELECT_TOKEN: &str =
    "SELECT id, name, role, token_hash, created_at, created_by, expires_at, revoked_at FROM tokens";

fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        token_hash: r.get(3)?,
        created_at: r.get(4)?,
        created_by: r.get(5)?,
        expires_at: r.get(6)?,
        revoked_at: r.get(7)?,
    })
}
