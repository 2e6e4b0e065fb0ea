//! The data bridge: SQL tables into a git repository as chunked CSV plus
//! schema and metadata that any git host can store, show and diff, and back
//! again exactly.
//!
//! Central pieces: [`ops::export`], [`ops::import`] and [`ops::verify`];
//! the CSV profile in [`csv`] and [`value`]; the repository layout in
//! [`layout`]; table schemas as data, and the DDL imports generate from
//! them, in [`schema`]. Chunk boundaries are content-defined (a hash of each row's
//! key), so changing one row rewrites one chunk file, not every chunk after
//! it. Git objects are written in-process as a pack, without a work tree.
//!
//! Engines: SQLite (rusqlite), PostgreSQL (COPY in CSV format through sqlx),
//! MySQL/MariaDB (text casts and batched inserts through sqlx) and Dolt in
//! doltlite files (libdoltlite.so loaded at run time). Imports go into any
//! of them: the engine an export came from exactly, the others through the
//! type table of `mapping`, every approximation reported.
// `unsafe` only in `doltlite`, which calls a C library loaded at run time.
#![deny(unsafe_code)]

pub mod cli;
pub mod csv;
mod doltlite;
mod git;
pub mod history;
mod incremental;
pub mod layout;
mod mapping;
mod mysql;
pub mod ops;
mod postgres;
pub mod schema;
mod sqlite;
pub mod sync;
pub mod value;

pub use git::{open_target, push, Target};

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
