//! Finding where a pack ends in a byte stream.
//!
//! Over HTTP a push's pack ends with the request body. Over SSH (and any
//! other full-duplex transport) the client may keep its side open while it
//! waits for the status report, so the server must find the end itself, as
//! C git's `index-pack --stdin` does: walk the entry headers and inflate
//! each entry's zlib stream (into a scratch buffer that is thrown away)
//! to learn where it stops. [`PackEnd`] does that incrementally, over
//! pieces of any size, in constant memory. It checks only the framing:
//! the checksum, the objects and the deltas are [`crate::index::scan`]'s.

use flate2::{Decompress, FlushDecompress, Status};

use crate::entry::{self, HeaderError};

/// Why the stream is not a pack.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("not a pack: no PACK signature")]
    Signature,
    #[error("unsupported pack version {0}")]
    Version(u32),
    #[error("pack entry {index}: {source}")]
    Header { index: u32, source: HeaderError },
    #[error("pack entry {index}: invalid zlib data")]
    Zlib { index: u32 },
    #[error("pack entry {index} inflates past its declared size of {size} bytes")]
    TooLong { index: u32, size: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The 12-byte header: signature, version, object count.
    Header,
    /// An entry's type-and-size header (and delta base reference).
    EntryHeader,
    /// An entry's zlib stream.
    Data,
    /// The 20-byte checksum.
    Trailer,
    Done,
}

/// The longest entry header: a 10-byte size varint and a 20-byte base id,
/// or an offset varint of at most 10 bytes.
const MAX_ENTRY_HEADER: usize = 32;

/// Tracks how far into a pack a stream has come.
pub struct PackEnd {
    part: Part,
    /// Bytes of the current fixed-size part (header, entry header,
    /// trailer) received so far.
    held: Vec<u8>,
    objects: u32,
    index: u32,
    /// The current entry's declared size.
    size: u64,
    inflate: Decompress,
    scratch: Box<[u8]>,
    consumed: u64,
}

impl Default for PackEnd {
    fn default() -> Self {
        PackEnd {
            part: Part::Header,
            held: Vec::with_capacity(MAX_ENTRY_HEADER),
            objects: 0,
            index: 0,
            size: 0,
            inflate: Decompress::new(true),
            scratch: vec![0u8; 32 << 10].into_boxed_slice(),
            consumed: 0,
        }
    }
}

impl PackEnd {
    pub fn new() -> PackEnd {
        PackEnd::default()
    }

    /// Whether the whole pack, trailer included, has been seen.
    pub fn is_done(&self) -> bool {
        self.part == Part::Done
    }

    /// Bytes of pack seen so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Takes the next piece of the stream. Returns `Some(n)` when the pack
    /// ends `n` bytes into `input` (what follows is not part of it), `None`
    /// when more is needed. Where the pack ends, and whether it is refused,
    /// do not depend on how the stream is cut; which error a refusal names
    /// may (zlib meets invalid data sooner with more input at hand).
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<usize>, Error> {
        let mut pos = 0;
        while self.part != Part::Done && pos < input.len() {
            let rest = &input[pos..];
            let used = match self.part {
                Part::Header => {
                    let used = self.hold(rest, 12);
                    if self.held.len() == 12 {
                        self.start()?;
                    }
                    used
                }
                Part::EntryHeader => self.entry_header(rest)?,
                Part::Data => self.data(rest)?,
                Part::Trailer => {
                    let used = self.hold(rest, 20);
                    if self.held.len() == 20 {
                        self.part = Part::Done;
                    }
                    used
                }
                Part::Done => 0,
            };
            pos += used;
            self.consumed += used as u64;
        }
        Ok((self.part == Part::Done).then_some(pos))
    }

    /// Moves up to `want - held` bytes of `input` into `held`.
    fn hold(&mut self, input: &[u8], want: usize) -> usize {
        let n = (want - self.held.len()).min(input.len());
        self.held.extend_from_slice(&input[..n]);
        n
    }

    fn start(&mut self) -> Result<(), Error> {
        if &self.held[..4] != b"PACK" {
            return Err(Error::Signature);
        }
        let version = u32::from_be_bytes(self.held[4..8].try_into().expect("4 bytes"));
        if version != 2 && version != 3 {
            return Err(Error::Version(version));
        }
        self.objects = u32::from_be_bytes(self.held[8..12].try_into().expect("4 bytes"));
        self.held.clear();
        self.part = if self.objects == 0 { Part::Trailer } else { Part::EntryHeader };
        Ok(())
    }

    /// Takes bytes of an entry header one at a time until it parses; a
    /// header is at most [`MAX_ENTRY_HEADER`] bytes.
    fn entry_header(&mut self, input: &[u8]) -> Result<usize, Error> {
        for (i, byte) in input.iter().enumerate() {
            self.held.push(*byte);
            match entry::decode(&self.held) {
                Ok((_, size, _)) => {
                    self.size = size;
                    self.held.clear();
                    self.inflate.reset(true);
                    self.part = Part::Data;
                    return Ok(i + 1);
                }
                Err(HeaderError::Truncated) if self.held.len() < MAX_ENTRY_HEADER => {}
                Err(HeaderError::Truncated) => {
                    return Err(Error::Header { index: self.index, source: HeaderError::Overflow })
                }
                Err(source) => return Err(Error::Header { index: self.index, source }),
            }
        }
        Ok(input.len())
    }

    fn data(&mut self, input: &[u8]) -> Result<usize, Error> {
        let index = self.index;
        let mut pos = 0;
        loop {
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            // Never more output than one byte past the declared size: the
            // first of "invalid data" and "too long" in the stream is the
            // answer, however the stream was cut into pieces.
            // `size` is the entry's own claim, up to u64::MAX: never overflow.
            let limit = self.size.saturating_add(1);
            let room = (limit - out_before.min(limit)).clamp(1, self.scratch.len() as u64) as usize;
            let status = self
                .inflate
                .decompress(&input[pos..], &mut self.scratch[..room], FlushDecompress::None)
                .map_err(|_| Error::Zlib { index })?;
            pos += (self.inflate.total_in() - in_before) as usize;
            let produced = self.inflate.total_out() - out_before;
            if self.inflate.total_out() > self.size {
                return Err(Error::TooLong { index, size: self.size });
            }
            match status {
                Status::StreamEnd => {
                    self.index += 1;
                    self.part = if self.index == self.objects { Part::Trailer } else { Part::EntryHeader };
                    return Ok(pos);
                }
                // All input taken: more is needed.
                _ if pos == input.len() => return Ok(pos),
                // Input at hand, room for output, and zlib takes none of it
                // and gives nothing: more input cannot help. Refused, so
                // that `feed` never spins.
                _ if produced == 0 && self.inflate.total_in() == in_before => return Err(Error::Zlib { index }),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write;

    fn pack_of(blobs: &[&[u8]]) -> Vec<u8> {
        let mut writer = write::Writer::new(Vec::new(), blobs.len() as u32).unwrap();
        for blob in blobs {
            writer.whole(crate::Kind::Blob, blob).unwrap();
        }
        writer.finish().unwrap().0
    }

    /// An entry declaring the largest size there is: found by the fuzzer,
    /// it once made `size + 1` overflow (a panic with overflow checks, and
    /// without them no room for output, so `feed` spun forever).
    #[test]
    fn the_largest_declared_size_neither_overflows_nor_spins() {
        let mut stream = b"PACK\0\0\0\x02\0\0\0\x01".to_vec();
        crate::entry::encode_type_and_size(&mut stream, 3, u64::MAX);
        // A zlib stream of "abc", then a trailer's worth of bytes.
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut z, b"abc").unwrap();
        stream.extend(z.finish().unwrap());
        stream.extend([0u8; 20]);
        for piece in [1, 5, stream.len()] {
            let mut end = PackEnd::new();
            let mut found = None;
            for chunk in stream.chunks(piece) {
                if let Some(used) = end.feed(chunk).unwrap() {
                    found = Some(used);
                    break;
                }
            }
            assert!(found.is_some(), "piece {piece}");
            assert_eq!(end.consumed(), stream.len() as u64);
        }
    }

    #[test]
    fn finds_the_end_whatever_the_piece_size() {
        let big = vec![7u8; 100_000];
        let pack = pack_of(&[b"one", b"", &big, b"last"]);
        let mut stream = pack.clone();
        stream.extend_from_slice(b"0000 trailing bytes that are not the pack's");
        for piece in [1, 2, 3, 7, 64, 4096, stream.len()] {
            let mut end = PackEnd::new();
            let mut found = None;
            for (n, chunk) in stream.chunks(piece).enumerate() {
                if let Some(used) = end.feed(chunk).unwrap() {
                    found = Some(n * piece + used);
                    break;
                }
            }
            assert_eq!(found, Some(pack.len()), "piece size {piece}");
            assert_eq!(end.consumed(), pack.len() as u64);
        }
    }

    #[test]
    fn an_empty_pack_is_header_and_trailer() {
        let pack = pack_of(&[]);
        assert_eq!(PackEnd::new().feed(&pack).unwrap(), Some(32));
    }

    #[test]
    fn a_truncated_pack_never_ends() {
        let pack = pack_of(&[b"hello"]);
        let mut end = PackEnd::new();
        assert_eq!(end.feed(&pack[..pack.len() - 1]).unwrap(), None);
        assert!(!end.is_done());
    }

    #[test]
    fn refuses_what_is_not_a_pack() {
        assert_eq!(PackEnd::new().feed(b"PACX\0\0\0\x02\0\0\0\x01"), Err(Error::Signature));
        assert_eq!(PackEnd::new().feed(b"PACK\0\0\0\x09\0\0\0\x01"), Err(Error::Version(9)));
        let mut bad_type = pack_of(&[b"x"]);
        bad_type[12] = 0x50; // type 5 is reserved
        assert!(matches!(PackEnd::new().feed(&bad_type), Err(Error::Header { index: 0, .. })));
        let mut endless_header = b"PACK\0\0\0\x02\0\0\0\x01".to_vec();
        endless_header.extend(std::iter::repeat_n(0xffu8, 40));
        assert!(PackEnd::new().feed(&endless_header).is_err());
        let mut bad_zlib = b"PACK\0\0\0\x02\0\0\0\x01".to_vec();
        bad_zlib.extend_from_slice(&[0x33, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(PackEnd::new().feed(&bad_zlib), Err(Error::Zlib { index: 0 }));
    }

    #[test]
    fn refuses_an_entry_longer_than_it_declares() {
        let mut pack = pack_of(&[b"hello world"]);
        pack[12] = 0x32; // blob of declared size 2
        assert_eq!(PackEnd::new().feed(&pack), Err(Error::TooLong { index: 0, size: 2 }));
    }
    #[test]
    fn the_answer_does_not_depend_on_the_pieces() {
        // Found by the pack_end fuzz target: an entry that inflates past
        // its declared size before its zlib data turns invalid.
        let stream: &[u8] = &[
            0x50, 0x41, 0x43, 0x4b, 0x00, 0x00, 0x00, 0x02, 0xcb, 0x07, 0xcb, 0xc9, 0x35, 0x38, 0xcb, 0xcb, 0xcb, 0xcb,
            0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17,
            0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17,
            0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17,
            0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17,
            0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17,
            0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0xcb, 0x26, 0xff, 0x00, 0x4b,
            0x01,
        ];
        let whole = PackEnd::new().feed(stream);
        let mut end = PackEnd::new();
        let mut pieces = Ok(None);
        for chunk in stream.chunks(46) {
            match end.feed(chunk) {
                Ok(None) => {}
                other => {
                    pieces = other;
                    break;
                }
            }
        }
        assert_eq!(whole, Err(Error::TooLong { index: 0, size: 5 }));
        assert!(pieces.is_err(), "{pieces:?}");
    }
}
