//! A small pack writer for tests that must send what no git would write:
//! deltas that promise huge results, chains thousands deep, trees nested
//! thousands of levels, objects with odd modes or headers.

use std::io::Write;

use sha1::Digest;

/// An object id as hex, computed the way git does.
pub fn object_id(kind: &str, data: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("{kind} {}\0", data.len()).as_bytes());
    h.update(data);
    hex::encode(h.finalize())
}

/// A raw tree from `(mode, name, hex id)` entries, in the order given.
pub fn tree(entries: &[(&str, &[u8], &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (mode, name, id) in entries {
        out.extend_from_slice(mode.as_bytes());
        out.push(b' ');
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(&hex::decode(id).expect("hex id"));
    }
    out
}

/// A commit of `tree` on `parents`, at a fixed time.
pub fn commit(tree: &str, parents: &[&str], message: &str) -> Vec<u8> {
    let mut text = format!("tree {tree}\n");
    for p in parents {
        text.push_str(&format!("parent {p}\n"));
    }
    text.push_str("author A U Thor <author@example.com> 1700000000 +0000\n");
    text.push_str("committer A U Thor <author@example.com> 1700000000 +0000\n\n");
    text.push_str(message);
    text.push('\n');
    text.into_bytes()
}

fn type_code(kind: &str) -> u8 {
    match kind {
        "commit" => 1,
        "tree" => 2,
        "blob" => 3,
        "tag" => 4,
        other => panic!("unknown kind {other}"),
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
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

/// Writes pack entries in order; [`PackWriter::finish`] adds the header
/// count and trailer.
#[derive(Default)]
pub struct PackWriter {
    body: Vec<u8>,
    n: u32,
}

impl PackWriter {
    fn header(&mut self, type_code: u8, size: u64) {
        let mut byte = (type_code << 4) | (size & 15) as u8;
        let mut rest = size >> 4;
        while rest != 0 {
            self.body.push(byte | 0x80);
            byte = (rest & 0x7f) as u8;
            rest >>= 7;
        }
        self.body.push(byte);
    }

    fn deflate(&mut self, data: &[u8]) {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(data).expect("deflate");
        self.body.extend(z.finish().expect("deflate"));
    }

    /// Where the next entry starts (offsets count the 12-byte header).
    pub fn offset(&self) -> u64 {
        12 + self.body.len() as u64
    }

    /// A whole object; returns its offset.
    pub fn whole(&mut self, kind: &str, data: &[u8]) -> u64 {
        let at = self.offset();
        self.header(type_code(kind), data.len() as u64);
        self.deflate(data);
        self.n += 1;
        at
    }

    /// A delta against the entry at `base_offset`; returns its offset.
    pub fn ofs_delta(&mut self, base_offset: u64, delta: &[u8]) -> u64 {
        let at = self.offset();
        self.header(6, delta.len() as u64);
        let mut distance = at - base_offset;
        let mut bytes = vec![(distance & 0x7f) as u8];
        distance >>= 7;
        while distance != 0 {
            distance -= 1;
            bytes.push(0x80 | (distance & 0x7f) as u8);
            distance >>= 7;
        }
        bytes.reverse();
        self.body.extend(bytes);
        self.deflate(delta);
        self.n += 1;
        at
    }

    /// A delta against the object `base` (hex), wherever it lives.
    pub fn ref_delta(&mut self, base: &str, delta: &[u8]) -> u64 {
        let at = self.offset();
        self.header(7, delta.len() as u64);
        self.body.extend(hex::decode(base).expect("hex id"));
        self.deflate(delta);
        self.n += 1;
        at
    }

    pub fn finish(self) -> Vec<u8> {
        let mut out = b"PACK".to_vec();
        out.extend(2u32.to_be_bytes());
        out.extend(self.n.to_be_bytes());
        out.extend(self.body);
        let trailer = sha1::Sha1::digest(&out);
        out.extend(trailer);
        out
    }
}

/// A delta from a base of `base_len` bytes that copies its first `chunk`
/// bytes `repeat` times: its result is `chunk * repeat` bytes, from a delta
/// of a few bytes per copy (compressing to almost nothing).
pub fn copying_delta(base_len: u64, chunk: u64, repeat: u64) -> Vec<u8> {
    assert!(chunk > 0 && chunk <= 0xff_ffff && chunk <= base_len);
    let mut out = Vec::new();
    varint(&mut out, base_len);
    varint(&mut out, chunk * repeat);
    let mut op = vec![0x80u8];
    let mut args = Vec::new();
    for i in 0..3 {
        let b = (chunk >> (8 * i)) as u8;
        if b != 0 {
            op[0] |= 0x10 << i;
            args.push(b);
        }
    }
    op.extend(args);
    for _ in 0..repeat {
        out.extend_from_slice(&op);
    }
    out
}

/// A delta that keeps all of a `base_len`-byte base and appends `tail`.
pub fn appending_delta(base_len: u64, tail: &[u8]) -> Vec<u8> {
    assert!(tail.len() < 128);
    let mut out = Vec::new();
    varint(&mut out, base_len);
    varint(&mut out, base_len + tail.len() as u64);
    if base_len > 0 {
        let mut op = 0x80u8;
        let mut args = Vec::new();
        for i in 0..3 {
            let b = (base_len >> (8 * i)) as u8;
            if b != 0 {
                op |= 0x10 << i;
                args.push(b);
            }
        }
        out.push(op);
        out.extend(args);
    }
    if !tail.is_empty() {
        out.push(tail.len() as u8);
        out.extend_from_slice(tail);
    }
    out
}
