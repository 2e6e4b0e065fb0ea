//! Monorepo bookkeeping: derived directory commits, sharing an import
//! repository's objects with the monorepo, and merge requests.

use std::collections::HashMap;

use sqlx::Row;

use crate::{now, parse_oid, text, BindValue, Error, ObjectId, RepoKind, Store};

/// A merge request (the seed's mega_mr).
#[derive(Debug, Clone)]
pub struct MergeRequest {
    pub id: i64,
    /// The monorepo directory the push went to, e.g. `/projects/x`.
    pub path: String,
    /// The ref the client pushed, e.g. `refs/heads/main` or `refs/for/main`.
    pub branch: String,
    /// The directory commit the pushed commits build on (`None`: a new directory).
    pub base: Option<ObjectId>,
    pub head: ObjectId,
    pub status: MrStatus,
    pub title: String,
    pub conflicts: Vec<String>,
    pub merged_root: Option<ObjectId>,
    pub author: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a merge request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MrStatus {
    Open,
    Merged,
    Closed,
    /// Open, but the last merge attempt found conflicting paths.
    Conflict,
}

impl MrStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MrStatus::Open => "open",
            MrStatus::Merged => "merged",
            MrStatus::Closed => "closed",
            MrStatus::Conflict => "conflict",
        }
    }
    /// A status by name (`open`, `merged`, `closed`, `conflict`).
    pub fn named(s: &str) -> Option<MrStatus> {
        Some(match s {
            "open" => MrStatus::Open,
            "merged" => MrStatus::Merged,
            "closed" => MrStatus::Closed,
            "conflict" => MrStatus::Conflict,
            _ => return None,
        })
    }

    fn parse(s: &str) -> MrStatus {
        match s {
            "merged" => MrStatus::Merged,
            "closed" => MrStatus::Closed,
            "conflict" => MrStatus::Conflict,
            _ => MrStatus::Open,
        }
    }
}

const MR_COLUMNS: &str =
    "id, path, branch, base_commit, head_commit, status, title, conflicts, merged_root, author, created_at, updated_at";

fn mr_from_row(row: &sqlx::any::AnyRow) -> Result<MergeRequest, Error> {
    let base: Option<String> = row.try_get(3)?;
    let merged: Option<String> = row.try_get(8)?;
    let conflicts: Option<String> = match row.try_get::<Option<String>, _>(7) {
        Ok(v) => v,
        Err(_) => row.try_get::<Option<Vec<u8>>, _>(7)?.map(|b| String::from_utf8_lossy(&b).into_owned()),
    };
    Ok(MergeRequest {
        id: row.try_get(0)?,
        path: text(row, 1)?,
        branch: text(row, 2)?,
        base: base.as_deref().map(parse_oid).transpose()?,
        head: parse_oid(&row.try_get::<String, _>(4)?)?,
        status: MrStatus::parse(&row.try_get::<String, _>(5)?),
        title: text(row, 6)?,
        conflicts: conflicts.map(|c| c.lines().map(str::to_string).collect()).unwrap_or_default(),
        merged_root: merged.as_deref().map(parse_oid).transpose()?,
        author: text(row, 9)?,
        created_at: row.try_get(10)?,
        updated_at: row.try_get(11)?,
    })
}

impl Store {
    /// Records directory commits derived from root commits (ahead of the
    /// root commits' landing: rows of a root commit that never lands are
    /// never read, since histories are walked from heads).
    pub async fn add_dir_commits(&self, repo_id: i64, rows: &[(ObjectId, String, ObjectId)]) -> Result<(), Error> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        self.insert_dir_commits(&mut tx, repo_id, rows).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves the monorepo root's `main` from `base` to `new` by
    /// compare-and-swap, in one transaction with the directory commits
    /// `rows` derived for the new root commits and, when the
    /// directory-head index was current as of `base`, the directories'
    /// new heads (`heads`: path → newest directory commit, the null id for
    /// a directory gone). `false`: `main` moved meanwhile and nothing was
    /// recorded.
    pub async fn advance_root(
        &self,
        repo_id: i64,
        base: Option<ObjectId>,
        new: ObjectId,
        rows: &[(ObjectId, String, ObjectId)],
        heads: &[(String, ObjectId)],
    ) -> Result<bool, Error> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        self.bump_version(&mut tx, repo_id).await?;
        let update = crate::RefUpdate { name: "refs/heads/main".into(), old: base, new: Some(new), peeled: None };
        if self.apply_one(&mut tx, repo_id, &update).await? != crate::RefOutcome::Updated {
            tx.rollback().await?;
            return Ok(false);
        }
        self.insert_dir_commits(&mut tx, repo_id, rows).await?;
        let current = match base {
            // A new history: the index starts with it.
            None => {
                for table in ["dir_heads", "dir_heads_state"] {
                    let sql = self.sql(&format!("DELETE FROM {table} WHERE repo_id = ?"));
                    sqlx::query(&sql).bind(repo_id).execute(&mut *tx).await?;
                }
                let sql = self.sql("INSERT INTO dir_heads_state (repo_id, root_commit) VALUES (?, ?)");
                sqlx::query(&sql).bind(repo_id).bind(new.to_string()).execute(&mut *tx).await?;
                true
            }
            Some(base) => {
                let sql = self.sql("UPDATE dir_heads_state SET root_commit = ? WHERE repo_id = ? AND root_commit = ?");
                let moved = sqlx::query(&sql)
                    .bind(new.to_string())
                    .bind(repo_id)
                    .bind(base.to_string())
                    .execute(&mut *tx)
                    .await?;
                moved.rows_affected() == 1
            }
        };
        if current {
            self.upsert_dir_heads(&mut tx, repo_id, heads).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_dir_commits(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        repo_id: i64,
        rows: &[(ObjectId, String, ObjectId)],
    ) -> Result<(), Error> {
        for batch in rows.chunks(300) {
            let mut binds = Vec::with_capacity(batch.len() * 4);
            for (root, path, dir) in batch {
                binds.extend([
                    BindValue::Int(repo_id),
                    root.to_string().into(),
                    path.clone().into(),
                    dir.to_string().into(),
                ]);
            }
            let sql = self.insert_ignore("dir_commits (repo_id, root_commit, path, dir_commit)", 4, batch.len());
            crate::bind_all(sqlx::query(&sql), binds).execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn upsert_dir_heads(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        repo_id: i64,
        heads: &[(String, ObjectId)],
    ) -> Result<(), Error> {
        for batch in heads.chunks(300) {
            let mut binds = Vec::with_capacity(batch.len() * 3);
            for (path, dir) in batch {
                binds.extend([BindValue::Int(repo_id), path.clone().into(), dir.to_string().into()]);
            }
            let values = vec!["(?, ?, ?)"; batch.len()].join(", ");
            let sql = match self.dialect {
                crate::Dialect::Mysql => format!(
                    "INSERT INTO dir_heads (repo_id, path, dir_commit) VALUES {values} \
                     ON DUPLICATE KEY UPDATE dir_commit = VALUES(dir_commit)"
                ),
                _ => format!(
                    "INSERT INTO dir_heads (repo_id, path, dir_commit) VALUES {values} \
                     ON CONFLICT (repo_id, path) DO UPDATE SET dir_commit = excluded.dir_commit"
                ),
            };
            crate::bind_all(sqlx::query(&self.sql(&sql)), binds).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The head of directory `path` as of root commit `at` from the
    /// directory-head index: `Some(None)` when the directory does not
    /// exist there, `None` when the index is not current as of `at` (the
    /// caller walks the history instead).
    pub async fn indexed_dir_head(
        &self,
        repo_id: i64,
        path: &str,
        at: &ObjectId,
    ) -> Result<Option<Option<ObjectId>>, Error> {
        let sql = self.sql(
            "SELECT s.root_commit, h.dir_commit FROM dir_heads_state s \
             LEFT JOIN dir_heads h ON h.repo_id = s.repo_id AND h.path = ? WHERE s.repo_id = ?",
        );
        let Some(row) = sqlx::query(&sql).bind(path).bind(repo_id).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        if parse_oid(&row.try_get::<String, _>(0)?)? != *at {
            return Ok(None);
        }
        let head: Option<String> = row.try_get(1)?;
        let head = head.as_deref().map(parse_oid).transpose()?;
        Ok(Some(head.filter(|h| !h.is_null())))
    }

    /// The root commit the directory-head index is current as of.
    pub async fn dir_heads_as_of(&self, repo_id: i64) -> Result<Option<ObjectId>, Error> {
        let sql = self.sql("SELECT root_commit FROM dir_heads_state WHERE repo_id = ?");
        let row = sqlx::query(&sql).bind(repo_id).fetch_optional(&self.pool).await?;
        row.map(|r| parse_oid(&r.try_get::<String, _>(0)?)).transpose()
    }

    /// Rebuilds the directory-head index as of root commit `head` in one
    /// pass over `dir_commits`: `rank` gives each root commit of `head`'s
    /// first-parent history its distance from `head` (rows of root commits
    /// outside it, left by merges that lost a race, are skipped); each
    /// path's head is its row of the nearest root commit.
    pub async fn rebuild_dir_heads(
        &self,
        repo_id: i64,
        head: ObjectId,
        rank: &HashMap<ObjectId, usize>,
    ) -> Result<usize, Error> {
        use futures::TryStreamExt;
        let mut best: HashMap<String, (usize, ObjectId)> = HashMap::new();
        {
            let sql = self.sql("SELECT root_commit, path, dir_commit FROM dir_commits WHERE repo_id = ?");
            let mut rows = sqlx::query(&sql).bind(repo_id).fetch(&self.pool);
            while let Some(row) = rows.try_next().await? {
                let root = parse_oid(&row.try_get::<String, _>(0)?)?;
                let Some(r) = rank.get(&root).copied() else { continue };
                let path: String = row.try_get(1)?;
                if best.get(&path).is_none_or(|(b, _)| r < *b) {
                    let dir = parse_oid(&row.try_get::<String, _>(2)?)?;
                    best.insert(path, (r, dir));
                }
            }
        }
        let heads: Vec<(String, ObjectId)> = best.into_iter().map(|(p, (_, d))| (p, d)).collect();
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        for table in ["dir_heads", "dir_heads_state"] {
            let sql = self.sql(&format!("DELETE FROM {table} WHERE repo_id = ?"));
            sqlx::query(&sql).bind(repo_id).execute(&mut *tx).await?;
        }
        self.upsert_dir_heads(&mut tx, repo_id, &heads).await?;
        let sql = self.sql("INSERT INTO dir_heads_state (repo_id, root_commit) VALUES (?, ?)");
        sqlx::query(&sql).bind(repo_id).bind(head.to_string()).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(heads.len())
    }

    /// Every recorded (root commit → directory commit) pair for `path`.
    pub async fn dir_commits(&self, repo_id: i64, path: &str) -> Result<HashMap<ObjectId, ObjectId>, Error> {
        let sql = self.sql("SELECT root_commit, dir_commit FROM dir_commits WHERE repo_id = ? AND path = ?");
        let rows = sqlx::query(&sql).bind(repo_id).bind(path).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((parse_oid(&r.try_get::<String, _>(0)?)?, parse_oid(&r.try_get::<String, _>(1)?)?)))
            .collect()
    }

    /// Makes the objects and commits of `pack_id` in `from` visible in `to`
    /// too (an import repository's pushes become part of the monorepo).
    pub async fn share_pack(&self, from: i64, to: i64, pack_id: i64) -> Result<(), Error> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let version = self.bump_version(&mut tx, to).await?;
        let (ignore, conflict) = match self.dialect {
            crate::Dialect::Mysql => ("IGNORE ", ""),
            _ => ("", " ON CONFLICT DO NOTHING"),
        };
        let sql = self.sql(&format!(
            "INSERT {ignore}INTO objects (repo_id, oid, kind, size, pack_id, pack_offset, pack_end, delta_base, added_version)
             SELECT ?, oid, kind, size, pack_id, pack_offset, pack_end, delta_base, ? FROM objects WHERE repo_id = ? AND pack_id = ?{conflict}"
        ));
        sqlx::query(&sql).bind(to).bind(version).bind(from).bind(pack_id).execute(&mut *tx).await?;
        let sql = self.sql(&format!(
            "INSERT {ignore}INTO commits (repo_id, oid, tree, parents, generation, commit_time, pack_id, added_version)
             SELECT ?, oid, tree, parents, generation, commit_time, pack_id, ? FROM commits WHERE repo_id = ? AND pack_id = ?{conflict}"
        ));
        sqlx::query(&sql).bind(to).bind(version).bind(from).bind(pack_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Pack ids holding objects of `repo_id`, oldest first.
    pub async fn repo_pack_ids(&self, repo_id: i64) -> Result<Vec<i64>, Error> {
        let sql = self.sql("SELECT DISTINCT pack_id FROM objects WHERE repo_id = ? ORDER BY pack_id");
        let rows = sqlx::query(&sql).bind(repo_id).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    pub async fn set_repo_kind(&self, repo_id: i64, kind: RepoKind) -> Result<(), Error> {
        let _guard = self.write_guard().await;
        let sql = self.sql("UPDATE repos SET kind = ?, updated_at = ? WHERE id = ?");
        sqlx::query(&sql).bind(kind.as_str()).bind(now()).bind(repo_id).execute(&self.pool).await?;
        Ok(())
    }

    /// Opens a merge request, or moves the open one for the same path and
    /// branch to the new head. Returns it and whether it was new.
    pub async fn upsert_mr(
        &self,
        path: &str,
        branch: &str,
        base: Option<ObjectId>,
        head: ObjectId,
        title: &str,
        author: &str,
    ) -> Result<(MergeRequest, bool), Error> {
        let existing = {
            let sql = self.sql(&format!(
                "SELECT {MR_COLUMNS} FROM merge_requests WHERE path = ? AND branch = ? AND status IN ('open', 'conflict') ORDER BY id DESC"
            ));
            let row = sqlx::query(&sql).bind(path).bind(branch).fetch_optional(&self.pool).await?;
            row.as_ref().map(mr_from_row).transpose()?
        };
        let _guard = self.write_guard().await;
        let now = now();
        let (id, created) = match existing {
            Some(mr) => {
                let sql = self.sql("UPDATE merge_requests SET base_commit = ?, head_commit = ?, title = ?, status = 'open', conflicts = NULL, updated_at = ? WHERE id = ?");
                sqlx::query(&sql)
                    .bind(base.map(|b| b.to_string()))
                    .bind(head.to_string())
                    .bind(title)
                    .bind(now)
                    .bind(mr.id)
                    .execute(&self.pool)
                    .await?;
                (mr.id, false)
            }
            None => {
                let id = self
                    .insert_id(
                        &self.pool,
                        "INSERT INTO merge_requests (path, branch, base_commit, head_commit, status, title, author, created_at, updated_at) VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?)",
                        vec![path.into(), branch.into(), base.map(|b| b.to_string()).into(), head.to_string().into(), title.into(), author.into(), now.into(), now.into()],
                    )
                    .await?;
                (id, true)
            }
        };
        drop(_guard);
        let mr = self.mr(id).await?.ok_or_else(|| Error::Corrupt(format!("merge request {id} vanished")))?;
        Ok((mr, created))
    }

    pub async fn mr(&self, id: i64) -> Result<Option<MergeRequest>, Error> {
        let sql = self.sql(&format!("SELECT {MR_COLUMNS} FROM merge_requests WHERE id = ?"));
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(mr_from_row).transpose()
    }

    /// Merge requests, newest first, optionally only those with `status`.
    pub async fn list_mrs(&self, status: Option<MrStatus>) -> Result<Vec<MergeRequest>, Error> {
        let rows = match status {
            Some(s) => {
                let sql =
                    self.sql(&format!("SELECT {MR_COLUMNS} FROM merge_requests WHERE status = ? ORDER BY id DESC"));
                sqlx::query(&sql).bind(s.as_str()).fetch_all(&self.pool).await?
            }
            None => {
                sqlx::query(&format!("SELECT {MR_COLUMNS} FROM merge_requests ORDER BY id DESC"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(mr_from_row).collect()
    }

    /// Sets a merge request's status, guarded by its current status
    /// (compare-and-swap); returns whether it changed.
    pub async fn set_mr_status(
        &self,
        id: i64,
        from: &[MrStatus],
        to: MrStatus,
        conflicts: &[String],
        merged_root: Option<ObjectId>,
    ) -> Result<bool, Error> {
        let _guard = self.write_guard().await;
        let allowed: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let sql = self.sql(&format!(
            "UPDATE merge_requests SET status = ?, conflicts = ?, merged_root = ?, updated_at = ? WHERE id = ? AND status IN ({})",
            allowed.join(", ")
        ));
        let conflicts = (!conflicts.is_empty()).then(|| conflicts.join("\n"));
        let done = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(conflicts)
            .bind(merged_root.map(|r| r.to_string()))
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
