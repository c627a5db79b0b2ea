//! `/api/v1/tokens`, `/api/v1/audit` and `/api/v1/whoami`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use terrarium_store::{AuditEntry, TokenRecord};

use super::environments::{page, PageQuery};
use crate::auth::{self, Identity, Role};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::SharedState;
use crate::wire::{ErrorBody, Page, TokenCreateBody, TokenCreated, WhoAmI};

/// Create a token. The answer holds the token; it is not stored and cannot be shown again.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "access", request_body = TokenCreateBody,
    responses((status = 201, body = TokenCreated), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiJson(body): ApiJson<TokenCreateBody>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    identity.require(Role::Admin)?;
    let created_by = identity.actor;
    let (token, record) = state
        .blocking(move |store| {
            Ok(auth::issue_token(
                store,
                &body.name,
                &body.role,
                body.expires_in.as_deref(),
                &created_by,
            )?)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(TokenCreated::new(token, &record))))
}

/// Every token (without secrets or hashes).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "access", params(PageQuery),
    responses((status = 200, body = Page<TokenRecord>), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Page<TokenRecord>>, ApiError> {
    identity.require(Role::Admin)?;
    let tokens = state.blocking(|store| Ok(store.list_tokens()?)).await?;
    Ok(Json(page(tokens, query.limit, query.offset)))
}

/// Revoke a token.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 200, body = TokenRecord), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TokenRecord>, ApiError> {
    identity.require(Role::Admin)?;
    Ok(Json(
        state
            .blocking(move |store| Ok(store.revoke_token(&id, &terrarium_store::now())?))
            .await?,
    ))
}

/// The audit trail of mutating requests, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "access", params(PageQuery),
    responses((status = 200, body = Vec<AuditEntry>), (status = 403, body = ErrorBody)))]
pub async fn audit(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    identity.require(Role::Admin)?;
    let limit = query
        .limit
        .unwrap_or(super::environments::DEFAULT_LIMIT)
        .clamp(1, super::environments::MAX_LIMIT);
    let offset = query.offset.unwrap_or(0).min(i64::MAX as usize / 2);
    Ok(Json(
        state
            .blocking(move |store| Ok(store.list_audit(limit, offset)?))
            .await?,
    ))
}

/// Who the caller is.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "access",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub async fn whoami(Extension(identity): Extension<Identity>) -> Json<WhoAmI> {
    Json(WhoAmI {
        actor: identity.actor,
        role: identity.role.as_str().to_string(),
        token_id: identity.token_id,
    })
}
