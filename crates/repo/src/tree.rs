//! Reading, editing and comparing trees, over stored objects plus the ones
//! being built.

use std::collections::BTreeMap;

use tessera_pack::{Kind, ObjectId};
use tessera_protocol::fsck::tree_entries;
use tessera_protocol::odb::Odb;

use crate::objects::Builder;
use crate::Error;

/// One tree entry, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub mode: Vec<u8>,
    pub name: Vec<u8>,
    pub id: ObjectId,
}

impl Entry {
    pub fn is_tree(&self) -> bool {
        // Old histories hold zero-padded `040000`: git reads it as a directory.
        tessera_protocol::fsck::mode_kind(&self.mode) == tessera_protocol::fsck::TreeEntryKind::Tree
    }
}

/// A file's mode and blob (or gitlink) id.
pub type FileState = (Vec<u8>, ObjectId);

/// Stored objects and the ones being built, read as one.
pub struct View<'a> {
    pub odb: &'a Odb,
    pub builder: &'a Builder,
}

pub fn empty_tree() -> ObjectId {
    tessera_pack::object_id(Kind::Tree, b"")
}

impl View<'_> {
    pub fn read_tree(&self, id: &ObjectId) -> Result<Vec<Entry>, Error> {
        if *id == empty_tree() {
            return Ok(Vec::new());
        }
        let owned;
        let data: &[u8] = match self.builder.get(id) {
            Some(d) => d,
            None => {
                let (kind, data) = self.odb.read(id)?;
                if kind != Kind::Tree {
                    return Err(Error::NotATree(*id));
                }
                owned = data;
                owned.as_slice()
            }
        };
        tree_entries(data)
            .map(|e| {
                e.map(|e| Entry { mode: e.mode.to_vec(), name: e.name.to_vec(), id: e.id })
                    .map_err(|_| Error::NotATree(*id))
            })
            .collect()
    }

    pub fn read_commit(&self, id: &ObjectId) -> Result<std::sync::Arc<Vec<u8>>, Error> {
        if let Some(d) = self.builder.get(id) {
            return Ok(std::sync::Arc::new(d.to_vec()));
        }
        let (kind, data) = self.odb.read(id)?;
        if kind != Kind::Commit {
            return Err(Error::NotACommit(*id));
        }
        Ok(data)
    }

    /// The tree at `path` (`/a/b`) under `root`, if there is one.
    pub fn subtree(&self, root: ObjectId, path: &str) -> Result<Option<ObjectId>, Error> {
        let mut current = root;
        for part in components(path) {
            let entries = self.read_tree(&current)?;
            match entries.iter().find(|e| e.name == part.as_bytes() && e.is_tree()) {
                Some(e) => current = e.id,
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }
}

pub fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|p| !p.is_empty())
}

/// Serializes entries in git's canonical order.
pub fn encode(mut entries: Vec<Entry>) -> Vec<u8> {
    entries.sort_by(gix_order);
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&e.mode);
        out.push(b' ');
        out.extend_from_slice(&e.name);
        out.push(0);
        out.extend_from_slice(e.id.as_bytes());
    }
    out
}

fn gix_order(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    let key = |e: &Entry| {
        let mut k = e.name.clone();
        if e.is_tree() {
            k.push(b'/');
        }
        k
    };
    key(a).cmp(&key(b))
}

/// How deep a walk over trees goes before it refuses, like C git's
/// `core.maxTreeDepth`.
pub const MAX_TREE_DEPTH: usize = 4096;
/// The longest path a walk builds, in bytes: no checkout could write a
/// longer one, and it bounds what a diff of a hostile tree holds.
pub const MAX_PATH_BYTES: usize = 4096;

fn too_deep(path: &str) -> Error {
    let shown: String = path.chars().take(80).collect();
    Error::Refused(format!(
        "{shown}...: trees nest deeper than {MAX_TREE_DEPTH} or paths grow longer than {MAX_PATH_BYTES} bytes"
    ))
}

/// Replaces (or with `None` removes) the tree at `path` under `root`,
/// creating intermediate directories; returns the new root tree.
pub fn replace_subtree(
    view: &mut ViewMut<'_>,
    root: ObjectId,
    path: &str,
    new: Option<ObjectId>,
) -> Result<ObjectId, Error> {
    let parts: Vec<&str> = components(path).collect();
    if parts.len() > MAX_TREE_DEPTH || path.len() > MAX_PATH_BYTES {
        return Err(too_deep(path));
    }
    // Down: the tree at each level of the path (None where it is missing).
    let mut levels: Vec<(Option<ObjectId>, Vec<Entry>)> = Vec::with_capacity(parts.len());
    let mut current = Some(root);
    for part in &parts {
        let entries = match current {
            Some(t) => view.view().read_tree(&t)?,
            None => Vec::new(),
        };
        let next = entries.iter().find(|e| e.name == part.as_bytes() && e.is_tree()).map(|e| e.id);
        levels.push((current, entries));
        current = next;
    }
    // Up: rebuild each level around its new child.
    let mut replaced = new;
    for (part, (tree, mut entries)) in parts.iter().zip(levels).rev() {
        if let Some(i) = entries.iter().position(|e| e.name == part.as_bytes()) {
            entries.remove(i);
        }
        if let Some(id) = replaced {
            entries.push(Entry { mode: b"40000".to_vec(), name: part.as_bytes().to_vec(), id });
        }
        replaced = store_tree(view, entries, tree);
    }
    Ok(replaced.unwrap_or_else(|| view.builder.add(Kind::Tree, Vec::new())))
}

/// Stored objects plus a builder that may grow.
pub struct ViewMut<'a> {
    pub odb: &'a Odb,
    pub builder: &'a mut Builder,
}

impl ViewMut<'_> {
    fn view(&self) -> View<'_> {
        View { odb: self.odb, builder: self.builder }
    }
}

/// Every file that differs between two trees: path → (before, after).
pub fn diff_files(view: &View<'_>, old: Option<ObjectId>, new: Option<ObjectId>) -> Result<FileDiff, Error> {
    let mut out = BTreeMap::new();
    diff_walk(view, old, new, &mut out, &mut None)?;
    Ok(out)
}

/// Every directory whose tree differs between two root trees, with its new
/// tree (`None`: gone). The root itself is `/`.
pub fn diff_dirs(
    view: &View<'_>,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
) -> Result<Vec<(String, Option<ObjectId>)>, Error> {
    let mut files = BTreeMap::new();
    let mut dirs = Some(Vec::new());
    if old != new {
        dirs.as_mut().expect("set above").push(("/".to_string(), new));
    }
    diff_walk(view, old, new, &mut files, &mut dirs)?;
    Ok(dirs.unwrap_or_default())
}

type FileDiff = BTreeMap<String, (Option<FileState>, Option<FileState>)>;

/// Compares two trees depth first with an explicit stack (a pushed tree
/// may nest as deep as its author likes); directories are reported before
/// what they hold, siblings in name order.
fn diff_walk(
    view: &View<'_>,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
    files: &mut FileDiff,
    dirs: &mut Option<Vec<(String, Option<ObjectId>)>>,
) -> Result<(), Error> {
    struct Pending {
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        prefix: String,
        depth: usize,
    }
    let mut stack = vec![Pending { old, new, prefix: String::new(), depth: 0 }];
    while let Some(Pending { old, new, prefix, depth }) = stack.pop() {
        if depth > 0 {
            if let Some(d) = dirs.as_mut() {
                d.push((prefix.clone(), new));
            }
        }
        if old == new {
            continue;
        }
        let old_entries = match old {
            Some(t) => view.read_tree(&t)?,
            None => Vec::new(),
        };
        let new_entries = match new {
            Some(t) => view.read_tree(&t)?,
            None => Vec::new(),
        };
        let mut names: Vec<&Vec<u8>> = old_entries.iter().chain(new_entries.iter()).map(|e| &e.name).collect();
        names.sort();
        names.dedup();
        let mut subdirs = Vec::new();
        for name in names {
            let path = format!("{prefix}/{}", String::from_utf8_lossy(name));
            if path.len() > MAX_PATH_BYTES {
                return Err(too_deep(&path));
            }
            let o = old_entries.iter().find(|e| &e.name == name);
            let n = new_entries.iter().find(|e| &e.name == name);
            let o_tree = o.filter(|e| e.is_tree()).map(|e| e.id);
            let n_tree = n.filter(|e| e.is_tree()).map(|e| e.id);
            if (o_tree.is_some() || n_tree.is_some()) && o_tree != n_tree {
                if depth + 1 > MAX_TREE_DEPTH {
                    return Err(too_deep(&path));
                }
                subdirs.push(Pending { old: o_tree, new: n_tree, prefix: path.clone(), depth: depth + 1 });
            }
            let o_file = o.filter(|e| !e.is_tree()).map(|e| (e.mode.clone(), e.id));
            let n_file = n.filter(|e| !e.is_tree()).map(|e| (e.mode.clone(), e.id));
            if o_file != n_file {
                files.insert(path.trim_start_matches('/').to_string(), (o_file, n_file));
            }
        }
        // Last pushed is walked first: keep name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// Applies file changes (path → new state, `None` = delete) to `tree`.
pub fn apply_files(
    view: &mut ViewMut<'_>,
    tree: Option<ObjectId>,
    changes: &BTreeMap<String, Option<FileState>>,
) -> Result<ObjectId, Error> {
    type Changes = BTreeMap<Vec<String>, Option<FileState>>;
    /// One directory being rebuilt: its entries with the changes that end
    /// here applied, and the sub-directories still to rebuild.
    struct Level {
        tree: Option<ObjectId>,
        entries: Vec<Entry>,
        pending: Vec<(String, Changes)>,
        current: Option<String>,
        depth: usize,
    }
    let open = |view: &mut ViewMut<'_>, tree: Option<ObjectId>, changes: &Changes, depth: usize| {
        let mut entries = match tree {
            Some(t) => view.view().read_tree(&t)?,
            None => Vec::new(),
        };
        // Changes that end here, and those that go deeper, grouped by child name.
        let mut deeper: BTreeMap<String, Changes> = BTreeMap::new();
        for (parts, state) in changes {
            if parts.len() == depth + 1 {
                let name = parts[depth].as_bytes();
                entries.retain(|e| e.name != name || e.is_tree());
                if let Some((mode, id)) = state {
                    entries.push(Entry { mode: mode.clone(), name: name.to_vec(), id: *id });
                }
            } else if parts.len() > depth + 1 {
                deeper.entry(parts[depth].clone()).or_default().insert(parts.clone(), state.clone());
            }
        }
        // Popped from the end: reversed, so children are rebuilt in name order.
        let pending = deeper.into_iter().rev().collect();
        Ok::<_, Error>(Level { tree, entries, pending, current: None, depth })
    };

    let mut grouped: Changes = BTreeMap::new();
    for (path, state) in changes {
        if path.len() > MAX_PATH_BYTES || components(path).count() > MAX_TREE_DEPTH {
            return Err(too_deep(path));
        }
        grouped.insert(components(path).map(str::to_string).collect(), state.clone());
    }
    let mut stack = vec![open(view, tree, &grouped, 0)?];
    let mut finished: Option<Option<ObjectId>> = None;
    loop {
        let top = stack.last_mut().expect("the loop returns when the stack empties");
        if let (Some(new_child), Some(name)) = (finished.take(), top.current.take()) {
            if let Some(i) = top.entries.iter().position(|e| e.name == name.as_bytes() && e.is_tree()) {
                top.entries.remove(i);
            }
            if let Some(id) = new_child {
                top.entries.push(Entry { mode: b"40000".to_vec(), name: name.into_bytes(), id });
            }
        }
        if let Some((name, sub)) = top.pending.pop() {
            let child = top.entries.iter().find(|e| e.name == name.as_bytes() && e.is_tree()).map(|e| e.id);
            let depth = top.depth + 1;
            top.current = Some(name);
            let level = open(view, child, &sub, depth)?;
            stack.push(level);
            continue;
        }
        let done = stack.pop().expect("top exists");
        let id = store_tree(view, done.entries, done.tree);
        if stack.is_empty() {
            return Ok(id.unwrap_or_else(|| view.builder.add(Kind::Tree, Vec::new())));
        }
        finished = Some(id);
    }
}

/// Stores a rebuilt tree (`None` when it became empty), noting the tree it
/// replaces as its delta base.
fn store_tree(view: &mut ViewMut<'_>, entries: Vec<Entry>, replaces: Option<ObjectId>) -> Option<ObjectId> {
    if entries.is_empty() {
        return None;
    }
    let id = view.builder.add(Kind::Tree, encode(entries));
    if let Some(old) = replaces {
        view.builder.hint_base(id, old);
    }
    Some(id)
}
