//! `/api/v1/packs/{digest}`: environment packs (`terrarium env pack`) kept for compute nodes,
//! by the sha256 of the pack file, and signed links to fetch one without a token.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::{Identity, Role};
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::packs::{check_digest, PackStore, MAX_LINK_LIFETIME, MAX_PACK_BYTES};
use crate::state::SharedState;
use crate::wire::{ErrorBody, PackLink};

/// How long an upload may send nothing before it is dropped.
const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The slowest an upload may go on average, after its first minute: a client that trickles
/// bytes does not hold a connection and a disk for days.
const UPLOAD_MIN_RATE: u64 = 16 * 1024;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// How long the link lives: `7d` (the default), `12h`, ... at most 30 days.
    pub lifetime: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FetchQuery {
    /// A signed link's expiry (UNIX seconds); with `signature`, no token is needed.
    pub expires: Option<i64>,
    /// A signed link's signature.
    pub signature: Option<String>,
}

fn packs(state: &SharedState) -> Result<Arc<PackStore>, ApiError> {
    state.packs.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_packs",
            "this server keeps no packs: its operator starts it with `terrarium server --packs DIR`",
        )
    })
}

fn link(
    store: &PackStore,
    digest: &str,
    size: u64,
    lifetime: Option<&str>,
) -> Result<PackLink, ApiError> {
    let lifetime =
        crate::auth::parse_lifetime(lifetime.unwrap_or(crate::packs::DEFAULT_LINK_LIFETIME))
            .map_err(ApiError::invalid)?;
    if lifetime > MAX_LINK_LIFETIME {
        return Err(ApiError::invalid("a pack link lives 30 days at most"));
    }
    let expires = time::OffsetDateTime::now_utc() + lifetime;
    Ok(PackLink {
        digest: digest.to_string(),
        size,
        link: store.link(digest, expires.unix_timestamp()),
        expires_at: crate::auth::format_time(expires),
    })
}

/// Keep a pack under the sha256 of its bytes; answer a signed link to it. The bytes are
/// streamed to disk and checked against the digest before the pack is kept; a pack already
/// kept is not sent again (ask for a link first).
#[utoipa::path(put, path = "/api/v1/packs/{digest}", tag = "packs",
    params(("digest" = String, Path, description = "`sha256:HEX` of the pack file"), LinkQuery),
    request_body(content = String, content_type = "application/octet-stream", description = "the pack, as `terrarium env pack` writes it"),
    responses((status = 201, body = PackLink), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn put(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath(digest): ApiPath<String>,
    ApiQuery(query): ApiQuery<LinkQuery>,
    request: Request,
) -> Result<(StatusCode, Json<PackLink>), ApiError> {
    identity.require(Role::Contributor)?;
    check_digest(&digest)?;
    let store = packs(&state)?;
    // The link's lifetime and the announced size are checked before any byte is taken.
    link(&store, &digest, 0, query.lifetime.as_deref())?;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "a pack may be {} at most",
                crate::human_size(MAX_PACK_BYTES)
            ),
        )
    };
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_PACK_BYTES) {
        return Err(too_large());
    }
    let _permit = Arc::clone(&store.uploads)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "the server takes {} pack uploads at once; try again in a moment",
                    crate::packs::MAX_UPLOADS
                ),
            )
        })?;
    let started = std::time::Instant::now();
    let io = |what: &str, err: std::io::Error| {
        ApiError::internal(format!("cannot {what} the pack: {err}"))
    };
    let temp = tempfile::Builder::new()
        .prefix(".upload-")
        .tempfile_in(store.dir())
        .map_err(|e| io("store", e))?;
    let (file, temp) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = request.into_body().into_data_stream();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut size: u64 = 0;
    use futures_util::StreamExt as _;
    use tokio::io::AsyncWriteExt as _;
    loop {
        let chunk = match tokio::time::timeout(UPLOAD_IDLE, stream.next()).await {
            Err(_) => {
                return Err(ApiError::invalid(format!(
                    "the upload sent nothing for {} s",
                    UPLOAD_IDLE.as_secs()
                )))
            }
            Ok(None) => break,
            Ok(Some(Err(err))) => {
                return Err(ApiError::invalid(format!("the upload broke off: {err}")))
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        size += chunk.len() as u64;
        if size > MAX_PACK_BYTES {
            return Err(too_large());
        }
        let elapsed = started.elapsed();
        if elapsed > UPLOAD_IDLE && size < UPLOAD_MIN_RATE * elapsed.as_secs() {
            return Err(ApiError::invalid(format!(
                "the upload went slower than {} a second",
                crate::human_size(UPLOAD_MIN_RATE)
            )));
        }
        sha2::Digest::update(&mut hasher, &chunk);
        file.write_all(&chunk).await.map_err(|e| io("store", e))?;
    }
    file.sync_all().await.map_err(|e| io("store", e))?;
    drop(file);
    let got = format!("sha256:{}", hex::encode(sha2::Digest::finalize(hasher)));
    if got != digest {
        return Err(ApiError::invalid(format!(
            "the pack sent is {got}, not the {digest} its address names; nothing was kept"
        )));
    }
    temp.persist(store.path(&digest))
        .map_err(|e| io("store", e.error))?;
    // A pack sent again (its file replaced) counts as linked now, like a new one.
    store.touch(&digest).map_err(|e| io("store", e))?;
    Ok((
        StatusCode::CREATED,
        Json(link(&store, &digest, size, query.lifetime.as_deref())?),
    ))
}

/// A new signed link to a pack the server keeps (404 when it keeps none by that digest);
/// contributors only, as a link outlives the token that asked for it.
#[utoipa::path(post, path = "/api/v1/packs/{digest}/link", tag = "packs",
    params(("digest" = String, Path), LinkQuery),
    responses((status = 200, body = PackLink), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn new_link(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath(digest): ApiPath<String>,
    ApiQuery(query): ApiQuery<LinkQuery>,
) -> Result<Json<PackLink>, ApiError> {
    // A link outlives the token that asked for it: only those who may upload may ask.
    identity.require(Role::Contributor)?;
    check_digest(&digest)?;
    let store = packs(&state)?;
    // The pack is kept for as long as any link to it lives.
    let touched = {
        let store = Arc::clone(&store);
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || store.touch(&digest)).await
    };
    if let Ok(Err(err)) = touched {
        if err.kind() != std::io::ErrorKind::NotFound {
            return Err(ApiError::internal(format!("cannot read the pack: {err}")));
        }
    }
    let size = match tokio::fs::metadata(store.path(&digest)).await {
        Ok(meta) => meta.len(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!("pack {digest}")))
        }
        Err(err) => return Err(ApiError::internal(format!("cannot read the pack: {err}"))),
    };
    Ok(Json(link(
        &store,
        &digest,
        size,
        query.lifetime.as_deref(),
    )?))
}

/// A pack: with a token, or through a signed link (`expires` and `signature`) with none.
#[utoipa::path(get, path = "/api/v1/packs/{digest}", tag = "packs",
    params(("digest" = String, Path), FetchQuery),
    responses((status = 200, content_type = "application/vnd.terrarium.pack.v1", body = String), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<SharedState>,
    identity: Option<Extension<Identity>>,
    ApiPath(digest): ApiPath<String>,
    ApiQuery(query): ApiQuery<FetchQuery>,
) -> Result<Response, ApiError> {
    check_digest(&digest)?;
    let store = packs(&state)?;
    match (&query.expires, &query.signature) {
        (Some(expires), Some(signature)) => store.verify(&digest, *expires, signature)?,
        (None, None) => match identity {
            Some(Extension(identity)) => identity.require(Role::Reader)?,
            None => {
                return Err(ApiError::unauthorized(
                    "fetching a pack needs a token, or a signed link from the server",
                ))
            }
        },
        _ => {
            return Err(ApiError::invalid(
                "a signed link has both `expires` and `signature`",
            ))
        }
    }
    let file = match tokio::fs::File::open(store.path(&digest)).await {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!("pack {digest}")))
        }
        Err(err) => return Err(ApiError::internal(format!("cannot read the pack: {err}"))),
    };
    let size = file
        .metadata()
        .await
        .map_err(|err| ApiError::internal(format!("cannot read the pack: {err}")))?
        .len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 18));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/vnd.terrarium.pack.v1".to_string(),
            ),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        body,
    )
        .into_response())
}
