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
}

impl Builder {
    /// Adds an object (once) and returns its id.
    pub fn add(&mut self, kind: Kind, data: Vec<u8>) -> ObjectId {
        let id = tessera_pack::object_id(kind, &data);
        if !self.ids.contains_key(&id) {
            self.ids.insert(id, self.objects.len());
            self.objects.push((kind, data));
        }
        id
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
        let spool_dir = store.pack_storage().spool_dir();
        std::fs::create_dir_all(&spool_dir)?;
        let spooled = tempfile::NamedTempFile::new_in(&spool_dir)?;
        let file = std::io::BufWriter::new(spooled.reopen()?);
        let mut writer = tessera_pack::write::Writer::new(file, self.objects.len() as u32)?;
        for (kind, data) in &self.objects {
            writer.whole(*kind, data)?;
        }
        writer.finish()?;
        Ok(ingest::ingest(store, repo_id, snapshot, spooled.path().to_path_buf()).await?)
    }
}
