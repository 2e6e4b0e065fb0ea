//! Registering a received pack: the pack row, its objects and its commits,
//! in one transaction.

use std::collections::HashMap;
use std::path::Path;

use sqlx::Row;
use tessera_pack::Kind;

use crate::{now, parse_oid, BindValue, Error, ObjectId, Store};

/// A pack about to be stored.
#[derive(Debug, Clone, Copy)]
pub struct NewPack {
    pub checksum: ObjectId,
    pub size: u64,
}

/// A spooled pack with the rows that describe it, ready to be stored.
#[derive(Debug, Clone, Copy)]
pub struct PackToStore<'a> {
    pub spooled: &'a Path,
    pub pack: NewPack,
    pub objects: &'a [NewObject],
    pub commits: &'a [NewCommit],
}

/// One object of a new pack, as the pack scanner found it.
pub use tessera_pack::index::Scanned as NewObject;

/// One commit of a new pack, with its generation number already computed.
#[derive(Debug, Clone)]
pub struct NewCommit {
    pub id: ObjectId,
    pub tree: ObjectId,
    pub parents: Vec<ObjectId>,
    pub generation: i64,
    pub time: i64,
}

pub(crate) fn kind_to_int(kind: Kind) -> i64 {
    tessera_pack::entry::kind_code(kind) as i64
}

pub(crate) fn kind_from_int(v: i64) -> Result<Kind, Error> {
    Ok(match v {
        1 => Kind::Commit,
        2 => Kind::Tree,
        3 => Kind::Blob,
        4 => Kind::Tag,
        other => return Err(Error::Corrupt(format!("object kind {other}"))),
    })
}

/// Rows per multi-row INSERT: few round trips, well under every dialect's
/// bound-parameter limit.
const BATCH: usize = 500;

impl Store {
    /// Stores the pack at `spooled`, whose objects `repo_id` already has,
    /// and moves those objects' rows to it: `tessera fsck --repair`
    /// re-storing objects whole. Either all of it becomes visible or none.
    pub async fn relocate_objects(
        &self,
        repo_id: i64,
        spooled: &Path,
        pack: NewPack,
        objects: &[NewObject],
    ) -> Result<i64, Error> {
        self.store_pack(repo_id, spooled, pack, objects, &[], true).await
    }

    /// Stores the pack at `spooled` for `repo_id` with its objects and
    /// commits. Either all of it becomes visible or none does.
    pub async fn add_pack(
        &self,
        repo_id: i64,
        spooled: &Path,
        pack: NewPack,
        objects: &[NewObject],
        commits: &[NewCommit],
    ) -> Result<i64, Error> {
        self.store_pack(repo_id, spooled, pack, objects, commits, false).await
    }

    /// Registers a pack and either adds rows for its objects and commits or
    /// (`relocate`) points the repository's existing object rows at it.
    async fn store_pack(
        &self,
        repo_id: i64,
        spooled: &Path,
        pack: NewPack,
        objects: &[NewObject],
        commits: &[NewCommit],
        relocate: bool,
    ) -> Result<i64, Error> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        // Version first: it takes the repository's row lock, so pack ids of
        // one repository are handed out in commit order.
        let version = self.bump_version(&mut tx, repo_id).await?;
        let stored = self
            .insert_pack(&mut tx, repo_id, version, PackToStore { spooled, pack, objects, commits }, relocate)
            .await;
        let pack_id = match stored {
            Ok(pack_id) => pack_id,
            Err((pack_id, e)) => {
                let _ = tx.rollback().await;
                if let Some(pack_id) = pack_id {
                    self.forget_pack(pack_id).await;
                }
                return Err(e);
            }
        };
        match tx.commit().await {
            Ok(()) => Ok(pack_id),
            Err(e) => {
                self.forget_pack(pack_id).await;
                Err(e.into())
            }
        }
    }

    /// Inside `tx`: the pack row, its bytes, and its object and commit rows
    /// (or, with `relocate`, the existing object rows pointed at it). On
    /// failure, returns the pack id whose bytes the caller must forget
    /// once `tx` is rolled back.
    pub(crate) async fn insert_pack(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        repo_id: i64,
        version: i64,
        new: PackToStore<'_>,
        relocate: bool,
    ) -> Result<i64, (Option<i64>, Error)> {
        let PackToStore { spooled, pack, objects, commits } = new;
        let pack_id = self
            .insert_id(
                &mut **tx,
                "INSERT INTO packs (checksum, storage, location, size, n_objects, created_at) VALUES (?, ?, NULL, ?, ?, ?)",
                vec![
                    pack.checksum.to_string().into(),
                    self.packs.kind().into(),
                    (pack.size as i64).into(),
                    (objects.len() as i64).into(),
                    now().into(),
                ],
            )
            .await
            .map_err(|e| (None, e))?;
        let result = async {
            let location = self.put_pack(tx, pack_id, spooled).await?;
            sqlx::query(&self.sql("UPDATE packs SET location = ? WHERE id = ?"))
                .bind(location)
                .bind(pack_id)
                .execute(&mut **tx)
                .await?;
            if relocate {
                let sql = self.sql(
                    "UPDATE objects SET pack_id = ?, pack_offset = ?, pack_end = ?, delta_base = NULL, added_version = ? \
                     WHERE repo_id = ? AND oid = ?",
                );
                for o in objects {
                    sqlx::query(&sql)
                        .bind(pack_id)
                        .bind(o.offset as i64)
                        .bind(o.end as i64)
                        .bind(version)
                        .bind(repo_id)
                        .bind(o.id.to_string())
                        .execute(&mut **tx)
                        .await?;
                }
                return Ok(());
            }
            for batch in objects.chunks(BATCH) {
                let mut binds = Vec::with_capacity(batch.len() * 9);
                for o in batch {
                    binds.extend([
                        BindValue::Int(repo_id),
                        o.id.to_string().into(),
                        kind_to_int(o.kind).into(),
                        (o.size as i64).into(),
                        pack_id.into(),
                        (o.offset as i64).into(),
                        (o.end as i64).into(),
                        o.delta_base.map(|b| b.to_string()).into(),
                        version.into(),
                    ]);
                }
                let sql = self.insert_ignore(
                    "objects (repo_id, oid, kind, size, pack_id, pack_offset, pack_end, delta_base, added_version)",
                    9,
                    batch.len(),
                );
                crate::bind_all(sqlx::query(&sql), binds).execute(&mut **tx).await?;
            }
            for batch in commits.chunks(BATCH) {
                let mut binds = Vec::with_capacity(batch.len() * 8);
                for c in batch {
                    let parents: Vec<String> = c.parents.iter().map(|p| p.to_string()).collect();
                    binds.extend([
                        BindValue::Int(repo_id),
                        c.id.to_string().into(),
                        c.tree.to_string().into(),
                        parents.join(" ").into(),
                        c.generation.into(),
                        c.time.into(),
                        pack_id.into(),
                        version.into(),
                    ]);
                }
                let sql = self.insert_ignore(
                    "commits (repo_id, oid, tree, parents, generation, commit_time, pack_id, added_version)",
                    8,
                    batch.len(),
                );
                crate::bind_all(sqlx::query(&sql), binds).execute(&mut **tx).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        result.map(|()| pack_id).map_err(|e| (Some(pack_id), e))
    }

    pub(crate) fn insert_ignore(&self, table_and_columns: &str, n_columns: usize, n_rows: usize) -> String {
        let row = format!("({})", vec!["?"; n_columns].join(", "));
        let values = vec![row; n_rows].join(", ");
        let sql = match self.dialect {
            crate::Dialect::Mysql => {
                format!("INSERT IGNORE INTO {table_and_columns} VALUES {values}")
            }
            _ => format!("INSERT INTO {table_and_columns} VALUES {values} ON CONFLICT DO NOTHING"),
        };
        self.sql(&sql)
    }

    /// Generation numbers of stored commits among `ids` (absent ones are left out).
    pub async fn commit_generations(&self, repo_id: i64, ids: &[ObjectId]) -> Result<HashMap<ObjectId, i64>, Error> {
        let mut out = HashMap::new();
        for batch in ids.chunks(BATCH) {
            let placeholders = vec!["?"; batch.len()].join(", ");
            let sql =
                self.sql(&format!("SELECT oid, generation FROM commits WHERE repo_id = ? AND oid IN ({placeholders})"));
            let mut q = sqlx::query(&sql).bind(repo_id);
            for id in batch {
                q = q.bind(id.to_string());
            }
            for row in q.fetch_all(&self.pool).await? {
                out.insert(parse_oid(&row.try_get::<String, _>(0)?)?, row.try_get(1)?);
            }
        }
        Ok(out)
    }
}
