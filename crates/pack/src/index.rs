//! Scanning a received pack: verify it, hash every object, resolve deltas.
//!
//! The pack is read from a spooled file in two passes plus one checksum pass,
//! so memory holds one entry table and the delta chain being resolved, never
//! the pack. Reference deltas whose base is not in the pack (thin packs) are
//! resolved through a caller-supplied lookup into already stored objects.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::entry::Header;
use crate::read::{self, Window};
use crate::{delta, Hasher, Kind, ObjectId};

/// One object found in the pack.
#[derive(Debug, Clone)]
pub struct Scanned {
    pub id: ObjectId,
    pub kind: Kind,
    /// The object's size (not the size of its delta).
    pub size: u64,
    /// Where the entry starts in the pack.
    pub offset: u64,
    /// Where the entry ends (the next entry or the trailer starts).
    pub end: u64,
    /// For deltas, the id of the object the delta applies to.
    pub delta_base: Option<ObjectId>,
}

/// What [`scan`] found.
#[derive(Debug)]
pub struct Outcome {
    /// The pack's trailing checksum.
    pub checksum: ObjectId,
    /// Every object, in pack order.
    pub objects: Vec<Scanned>,
}

/// Bounds on what a pack may ask of us.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_objects: u32,
    /// The largest object, whole or as a delta's declared result, checked
    /// before anything is allocated for it.
    pub max_object_size: u64,
    /// Deltas deeper than this (counting chains through stored bases) are
    /// stored whole at the end of the pack instead, so that every stored
    /// object stays readable within [`read::MAX_CHAIN`].
    pub max_delta_depth: u32,
    /// Bytes of a delta chain's intermediate objects kept while resolving;
    /// past it, the oldest are dropped and rebuilt when needed again.
    pub max_chain_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_objects: 50_000_000,
            max_object_size: 512 << 20,
            max_delta_depth: 4095,
            max_chain_memory: 256 << 20,
        }
    }
}

/// A delta base that lives outside the pack (a thin pack's), as the
/// caller's lookup finds it.
#[derive(Debug, Clone)]
pub struct ExternalBase {
    pub kind: Kind,
    pub data: Vec<u8>,
    /// How many deltas the stored base itself sits on.
    pub depth: u32,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Blobs up to this size reach the visitor with their content, like every
/// other object; larger ones (whole in the pack) without it.
pub const SMALL_BLOB_BYTES: u64 = 1024;

/// Sees each object once it is known (see [`scan`]).
pub type Visit<'v> = dyn FnMut(&Scanned, Option<&[u8]>) -> Result<(), BoxError> + 'v;
/// Finds a delta base outside the pack (see [`scan`]).
pub type Lookup<'v> = dyn FnMut(&ObjectId) -> Result<Option<ExternalBase>, BoxError> + 'v;

/// Why a pack was rejected; returned by [`scan`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pack is too short to hold a header and checksum")]
    TooShort,
    #[error("data does not start with a pack signature")]
    BadSignature,
    #[error("pack version {0} is not supported")]
    UnsupportedVersion(u32),
    #[error("pack declares {declared} objects, over the limit of {limit}")]
    TooManyObjects { declared: u32, limit: u32 },
    #[error("pack checksum does not match its content (corrupt or truncated pack)")]
    ChecksumMismatch,
    #[error("pack has {0} bytes of junk after its last object")]
    TrailingData(u64),
    #[error(transparent)]
    Read(#[from] read::Error),
    #[error("pack references {} object(s) it does not contain and the repository lacks, e.g. {}", .0.len(), .0[0])]
    MissingBases(Vec<ObjectId>),
    #[error("object {id}: {source}")]
    Rejected { id: ObjectId, source: BoxError },
    #[error("looking up a delta base failed: {0}")]
    Lookup(BoxError),
}

struct Entry {
    offset: u64,
    end: u64,
    header: Header,
    size: u64,
    data_offset: u64,
    resolved: Option<(ObjectId, Kind, u64)>,
}

/// Scans the pack at `path`.
///
/// `lookup` finds delta bases outside the pack; `visit` sees every object
/// once with its data when the object is not a blob (blobs may be streamed
/// and passed as `None`), and may reject it, which fails the scan.
///
/// Deltas deeper than `limits.max_delta_depth` are appended to the pack as
/// whole objects (the file is rewritten in place, with a new checksum) and
/// reported at their new offset without a delta base.
pub fn scan(path: &Path, limits: Limits, lookup: &mut Lookup<'_>, visit: &mut Visit<'_>) -> Result<Outcome, Error> {
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(read::Error::from)?;
    let file_len = file.metadata().map_err(read::Error::from)?.len();
    let checksum = verify_checksum(&file, file_len)?;
    let body_end = file_len - 20;

    let mut window = Window::new(&file, file_len, read::SEQUENTIAL);
    let head = window.at(0).map_err(read::Error::from)?;
    if &head[..4] != b"PACK" {
        return Err(Error::BadSignature);
    }
    let version = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if version != 2 && version != 3 {
        return Err(Error::UnsupportedVersion(version));
    }
    let n_objects = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    if n_objects > limits.max_objects {
        return Err(Error::TooManyObjects { declared: n_objects, limit: limits.max_objects });
    }

    // Pass 1: walk entries in order; hash whole objects as they inflate.
    let mut entries: Vec<Entry> = Vec::with_capacity(n_objects.min(1 << 20) as usize);
    let mut objects = Vec::with_capacity(n_objects.min(1 << 20) as usize);
    let mut offset = 12u64;
    let mut data = Vec::new();
    for _ in 0..n_objects {
        if offset >= body_end {
            return Err(read::Error::Truncated { offset }.into());
        }
        let bytes = window.at(offset).map_err(read::Error::from)?;
        let bytes = &bytes[..bytes.len().min((body_end - offset) as usize)];
        let (header, size, used) =
            crate::entry::decode(bytes).map_err(|source| read::Error::Header { offset, source })?;
        let data_offset = offset + used as u64;
        let resolved = match header {
            Header::Whole(kind) => {
                if size > limits.max_object_size {
                    return Err(read::Error::TooLarge { size, limit: limits.max_object_size }.into());
                }
                let mut hasher = Hasher::new(kind, size);
                data.clear();
                // Blobs are hashed, not kept, except small ones (whose
                // content the caller may want, e.g. Git LFS pointers).
                let keep = kind != Kind::Blob || size <= SMALL_BLOB_BYTES;
                let used = read::inflate(&mut window, data_offset, size, &mut |piece| {
                    hasher.update(piece);
                    if keep {
                        data.extend_from_slice(piece);
                    }
                })?;
                let id = hasher.finish();
                let end = data_offset + used;
                let scanned = Scanned { id, kind, size, offset, end, delta_base: None };
                visit(&scanned, keep.then_some(&data[..])).map_err(|source| Error::Rejected { id, source })?;
                objects.push(scanned);
                entries.push(Entry { offset, end, header, size, data_offset, resolved: Some((id, kind, size)) });
                offset = end;
                continue;
            }
            _ => None,
        };
        let used = read::inflate(&mut window, data_offset, size, &mut |_| {})?;
        let end = data_offset + used;
        entries.push(Entry { offset, end, header, size, data_offset, resolved });
        offset = end;
    }
    if offset != body_end {
        return Err(if offset < body_end {
            Error::TrailingData(body_end - offset)
        } else {
            read::Error::Truncated { offset }.into()
        });
    }

    // Pass 2: resolve deltas from each base outwards.
    // Entries are in pack order, so a base's offset is found by binary
    // search among the entries before its delta.
    let mut ofs_children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut ref_children: HashMap<ObjectId, Vec<usize>> = HashMap::new();
    for (idx, e) in entries.iter().enumerate() {
        match e.header {
            Header::OfsDelta { distance } => {
                let base_offset =
                    e.offset.checked_sub(distance).ok_or(read::Error::BadBaseOffset { offset: e.offset })?;
                let base_idx = entries[..idx]
                    .binary_search_by_key(&base_offset, |b| b.offset)
                    .map_err(|_| read::Error::BadBaseOffset { offset: e.offset })?;
                ofs_children.entry(base_idx).or_default().push(idx);
            }
            Header::RefDelta { base } => ref_children.entry(base).or_default().push(idx),
            Header::Whole(_) => {}
        }
    }
    let mut resolver = Resolver {
        window: Window::new(&file, file_len, read::RANDOM),
        file: &file,
        file_len,
        appended: 0,
        limits,
        entries: &mut entries,
        ofs_children,
        ref_children,
        objects: &mut objects,
        visit,
        lookup,
    };
    for idx in 0..resolver.entries.len() {
        let Some((id, kind, _)) = resolver.entries[idx].resolved else {
            continue;
        };
        if matches!(resolver.entries[idx].header, Header::Whole(_)) && resolver.has_children(idx, &id) {
            let base = resolver.inflate(idx)?;
            resolver.resolve_from(Base::Entry(idx), id, kind, base, 0)?;
        }
    }
    // Whatever is left hangs off objects outside the pack.
    while let Some(base_id) = resolver.ref_children.keys().next().copied() {
        match (resolver.lookup)(&base_id).map_err(Error::Lookup)? {
            Some(base) => resolver.resolve_from(Base::External, base_id, base.kind, base.data, base.depth)?,
            None => {
                let missing: Vec<ObjectId> = resolver.ref_children.keys().copied().collect();
                return Err(Error::MissingBases(missing));
            }
        }
    }
    let appended = resolver.appended;
    if let Some(e) = entries.iter().find(|e| e.resolved.is_none()) {
        return Err(read::Error::BadBaseOffset { offset: e.offset }.into());
    }
    let checksum = if appended > 0 {
        let n_cut = objects.iter().filter(|o| o.offset >= body_end).count() as u32;
        seal_appended(&file, body_end, file_len, appended, n_objects + n_cut)?
    } else {
        checksum
    };
    objects.sort_by_key(|o| o.offset);
    Ok(Outcome { checksum, objects })
}

/// Moves the whole objects appended after the old trailer back over it,
/// counts them in the header and writes the new trailer; returns it.
fn seal_appended(file: &File, body_end: u64, file_len: u64, appended: u64, n_objects: u32) -> Result<ObjectId, Error> {
    use sha1::Digest;
    use std::os::unix::fs::FileExt;
    let io = |e: std::io::Error| Error::Read(read::Error::Io(e));
    let mut buf = vec![0u8; 1 << 20];
    let mut moved = 0u64;
    while moved < appended {
        let n = (appended - moved).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], file_len + moved).map_err(io)?;
        file.write_all_at(&buf[..n], body_end + moved).map_err(io)?;
        moved += n as u64;
    }
    let new_body_end = body_end + appended;
    file.set_len(new_body_end).map_err(io)?;
    file.write_all_at(&n_objects.to_be_bytes(), 8).map_err(io)?;
    let mut hasher = sha1::Sha1::new();
    let mut at = 0u64;
    while at < new_body_end {
        let n = (new_body_end - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at).map_err(io)?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    let trailer = hasher.finalize();
    file.write_all_at(trailer.as_slice(), new_body_end).map_err(io)?;
    file.sync_data().map_err(io)?;
    Ok(ObjectId::from_bytes_or_panic(trailer.as_slice()))
}

fn verify_checksum(file: &File, file_len: u64) -> Result<ObjectId, Error> {
    use sha1::Digest;
    if file_len < 32 {
        return Err(Error::TooShort);
    }
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut hasher = sha1::Sha1::new();
    let mut remaining = file_len - 20;
    let mut buf = vec![0u8; 1 << 16];
    while remaining > 0 {
        let want = remaining.min(buf.len() as u64) as usize;
        reader.read_exact(&mut buf[..want]).map_err(read::Error::from)?;
        hasher.update(&buf[..want]);
        remaining -= want as u64;
    }
    let mut trailer = [0u8; 20];
    reader.read_exact(&mut trailer).map_err(read::Error::from)?;
    if hasher.finalize().as_slice() != trailer {
        return Err(Error::ChecksumMismatch);
    }
    Ok(ObjectId::from_bytes_or_panic(&trailer))
}

struct Resolver<'a, 'v> {
    window: Window<'a>,
    /// The pack, open for writing: objects whose chains are cut are
    /// appended after `file_len` (the old end) until [`seal_appended`].
    file: &'a File,
    file_len: u64,
    appended: u64,
    limits: Limits,
    entries: &'a mut Vec<Entry>,
    ofs_children: HashMap<usize, Vec<usize>>,
    ref_children: HashMap<ObjectId, Vec<usize>>,
    objects: &'a mut Vec<Scanned>,
    visit: &'v mut Visit<'v>,
    lookup: &'v mut Lookup<'v>,
}

/// Where the object at the bottom of a chain comes from.
#[derive(Clone, Copy)]
enum Base {
    /// A whole object in this pack.
    Entry(usize),
    /// An object found through the lookup (a thin pack's base).
    External,
}

/// One link of the chain being resolved.
struct Frame {
    /// The object's content; `None` once dropped to stay within
    /// `max_chain_memory` (rebuilt from the nearest frame below that has it).
    data: Option<Vec<u8>>,
    id: ObjectId,
    /// The delta entry that produced it (`None` for the chain's base).
    entry: Option<usize>,
    depth: u32,
    children: Vec<usize>,
}

impl Resolver<'_, '_> {
    fn has_children(&self, idx: usize, id: &ObjectId) -> bool {
        self.ofs_children.contains_key(&idx) || self.ref_children.contains_key(id)
    }

    fn take_children(&mut self, idx: Option<usize>, id: &ObjectId) -> Vec<usize> {
        let mut children = idx.and_then(|i| self.ofs_children.remove(&i)).unwrap_or_default();
        children.extend(self.ref_children.remove(id).unwrap_or_default());
        children
    }

    fn inflate(&mut self, idx: usize) -> Result<Vec<u8>, Error> {
        let e = &self.entries[idx];
        if e.size > self.limits.max_object_size {
            return Err(read::Error::TooLarge { size: e.size, limit: self.limits.max_object_size }.into());
        }
        let mut out = Vec::with_capacity(e.size.min(1 << 26) as usize);
        read::inflate(&mut self.window, e.data_offset, e.size, &mut |p| out.extend_from_slice(p))?;

        Ok(out)
    }

    /// Applies the delta entry `idx` to `base`, checking the size it
    /// declares before allocating for it.
    fn apply(&mut self, idx: usize, base: &[u8]) -> Result<Vec<u8>, Error> {
        let instructions = self.inflate(idx)?;
        let offset = self.entries[idx].offset;
        let result_size = delta::result_size(&instructions).map_err(|source| read::Error::Delta { offset, source })?;
        if result_size > self.limits.max_object_size {
            return Err(read::Error::TooLarge { size: result_size, limit: self.limits.max_object_size }.into());
        }
        let mut result = Vec::new();
        delta::apply(base, &instructions, &mut result).map_err(|source| read::Error::Delta { offset, source })?;
        Ok(result)
    }

    /// Makes sure `stack[at]` holds its data, rebuilding it from the
    /// nearest frame below that still does (or from the chain's base).
    fn ensure_data(&mut self, stack: &mut [Frame], at: usize, bottom: Base, held: &mut u64) -> Result<(), Error> {
        if stack[at].data.is_some() {
            return Ok(());
        }
        let from = (0..at).rev().find(|i| stack[*i].data.is_some());
        let (mut data, start) = match from {
            Some(i) => (stack[i].data.clone().unwrap_or_default(), i + 1),
            None => {
                let data = match bottom {
                    Base::Entry(idx) => self.inflate(idx)?,
                    Base::External => match (self.lookup)(&stack[0].id).map_err(Error::Lookup)? {
                        Some(base) => base.data,
                        None => return Err(Error::MissingBases(vec![stack[0].id])),
                    },
                };
                (data, 1)
            }
        };
        for frame in stack.iter().take(at + 1).skip(start) {
            let entry = frame.entry.expect("every frame above the base was made by a delta entry");
            data = self.apply(entry, &data)?;
        }
        *held += data.len() as u64;
        stack[at].data = Some(data);
        Ok(())
    }

    /// Writes `data` as a whole object after the pack's old end; returns
    /// where the entry will start and end once [`seal_appended`] moved it.
    fn append_whole(&mut self, kind: Kind, data: &[u8]) -> Result<(u64, u64), Error> {
        use std::io::Write;
        use std::os::unix::fs::FileExt;
        let mut entry = Vec::with_capacity(data.len() / 2 + 64);
        crate::entry::encode_type_and_size(&mut entry, crate::entry::kind_code(kind), data.len() as u64);
        let mut z = flate2::write::ZlibEncoder::new(entry, flate2::Compression::fast());
        z.write_all(data).map_err(read::Error::from)?;
        let entry = z.finish().map_err(read::Error::from)?;
        self.file.write_all_at(&entry, self.file_len + self.appended).map_err(read::Error::from)?;
        // The old trailer (20 bytes) is overwritten when the appended
        // entries move back.
        let start = self.file_len - 20 + self.appended;
        self.appended += entry.len() as u64;
        Ok((start, start + entry.len() as u64))
    }

    /// Resolves every delta that (transitively) bases on the given object,
    /// depth first. Memory holds the chain's objects up to
    /// `max_chain_memory`; older links are dropped and rebuilt when a
    /// sibling needs them again.
    fn resolve_from(&mut self, bottom: Base, id: ObjectId, kind: Kind, data: Vec<u8>, depth: u32) -> Result<(), Error> {
        let idx = match bottom {
            Base::Entry(idx) => Some(idx),
            Base::External => None,
        };
        let first = self.take_children(idx, &id);
        let mut held = data.len() as u64;
        let mut stack = vec![Frame { data: Some(data), id, entry: None, depth, children: first }];
        while let Some(top) = stack.last_mut() {
            let Some(child) = top.children.pop() else {
                let done = stack.pop().expect("the loop saw a top frame");
                held -= done.data.map_or(0, |d| d.len() as u64);
                continue;
            };
            let (base_id, base_depth) = (top.id, top.depth);
            let at = stack.len() - 1;
            self.ensure_data(&mut stack, at, bottom, &mut held)?;
            let base = stack[at].data.as_deref().expect("ensure_data filled it");
            let result = self.apply(child, base)?;
            let child_id = crate::object_id(kind, &result);
            let size = result.len() as u64;
            self.entries[child].resolved = Some((child_id, kind, size));
            let mut child_depth = base_depth + 1;
            let scanned = if child_depth > self.limits.max_delta_depth {
                // Too deep to read back within the reader's bound: store it
                // whole, which also restarts the depth of what bases on it.
                child_depth = 0;
                let (offset, end) = self.append_whole(kind, &result)?;
                Scanned { id: child_id, kind, size, offset, end, delta_base: None }
            } else {
                let e = &self.entries[child];
                Scanned { id: child_id, kind, size, offset: e.offset, end: e.end, delta_base: Some(base_id) }
            };
            (self.visit)(&scanned, Some(&result)).map_err(|source| Error::Rejected { id: child_id, source })?;
            self.objects.push(scanned);
            let grandchildren = self.take_children(Some(child), &child_id);
            if !grandchildren.is_empty() {
                held += size;
                stack.push(Frame {
                    data: Some(result),
                    id: child_id,
                    entry: Some(child),
                    depth: child_depth,
                    children: grandchildren,
                });
                // Drop the oldest links first; the top one is needed next.
                let top = stack.len() - 1;
                for frame in stack[..top].iter_mut() {
                    if held <= self.limits.max_chain_memory {
                        break;
                    }
                    if let Some(d) = frame.data.take() {
                        held -= d.len() as u64;
                    }
                }
            }
        }
        Ok(())
    }
}
