//! An in-memory snapshot of a repository's object index and commit graph.
//!
//! Serving a fetch walks commits and trees; asking SQL once per object would
//! cost a round trip each. The snapshot is loaded once and then refreshed
//! incrementally: every row carries the repository version of the transaction
//! that added it, and versions grow in commit order, so rows above the version
//! last loaded are exactly what is new.

use std::collections::HashMap;

use sqlx::Row;
use tessera_pack::Kind;

use crate::objects::kind_from_int;
use crate::{parse_oid, Error, ObjectId, Store};

/// Where one object is stored.
#[derive(Debug, Clone, Copy)]
pub struct Location {
    pub pack_id: i64,
    pub offset: u64,
    pub end: u64,
    pub kind: Kind,
    pub size: u64,
    pub delta_base: Option<ObjectId>,
}

/// What history walks need of a commit, without inflating it.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub tree: ObjectId,
    pub parents: Vec<ObjectId>,
    pub generation: i64,
    pub time: i64,
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct RepoIndex {
    pub repo_id: i64,
    /// The repository version this snapshot is at least as new as.
    pub version: i64,
    pub objects: HashMap<ObjectId, Location>,
    pub commits: HashMap<ObjectId, CommitInfo>,
}

impl RepoIndex {
    pub fn new(repo_id: i64) -> Self {
        RepoIndex { repo_id, version: -1, ..Default::default() }
    }
}

impl Store {
    /// Brings `index` up to date with the database.
    pub async fn refresh_index(&self, index: &mut RepoIndex) -> Result<(), Error> {
        let version = self.repo_version(index.repo_id).await?;
        if version == index.version {
            return Ok(());
        }
        let seen = index.version;
        let sql = self.sql(
            "SELECT oid, kind, size, pack_id, pack_offset, pack_end, delta_base FROM objects WHERE repo_id = ? AND added_version > ? AND added_version <= ?",
        );
        let rows = sqlx::query(&sql).bind(index.repo_id).bind(seen).bind(version).fetch_all(&self.pool).await?;
        for row in rows {
            let id = parse_oid(&row.try_get::<String, _>(0)?)?;
            let base: Option<String> = row.try_get(6)?;
            index.objects.entry(id).or_insert(Location {
                pack_id: row.try_get(3)?,
                kind: kind_from_int(row.try_get(1)?)?,
                size: row.try_get::<i64, _>(2)? as u64,
                offset: row.try_get::<i64, _>(4)? as u64,
                end: row.try_get::<i64, _>(5)? as u64,
                delta_base: base.as_deref().map(parse_oid).transpose()?,
            });
        }
        let sql = self.sql("SELECT oid, tree, parents, generation, commit_time FROM commits WHERE repo_id = ? AND added_version > ? AND added_version <= ?");
        let rows = sqlx::query(&sql).bind(index.repo_id).bind(seen).bind(version).fetch_all(&self.pool).await?;
        for row in rows {
            let parents = crate::text(&row, 2)?;
            index.commits.insert(
                parse_oid(&row.try_get::<String, _>(0)?)?,
                CommitInfo {
                    tree: parse_oid(&row.try_get::<String, _>(1)?)?,
                    parents: parents.split_whitespace().map(parse_oid).collect::<Result<_, _>>()?,
                    generation: row.try_get(3)?,
                    time: row.try_get(4)?,
                },
            );
        }
        index.version = version;
        Ok(())
    }
}
