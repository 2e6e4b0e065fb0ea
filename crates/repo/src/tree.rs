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
        self.mode == b"40000"
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
    entries.sort_by(|a, b| gix_order(a, b));
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

/// Replaces (or with `None` removes) the tree at `path` under `root`,
/// creating intermediate directories; returns the new root tree.
pub fn replace_subtree(
    view: &mut ViewMut<'_>,
    root: ObjectId,
    path: &str,
    new: Option<ObjectId>,
) -> Result<ObjectId, Error> {
    let parts: Vec<&str> = components(path).collect();
    replace_rec(view, Some(root), &parts, new).map(|t| t.unwrap_or_else(|| view.builder.add(Kind::Tree, Vec::new())))
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

fn replace_rec(
    view: &mut ViewMut<'_>,
    tree: Option<ObjectId>,
    parts: &[&str],
    new: Option<ObjectId>,
) -> Result<Option<ObjectId>, Error> {
    let Some((first, rest)) = parts.split_first() else { return Ok(new) };
    let mut entries = match tree {
        Some(t) => view.view().read_tree(&t)?,
        None => Vec::new(),
    };
    let pos = entries.iter().position(|e| e.name == first.as_bytes());
    let child = pos.and_then(|i| entries[i].is_tree().then_some(entries[i].id));
    let replaced = replace_rec(view, child, rest, new)?;
    if let Some(i) = pos {
        entries.remove(i);
    }
    if let Some(id) = replaced {
        entries.push(Entry { mode: b"40000".to_vec(), name: first.as_bytes().to_vec(), id });
    }
    Ok(store_tree(view, entries, tree))
}

/// Every file that differs between two trees: path → (before, after).
pub fn diff_files(
    view: &View<'_>,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
) -> Result<BTreeMap<String, (Option<FileState>, Option<FileState>)>, Error> {
    let mut out = BTreeMap::new();
    diff_rec(view, old, new, String::new(), &mut out, &mut None)?;
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
    diff_rec(view, old, new, String::new(), &mut files, &mut dirs)?;
    Ok(dirs.unwrap_or_default())
}

type FileDiff = BTreeMap<String, (Option<FileState>, Option<FileState>)>;

fn diff_rec(
    view: &View<'_>,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
    prefix: String,
    files: &mut FileDiff,
    dirs: &mut Option<Vec<(String, Option<ObjectId>)>>,
) -> Result<(), Error> {
    if old == new {
        return Ok(());
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
    for name in names {
        let path = format!("{prefix}/{}", String::from_utf8_lossy(name));
        let o = old_entries.iter().find(|e| &e.name == name);
        let n = new_entries.iter().find(|e| &e.name == name);
        let o_tree = o.filter(|e| e.is_tree()).map(|e| e.id);
        let n_tree = n.filter(|e| e.is_tree()).map(|e| e.id);
        if o_tree.is_some() || n_tree.is_some() {
            if o_tree != n_tree {
                if let Some(d) = dirs.as_mut() {
                    d.push((path.clone(), n_tree));
                }
                diff_rec(view, o_tree, n_tree, path.clone(), files, dirs)?;
            }
        }
        let o_file = o.filter(|e| !e.is_tree()).map(|e| (e.mode.clone(), e.id));
        let n_file = n.filter(|e| !e.is_tree()).map(|e| (e.mode.clone(), e.id));
        if o_file != n_file {
            files.insert(path.trim_start_matches('/').to_string(), (o_file, n_file));
        }
    }
    Ok(())
}

/// Applies file changes (path → new state, `None` = delete) to `tree`.
pub fn apply_files(
    view: &mut ViewMut<'_>,
    tree: Option<ObjectId>,
    changes: &BTreeMap<String, Option<FileState>>,
) -> Result<ObjectId, Error> {
    let mut grouped: BTreeMap<Vec<String>, Option<FileState>> = BTreeMap::new();
    for (path, state) in changes {
        grouped.insert(components(path).map(str::to_string).collect(), state.clone());
    }
    let result = apply_rec(view, tree, &grouped, 0)?;
    Ok(result.unwrap_or_else(|| view.builder.add(Kind::Tree, Vec::new())))
}

fn apply_rec(
    view: &mut ViewMut<'_>,
    tree: Option<ObjectId>,
    changes: &BTreeMap<Vec<String>, Option<FileState>>,
    depth: usize,
) -> Result<Option<ObjectId>, Error> {
    let mut entries = match tree {
        Some(t) => view.view().read_tree(&t)?,
        None => Vec::new(),
    };
    // Changes that end here, and those that go deeper, grouped by child name.
    let mut deeper: BTreeMap<String, BTreeMap<Vec<String>, Option<FileState>>> = BTreeMap::new();
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
    for (name, sub) in deeper {
        let pos = entries.iter().position(|e| e.name == name.as_bytes() && e.is_tree());
        let child = pos.map(|i| entries[i].id);
        let new_child = apply_rec(view, child, &sub, depth + 1)?;
        if let Some(i) = pos {
            entries.remove(i);
        }
        if let Some(id) = new_child {
            entries.push(Entry { mode: b"40000".to_vec(), name: name.into_bytes(), id });
        }
    }
    Ok(store_tree(view, entries, tree))
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
