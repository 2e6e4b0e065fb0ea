//! Users' SSH public keys, by which the SSH transport knows who connects.
//!
//! The store keeps a key's OpenSSH text and its SHA-256 fingerprint
//! (`SHA256:<base64>`, as `ssh-keygen -l` prints it) and never parses keys
//! itself: the SSH transport computes fingerprints of keys it has verified
//! and looks them up here. A key belongs to one user only.

use sqlx::Row;

use crate::access::{user_from_row, User, USER_COLUMNS};
use crate::{now, text, Error, Store};

/// One registered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    pub id: i64,
    pub user_id: i64,
    pub user: String,
    /// The key's comment, or what the administrator named it.
    pub title: String,
    pub fingerprint: String,
    /// `<algorithm> <base64>`, without the comment.
    pub public_key: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

const KEY_COLUMNS: &str =
    "k.id, k.user_id, u.name, k.title, k.fingerprint, k.public_key, k.created_at, k.last_used_at \
                           FROM ssh_keys k JOIN users u ON u.id = k.user_id";

fn key_from_row(row: &sqlx::any::AnyRow) -> Result<SshKey, Error> {
    Ok(SshKey {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        user: text(row, 2)?,
        title: text(row, 3)?,
        fingerprint: text(row, 4)?,
        public_key: text(row, 5)?,
        created_at: row.try_get(6)?,
        last_used_at: row.try_get(7)?,
    })
}

impl Store {
    /// Registers `public_key` (already parsed and fingerprinted by the
    /// caller) for `user`. A key already registered, to anyone, is refused.
    pub async fn add_ssh_key(
        &self,
        user: &User,
        title: &str,
        fingerprint: &str,
        public_key: &str,
    ) -> Result<SshKey, Error> {
        if title.len() > 255 || title.chars().any(char::is_control) {
            return Err(Error::Invalid(format!("key title {title:?}: at most 255 printable characters")));
        }
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let sql = self.sql(&format!("SELECT {KEY_COLUMNS} WHERE k.fingerprint = ?"));
        if let Some(row) = sqlx::query(&sql).bind(fingerprint).fetch_optional(&mut *tx).await? {
            let existing = key_from_row(&row)?;
            return Err(Error::Exists(format!("key {fingerprint} (registered to user {})", existing.user)));
        }
        let created_at = now();
        let id = self
            .insert_id(
                &mut *tx,
                "INSERT INTO ssh_keys (user_id, title, fingerprint, public_key, created_at) VALUES (?, ?, ?, ?, ?)",
                vec![user.id.into(), title.into(), fingerprint.into(), public_key.into(), created_at.into()],
            )
            .await?;
        tx.commit().await?;
        Ok(SshKey {
            id,
            user_id: user.id,
            user: user.name.clone(),
            title: title.to_string(),
            fingerprint: fingerprint.to_string(),
            public_key: public_key.to_string(),
            created_at,
            last_used_at: None,
        })
    }

    /// Keys of one user, or of everyone.
    pub async fn list_ssh_keys(&self, user: Option<&str>) -> Result<Vec<SshKey>, Error> {
        let rows = match user {
            Some(u) => {
                let sql = self.sql(&format!("SELECT {KEY_COLUMNS} WHERE u.name = ? ORDER BY k.id"));
                sqlx::query(&sql).bind(u).fetch_all(&self.pool).await?
            }
            None => sqlx::query(&format!("SELECT {KEY_COLUMNS} ORDER BY k.id")).fetch_all(&self.pool).await?,
        };
        rows.iter().map(key_from_row).collect()
    }

    /// Removes one of `user`'s keys, named by id, fingerprint or title;
    /// a title two keys share is refused rather than guessed.
    pub async fn remove_ssh_key(&self, user: &str, reference: &str) -> Result<SshKey, Error> {
        let keys = self.list_ssh_keys(Some(user)).await?;
        let by_id = reference.parse::<i64>().ok();
        let matching: Vec<&SshKey> =
            keys.iter().filter(|k| Some(k.id) == by_id || k.fingerprint == reference || k.title == reference).collect();
        let key = match matching.as_slice() {
            [] => {
                return Err(Error::NotFound(format!(
                    "user {user} has no key {reference:?} (see `tessera user key list`)"
                )))
            }
            [one] => (*one).clone(),
            _ => {
                return Err(Error::Invalid(format!(
                    "{reference:?} names {} keys of {user}; name one by its id or fingerprint",
                    matching.len()
                )))
            }
        };
        let _guard = self.write_guard().await;
        sqlx::query(&self.sql("DELETE FROM ssh_keys WHERE id = ?")).bind(key.id).execute(&self.pool).await?;
        Ok(key)
    }

    /// The key with this fingerprint and its user, if registered. The
    /// caller decides what a disabled user gets.
    pub async fn user_by_ssh_key(&self, fingerprint: &str) -> Result<Option<(SshKey, User)>, Error> {
        let sql = self.sql(&format!("SELECT {KEY_COLUMNS} WHERE k.fingerprint = ?"));
        let Some(row) = sqlx::query(&sql).bind(fingerprint).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let key = key_from_row(&row)?;
        let sql = self.sql(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"));
        let user = user_from_row(&sqlx::query(&sql).bind(key.user_id).fetch_one(&self.pool).await?)?;
        Ok(Some((key, user)))
    }

    /// The shared secret named `name` (64 hex digits), created on first
    /// use; every process on this database gets the same one.
    pub async fn server_secret(&self, name: &str) -> Result<String, Error> {
        let read = || async {
            let row = sqlx::query(&self.sql("SELECT value FROM server_secrets WHERE name = ?"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(|r| text(r, 0)).transpose()
        };
        if let Some(value) = read().await? {
            return Ok(value);
        }
        let mut raw = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut raw);
        {
            let _guard = self.write_guard().await;
            // A racing process may insert first: its value wins.
            let _ = sqlx::query(&self.sql("INSERT INTO server_secrets (name, value) VALUES (?, ?)"))
                .bind(name)
                .bind(hex::encode(raw))
                .execute(&self.pool)
                .await;
        }
        read().await?.ok_or_else(|| Error::Corrupt(format!("server secret {name} could not be stored")))
    }

    /// A user by id (for signed tokens, which name the user by id).
    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, Error> {
        let sql = self.sql(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"));
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Notes that a key was just used to sign in (shown by `key list`).
    pub async fn touch_ssh_key(&self, id: i64) -> Result<(), Error> {
        let _guard = self.write_guard().await;
        sqlx::query(&self.sql("UPDATE ssh_keys SET last_used_at = ? WHERE id = ?"))
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
