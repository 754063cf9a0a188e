//! The one API error type: a status, a machine-readable kind and a message for humans.
//! Internal errors are logged with their whole chain and answered with a generic message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "missing or invalid token: send `Authorization: Bearer <token>` (see DIR/admin.token)",
        )
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", message)
    }
    /// Logs `err` with its cause chain and answers 500 without leaking it.
    pub fn internal(context: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        Self::internal_chain(context, &error_chain(err))
    }
    /// Like [`ApiError::internal`], for an error already rendered with [`error_chain`].
    pub fn internal_chain(context: &str, chain: &str) -> Self {
        tracing::error!(error = %chain, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            format!("internal error while {context}; see the server log"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message, "type": self.kind })),
        )
            .into_response()
    }
}

impl From<morel_store::StoreError> for ApiError {
    fn from(e: morel_store::StoreError) -> Self {
        ApiError::internal("accessing the store", &e)
    }
}

/// An error with its causes, `a: b: c`.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    chain
}
