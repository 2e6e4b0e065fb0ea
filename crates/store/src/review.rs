//! Reviews of merge requests: comments (on the request, or on a line of a
//! file), approvals, and how many approvals a path requires.
//!
//! An approval is of the head commit the reviewer saw: a push that moves
//! the head leaves it in the table but it no longer counts, and the page
//! can show what changed since (`reviewed` head to current head). Comments
//! stay whatever is pushed.

use sqlx::Row;

use crate::{now, opt_text, text, Error, ObjectId, Store};

/// One comment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Comment {
    pub id: i64,
    pub mr_id: i64,
    pub author: String,
    pub body: String,
    /// The file (relative to the request's directory) and line it is on.
    pub file: Option<String>,
    pub line: Option<i64>,
    /// The head commit the author was looking at.
    pub head: String,
    pub created_at: i64,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Approval {
    pub user: String,
    /// The head commit approved.
    pub head: String,
    pub created_at: i64,
}

/// The longest comment accepted.
pub const MAX_COMMENT_BYTES: usize = 64 << 10;

impl Store {
    pub async fn add_comment(
        &self,
        mr_id: i64,
        author: &str,
        body: &str,
        file: Option<&str>,
        line: Option<i64>,
        head: ObjectId,
    ) -> Result<Comment, Error> {
        if body.trim().is_empty() || body.len() > MAX_COMMENT_BYTES {
            return Err(Error::Invalid(format!("a comment has 1 to {MAX_COMMENT_BYTES} bytes")));
        }
        if file.is_some_and(|f| f.is_empty() || f.len() > 4096 || f.split('/').any(|p| p.is_empty() || p == "..")) {
            return Err(Error::Invalid("the file must be a path inside the merge request's directory".into()));
        }
        if line.is_some_and(|l| l < 1) || (line.is_some() && file.is_none()) {
            return Err(Error::Invalid("a line (1 or more) goes with a file".into()));
        }
        let _guard = self.write_guard().await;
        let created_at = now();
        let id = self
            .insert_id(
                &self.pool,
                "INSERT INTO mr_comments (mr_id, author, body, file, line, head_commit, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                vec![
                    mr_id.into(),
                    author.into(),
                    body.into(),
                    file.map(str::to_string).into(),
                    line.into(),
                    head.to_string().into(),
                    created_at.into(),
                ],
            )
            .await?;
        Ok(Comment {
            id,
            mr_id,
            author: author.to_string(),
            body: body.to_string(),
            file: file.map(str::to_string),
            line,
            head: head.to_string(),
            created_at,
        })
    }

    pub async fn comments(&self, mr_id: i64) -> Result<Vec<Comment>, Error> {
        let sql = self.sql(
            "SELECT id, mr_id, author, body, file, line, head_commit, created_at FROM mr_comments WHERE mr_id = ? ORDER BY id",
        );
        let rows = sqlx::query(&sql).bind(mr_id).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(Comment {
                    id: r.try_get(0)?,
                    mr_id: r.try_get(1)?,
                    author: text(r, 2)?,
                    body: text(r, 3)?,
                    file: opt_text(r, 4)?,
                    line: r.try_get(5)?,
                    head: text(r, 6)?,
                    created_at: r.try_get(7)?,
                })
            })
            .collect()
    }

    /// Records `user`'s approval of `head` (replacing an earlier one).
    pub async fn approve(&self, mr_id: i64, user: &str, head: ObjectId) -> Result<(), Error> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(&self.sql("DELETE FROM mr_approvals WHERE mr_id = ? AND user_name = ?"))
            .bind(mr_id)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            &self.sql("INSERT INTO mr_approvals (mr_id, user_name, head_commit, created_at) VALUES (?, ?, ?, ?)"),
        )
        .bind(mr_id)
        .bind(user)
        .bind(head.to_string())
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every approval recorded, current or not (compare `head`).
    pub async fn approvals(&self, mr_id: i64) -> Result<Vec<Approval>, Error> {
        let sql =
            self.sql("SELECT user_name, head_commit, created_at FROM mr_approvals WHERE mr_id = ? ORDER BY created_at");
        let rows = sqlx::query(&sql).bind(mr_id).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(Approval { user: text(r, 0)?, head: text(r, 1)?, created_at: r.try_get(2)? })).collect()
    }

    /// Sets how many maintainer approvals merges below `path` need (0: none).
    pub async fn set_required_approvals(&self, path: &str, count: i64) -> Result<(), Error> {
        if !(0..=20).contains(&count) {
            return Err(Error::Invalid("required approvals are 0 to 20".into()));
        }
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(&self.sql("DELETE FROM path_settings WHERE path = ?")).bind(path).execute(&mut *tx).await?;
        sqlx::query(&self.sql("INSERT INTO path_settings (path, required_approvals) VALUES (?, ?)"))
            .bind(path)
            .bind(count)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The approvals a merge at `path` needs: the setting of `path` or of
    /// its nearest ancestor that has one, with where it was set.
    pub async fn required_approvals(&self, path: &str) -> Result<(i64, String), Error> {
        let rows = sqlx::query("SELECT path, required_approvals FROM path_settings").fetch_all(&self.pool).await?;
        let mut best: Option<(String, i64)> = None;
        for r in &rows {
            let p = text(r, 0)?;
            let n: i64 = r.try_get(1)?;
            if crate::hooks::covers(&p, path) && best.as_ref().is_none_or(|(b, _)| p.len() > b.len()) {
                best = Some((p, n));
            }
        }
        Ok(best.map(|(p, n)| (n, p)).unwrap_or((0, "/".into())))
    }
}
