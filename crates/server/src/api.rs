//! The REST API, `/api/v1/...`, in JSON: merge requests.

use std::sync::Arc;

use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_repo::monorepo::{MergeOutcome, Monorepo};
use tessera_store::{MergeRequest, MrStatus};

use crate::error::HttpError;
use crate::repos::repo_error;
use crate::{auth, State};

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/api/v1/mr", get(list))
        .route("/api/v1/mr/{id}", get(show))
        .route("/api/v1/mr/{id}/merge", post(merge))
        .route("/api/v1/mr/{id}/close", post(close))
        .route("/api/v1/mr/{id}/reopen", post(reopen))
        .route("/api/v1/import/convert", post(convert))
        .with_state(state)
}

fn mr_json(mr: &MergeRequest) -> Value {
    json!({
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

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
}

async fn list(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, HttpError> {
    auth::require_read(&state, &headers).await?;
    let status = match q.status.as_deref() {
        None | Some("all") => None,
        Some("open") => Some(MrStatus::Open),
        Some("merged") => Some(MrStatus::Merged),
        Some("closed") => Some(MrStatus::Closed),
        Some("conflict") => Some(MrStatus::Conflict),
        Some(other) => return Err(HttpError::bad_request(format!("unknown status {other:?}"))),
    };
    let mrs = state.store.list_mrs(status).await?;
    Ok(Json(json!({ "merge_requests": mrs.iter().map(mr_json).collect::<Vec<_>>() })))
}

async fn load(state: &State, id: i64) -> Result<MergeRequest, HttpError> {
    state.store.mr(id).await?.ok_or_else(|| HttpError::not_found(format!("no merge request {id}")))
}

async fn show(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, HttpError> {
    auth::require_read(&state, &headers).await?;
    let mr = load(&state, id).await?;
    let description = Monorepo::new(&state.store, &state.snapshots).describe(&mr).await.map_err(repo_error)?;
    let mut out = mr_json(&mr);
    out["commits"] = json!(description
        .commits
        .iter()
        .map(|c| json!({ "id": c.id.to_string(), "title": c.title, "author": c.author }))
        .collect::<Vec<_>>());
    out["files"] = json!(description
        .files
        .iter()
        .map(|f| {
            let mut file = json!({ "path": f.path, "status": f.status, "added": f.added, "removed": f.removed });
            if let Some(summary) = f.summary {
                file["summary"] = json!(summary);
            }
            file
        })
        .collect::<Vec<_>>());
    out["diffstat"] = json!({
        "files": description.files.len(),
        "added": description.files.iter().map(|f| f.added).sum::<usize>(),
        "removed": description.files.iter().map(|f| f.removed).sum::<usize>(),
    });
    Ok(Json(out))
}

async fn merge(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    auth::require(&state, &headers).await?;
    load(&state, id).await?;
    let outcome = Monorepo::new(&state.store, &state.snapshots).merge(id).await.map_err(repo_error)?;
    let mr = load(&state, id).await?;
    let status = match outcome {
        MergeOutcome::Merged { .. } => StatusCode::OK,
        MergeOutcome::Conflict { .. } => StatusCode::CONFLICT,
    };
    Ok((status, Json(mr_json(&mr))))
}

#[derive(Deserialize)]
struct ConvertQuery {
    path: String,
}

async fn convert(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<ConvertQuery>,
) -> Result<Json<Value>, HttpError> {
    auth::require(&state, &headers).await?;
    let path = crate::repos::normalize(&q.path)?;
    let head = Monorepo::new(&state.store, &state.snapshots).convert(&path).await.map_err(repo_error)?;
    Ok(Json(json!({ "path": path, "head": head.to_string(), "kind": "converted" })))
}

async fn set_status(
    state: &State,
    headers: &HeaderMap,
    id: i64,
    from: &[MrStatus],
    to: MrStatus,
) -> Result<Json<Value>, HttpError> {
    auth::require(state, headers).await?;
    let mr = load(state, id).await?;
    if !state.store.set_mr_status(id, from, to, &mr.conflicts, None).await? {
        return Err(HttpError::new(StatusCode::CONFLICT, format!("merge request {id} is {}", mr.status.as_str())));
    }
    Ok(Json(mr_json(&load(state, id).await?)))
}

async fn close(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, HttpError> {
    set_status(&state, &headers, id, &[MrStatus::Open, MrStatus::Conflict], MrStatus::Closed).await
}

async fn reopen(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, HttpError> {
    set_status(&state, &headers, id, &[MrStatus::Closed], MrStatus::Open).await
}
