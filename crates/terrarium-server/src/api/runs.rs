//! `/api/v1/runs`: recorded runs and their logs.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use terrarium_store::{EngineJob, RunRecord, RunUpdate};
use utoipa::IntoParams;

use super::environments::page;
use super::plain_text;
use crate::auth::{Identity, Role};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::SharedState;
use crate::wire::{ErrorBody, FinishRunBody, Page, RunStateBody};

/// The largest log kept for one run; a longer one keeps its end.
pub const MAX_LOG_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only runs of this experiment.
    pub experiment: Option<String>,
    /// Only runs in this environment (by name).
    pub environment: Option<String>,
    /// At most this many items (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Skip this many items.
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<usize>,
}

/// Runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunsQuery),
    responses((status = 200, body = Page<RunRecord>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<SharedState>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<Json<Page<RunRecord>>, ApiError> {
    let experiment = query.experiment.clone();
    let runs = state
        .blocking(move |store| Ok(store.list_runs(experiment.as_deref(), usize::MAX >> 1)?))
        .await?;
    let runs = runs
        .into_iter()
        .filter(|r| {
            query
                .environment
                .as_deref()
                .is_none_or(|name| r.environment == name)
        })
        .collect();
    Ok(Json(page(runs, query.limit, query.offset)))
}

/// Record a run that is starting. Its actor is the caller.
#[utoipa::path(post, path = "/api/v1/runs", tag = "runs", request_body = RunRecord,
    responses((status = 201, body = RunRecord), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiJson(mut run): ApiJson<RunRecord>,
) -> Result<(StatusCode, Json<RunRecord>), ApiError> {
    identity.require(Role::Contributor)?;
    if run.id.is_empty()
        || run.id.len() > 100
        || !run
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::invalid(
            "a run id is 1 to 100 letters, digits, `-` or `_`",
        ));
    }
    terrarium_spec::names::validate_display_name("experiment", &run.experiment)
        .map_err(ApiError::invalid)?;
    // Its end is recorded later, by `finish` or `update_state`.
    if run.state.is_final() {
        return Err(ApiError::invalid(format!(
            "a run is recorded queued or running, not {}",
            run.state
        )));
    }
    if let Some(job) = &run.job {
        check_job(job)?;
    }
    run.actor = identity.actor;
    let stored = run.clone();
    state
        .blocking(move |store| {
            if store.get_run(&stored.id).is_ok() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("run {} already exists", stored.id),
                ));
            }
            // A job runs on a compute target of its kind.
            if let Some(job) = &stored.job {
                let target = match store.get_compute(&stored.target) {
                    Err(terrarium_store::StoreError::NotFound(_)) => {
                        return Err(ApiError::invalid(format!(
                            "the run is a job, but its target `{}` is not a compute target",
                            stored.target
                        )))
                    }
                    found => found?,
                };
                if target.kind != job.kind {
                    return Err(ApiError::invalid(format!(
                        "the run is a {} job, but compute target `{}` is {}",
                        job.kind, target.name, target.kind
                    )));
                }
            }
            Ok(store.create_run(&stored)?)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(run)))
}

/// One run.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, body = RunRecord), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunRecord>, ApiError> {
    Ok(Json(
        state.blocking(move |store| Ok(store.get_run(&id)?)).await?,
    ))
}

/// Record how a run ended.
#[utoipa::path(post, path = "/api/v1/runs/{id}/finish", tag = "runs", params(("id" = String, Path)),
    request_body = FinishRunBody,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn finish(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<FinishRunBody>,
) -> Result<StatusCode, ApiError> {
    identity.require(Role::Contributor)?;
    state
        .blocking(move |store| {
            let run = store.get_run(&id)?;
            identity.require_author(&run.actor, &format!("run {id}"))?;
            Ok(store.finish_run(&id, &body.finished_at, body.exit_code)?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Record what an engine said of a run's job: its state, and when it started and ended.
/// A run that has ended keeps its state: an update to it is refused (409 `conflict`).
#[utoipa::path(post, path = "/api/v1/runs/{id}/state", tag = "runs", params(("id" = String, Path)),
    request_body = RunStateBody,
    responses((status = 200, body = RunRecord), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_state(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RunStateBody>,
) -> Result<Json<RunRecord>, ApiError> {
    identity.require(Role::Contributor)?;
    let update = check_update(body)?;
    let run = state
        .blocking(move |store| {
            let run = store.get_run(&id)?;
            identity.require_author(&run.actor, &format!("run {id}"))?;
            let ended = |run: &RunRecord| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!(
                        "run {id} has ended ({}); its state does not change",
                        run.state
                    ),
                )
            };
            if run.state.is_final() {
                return Err(ended(&run));
            }
            let updated = store.update_run(&id, &update)?;
            // Another request ended it first: the store kept its final state.
            if updated.state != update.state {
                return Err(ended(&updated));
            }
            Ok(updated)
        })
        .await?;
    Ok(Json(run))
}

/// The longest time, node list and reason an update or a job's record may carry.
const MAX_TIME: usize = 64;
const MAX_NODE_LIST: usize = 4096;
const MAX_REASON: usize = 1024;
/// The longest kind, job id and log directory a job's record may carry.
const MAX_WORD: usize = 256;
const MAX_PATH: usize = 4096;

/// A time as engines give it: RFC 3339, or a local time without a zone (Slurm).
fn check_time(field: &str, time: &str) -> Result<(), ApiError> {
    let plain = !time.is_empty()
        && time.len() <= MAX_TIME
        && time
            .bytes()
            .all(|b| b.is_ascii_digit() || b"-:.+TZ".contains(&b));
    if plain {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "`{field}` must be a time such as 2026-01-01T00:00:00Z"
        )))
    }
}

/// A job's record: plain text of bounded size.
fn check_job(job: &EngineJob) -> Result<(), ApiError> {
    plain_text("job.kind", &job.kind, MAX_WORD)?;
    plain_text("job.job_id", &job.job_id, MAX_WORD)?;
    if job.job_id.is_empty() {
        return Err(ApiError::invalid("job.job_id is empty"));
    }
    check_time("job.queued_at", &job.queued_at)?;
    for (field, text, max) in [
        ("job.node_list", &job.node_list, MAX_NODE_LIST),
        ("job.reason", &job.reason, MAX_REASON),
        ("job.log_dir", &job.log_dir, MAX_PATH),
    ] {
        if let Some(text) = text {
            plain_text(field, text, max)?;
        }
    }
    Ok(())
}

/// An update whose fields agree with its state: times, an exit code and an end only for a
/// run that has ended; plain text of bounded size.
fn check_update(body: RunStateBody) -> Result<RunUpdate, ApiError> {
    for (field, time) in [
        ("started_at", &body.started_at),
        ("finished_at", &body.finished_at),
    ] {
        if let Some(time) = time {
            check_time(field, time)?;
        }
    }
    if !body.state.is_final() && (body.exit_code.is_some() || body.finished_at.is_some()) {
        return Err(ApiError::invalid(format!(
            "a {} run has no exit code or end time yet",
            body.state
        )));
    }
    if let Some(nodes) = &body.node_list {
        plain_text("node_list", nodes, MAX_NODE_LIST)?;
    }
    if let Some(reason) = &body.reason {
        plain_text("reason", reason, MAX_REASON)?;
    }
    Ok(body.into())
}

/// Store a run's output (at most 8 MiB; a longer log keeps its end).
#[utoipa::path(put, path = "/api/v1/runs/{id}/log", tag = "runs", params(("id" = String, Path)),
    request_body(content = String, content_type = "application/octet-stream"),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn put_log(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    identity.require(Role::Contributor)?;
    let start = body.len().saturating_sub(MAX_LOG_BYTES);
    state
        .blocking(move |store| {
            let run = store.get_run(&id)?;
            identity.require_author(&run.actor, &format!("run {id}"))?;
            Ok(store.put_run_log(&id, &body[start..])?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A run's output.
#[utoipa::path(get, path = "/api/v1/runs/{id}/log", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ErrorBody)))]
pub async fn get_log(
    State(state): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let log = state
        .blocking(move |store| {
            store.get_run(&id)?;
            store
                .get_run_log(&id)?
                .ok_or_else(|| ApiError::not_found(format!("the log of run {id}")))
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response())
}
