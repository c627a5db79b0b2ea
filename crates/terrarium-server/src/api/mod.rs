//! The REST API, `/api/v1`, and its OpenAPI document, generated from the handlers.

use axum::routing::{get, post, put};
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

use crate::error::ApiError;
use crate::state::SharedState;

pub mod access;
pub mod compute;
pub mod contexts;
pub mod deployments;
pub mod environments;
pub mod images;
pub mod packs;
pub mod runs;

#[cfg(test)]
mod tests;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Terrarium workspace API",
        description = "Versioned, immutable environments for machine-learning work: versions, labels, history, diffs, exports, locks, runs, compute targets, packs for compute nodes, deployments, tokens and the audit trail. Every error has the shape `{\"error\": {\"status\", \"code\", \"message\"}}`."
    ),
    paths(
        environments::list, environments::register, environments::latest,
        environments::versions, environments::version, environments::update_metadata,
        environments::delete_version, environments::archive, environments::restore,
        environments::archive_version, environments::restore_version,
        environments::get_label, environments::set_label, environments::remove_label,
        environments::events, environments::export, environments::diff,
        environments::set_lock, environments::get_lock,
        runs::list, runs::create, runs::get, runs::finish, runs::update_state, runs::put_log,
        runs::get_log,
        compute::list, compute::add, compute::get, compute::remove,
        deployments::list, deployments::get, deployments::put,
        images::list, images::add,
        packs::put, packs::new_link, packs::get,
        contexts::put, contexts::get,
        access::create, access::list, access::revoke, access::audit, access::whoami,
    ),
    modifiers(&BearerAuth, &CommonErrors),
    security(("token" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The error answers any operation can give, documented on every operation: bad input (400),
/// no or a bad token (401), a timeout (503); a role too low (403) on writes and admin reads;
/// missing or archived things (404, 409) where the path names them; too large a body (413).
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_params = path.contains('{');
            let admin_read = path.ends_with("/tokens") || path.ends_with("/audit");
            let operations = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.patch, true),
                (&mut item.delete, true),
            ];
            for (operation, writes) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                let mut codes = vec![
                    ("400", "invalid input"),
                    ("401", "no token, or a revoked, expired or unknown one"),
                    ("503", "the request timed out"),
                ];
                if writes || admin_read {
                    codes.push(("403", "the token's role does not allow this"));
                }
                if has_params || writes {
                    codes.push(("404", "not found"));
                    codes.push(("409", "conflicts with the workspace's state"));
                }
                if writes {
                    codes.push(("413", "the request body is too large"));
                }
                for (code, description) in codes {
                    operation
                        .responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

pub fn router() -> Router<SharedState> {
    use environments as e;
    Router::new()
        .route("/environments", get(e::list).post(e::register))
        .route("/environments/{name}", get(e::latest))
        .route("/environments/{name}/versions", get(e::versions))
        .route(
            "/environments/{name}/versions/{version}",
            get(e::version)
                .patch(e::update_metadata)
                .delete(e::delete_version),
        )
        .route("/environments/{name}/archive", post(e::archive))
        .route("/environments/{name}/restore", post(e::restore))
        .route(
            "/environments/{name}/versions/{version}/archive",
            post(e::archive_version),
        )
        .route(
            "/environments/{name}/versions/{version}/restore",
            post(e::restore_version),
        )
        .route(
            "/environments/{name}/versions/{version}/export",
            get(e::export),
        )
        .route(
            "/environments/{name}/versions/{version}/lock",
            put(e::set_lock),
        )
        .route(
            "/environments/{name}/labels/{label}",
            get(e::get_label).put(e::set_label).delete(e::remove_label),
        )
        .route("/environments/{name}/events", get(e::events))
        .route("/diff", get(e::diff))
        .route("/locks/{lock_hash}", get(e::get_lock))
        .route("/runs", get(runs::list).post(runs::create))
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/finish", post(runs::finish))
        .route("/runs/{id}/state", post(runs::update_state))
        .route(
            "/runs/{id}/log",
            get(runs::get_log)
                .put(runs::put_log)
                .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024)),
        )
        .route(
            "/environments/{name}/images",
            get(images::list).post(images::add),
        )
        .route(
            "/contexts/{digest}",
            get(contexts::get)
                .put(contexts::put)
                .layer(axum::extract::DefaultBodyLimit::max(
                    contexts::MAX_CONTEXT_BYTES,
                )),
        )
        // Packs are streamed: no body limit but the handler's own.
        .route(
            "/packs/{digest}",
            get(packs::get)
                .put(packs::put)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/packs/{digest}/link", post(packs::new_link))
        .route("/deployments", get(deployments::list))
        .route(
            "/deployments/{name}",
            get(deployments::get).put(deployments::put),
        )
        .route("/compute", get(compute::list).post(compute::add))
        .route("/compute/{name}", get(compute::get).delete(compute::remove))
        .route("/tokens", get(access::list).post(access::create))
        .route("/tokens/{id}", axum::routing::delete(access::revoke))
        .route("/audit", get(access::audit))
        .route("/whoami", get(access::whoami))
}

/// Refuse text longer than `max` bytes, or with control characters (which a terminal, a log
/// line or a job script would take for something else).
pub fn plain_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::invalid(format!(
            "{field} is longer than {max} bytes"
        )));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(ApiError::invalid(format!(
            "{field} holds the control character U+{:04X}",
            c as u32
        )));
    }
    Ok(())
}

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
