//! An in-memory snapshot of a repository's object index and commit graph.
//!
//! Serving a fetch walks commits and trees; asking SQL once per object would
//! cost a round trip each. The snapshot is loaded once and then refreshed
//! incrementally: every row carries the repository version of the transaction
//! that added it, and versions grow in commit order, so rows above the version
//! last loaded are exactly what is new.

use std::collections::HashMap;
use std::sync::Arc;

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
    pub objects: Layered<ObjectId, Location>,
    pub commits: Layered<ObjectId, CommitInfo>,
}

/// A map in two layers: a large shared base and a small layer of what was
/// added since. Cloning it (each refresh makes a new snapshot while older
/// ones are still being read) copies only the small layer; once that grows
/// past a sixteenth of the base, the two are merged into a new base, so
/// the copying stays proportional to what is added.
#[derive(Debug, Clone)]
pub struct Layered<K, V> {
    base: Arc<HashMap<K, V>>,
    top: HashMap<K, V>,
    /// Keys of `top` that `base` holds too.
    shadowed: usize,
}

impl<K, V> Default for Layered<K, V> {
    fn default() -> Self {
        Layered { base: Arc::new(HashMap::new()), top: HashMap::new(), shadowed: 0 }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Layered<K, V> {
    pub fn get(&self, key: &K) -> Option<&V> {
        self.top.get(key).or_else(|| self.base.get(key))
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.top.contains_key(key) || self.base.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.base.len() + self.top.len() - self.shadowed
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets `key` to `value`, replacing what it had.
    pub fn insert(&mut self, key: K, value: V) {
        if !self.top.contains_key(&key) && self.base.contains_key(&key) {
            self.shadowed += 1;
        }
        self.top.insert(key, value);
    }

    /// Sets `key` to `value` unless it has one already.
    pub fn insert_if_absent(&mut self, key: K, value: V) {
        if !self.contains_key(&key) {
            self.top.insert(key, value);
        }
    }

    /// Every entry once (the newer layer's where both hold a key).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.top.iter().chain(self.base.iter().filter(|(k, _)| !self.top.contains_key(*k)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Merges the layers once the newer one is large enough to make
    /// clones costly.
    pub fn settle(&mut self) {
        if self.top.len() <= 4096 + self.base.len() / 16 {
            return;
        }
        let mut merged = Arc::try_unwrap(std::mem::take(&mut self.base)).unwrap_or_else(|shared| (*shared).clone());
        merged.reserve(self.top.len());
        merged.extend(self.top.drain());
        self.base = Arc::new(merged);
        self.shadowed = 0;
    }
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> std::ops::Index<&K> for Layered<K, V> {
    type Output = V;

    /// The value of a key known to be present, as `HashMap` indexes.
    fn index(&self, key: &K) -> &V {
        self.get(key).expect("a key the caller knows is present")
    }
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> FromIterator<(K, V)> for Layered<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(items: I) -> Self {
        Layered { base: Arc::new(items.into_iter().collect()), top: HashMap::new(), shadowed: 0 }
    }
}

impl RepoIndex {
    pub fn new(repo_id: i64) -> Self {
        RepoIndex { repo_id, version: -1, ..Default::default() }
    }
}

impl Store {
    /// Brings `index` up to date with the database; returns the packs the
    /// new rows are in. A failure leaves `index` as good as before: rows
    /// already taken in are taken in again by the next refresh.
    pub async fn refresh_index(&self, index: &mut RepoIndex) -> Result<Vec<i64>, Error> {
        let version = self.repo_version(index.repo_id).await?;
        if version == index.version {
            return Ok(Vec::new());
        }
        let mut packs = std::collections::BTreeSet::new();
        let seen = index.version;
        let sql = self.sql(
            "SELECT oid, kind, size, pack_id, pack_offset, pack_end, delta_base FROM objects WHERE repo_id = ? AND added_version > ? AND added_version <= ?",
        );
        let rows = sqlx::query(&sql).bind(index.repo_id).bind(seen).bind(version).fetch_all(&self.pool).await?;
        for row in rows {
            let id = parse_oid(&row.try_get::<String, _>(0)?)?;
            let base: Option<String> = row.try_get(6)?;
            let pack_id: i64 = row.try_get(3)?;
            packs.insert(pack_id);
            index.objects.insert_if_absent(
                id,
                Location {
                    pack_id,
                    kind: kind_from_int(row.try_get(1)?)?,
                    size: row.try_get::<i64, _>(2)? as u64,
                    offset: row.try_get::<i64, _>(4)? as u64,
                    end: row.try_get::<i64, _>(5)? as u64,
                    delta_base: base.as_deref().map(parse_oid).transpose()?,
                },
            );
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
        index.objects.settle();
        index.commits.settle();
        index.version = version;
        Ok(packs.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::Layered;

    #[test]
    fn layers_read_as_one_map_before_and_after_settling() {
        let mut m: Layered<u32, u32> = (0..10_000).map(|k| (k, k)).collect();
        let shared = m.clone();
        m.insert(5, 500_000); // shadows the base
        m.insert_if_absent(6, 60); // present: kept
        m.insert_if_absent(20_000, 1);
        assert_eq!((m.get(&5), m.get(&6), m.get(&20_000), m.get(&30_000)), (Some(&500_000), Some(&6), Some(&1), None));
        assert_eq!(m.len(), 10_001);
        assert_eq!(m.iter().count(), 10_001, "a shadowed key is listed once");
        assert_eq!(m.values().filter(|v| **v == 500_000).count(), 1);
        for k in 30_000..36_000 {
            m.insert(k, k);
        }
        let before: std::collections::BTreeMap<u32, u32> = m.iter().map(|(k, v)| (*k, *v)).collect();
        m.settle();
        let after: std::collections::BTreeMap<u32, u32> = m.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(before, after);
        assert_eq!(m.len(), after.len());
        // The earlier clone still reads the base it shared.
        assert_eq!((shared.get(&5), shared.len()), (Some(&5), 10_000));
        assert_eq!(m[&5], 500_000);
    }
}
