//! The data bridge's core: SQL tables into a git repository as chunked CSV
//! plus schema and metadata that any git host can store, show and diff,
//! and back again exactly. It names no database engine and links no
//! database driver: engines implement [`engine::Source`] and
//! [`engine::Target`] in crates of their own, and `tessera-data` opens
//! them by URL.
//!
//! - the CSV profile: [`csv`], [`value`];
//! - the repository layout and its metadata: [`layout`], [`meta`];
//!   table schemas as data and the DDL generated from them: [`schema`];
//! - chunks (content-defined boundaries, so changing one row rewrites one
//!   chunk file) and their compression: [`chunk`];
//! - git objects written in-process as a pack, remotes: [`git`];
//! - the drivers: [`export`], [`import`] (resume, damage and replacing,
//!   once for every engine), [`verify`], [`sync`] and its shortcut on
//!   versioned engines ([`incremental`]); the type table between engine
//!   families: [`mapping`];
//! - reading tables without a database, for the web pages: a page of rows,
//!   and what changed in a table between commits, row by row: [`rows`].
#![forbid(unsafe_code)]

pub mod chunk;
pub mod csv;
pub mod engine;
pub mod export;
pub mod git;
pub mod import;
pub mod incremental;
pub mod layout;
pub mod mapping;
pub mod meta;
pub mod progress;
pub mod rows;
pub mod schema;
pub mod sync;
pub mod value;
pub mod verify;

pub use git::{open_target, push};

/// Failures of the data bridge, each meant to be shown as it is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(String),
    #[error("git: {0}")]
    Git(String),
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    #[error("table {0:?} already exists in the target database; pass --replace to overwrite it")]
    TargetNotEmpty(String),
    #[error("not a tessera data repository: {0}")]
    Layout(String),
    #[error("the repository uses layout format version {0}, newer than this tessera understands ({max}); upgrade tessera", max = layout::FORMAT_VERSION)]
    NewerFormat(u32),
    #[error("{file}:{line}: {reason}")]
    Damaged { file: String, line: usize, reason: String },
    /// Metadata in the repository that an import refuses: a field naming
    /// a column the table does not have, an absurd size, DDL text other
    /// than the one statement expected, an expression outside what
    /// schemas may contain. Nothing has been changed in the database.
    #[error("{file}: {reason}")]
    Metadata { file: String, reason: String },
    #[error("a row of table {table} with key {key} is {bytes} bytes, more than fits in one chunk")]
    RowTooLarge { table: String, key: String, bytes: u64 },
    #[error("{0}")]
    Unsupported(String),
    /// A scan that bet on storage order found rows out of key order; the
    /// export that allowed the bet scans the table again in key order.
    #[error("rows arrived out of key order")]
    NotInKeyOrder,
    /// `sync --on-conflict fail` found cells changed differently on both sides.
    #[error("{0}")]
    Conflicts(String),
}
