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
    pub max_object_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_objects: 50_000_000, max_object_size: 4 << 30 }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
pub fn scan(
    path: &Path,
    limits: Limits,
    lookup: &mut dyn FnMut(&ObjectId) -> Result<Option<(Kind, Vec<u8>)>, BoxError>,
    visit: &mut dyn FnMut(&Scanned, Option<&[u8]>) -> Result<(), BoxError>,
) -> Result<Outcome, Error> {
    let file = File::open(path).map_err(read::Error::from)?;
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
                let keep = kind != Kind::Blob;
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
    let mut by_offset: HashMap<u64, usize> = HashMap::new();
    let mut ofs_children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut ref_children: HashMap<ObjectId, Vec<usize>> = HashMap::new();
    for (idx, e) in entries.iter().enumerate() {
        by_offset.insert(e.offset, idx);
        match e.header {
            Header::OfsDelta { distance } => {
                let base_offset =
                    e.offset.checked_sub(distance).ok_or(read::Error::BadBaseOffset { offset: e.offset })?;
                let base_idx = *by_offset.get(&base_offset).ok_or(read::Error::BadBaseOffset { offset: e.offset })?;
                ofs_children.entry(base_idx).or_default().push(idx);
            }
            Header::RefDelta { base } => ref_children.entry(base).or_default().push(idx),
            Header::Whole(_) => {}
        }
    }
    let mut resolver = Resolver {
        window: Window::new(&file, file_len, read::RANDOM),
        limits,
        entries: &mut entries,
        ofs_children,
        ref_children,
        objects: &mut objects,
        visit,
    };
    for idx in 0..resolver.entries.len() {
        let Some((id, kind, _)) = resolver.entries[idx].resolved else {
            continue;
        };
        if matches!(resolver.entries[idx].header, Header::Whole(_)) && resolver.has_children(idx, &id) {
            let base = resolver.inflate(idx)?;
            resolver.resolve_from(Some(idx), id, kind, base)?;
        }
    }
    // Whatever is left hangs off objects outside the pack.
    loop {
        let Some(base_id) = resolver.ref_children.keys().next().copied() else {
            break;
        };
        match lookup(&base_id).map_err(Error::Lookup)? {
            Some((kind, base)) => resolver.resolve_from(None, base_id, kind, base)?,
            None => {
                let missing: Vec<ObjectId> = resolver.ref_children.keys().copied().collect();
                return Err(Error::MissingBases(missing));
            }
        }
    }
    if let Some(e) = entries.iter().find(|e| e.resolved.is_none()) {
        return Err(read::Error::BadBaseOffset { offset: e.offset }.into());
    }
    objects.sort_by_key(|o| o.offset);
    Ok(Outcome { checksum, objects })
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
    limits: Limits,
    entries: &'a mut Vec<Entry>,
    ofs_children: HashMap<usize, Vec<usize>>,
    ref_children: HashMap<ObjectId, Vec<usize>>,
    objects: &'a mut Vec<Scanned>,
    visit: &'v mut dyn FnMut(&Scanned, Option<&[u8]>) -> Result<(), BoxError>,
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

    /// Resolves every delta that (transitively) bases on the given object,
    /// depth first, keeping only the current chain's data in memory.
    fn resolve_from(&mut self, idx: Option<usize>, id: ObjectId, kind: Kind, data: Vec<u8>) -> Result<(), Error> {
        let first = self.take_children(idx, &id);
        let mut stack: Vec<(Vec<u8>, ObjectId, Vec<usize>)> = vec![(data, id, first)];
        while let Some((base, base_id, children)) = stack.last_mut() {
            let base_id = *base_id;
            let Some(child) = children.pop() else {
                stack.pop();
                continue;
            };
            let instructions = self.inflate(child)?;
            let offset = self.entries[child].offset;
            let result_size =
                delta::result_size(&instructions).map_err(|source| read::Error::Delta { offset, source })?;
            if result_size > self.limits.max_object_size {
                return Err(read::Error::TooLarge { size: result_size, limit: self.limits.max_object_size }.into());
            }
            let mut result = Vec::new();
            delta::apply(base, &instructions, &mut result).map_err(|source| read::Error::Delta { offset, source })?;
            let child_id = crate::object_id(kind, &result);
            let e = &mut self.entries[child];
            e.resolved = Some((child_id, kind, result.len() as u64));
            let scanned = Scanned {
                id: child_id,
                kind,
                size: result.len() as u64,
                offset: e.offset,
                end: e.end,
                delta_base: Some(base_id),
            };
            (self.visit)(&scanned, Some(&result)).map_err(|source| Error::Rejected { id: child_id, source })?;
            self.objects.push(scanned);
            let grandchildren = self.take_children(Some(child), &child_id);
            if !grandchildren.is_empty() {
                stack.push((result, child_id, grandchildren));
            }
        }
        Ok(())
    }
}
