//! Where pack bytes live: files under the data dir, chunks in the database,
//! or objects in an S3 bucket (both materialized into a local cache file
//! for random reads).
//!
//! Every backend has the same three steps: `put` while the registering
//! transaction is open, `pack_path` to get a readable file, and `forget` if
//! the transaction rolls back.

use std::path::{Path, PathBuf};

use sqlx::Row;

use crate::storage::Bucket;
use crate::{Error, Store};

/// How pack bytes are kept; chosen at start-up by configuration.
#[derive(Debug, Clone)]
pub enum PackStorage {
    Files { dir: PathBuf },
    Database { cache_dir: PathBuf },
    S3 { bucket: Bucket, cache_dir: PathBuf },
}

/// Database rows are kept well under MySQL's default max_allowed_packet.
const CHUNK: usize = 8 << 20;

impl PackStorage {
    pub fn kind(&self) -> &'static str {
        match self {
            PackStorage::Files { .. } => "file",
            PackStorage::Database { .. } => "database",
            PackStorage::S3 { .. } => "s3",
        }
    }

    fn file_name(pack_id: i64) -> String {
        format!("pack-{pack_id:010}.pack")
    }

    /// A pack's object name in a bucket.
    pub(crate) fn object_name(pack_id: i64) -> String {
        format!("packs/{}", PackStorage::file_name(pack_id))
    }

    /// Where a local copy of the pack is (the file itself, or its cache).
    fn local(&self, pack_id: i64) -> PathBuf {
        match self {
            PackStorage::Files { dir } => dir.join(PackStorage::file_name(pack_id)),
            PackStorage::Database { cache_dir } | PackStorage::S3 { cache_dir, .. } => {
                cache_dir.join(PackStorage::file_name(pack_id))
            }
        }
    }

    /// A directory on the same file system as the stored packs, for spooling
    /// incoming packs so that storing them is a rename.
    pub fn spool_dir(&self) -> PathBuf {
        match self {
            PackStorage::Files { dir } => dir.join("incoming"),
            PackStorage::Database { cache_dir } | PackStorage::S3 { cache_dir, .. } => cache_dir.join("incoming"),
        }
    }

    /// A new spool file, locked for as long as it is open, so that
    /// [`PackStorage::clean_spool`] in another process sharing the data
    /// directory never takes a live push's file.
    pub fn new_spool(&self) -> std::io::Result<tempfile::NamedTempFile> {
        let dir = self.spool_dir();
        std::fs::create_dir_all(&dir)?;
        let spooled = tempfile::Builder::new().prefix("spool-").tempfile_in(&dir)?;
        spooled.as_file().try_lock().map_err(std::io::Error::other)?;
        Ok(spooled)
    }

    /// Removes spool files that no live process holds (pushes killed before
    /// they were stored); returns how many bytes were freed.
    pub fn clean_spool(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(self.spool_dir()) else { return 0 };
        let mut freed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(&path) else { continue };
            // A live push holds its lock; a killed one's died with it.
            if file.try_lock().is_ok() {
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                if std::fs::remove_file(&path).is_ok() {
                    freed += size;
                }
            }
        }
        freed
    }
}

impl Store {
    /// Removes pack files that no `packs` row names: a process killed
    /// after moving a pack into place but before its transaction committed
    /// leaves one. A live writer still holds the lock it took on the spool
    /// file, so its pack is skipped; the row is looked up only once the
    /// lock is held, since the writer releases it after committing.
    /// Returns how many bytes were freed.
    pub async fn clean_orphan_packs(&self) -> Result<u64, Error> {
        let PackStorage::Files { dir } = &self.packs else { return Ok(0) };
        let Ok(entries) = std::fs::read_dir(dir) else { return Ok(0) };
        let mut freed = 0;
        let sql = self.sql("SELECT COUNT(*) FROM packs WHERE id = ?");
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("pack-"))
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(&path) else { continue };
            if file.try_lock().is_err() {
                continue;
            }
            let rows: i64 = sqlx::query(&sql).bind(id).fetch_one(&self.pool).await?.try_get(0)?;
            if rows == 0 {
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                if std::fs::remove_file(&path).is_ok() {
                    tracing::info!("removed pack file {} that no stored pack names", path.display());
                    freed += size;
                }
            }
        }
        Ok(freed)
    }

    /// Moves the spooled pack into storage as `pack_id`, inside `tx`.
    pub(crate) async fn put_pack(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        pack_id: i64,
        spooled: &Path,
    ) -> Result<String, Error> {
        match &self.packs {
            PackStorage::Files { dir } => {
                tokio::fs::create_dir_all(dir).await?;
                let name = PackStorage::file_name(pack_id);
                tokio::fs::rename(spooled, dir.join(&name)).await?;
                Ok(name)
            }
            PackStorage::Database { .. } => {
                let mut file = tokio::fs::File::open(spooled).await?;
                let mut buf = vec![0u8; CHUNK];
                let mut seq = 0i64;
                loop {
                    let filled = crate::storage::read_full(&mut file, &mut buf).await?;
                    if filled == 0 {
                        break;
                    }
                    let sql = self.sql("INSERT INTO pack_chunks (pack_id, seq, data) VALUES (?, ?, ?)");
                    sqlx::query(&sql).bind(pack_id).bind(seq).bind(&buf[..filled]).execute(&mut **tx).await?;
                    seq += 1;
                }
                let _ = tokio::fs::remove_file(spooled).await;
                Ok(format!("chunks:{seq}"))
            }
            PackStorage::S3 { bucket, cache_dir } => {
                // In the bucket before the row that names it commits; the
                // spooled file stays as this process's cached copy.
                let name = PackStorage::object_name(pack_id);
                bucket.upload_file(&name, spooled).await?;
                tokio::fs::create_dir_all(cache_dir).await?;
                tokio::fs::rename(spooled, cache_dir.join(PackStorage::file_name(pack_id))).await?;
                Ok(format!("s3:{name}"))
            }
        }
    }

    /// Undoes [`Store::put_pack`]'s file side after a rolled-back
    /// transaction, or drops the local copy of a pack no longer stored.
    pub(crate) async fn forget_pack(&self, pack_id: i64) {
        let _ = tokio::fs::remove_file(self.packs.local(pack_id)).await;
        if let PackStorage::S3 { bucket, .. } = &self.packs {
            if let Err(e) = bucket.delete(&PackStorage::object_name(pack_id)).await {
                tracing::warn!("pack {pack_id} stays in {} unused: {e}", bucket.label());
            }
        }
    }

    /// A local file holding the pack, fetching it from the database or the
    /// bucket first when packs are stored there.
    pub async fn pack_path(&self, pack_id: i64) -> Result<PathBuf, Error> {
        match &self.packs {
            PackStorage::Files { dir } => Ok(dir.join(PackStorage::file_name(pack_id))),
            PackStorage::S3 { bucket, .. } => {
                let path = self.packs.local(pack_id);
                if tokio::fs::metadata(&path).await.is_err() {
                    bucket.download(&PackStorage::object_name(pack_id), &path).await?;
                }
                Ok(path)
            }
            PackStorage::Database { cache_dir } => {
                let path = cache_dir.join(PackStorage::file_name(pack_id));
                if tokio::fs::metadata(&path).await.is_ok() {
                    return Ok(path);
                }
                tokio::fs::create_dir_all(cache_dir).await?;
                let tmp = cache_dir.join(format!("{}.tmp-{}", PackStorage::file_name(pack_id), rand::random::<u64>()));
                let mut out = Vec::new();
                let mut seq = 0i64;
                let sql = self.sql("SELECT data FROM pack_chunks WHERE pack_id = ? AND seq = ?");
                let mut file = tokio::fs::File::create(&tmp).await?;
                loop {
                    let row = sqlx::query(&sql).bind(pack_id).bind(seq).fetch_optional(&self.pool).await?;
                    let Some(row) = row else { break };
                    out.clear();
                    out = row.try_get(0)?;
                    tokio::io::AsyncWriteExt::write_all(&mut file, &out).await?;
                    seq += 1;
                }
                if seq == 0 {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(Error::Corrupt(format!("pack {pack_id} has no stored chunks")));
                }
                tokio::io::AsyncWriteExt::flush(&mut file).await?;
                tokio::fs::rename(&tmp, &path).await?;
                Ok(path)
            }
        }
    }
}
