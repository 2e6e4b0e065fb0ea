//! Entry headers: the type-and-size varint and the delta base reference.

use crate::{Kind, ObjectId};

/// What a pack entry holds, as its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    Whole(Kind),
    /// A delta against the entry this many bytes before this entry's start.
    OfsDelta {
        distance: u64,
    },
    /// A delta against the object with this id, anywhere.
    RefDelta {
        base: ObjectId,
    },
}

/// Why an entry header could not be parsed; returned by [`decode`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("pack entry header is truncated")]
    Truncated,
    #[error("pack entry has unknown type {0}")]
    UnknownType(u8),
    #[error("pack entry size or offset overflows")]
    Overflow,
}

pub const OFS_DELTA: u8 = 6;
pub const REF_DELTA: u8 = 7;

pub fn kind_code(kind: Kind) -> u8 {
    match kind {
        Kind::Commit => 1,
        Kind::Tree => 2,
        Kind::Blob => 3,
        Kind::Tag => 4,
    }
}

/// Parses the header at the front of `buf`: what the entry is, its
/// decompressed size, and the header's length in bytes.
pub fn decode(buf: &[u8]) -> Result<(Header, u64, usize), HeaderError> {
    let mut pos = 0;
    let first = *buf.first().ok_or(HeaderError::Truncated)?;
    pos += 1;
    let type_code = (first >> 4) & 7;
    let mut size = (first & 15) as u64;
    let mut shift = 4;
    let mut byte = first;
    while byte & 0x80 != 0 {
        byte = *buf.get(pos).ok_or(HeaderError::Truncated)?;
        pos += 1;
        if shift > 60 {
            return Err(HeaderError::Overflow);
        }
        size |= ((byte & 0x7f) as u64) << shift;
        shift += 7;
    }
    let header = match type_code {
        1 => Header::Whole(Kind::Commit),
        2 => Header::Whole(Kind::Tree),
        3 => Header::Whole(Kind::Blob),
        4 => Header::Whole(Kind::Tag),
        OFS_DELTA => {
            let mut byte = *buf.get(pos).ok_or(HeaderError::Truncated)?;
            pos += 1;
            let mut distance = (byte & 0x7f) as u64;
            while byte & 0x80 != 0 {
                byte = *buf.get(pos).ok_or(HeaderError::Truncated)?;
                pos += 1;
                distance = distance.checked_add(1).and_then(|d| d.checked_mul(128)).ok_or(HeaderError::Overflow)?
                    | (byte & 0x7f) as u64;
            }
            Header::OfsDelta { distance }
        }
        REF_DELTA => {
            let raw = buf.get(pos..pos + 20).ok_or(HeaderError::Truncated)?;
            pos += 20;
            Header::RefDelta { base: ObjectId::from_bytes_or_panic(raw) }
        }
        other => return Err(HeaderError::UnknownType(other)),
    };
    Ok((header, size, pos))
}

/// Appends the header for an entry of `type_code` and decompressed `size`.
pub fn encode_type_and_size(out: &mut Vec<u8>, type_code: u8, size: u64) {
    let mut byte = (type_code << 4) | (size & 15) as u8;
    let mut rest = size >> 4;
    while rest != 0 {
        out.push(byte | 0x80);
        byte = (rest & 0x7f) as u8;
        rest >>= 7;
    }
    out.push(byte);
}

/// Appends a whole header for `header` and decompressed `size`.
pub fn encode(out: &mut Vec<u8>, header: &Header, size: u64) {
    match header {
        Header::Whole(kind) => encode_type_and_size(out, kind_code(*kind), size),
        Header::OfsDelta { distance } => {
            encode_type_and_size(out, OFS_DELTA, size);
            let mut bytes = [0u8; 10];
            let mut i = bytes.len() - 1;
            let mut d = *distance;
            bytes[i] = (d & 0x7f) as u8;
            while d >> 7 != 0 {
                d = (d >> 7) - 1;
                i -= 1;
                bytes[i] = 0x80 | (d & 0x7f) as u8;
            }
            out.extend_from_slice(&bytes[i..]);
        }
        Header::RefDelta { base } => {
            encode_type_and_size(out, REF_DELTA, size);
            out.extend_from_slice(base.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(header: Header, size: u64) {
        let mut out = Vec::new();
        encode(&mut out, &header, size);
        assert_eq!(decode(&out), Ok((header, size, out.len())));
    }

    #[test]
    fn headers_round_trip() {
        round_trip(Header::Whole(Kind::Blob), 0);
        round_trip(Header::Whole(Kind::Commit), 15);
        round_trip(Header::Whole(Kind::Tree), 16);
        round_trip(Header::Whole(Kind::Tag), u32::MAX as u64 * 7);
        for distance in [1, 127, 128, 129, 16511, 16512, 1 << 40] {
            round_trip(Header::OfsDelta { distance }, 1000);
        }
        round_trip(Header::RefDelta { base: ObjectId::null(gix_hash::Kind::Sha1) }, 5);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(decode(&[]), Err(HeaderError::Truncated));
        assert_eq!(decode(&[0x80 | 0x30]), Err(HeaderError::Truncated));
        assert_eq!(decode(&[0x50]), Err(HeaderError::UnknownType(5)));
        assert_eq!(decode(&[0x70, 1, 2]), Err(HeaderError::Truncated));
        assert_eq!(decode(&[0xff; 16]), Err(HeaderError::Overflow));
    }
}
