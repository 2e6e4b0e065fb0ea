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

#[cfg(test)]
mod tests {
    use super::*;

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
