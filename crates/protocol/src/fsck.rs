//! Checks on pushed objects, as git's `receive.fsckObjects` makes them, so
//! that nothing stored can fail `git fsck --strict` in a clone.

use gix_object::{CommitRef, Kind, TagRef};
use tessera_pack::ObjectId;

/// Why a pushed object was refused; returned by [`check`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("malformed {0} object")]
    Malformed(&'static str),
    #[error("tree entry has an empty name")]
    EmptyName,
    #[error("tree entry name {0:?} is not allowed")]
    BadName(String),
    #[error("tree entry {0:?} has file mode {1:?}, which git does not write")]
    BadMode(String, String),
    #[error("tree entries are not in git's order at {0:?}")]
    Unsorted(String),
    #[error("tree has entry {0:?} twice")]
    Duplicate(String),
    #[error("commit or tag has a malformed signature line")]
    BadSignature,
}

/// What the rest of a push needs to know about a checked object.
#[derive(Debug, Clone)]
pub enum Parsed {
    Commit { tree: ObjectId, parents: Vec<ObjectId>, time: i64 },
    Tag { target: ObjectId, target_kind: Kind },
    Tree { entries: Vec<(ObjectId, TreeEntryKind)> },
    Blob,
}

/// The kind of object a tree entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeEntryKind {
    Tree,
    Blob,
    /// A submodule commit: not expected in this repository.
    Gitlink,
}

/// One entry of a raw tree.
#[derive(Debug, Clone, Copy)]
pub struct TreeEntry<'a> {
    pub mode: &'a [u8],
    pub name: &'a [u8],
    pub id: ObjectId,
}

impl TreeEntry<'_> {
    pub fn kind(&self) -> TreeEntryKind {
        match self.mode {
            b"40000" | b"040000" => TreeEntryKind::Tree,
            b"160000" => TreeEntryKind::Gitlink,
            _ => TreeEntryKind::Blob,
        }
    }
}

/// Iterates a raw tree, failing on the first malformed entry.
pub fn tree_entries(data: &[u8]) -> impl Iterator<Item = Result<TreeEntry<'_>, Error>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let space = rest.iter().position(|b| *b == b' ')?;
            let mode = &rest[..space];
            let after_mode = &rest[space + 1..];
            let nul = after_mode.iter().position(|b| *b == 0)?;
            let name = &after_mode[..nul];
            let id = after_mode.get(nul + 1..nul + 21)?;
            let entry = TreeEntry { mode, name, id: ObjectId::from_bytes_or_panic(id) };
            Some((entry, &after_mode[nul + 21..]))
        })();
        match parsed {
            Some((entry, next)) => {
                rest = next;
                Some(Ok(entry))
            }
            None => {
                rest = &[];
                Some(Err(Error::Malformed("tree")))
            }
        }
    })
}

fn is_dot_git(name: &[u8]) -> bool {
    // `.git` in any case, and the 8.3 short name NTFS gives it.
    name.eq_ignore_ascii_case(b".git") || name.eq_ignore_ascii_case(b"git~1")
}

fn check_tree(data: &[u8]) -> Result<Parsed, Error> {
    let mut entries = Vec::new();
    let mut previous: Option<(Vec<u8>, bool)> = None;
    for entry in tree_entries(data) {
        let entry = entry?;
        let shown = || String::from_utf8_lossy(entry.name).into_owned();
        if entry.name.is_empty() {
            return Err(Error::EmptyName);
        }
        if entry.name == b"." || entry.name == b".." || entry.name.contains(&b'/') || is_dot_git(entry.name) {
            return Err(Error::BadName(shown()));
        }
        match entry.mode {
            b"40000" | b"100644" | b"100755" | b"120000" | b"160000" => {}
            other => return Err(Error::BadMode(shown(), String::from_utf8_lossy(other).into_owned())),
        }
        let is_tree = entry.kind() == TreeEntryKind::Tree;
        if let Some((prev, prev_is_tree)) = &previous {
            match gix_object::tree::name_order(prev, *prev_is_tree, entry.name, is_tree) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Err(Error::Duplicate(shown())),
                std::cmp::Ordering::Greater => return Err(Error::Unsorted(shown())),
            }
            if prev.as_slice() == entry.name {
                return Err(Error::Duplicate(shown()));
            }
        }
        previous = Some((entry.name.to_vec(), is_tree));
        entries.push((entry.id, entry.kind()));
    }
    Ok(Parsed::Tree { entries })
}

/// Checks one object of `kind` and extracts what later steps need.
pub fn check(kind: Kind, data: &[u8]) -> Result<Parsed, Error> {
    match kind {
        Kind::Blob => Ok(Parsed::Blob),
        Kind::Tree => check_tree(data),
        Kind::Commit => {
            let commit = CommitRef::from_bytes(data, gix_hash::Kind::Sha1).map_err(|_| Error::Malformed("commit"))?;
            commit.author().map_err(|_| Error::BadSignature)?;
            let committer = commit.committer().map_err(|_| Error::BadSignature)?;
            let time = committer.time().map_err(|_| Error::BadSignature)?.seconds;
            let tree = ObjectId::from_hex(commit.tree).map_err(|_| Error::Malformed("commit"))?;
            let parents = commit
                .parents
                .iter()
                .map(|p| ObjectId::from_hex(p).map_err(|_| Error::Malformed("commit")))
                .collect::<Result<_, _>>()?;
            Ok(Parsed::Commit { tree, parents, time })
        }
        Kind::Tag => {
            let tag = TagRef::from_bytes(data, gix_hash::Kind::Sha1).map_err(|_| Error::Malformed("tag"))?;
            if let Some(tagger) = tag.tagger {
                gix_actor_check(tagger)?;
            }
            let target = ObjectId::from_hex(tag.target).map_err(|_| Error::Malformed("tag"))?;
            Ok(Parsed::Tag { target, target_kind: tag.target_kind })
        }
    }
}

fn gix_actor_check(line: &[u8]) -> Result<(), Error> {
    // "Name <email> seconds +zone": the closing '>' must be followed by a time.
    let close = line.iter().rposition(|b| *b == b'>').ok_or(Error::BadSignature)?;
    let rest = &line[close + 1..];
    let mut parts = rest.split(|b| *b == b' ').filter(|p| !p.is_empty());
    let seconds = parts.next().ok_or(Error::BadSignature)?;
    if !seconds.iter().all(u8::is_ascii_digit) {
        return Err(Error::BadSignature);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (mode, name) in entries {
            out.extend_from_slice(mode.as_bytes());
            out.push(b' ');
            out.extend_from_slice(name);
            out.push(0);
            out.extend_from_slice(&[0x11; 20]);
        }
        out
    }

    fn check_tree_case(entries: &[(&str, &[u8])], expected: Result<(), Error>) {
        let got = check(Kind::Tree, &tree(entries)).map(|_| ());
        assert_eq!(got, expected, "{entries:?}");
    }

    #[test]
    fn tree_rules() {
        check_tree_case(&[("100644", b"a"), ("40000", b"b")], Ok(()));
        // A directory sorts as "name/": "a-" < "a/" but the file "a" sorts before "a-".
        check_tree_case(&[("100644", b"a-"), ("40000", b"a")], Ok(()));
        check_tree_case(&[("40000", b"a"), ("100644", b"a-")], Err(Error::Unsorted("a-".into())));
        check_tree_case(&[("100644", b"")], Err(Error::EmptyName));
        check_tree_case(&[("100644", b"..")], Err(Error::BadName("..".into())));
        check_tree_case(&[("40000", b".GIT")], Err(Error::BadName(".GIT".into())));
        check_tree_case(&[("100644", b"a/b")], Err(Error::BadName("a/b".into())));
        check_tree_case(&[("100664", b"a")], Err(Error::BadMode("a".into(), "100664".into())));
        check_tree_case(&[("100644", b"b"), ("100644", b"a")], Err(Error::Unsorted("a".into())));
        check_tree_case(&[("100644", b"a"), ("100644", b"a")], Err(Error::Duplicate("a".into())));
        assert_eq!(check(Kind::Tree, b"100644 a\0short").map(|_| ()), Err(Error::Malformed("tree")));
    }

    #[test]
    fn commit_rules() {
        let good = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 2 +0000\n\nmsg\n";
        match check(Kind::Commit, good).unwrap() {
            Parsed::Commit { time, parents, .. } => assert_eq!((time, parents.len()), (2, 0)),
            other => panic!("{other:?}"),
        }
        assert!(check(Kind::Commit, b"tree zz\n\nmsg").is_err());
        assert!(check(Kind::Commit, b"not a commit").is_err());
    }
}
