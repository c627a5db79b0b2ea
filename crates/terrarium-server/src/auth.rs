//! Identity and access: API tokens, roles, and the audit trail.
//!
//! A token is `trm_<id>_<secret>`; the workspace stores only its SHA-256, so a leaked database
//! does not leak tokens. Roles are ordered: `reader` < `contributor` < `admin`.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use terrarium_store::audit::AuditScope;
use terrarium_store::{AuditEntry, Store, StoreError, TokenRecord};

use crate::error::ApiError;
use crate::state::SharedState;

/// The cookie the web UI keeps the token in.
pub const COOKIE: &str = "terrarium_token";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Reader,
    Contributor,
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "reader" => Some(Self::Reader),
            "contributor" => Some(Self::Contributor),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Contributor => "contributor",
            Self::Admin => "admin",
        }
    }
}

/// Who is making a request.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Recorded as the author of what the request changes.
    pub actor: String,
    pub role: Role,
    pub token_id: Option<String>,
}

impl Identity {
    /// Refuse unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role; {} has {}",
                role.as_str(),
                self.actor,
                self.role.as_str()
            )))
        }
    }
}

impl Identity {
    /// Refuse unless the caller made the record (its actor is `author`) or is an admin.
    pub fn require_author(&self, author: &str, what: &str) -> Result<(), ApiError> {
        if self.role >= Role::Admin || self.actor == author {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{what} was made by {author}; only its author or an admin may change it"
            )))
        }
    }
}

/// The SHA-256 of a token, as stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    Ok(hex::encode(buffer))
}

/// Parse a lifetime such as `30d`, `12h`, `90m` or `45s`.
pub fn parse_lifetime(text: &str) -> Result<time::Duration, String> {
    let text = text.trim();
    let split = text.char_indices().last().map_or(0, |(i, _)| i);
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .ok()
        .filter(|n| *n > 0 && *n <= 100_000)
        .ok_or_else(|| {
            format!("invalid lifetime `{text}`: expected a number and a unit, e.g. 30d, 12h, 90m")
        })?;
    match unit {
        "d" => Ok(time::Duration::days(n)),
        "h" => Ok(time::Duration::hours(n)),
        "m" => Ok(time::Duration::minutes(n)),
        "s" => Ok(time::Duration::seconds(n)),
        _ => Err(format!(
            "invalid lifetime `{text}`: the unit must be d, h, m or s"
        )),
    }
}

/// Format a time like [`terrarium_store::now`] does.
pub fn format_time(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .expect("formattable time")
}

/// Create a token and store its hash. Returns the token, which is never stored.
pub fn issue_token(
    store: &dyn Store,
    name: &str,
    role: &str,
    expires_in: Option<&str>,
    created_by: &str,
) -> Result<(String, TokenRecord), StoreError> {
    let name = name.trim();
    terrarium_spec::names::validate_display_name("token", name).map_err(StoreError::Invalid)?;
    if name.chars().count() > 100 {
        return Err(StoreError::Invalid(
            "a token name must be 1 to 100 characters".to_string(),
        ));
    }
    if Role::parse(role).is_none() {
        return Err(StoreError::Invalid(format!(
            "unknown role `{role}`: expected reader, contributor or admin"
        )));
    }
    let expires_at = expires_in
        .map(|text| {
            parse_lifetime(text)
                .map(|d| format_time(time::OffsetDateTime::now_utc() + d))
                .map_err(StoreError::Invalid)
        })
        .transpose()?;
    let random = |n| {
        random_hex(n)
            .map_err(|err| StoreError::Transport(format!("cannot read random bytes: {err}")))
    };
    let id = random(6)?;
    let token = format!("trm_{id}_{}", random(32)?);
    let record = TokenRecord {
        id,
        name: name.to_string(),
        role: role.to_string(),
        token_hash: hash_token(&token),
        created_at: terrarium_store::now(),
        created_by: created_by.to_string(),
        expires_at,
        revoked_at: None,
    };
    store.create_token(&record)?;
    Ok((token, record))
}

/// Check a presented token against the store.
pub fn authenticate(store: &dyn Store, token: &str) -> Result<Identity, ApiError> {
    let Some(record) = store.token_by_hash(&hash_token(token))? else {
        return Err(ApiError::unauthorized(
            "the token is not valid for this workspace",
        ));
    };
    if let Some(at) = &record.revoked_at {
        return Err(ApiError::unauthorized(format!(
            "token {} was revoked at {at}",
            record.id
        )));
    }
    if let Some(at) = &record.expires_at {
        if *at <= terrarium_store::now() {
            return Err(ApiError::unauthorized(format!(
                "token {} expired at {at}",
                record.id
            )));
        }
    }
    let role =
        Role::parse(&record.role).ok_or_else(|| ApiError::internal("unknown stored role"))?;
    Ok(Identity {
        actor: record.name.clone(),
        role,
        token_id: Some(record.id),
    })
}

/// The token a request presents, and whether it came in the web UI's cookie (which a browser
/// also sends with requests that other pages make).
fn presented_token(request: &Request) -> Option<(String, bool)> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?;
        return Some((token.trim().to_string(), false));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| (value.to_string(), true))
}

/// Headers a reverse proxy adds. A request that carries one did not come from this machine's
/// own user, whatever its socket says.
const FORWARDING_HEADERS: &[&str] = &["forwarded", "x-forwarded-for", "x-real-ip"];

/// Whether a browser request comes from one of this server's own pages: `Some(false)` for
/// another origin, `None` when the request shows no origin at all (not a browser). A page of
/// another origin on the same host (another port) gets the `SameSite=Strict` cookie too, so a
/// state-changing request must show its origin: `Sec-Fetch-Site` (sent by every current
/// browser), else `Origin`, else `Referer`, naming this host.
fn same_origin(request: &Request) -> Option<bool> {
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return Some(site == "same-origin" || site == "none");
    }
    let origin = text("origin").or_else(|| text("referer"))?;
    let host = text("host").unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .map(|rest| rest.split('/').next().unwrap_or(""));
    Some(origin_host.is_some_and(|h| !host.is_empty() && h.eq_ignore_ascii_case(host)))
}

/// Paths anyone may read: the API description, the login page and static assets.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/openapi.json" | "/ui/login" | "/healthz" | "/ui/style.css"
    )
}

/// A pack fetched through a signed link: it needs no token (its handler checks the signature).
fn is_signed_pack_link(method: &Method, path: &str, query: Option<&str>) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
        && path
            .strip_prefix(crate::wire::API_PREFIX)
            .is_some_and(|rest| rest.starts_with("/packs/"))
        && query.is_some_and(|q| q.split('&').any(|pair| pair.starts_with("signature=")))
}

/// A pack upload is streamed for as long as it takes (while bytes keep coming), not bounded by
/// the request timeout.
fn is_pack_upload(method: &Method, path: &str) -> bool {
    *method == Method::PUT
        && path
            .strip_prefix(crate::wire::API_PREFIX)
            .is_some_and(|rest| rest.starts_with("/packs/"))
}

fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// What a request acts on, for the audit trail: the environment, run, compute target or token
/// in its path.
fn audit_target(path: &str) -> Option<String> {
    let rest = path.strip_prefix(crate::wire::API_PREFIX)?;
    let mut segments = rest.trim_start_matches('/').split('/');
    let kind = segments.next()?;
    let id = segments.next()?;
    let id = percent_encoding::percent_decode_str(id)
        .decode_utf8_lossy()
        .into_owned();
    Some(match kind {
        "environments" => id,
        "runs" => format!("run {id}"),
        "compute" => format!("compute target {id}"),
        "tokens" => format!("token {id}"),
        "packs" => format!("pack {id}"),
        _ => return None,
    })
}

/// Authenticate every request; give every mutating one an audit row (refused ones included),
/// written in the same transaction as its change; answer a request that takes too long with
/// `timeout`, and then make sure its change does not land.
pub async fn access(
    State(state): State<SharedState>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let signed_link = is_signed_pack_link(&method, &path, request.uri().query());
    let presented = presented_token(&request);
    let via_cookie = presented.as_ref().is_some_and(|(_, cookie)| *cookie);
    let forwarded = FORWARDING_HEADERS
        .iter()
        .any(|name| request.headers().contains_key(*name));
    let identity = match presented {
        Some((token, _)) => state.blocking(move |store| authenticate(store, &token)).await,
        None if state.allow_anonymous && forwarded => Err(ApiError::unauthorized(
            "this request came through a proxy, so it needs a token: anonymous access (--allow-anonymous-local) is only for clients on this machine",
        )),
        None if state.allow_anonymous => Ok(Identity {
            actor: "anonymous".to_string(),
            role: Role::Contributor,
            token_id: None,
        }),
        None => Err(ApiError::unauthorized(
            "this workspace needs a token: pass `Authorization: Bearer TOKEN` (the CLI reads TERRARIUM_TOKEN)",
        )),
    };
    let mutating = is_mutating(&method);
    // A cookie is sent by the browser whichever page makes the request; a page's login post
    // is checked too, so another page cannot sign a browser in as someone else.
    let cross_origin = mutating
        && match same_origin(&request) {
            Some(same) => !same,
            // No origin shown: a program, not a page; a cookie alone is not enough then.
            None => via_cookie,
        };
    let actor = match &identity {
        Ok(identity) => match &identity.token_id {
            Some(id) => format!("{} (token {id})", identity.actor),
            None => identity.actor.clone(),
        },
        Err(_) if is_public(&path) => "anonymous".to_string(),
        Err(_) => "unauthenticated".to_string(),
    };
    let scope = mutating.then(|| {
        AuditScope::new(AuditEntry {
            id: 0,
            at: terrarium_store::now(),
            actor,
            action: format!("{method} {path}"),
            target: audit_target(&path),
            // What a committed change records until the answer's status is known.
            status: 200,
            remote,
        })
    });
    // Who may go on to the handler: an identified caller, or anyone for a public path.
    let refusal = if cross_origin {
        Some(
            ApiError::forbidden(
                "this request came from a page of another origin; use the web UI's own pages, or an API token",
            )
            .into_response(),
        )
    } else {
        match identity {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                None
            }
            Err(_) if is_public(&path) || signed_link => None,
            Err(_) if path.starts_with("/ui") && !mutating => {
                Some(Redirect::to("/ui/login").into_response())
            }
            Err(err) => Some(err.into_response()),
        }
    };
    let mut response = match refusal {
        Some(response) => response,
        None => {
            let timeout = if is_pack_upload(&method, &path) {
                Duration::from_secs(7 * 24 * 3600)
            } else {
                state.request_timeout
            };
            let run = with_timeout(next.run(request), timeout, scope.as_deref());
            crate::state::AUDIT.scope(scope.clone(), run).await
        }
    };
    if let Some(scope) = scope {
        if path != "/ui/login" || scope.recorded().is_some() {
            if let Err(message) = finish_audit(&state, &scope, response.status()).await {
                // A refusal that cannot be audited is still a refusal; a change that was made
                // has its row already (written with it).
                eprintln!("terrarium server: cannot write the audit trail: {message}");
                if scope.recorded().is_none() && response.status().is_success() {
                    response = ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the request could not be audited",
                    )
                    .into_response();
                }
            }
        }
    }
    security_headers(&mut response);
    json_error_shape(response)
}

/// Answers that axum makes itself (a wrong method, a body too large, a form it cannot read)
/// come without a body or as plain text; every error answer has the API's JSON shape.
fn json_error_shape(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "this route does not take that method")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "the request body has the wrong content type",
        ),
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
            ("invalid", "the request body cannot be read")
        }
        s if s.is_server_error() => ("internal", "the server failed; see its log"),
        _ => ("invalid", "the request was refused"),
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// Record how a mutating request ended: the status of the row its change wrote, or a row of
/// its own for a request that changed nothing (refused, failed, or a no-op).
async fn finish_audit(
    state: &SharedState,
    scope: &Arc<AuditScope>,
    status: StatusCode,
) -> Result<(), String> {
    let status = i32::from(status.as_u16());
    let written = match scope.recorded() {
        Some(_) if status == scope.entry().status => return Ok(()),
        Some(id) => {
            state
                .blocking(move |store| Ok(store.set_audit_status(id, status)?))
                .await
        }
        None => {
            let mut entry = scope.entry().clone();
            entry.status = status;
            state
                .blocking(move |store| Ok(store.append_audit(&entry)?))
                .await
        }
    };
    written.map_err(|err| err.message)
}

/// Run a request with a deadline. When it passes before the request's change committed, the
/// change is cancelled (it rolls back) and the client gets `timeout`; when the change already
/// committed, the request is let finish, so the client is never told "failed" of a change that
/// happened.
async fn with_timeout(
    run: impl std::future::Future<Output = Response>,
    timeout: Duration,
    scope: Option<&AuditScope>,
) -> Response {
    tokio::pin!(run);
    match tokio::time::timeout(timeout, &mut run).await {
        Ok(response) => response,
        Err(_) if scope.is_some_and(|scope| !scope.cancel()) => run.await,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {} s", timeout.as_secs()),
        )
        .into_response(),
    }
}

/// Headers every answer carries: the UI's pages load nothing from elsewhere and run no
/// scripts, are never framed, and no content type is guessed.
fn security_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
}
