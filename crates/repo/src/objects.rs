//! Writing new objects: collect them, stream them into a pack, take it in.

use std::collections::HashMap;

use tessera_pack::{Kind, ObjectId};
use tessera_store::Store;

use crate::ingest::{self, Ingested};
use crate::{Error, Snapshot};

/// Objects tessera creates (merged trees, derived commits), written as one pack.
#[derive(Default)]
pub struct Builder {
    objects: Vec<(Kind, Vec<u8>)>,
    ids: HashMap<ObjectId, usize>,
    /// A likely delta base per object: the version it replaces.
    bases: HashMap<ObjectId, ObjectId>,
    /// The objects' bytes, in all.
    bytes: usize,
}

/// Longest delta chain written; deeper ones make reads slow.
const MAX_DEPTH: usize = 50;

impl Builder {
    /// Adds an object (once) and returns its id.
    pub fn add(&mut self, kind: Kind, data: Vec<u8>) -> ObjectId {
        let id = tessera_pack::object_id(kind, &data);
        if !self.ids.contains_key(&id) {
            self.ids.insert(id, self.objects.len());
            self.bytes += data.len();
            self.objects.push((kind, data));
        }
        id
    }

    /// The bytes of the objects added so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Notes that `id` is a new version of `base`, so the pack can store it
    /// as a delta.
    pub fn hint_base(&mut self, id: ObjectId, base: ObjectId) {
        if id != base && self.ids.contains_key(&id) {
            self.bases.entry(id).or_insert(base);
        }
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.ids.contains_key(id)
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The data of an object added earlier.
    pub fn get(&self, id: &ObjectId) -> Option<&[u8]> {
        self.ids.get(id).map(|i| self.objects[*i].1.as_slice())
    }

    /// Writes the objects as a pack and stores it in `repo_id`, with the
    /// same checks a push gets.
    pub async fn store(self, store: &Store, repo_id: i64, snapshot: &Snapshot) -> Result<Ingested, Error> {
        if self.objects.is_empty() {
            return Ok(Ingested::default());
        }
        let spooled = store.pack_storage().new_spool()?;
        let file = std::io::BufWriter::new(spooled.reopen()?);
        let mut writer = tessera_pack::write::Writer::new(file, self.objects.len() as u32)?;
        let odb = snapshot.odb().with_cache_bytes(ingest::BASE_CACHE_BYTES);
        // Offsets and chain depths of what this pack holds so far.
        let mut written: HashMap<ObjectId, (u64, usize)> = HashMap::new();
        for (kind, data) in &self.objects {
            let id = tessera_pack::object_id(*kind, data);
            let mut entry = None;
            if let Some(base) = self.bases.get(&id) {
                let (base_data, header, depth) = match written.get(base) {
                    Some((offset, depth)) => (
                        self.get(base).map(std::borrow::Cow::Borrowed),
                        tessera_pack::entry::Header::OfsDelta { distance: *offset },
                        *depth,
                    ),
                    None => (
                        odb.read(base).ok().map(|(_, d)| std::borrow::Cow::Owned(d.as_ref().clone())),
                        tessera_pack::entry::Header::RefDelta { base: *base },
                        odb.chain_depth(base, MAX_DEPTH as u32 + 1) as usize,
                    ),
                };
                if let Some(base_data) = base_data.filter(|_| depth < MAX_DEPTH) {
                    if let Some(delta) = tessera_pack::delta::encode_prefix_suffix(&base_data, data) {
                        entry = Some((writer.delta(&header, &delta)?, depth + 1));
                    }
                }
            }
            let entry = match entry {
                Some(e) => e,
                None => (writer.whole(*kind, data)?, 0),
            };
            written.insert(id, entry);
        }
        writer.finish()?;

        Ok(ingest::ingest(store, repo_id, snapshot, spooled.path().to_path_buf(), &ingest::Options::default()).await?)
    }
}
