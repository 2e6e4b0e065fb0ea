//! The Git LFS server: `<repository or directory URL>/info/lfs/...`.
//!
//! The batch API with the basic transfer adapter (upload, download,
//! verify), and the locking API, as git-lfs's `docs/api` describes them.
//! Every request is authorized by [`auth`], on the path the client talks
//! to, like git itself: read to download and list locks, write to upload
//! and lock, maintain to break someone else's lock.
//!
//! Objects are stored once and visible per path ([`tessera_store::lfs`]):
//! a batch answer says "present" only for an object visible where the
//! caller reads, so nobody learns that an object exists elsewhere. An
//! upload is streamed to a temporary file while its SHA-256 and size are
//! computed, and becomes visible only if both match; even an object the
//! server already holds must be uploaded whole to become visible at a new
//! path (whoever names an oid must own its content).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tessera_protocol::lfs::valid_oid;
use tessera_store::LfsLock;
use tokio::io::AsyncWriteExt;

use crate::auth::{self, Caller, Need};
use crate::error::HttpError;
use crate::{repos, State};

const LFS_JSON: &str = "application/vnd.git-lfs+json";
/// Objects one batch request may name.
const MAX_BATCH_OBJECTS: usize = 10_000;
/// Locks one listing returns at most.
const MAX_LOCKS_PAGE: i64 = 1_000;

/// An error as the LFS API sends it: `{"message": ...}`, and for 401 the
/// `LFS-Authenticate` header that makes git-lfs send credentials.
fn error_response(e: HttpError) -> Response {
    let mut res = json(e.status, &serde_json::json!({ "message": e.message }));
    if e.status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert("lfs-authenticate", HeaderValue::from_static("Basic realm=\"tessera\""));
    }
    res
}

fn json(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut res = (status, body).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(LFS_JSON));
    res
}

/// Serves one request below `<repo>/info/lfs`; `rest` is what follows it.
pub(crate) async fn dispatch(state: Arc<State>, repo: &str, rest: &str, request: Request) -> Response {
    let result = async {
        let path = repos::normalize(repo)?;
        let caller = auth::caller(&state, request.headers()).await?;
        let method = request.method().clone();
        let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (Method::POST, ["objects", "batch"]) => batch(&state, &caller, &path, request).await,
            (Method::PUT, ["objects", oid]) => upload(&state, &caller, &path, oid, request).await,
            (Method::GET, ["objects", oid]) => download(&state, &caller, &path, oid, request.headers()).await,
            (Method::POST, ["verify"]) => verify(&state, &caller, &path, request).await,
            (Method::POST, ["locks"]) => create_lock(&state, &caller, &path, request).await,
            (Method::GET, ["locks"]) => list_locks(&state, &caller, &path, request.uri().query().unwrap_or("")).await,
            (Method::POST, ["locks", "verify"]) => verify_locks(&state, &caller, &path, request).await,
            (Method::POST, ["locks", id, "unlock"]) => unlock(&state, &caller, &path, id, request).await,
            (method, _) => Err(HttpError::not_found(format!("no such LFS endpoint: {method} {rest}"))),
        }
    }
    .await;
    result.unwrap_or_else(error_response)
}

/// A JSON body of at most `max_request_bytes`.
async fn body<T: for<'de> Deserialize<'de>>(state: &State, request: Request) -> Result<T, HttpError> {
    let bytes =
        crate::wire::read_body(request, state.config.max_request_bytes, state.config.request_timeout_secs).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("the request is not valid LFS JSON: {e}"))
    })
}

// ----- batch -----

#[derive(Deserialize)]
struct BatchRequest {
    operation: String,
    #[serde(default)]
    transfers: Vec<String>,
    objects: Vec<ObjectSpec>,
    #[serde(default)]
    hash_algo: Option<String>,
}

#[derive(Deserialize, Serialize, Clone)]
struct ObjectSpec {
    oid: String,
    size: i64,
}

#[derive(Serialize)]
struct Action {
    href: String,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    header: std::collections::BTreeMap<String, String>,
    expires_in: i64,
}

#[derive(Serialize)]
struct ObjectError {
    code: u16,
    message: String,
}

#[derive(Serialize)]
struct ObjectAnswer {
    oid: String,
    size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    authenticated: Option<bool>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    actions: std::collections::BTreeMap<&'static str, Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ObjectError>,
}

/// `scheme://host` the client reached us at, for action URLs.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let host: String = host.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    let https = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https");
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// The LFS endpoint of `path` under `base`.
fn endpoint(base: &str, path: &str) -> String {
    if path == "/" {
        format!("{base}/info/lfs")
    } else {
        format!("{base}{path}/info/lfs")
    }
}

async fn batch(state: &State, caller: &Caller, path: &str, request: Request) -> Result<Response, HttpError> {
    let headers = request.headers().clone();
    let req: BatchRequest = body(state, request).await?;
    let upload = match req.operation.as_str() {
        "download" => false,
        "upload" => true,
        other => return Err(HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("unknown operation {other:?}"))),
    };
    auth::check(state, caller, path, if upload { Need::Write } else { Need::Read }).await?;
    if let Some(algo) = req.hash_algo.as_deref().filter(|a| *a != "sha256") {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            format!("hash algorithm {algo:?} is not supported; this server names objects by sha256"),
        ));
    }
    if !req.transfers.is_empty() && !req.transfers.iter().any(|t| t == "basic") {
        return Err(HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, "this server offers the basic transfer only"));
    }
    if req.objects.len() > MAX_BATCH_OBJECTS {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {MAX_BATCH_OBJECTS} objects per batch request"),
        ));
    }
    let base = endpoint(&base_url(&headers), path);
    let mut auth_header = std::collections::BTreeMap::new();
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        auth_header.insert("Authorization".to_string(), value.to_string());
    }
    let presign = state.config.lfs_presigned_downloads && !upload;
    let action = |oid: &str, suffix: &str| Action {
        href: format!("{base}/{suffix}{}", if suffix == "verify" { String::new() } else { oid.to_string() }),
        header: auth_header.clone(),
        expires_in: 3600,
    };
    let mut answers = Vec::with_capacity(req.objects.len());
    for object in req.objects {
        let invalid = |message: String| ObjectError { code: 422, message };
        let mut answer = ObjectAnswer {
            oid: object.oid.clone(),
            size: object.size,
            authenticated: caller.user.as_ref().map(|_| true),
            actions: Default::default(),
            error: None,
        };
        if !valid_oid(&object.oid) {
            answer.error = Some(invalid("oid must be a sha256: 64 lowercase hex digits".into()));
        } else if object.size < 0 {
            answer.error = Some(invalid("size must be at least zero".into()));
        } else if upload && object.size as u64 > state.config.lfs_max_object_bytes {
            answer.error = Some(invalid(format!(
                "object is larger than this server accepts ({} bytes)",
                state.config.lfs_max_object_bytes
            )));
        } else {
            let visible = state.store.lfs_visible(&object.oid, path).await?;
            match (upload, visible) {
                (false, Some(size)) => {
                    answer.size = size as i64;
                    let direct = if presign { presigned(state, &object.oid).await? } else { None };
                    let download = match direct {
                        // Straight from the bucket: no credential of ours goes there.
                        Some(href) => Action { href, header: Default::default(), expires_in: PRESIGNED_SECS as i64 },
                        None => action(&object.oid, "objects/"),
                    };
                    answer.actions.insert("download", download);
                }
                (false, None) => {
                    answer.error = Some(ObjectError { code: 404, message: "object does not exist".into() })
                }
                // Already here, as this client can see: nothing to send.
                (true, Some(size)) if size as i64 == object.size => {}
                (true, Some(size)) => {
                    answer.error = Some(invalid(format!("the object here has size {size}, not {}", object.size)))
                }
                (true, None) => {
                    answer.actions.insert("upload", action(&object.oid, "objects/"));
                    answer.actions.insert("verify", action(&object.oid, "verify"));
                }
            }
        }
        answers.push(answer);
    }
    Ok(json(StatusCode::OK, &serde_json::json!({ "transfer": "basic", "objects": answers, "hash_algo": "sha256" })))
}

// ----- transfers -----

/// How long a presigned download URL stays valid.
const PRESIGNED_SECS: u64 = 900;

/// A presigned URL of object `oid` in the bucket, when storage is one.
async fn presigned(state: &State, oid: &str) -> Result<Option<String>, HttpError> {
    state
        .store
        .lfs_presigned_url(oid, std::time::Duration::from_secs(PRESIGNED_SECS))
        .await
        .map_err(|e| HttpError::internal("signing a download URL", e))
}

fn checked_oid(oid: &str) -> Result<&str, HttpError> {
    if valid_oid(oid) {
        Ok(oid)
    } else {
        Err(HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, "oid must be a sha256: 64 lowercase hex digits"))
    }
}

async fn upload(
    state: &State,
    caller: &Caller,
    path: &str,
    oid: &str,
    request: Request,
) -> Result<Response, HttpError> {
    auth::check(state, caller, path, Need::Write).await?;
    let oid = checked_oid(oid)?;
    let declared: Option<u64> =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let limit = state.config.lfs_max_object_bytes;
    if declared.is_some_and(|n| n > limit) {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("object is larger than this server accepts ({limit} bytes)"),
        ));
    }
    let temp =
        state.store.lfs_storage().upload_file().map_err(|e| HttpError::internal("creating an LFS upload file", e))?;
    let mut file =
        tokio::fs::File::from_std(temp.reopen().map_err(|e| HttpError::internal("opening an LFS upload file", e))?);
    let mut stream = request.into_body().into_data_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = crate::serve::next_chunk(&mut stream, state.config.request_timeout_secs).await? {
        let chunk = chunk.map_err(|e| HttpError::bad_request(format!("reading the upload: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("object is larger than this server accepts ({limit} bytes)"),
            ));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| HttpError::internal("writing an LFS upload", e))?;
    }
    file.flush().await.map_err(|e| HttpError::internal("writing an LFS upload", e))?;
    drop(file);
    if declared.is_some_and(|n| n != size) {
        return Err(HttpError::bad_request(format!("the upload ended after {size} bytes, not Content-Length")));
    }
    let got = hex::encode(hasher.finalize());
    if got != oid {
        record(state, caller, "lfs.upload", path, &format!("{oid}: content hashes to {got}"), "refused").await;
        return Err(HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the uploaded content hashes to {got}, not {oid}; nothing was kept"),
        ));
    }
    if let Some(stored) = state.store.lfs_stored(oid).await? {
        if stored != size {
            return Err(HttpError::internal("storing an LFS object", format!("{oid} stored with size {stored}")));
        }
        // Same content as the stored copy: only its visibility is new.
    } else {
        state
            .store
            .keep_lfs_object(temp, oid, size)
            .await
            .map_err(|e| HttpError::internal("storing an LFS object", e))?;
    }
    state.store.add_lfs_object(oid, size, path).await?;
    record(state, caller, "lfs.upload", path, &format!("{oid} ({size} bytes)"), "ok").await;
    Ok(StatusCode::OK.into_response())
}

/// `bytes=A-B`, `bytes=A-` or `bytes=-N` within `size`: the first and last
/// byte. `Err` for a range the object cannot satisfy.
fn parse_range(value: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // several ranges: served whole, as RFC 9110 allows
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n: u64 = b.parse().ok()?;
            if n == 0 || size == 0 {
                return Some(Err(()));
            }
            (size.saturating_sub(n), size - 1)
        }
        (false, _) => {
            let first: u64 = a.parse().ok()?;
            let last: u64 = if b.is_empty() { size.saturating_sub(1) } else { b.parse().ok()? };
            if first >= size || last < first {
                return Some(Err(()));
            }
            (first, last.min(size - 1))
        }
        (true, true) => return None,
    };
    Some(Ok(range))
}

async fn download(
    state: &State,
    caller: &Caller,
    path: &str,
    oid: &str,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    auth::check(state, caller, path, Need::Read).await?;
    let oid = checked_oid(oid)?;
    let Some(size) = state.store.lfs_visible(oid, path).await? else {
        return Err(HttpError::not_found(format!("LFS object {oid} not found")));
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(|v| parse_range(v, size));
    let (status, first, last) = match range {
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
        Some(Ok((first, last))) => (StatusCode::PARTIAL_CONTENT, first, last),
        Some(Err(())) => {
            let mut res = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            res.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{size}")).unwrap());
            return Ok(res);
        }
    };
    if state.config.lfs_presigned_downloads {
        if let Some(url) = presigned(state, oid).await? {
            // The bucket answers the client's Range header itself.
            let mut res = StatusCode::TEMPORARY_REDIRECT.into_response();
            res.headers_mut().insert(
                header::LOCATION,
                HeaderValue::from_str(&url).map_err(|e| HttpError::internal("signing a download URL", e))?,
            );
            return Ok(res);
        }
    }
    let length = if size == 0 { 0 } else { last - first + 1 };
    let stream = state
        .store
        .read_lfs_object(oid, first..first + length)
        .await
        .map_err(|e| HttpError::internal("reading an LFS object", e))?;
    let mut res = Response::new(Body::from_stream(stream));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes {first}-{last}/{size}")).expect("ascii"));
    }
    Ok(res)
}

async fn verify(state: &State, caller: &Caller, path: &str, request: Request) -> Result<Response, HttpError> {
    auth::check(state, caller, path, Need::Write).await?;
    let spec: ObjectSpec = body(state, request).await?;
    let oid = checked_oid(&spec.oid)?;
    match state.store.lfs_visible(oid, path).await? {
        Some(size) if size as i64 == spec.size => Ok(json(StatusCode::OK, &spec)),
        Some(size) => Err(HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("object {oid} has size {size}, not {}", spec.size),
        )),
        None => Err(HttpError::not_found(format!("LFS object {oid} not found"))),
    }
}

// ----- locks -----

#[derive(Serialize)]
struct LockOwner {
    name: String,
}

#[derive(Serialize)]
struct LockView {
    id: String,
    path: String,
    locked_at: String,
    owner: LockOwner,
}

/// A lock as the client sees it: its path relative to the repository or
/// directory it talks to.
fn lock_view(lock: &LfsLock, root: &str) -> LockView {
    let relative = if root == "/" { &lock.path[1..] } else { lock.path[root.len()..].trim_start_matches('/') };
    LockView {
        id: lock.id.to_string(),
        path: relative.to_string(),
        locked_at: crate::wire::rfc3339(lock.locked_at),
        owner: LockOwner { name: lock.owner.clone() },
    }
}

/// The monorepo path of file `relative` in the repository at `root`.
fn lock_path(root: &str, relative: &str) -> Result<String, HttpError> {
    let relative = relative.trim_start_matches("./");
    let bad = || HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{relative:?} is not a file path"));
    if relative.is_empty() || relative.len() > 4096 || relative.starts_with('/') || relative.contains('\0') {
        return Err(bad());
    }
    if relative.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(bad());
    }
    Ok(if root == "/" { format!("/{relative}") } else { format!("{root}/{relative}") })
}

fn signed_in(caller: &Caller) -> Result<&tessera_store::User, HttpError> {
    caller.user.as_ref().ok_or_else(|| HttpError::new(StatusCode::UNAUTHORIZED, "authentication required for locks"))
}

#[derive(Deserialize)]
struct CreateLock {
    path: String,
}

async fn create_lock(state: &State, caller: &Caller, path: &str, request: Request) -> Result<Response, HttpError> {
    let user = signed_in(caller)?.clone();
    auth::check(state, caller, path, Need::Write).await?;
    let req: CreateLock = body(state, request).await?;
    let file = lock_path(path, &req.path)?;
    match state.store.create_lfs_lock(&file, user.id).await? {
        Ok(lock) => {
            record(state, caller, "lfs.lock", &file, &format!("lock {}", lock.id), "ok").await;
            Ok(json(StatusCode::CREATED, &serde_json::json!({ "lock": lock_view(&lock, path) })))
        }
        Err(existing) => Ok(json(
            StatusCode::CONFLICT,
            &serde_json::json!({
                "lock": lock_view(&existing, path),
                "message": format!("{} is already locked by {}", req.path, existing.owner),
            }),
        )),
    }
}

/// Locks below `root` from `cursor` on, at most `limit`, and the cursor of
/// the next page.
async fn page(state: &State, root: &str, cursor: i64, limit: i64) -> Result<(Vec<LfsLock>, Option<i64>), HttpError> {
    let limit = limit.clamp(1, MAX_LOCKS_PAGE);
    let mut locks = state.store.lfs_locks_below(root, cursor, limit + 1).await?;
    let next = (locks.len() as i64 > limit).then(|| {
        locks.truncate(limit as usize);
        locks.last().map_or(cursor, |l| l.id)
    });
    Ok((locks, next))
}

async fn list_locks(state: &State, caller: &Caller, path: &str, query: &str) -> Result<Response, HttpError> {
    auth::check(state, caller, path, Need::Read).await?;
    let pairs = crate::wire::query_pairs(query);
    let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let number = |k: &str| -> Result<Option<i64>, HttpError> {
        get(k)
            .filter(|v| !v.is_empty())
            .map(|v| v.parse::<i64>().map_err(|_| HttpError::bad_request(format!("{k} must be a number"))))
            .transpose()
    };
    let cursor = number("cursor")?.unwrap_or(0);
    let limit = number("limit")?.unwrap_or(100);
    let (mut locks, next) = if let Some(id) = number("id")? {
        let lock = state.store.lfs_lock(id).await?.filter(|l| under(&l.path, path));
        (lock.into_iter().collect(), None)
    } else {
        page(state, path, cursor, limit).await?
    };
    if let Some(file) = get("path").filter(|p| !p.is_empty()) {
        let wanted = lock_path(path, file)?;
        locks.retain(|l| l.path == wanted);
    }
    let views: Vec<LockView> = locks.iter().map(|l| lock_view(l, path)).collect();
    let mut answer = serde_json::json!({ "locks": views });
    if let Some(next) = next {
        answer["next_cursor"] = serde_json::Value::String(next.to_string());
    }
    Ok(json(StatusCode::OK, &answer))
}

fn under(file: &str, root: &str) -> bool {
    root == "/" || file.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'))
}

#[derive(Deserialize, Default)]
struct VerifyLocks {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

async fn verify_locks(state: &State, caller: &Caller, path: &str, request: Request) -> Result<Response, HttpError> {
    let user = signed_in(caller)?.clone();
    auth::check(state, caller, path, Need::Write).await?;
    let req: VerifyLocks = body(state, request).await?;
    let cursor = match req.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => c.parse().map_err(|_| HttpError::bad_request("cursor must be a number"))?,
        None => 0,
    };
    let (locks, next) = page(state, path, cursor, req.limit.unwrap_or(100)).await?;
    let (ours, theirs): (Vec<&LfsLock>, Vec<&LfsLock>) = locks.iter().partition(|l| l.owner_id == user.id);
    let view = |v: Vec<&LfsLock>| v.into_iter().map(|l| lock_view(l, path)).collect::<Vec<_>>();
    let mut answer = serde_json::json!({ "ours": view(ours), "theirs": view(theirs) });
    if let Some(next) = next {
        answer["next_cursor"] = serde_json::Value::String(next.to_string());
    }
    Ok(json(StatusCode::OK, &answer))
}

#[derive(Deserialize, Default)]
struct Unlock {
    #[serde(default)]
    force: bool,
}

async fn unlock(state: &State, caller: &Caller, path: &str, id: &str, request: Request) -> Result<Response, HttpError> {
    let user = signed_in(caller)?.clone();
    auth::check(state, caller, path, Need::Write).await?;
    let req: Unlock = body(state, request).await?;
    let missing = || HttpError::not_found(format!("no lock {id:?} here"));
    let id: i64 = id.parse().map_err(|_| missing())?;
    let lock = state.store.lfs_lock(id).await?.filter(|l| under(&l.path, path)).ok_or_else(missing)?;
    if lock.owner_id != user.id {
        if !req.force {
            return Err(HttpError::new(
                StatusCode::FORBIDDEN,
                format!("{} is locked by {}; a maintainer may force the unlock", lock.path, lock.owner),
            ));
        }
        auth::check(state, caller, path, Need::Maintain).await?;
    }
    state.store.delete_lfs_lock(id).await?;
    let how = if lock.owner_id == user.id { "unlock" } else { "force unlock" };
    record(state, caller, "lfs.unlock", &lock.path, &format!("{how} of {}'s lock {id}", lock.owner), "ok").await;
    Ok(json(StatusCode::OK, &serde_json::json!({ "lock": lock_view(&lock, path) })))
}

async fn record(state: &State, caller: &Caller, action: &str, path: &str, detail: &str, outcome: &str) {
    if let Err(e) = state.store.audit(caller.name(), action, Some(path), detail, outcome).await {
        tracing::error!("recording {action} on {path} in the audit log: {e}");
    }
}

/// The locks of others on files a push to `root` would change, as
/// `path (locked by owner)`; empty when nothing locked is touched. Called
/// by receive-pack, whatever the client's `lfs.locksverify` says.
pub(crate) async fn locked_by_others(
    state: &State,
    who: &str,
    root: &str,
    prepared: &tessera_repo::ingest::Prepared,
    snapshot: &repos::Snapshot,
    updates: &[(Option<tessera_pack::ObjectId>, Option<tessera_pack::ObjectId>)],
) -> Result<Vec<String>, HttpError> {
    let mut theirs = Vec::new();
    let mut cursor = 0;
    loop {
        let locks = state.store.lfs_locks_below(root, cursor, MAX_LOCKS_PAGE).await?;
        let Some(last) = locks.last() else { break };
        cursor = last.id;
        theirs.extend(locks.into_iter().filter(|l| l.owner != who));
    }
    if theirs.is_empty() {
        return Ok(Vec::new());
    }
    let files: Vec<String> = theirs.iter().map(|l| lock_view(l, root).path).collect();
    let changed = prepared
        .changed_files(snapshot, updates, &files)
        .await
        .map_err(|e| HttpError::internal("checking locked files", e))?;
    Ok(theirs
        .iter()
        .zip(&files)
        .filter(|(_, f)| changed.contains(f))
        .map(|(l, f)| format!("{f} (locked by {})", l.owner))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Some(Ok((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=9-3", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=x-1", 100), None);
    }

    #[test]
    fn lock_paths_stay_inside() {
        assert_eq!(lock_path("/projects/x", "a/b.bin").unwrap(), "/projects/x/a/b.bin");
        assert_eq!(lock_path("/", "a.bin").unwrap(), "/a.bin");
        for bad in ["", "/etc/passwd", "../x", "a/../../b", "a//b", "a/./b"] {
            assert!(lock_path("/projects/x", bad).is_err(), "{bad}");
        }
    }
}
