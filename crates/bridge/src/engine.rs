//! What the core asks of a database engine. Engines live in crates of
//! their own (`tessera-bridge-sqlite`, `-postgres`, `-mysql`, `-doltlite`)
//! and implement these traits; the core names none of them.
//!
//! - [`Source`]: a database tables are exported from (describe, scan) and
//!   that sync applies row changes to.
//! - [`Target`]: a database an import loads: statements, transactions and
//!   one chunk's rows at a time. The protocol around them (resume, damage,
//!   one transaction when replacing) is [`crate::import`]'s alone.
//! - [`Versioned`]: a database with history (Dolt): which rows changed
//!   since a commit, and reads of a key range.

use crate::chunk::{self, chunk_cells, decompress, decompress_limit};
use crate::csv::{self, Cell};
use crate::layout::{ChunkMeta, TableMeta};
use crate::mapping::Conversion;
use crate::value::{self, Affinity, Value};
use crate::{git, layout, meta, schema};

/// A driver's own error, kept as the source of an [`Error::Driver`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What an engine, or a callback an engine ran, failed with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database driver failed; `source` is its error.
    #[error("{context}")]
    Driver {
        context: String,
        #[source]
        source: BoxError,
    },
    /// The database, or what it holds, is not what the operation needs.
    #[error("{0}")]
    Database(String),
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// Something the engine cannot do (a type, a feature of the URL).
    #[error("{0}")]
    Unsupported(String),
    /// A scan that bet on storage order found rows out of key order; the
    /// export that allowed the bet scans the table again in key order.
    #[error("rows arrived out of key order")]
    NotInKeyOrder,
    /// A chunk the engine was loading, or a callback of a scan, failed.
    #[error(transparent)]
    Chunk(#[from] chunk::Error),
    #[error(transparent)]
    Meta(#[from] meta::Error),
    #[error(transparent)]
    Git(#[from] git::Error),
}

/// Where an [`Error`] started: in the database, or in a layer whose error
/// crossed the engine on its way back ([`Error::into_layer`]).
pub enum Layer {
    Database(Error),
    Chunk(chunk::Error),
    Meta(meta::Error),
    Git(git::Error),
}

impl Error {
    /// The driver's error `source`, with what was being done.
    pub fn driver(context: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Driver { context: context.into(), source: source.into() }
    }

    /// A row or chunk the database refused while loading `file`.
    pub fn damaged(file: &str, line: usize, reason: impl Into<String>) -> Error {
        Error::Chunk(chunk::Error::damaged(file, line, reason))
    }

    pub fn into_layer(self) -> Layer {
        match self {
            Error::Chunk(e) => Layer::Chunk(e),
            Error::Meta(e) => Layer::Meta(e),
            Error::Git(e) => Layer::Git(e),
            other => Layer::Database(other),
        }
    }
}

/// Positions of the columns that identify a row: the primary key, or all
/// columns when there is none.
pub fn key_columns(shape: &Shape) -> Vec<usize> {
    if shape.primary_key.is_empty() {
        return (0..shape.columns.len()).collect();
    }
    shape.primary_key.iter().map(|k| shape.columns.iter().position(|c| &c.name == k).expect("pk is a column")).collect()
}

/// A table's description without its rows, from whichever engine.
pub struct Shape {
    pub name: String,
    pub columns: Vec<layout::Column>,
    pub primary_key: Vec<String>,
    pub autoincrement: bool,
    pub autoincrement_seq: Option<i64>,
    /// A column to order by before the key (for `--chunk-by`).
    pub order_first: Option<String>,
    pub create_sql: String,
    pub post_sql: Vec<String>,
    pub indexes: Vec<layout::Index>,
    pub foreign_keys: Vec<layout::ForeignKey>,
}

impl Shape {
    /// The columns rows are read in order of: the `--chunk-by` column if
    /// any, then the primary key (all columns when there is none).
    pub fn order(&self) -> Vec<String> {
        let mut order: Vec<String> = self.order_first.iter().cloned().collect();
        if self.primary_key.is_empty() {
            order.extend(self.columns.iter().map(|c| c.name.clone()));
        } else {
            order.extend(self.primary_key.iter().cloned());
        }
        order
    }
}

/// A database tables are exported from.
pub trait Source {
    fn engine(&self) -> &'static str;
    fn tables(&mut self) -> Result<Vec<String>, Error>;
    fn describe(&mut self, table: &str) -> Result<Shape, Error>;
    /// Rows per chunk to aim for, at the first export of a table.
    fn divisor(&mut self, shape: &Shape, target_bytes: u64) -> Result<u64, Error>;
    /// The rows in key order (all columns when there is no primary key), as cells.
    fn scan(&mut self, shape: &Shape, each: &mut dyn FnMut(&[Cell]) -> Result<(), Error>) -> Result<(), Error>;
    /// [`scan`](Self::scan) that also hands over each row's CSV record.
    /// Only the cells `wanted` marks need be filled; a source whose own
    /// output is already in the CSV profile passes its records through.
    #[allow(clippy::type_complexity)]
    fn scan_records(
        &mut self,
        shape: &Shape,
        wanted: &[bool],
        each: &mut dyn FnMut(&[Cell], &[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let _ = wanted;
        let mut record = Vec::new();
        self.scan(shape, &mut |cells| {
            record.clear();
            csv::write_record(&mut record, cells);
            each(cells, &record)
        })
    }
    /// Allows [`scan_records`](Self::scan_records) to read rows in storage
    /// order where that may already be key order, failing with
    /// [`Error::NotInKeyOrder`] as soon as it is not (the next scan of that
    /// table is ordered). Only an export, which can start a table again, turns it on.
    fn storage_order(&mut self, on: bool) {
        let _ = on;
    }
    /// The commit this database was last synced with (`tessera data sync`).
    fn sync_state(&mut self, repo: &str, branch: &str) -> Result<Option<String>, Error>;
    /// Applies row-level changes and records the synced commit, all in one
    /// transaction.
    fn apply(&mut self, changes: &[TableChanges], state: Option<(&str, &str, &str)>) -> Result<(), Error>;
    /// The engine's history, when it has one.
    fn versioned(&mut self) -> Option<&mut dyn Versioned> {
        None
    }
}

/// A database an import writes to. Every statement the import runs is
/// generated by the core (DDL from table descriptions, progress records)
/// with [`quote`](Self::quote) and [`placeholder`](Self::placeholder);
/// nothing comes from the repository as SQL.
pub trait Target: Source {
    /// The dialect the core generates DDL in.
    fn dialect(&self) -> schema::Engine;
    fn quote(&self, ident: &str) -> String {
        self.dialect().quote(ident)
    }
    /// The placeholder of parameter `n` (1-based), bound to a column of
    /// `sql_type` when the core knows it (a cross-engine import).
    fn placeholder(&self, n: usize, sql_type: Option<&str>) -> String {
        let _ = (n, sql_type);
        "?".into()
    }
    /// Runs one statement with its parameters.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<(), Error>;
    /// Runs one query; every value comes back as text or NULL.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Option<String>>>, Error>;
    fn begin(&mut self) -> Result<(), Error> {
        self.execute("BEGIN", &[])
    }
    fn commit(&mut self) -> Result<(), Error> {
        self.execute("COMMIT", &[])
    }
    fn rollback(&mut self) {
        let _ = self.execute("ROLLBACK", &[]);
    }
    /// Whether DDL is part of the transaction it runs in. MySQL commits it
    /// on its own: the import then creates tables outside transactions,
    /// records them first, and drops them when it fails.
    fn transactional_ddl(&self) -> bool {
        true
    }
    /// What drops a table the import created, and what depends on it.
    fn drop_table_sql(&self, table: &str) -> String {
        format!("DROP TABLE IF EXISTS {}", self.quote(table))
    }
    /// Whether a statement that fails aborts the whole transaction, so
    /// batches run under a savepoint (PostgreSQL).
    fn failed_statement_aborts(&self) -> bool {
        false
    }
    /// Before loading, outside any transaction (e.g. foreign-key checks
    /// off until the end).
    fn start_load(&mut self) -> Result<(), Error> {
        Ok(())
    }
    /// Loads one chunk's rows into the open transaction; returns how many.
    /// A row the database refuses is [`chunk::Error::Damaged`], naming file and line.
    fn load(&mut self, rows: ChunkRows<'_>) -> Result<u64, Error>;
    /// Up to `n` connections of their own that load chunks side by side
    /// (each chunk with its progress record in one transaction there), for
    /// engines where that is faster than one stream: several `COPY`s, or
    /// several `LOAD DATA LOCAL INFILE`s, into one table. None: every
    /// chunk goes through [`load`](Self::load).
    fn loaders(&mut self, n: usize) -> Result<Vec<Box<dyn Loader>>, Error> {
        let _ = n;
        Ok(Vec::new())
    }
    /// After a table's indexes, in the final transaction: what the engine
    /// keeps outside the table (SQLite's AUTOINCREMENT position).
    fn finish_table(&mut self, meta: &layout::TableMeta) -> Result<(), Error> {
        let _ = meta;
        Ok(())
    }
    /// In the final transaction: a description of rows breaking a foreign
    /// key, for engines that check them only at the end (SQLite).
    /// Returns the table and what is wrong.
    fn foreign_key_violation(&mut self) -> Result<Option<(String, String)>, Error> {
        Ok(None)
    }
    /// After the final commit (foreign-key checks back on; a Dolt commit
    /// with `message`).
    fn finish_load(&mut self, message: &str) -> Result<(), Error> {
        let _ = message;
        Ok(())
    }
}

/// One of a [`Target`]'s extra connections, loading chunks on a thread of
/// its own.
pub trait Loader: Send {
    /// Loads a chunk's rows and runs `mark` (its progress record) in one
    /// transaction. `Ok(None)`: not taken, nothing changed (a value the
    /// engine would convert with a warning); the import then loads that
    /// chunk through [`Target::load`], which names a refused row.
    fn load_marked(&mut self, rows: &ChunkRows<'_>, mark: (&str, &[Value])) -> Result<Option<u64>, Error>;
}

/// A database with history: Dolt. Sync's incremental export asks it which
/// rows changed since the commit the last sync recorded.
pub trait Versioned {
    /// The commits on the current branch after the one the last sync with
    /// `(repo, branch)` recorded, newest first; `None` when that commit is
    /// unknown or not on the branch.
    fn commits_since_sync(&mut self, repo: &str, branch: &str) -> Result<Option<Vec<String>>, Error>;
    /// Keys (as CSV cells) of `table`'s rows changed in `commits` or in the
    /// working set; `key` is the single key column.
    fn changed_keys(
        &mut self,
        table: &str,
        key: &str,
        commits: &[String],
        affinity: Affinity,
    ) -> Result<Vec<String>, Error>;
    /// [`Source::scan`] of the rows whose key is at least `low` and below
    /// `high` (unbounded where `None`).
    fn scan_range(
        &mut self,
        shape: &Shape,
        low: Option<Value>,
        high: Option<Value>,
        each: &mut dyn FnMut(&[Cell]) -> Result<(), Error>,
    ) -> Result<(), Error>;
}

/// A database named by a URL, opened only when an operation needs it, so
/// that a refused import or sync leaves no trace, not even a new file.
/// `tessera-data` implements it for every engine.
pub trait Opener {
    /// The URL without its password, for manifests and messages.
    fn label(&self) -> String;
    /// The engine of the database (`sqlite`, `doltlite`, `postgres`,
    /// `mysql`), or the one a file that does not exist yet becomes when an
    /// export of `export_engine` is imported into it.
    fn engine(&self, export_engine: Option<&str>) -> Result<&'static str, Error>;
    /// Whether the database is a file that does not exist yet.
    fn is_new_file(&self) -> bool;
    /// Opens (or creates, for a file) the database as [`engine`](Self::engine) says.
    fn open(&self, export_engine: Option<&str>) -> Result<Box<dyn Target>, Error>;
}

/// Chunks an interrupted import committed: `(table, position, blob)`;
/// position -1 marks a table the import created.
pub const IMPORT_PROGRESS: &str = "_tessera_import";

/// Tables tessera keeps in a database for itself, never exported.
pub fn internal_table(name: &str) -> bool {
    name == STATE_TABLE || name == IMPORT_PROGRESS
}

/// The table, inside the synced database, that records the last synced
/// commit per repository and branch.
pub const STATE_TABLE: &str = "_tessera_sync";

/// A row, as cells in the table's column order.
pub type Row = Vec<Cell>;

/// The row-level changes to one table, applied in one transaction.
pub struct TableChanges {
    pub table: String,
    /// The columns rows are given in (the repository's).
    pub columns: Vec<layout::Column>,
    /// Key column positions; empty when rows are identified by content.
    pub key: Vec<usize>,
    /// Column changes, run before the rows change.
    pub ddl: Vec<ColumnChange>,
    pub deletes: Vec<Row>,
    pub inserts: Vec<Row>,
    /// The new row and which of its columns changed.
    pub updates: Vec<(Row, Vec<usize>)>,
}

/// A column change made in git, applied to the database by sync.
#[derive(Debug, Clone)]
pub enum ColumnChange {
    Rename(String, String),
    Drop(String),
    /// Name and declared type. Added columns are nullable, without default:
    /// the rows' values follow as updates.
    Add(String, String),
}

/// What receives a chunk's rows as cells, with their line numbers.
pub type EachCells<'e> = dyn FnMut(usize, &[Cell]) -> Result<(), Error> + 'e;
/// What receives a chunk's rows as values, with their line numbers.
pub type EachValues<'e> = dyn FnMut(usize, &[Value]) -> Result<(), Error> + 'e;

/// One chunk's rows on their way into a [`Target`]: read from git and
/// checked against its metadata, decompressed only within its recorded
/// size, converted when the export is of another engine family.
pub struct ChunkRows<'a> {
    pub meta: &'a TableMeta,
    pub chunk: &'a ChunkMeta,
    data: Vec<u8>,
    intact: bool,
    conversion: Option<&'a Conversion>,
    lost: &'a mut Vec<String>,
}

impl<'a> ChunkRows<'a> {
    /// A chunk's stored bytes and whether they are as exported, to be
    /// converted by `conversion` when the export is of another family;
    /// values that had to become NULL add a note to `lost`.
    pub fn new(
        meta: &'a TableMeta,
        chunk: &'a ChunkMeta,
        (data, intact): (Vec<u8>, bool),
        conversion: Option<&'a Conversion>,
        lost: &'a mut Vec<String>,
    ) -> ChunkRows<'a> {
        ChunkRows { meta, chunk, data, intact, conversion, lost }
    }

    /// The target type of column `i` when values are converted to another
    /// engine family (for placeholders that need a cast).
    pub fn sql_type(&self, i: usize) -> Option<&str> {
        self.conversion.map(|c| c.sql_type(i))
    }

    /// Whether the rows come from another engine family (converted values,
    /// no CSV of the target's own profile).
    pub fn converted(&self) -> bool {
        self.conversion.is_some()
    }

    /// The stored (maybe compressed) bytes and whether they are as
    /// exported, for a bulk path that reads them on its own with
    /// [`cells_of`].
    pub fn stored(&self) -> (&[u8], bool) {
        (&self.data, self.intact)
    }

    /// The chunk's CSV, decompressed: the rows exactly as the export wrote
    /// them, for an engine that reads its own profile (PostgreSQL's COPY).
    pub fn csv(self) -> Result<Vec<u8>, Error> {
        if self.conversion.is_some() {
            return Err(Error::Unsupported("a converted chunk has no CSV of its own".into()));
        }
        Ok(decompress(&self.chunk.file, self.data, decompress_limit(self.meta, self.chunk, self.intact))?)
    }

    /// [`csv`](Self::csv) of a copy, for a [`Loader`], which may decline.
    pub fn csv_copy(&self) -> Result<Vec<u8>, Error> {
        if self.conversion.is_some() {
            return Err(Error::Unsupported("a converted chunk has no CSV of its own".into()));
        }
        Ok(decompress(&self.chunk.file, self.data.clone(), decompress_limit(self.meta, self.chunk, self.intact))?)
    }

    /// The rows as cells of the export's profile, with their line numbers.
    pub fn cells(self, each: &mut EachCells<'_>) -> Result<u64, Error> {
        chunk_cells(self.meta, self.chunk, self.data, self.intact, each)
    }

    /// The rows as values: typed by column affinity for an engine of the
    /// export's family (NOT NULL checked), converted by the type table for
    /// another. A value that does not convert is [`chunk::Error::Damaged`].
    pub fn values(self, each: &mut EachValues<'_>) -> Result<u64, Error> {
        let ChunkRows { meta, chunk, data, intact, conversion, lost } = self;
        chunk_cells(meta, chunk, data, intact, &mut |line, cells| {
            let damaged = |reason: String| Error::damaged(&chunk.file, line, reason);
            let values = match conversion {
                Some(c) => c.convert(meta, cells, lost).map_err(damaged)?,
                None => {
                    let mut values = Vec::with_capacity(cells.len());
                    for (cell, col) in cells.iter().zip(&meta.columns) {
                        let v = value::from_cell(cell, col.affinity)
                            .map_err(|e| damaged(format!("column {}: {e}", col.name)))?;
                        if v == Value::Null && col.not_null {
                            return Err(damaged(format!("column {} is NOT NULL", col.name)));
                        }
                        values.push(v);
                    }
                    values
                }
            };
            each(line, &values)
        })
    }
}

/// The rows of `chunk` from its stored bytes, as [`ChunkRows::cells`]
/// reads them, for a bulk path that took the bytes with [`ChunkRows::stored`].
pub fn cells_of(
    meta: &TableMeta,
    chunk: &ChunkMeta,
    data: Vec<u8>,
    intact: bool,
    each: &mut EachCells<'_>,
) -> Result<u64, Error> {
    chunk_cells(meta, chunk, data, intact, each)
}
