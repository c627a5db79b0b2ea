//! `/api/v1/environments/{name}/images`: the images built from an environment's versions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use terrarium_store::ImageBuildRecord;
use utoipa::IntoParams;

use super::environments::page;
use crate::auth::{Identity, Role};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::SharedState;
use crate::wire::{ErrorBody, Page};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImagesQuery {
    /// Only images of this version.
    pub version: Option<String>,
    /// At most this many items (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Skip this many items.
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<usize>,
}

/// Images built from the environment, newest first.
#[utoipa::path(get, path = "/api/v1/environments/{name}/images", tag = "images",
    params(("name" = String, Path), ImagesQuery),
    responses((status = 200, body = Page<ImageBuildRecord>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<SharedState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<ImagesQuery>,
) -> Result<Json<Page<ImageBuildRecord>>, ApiError> {
    let version = query.version.clone();
    let builds = state
        .blocking(move |store| Ok(store.list_image_builds(&name, version.as_deref())?))
        .await?;
    Ok(Json(page(builds, query.limit, query.offset)))
}

/// Record an image built from one of the environment's versions. Its actor is the caller.
#[utoipa::path(post, path = "/api/v1/environments/{name}/images", tag = "images",
    params(("name" = String, Path)), request_body = ImageBuildRecord,
    responses((status = 201, body = ImageBuildRecord), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath(name): ApiPath<String>,
    ApiJson(mut build): ApiJson<ImageBuildRecord>,
) -> Result<(StatusCode, Json<ImageBuildRecord>), ApiError> {
    identity.require(Role::Contributor)?;
    if build.environment != name {
        return Err(ApiError::invalid(format!(
            "the body names environment `{}`, the path `{name}`",
            build.environment
        )));
    }
    if !build.seconds.is_finite() || build.seconds < 0.0 {
        return Err(ApiError::invalid("seconds must be a non-negative number"));
    }
    build.actor = identity.actor;
    let stored = build.clone();
    state
        .blocking(move |store| Ok(store.add_image_build(&stored)?))
        .await?;
    Ok((StatusCode::CREATED, Json(build)))
}
