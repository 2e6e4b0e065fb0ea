//! Checks and webhooks.
//!
//! - **Checks** (`/api/v1/mr/N/checks`): an external CI posts the state of
//!   a check (`pending`, `success`, `failure`, with a URL) of a request's
//!   head commit, with a token that may write to the request's path. A
//!   path may require checks by name (`/api/v1/settings`); a merge then
//!   waits until each is `success` on the current head.
//! - **Webhooks** (`/api/v1/webhooks?path=P`, maintainers of P): events at
//!   P or below it (`push`, `mr.opened`, `mr.updated`, `mr.merged`,
//!   `mr.closed`) are queued in the database as they happen ([`emit`]) and
//!   delivered by [`deliver_loop`] in every server process: JSON, signed
//!   with HMAC-SHA256 of the body under the hook's secret
//!   (`X-Tessera-Signature-256: sha256=<hex>`), retried with exponential
//!   backoff, five attempts in all. A hook whose host resolves to a
//!   loopback, private, link-local or otherwise internal address is not
//!   sent to unless `webhooks_allow_private` says so, and the connection
//!   goes to the very address checked (no second lookup to rebind).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get};
use axum::{Json, Router};
use hmac::Mac;
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_store::hooks::{backoff, Delivery};
use tessera_store::MergeRequest;

use crate::auth::{self, Caller, Need};
use crate::error::{ApiError, HttpError};
use crate::State;

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/api/v1/mr/{id}/checks", get(list_checks).post(post_check))
        .route("/api/v1/webhooks", get(list_hooks).post(add_hook))
        .route("/api/v1/webhooks/{id}", delete(delete_hook))
        .route("/api/v1/webhooks/{id}/deliveries", get(hook_deliveries))
        .with_state(state)
}

// ----- checks -----

/// Refuses a merge whose required checks are not all `success` on the
/// request's current head.
pub(crate) async fn checks_gate(state: &State, mr: &MergeRequest) -> Result<(), HttpError> {
    let (required, set_at) = state.store.required_checks(&mr.path).await?;
    if required.is_empty() {
        return Ok(());
    }
    let unmet = unmet(&required, &state.store.checks(mr.id, mr.head).await?);
    if unmet.is_empty() {
        return Ok(());
    }
    Err(HttpError::new(
        StatusCode::CONFLICT,
        format!(
            "merge request {} needs these checks, required at {set_at}, to succeed on {}: {}",
            mr.id,
            mr.head,
            unmet.join(", ")
        ),
    ))
}

/// The required checks that are not `success` among `checks`, with why.
fn unmet(required: &[String], checks: &[tessera_store::hooks::Check]) -> Vec<String> {
    required
        .iter()
        .filter_map(|name| match checks.iter().find(|c| &c.name == name) {
            Some(c) if c.state == "success" => None,
            Some(c) => Some(format!("{name} ({})", c.state)),
            None => Some(format!("{name} (not reported)")),
        })
        .collect()
}

#[derive(Deserialize)]
struct CheckBody {
    name: String,
    state: String,
    url: Option<String>,
    description: Option<String>,
    /// The head the CI ran on; refused if the request has moved since.
    head: Option<String>,
}

async fn post_check(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(body): Json<CheckBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = auth::require(&state, &headers).await?;
    let mr = auth::load_for(&state, &caller, id, Need::Write, "mr.check").await?;
    let current = mr.head.to_string();
    if let Some(head) = body.head.as_deref().filter(|h| *h != current) {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            format!("merge request {id} is at {} now, not {head}: run the check again", mr.head),
        )
        .into());
    }
    let check = state
        .store
        .set_check(
            id,
            mr.head,
            &body.name,
            &body.state,
            body.url.as_deref(),
            body.description.as_deref(),
            caller.name(),
        )
        .await?;
    auth::audited(&state, &caller, "mr.check", &mr.path, format!("!{id} {}: {}", check.name, check.state), "ok").await;
    Ok((StatusCode::CREATED, Json(json!(check))))
}

async fn list_checks(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::caller(&state, &headers).await?;
    let mr = auth::load_for(&state, &caller, id, Need::Read, "mr.show").await?;
    let (required, set_at) = state.store.required_checks(&mr.path).await?;
    let checks = state.store.checks(id, mr.head).await?;
    let passing = unmet(&required, &checks).is_empty();
    Ok(Json(json!({
        "head": mr.head.to_string(),
        "checks": checks,
        "required": required,
        "set_at": set_at,
        "passing": passing,
    })))
}

// ----- webhooks: configuration -----

#[derive(Deserialize)]
struct PathQuery {
    path: String,
}

#[derive(Deserialize)]
struct HookBody {
    url: String,
    secret: String,
    events: Vec<String>,
}

async fn add_hook(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<PathQuery>,
    Json(body): Json<HookBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = auth::require(&state, &headers).await?;
    let path = crate::repos::normalize(&q.path)?;
    auth::check(&state, &caller, &path, Need::Maintain).await?;
    // An address literal is checked now; names are checked at each delivery.
    if let Some(ip) =
        reqwest::Url::parse(&body.url).ok().and_then(|u| u.host_str()?.trim_matches(['[', ']']).parse().ok())
    {
        if internal(ip) && !state.config.webhooks_allow_private {
            return Err(HttpError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{ip} is an internal address; webhooks_allow_private allows it"),
            )
            .into());
        }
    }
    let hook = state.store.add_webhook(&path, &body.url, &body.secret, &body.events, caller.name()).await?;
    auth::audited(&state, &caller, "webhook.add", &path, format!("{} for {}", hook.url, hook.events.join(",")), "ok")
        .await;
    Ok((StatusCode::CREATED, Json(json!(hook))))
}

async fn list_hooks(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<PathQuery>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::require(&state, &headers).await?;
    let path = crate::repos::normalize(&q.path)?;
    auth::check(&state, &caller, &path, Need::Maintain).await?;
    Ok(Json(json!({ "path": path, "webhooks": state.store.webhooks(&path).await? })))
}

/// A webhook, for a caller who maintains its path.
async fn hook_for(state: &State, caller: &Caller, id: i64) -> Result<tessera_store::hooks::Webhook, HttpError> {
    let hook = state.store.webhook(id).await?.ok_or_else(|| HttpError::not_found(format!("no webhook {id}")))?;
    auth::check(state, caller, &hook.path, Need::Maintain).await?;
    Ok(hook)
}

async fn delete_hook(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let caller = auth::require(&state, &headers).await?;
    let hook = hook_for(&state, &caller, id).await?;
    state.store.delete_webhook(id).await?;
    auth::audited(&state, &caller, "webhook.delete", &hook.path, hook.url.clone(), "ok").await;
    Ok(StatusCode::NO_CONTENT)
}

async fn hook_deliveries(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::require(&state, &headers).await?;
    hook_for(&state, &caller, id).await?;
    Ok(Json(json!({ "deliveries": state.store.deliveries(id, 100).await? })))
}

// ----- webhooks: events and delivery -----

/// Queues `event` at `path` for the webhooks that want it, and wakes this
/// process's deliverer. A failure to queue is logged: the event itself
/// (a push, a merge) has happened and stands.
pub(crate) async fn emit(state: &State, path: &str, event: &str, mut data: Value) {
    if let Some(fields) = data.as_object_mut() {
        fields.insert("event".into(), json!(event));
        fields.insert("path".into(), json!(path));
        fields.insert("server".into(), json!(state.config.http_url()));
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        fields.insert("at".into(), json!(tessera_bridge::git::iso_date(at as i64)));
    }
    match state.store.enqueue_event(path, event, &data.to_string()).await {
        Ok(0) => {}
        Ok(_) => state.hooks_wake.notify_one(),
        Err(e) => tracing::error!("queueing webhook event {event} at {path}: {e}"),
    }
}

/// The JSON of a merge request in events: what the REST API shows of it.
pub(crate) fn mr_event(mr: &MergeRequest) -> Value {
    json!({ "merge_request": crate::wire::mr_json(mr) })
}

/// Whether `ip` is an address of this host or of a private network.
fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [o0, o1, ..] = a.octets();
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || o0 == 0
                // Shared address space (carrier-grade NAT), 100.64.0.0/10.
                || (o0 == 100 && (o1 & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let s0 = a.segments()[0];
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s0 & 0xfe00) == 0xfc00
                || (s0 & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped().is_some_and(|v4| internal(IpAddr::V4(v4)))
        }
    }
}

/// Sends one delivery: `Ok(status)` for a 2xx answer.
async fn send(state: &State, d: &Delivery) -> Result<u16, (Option<u16>, String)> {
    let url = reqwest::Url::parse(&d.hook.url).map_err(|e| (None, format!("bad URL: {e}")))?;
    let host = url.host_str().ok_or((None, "the URL has no host".to_string()))?.to_string();
    let port = url.port_or_known_default().ok_or((None, "the URL has no port".to_string()))?;
    let bare = host.trim_matches(['[', ']']).to_string();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare.as_str(), port))
        .await
        .map_err(|e| (None, format!("resolving {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err((None, format!("{host} has no address")));
    }
    if !state.config.webhooks_allow_private {
        if let Some(a) = addrs.iter().find(|a| internal(a.ip())) {
            return Err((None, format!("refused: {host} resolves to the internal address {}", a.ip())));
        }
    }
    tessera_store::storage::install_tls();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .resolve_to_addrs(&bare, &addrs)
        .build()
        .map_err(|e| (None, format!("building the client: {e}")))?;
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(d.hook.secret.as_bytes()).expect("HMAC takes any key");
    mac.update(d.payload.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let sent = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", "tessera-webhook")
        .header("X-Tessera-Event", &d.event)
        .header("X-Tessera-Delivery", d.id.to_string())
        .header("X-Tessera-Signature-256", format!("sha256={signature}"))
        .body(d.payload.clone())
        .send()
        .await
        .map_err(|e| (None, format!("sending: {e}")))?;
    let status = sent.status().as_u16();
    if sent.status().is_success() {
        Ok(status)
    } else {
        Err((Some(status), format!("HTTP {status}")))
    }
}

/// Delivers queued events until `stopped`: when woken by [`emit`], and
/// every second for retries and for events other processes queued.
pub(crate) async fn deliver_loop(state: Arc<State>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = state.hooks_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        loop {
            let claimed = match state.store.claim_delivery(60).await {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("taking a webhook delivery from the queue: {e}");
                    break;
                }
            };
            let outcome = send(&state, &claimed).await;
            let retry_in = backoff(claimed.attempt, state.config.webhook_retry_secs as i64);
            match &outcome {
                Ok(status) => tracing::info!(
                    "webhook {} ({}) got delivery {} of {}: HTTP {status}",
                    claimed.hook.id,
                    claimed.hook.url,
                    claimed.id,
                    claimed.event
                ),
                Err((_, why)) => tracing::warn!(
                    "webhook {} ({}), delivery {} of {}, attempt {} of {}: {why}",
                    claimed.hook.id,
                    claimed.hook.url,
                    claimed.id,
                    claimed.event,
                    claimed.attempt,
                    tessera_store::hooks::MAX_ATTEMPTS
                ),
            }
            if let Err(e) = state.store.finish_delivery(claimed.id, claimed.attempt, outcome, retry_in).await {
                tracing::warn!("recording webhook delivery {}: {e}", claimed.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1"] {
            assert!(internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "::"] {
            assert!(internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "140.82.112.3", "2606:4700::1111", "100.128.0.1"] {
            assert!(!internal(ip.parse().unwrap()), "{ip}");
        }
    }
}
