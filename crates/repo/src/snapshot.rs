//! Per-repository index snapshots, cached between requests and refreshed
//! incrementally when the repository's version moves.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tessera_protocol::odb::Odb;
use tessera_store::index::RepoIndex;
use tessera_store::Store;

/// An index snapshot with the local paths of the packs it refers to.
#[derive(Clone)]
pub struct Snapshot {
    pub index: Arc<RepoIndex>,
    pub pack_paths: Arc<HashMap<i64, PathBuf>>,
}

impl Snapshot {
    /// The snapshot of a repository that does not exist yet.
    pub fn empty() -> Snapshot {
        Snapshot { index: Arc::new(RepoIndex::new(0)), pack_paths: Arc::new(HashMap::new()) }
    }

    pub fn odb(&self) -> Odb {
        Odb::new(self.index.clone(), (*self.pack_paths).clone())
    }
}

/// Snapshots kept between requests, one per repository.
#[derive(Default)]
pub struct Snapshots {
    map: tokio::sync::Mutex<HashMap<i64, Snapshot>>,
}

impl Snapshots {
    /// The repository's snapshot, refreshed if the repository changed since.
    pub async fn get(&self, store: &Store, repo_id: i64) -> Result<Snapshot, tessera_store::Error> {
        let mut map = self.map.lock().await;
        let current = map.get(&repo_id).cloned();
        let version = store.repo_version(repo_id).await?;
        if let Some(s) = &current {
            if s.index.version == version {
                return Ok(s.clone());
            }
        }
        let (mut index, mut paths) = match current {
            Some(s) => ((*s.index).clone(), (*s.pack_paths).clone()),
            None => (RepoIndex::new(repo_id), HashMap::new()),
        };
        store.refresh_index(&mut index).await?;
        let mut pack_ids: Vec<i64> =
            index.objects.values().map(|l| l.pack_id).filter(|p| !paths.contains_key(p)).collect();
        pack_ids.sort_unstable();
        pack_ids.dedup();
        for id in pack_ids {
            paths.insert(id, store.pack_path(id).await?);
        }
        let snapshot = Snapshot { index: Arc::new(index), pack_paths: Arc::new(paths) };
        map.insert(repo_id, snapshot.clone());
        Ok(snapshot)
    }
}
