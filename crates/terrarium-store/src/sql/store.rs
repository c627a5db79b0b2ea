//! Every [`Store`] operation, written once for every [`Backend`].

use std::collections::BTreeMap;

use terrarium_spec::names::{self, Reference};
use terrarium_spec::Definition;

use super::{Backend, Conn, Row};
use crate::{
    now, AuditEntry, ComputeRecord, DeploymentRecord, Event, ImageBuildRecord, MetadataUpdate,
    RegisterOutcome, RegisterRequest, RunRecord, RunState, RunUpdate, Source, Store, StoreError,
    TokenRecord, VersionRecord,
};

impl<B: Backend> Store for B {
    fn register(&self, request: RegisterRequest) -> Result<RegisterOutcome, StoreError> {
        let mut definition = request.definition.clone();
        definition.normalize();
        let hash = crate::check_registration(&definition, request.allow_curated)?;
        self.write(|tx| register(tx, &request, &definition, &hash))
    }

    fn resolve(&self, reference: &Reference) -> Result<VersionRecord, StoreError> {
        self.read(|tx| resolve(tx, reference))
    }

    fn list(&self, include_archived: bool) -> Result<Vec<VersionRecord>, StoreError> {
        self.read(|tx| {
            // The latest non-archived version of each environment; with `include_archived`, the
            // newest version of environments that have no such version too.
            let sql = format!(
                "{SELECT_VERSION} WHERE v.seq = (SELECT MAX(seq) FROM versions x WHERE x.name = v.name AND NOT x.archived) \
                 AND (?1 OR NOT e.archived) \
                 UNION ALL {SELECT_VERSION} WHERE ?1 AND v.seq = (SELECT MAX(seq) FROM versions x WHERE x.name = v.name) \
                 AND NOT EXISTS (SELECT 1 FROM versions x WHERE x.name = v.name AND NOT x.archived) \
                 ORDER BY 1"
            );
            records(tx, &sql, args![include_archived])
        })
    }

    fn versions(&self, name: &str) -> Result<Vec<VersionRecord>, StoreError> {
        self.read(|tx| {
            if env_state(tx, name)?.is_none() {
                return Err(StoreError::NotFound(format!("environment `{name}`")));
            }
            let sql = format!("{SELECT_VERSION} WHERE v.name = ?1 ORDER BY v.seq");
            records(tx, &sql, args![name])
        })
    }

    fn events(&self, name: &str) -> Result<Vec<Event>, StoreError> {
        self.read(|tx| {
            tx.query(
                "SELECT name, version, action, detail, actor, at FROM events WHERE name = ?1 ORDER BY id",
                args![name],
            )?
            .into_iter()
            .map(|mut r| {
                Ok(Event {
                    name: r.take(0)?,
                    version: r.take(1)?,
                    action: r.take(2)?,
                    detail: r.take(3)?,
                    actor: r.take(4)?,
                    at: r.take(5)?,
                })
            })
            .collect()
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
            let previous: Option<String> = tx.value(
                "SELECT version FROM labels WHERE name = ?1 AND label = ?2",
                args![name, label],
            )?;
            tx.execute(
                "INSERT INTO labels (name, label, version, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (name, label) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                args![name, label, version, &now(), actor],
            )?;
            let detail = match previous {
                Some(p) if p != version => format!("{label}: {p} -> {version}"),
                Some(_) => format!("{label} (unchanged)"),
                None => label.to_string(),
            };
            event(tx, name, Some(version), "label", Some(detail.as_str()), actor)
        })
    }

    fn remove_label(&self, name: &str, label: &str, actor: &str) -> Result<(), StoreError> {
        refuse_curated(name)?;
        names::validate_label(label).map_err(StoreError::Invalid)?;
        self.write(|tx| {
            let version: String = tx
                .value(
                    "DELETE FROM labels WHERE name = ?1 AND label = ?2 RETURNING version",
                    args![name, label],
                )?
                .ok_or_else(|| StoreError::NotFound(format!("label {name}@{label}")))?;
            event(
                tx,
                name,
                Some(version.as_str()),
                "unlabel",
                Some(label),
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
                args![name, version, &description, &json(&tags)],
            )?;
            let mut what = Vec::new();
            if update.description.is_some() {
                what.push("description".to_string());
            }
            what.extend(update.set_tags.keys().map(|k| format!("tag {k}")));
            what.extend(update.remove_tags.iter().map(|k| format!("untag {k}")));
            let detail = what.join(", ");
            event(
                tx,
                name,
                Some(version),
                "update",
                Some(detail.as_str()),
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
                        args![name, version, archived],
                    )?;
                }
                None => {
                    tx.execute(
                        "UPDATE environments SET archived = ?2 WHERE name = ?1",
                        args![name, archived],
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
            let referenced = |reason: String| StoreError::Referenced {
                reference: format!("{name}:{version}"),
                reason,
            };
            // Labels, then runs (a reference that never goes away), deployments, image builds.
            let labels: Vec<String> = tx.column(
                "SELECT label FROM labels WHERE name = ?1 AND version = ?2 ORDER BY label",
                args![name, version],
            )?;
            if !labels.is_empty() {
                return Err(referenced(format!(
                    "label(s) {} point to it",
                    labels.join(", ")
                )));
            }
            let runs: i64 = tx
                .value(
                    "SELECT COUNT(*) FROM runs WHERE name = ?1 AND version = ?2",
                    args![name, version],
                )?
                .unwrap_or(0);
            if runs > 0 {
                return Err(referenced(format!("{runs} recorded run(s) used it")));
            }
            let deployments: Vec<String> = tx.column(
                "SELECT name FROM deployments WHERE env_name = ?1 AND env_version = ?2 ORDER BY name",
                args![name, version],
            )?;
            if !deployments.is_empty() {
                return Err(referenced(format!(
                    "deployment(s) {} serve it",
                    deployments.join(", ")
                )));
            }
            let images: i64 = tx
                .value(
                    "SELECT COUNT(*) FROM image_builds WHERE env_name = ?1 AND env_version = ?2",
                    args![name, version],
                )?
                .unwrap_or(0);
            if images > 0 {
                return Err(referenced(format!("{images} image(s) were built from it")));
            }
            tx.execute(
                "DELETE FROM versions WHERE name = ?1 AND version = ?2",
                args![name, version],
            )?;
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
            let sql = format!(
                "SELECT lock_hash FROM versions WHERE name = ?1 AND version = ?2{}",
                tx.for_update()
            );
            let existing: Option<String> = tx
                .value(&sql, args![name, version])?
                .ok_or_else(|| StoreError::NotFound(format!("version {name}:{version}")))?;
            if let Some(existing) = existing {
                return Ok(existing);
            }
            insert_lock(tx, lock_hash, lock)?;
            tx.execute(
                "UPDATE versions SET lock_hash = ?3 WHERE name = ?1 AND version = ?2 AND lock_hash IS NULL",
                args![name, version, lock_hash],
            )?;
            Ok(lock_hash.to_string())
        })
    }

    fn get_lock(&self, lock_hash: &str) -> Result<String, StoreError> {
        self.read(|tx| {
            tx.value(
                "SELECT lock FROM locks WHERE lock_hash = ?1",
                args![lock_hash],
            )?
            .ok_or_else(|| StoreError::NotFound(format!("lock {lock_hash}")))
        })
    }

    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let command = json(&run.command);
        let job = run.job.as_ref().map(json);
        self.write(|tx| {
            require_version(tx, &run.environment, &run.version)?;
            let sql = format!(
                "INSERT INTO runs (id, seq, experiment, name, version, lock_hash, command, cwd, target, actor, started_at, log_path, state, job) \
                 VALUES (?1, {}, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                tx.next_seq("runs")
            );
            tx.execute(
                &sql,
                args![
                    &run.id,
                    &run.experiment,
                    &run.environment,
                    &run.version,
                    &run.lock_hash,
                    &command,
                    &run.cwd,
                    &run.target,
                    &run.actor,
                    &run.started_at,
                    &run.log_path,
                    run.state.as_str(),
                    &job,
                ],
            )?;
            Ok(())
        })
    }

    fn finish_run(&self, id: &str, finished_at: &str, exit_code: i32) -> Result<(), StoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE runs SET finished_at = ?2, exit_code = ?3, state = ?4 WHERE id = ?1",
                args![
                    id,
                    finished_at,
                    exit_code,
                    RunState::from_exit_code(exit_code).as_str()
                ],
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
            let sql = format!(
                "{SELECT_RUN} WHERE (CAST(?1 AS TEXT) IS NULL OR experiment = ?1) ORDER BY seq DESC LIMIT ?2"
            );
            tx.query(&sql, args![experiment, bound(limit)])?
                .into_iter()
                .map(run_from_row)
                .collect()
        })
    }

    fn get_run(&self, id: &str) -> Result<RunRecord, StoreError> {
        self.read(|tx| {
            let row = tx.query_opt(&format!("{SELECT_RUN} WHERE id = ?1"), args![id])?;
            row.map(run_from_row)
                .transpose()?
                .ok_or_else(|| StoreError::NotFound(format!("run {id}")))
        })
    }

    fn put_run_log(&self, id: &str, log: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| {
            if tx
                .query_opt("SELECT 1 FROM runs WHERE id = ?1", args![id])?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("run {id}")));
            }
            tx.execute(
                "INSERT INTO run_logs (id, log) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET log = excluded.log",
                args![id, log],
            )?;
            Ok(())
        })
    }

    fn get_run_log(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|tx| tx.value("SELECT log FROM run_logs WHERE id = ?1", args![id]))
    }

    fn update_run(&self, id: &str, update: &RunUpdate) -> Result<RunRecord, StoreError> {
        self.write(|tx| {
            let sql = format!("{SELECT_RUN} WHERE id = ?1{}", tx.for_update());
            let mut run = tx
                .query_opt(&sql, args![id])?
                .map(run_from_row)
                .transpose()?
                .ok_or_else(|| StoreError::NotFound(format!("run {id}")))?;
            if run.state.is_final() {
                return Ok(run);
            }
            run.apply(update);
            let job = run.job.as_ref().map(json);
            tx.execute(
                "UPDATE runs SET state = ?2, started_at = ?3, finished_at = ?4, job = ?5 WHERE id = ?1",
                args![
                    id,
                    run.state.as_str(),
                    &run.started_at,
                    &run.finished_at,
                    &job
                ],
            )?;
            if let Some(code) = run.exit_code {
                tx.execute(
                    "UPDATE runs SET exit_code = ?2 WHERE id = ?1",
                    args![id, code],
                )?;
            }
            Ok(run)
        })
    }

    fn add_compute(&self, target: &ComputeRecord) -> Result<(), StoreError> {
        crate::validate_compute_name(&target.name)?;
        let options = json(&target.options);
        self.write(|tx| {
            let added = tx.execute(
                "INSERT INTO compute_targets (name, kind, options, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (name) DO NOTHING",
                args![
                    &target.name,
                    &target.kind,
                    &options,
                    &target.created_at,
                    &target.created_by
                ],
            )?;
            if added == 0 {
                return Err(StoreError::Invalid(format!(
                    "compute target `{}` already exists",
                    target.name
                )));
            }
            Ok(())
        })
    }

    fn get_compute(&self, name: &str) -> Result<ComputeRecord, StoreError> {
        self.read(|tx| {
            tx.query_opt(&format!("{SELECT_COMPUTE} WHERE name = ?1"), args![name])?
                .map(compute_from_row)
                .transpose()?
                .ok_or_else(|| StoreError::NotFound(format!("compute target {name}")))
        })
    }

    fn list_compute(&self) -> Result<Vec<ComputeRecord>, StoreError> {
        self.read(|tx| {
            tx.query(&format!("{SELECT_COMPUTE} ORDER BY name"), args![])?
                .into_iter()
                .map(compute_from_row)
                .collect()
        })
    }

    fn remove_compute(&self, name: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let live: Vec<String> = tx.column(
                "SELECT id FROM runs WHERE target = ?1 AND state IN ('queued', 'running') ORDER BY seq",
                args![name],
            )?;
            if !live.is_empty() {
                return Err(StoreError::Referenced {
                    reference: format!("compute target {name}"),
                    reason: format!("run(s) {} on it have not ended", live.join(", ")),
                });
            }
            let removed = tx.execute("DELETE FROM compute_targets WHERE name = ?1", args![name])?;
            if removed == 0 {
                return Err(StoreError::NotFound(format!("compute target {name}")));
            }
            Ok(())
        })
    }

    fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tokens (id, name, role, token_hash, created_at, created_by, expires_at, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                args![
                    &token.id,
                    &token.name,
                    &token.role,
                    &token.token_hash,
                    &token.created_at,
                    &token.created_by,
                    &token.expires_at,
                    &token.revoked_at,
                ],
            )?;
            Ok(())
        })
    }

    fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.read(|tx| {
            let sql = format!("{SELECT_TOKEN} WHERE token_hash = ?1");
            tx.query_opt(&sql, args![token_hash])?
                .map(token_from_row)
                .transpose()
        })
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(|tx| {
            let sql = format!("{SELECT_TOKEN} ORDER BY created_at, id");
            tx.query(&sql, &[])?
                .into_iter()
                .map(token_from_row)
                .collect()
        })
    }

    fn revoke_token(&self, id: &str, at: &str) -> Result<TokenRecord, StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                args![id, at],
            )?;
            let sql = format!("{SELECT_TOKEN} WHERE id = ?1");
            tx.query_opt(&sql, args![id])?
                .map(token_from_row)
                .transpose()?
                .ok_or_else(|| StoreError::NotFound(format!("token {id}")))
        })
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.write(|tx| insert_audit(tx, entry).map(drop))
    }

    fn set_audit_status(&self, id: i64, status: i32) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE audit SET status = ?1 WHERE id = ?2",
                args![status, id],
            )?;
            Ok(())
        })
    }

    fn list_audit(&self, limit: usize, offset: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(|tx| {
            tx.query(
                "SELECT id, at, actor, action, target, status, remote FROM audit ORDER BY id DESC LIMIT ?1 OFFSET ?2",
                args![bound(limit), bound(offset)],
            )?
            .into_iter()
            .map(|mut r| {
                Ok(AuditEntry {
                    id: r.take(0)?,
                    at: r.take(1)?,
                    actor: r.take(2)?,
                    action: r.take(3)?,
                    target: r.take(4)?,
                    status: r.take(5)?,
                    remote: r.take(6)?,
                })
            })
            .collect()
        })
    }

    fn add_image_build(&self, build: &ImageBuildRecord) -> Result<(), StoreError> {
        let record = serde_json::to_string(build).expect("a build serializes");
        self.write(|tx| {
            require_version(tx, &build.environment, &build.version)?;
            tx.execute(
                "INSERT INTO image_builds (env_name, env_version, record) VALUES (?1, ?2, ?3)",
                args![&build.environment, &build.version, &record],
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
            tx.column(
                "SELECT record FROM image_builds WHERE env_name = ?1 AND (CAST(?2 AS TEXT) IS NULL OR env_version = ?2) ORDER BY id DESC",
                args![name, version],
            )
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
                args![
                    &deployment.name,
                    &deployment.environment,
                    &deployment.version,
                    &record,
                    &now(),
                ],
            )?;
            Ok(())
        })
    }

    fn get_deployment(&self, name: &str) -> Result<DeploymentRecord, StoreError> {
        let record: String = self.read(|tx| {
            tx.value(
                "SELECT record FROM deployments WHERE name = ?1",
                args![name],
            )?
            .ok_or_else(|| StoreError::NotFound(format!("deployment {name}")))
        })?;
        serde_json::from_str(&record)
            .map_err(|e| StoreError::Corrupt(format!("deployment {name}: {e}")))
    }

    fn list_deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        let records: Vec<String> =
            self.read(|tx| tx.column("SELECT record FROM deployments ORDER BY name", &[]))?;
        crate::error::decode_records(&records, "deployment")
    }

    fn put_context(&self, digest: &str, archive: &[u8]) -> Result<(), StoreError> {
        crate::check_context_digest(digest)?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO contexts (digest, archive, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (digest) DO NOTHING",
                args![digest, archive, &now()],
            )?;
            Ok(())
        })
    }

    fn get_context(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        self.read(|tx| {
            tx.value(
                "SELECT archive FROM contexts WHERE digest = ?1",
                args![digest],
            )?
            .ok_or_else(|| StoreError::NotFound(format!("build context {digest}")))
        })
    }

    fn has_context(&self, digest: &str) -> Result<bool, StoreError> {
        self.read(|tx| {
            let row = tx.query_opt("SELECT 1 FROM contexts WHERE digest = ?1", args![digest])?;
            Ok(row.is_some())
        })
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|tx| tx.value("SELECT value FROM meta WHERE key = ?1", args![key]))
    }

    fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                args![key, value],
            )?;
            Ok(())
        })
    }
}

/// Register `definition` (normalized and checked, with content hash `hash`) by the versioning
/// rules in the crate's documentation.
fn register(
    tx: &mut dyn Conn,
    request: &RegisterRequest,
    definition: &Definition,
    hash: &str,
) -> Result<RegisterOutcome, StoreError> {
    let name = definition.name.as_str();
    let tags_json = json(&definition.tags);
    tx.execute(
        "INSERT INTO environments (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        args![name, &now()],
    )?;
    // Registrations of one environment take turns, so numbering is gap-free and identical
    // content finds the version another process just created.
    let sql = format!(
        "SELECT archived, next_version FROM environments WHERE name = ?1{}",
        tx.for_update()
    );
    let mut environment = tx
        .query_opt(&sql, args![name])?
        .ok_or_else(|| StoreError::NotFound(format!("environment `{name}`")))?;
    let env_archived: bool = environment.take(0)?;
    let mut next: i64 = environment.take(1)?;
    let previous = latest(tx, name)?;
    let version = match &definition.version {
        Some(version) => {
            let existing: Option<String> = tx.value(
                "SELECT content_hash FROM versions WHERE name = ?1 AND version = ?2",
                args![name, version],
            )?;
            match existing {
                Some(existing) if existing == hash => {
                    return Ok(RegisterOutcome {
                        record: load(tx, name, version)?,
                        created: false,
                    });
                }
                Some(existing) => {
                    return Err(StoreError::VersionConflict {
                        name: name.to_string(),
                        version: version.clone(),
                        existing,
                    });
                }
                None => {
                    // Automatic versions continue after the highest number ever used.
                    if let Ok(number) = version.parse::<i64>() {
                        tx.execute(
                            "UPDATE environments SET next_version = ?2 WHERE name = ?1 AND next_version < ?2",
                            args![name, number + 1],
                        )?;
                    }
                    version.clone()
                }
            }
        }
        None => {
            if let Some((version, existing)) = previous.as_ref().filter(|_| !request.force_new) {
                if existing == hash {
                    return reregister(tx, request, definition, version, tags_json);
                }
            }
            // An explicit version may already have taken this number.
            while tx
                .query_opt(
                    "SELECT 1 FROM versions WHERE name = ?1 AND version = ?2",
                    args![name, &next.to_string()],
                )?
                .is_some()
            {
                next += 1;
            }
            tx.execute(
                "UPDATE environments SET next_version = ?2 WHERE name = ?1",
                args![name, next + 1],
            )?;
            next.to_string()
        }
    };
    let parent = request
        .parent
        .clone()
        .or_else(|| previous.as_ref().map(|(v, _)| format!("{name}:{v}")));
    let mut stored = definition.clone();
    stored.version = Some(version.clone());
    let lock_hash = match &request.lock {
        Some((lock_hash, lock)) => {
            insert_lock(tx, lock_hash, lock)?;
            Some(lock_hash.as_str())
        }
        None => None,
    };
    let sql = format!(
        "INSERT INTO versions (name, version, seq, content_hash, definition, description, tags, created_at, created_by, source, parent, lock_hash) \
         VALUES (?1, ?2, {}, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        tx.next_seq("versions")
    );
    tx.execute(
        &sql,
        args![
            name,
            &version,
            hash,
            &json(&stored),
            &definition.description,
            &tags_json,
            &now(),
            &request.actor,
            &json(&request.source),
            &parent,
            lock_hash,
        ],
    )?;
    if env_archived {
        tx.execute(
            "UPDATE environments SET archived = ?2 WHERE name = ?1",
            args![name, false],
        )?;
        let detail = "a new version was registered";
        event(
            tx,
            name,
            Some(version.as_str()),
            "restore",
            Some(detail),
            &request.actor,
        )?;
    }
    Ok(RegisterOutcome {
        record: load(tx, name, &version)?,
        created: true,
    })
}

/// Registering the latest version's content again makes no version; a new description or new
/// tags still update it.
fn reregister(
    tx: &mut dyn Conn,
    request: &RegisterRequest,
    definition: &Definition,
    version: &str,
    tags_json: String,
) -> Result<RegisterOutcome, StoreError> {
    let name = definition.name.as_str();
    let record = load(tx, name, version)?;
    let description_changed =
        definition.description.is_some() && definition.description != record.description;
    let tags_changed = !definition.tags.is_empty() && definition.tags != record.tags;
    if !description_changed && !tags_changed {
        return Ok(RegisterOutcome {
            record,
            created: false,
        });
    }
    let tags = if tags_changed {
        tags_json
    } else {
        json(&record.tags)
    };
    tx.execute(
        "UPDATE versions SET description = COALESCE(?3, description), tags = ?4 WHERE name = ?1 AND version = ?2",
        args![name, version, &definition.description, &tags],
    )?;
    let detail = "description/tags from re-registration";
    event(
        tx,
        name,
        Some(version),
        "update",
        Some(detail),
        &request.actor,
    )?;
    Ok(RegisterOutcome {
        record: load(tx, name, version)?,
        created: false,
    })
}

fn resolve(tx: &mut dyn Conn, reference: &Reference) -> Result<VersionRecord, StoreError> {
    let name = reference.name();
    let Some(env_archived) = env_state(tx, name)? else {
        return Err(StoreError::NotFound(format!("environment `{name}`")));
    };
    match reference {
        Reference::Version(name, version) => load(tx, name, version),
        Reference::Label(name, label) => {
            let version: String = tx
                .value(
                    "SELECT version FROM labels WHERE name = ?1 AND label = ?2",
                    args![name, label],
                )?
                .ok_or_else(|| StoreError::NotFound(format!("label {name}@{label}")))?;
            load(tx, name, &version)
        }
        Reference::Latest(name) => {
            if env_archived {
                return Err(StoreError::Archived(format!(
                    "environment `{name}` is archived"
                )));
            }
            if let Some((version, _)) = latest(tx, name)? {
                return load(tx, name, &version);
            }
            let any = tx
                .query_opt(
                    "SELECT 1 FROM versions WHERE name = ?1 LIMIT 1",
                    args![name],
                )?
                .is_some();
            Err(if any {
                StoreError::Archived(format!("every version of `{name}` is archived"))
            } else {
                StoreError::NotFound(format!("environment `{name}` (it has no versions)"))
            })
        }
    }
}

fn refuse_curated(name: &str) -> Result<(), StoreError> {
    if names::is_curated(name) {
        Err(StoreError::Curated(name.to_string()))
    } else {
        Ok(())
    }
}

/// Stored JSON of plain data, which always serializes.
fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

/// A `LIMIT` or `OFFSET`.
fn bound(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn event(
    tx: &mut dyn Conn,
    name: &str,
    version: Option<&str>,
    action: &str,
    detail: Option<&str>,
    actor: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO events (name, version, action, detail, actor, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![name, version, action, detail, actor, &now()],
    )?;
    Ok(())
}

fn insert_lock(tx: &mut dyn Conn, lock_hash: &str, lock: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO locks (lock_hash, lock, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (lock_hash) DO NOTHING",
        args![lock_hash, lock, &now()],
    )?;
    Ok(())
}

/// Insert an audit row; its id.
pub fn insert_audit(tx: &mut dyn Conn, entry: &AuditEntry) -> Result<i64, StoreError> {
    tx.value(
        "INSERT INTO audit (at, actor, action, target, status, remote) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        args![
            &entry.at,
            &entry.actor,
            &entry.action,
            &entry.target,
            entry.status,
            &entry.remote,
        ],
    )?
    .ok_or_else(|| StoreError::Corrupt("inserting an audit row returned no id".to_string()))
}

/// (version, content_hash) of the latest non-archived version.
fn latest(tx: &mut dyn Conn, name: &str) -> Result<Option<(String, String)>, StoreError> {
    let row = tx.query_opt(
        "SELECT version, content_hash FROM versions WHERE name = ?1 AND NOT archived ORDER BY seq DESC LIMIT 1",
        args![name],
    )?;
    row.map(|mut r| Ok((r.take(0)?, r.take(1)?))).transpose()
}

/// Whether the environment is archived, or `None` when there is no such environment.
fn env_state(tx: &mut dyn Conn, name: &str) -> Result<Option<bool>, StoreError> {
    tx.value(
        "SELECT archived FROM environments WHERE name = ?1",
        args![name],
    )
}

fn require_version(tx: &mut dyn Conn, name: &str, version: &str) -> Result<(), StoreError> {
    let row = tx.query_opt(
        "SELECT 1 FROM versions WHERE name = ?1 AND version = ?2",
        args![name, version],
    )?;
    match row {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("version {name}:{version}"))),
    }
}

const SELECT_VERSION: &str =
    "SELECT v.name, v.version, v.content_hash, v.definition, v.description, v.tags, \
     v.archived, e.archived, v.created_at, v.created_by, v.source, v.parent, v.lock_hash \
     FROM versions v JOIN environments e ON e.name = v.name";

fn load(tx: &mut dyn Conn, name: &str, version: &str) -> Result<VersionRecord, StoreError> {
    let sql = format!("{SELECT_VERSION} WHERE v.name = ?1 AND v.version = ?2");
    records(tx, &sql, args![name, version])?
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("version {name}:{version}")))
}

/// The versions a `SELECT_VERSION` query returns, with their labels.
fn records(
    tx: &mut dyn Conn,
    sql: &str,
    params: &[super::Value<'_>],
) -> Result<Vec<VersionRecord>, StoreError> {
    let rows = tx.query(sql, params)?;
    let mut out = Vec::with_capacity(rows.len());
    let mut latest_of: BTreeMap<String, Option<String>> = BTreeMap::new();
    for mut row in rows {
        let name: String = row.take(0)?;
        let version: String = row.take(1)?;
        let env_archived: bool = row.take(7)?;
        let latest_version = match latest_of.get(&name) {
            Some(v) => v.clone(),
            None => {
                let v = latest(tx, &name)?.map(|(v, _)| v);
                latest_of.insert(name.clone(), v.clone());
                v
            }
        };
        let mut labels: Vec<String> = tx.column(
            "SELECT label FROM labels WHERE name = ?1 AND version = ?2 ORDER BY label",
            args![&name, &version],
        )?;
        if !env_archived && latest_version.as_deref() == Some(version.as_str()) {
            labels.insert(0, names::LATEST.to_string());
        }
        let corrupt = |what: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("{what} of {name}:{version}: {e}"))
        };
        let description: Option<String> = row.take(4)?;
        let mut definition: Definition =
            serde_json::from_str(&row.take::<String>(3)?).map_err(|e| corrupt("definition", e))?;
        let tags: BTreeMap<String, String> =
            serde_json::from_str(&row.take::<String>(5)?).map_err(|e| corrupt("tags", e))?;
        let source: Source =
            serde_json::from_str(&row.take::<String>(10)?).map_err(|e| corrupt("source", e))?;
        let archived: bool = row.take(6)?;
        definition.description = description.clone();
        definition.tags = tags.clone();
        out.push(VersionRecord {
            curated: names::is_curated(&name),
            content_hash: row.take(2)?,
            labels,
            archived: archived || env_archived,
            created_at: row.take(8)?,
            created_by: row.take(9)?,
            source,
            parent: row.take(11)?,
            lock_hash: row.take(12)?,
            description,
            tags,
            definition,
            name,
            version,
        });
    }
    Ok(out)
}

const SELECT_RUN: &str =
    "SELECT id, experiment, name, version, lock_hash, command, cwd, target, actor, \
     started_at, finished_at, exit_code, log_path, state, job FROM runs";

const SELECT_COMPUTE: &str =
    "SELECT name, kind, options, created_at, created_by FROM compute_targets";

fn compute_from_row(mut r: Row) -> Result<ComputeRecord, StoreError> {
    let name: String = r.take(0)?;
    let options: String = r.take(2)?;
    Ok(ComputeRecord {
        options: serde_json::from_str(&options)
            .map_err(|e| StoreError::Corrupt(format!("options of compute target {name}: {e}")))?,
        name,
        kind: r.take(1)?,
        created_at: r.take(3)?,
        created_by: r.take(4)?,
    })
}

fn run_from_row(mut r: Row) -> Result<RunRecord, StoreError> {
    let command: String = r.take(5)?;
    let id: String = r.take(0)?;
    let exit_code: Option<i32> = r.take(11)?;
    Ok(RunRecord {
        id: id.clone(),
        experiment: r.take(1)?,
        environment: r.take(2)?,
        version: r.take(3)?,
        lock_hash: r.take(4)?,
        command: serde_json::from_str(&command).unwrap_or_else(|_| vec![command]),
        cwd: r.take(6)?,
        target: r.take(7)?,
        actor: r.take(8)?,
        started_at: r.take(9)?,
        finished_at: r.take(10)?,
        exit_code,
        log_path: r.take(12)?,
        state: match r.take::<Option<String>>(13)? {
            Some(state) => state
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("run {id}: {e}")))?,
            // Recorded before runs had a state.
            None => match exit_code {
                Some(code) => RunState::from_exit_code(code),
                None => RunState::Running,
            },
        },
        job: r
            .take::<Option<String>>(14)?
            .map(|job| serde_json::from_str(&job))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("run {id}: {e}")))?,
    })
}

const SELECT_TOKEN: &str =
    "SELECT id, name, role, token_hash, created_at, created_by, expires_at, revoked_at FROM tokens";

fn token_from_row(mut r: Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: r.take(0)?,
        name: r.take(1)?,
        role: r.take(2)?,
        token_hash: r.take(3)?,
        created_at: r.take(4)?,
        created_by: r.take(5)?,
        expires_at: r.take(6)?,
        revoked_at: r.take(7)?,
    })
}
