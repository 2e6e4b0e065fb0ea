//! Synchronous object access over a repository's index snapshot and its packs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tessera_pack::entry::Header;
use tessera_pack::read::{self, PackFile};
use tessera_pack::{Kind, ObjectId};
use tessera_store::index::{Location, RepoIndex};

/// Why an object could not be read; returned by [`Odb`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object {0} is not in this repository")]
    Missing(ObjectId),
    #[error("pack {0} is not available")]
    MissingPack(i64),
    #[error("reading object {id}: {source}")]
    Read { id: ObjectId, source: read::Error },
}

/// A stored entry's bytes, ready to be copied into another pack.
pub struct RawEntry {
    pub header: Header,
    /// Decompressed size of the entry data (the delta, for deltas).
    pub size: u64,
    pub compressed: Vec<u8>,
}

/// See the module docs. Cheap to share between threads.
pub struct Odb {
    pub index: Arc<RepoIndex>,
    pack_paths: HashMap<i64, PathBuf>,
    open: Mutex<HashMap<i64, Arc<PackFile>>>,
    cache: Mutex<Cache>,
    /// Cache blobs too (see [`Odb::caching_blobs`]).
    cache_blobs: bool,
    /// Bytes of decoded objects the cache holds at most.
    cache_limit: usize,
}

/// Decoded trees and commits, kept because walks read the same ones
/// repeatedly and decoding a delta chain costs the whole chain.
#[derive(Default)]
struct Cache {
    map: HashMap<ObjectId, Arc<Vec<u8>>>,
    bytes: usize,
}

const CACHE_BYTES: usize = 64 << 20;

impl Odb {
    pub fn new(index: Arc<RepoIndex>, pack_paths: HashMap<i64, PathBuf>) -> Self {
        Odb {
            index,
            pack_paths,
            open: Mutex::new(HashMap::new()),
            cache: Mutex::new(Cache::default()),
            cache_blobs: false,
            cache_limit: CACHE_BYTES,
        }
    }

    /// Caches at most `bytes` of decoded objects (64 MiB by default): for
    /// work that holds other large buffers at the same time, as a merge's
    /// builder does.
    pub fn with_cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_limit = bytes;
        self
    }

    /// Caches blobs as well as trees and commits: for reading every object
    /// of a repository base first (`tessera fsck`), where each blob's delta
    /// base was read just before it.
    pub fn caching_blobs(mut self) -> Self {
        self.cache_blobs = true;
        self
    }

    pub fn location(&self, id: &ObjectId) -> Option<Location> {
        self.index.objects.get(id)
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.index.objects.contains_key(id)
    }

    fn pack(&self, pack_id: i64) -> Result<Arc<PackFile>, Error> {
        let mut open = self.open.lock().expect("pack table lock is never poisoned: no panics while held");
        if let Some(p) = open.get(&pack_id) {
            return Ok(p.clone());
        }
        let path = self.pack_paths.get(&pack_id).ok_or(Error::MissingPack(pack_id))?;
        let pack = Arc::new(PackFile::open(path).map_err(|_| Error::MissingPack(pack_id))?);
        open.insert(pack_id, pack.clone());
        Ok(pack)
    }

    /// How many deltas deep the stored object sits, counting no further
    /// than `cap` (a chain that loops or goes deeper reports `cap`).
    pub fn chain_depth(&self, id: &ObjectId, cap: u32) -> u32 {
        let mut depth = 0;
        let mut current = *id;
        while let Some(base) = self.location(&current).and_then(|l| l.delta_base) {
            if depth >= cap {
                break;
            }
            depth += 1;
            current = base;
        }
        depth
    }

    /// The object's kind and full content.
    ///
    /// Walks the delta chain down to a cached or whole object, then applies
    /// the deltas upwards, caching each tree and commit on the way: walks
    /// read many versions of the same trees, and each costs one delta.
    pub fn read(&self, id: &ObjectId) -> Result<(Kind, Arc<Vec<u8>>), Error> {
        self.read_with_chain_limit(id, read::MAX_CHAIN)
    }

    /// [`Odb::read`] with another bound on the delta chain: `tessera fsck
    /// --repair` reads what an earlier version stored deeper than the
    /// reader allows, to store it again whole.
    pub fn read_with_chain_limit(&self, id: &ObjectId, max_chain: usize) -> Result<(Kind, Arc<Vec<u8>>), Error> {
        let kind = self.location(id).ok_or(Error::Missing(*id))?.kind;
        let mut chain: Vec<(ObjectId, Vec<u8>)> = Vec::new();
        let mut current = *id;
        let mut data = loop {
            if let Some(cached) = self.cache.lock().expect("cache lock").map.get(&current) {
                break cached.clone();
            }
            let loc = self.location(&current).ok_or(Error::Missing(current))?;
            let pack = self.pack(loc.pack_id)?;
            let (info, entry) =
                pack.read_entry(loc.offset, loc.end).map_err(|source| Error::Read { id: current, source })?;
            match (info.header, loc.delta_base) {
                (Header::Whole(_), _) => break Arc::new(entry),
                (_, Some(base)) => {
                    chain.push((current, entry));
                    current = base;
                }
                (_, None) => return Err(Error::Read { id: current, source: read::Error::MissingBase(current) }),
            }
            if chain.len() > max_chain {
                return Err(Error::Read { id: *id, source: read::Error::ChainTooDeep(max_chain) });
            }
        };
        if chain.is_empty() {
            self.remember(*id, kind, &data);
        }
        for (entry_id, delta) in chain.into_iter().rev() {
            let mut out = Vec::new();
            tessera_pack::delta::apply(&data, &delta, &mut out)
                .map_err(|source| Error::Read { id: entry_id, source: read::Error::Delta { offset: 0, source } })?;
            data = Arc::new(out);
            self.remember(entry_id, kind, &data);
        }
        Ok((kind, data))
    }

    fn remember(&self, id: ObjectId, kind: Kind, data: &Arc<Vec<u8>>) {
        if (kind == Kind::Blob && !self.cache_blobs) || data.len() >= self.cache_limit / 16 {
            return;
        }
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.bytes + data.len() > self.cache_limit {
            cache.map.clear();
            cache.bytes = 0;
        }
        if cache.map.insert(id, data.clone()).is_none() {
            cache.bytes += data.len();
        }
    }

    /// The stored entry for `id`, compressed as it is on disk.
    pub fn raw_entry(&self, id: &ObjectId) -> Result<RawEntry, Error> {
        let loc = self.location(id).ok_or(Error::Missing(*id))?;
        let pack = self.pack(loc.pack_id)?;
        let info = pack.entry(loc.offset).map_err(|source| Error::Read { id: *id, source })?;
        let mut compressed = Vec::new();
        pack.read_raw(info.data_offset, loc.end, &mut compressed).map_err(|source| Error::Read { id: *id, source })?;
        Ok(RawEntry { header: info.header, size: info.size, compressed })
    }
}
