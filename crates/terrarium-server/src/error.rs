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
                let mut chain = other.to_string();
                let mut source = std::error::Error::source(&other);
                while let Some(cause) = source {
                    chain.push_str(": ");
                    chain.push_str(&cause.to_string());
                    source = cause.source();
                }
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

/// `Json` whose rejections are [`ApiError`]s.
#[derive(Debug, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `Query` whose rejections are [`ApiError`]s.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `Path` whose rejections are [`ApiError`]s.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);
