//! `tessera fsck`: every stored object of a repository reads back within
//! the limits pushes are held to; `--repair` stores again, whole, what an
//! earlier version accepted beyond them (delta chains too deep to read).

use std::collections::HashMap;

use tessera_pack::{index, Kind, ObjectId};
use tessera_store::{NewObject, NewPack, Repo, Store};

use crate::{Error, Snapshot, Snapshots};

/// One object that does not read back, or reads back beyond a limit.
#[derive(Debug, Clone)]
pub struct Finding {
    pub id: ObjectId,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Its delta chain is deeper than pushes may make it (`limit`); a
    /// repair reads it with an unbounded chain and stores it whole.
    ChainTooDeep { depth: u32, limit: u32 },
    /// Larger than `max_object_bytes`: not read, reported.
    TooLarge { size: u64 },
    /// Reading failed, or the content does not hash to its id.
    Unreadable(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::ChainTooDeep { depth, limit } => write!(f, "delta chain {depth} deep (limit {limit})"),
            Problem::TooLarge { size } => write!(f, "{size} bytes, over max_object_bytes"),
            Problem::Unreadable(why) => write!(f, "unreadable: {why}"),
        }
    }
}

/// What [`check`] found in one repository.
#[derive(Debug, Default)]
pub struct Outcome {
    pub objects: u64,
    pub findings: Vec<Finding>,
    /// Objects stored again whole by a repair.
    pub repaired: u64,
}

/// Reads every object of `repo` back (blobs over `limits.max_object_size`
/// are only reported); with `repair`, stores the ones whose chains are too
/// deep again as whole objects and points their rows at them.
pub async fn check(
    store: &Store,
    snapshots: &Snapshots,
    repo: &Repo,
    limits: index::Limits,
    repair: bool,
) -> Result<Outcome, Error> {
    let snapshot = snapshots.get(store, repo.id).await?;
    let scan_snapshot = snapshot.clone();
    let mut outcome = tokio::task::spawn_blocking(move || read_all(&scan_snapshot, limits))
        .await
        .map_err(|_| Error::Refused("checking objects failed".into()))?;
    if !repair {
        return Ok(outcome);
    }
    let deep: Vec<ObjectId> =
        outcome.findings.iter().filter(|f| matches!(f.problem, Problem::ChainTooDeep { .. })).map(|f| f.id).collect();
    if deep.is_empty() {
        return Ok(outcome);
    }
    let spooled = store.pack_storage().new_spool()?;
    let path = spooled.path().to_path_buf();
    let (pack, objects) = tokio::task::spawn_blocking(move || write_whole(&snapshot, &deep, &path))
        .await
        .map_err(|_| Error::Refused("re-storing objects failed".into()))??;
    store.relocate_objects(repo.id, spooled.path(), pack, &objects).await?;
    outcome.repaired = objects.len() as u64;
    let repaired: std::collections::HashSet<ObjectId> = objects.iter().map(|o| o.id).collect();
    outcome.findings.retain(|f| !repaired.contains(&f.id));
    Ok(outcome)
}

/// Every object's delta depth, computed once per object.
fn depths(snapshot: &Snapshot) -> HashMap<ObjectId, u32> {
    let objects = &snapshot.index.objects;
    let mut depth: HashMap<ObjectId, u32> = HashMap::with_capacity(objects.len());
    for start in objects.keys() {
        // Walk up to a known depth (or a whole object), then fill the path.
        let mut path = Vec::new();
        let mut current = start;
        let mut known = 0;
        loop {
            if let Some(d) = depth.get(&current) {
                known = *d;
                break;
            }
            match objects.get(&current).and_then(|l| l.delta_base) {
                // A row that names itself as a base (or a loop) ends the walk.
                Some(base) if path.len() < objects.len() => {
                    path.push(current);
                    current = base;
                }
                _ => {
                    depth.insert(current, 0);
                    break;
                }
            }
        }
        for (i, id) in path.iter().rev().enumerate() {
            depth.insert(*id, known + i as u32 + 1);
        }
    }
    depth
}

fn read_all(snapshot: &Snapshot, limits: index::Limits) -> Outcome {
    // Bases before what bases on them, each blob cached: every read then
    // applies one delta, not its whole chain.
    let odb = snapshot.odb().caching_blobs();
    let depth_of = depths(snapshot);
    let mut outcome = Outcome::default();
    let mut ids: Vec<(u32, ObjectId, u64)> =
        snapshot.index.objects.iter().map(|(id, l)| (depth_of.get(&id).copied().unwrap_or(0), id, l.size)).collect();
    ids.sort();
    for (depth, id, size) in ids {
        outcome.objects += 1;
        let problem = if size > limits.max_object_size {
            Some(Problem::TooLarge { size })
        } else if depth > limits.max_delta_depth {
            Some(Problem::ChainTooDeep { depth, limit: limits.max_delta_depth })
        } else {
            match odb.read(&id) {
                Ok((kind, data)) if tessera_pack::object_id(kind, &data) == id => None,
                Ok(_) => Some(Problem::Unreadable("content does not hash to its id".into())),
                Err(e) => Some(Problem::Unreadable(e.to_string())),
            }
        };
        if let Some(problem) = problem {
            outcome.findings.push(Finding { id, problem });
        }
    }
    outcome
}

/// Writes the objects as whole entries of a new pack at `path`.
fn write_whole(
    snapshot: &Snapshot,
    ids: &[ObjectId],
    path: &std::path::Path,
) -> Result<(NewPack, Vec<NewObject>), Error> {
    let odb = snapshot.odb().caching_blobs();
    let depth_of = depths(snapshot);
    let mut ids = ids.to_vec();
    ids.sort_by_key(|id| (depth_of.get(id).copied().unwrap_or(0), *id));
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut writer = tessera_pack::write::Writer::new(file, ids.len() as u32)?;
    let mut starts: HashMap<ObjectId, (u64, Kind, u64)> = HashMap::new();
    for id in &ids {
        // Unbounded: the chain is walked iteratively, holding its deltas
        // down to the nearest cached base.
        let (kind, data) = odb.read_with_chain_limit(id, usize::MAX)?;
        if tessera_pack::object_id(kind, &data) != *id {
            return Err(Error::Refused(format!("object {id} does not hash to its id; it cannot be repaired")));
        }
        let offset = writer.whole(kind, &data)?;
        starts.insert(*id, (offset, kind, data.len() as u64));
    }
    let (file, checksum) = writer.finish()?;
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let size = file.metadata()?.len();
    // Each entry ends where the next starts; the last, at the trailer.
    let mut by_offset: Vec<(u64, ObjectId)> = starts.iter().map(|(id, (o, _, _))| (*o, *id)).collect();
    by_offset.sort();
    let mut out = Vec::with_capacity(by_offset.len());
    for (i, (offset, id)) in by_offset.iter().enumerate() {
        let end = by_offset.get(i + 1).map_or(size - 20, |(next, _)| *next);
        let (_, kind, object_size) = starts[id];
        out.push(NewObject { id: *id, kind, size: object_size, offset: *offset, end, delta_base: None });
    }
    Ok((NewPack { checksum, size }, out))
}
