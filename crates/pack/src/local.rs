//! Writing new objects into a local git repository as a pack plus its
//! version-2 `.idx`, without `git fast-import` or `git index-pack`.
//!
//! The number of objects is not known up front, so the pack is written with
//! a zero count, patched when it is finished, and its checksum computed in
//! one read-back pass. Objects are compressed by the caller, on any thread,
//! with [`Encoded::new`]; [`PackBuilder::push`] only appends bytes. The pack
//! becomes visible to git only when [`PackBuilder::finish`] renames it, with
//! its index, into `objects/pack/`: an interrupted writer leaves a
//! `tmp_pack_*` file that git ignores (and `git gc` removes).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::write::ZlibEncoder;
use flate2::{Compression, Crc};
use sha1::Digest;

use crate::entry::{self, Header};
use crate::{Kind, ObjectId};

/// One object, compressed and ready to append.
pub struct Encoded {
    pub id: ObjectId,
    /// The entry header followed by the zlib stream.
    bytes: Vec<u8>,
}

impl Encoded {
    /// Hashes and compresses `data` at zlib `level` (0–9).
    pub fn new(kind: Kind, data: &[u8], level: u32) -> Encoded {
        Encoded::with_id(kind, data, level, crate::object_id(kind, data))
    }

    /// [`new`](Self::new) for a caller that already has the object id of
    /// `data` (from [`object_id`](crate::object_id)); a wrong id makes a
    /// corrupt pack.
    pub fn with_id(kind: Kind, data: &[u8], level: u32, id: ObjectId) -> Encoded {
        let mut bytes = Vec::with_capacity(data.len() / 3 + 64);
        entry::encode(&mut bytes, &Header::Whole(kind), data.len() as u64);
        let mut z = ZlibEncoder::new(bytes, Compression::new(level));
        z.write_all(data).expect("writing to a Vec cannot fail");
        Encoded { id, bytes: z.finish().expect("writing to a Vec cannot fail") }
    }

    /// Bytes this entry takes in the pack.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

struct Entry {
    id: ObjectId,
    offset: u64,
    crc: u32,
}

/// A pack being written into `objects/pack/` of a repository.
pub struct PackBuilder {
    dir: PathBuf,
    tmp: PathBuf,
    /// `None` once sealed or abandoned.
    out: Option<BufWriter<File>>,
    offset: u64,
    entries: Vec<Entry>,
    seen: HashSet<ObjectId>,
}

impl PackBuilder {
    /// Starts a pack in `pack_dir` (a repository's `objects/pack`).
    pub fn create(pack_dir: &Path) -> std::io::Result<PackBuilder> {
        std::fs::create_dir_all(pack_dir)?;
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = pack_dir.join(format!("tmp_pack_tessera_{}_{stamp}_{seq}", std::process::id()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(b"PACK\0\0\0\x02\0\0\0\0")?;
        Ok(PackBuilder {
            dir: pack_dir.to_path_buf(),
            tmp,
            out: Some(out),
            offset: 12,
            entries: Vec::new(),
            seen: HashSet::new(),
        })
    }

    /// Appends an object unless this pack already has it; returns its id.
    pub fn push(&mut self, object: Encoded) -> std::io::Result<ObjectId> {
        if !self.seen.insert(object.id) {
            return Ok(object.id);
        }
        let mut crc = Crc::new();
        crc.update(&object.bytes);
        self.out.as_mut().expect("an open pack").write_all(&object.bytes)?;
        self.entries.push(Entry { id: object.id, offset: self.offset, crc: crc.sum() });
        self.offset += object.bytes.len() as u64;
        Ok(object.id)
    }

    /// Compresses and appends an object at zlib level 1.
    pub fn add(&mut self, kind: Kind, data: &[u8]) -> std::io::Result<ObjectId> {
        self.push(Encoded::new(kind, data, 1))
    }

    /// Objects written so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// Seals this pack (as [`PackBuilder::finish`]) and carries on with a
    /// new one in the same directory, so a long writer makes what it wrote
    /// so far durable.
    pub fn roll(&mut self) -> std::io::Result<Option<ObjectId>> {
        let next = PackBuilder::create(&self.dir)?;
        std::mem::replace(self, next).finish()
    }

    /// Drops the pack: nothing written becomes visible.
    pub fn abandon(mut self) -> std::io::Result<()> {
        drop(self.out.take());
        std::fs::remove_file(&self.tmp)
    }

    /// Seals the pack, writes its index and moves both into place, so
    /// every object is readable by git from here on. Returns the pack's
    /// checksum, or `None` (and no files) when nothing was added.
    pub fn finish(mut self) -> std::io::Result<Option<ObjectId>> {
        let (dir, tmp, mut entries) = (self.dir.clone(), self.tmp.clone(), std::mem::take(&mut self.entries));
        let mut file = self.out.take().expect("an open pack").into_inner().map_err(|e| e.into_error())?;
        if entries.is_empty() {
            drop(file);
            std::fs::remove_file(&tmp)?;
            return Ok(None);
        }
        let count = u32::try_from(entries.len())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "over 2^32 objects in one pack"))?;
        file.seek(SeekFrom::Start(8))?;
        file.write_all(&count.to_be_bytes())?;
        file.seek(SeekFrom::Start(0))?;
        let mut hasher = sha1::Sha1::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let checksum = hasher.finalize();
        file.seek(SeekFrom::End(0))?;
        file.write_all(&checksum)?;
        file.sync_all()?;
        drop(file);
        let name = ObjectId::from_bytes_or_panic(checksum.as_slice());
        entries.sort_by_key(|a| a.id);
        let idx = index_v2(&entries, checksum.as_slice());
        let base = dir.join(format!("pack-{name}"));
        let idx_tmp = dir.join(format!("{}.idx", tmp.file_name().and_then(|n| n.to_str()).unwrap_or("tmp_idx")));
        std::fs::write(&idx_tmp, idx)?;
        // The pack goes first: git discovers packs through their index.
        std::fs::rename(&tmp, base.with_extension("pack"))?;
        std::fs::rename(&idx_tmp, base.with_extension("idx"))?;
        Ok(Some(name))
    }
}

impl Drop for PackBuilder {
    /// A builder dropped before it was sealed leaves no temporary file.
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The `.idx` version 2 of a pack whose entries are sorted by id.
fn index_v2(entries: &[Entry], pack_checksum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 1024 + entries.len() * 28 + 40);
    out.extend_from_slice(b"\xfftOc");
    out.extend_from_slice(&2u32.to_be_bytes());
    let mut fanout = [0u32; 256];
    for e in entries {
        fanout[e.id.as_bytes()[0] as usize] += 1;
    }
    let mut total = 0u32;
    for n in fanout {
        total += n;
        out.extend_from_slice(&total.to_be_bytes());
    }
    for e in entries {
        out.extend_from_slice(e.id.as_bytes());
    }
    for e in entries {
        out.extend_from_slice(&e.crc.to_be_bytes());
    }
    let mut large = Vec::new();
    for e in entries {
        if e.offset < 0x8000_0000 {
            out.extend_from_slice(&(e.offset as u32).to_be_bytes());
        } else {
            out.extend_from_slice(&(0x8000_0000 | large.len() as u32).to_be_bytes());
            large.push(e.offset);
        }
    }
    for offset in large {
        out.extend_from_slice(&offset.to_be_bytes());
    }
    out.extend_from_slice(pack_checksum);
    let own = sha1::Sha1::digest(&out);
    out.extend_from_slice(&own);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn git_reads_and_verifies_a_built_pack() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "--bare", "."]);
        let pack_dir = dir.path().join("objects/pack");
        let mut b = PackBuilder::create(&pack_dir).unwrap();
        let big: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let blob = b.add(Kind::Blob, &big).unwrap();
        let same = b.add(Kind::Blob, &big).unwrap();
        assert_eq!(blob, same);
        let mut tree = b"100644 data\0".to_vec();
        tree.extend_from_slice(blob.as_bytes());
        let tree = b.add(Kind::Tree, &tree).unwrap();
        let commit = format!("tree {tree}\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n\nm\n");
        let commit = b.add(Kind::Commit, commit.as_bytes()).unwrap();
        assert_eq!(b.len(), 3);
        let name = b.finish().unwrap().unwrap();
        let idx = pack_dir.join(format!("pack-{name}.idx"));
        git(dir.path(), &["verify-pack", idx.to_str().unwrap()]);
        git(dir.path(), &["update-ref", "refs/heads/main", &commit.to_string()]);
        git(dir.path(), &["fsck", "--strict", "--no-dangling"]);
        assert_eq!(git(dir.path(), &["cat-file", "-s", &blob.to_string()]).trim(), big.len().to_string());
        assert!(std::fs::read_dir(&pack_dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("tmp")));
    }

    #[test]
    fn an_empty_builder_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = PackBuilder::create(dir.path()).unwrap();
        assert!(b.finish().unwrap().is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
