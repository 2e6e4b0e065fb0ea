//! Errors at the HTTP boundary: a status and a message safe to show.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// A failed request: what the client is told. Internal details are logged
/// where the error is made, not sent.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError { status, message: message.into() }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!("{context}: {error}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error while {context}"))
    }
}

impl From<tessera_store::Error> for HttpError {
    fn from(e: tessera_store::Error) -> Self {
        use tessera_store::Error;
        match e {
            Error::NotFound(m) => HttpError::not_found(m),
            Error::Invalid(m) => HttpError::bad_request(m),
            e @ Error::Exists(_) => HttpError::new(StatusCode::CONFLICT, e.to_string()),
            e => HttpError::internal("accessing storage", e),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut res = (self.status, format!("{}\n", self.message)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"tessera\""));
        }
        res
    }
}

/// An error of the REST API: the same status and message as [`HttpError`],
/// sent as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(pub HttpError);

impl From<HttpError> for ApiError {
    fn from(e: HttpError) -> Self {
        ApiError(e)
    }
}

impl From<tessera_store::Error> for ApiError {
    fn from(e: tessera_store::Error) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.0.message });
        let mut res = (self.0.status, axum::Json(body)).into_response();
        if self.0.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"tessera\""));
        }
        res
    }
}
