//! `/api/v1/runs`: recorded runs and their logs.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use terrarium_store::RunRecord;
use utoipa::IntoParams;

use super::environments::page;
use crate::auth::{Identity, Role};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::SharedState;
use crate::wire::{ErrorBody, FinishRunBody, Page};

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
