//! b-link lite views over HTTP (and SSH, which shares the paths):
//! - `/-/blink/<path>` is the lite view of directory `<path>`: clone and
//!   fetch serve its history with every blob over `blink_threshold`
//!   replaced by a b-link file; a push is mapped back to the full view and
//!   opens the same merge request a push there would;
//! - `GET /<path>/-/blob-by-id/<sha1>` serves a replaced blob to callers
//!   who can read a directory whose lite view named it.
//!
//! The views themselves are built in [`tessera_repo::blink`].

use std::collections::HashMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tessera_pack::{Kind, ObjectId};
use tessera_repo::blink;
use tessera_repo::monorepo::MAIN;
use tessera_store::Repo;

use crate::auth::{self, Caller, Need};
use crate::error::HttpError;
use crate::repos::{self, repo_error, Snapshot};
use crate::State;

/// Where lite views live.
const PREFIX: &str = "/-/blink";

/// The directory a normalized path's lite view is of, if it names one
/// (`/-/blink/projects/x` → `/projects/x`, `/-/blink` → `/`).
pub(crate) fn lite_dir(path: &str) -> Option<String> {
    let rest = path.strip_prefix(PREFIX)?;
    if rest.is_empty() {
        return Some("/".into());
    }
    rest.starts_with('/').then(|| rest.to_string())
}

/// The monorepo root and the directory commit `dir` is at, if it exists.
async fn full_head(state: &State, dir: &str) -> Result<Option<(Repo, ObjectId)>, HttpError> {
    let mono = state.mono();
    let root = mono.root().await.map_err(repo_error)?;
    let Some(root_head) = mono.root_head(&root).await.map_err(repo_error)? else { return Ok(None) };
    let snapshot = repos::snapshot(state, root.id).await?;
    let head = mono.dir_head(&root, &snapshot, dir, root_head).await.map_err(repo_error)?;
    Ok(head.map(|h| (root, h)))
}

/// The lite commit of `dir`'s current head, built if the cache lacks it
/// (one build at a time per process: a build reads the whole history).
async fn lite_head(state: &State, root: &Repo, dir: &str, head: ObjectId) -> Result<ObjectId, HttpError> {
    let threshold = state.config.blink_threshold;
    if let Some(lite) = state.store.blink_lite_of(root.id, threshold, &head).await? {
        return Ok(lite);
    }
    let _one = state.blink_builds.lock().await;
    let started = std::time::Instant::now();
    let view =
        blink::lite_head(&state.store, &state.snapshots, root, dir, head, threshold).await.map_err(repo_error)?;
    if view.rewritten > 0 {
        tracing::info!(
            "lite view of {dir} at {head}: {} commits mapped in {:.1} s",
            view.rewritten,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(view.head)
}

/// Refs, HEAD and the snapshot to serve for a read of the lite view of
/// `dir`; `None` when the directory does not exist. The caller checked
/// read access on `dir`.
pub(crate) async fn read_view(
    state: &State,
    dir: &str,
) -> Result<Option<(Vec<tessera_store::Ref>, String, Snapshot)>, HttpError> {
    let Some((root, head)) = full_head(state, dir).await? else { return Ok(None) };
    let lite = lite_head(state, &root, dir, head).await?;
    // After the build: the snapshot holds the lite objects.
    let snapshot = repos::snapshot(state, root.id).await?;
    let main = MAIN.to_string();
    Ok(Some((vec![tessera_store::Ref { name: main.clone(), target: lite, peeled: None }], main, snapshot)))
}

/// Whether `caller` may read `blob` as a b-link target: a directory whose
/// lite view replaced it is one the caller can read whole.
async fn may_read_blob(state: &State, caller: &Caller, root: &Repo, blob: &ObjectId) -> Result<bool, HttpError> {
    let policy = auth::policy(state).await?;
    let paths = state.store.blink_blob_paths(root.id, blob).await?;
    Ok(paths.iter().any(|p| auth::decide(&policy, caller, p, Need::Read).is_ok()))
}

/// `GET /<dir>/-/blob-by-id/<sha1>`: the content of a blob a lite view
/// replaced, for a caller who can read a directory it lies in. Anything
/// else is "not found", whether the blob exists or not.
pub(crate) async fn blob_by_id(state: &State, caller: &Caller, dir: &str, hex: &str) -> Result<Response, HttpError> {
    let dir = repos::normalize(dir)?;
    auth::check(state, caller, &dir, Need::Read).await?;
    let not_found = || HttpError::not_found(format!("no blob {hex} in the lite view of {dir}"));
    let id = match ObjectId::from_hex(hex.as_bytes()) {
        Ok(id) if hex.len() == 40 => id,
        _ => return Err(HttpError::bad_request("a blob id is 40 hexadecimal digits")),
    };
    let Some((root, head)) = full_head(state, &dir).await? else { return Err(not_found()) };
    if !may_read_blob(state, caller, &root, &id).await? {
        // The view of `dir` may not have been built at this threshold yet
        // (or since the blob arrived): build it, then ask again.
        lite_head(state, &root, &dir, head).await?;
        if !may_read_blob(state, caller, &root, &id).await? {
            return Err(not_found());
        }
    }
    let snapshot = repos::snapshot(state, root.id).await?;
    if snapshot.index.objects.get(&id).map(|l| l.kind) != Some(Kind::Blob) {
        return Err(not_found());
    }
    let data = tokio::task::spawn_blocking(move || snapshot.odb().read(&id))
        .await
        .map_err(|e| HttpError::internal("reading a blob", e))?
        .map_err(|e| HttpError::internal("reading a blob", e))?
        .1;
    let mut response = (StatusCode::OK, data.as_ref().clone()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{id}\"")) {
        headers.insert(header::ETAG, etag);
    }
    Ok(response)
}

/// A push to the lite view of `dir`, stored (its objects are a lite
/// view's: content-addressed, never reachable from a ref), mapped to the
/// full view: each proposed lite head's full commit, or why it is refused.
/// The full objects are stored before this returns.
pub(crate) async fn map_push(
    state: &State,
    caller: &Caller,
    root: &Repo,
    dir: &str,
    pushed: &HashMap<ObjectId, Vec<ObjectId>>,
    heads: &[Result<ObjectId, String>],
) -> Result<Vec<Result<ObjectId, String>>, HttpError> {
    let threshold = state.config.blink_threshold;
    // The lite commits the push builds on, with their full commits.
    let mut known = HashMap::new();
    let mut outside = Vec::new();
    for parents in pushed.values() {
        for p in parents {
            if pushed.contains_key(p) || known.contains_key(p) {
                continue;
            }
            match state.store.blink_full_of(root.id, threshold, p).await? {
                Some(full) => {
                    known.insert(*p, full);
                }
                None => outside.push(*p),
            }
        }
    }
    // Heads pushed with no new commit (an existing lite commit).
    for head in heads.iter().flatten() {
        if !pushed.contains_key(head) && !known.contains_key(head) {
            match state.store.blink_full_of(root.id, threshold, head).await? {
                Some(full) => {
                    known.insert(*head, full);
                }
                None => outside.push(*head),
            }
        }
    }
    if let Some(p) = outside.first() {
        let reason = format!(
            "commit {p} is not in the lite view of {dir} at this server's blink_threshold; fetch {PREFIX}{dir} and rebase onto it"
        );
        return Ok(heads.iter().map(|h| h.clone().and(Err(reason.clone()))).collect());
    }
    let snapshot = repos::snapshot(state, root.id).await?;
    let pushed_owned = pushed.clone();
    let dir_owned = dir.to_string();
    let mapped = tokio::task::spawn_blocking(move || {
        blink::to_full(&snapshot.odb(), &pushed_owned, &known, &dir_owned).map(|m| (m, snapshot))
    })
    .await
    .map_err(|e| HttpError::internal("mapping a lite push", e))?;
    let (mapped, snapshot) = match mapped {
        Ok(m) => m,
        Err(tessera_repo::Error::Refused(reason)) => {
            return Ok(heads.iter().map(|h| h.clone().and(Err(reason.clone()))).collect())
        }
        Err(e) => return Err(repo_error(e)),
    };
    // Each b-link file must name a blob the server has and the pusher can read.
    for blob in &mapped.named {
        let stored = snapshot.index.objects.get(blob).map(|l| l.kind) == Some(Kind::Blob);
        if !stored || !may_read_blob(state, caller, root, blob).await? {
            let reason = format!(
                "a b-link file names blob {blob}, which is not one this server replaced in a lite view you can read"
            );
            return Ok(heads.iter().map(|h| h.clone().and(Err(reason.clone()))).collect());
        }
    }
    let full_of = mapped.full_of.clone();
    mapped.builder.store(&state.store, root.id, &snapshot).await.map_err(repo_error)?;
    Ok(heads
        .iter()
        .map(|h| {
            h.clone().and_then(|lite| {
                full_of.get(&lite).copied().ok_or_else(|| format!("commit {lite} was not mapped to the full view"))
            })
        })
        .collect())
}
