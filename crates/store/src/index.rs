//! An in-memory snapshot of a repository's object index and commit graph.
//!
//! Serving a fetch walks commits and trees; asking SQL once per object would
//! cost a round trip each. The snapshot is loaded once and then refreshed
//! incrementally: every row carries the repository version of the transaction
//! that added it, and versions grow in commit order, so rows above the version
//! last loaded are exactly what is new.
//!
//! A repository of millions of objects must fit in a server's memory many
//! times over, so the snapshot is kept the way git keeps a pack index: ids
//! sorted in one array, found by a fan-out table and a binary search, with
//! fixed-size records beside them (24 bytes for an object's location, 44 for
//! a commit) instead of hash-map entries of twice the size at a load factor
//! of a half. See [`Layered`] for how new rows join it.

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use sqlx::Row;
use tessera_pack::Kind;

use crate::objects::{kind_from_int, kind_to_int};
use crate::{parse_oid, Error, ObjectId, Store};

/// Where one object is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack_id: i64,
    pub offset: u64,
    pub end: u64,
    pub kind: Kind,
    pub size: u64,
    pub delta_base: Option<ObjectId>,
}

/// What history walks need of a commit, without inflating it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub tree: ObjectId,
    pub parents: Vec<ObjectId>,
    pub generation: i64,
    pub time: i64,
}

/// A commit as the index holds it: [`CommitInfo`] borrowing its parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit<'a> {
    pub tree: ObjectId,
    pub parents: &'a [ObjectId],
    pub generation: i64,
    pub time: i64,
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct RepoIndex {
    pub repo_id: i64,
    /// The repository version this snapshot is at least as new as.
    pub version: i64,
    pub objects: Layered<Location>,
    pub commits: Layered<CommitInfo>,
}

/// A value kept in a [`Table`] as a fixed-size record plus, for what does
/// not fit in one, a side store shared by the table's records.
pub trait Compact: Clone + std::fmt::Debug {
    type Rec: Copy + std::fmt::Debug;
    type Side: Default + Clone + std::fmt::Debug;
    /// What a lookup returns: the value, borrowing from the table.
    type View<'a>: Copy
    where
        Self: 'a;
    fn view(&self) -> Self::View<'_>;
    fn pack(view: Self::View<'_>, side: &mut Self::Side) -> Self::Rec;
    /// Makes room in `side` for what `other` holds, exactly (a large side
    /// store grown by doubling would carry up to half its size unused).
    fn reserve(side: &mut Self::Side, other: &Self::Side);
    /// Gives back the side store's unused capacity.
    fn shrink(side: &mut Self::Side);
    fn unpack<'a>(rec: &'a Self::Rec, side: &'a Self::Side) -> Self::View<'a>;
}

type Raw = [u8; 20];

fn raw(id: &ObjectId) -> Raw {
    let mut r = [0u8; 20];
    r.copy_from_slice(&id.as_bytes()[..20]);
    r
}

/// Sorted ids, their records, and a fan-out table over the ids' leading
/// bits (sized to the table: about eight ids per slot).
#[derive(Debug, Clone)]
pub struct Table<V: Compact> {
    bits: u32,
    fanout: Vec<u32>,
    ids: Vec<Raw>,
    recs: Vec<V::Rec>,
    side: V::Side,
}

impl<V: Compact> Table<V> {
    /// Builds a table from at most `capacity` entries sorted by id, without
    /// duplicates.
    fn build<'a>(capacity: usize, sorted: impl Iterator<Item = (Raw, V::View<'a>)>) -> Self
    where
        V: 'a,
    {
        let mut ids = Vec::with_capacity(capacity);
        let mut recs = Vec::with_capacity(capacity);
        let mut side = V::Side::default();
        for (id, view) in sorted {
            ids.push(id);
            recs.push(V::pack(view, &mut side));
        }
        ids.shrink_to_fit();
        recs.shrink_to_fit();
        V::shrink(&mut side);
        let mut table = Table { bits: 0, fanout: Vec::new(), ids, recs, side };
        table.index();
        table
    }

    /// Sizes and fills the fan-out table for the ids.
    fn index(&mut self) {
        let bits = (usize::BITS - self.ids.len().leading_zeros()).saturating_sub(3).min(16);
        let mut fanout = vec![0u32; (1usize << bits) + 1];
        for id in &self.ids {
            fanout[Self::slot(bits, id) + 1] += 1;
        }
        for i in 1..fanout.len() {
            fanout[i] += fanout[i - 1];
        }
        self.bits = bits;
        self.fanout = fanout;
    }

    fn slot(bits: u32, id: &Raw) -> usize {
        if bits == 0 {
            0
        } else {
            (u32::from_be_bytes([id[0], id[1], id[2], id[3]]) >> (32 - bits)) as usize
        }
    }

    fn position(&self, id: &Raw) -> Option<usize> {
        let slot = Self::slot(self.bits, id);
        let (lo, hi) = (self.fanout[slot] as usize, self.fanout[slot + 1] as usize);
        self.ids[lo..hi].binary_search(id).ok().map(|i| lo + i)
    }

    fn get(&self, id: &Raw) -> Option<V::View<'_>> {
        self.position(id).map(|i| V::unpack(&self.recs[i], &self.side))
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn entries(&self) -> impl ExactSizeIterator<Item = (Raw, V::View<'_>)> + '_ {
        self.ids.iter().zip(&self.recs).map(|(id, rec)| (*id, V::unpack(rec, &self.side)))
    }

    /// Takes `newer`'s entries into this table, in place, keeping
    /// `newer`'s where both hold an id; returns the number of ids both held.
    ///
    /// The arrays grow at their end (a large allocation grows by remapping
    /// its pages, not by copying), the two are merged from the back, and
    /// the side store takes `newer`'s side data: so merging never holds two
    /// copies of the larger table.
    fn absorb(&mut self, newer: &Self) -> usize {
        let (n_old, n_new) = (self.ids.len(), newer.len());
        let Some(&filler) = self.recs.first().or(newer.recs.first()) else { return 0 };
        self.ids.reserve_exact(n_new);
        self.recs.reserve_exact(n_new);
        V::reserve(&mut self.side, &newer.side);
        self.ids.resize(n_old + n_new, [0; 20]);
        self.recs.resize(n_old + n_new, filler);
        let (mut i, mut j, mut w) = (n_old, n_new, n_old + n_new);
        let mut both = 0;
        while j > 0 {
            let id = newer.ids[j - 1];
            if i > 0 && self.ids[i - 1] > id {
                w -= 1;
                self.ids[w] = self.ids[i - 1];
                self.recs[w] = self.recs[i - 1];
                i -= 1;
                continue;
            }
            if i > 0 && self.ids[i - 1] == id {
                i -= 1;
                both += 1;
            }
            w -= 1;
            self.ids[w] = id;
            self.recs[w] = V::pack(V::unpack(&newer.recs[j - 1], &newer.side), &mut self.side);
            j -= 1;
        }
        // What is left of the older entries sits in place before `i`; the
        // merged tail starts at `w`, `both` entries after it.
        if both > 0 {
            self.ids.copy_within(w.., i);
            self.recs.copy_within(w.., i);
            self.ids.truncate(n_old + n_new - both);
            self.recs.truncate(n_old + n_new - both);
        }
        self.index();
        both
    }
}

/// Tables kept apart, while other snapshots read them, before they are
/// merged by copying.
const MAX_TABLES: usize = 8;

/// A map from object ids in two kinds of layer: immutable sorted
/// [`Table`]s shared between snapshots (oldest and largest first), and a
/// small hash map of what was added since.
///
/// Cloning a map (each refresh makes a new snapshot while older ones are
/// still being read) copies only the hash map. Once that holds more than
/// a thirty-second of the whole, it becomes a table of its own, and tables are
/// merged while the newer is at least half the size of the one before it:
/// a handful of tables, each lookup a few probes, and the merging work
/// proportional to what is added, as in a log-structured merge tree. A
/// merge happens in place in the older table when no other snapshot reads
/// it (see [`Table::absorb`]); while one does, up to [`MAX_TABLES`] tables
/// wait for a later merge.
#[derive(Debug, Clone)]
pub struct Layered<V: Compact> {
    tables: Vec<Arc<Table<V>>>,
    top: HashMap<ObjectId, V>,
    /// Ids held by more than one layer, counted once per extra layer.
    shadowed: usize,
}

impl<V: Compact> Default for Layered<V> {
    fn default() -> Self {
        Layered { tables: Vec::new(), top: HashMap::new(), shadowed: 0 }
    }
}

impl<V: Compact> Layered<V> {
    pub fn get(&self, key: &ObjectId) -> Option<V::View<'_>> {
        if let Some(v) = self.top.get(key) {
            return Some(v.view());
        }
        let key = raw(key);
        self.tables.iter().rev().find_map(|t| t.get(&key))
    }

    pub fn contains_key(&self, key: &ObjectId) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum::<usize>() + self.top.len() - self.shadowed
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets `key` to `value`, replacing what it had.
    pub fn insert(&mut self, key: ObjectId, value: V) {
        if !self.top.contains_key(&key) && self.tables.iter().any(|t| t.position(&raw(&key)).is_some()) {
            self.shadowed += 1;
        }
        self.top.insert(key, value);
    }

    /// Sets `key` to `value` unless it has one already.
    pub fn insert_if_absent(&mut self, key: ObjectId, value: V) {
        if !self.contains_key(&key) {
            self.top.insert(key, value);
        }
    }

    /// Every entry once (the newest layer's where several hold an id), in
    /// no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (ObjectId, V::View<'_>)> + '_ {
        let top = self.top.iter().map(|(k, v)| (*k, v.view()));
        let tables = self.tables.iter().enumerate().flat_map(move |(i, t)| {
            t.entries()
                .filter(move |(id, _)| {
                    !self.top.contains_key(&ObjectId::Sha1(*id))
                        && self.tables[i + 1..].iter().all(|newer| newer.position(id).is_none())
                })
                .map(|(id, v)| (ObjectId::Sha1(id), v))
        });
        top.chain(tables)
    }

    pub fn keys(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.iter().map(|(k, _)| k)
    }

    /// Turns the hash map into a table once it is large enough to make
    /// clones costly, merging tables as the type's docs say.
    pub fn settle(&mut self) {
        if self.top.len() <= 4096 + self.len() / 32 {
            return;
        }
        let mut entries: Vec<(Raw, &V)> = self.top.iter().map(|(k, v)| (raw(k), v)).collect();
        entries.sort_unstable_by_key(|e| e.0);
        let table = Table::build(entries.len(), entries.into_iter().map(|(id, v)| (id, v.view())));
        self.top.clear();
        self.top.shrink_to_fit();
        self.tables.push(Arc::new(table));
        while let [.., older, newer] = &self.tables[..] {
            // Past the bound, the newest two merge whatever their sizes.
            let piled = self.tables.len() > MAX_TABLES;
            if newer.len() * 2 < older.len() && !piled {
                break;
            }
            let newer = self.tables.pop().expect("matched two tables above");
            let at = self.tables.len() - 1;
            // Another snapshot reads the older table: merge later, unless
            // the tables have piled up; then merge into a copy of it.
            if Arc::get_mut(&mut self.tables[at]).is_none() && !piled {
                self.tables.push(newer);
                break;
            }
            let both = Arc::make_mut(&mut self.tables[at]).absorb(&newer);
            self.shadowed -= both;
        }
    }
}

/// A [`Location`] in 24 bytes: pack and kind share a word, sizes and
/// lengths over 4 GiB and delta bases live in the side store.
#[derive(Debug, Clone, Copy)]
pub struct LocationRec {
    offset: [u32; 2],
    /// `end - offset`, or (when `size` is `u32::MAX`) an index into `wide`.
    len: u32,
    size: u32,
    /// Index into `packs`, shifted left by 3, or'ed with the kind.
    pack_kind: u32,
    /// Index into `bases`, or `u32::MAX` for a whole object.
    base: u32,
}

#[derive(Debug, Clone, Default)]
pub struct LocationSide {
    packs: Vec<i64>,
    pack_index: HashMap<i64, u32>,
    bases: Vec<ObjectId>,
    /// `(end, size)` of records that do not fit.
    wide: Vec<(u64, u64)>,
}

fn index_of(n: usize) -> u32 {
    u32::try_from(n).expect("a table holds fewer than 2^32 entries")
}

impl Compact for Location {
    type Rec = LocationRec;
    type Side = LocationSide;
    type View<'a> = Location;

    fn view(&self) -> Location {
        *self
    }

    fn pack(l: Location, side: &mut LocationSide) -> LocationRec {
        let next = side.packs.len();
        let pack = *side.pack_index.entry(l.pack_id).or_insert_with(|| index_of(next));
        if pack as usize == next {
            side.packs.push(l.pack_id);
        }
        let base = match l.delta_base {
            Some(b) => {
                side.bases.push(b);
                index_of(side.bases.len() - 1)
            }
            None => u32::MAX,
        };
        let fits = |v: u64| v < u32::MAX as u64;
        let (len, size) = match l.end.checked_sub(l.offset) {
            Some(len) if fits(len) && fits(l.size) => (len as u32, l.size as u32),
            _ => {
                side.wide.push((l.end, l.size));
                (index_of(side.wide.len() - 1), u32::MAX)
            }
        };
        LocationRec {
            offset: [l.offset as u32, (l.offset >> 32) as u32],
            len,
            size,
            pack_kind: (pack << 3) | kind_to_int(l.kind) as u32,
            base,
        }
    }

    fn reserve(side: &mut LocationSide, other: &LocationSide) {
        side.bases.reserve_exact(other.bases.len());
        side.wide.reserve_exact(other.wide.len());
    }

    fn shrink(side: &mut LocationSide) {
        side.bases.shrink_to_fit();
        side.wide.shrink_to_fit();
    }

    fn unpack<'a>(r: &'a LocationRec, side: &'a LocationSide) -> Location {
        let offset = r.offset[0] as u64 | (r.offset[1] as u64) << 32;
        let (end, size) =
            if r.size == u32::MAX { side.wide[r.len as usize] } else { (offset + r.len as u64, r.size as u64) };
        Location {
            pack_id: side.packs[(r.pack_kind >> 3) as usize],
            offset,
            end,
            kind: kind_from_int((r.pack_kind & 7) as i64).expect("kinds are packed from valid kinds"),
            size,
            delta_base: (r.base != u32::MAX).then(|| side.bases[r.base as usize]),
        }
    }
}

/// A [`CommitInfo`] in 44 bytes, its parents in the side store.
#[derive(Debug, Clone, Copy)]
pub struct CommitRec {
    tree: Raw,
    parents: u32,
    n_parents: u32,
    generation: [u32; 2],
    time: [u32; 2],
}

fn split(v: i64) -> [u32; 2] {
    [v as u32, ((v as u64) >> 32) as u32]
}

fn join(v: [u32; 2]) -> i64 {
    (v[0] as u64 | (v[1] as u64) << 32) as i64
}

impl Compact for CommitInfo {
    type Rec = CommitRec;
    type Side = Vec<ObjectId>;
    type View<'a> = Commit<'a>;

    fn view(&self) -> Commit<'_> {
        Commit { tree: self.tree, parents: &self.parents, generation: self.generation, time: self.time }
    }

    fn pack(c: Commit<'_>, parents: &mut Vec<ObjectId>) -> CommitRec {
        let at = index_of(parents.len());
        parents.extend_from_slice(c.parents);
        CommitRec {
            tree: raw(&c.tree),
            parents: at,
            n_parents: index_of(c.parents.len()),
            generation: split(c.generation),
            time: split(c.time),
        }
    }

    fn reserve(parents: &mut Vec<ObjectId>, other: &Vec<ObjectId>) {
        parents.reserve_exact(other.len());
    }

    fn shrink(parents: &mut Vec<ObjectId>) {
        parents.shrink_to_fit();
    }

    fn unpack<'a>(r: &'a CommitRec, parents: &'a Vec<ObjectId>) -> Commit<'a> {
        let at = r.parents as usize;
        Commit {
            tree: ObjectId::Sha1(r.tree),
            parents: &parents[at..at + r.n_parents as usize],
            generation: join(r.generation),
            time: join(r.time),
        }
    }
}

impl RepoIndex {
    pub fn new(repo_id: i64) -> Self {
        RepoIndex { repo_id, version: -1, ..Default::default() }
    }
}

/// Rows taken in between two checks of whether the new layer should settle
/// into a table, so that a first load never holds its rows in a hash map.
const SETTLE_EVERY: usize = 1 << 16;

impl Store {
    /// Brings `index` up to date with the database; returns the packs the
    /// new rows are in. A failure leaves `index` as good as before: rows
    /// already taken in are taken in again by the next refresh.
    ///
    /// Rows are streamed, not fetched whole, so a first load of millions of
    /// rows holds one row at a time besides the index it builds.
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
        let mut rows = sqlx::query(&sql).bind(index.repo_id).bind(seen).bind(version).fetch(&self.pool);
        let mut taken = 0usize;
        while let Some(row) = rows.try_next().await? {
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
            taken += 1;
            if taken.is_multiple_of(SETTLE_EVERY) {
                index.objects.settle();
            }
        }
        drop(rows);
        let sql = self.sql("SELECT oid, tree, parents, generation, commit_time FROM commits WHERE repo_id = ? AND added_version > ? AND added_version <= ?");
        let mut rows = sqlx::query(&sql).bind(index.repo_id).bind(seen).bind(version).fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
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
            taken += 1;
            if taken.is_multiple_of(SETTLE_EVERY) {
                index.commits.settle();
            }
        }
        drop(rows);
        index.objects.settle();
        index.commits.settle();
        index.version = version;
        Ok(packs.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::{CommitInfo, Layered, Location, MAX_TABLES};
    use crate::ObjectId;
    use std::collections::BTreeMap;
    use tessera_pack::Kind;

    fn id(n: u32) -> ObjectId {
        // Spread over the id space, as hashes are.
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_be_bytes());
        b[16..].copy_from_slice(&n.to_be_bytes());
        ObjectId::Sha1(b)
    }

    fn loc(n: u32) -> Location {
        Location {
            pack_id: (n % 7) as i64 - 1,
            offset: (n as u64) << 20,
            end: ((n as u64) << 20) + 1 + n as u64 % 100,
            kind: [Kind::Commit, Kind::Tree, Kind::Blob, Kind::Tag][n as usize % 4],
            size: if n.is_multiple_of(1000) { 5 << 32 } else { n as u64 },
            delta_base: n.is_multiple_of(3).then(|| id(n + 1)),
        }
    }

    fn contents(m: &Layered<Location>) -> BTreeMap<ObjectId, Location> {
        m.iter().collect()
    }

    #[test]
    fn layers_read_as_one_map_through_settling_and_merging() {
        let mut model = BTreeMap::new();
        let mut m: Layered<Location> = Layered::default();
        let mut clones = Vec::new();
        for round in 0..40u32 {
            for n in round * 3000..round * 3000 + 5000 {
                // Each round overlaps the last: replacing, and keeping.
                if n % 2 == 0 {
                    m.insert(id(n), loc(n + round));
                    model.insert(id(n), loc(n + round));
                } else {
                    m.insert_if_absent(id(n), loc(n + round));
                    model.entry(id(n)).or_insert(loc(n + round));
                }
            }
            m.settle();
            assert_eq!(m.len(), model.len(), "round {round}");
            // Held clones make some merges wait or copy; the others
            // merge in place.
            if round % 10 == 0 {
                clones.push((m.clone(), model.clone()));
            }
            if round % 10 == 5 && round < 30 {
                clones.clear();
            }
        }
        assert!(m.tables.len() <= MAX_TABLES, "{} tables", m.tables.len());
        assert_eq!(contents(&m), model);
        for n in (0..130_000).step_by(7) {
            assert_eq!(m.get(&id(n)), model.get(&id(n)).copied(), "{n}");
        }
        // Clones still read what they held.
        for (c, was) in &clones {
            assert_eq!(&contents(c), was);
            assert_eq!(c.len(), was.len());
        }
    }

    #[test]
    fn tables_other_snapshots_read_are_merged_later_or_copied() {
        let mut model = BTreeMap::new();
        let mut m: Layered<Location> = Layered::default();
        let mut held = Vec::new();
        let mut most = 0;
        for round in 0..60u32 {
            for n in round * 5000..round * 5000 + 5000 {
                m.insert(id(n), loc(n));
                model.insert(id(n), loc(n));
            }
            m.settle();
            held.push(m.clone());
            most = most.max(m.tables.len());
            assert_eq!(m.len(), model.len());
        }
        assert_eq!(most, MAX_TABLES, "tables piled up to the bound, then were copied");
        assert_eq!(contents(&m), model);
        drop(held);
        for n in 300_000..330_000 {
            m.insert(id(n), loc(n));
            model.insert(id(n), loc(n));
        }
        m.settle();
        assert!(m.tables.len() < MAX_TABLES, "merged in place once no one else reads them");
        assert_eq!(contents(&m), model);
    }

    #[test]
    fn commits_keep_their_parents_in_tables() {
        let mut m: Layered<CommitInfo> = Layered::default();
        let info = |n: u32| CommitInfo {
            tree: id(n + 1_000_000),
            parents: (0..n % 4).map(|p| id(n * 10 + p)).collect(),
            generation: n as i64,
            time: -(n as i64) * 1_000_000_000_000,
        };
        for n in 0..20_000 {
            m.insert(id(n), info(n));
            m.settle();
        }
        assert!(!m.tables.is_empty());
        for n in 0..20_000 {
            let c = m.get(&id(n)).expect("present");
            let want = info(n);
            assert_eq!(
                (c.tree, c.parents, c.generation, c.time),
                (want.tree, &want.parents[..], want.generation, want.time)
            );
        }
        assert_eq!(m.get(&id(20_000)), None);
    }
}
