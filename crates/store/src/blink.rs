//! The cache behind b-link lite views (see `tessera_repo::blink`).
//!
//! A lite commit is a pure function of a full commit and the threshold, so
//! these rows are a cache, never a second truth: dropping them costs the
//! next clone a rebuild and changes nothing it is served. Two tables:
//! - `blink_commits`: full commit → lite commit, per threshold (looked up
//!   both ways: serving goes full → lite, a push to a lite view lite → full);
//! - `blink_blobs`: which blobs a lite view of a directory replaced by
//!   b-link files, so `blob-by-id` serves a blob only to callers who can
//!   read a directory it lies in, and a pushed b-link file names only such
//!   a blob.

use sqlx::Row;

use crate::{parse_oid, BindValue, Error, ObjectId, Store};

impl Store {
    /// The lite commit of `full` at `threshold`, if it was built.
    pub async fn blink_lite_of(
        &self,
        repo_id: i64,
        threshold: u64,
        full: &ObjectId,
    ) -> Result<Option<ObjectId>, Error> {
        let sql =
            self.sql("SELECT lite_commit FROM blink_commits WHERE repo_id = ? AND threshold = ? AND full_commit = ?");
        let row = sqlx::query(&sql)
            .bind(repo_id)
            .bind(threshold as i64)
            .bind(full.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| parse_oid(&r.try_get::<String, _>(0)?)).transpose()
    }

    /// The full commit whose lite commit at `threshold` is `lite`.
    pub async fn blink_full_of(
        &self,
        repo_id: i64,
        threshold: u64,
        lite: &ObjectId,
    ) -> Result<Option<ObjectId>, Error> {
        let sql =
            self.sql("SELECT full_commit FROM blink_commits WHERE repo_id = ? AND threshold = ? AND lite_commit = ?");
        let row = sqlx::query(&sql)
            .bind(repo_id)
            .bind(threshold as i64)
            .bind(lite.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| parse_oid(&r.try_get::<String, _>(0)?)).transpose()
    }

    /// Records full → lite pairs at `threshold`, and the blobs the lite
    /// view of `path` replaced, in one transaction (after the lite objects
    /// were stored: a row never names an object the store lacks).
    pub async fn add_blink(
        &self,
        repo_id: i64,
        threshold: u64,
        commits: &[(ObjectId, ObjectId)],
        path: &str,
        blobs: &[ObjectId],
    ) -> Result<(), Error> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        for batch in commits.chunks(250) {
            let mut binds = Vec::with_capacity(batch.len() * 4);
            for (full, lite) in batch {
                binds.extend([
                    BindValue::Int(repo_id),
                    BindValue::Int(threshold as i64),
                    full.to_string().into(),
                    lite.to_string().into(),
                ]);
            }
            let sql =
                self.insert_ignore("blink_commits (repo_id, threshold, full_commit, lite_commit)", 4, batch.len());
            crate::bind_all(sqlx::query(&sql), binds).execute(&mut *tx).await?;
        }
        for batch in blobs.chunks(300) {
            let mut binds = Vec::with_capacity(batch.len() * 3);
            for blob in batch {
                binds.extend([BindValue::Int(repo_id), path.to_string().into(), blob.to_string().into()]);
            }
            let sql = self.insert_ignore("blink_blobs (repo_id, path, blob_id)", 3, batch.len());
            crate::bind_all(sqlx::query(&sql), binds).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The directories whose lite views replaced `blob` by a b-link file.
    pub async fn blink_blob_paths(&self, repo_id: i64, blob: &ObjectId) -> Result<Vec<String>, Error> {
        let sql = self.sql("SELECT path FROM blink_blobs WHERE repo_id = ? AND blob_id = ? ORDER BY path");
        let rows = sqlx::query(&sql).bind(repo_id).bind(blob.to_string()).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get::<String, _>(0)?)).collect()
    }
}
