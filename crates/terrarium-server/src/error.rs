//! Errors as answers: every error has the stable JSON shape of [`ErrorBody`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use terrarium_store::StoreError;

use crate::wire::{ErrorBody, ErrorDetail};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub subject: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            subject: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    pub fn not_found(subject: impl Into<String>) -> Self {
        let subject = subject.into();
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!("{subject} not found"),
            subject: Some(subject),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(subject) => Self::not_found(subject),
            StoreError::VersionConflict { .. } => {
                Self::new(StatusCode::CONFLICT, "conflict", err.to_string())
            }
            StoreError::Curated(_) => Self::new(StatusCode::FORBIDDEN, "curated", err.to_string()),
            StoreError::Referenced { .. } => {
                Self::new(StatusCode::CONFLICT, "referenced", err.to_string())
            }
            StoreError::Invalid(message) => Self::invalid(message),
            StoreError::Archived(message) => Self::new(StatusCode::CONFLICT, "archived", message),
            other => {
                // The cause goes to the server's log, not to the client: it may name hosts,
                // files or queries.
                let chain = terrarium_spec::error::error_chain(&other);
                eprintln!("terrarium server: store error: {chain}");
                Self::internal("the workspace store failed; see the server's log")
            }
        }
    }
}

impl From<terrarium_spec::SpecError> for ApiError {
    fn from(err: terrarium_spec::SpecError) -> Self {
        Self::invalid(err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                status: self.status.as_u16(),
                code: self.code.to_string(),
                message: self.message,
                subject: self.subject,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(status, "payload_too_large", rejection.body_text());
        }
        Self::invalid(rejection.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Self::invalid(rejection.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        Self::invalid(rejection.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(status, "payload_too_large", rejection.body_text());
        }
        Self::invalid(rejection.body_text())
    }
}

/// Text with NUL characters is refused everywhere: databases cannot store it, and no name,
/// path or command holds one.
fn find_nul(value: &serde_json::Value, path: &mut Vec<String>) -> Option<String> {
    match value {
        serde_json::Value::String(text) if text.contains('\0') => Some(path.join(".")),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            path.push(i.to_string());
            let found = find_nul(item, path);
            path.pop();
            found
        }),
        serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                return Some(path.join("."));
            }
            path.push(key.clone());
            let found = find_nul(item, path);
            path.pop();
            found
        }),
        _ => None,
    }
}

fn nul_error(field: &str) -> ApiError {
    ApiError::invalid(format!(
        "field `{}`: text must not contain NUL characters",
        if field.is_empty() { "(body)" } else { field }
    ))
}

/// `Json` whose rejections are [`ApiError`]s, and which refuses NUL characters.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"));
        if !json {
            return Err(ApiError::invalid(
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let body = axum::body::Bytes::from_request(request, state).await?;
        // Parsing grows with the body (up to the body limit): it runs on the blocking pool,
        // never on the threads that answer every other request.
        tokio::task::spawn_blocking(move || {
            let value: serde_json::Value = serde_json::from_slice(&body).map_err(|err| {
                ApiError::invalid(format!("Failed to parse the request body as JSON: {err}"))
            })?;
            if let Some(field) = find_nul(&value, &mut Vec::new()) {
                return Err(nul_error(&field));
            }
            // A key the body's type does not have is refused, wherever it is, rather than
            // dropped: a misspelled `dependencies` must not register an empty environment.
            let mut ignored = Vec::new();
            let mut note = |path: serde_ignored::Path<'_>| ignored.push(path.to_string());
            let parsed: Result<T, _> = serde_path_to_error::deserialize(
                serde_ignored::Deserializer::new(value, &mut note),
            );
            let parsed = parsed.map_err(|err| {
                let path = err.path().to_string();
                let inner = err.into_inner();
                if path == "." {
                    ApiError::invalid(format!("Failed to deserialize the JSON body: {inner}"))
                } else {
                    ApiError::invalid(format!(
                        "Failed to deserialize the JSON body: field `{path}`: {inner}"
                    ))
                }
            })?;
            if let Some(path) = ignored.first() {
                return Err(ApiError::invalid(format!(
                    "Failed to deserialize the JSON body: unknown field `{path}`"
                )));
            }
            Ok(ApiJson(parsed))
        })
        .await
        .map_err(|err| ApiError::internal(format!("request task failed: {err}")))?
    }
}

/// `Query` whose rejections are [`ApiError`]s, and which refuses NUL characters.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let decoded = percent_encoding::percent_decode_str(query).decode_utf8_lossy();
        if decoded.contains('\0') {
            return Err(nul_error("query"));
        }
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

/// `Path` whose rejections are [`ApiError`]s, and which refuses NUL characters.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let decoded = percent_encoding::percent_decode_str(parts.uri.path()).decode_utf8_lossy();
        if decoded.contains('\0') {
            return Err(nul_error("path"));
        }
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}
