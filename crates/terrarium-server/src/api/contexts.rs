//! `/api/v1/contexts/{digest}`: Docker build contexts, content-addressed, so that an
//! environment with a build context builds from any machine.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::auth::{Identity, Role};
use crate::error::{ApiError, ApiPath};
use crate::state::SharedState;
use crate::wire::ErrorBody;

/// The largest packed context accepted.
pub const MAX_CONTEXT_BYTES: usize = terrarium_spec::context::MAX_PACKED_BYTES as usize;

/// Keep a packed build context (a gzipped tar) under its digest. The server unpacks it and
/// checks that its files are the context the digest names before keeping it.
#[utoipa::path(put, path = "/api/v1/contexts/{digest}", tag = "contexts",
    params(("digest" = String, Path, description = "`sha256:HEX`, the definition's `docker.build_context_digest`")),
    request_body(content = String, content_type = "application/octet-stream", description = "the context packed as a gzipped tar"),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn put(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath(digest): ApiPath<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    identity.require(Role::Contributor)?;
    terrarium_store::check_context_digest(&digest)?;
    state
        .blocking(move |store| {
            // Unpacking is bounded (files, bytes) and checks every path: the archive is a
            // contributor's, and what is kept must be exactly the context its digest names.
            let scratch = tempfile::tempdir().map_err(|err| {
                ApiError::internal(format!("cannot make a scratch folder: {err}"))
            })?;
            terrarium_spec::context::unpack(&body, scratch.path(), &digest)
                .map_err(|err| ApiError::invalid(err.to_string()))?;
            Ok(store.put_context(&digest, &body)?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A packed build context.
#[utoipa::path(get, path = "/api/v1/contexts/{digest}", tag = "contexts",
    params(("digest" = String, Path)),
    responses((status = 200, content_type = "application/gzip", body = String), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<SharedState>,
    ApiPath(digest): ApiPath<String>,
) -> Result<Response, ApiError> {
    terrarium_store::check_context_digest(&digest)?;
    let archive = state
        .blocking(move |store| Ok(store.get_context(&digest)?))
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/gzip")], archive).into_response())
}
