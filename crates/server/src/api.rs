//! The REST API, `/api/v1/...`, in JSON: merge requests, import
//! conversion, and (for admins) access rules and the audit log. Every
//! permission question goes to `auth`, as for git's own requests.

use std::sync::Arc;

use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_repo::monorepo::MergeOutcome;
use tessera_store::{MergeRequest, MrStatus};

use crate::auth::{self, audited, load_for, Need};
use crate::error::{ApiError, HttpError};
use crate::repos::repo_error;
use crate::State;

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/api/v1/repos", get(list_repos))
        .route("/api/v1/refs", get(|s, h, q| crate::ui::repo_json(s, h, q, "refs")))
        .route("/api/v1/tree", get(|s, h, q| crate::ui::repo_json(s, h, q, "tree")))
        .route("/api/v1/blob", get(|s, h, q| crate::ui::repo_json(s, h, q, "blob")))
        .route("/api/v1/commits", get(|s, h, q| crate::ui::repo_json(s, h, q, "commits")))
        .route("/api/v1/search", get(|s, h, q| crate::ui::repo_json(s, h, q, "search")))
        .route("/api/v1/commit", get(|s, h, q| crate::ui::repo_json(s, h, q, "commit")))
        .route("/api/v1/data", get(|s, h, q| crate::ui::data_json(s, h, q, false)))
        .route("/api/v1/data/changes", get(|s, h, q| crate::ui::data_json(s, h, q, true)))
        .route("/api/v1/mr", get(list))
        .route("/api/v1/mr/{id}", get(show))
        .route("/api/v1/mr/{id}/merge", post(merge))
        .route("/api/v1/mr/{id}/close", post(close))
        .route("/api/v1/mr/{id}/reopen", post(reopen))
        .route("/api/v1/import/convert", post(convert))
        .route("/api/v1/access", get(list_access))
        .route("/api/v1/access/grant", post(grant))
        .route("/api/v1/access/revoke", post(revoke))
        .route("/api/v1/access/public", post(public))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/openapi.json", get(openapi))
        .with_state(state)
}

/// The API's OpenAPI 3.1 description, written by hand next to the routes:
/// a test checks that it names every route and method the routers serve,
/// and the end-to-end tests validate it with `openapi-spec-validator`.
const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
}

async fn list(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::caller(&state, &headers).await?;
    let policy = auth::policy(&state).await?;
    let status = match q.status.as_deref() {
        None | Some("all") => None,
        Some("open") => Some(MrStatus::Open),
        Some("merged") => Some(MrStatus::Merged),
        Some("closed") => Some(MrStatus::Closed),
        Some("conflict") => Some(MrStatus::Conflict),
        Some(other) => return Err(HttpError::bad_request(format!("unknown status {other:?}")).into()),
    };
    // Only what the caller may read is listed.
    let mrs = state.store.list_mrs(status).await?;
    let visible = mrs.iter().filter(|mr| policy.level(caller.user.as_ref(), &mr.path).is_some());
    Ok(Json(json!({ "merge_requests": visible.map(crate::wire::mr_json).collect::<Vec<_>>() })))
}

async fn load(state: &State, id: i64) -> Result<MergeRequest, HttpError> {
    state.store.mr(id).await?.ok_or_else(|| HttpError::not_found(format!("no merge request {id}")))
}

async fn show(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::caller(&state, &headers).await?;
    let mr = load_for(&state, &caller, id, Need::Read, "mr.show").await?;
    let description = state.mono().describe(&mr).await.map_err(repo_error)?;
    let mut out = crate::wire::mr_json(&mr);
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
    let a = crate::review::approvals(&state, &mr).await?;
    out["approvals"] = json!({ "required": a.required, "set_at": a.set_at, "current": a.current,
        "stale": a.stale.iter().map(|(u, h)| json!({ "user": u, "head": h })).collect::<Vec<_>>() });
    out["comments"] = json!(state.store.comments(mr.id).await?);
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
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = auth::require(&state, &headers).await?;
    let (status, mr) = merge_as(&state, &caller, id).await?;
    Ok((status, Json(crate::wire::mr_json(&mr))))
}

/// Merges request `id` for `caller` (maintain on its path), audited; 200
/// when merged, 409 with the request in `conflict` status otherwise. The
/// REST API and the web UI both merge through here.
pub(crate) async fn merge_as(
    state: &State,
    caller: &auth::Caller,
    id: i64,
) -> Result<(StatusCode, MergeRequest), HttpError> {
    let caller = caller.clone();
    let mr = load_for(state, &caller, id, Need::Maintain, "mr.merge").await?;
    if let Err(short) = crate::review::merge_gate(state, &mr).await {
        audited(state, &caller, "mr.merge", &mr.path, format!("!{id}: {}", short.message), "refused").await;
        return Err(short);
    }
    if let Some(reason) = crate::repos::merge_requests_refused(state, &mr.path).await? {
        audited(state, &caller, "mr.merge", &mr.path, format!("!{id}: {reason}"), "refused").await;
        return Err(HttpError::new(StatusCode::FORBIDDEN, reason));
    }
    let outcome = state.mono().merge(id).await.map_err(repo_error);
    tessera_repo::memory::release_free_memory();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            audited(state, &caller, "mr.merge", &mr.path, format!("!{id}: {}", e.message), "refused").await;
            return Err(e);
        }
    };
    let mr = load(state, id).await?;
    let status = match outcome {
        MergeOutcome::Merged { .. } => StatusCode::OK,
        MergeOutcome::Conflict { .. } => StatusCode::CONFLICT,
    };
    let merged = status == StatusCode::OK;
    if merged {
        crate::hooks::emit(state, &mr.path, "mr.merged", crate::hooks::mr_event(&mr)).await;
    }
    let detail = if merged { format!("!{id} merged") } else { format!("!{id} has conflicts") };
    audited(state, &caller, "mr.merge", &mr.path, detail, if merged { "ok" } else { "conflict" }).await;
    Ok((status, mr))
}

#[derive(Deserialize)]
struct ConvertQuery {
    path: String,
    /// Convert even though refs other than the default branch go.
    #[serde(default)]
    drop_refs: bool,
}

async fn convert(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<ConvertQuery>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::require(&state, &headers).await?;
    let path = crate::repos::normalize(&q.path)?;
    if let Err(denied) = auth::check(&state, &caller, &path, Need::Maintain).await {
        audited(&state, &caller, "import.convert", &path, denied.message.clone(), "denied").await;
        return Err(denied.into());
    }
    let converted = state.mono().convert(&path, q.drop_refs).await.map_err(repo_error);
    let detail = match &converted {
        Ok(head) => format!("head {head}"),
        Err(e) => e.message.clone(),
    };
    audited(&state, &caller, "import.convert", &path, detail, if converted.is_ok() { "ok" } else { "refused" }).await;
    let head = converted?;
    Ok(Json(json!({ "path": path, "head": head.to_string(), "kind": "converted" })))
}

async fn set_status(
    state: &State,
    headers: &HeaderMap,
    id: i64,
    from: &[MrStatus],
    to: MrStatus,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::require(state, headers).await?;
    Ok(Json(crate::wire::mr_json(&set_status_as(state, &caller, id, from, to).await?)))
}

/// Closes or reopens request `id` for `caller` (maintain), audited.
pub(crate) async fn set_status_as(
    state: &State,
    caller: &auth::Caller,
    id: i64,
    from: &[MrStatus],
    to: MrStatus,
) -> Result<MergeRequest, HttpError> {
    let caller = caller.clone();
    let action = format!("mr.{}", if to == MrStatus::Closed { "close" } else { "reopen" });
    let mr = load_for(state, &caller, id, Need::Maintain, &action).await?;
    if !state.store.set_mr_status(id, from, to, &mr.conflicts, None).await? {
        let reason = format!("merge request {id} is {}", mr.status.as_str());
        audited(state, &caller, &action, &mr.path, reason.clone(), "refused").await;
        return Err(HttpError::new(StatusCode::CONFLICT, reason));
    }
    audited(state, &caller, &action, &mr.path, format!("!{id}"), "ok").await;
    let mr = load(state, id).await?;
    if to == MrStatus::Closed {
        crate::hooks::emit(state, &mr.path, "mr.closed", crate::hooks::mr_event(&mr)).await;
    }
    Ok(mr)
}

async fn close(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    set_status(&state, &headers, id, &[MrStatus::Open, MrStatus::Conflict], MrStatus::Closed).await
}

async fn reopen(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    set_status(&state, &headers, id, &[MrStatus::Closed], MrStatus::Open).await
}

/// `GET /api/v1/repos`: the repositories the caller may read (the
/// monorepo root, import repositories, converted ones), by path.
async fn list_repos(AxState(state): AxState<Arc<State>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = auth::caller(&state, &headers).await?;
    let policy = auth::policy(&state).await?;
    let repos: Vec<Value> = state
        .store
        .list_repos()
        .await?
        .into_iter()
        .filter(|r| policy.level(caller.user.as_ref(), &r.path).is_some())
        .map(|r| {
            let kind = match r.kind {
                tessera_store::RepoKind::Mono => "monorepo",
                tessera_store::RepoKind::Import => "import",
                tessera_store::RepoKind::Converted => "converted",
            };
            json!({ "path": r.path, "kind": kind, "head": r.head })
        })
        .collect();
    Ok(Json(json!({ "repositories": repos })))
}

#[derive(Deserialize)]
struct AccessQuery {
    path: Option<String>,
}

/// `GET /api/v1/access[?path=P]`: rules at and below a path, for admins.
async fn list_access(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<AccessQuery>,
) -> Result<Json<Value>, ApiError> {
    auth::require_admin(&auth::require(&state, &headers).await?)?;
    let path = q.path.as_deref().map(crate::repos::normalize).transpose()?;
    let policy = auth::policy(&state).await?;
    let rules: Vec<Value> = policy
        .rules(path.as_deref())
        .iter()
        .map(|r| json!({ "path": r.path, "subject": r.subject_name, "level": r.level.as_str() }))
        .collect();
    let public: Vec<Value> =
        policy.public_settings().iter().map(|(p, on)| json!({ "path": p, "public": on })).collect();
    Ok(Json(json!({ "rules": rules, "public": public })))
}

#[derive(Deserialize)]
struct RuleBody {
    path: String,
    user: Option<String>,
    group: Option<String>,
    level: Option<String>,
    public: Option<bool>,
}

/// `POST /api/v1/access/grant` `{path, user|group, level}`, for admins.
async fn grant(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Json(body): Json<RuleBody>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::require(&state, &headers).await?;
    auth::require_admin(&caller)?;
    let path = crate::repos::normalize(&body.path)?;
    let level = body
        .level
        .as_deref()
        .and_then(tessera_store::Level::parse)
        .ok_or_else(|| HttpError::bad_request("level must be read, write or maintain"))?;
    let subject = state.store.subject(body.user.as_deref(), body.group.as_deref()).await?;
    state.store.grant(&path, subject, level).await?;
    let who = body.user.map(|u| format!("user {u}")).or(body.group.map(|g| format!("group {g}"))).unwrap_or_default();
    audited(&state, &caller, "access.grant", &path, format!("{who}: {}", level.as_str()), "ok").await;
    Ok(Json(json!({ "path": path, "subject": who, "level": level.as_str() })))
}

/// `POST /api/v1/access/revoke` `{path, user|group}`, for admins.
async fn revoke(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Json(body): Json<RuleBody>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::require(&state, &headers).await?;
    auth::require_admin(&caller)?;
    let path = crate::repos::normalize(&body.path)?;
    let subject = state.store.subject(body.user.as_deref(), body.group.as_deref()).await?;
    let who = body.user.map(|u| format!("user {u}")).or(body.group.map(|g| format!("group {g}"))).unwrap_or_default();
    if !state.store.revoke(&path, subject).await? {
        return Err(HttpError::not_found(format!("{who} has no rule on {path}")).into());
    }
    audited(&state, &caller, "access.revoke", &path, who.clone(), "ok").await;
    Ok(Json(json!({ "path": path, "subject": who, "revoked": true })))
}

/// `POST /api/v1/access/public` `{path, public}`, for admins.
async fn public(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Json(body): Json<RuleBody>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::require(&state, &headers).await?;
    auth::require_admin(&caller)?;
    let path = crate::repos::normalize(&body.path)?;
    let on = body.public.ok_or_else(|| HttpError::bad_request("public must be true or false"))?;
    state.store.set_public(&path, on).await?;
    audited(&state, &caller, "access.public", &path, if on { "on" } else { "off" }.into(), "ok").await;
    Ok(Json(json!({ "path": path, "public": on })))
}

#[derive(Deserialize)]
struct AuditQuery {
    path: Option<String>,
    user: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/audit[?path=P&user=U&limit=N]`, newest first, for admins.
async fn audit(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    auth::require_admin(&auth::require(&state, &headers).await?)?;
    let path = q.path.as_deref().map(crate::repos::normalize).transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let entries = state.store.list_audit(path.as_deref(), q.user.as_deref(), limit).await?;
    Ok(Json(json!({ "entries": entries })))
}

#[cfg(test)]
mod tests {
    /// The routes and methods of the API's routers, read from their source.
    fn served() -> std::collections::BTreeSet<(String, String)> {
        let mut out = std::collections::BTreeSet::new();
        for source in [include_str!("api.rs"), include_str!("review.rs"), include_str!("hooks.rs")] {
            for line in source.lines().map(str::trim).filter(|l| l.starts_with(".route(\"/api/")) {
                let path = line.split('"').nth(1).unwrap().to_string();
                let handlers = line.split_once(',').unwrap().1;
                for method in ["get", "post", "delete", "put", "patch"] {
                    if handlers.contains(&format!("{method}(")) {
                        out.insert((path.clone(), method.to_string()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_openapi_document_describes_every_route_and_nothing_else() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("the document is JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let mut documented = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((path.clone(), method.clone()));
            }
        }
        let served = served();
        assert!(served.len() > 25, "{served:?}");
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(undocumented.is_empty(), "routes missing from openapi.json: {undocumented:?}");
        assert!(unserved.is_empty(), "openapi.json describes what is not served: {unserved:?}");
    }
}
