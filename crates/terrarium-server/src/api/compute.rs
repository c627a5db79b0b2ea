//! `/api/v1/compute`: compute targets (Slurm, ...) that runs are submitted to.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use terrarium_compute::{Kind, Target};
use terrarium_store::{ComputeRecord, StoreError};

use super::environments::{page, PageQuery};
use super::plain_text;
use crate::auth::{Identity, Role};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::SharedState;
use crate::wire::{ComputeBody, ErrorBody, Page};

/// The most options a target may have, and the longest key and value.
const MAX_OPTIONS: usize = 64;
const MAX_OPTION_KEY: usize = 64;
const MAX_OPTION_VALUE: usize = 4096;

/// Compute targets, by name.
#[utoipa::path(get, path = "/api/v1/compute", tag = "compute", params(PageQuery),
    responses((status = 200, body = Page<ComputeRecord>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<SharedState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Page<ComputeRecord>>, ApiError> {
    let targets = state.blocking(|store| Ok(store.list_compute()?)).await?;
    Ok(Json(page(targets, query.limit, query.offset)))
}

/// Add a compute target. Its kind and options are checked; the engine is not asked (the
/// server may not reach it). Its author is the caller.
#[utoipa::path(post, path = "/api/v1/compute", tag = "compute", request_body = ComputeBody,
    responses((status = 201, body = ComputeRecord), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiJson(body): ApiJson<ComputeBody>,
) -> Result<(StatusCode, Json<ComputeRecord>), ApiError> {
    identity.require(Role::Contributor)?;
    let record = ComputeRecord {
        kind: check(&body)?.as_str().to_string(),
        name: body.name,
        options: body.options,
        created_at: terrarium_store::now(),
        created_by: identity.actor,
    };
    let stored = record.clone();
    state
        .blocking(move |store| match store.add_compute(&stored) {
            // The name was checked above: what the store still finds invalid is a name taken.
            Err(StoreError::Invalid(message)) if store.get_compute(&stored.name).is_ok() => {
                Err(ApiError::new(StatusCode::CONFLICT, "conflict", message))
            }
            added => Ok(added?),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// The target's kind, once its name, kind and options are found well-formed.
fn check(body: &ComputeBody) -> Result<Kind, ApiError> {
    terrarium_store::validate_compute_name(&body.name)?;
    let kind: Kind = body
        .kind
        .parse()
        .map_err(|err: terrarium_compute::ComputeError| ApiError::invalid(err.to_string()))?;
    if body.options.len() > MAX_OPTIONS {
        return Err(ApiError::invalid(format!(
            "a compute target takes at most {MAX_OPTIONS} options"
        )));
    }
    for (key, value) in &body.options {
        plain_text("option key", key, MAX_OPTION_KEY)?;
        if key.is_empty() {
            return Err(ApiError::invalid("an option key is empty"));
        }
        plain_text(&format!("option `{key}`"), value, MAX_OPTION_VALUE)?;
    }
    // The kind's own rules: known keys, well-formed values (the same check as the CLI's).
    Target {
        name: body.name.clone(),
        kind,
        options: body.options.clone(),
    }
    .validate()
    .map_err(|err| ApiError::invalid(err.to_string()))?;
    Ok(kind)
}

/// One compute target.
#[utoipa::path(get, path = "/api/v1/compute/{name}", tag = "compute", params(("name" = String, Path)),
    responses((status = 200, body = ComputeRecord), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<SharedState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ComputeRecord>, ApiError> {
    Ok(Json(
        state
            .blocking(move |store| Ok(store.get_compute(&name)?))
            .await?,
    ))
}

/// Remove a compute target; refused (409 `referenced`) while a run on it has not ended.
#[utoipa::path(delete, path = "/api/v1/compute/{name}", tag = "compute", params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    identity.require(Role::Contributor)?;
    state
        .blocking(move |store| Ok(store.remove_compute(&name)?))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
