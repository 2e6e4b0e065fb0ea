//! Chunks: cutting rows into content-defined chunk files (the
//! [`Chunker`] and its store worker), compression, and reading chunk files
//! back, checked and within their recorded sizes.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::csv::{self, Cell};
use crate::git;
use crate::layout::{self, ChunkMeta, RowHash, TableMeta};
use crate::value::{self, Value};

/// What cutting, storing or reading chunks failed with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A chunk file that does not read as the table's rows (`line` 0: the
    /// file as a whole).
    #[error("{file}:{line}: {reason}")]
    Damaged { file: String, line: usize, reason: String },
    #[error("a row of table {table} with key {key} is {bytes} bytes, more than fits in one chunk")]
    RowTooLarge { table: String, key: String, bytes: u64 },
    #[error("--chunk-by {spec}: unit {unit:?} is not year, month or day")]
    ChunkBy { spec: String, unit: String },
    #[error("compressing a chunk")]
    Compress(#[source] std::io::Error),
    /// The store worker stopped; its own error is the one to report.
    #[error("the chunk writer stopped")]
    WriterStopped,
    #[error(transparent)]
    Git(#[from] git::Error),
}

impl Error {
    pub fn damaged(file: &str, line: usize, reason: impl Into<String>) -> Error {
        Error::Damaged { file: file.to_string(), line, reason: reason.into() }
    }
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
            Some(other) => return Err(Error::ChunkBy { spec: spec.into(), unit: other.into() }),
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

/// A chunk cut by the [`Chunker`], on its way to the worker that hashes,
/// compresses and stores it.
pub struct Job {
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
pub struct Chunker<'s> {
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
    pub rows: u64,
    pub bytes: u64,
    record: Vec<u8>,
    /// The key cells of the current row as [`RowHash::key`] hashes them.
    key: Vec<u8>,
    scheme: RowHash,
    compression: layout::Compression,
    /// `--chunk-by`: the column index, how to partition, and the current
    /// partition with the number of its files so far.
    pub partition: Option<(usize, ChunkBy)>,
    current: Option<(String, bool, usize)>,
    sink: &'s std::sync::mpsc::SyncSender<Job>,
}

impl<'s> Chunker<'s> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
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

    pub fn push(&mut self, cells: &[Cell]) -> Result<(), Error> {
        let mut record = std::mem::take(&mut self.record);
        record.clear();
        csv::write_record(&mut record, cells);
        let pushed = self.push_record(cells, &record);
        self.record = record;
        pushed
    }

    /// Which of `n` columns [`push_record`](Self::push_record) reads.
    pub fn wanted(&self, n: usize) -> Vec<bool> {
        let mut wanted = vec![false; n];
        for &i in self.key_idx.iter().chain(self.partition.as_ref().map(|(col, _)| col)) {
            wanted[i] = true;
        }
        wanted
    }

    /// [`push`](Self::push) of a row already written as `record`; `cells`
    /// needs only the key columns and the `--chunk-by` column.
    pub fn push_record(&mut self, cells: &[Cell], record: &[u8]) -> Result<(), Error> {
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
        self.sink.send(job).map_err(|_| Error::WriterStopped)?;
        self.chunk = chunk_buffer(self.limit);
        self.chunk.extend_from_slice(&self.head);
        Ok(())
    }

    pub fn finish(mut self) -> Result<(), Error> {
        self.flush()
    }

    /// Whether rows were pushed since the last cut.
    pub fn pending(&self) -> bool {
        !self.ends.is_empty()
    }
}

/// A chunk as stored: its metadata and content hash.
pub struct Stored {
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
pub struct StoreOutcome {
    pub stored: Vec<Stored>,
    pub unsealed: Vec<(String, String)>,
    pub error: Option<Error>,
}

/// The worker behind the [`Chunker`]s: hashes each chunk's rows, compresses
/// the file (`--compress`), reuses the blob of an identical chunk already in
/// the repository, and otherwise deflates it into the export's pack. Runs
/// on its own thread so reading the database and compressing overlap.
pub fn store_chunks(
    jobs: std::sync::mpsc::Receiver<Job>,
    pack: &mut tessera_pack::local::PackBuilder,
    compression: layout::Compression,
    scheme: RowHash,
    known: &std::collections::HashMap<String, String>,
    journal: &git::Journal,
) -> StoreOutcome {
    let io = |source| Error::Git(git::Error::Io { what: "writing the pack".into(), source });
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

/// A chunk's bytes compressed as `compression` says.
pub fn compress(compression: layout::Compression, data: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, Error> {
    use std::io::Write;
    let io = Error::Compress;
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
pub fn decompress(file: &str, data: Vec<u8>, limit: u64) -> Result<Vec<u8>, Error> {
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
pub fn decompress_limit(meta: &TableMeta, chunk: &ChunkMeta, intact: bool) -> u64 {
    if intact {
        chunk.uncompressed_bytes.min(meta.chunk_limit)
    } else {
        meta.chunk_limit
    }
}

/// A chunk's bytes and whether they are as exported. A changed chunk is a
/// human edit when git has a different blob for it than the one recorded
/// (it was changed through a commit); otherwise it is damage.
pub fn load_chunk(
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

/// Every row of the table's chunks ([`read_chunks`]).
#[allow(clippy::type_complexity)]
pub fn read_rows<E: From<Error>>(
    repo: &Path,
    rev: &str,
    meta: &TableMeta,
    typed: bool,
    edited: &mut Vec<String>,
    each: &mut dyn FnMut(&str, usize, Vec<Value>, &[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    read_chunks(repo, rev, meta, &meta.chunks, typed, edited, each)
}

/// The rows of one chunk as cells with their line numbers, from its stored
/// bytes as [`load_chunk`] returned them: decompressed within the limit,
/// the header and every row's field count checked, and for an intact
/// chunk the row count against the metadata. Returns the rows. The
/// callback's failures are the caller's own error type.
#[allow(clippy::type_complexity)]
pub fn chunk_cells<E: From<Error>>(
    meta: &TableMeta,
    chunk: &ChunkMeta,
    data: Vec<u8>,
    intact: bool,
    each: &mut dyn FnMut(usize, &[Cell]) -> Result<(), E>,
) -> Result<u64, E> {
    let data = decompress(&chunk.file, data, decompress_limit(meta, chunk, intact)).map_err(E::from)?;
    let mut reader = csv::Reader::new(&data);
    let damaged = |line: usize, reason: String| Error::Damaged { file: chunk.file.clone(), line, reason };
    let header = reader.next_record().map_err(|e| damaged(1, e.to_string()))?.unwrap_or_default();
    let names: Vec<Cell> = meta.columns.iter().map(|c| Some(c.name.clone())).collect();
    if header != names {
        return Err(damaged(1, "header does not name the table's columns".into()).into());
    }
    let mut rows = 0u64;
    let mut cells = Vec::new();
    loop {
        let line = reader.line();
        if !reader.next_into(&mut cells).map_err(|e| damaged(line, e.to_string()))? {
            break;
        }
        if cells.len() != meta.columns.len() {
            return Err(
                damaged(line, format!("{} fields, the table has {} columns", cells.len(), meta.columns.len())).into()
            );
        }
        each(line, &cells)?;
        rows += 1;
    }
    if intact && rows != chunk.rows {
        return Err(damaged(0, format!("{rows} rows, the metadata of the same commit says {}", chunk.rows)).into());
    }
    Ok(rows)
}

/// [`read_rows`] of some of the table's chunks.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn read_chunks<E: From<Error>>(
    repo: &Path,
    rev: &str,
    meta: &TableMeta,
    chunks: &[ChunkMeta],
    typed: bool,
    edited: &mut Vec<String>,
    each: &mut dyn FnMut(&str, usize, Vec<Value>, &[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let mut total = 0;
    for chunk in chunks {
        let (data, intact) = load_chunk(repo, rev, chunk, meta.chunk_limit, edited).map_err(E::from)?;
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
                    return Err(damaged(format!("column {} is NOT NULL", col.name)).into());
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

/// The most a stored (compressed) chunk of at most `limit` bytes of rows
/// may take: incompressible data grows a little in gzip and zstd framing.
pub fn max_stored_bytes(limit: u64) -> u64 {
    limit + limit / 64 + 4096
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Affinity;

    fn columns() -> Vec<layout::Column> {
        ["id", "v"]
            .iter()
            .map(|n| layout::Column {
                name: n.to_string(),
                declared_type: if *n == "id" { "INTEGER".into() } else { "TEXT".into() },
                affinity: if *n == "id" { Affinity::Integer } else { Affinity::Text },
                not_null: false,
                default: None,
                binary: false,
            })
            .collect()
    }

    /// The chunks a table of `rows` is cut into: (first key, last key, rows).
    fn cut(rows: &[(i64, &str)], divisor: u64, limit: u64) -> Result<Vec<(Cell, Cell, usize)>, Error> {
        let (sink, jobs) = std::sync::mpsc::sync_channel::<Job>(rows.len() + 1);
        let cols = columns();
        let mut chunker =
            Chunker::new("t", 0, &cols, vec![0], divisor, limit, RowHash::NEWEST, layout::Compression::None, &sink);
        for (id, v) in rows {
            chunker.push(&[Some(id.to_string()), Some(v.to_string())])?;
        }
        chunker.finish()?;
        drop(sink);
        Ok(jobs.into_iter().map(|j| (j.first_key[0].clone(), j.last_key[0].clone(), j.ends.len())).collect())
    }

    fn table(n: i64) -> Vec<(i64, String)> {
        (1..=n).map(|i| (i, format!("value {i}"))).collect()
    }

    fn borrowed(rows: &[(i64, String)]) -> Vec<(i64, &str)> {
        rows.iter().map(|(i, v)| (*i, v.as_str())).collect()
    }

    #[test]
    fn boundaries_depend_on_keys_not_on_values() {
        let rows = table(2000);
        let before = cut(&borrowed(&rows), 50, 1 << 20).unwrap();
        assert!(before.len() > 10, "a divisor of 50 cuts 2000 rows into many chunks: {}", before.len());
        let mut changed = rows.clone();
        changed[1000].1 = "a much longer value than before, which changes the row's bytes".into();
        assert_eq!(cut(&borrowed(&changed), 50, 1 << 20).unwrap(), before);
    }

    #[test]
    fn an_inserted_row_changes_one_chunk() {
        let mut rows: Vec<(i64, String)> = table(2000).into_iter().map(|(i, v)| (i * 2, v)).collect();
        let before = cut(&borrowed(&rows), 50, 1 << 20).unwrap();
        rows.insert(1001, (2001, "inserted".into()));
        let after = cut(&borrowed(&rows), 50, 1 << 20).unwrap();
        // The row joins one chunk, or its key is a cut point and splits it
        // in two: every other chunk is as it was.
        let gone = before.iter().filter(|c| !after.contains(c)).count();
        let new = after.iter().filter(|c| !before.contains(c)).count();
        assert_eq!(gone, 1, "{before:?}\n{after:?}");
        assert!(new == 1 || new == 2, "{before:?}\n{after:?}");
    }

    #[test]
    fn the_size_limit_cuts_too_and_refuses_a_row_that_cannot_fit() {
        let rows = table(300);
        // Keys never cut (divisor 1 << 60): only the limit does.
        let chunks = cut(&borrowed(&rows), 1 << 60, 400).unwrap();
        assert!(chunks.len() > 5);
        assert_eq!(chunks.iter().map(|c| c.2).sum::<usize>(), 300);
        let long = "x".repeat(500);
        let err = cut(&[(1, long.as_str())], 1 << 60, 400).unwrap_err();
        assert!(matches!(err, Error::RowTooLarge { .. }), "{err}");
    }

    #[test]
    fn chunks_keep_every_row_in_key_order() {
        let rows = table(777);
        let chunks = cut(&borrowed(&rows), 20, 1 << 20).unwrap();
        assert_eq!(chunks.iter().map(|c| c.2).sum::<usize>(), 777);
        assert_eq!(chunks.first().unwrap().0.as_deref(), Some("1"));
        assert_eq!(chunks.last().unwrap().1.as_deref(), Some("777"));
        for pair in chunks.windows(2) {
            let last: i64 = pair[0].1.as_deref().unwrap().parse().unwrap();
            let first: i64 = pair[1].0.as_deref().unwrap().parse().unwrap();
            assert_eq!(first, last + 1);
        }
    }

    #[test]
    fn decompression_stops_at_the_limit() {
        let data = vec![b'a'; 10_000];
        for compression in [layout::Compression::Gzip, layout::Compression::Zstd] {
            let stored = compress(compression, &data).unwrap().into_owned();
            let file = format!("data/t/t_000001.csv{}", compression.suffix());
            assert_eq!(decompress(&file, stored.clone(), 10_000).unwrap(), data);
            let err = decompress(&file, stored, 9_999).unwrap_err();
            assert!(err.to_string().contains("inflates to more than"), "{err}");
        }
    }
}
