//! Reading stored packs: inflating entries and decoding objects at an offset.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use flate2::{Decompress, FlushDecompress, Status};

use crate::entry::{self, Header};
use crate::{delta, Kind, ObjectId};

/// Why an entry could not be read; returned by [`PackFile`] and the scanner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the pack failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("pack entry at offset {offset}: {source}")]
    Header { offset: u64, source: entry::HeaderError },
    #[error("pack entry at offset {offset} is not valid zlib data")]
    Inflate { offset: u64 },
    #[error("pack entry at offset {offset} inflates to {actual} bytes, its header says {expected}")]
    SizeMismatch { offset: u64, expected: u64, actual: u64 },
    #[error("pack ends inside the entry at offset {offset}")]
    Truncated { offset: u64 },
    #[error("delta at offset {offset}: {source}")]
    Delta { offset: u64, source: delta::Error },
    #[error("delta at offset {offset} points at a base outside the pack")]
    BadBaseOffset { offset: u64 },
    #[error("delta base {0} is not available")]
    MissingBase(ObjectId),
    #[error("delta chain is deeper than {0}")]
    ChainTooDeep(usize),
    #[error("object of {size} bytes is over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
}

/// A read-through window over a file, so scanning many small entries costs
/// few system calls.
pub(crate) struct Window<'f> {
    file: &'f File,
    file_len: u64,
    start: u64,
    buf: Vec<u8>,
    size: usize,
}

/// Window for sequential scans: few, large reads.
pub(crate) const SEQUENTIAL: usize = 1 << 20;
/// Window for random access: most entries are small.
pub(crate) const RANDOM: usize = 64 << 10;

impl<'f> Window<'f> {
    pub(crate) fn new(file: &'f File, file_len: u64, size: usize) -> Self {
        Window { file, file_len, start: 0, buf: Vec::new(), size }
    }

    /// Up to `size` bytes starting at `offset` (fewer only at end of file).
    pub(crate) fn at(&mut self, offset: u64) -> std::io::Result<&[u8]> {
        let end = self.start + self.buf.len() as u64;
        let wanted_end = (offset + (self.size as u64 / 16).max(4096)).min(self.file_len);
        if offset < self.start || wanted_end > end {
            let len = (self.file_len.saturating_sub(offset)).min(self.size as u64) as usize;
            self.buf.resize(len, 0);
            self.file.read_exact_at(&mut self.buf, offset)?;
            self.start = offset;
        }
        Ok(&self.buf[(offset - self.start) as usize..])
    }
}

/// Inflates the zlib stream at `offset`, handing output to `sink` in pieces.
/// Returns the number of compressed bytes the stream took.
pub(crate) fn inflate(
    window: &mut Window<'_>,
    offset: u64,
    expected_size: u64,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<u64, Error> {
    let entry_offset = offset;
    let mut z = Decompress::new(true);
    let mut out = vec![0u8; 64 * 1024];
    let mut produced = 0u64;
    loop {
        let input = window.at(offset + z.total_in())?;
        if input.is_empty() {
            return Err(Error::Truncated { offset: entry_offset });
        }
        let before_in = z.total_in();
        let before_out = z.total_out();
        let status = z
            .decompress(input, &mut out, FlushDecompress::None)
            .map_err(|_| Error::Inflate { offset: entry_offset })?;
        let n_out = (z.total_out() - before_out) as usize;
        produced += n_out as u64;
        if produced > expected_size {
            return Err(Error::SizeMismatch { offset: entry_offset, expected: expected_size, actual: produced });
        }
        sink(&out[..n_out]);
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError => {
                if z.total_in() == before_in && n_out == 0 {
                    // No progress with a full window of input: the stream is
                    // cut off at the end of the file.
                    return Err(Error::Truncated { offset: entry_offset });
                }
            }
        }
    }
    if produced != expected_size {
        return Err(Error::SizeMismatch { offset: entry_offset, expected: expected_size, actual: produced });
    }
    Ok(z.total_in())
}

/// One pack entry's layout within its file.
#[derive(Debug, Clone, Copy)]
pub struct EntryInfo {
    pub header: Header,
    /// Decompressed size of the entry's data (the delta itself, for deltas).
    pub size: u64,
    /// Where the zlib data starts.
    pub data_offset: u64,
}

/// A stored pack opened for random reads.
pub struct PackFile {
    file: File,
    len: u64,
    /// Objects larger than this are refused rather than inflated into memory.
    pub max_object_size: u64,
}

/// Reads the base a reference delta names (see [`PackFile::decode`]).
pub type ResolveRef<'r> = dyn FnMut(&ObjectId) -> Result<(Kind, Vec<u8>), Error> + 'r;

/// How deep a delta chain may go before we call it hostile.
pub const MAX_CHAIN: usize = 10_000;

impl PackFile {
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(PackFile { file, len, max_object_size: u64::MAX })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The header of the entry at `offset`.
    pub fn entry(&self, offset: u64) -> Result<EntryInfo, Error> {
        let mut buf = [0u8; 64];
        let n = (self.len.saturating_sub(offset)).min(64) as usize;
        self.file.read_exact_at(&mut buf[..n], offset)?;
        let (header, size, used) = entry::decode(&buf[..n]).map_err(|source| Error::Header { offset, source })?;
        Ok(EntryInfo { header, size, data_offset: offset + used as u64 })
    }

    /// The raw bytes `[start, end)` of the file, e.g. to copy an entry verbatim.
    pub fn read_raw(&self, start: u64, end: u64, out: &mut Vec<u8>) -> Result<(), Error> {
        if end > self.len || start > end {
            return Err(Error::Truncated { offset: start });
        }
        out.resize((end - start) as usize, 0);
        self.file.read_exact_at(out, start)?;
        Ok(())
    }

    /// The entry's decompressed data (for a delta: the delta instructions).
    pub fn inflate_entry(&self, offset: u64, info: &EntryInfo) -> Result<Vec<u8>, Error> {
        if info.size > self.max_object_size {
            return Err(Error::TooLarge { size: info.size, limit: self.max_object_size });
        }
        let mut window = Window::new(&self.file, self.len, RANDOM);
        let mut data = Vec::with_capacity(info.size.min(1 << 26) as usize);
        inflate(&mut window, info.data_offset, info.size, &mut |piece| data.extend_from_slice(piece)).map_err(|e| {
            match e {
                Error::SizeMismatch { expected, actual, .. } => Error::SizeMismatch { offset, expected, actual },
                other => other,
            }
        })?;
        Ok(data)
    }

    /// Reads the entry spanning `[offset, end)` with one read and inflates
    /// it: its header and its data (for a delta: the instructions).
    pub fn read_entry(&self, offset: u64, end: u64) -> Result<(EntryInfo, Vec<u8>), Error> {
        if end > self.len || end <= offset {
            return Err(Error::Truncated { offset });
        }
        let mut raw = vec![0u8; (end - offset) as usize];
        self.file.read_exact_at(&mut raw, offset)?;
        let (header, size, used) = entry::decode(&raw).map_err(|source| Error::Header { offset, source })?;
        if size > self.max_object_size {
            return Err(Error::TooLarge { size, limit: self.max_object_size });
        }
        let mut z = Decompress::new(true);
        let mut data = Vec::with_capacity(size as usize);
        let status = z
            .decompress_vec(&raw[used..], &mut data, FlushDecompress::Finish)
            .map_err(|_| Error::Inflate { offset })?;
        if status != Status::StreamEnd || data.len() as u64 != size {
            return Err(Error::SizeMismatch { offset, expected: size, actual: data.len() as u64 });
        }
        Ok((EntryInfo { header, size, data_offset: offset + used as u64 }, data))
    }

    /// Decodes the object at `offset`, following delta chains: offset deltas
    /// within this file, reference deltas through `resolve_ref`.
    pub fn decode(&self, offset: u64, resolve_ref: &mut ResolveRef<'_>) -> Result<(Kind, Vec<u8>), Error> {
        let mut chain = Vec::new();
        let mut at = offset;
        let (kind, mut data) = loop {
            let info = self.entry(at)?;
            match info.header {
                Header::Whole(kind) => break (kind, self.inflate_entry(at, &info)?),
                Header::OfsDelta { distance } => {
                    chain.push((at, info));
                    at = at.checked_sub(distance).filter(|b| *b >= 12).ok_or(Error::BadBaseOffset { offset: at })?;
                }
                Header::RefDelta { base } => {
                    chain.push((at, info));
                    break resolve_ref(&base)?;
                }
            }
            if chain.len() > MAX_CHAIN {
                return Err(Error::ChainTooDeep(MAX_CHAIN));
            }
        };
        let mut out = Vec::new();
        for (delta_offset, info) in chain.into_iter().rev() {
            let instructions = self.inflate_entry(delta_offset, &info)?;
            let result_size =
                delta::result_size(&instructions).map_err(|source| Error::Delta { offset: delta_offset, source })?;
            if result_size > self.max_object_size {
                return Err(Error::TooLarge { size: result_size, limit: self.max_object_size });
            }
            delta::apply(&data, &instructions, &mut out)
                .map_err(|source| Error::Delta { offset: delta_offset, source })?;
            std::mem::swap(&mut data, &mut out);
        }
        Ok((kind, data))
    }
}
