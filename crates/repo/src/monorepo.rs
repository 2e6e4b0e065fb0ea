//! The monorepo: one root history, directory histories derived from it, and
//! the ways the root moves (merge requests, import-repository syncs).
//!
//! Root commits are only ever written here, one parent each. When one is
//! written, every directory whose tree it changed gets a directory commit:
//! the root commit's author, committer and message over the directory's
//! tree, with the directory's previous commit as parent. A pushed commit
//! that lands unchanged, and an import repository's own commit, are
//! recorded as the directory commit themselves, so their ids survive.
//! Directory histories are therefore fixed when written and a clone only
//! reads them.

use std::collections::{BTreeMap, HashMap, HashSet};

use tessera_pack::{Kind, ObjectId};
use tessera_store::{MergeRequest, MrStatus, Repo, RepoKind, Store};

use crate::objects::Builder;
use crate::tree::{self, View, ViewMut};
use crate::{Error, Snapshot, Snapshots};

pub const MAIN: &str = "refs/heads/main";

/// How many bytes of new objects one advance of the root holds in memory
/// before it stores them and goes on, by default. The advance's cache of
/// stored trees is as large, and checking the pack it stores costs about
/// twice this again: together about five times this (measured with
/// heaptrack on a 10k-commit merge). Against 16 MiB, 4 MiB made the twenty
/// 10k-commit merges of bench/monorepo 19% slower and their peak 79 MiB
/// lower (353 MiB at 200,000 commits); `merge_buffer_bytes` sets it.
pub const FLUSH_BYTES: usize = 4 << 20;

/// Author, committer and message of a commit to be written.
#[derive(Debug, Clone)]
pub struct Meta {
    pub author: String,
    pub committer: String,
    pub encoding: Option<String>,
    pub message: Vec<u8>,
}

impl Meta {
    /// Takes the metadata of an existing commit (signatures are dropped:
    /// they would not match the new commit).
    pub fn of_commit(raw: &[u8]) -> Meta {
        let split = raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 2).unwrap_or(raw.len());
        let mut meta =
            Meta { author: String::new(), committer: String::new(), encoding: None, message: raw[split..].to_vec() };
        for line in raw[..split].split(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(line);
            if let Some(v) = line.strip_prefix("author ") {
                meta.author = v.to_string();
            } else if let Some(v) = line.strip_prefix("committer ") {
                meta.committer = v.to_string();
            } else if let Some(v) = line.strip_prefix("encoding ") {
                meta.encoding = Some(v.to_string());
            }
        }
        meta
    }

    /// tessera's own identity, now.
    pub fn system(message: String) -> Meta {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let who = format!("tessera <tessera@localhost> {now} +0000");
        Meta { author: who.clone(), committer: who, encoding: None, message: format!("{message}\n").into_bytes() }
    }

    pub fn commit(&self, tree: ObjectId, parents: &[ObjectId]) -> Vec<u8> {
        let mut out = format!("tree {tree}\n");
        for p in parents {
            out.push_str(&format!("parent {p}\n"));
        }
        out.push_str(&format!("author {}\ncommitter {}\n", self.author, self.committer));
        if let Some(e) = &self.encoding {
            out.push_str(&format!("encoding {e}\n"));
        }
        out.push('\n');
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.message);
        bytes
    }

    pub fn title(&self) -> String {
        String::from_utf8_lossy(&self.message).lines().next().unwrap_or("").to_string()
    }
}

/// One new root commit: put `tree` at `path`, and optionally use
/// `dir_commit` as that directory's commit instead of deriving one.
#[derive(Debug, Clone)]
pub struct Step {
    pub path: String,
    pub tree: Option<ObjectId>,
    pub dir_commit: Option<ObjectId>,
    pub meta: Meta,
}

/// Access to the monorepo root and its directories.
pub struct Monorepo<'a> {
    pub store: &'a Store,
    pub snapshots: &'a Snapshots,
    /// Bytes of new objects a merge holds before storing them
    /// ([`FLUSH_BYTES`] unless set).
    pub flush_bytes: usize,
}

/// Normalized directory path of a commit-file tree path: `/` or `/a/b`.
fn dir_key(path: &str) -> String {
    let parts: Vec<&str> = tree::components(path).collect();
    if parts.is_empty() {
        "/".into()
    } else {
        format!("/{}", parts.join("/"))
    }
}

impl<'a> Monorepo<'a> {
    pub fn new(store: &'a Store, snapshots: &'a Snapshots) -> Self {
        Monorepo { store, snapshots, flush_bytes: FLUSH_BYTES }
    }

    pub async fn root(&self) -> Result<Repo, Error> {
        self.store.repo_by_path("/").await?.ok_or_else(|| Error::Refused("the monorepo root does not exist".into()))
    }

    pub async fn snapshot(&self, root: &Repo) -> Result<Snapshot, Error> {
        Ok(self.snapshots.get(self.store, root.id).await?)
    }

    /// The root commit `main` points at.
    pub async fn root_head(&self, root: &Repo) -> Result<Option<ObjectId>, Error> {
        Ok(self.store.list_refs(root.id).await?.into_iter().find(|r| r.name == MAIN).map(|r| r.target))
    }

    /// The directory commit of `path` as of root commit `at`.
    pub async fn dir_head(
        &self,
        root: &Repo,
        snapshot: &Snapshot,
        path: &str,
        at: ObjectId,
    ) -> Result<Option<ObjectId>, Error> {
        let path = dir_key(path);
        if path == "/" {
            return Ok(Some(at));
        }
        if let Some(head) = self.store.indexed_dir_head(root.id, &path, &at).await? {
            return Ok(head);
        }
        // The index is of another root commit (an older one asked about,
        // or an index not rebuilt yet): walk the root's first parents.
        let map = self.store.dir_commits(root.id, &path).await?;
        let mut current = Some(at);
        while let Some(c) = current {
            if let Some(d) = map.get(&c) {
                return Ok((!d.is_null()).then_some(*d));
            }
            current = snapshot.index.commits.get(&c).and_then(|info| info.parents.first().copied());
        }
        Ok(None)
    }

    /// Writes one root commit per step on top of `base`, derives the
    /// directory commits, stores everything, and moves `main` by
    /// compare-and-swap. Returns the new root head, or `None` if `main`
    /// moved meanwhile (the caller recomputes and tries again).
    pub async fn advance(
        &self,
        root: &Repo,
        snapshot: Snapshot,
        base: Option<ObjectId>,
        mut builder: Builder,
        steps: Vec<Step>,
    ) -> Result<Option<ObjectId>, Error> {
        // Owned: dropped before each refresh below, so that the refresh can
        // update the cached index in place instead of copying it.
        let mut snapshot = snapshot;
        let mut odb = snapshot.odb().with_cache_bytes(self.flush_bytes);
        let mut rows: Vec<(ObjectId, String, ObjectId)> = Vec::new();
        let mut batch_heads: HashMap<String, Option<ObjectId>> = HashMap::new();
        let mut prev = base;
        for step in steps {
            if builder.bytes() > self.flush_bytes {
                // Memory stays bounded whatever the number of steps: what
                // was built so far is stored (reachable from nothing until
                // `main` moves) and read back from the store from now on.
                std::mem::take(&mut builder).store(self.store, root.id, &snapshot).await?;
                self.store.add_dir_commits(root.id, &std::mem::take(&mut rows)).await?;
                drop(odb);
                drop(snapshot);
                // What the batch and its checks freed goes back before the
                // next batch: freed pieces left in the middle of malloc's
                // heap would otherwise add up over the batches.
                crate::memory::release_free_memory_now().await;
                snapshot = self.snapshot(root).await?;
                odb = snapshot.odb().with_cache_bytes(self.flush_bytes);
            }
            let prev_tree = match prev {
                Some(p) => Some(commit_tree(&View { odb: &odb, builder: &builder }, &p)?),
                None => None,
            };
            let new_tree = {
                let mut view = ViewMut { odb: &odb, builder: &mut builder };
                tree::replace_subtree(&mut view, prev_tree.unwrap_or_else(tree::empty_tree), &step.path, step.tree)?
            };
            let parents: Vec<ObjectId> = prev.into_iter().collect();
            let root_commit = builder.add(Kind::Commit, step.meta.commit(new_tree, &parents));
            let changed = tree::diff_dirs(&View { odb: &odb, builder: &builder }, prev_tree, Some(new_tree))?;
            let step_path = dir_key(&step.path);
            for (path, dir_tree) in changed {
                if path == "/" {
                    continue;
                }
                let dir_commit = match (&dir_tree, step.dir_commit) {
                    (None, _) => ObjectId::null(gix_hash_kind()),
                    (Some(_), Some(given)) if path == step_path => given,
                    (Some(t), _) => {
                        // A directory the batch has not changed yet is
                        // where it was at `base` (the batch's own root
                        // commits are not stored yet: asking about them
                        // would find no history).
                        let parent = match batch_heads.get(&path) {
                            Some(h) => *h,
                            None => match base {
                                Some(b) => self.dir_head(root, &snapshot, &path, b).await?,
                                None => None,
                            },
                        };
                        let parents: Vec<ObjectId> = parent.into_iter().collect();
                        builder.add(Kind::Commit, step.meta.commit(*t, &parents))
                    }
                };
                batch_heads.insert(path.clone(), (!dir_commit.is_null()).then_some(dir_commit));
                rows.push((root_commit, path, dir_commit));
            }
            prev = Some(root_commit);
        }
        let new_head = prev.ok_or_else(|| Error::Refused("nothing to commit".into()))?;
        builder.store(self.store, root.id, &snapshot).await?;
        let null = ObjectId::null(gix_hash_kind());
        let heads: Vec<(String, ObjectId)> =
            batch_heads.into_iter().map(|(path, head)| (path, head.unwrap_or(null))).collect();
        let moved = self.store.advance_root(root.id, base, new_head, &rows, &heads).await?;
        Ok(moved.then_some(new_head))
    }

    /// Brings the directory-head index up to the root's head when it is
    /// not (a database from before the index, or a root moved by a
    /// process that found the index stale): one backward pass. Returns
    /// the number of directories indexed, `None` when it was current.
    pub async fn ensure_dir_heads(&self) -> Result<Option<usize>, Error> {
        let root = self.root().await?;
        let Some(head) = self.root_head(&root).await? else { return Ok(None) };
        if self.store.dir_heads_as_of(root.id).await? == Some(head) {
            return Ok(None);
        }
        let snapshot = self.snapshot(&root).await?;
        let rank = dir_history(&snapshot, Some(head));
        Ok(Some(self.store.rebuild_dir_heads(root.id, head, &rank).await?))
    }

    /// Runs `compute` against the current root head and advances the root
    /// with its steps, recomputing when another writer got there first.
    async fn advance_with_retry<F>(&self, mut compute: F) -> Result<ObjectId, Error>
    where
        F: FnMut(&Snapshot, Option<ObjectId>) -> Result<(Builder, Vec<Step>), Error>,
    {
        let root = self.root().await?;
        for _ in 0..16 {
            // Head first: the snapshot read after it holds every object
            // the head needs (objects commit before refs move).
            let base = self.root_head(&root).await?;
            let snapshot = self.snapshot(&root).await?;
            let (builder, steps) = compute(&snapshot, base)?;
            if let Some(head) = self.advance(&root, snapshot, base, builder, steps).await? {
                return Ok(head);
            }
        }
        Err(Error::Contended)
    }

    /// Mounts an import repository's `head` commit at `path` in the root
    /// tree, as one root commit "sync <path> to <id>".
    pub async fn sync_import(&self, import: &Repo, pack_id: Option<i64>, head: ObjectId) -> Result<ObjectId, Error> {
        let root = self.root().await?;
        match pack_id {
            Some(p) => self.store.share_pack(import.id, root.id, p).await?,
            None => {
                for p in self.store.repo_pack_ids(import.id).await? {
                    self.store.share_pack(import.id, root.id, p).await?;
                }
            }
        }
        let path = import.path.clone();
        self.advance_with_retry(|snapshot, _| {
            let odb = snapshot.odb();
            let builder = Builder::default();
            let tree = commit_tree(&View { odb: &odb, builder: &builder }, &head)?;
            let meta = Meta::system(format!("sync {path} to {head}"));
            Ok((builder, vec![Step { path: path.clone(), tree: Some(tree), dir_commit: Some(head), meta }]))
        })
        .await
    }

    /// Mounts every import repository whose default branch the root does
    /// not show yet: a process stopped between an import's ref update and
    /// the root's leaves the root behind until this runs (at start-up).
    /// Returns the paths it synced.
    pub async fn reconcile_imports(&self) -> Result<Vec<String>, Error> {
        let root = self.root().await?;
        let Some(root_head) = self.root_head(&root).await? else { return Ok(Vec::new()) };
        let snapshot = self.snapshot(&root).await?;
        let mut synced = Vec::new();
        for repo in self.store.list_repos().await? {
            if repo.kind != tessera_store::RepoKind::Import {
                continue;
            }
            let refs = self.store.list_refs(repo.id).await?;
            let Some(head) = refs.iter().find(|r| r.name == repo.head).map(|r| r.target) else { continue };
            if self.dir_head(&root, &snapshot, &repo.path, root_head).await? == Some(head) {
                continue;
            }
            self.sync_import(&repo, None, head).await?;
            synced.push(repo.path);
        }
        Ok(synced)
    }

    /// Creates the initial layout's history: one root commit on nothing.
    pub async fn initialize(&self, builder: Builder, tree: ObjectId, meta: Meta) -> Result<ObjectId, Error> {
        let root = self.root().await?;
        let snapshot = self.snapshot(&root).await?;
        let step = Step { path: "/".into(), tree: Some(tree), dir_commit: None, meta };
        self.advance(&root, snapshot, None, builder, vec![step]).await?.ok_or(Error::Contended)
    }

    /// Checks that `head` could open a merge request for directory `path`
    /// before its objects are stored: `pushed` gives the parents of the
    /// commits the push brings. Refusals are the ones [`Monorepo::open_mr`]
    /// would give, so a push that opens nothing stores nothing.
    pub async fn check_mr(
        &self,
        path: &str,
        head: ObjectId,
        pushed: &HashMap<ObjectId, Vec<ObjectId>>,
    ) -> Result<(), Error> {
        let path = dir_key(path);
        let root = self.root().await?;
        let snapshot = self.snapshot(&root).await?;
        let parents = |c: &ObjectId| {
            pushed.get(c).map(Vec::as_slice).or_else(|| snapshot.index.commits.get(c).map(|i| i.parents))
        };
        self.mr_base(&root, &snapshot, &path, head, parents).await.map(|_| ())
    }

    /// The base and commits of a merge request of `head` on `path`.
    async fn mr_base<'p>(
        &self,
        root: &Repo,
        snapshot: &Snapshot,
        path: &str,
        head: ObjectId,
        parents: impl Fn(&ObjectId) -> Option<&'p [ObjectId]>,
    ) -> Result<(Option<ObjectId>, Chain), Error> {
        let root_head = self.root_head(root).await?;
        let dir_head = match root_head {
            Some(r) => self.dir_head(root, snapshot, path, r).await?,
            None => None,
        };
        let known = History::new(snapshot, dir_head);
        let chain = pushed_chain(head, |c| known.contains(c), parents, |c| known.rank(c))?;
        let base = match chain.base {
            Some(b) => Some(b),
            None if dir_head.is_none() => None,
            None => {
                return Err(Error::Refused(format!(
                    "the pushed commits do not build on the history of {path}; fetch its main and rebase onto it"
                )))
            }
        };
        if chain.commits.is_empty() {
            return Err(Error::Refused(format!("nothing new to merge into {path}")));
        }
        Ok((base, chain))
    }

    /// Turns a pushed tip into a merge request for directory `path`.
    pub async fn open_mr(
        &self,
        path: &str,
        branch: &str,
        head: ObjectId,
        author: &str,
    ) -> Result<(MergeRequest, bool), Error> {
        let path = dir_key(path);
        let root = self.root().await?;
        let snapshot = self.snapshot(&root).await?;
        let parents = |c: &ObjectId| snapshot.index.commits.get(c).map(|i| i.parents);
        let (base, _) = self.mr_base(&root, &snapshot, &path, head, parents).await?;
        let odb = snapshot.odb();
        let raw = odb.read(&head)?.1;
        let title = Meta::of_commit(&raw).title();
        Ok(self.store.upsert_mr(&path, branch, base, head, &title, author).await?)
    }

    /// Merges a merge request: fast-forward when the directory has not
    /// moved since its base, otherwise a file-wise rebase; conflicting paths
    /// put the request in `conflict` status instead.
    pub async fn merge(&self, id: i64) -> Result<MergeOutcome, Error> {
        let mr = self.store.mr(id).await?.ok_or_else(|| Error::Refused(format!("no merge request {id}")))?;
        if !matches!(mr.status, MrStatus::Open | MrStatus::Conflict) {
            return Err(Error::Refused(format!("merge request {id} is {}", mr.status.as_str())));
        }
        let root = self.root().await?;
        let mut conflicts: Vec<String> = Vec::new();
        // The directory's head depends on the root head; resolve it per
        // attempt, outside the synchronous compute step.
        for _ in 0..16 {
            let base_root = self.root_head(&root).await?;
            let snapshot = self.snapshot(&root).await?;
            let dir_head = match base_root {
                Some(r) => self.dir_head(&root, &snapshot, &mr.path, r).await?,
                None => None,
            };
            // The directory's history: pushed commits found in it are in
            // already (a stacked MR whose base merged).
            let known = History::new(&snapshot, dir_head);
            let (builder, steps) = match plan_merge(&snapshot, &mr, dir_head, &known)? {
                Plan::Steps(b, s) => (b, s),
                Plan::Conflict(paths) => {
                    conflicts = paths;
                    break;
                }
                Plan::AlreadyIn => {
                    let at = base_root.ok_or_else(|| Error::Refused("the monorepo root is empty".into()))?;
                    self.store
                        .set_mr_status(id, &[MrStatus::Open, MrStatus::Conflict], MrStatus::Merged, &[], Some(at))
                        .await?;
                    return Ok(MergeOutcome::Merged { root: at });
                }
            };
            drop(known);
            if let Some(new_root) = self.advance(&root, snapshot, base_root, builder, steps).await? {
                self.store
                    .set_mr_status(id, &[MrStatus::Open, MrStatus::Conflict], MrStatus::Merged, &[], Some(new_root))
                    .await?;
                self.settle_merged(&root, &mr.path, new_root).await?;
                return Ok(MergeOutcome::Merged { root: new_root });
            }
        }
        if conflicts.is_empty() {
            return Err(Error::Contended);
        }
        self.store
            .set_mr_status(id, &[MrStatus::Open, MrStatus::Conflict], MrStatus::Conflict, &conflicts, None)
            .await?;
        Ok(MergeOutcome::Conflict { paths: conflicts })
    }

    /// Marks merged the other open merge requests of `path` whose head is
    /// now in the directory's history (stacked requests merged by a later
    /// one): their commits are all in.
    async fn settle_merged(&self, root: &Repo, path: &str, at: ObjectId) -> Result<(), Error> {
        let snapshot = self.snapshot(root).await?;
        let head = self.dir_head(root, &snapshot, path, at).await?;
        let known = History::new(&snapshot, head);
        let mut open = self.store.list_mrs(Some(MrStatus::Open)).await?;
        open.extend(self.store.list_mrs(Some(MrStatus::Conflict)).await?);
        for other in open {
            if other.path == path && known.contains(&other.head) {
                self.store
                    .set_mr_status(other.id, &[MrStatus::Open, MrStatus::Conflict], MrStatus::Merged, &[], Some(at))
                    .await?;
            }
        }
        Ok(())
    }

    /// Makes an import directory a monorepo directory: its import history
    /// stays its history; later pushes open merge requests.
    ///
    /// A directory has one branch, `main`: every other ref of the import
    /// repository (branches, tags) would be gone, and a default branch of
    /// another name is served as `main`. Unless `drop_refs` says so, such a
    /// conversion is refused with the list of what would go.
    pub async fn convert(&self, path: &str, drop_refs: bool) -> Result<ObjectId, Error> {
        let path = dir_key(path);
        let import = self
            .store
            .repo_by_path(&path)
            .await?
            .filter(|r| r.kind == RepoKind::Import)
            .ok_or_else(|| Error::Refused(format!("{path} is not an import repository")))?;
        let refs = self.store.list_refs(import.id).await?;
        let head = refs
            .iter()
            .find(|r| r.name == import.head)
            .map(|r| r.target)
            .ok_or_else(|| Error::Refused(format!("{path} has no default branch to convert")))?;
        let lost: Vec<&str> = refs.iter().map(|r| r.name.as_str()).filter(|n| *n != import.head).collect();
        if !drop_refs && (!lost.is_empty() || import.head != MAIN) {
            const SHOWN: usize = 20;
            let mut what = Vec::new();
            if import.head != MAIN {
                what.push(format!("{} is served as refs/heads/main from then on", import.head));
            }
            if !lost.is_empty() {
                let mut names: Vec<&str> = lost.iter().take(SHOWN).copied().collect();
                let more = lost.len().saturating_sub(SHOWN);
                let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
                names.sort_unstable();
                what.push(format!("{} ref(s) would be dropped: {}{tail}", lost.len(), names.join(", ")));
            }
            return Err(Error::Refused(format!(
                "converting {path} keeps only its default branch: {}; keep them elsewhere (e.g. push the \
                 tags to / or to another import repository) or convert with --drop-refs",
                what.join("; ")
            )));
        }
        // Make sure the root holds exactly that commit at this path.
        let root = self.root().await?;
        let root_head = self.root_head(&root).await?;
        let snapshot = self.snapshot(&root).await?;
        let current = match root_head {
            Some(r) => self.dir_head(&root, &snapshot, &path, r).await?,
            None => None,
        };
        if current != Some(head) {
            self.sync_import(&import, None, head).await?;
        }
        self.store.set_repo_kind(import.id, RepoKind::Converted).await?;
        Ok(head)
    }

    /// What a merge request changes: its commits (newest first) and files.
    ///
    /// Runs on a blocking thread in bounded memory: a file over
    /// [`MAX_DIFF_BLOB_BYTES`] is summarised without being read, and once
    /// [`MAX_DIFF_TOTAL_BYTES`] were compared the rest are too.
    pub async fn describe(&self, mr: &MergeRequest) -> Result<Description, Error> {
        let root = self.root().await?;
        let snapshot = self.snapshot(&root).await?;
        let (base, head) = (mr.base, mr.head);
        tokio::task::spawn_blocking(move || describe_change(&snapshot, base, head))
            .await
            .map_err(|_| Error::Refused("describing the merge request failed".into()))?
    }
}

/// The largest blob a merge-request diff reads.
pub const MAX_DIFF_BLOB_BYTES: u64 = 1 << 20;
/// The most blob bytes one merge-request description reads.
pub const MAX_DIFF_TOTAL_BYTES: u64 = 32 << 20;

fn describe_change(snapshot: &Snapshot, base: Option<ObjectId>, head: ObjectId) -> Result<Description, Error> {
    let odb = snapshot.odb();
    let parents = |c: &ObjectId| snapshot.index.commits.get(c).map(|i| i.parents);
    let chain = pushed_chain(head, |c| Some(*c) == base, parents, |_| 0)?;
    let view = View { odb: &odb, builder: &Builder::default() };
    let mut commits = Vec::new();
    for c in chain.commits.iter().rev() {
        let meta = Meta::of_commit(&view.read_commit(c)?);
        commits.push(CommitSummary { id: *c, title: meta.title(), author: meta.author.clone() });
    }
    let old_tree = match base {
        Some(b) => Some(commit_tree(&view, &b)?),
        None => None,
    };
    let new_tree = commit_tree(&view, &head)?;
    let mut files = Vec::new();
    let mut budget = MAX_DIFF_TOTAL_BYTES;
    for (path, (old, new)) in tree::diff_files(&view, old_tree, Some(new_tree))? {
        let size = |s: &Option<tree::FileState>| match s {
            Some((mode, id)) if mode.as_slice() != b"160000" => odb.location(id).map_or(0, |l| l.size),
            _ => 0,
        };
        let (old_size, new_size) = (size(&old), size(&new));
        let status = match (&old, &new) {
            (None, _) => "added",
            (_, None) => "deleted",
            _ => "modified",
        };
        let too_large = old_size.max(new_size) > MAX_DIFF_BLOB_BYTES || old_size + new_size > budget;
        if too_large {
            files.push(FileChange { path, status, added: 0, removed: 0, summary: Some("too large") });
            continue;
        }
        budget -= old_size + new_size;
        let read_blob = |s: &Option<tree::FileState>| -> Result<Vec<u8>, Error> {
            match s {
                Some((mode, id)) if mode.as_slice() != b"160000" => Ok(odb.read(id)?.1.as_ref().clone()),
                _ => Ok(Vec::new()),
            }
        };
        let (a, b) = (read_blob(&old)?, read_blob(&new)?);
        if a.contains(&0) || b.contains(&0) {
            files.push(FileChange { path, status, added: 0, removed: 0, summary: Some("binary") });
            continue;
        }
        let (added, removed) = line_stat(&a, &b);
        files.push(FileChange { path, status, added, removed, summary: None });
    }
    Ok(Description { commits, files })
}

fn gix_hash_kind() -> tessera_pack::HashKind {
    tessera_pack::HashKind::Sha1
}

/// The result of [`Monorepo::merge`].
#[derive(Debug, Clone)]
pub enum MergeOutcome {
    Merged { root: ObjectId },
    Conflict { paths: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct CommitSummary {
    pub id: ObjectId,
    pub title: String,
    pub author: String,
}

#[derive(Debug, Clone)]
pub struct FileChange {
    pub path: String,
    pub status: &'static str,
    pub added: usize,
    pub removed: usize,
    /// Why no line counts are given: `binary`, or `too large` to read.
    pub summary: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct Description {
    pub commits: Vec<CommitSummary>,
    pub files: Vec<FileChange>,
}

fn line_stat(a: &[u8], b: &[u8]) -> (usize, usize) {
    let diff = similar::TextDiff::from_lines(a, b);
    let mut added = 0;
    let mut removed = 0;
    for change in diff.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Insert => added += 1,
            similar::ChangeTag::Delete => removed += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    (added, removed)
}

/// The tree a commit points at.
pub fn commit_tree(view: &View<'_>, commit: &ObjectId) -> Result<ObjectId, Error> {
    if let Some(info) = view.odb.index.commits.get(commit) {
        return Ok(info.tree);
    }
    let raw = view.read_commit(commit)?;
    let hex = raw.get(5..45).ok_or(Error::NotACommit(*commit))?;
    ObjectId::from_hex(hex).map_err(|_| Error::NotACommit(*commit))
}

/// Commits from a pushed tip back to (not including) the first commit
/// `is_base` accepts, oldest first; with merges, every pushed commit.
struct Chain {
    commits: Vec<ObjectId>,
    base: Option<ObjectId>,
    /// The history holds merge commits: it lands squashed.
    merges: bool,
}

fn pushed_chain<'p>(
    head: ObjectId,
    is_base: impl Fn(&ObjectId) -> bool,
    parents_of: impl Fn(&ObjectId) -> Option<&'p [ObjectId]>,
    rank: impl Fn(&ObjectId) -> usize,
) -> Result<Chain, Error> {
    let mut commits = Vec::new();
    let mut current = Some(head);
    while let Some(c) = current {
        if is_base(&c) {
            commits.reverse();
            return Ok(Chain { commits, base: Some(c), merges: false });
        }
        let parents = parents_of(&c).ok_or_else(|| Error::Refused(format!("commit {c} is not stored")))?;
        if parents.len() > 1 {
            return with_merges(head, is_base, parents_of, rank);
        }
        commits.push(c);
        current = parents.first().copied();
        if commits.len() > MAX_PUSHED_COMMITS {
            return Err(Error::Refused("pushed history is too long".into()));
        }
    }
    commits.reverse();
    Ok(Chain { commits, base: None, merges: false })
}

const MAX_PUSHED_COMMITS: usize = 100_000;

/// A pushed history holding merges: every commit reachable from `head`
/// that `is_base` does not stop at, and as base the reachable base commit
/// `rank` puts first (the newest of the directory's history).
fn with_merges<'p>(
    head: ObjectId,
    is_base: impl Fn(&ObjectId) -> bool,
    parents_of: impl Fn(&ObjectId) -> Option<&'p [ObjectId]>,
    rank: impl Fn(&ObjectId) -> usize,
) -> Result<Chain, Error> {
    let mut commits = Vec::new();
    let mut base: Option<ObjectId> = None;
    let mut seen = HashSet::new();
    let mut queue = std::collections::VecDeque::from([head]);
    while let Some(c) = queue.pop_front() {
        if !seen.insert(c) {
            continue;
        }
        if is_base(&c) {
            if base.is_none_or(|b| rank(&c) < rank(&b)) {
                base = Some(c);
            }
            continue;
        }
        let parents = parents_of(&c).ok_or_else(|| Error::Refused(format!("commit {c} is not stored")))?;
        commits.push(c);
        if commits.len() > MAX_PUSHED_COMMITS {
            return Err(Error::Refused("pushed history is too long".into()));
        }
        queue.extend(parents.iter().copied());
    }
    commits.reverse();
    Ok(Chain { commits, base, merges: true })
}

/// A directory's history, from its head down its first parents, walked
/// only as deep as the questions asked need: generation numbers fall
/// along first parents, so whether a commit is in it is known once the
/// walk passes the commit's generation. A one-commit merge request on a
/// directory with a long history reads a few commits, not the history.
struct History<'s> {
    snapshot: &'s Snapshot,
    /// The commits walked so far with their distance from the head, and
    /// the next one to walk.
    walked: std::cell::RefCell<(HashMap<ObjectId, usize>, Option<ObjectId>)>,
}

impl<'s> History<'s> {
    fn new(snapshot: &'s Snapshot, head: Option<ObjectId>) -> Self {
        History { snapshot, walked: std::cell::RefCell::new((HashMap::new(), head)) }
    }

    fn contains(&self, c: &ObjectId) -> bool {
        let Some(target) = self.snapshot.index.commits.get(c).map(|i| i.generation) else { return false };
        let mut walked = self.walked.borrow_mut();
        let (seen, next) = &mut *walked;
        while let Some(at) = *next {
            let Some(info) = self.snapshot.index.commits.get(&at) else {
                *next = None;
                break;
            };
            if info.generation < target || seen.contains_key(&at) {
                break;
            }
            let distance = seen.len();
            seen.insert(at, distance);
            *next = info.parents.first().copied();
        }
        seen.contains_key(c)
    }

    /// Distance from the head (nearest first); `usize::MAX` if not in it.
    fn rank(&self, c: &ObjectId) -> usize {
        if !self.contains(c) {
            return usize::MAX;
        }
        self.walked.borrow().0.get(c).copied().unwrap_or(usize::MAX)
    }
}

/// The commits of a directory's history, from its head down its first
/// parents. Not the `dir_commits` rows: a merge that lost its race to move
/// the root leaves rows for a root commit that never landed.
fn dir_history(snapshot: &Snapshot, head: Option<ObjectId>) -> HashMap<ObjectId, usize> {
    let mut out = HashMap::new();
    let mut current = head;
    while let Some(c) = current {
        if out.contains_key(&c) {
            break;
        }
        out.insert(c, out.len());
        current = snapshot.index.commits.get(&c).and_then(|i| i.parents.first().copied());
    }
    out
}

/// The changes that turn `from` into `to`, made to `onto` instead (a
/// cherry-pick): files `onto` did not touch since `from` take `to`'s
/// version; files both changed are merged line by line. `Err` lists the
/// conflicts (paths, or hunks of text files).
#[allow(clippy::type_complexity)]
fn rebase_changes(
    odb: &tessera_protocol::odb::Odb,
    builder: &mut Builder,
    from: Option<ObjectId>,
    to: ObjectId,
    onto: Option<ObjectId>,
) -> Result<Result<BTreeMap<String, Option<tree::FileState>>, Vec<String>>, Error> {
    let view = View { odb, builder };
    let own = tree::diff_files(&view, from, Some(to))?;
    // What the directory changed since `from`.
    let moved = tree::diff_files(&view, from, onto)?;
    let mut changes: BTreeMap<String, Option<tree::FileState>> = BTreeMap::new();
    let mut merged_blobs: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut conflicts = Vec::new();
    for (path, (before, after)) in own {
        let Some((_, current)) = moved.get(&path) else {
            changes.insert(path, after);
            continue;
        };
        if *current == after {
            continue; // the same change is there already
        }
        match (&before, current, &after) {
            (Some((bm, b)), Some((om, o)), Some((tm, t))) if bm == om && om == tm => {
                let (base_text, ours_text, theirs_text) =
                    (read_blob(&view, b)?, read_blob(&view, o)?, read_blob(&view, t)?);
                match text_merge(&base_text, &ours_text, &theirs_text) {
                    Ok(merged) => merged_blobs.push((path, tm.clone(), merged.into_bytes())),
                    Err(found) if found.is_empty() => conflicts.push(path),
                    Err(found) => conflicts.extend(found.iter().map(|h| describe_conflict(&path, h))),
                }
            }
            _ => conflicts.push(path),
        }
    }
    if !conflicts.is_empty() {
        return Ok(Err(conflicts));
    }
    for (path, mode, bytes) in merged_blobs {
        let id = builder.add(Kind::Blob, bytes);
        changes.insert(path, Some((mode, id)));
    }
    Ok(Ok(changes))
}

/// A merge request whose history holds merges lands as one commit: the
/// change from its base (the newest directory commit it contains) to its
/// head, made to the directory as it is now. Directory histories stay
/// linear, one parent per commit, derived from root commits.
fn squash(
    odb: &tessera_protocol::odb::Odb,
    mut builder: Builder,
    mr: &MergeRequest,
    chain: &Chain,
    base: Option<ObjectId>,
    dir_head: Option<ObjectId>,
) -> Result<Plan, Error> {
    let view = View { odb, builder: &builder };
    let head_tree = commit_tree(&view, &mr.head)?;
    let base_tree = match base {
        Some(b) => Some(commit_tree(&view, &b)?),
        None => None,
    };
    let dir_tree = match dir_head {
        Some(h) => Some(commit_tree(&view, &h)?),
        None => None,
    };
    let head_meta = Meta::of_commit(&view.read_commit(&mr.head)?);
    let new_tree = if dir_head == base {
        head_tree
    } else {
        let changes = match rebase_changes(odb, &mut builder, base_tree, head_tree, dir_tree)? {
            Ok(changes) => changes,
            Err(conflicts) => return Ok(Plan::Conflict(conflicts)),
        };
        tree::apply_files(&mut ViewMut { odb, builder: &mut builder }, dir_tree, &changes)?
    };
    if Some(new_tree) == dir_tree {
        return Ok(Plan::AlreadyIn);
    }
    let mut message = format!("{} (!{}, squashed)\n\n", mr.title, mr.id);
    message.push_str(&format!("{} commits, merges included, from {}:\n", chain.commits.len(), mr.branch));
    let view = View { odb, builder: &builder };
    for c in chain.commits.iter().rev().take(50) {
        let title = Meta::of_commit(&view.read_commit(c)?).title();
        message.push_str(&format!("* {title}\n"));
    }
    let meta = Meta { message: message.into_bytes(), encoding: None, ..head_meta };
    let parents: Vec<ObjectId> = dir_head.into_iter().collect();
    let commit = builder.add(Kind::Commit, meta.commit(new_tree, &parents));
    let step = Step { path: mr.path.clone(), tree: Some(new_tree), dir_commit: Some(commit), meta };
    Ok(Plan::Steps(builder, vec![step]))
}

/// A blob's bytes, whether stored or just built by this merge.
fn read_blob(view: &View<'_>, id: &ObjectId) -> Result<Vec<u8>, Error> {
    if let Some(data) = view.builder.get(id) {
        return Ok(data.to_vec());
    }
    Ok(view.odb.read(id)?.1.as_ref().clone())
}

/// A three-way merge of three versions of a text file; binary or very
/// large files are not merged (`Err` with no hunks: the whole file).
fn text_merge(base: &[u8], ours: &[u8], theirs: &[u8]) -> Result<String, Vec<crate::merge3::Conflict>> {
    fn text(b: &[u8]) -> Option<&str> {
        (b.len() <= crate::merge3::MAX_BYTES && !b.contains(&0)).then(|| std::str::from_utf8(b).ok()).flatten()
    }
    match (text(base), text(ours), text(theirs)) {
        (Some(b), Some(o), Some(t)) => crate::merge3::merge(b, o, t),
        _ => Err(Vec::new()),
    }
}

/// One line for the merge request's conflict list: the path, the base
/// lines, and what each side made of them (shortened).
fn describe_conflict(path: &str, c: &crate::merge3::Conflict) -> String {
    let short = |s: &str| {
        let one: String = s.chars().take(120).collect();
        if s.chars().count() > 120 {
            format!("{one:?}…")
        } else {
            format!("{one:?}")
        }
    };
    let lines = if c.base_len == 0 {
        format!("after line {}", c.base_line - 1)
    } else {
        format!("lines {}-{}", c.base_line, c.base_line + c.base_len - 1)
    };
    format!("{path}: {lines}: the directory has {}, this request {}", short(&c.ours), short(&c.theirs))
}

enum Plan {
    Steps(Builder, Vec<Step>),
    Conflict(Vec<String>),
    /// Every commit of the request is in the directory already.
    AlreadyIn,
}

/// How merge request `mr` lands on a directory whose head is `dir_head`;
/// `known` holds every commit that was ever the directory's. Commits
/// already in (same id: the newest pushed commit found in `known` becomes
/// the base) or whose change is already applied (replaying them changes
/// nothing) are skipped, so stacked requests never land twice.
fn plan_merge(
    snapshot: &Snapshot,
    mr: &MergeRequest,
    dir_head: Option<ObjectId>,
    known: &History<'_>,
) -> Result<Plan, Error> {
    // Bounded as the advance's own cache is: a rebase's reads come next to
    // what it builds.
    let odb = snapshot.odb().with_cache_bytes(crate::ingest::BASE_CACHE_BYTES);
    let mut builder = Builder::default();
    let parents = |c: &ObjectId| snapshot.index.commits.get(c).map(|i| i.parents);
    let chain = pushed_chain(mr.head, |c| Some(*c) == mr.base || known.contains(c), parents, |c| known.rank(c))?;
    if chain.commits.is_empty() {
        return Ok(Plan::AlreadyIn);
    }
    let base = chain.base.or(mr.base);
    let view = View { odb: &odb, builder: &builder };
    if chain.merges {
        return squash(&odb, builder, mr, &chain, base, dir_head);
    }
    if dir_head == base {
        // Fast-forward: the pushed commits become the directory's history.
        let mut steps = Vec::new();
        for c in &chain.commits {
            let raw = view.read_commit(c)?;
            steps.push(Step {
                path: mr.path.clone(),
                tree: Some(commit_tree(&view, c)?),
                dir_commit: Some(*c),
                meta: Meta::of_commit(&raw),
            });
        }
        return Ok(Plan::Steps(builder, steps));
    }
    // The directory moved: replay each pushed commit's own changes on it,
    // as a rebase does. A file the directory changed too since the
    // commit's parent is merged line by line (three-way); overlapping
    // changes, and changes to binary, deleted or re-moded files, conflict.
    let ours_tree = match dir_head {
        Some(h) => Some(commit_tree(&view, &h)?),
        None => None,
    };
    let mut conflicts: Vec<String> = Vec::new();
    let mut steps = Vec::new();
    let mut prev_dir = dir_head;
    let mut dir_tree = ours_tree;
    for c in &chain.commits {
        let view = View { odb: &odb, builder: &builder };
        let raw = view.read_commit(c)?;
        let parent_tree = match snapshot.index.commits.get(c).and_then(|i| i.parents.first().copied()) {
            Some(p) => Some(commit_tree(&view, &p)?),
            None => None,
        };
        let commit_tree_id = commit_tree(&view, c)?;
        let changes = match rebase_changes(&odb, &mut builder, parent_tree, commit_tree_id, dir_tree)? {
            Ok(changes) => changes,
            Err(found) => {
                conflicts.extend(found);
                continue; // keep looking, to report every conflict at once
            }
        };
        if !conflicts.is_empty() {
            continue;
        }
        let new_tree = tree::apply_files(&mut ViewMut { odb: &odb, builder: &mut builder }, dir_tree, &changes)?;
        if Some(new_tree) == dir_tree {
            // Its change is in already (the same change merged before).
            continue;
        }
        let meta = Meta::of_commit(&raw);
        let parents: Vec<ObjectId> = prev_dir.into_iter().collect();
        let rebased = builder.add(Kind::Commit, meta.commit(new_tree, &parents));
        steps.push(Step { path: mr.path.clone(), tree: Some(new_tree), dir_commit: Some(rebased), meta });
        prev_dir = Some(rebased);
        dir_tree = Some(new_tree);
    }
    if !conflicts.is_empty() {
        conflicts.dedup();
        return Ok(Plan::Conflict(conflicts));
    }
    if steps.is_empty() {
        return Ok(Plan::AlreadyIn);
    }
    Ok(Plan::Steps(builder, steps))
}
