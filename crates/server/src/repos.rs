//! Repository paths, and the per-repository index snapshots cached between requests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tessera_protocol::odb::Odb;
use tessera_store::index::RepoIndex;
use tessera_store::Repo;

use crate::error::HttpError;
use crate::State;

/// Turns a URL path into a monorepo path: one leading `/`, no trailing `.git`
/// or `/`, no empty, `.` or `..` segments.
pub fn normalize(raw: &str) -> Result<String, HttpError> {
    let trimmed = raw.trim_matches('/');
    let trimmed = trimmed
        .strip_suffix(".git")
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    let mut out = String::new();
    for segment in trimmed.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(HttpError::bad_request(format!(
                "invalid repository path {raw:?}"
            )));
        }
        if segment.chars().any(|c| c.is_control() || c == '\\') {
            return Err(HttpError::bad_request(format!(
                "invalid repository path {raw:?}"
            )));
        }
        out.push('/');
        out.push_str(segment);
    }
    Ok(out)
}

/// Whether `path` lies strictly below one of the import roots.
pub fn under_import_root(state: &State, path: &str) -> bool {
    state.config.import_roots.iter().any(|root| {
        let root = root.trim_end_matches('/');
        path.len() > root.len() + 1 && path.starts_with(root) && path.as_bytes()[root.len()] == b'/'
    })
}

pub async fn find(state: &State, path: &str) -> Result<Repo, HttpError> {
    match state.store.repo_by_path(path).await? {
        Some(repo) => Ok(repo),
        None => Err(HttpError::not_found(format!("repository {path} not found"))),
    }
}

/// An index snapshot with the local paths of the packs it refers to.
#[derive(Clone)]
pub struct Snapshot {
    pub index: Arc<RepoIndex>,
    pub pack_paths: Arc<HashMap<i64, PathBuf>>,
}

impl Snapshot {
    pub fn odb(&self) -> Odb {
        Odb::new(self.index.clone(), (*self.pack_paths).clone())
    }
}

#[derive(Default)]
pub struct Cache {
    map: tokio::sync::Mutex<HashMap<i64, Snapshot>>,
}

/// The repository's snapshot, refreshed if the repository changed since.
pub async fn snapshot(state: &State, repo_id: i64) -> Result<Snapshot, HttpError> {
    let mut map = state.cache.map.lock().await;
    let current = map.get(&repo_id).cloned();
    let version = state.store.repo_version(repo_id).await?;
    if let Some(s) = &current {
        if s.index.version == version {
            return Ok(s.clone());
        }
    }
    let (mut index, mut paths) = match current {
        Some(s) => ((*s.index).clone(), (*s.pack_paths).clone()),
        None => (RepoIndex::new(repo_id), HashMap::new()),
    };
    state.store.refresh_index(&mut index).await?;
    let mut pack_ids: Vec<i64> = index
        .objects
        .values()
        .map(|l| l.pack_id)
        .filter(|p| !paths.contains_key(p))
        .collect();
    pack_ids.sort_unstable();
    pack_ids.dedup();
    for id in pack_ids {
        paths.insert(id, state.store.pack_path(id).await?);
    }
    let snapshot = Snapshot {
        index: Arc::new(index),
        pack_paths: Arc::new(paths),
    };
    map.insert(repo_id, snapshot.clone());
    Ok(snapshot)
}
