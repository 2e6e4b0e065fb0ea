//! What the HTTP handlers share: git responses, `ERR` packets, request
//! bodies read within limits, the refusal of paths no push creates, URL
//! decoding and dates.

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

/// `%XX` escapes decoded (a malformed escape stays as it is).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `name=value` pairs of a query string or a urlencoded form body
/// (`+` is a space), decoded.
pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(&k.replace('+', " ")), percent_decode(&v.replace('+', " "))))
        .collect()
}

/// Seconds since the epoch as RFC 3339 in UTC.
pub(crate) fn rfc3339(seconds: i64) -> String {
    tessera_bridge::git::iso_date(seconds)
}

/// A merge request as the REST API and webhook events show it.
pub(crate) fn mr_json(mr: &tessera_store::MergeRequest) -> serde_json::Value {
    serde_json::json!({
        "id": mr.id,
        "path": mr.path,
        "branch": mr.branch,
        "status": mr.status.as_str(),
        "title": mr.title,
        "base": mr.base.map(|b| b.to_string()),
        "head": mr.head.to_string(),
        "conflicts": mr.conflicts,
        "merged_root": mr.merged_root.map(|r| r.to_string()),
        "author": mr.author,
        "created_at": mr.created_at,
        "updated_at": mr.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_queries() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_790_000_000), "2026-09-21T14:13:20Z");
        assert_eq!(query_pairs("a=b+c&d=%2Fx%zz"), [("a".into(), "b c".into()), ("d".into(), "/x%zz".into())]);
    }
}
