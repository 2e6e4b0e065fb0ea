//! git's delta format: copy-from-base and insert instructions.

/// Why a delta could not be applied; returned by [`apply`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("delta header is truncated or overflows")]
    BadHeader,
    #[error("delta expects a base of {expected} bytes, base has {actual}")]
    BaseSize { expected: u64, actual: u64 },
    #[error("delta instruction is truncated or out of range")]
    BadInstruction,
    #[error("delta produced {actual} bytes, its header promised {expected}")]
    ResultSize { expected: u64, actual: u64 },
}

fn varint(data: &[u8], pos: &mut usize) -> Result<u64, Error> {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = *data.get(*pos).ok_or(Error::BadHeader)?;
        *pos += 1;
        if shift > 63 {
            return Err(Error::BadHeader);
        }
        value |= ((byte & 0x7f) as u64) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// The size of the object a delta produces, read from its header.
pub fn result_size(delta: &[u8]) -> Result<u64, Error> {
    let mut pos = 0;
    varint(delta, &mut pos)?;
    varint(delta, &mut pos)
}

/// Applies `delta` to `base`, appending the result to `out` (cleared first).
pub fn apply(base: &[u8], delta: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let mut pos = 0;
    let base_size = varint(delta, &mut pos)?;
    if base_size != base.len() as u64 {
        return Err(Error::BaseSize { expected: base_size, actual: base.len() as u64 });
    }
    let result_size = varint(delta, &mut pos)?;
    out.clear();
    // A hostile header may promise a huge result; reserve no more than the
    // delta could plausibly produce from what it copies.
    out.reserve(result_size.min(base.len() as u64 + delta.len() as u64) as usize);
    while pos < delta.len() {
        let op = delta[pos];
        pos += 1;
        if op & 0x80 != 0 {
            let mut offset = 0u64;
            let mut size = 0u64;
            for i in 0..4 {
                if op & (1 << i) != 0 {
                    offset |= (*delta.get(pos).ok_or(Error::BadInstruction)? as u64) << (8 * i);
                    pos += 1;
                }
            }
            for i in 0..3 {
                if op & (0x10 << i) != 0 {
                    size |= (*delta.get(pos).ok_or(Error::BadInstruction)? as u64) << (8 * i);
                    pos += 1;
                }
            }
            if size == 0 {
                size = 0x10000;
            }
            let end = offset.checked_add(size).ok_or(Error::BadInstruction)?;
            if end > base.len() as u64 {
                return Err(Error::BadInstruction);
            }
            out.extend_from_slice(&base[offset as usize..end as usize]);
        } else if op != 0 {
            let end = pos + op as usize;
            let insert = delta.get(pos..end).ok_or(Error::BadInstruction)?;
            out.extend_from_slice(insert);
            pos = end;
        } else {
            return Err(Error::BadInstruction);
        }
        if out.len() as u64 > result_size {
            return Err(Error::ResultSize { expected: result_size, actual: out.len() as u64 });
        }
    }
    if out.len() as u64 != result_size {
        return Err(Error::ResultSize { expected: result_size, actual: out.len() as u64 });
    }
    Ok(())
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn push_copy(out: &mut Vec<u8>, mut offset: u64, mut len: u64) {
    while len > 0 {
        let n = len.min(0xff_ffff);
        let mut op = 0x80u8;
        let mut args = Vec::with_capacity(7);
        for i in 0..4 {
            let b = (offset >> (8 * i)) as u8;
            if b != 0 {
                op |= 1 << i;
                args.push(b);
            }
        }
        for i in 0..3 {
            let b = (n >> (8 * i)) as u8;
            if b != 0 {
                op |= 0x10 << i;
                args.push(b);
            }
        }
        out.push(op);
        out.extend_from_slice(&args);
        offset += n;
        len -= n;
    }
}

/// A delta from `base` to `target` that copies their common prefix and
/// suffix and inserts the middle: near-optimal for the edits tessera makes
/// itself (one tree entry changed), and cheap. `None` when it would not save
/// at least half of `target`.
pub fn encode_prefix_suffix(base: &[u8], target: &[u8]) -> Option<Vec<u8>> {
    let max = base.len().min(target.len());
    let prefix = base.iter().zip(target).take_while(|(a, b)| a == b).count().min(max);
    let suffix = base[prefix..].iter().rev().zip(target[prefix..].iter().rev()).take_while(|(a, b)| a == b).count();
    let middle = &target[prefix..target.len() - suffix];
    if middle.len() * 2 > target.len() {
        return None;
    }
    let mut out = Vec::with_capacity(middle.len() + middle.len() / 127 + 32);
    push_varint(&mut out, base.len() as u64);
    push_varint(&mut out, target.len() as u64);
    push_copy(&mut out, 0, prefix as u64);
    for piece in middle.chunks(127) {
        out.push(piece.len() as u8);
        out.extend_from_slice(piece);
    }
    push_copy(&mut out, (base.len() - suffix) as u64, suffix as u64);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_suffix_deltas_round_trip() {
        let base: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut target = base.clone();
        target[5000..5010].copy_from_slice(b"0123456789");
        target.splice(5005..5005, *b"ins!");

        let delta = encode_prefix_suffix(&base, &target).unwrap();
        assert!(delta.len() < 100);
        let mut out = Vec::new();
        apply(&base, &delta, &mut out).unwrap();
        assert_eq!(out, target);
        for (b, t) in [(&b""[..], &b"x"[..]), (b"abc", b"abc"), (b"abc", b"")] {
            if let Some(d) = encode_prefix_suffix(b, t) {
                apply(b, &d, &mut out).unwrap();
                assert_eq!(out, t);
            }
        }
        assert!(encode_prefix_suffix(b"aaaa", b"bbbbbbbb").is_none());
    }

    #[test]
    fn copies_and_inserts() {
        let base = b"hello world";
        // base size 11, result size 11: copy "hello " (offset 0, size 6), insert "there".
        let delta = [11, 11, 0x80 | 0x10, 6, 5, b't', b'h', b'e', b'r', b'e'];
        let mut out = Vec::new();
        apply(base, &delta, &mut out).unwrap();
        assert_eq!(out, b"hello there");
    }

    #[test]
    fn rejects_out_of_range_copy() {
        let delta = [3, 5, 0x80 | 0x01 | 0x10, 2, 5];
        let mut out = Vec::new();
        assert_eq!(apply(b"abc", &delta, &mut out), Err(Error::BadInstruction));
        assert_eq!(apply(b"ab", &delta, &mut out), Err(Error::BaseSize { expected: 3, actual: 2 }));
        assert_eq!(apply(b"abc", &[3, 1, 0], &mut out), Err(Error::BadInstruction));
    }
}
