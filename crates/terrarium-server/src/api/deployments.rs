//! `/api/v1/deployments`: scoring services (`terrarium deploy`) and their state.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use terrarium_store::{DeploymentRecord, DeploymentState};
use utoipa::IntoParams;

use super::environments::page;
use crate::auth::{Identity, Role};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::SharedState;
use crate::wire::{ErrorBody, Page};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeploymentsQuery {
    /// Only deployments in this state (`starting`, `ready`, `failed`, `stopped`).
    pub state: Option<String>,
    /// At most this many items (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Skip this many items.
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<usize>,
}

/// Deployments, by name.
#[utoipa::path(get, path = "/api/v1/deployments", tag = "deployments", params(DeploymentsQuery),
    responses((status = 200, body = Page<DeploymentRecord>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<SharedState>,
    ApiQuery(query): ApiQuery<DeploymentsQuery>,
) -> Result<Json<Page<DeploymentRecord>>, ApiError> {
    let wanted: Option<DeploymentState> = query
        .state
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(ApiError::invalid)?;
    let all = state
        .blocking(|store| Ok(store.list_deployments()?))
        .await?;
    let items = all
        .into_iter()
        .filter(|d| wanted.is_none_or(|s| d.state == s))
        .collect();
    Ok(Json(page(items, query.limit, query.offset)))
}

/// One deployment.
#[utoipa::path(get, path = "/api/v1/deployments/{name}", tag = "deployments", params(("name" = String, Path)),
    responses((status = 200, body = DeploymentRecord), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<SharedState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<DeploymentRecord>, ApiError> {
    Ok(Json(
        state
            .blocking(move |store| Ok(store.get_deployment(&name)?))
            .await?,
    ))
}

/// Create or update a deployment's record. Its actor is the caller.
#[utoipa::path(put, path = "/api/v1/deployments/{name}", tag = "deployments", params(("name" = String, Path)),
    request_body = DeploymentRecord,
    responses((status = 200, body = DeploymentRecord), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath(name): ApiPath<String>,
    ApiJson(mut deployment): ApiJson<DeploymentRecord>,
) -> Result<Json<DeploymentRecord>, ApiError> {
    identity.require(Role::Contributor)?;
    if deployment.name != name {
        return Err(ApiError::invalid(format!(
            "the body names deployment `{}`, the path `{name}`",
            deployment.name
        )));
    }
    terrarium_spec::names::validate_name(&name).map_err(ApiError::invalid)?;
    deployment.actor = identity.actor.clone();
    let stored = deployment.clone();
    state
        .blocking(move |store| {
            // A record says which process to stop and where: only its author may change it.
            match store.get_deployment(&name) {
                Ok(existing) => {
                    identity.require_author(&existing.actor, &format!("deployment {name}"))?
                }
                Err(terrarium_store::StoreError::NotFound(_)) => {}
                Err(err) => return Err(err.into()),
            }
            Ok(store.put_deployment(&stored)?)
        })
        .await?;
    Ok(Json(deployment))
}
