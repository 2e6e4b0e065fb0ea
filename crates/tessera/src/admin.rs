//! Administration from the command line: users, tokens, groups, access
//! rules and the audit log, on the server's database directly. Every
//! change is recorded in the audit log as the local operator
//! (`local:<os user>`).

use std::io::{BufRead, Read};

use anyhow::{bail, Context};
use clap::Subcommand;
use tessera_store::access::{Level, Scope};
use tessera_store::Store;

#[derive(Subcommand)]
pub enum UserAction {
    /// Add a user.
    Add {
        name: String,
        /// May do everything, including managing users and rules.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        email: Option<String>,
    },
    /// List users.
    List,
    /// Disable a user: their tokens stop working at once.
    Disable { name: String },
    /// Set a user's password for the web UI, read from the first line of
    /// standard input; stored as an argon2id hash.
    Passwd { name: String },
    /// A user's SSH public keys, for git over SSH.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
}

#[derive(Subcommand)]
pub enum KeyAction {
    /// Register a public key (`FILE.pub`, or `-` for standard input).
    Add {
        name: String,
        file: std::path::PathBuf,
        /// What to call the key [default: its comment]
        #[arg(long)]
        title: Option<String>,
    },
    /// List keys with their fingerprints, of one user or of all.
    List { name: Option<String> },
    /// Remove one of a user's keys, by id, fingerprint or title.
    Remove { name: String, key: String },
}

#[derive(Subcommand)]
pub enum TokenAction {
    /// Create a token for a user and print its secret (shown only once,
    /// as the last word of the last line).
    Create {
        #[arg(long)]
        user: String,
        /// Unique among the user's tokens.
        #[arg(long, default_value = "default")]
        name: String,
        /// read (clone and fetch), write (also push and open merge
        /// requests), admin (also manage users and rules, for admins).
        #[arg(long, default_value = "write")]
        scope: String,
        /// Lifetime such as 90d, 12h or 30m; default: never expires.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke one token, by id or as USER/NAME.
    Revoke { reference: String },
}

#[derive(Subcommand)]
pub enum GroupAction {
    /// Add a group.
    Add { name: String },
    /// Add or remove members.
    Member {
        #[command(subcommand)]
        action: MemberAction,
    },
}

#[derive(Subcommand)]
pub enum MemberAction {
    Add { group: String, user: String },
    Remove { group: String, user: String },
}

#[derive(Subcommand)]
pub enum AccessAction {
    /// Give a user or group read, write or maintain on a path and below.
    Grant {
        path: String,
        level: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        group: Option<String>,
    },
    /// Remove a user's or group's rule on a path.
    Revoke {
        path: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        group: Option<String>,
    },
    /// List the rules at and below a path, and the public settings.
    List { path: Option<String> },
    /// Whether anonymous callers may read a path and below (on|off).
    Public { path: String, state: String },
}

/// The name audit entries of CLI commands carry.
pub fn operator() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| {
        // No login name in the environment (services, containers): the uid.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next());
        format!("uid {}", uid.unwrap_or("unknown"))
    });
    format!("local:{user}")
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc(seconds: i64) -> String {
    tessera_data::history::iso_date(seconds)
}

/// A path as rules store it: `/`, or `/a/b` without a trailing slash.
pub fn rule_path(raw: &str) -> anyhow::Result<String> {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    let path = format!("/{trimmed}");
    if path.split('/').skip(1).any(|s| s.is_empty() || s == "." || s == "..") || path.len() > 1024 {
        bail!("{raw:?} is not a monorepo path such as /projects/a");
    }
    Ok(path)
}

/// `90d`, `12h`, `30m` as seconds.
pub fn parse_lifetime(text: &str) -> anyhow::Result<i64> {
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = digits.parse().with_context(|| format!("lifetime {text:?}: use a number and d, h or m, e.g. 90d"))?;
    let seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        _ => bail!("lifetime {text:?}: use a number and d, h or m, e.g. 90d"),
    };
    if n <= 0 || n > 36_500 * 86_400 / seconds {
        bail!("lifetime {text:?} is out of range");
    }
    Ok(n * seconds)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

async fn audited(store: &Store, action: &str, path: Option<&str>, detail: &str) -> anyhow::Result<()> {
    store.audit(&operator(), action, path, detail, "ok").await.context("recording the change in the audit log")
}

pub async fn user(store: &Store, action: UserAction) -> anyhow::Result<()> {
    match action {
        UserAction::Add { name, admin, email } => {
            let user = store.create_user(&name, email.as_deref(), admin).await?;
            audited(store, "user.add", None, &format!("{}{}", user.name, if admin { " (admin)" } else { "" })).await?;
            println!("added user {}{}", user.name, if admin { " (admin)" } else { "" });
        }
        UserAction::List => {
            for u in store.list_users().await? {
                let state = if u.disabled { "disabled" } else { "active" };
                let role = if u.is_admin { "admin" } else { "user" };
                println!("{}\t{}\t{role}\t{state}\t{}", u.id, u.name, u.email.unwrap_or_default());
            }
        }
        UserAction::Disable { name } => {
            store.disable_user(&name).await?;
            audited(store, "user.disable", None, &name).await?;
            println!("disabled user {name}");
        }
        UserAction::Passwd { name } => {
            store.require_user(&name).await?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
            let password = line.trim_end_matches(['\n', '\r']);
            if password.chars().count() < 8 {
                bail!("the password must have at least 8 characters");
            }
            let phc = hash_password(password)?;
            store.set_password_hash(&name, &phc).await?;
            audited(store, "user.passwd", None, &name).await?;
            println!("password set for {name}");
        }
        UserAction::Key { action } => key(store, action).await?,
    }
    Ok(())
}

async fn key(store: &Store, action: KeyAction) -> anyhow::Result<()> {
    match action {
        KeyAction::Add { name, file, title } => {
            let user = store.require_user(&name).await?;
            let text = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin().lock().take(64 << 10), &mut text)
                    .context("reading the key from standard input")?;
                text
            } else {
                let meta = std::fs::metadata(&file).with_context(|| format!("reading {}", file.display()))?;
                if meta.len() > 64 << 10 {
                    bail!("{} is larger than a public key file can be", file.display());
                }
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let parsed =
                tessera_server::ssh::parse_public_key(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let title = title.unwrap_or_else(|| {
                if parsed.comment.is_empty() {
                    parsed.fingerprint.clone()
                } else {
                    parsed.comment.clone()
                }
            });
            let key = store.add_ssh_key(&user, &title, &parsed.fingerprint, &parsed.openssh).await?;
            audited(store, "key.add", None, &format!("{} {} ({})", user.name, key.fingerprint, key.title)).await?;
            println!("added key {} ({}) for {} (id {})", key.fingerprint, key.title, user.name, key.id);
        }
        KeyAction::List { name } => {
            if let Some(n) = &name {
                store.require_user(n).await?;
            }
            for k in store.list_ssh_keys(name.as_deref()).await? {
                let used = k.last_used_at.map(utc).unwrap_or_else(|| "never used".into());
                let algorithm = k.public_key.split(' ').next().unwrap_or_default();
                println!("{}\t{}\t{}\t{algorithm}\t{}\t{used}", k.id, k.user, k.fingerprint, k.title);
            }
        }
        KeyAction::Remove { name, key } => {
            store.require_user(&name).await?;
            let removed = store.remove_ssh_key(&name, &key).await?;
            audited(store, "key.remove", None, &format!("{} {} ({})", name, removed.fingerprint, removed.title))
                .await?;
            println!("removed key {} ({}) of {name}", removed.fingerprint, removed.title);
        }
    }
    Ok(())
}

/// An argon2id hash with a random salt, as a PHC string.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("encoding the salt: {e}"))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

pub async fn token(store: &Store, action: TokenAction) -> anyhow::Result<()> {
    match action {
        TokenAction::Create { user, name, scope, expires } => {
            let user = store.require_user(&user).await?;
            if user.disabled {
                bail!("user {} is disabled", user.name);
            }
            let scope = Scope::parse(&scope).with_context(|| format!("scope {scope:?}: use read, write or admin"))?;
            if scope == Scope::Admin && !user.is_admin {
                bail!("only admins get tokens with admin scope; {} is not an admin", user.name);
            }
            let expires_at = expires.as_deref().map(parse_lifetime).transpose()?.map(|s| now() + s);
            let (token, secret) = store.create_token(&user, &name, scope, expires_at).await?;
            let detail = format!("{}/{} ({})", token.user, token.name, scope.as_str());
            audited(store, "token.create", None, &detail).await?;
            let expiry = match expires_at {
                Some(at) => format!("expires {}", utc(at)),
                None => "never expires".into(),
            };
            println!("token {}/{} (id {}, scope {}, {expiry})", token.user, token.name, token.id, scope.as_str());
            println!("secret: {secret}");
        }
        TokenAction::List { user } => {
            if let Some(u) = &user {
                store.require_user(u).await?;
            }
            let now = now();
            for t in store.list_tokens(user.as_deref()).await? {
                let state = match (t.revoked_at, t.expires_at) {
                    (Some(_), _) => "revoked",
                    (None, Some(at)) if at <= now => "expired",
                    _ => "active",
                };
                let expires = t.expires_at.map(utc).unwrap_or_else(|| "never".into());
                println!(
                    "{}\t{}/{}\t{}\t{}\t{expires}\t{state}",
                    t.id,
                    t.user,
                    t.name,
                    t.scope.as_str(),
                    utc(t.created_at)
                );
            }
        }
        TokenAction::Revoke { reference } => {
            let token = store.revoke_token(&reference).await?;
            audited(store, "token.revoke", None, &format!("{}/{} (id {})", token.user, token.name, token.id)).await?;
            println!("revoked token {}/{} (id {})", token.user, token.name, token.id);
        }
    }
    Ok(())
}

pub async fn group(store: &Store, action: GroupAction) -> anyhow::Result<()> {
    match action {
        GroupAction::Add { name } => {
            store.create_group(&name).await?;
            audited(store, "group.add", None, &name).await?;
            println!("added group {name}");
        }
        GroupAction::Member { action: MemberAction::Add { group, user } } => {
            store.add_group_member(&group, &user).await?;
            audited(store, "group.member.add", None, &format!("{user} to {group}")).await?;
            println!("{user} is a member of {group}");
        }
        GroupAction::Member { action: MemberAction::Remove { group, user } } => {
            if !store.remove_group_member(&group, &user).await? {
                bail!("{user} is not a member of {group}");
            }
            audited(store, "group.member.remove", None, &format!("{user} from {group}")).await?;
            println!("{user} is no longer a member of {group}");
        }
    }
    Ok(())
}

pub async fn access(store: &Store, action: AccessAction, anonymous_reads: bool) -> anyhow::Result<()> {
    match action {
        AccessAction::Grant { path, level, user, group } => {
            let path = rule_path(&path)?;
            let level =
                Level::parse(&level).with_context(|| format!("level {level:?}: use read, write or maintain"))?;
            let subject = store.subject(user.as_deref(), group.as_deref()).await?;
            store.grant(&path, subject, level).await?;
            let who = user.map(|u| format!("user {u}")).or(group.map(|g| format!("group {g}"))).unwrap_or_default();
            audited(store, "access.grant", Some(&path), &format!("{who}: {}", level.as_str())).await?;
            println!("{who} has {} on {path}", level.as_str());
        }
        AccessAction::Revoke { path, user, group } => {
            let path = rule_path(&path)?;
            let subject = store.subject(user.as_deref(), group.as_deref()).await?;
            let who = user.map(|u| format!("user {u}")).or(group.map(|g| format!("group {g}"))).unwrap_or_default();
            if !store.revoke(&path, subject).await? {
                bail!("{who} has no rule on {path}");
            }
            audited(store, "access.revoke", Some(&path), &who).await?;
            println!("removed the rule of {who} on {path}");
        }
        AccessAction::List { path } => {
            let path = path.as_deref().map(rule_path).transpose()?;
            let policy = store.load_policy(anonymous_reads).await?;
            for rule in policy.rules(path.as_deref()) {
                println!("{}\t{}\t{}", rule.path, rule.subject_name, rule.level.as_str());
            }
            for (p, public) in policy.public_settings() {
                println!("{p}\tanonymous\t{}", if public { "read" } else { "none" });
            }
        }
        AccessAction::Public { path, state } => {
            let path = rule_path(&path)?;
            let public = match state.as_str() {
                "on" => true,
                "off" => false,
                other => bail!("{other:?}: use on or off"),
            };
            store.set_public(&path, public).await?;
            audited(store, "access.public", Some(&path), &state).await?;
            println!("anonymous reads of {path} are {state}");
        }
    }
    Ok(())
}

pub async fn audit(store: &Store, path: Option<String>, user: Option<String>, limit: i64) -> anyhow::Result<()> {
    let path = path.as_deref().map(rule_path).transpose()?;
    for e in store.list_audit(path.as_deref(), user.as_deref(), limit).await? {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            utc(e.at),
            e.actor,
            e.action,
            e.path.as_deref().unwrap_or("-"),
            e.outcome,
            e.detail
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_and_paths_parse_strictly() {
        assert_eq!(parse_lifetime("90d").unwrap(), 90 * 86_400);
        assert_eq!(parse_lifetime("12h").unwrap(), 12 * 3_600);
        assert!(parse_lifetime("0d").is_err());
        assert!(parse_lifetime("d").is_err());
        assert!(parse_lifetime("5y").is_err());
        assert!(parse_lifetime("99999999999d").is_err());
        assert_eq!(rule_path("projects/a/").unwrap(), "/projects/a");
        assert_eq!(rule_path("/").unwrap(), "/");
        assert!(rule_path("/a/../b").is_err());
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_159_019), "2026-12-01T21:03:39Z");
    }
}

#[derive(Subcommand)]
pub enum StorageAction {
    /// Which backend holds pack files and LFS objects, and how much.
    Show,
    /// Copies every pack file and LFS object into an S3 bucket, while the
    /// server goes on serving from the current backend. Resumable: run it
    /// again after an interruption, and what is there already is skipped.
    /// Then set `storage` to the bucket and restart.
    Migrate {
        /// The bucket: `s3://bucket[/prefix]`.
        #[arg(long)]
        to: String,
        /// An S3-compatible service's URL; default: the configured s3_endpoint, else AWS.
        #[arg(long)]
        s3_endpoint: Option<String>,
        #[arg(long)]
        s3_region: Option<String>,
        /// Allow an http:// endpoint.
        #[arg(long)]
        s3_allow_http: bool,
        /// Copy at most this many objects in this run (to spread the load).
        #[arg(long)]
        limit: Option<u64>,
    },
}

pub async fn storage(config: &tessera_server::Config, store: &Store, action: StorageAction) -> anyhow::Result<()> {
    match action {
        StorageAction::Show => {
            let (packs, pack_bytes, objects, object_bytes) = store.storage_totals().await?;
            let kind = match &config.storage {
                tessera_store::Storage::S3(s3) => s3.url(),
                other => other.kind().to_string(),
            };
            println!("storage: {kind}");
            println!("packs: {packs} ({pack_bytes} bytes)");
            println!("lfs objects: {objects} ({object_bytes} bytes)");
        }
        StorageAction::Migrate { to, s3_endpoint, s3_region, s3_allow_http, limit } => {
            let configured = match &config.storage {
                tessera_store::Storage::S3(s3) => s3.options.clone(),
                _ => Default::default(),
            };
            let options = tessera_store::S3Options {
                endpoint: s3_endpoint.or(configured.endpoint),
                region: s3_region.or(configured.region),
                allow_http: s3_allow_http || configured.allow_http,
            };
            let target = tessera_store::S3Config::parse(&to, options)?;
            if config.storage == tessera_store::Storage::S3(target.clone()) {
                bail!("storage is {} already", target.url());
            }
            let bucket = tessera_store::Bucket::open(&target)?;
            let mut each = |name: &str, size: u64| println!("copied {name} ({size} bytes)");
            let report = store.copy_to_bucket(&bucket, limit, &mut each).await?;
            audited(
                store,
                "storage.migrate",
                None,
                &format!(
                    "to {}: {} packs, {} LFS objects, {} bytes",
                    target.url(),
                    report.packs_copied,
                    report.lfs_copied,
                    report.bytes
                ),
            )
            .await?;
            println!(
                "{} pack(s) and {} LFS object(s) copied ({} bytes); {} already in {}",
                report.packs_copied,
                report.lfs_copied,
                report.bytes,
                report.already_there,
                target.url()
            );
            if report.stopped_early {
                println!("stopped at --limit: run the same command again to go on");
            } else {
                println!(
                    "every pack and LFS object is in {}: set storage = {:?} (and its s3_* options) and restart",
                    target.url(),
                    target.url()
                );
            }
        }
    }
    Ok(())
}
