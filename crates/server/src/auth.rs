//! Who is calling, and whether they may: every permission check of every
//! transport (smart HTTP, REST, later the web UI, LFS and SSH) goes through
//! [`check`], against the cached [`Policy`].
//!
//! Tokens are sent as the HTTP Basic password (the user name is ignored).
//! Denials never tell what exists beyond the caller's read access: a path
//! the caller cannot read is "not found" (or, for anonymous callers, a
//! request to authenticate, so that git asks for credentials).

use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine;
use tessera_store::access::{Level, Policy, Scope, TokenCheck, User};

use crate::error::HttpError;
use crate::State;

/// The caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: Option<User>,
    /// What the token allows, whatever the user may do.
    pub scope: Scope,
}

impl Caller {
    pub fn anonymous() -> Caller {
        Caller { user: None, scope: Scope::Read }
    }

    /// The name writes are recorded under.
    pub fn name(&self) -> &str {
        self.user.as_ref().map_or("anonymous", |u| u.name.as_str())
    }
}

/// What an operation needs at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Clone or fetch: read on the path and everything below it.
    Read,
    Write,
    Maintain,
}

/// The password of a Basic `Authorization` header, if any.
fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_string())
}

fn unauthorized(message: impl Into<String>) -> HttpError {
    HttpError::new(StatusCode::UNAUTHORIZED, message)
}

/// The caller named by the request's credentials; anonymous without any.
/// Bad credentials are refused, never treated as anonymous.
pub async fn caller(state: &State, headers: &HeaderMap) -> Result<Caller, HttpError> {
    let Some(secret) = basic_password(headers) else { return Ok(Caller::anonymous()) };
    caller_for_secret(state, &secret).await
}

/// The caller a token secret names (HTTP password, or other transports).
pub async fn caller_for_secret(state: &State, secret: &str) -> Result<Caller, HttpError> {
    if let Some(signed) = secret.strip_prefix(SIGNED_PREFIX) {
        return signed_caller(state, signed).await;
    }
    match state.store.check_token(secret).await? {
        TokenCheck::Valid(token, user) => Ok(Caller { user: Some(user), scope: token.scope }),
        TokenCheck::Expired(token) => Err(unauthorized(format!(
            "token {}/{} expired at {} (unix time); create a new one with `tessera token create`",
            token.user,
            token.name,
            token.expires_at.unwrap_or_default()
        ))),
        TokenCheck::Disabled(token) => Err(unauthorized(format!("user {} is disabled", token.user))),
        TokenCheck::Invalid => Err(unauthorized("invalid or revoked token")),
    }
}

/// A signed-in caller; anonymous ones are asked to authenticate.
pub async fn require(state: &State, headers: &HeaderMap) -> Result<Caller, HttpError> {
    let caller = caller(state, headers).await?;
    if caller.user.is_none() {
        return Err(unauthorized("authentication required: use a tessera token as the password"));
    }
    Ok(caller)
}

/// The rules, reloaded only when they changed (one small query per check,
/// so that every process sharing a database sees a change at once).
pub async fn policy(state: &State) -> Result<Arc<Policy>, HttpError> {
    let version = state.store.access_version().await?;
    if let Some(cached) = state.policy.read().expect("policy lock").as_ref() {
        if cached.version == version {
            return Ok(cached.clone());
        }
    }
    let loaded = Arc::new(state.store.load_policy(!state.config.require_token_for_reads).await?);
    *state.policy.write().expect("policy lock") = Some(loaded.clone());
    Ok(loaded)
}

/// Checks that `caller` may do what `need` says at `path` (a normalized
/// monorepo path); the one place every transport asks.
pub async fn check(state: &State, caller: &Caller, path: &str, need: Need) -> Result<(), HttpError> {
    let policy = policy(state).await?;
    decide(&policy, caller, path, need)
}

/// [`check`] against a policy already in hand.
pub fn decide(policy: &Policy, caller: &Caller, path: &str, need: Need) -> Result<(), HttpError> {
    let user = caller.user.as_ref();
    let hidden = || match user {
        None => unauthorized(format!("authentication required to access {path}")),
        Some(_) => HttpError::not_found(format!("repository {path} not found")),
    };
    let Some(level) = policy.level(user, path) else { return Err(hidden()) };
    let wanted = match need {
        Need::Read => {
            if !policy.can_read_all_below(user, path) {
                if user.is_none() {
                    // Signing in may show the rest (git sends credentials
                    // only when asked).
                    return Err(unauthorized(format!("authentication required to read all of {path}")));
                }
                // The caller can see the path but not all of it.
                return Err(HttpError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "{path} holds directories you cannot read; clone one of its directories you can read instead"
                    ),
                ));
            }
            return Ok(());
        }
        Need::Write => Level::Write,
        Need::Maintain => Level::Maintain,
    };
    if user.is_none() {
        return Err(unauthorized(format!("authentication required: {} access to {path}", wanted.as_str())));
    }
    if caller.scope < Scope::Write {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            format!("this token has read scope; {} access to {path} needs a token with write scope", wanted.as_str()),
        ));
    }
    if level < wanted {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            format!("{} access to {path} is required (you have {})", wanted.as_str(), level.as_str()),
        ));
    }
    Ok(())
}

/// Admin operations (users, rules, the audit log): an admin user with an
/// admin-scoped token.
pub fn require_admin(caller: &Caller) -> Result<(), HttpError> {
    match &caller.user {
        None => Err(unauthorized("authentication required")),
        Some(u) if !u.is_admin => Err(HttpError::new(StatusCode::FORBIDDEN, "this needs an admin user")),
        Some(_) if caller.scope != Scope::Admin => {
            Err(HttpError::new(StatusCode::FORBIDDEN, "this needs a token with admin scope"))
        }
        Some(_) => Ok(()),
    }
}

/// Short-lived tokens the server hands out itself (`git-lfs-authenticate`
/// over SSH): `tsl_<user id>.<expiry>.<scope>.<HMAC-SHA256>`, signed with a
/// secret all processes on the database share. Nothing is stored per
/// token; disabling the user ends them at once, and they expire.
const SIGNED_PREFIX: &str = "tsl_";
const SIGNING_KEY: &str = "signed-tokens";

type Mac = hmac::Hmac<sha2::Sha256>;

async fn signing_mac(state: &State) -> Result<Mac, HttpError> {
    let key = state.store.server_secret(SIGNING_KEY).await?;
    <Mac as hmac::Mac>::new_from_slice(key.as_bytes()).map_err(|e| HttpError::internal("signing a token", e))
}

/// A token for `user` with `scope`, valid for `ttl_secs`.
pub async fn signed_token(
    state: &State,
    user: &tessera_store::User,
    scope: Scope,
    ttl_secs: i64,
) -> Result<String, HttpError> {
    use hmac::Mac as _;
    let expires = tessera_now() + ttl_secs;
    let payload = format!("{}.{expires}.{}", user.id, scope.as_str());
    let mut mac = signing_mac(state).await?;
    mac.update(payload.as_bytes());
    Ok(format!("{SIGNED_PREFIX}{payload}.{}", hex::encode(mac.finalize().into_bytes())))
}

async fn signed_caller(state: &State, signed: &str) -> Result<Caller, HttpError> {
    use hmac::Mac as _;
    let invalid = || unauthorized("invalid or expired token");
    let (payload, tag) = signed.rsplit_once('.').ok_or_else(invalid)?;
    let tag = hex::decode(tag).map_err(|_| invalid())?;
    let mut mac = signing_mac(state).await?;
    mac.update(payload.as_bytes());
    mac.verify_slice(&tag).map_err(|_| invalid())?;
    let mut parts = payload.split('.');
    let (Some(user), Some(expires), Some(scope), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let user: i64 = user.parse().map_err(|_| invalid())?;
    let expires: i64 = expires.parse().map_err(|_| invalid())?;
    let scope = Scope::parse(scope).ok_or_else(invalid)?;
    if expires <= tessera_now() {
        return Err(invalid());
    }
    match state.store.user_by_id(user).await? {
        Some(user) if !user.disabled => Ok(Caller { user: Some(user), scope }),
        Some(user) => Err(unauthorized(format!("user {} is disabled", user.name))),
        None => Err(invalid()),
    }
}

fn tessera_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The form token of a web session: an HMAC of the session cookie, so a
/// page from another site cannot know it.
pub async fn csrf_token(state: &State, session: &str) -> Result<String, HttpError> {
    use hmac::Mac as _;
    let mut mac = signing_mac(state).await?;
    mac.update(b"csrf\0");
    mac.update(session.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Signs in to the web UI with a password (`tessera user passwd`) or one of
/// the user's tokens; returns the user and what the session may do (a
/// token's scope; write for a password). Every failure reads the same.
pub async fn sign_in(state: &State, name: &str, secret: &str) -> Result<(tessera_store::User, Scope), HttpError> {
    let refused = || unauthorized("wrong user name, password or token");
    if name.is_empty() || secret.is_empty() || secret.len() > 1024 {
        return Err(refused());
    }
    if secret.starts_with("tsr_") {
        return match state.store.check_token(secret).await? {
            TokenCheck::Valid(token, user) if user.name == name => Ok((user, token.scope)),
            _ => Err(refused()),
        };
    }
    let user = state.store.user(name).await?.filter(|u| !u.disabled).ok_or_else(refused)?;
    let phc = state.store.password_hash(name).await?.ok_or_else(refused)?;
    let secret = secret.to_string();
    let ok = tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        PasswordHash::new(&phc)
            .is_ok_and(|hash| argon2::Argon2::default().verify_password(secret.as_bytes(), &hash).is_ok())
    })
    .await
    .map_err(|e| HttpError::internal("checking a password", e))?;
    if ok {
        Ok((user, Scope::Write))
    } else {
        Err(refused())
    }
}

/// The merge request `id`, if `caller` may do `need` on its path; one the
/// caller cannot read is "not found", like one that does not exist.
pub(crate) async fn load_for(
    state: &State,
    caller: &Caller,
    id: i64,
    need: Need,
    action: &str,
) -> Result<tessera_store::MergeRequest, HttpError> {
    let policy = policy(state).await?;
    let hidden = || match caller.user {
        None => HttpError::new(StatusCode::UNAUTHORIZED, format!("authentication required for merge request {id}")),
        Some(_) => HttpError::not_found(format!("no merge request {id}")),
    };
    let mr = state.store.mr(id).await?.ok_or_else(hidden)?;
    if policy.level(caller.user.as_ref(), &mr.path).is_none() {
        return Err(hidden());
    }
    if let Err(denied) = decide(&policy, caller, &mr.path, need) {
        if need != Need::Read {
            audited(state, caller, action, &mr.path, format!("!{id}: {}", denied.message), "denied").await;
        }
        return Err(denied);
    }
    Ok(mr)
}

/// Records `action` on `path` in the audit log; a failure to record is
/// logged, never shown to the caller.
pub(crate) async fn audited(state: &State, caller: &Caller, action: &str, path: &str, detail: String, outcome: &str) {
    if let Err(e) = state.store.audit(caller.name(), action, Some(path), &detail, outcome).await {
        tracing::error!("recording {action} on {path} in the audit log: {e}");
    }
}
