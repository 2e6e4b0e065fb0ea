//! What the HTTP handlers share: git responses, `ERR` packets, request
//! bodies read within limits, and the refusal of paths no push creates.

use std::io::Read;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use tessera_pktline as pkt;

use crate::error::HttpError;

pub(crate) fn git_response(content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut res = Response::new(body.into());
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, max-age=0, must-revalidate"));
    res
}

pub(crate) fn not_pushable(path: &str) -> HttpError {
    HttpError::not_found(format!(
        "repository {path} not found; pushing creates repositories only under an import root such as /import/<name>"
    ))
}

/// Reads a whole request body up to `limit` bytes, un-gzipping if needed.
pub(crate) async fn read_body(request: Request, limit: usize, idle_secs: u64) -> Result<Vec<u8>, HttpError> {
    let gzip = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.contains("gzip"))
        .unwrap_or(false);
    let mut stream = request.into_body().into_data_stream();
    let mut body = Vec::new();
    while let Some(chunk) = crate::serve::next_chunk(&mut stream, idle_secs).await? {
        let chunk = chunk.map_err(|e| HttpError::bad_request(format!("reading request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is over the limit of {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|_| HttpError::bad_request("request body is not valid gzip"))?;
        if out.len() > limit {
            return Err(HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is over the limit of {limit} bytes"),
            ));
        }
        body = out;
    }
    Ok(body)
}

pub(crate) fn err_packet(message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    pkt::write_line(&mut out, format!("ERR {message}"));
    out
}
