//! export, import and verify.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::csv::{self, Cell};
use crate::layout::{self, ChunkMeta, Chunking, Manifest, RowHash, Source as Source_, TableMeta};
use crate::value::{self, Value};
use crate::{git, schema, sqlite, Error};

/// Options of [`export`].
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// `--chunk-by COLUMN[:year|month|day]`.
    pub chunk_by: Option<ChunkBy>,
    pub max_chunk_bytes: u64,
    pub compression: layout::Compression,
    pub tables: Option<Vec<String>>,
    pub branch: Option<String>,
    pub message: Option<String>,
}

/// Partitioning of `--chunk-by`: one file (or more, over the size limit)
/// per value of a column, or of its year, month or day.
#[derive(Debug, Clone)]
pub struct ChunkBy {
    pub column: String,
    /// How many leading characters of the value's text make the partition
    /// (4: year, 7: month, 10: day of ISO dates); `None`: the whole value.
    pub prefix: Option<usize>,
    pub spec: String,
}

impl ChunkBy {
    pub fn parse(spec: &str) -> Result<ChunkBy, Error> {
        let (column, unit) = match spec.rsplit_once(':') {
            Some((c, u)) => (c, Some(u)),
            None => (spec, None),
        };
        let prefix = match unit {
            None => None,
            Some("year") => Some(4),
            Some("month") => Some(7),
            Some("day") => Some(10),
            Some(other) => {
                return Err(Error::Unsupported(format!("--chunk-by {spec}: unit {other:?} is not year, month or day")))
            }
        };
        Ok(ChunkBy { column: column.to_string(), prefix, spec: spec.to_string() })
    }

    fn value(&self, cell: &Cell) -> String {
        match cell {
            None => "null".into(),
            Some(t) => match self.prefix {
                Some(n) => t.chars().take(n).collect(),
                None => t.clone(),
            },
        }
    }

    fn filter(&self, value: &str, is_null: bool) -> String {
        let col = format!("\"{}\"", self.column.replace('"', "\"\""));
        if is_null {
            return format!("{col} IS NULL");
        }
        let lit = value.replace('\'', "''");
        match self.prefix {
            Some(n) => format!("substr(CAST({col} AS TEXT), 1, {n}) = '{lit}'"),
            None => format!("CAST({col} AS TEXT) = '{lit}'"),
        }
    }
}

/// What an export did.
#[derive(Debug, Default)]
pub struct ExportReport {
    pub tables: Vec<(String, u64, usize)>,
    /// The commit written; `None` when nothing changed and none was needed.
    pub commit: Option<String>,
}

/// Rows per chunk aimed at when no earlier export fixed the divisor.
fn estimate_divisor(conn: &rusqlite::Connection, schema: &sqlite::TableSchema, target: u64) -> Result<u64, Error> {
    let mut bytes = 0u64;
    let mut n = 0u64;
    let mut buf = Vec::new();
    let sample = format!("SELECT * FROM {} LIMIT 1000", sqlite::quote(&schema.name));
    let mut stmt = conn.prepare(&sample).map_err(|e| Error::Database(e.to_string()))?;
    let mut rows = stmt.query([]).map_err(|e| Error::Database(e.to_string()))?;
    while let Some(r) = rows.next().map_err(|e| Error::Database(e.to_string()))? {
        buf.clear();
        let cells: Vec<Cell> = (0..schema.columns.len())
            .map(|i| r.get_ref(i).map(|v| format!("{v:?}").len()).unwrap_or(0))
            .map(|len| Some("x".repeat(len.min(64))))
            .collect();
        csv::write_record(&mut buf, &cells);
        bytes += buf.len() as u64;
        n += 1;
    }
    let avg = bytes.checked_div(n).map_or(64, |a| a.max(1));
    Ok((target / avg).max(1))
}

/// Order-independent hash of a set of rows: the wrapping sum of each
/// encoded row's [`RowHash::row`].
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub struct ContentHash(u128);

impl ContentHash {
    pub fn add(&mut self, scheme: RowHash, record: &[u8]) {
        self.0 = self.0.wrapping_add(scheme.row(record));
    }
    pub fn merge(&mut self, other: ContentHash) {
        self.0 = self.0.wrapping_add(other.0);
    }
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
    pub fn from_hex(hex: &str) -> Option<ContentHash> {
        u128::from_str_radix(hex, 16).ok().map(ContentHash)
    }
    pub fn remove(&mut self, other: ContentHash) {
        self.0 = self.0.wrapping_sub(other.0);
    }
}

fn header(schema_cols: &[layout::Column]) -> Vec<u8> {
    let mut out = Vec::new();
    let names: Vec<Cell> = schema_cols.iter().map(|c| Some(c.name.clone())).collect();
    csv::write_record(&mut out, &names);
    out
}

/// Largest manifest or table metadata file read: far above what a table
/// of millions of chunks needs, far below what would exhaust memory.
const MAX_METADATA_BYTES: u64 = 256 << 20;

/// Largest chunk size limit (`--chunk-size`) a repository may ask for:
/// an import holds a chunk, decompressed, in memory.
pub const MAX_CHUNK_BYTES: u64 = 1 << 30;

/// Most tables a manifest may list, and chunks a table may have.
const MAX_TABLES: usize = 100_000;
const MAX_CHUNKS: usize = 10_000_000;

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    repo: &Path,
    rev: &str,
    file: &str,
) -> Result<Option<T>, Error> {
    match git::read_file_limited(repo, rev, file, MAX_METADATA_BYTES)? {
        None => Ok(None),
        Some(Err(_)) => Err(Error::Metadata {
            file: file.to_string(),
            reason: format!("more than the {MAX_METADATA_BYTES} bytes a metadata file may have"),
        }),
        Some(Ok(bytes)) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Metadata { file: file.to_string(), reason: e.to_string() }),
    }
}

/// The metadata of table `name` at `rev`, checked against the manifest
/// there by [`check_table_meta`]: nothing read from a repository is trusted.
pub(crate) fn read_table_meta(repo: &Path, rev: &str, name: &str) -> Result<Option<TableMeta>, Error> {
    read_table_meta_in(repo, rev, &load_manifest(repo, rev)?, name)
}

/// [`read_table_meta`] with the manifest at `rev` already read.
pub(crate) fn read_table_meta_in(
    repo: &Path,
    rev: &str,
    manifest: &Manifest,
    name: &str,
) -> Result<Option<TableMeta>, Error> {
    let file = layout::table_meta_path(name);
    let Some(mut meta) = read_json::<TableMeta>(repo, rev, &file)? else { return Ok(None) };
    check_table_meta(&meta, name, manifest).map_err(|reason| Error::Metadata { file, reason })?;
    meta.chunk_limit = manifest.chunking.max_chunk_bytes;
    Ok(Some(meta))
}

/// What the code reading a table's metadata relies on: it describes the
/// table it is named after; names are bounded; every key, index, foreign
/// key and partition column is a column; types are data types of the
/// source's dialect (sync splices them into statements); sizes and counts
/// are within the manifest's chunk limit and add up. Returns why not.
pub(crate) fn check_table_meta(meta: &TableMeta, name: &str, manifest: &Manifest) -> Result<(), String> {
    let engine = schema::Engine::of_source(&manifest.source.engine)
        .ok_or_else(|| format!("unknown source engine {:?}", manifest.source.engine))?;
    let text = |e: schema::SchemaError| e.to_string();
    if meta.name != name {
        return Err(format!("name: describes the table {:?}, not {name:?}", meta.name));
    }
    schema::check_name("name", name).map_err(text)?;
    if meta.columns.is_empty() || meta.columns.len() > schema::MAX_ITEMS {
        return Err(format!("columns: {} columns, between 1 and {} expected", meta.columns.len(), schema::MAX_ITEMS));
    }
    let mut names = std::collections::HashSet::new();
    for (i, c) in meta.columns.iter().enumerate() {
        schema::check_name(&format!("columns[{i}].name"), &c.name).map_err(text)?;
        if !names.insert(c.name.as_str()) {
            return Err(format!("columns[{i}].name: {:?} appears twice", c.name));
        }
        schema::check_type(engine, &format!("columns[{i}].declared_type"), &c.declared_type).map_err(text)?;
    }
    let is_column = |field: &str, c: &str| {
        if names.contains(c) {
            Ok(())
        } else {
            Err(format!("{field}: {c:?} is not a column of the table"))
        }
    };
    let mut key = std::collections::HashSet::new();
    for c in &meta.primary_key {
        is_column("primary_key", c)?;
        if !key.insert(c) {
            return Err(format!("primary_key: {c:?} appears twice"));
        }
    }
    if !matches!(meta.row_identity.as_str(), "primary_key" | "content") {
        return Err(format!("row_identity: {:?} is neither primary_key nor content", meta.row_identity));
    }
    if meta.indexes.len() > schema::MAX_ITEMS || meta.foreign_keys.len() > schema::MAX_ITEMS {
        return Err("more than 4096 indexes or foreign keys".into());
    }
    for (i, idx) in meta.indexes.iter().enumerate() {
        schema::check_name(&format!("indexes[{i}].name"), &idx.name).map_err(text)?;
        for c in idx.columns.iter().filter(|c| *c != "<expression>") {
            is_column(&format!("indexes[{i}].columns"), c)?;
        }
    }
    for (i, fk) in meta.foreign_keys.iter().enumerate() {
        for c in &fk.columns {
            is_column(&format!("foreign_keys[{i}].columns"), c)?;
        }
    }
    if let Some(spec) = &manifest.chunking.partition_by {
        let by = ChunkBy::parse(spec).map_err(|e| format!("chunking.partition_by in the manifest: {e}"))?;
        is_column("chunking.partition_by in the manifest", &by.column)?;
    }
    if meta.chunks.len() > MAX_CHUNKS {
        return Err(format!("chunks: {} chunks, more than the {MAX_CHUNKS} accepted", meta.chunks.len()));
    }
    let limit = manifest.chunking.max_chunk_bytes;
    let prefix = format!("data/{name}/");
    let mut rows = 0u64;
    for (i, c) in meta.chunks.iter().enumerate() {
        let field = |part: &str| format!("chunks[{i}].{part}");
        if !c.file.starts_with(&prefix) || c.file.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(format!("{}: {:?} is not a file under {prefix}", field("file"), c.file));
        }
        if c.uncompressed_bytes > limit {
            return Err(format!(
                "{}: {}, more than the manifest's chunk limit of {limit} bytes",
                field("uncompressed_bytes"),
                c.uncompressed_bytes
            ));
        }
        if c.bytes > max_stored_bytes(limit) {
            return Err(format!(
                "{}: {}, more than a chunk of at most {limit} bytes can take",
                field("bytes"),
                c.bytes
            ));
        }
        // Every row takes at least its line end.
        if c.rows > c.uncompressed_bytes {
            return Err(format!("{}: {} rows in {} bytes", field("rows"), c.rows, c.uncompressed_bytes));
        }
        if c.first_key.len() > schema::MAX_ITEMS || c.last_key.len() > schema::MAX_ITEMS {
            return Err(format!("{}: too many key cells", field("first_key")));
        }
        rows += c.rows;
    }
    if rows != meta.rows {
        return Err(format!("rows: {}, but the chunks hold {rows}", meta.rows));
    }
    Ok(())
}

/// The most a stored (compressed) chunk of at most `limit` bytes of rows
/// may take: incompressible data grows a little in gzip and zstd framing.
fn max_stored_bytes(limit: u64) -> u64 {
    limit + limit / 64 + 4096
}

/// The DDL creating `meta`'s table in `engine`: generated from its schema
/// description, or from the description derived from the DDL text of
/// metadata written before descriptions existed. Never the text itself.
pub(crate) fn table_ddl(meta: &TableMeta, engine: schema::Engine) -> Result<schema::Ddl, Error> {
    let file = layout::table_meta_path(&meta.name);
    let refused = |e: schema::SchemaError| Error::Metadata { file: file.clone(), reason: e.to_string() };
    let derived;
    let description = match &meta.schema {
        Some(s) => s,
        None => {
            let index_sql: Vec<&str> = meta.indexes.iter().filter_map(|i| i.sql.as_deref()).collect();
            derived =
                schema::TableSchema::from_legacy(engine, &meta.name, &meta.create_sql, &index_sql, &meta.post_sql)
                    .map_err(refused)?;
            &derived
        }
    };
    let columns: Vec<&str> = meta.columns.iter().map(|c| c.name.as_str()).collect();
    description.validate(engine, &columns).map_err(refused)?;
    description.generate(engine, &meta.name).map_err(refused)
}

/// The schema description an export records for `shape`, from the
/// source's own DDL. A table whose DDL falls outside what imports accept
/// is exported without one; importing it then names what was refused.
fn describe_schema(engine: &str, shape: &Shape) -> Option<schema::TableSchema> {
    let engine = schema::Engine::of_source(engine)?;
    let index_sql: Vec<&str> = shape.indexes.iter().filter_map(|i| i.sql.as_deref()).collect();
    match schema::TableSchema::from_legacy(engine, &shape.name, &shape.create_sql, &index_sql, &shape.post_sql) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(table = %shape.name, "exported without a schema description, which imports need: {e}");
            None
        }
    }
}

/// A chunk cut by the [`Chunker`], on its way to the worker that hashes,
/// compresses and stores it.
pub(crate) struct Job {
    table: usize,
    file: String,
    pub csv: Vec<u8>,
    pub header_len: usize,
    /// Where each row's record ends in `csv` (the header comes first).
    pub ends: Vec<u32>,
    first_key: Vec<Cell>,
    last_key: Vec<Cell>,
    partition: Option<String>,
    filter: Option<String>,
}

/// A buffer for a chunk of at most `limit` bytes, reserved whole (up to
/// 256 MiB) so that filling it never copies it to a larger one; pages
/// count only once written. (Buffers are not pooled: a spare one would keep
/// its pages, a fourth chunk in memory beside the one being cut, the one
/// queued and the one being stored.)
fn chunk_buffer(limit: u64) -> Vec<u8> {
    Vec::with_capacity(limit.min(256 << 20) as usize + 1)
}

/// Cuts a table's rows into chunk files and hands them to the store worker.
pub(crate) struct Chunker<'s> {
    table: String,
    table_no: usize,
    head: Vec<u8>,
    key_idx: Vec<usize>,
    divisor: u64,
    limit: u64,
    n_chunks: usize,
    chunk: Vec<u8>,
    ends: Vec<u32>,
    first_key: Vec<Cell>,
    last_key: Vec<Cell>,
    rows: u64,
    bytes: u64,
    record: Vec<u8>,
    /// The key cells of the current row as [`RowHash::key`] hashes them.
    key: Vec<u8>,
    scheme: RowHash,
    compression: layout::Compression,
    /// `--chunk-by`: the column index, how to partition, and the current
    /// partition with the number of its files so far.
    pub(crate) partition: Option<(usize, ChunkBy)>,
    current: Option<(String, bool, usize)>,
    sink: &'s std::sync::mpsc::SyncSender<Job>,
}

impl<'s> Chunker<'s> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        table: &str,
        table_no: usize,
        columns: &[layout::Column],
        key_idx: Vec<usize>,
        divisor: u64,
        limit: u64,
        scheme: RowHash,
        compression: layout::Compression,
        sink: &'s std::sync::mpsc::SyncSender<Job>,
    ) -> Self {
        let head = header(columns);
        let mut chunk = chunk_buffer(limit);
        chunk.extend_from_slice(&head);
        Chunker {
            table: table.to_string(),
            table_no,
            chunk,
            head,
            key_idx,
            divisor,
            limit,
            n_chunks: 0,
            ends: Vec::new(),
            first_key: Vec::new(),
            last_key: Vec::new(),
            rows: 0,
            bytes: 0,
            record: Vec::new(),
            key: Vec::new(),
            scheme,
            compression,
            partition: None,
            current: None,
            sink,
        }
    }

    pub(crate) fn push(&mut self, cells: &[Cell]) -> Result<(), Error> {
        let mut record = std::mem::take(&mut self.record);
        record.clear();
        csv::write_record(&mut record, cells);
        let pushed = self.push_record(cells, &record);
        self.record = record;
        pushed
    }

    /// Which of `n` columns [`push_record`](Self::push_record) reads.
    pub(crate) fn wanted(&self, n: usize) -> Vec<bool> {
        let mut wanted = vec![false; n];
        for &i in self.key_idx.iter().chain(self.partition.as_ref().map(|(col, _)| col)) {
            wanted[i] = true;
        }
        wanted
    }

    /// [`push`](Self::push) of a row already written as `record`; `cells`
    /// needs only the key columns and the `--chunk-by` column.
    pub(crate) fn push_record(&mut self, cells: &[Cell], record: &[u8]) -> Result<(), Error> {
        if let Some((col, by)) = &self.partition {
            let value = by.value(&cells[*col]);
            let is_null = cells[*col].is_none();
            if self.current.as_ref().map(|(v, _, _)| v != &value).unwrap_or(true) {
                self.flush()?;
                self.current = Some((value, is_null, 0));
            }
        }
        let limit = self.limit as usize;
        if self.head.len() + record.len() > limit {
            let key: Vec<&Cell> = self.key_idx.iter().map(|i| &cells[*i]).collect();
            return Err(Error::RowTooLarge {
                table: self.table.clone(),
                key: format!("{key:?}"),
                bytes: record.len() as u64,
            });
        }
        if self.chunk.len() + record.len() > limit {
            self.flush()?;
        }
        if self.ends.is_empty() {
            self.first_key = self.key_idx.iter().map(|i| cells[*i].clone()).collect();
        }
        self.chunk.extend_from_slice(record);
        self.ends.push(self.chunk.len() as u32);
        self.rows += 1;
        self.bytes += record.len() as u64;
        self.key.clear();
        layout::encode_key(&mut self.key, self.key_idx.iter().map(|i| &cells[*i]));
        let cut = self.scheme.key(&self.key).is_multiple_of(self.divisor);
        self.last_key.resize(self.key_idx.len(), None);
        for (last, i) in self.last_key.iter_mut().zip(&self.key_idx) {
            last.clone_from(&cells[*i]);
        }
        if cut {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.ends.is_empty() {
            return Ok(());
        }
        self.n_chunks += 1;
        let (file, partition, filter) = match (&self.partition, self.current.as_mut()) {
            (Some((_, by)), Some((value, is_null, n))) => {
                *n += 1;
                let file = layout::partition_chunk_path(&self.table, value, *n, self.compression);
                (file, Some(value.clone()), Some(by.filter(value, *is_null)))
            }
            _ => (layout::chunk_path(&self.table, self.n_chunks, self.compression), None, None),
        };
        let job = Job {
            table: self.table_no,
            file,
            csv: std::mem::take(&mut self.chunk),
            header_len: self.head.len(),
            ends: std::mem::take(&mut self.ends),
            first_key: std::mem::take(&mut self.first_key),
            last_key: self.last_key.clone(),
            partition,
            filter,
        };
        // A closed channel means the worker stopped on an error, which
        // `export` reports when it joins it.
        self.sink.send(job).map_err(|_| Error::Git("the chunk writer stopped".into()))?;
        self.chunk = chunk_buffer(self.limit);
        self.chunk.extend_from_slice(&self.head);
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<(), Error> {
        self.flush()
    }

    /// Whether rows were pushed since the last cut.
    pub(crate) fn pending(&self) -> bool {
        !self.ends.is_empty()
    }
}

/// A chunk as stored: its metadata and content hash.
pub(crate) struct Stored {
    pub table: usize,
    pub meta: ChunkMeta,
    pub hash: ContentHash,
}

/// Compressed pack bytes after which the store worker seals its pack and
/// records what it holds in the resume journal.
const PACK_ROLL_BYTES: u64 = 256 << 20;

/// What the store worker did: the chunks it stored, the blobs it wrote
/// that are not yet in a sealed pack, and the error it stopped on.
#[derive(Default)]
pub(crate) struct StoreOutcome {
    pub stored: Vec<Stored>,
    pub unsealed: Vec<(String, String)>,
    pub error: Option<Error>,
}

/// The worker behind the [`Chunker`]s: hashes each chunk's rows, compresses
/// the file (`--compress`), reuses the blob of an identical chunk already in
/// the repository, and otherwise deflates it into the export's pack. Runs
/// on its own thread so reading the database and compressing overlap.
pub(crate) fn store_chunks(
    jobs: std::sync::mpsc::Receiver<Job>,
    pack: &mut tessera_pack::local::PackBuilder,
    compression: layout::Compression,
    scheme: RowHash,
    known: &std::collections::HashMap<String, String>,
    journal: &git::Journal,
) -> StoreOutcome {
    let io = |e: std::io::Error| Error::Git(format!("writing the pack: {e}"));
    let mut out = StoreOutcome::default();
    // Blobs the repository has, and blobs of this run: an identical chunk
    // (unchanged since the last export, in another table, or a table
    // scanned again) is not compressed again.
    let mut have: std::collections::HashSet<String> = known.values().cloned().collect();
    for job in jobs {
        let step = (|| {
            let stored = compress(compression, &job.csv)?;
            // Deflating (with the SHA-1 that names the blob) is the longest
            // step; it runs beside the row hashes and the SHA-256.
            let deflate = || {
                let id = tessera_pack::object_id(tessera_pack::Kind::Blob, &stored);
                let new = !have.contains(&id.to_string());
                (id, new.then(|| tessera_pack::local::Encoded::with_id(tessera_pack::Kind::Blob, &stored, 2, id)))
            };
            let hashes = || {
                let mut hash = ContentHash::default();
                let mut start = job.header_len;
                for &end in &job.ends {
                    hash.add(scheme, &job.csv[start..end as usize]);
                    start = end as usize;
                }
                (hash, hex::encode(Sha256::digest(&stored[..])))
            };
            let ((id, encoded), (hash, sha256)) = if stored.len() < 1 << 20 {
                (deflate(), hashes())
            } else {
                std::thread::scope(|s| {
                    let side = s.spawn(deflate);
                    let hashes = hashes();
                    (side.join().expect("deflating does not panic"), hashes)
                })
            };
            let git_blob = id.to_string();
            if let Some(encoded) = encoded {
                pack.push(encoded).map_err(io)?;
                out.unsealed.push((sha256.clone(), git_blob.clone()));
                have.insert(git_blob.clone());
            }
            if pack.bytes() > PACK_ROLL_BYTES {
                pack.roll().map_err(io)?;
                journal.record(&std::mem::take(&mut out.unsealed))?;
            }
            out.stored.push(Stored {
                table: job.table,
                meta: ChunkMeta {
                    file: job.file,
                    rows: job.ends.len() as u64,
                    first_key: job.first_key,
                    last_key: job.last_key,
                    bytes: stored.len() as u64,
                    uncompressed_bytes: job.csv.len() as u64,
                    sha256,
                    git_blob,
                    partition: job.partition,
                    filter: job.filter,
                    content_hash: Some(hash.hex()),
                },
                hash,
            });
            Ok(())
        })();
        if let Err(e) = step {
            out.error = Some(e);
            break;
        }
    }
    out
}

/// A per-table progress line on stderr, drawn only when stderr is a terminal.
pub(crate) fn progress(table: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {prefix}: {binary_bytes} ({binary_bytes_per_sec}) {msg}")
            .expect("the template is valid"),
    );
    bar.set_prefix(table.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

pub(crate) fn rows_message(rows: u64, bar: &indicatif::ProgressBar) -> String {
    let secs = bar.elapsed().as_secs_f64().max(0.001);
    format!("{rows} rows, {:.0} rows/s", rows as f64 / secs)
}

/// Positions of the columns that identify a row: the primary key, or all
/// columns when there is none.
pub(crate) fn key_columns(shape: &Shape) -> Vec<usize> {
    if shape.primary_key.is_empty() {
        return (0..shape.columns.len()).collect();
    }
    shape.primary_key.iter().map(|k| shape.columns.iter().position(|c| &c.name == k).expect("pk is a column")).collect()
}

/// A table's description without its rows, from whichever engine.
pub(crate) struct Shape {
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
pub(crate) trait Source {
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
    fn apply(&mut self, changes: &[crate::sync::TableChanges], state: Option<(&str, &str, &str)>) -> Result<(), Error>;
}

struct SqliteSource {
    conn: rusqlite::Connection,
}

impl Source for SqliteSource {
    fn engine(&self) -> &'static str {
        "sqlite"
    }
    fn tables(&mut self) -> Result<Vec<String>, Error> {
        sqlite::tables(&self.conn)
    }
    fn describe(&mut self, table: &str) -> Result<Shape, Error> {
        let s = sqlite::schema(&self.conn, table)?;
        let autoincrement_seq = if s.autoincrement {
            self.conn.query_row("SELECT seq FROM sqlite_sequence WHERE name = ?1", [table], |r| r.get(0)).ok()
        } else {
            None
        };
        Ok(Shape {
            name: s.name,
            columns: s.columns,
            primary_key: s.primary_key,
            autoincrement: s.autoincrement,
            autoincrement_seq,
            order_first: None,
            create_sql: s.create_sql,
            post_sql: Vec::new(),
            indexes: s.indexes,
            foreign_keys: s.foreign_keys,
        })
    }
    fn divisor(&mut self, shape: &Shape, target_bytes: u64) -> Result<u64, Error> {
        let schema = sqlite::schema(&self.conn, &shape.name)?;
        estimate_divisor(&self.conn, &schema, target_bytes)
    }
    fn scan(&mut self, shape: &Shape, each: &mut dyn FnMut(&[Cell]) -> Result<(), Error>) -> Result<(), Error> {
        let schema = sqlite::schema(&self.conn, &shape.name)?;
        sqlite::scan_cells(&self.conn, &schema, &shape.order(), each)
    }
    fn sync_state(&mut self, repo: &str, branch: &str) -> Result<Option<String>, Error> {
        sqlite::sync_state(&self.conn, repo, branch)
    }
    fn apply(&mut self, changes: &[crate::sync::TableChanges], state: Option<(&str, &str, &str)>) -> Result<(), Error> {
        let tx = self.conn.transaction().map_err(|e| Error::Database(e.to_string()))?;
        sqlite::apply(&tx, changes, state)?;
        tx.commit().map_err(|e| Error::Database(format!("committing the sync: {e}")))
    }
}

/// Connection options without sqlx's slow-statement warnings: a bulk
/// COPY or SELECT of a whole table is slow by design.
pub(crate) fn quiet<O: sqlx::ConnectOptions>(options: O) -> O {
    options.log_slow_statements(log::LevelFilter::Off, std::time::Duration::ZERO)
}

pub(crate) fn is_mysql(database: &str) -> bool {
    database.starts_with("mysql://") || database.starts_with("mariadb://")
}

pub(crate) fn is_postgres(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

pub(crate) fn open_source(database: &str) -> Result<Box<dyn Source>, Error> {
    if is_postgres(database) {
        return Ok(Box::new(crate::postgres::Postgres::connect(database)?));
    }
    if is_mysql(database) {
        return Ok(Box::new(crate::mysql::Mysql::connect(database)?));
    }
    if crate::doltlite::is_doltlite(database) {
        return Ok(Box::new(crate::doltlite::Doltlite::open(database, false)?));
    }
    if database.contains("://") && !database.starts_with("sqlite://") {
        return Err(Error::Unsupported(format!("{database}: this version reads SQLite, PostgreSQL and MySQL/MariaDB")));
    }
    Ok(Box::new(SqliteSource { conn: sqlite::open(database)? }))
}

pub fn export(database: &str, repo: &Path, opts: &ExportOptions) -> Result<ExportReport, Error> {
    export_inner(database, repo, opts, false)
}

/// An export that makes no commit when nothing changed; returns the commit.
pub(crate) fn export_commit(
    database: &str,
    repo: &Path,
    opts: &ExportOptions,
    skip_unchanged: bool,
) -> Result<Option<String>, Error> {
    export_inner(database, repo, opts, skip_unchanged).map(|r| r.commit)
}

fn export_inner(
    database: &str,
    repo: &Path,
    opts: &ExportOptions,
    skip_unchanged: bool,
) -> Result<ExportReport, Error> {
    let mut source = open_source(database)?;
    git::ensure_repo(repo)?;
    let branch = match &opts.branch {
        Some(b) => b.clone(),
        None => git::default_branch(repo)?,
    };
    git::require_clean(repo, &branch)?;
    let rev = format!("refs/heads/{branch}");
    let previous_exists = git::resolve(repo, &rev).is_some();
    let mut names = source.tables()?;
    names.retain(|n| !internal_table(n));
    if let Some(only) = &opts.tables {
        for t in only {
            if !names.contains(t) {
                return Err(Error::UnknownTable(t.clone()));
            }
        }
        names.retain(|n| only.contains(n));
    }
    let message =
        opts.message.clone().unwrap_or_else(|| format!("Export {} table(s) from {}", names.len(), redact(database)));
    let mut commit = git::CommitWriter::start(repo, &branch, &message)?;
    // Blobs this repository already has, by the SHA-256 of the file: the
    // previous export's chunks, and what an interrupted export sealed.
    let journal = git::Journal::open(repo)?;
    let mut known = journal.load(repo)?;
    let mut previous_metas = BTreeMap::new();
    if previous_exists {
        for name in &names {
            if let Some(p) = read_table_meta(repo, &rev, name)? {
                for c in &p.chunks {
                    known.insert(c.sha256.clone(), c.git_blob.clone());
                }
                previous_metas.insert(name.clone(), p);
            }
        }
    }
    let previous_manifest = if previous_exists { read_json::<Manifest>(repo, &rev, layout::MANIFEST)? } else { None };
    let scheme = previous_manifest.as_ref().map_or(RowHash::NEWEST, |m| m.chunking.algorithm);
    let (metas, schema_sql) =
        write_tables(source.as_mut(), &names, &mut commit, opts, &previous_metas, scheme, &mut known, &journal)?;
    let mut report = ExportReport::default();
    for m in &metas {
        report.tables.push((m.name.clone(), m.rows, m.chunks.len()));
    }
    // The same rows as the previous export keep its timestamp, so an
    // export of an unchanged database produces the same tree.
    let unchanged = previous_exists
        && previous_metas.len() == metas.len()
        && metas.iter().all(|m| {
            previous_metas.get(&m.name).is_some_and(|p| {
                p.chunks.len() == m.chunks.len()
                    && p.chunks.iter().zip(&m.chunks).all(|(a, b)| a.file == b.file && a.sha256 == b.sha256)
            })
        });
    let previous_created = previous_manifest.filter(|_| unchanged).map(|m| m.created_at);
    let created_at = previous_created.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    });
    let source = Source_ { engine: source.engine().into(), database: redact(database), branch: None, commit: None };
    let manifest = manifest(source, opts, scheme, &names, created_at);
    write_metadata(&mut commit, &manifest, &metas, &schema_sql)?;
    report.commit = commit.finish(skip_unchanged)?;
    journal.clear();
    Ok(report)
}

/// Cuts the tables `names` of `source` into chunk files of `commit` (the
/// database is read here while a worker thread compresses into the pack),
/// and returns their metadata and the schema text. `known` maps SHA-256s of
/// files the repository has to their blobs; it gains the new ones.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_tables(
    source: &mut dyn Source,
    names: &[String],
    commit: &mut git::CommitWriter,
    opts: &ExportOptions,
    previous: &BTreeMap<String, TableMeta>,
    scheme: RowHash,
    known: &mut std::collections::HashMap<String, String>,
    journal: &git::Journal,
) -> Result<(Vec<TableMeta>, String), Error> {
    if opts.max_chunk_bytes == 0 || opts.max_chunk_bytes > MAX_CHUNK_BYTES {
        // Imports refuse a larger limit: they hold a chunk in memory.
        return Err(Error::Unsupported(format!(
            "a chunk size of {} bytes: between 1 byte and {MAX_CHUNK_BYTES} (1 GiB) is supported",
            opts.max_chunk_bytes
        )));
    }
    let mut shapes = Vec::new();
    let (sink, jobs) = std::sync::mpsc::sync_channel::<Job>(1);
    let compression = opts.compression;
    let (scanned, outcome) = std::thread::scope(|scope| {
        let pack = &mut commit.pack;
        let (known, journal) = (&*known, journal);
        let worker = scope.spawn(move || store_chunks(jobs, pack, compression, scheme, known, journal));
        // Each scan of a table stores under a slot of its own, so a scan
        // started again (storage order was not key order) leaves nothing
        // behind but blobs the next one mostly reuses.
        let mut slots = 0;
        source.storage_order(true);
        let mut scan = || -> Result<(), Error> {
            for name in names {
                let mut shape = source.describe(name)?;
                let partition = match &opts.chunk_by {
                    Some(by) => {
                        let col = shape.columns.iter().position(|c| c.name == by.column).ok_or_else(|| {
                            Error::Unsupported(format!("--chunk-by: table {name} has no column {:?}", by.column))
                        })?;
                        shape.order_first = Some(by.column.clone());
                        Some((col, by.clone()))
                    }
                    None => None,
                };
                let divisor = match previous.get(name) {
                    Some(p) => p.divisor,
                    None => source.divisor(&shape, opts.max_chunk_bytes / 2)?,
                };
                let bar = progress(name);
                let slot = loop {
                    let slot = slots;
                    slots += 1;
                    let mut chunker = Chunker::new(
                        name,
                        slot,
                        &shape.columns,
                        key_columns(&shape),
                        divisor.max(1),
                        opts.max_chunk_bytes,
                        scheme,
                        opts.compression,
                        &sink,
                    );
                    chunker.partition = partition.clone();
                    let wanted = chunker.wanted(shape.columns.len());
                    let scanned = source.scan_records(&shape, &wanted, &mut |cells, record| {
                        chunker.push_record(cells, record)?;
                        if chunker.rows.is_multiple_of(4096) {
                            bar.set_position(chunker.bytes);
                            bar.set_message(rows_message(chunker.rows, &bar));
                        }
                        Ok(())
                    });
                    match scanned {
                        Err(Error::NotInKeyOrder) => bar.set_position(0),
                        Err(e) => return Err(e),
                        Ok(()) => {
                            chunker.finish()?;
                            break slot;
                        }
                    }
                };
                bar.finish_and_clear();
                shapes.push((slot, shape, divisor));
            }
            Ok(())
        };
        let scanned = scan();
        source.storage_order(false);
        drop(sink);
        (scanned, worker.join().expect("the chunk writer does not panic"))
    });
    let failed = match (scanned, outcome.error) {
        (_, Some(e)) | (Err(e), None) => Some(e),
        (Ok(_), None) => None,
    };
    if let Some(e) = failed {
        // Seal what was stored so a re-run skips it, then report.
        if !outcome.unsealed.is_empty() && commit.pack.roll().is_ok() {
            journal.record(&outcome.unsealed)?;
        }
        return Err(e);
    }
    let n_slots = shapes.iter().map(|(slot, _, _)| slot + 1).max().unwrap_or(0);
    let mut tables: Vec<(Vec<ChunkMeta>, ContentHash)> = vec![(Vec::new(), ContentHash::default()); n_slots];
    for s in outcome.stored {
        let t = &mut tables[s.table];
        t.0.push(s.meta);
        t.1.merge(s.hash);
    }
    let mut metas = Vec::new();
    let mut schema_sql = String::new();
    let engine = source.engine();
    for (slot, shape, divisor) in shapes {
        let (chunks, hash) = std::mem::take(&mut tables[slot]);
        for c in &chunks {
            commit.file_ref(&c.file, &c.git_blob)?;
        }
        schema_sql.push_str(&format!("{};\n", shape.create_sql.trim_end_matches(';')));
        for idx in shape.indexes.iter().filter_map(|i| i.sql.as_ref()) {
            schema_sql.push_str(&format!("{idx};\n"));
        }
        for stmt in &shape.post_sql {
            schema_sql.push_str(&format!("{stmt};\n"));
        }
        let rows = chunks.iter().map(|c| c.rows).sum();
        for c in &chunks {
            known.insert(c.sha256.clone(), c.git_blob.clone());
        }
        let description = describe_schema(engine, &shape);
        metas.push(TableMeta {
            name: shape.name.clone(),
            row_identity: if shape.primary_key.is_empty() { "content".into() } else { "primary_key".into() },
            columns: shape.columns,
            primary_key: shape.primary_key,
            autoincrement: shape.autoincrement,
            autoincrement_seq: shape.autoincrement_seq,
            schema: description,
            ddl: None,
            chunk_limit: opts.max_chunk_bytes,
            create_sql: shape.create_sql,
            post_sql: shape.post_sql,
            indexes: shape.indexes,
            foreign_keys: shape.foreign_keys,
            rows,
            content_hash: hash.hex(),
            divisor,
            chunks,
        });
    }
    Ok((metas, schema_sql))
}

/// The manifest of an export made with `opts`.
pub(crate) fn manifest(
    source: Source_,
    opts: &ExportOptions,
    scheme: RowHash,
    names: &[String],
    created_at: u64,
) -> Manifest {
    Manifest {
        format_version: layout::FORMAT_VERSION,
        created_at,
        creator: concat!("tessera ", env!("CARGO_PKG_VERSION")).into(),
        source,
        chunking: Chunking {
            strategy: if opts.chunk_by.is_some() { "column".into() } else { "size".into() },
            max_chunk_bytes: opts.max_chunk_bytes,
            algorithm: scheme,
            compression: opts.compression,
            partition_by: opts.chunk_by.as_ref().map(|b| b.spec.clone()),
        },
        tables: names.to_vec(),
    }
}

/// Writes everything but the chunks: per-table metadata, the manifest, the
/// schema, the Data Package descriptor, the README and `.gitattributes`.
pub(crate) fn write_metadata(
    commit: &mut git::CommitWriter,
    manifest: &Manifest,
    metas: &[TableMeta],
    schema_sql: &str,
) -> Result<(), Error> {
    for meta in metas {
        let json = serde_json::to_vec_pretty(meta).expect("metadata serializes");
        commit.file(&layout::table_meta_path(&meta.name), &json)?;
    }
    commit.file(layout::MANIFEST, &serde_json::to_vec_pretty(manifest).expect("manifest serializes"))?;
    commit.file(layout::SCHEMA, schema_sql.as_bytes())?;
    commit.file("datapackage.json", &serde_json::to_vec_pretty(&layout::datapackage(metas)).expect("serializes"))?;
    commit.file("README.md", layout::readme(manifest, metas).as_bytes())?;
    commit.file(".gitattributes", layout::GITATTRIBUTES.as_bytes())
}

/// A database URL without its password, for metadata and messages.
pub(crate) fn redact(database: &str) -> String {
    match (database.find("://"), database.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let auth = &database[scheme + 3..at];
            let user = auth.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &database[..scheme + 3], &database[at + 1..])
        }
        _ => database.to_string(),
    }
}

/// Options of [`import`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub tables: Option<Vec<String>>,
    pub branch: Option<String>,
    pub replace: bool,
}

/// What an import did, including chunks accepted as human edits.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub tables: Vec<(String, u64)>,
    pub edited_chunks: Vec<String>,
    /// What a cross-engine import had to approximate, per column.
    pub approximations: Vec<String>,
    /// Tables whose first chunks an interrupted import had loaded, and how many.
    pub resumed: Vec<(String, usize)>,
    /// Chunks loaded by the engine's bulk path (MySQL: LOAD DATA LOCAL
    /// INFILE); the others were inserted row by row.
    pub bulk_loaded_chunks: usize,
}

/// The metadata of `names`, and which of them the target already has
/// (refused unless `replace`).
/// The metadata of tables `names` at `rev`.
/// Each is checked, and carries the DDL generated for it (`ddl`), so an
/// import refuses bad metadata before it changes anything.
pub(crate) fn table_metas(repo: &Path, rev: &str, names: &[String]) -> Result<Vec<TableMeta>, Error> {
    let manifest = load_manifest(repo, rev)?;
    let engine = schema::Engine::of_source(&manifest.source.engine)
        .ok_or_else(|| Error::Unsupported(format!("an export from {:?}", manifest.source.engine)))?;
    names
        .iter()
        .map(|name| {
            let mut meta = read_table_meta_in(repo, rev, &manifest, name)?
                .ok_or_else(|| Error::Layout(format!("no metadata for table {name}")))?;
            meta.ddl = Some(table_ddl(&meta, engine)?);
            Ok(meta)
        })
        .collect()
}

/// The DDL [`table_metas`] generated for `meta`.
pub(crate) fn ddl_of(meta: &TableMeta) -> Result<&schema::Ddl, Error> {
    meta.ddl.as_ref().ok_or_else(|| Error::Layout(format!("no DDL was generated for table {}", meta.name)))
}

pub(crate) fn load_metas(
    repo: &Path,
    rev: &str,
    names: &[String],
    replace: bool,
    exists: &mut dyn FnMut(&str) -> Result<bool, Error>,
) -> Result<(Vec<TableMeta>, Vec<String>), Error> {
    let metas = table_metas(repo, rev, names)?;
    let mut existing = Vec::new();
    for name in names {
        if exists(name)? {
            if !replace {
                return Err(Error::TargetNotEmpty(name.clone()));
            }
            existing.push(name.clone());
        }
    }
    Ok((metas, existing))
}

/// The row hash of the export at `rev`, or what a new repository gets.
pub(crate) fn row_hash_at(repo: &Path, rev: &str) -> Result<RowHash, Error> {
    Ok(read_json::<Manifest>(repo, rev, layout::MANIFEST)?.map_or(RowHash::NEWEST, |m| m.chunking.algorithm))
}

pub(crate) fn load_manifest(repo: &Path, rev: &str) -> Result<Manifest, Error> {
    let manifest: Manifest = read_json(repo, rev, layout::MANIFEST)?.ok_or_else(|| {
        Error::Layout(format!("{} has no {} on {rev}: not a tessera data export", repo.display(), layout::MANIFEST))
    })?;
    if manifest.format_version > layout::FORMAT_VERSION {
        return Err(Error::NewerFormat(manifest.format_version));
    }
    let refuse = |reason: String| Error::Metadata { file: layout::MANIFEST.into(), reason };
    let limit = manifest.chunking.max_chunk_bytes;
    if limit == 0 || limit > MAX_CHUNK_BYTES {
        return Err(refuse(format!("chunking.max_chunk_bytes: {limit}, between 1 and {MAX_CHUNK_BYTES} expected")));
    }
    if manifest.tables.len() > MAX_TABLES {
        return Err(refuse(format!("tables: {}, more than the {MAX_TABLES} accepted", manifest.tables.len())));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in manifest.tables.iter().enumerate() {
        schema::check_name(&format!("tables[{i}]"), t).map_err(|e| refuse(e.to_string()))?;
        if !seen.insert(t) {
            return Err(refuse(format!("tables[{i}]: {t:?} appears twice")));
        }
    }
    Ok(manifest)
}

/// Reads every chunk of a table, checking it, and hands each row to `each`.
pub(crate) fn compress(compression: layout::Compression, data: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, Error> {
    use std::io::Write;
    let io = |e: std::io::Error| Error::Unsupported(format!("compressing a chunk: {e}"));
    match compression {
        layout::Compression::None => Ok(std::borrow::Cow::Borrowed(data)),
        layout::Compression::Gzip => {
            let mut z = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 3), flate2::Compression::new(6));
            z.write_all(data).map_err(io)?;
            z.finish().map(Into::into).map_err(io)
        }
        layout::Compression::Zstd => zstd::encode_all(data, 3).map(Into::into).map_err(io),
    }
}

/// A chunk file's rows as CSV bytes, decompressed by its name, read in a
/// streaming way that stops after `limit` bytes: more is an error, so a
/// small file that inflates to gigabytes costs `limit` bytes of memory.
pub(crate) fn decompress(file: &str, data: Vec<u8>, limit: u64) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let damaged = |reason: String| Error::Damaged { file: file.to_string(), line: 0, reason };
    let mut decoder: Box<dyn Read + '_> = match layout::Compression::of_file(file) {
        layout::Compression::None => {
            if data.len() as u64 > limit {
                return Err(damaged(format!("{} bytes, more than the {limit} recorded", data.len())));
            }
            return Ok(data);
        }
        layout::Compression::Gzip => Box::new(flate2::read::GzDecoder::new(&data[..])),
        layout::Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(&data[..]).map_err(|e| damaged(format!("does not decompress: {e}")))?,
        ),
    };
    // Reserve what is recorded, never more than a chunk may hold.
    let mut out = Vec::with_capacity(limit.min(64 << 20) as usize);
    let read = decoder
        .by_ref()
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| damaged(format!("does not decompress: {e}")))?;
    if read as u64 > limit {
        return Err(damaged(format!("inflates to more than the {limit} bytes recorded: refused")));
    }
    Ok(out)
}

/// How many bytes chunk `chunk` may inflate to: what its metadata records
/// when the file is as exported, the table's chunk limit for a human edit.
pub(crate) fn decompress_limit(meta: &TableMeta, chunk: &ChunkMeta, intact: bool) -> u64 {
    if intact {
        chunk.uncompressed_bytes.min(meta.chunk_limit)
    } else {
        meta.chunk_limit
    }
}

/// A chunk's bytes and whether they are as exported. A changed chunk is a
/// human edit when git has a different blob for it than the one recorded
/// (it was changed through a commit); otherwise it is damage.
pub(crate) fn load_chunk(
    repo: &Path,
    rev: &str,
    chunk: &ChunkMeta,
    limit: u64,
    edited: &mut Vec<String>,
) -> Result<(Vec<u8>, bool), Error> {
    let damaged = |reason: String| Error::Damaged { file: chunk.file.clone(), line: 0, reason };
    let data = match git::read_file_limited(repo, rev, &chunk.file, max_stored_bytes(limit))? {
        None => return Err(damaged("chunk file is missing".into())),
        Some(Err(_)) => return Err(damaged(format!("larger than a chunk of at most {limit} bytes can be"))),
        Some(Ok(data)) => data,
    };
    let intact = hex::encode(Sha256::digest(&data)) == chunk.sha256;
    if !intact {
        let now = git::blob_id(repo, rev, &chunk.file)?.unwrap_or_default();
        if now == chunk.git_blob {
            return Err(Error::Damaged {
                file: chunk.file.clone(),
                line: 0,
                reason: "content does not match its recorded checksum".into(),
            });
        }
        edited.push(chunk.file.clone());
    }
    Ok((data, intact))
}

#[allow(clippy::type_complexity)]
pub(crate) fn read_rows(
    repo: &Path,
    rev: &str,
    meta: &TableMeta,
    typed: bool,
    edited: &mut Vec<String>,
    each: &mut dyn FnMut(&str, usize, Vec<Value>, &[u8]) -> Result<(), Error>,
) -> Result<u64, Error> {
    read_chunks(repo, rev, meta, &meta.chunks, typed, edited, each)
}

/// The rows of one chunk as cells with their line numbers, from its stored
/// bytes as [`load_chunk`] returned them: decompressed within the limit,
/// the header and every row's field count checked, and for an intact
/// chunk the row count against the metadata. Returns the rows.
#[allow(clippy::type_complexity)]
pub(crate) fn chunk_cells(
    meta: &TableMeta,
    chunk: &ChunkMeta,
    data: Vec<u8>,
    intact: bool,
    each: &mut dyn FnMut(usize, &[Cell]) -> Result<(), Error>,
) -> Result<u64, Error> {
    let data = decompress(&chunk.file, data, decompress_limit(meta, chunk, intact))?;
    let mut reader = csv::Reader::new(&data);
    let damaged = |line: usize, reason: String| Error::Damaged { file: chunk.file.clone(), line, reason };
    let header = reader.next_record().map_err(|e| damaged(1, e.to_string()))?.unwrap_or_default();
    let names: Vec<Cell> = meta.columns.iter().map(|c| Some(c.name.clone())).collect();
    if header != names {
        return Err(damaged(1, "header does not name the table's columns".into()));
    }
    let mut rows = 0u64;
    let mut cells = Vec::new();
    loop {
        let line = reader.line();
        if !reader.next_into(&mut cells).map_err(|e| damaged(line, e.to_string()))? {
            break;
        }
        if cells.len() != meta.columns.len() {
            return Err(damaged(line, format!("{} fields, the table has {} columns", cells.len(), meta.columns.len())));
        }
        each(line, &cells)?;
        rows += 1;
    }
    if intact && rows != chunk.rows {
        return Err(damaged(0, format!("{rows} rows, the metadata of the same commit says {}", chunk.rows)));
    }
    Ok(rows)
}

/// [`read_rows`] of some of the table's chunks.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(crate) fn read_chunks(
    repo: &Path,
    rev: &str,
    meta: &TableMeta,
    chunks: &[ChunkMeta],
    typed: bool,
    edited: &mut Vec<String>,
    each: &mut dyn FnMut(&str, usize, Vec<Value>, &[u8]) -> Result<(), Error>,
) -> Result<u64, Error> {
    let mut total = 0;
    for chunk in chunks {
        let (data, intact) = load_chunk(repo, rev, chunk, meta.chunk_limit, edited)?;
        let mut record = Vec::new();
        let rows = chunk_cells(meta, chunk, data, intact, &mut |line, cells| {
            let damaged = |reason: String| Error::Damaged { file: chunk.file.clone(), line, reason };
            if !typed {
                record.clear();
                csv::write_record(&mut record, cells);
                return each(&chunk.file, line, Vec::new(), &record);
            }
            let mut values = Vec::with_capacity(cells.len());
            for (cell, col) in cells.iter().zip(&meta.columns) {
                let v =
                    value::from_cell(cell, col.affinity).map_err(|e| damaged(format!("column {}: {e}", col.name)))?;
                if v == Value::Null && col.not_null {
                    return Err(damaged(format!("column {} is NOT NULL", col.name)));
                }
                values.push(v);
            }
            record.clear();
            let canon: Vec<Cell> = values.iter().zip(&meta.columns).map(|(v, c)| v.to_cell(c.affinity)).collect();
            csv::write_record(&mut record, &canon);
            each(&chunk.file, line, values, &record)
        })?;
        total += rows;
    }
    Ok(total)
}

pub fn import(repo: &Path, database: &str, opts: &ImportOptions) -> Result<ImportReport, Error> {
    let branch = match &opts.branch {
        Some(b) => b.clone(),
        None => git::default_branch(repo)?,
    };
    import_at(repo, &format!("refs/heads/{branch}"), database, opts)
}

/// [`import`] of the commit `rev` names (a full ref or a commit id), not
/// of a branch: sync creates new tables from exactly the commit it merged.
/// `opts.branch` is not read.
pub(crate) fn import_at(repo: &Path, rev: &str, database: &str, opts: &ImportOptions) -> Result<ImportReport, Error> {
    let rev = rev.to_string();
    let manifest = load_manifest(repo, &rev)?;
    let mut names = manifest.tables.clone();
    if let Some(only) = &opts.tables {
        for t in only {
            if !names.contains(t) {
                return Err(Error::UnknownTable(t.clone()));
            }
        }
        names.retain(|n| only.contains(n));
    }
    let target_engine = if is_postgres(database) {
        "postgres"
    } else if is_mysql(database) {
        "mysql"
    } else if crate::doltlite::is_doltlite(database)
        || (manifest.source.engine == "doltlite"
            && !std::path::Path::new(database.strip_prefix("sqlite://").unwrap_or(database)).exists())
    {
        "doltlite"
    } else if is_mysql(database) {
        "mysql"
    } else {
        "sqlite"
    };
    // SQLite and doltlite share the SQLite dialect and CSV profile: an
    // export of one imports into the other as into itself. Other
    // directions go through the type table of `mapping`.
    let family = |engine: &str| if engine == "doltlite" { "sqlite".to_string() } else { engine.to_string() };
    // Hostile metadata is refused before any engine touches the target:
    // every table's metadata is checked, and for a same-engine import its
    // DDL generated, first.
    if family(&manifest.source.engine) == family(target_engine) {
        table_metas(repo, &rev, &names)?;
    } else {
        for name in &names {
            read_table_meta_in(repo, &rev, &manifest, name)?
                .ok_or_else(|| Error::Layout(format!("no metadata for table {name}")))?;
        }
    }
    if family(&manifest.source.engine) != family(target_engine) {
        let target = match target_engine {
            "postgres" => crate::mapping::Target::Postgres,
            "mysql" => crate::mapping::Target::Mysql,
            "doltlite" => crate::mapping::Target::Doltlite,
            _ => crate::mapping::Target::Sqlite,
        };
        return crate::mapping::import_cross(
            repo,
            &rev,
            &names,
            &manifest.source.engine,
            database,
            target,
            opts.replace,
        );
    }
    if target_engine == "postgres" {
        return crate::postgres::import(repo, &rev, &names, database, opts.replace);
    }
    if target_engine == "mysql" {
        return crate::mysql::import(repo, &rev, &names, database, opts.replace);
    }
    if target_engine == "doltlite" {
        return crate::doltlite::import(repo, &rev, &names, database, opts.replace);
    }
    import_sqlite(repo, &rev, &names, database, opts)
}

/// Chunks an interrupted import committed: `(table, position, blob)`;
/// position -1 marks a table the import created.
pub(crate) const IMPORT_PROGRESS: &str = "_tessera_import";

/// The first of `names` that exists in the target (`exists`) and is not
/// one an interrupted import created (`ours`): loading it needs `--replace`.
pub(crate) fn first_taken(
    names: &[String],
    ours: &std::collections::HashSet<String>,
    exists: &mut dyn FnMut(&str) -> Result<bool, Error>,
) -> Result<Option<String>, Error> {
    for name in names {
        if !ours.contains(name) && exists(name)? {
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}

/// Tables tessera keeps in a database for itself, never exported.
pub(crate) fn internal_table(name: &str) -> bool {
    name == crate::sync::STATE_TABLE || name == IMPORT_PROGRESS
}

/// The git blob of each chunk file of `meta` at `rev`, in chunk order: what
/// an import records per chunk, so a re-run knows the file is the same.
pub(crate) fn chunk_blobs(repo: &Path, rev: &str, meta: &TableMeta) -> Result<Vec<String>, Error> {
    let blobs: std::collections::HashMap<String, String> =
        git::ls_tree(repo, rev, &format!("data/{}/", meta.name))?.into_iter().collect();
    Ok(meta.chunks.iter().map(|c| blobs.get(&c.file).cloned().unwrap_or_default()).collect())
}

/// How many leading chunks an earlier run of this import loaded from these
/// very files: its `(position, blob)` records must match `blobs` one by
/// one. A record beyond that prefix means the files changed since, and the
/// table starts over (0).
pub(crate) fn resume_point(blobs: &[String], recorded: &[(i64, String)]) -> usize {
    let done = blobs.iter().zip(recorded).enumerate().take_while(|(i, (b, (p, r)))| *p == *i as i64 && r == *b).count();
    if done < recorded.len() {
        0
    } else {
        done
    }
}

/// Imports into SQLite in one transaction: used when the import replaces
/// tables that exist, so a failure leaves the old ones as they were.
fn import_sqlite_at_once(
    repo: &Path,
    rev: &str,
    names: &[String],
    database: &str,
    opts: &ImportOptions,
) -> Result<ImportReport, Error> {
    let mut conn = sqlite::create(database)?;
    let existing = sqlite::tables(&conn)?;
    for n in names {
        if existing.contains(n) && !opts.replace {
            return Err(Error::TargetNotEmpty(n.clone()));
        }
    }
    // Checked, with their DDL generated, before anything changes.
    let metas = table_metas(repo, rev, names)?;
    let tx = conn.transaction().map_err(|e| Error::Database(e.to_string()))?;
    tx.execute_batch("PRAGMA defer_foreign_keys = ON").map_err(|e| Error::Database(e.to_string()))?;
    let mut report = ImportReport::default();
    // All tables first, so foreign keys (checked at commit) find their targets.
    for meta in &metas {
        let name = &meta.name;
        if existing.contains(name) {
            tx.execute_batch(&format!("DROP TABLE {}", sqlite::quote(name)))
                .map_err(|e| Error::Database(e.to_string()))?;
        }
        for stmt in &ddl_of(meta)?.create {
            tx.execute(stmt, []).map_err(|e| Error::Database(format!("creating {name}: {e}")))?;
        }
    }
    for meta in &metas {
        let name = &meta.name;
        let cols: Vec<String> = meta.columns.iter().map(|c| sqlite::quote(&c.name)).collect();
        let marks: Vec<&str> = vec!["?"; cols.len()];
        let sql = format!("INSERT INTO {} ({}) VALUES ({})", sqlite::quote(name), cols.join(", "), marks.join(", "));
        let mut stmt = tx.prepare(&sql).map_err(|e| Error::Database(e.to_string()))?;
        let bar = progress(name);
        let mut bytes = 0u64;
        let rows =
            insert_chunks(&mut stmt, repo, rev, meta, &meta.chunks, &mut report.edited_chunks, &bar, &mut bytes)?;
        bar.finish_and_clear();
        drop(stmt);
        finish_table(&tx, meta)?;
        report.tables.push((name.clone(), rows));
    }
    tx.execute_batch(&forget_interrupted_imports(sqlite::quote)).map_err(|e| Error::Database(e.to_string()))?;
    tx.commit().map_err(|e| Error::Database(format!("committing the import: {e}")))?;
    Ok(report)
}

/// What an import that replaces tables in one transaction runs last: the
/// progress of an interrupted import is dropped, so no table counts as one
/// an import created (and may drop) any more. Resuming that import then
/// stops at its tables with "already exists" instead of replacing them.
pub(crate) fn forget_interrupted_imports(quote: fn(&str) -> String) -> String {
    format!("DROP TABLE IF EXISTS {}", quote(IMPORT_PROGRESS))
}

/// Imports into SQLite, resumably, when no table is replaced: one
/// transaction per chunk, each recording `(table, position, blob id)` in
/// `_tessera_import`. A re-run after an interruption keeps the chunks whose
/// position and blob still match and loads the rest; indexes, sequence
/// positions and the foreign-key check come in one final transaction, which
/// also drops the progress table. Damage (a chunk that does not parse or
/// fit, or a broken foreign key) drops what the import created: nothing is
/// left half-imported.
fn import_sqlite(
    repo: &Path,
    rev: &str,
    names: &[String],
    database: &str,
    opts: &ImportOptions,
) -> Result<ImportReport, Error> {
    let db = |e: rusqlite::Error| Error::Database(e.to_string());
    let mut conn = sqlite::create(database)?;
    let existing = sqlite::tables(&conn)?;
    let progress_table = sqlite::quote(IMPORT_PROGRESS);
    let mut ours: std::collections::HashSet<String> = std::collections::HashSet::new();
    if existing.iter().any(|t| t == IMPORT_PROGRESS) {
        let mut stmt = conn.prepare(&format!("SELECT DISTINCT tbl FROM {progress_table}")).map_err(db)?;
        ours = stmt.query_map([], |r| r.get(0)).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
    }
    if let Some(taken) = first_taken(names, &ours, &mut |n| Ok(existing.iter().any(|e| e == n)))? {
        if !opts.replace {
            return Err(Error::TargetNotEmpty(taken));
        }
        drop(conn);
        return import_sqlite_at_once(repo, rev, names, database, opts);
    }
    let metas = table_metas(repo, rev, names)?;
    // Foreign keys are checked once everything is in place.
    conn.execute_batch("PRAGMA foreign_keys = OFF").map_err(db)?;
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {progress_table} (tbl TEXT NOT NULL, position INTEGER NOT NULL, blob TEXT NOT NULL, \
         PRIMARY KEY (tbl, position))"
    ))
    .map_err(db)?;
    let mut report = ImportReport::default();
    let loaded = (|| -> Result<(), Error> {
        for meta in &metas {
            let resumable = ours.contains(&meta.name) && existing.contains(&meta.name);
            let rows = load_table_resumably(&mut conn, repo, rev, meta, resumable, &mut report)?;
            report.tables.push((meta.name.clone(), rows));
        }
        Ok(())
    })();
    if let Err(e) = loaded {
        if matches!(e, Error::Damaged { .. }) {
            drop_created(&conn, &metas);
        }
        return Err(e);
    }
    let tx = conn.transaction().map_err(db)?;
    for meta in &metas {
        finish_table(&tx, meta)?;
    }
    let violations: Vec<(String, i64)> = {
        let mut stmt = tx.prepare("PRAGMA foreign_key_check").map_err(db)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1).unwrap_or(0)))).map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)?
    };
    if let Some((table, rowid)) = violations.first() {
        drop(tx);
        drop_created(&conn, &metas);
        return Err(Error::Damaged {
            file: format!("data/{table}/"),
            line: 0,
            reason: format!("{} row(s) break a foreign key, e.g. rowid {rowid} of {table}", violations.len()),
        });
    }
    tx.execute_batch(&format!("DROP TABLE {progress_table}")).map_err(db)?;
    tx.commit().map_err(|e| Error::Database(format!("committing the import: {e}")))?;
    conn.execute_batch("PRAGMA foreign_keys = ON").map_err(db)?;
    Ok(report)
}

/// What follows a table's rows: its indexes and its AUTOINCREMENT position.
fn finish_table(conn: &rusqlite::Connection, meta: &TableMeta) -> Result<(), Error> {
    let name = &meta.name;
    for stmt in &ddl_of(meta)?.after {
        conn.execute(stmt, []).map_err(|e| Error::Database(format!("index on {name}: {e}")))?;
    }
    if let Some(seq) = meta.autoincrement_seq {
        let db = |e: rusqlite::Error| Error::Database(e.to_string());
        conn.execute("DELETE FROM sqlite_sequence WHERE name = ?1", [name]).map_err(db)?;
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)", rusqlite::params![name, seq])
            .map_err(db)?;
    }
    Ok(())
}

/// Inserts the rows of `chunks` with `stmt`, naming file and line when
/// SQLite refuses one; returns how many.
#[allow(clippy::too_many_arguments)]
fn insert_chunks(
    stmt: &mut rusqlite::Statement<'_>,
    repo: &Path,
    rev: &str,
    meta: &TableMeta,
    chunks: &[ChunkMeta],
    edited: &mut Vec<String>,
    bar: &indicatif::ProgressBar,
    bytes: &mut u64,
) -> Result<u64, Error> {
    read_chunks(repo, rev, meta, chunks, true, edited, &mut |file, line, values, record| {
        *bytes += record.len() as u64;
        if line % 4096 == 0 {
            bar.set_position(*bytes);
            bar.set_message(format!("line {line} of {file}"));
        }
        let params: Vec<rusqlite::types::Value> = values.iter().map(sqlite::to_sql).collect();
        stmt.execute(rusqlite::params_from_iter(params)).map_err(|e| Error::Damaged {
            file: file.to_string(),
            line,
            reason: e.to_string(),
        })?;
        Ok(())
    })
}

/// Removes what a failed import created.
fn drop_created(conn: &rusqlite::Connection, metas: &[TableMeta]) {
    for meta in metas {
        let _ = conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", sqlite::quote(&meta.name)));
    }
    let _ = conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", sqlite::quote(IMPORT_PROGRESS)));
}

/// Loads one table's chunks, skipping the chunks a previous run committed
/// from the same files; returns the table's row count.
fn load_table_resumably(
    conn: &mut rusqlite::Connection,
    repo: &Path,
    rev: &str,
    meta: &TableMeta,
    resumable: bool,
    report: &mut ImportReport,
) -> Result<u64, Error> {
    let db = |e: rusqlite::Error| Error::Database(e.to_string());
    let name = &meta.name;
    let blobs = chunk_blobs(repo, rev, meta)?;
    let mut done = 0;
    if resumable {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT position, blob FROM {} WHERE tbl = ?1 AND position >= 0 ORDER BY position",
                sqlite::quote(IMPORT_PROGRESS)
            ))
            .map_err(db)?;
        let recorded: Vec<(i64, String)> = stmt
            .query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        done = resume_point(&blobs, &recorded);
    }
    if done == 0 {
        // A table of a previous, different run is ours to start over.
        let tx = conn.transaction().map_err(db)?;
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", sqlite::quote(name))).map_err(db)?;
        tx.execute(&format!("DELETE FROM {} WHERE tbl = ?1", sqlite::quote(IMPORT_PROGRESS)), [name]).map_err(db)?;
        for stmt in &ddl_of(meta)?.create {
            tx.execute(stmt, []).map_err(|e| Error::Database(format!("creating {name}: {e}")))?;
        }
        tx.execute(
            &format!("INSERT INTO {} (tbl, position, blob) VALUES (?1, -1, '')", sqlite::quote(IMPORT_PROGRESS)),
            [name],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
    } else {
        report.resumed.push((name.clone(), done));
    }
    let cols: Vec<String> = meta.columns.iter().map(|c| sqlite::quote(&c.name)).collect();
    let marks: Vec<&str> = vec!["?"; cols.len()];
    let sql = format!("INSERT INTO {} ({}) VALUES ({})", sqlite::quote(name), cols.join(", "), marks.join(", "));
    let bar = progress(name);
    let mut bytes = 0u64;
    let mut rows: u64 = meta.chunks[..done].iter().map(|c| c.rows).sum();
    for (i, (chunk, blob)) in meta.chunks.iter().zip(&blobs).enumerate().skip(done) {
        let tx = conn.transaction().map_err(db)?;
        {
            let mut stmt = tx.prepare_cached(&sql).map_err(db)?;
            let one = std::slice::from_ref(chunk);
            rows += insert_chunks(&mut stmt, repo, rev, meta, one, &mut report.edited_chunks, &bar, &mut bytes)?;
        }
        tx.execute(
            &format!("INSERT INTO {} (tbl, position, blob) VALUES (?1, ?2, ?3)", sqlite::quote(IMPORT_PROGRESS)),
            rusqlite::params![name, i as i64, blob],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// One table's comparison.
#[derive(Debug)]
pub struct TableDiff {
    pub table: String,
    pub database_rows: Option<u64>,
    pub repo_rows: u64,
    pub same_content: bool,
    /// Where the two sides differ first, when they differ and both have the table.
    pub first_difference: Option<Difference>,
}

/// One place where a table's rows in the database and in the repository
/// disagree, as [`verify`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    /// The two sides have different columns (names, in order).
    Columns { database: Vec<String>, repository: Vec<String> },
    /// The row with this key has a different value in `column`.
    Cell { key: Vec<(String, Cell)>, column: String, database: Cell, repository: Cell },
    /// The row with this key (the whole row, for a table without a
    /// primary key) is on one side only, or more often on one side.
    Row { key: Vec<(String, Cell)>, database_copies: usize, repository_copies: usize },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cell = |c: &Cell| match c {
            None => "NULL".to_string(),
            Some(t) => format!("{t:?}"),
        };
        // Integer keys bare (`id=2`), others quoted.
        let key_cell = |c: &Cell| match c {
            Some(t) if t.parse::<i128>().is_ok() => t.clone(),
            other => cell(other),
        };
        let key =
            |k: &[(String, Cell)]| k.iter().map(|(n, c)| format!("{n}={}", key_cell(c))).collect::<Vec<_>>().join(", ");
        match self {
            Difference::Columns { database, repository } => write!(
                f,
                "columns differ: database ({}) vs repository ({})",
                database.join(", "),
                repository.join(", ")
            ),
            Difference::Cell { key: k, column, database, repository } => write!(
                f,
                "differs at {}, column {column}: database {} vs repository {}",
                key(k),
                cell(database),
                cell(repository)
            ),
            Difference::Row { key: k, database_copies: 0, .. } => {
                write!(f, "differs at {}: only in the repository", key(k))
            }
            Difference::Row { key: k, repository_copies: 0, .. } => {
                write!(f, "differs at {}: only in the database", key(k))
            }
            Difference::Row { key: k, database_copies, repository_copies } => write!(
                f,
                "differs at {}: {database_copies} copies in the database, {repository_copies} in the repository",
                key(k)
            ),
        }
    }
}

/// Buckets rows are spread over, by key hash, to find a difference
/// without holding a whole table: only the rows of differing buckets are
/// held, up to [`DIFF_ROWS`] of them (at least one bucket's).
const DIFF_BUCKETS: u64 = 4096;
const DIFF_ROWS: u64 = 100_000;

/// Orders key cells as numbers when both are integers, else as text, NULL first.
fn key_order(a: &[Cell], b: &[Cell]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => match (x.parse::<i128>(), y.parse::<i128>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => x.cmp(y),
            },
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// The first (lowest key) difference between a table in the database and
/// in the repository, found in at most three reads of each side: bucket
/// hashes, then the rows of the differing buckets.
fn first_difference(
    source: &mut dyn Source,
    shape: &Shape,
    repo: &Path,
    rev: &str,
    meta: &TableMeta,
    typed: bool,
) -> Result<Option<Difference>, Error> {
    let names = |cols: &[layout::Column]| cols.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    let (db_columns, repo_columns) = (names(&shape.columns), names(&meta.columns));
    if db_columns != repo_columns {
        return Ok(Some(Difference::Columns { database: db_columns, repository: repo_columns }));
    }
    let key: Vec<usize> = if meta.primary_key.is_empty() {
        (0..meta.columns.len()).collect()
    } else {
        meta.primary_key.iter().filter_map(|k| meta.columns.iter().position(|c| &c.name == k)).collect()
    };
    let parse = |record: &[u8]| -> Vec<Cell> {
        crate::csv::Reader::new(record).next_record().ok().flatten().unwrap_or_default()
    };
    let key_of = |cells: &[Cell]| -> Vec<Cell> { key.iter().map(|&i| cells.get(i).cloned().flatten()).collect() };
    let bucket_of = |k: &[Cell]| -> usize {
        let mut encoded = Vec::new();
        layout::encode_key(&mut encoded, k.iter());
        (xxhash_rust::xxh3::xxh3_64(&encoded) % DIFF_BUCKETS) as usize
    };
    // Pass 1: a content hash and a row count per bucket on each side.
    let n = DIFF_BUCKETS as usize;
    let (mut db_hash, mut repo_hash) = (vec![ContentHash::default(); n], vec![ContentHash::default(); n]);
    let (mut db_count, mut repo_count) = (vec![0u64; n], vec![0u64; n]);
    source.scan_records(shape, &[], &mut |_, record| {
        let b = bucket_of(&key_of(&parse(record)));
        db_hash[b].add(RowHash::NEWEST, record);
        db_count[b] += 1;
        Ok(())
    })?;
    read_rows(repo, rev, meta, typed, &mut Vec::new(), &mut |_, _, _, record| {
        let b = bucket_of(&key_of(&parse(record)));
        repo_hash[b].add(RowHash::NEWEST, record);
        repo_count[b] += 1;
        Ok(())
    })?;
    let mut wanted = vec![false; n];
    let mut held = 0u64;
    for b in 0..n {
        if db_hash[b] != repo_hash[b] || db_count[b] != repo_count[b] {
            let rows = db_count[b] + repo_count[b];
            if held > 0 && held + rows > DIFF_ROWS {
                break;
            }
            wanted[b] = true;
            held += rows;
        }
    }
    if held == 0 {
        return Ok(None);
    }
    // Pass 2: the rows of those buckets, by key, with their copies.
    type Rows = std::collections::HashMap<Vec<Cell>, Vec<Vec<Cell>>>;
    let (mut db_rows, mut repo_rows): (Rows, Rows) = Default::default();
    source.scan_records(shape, &[], &mut |_, record| {
        let cells = parse(record);
        let k = key_of(&cells);
        if wanted[bucket_of(&k)] {
            db_rows.entry(k).or_default().push(cells);
        }
        Ok(())
    })?;
    read_rows(repo, rev, meta, typed, &mut Vec::new(), &mut |_, _, _, record| {
        let cells = parse(record);
        let k = key_of(&cells);
        if wanted[bucket_of(&k)] {
            repo_rows.entry(k).or_default().push(cells);
        }
        Ok(())
    })?;
    let mut keys: Vec<&Vec<Cell>> = db_rows.keys().chain(repo_rows.keys()).collect();
    keys.sort_by(|a, b| key_order(a, b));
    keys.dedup();
    let named = |k: &[Cell]| -> Vec<(String, Cell)> {
        key.iter().zip(k).map(|(&i, c)| (meta.columns[i].name.clone(), c.clone())).collect()
    };
    for k in keys {
        let (ours, theirs) = (db_rows.get(k), repo_rows.get(k));
        let (n_ours, n_theirs) = (ours.map_or(0, Vec::len), theirs.map_or(0, Vec::len));
        if n_ours != n_theirs {
            return Ok(Some(Difference::Row { key: named(k), database_copies: n_ours, repository_copies: n_theirs }));
        }
        let (Some(ours), Some(theirs)) = (ours, theirs) else { continue };
        for (o, t) in ours.iter().zip(theirs) {
            if let Some(i) = (0..o.len().max(t.len())).find(|&i| o.get(i) != t.get(i)) {
                return Ok(Some(Difference::Cell {
                    key: named(k),
                    column: meta.columns.get(i).map(|c| c.name.clone()).unwrap_or_else(|| format!("#{}", i + 1)),
                    database: o.get(i).cloned().flatten(),
                    repository: t.get(i).cloned().flatten(),
                }));
            }
        }
    }
    Ok(None)
}

pub fn verify(database: &str, repo: &Path, branch: Option<&str>) -> Result<Vec<TableDiff>, Error> {
    let branch = match branch {
        Some(b) => b.to_string(),
        None => git::default_branch(repo)?,
    };
    let rev = format!("refs/heads/{branch}");
    let manifest = load_manifest(repo, &rev)?;
    // The database side is read exactly as an export reads it, so both
    // sides hash the same canonical records.
    let mut source = open_source(database)?;
    let present = source.tables()?;
    let typed = matches!(manifest.source.engine.as_str(), "sqlite" | "doltlite");
    let mut out = Vec::new();
    let mut edited = Vec::new();
    for name in &manifest.tables {
        let meta = read_table_meta_in(repo, &rev, &manifest, name)?
            .ok_or_else(|| Error::Layout(format!("no metadata for table {name}")))?;
        let mut repo_hash = ContentHash::default();
        let repo_rows = read_rows(repo, &rev, &meta, typed, &mut edited, &mut |_, _, _, record| {
            repo_hash.add(RowHash::NEWEST, record);
            Ok(())
        })?;
        if !present.contains(name) {
            out.push(TableDiff {
                table: name.clone(),
                database_rows: None,
                repo_rows,
                same_content: false,
                first_difference: None,
            });
            continue;
        }
        let shape = source.describe(name)?;
        let mut db_hash = ContentHash::default();
        let mut db_rows = 0;
        source.scan_records(&shape, &[], &mut |_, record| {
            db_hash.add(RowHash::NEWEST, record);
            db_rows += 1;
            Ok(())
        })?;
        let same_content = db_hash == repo_hash && db_rows == repo_rows;
        let first_difference =
            if same_content { None } else { first_difference(source.as_mut(), &shape, repo, &rev, &meta, typed)? };
        out.push(TableDiff {
            table: name.clone(),
            database_rows: Some(db_rows),
            repo_rows,
            same_content,
            first_difference,
        });
    }
    Ok(out)
}

/// Table names grouped for reports.
pub fn summarize(diffs: &[TableDiff]) -> BTreeMap<bool, Vec<String>> {
    let mut m: BTreeMap<bool, Vec<String>> = BTreeMap::new();
    for d in diffs {
        m.entry(d.same_content).or_default().push(d.table.clone());
    }
    m
}
