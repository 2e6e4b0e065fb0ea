//! Reviews through the REST API: comments, approvals, and the approvals a
//! path requires before a merge (`/api/v1/mr/N/comments`,
//! `/api/v1/mr/N/approve`, `/api/v1/settings`). The web UI calls the same
//! functions. Approvals count only from maintainers of the request's path
//! other than its author, and only for the head they approved.

use std::sync::Arc;

use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_store::review::Comment;
use tessera_store::MergeRequest;

use crate::auth::{self, Caller, Need};
use crate::error::{ApiError, HttpError};
use crate::State;

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/api/v1/mr/{id}/comments", get(list_comments).post(post_comment))
        .route("/api/v1/mr/{id}/approve", post(approve))
        .route("/api/v1/settings", get(get_settings).post(put_settings))
        .with_state(state)
}

/// Where a request's approvals stand.
pub(crate) struct Approvals {
    pub required: i64,
    /// The path whose setting applies.
    pub set_at: String,
    /// Maintainers (not the author) who approved the current head.
    pub current: Vec<String>,
    /// Approvals of earlier heads: what changed since, they have not seen.
    pub stale: Vec<(String, String)>,
}

pub(crate) async fn approvals(state: &State, mr: &MergeRequest) -> Result<Approvals, HttpError> {
    let (required, set_at) = state.store.required_approvals(&mr.path).await?;
    let policy = auth::policy(state).await?;
    let head = mr.head.to_string();
    let mut current = Vec::new();
    let mut stale = Vec::new();
    for a in state.store.approvals(mr.id).await? {
        if a.head != head {
            stale.push((a.user, a.head));
            continue;
        }
        let Some(user) = state.store.user(&a.user).await?.filter(|u| !u.disabled) else { continue };
        let maintainer = Caller { user: Some(user), scope: tessera_store::access::Scope::Write };
        if a.user != mr.author && auth::decide(&policy, &maintainer, &mr.path, Need::Maintain).is_ok() {
            current.push(a.user);
        }
    }
    Ok(Approvals { required, set_at, current, stale })
}

/// Refuses a merge that lacks the approvals or the successful checks its
/// path requires.
pub(crate) async fn merge_gate(state: &State, mr: &MergeRequest) -> Result<(), HttpError> {
    crate::hooks::checks_gate(state, mr).await?;
    let a = approvals(state, mr).await?;
    if (a.current.len() as i64) < a.required {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            format!(
                "merge request {} needs {} approval(s) from maintainers of {} other than its author (has {})",
                mr.id,
                a.required,
                a.set_at,
                a.current.len()
            ),
        ));
    }
    Ok(())
}

pub(crate) async fn comment_as(
    state: &State,
    caller: &Caller,
    id: i64,
    body: &str,
    file: Option<&str>,
    line: Option<i64>,
) -> Result<Comment, HttpError> {
    let user = caller.user.as_ref().ok_or_else(|| HttpError::new(StatusCode::UNAUTHORIZED, "sign in to comment"))?;
    let mr = auth::load_for(state, caller, id, Need::Read, "mr.comment").await?;
    let comment = state.store.add_comment(id, &user.name, body, file, line, mr.head).await?;
    let at = match (file, line) {
        (Some(f), Some(l)) => format!(" on {f}:{l}"),
        (Some(f), None) => format!(" on {f}"),
        _ => String::new(),
    };
    audit(state, caller, "mr.comment", &mr.path, &format!("!{id}{at}")).await;
    Ok(comment)
}

pub(crate) async fn approve_as(state: &State, caller: &Caller, id: i64) -> Result<MergeRequest, HttpError> {
    let user = caller.user.as_ref().ok_or_else(|| HttpError::new(StatusCode::UNAUTHORIZED, "sign in to approve"))?;
    let mr = auth::load_for(state, caller, id, Need::Maintain, "mr.approve").await?;
    if mr.author == user.name {
        return Err(HttpError::new(StatusCode::FORBIDDEN, "you cannot approve your own merge request"));
    }
    state.store.approve(id, &user.name, mr.head).await?;
    audit(state, caller, "mr.approve", &mr.path, &format!("!{id} at {}", mr.head)).await;
    Ok(mr)
}

async fn audit(state: &State, caller: &Caller, action: &str, path: &str, detail: &str) {
    if let Err(e) = state.store.audit(caller.name(), action, Some(path), detail, "ok").await {
        tracing::error!("recording {action} on {path} in the audit log: {e}");
    }
}

async fn list_comments(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::caller(&state, &headers).await?;
    let mr = auth::load_for(&state, &caller, id, Need::Read, "mr.show").await?;
    let a = approvals(&state, &mr).await?;
    Ok(Json(json!({
        "comments": state.store.comments(id).await?,
        "approvals": { "required": a.required, "set_at": a.set_at, "current": a.current,
                       "stale": a.stale.iter().map(|(u, h)| json!({ "user": u, "head": h })).collect::<Vec<_>>() },
    })))
}

#[derive(Deserialize)]
struct CommentBody {
    body: String,
    file: Option<String>,
    line: Option<i64>,
}

async fn post_comment(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(body): Json<CommentBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = auth::require(&state, &headers).await?;
    let comment = comment_as(&state, &caller, id, &body.body, body.file.as_deref(), body.line).await?;
    Ok((StatusCode::CREATED, Json(json!(comment))))
}

async fn approve(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::require(&state, &headers).await?;
    let mr = approve_as(&state, &caller, id).await?;
    let a = approvals(&state, &mr).await?;
    Ok(Json(json!({ "id": id, "approved_head": mr.head.to_string(), "required": a.required, "current": a.current })))
}

#[derive(Deserialize)]
struct SettingsQuery {
    path: String,
}

#[derive(Deserialize)]
struct SettingsBody {
    required_approvals: Option<i64>,
    /// Names of the checks that must succeed; `[]` requires none here.
    required_checks: Option<Vec<String>>,
}

async fn get_settings(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<SettingsQuery>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::caller(&state, &headers).await?;
    let path = crate::repos::normalize(&q.path)?;
    auth::check(&state, &caller, &path, Need::Read).await?;
    let (required, set_at) = state.store.required_approvals(&path).await?;
    let (checks, checks_set_at) = state.store.required_checks(&path).await?;
    Ok(Json(json!({ "path": path, "required_approvals": required, "set_at": set_at,
                    "required_checks": checks, "checks_set_at": checks_set_at })))
}

/// Maintainers of a path set how many approvals its merges need.
async fn put_settings(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<SettingsQuery>,
    Json(body): Json<SettingsBody>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::require(&state, &headers).await?;
    let path = crate::repos::normalize(&q.path)?;
    auth::check(&state, &caller, &path, Need::Maintain).await?;
    if body.required_approvals.is_none() && body.required_checks.is_none() {
        return Err(HttpError::bad_request("set required_approvals, required_checks or both").into());
    }
    if let Some(n) = body.required_approvals {
        state.store.set_required_approvals(&path, n).await?;
        audit(&state, &caller, "settings.approvals", &path, &format!("{n} required")).await;
    }
    if let Some(names) = &body.required_checks {
        state.store.set_required_checks(&path, names).await?;
        audit(&state, &caller, "settings.checks", &path, &format!("required: {}", names.join(", "))).await;
    }
    let (required, _) = state.store.required_approvals(&path).await?;
    let (checks, _) = state.store.required_checks(&path).await?;
    Ok(Json(json!({ "path": path, "required_approvals": required, "required_checks": checks })))
}
