//! b-link lite views (the seed's "b-link file"): a directory's history in
//! which every blob larger than a threshold is replaced by a small file
//! naming it:
//!
//! ```text
//! version https://mega.com/directory/spec/v1
//! blob 3a739f77180d81aa45d9bd11eb6be7098bf1991f
//! ```
//!
//! The lite view is a pure function of the full history and the threshold:
//! each full commit maps to one lite commit (the same commit when nothing
//! in its tree is over the threshold), with the same author, committer,
//! message and other headers, its tree rewritten and its parents mapped.
//! So lite ids are deterministic, and a change of threshold changes them.
//! The lite objects are stored beside the full ones as a cache (with the
//! full → lite pairs in `blink_commits`); they are never reachable from a
//! ref, and the full history stays the only truth.
//!
//! A push to a lite view is mapped back the other way: each b-link file
//! becomes the blob it names, so the result is what the same change pushed
//! through the full view would have been, ids included.

use std::collections::{BTreeSet, HashMap, HashSet};

use tessera_pack::{Kind, ObjectId};
use tessera_protocol::fsck::{mode_kind, TreeEntryKind};
use tessera_protocol::odb::Odb;
use tessera_store::index::RepoIndex;
use tessera_store::{Repo, Store};

use crate::objects::Builder;
use crate::tree::{self, Entry, View, MAX_TREE_DEPTH};
use crate::{Error, Snapshots};

/// The first line of every b-link file.
pub const HEADER: &str = "version https://mega.com/directory/spec/v1\n";
/// The size of every b-link file: the header and `blob <40 hex>\n`.
pub const POINTER_LEN: u64 = (HEADER.len() + "blob \n".len() + 40) as u64;
/// The smallest threshold accepted: below it a b-link file could itself be
/// over the threshold.
pub const MIN_THRESHOLD: u64 = 1024;

/// The b-link file naming `blob`.
pub fn pointer(blob: &ObjectId) -> Vec<u8> {
    format!("{HEADER}blob {blob}\n").into_bytes()
}

/// The blob a b-link file names; `None` unless `data` is exactly one.
pub fn parse(data: &[u8]) -> Option<ObjectId> {
    if data.len() as u64 != POINTER_LEN {
        return None;
    }
    let rest = data.strip_prefix(HEADER.as_bytes())?.strip_prefix(b"blob ")?.strip_suffix(b"\n")?;
    // Lower-case hex only: the form `pointer` writes, so parse ∘ pointer is
    // the identity and nothing else parses.
    if !rest.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
        return None;
    }
    ObjectId::from_hex(rest).ok()
}

fn is_file(entry: &Entry) -> bool {
    mode_kind(&entry.mode) == TreeEntryKind::Blob
}

/// Rewrites the files of a tree through `file` (which returns the entry's
/// new blob, or `None` to keep it), memoizing whole subtrees by id: trees
/// recur from commit to commit, and only the ones that change are read.
/// Walks with an explicit stack, at most [`MAX_TREE_DEPTH`] deep.
fn map_tree(
    odb: &Odb,
    builder: &mut Builder,
    memo: &mut HashMap<ObjectId, ObjectId>,
    root: ObjectId,
    file: &mut dyn FnMut(&Entry) -> Result<Option<ObjectId>, Error>,
) -> Result<ObjectId, Error> {
    struct Frame {
        id: ObjectId,
        entries: Vec<Entry>,
        next: usize,
        changed: bool,
    }
    if let Some(done) = memo.get(&root) {
        return Ok(*done);
    }
    let read = |builder: &Builder, id: &ObjectId| View { odb, builder }.read_tree(id);
    let mut stack = vec![Frame { id: root, entries: read(builder, &root)?, next: 0, changed: false }];
    let mut finished: Option<ObjectId> = None;
    loop {
        let depth = stack.len();
        let top = stack.last_mut().expect("the loop returns when the stack empties");
        if let Some(new) = finished.take() {
            let entry = &mut top.entries[top.next];
            if entry.id != new {
                entry.id = new;
                top.changed = true;
            }
            top.next += 1;
        }
        let mut descend = None;
        while top.next < top.entries.len() {
            let entry = &top.entries[top.next];
            if entry.is_tree() {
                match memo.get(&entry.id) {
                    Some(new) => {
                        if *new != entry.id {
                            top.entries[top.next].id = *new;
                            top.changed = true;
                        }
                    }
                    None => {
                        descend = Some(entry.id);
                        break;
                    }
                }
            } else if is_file(entry) {
                if let Some(new) = file(entry)? {
                    if new != entry.id {
                        top.entries[top.next].id = new;
                        top.changed = true;
                    }
                }
            }
            top.next += 1;
        }
        if let Some(child) = descend {
            if depth >= MAX_TREE_DEPTH {
                return Err(Error::Refused(format!("trees nest deeper than {MAX_TREE_DEPTH}")));
            }
            let entries = read(builder, &child)?;
            stack.push(Frame { id: child, entries, next: 0, changed: false });
            continue;
        }
        let frame = stack.pop().expect("the top frame exists");
        let new = if frame.changed { builder.add(Kind::Tree, tree::encode(frame.entries)) } else { frame.id };
        memo.insert(frame.id, new);
        if stack.is_empty() {
            return Ok(new);
        }
        finished = Some(new);
    }
}

/// A commit with another tree and other parents; every other header line
/// (author, committer, encoding, signatures) and the message kept as they
/// are, byte for byte.
fn rewrite_commit(raw: &[u8], commit: ObjectId, tree: ObjectId, parents: &[ObjectId]) -> Result<Vec<u8>, Error> {
    let split = raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 1).unwrap_or(raw.len());
    let (header, body) = raw.split_at(split);
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(format!("tree {tree}\n").as_bytes());
    for p in parents {
        out.extend_from_slice(format!("parent {p}\n").as_bytes());
    }
    let mut saw_tree = false;
    for line in header.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b"tree ") && !saw_tree {
            saw_tree = true;
        } else if line.starts_with(b"parent ") {
        } else {
            out.extend_from_slice(line);
        }
    }
    if !saw_tree {
        return Err(Error::NotACommit(commit));
    }
    out.extend_from_slice(body);
    Ok(out)
}

/// The commits of `head`'s history, oldest first, that `known` does not
/// map yet (a walk that stops at mapped commits).
fn unmapped_history(
    index: &RepoIndex,
    head: ObjectId,
    known: &HashMap<ObjectId, ObjectId>,
) -> Result<Vec<ObjectId>, Error> {
    let mut seen = HashSet::new();
    let mut todo = Vec::new();
    let mut stack = vec![head];
    while let Some(c) = stack.pop() {
        if known.contains_key(&c) || !seen.insert(c) {
            continue;
        }
        let info = index.commits.get(&c).ok_or(Error::NotACommit(c))?;
        stack.extend(info.parents.iter().copied());
        todo.push((info.generation, c));
    }
    // Parents have lower generation numbers than their children.
    todo.sort_unstable();
    Ok(todo.into_iter().map(|(_, c)| c).collect())
}

/// A lite view's new objects, full → lite pairs, and the blobs replaced.
struct Built {
    builder: Builder,
    pairs: Vec<(ObjectId, ObjectId)>,
    replaced: BTreeSet<ObjectId>,
    lite: ObjectId,
}

/// What [`lite_head`] built.
pub struct LiteView {
    pub head: ObjectId,
    /// Commits rewritten by this call (zero when the cache had the head).
    pub rewritten: usize,
}

/// The lite commit of directory commit `head` (of the view of `path`) at
/// `threshold`: from the cache, or built for the part of the history the
/// cache lacks, stored in `root`'s object store and recorded.
pub async fn lite_head(
    store: &Store,
    snapshots: &Snapshots,
    root: &Repo,
    path: &str,
    head: ObjectId,
    threshold: u64,
) -> Result<LiteView, Error> {
    if let Some(lite) = store.blink_lite_of(root.id, threshold, &head).await? {
        return Ok(LiteView { head: lite, rewritten: 0 });
    }
    let snapshot = snapshots.get(store, root.id).await?;
    // Walk back until the cache answers; each lookup is one indexed row.
    let mut known: HashMap<ObjectId, ObjectId> = HashMap::new();
    let mut seen = HashSet::new();
    let mut stack = vec![head];
    while let Some(c) = stack.pop() {
        if !seen.insert(c) {
            continue;
        }
        if let Some(lite) = store.blink_lite_of(root.id, threshold, &c).await? {
            known.insert(c, lite);
            continue;
        }
        let info = snapshot.index.commits.get(&c).ok_or(Error::NotACommit(c))?;
        stack.extend(info.parents.iter().copied());
    }
    drop(seen);
    let index = snapshot.index.clone();
    let odb = snapshot.odb();
    let work = move || -> Result<Built, Error> {
        let order = unmapped_history(&index, head, &known)?;
        let mut builder = Builder::default();
        let mut trees: HashMap<ObjectId, ObjectId> = HashMap::new();
        let mut replaced = BTreeSet::new();
        let mut pairs = Vec::with_capacity(order.len());
        let mut lite_of = known;
        for full in order {
            let info = index.commits.get(&full).ok_or(Error::NotACommit(full))?;
            let tree = {
                let mut over = |entry: &Entry| -> Result<Option<ObjectId>, Error> {
                    let big = index.objects.get(&entry.id).is_some_and(|l| l.kind == Kind::Blob && l.size > threshold);
                    if !big {
                        return Ok(None);
                    }
                    replaced.insert(entry.id);
                    Ok(Some(pointer_id(&entry.id)))
                };
                map_tree(&odb, &mut builder, &mut trees, info.tree, &mut over)?
            };
            let parents: Vec<ObjectId> = info
                .parents
                .iter()
                .map(|p| lite_of.get(p).copied().ok_or(Error::NotACommit(*p)))
                .collect::<Result<_, _>>()?;
            let lite = if tree == info.tree && parents == info.parents {
                full
            } else {
                let (_, raw) = odb.read(&full)?;
                builder.add(Kind::Commit, rewrite_commit(&raw, full, tree, &parents)?)
            };
            lite_of.insert(full, lite);
            pairs.push((full, lite));
        }
        for blob in &replaced {
            builder.add(Kind::Blob, pointer(blob));
        }
        let lite = *lite_of.get(&head).ok_or(Error::NotACommit(head))?;
        Ok(Built { builder, pairs, replaced, lite })
    };
    let Built { builder, pairs, replaced, lite } = tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| Error::Refused("the lite view's build stopped".into()))??;
    builder.store(store, root.id, &snapshot).await?;
    let replaced: Vec<ObjectId> = replaced.into_iter().collect();
    store.add_blink(root.id, threshold, &pairs, path, &replaced).await?;
    Ok(LiteView { head: lite, rewritten: pairs.len() })
}

/// The id of the b-link file naming `blob` (the walk adds each such file
/// to the pack once, after it).
fn pointer_id(blob: &ObjectId) -> ObjectId {
    tessera_pack::object_id(Kind::Blob, &pointer(blob))
}

/// A push to a lite view, mapped to the full view.
pub struct Mapped {
    /// The new full commits and trees.
    pub builder: Builder,
    /// Lite commit → full commit, for every commit mapped.
    pub full_of: HashMap<ObjectId, ObjectId>,
    /// Every blob a pushed b-link file names: the caller checks that each
    /// exists and that the pusher may read it.
    pub named: BTreeSet<ObjectId>,
}

/// Maps pushed lite commits (`pushed`: each with its parents) to full ones.
/// `known` maps the lite commits already in the view (the parents the push
/// builds on) to their full commits; a parent in neither is refused.
/// `odb` holds the pushed objects.
pub fn to_full(
    odb: &Odb,
    pushed: &HashMap<ObjectId, Vec<ObjectId>>,
    known: &HashMap<ObjectId, ObjectId>,
    dir: &str,
) -> Result<Mapped, Error> {
    let mut order: Vec<(i64, ObjectId)> = Vec::with_capacity(pushed.len());
    for c in pushed.keys() {
        let generation = odb.index.commits.get(c).map(|i| i.generation).ok_or(Error::NotACommit(*c))?;
        order.push((generation, *c));
    }
    order.sort_unstable();
    let mut builder = Builder::default();
    let mut trees: HashMap<ObjectId, ObjectId> = HashMap::new();
    let mut named = BTreeSet::new();
    let mut full_of: HashMap<ObjectId, ObjectId> = known.clone();
    for (_, lite) in order {
        let info = odb.index.commits.get(&lite).ok_or(Error::NotACommit(lite))?;
        let tree = {
            let mut back = |entry: &Entry| -> Result<Option<ObjectId>, Error> {
                let small =
                    odb.index.objects.get(&entry.id).is_some_and(|l| l.kind == Kind::Blob && l.size == POINTER_LEN);
                if !small {
                    return Ok(None);
                }
                let (_, data) = odb.read(&entry.id)?;
                Ok(parse(&data).inspect(|blob| {
                    named.insert(*blob);
                }))
            };
            map_tree(odb, &mut builder, &mut trees, info.tree, &mut back)?
        };
        let mut parents = Vec::with_capacity(info.parents.len());
        for p in info.parents {
            match full_of.get(p) {
                Some(full) => parents.push(*full),
                None => {
                    return Err(Error::Refused(format!(
                        "commit {p} is not in the lite view of {dir}: fetch it and build on what it serves"
                    )))
                }
            }
        }
        let full = if tree == info.tree && parents == info.parents {
            lite
        } else {
            let (_, raw) = odb.read(&lite)?;
            builder.add(Kind::Commit, rewrite_commit(&raw, lite, tree, &parents)?)
        };
        full_of.insert(lite, full);
    }
    Ok(Mapped { builder, full_of, named })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_parse_back_and_nothing_else_does() {
        let id = tessera_pack::object_id(Kind::Blob, b"hello");
        let p = pointer(&id);
        assert_eq!(p.len() as u64, POINTER_LEN);
        assert_eq!(parse(&p), Some(id));
        let upper = String::from_utf8(p.clone()).unwrap().replace(&id.to_string(), &id.to_string().to_uppercase());
        assert_eq!(
            parse(upper.as_bytes()),
            if id.to_string().chars().any(|c| c.is_ascii_alphabetic()) { None } else { Some(id) }
        );
        assert_eq!(parse(&p[..p.len() - 1]), None);
        let mut longer = p.clone();
        longer.push(b'\n');
        assert_eq!(parse(&longer), None);
        assert_eq!(parse(&p.iter().map(|b| if *b == b'v' { b'V' } else { *b }).collect::<Vec<_>>()), None);
        assert_eq!(parse(b""), None);
    }

    #[test]
    fn commits_keep_every_other_header_and_the_message() {
        let tree = tessera_pack::object_id(Kind::Tree, b"");
        let p1 = tessera_pack::object_id(Kind::Blob, b"1");
        let p2 = tessera_pack::object_id(Kind::Blob, b"2");
        let raw = format!(
            "tree {tree}\nparent {p1}\nauthor A <a@x> 1 +0000\ncommitter C <c@x> 2 +0100\nencoding latin1\n\
             gpgsig -----BEGIN-----\n tree {p1}\n parent {p2}\n -----END-----\n\nmessage\n\nparent {p1}\n"
        );
        let new_tree = tessera_pack::object_id(Kind::Tree, b"x");
        let id = tessera_pack::object_id(Kind::Commit, raw.as_bytes());
        let out = rewrite_commit(raw.as_bytes(), id, new_tree, &[p2, p1]).unwrap();
        let expected = raw.replacen(
            &format!("tree {tree}\nparent {p1}\n"),
            &format!("tree {new_tree}\nparent {p2}\nparent {p1}\n"),
            1,
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        assert!(rewrite_commit(b"author A\n\nno tree", id, new_tree, &[]).is_err());
    }
}
