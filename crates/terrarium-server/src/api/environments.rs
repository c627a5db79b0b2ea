//! `/api/v1/environments`: versions, labels, history, diff, archive, export, locks.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use terrarium_spec::error::error_chain;
use terrarium_spec::names::Reference;
use terrarium_store::{Event, MetadataUpdate, RegisterRequest, Source, VersionRecord};
use utoipa::IntoParams;

use crate::auth::{Identity, Role};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::SharedState;
use crate::wire::{
    DiffChange, DiffResponse, ErrorBody, ExportResponse, LabelBody, LockBody, LockHashResponse,
    MetadataBody, Page, RegisterBody, RegisterResponse,
};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// Filters and paging for the environment list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only environments whose name or description contains this text (any case).
    pub search: Option<String>,
    /// Only environments with this tag: `KEY` or `KEY=VALUE`.
    pub tag: Option<String>,
    /// Include archived environments.
    #[serde(default)]
    pub include_archived: bool,
    /// At most this many items (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Skip this many items.
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<usize>,
}

/// Paging for other lists.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many items (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Skip this many items.
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<usize>,
}

pub fn page<T>(items: Vec<T>, limit: Option<usize>, offset: Option<usize>) -> Page<T> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let offset = offset.unwrap_or(0);
    let total = items.len();
    let items = items.into_iter().skip(offset).take(limit).collect();
    Page {
        items,
        total,
        limit,
        offset,
    }
}

/// Whether a version matches the list filters.
pub fn matches(record: &VersionRecord, search: Option<&str>, tag: Option<&str>) -> bool {
    if let Some(search) = search.filter(|s| !s.is_empty()) {
        let needle = search.to_lowercase();
        let in_name = record.name.to_lowercase().contains(&needle);
        let in_description = record
            .description
            .as_deref()
            .is_some_and(|d| d.to_lowercase().contains(&needle));
        if !in_name && !in_description {
            return false;
        }
    }
    if let Some(tag) = tag.filter(|t| !t.is_empty()) {
        let ok = match tag.split_once('=') {
            Some((key, value)) => record.tags.get(key).is_some_and(|v| v == value),
            None => record.tags.contains_key(tag),
        };
        if !ok {
            return false;
        }
    }
    true
}

fn reference(text: &str) -> Result<Reference, ApiError> {
    Reference::parse(text).map_err(|e| ApiError::invalid(e.to_string()))
}

/// List environments (the latest version of each).
#[utoipa::path(get, path = "/api/v1/environments", tag = "environments", params(ListQuery),
    responses((status = 200, body = Page<VersionRecord>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<SharedState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Page<VersionRecord>>, ApiError> {
    let records = state
        .blocking(move |store| Ok(store.list(query.include_archived)?))
        .await?;
    Ok(Json(page(
        records
            .into_iter()
            .filter(|r| matches(r, query.search.as_deref(), query.tag.as_deref()))
            .collect(),
        query.limit,
        query.offset,
    )))
}

/// Register a definition: a new version, or the existing one with the same content.
#[utoipa::path(post, path = "/api/v1/environments", tag = "environments", request_body = RegisterBody,
    responses((status = 201, body = RegisterResponse, description = "a new version"),
        (status = 200, body = RegisterResponse, description = "an existing version had the same content"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn register(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Response, ApiError> {
    identity.require(Role::Contributor)?;
    let source = body.source.unwrap_or_else(|| Source::new("manual"));
    if source.kind == "curated" {
        return Err(ApiError::forbidden(
            "only the server seeds curated environments",
        ));
    }
    source.validate()?;
    let actor = identity.actor.clone();
    // Reading and checking a definition and a lock is CPU work that grows with their size: it
    // runs on the blocking pool, never on the threads that answer every other request.
    let outcome = state
        .blocking(move |store| {
            let definition = terrarium_spec::validate(&body.definition)?;
            let lock = body
                .lock
                .map(|lock| check_lock(&lock, &definition))
                .transpose()?;
            if let Some(parent) = &body.parent {
                match Reference::parse(parent) {
                    Ok(reference @ Reference::Version(..)) => {
                        store.resolve(&reference).map_err(|err| match err {
                            terrarium_store::StoreError::NotFound(_) => ApiError::invalid(format!(
                                "parent `{}` is not a version in this workspace",
                                parent.escape_debug()
                            )),
                            other => other.into(),
                        })?;
                    }
                    _ => {
                        return Err(ApiError::invalid(format!(
                            "parent `{}` must be NAME:VERSION",
                            parent.escape_debug()
                        )))
                    }
                }
            }
            let request = RegisterRequest {
                definition,
                source,
                parent: body.parent,
                actor,
                allow_curated: false,
                force_new: body.force_new,
                lock,
            };
            Ok(store.register(request)?)
        })
        .await?;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(RegisterResponse {
            created: outcome.created,
            record: outcome.record,
        }),
    )
        .into_response())
}

/// A lock must parse, carry the hash it claims, and belong to the definition: made from its
/// content, and every package in it allowed by it (`Lock::check_against`).
fn check_lock(
    body: &LockBody,
    definition: &terrarium_spec::Definition,
) -> Result<(String, String), ApiError> {
    let lock = terrarium_lock::Lock::from_json(&body.lock)
        .map_err(|err| ApiError::invalid(format!("lock: {}", error_chain(&err))))?;
    // The expected hashes are not printed: the answer must not help forge a lock.
    if lock.lock_hash() != body.lock_hash {
        return Err(ApiError::invalid(
            "lock: its content does not hash to the lock_hash sent with it",
        ));
    }
    if lock.content_hash != terrarium_spec::content_hash(definition) {
        return Err(ApiError::invalid(
            "lock: it was made for another definition than this version's",
        ));
    }
    lock.check_against(definition)
        .map_err(|err| ApiError::invalid(format!("lock: {err}")))?;
    Ok((body.lock_hash.clone(), body.lock.clone()))
}

/// The latest version of an environment.
#[utoipa::path(get, path = "/api/v1/environments/{name}", tag = "environments",
    params(("name" = String, Path, description = "environment name (`/` written as %2F)")),
    responses((status = 200, body = VersionRecord), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn latest(
    State(state): State<SharedState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<VersionRecord>, ApiError> {
    let reference = reference(&name)?;
    Ok(Json(
        state
            .blocking(move |store| Ok(store.resolve(&reference)?))
            .await?,
    ))
}

/// Every version of an environment, oldest first.
#[utoipa::path(get, path = "/api/v1/environments/{name}/versions", tag = "environments",
    params(("name" = String, Path), PageQuery),
    responses((status = 200, body = Page<VersionRecord>), (status = 404, body = ErrorBody)))]
pub async fn versions(
    State(state): State<SharedState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Page<VersionRecord>>, ApiError> {
    let records = state
        .blocking(move |store| Ok(store.versions(&name)?))
        .await?;
    Ok(Json(page(records, query.limit, query.offset)))
}

/// One version.
#[utoipa::path(get, path = "/api/v1/environments/{name}/versions/{version}", tag = "environments",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = VersionRecord), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn version(
    State(state): State<SharedState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<Json<VersionRecord>, ApiError> {
    let reference = Reference::version(&name, &version).map_err(ApiError::invalid)?;
    Ok(Json(
        state
            .blocking(move |store| Ok(store.resolve(&reference)?))
            .await?,
    ))
}

/// Change a version's description and tags; this makes no new version.
#[utoipa::path(patch, path = "/api/v1/environments/{name}/versions/{version}", tag = "environments",
    params(("name" = String, Path), ("version" = String, Path)), request_body = MetadataBody,
    responses((status = 200, body = VersionRecord), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_metadata(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath((name, version)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<MetadataBody>,
) -> Result<Json<VersionRecord>, ApiError> {
    identity.require(Role::Contributor)?;
    let update = MetadataUpdate {
        description: if body.clear_description {
            Some(None)
        } else {
            body.description.map(Some)
        },
        set_tags: body.set_tags,
        remove_tags: body.remove_tags,
    };
    let actor = identity.actor;
    Ok(Json(
        state
            .blocking(move |store| Ok(store.update_metadata(&name, &version, &update, &actor)?))
            .await?,
    ))
}

/// Delete a version that nothing refers to.
#[utoipa::path(delete, path = "/api/v1/environments/{name}/versions/{version}", tag = "environments",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_version(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    identity.require(Role::Admin)?;
    let actor = identity.actor;
    state
        .blocking(move |store| Ok(store.delete_version(&name, &version, &actor)?))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_archived(
    state: SharedState,
    identity: Identity,
    name: String,
    version: Option<String>,
    archived: bool,
) -> Result<StatusCode, ApiError> {
    identity.require(Role::Admin)?;
    let actor = identity.actor;
    state
        .blocking(move |store| {
            Ok(store.set_archived(&name, version.as_deref(), archived, &actor)?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Archive a whole environment.
#[utoipa::path(post, path = "/api/v1/environments/{name}/archive", tag = "environments",
    params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn archive(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    set_archived(state, identity, name, None, true).await
}

/// Restore a whole environment.
#[utoipa::path(post, path = "/api/v1/environments/{name}/restore", tag = "environments",
    params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn restore(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    set_archived(state, identity, name, None, false).await
}

/// Archive one version.
#[utoipa::path(post, path = "/api/v1/environments/{name}/versions/{version}/archive", tag = "environments",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn archive_version(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    set_archived(state, identity, name, Some(version), true).await
}

/// Restore one version.
#[utoipa::path(post, path = "/api/v1/environments/{name}/versions/{version}/restore", tag = "environments",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn restore_version(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    set_archived(state, identity, name, Some(version), false).await
}

/// The version a label points at.
#[utoipa::path(get, path = "/api/v1/environments/{name}/labels/{label}", tag = "environments",
    params(("name" = String, Path), ("label" = String, Path)),
    responses((status = 200, body = VersionRecord), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_label(
    State(state): State<SharedState>,
    ApiPath((name, label)): ApiPath<(String, String)>,
) -> Result<Json<VersionRecord>, ApiError> {
    let reference = Reference::label(&name, &label).map_err(ApiError::invalid)?;
    Ok(Json(
        state
            .blocking(move |store| Ok(store.resolve(&reference)?))
            .await?,
    ))
}

/// Point a label at a version, moving it if it exists.
#[utoipa::path(put, path = "/api/v1/environments/{name}/labels/{label}", tag = "environments",
    params(("name" = String, Path), ("label" = String, Path)), request_body = LabelBody,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_label(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath((name, label)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<LabelBody>,
) -> Result<StatusCode, ApiError> {
    identity.require(Role::Contributor)?;
    let actor = identity.actor;
    state
        .blocking(move |store| Ok(store.set_label(&name, &body.version, &label, &actor)?))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a label.
#[utoipa::path(delete, path = "/api/v1/environments/{name}/labels/{label}", tag = "environments",
    params(("name" = String, Path), ("label" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_label(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath((name, label)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    identity.require(Role::Contributor)?;
    let actor = identity.actor;
    state
        .blocking(move |store| Ok(store.remove_label(&name, &label, &actor)?))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The history that is not versions: label moves, archives, metadata changes, deletes.
#[utoipa::path(get, path = "/api/v1/environments/{name}/events", tag = "environments",
    params(("name" = String, Path), PageQuery),
    responses((status = 200, body = Page<Event>), (status = 404, body = ErrorBody)))]
pub async fn events(
    State(state): State<SharedState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Page<Event>>, ApiError> {
    let events = state
        .blocking(move |store| Ok(store.events(&name)?))
        .await?;
    Ok(Json(page(events, query.limit, query.offset)))
}

/// Export query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// native, aml-v2, aml-v1, conda, requirements or dockerfile.
    pub format: String,
}

/// A version written in another format.
#[utoipa::path(get, path = "/api/v1/environments/{name}/versions/{version}/export", tag = "environments",
    params(("name" = String, Path), ("version" = String, Path), ExportQuery),
    responses((status = 200, body = ExportResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn export(
    State(state): State<SharedState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Json<ExportResponse>, ApiError> {
    let format = terrarium_spec::Format::parse(&query.format)
        .filter(|f| f.can_export())
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "unknown export format `{}`: expected native, aml-v2, aml-v1, conda, requirements or dockerfile",
                query.format
            ))
        })?;
    let reference = Reference::version(&name, &version).map_err(ApiError::invalid)?;
    let record = state
        .blocking(move |store| Ok(store.resolve(&reference)?))
        .await?;
    Ok(Json(ExportResponse::of(&record.definition, format)?))
}

/// Diff query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// `NAME:VERSION`, `NAME@LABEL` or `NAME`.
    pub old: String,
    /// `NAME:VERSION`, `NAME@LABEL` or `NAME`.
    pub new: String,
    /// The platform whose locked packages are compared (default: the server's).
    pub platform: Option<String>,
}

/// The differences between two versions: definition fields and, when both are locked, the
/// locked packages.
#[utoipa::path(get, path = "/api/v1/diff", tag = "environments", params(DiffQuery),
    responses((status = 200, body = DiffResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn diff(
    State(state): State<SharedState>,
    ApiQuery(query): ApiQuery<DiffQuery>,
) -> Result<Json<DiffResponse>, ApiError> {
    let old_ref = reference(&query.old)?;
    let new_ref = reference(&query.new)?;
    let platform = query
        .platform
        .unwrap_or_else(terrarium_lock::current_platform);
    Ok(Json(
        state
            .blocking(move |store| diff_versions(store, &old_ref, &new_ref, &platform))
            .await?,
    ))
}

pub fn diff_versions(
    store: &dyn terrarium_store::Store,
    old_ref: &Reference,
    new_ref: &Reference,
    platform: &str,
) -> Result<DiffResponse, ApiError> {
    let old = store.resolve(old_ref)?;
    let new = store.resolve(new_ref)?;
    let mut changes: Vec<DiffChange> = terrarium_spec::diff(&old.definition, &new.definition)
        .changes
        .into_iter()
        .map(|c| DiffChange {
            section: c.section.to_string(),
            key: c.key,
            kind: kind_name(c.kind).to_string(),
            old: c.old,
            new: c.new,
        })
        .collect();
    if let (Some(a), Some(b)) = (&old.lock_hash, &new.lock_hash) {
        if a != b {
            let lock = |hash: &str| {
                terrarium_lock::Lock::from_json(&store.get_lock(hash)?).map_err(|err| {
                    ApiError::internal(format!("stored lock: {}", error_chain(&err)))
                })
            };
            let (old_lock, new_lock) = (lock(a)?, lock(b)?);
            changes.extend(
                old_lock
                    .diff(&new_lock, platform)
                    .into_iter()
                    .map(|c| DiffChange {
                        section: c.section.to_string(),
                        key: c.key,
                        kind: kind_name(c.kind).to_string(),
                        old: c.old,
                        new: c.new,
                    }),
            );
        }
    }
    Ok(DiffResponse {
        old: format!("{}:{}", old.name, old.version),
        new: format!("{}:{}", new.name, new.version),
        identical: old.content_hash == new.content_hash,
        old_content_hash: old.content_hash,
        new_content_hash: new.content_hash,
        changes,
    })
}

fn kind_name(kind: terrarium_spec::diff::ChangeKind) -> &'static str {
    match kind {
        terrarium_spec::diff::ChangeKind::Added => "added",
        terrarium_spec::diff::ChangeKind::Removed => "removed",
        terrarium_spec::diff::ChangeKind::Changed => "changed",
    }
}

/// Give a version its lock, unless it has one; answers the lock the version has afterwards.
#[utoipa::path(put, path = "/api/v1/environments/{name}/versions/{version}/lock", tag = "locks",
    params(("name" = String, Path), ("version" = String, Path)), request_body = LockBody,
    responses((status = 200, body = LockHashResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_lock(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath((name, version)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<LockBody>,
) -> Result<Json<LockHashResponse>, ApiError> {
    identity.require(Role::Contributor)?;
    let reference = Reference::version(&name, &version).map_err(ApiError::invalid)?;
    let lock_hash = state
        .blocking(move |store| {
            let record = store.resolve(&reference)?;
            // A lock decides what every later build installs: only the version's author or an
            // admin may give it one.
            identity.require_author(&record.created_by, &format!("{name}:{version}"))?;
            let (hash, json) = check_lock(&body, &record.definition)?;
            Ok(store.set_lock(&name, &version, &hash, &json)?)
        })
        .await?;
    Ok(Json(LockHashResponse { lock_hash }))
}

/// A stored lock, as JSON.
#[utoipa::path(get, path = "/api/v1/locks/{lock_hash}", tag = "locks",
    params(("lock_hash" = String, Path)),
    responses((status = 200, description = "the lock's JSON", content_type = "application/json", body = Object), (status = 404, body = ErrorBody)))]
pub async fn get_lock(
    State(state): State<SharedState>,
    ApiPath(lock_hash): ApiPath<String>,
) -> Result<Response, ApiError> {
    let lock = state
        .blocking(move |store| Ok(store.get_lock(&lock_hash)?))
        .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        lock,
    )
        .into_response())
}
