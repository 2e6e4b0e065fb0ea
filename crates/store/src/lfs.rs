//! Git LFS objects and locks.
//!
//! An object's bytes are stored once (`lfs_objects`, and a file named by
//! its SHA-256 under `lfs/` in the data directory), but an object is
//! visible only at the paths it was uploaded to or pushed with
//! (`lfs_paths`), and below them: reading a path means reading everything
//! below it, so a reader of `/projects/x` or of `/` sees what was uploaded
//! to `/projects/x`, and nobody else learns it exists. Locks are on
//! monorepo paths of files (`/projects/x/big.bin`), whatever repository
//! or directory the client talked to.

use std::path::{Path, PathBuf};

use sqlx::Row;

use crate::{now, text, Error, Store};

/// One LFS lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LfsLock {
    pub id: i64,
    /// The locked file's monorepo path.
    pub path: String,
    pub owner_id: i64,
    pub owner: String,
    pub locked_at: i64,
}

/// Where LFS object bytes live: `<data>/lfs/objects/ab/cd/<oid>`, written
/// through `<data>/lfs/tmp` and renamed in once verified.
#[derive(Debug, Clone)]
pub struct LfsStorage {
    root: PathBuf,
}

impl LfsStorage {
    pub fn new(data_dir: &Path) -> LfsStorage {
        LfsStorage { root: data_dir.join("lfs") }
    }

    /// The file of a stored object (`oid` must be 64 lowercase hex digits).
    pub fn path(&self, oid: &str) -> PathBuf {
        self.root.join("objects").join(&oid[..2]).join(&oid[2..4]).join(oid)
    }

    /// A new, empty file for an upload, removed when dropped unless kept.
    pub fn upload_file(&self) -> std::io::Result<tempfile::NamedTempFile> {
        let dir = self.root.join("tmp");
        std::fs::create_dir_all(&dir)?;
        tempfile::Builder::new().prefix("upload-").tempfile_in(dir)
    }

    /// Moves a verified upload into place. An object already there (a
    /// racing upload of the same content) is kept.
    pub fn keep(&self, upload: tempfile::NamedTempFile, oid: &str) -> std::io::Result<()> {
        let path = self.path(oid);
        if path.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(path.parent().expect("object paths have a parent"))?;
        upload.as_file().sync_all()?;
        upload.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Removes upload files no process wrote to for an hour (killed uploads).
    pub fn clean_uploads(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(self.root.join("tmp")) else { return 0 };
        let mut freed = 0;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let stale = meta.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age.as_secs() > 3600);
            if stale && std::fs::remove_file(entry.path()).is_ok() {
                freed += meta.len();
            }
        }
        freed
    }
}

/// `path` and everything below it, as a LIKE pattern with `!` escapes.
fn below(path: &str) -> String {
    let escaped = path.trim_end_matches('/').replace('!', "!!").replace('%', "!%").replace('_', "!_");
    format!("{escaped}/%")
}

const LOCK_COLUMNS: &str =
    "l.id, l.path, l.owner_id, u.name, l.created_at FROM lfs_locks l JOIN users u ON u.id = l.owner_id";

fn lock_from_row(row: &sqlx::any::AnyRow) -> Result<LfsLock, Error> {
    Ok(LfsLock {
        id: row.try_get(0)?,
        path: text(row, 1)?,
        owner_id: row.try_get(2)?,
        owner: text(row, 3)?,
        locked_at: row.try_get(4)?,
    })
}

impl Store {
    pub fn lfs_storage(&self) -> LfsStorage {
        LfsStorage::new(&self.data_dir)
    }

    /// The size of object `oid` if it is stored and visible at `path`
    /// (uploaded or pushed at `path` or below it).
    pub async fn lfs_visible(&self, oid: &str, path: &str) -> Result<Option<u64>, Error> {
        let sql = if path == "/" {
            self.sql("SELECT o.size FROM lfs_objects o WHERE o.oid = ? AND EXISTS (SELECT 1 FROM lfs_paths p WHERE p.oid = o.oid)")
        } else {
            self.sql(
                "SELECT o.size FROM lfs_objects o WHERE o.oid = ? AND EXISTS \
                 (SELECT 1 FROM lfs_paths p WHERE p.oid = o.oid AND (p.path = ? OR p.path LIKE ? ESCAPE '!'))",
            )
        };
        let mut q = sqlx::query(&sql).bind(oid);
        if path != "/" {
            q = q.bind(path).bind(below(path));
        }
        let row = q.fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?.map(|s| s as u64))
    }

    /// Whether the object's bytes are stored at all (whoever may see them).
    pub async fn lfs_stored(&self, oid: &str) -> Result<Option<u64>, Error> {
        let row = sqlx::query(&self.sql("SELECT size FROM lfs_objects WHERE oid = ?"))
            .bind(oid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?.map(|s| s as u64))
    }

    /// Records object `oid` (its bytes already in [`LfsStorage`]) and makes
    /// it visible at `path`. Both rows are created only if missing.
    pub async fn add_lfs_object(&self, oid: &str, size: u64, path: &str) -> Result<(), Error> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query(&self.sql("SELECT 1 FROM lfs_objects WHERE oid = ?"))
            .bind(oid)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            sqlx::query(&self.sql("INSERT INTO lfs_objects (oid, size, created_at) VALUES (?, ?, ?)"))
                .bind(oid)
                .bind(size as i64)
                .bind(now())
                .execute(&mut *tx)
                .await?;
        }
        self.insert_lfs_path(&mut tx, oid, path).await?;
        match tx.commit().await {
            Ok(()) => Ok(()),
            // A racing upload of the same object at the same path won.
            Err(e) if self.lfs_visible(oid, path).await?.is_some() => {
                tracing::debug!("racing LFS upload of {oid}: {e}");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Makes stored objects visible at `path` too (a push that references
    /// them there).
    pub async fn add_lfs_paths(&self, oids: &[String], path: &str) -> Result<(), Error> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        for oid in oids {
            self.insert_lfs_path(&mut tx, oid, path).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn insert_lfs_path(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        oid: &str,
        path: &str,
    ) -> Result<(), Error> {
        let present = sqlx::query(&self.sql("SELECT 1 FROM lfs_paths WHERE path = ? AND oid = ?"))
            .bind(path)
            .bind(oid)
            .fetch_optional(&mut **tx)
            .await?
            .is_some();
        if !present {
            sqlx::query(&self.sql("INSERT INTO lfs_paths (path, oid, created_at) VALUES (?, ?, ?)"))
                .bind(path)
                .bind(oid)
                .bind(now())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    // ----- locks -----

    /// Locks the file at monorepo path `path` for `owner_id`; an existing
    /// lock on it is returned as `Err(Ok(lock))`.
    pub async fn create_lfs_lock(&self, path: &str, owner_id: i64) -> Result<Result<LfsLock, LfsLock>, Error> {
        let _guard = self.write_guard().await;
        if let Some(existing) = self.lfs_lock_at(path).await? {
            return Ok(Err(existing));
        }
        let inserted = self
            .insert_id(
                &self.pool,
                "INSERT INTO lfs_locks (path, owner_id, created_at) VALUES (?, ?, ?)",
                vec![path.into(), owner_id.into(), now().into()],
            )
            .await;
        match inserted {
            Ok(id) => Ok(Ok(self.lfs_lock(id).await?.ok_or_else(|| Error::Corrupt("lock vanished".into()))?)),
            // Another process took it first (unique path).
            Err(e) => match self.lfs_lock_at(path).await? {
                Some(existing) => Ok(Err(existing)),
                None => Err(e),
            },
        }
    }

    pub async fn lfs_lock(&self, id: i64) -> Result<Option<LfsLock>, Error> {
        let sql = self.sql(&format!("SELECT {LOCK_COLUMNS} WHERE l.id = ?"));
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(lock_from_row).transpose()
    }

    async fn lfs_lock_at(&self, path: &str) -> Result<Option<LfsLock>, Error> {
        let sql = self.sql(&format!("SELECT {LOCK_COLUMNS} WHERE l.path = ?"));
        let row = sqlx::query(&sql).bind(path).fetch_optional(&self.pool).await?;
        row.as_ref().map(lock_from_row).transpose()
    }

    /// Locks on files below `root` (a repository or directory path), by
    /// id, from id `after` on, at most `limit`.
    pub async fn lfs_locks_below(&self, root: &str, after: i64, limit: i64) -> Result<Vec<LfsLock>, Error> {
        let (sql, pattern) = if root == "/" {
            (format!("SELECT {LOCK_COLUMNS} WHERE l.id > ? ORDER BY l.id LIMIT ?"), None)
        } else {
            (
                format!("SELECT {LOCK_COLUMNS} WHERE l.path LIKE ? ESCAPE '!' AND l.id > ? ORDER BY l.id LIMIT ?"),
                Some(below(root)),
            )
        };
        let sql = self.sql(&sql);
        let mut q = sqlx::query(&sql);
        if let Some(p) = pattern {
            q = q.bind(p);
        }
        let rows = q.bind(after).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(lock_from_row).collect()
    }

    pub async fn delete_lfs_lock(&self, id: i64) -> Result<bool, Error> {
        let _guard = self.write_guard().await;
        let done = sqlx::query(&self.sql("DELETE FROM lfs_locks WHERE id = ?")).bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }
}
