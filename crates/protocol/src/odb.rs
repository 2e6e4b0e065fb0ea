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
        Odb { index, pack_paths, open: Mutex::new(HashMap::new()), cache: Mutex::new(Cache::default()) }
    }

    pub fn location(&self, id: &ObjectId) -> Option<&Location> {
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

    /// The object's kind and full content.
    pub fn read(&self, id: &ObjectId) -> Result<(Kind, Arc<Vec<u8>>), Error> {
        let loc = *self.location(id).ok_or(Error::Missing(*id))?;
        if let Some(data) = self.cache.lock().expect("cache lock").map.get(id) {
            return Ok((loc.kind, data.clone()));
        }
        let pack = self.pack(loc.pack_id)?;
        let (kind, data) = pack
            .decode(loc.offset, &mut |base| {
                let (kind, data) = self.read(base).map_err(|_| read::Error::MissingBase(*base))?;
                Ok((kind, data.as_ref().clone()))
            })
            .map_err(|source| Error::Read { id: *id, source })?;
        let data = Arc::new(data);
        if kind != Kind::Blob && data.len() < CACHE_BYTES / 16 {
            let mut cache = self.cache.lock().expect("cache lock");
            if cache.bytes + data.len() > CACHE_BYTES {
                cache.map.clear();
                cache.bytes = 0;
            }
            cache.bytes += data.len();
            cache.map.insert(*id, data.clone());
        }
        Ok((kind, data))
    }

    /// The stored entry for `id`, compressed as it is on disk.
    pub fn raw_entry(&self, id: &ObjectId) -> Result<RawEntry, Error> {
        let loc = *self.location(id).ok_or(Error::Missing(*id))?;
        let pack = self.pack(loc.pack_id)?;
        let info = pack.entry(loc.offset).map_err(|source| Error::Read { id: *id, source })?;
        let mut compressed = Vec::new();
        pack.read_raw(info.data_offset, loc.end, &mut compressed).map_err(|source| Error::Read { id: *id, source })?;
        Ok(RawEntry { header: info.header, size: info.size, compressed })
    }
}
