//! Taking in a pack (a push, or objects tessera wrote itself): scan and check it on a blocking thread, check that
//! everything it references exists, then register it in one transaction.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use tessera_pack::{index, Kind, ObjectId};
use tessera_protocol::fsck::{self, Parsed, TreeEntryKind};
use tessera_store::{NewCommit, NewObject, NewPack};

use crate::Snapshot;

/// What a stored pack added, for the ref checks that follow.
#[derive(Debug, Default)]
pub struct Ingested {
    /// The stored pack (`None` when there was nothing to store).
    pub pack_id: Option<i64>,
    pub kinds: HashMap<ObjectId, Kind>,
    pub tag_targets: HashMap<ObjectId, ObjectId>,
}

/// Why a pack was refused; sent to the client as `unpack <reason>`.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Pack(#[from] index::Error),
    #[error("missing object {0} referenced by the pushed objects")]
    Missing(ObjectId),
    #[error("storing the pack failed")]
    Store(#[from] tessera_store::Error),
    #[error("internal error while checking the pack")]
    Join,
}

#[derive(Default)]
struct Collected {
    objects: Vec<NewObject>,
    commits: HashMap<ObjectId, (ObjectId, Vec<ObjectId>, i64)>,
    tags: HashMap<ObjectId, ObjectId>,
    needed: HashSet<ObjectId>,
}

/// Scans, checks and stores the pack at `spooled` for `repo_id`.
pub async fn ingest(
    store: &tessera_store::Store,
    repo_id: i64,
    snapshot: &Snapshot,
    spooled: PathBuf,
) -> Result<Ingested, IngestError> {
    let odb = snapshot.odb();
    let path = spooled.clone();
    let (outcome, collected) =
        tokio::task::spawn_blocking(move || scan(&path, &odb)).await.map_err(|_| IngestError::Join)??;

    let known = |id: &ObjectId| snapshot.index.objects.contains_key(id);
    let new_ids: HashSet<ObjectId> = collected.objects.iter().map(|o| o.id).collect();
    if let Some(missing) = collected.needed.iter().find(|id| !new_ids.contains(*id) && !known(id)) {
        return Err(IngestError::Missing(*missing));
    }

    // Generation numbers: one more than the highest parent's.
    let stored_parents: Vec<ObjectId> = collected
        .commits
        .values()
        .flat_map(|(_, parents, _)| parents.iter())
        .filter(|p| !collected.commits.contains_key(*p))
        .copied()
        .collect();
    let mut generation: HashMap<ObjectId, i64> = HashMap::new();
    for p in &stored_parents {
        if let Some(info) = snapshot.index.commits.get(p) {
            generation.insert(*p, info.generation);
        }
    }
    let mut commits = Vec::with_capacity(collected.commits.len());
    for id in topo_order(&collected.commits) {
        let (tree, parents, time) = &collected.commits[&id];
        let g = 1 + parents.iter().map(|p| generation.get(p).copied().unwrap_or(0)).max().unwrap_or(0);
        generation.insert(id, g);
        commits.push(NewCommit { id, tree: *tree, parents: parents.clone(), generation: g, time: *time });
    }

    let size = std::fs::metadata(&spooled).map(|m| m.len()).unwrap_or(0);
    let kinds = collected.objects.iter().map(|o| (o.id, o.kind)).collect();
    let pack_id = store
        .add_pack(repo_id, &spooled, NewPack { checksum: outcome.checksum, size }, &collected.objects, &commits)
        .await?;
    Ok(Ingested { pack_id: Some(pack_id), kinds, tag_targets: collected.tags })
}

fn scan(path: &Path, odb: &tessera_protocol::odb::Odb) -> Result<(index::Outcome, Collected), IngestError> {
    let mut collected = Collected::default();
    let limits = index::Limits::default();
    let mut outcome = index::scan(
        path,
        limits,
        &mut |base| match odb.read(base) {
            Ok((kind, data)) => Ok(Some((kind, data.as_ref().clone()))),
            Err(tessera_protocol::odb::Error::Missing(_)) => Ok(None),
            Err(e) => Err(Box::new(e)),
        },
        &mut |object, data| {
            let parsed = match data {
                Some(data) => fsck::check(object.kind, data)?,
                None => Parsed::Blob,
            };
            match parsed {
                Parsed::Commit { tree, parents, time } => {
                    collected.needed.insert(tree);
                    collected.needed.extend(parents.iter().copied());
                    collected.commits.insert(object.id, (tree, parents, time));
                }
                Parsed::Tag { target, .. } => {
                    collected.needed.insert(target);
                    collected.tags.insert(object.id, target);
                }
                Parsed::Tree { entries } => {
                    for (id, kind) in entries {
                        if kind != TreeEntryKind::Gitlink {
                            collected.needed.insert(id);
                        }
                    }
                }
                Parsed::Blob => {}
            }
            Ok(())
        },
    )?;
    collected.objects = std::mem::take(&mut outcome.objects);
    Ok((outcome, collected))
}

/// Parents before children, among the new commits.
fn topo_order(commits: &HashMap<ObjectId, (ObjectId, Vec<ObjectId>, i64)>) -> Vec<ObjectId> {
    let mut order = Vec::with_capacity(commits.len());
    let mut done: HashSet<ObjectId> = HashSet::new();
    let mut ids: Vec<&ObjectId> = commits.keys().collect();
    ids.sort();
    for start in ids {
        let mut stack = vec![(*start, false)];
        while let Some((id, expanded)) = stack.pop() {
            if done.contains(&id) {
                continue;
            }
            if expanded {
                done.insert(id);
                order.push(id);
                continue;
            }
            stack.push((id, true));
            for p in &commits[&id].1 {
                if commits.contains_key(p) && !done.contains(p) {
                    stack.push((*p, false));
                }
            }
        }
    }
    order
}
