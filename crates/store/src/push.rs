//! A push's whole effect in one transaction: the repository (when the push
//! creates it), the pack with its rows, and the refs. A process killed at
//! any point leaves either all of it or none: no pack that no ref reaches,
//! no empty repository.

use sqlx::Row;

use crate::objects::PackToStore;
use crate::{now, Error, RefOutcome, RefUpdate, RepoKind, Store};

/// Where a push's objects and refs go.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    /// An existing repository, by id.
    Repo(i64),
    /// A repository the push creates; `head` is the ref its HEAD names.
    New { path: &'a str, kind: RepoKind, head: &'a str },
}

/// What [`Store::receive`] did.
#[derive(Debug)]
pub struct Received {
    /// The repository: the one given, or the one created.
    pub repo_id: i64,
    /// The stored pack, when one was given and anything was kept.
    pub pack_id: Option<i64>,
    /// One outcome per update, in order.
    pub outcomes: Vec<RefOutcome>,
}

impl Store {
    /// Applies a push: creates the repository if asked, stores `pack`, and
    /// moves `updates` by compare-and-swap, all in one transaction. It
    /// commits only if a ref moved (with `atomic`, only if every ref
    /// moved); otherwise nothing is kept, not even the pack, since no ref
    /// would reach it.
    ///
    /// A new repository whose path another writer took meanwhile is
    /// [`Error::RepoExists`], and nothing was written.
    pub async fn receive(
        &self,
        destination: Destination<'_>,
        pack: Option<PackToStore<'_>>,
        updates: &[RefUpdate],
        atomic: bool,
    ) -> Result<Received, Error> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let mut pack_id = None;
        let written: Result<(i64, Vec<RefOutcome>), Error> = async {
            let repo_id = match destination {
                Destination::Repo(id) => id,
                Destination::New { path, kind, head } => self.insert_repo(&mut tx, path, kind, head).await?,
            };
            let version = self.bump_version(&mut tx, repo_id).await?;
            if let Some(pack) = pack {
                match self.insert_pack(&mut tx, repo_id, version, pack, false).await {
                    Ok(id) => pack_id = Some(id),
                    Err((id, e)) => {
                        pack_id = id;
                        return Err(e);
                    }
                }
            }
            // Crash tests kill the process here: pack rows written, refs not.
            crate::failpoint("receive-ref-update");
            let mut outcomes = Vec::with_capacity(updates.len());
            for update in updates {
                outcomes.push(self.apply_one(&mut tx, repo_id, update).await?);
            }
            Ok((repo_id, outcomes))
        }
        .await;
        let (repo_id, outcomes) = match written {
            Ok(written) => written,
            Err(e) => {
                self.abandon(tx, pack_id).await;
                return Err(e);
            }
        };
        let moved = outcomes.iter().filter(|o| **o == RefOutcome::Updated).count();
        let keep = if atomic { moved == updates.len() && moved > 0 } else { moved > 0 };
        if !keep {
            self.abandon(tx, pack_id).await;
            let outcomes = outcomes
                .into_iter()
                .map(|o| match o {
                    RefOutcome::Updated => RefOutcome::Rejected("atomic transaction failed".into()),
                    rejected => rejected,
                })
                .collect();
            return Ok(Received { repo_id, pack_id: None, outcomes });
        }
        if let Err(e) = tx.commit().await {
            if let Some(pack_id) = pack_id {
                self.forget_pack(pack_id).await;
            }
            return Err(e.into());
        }
        Ok(Received { repo_id, pack_id, outcomes })
    }

    /// Rolls `tx` back and drops the bytes of the pack it stored, if any.
    async fn abandon(&self, tx: sqlx::Transaction<'_, sqlx::Any>, pack_id: Option<i64>) {
        let _ = tx.rollback().await;
        if let Some(pack_id) = pack_id {
            self.forget_pack(pack_id).await;
        }
    }

    /// Inserts a repository row inside `tx`; a path already taken (seen
    /// first, or by the unique index when another writer raced) is
    /// [`Error::RepoExists`].
    async fn insert_repo(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        path: &str,
        kind: RepoKind,
        head: &str,
    ) -> Result<i64, Error> {
        let exists = sqlx::query(&self.sql("SELECT COUNT(*) FROM repos WHERE path = ?"))
            .bind(path)
            .fetch_one(&mut **tx)
            .await?
            .try_get::<i64, _>(0)?;
        if exists > 0 {
            return Err(Error::RepoExists(path.to_string()));
        }
        let now = now();
        self.insert_id(
            &mut **tx,
            "INSERT INTO repos (path, kind, head, version, created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?)",
            vec![path.into(), kind.as_str().into(), head.into(), now.into(), now.into()],
        )
        .await
        .map_err(|e| match e {
            Error::Query(sqlx::Error::Database(db)) if db.is_unique_violation() => Error::RepoExists(path.to_string()),
            other => other,
        })
    }
}
