//! Tokens sent as the HTTP Basic password (any user name).

use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine;

use crate::error::HttpError;
use crate::State;

/// The password of a Basic `Authorization` header, if any.
fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_string())
}

/// Requires a valid token; returns the token's name.
pub async fn require(state: &State, headers: &HeaderMap) -> Result<String, HttpError> {
    let Some(secret) = basic_password(headers) else {
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: use a tessera token as the password",
        ));
    };
    match state.store.check_token(&secret).await? {
        Some(token) => Ok(token.name),
        None => Err(HttpError::new(StatusCode::UNAUTHORIZED, "invalid or revoked token")),
    }
}

/// Checks read access: anonymous unless the server requires tokens.
pub async fn require_read(state: &State, headers: &HeaderMap) -> Result<(), HttpError> {
    if state.config.require_token_for_reads {
        require(state, headers).await?;
    }
    Ok(())
}
