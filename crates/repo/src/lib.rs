//! Operations on stored repositories, shared by the HTTP server and the CLI:
//! index [`Snapshot`]s, taking in packs ([`ingest`]), writing new objects
//! ([`objects::Builder`]), and the monorepo ([`monorepo::Monorepo`]): directory
//! histories derived from the root history, import-repository syncs, merge
//! requests and their merges.
#![forbid(unsafe_code)]

pub mod blink;
pub mod fsck;
pub mod ingest;
pub mod memory;
pub mod merge3;
pub mod monorepo;
pub mod objects;
mod snapshot;
pub mod tree;

pub use snapshot::{Snapshot, Snapshots};

/// Failures of repository operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] tessera_store::Error),
    #[error(transparent)]
    Object(#[from] tessera_protocol::odb::Error),
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error("writing objects failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing a pack failed: {0}")]
    Pack(#[from] tessera_pack::write::Error),
    #[error("object {0} is not a tree")]
    NotATree(tessera_pack::ObjectId),
    #[error("object {0} is not a commit")]
    NotACommit(tessera_pack::ObjectId),
    /// A refusal meant for the user, e.g. a push that cannot become a merge request.
    #[error("{0}")]
    Refused(String),
    #[error("the monorepo root moved concurrently too many times; try again")]
    Contended,
}
