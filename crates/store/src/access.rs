//! Who may do what where: users, groups, tokens, rules on paths, public
//! paths, and the audit log. [`Policy`] is the rules loaded into memory and
//! answers every permission question, for every transport, in one place.

use std::collections::HashMap;

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{now, opt_text, text, Error, Store};

/// A person or automation that signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: i64,
}

/// What a rule grants on a path and everything below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Clone and fetch.
    Read,
    /// Push to import repositories, open merge requests on directories.
    Write,
    /// Merge, close, convert, push tags, configure the path.
    Maintain,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::Write => "write",
            Level::Maintain => "maintain",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "read" => Level::Read,
            "write" => Level::Write,
            "maintain" => Level::Maintain,
            _ => return None,
        })
    }
}

/// Who a rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    User(i64),
    Group(i64),
}

impl Subject {
    fn key(self) -> String {
        match self {
            Subject::User(id) => format!("user:{id}"),
            Subject::Group(id) => format!("group:{id}"),
        }
    }

    fn parse(key: &str) -> Option<Subject> {
        let (kind, id) = key.split_once(':')?;
        let id = id.parse().ok()?;
        match kind {
            "user" => Some(Subject::User(id)),
            "group" => Some(Subject::Group(id)),
            _ => None,
        }
    }
}

/// One stored rule, with its subject's name for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: String,
    pub subject: Subject,
    pub subject_name: String,
    pub level: Level,
}

/// What a token may be used for, whatever its user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "read" => Scope::Read,
            "write" => Scope::Write,
            "admin" => Scope::Admin,
            _ => return None,
        })
    }
}

/// A token's stored description (never its secret).
#[derive(Debug, Clone)]
pub struct Token {
    pub id: i64,
    pub user_id: i64,
    pub user: String,
    pub name: String,
    pub scope: Scope,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// What a presented secret turned out to be.
#[derive(Debug, Clone)]
pub enum TokenCheck {
    Valid(Token, User),
    /// Known, but past its expiry.
    Expired(Token),
    /// Known, but its user is disabled.
    Disabled(Token),
    /// Unknown or revoked.
    Invalid,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub path: Option<String>,
    pub detail: String,
    pub outcome: String,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Users, groups and tokens are named with letters, digits, `-`, `_` and
/// `.`, starting with a letter or digit: they appear in paths, URLs and
/// `USER/NAME` token references.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(crate) const USER_COLUMNS: &str = "id, name, email, is_admin, disabled_at, created_at";

pub(crate) fn user_from_row(row: &sqlx::any::AnyRow) -> Result<User, Error> {
    let email = opt_text(row, 2)?;
    let admin: i64 = row.try_get(3)?;
    let disabled: Option<i64> = row.try_get(4)?;
    Ok(User {
        id: row.try_get(0)?,
        name: text(row, 1)?,
        email,
        is_admin: admin != 0,
        disabled: disabled.is_some(),
        created_at: row.try_get(5)?,
    })
}

const TOKEN_COLUMNS: &str =
    "t.id, t.user_id, u.name, t.name, t.scope, t.created_at, t.expires_at, t.revoked_at FROM tokens t JOIN users u ON u.id = t.user_id";

fn token_from_row(row: &sqlx::any::AnyRow) -> Result<Token, Error> {
    let scope: String = row.try_get(4)?;
    Ok(Token {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        user: text(row, 2)?,
        name: text(row, 3)?,
        scope: Scope::parse(&scope).ok_or_else(|| Error::Corrupt(format!("token scope {scope:?}")))?,
        created_at: row.try_get(5)?,
        expires_at: row.try_get(6)?,
        revoked_at: row.try_get(7)?,
    })
}

impl Store {
    // ----- users -----

    pub async fn create_user(&self, name: &str, email: Option<&str>, admin: bool) -> Result<User, Error> {
        if !valid_name(name) {
            return Err(Error::Invalid(format!(
                "user name {name:?}: use letters, digits, '-', '_' and '.', starting with a letter or digit"
            )));
        }
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let id = self.insert_user(&mut tx, name, email, admin).await?;
        self.bump_access(&mut tx).await?;
        tx.commit().await?;
        Ok(User {
            id,
            name: name.to_string(),
            email: email.map(str::to_string),
            is_admin: admin,
            disabled: false,
            created_at: now(),
        })
    }

    async fn insert_user(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        name: &str,
        email: Option<&str>,
        admin: bool,
    ) -> Result<i64, Error> {
        let exists: i64 = sqlx::query(&self.sql("SELECT COUNT(*) FROM users WHERE name = ?"))
            .bind(name)
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
        if exists > 0 {
            return Err(Error::Exists(format!("user {name}")));
        }
        self.insert_id(
            &mut **tx,
            "INSERT INTO users (name, email, is_admin, created_at) VALUES (?, ?, ?, ?)",
            vec![name.into(), email.map(str::to_string).into(), i64::from(admin).into(), now().into()],
        )
        .await
    }

    pub async fn user(&self, name: &str) -> Result<Option<User>, Error> {
        let sql = self.sql(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?"));
        let row = sqlx::query(&sql).bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The user named `name`, or a clear error.
    pub async fn require_user(&self, name: &str) -> Result<User, Error> {
        self.user(name).await?.ok_or_else(|| Error::NotFound(format!("no user {name:?}")))
    }

    pub async fn list_users(&self) -> Result<Vec<User>, Error> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Disables a user: their tokens and keys stop working at once.
    pub async fn disable_user(&self, name: &str) -> Result<(), Error> {
        let user = self.require_user(name).await?;
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(&self.sql("UPDATE users SET disabled_at = ? WHERE id = ? AND disabled_at IS NULL"))
            .bind(now())
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        self.bump_access(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a password hash (PHC string) computed by the caller.
    pub async fn set_password_hash(&self, name: &str, phc: &str) -> Result<(), Error> {
        let user = self.require_user(name).await?;
        let _guard = self.write_guard().await;
        sqlx::query(&self.sql("UPDATE users SET password_hash = ? WHERE id = ?"))
            .bind(phc)
            .bind(user.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn password_hash(&self, name: &str) -> Result<Option<String>, Error> {
        let sql = self.sql("SELECT password_hash FROM users WHERE name = ? AND disabled_at IS NULL");
        let row = sqlx::query(&sql).bind(name).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| opt_text(&r, 0)).transpose()?.flatten())
    }

    // ----- groups -----

    pub async fn create_group(&self, name: &str) -> Result<i64, Error> {
        if !valid_name(name) {
            return Err(Error::Invalid(format!("group name {name:?}")));
        }
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let exists: i64 = sqlx::query(&self.sql("SELECT COUNT(*) FROM user_groups WHERE name = ?"))
            .bind(name)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if exists > 0 {
            return Err(Error::Exists(format!("group {name}")));
        }
        let id = self
            .insert_id(
                &mut *tx,
                "INSERT INTO user_groups (name, created_at) VALUES (?, ?)",
                vec![name.into(), now().into()],
            )
            .await?;
        self.bump_access(&mut tx).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn group_id(&self, name: &str) -> Result<i64, Error> {
        let sql = self.sql("SELECT id FROM user_groups WHERE name = ?");
        let row = sqlx::query(&sql).bind(name).fetch_optional(&self.pool).await?;
        match row {
            Some(r) => Ok(r.try_get(0)?),
            None => Err(Error::NotFound(format!("no group {name:?}"))),
        }
    }

    pub async fn add_group_member(&self, group: &str, user: &str) -> Result<(), Error> {
        let group_id = self.group_id(group).await?;
        let user = self.require_user(user).await?;
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let sql = self.insert_ignore("group_members (group_id, user_id)", 2, 1);
        sqlx::query(&sql).bind(group_id).bind(user.id).execute(&mut *tx).await?;
        self.bump_access(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn remove_group_member(&self, group: &str, user: &str) -> Result<bool, Error> {
        let group_id = self.group_id(group).await?;
        let user = self.require_user(user).await?;
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(&self.sql("DELETE FROM group_members WHERE group_id = ? AND user_id = ?"))
            .bind(group_id)
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        self.bump_access(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    // ----- rules -----

    /// Resolves `user:NAME` / `group:NAME` style references.
    pub async fn subject(&self, user: Option<&str>, group: Option<&str>) -> Result<Subject, Error> {
        match (user, group) {
            (Some(u), None) => Ok(Subject::User(self.require_user(u).await?.id)),
            (None, Some(g)) => Ok(Subject::Group(self.group_id(g).await?)),
            _ => Err(Error::Invalid("name exactly one of a user or a group".into())),
        }
    }

    /// Sets the rule for `subject` on `path` (replacing any it had there).
    pub async fn grant(&self, path: &str, subject: Subject, level: Level) -> Result<(), Error> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(&self.sql("DELETE FROM access_rules WHERE path = ? AND subject = ?"))
            .bind(path)
            .bind(subject.key())
            .execute(&mut *tx)
            .await?;
        sqlx::query(&self.sql("INSERT INTO access_rules (path, subject, level, created_at) VALUES (?, ?, ?, ?)"))
            .bind(path)
            .bind(subject.key())
            .bind(level.as_str())
            .bind(now())
            .execute(&mut *tx)
            .await?;
        self.bump_access(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes `subject`'s rule on `path`; returns whether there was one.
    pub async fn revoke(&self, path: &str, subject: Subject) -> Result<bool, Error> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(&self.sql("DELETE FROM access_rules WHERE path = ? AND subject = ?"))
            .bind(path)
            .bind(subject.key())
            .execute(&mut *tx)
            .await?;
        self.bump_access(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets whether anonymous callers may read `path` and below.
    pub async fn set_public(&self, path: &str, public: bool) -> Result<(), Error> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(&self.sql("DELETE FROM public_paths WHERE path = ?")).bind(path).execute(&mut *tx).await?;
        sqlx::query(&self.sql("INSERT INTO public_paths (path, public) VALUES (?, ?)"))
            .bind(path)
            .bind(i64::from(public))
            .execute(&mut *tx)
            .await?;
        self.bump_access(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn bump_access(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), Error> {
        let done = sqlx::query("UPDATE access_version SET version = version + 1").execute(&mut **tx).await?;
        if done.rows_affected() == 0 {
            sqlx::query("INSERT INTO access_version (version) VALUES (1)").execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Changes whenever users, groups, rules or public paths change.
    pub async fn access_version(&self) -> Result<i64, Error> {
        let row = sqlx::query("SELECT version FROM access_version").fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
    }

    /// Everything a permission check needs, read in one go.
    pub async fn load_policy(&self, anonymous_reads: bool) -> Result<Policy, Error> {
        let version = self.access_version().await?;
        let users: HashMap<i64, String> = sqlx::query("SELECT id, name FROM users")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, text(r, 1)?)))
            .collect::<Result<_, Error>>()?;
        let groups: HashMap<i64, String> = sqlx::query("SELECT id, name FROM user_groups")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, text(r, 1)?)))
            .collect::<Result<_, Error>>()?;
        let mut members: HashMap<i64, Vec<i64>> = HashMap::new();
        for r in sqlx::query("SELECT group_id, user_id FROM group_members").fetch_all(&self.pool).await? {
            members.entry(r.try_get(1)?).or_default().push(r.try_get(0)?);
        }
        let mut rules: HashMap<String, Vec<(Subject, Level)>> = HashMap::new();
        let mut listed = Vec::new();
        for r in sqlx::query("SELECT path, subject, level FROM access_rules").fetch_all(&self.pool).await? {
            let path = text(&r, 0)?;
            let key: String = r.try_get(1)?;
            let level: String = r.try_get(2)?;
            let subject = Subject::parse(&key).ok_or_else(|| Error::Corrupt(format!("rule subject {key:?}")))?;
            let level = Level::parse(&level).ok_or_else(|| Error::Corrupt(format!("rule level {level:?}")))?;
            let subject_name = match subject {
                Subject::User(id) => users.get(&id).cloned(),
                Subject::Group(id) => groups.get(&id).map(|g| format!("@{g}")),
            }
            .unwrap_or_else(|| key.clone());
            rules.entry(path.clone()).or_default().push((subject, level));
            listed.push(Rule { path, subject, subject_name, level });
        }
        listed.sort_by(|a, b| (&a.path, &a.subject_name).cmp(&(&b.path, &b.subject_name)));
        let mut public = HashMap::new();
        for r in sqlx::query("SELECT path, public FROM public_paths").fetch_all(&self.pool).await? {
            public.insert(text(&r, 0)?, r.try_get::<i64, _>(1)? != 0);
        }
        Ok(Policy { version, anonymous_reads, rules, public, members, listed })
    }

    // ----- tokens -----

    /// Creates a token for `user_id` and returns its secret, which is not
    /// stored. Token names are unique per user.
    pub async fn create_token(
        &self,
        user: &User,
        name: &str,
        scope: Scope,
        expires_at: Option<i64>,
    ) -> Result<(Token, String), Error> {
        if !valid_name(name) {
            return Err(Error::Invalid(format!("token name {name:?}")));
        }
        let mut raw = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut raw);
        let secret = format!("tsr_{}", hex::encode(raw));
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let taken: i64 = sqlx::query(&self.sql("SELECT COUNT(*) FROM tokens WHERE user_id = ? AND name = ?"))
            .bind(user.id)
            .bind(name)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if taken > 0 {
            return Err(Error::Exists(format!("token {}/{name}", user.name)));
        }
        let created_at = now();
        let id = self
            .insert_id(
                &mut *tx,
                "INSERT INTO tokens (name, hash, created_at, user_id, scope, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                vec![
                    name.into(),
                    hash(&secret).into(),
                    created_at.into(),
                    user.id.into(),
                    scope.as_str().into(),
                    expires_at.into(),
                ],
            )
            .await?;
        tx.commit().await?;
        let token = Token {
            id,
            user_id: user.id,
            user: user.name.clone(),
            name: name.to_string(),
            scope,
            created_at,
            expires_at,
            revoked_at: None,
        };
        Ok((token, secret))
    }

    /// What the token with this secret is.
    pub async fn check_token(&self, secret: &str) -> Result<TokenCheck, Error> {
        let sql = self.sql(&format!("SELECT {TOKEN_COLUMNS} WHERE t.hash = ? AND t.revoked_at IS NULL"));
        let Some(row) = sqlx::query(&sql).bind(hash(secret)).fetch_optional(&self.pool).await? else {
            return Ok(TokenCheck::Invalid);
        };
        let token = token_from_row(&row)?;
        if token.expires_at.is_some_and(|at| at <= now()) {
            return Ok(TokenCheck::Expired(token));
        }
        let sql = self.sql(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"));
        let user = user_from_row(&sqlx::query(&sql).bind(token.user_id).fetch_one(&self.pool).await?)?;
        if user.disabled {
            return Ok(TokenCheck::Disabled(token));
        }
        Ok(TokenCheck::Valid(token, user))
    }

    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<Token>, Error> {
        let rows = match user {
            Some(u) => {
                let sql = self.sql(&format!("SELECT {TOKEN_COLUMNS} WHERE u.name = ? ORDER BY t.id"));
                sqlx::query(&sql).bind(u).fetch_all(&self.pool).await?
            }
            None => sqlx::query(&format!("SELECT {TOKEN_COLUMNS} ORDER BY t.id")).fetch_all(&self.pool).await?,
        };
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes one token, named by id or by `USER/NAME`; never more than
    /// one. Returns the token revoked.
    pub async fn revoke_token(&self, reference: &str) -> Result<Token, Error> {
        let token = match reference.split_once('/') {
            Some((user, name)) => {
                let sql = self.sql(&format!("SELECT {TOKEN_COLUMNS} WHERE u.name = ? AND t.name = ?"));
                sqlx::query(&sql).bind(user).bind(name).fetch_optional(&self.pool).await?
            }
            None => match reference.parse::<i64>() {
                Ok(id) => {
                    let sql = self.sql(&format!("SELECT {TOKEN_COLUMNS} WHERE t.id = ?"));
                    sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?
                }
                Err(_) => {
                    return Err(Error::Invalid(format!(
                        "{reference:?}: name a token by its id or as USER/NAME (see `tessera token list`)"
                    )))
                }
            },
        };
        let token = token.as_ref().map(token_from_row).transpose()?;
        let Some(mut token) = token else { return Err(Error::NotFound(format!("no token {reference:?}"))) };
        if token.revoked_at.is_some() {
            return Err(Error::Invalid(format!("token {reference:?} is already revoked")));
        }
        let _guard = self.write_guard().await;
        let at = now();
        sqlx::query(&self.sql("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"))
            .bind(at)
            .bind(token.id)
            .execute(&self.pool)
            .await?;
        token.revoked_at = Some(at);
        Ok(token)
    }

    /// Schema 1 tokens had no user: each becomes a token of a user with the
    /// token's name (created if needed), and such users keep what a token
    /// could do before, `maintain` on `/`. A second token of one name is
    /// renamed `NAME-2`, since names are now unique per user.
    pub(crate) async fn tokens_to_users(&self) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        let rows =
            sqlx::query("SELECT id, name FROM tokens WHERE user_id IS NULL ORDER BY id").fetch_all(&mut *tx).await?;
        let mut taken: HashMap<String, u32> = HashMap::new();
        for row in &rows {
            let id: i64 = row.try_get(0)?;
            let name = text(row, 1)?;
            let user_name: String = if valid_name(&name) {
                name.clone()
            } else {
                let cleaned: String = name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' })
                    .collect();
                format!("t{}", cleaned.chars().take(60).collect::<String>())
            };
            let existing = sqlx::query(&self.sql("SELECT id FROM users WHERE name = ?"))
                .bind(&user_name)
                .fetch_optional(&mut *tx)
                .await?;
            let user_id: i64 = match existing {
                Some(r) => r.try_get(0)?,
                None => {
                    let uid = self.insert_user(&mut tx, &user_name, None, false).await?;
                    sqlx::query(&self.sql(
                        "INSERT INTO access_rules (path, subject, level, created_at) VALUES ('/', ?, 'maintain', ?)",
                    ))
                    .bind(Subject::User(uid).key())
                    .bind(now())
                    .execute(&mut *tx)
                    .await?;
                    uid
                }
            };
            let n = taken.entry(user_name.clone()).or_insert(0);
            *n += 1;
            let token_name = if *n == 1 { name.clone() } else { format!("{name}-{n}") };
            sqlx::query(&self.sql("UPDATE tokens SET user_id = ?, name = ? WHERE id = ?"))
                .bind(user_id)
                .bind(token_name)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        self.bump_access(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    // ----- audit -----

    /// Records one write. Failures to record are returned: callers decide
    /// whether the write may stand without its record.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        path: Option<&str>,
        detail: &str,
        outcome: &str,
    ) -> Result<(), Error> {
        let _guard = self.write_guard().await;
        sqlx::query(
            &self.sql("INSERT INTO audit_log (at, actor, action, path, detail, outcome) VALUES (?, ?, ?, ?, ?, ?)"),
        )
        .bind(now())
        .bind(actor)
        .bind(action)
        .bind(path)
        .bind(detail)
        .bind(outcome)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` entries, optionally at or below `path` and by
    /// `actor`, newest first.
    pub async fn list_audit(
        &self,
        path: Option<&str>,
        actor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, Error> {
        let mut sql = "SELECT id, at, actor, action, path, detail, outcome FROM audit_log WHERE 1 = 1".to_string();
        if path.is_some() {
            sql.push_str(" AND (path = ? OR path LIKE ? ESCAPE '!')");
        }
        if actor.is_some() {
            sql.push_str(" AND actor = ?");
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        let sql = self.sql(&sql);
        let mut q = sqlx::query(&sql);
        if let Some(p) = path {
            let prefix = if p == "/" { "/".to_string() } else { format!("{p}/") };
            let escaped = prefix.replace('!', "!!").replace('%', "!%").replace('_', "!_");
            q = q.bind(p.to_string()).bind(format!("{escaped}%"));
        }
        if let Some(a) = actor {
            q = q.bind(a.to_string());
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let path = opt_text(r, 4)?;
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    actor: text(r, 2)?,
                    action: r.try_get(3)?,
                    path,
                    detail: text(r, 5)?,
                    outcome: r.try_get(6)?,
                })
            })
            .collect()
    }
}

/// The rules in memory. Paths are normalized monorepo paths (`/`, `/a/b`).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// [`Store::access_version`] when loaded.
    pub version: i64,
    /// The server-wide default for paths without a public setting.
    pub anonymous_reads: bool,
    rules: HashMap<String, Vec<(Subject, Level)>>,
    public: HashMap<String, bool>,
    members: HashMap<i64, Vec<i64>>,
    listed: Vec<Rule>,
}

/// `/a/b/c`, `/a/b`, `/a`, `/`: a path and its ancestors, nearest first.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let current = next?;
        next = if current == "/" {
            None
        } else {
            match current.rfind('/') {
                Some(0) | None => Some("/"),
                Some(i) => Some(&current[..i]),
            }
        };
        Some(current)
    })
}

impl Policy {
    /// What `user` (`None`: anonymous) may do at `path`: the most specific
    /// path with a rule for the user or one of their groups decides (the
    /// highest level among that path's rules for them); without any, what
    /// an anonymous caller has. Admins may do everything.
    pub fn level(&self, user: Option<&User>, path: &str) -> Option<Level> {
        if let Some(user) = user {
            if user.disabled {
                return None;
            }
            if user.is_admin {
                return Some(Level::Maintain);
            }
            let groups = self.members.get(&user.id).map(Vec::as_slice).unwrap_or(&[]);
            for at in ancestors(path) {
                let Some(rules) = self.rules.get(at) else { continue };
                let best = rules
                    .iter()
                    .filter(|(subject, _)| match subject {
                        Subject::User(id) => *id == user.id,
                        Subject::Group(g) => groups.contains(g),
                    })
                    .map(|(_, level)| *level)
                    .max();
                if best.is_some() {
                    return best;
                }
            }
        }
        self.public(path).then_some(Level::Read)
    }

    /// Whether anonymous callers may read `path`.
    pub fn public(&self, path: &str) -> bool {
        ancestors(path).find_map(|at| self.public.get(at).copied()).unwrap_or(self.anonymous_reads)
    }

    /// Whether `user` may read `path` and everything below it: a clone of
    /// a directory holds its sub-directories, so one the caller cannot read
    /// anywhere below makes the whole clone unreadable.
    pub fn can_read_all_below(&self, user: Option<&User>, path: &str) -> bool {
        if self.level(user, path).is_none() {
            return false;
        }
        let below = |p: &str| path == "/" || p.strip_prefix(path).is_some_and(|rest| rest.starts_with('/'));
        self.rules.keys().chain(self.public.keys()).filter(|p| below(p)).all(|p| self.level(user, p).is_some())
    }

    /// The rules at or below `path` (all of them for `/` or `None`).
    pub fn rules(&self, path: Option<&str>) -> Vec<Rule> {
        self.listed
            .iter()
            .filter(|r| match path {
                None | Some("/") => true,
                Some(p) => r.path == p || r.path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')),
            })
            .cloned()
            .collect()
    }

    /// Public settings at or below `path`.
    pub fn public_settings(&self) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = self.public.iter().map(|(p, v)| (p.clone(), *v)).collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> User {
        User { id, name: format!("u{id}"), email: None, is_admin: false, disabled: false, created_at: 0 }
    }

    fn policy(rules: &[(&str, Subject, Level)], public: &[(&str, bool)], members: &[(i64, i64)]) -> Policy {
        let mut p = Policy { anonymous_reads: true, ..Policy::default() };
        for (path, s, l) in rules {
            p.rules.entry(path.to_string()).or_default().push((*s, *l));
        }
        for (path, v) in public {
            p.public.insert(path.to_string(), *v);
        }
        for (u, g) in members {
            p.members.entry(*u).or_default().push(*g);
        }
        p
    }

    #[test]
    fn ancestors_walk_to_the_root() {
        assert_eq!(ancestors("/a/b/c").collect::<Vec<_>>(), ["/a/b/c", "/a/b", "/a", "/"]);
        assert_eq!(ancestors("/").collect::<Vec<_>>(), ["/"]);
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let p = policy(&[("/", Subject::User(1), Level::Maintain), ("/a", Subject::User(1), Level::Read)], &[], &[]);
        assert_eq!(p.level(Some(&user(1)), "/a/b"), Some(Level::Read));
        assert_eq!(p.level(Some(&user(1)), "/c"), Some(Level::Maintain));
        // No rule: what anonymous has.
        assert_eq!(p.level(Some(&user(2)), "/a"), Some(Level::Read));
        assert_eq!(p.level(None, "/a"), Some(Level::Read));
    }

    #[test]
    fn groups_count_and_the_highest_level_at_one_path_wins() {
        let p = policy(
            &[("/a", Subject::Group(7), Level::Write), ("/a", Subject::User(1), Level::Read)],
            &[("/", false)],
            &[(1, 7)],
        );
        assert_eq!(p.level(Some(&user(1)), "/a/x"), Some(Level::Write));
        assert_eq!(p.level(Some(&user(2)), "/a/x"), None);
        assert_eq!(p.level(None, "/b"), None);
    }

    #[test]
    fn private_paths_below_make_a_directory_unreadable_as_a_whole() {
        let p = policy(&[("/secret", Subject::User(1), Level::Read)], &[("/secret", false)], &[]);
        assert!(!p.can_read_all_below(None, "/"));
        assert!(p.can_read_all_below(None, "/projects"));
        assert!(p.can_read_all_below(Some(&user(1)), "/"));
        assert!(!p.can_read_all_below(Some(&user(2)), "/secret"));
        // A sibling whose name extends the path is not below it.
        assert!(p.can_read_all_below(None, "/secre"));
    }

    #[test]
    fn admins_may_do_everything_and_disabled_users_nothing() {
        let p = policy(&[], &[("/", false)], &[]);
        let mut admin = user(1);
        admin.is_admin = true;
        assert_eq!(p.level(Some(&admin), "/x"), Some(Level::Maintain));
        let mut gone = user(2);
        gone.disabled = true;
        assert_eq!(p.level(Some(&gone), "/x"), None);
    }
}
#[cfg(test)]
mod scenario {
    use super::*;

    #[test]
    fn a_group_member_reads_all_of_the_root() {
        let mut p = Policy { anonymous_reads: true, ..Policy::default() };
        p.rules
            .insert("/projects/a".into(), vec![(Subject::User(2), Level::Write), (Subject::User(3), Level::Maintain)]);
        p.rules.insert("/projects/private".into(), vec![(Subject::Group(1), Level::Maintain)]);
        p.rules.insert("/import".into(), vec![(Subject::User(4), Level::Write)]);
        p.public.insert("/projects/private".into(), false);
        p.members.insert(3, vec![1]);
        let bob = User { id: 3, name: "bob".into(), email: None, is_admin: false, disabled: false, created_at: 0 };
        assert!(p.can_read_all_below(Some(&bob), "/"));
    }
}
