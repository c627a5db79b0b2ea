//! The PostgreSQL backend: one database shared by many server replicas and CLI processes.
//!
//! The versioning guarantees live in the database, not in process memory: a registration locks
//! its environment's row (`SELECT ... FOR UPDATE`), so numbering is gap-free and identical
//! content finds the version another process just created; `PRIMARY KEY (name, version)` is the
//! final guard, and a unique violation or serialization failure is retried.

use std::collections::BTreeMap;
use std::sync::Mutex;

use postgres::error::SqlState;
use postgres::{Client, GenericClient, NoTls, Row};
use terrarium_spec::names::{self, Reference};
use terrarium_spec::Definition;

use crate::{
    now, AuditEntry, DeploymentRecord, Event, ImageBuildRecord, MetadataUpdate, RegisterOutcome,
    RegisterRequest, RunRecord, Source, Store, StoreError, TokenRecord, VersionRecord,
};

/// Migrations, applied in order; an applied migration is never edited.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_registry.sql"),
    include_str!("../../migrations/postgres/0002_access.sql"),
    include_str!("../../migrations/postgres/0003_deployments.sql"),
    include_str!("../../migrations/postgres/0004_image_builds.sql"),
    include_str!("../../migrations/postgres/0005_contexts.sql"),
    include_str!("../../migrations/postgres/0006_versions_latest.sql"),
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

    /// Run `f` in a transaction, retrying when the database reports a conflict.
    fn write<T>(
        &self,
        f: impl Fn(&mut postgres::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.client.lock().expect("store mutex poisoned");
        let mut attempt = 0;
        loop {
            let mut tx = client.transaction()?;
            let result = f(&mut tx).and_then(|value| {
                crate::audit::commit(
                    tx,
                    |tx, entry| {
                        let row = tx.query_one(
                            "INSERT INTO audit (at, actor, action, target, status, remote) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                            &[&entry.at, &entry.actor, &entry.action, &entry.target, &entry.status, &entry.remote],
                        )?;
                        Ok(row.get::<_, i64>(0))
                    },
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

    fn read<T>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.client.lock().expect("store mutex poisoned");
        let mut tx = client.build_transaction().read_only(true).start()?;
        let out = f(&mut tx)?;
        tx.commit()?;
        Ok(out)
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

fn refuse_curated(name: &str) -> Result<(), StoreError> {
    if names::is_curated(name) {
        Err(StoreError::Curated(name.to_string()))
    } else {
        Ok(())
    }
}

fn event(
    c: &mut impl GenericClient,
    name: &str,
    version: Option<&str>,
    action: &str,
    detail: Option<String>,
    actor: &str,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO events (name, version, action, detail, actor, at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&name, &version, &action, &detail, &actor, &now()],
    )?;
    Ok(())
}

fn latest(c: &mut impl GenericClient, name: &str) -> Result<Option<(String, String)>, StoreError> {
    Ok(c
        .query_opt(
            "SELECT version, content_hash FROM versions WHERE name = $1 AND NOT archived ORDER BY seq DESC LIMIT 1",
            &[&name],
        )?
        .map(|r| (r.get(0), r.get(1))))
}

fn env_state(c: &mut impl GenericClient, name: &str) -> Result<Option<bool>, StoreError> {
    Ok(c.query_opt(
        "SELECT archived FROM environments WHERE name = $1",
        &[&name],
    )?
    .map(|r| r.get(0)))
}

fn require_version(
    c: &mut impl GenericClient,
    name: &str,
    version: &str,
) -> Result<(), StoreError> {
    if c.query_opt(
        "SELECT 1 FROM versions WHERE name = $1 AND version = $2",
        &[&name, &version],
    )?
    .is_some()
    {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("version {name}:{version}")))
    }
}

fn insert_lock(c: &mut impl GenericClient, lock_hash: &str, lock: &str) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO locks (lock_hash, lock, created_at) VALUES ($1, $2, $3) ON CONFLICT (lock_hash) DO NOTHING",
        &[&lock_hash, &lock, &now()],
    )?;
    Ok(())
}

const SELECT_VERSION: &str =
    "SELECT v.name, v.version, v.content_hash, v.definition, v.description, v.tags, \
     v.archived, e.archived, v.created_at, v.created_by, v.source, v.parent, v.lock_hash \
     FROM versions v JOIN environments e ON e.name = v.name";

fn load(
    c: &mut impl GenericClient,
    name: &str,
    version: &str,
) -> Result<VersionRecord, StoreError> {
    let sql = format!("{SELECT_VERSION} WHERE v.name = $1 AND v.version = $2");
    let rows = c.query(&sql, &[&name, &version])?;
    records(c, rows)?
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("version {name}:{version}")))
}

fn records(c: &mut impl GenericClient, rows: Vec<Row>) -> Result<Vec<VersionRecord>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    let mut latest_cache: BTreeMap<String, Option<String>> = BTreeMap::new();
    for row in rows {
        let name: String = row.get(0);
        let version: String = row.get(1);
        let env_archived: bool = row.get(7);
        let latest_version = match latest_cache.get(&name) {
            Some(v) => v.clone(),
            None => {
                let v = latest(c, &name)?.map(|(v, _)| v);
                latest_cache.insert(name.clone(), v.clone());
                v
            }
        };
        let mut labels: Vec<String> = c
            .query(
                "SELECT label FROM labels WHERE name = $1 AND version = $2 ORDER BY label",
                &[&name, &version],
            )?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        if !env_archived && latest_version.as_deref() == Some(version.as_str()) {
            labels.insert(0, names::LATEST.to_string());
        }
        let corrupt = |what: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("{what} of {name}:{version}: {e}"))
        };
        let description: Option<String> = row.get(4);
        let mut definition: Definition =
            serde_json::from_str(row.get(3)).map_err(|e| corrupt("definition", e))?;
        let tags: BTreeMap<String, String> =
            serde_json::from_str(row.get(5)).map_err(|e| corrupt("tags", e))?;
        let source: Source = serde_json::from_str(row.get(10)).map_err(|e| corrupt("source", e))?;
        let archived: bool = row.get(6);
        definition.description = description.clone();
        definition.tags = tags.clone();
        out.push(VersionRecord {
            curated: names::is_curated(&name),
            content_hash: row.get(2),
            labels,
            archived: archived || env_archived,
            created_at: row.get(8),
            created_by: row.get(9),
            source,
            parent: row.get(11),
            lock_hash: row.get(12),
            description,
            tags,
            definition,
            name,
            version,
        });
    }
    Ok(out)
}

fn run_from_row(r: &Row) -> RunRecord {
    let command: String = r.get(5);
    RunRecord {
        id: r.get(0),
        experiment: r.get(1),
        environment: r.get(2),
        version: r.get(3),
        lock_hash: r.get(4),
        command: serde_json::from_str(&command).unwrap_or_else(|_| vec![command]),
        cwd: r.get(6),
        target: r.get(7),
        actor: r.get(8),
        started_at: r.get(9),
        finished_at: r.get(10),
        exit_code: r.get(11),
        log_path: r.get(12),
    }
}

const SELECT_RUN: &str =
    "SELECT id, experiment, name, version, lock_hash, command, cwd, target, actor, \
     started_at, finished_at, exit_code, log_path FROM runs";

impl Store for PostgresStore {
    fn register(&self, request: RegisterRequest) -> Result<RegisterOutcome, StoreError> {
        let mut definition = request.definition.clone();
        definition.normalize();
        let name = definition.name.clone();
        let hash = crate::check_registration(&definition, request.allow_curated)?;
        let tags_json = serde_json::to_string(&definition.tags).expect("tags serialize");
        self.write(|tx| {
            tx.execute("INSERT INTO environments (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", &[&name, &now()])?;
            // The row lock: registrations of one environment take turns.
            let env = tx.query_one("SELECT archived, next_version FROM environments WHERE name = $1 FOR UPDATE", &[&name])?;
            let env_archived: bool = env.get(0);
            let mut next: i64 = env.get(1);
            let previous = latest(tx, &name)?;
            let version = match &definition.version {
                Some(version) => {
                    let existing: Option<String> = tx
                        .query_opt("SELECT content_hash FROM versions WHERE name = $1 AND version = $2", &[&name, version])?
                        .map(|r| r.get(0));
                    match existing {
                        Some(existing) if existing == hash => return Ok(RegisterOutcome { record: load(tx, &name, version)?, created: false }),
                        Some(existing) => {
                            return Err(StoreError::VersionConflict { name: name.clone(), version: version.clone(), existing })
                        }
                        None => {
                            if let Ok(number) = version.parse::<i64>() {
                                tx.execute("UPDATE environments SET next_version = GREATEST(next_version, $2) WHERE name = $1", &[&name, &(number + 1)])?;
                            }
                            version.clone()
                        }
                    }
                }
                None => {
                    if let Some((version, existing)) = previous.as_ref().filter(|_| !request.force_new) {
                        if *existing == hash {
                            let record = load(tx, &name, version)?;
                            let description_changed = definition.description.is_some() && definition.description != record.description;
                            let tags_changed = !definition.tags.is_empty() && definition.tags != record.tags;
                            if description_changed || tags_changed {
                                let tags = if tags_changed { tags_json.clone() } else { serde_json::to_string(&record.tags).expect("tags") };
                                tx.execute(
                                    "UPDATE versions SET description = COALESCE($3, description), tags = $4 WHERE name = $1 AND version = $2",
                                    &[&name, version, &definition.description, &tags],
                                )?;
                                event(tx, &name, Some(version), "update", Some("description/tags from re-registration".into()), &request.actor)?;
                                return Ok(RegisterOutcome { record: load(tx, &name, version)?, created: false });
                            }
                            return Ok(RegisterOutcome { record, created: false });
                        }
                    }
                    while tx.query_opt("SELECT 1 FROM versions WHERE name = $1 AND version = $2", &[&name, &next.to_string()])?.is_some() {
                        next += 1;
                    }
                    tx.execute("UPDATE environments SET next_version = $2 WHERE name = $1", &[&name, &(next + 1)])?;
                    next.to_string()
                }
            };
            let parent = request.parent.clone().or_else(|| previous.as_ref().map(|(v, _)| format!("{name}:{v}")));
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
                "INSERT INTO versions (name, version, content_hash, definition, description, tags, created_at, created_by, source, parent, lock_hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[&name, &version, &hash, &definition_json, &definition.description, &tags_json, &now(), &request.actor, &source_json, &parent, &lock_hash],
            )?;
            if env_archived {
                tx.execute("UPDATE environments SET archived = FALSE WHERE name = $1", &[&name])?;
                event(tx, &name, Some(&version), "restore", Some("a new version was registered".into()), &request.actor)?;
            }
            Ok(RegisterOutcome { record: load(tx, &name, &version)?, created: true })
        })
    }

    fn resolve(&self, reference: &Reference) -> Result<VersionRecord, StoreError> {
        self.read(|tx| {
            let name = reference.name();
            let Some(env_archived) = env_state(tx, name)? else {
                return Err(StoreError::NotFound(format!("environment `{name}`")));
            };
            match reference {
                Reference::Version(name, version) => load(tx, name, version),
                Reference::Label(name, label) => {
                    let version: String = tx
                        .query_opt(
                            "SELECT version FROM labels WHERE name = $1 AND label = $2",
                            &[name, label],
                        )?
                        .map(|r| r.get(0))
                        .ok_or_else(|| StoreError::NotFound(format!("label {name}@{label}")))?;
                    load(tx, name, &version)
                }
                Reference::Latest(name) => {
                    if env_archived {
                        return Err(StoreError::Archived(format!(
                            "environment `{name}` is archived"
                        )));
                    }
                    match latest(tx, name)? {
                        Some((version, _)) => load(tx, name, &version),
                        None => {
                            let any = tx
                                .query_opt(
                                    "SELECT 1 FROM versions WHERE name = $1 LIMIT 1",
                                    &[name],
                                )?
                                .is_some();
                            Err(if any {
                                StoreError::Archived(format!(
                                    "every version of `{name}` is archived"
                                ))
                            } else {
                                StoreError::NotFound(format!(
                                    "environment `{name}` (it has no versions)"
                                ))
                            })
                        }
                    }
                }
            }
        })
    }

    fn list(&self, include_archived: bool) -> Result<Vec<VersionRecord>, StoreError> {
        self.read(|tx| {
            let sql = format!(
                "{SELECT_VERSION} WHERE v.seq = (SELECT MAX(seq) FROM versions x WHERE x.name = v.name AND NOT x.archived) \
                 AND ($1 OR NOT e.archived) \
                 UNION ALL {SELECT_VERSION} WHERE $1 AND v.seq = (SELECT MAX(seq) FROM versions x WHERE x.name = v.name) \
                 AND NOT EXISTS (SELECT 1 FROM versions x WHERE x.name = v.name AND NOT x.archived) \
                 ORDER BY 1"
            );
            let rows = tx.query(&sql, &[&include_archived])?;
            records(tx, rows)
        })
    }

    fn versions(&self, name: &str) -> Result<Vec<VersionRecord>, StoreError> {
        self.read(|tx| {
            if env_state(tx, name)?.is_none() {
                return Err(StoreError::NotFound(format!("environment `{name}`")));
            }
            let rows = tx.query(
                &format!("{SELECT_VERSION} WHERE v.name = $1 ORDER BY v.seq"),
                &[&name],
            )?;
            records(tx, rows)
        })
    }

    fn events(&self, name: &str) -> Result<Vec<Event>, StoreError> {
        self.read(|tx| {
            Ok(tx
                .query("SELECT name, version, action, detail, actor, at FROM events WHERE name = $1 ORDER BY id", &[&name])?
                .into_iter()
                .map(|r| Event { name: r.get(0), version: r.get(1), action: r.get(2), detail: r.get(3), actor: r.get(4), at: r.get(5) })
                .collect())
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
                .query_opt("SELECT version FROM labels WHERE name = $1 AND label = $2", &[&name, &label])?
                .map(|r| r.get(0));
            tx.execute(
                "INSERT INTO labels (name, label, version, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (name, label) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                &[&name, &label, &version, &now(), &actor],
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
            let version: String = tx
                .query_opt(
                    "DELETE FROM labels WHERE name = $1 AND label = $2 RETURNING version",
                    &[&name, &label],
                )?
                .map(|r| r.get(0))
                .ok_or_else(|| StoreError::NotFound(format!("label {name}@{label}")))?;
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
                "UPDATE versions SET description = $3, tags = $4 WHERE name = $1 AND version = $2",
                &[
                    &name,
                    &version,
                    &description,
                    &serde_json::to_string(&tags).expect("tags"),
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
                        "UPDATE versions SET archived = $3 WHERE name = $1 AND version = $2",
                        &[&name, &version, &archived],
                    )?;
                }
                None => {
                    tx.execute(
                        "UPDATE environments SET archived = $2 WHERE name = $1",
                        &[&name, &archived],
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
                .query("SELECT label FROM labels WHERE name = $1 AND version = $2 ORDER BY label", &[&name, &version])?
                .into_iter()
                .map(|r| r.get(0))
                .collect();
            if !labels.is_empty() {
                return Err(StoreError::Referenced {
                    reference: format!("{name}:{version}"),
                    reason: format!("label(s) {} point to it", labels.join(", ")),
                });
            }
            // The same order as SQLite's: labels, runs, deployments, images.
            let runs: i64 = tx.query_one("SELECT COUNT(*) FROM runs WHERE name = $1 AND version = $2", &[&name, &version])?.get(0);
            if runs > 0 {
                return Err(StoreError::Referenced {
                    reference: format!("{name}:{version}"),
                    reason: format!("{runs} recorded run(s) used it"),
                });
            }
            let deployments: Vec<String> = tx
                .query("SELECT name FROM deployments WHERE env_name = $1 AND env_version = $2 ORDER BY name", &[&name, &version])?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if !deployments.is_empty() {
                return Err(StoreError::Referenced {
                    reference: format!("{name}:{version}"),
                    reason: format!("deployment(s) {} serve it", deployments.join(", ")),
                });
            }
            let images: i64 = tx.query_one("SELECT COUNT(*) FROM image_builds WHERE env_name = $1 AND env_version = $2", &[&name, &version])?.get(0);
            if images > 0 {
                return Err(StoreError::Referenced {
                    reference: format!("{name}:{version}"),
                    reason: format!("{images} image(s) were built from it"),
                });
            }
            tx.execute("DELETE FROM versions WHERE name = $1 AND version = $2", &[&name, &version])?;
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
            let row = tx
                .query_opt(
                    "SELECT lock_hash FROM versions WHERE name = $1 AND version = $2 FOR UPDATE",
                    &[&name, &version],
                )?
                .ok_or_else(|| StoreError::NotFound(format!("version {name}:{version}")))?;
            if let Some(existing) = row.get::<_, Option<String>>(0) {
                return Ok(existing);
            }
            insert_lock(tx, lock_hash, lock)?;
            tx.execute(
                "UPDATE versions SET lock_hash = $3 WHERE name = $1 AND version = $2",
                &[&name, &version, &lock_hash],
            )?;
            Ok(lock_hash.to_string())
        })
    }

    fn get_lock(&self, lock_hash: &str) -> Result<String, StoreError> {
        self.read(|tx| {
            tx.query_opt("SELECT lock FROM locks WHERE lock_hash = $1", &[&lock_hash])?
                .map(|r| r.get(0))
                .ok_or_else(|| StoreError::NotFound(format!("lock {lock_hash}")))
        })
    }

    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.write(|tx| {
            require_version(tx, &run.environment, &run.version)?;
            tx.execute(
                "INSERT INTO runs (id, experiment, name, version, lock_hash, command, cwd, target, actor, started_at, log_path) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &run.id, &run.experiment, &run.environment, &run.version, &run.lock_hash,
                    &serde_json::to_string(&run.command).expect("command serializes"),
                    &run.cwd, &run.target, &run.actor, &run.started_at, &run.log_path,
                ],
            )?;
            Ok(())
        })
    }

    fn finish_run(&self, id: &str, finished_at: &str, exit_code: i32) -> Result<(), StoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE runs SET finished_at = $2, exit_code = $3 WHERE id = $1",
                &[&id, &finished_at, &exit_code],
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
        self.read(|tx| {
            let sql = format!("{SELECT_RUN} WHERE ($1::TEXT IS NULL OR experiment = $1) ORDER BY seq DESC LIMIT $2");
            Ok(tx.query(&sql, &[&experiment, &i64::try_from(limit).unwrap_or(i64::MAX)])?.iter().map(run_from_row).collect())
        })
    }

    fn get_run(&self, id: &str) -> Result<RunRecord, StoreError> {
        self.read(|tx| {
            tx.query_opt(&format!("{SELECT_RUN} WHERE id = $1"), &[&id])?
                .map(|r| run_from_row(&r))
                .ok_or_else(|| StoreError::NotFound(format!("run {id}")))
        })
    }

    fn add_image_build(&self, build: &ImageBuildRecord) -> Result<(), StoreError> {
        let record = serde_json::to_string(build).expect("a build serializes");
        self.write(|tx| {
            require_version(tx, &build.environment, &build.version)?;
            tx.execute(
                "INSERT INTO image_builds (env_name, env_version, record) VALUES ($1, $2, $3)",
                &[&build.environment, &build.version, &record],
            )?;
            Ok(())
        })
    }

    fn list_image_builds(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Vec<ImageBuildRecord>, StoreError> {
        let records: Vec<String> = self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT record FROM image_builds WHERE env_name = $1 AND ($2::TEXT IS NULL OR env_version = $2) ORDER BY id DESC",
                    &[&name, &version],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?;
        crate::error::decode_records(&records, "image build")
    }

    fn put_deployment(&self, deployment: &DeploymentRecord) -> Result<(), StoreError> {
        names::validate_name(&deployment.name).map_err(StoreError::Invalid)?;
        let record = serde_json::to_string(deployment).expect("a deployment serializes");
        self.write(|tx| {
            require_version(tx, &deployment.environment, &deployment.version)?;
            tx.execute(
                "INSERT INTO deployments (name, env_name, env_version, record, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (name) DO UPDATE SET env_name = excluded.env_name, env_version = excluded.env_version, \
                 record = excluded.record, updated_at = excluded.updated_at",
                &[&deployment.name, &deployment.environment, &deployment.version, &record, &now()],
            )?;
            Ok(())
        })
    }

    fn get_deployment(&self, name: &str) -> Result<DeploymentRecord, StoreError> {
        let record: String = self.read(|tx| {
            tx.query_opt("SELECT record FROM deployments WHERE name = $1", &[&name])?
                .map(|r| r.get(0))
                .ok_or_else(|| StoreError::NotFound(format!("deployment {name}")))
        })?;
        serde_json::from_str(&record)
            .map_err(|e| StoreError::Corrupt(format!("deployment {name}: {e}")))
    }

    fn list_deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        let records: Vec<String> = self.read(|tx| {
            Ok(tx
                .query("SELECT record FROM deployments ORDER BY name", &[])?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?;
        crate::error::decode_records(&records, "deployment")
    }

    fn put_context(&self, digest: &str, archive: &[u8]) -> Result<(), StoreError> {
        crate::check_context_digest(digest)?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO contexts (digest, archive, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING",
                &[&digest, &archive, &now()],
            )?;
            Ok(())
        })
    }

    fn has_context(&self, digest: &str) -> Result<bool, StoreError> {
        self.read(|tx| {
            Ok(tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM contexts WHERE digest = $1)",
                    &[&digest],
                )?
                .get(0))
        })
    }

    fn get_context(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        self.read(|tx| {
            tx.query_opt("SELECT archive FROM contexts WHERE digest = $1", &[&digest])?
                .map(|r| r.get(0))
                .ok_or_else(|| StoreError::NotFound(format!("build context {digest}")))
        })
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|tx| {
            Ok(tx
                .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
                .map(|r| r.get(0)))
        })
    }

    fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )?;
            Ok(())
        })
    }

    fn put_run_log(&self, id: &str, log: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| {
            if tx
                .query_opt("SELECT 1 FROM runs WHERE id = $1", &[&id])?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("run {id}")));
            }
            tx.execute(
                "INSERT INTO run_logs (id, log) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET log = excluded.log",
                &[&id, &log],
            )?;
            Ok(())
        })
    }

    fn get_run_log(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|tx| {
            Ok(tx
                .query_opt("SELECT log FROM run_logs WHERE id = $1", &[&id])?
                .map(|r| r.get(0)))
        })
    }

    fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tokens (id, name, role, token_hash, created_at, created_by, expires_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &token.id, &token.name, &token.role, &token.token_hash, &token.created_at,
                    &token.created_by, &token.expires_at, &token.revoked_at,
                ],
            )?;
            Ok(())
        })
    }

    fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.read(|tx| {
            Ok(tx
                .query_opt(
                    &format!("{SELECT_TOKEN} WHERE token_hash = $1"),
                    &[&token_hash],
                )?
                .map(|r| token_from_row(&r)))
        })
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(|tx| {
            Ok(tx
                .query(&format!("{SELECT_TOKEN} ORDER BY created_at, id"), &[])?
                .iter()
                .map(token_from_row)
                .collect())
        })
    }

    fn revoke_token(&self, id: &str, at: &str) -> Result<TokenRecord, StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                &[&id, &at],
            )?;
            tx.query_opt(&format!("{SELECT_TOKEN} WHERE id = $1"), &[&id])?
                .map(|r| token_from_row(&r))
                .ok_or_else(|| StoreError::NotFound(format!("token {id}")))
        })
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO audit (at, actor, action, target, status, remote) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&entry.at, &entry.actor, &entry.action, &entry.target, &entry.status, &entry.remote],
            )?;
            Ok(())
        })
    }

    fn set_audit_status(&self, id: i64, status: i32) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE audit SET status = $1 WHERE id = $2",
                &[&status, &id],
            )?;
            Ok(())
        })
    }

    fn list_audit(&self, limit: usize, offset: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT id, at, actor, action, target, status, remote FROM audit ORDER BY id DESC LIMIT $1 OFFSET $2",
                    &[&i64::try_from(limit).unwrap_or(i64::MAX), &i64::try_from(offset).unwrap_or(i64::MAX)],
                )?
                .iter()
                .map(|r| AuditEntry {
                    id: r.get(0),
                    at: r.get(1),
                    actor: r.get(2),
                    action: r.get(3),
                    target: r.get(4),
                    status: r.get(5),
                    remote: r.get(6),
                })
                .collect())
        })
    }
}

const SELECT_TOKEN: &str =
    "SELECT id, name, role, token_hash, created_at, created_by, expires_at, revoked_at FROM tokens";

fn token_from_row(r: &Row) -> TokenRecord {
    TokenRecord {
        id: r.get(0),
        name: r.get(1),
        role: r.get(2),
        token_hash: r.get(3),
        created_at: r.get(4),
        created_by: r.get(5),
        expires_at: r.get(6),
        revoked_at: r.get(7),
    }
}
