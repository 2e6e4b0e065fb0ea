//! git pack files, as tessera stores and serves them.
//!
//! tessera keeps every received pack intact and indexes it in SQL; this crate
//! owns the byte-level work around that:
//! - [`index::scan`] walks a spooled pack once, hashing every object and
//!   resolving deltas (including thin-pack bases that live elsewhere), and
//!   reports each object with its location so the caller can index it;
//! - [`read::PackFile`] decodes one object at a stored location;
//! - [`local::PackBuilder`] writes new objects straight into a local git
//!   repository as a pack with its `.idx` (the data bridge's export path);
//! - [`write::Writer`] streams a new pack, copying stored entries (deltas
//!   included) verbatim where it can, so serving a clone does not recompress.
//!
//! Objects are identified by SHA-1 [`gix_hash::ObjectId`]s; sizes and offsets are `u64`.
#![forbid(unsafe_code)]

pub mod delta;
pub mod entry;
pub mod index;
pub mod local;
pub mod read;
pub mod stream;
pub mod write;

pub use gix_hash::{Kind as HashKind, ObjectId};
pub use gix_object::Kind;

/// The object id git gives `data` of `kind`.
pub fn object_id(kind: Kind, data: &[u8]) -> ObjectId {
    let mut h = Hasher::new(kind, data.len() as u64);
    h.update(data);
    h.finish()
}

/// Incremental object hashing, for objects too large to hold at once.
pub struct Hasher(sha1::Sha1);

impl Hasher {
    pub fn new(kind: Kind, size: u64) -> Self {
        use sha1::Digest;
        let mut h = sha1::Sha1::new();
        h.update(kind.as_bytes());
        h.update(b" ");
        h.update(size.to_string().as_bytes());
        h.update(b"\0");
        Hasher(h)
    }

    pub fn update(&mut self, data: &[u8]) {
        use sha1::Digest;
        self.0.update(data);
    }

    pub fn finish(self) -> ObjectId {
        use sha1::Digest;
        ObjectId::from_bytes_or_panic(self.0.finalize().as_slice())
    }
}
