//! Access tokens: random secrets shown once, stored as SHA-256 hashes.

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{now, Error, Store};

/// A token's stored description (never its secret).
#[derive(Debug, Clone)]
pub struct Token {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Store {
    /// Creates a token and returns its secret, which is not stored.
    pub async fn create_token(&self, name: &str) -> Result<(Token, String), Error> {
        let mut raw = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut raw);
        let secret = format!("tsr_{}", hex::encode(raw));
        let _guard = self.write_guard().await;
        let created_at = now();
        let id = self
            .insert_id(
                &self.pool,
                "INSERT INTO tokens (name, hash, created_at) VALUES (?, ?, ?)",
                vec![name.into(), hash(&secret).into(), created_at.into()],
            )
            .await?;
        Ok((Token { id, name: name.to_string(), created_at, revoked_at: None }, secret))
    }

    /// The live token with this secret, if any.
    pub async fn check_token(&self, secret: &str) -> Result<Option<Token>, Error> {
        let sql = self.sql("SELECT id, name, created_at, revoked_at FROM tokens WHERE hash = ? AND revoked_at IS NULL");
        let row = sqlx::query(&sql).bind(hash(secret)).fetch_optional(&self.pool).await?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    pub async fn list_tokens(&self) -> Result<Vec<Token>, Error> {
        let rows = sqlx::query("SELECT id, name, created_at, revoked_at FROM tokens ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes the token with this id or name; returns how many were revoked.
    pub async fn revoke_token(&self, id_or_name: &str) -> Result<u64, Error> {
        let _guard = self.write_guard().await;
        let id: i64 = id_or_name.parse().unwrap_or(-1);
        let sql = self.sql("UPDATE tokens SET revoked_at = ? WHERE (id = ? OR name = ?) AND revoked_at IS NULL");
        let done = sqlx::query(&sql).bind(now()).bind(id).bind(id_or_name).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }
}

fn token_from_row(row: &sqlx::any::AnyRow) -> Result<Token, Error> {
    Ok(Token {
        id: row.try_get(0)?,
        name: crate::text(row, 1)?,
        created_at: row.try_get(2)?,
        revoked_at: row.try_get(3)?,
    })
}
