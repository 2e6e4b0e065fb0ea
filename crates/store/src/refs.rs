//! Refs: listing, and compare-and-swap updates in one transaction.

use sqlx::Row;

use crate::{now, parse_oid, Error, ObjectId, Store};

/// A stored ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub target: ObjectId,
    /// For annotated tags, the non-tag object the tag chain ends at.
    pub peeled: Option<ObjectId>,
}

/// One requested change: `old` is what the caller believes the ref is
/// (`None`: it must not exist), `new` what it becomes (`None`: delete).
#[derive(Debug, Clone)]
pub struct RefUpdate {
    pub name: String,
    pub old: Option<ObjectId>,
    pub new: Option<ObjectId>,
    pub peeled: Option<ObjectId>,
}

/// What became of one [`RefUpdate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefOutcome {
    Updated,
    /// Not applied; the reason is meant for the client (`ng <ref> <reason>`).
    Rejected(String),
}

/// The reason given when a ref moved between advertisement and update.
pub const STALE: &str = "fetch first";

impl Store {
    pub async fn list_refs(&self, repo_id: i64) -> Result<Vec<Ref>, Error> {
        let sql = self.sql("SELECT name, target, peeled FROM refs WHERE repo_id = ? ORDER BY name");
        let rows = sqlx::query(&sql).bind(repo_id).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let peeled: Option<String> = row.try_get(2)?;
                Ok(Ref {
                    name: crate::text(row, 0)?,
                    target: parse_oid(&row.try_get::<String, _>(1)?)?,
                    peeled: peeled.as_deref().map(parse_oid).transpose()?,
                })
            })
            .collect()
    }

    /// Applies `updates` by compare-and-swap. With `atomic`, either all
    /// apply or none does; otherwise each stands alone.
    pub async fn update_refs(
        &self,
        repo_id: i64,
        updates: &[RefUpdate],
        atomic: bool,
    ) -> Result<Vec<RefOutcome>, Error> {
        let _guard = self.write_guard().await;
        if atomic {
            let mut tx = self.pool.begin().await?;
            self.bump_version(&mut tx, repo_id).await?;
            let mut outcomes = Vec::with_capacity(updates.len());
            for update in updates {
                outcomes.push(self.apply_one(&mut tx, repo_id, update).await?);
            }
            if outcomes.iter().all(|o| *o == RefOutcome::Updated) {
                tx.commit().await?;
                Ok(outcomes)
            } else {
                tx.rollback().await?;
                Ok(outcomes
                    .into_iter()
                    .map(|o| match o {
                        RefOutcome::Updated => RefOutcome::Rejected("atomic transaction failed".into()),
                        rejected => rejected,
                    })
                    .collect())
            }
        } else {
            let mut outcomes = Vec::with_capacity(updates.len());
            for update in updates {
                let mut tx = self.pool.begin().await?;
                self.bump_version(&mut tx, repo_id).await?;
                let outcome = self.apply_one(&mut tx, repo_id, update).await?;
                if outcome == RefOutcome::Updated {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                outcomes.push(outcome);
            }
            Ok(outcomes)
        }
    }

    /// Takes the repository's row lock (PostgreSQL, MySQL) so writers to
    /// one repository serialize, and tells cached readers to refresh.
    /// Returns the new version, which rows added in `tx` carry: versions
    /// are handed out in commit order, so `added_version > seen` is exactly
    /// what a reader has not seen.
    pub(crate) async fn bump_version(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        repo_id: i64,
    ) -> Result<i64, Error> {
        let sql = self.sql("UPDATE repos SET version = version + 1, updated_at = ? WHERE id = ?");
        sqlx::query(&sql).bind(now()).bind(repo_id).execute(&mut **tx).await?;
        let sql = self.sql("SELECT version FROM repos WHERE id = ?");
        let row = sqlx::query(&sql).bind(repo_id).fetch_one(&mut **tx).await?;
        Ok(row.try_get(0)?)
    }

    pub(crate) async fn apply_one(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        repo_id: i64,
        u: &RefUpdate,
    ) -> Result<RefOutcome, Error> {
        let peeled = u.peeled.map(|p| p.to_string());
        let changed = match (u.old, u.new) {
            (None, None) => return Ok(RefOutcome::Rejected("nothing to do".into())),
            (None, Some(new)) => {
                let insert = match self.dialect {
                    crate::Dialect::Mysql => "INSERT IGNORE INTO refs (repo_id, name, target, peeled, updated_at) VALUES (?, ?, ?, ?, ?)",
                    _ => "INSERT INTO refs (repo_id, name, target, peeled, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                };
                sqlx::query(&self.sql(insert))
                    .bind(repo_id)
                    .bind(&u.name)
                    .bind(new.to_string())
                    .bind(peeled)
                    .bind(now())
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
            }
            (Some(old), Some(new)) => sqlx::query(&self.sql(
                "UPDATE refs SET target = ?, peeled = ?, updated_at = ? WHERE repo_id = ? AND name = ? AND target = ?",
            ))
            .bind(new.to_string())
            .bind(peeled)
            .bind(now())
            .bind(repo_id)
            .bind(&u.name)
            .bind(old.to_string())
            .execute(&mut **tx)
            .await?
            .rows_affected(),
            (Some(old), None) => {
                sqlx::query(&self.sql("DELETE FROM refs WHERE repo_id = ? AND name = ? AND target = ?"))
                    .bind(repo_id)
                    .bind(&u.name)
                    .bind(old.to_string())
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
            }
        };
        Ok(if changed == 1 { RefOutcome::Updated } else { RefOutcome::Rejected(STALE.into()) })
    }
}
