//! Git LFS objects and locks.
//!
//! An object's bytes are stored once (`lfs_objects`, and its bytes named by
//! its SHA-256 in the configured storage: [`LfsStorage`]), but an object is
//! visible only at the paths it was uploaded to or pushed with
//! (`lfs_paths`), and below them: reading a path means reading everything
//! below it, so a reader of `/projects/x` or of `/` sees what was uploaded
//! to `/projects/x`, and nobody else learns it exists. Locks are on
//! monorepo paths of files (`/projects/x/big.bin`), whatever repository
//! or directory the client talked to.

use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use sqlx::Row;
use tokio::io::AsyncSeekExt;

use crate::storage::Bucket;
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

/// Where LFS object bytes live: uploads are written to
/// `<data>/lfs/tmp`, checked, and then kept by the configured backend:
/// `<data>/lfs/objects/ab/cd/<oid>`, 8 MiB chunks in `lfs_chunks`, or
/// `lfs/ab/cd/<oid>` in the bucket.
#[derive(Debug, Clone)]
pub struct LfsStorage {
    root: PathBuf,
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Files,
    Database,
    S3(Bucket),
}

/// Rows of `lfs_chunks`, well under MySQL's default max_allowed_packet.
const CHUNK: u64 = 8 << 20;

/// An object's bytes, or a range of them, as a stream.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

impl LfsStorage {
    pub(crate) fn files(data_dir: &Path) -> LfsStorage {
        LfsStorage { root: data_dir.join("lfs"), backend: Backend::Files }
    }

    pub(crate) fn database(data_dir: &Path) -> LfsStorage {
        LfsStorage { root: data_dir.join("lfs"), backend: Backend::Database }
    }

    pub(crate) fn s3(data_dir: &Path, bucket: Bucket) -> LfsStorage {
        LfsStorage { root: data_dir.join("lfs"), backend: Backend::S3(bucket) }
    }

    /// The file of a stored object when objects are files (`oid` must be
    /// 64 lowercase hex digits).
    fn path(&self, oid: &str) -> PathBuf {
        self.root.join("objects").join(&oid[..2]).join(&oid[2..4]).join(oid)
    }

    /// An object's name in a bucket.
    pub(crate) fn object_name(oid: &str) -> String {
        format!("lfs/{}/{}/{oid}", &oid[..2], &oid[2..4])
    }

    /// A new, empty file for an upload, removed when dropped unless kept.
    pub fn upload_file(&self) -> std::io::Result<tempfile::NamedTempFile> {
        let dir = self.root.join("tmp");
        std::fs::create_dir_all(&dir)?;
        tempfile::Builder::new().prefix("upload-").tempfile_in(dir)
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

/// Reads `length` bytes of a file from where it stands, 256 KiB at a time
/// into buffers that are reused once sent. A file shorter than that ends
/// the stream early, which the response's Content-Length makes an error.
fn file_stream(file: tokio::fs::File, length: u64) -> ByteStream {
    use tokio::io::AsyncReadExt;
    tokio_util::io::ReaderStream::with_capacity(file.take(length), 256 << 10).boxed()
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
    pub fn lfs_storage(&self) -> &LfsStorage {
        &self.lfs
    }

    /// Keeps a verified upload as object `oid` of `size` bytes. An object
    /// already kept (a racing upload of the same content) stays as it is.
    pub async fn keep_lfs_object(&self, upload: tempfile::NamedTempFile, oid: &str, size: u64) -> Result<(), Error> {
        match &self.lfs.backend {
            Backend::Files => {
                let path = self.lfs.path(oid);
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    if path.exists() {
                        return Ok(());
                    }
                    std::fs::create_dir_all(path.parent().expect("object paths have a parent"))?;
                    upload.as_file().sync_all()?;
                    upload.persist(&path).map_err(|e| e.error)?;
                    Ok(())
                })
                .await
                .map_err(std::io::Error::other)??;
            }
            Backend::Database => {
                let _write = self.write_guard().await;
                let mut tx = self.pool.begin().await?;
                let have = self.sql("SELECT COUNT(*) FROM lfs_chunks WHERE oid = ? AND seq = 0");
                let n: i64 = sqlx::query(&have).bind(oid).fetch_one(&mut *tx).await?.try_get(0)?;
                // An empty object has no chunk; reading it reads nothing.
                if n == 0 {
                    let mut file = tokio::fs::File::open(upload.path()).await?;
                    let insert = self.sql("INSERT INTO lfs_chunks (oid, seq, data) VALUES (?, ?, ?)");
                    let mut buf = vec![0u8; CHUNK as usize];
                    let mut seq = 0i64;
                    loop {
                        let filled = crate::storage::read_full(&mut file, &mut buf).await?;
                        if filled == 0 {
                            break;
                        }
                        sqlx::query(&insert).bind(oid).bind(seq).bind(&buf[..filled]).execute(&mut *tx).await?;
                        seq += 1;
                    }
                }
                tx.commit().await?;
            }
            Backend::S3(bucket) => {
                let name = LfsStorage::object_name(oid);
                if bucket.size(&name).await? != Some(size) {
                    bucket.upload_file(&name, upload.path()).await?;
                }
            }
        }
        Ok(())
    }

    /// Bytes `range` of object `oid` (whose size is `size`), as a stream.
    pub async fn read_lfs_object(&self, oid: &str, range: Range<u64>) -> Result<ByteStream, Error> {
        let length = range.end.saturating_sub(range.start);
        if length == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        match &self.lfs.backend {
            Backend::Files => {
                let mut file = tokio::fs::File::open(self.lfs.path(oid)).await?;
                file.seek(std::io::SeekFrom::Start(range.start)).await?;
                Ok(file_stream(file, length))
            }
            Backend::Database => {
                // One chunk row in memory at a time.
                let pool = self.pool.clone();
                let sql = self.sql("SELECT data FROM lfs_chunks WHERE oid = ? AND seq = ?");
                let oid = oid.to_string();
                let first = (range.start / CHUNK) as i64;
                let state = (pool, sql, oid, first, range.start % CHUNK, length);
                Ok(futures::stream::unfold(state, |(pool, sql, oid, seq, skip, left)| async move {
                    if left == 0 {
                        return None;
                    }
                    let row = sqlx::query(&sql).bind(&oid).bind(seq).fetch_optional(&pool).await;
                    let data: Vec<u8> = match row.map(|r| r.map(|r| r.try_get::<Vec<u8>, _>(0))) {
                        Ok(Some(Ok(data))) => data,
                        Ok(None) => {
                            let e = std::io::Error::other(format!("LFS object {oid} lacks chunk {seq}"));
                            return Some((Err(e), (pool, sql, oid, seq, 0, 0)));
                        }
                        Ok(Some(Err(e))) | Err(e) => {
                            return Some((Err(std::io::Error::other(e)), (pool, sql, oid, seq, 0, 0)));
                        }
                    };
                    let start = (skip as usize).min(data.len());
                    let end = (start as u64 + left).min(data.len() as u64) as usize;
                    let part = Bytes::copy_from_slice(&data[start..end]);
                    let taken = part.len() as u64;
                    if taken == 0 {
                        let e = std::io::Error::other(format!("LFS object {oid} ends early"));
                        return Some((Err(e), (pool, sql, oid, seq, 0, 0)));
                    }
                    Some((Ok(part), (pool, sql, oid, seq + 1, 0, left - taken)))
                })
                .boxed())
            }
            Backend::S3(bucket) => Ok(bucket.read(&LfsStorage::object_name(oid), Some(range)).await?),
        }
    }

    /// A URL that downloads object `oid` from the bucket itself for
    /// `expires`, when objects are in a bucket.
    pub async fn lfs_presigned_url(&self, oid: &str, expires: std::time::Duration) -> Result<Option<String>, Error> {
        match &self.lfs.backend {
            Backend::S3(bucket) => Ok(Some(bucket.presigned_get(&LfsStorage::object_name(oid), expires).await?)),
            _ => Ok(None),
        }
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
