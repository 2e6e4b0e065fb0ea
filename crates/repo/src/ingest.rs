//! Taking in a pack (a push, or objects tessera wrote itself): scan and check it on a blocking thread, check that
//! everything it references exists, then register it in one transaction.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use tessera_pack::{index, read, Kind, ObjectId};
use tessera_protocol::fsck::{self, Parsed, TreeEntryKind};
use tessera_store::{NewCommit, NewObject, NewPack, PackToStore};

use crate::Snapshot;

/// What a stored pack added, for the ref checks that follow.
#[derive(Debug, Default)]
pub struct Ingested {
    /// The stored pack (`None` when there was nothing to store).
    pub pack_id: Option<i64>,
    pub kinds: HashMap<ObjectId, Kind>,
    pub tag_targets: HashMap<ObjectId, ObjectId>,
    /// Findings accepted under the fsck policy, for the push's remote message.
    pub fsck: fsck::Report,
    /// The Git LFS pointer files among the pushed blobs, sorted, once each.
    pub lfs_pointers: Vec<tessera_protocol::lfs::Pointer>,
}

/// How a pack is checked: the limits on what it may ask of the server and
/// the severity of each fsck finding.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub limits: index::Limits,
    pub fsck: fsck::Policy,
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
    #[error("reading the pushed trees: {0}")]
    Repo(#[source] Box<crate::Error>),
    #[error("object {id}: {source}")]
    Fsck { id: ObjectId, source: fsck::Error },
    #[error("reading pushed .gitmodules {id}: {source}")]
    Gitmodules { id: ObjectId, source: read::Error },
}

#[derive(Default)]
struct Collected {
    objects: Vec<NewObject>,
    commits: HashMap<ObjectId, (ObjectId, Vec<ObjectId>, i64)>,
    tags: HashMap<ObjectId, ObjectId>,
    /// Every id the new objects reference: millions for a large history,
    /// so hashed by the id's own bytes.
    needed: gix_hashtable::HashSet<ObjectId>,
    gitmodules: HashSet<ObjectId>,
    lfs_pointers: std::collections::BTreeSet<tessera_protocol::lfs::Pointer>,
    report: fsck::Report,
}

/// A pack that passed every check, ready for [`register`].
pub struct Checked {
    outcome: index::Outcome,
    collected: Collected,
    spooled: PathBuf,
}

/// Bytes of stored objects a pack's check caches while it reads the bases
/// of its deltas (a thin pack's, or a merge's own). Each base is read once
/// for all its deltas, so the cache only saves re-reading the delta chains
/// of stored bases; at the reader's 64 MiB default a 10k-commit push held
/// 66 MiB of it (heaptrack, bench/monorepo at 210,000 commits).
pub const BASE_CACHE_BYTES: usize = 8 << 20;

/// Scans, checks and stores the pack at `spooled` for `repo_id`.
pub async fn ingest(
    store: &tessera_store::Store,
    repo_id: i64,
    snapshot: &Snapshot,
    spooled: PathBuf,
    options: &Options,
) -> Result<Ingested, IngestError> {
    let checked = check(snapshot, spooled, options).await?;
    register(store, repo_id, snapshot, checked).await
}

/// Scans and checks the pack at `spooled` against what `snapshot` holds,
/// writing nothing to the database (a push that creates a repository
/// creates it only once this passed).
pub async fn check(snapshot: &Snapshot, spooled: PathBuf, options: &Options) -> Result<Checked, IngestError> {
    let odb = snapshot.odb().with_cache_bytes(BASE_CACHE_BYTES);
    let path = spooled.clone();
    let options = options.clone();
    let (outcome, collected) =
        tokio::task::spawn_blocking(move || scan(&path, &odb, &options)).await.map_err(|_| IngestError::Join)??;

    let known = |id: &ObjectId| snapshot.index.objects.contains_key(id);
    let new_ids: gix_hashtable::HashSet<ObjectId> = collected.objects.iter().map(|o| o.id).collect();
    if let Some(missing) = collected.needed.iter().find(|id| !new_ids.contains(*id) && !known(id)) {
        return Err(IngestError::Missing(*missing));
    }
    Ok(Checked { outcome, collected, spooled })
}

/// A checked pack with its commits' generation numbers: the rows the store
/// needs, and (in `ingested`, with no pack id yet) what the ref checks need.
pub struct Prepared {
    pub ingested: Ingested,
    spooled: PathBuf,
    pack: NewPack,
    objects: Vec<NewObject>,
    commits: Vec<NewCommit>,
}

impl Prepared {
    /// The pack and its rows, for [`tessera_store::Store::receive`].
    pub fn to_store(&self) -> PackToStore<'_> {
        PackToStore { spooled: &self.spooled, pack: self.pack, objects: &self.objects, commits: &self.commits }
    }

    /// The parents of each commit the pack brings.
    pub fn commit_parents(&self) -> HashMap<ObjectId, Vec<ObjectId>> {
        self.commits.iter().map(|c| (c.id, c.parents.clone())).collect()
    }

    /// Which of `files` (paths relative to the repository or directory,
    /// `a/b.bin`) differ between the trees of each update's old and new
    /// commit: what a push would change among locked files. Reads the
    /// pushed objects from the spool file beside `snapshot`'s, on a
    /// blocking thread; callers ask only when locks exist.
    pub async fn changed_files(
        &self,
        snapshot: &Snapshot,
        updates: &[(Option<ObjectId>, Option<ObjectId>)],
        files: &[String],
    ) -> Result<Vec<String>, IngestError> {
        // The snapshot's objects plus this pack's, read as one store.
        const SPOOL: i64 = -1;
        let mut index = (*snapshot.index).clone();
        for o in &self.objects {
            index.objects.insert(
                o.id,
                tessera_store::index::Location {
                    pack_id: SPOOL,
                    offset: o.offset,
                    end: o.end,
                    kind: o.kind,
                    size: o.size,
                    delta_base: o.delta_base,
                },
            );
        }
        let mut paths = (*snapshot.pack_paths).clone();
        paths.insert(SPOOL, self.spooled.clone());
        let trees: HashMap<ObjectId, ObjectId> = self.commits.iter().map(|c| (c.id, c.tree)).collect();
        let updates = updates.to_vec();
        let files = files.to_vec();
        let task = move || -> Result<Vec<String>, crate::Error> {
            let odb = tessera_protocol::odb::Odb::new(std::sync::Arc::new(index), paths);
            let tree_of = |commit: Option<ObjectId>| -> Result<Option<ObjectId>, crate::Error> {
                let Some(commit) = commit else { return Ok(None) };
                if let Some(tree) = trees.get(&commit) {
                    return Ok(Some(*tree));
                }
                let (_, data) = odb.read(&commit)?;
                let hex =
                    data.strip_prefix(b"tree ").and_then(|d| d.get(..40)).ok_or(crate::Error::NotACommit(commit))?;
                Ok(Some(ObjectId::from_hex(hex).map_err(|_| crate::Error::NotACommit(commit))?))
            };
            // Tree walks straight over the object store (the `tree` module
            // builds on this one, not the other way round).
            let entry_at = |tree: Option<ObjectId>, file: &str| -> Result<Option<ObjectId>, crate::Error> {
                let Some(mut current) = tree else { return Ok(None) };
                let parts: Vec<&str> = file.split('/').filter(|p| !p.is_empty()).collect();
                for (i, part) in parts.iter().enumerate() {
                    let (kind, data) = odb.read(&current)?;
                    if kind != Kind::Tree {
                        return Ok(None);
                    }
                    let mut found = None;
                    for entry in fsck::tree_entries(&data) {
                        let entry = entry.map_err(|_| crate::Error::NotATree(current))?;
                        if entry.name == part.as_bytes() {
                            found = Some((entry.id, fsck::mode_kind(entry.mode) == TreeEntryKind::Tree));
                            break;
                        }
                    }
                    let Some((id, is_tree)) = found else { return Ok(None) };
                    if i + 1 == parts.len() {
                        return Ok(Some(id));
                    }
                    if !is_tree {
                        return Ok(None);
                    }
                    current = id;
                }
                Ok(None)
            };
            let mut changed = Vec::new();
            for (old, new) in updates {
                let (old_tree, new_tree) = (tree_of(old)?, tree_of(new)?);
                for file in &files {
                    if !changed.contains(file) && entry_at(old_tree, file)? != entry_at(new_tree, file)? {
                        changed.push(file.clone());
                    }
                }
            }
            Ok(changed)
        };
        tokio::task::spawn_blocking(task)
            .await
            .map_err(|_| IngestError::Join)?
            .map_err(|e| IngestError::Repo(Box::new(e)))
    }

    /// Stores the pack for `repo_id` on its own, in one transaction.
    pub async fn store(self, store: &tessera_store::Store, repo_id: i64) -> Result<Ingested, IngestError> {
        let Prepared { mut ingested, spooled, pack, objects, commits } = self;
        ingested.pack_id = Some(store.add_pack(repo_id, &spooled, pack, &objects, &commits).await?);
        Ok(ingested)
    }
}

/// Computes generation numbers (one more than the highest parent's) for a
/// checked pack against what `snapshot` holds.
pub fn prepare(snapshot: &Snapshot, checked: Checked) -> Prepared {
    let Checked { outcome, collected, spooled } = checked;
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
    Prepared {
        ingested: Ingested {
            pack_id: None,
            kinds,
            tag_targets: collected.tags,
            fsck: collected.report,
            lfs_pointers: collected.lfs_pointers.into_iter().collect(),
        },
        spooled,
        pack: NewPack { checksum: outcome.checksum, size },
        objects: collected.objects,
        commits,
    }
}

/// Stores a checked pack for `repo_id` on its own, in one transaction
/// (objects tessera writes itself, and merge-request pushes).
pub async fn register(
    store: &tessera_store::Store,
    repo_id: i64,
    snapshot: &Snapshot,
    checked: Checked,
) -> Result<Ingested, IngestError> {
    prepare(snapshot, checked).store(store, repo_id).await
}

fn scan(
    path: &Path,
    odb: &tessera_protocol::odb::Odb,
    options: &Options,
) -> Result<(index::Outcome, Collected), IngestError> {
    let mut collected = Collected::default();
    let mut checker = fsck::Checker::new(&options.fsck);
    let depth_cap = options.limits.max_delta_depth;
    let mut refused: Option<(ObjectId, fsck::Error)> = None;
    let scanned = index::scan(
        path,
        options.limits,
        &mut |base| match odb.read(base) {
            Ok((kind, data)) => Ok(Some(index::ExternalBase {
                kind,
                data: data.as_ref().clone(),
                depth: odb.chain_depth(base, depth_cap),
            })),
            Err(tessera_protocol::odb::Error::Missing(_)) => Ok(None),
            Err(e) => Err(Box::new(e)),
        },
        &mut |object, data| {
            let parsed = match data {
                Some(data) => match checker.check(object.kind, data) {
                    Ok(parsed) => parsed,
                    Err(e) => {
                        refused = Some((object.id, e.clone()));
                        return Err(Box::new(e));
                    }
                },
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
                Parsed::Tree { entries, gitmodules } => {
                    for (id, kind) in entries {
                        if kind != TreeEntryKind::Gitlink {
                            collected.needed.insert(id);
                        }
                    }
                    collected.gitmodules.extend(gitmodules);
                }
                Parsed::Blob => {
                    if let Some(pointer) = data.and_then(tessera_protocol::lfs::parse_pointer) {
                        collected.lfs_pointers.insert(pointer);
                    }
                }
            }
            Ok(())
        },
    );
    let mut outcome = match (scanned, refused) {
        (Ok(outcome), _) => outcome,
        // An fsck finding keeps its id in the message the client sees.
        (Err(_), Some((id, source))) => return Err(IngestError::Fsck { id, source }),
        (Err(e), None) => return Err(e.into()),
    };
    collected.objects = std::mem::take(&mut outcome.objects);
    check_gitmodules(path, odb, &collected, &mut checker)?;
    collected.report = checker.report;
    Ok((outcome, collected))
}

/// Checks the content of every `.gitmodules` blob the pack brings (ones
/// already stored were checked when they came).
fn check_gitmodules(
    path: &Path,
    odb: &tessera_protocol::odb::Odb,
    collected: &Collected,
    checker: &mut fsck::Checker<'_>,
) -> Result<(), IngestError> {
    if collected.gitmodules.is_empty() {
        return Ok(());
    }
    let by_id: HashMap<ObjectId, &tessera_store::NewObject> = collected.objects.iter().map(|o| (o.id, o)).collect();
    let pack = read::PackFile::open(path)
        .map_err(|source| IngestError::Gitmodules { id: ObjectId::null(tessera_pack::HashKind::Sha1), source })?;
    for id in &collected.gitmodules {
        let Some(object) = by_id.get(id) else { continue };
        if object.size > fsck::MAX_GITMODULES_BYTES as u64 {
            fsck::check_gitmodules_size(checker, object.size)
                .map_err(|source| IngestError::Fsck { id: *id, source })?;
            continue;
        }
        let data = read_new(&pack, &by_id, odb, *id).map_err(|source| IngestError::Gitmodules { id: *id, source })?;
        fsck::check_gitmodules(checker, &data).map_err(|source| IngestError::Fsck { id: *id, source })?;
    }
    Ok(())
}

/// Reads an object of the pack being ingested, following its delta chain
/// through the pack's other objects and then the stored ones, iteratively.
fn read_new(
    pack: &read::PackFile,
    by_id: &HashMap<ObjectId, &tessera_store::NewObject>,
    odb: &tessera_protocol::odb::Odb,
    id: ObjectId,
) -> Result<Vec<u8>, read::Error> {
    let mut chain = Vec::new();
    let mut current = id;
    let mut data = loop {
        let Some(object) = by_id.get(&current) else {
            let (_, data) = odb.read(&current).map_err(|_| read::Error::MissingBase(current))?;
            break data.as_ref().clone();
        };
        let (_, entry) = pack.read_entry(object.offset, object.end)?;
        match object.delta_base {
            None => break entry,
            Some(base) => {
                chain.push(entry);
                current = base;
            }
        }
        if chain.len() > read::MAX_CHAIN {
            return Err(read::Error::ChainTooDeep(read::MAX_CHAIN));
        }
    };
    let mut out = Vec::new();
    for delta in chain.into_iter().rev() {
        tessera_pack::delta::apply(&data, &delta, &mut out)
            .map_err(|source| read::Error::Delta { offset: 0, source })?;
        std::mem::swap(&mut data, &mut out);
    }
    Ok(data)
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
