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
    ///
    /// The cached snapshot is taken out of the map while it is refreshed,
    /// so that when no request is reading it the refresh updates it in
    /// place instead of copying it.
    pub async fn get(&self, store: &Store, repo_id: i64) -> Result<Snapshot, tessera_store::Error> {
        let mut map = self.map.lock().await;
        let version = store.repo_version(repo_id).await?;
        let current = map.remove(&repo_id);
        if let Some(s) = &current {
            if s.index.version == version {
                map.insert(repo_id, s.clone());
                return Ok(current.expect("checked above"));
            }
        }
        let (mut index, mut paths) = match current {
            Some(s) => (
                Arc::try_unwrap(s.index).unwrap_or_else(|shared| (*shared).clone()),
                Arc::try_unwrap(s.pack_paths).unwrap_or_else(|shared| (*shared).clone()),
            ),
            None => (RepoIndex::new(repo_id), HashMap::new()),
        };
        let seen = index.version;
        let refreshed = store.refresh_index(&mut index).await;
        let mut result =
            refreshed.map(|packs| packs.into_iter().filter(|p| !paths.contains_key(p)).collect::<Vec<_>>());
        if let Ok(packs) = &result {
            for id in packs {
                match store.pack_path(*id).await {
                    Ok(path) => {
                        paths.insert(*id, path);
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        if result.is_err() {
            // Kept, as of the version it had: the next refresh takes in
            // those rows again and finds their packs.
            index.version = seen;
        }
        let snapshot = Snapshot { index: Arc::new(index), pack_paths: Arc::new(paths) };
        map.insert(repo_id, snapshot.clone());
        result.map(|_| snapshot)
    }
}
