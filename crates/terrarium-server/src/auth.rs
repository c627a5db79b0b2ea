//! Identity and access: API tokens, roles, and the audit trail.
//!
//! A token is `trm_<id>_<secret>`; the workspace stores only its SHA-256, so a leaked database
//! does not leak tokens. Roles are ordered: `reader` < `contributor` < `admin`.

use std::io::Read as _;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
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
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(
            "a token name must be 1 to 100 printable characters".to_string(),
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

fn presented_token(request: &Request) -> Option<String> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?;
        return Some(token.trim().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// Paths anyone may read: the API description, the login page and static assets.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/openapi.json" | "/ui/login" | "/healthz" | "/ui/style.css"
    )
}

fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// What a request acts on, for the audit trail: the environment, run or token in its path.
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
        "tokens" => format!("token {id}"),
        _ => return None,
    })
}

/// Authenticate every request, and audit every mutating one (refused ones included).
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
    let identity = match presented_token(&request) {
        Some(token) => state.blocking(move |store| authenticate(store, &token)).await,
        None if state.allow_anonymous => Ok(Identity {
            actor: "anonymous".to_string(),
            role: Role::Contributor,
            token_id: None,
        }),
        None => Err(ApiError::unauthorized(
            "this workspace needs a token: pass `Authorization: Bearer TOKEN` (the CLI reads TERRARIUM_TOKEN)",
        )),
    };
    let (actor, response) = match identity {
        Ok(identity) => {
            let actor = match &identity.token_id {
                Some(id) => format!("{} (token {id})", identity.actor),
                None => identity.actor.clone(),
            };
            request.extensions_mut().insert(identity);
            (actor, next.run(request).await)
        }
        Err(_) if is_public(&path) => ("anonymous".to_string(), next.run(request).await),
        Err(err) if path.starts_with("/ui") && !is_mutating(&method) => {
            let _ = err;
            (
                "anonymous".to_string(),
                Redirect::to("/ui/login").into_response(),
            )
        }
        Err(err) => ("unauthenticated".to_string(), err.into_response()),
    };
    if is_mutating(&method) && path != "/ui/login" {
        let entry = AuditEntry {
            id: 0,
            at: terrarium_store::now(),
            actor,
            action: format!("{method} {path}"),
            target: audit_target(&path),
            status: i32::from(response.status().as_u16()),
            remote,
        };
        if let Err(err) = state
            .blocking(move |store| store.append_audit(&entry).map_err(ApiError::from))
            .await
        {
            // A change that cannot be audited is reported as failed, though it happened.
            eprintln!(
                "terrarium server: cannot write the audit trail: {}",
                err.message
            );
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the request was carried out but could not be audited",
            )
            .into_response();
        }
    }
    response
}
