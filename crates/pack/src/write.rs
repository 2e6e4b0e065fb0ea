//! Writing packs as a stream, with verbatim reuse of stored entries.

use std::io::Write;

use flate2::write::ZlibEncoder;
use flate2::Compression;
use sha1::Digest;

use crate::entry::{self, Header};
use crate::{Kind, ObjectId};

/// Streams a pack of a known number of entries into `out`.
pub struct Writer<W: Write> {
    out: W,
    hasher: sha1::Sha1,
    offset: u64,
    remaining: u32,
    scratch: Vec<u8>,
    compression: Compression,
}

/// Returned by [`Writer`] when the sink fails or the entry count is wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the pack failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("pack was declared with {declared} entries but {written} were written")]
    CountMismatch { declared: u32, written: u32 },
}

impl<W: Write> Writer<W> {
    /// Writes the pack header for `n_entries` entries.
    pub fn new(out: W, n_entries: u32) -> Result<Self, Error> {
        let mut w = Writer {
            out,
            hasher: sha1::Sha1::new(),
            offset: 0,
            remaining: n_entries,
            scratch: Vec::new(),
            compression: Compression::new(6),
        };
        let mut header = Vec::with_capacity(12);
        header.extend_from_slice(b"PACK");
        header.extend_from_slice(&2u32.to_be_bytes());
        header.extend_from_slice(&n_entries.to_be_bytes());
        w.put(&header)?;
        Ok(w)
    }

    /// How many bytes have been written so far: the offset of the next entry.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.hasher.update(bytes);
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn begin_entry(&mut self) -> Result<u64, Error> {
        if self.remaining == 0 {
            return Err(Error::CountMismatch { declared: 0, written: 1 });
        }
        self.remaining -= 1;
        Ok(self.offset)
    }

    /// Writes a whole object, compressing it; returns the entry's offset.
    pub fn whole(&mut self, kind: Kind, data: &[u8]) -> Result<u64, Error> {
        let at = self.begin_entry()?;
        let mut head = Vec::with_capacity(16);
        entry::encode(&mut head, &Header::Whole(kind), data.len() as u64);
        self.put(&head)?;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let mut z = ZlibEncoder::new(scratch, self.compression);
        z.write_all(data)?;
        let compressed = z.finish()?;
        self.put(&compressed)?;
        self.scratch = compressed;
        Ok(at)
    }

    /// Writes a delta entry (`header` is an offset or reference delta),
    /// compressing `delta`; returns the entry's offset.
    pub fn delta(&mut self, header: &Header, delta: &[u8]) -> Result<u64, Error> {
        let mut z = ZlibEncoder::new(Vec::with_capacity(delta.len() / 2 + 16), self.compression);
        z.write_all(delta)?;
        let compressed = z.finish()?;
        self.raw(header, delta.len() as u64, &compressed)
    }

    /// Writes an entry whose zlib data is already compressed (copied from a
    /// stored pack); `size` is the entry's decompressed size.
    pub fn raw(&mut self, header: &Header, size: u64, compressed: &[u8]) -> Result<u64, Error> {
        let at = self.begin_entry()?;
        let mut head = Vec::with_capacity(32);
        let header = match header {
            // An offset delta is re-aimed by the caller; translate here so
            // callers pass the absolute offset of the base in this pack.
            Header::OfsDelta { distance } => Header::OfsDelta { distance: at - distance },
            other => *other,
        };
        entry::encode(&mut head, &header, size);
        self.put(&head)?;
        self.put(compressed)?;
        Ok(at)
    }

    /// Writes the trailing checksum and hands back the sink.
    pub fn finish(mut self) -> Result<(W, ObjectId), Error> {
        if self.remaining != 0 {
            return Err(Error::CountMismatch { declared: self.remaining, written: 0 });
        }
        let digest = self.hasher.finalize_reset();
        self.out.write_all(&digest)?;
        self.out.flush()?;
        Ok((self.out, ObjectId::from_bytes_or_panic(digest.as_slice())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index;

    #[test]
    fn written_pack_scans_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pack");
        let blob = b"hello\n".to_vec();
        let mut w = Writer::new(Vec::new(), 2).unwrap();
        let base_at = w.whole(Kind::Blob, &blob).unwrap();
        // A delta: copy all 6 bytes of the base, then insert "!".
        let delta = [6u8, 7, 0x80 | 0x10, 6, 1, b'!'];
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&delta).unwrap();
        let compressed = z.finish().unwrap();
        w.raw(&Header::OfsDelta { distance: base_at }, delta.len() as u64, &compressed).unwrap();
        let (bytes, _) = w.finish().unwrap();
        std::fs::write(&path, &bytes).unwrap();

        let mut seen = Vec::new();
        let outcome = index::scan(&path, index::Limits::default(), &mut |_| Ok(None), &mut |o, _| {
            seen.push(o.id);
            Ok(())
        })
        .unwrap();
        assert_eq!(outcome.objects.len(), 2);
        assert_eq!(outcome.objects[0].id, crate::object_id(Kind::Blob, b"hello\n"));
        assert_eq!(outcome.objects[1].id, crate::object_id(Kind::Blob, b"hello\n!"));
        assert_eq!(outcome.objects[1].delta_base, Some(outcome.objects[0].id));
        assert_eq!(seen.len(), 2);

        let pack = crate::read::PackFile::open(&path).unwrap();
        let (kind, data) =
            pack.decode(outcome.objects[1].offset, &mut |id| Err(crate::read::Error::MissingBase(*id))).unwrap();
        assert_eq!((kind, data), (Kind::Blob, b"hello\n!".to_vec()));
    }

    #[test]
    fn corrupt_packs_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pack");
        let mut w = Writer::new(Vec::new(), 1).unwrap();
        w.whole(Kind::Blob, b"some content").unwrap();
        let (bytes, _) = w.finish().unwrap();
        let scan = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            index::scan(&path, index::Limits::default(), &mut |_| Ok(None), &mut |_, _| Ok(()))
        };
        assert!(scan(&bytes).is_ok());
        let mut flipped = bytes.clone();
        flipped[14] ^= 0xff;
        assert!(matches!(scan(&flipped), Err(index::Error::ChecksumMismatch)));
        assert!(scan(&bytes[..bytes.len() - 5]).is_err());
        assert!(matches!(scan(&bytes[..10]), Err(index::Error::TooShort)));
    }

    /// A delta appending `tail` to a `base_len`-byte base.
    fn appending(base_len: usize, tail: &[u8]) -> Vec<u8> {
        let mut delta = Vec::new();
        for v in [base_len, base_len + tail.len()] {
            let mut v = v;
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    delta.push(byte);
                    break;
                }
                delta.push(byte | 0x80);
            }
        }
        // Copy the whole base (offset 0, size in one byte: bases stay small).
        delta.extend_from_slice(&[0x80 | 0x10, base_len as u8]);
        delta.push(tail.len() as u8);
        delta.extend_from_slice(tail);
        delta
    }

    #[test]
    fn deep_chains_are_cut_and_resolved_within_the_memory_bound() {
        use std::collections::HashMap;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pack");
        let mut w = Writer::new(Vec::new(), 21).unwrap();
        let mut content = b"x".to_vec();
        let mut at = w.whole(Kind::Blob, &content).unwrap();
        for i in 0..20u8 {
            at = w.delta(&Header::OfsDelta { distance: at }, &appending(content.len(), &[b'a' + i])).unwrap();
            content.push(b'a' + i);
        }
        let (bytes, _) = w.finish().unwrap();
        std::fs::write(&path, &bytes).unwrap();

        // Depth at most 3, and no more than 8 bytes of chain held.
        let limits = index::Limits { max_delta_depth: 3, max_chain_memory: 8, ..Default::default() };
        let outcome = index::scan(&path, limits, &mut |_| Ok(None), &mut |_, _| Ok(())).unwrap();
        assert_eq!(outcome.objects.len(), 21);
        let by_id: HashMap<_, _> = outcome.objects.iter().map(|o| (o.id, o)).collect();
        let pack = crate::read::PackFile::open(&path).unwrap();
        for object in &outcome.objects {
            let mut chain = Vec::new();
            let mut current = object;
            while let Some(base) = current.delta_base {
                chain.push(current);
                current = by_id[&base];
            }
            assert!(chain.len() <= 3, "chain of {} kept", chain.len());
            let (_, mut data) = pack.read_entry(current.offset, current.end).unwrap();
            for link in chain.iter().rev() {
                let (_, delta) = pack.read_entry(link.offset, link.end).unwrap();
                let mut out = Vec::new();
                crate::delta::apply(&data, &delta, &mut out).unwrap();
                data = out;
            }
            assert_eq!(crate::object_id(Kind::Blob, &data), object.id);
        }
        // The rewritten pack is a valid pack holding the cut objects too.
        let again = index::scan(&path, index::Limits::default(), &mut |_| Ok(None), &mut |_, _| Ok(())).unwrap();
        assert_eq!(again.checksum, outcome.checksum);
        assert!(again.objects.len() > 21, "the whole copies were appended");
        assert!(outcome.objects.iter().all(|o| again.objects.iter().any(|a| a.id == o.id)));
    }
}
