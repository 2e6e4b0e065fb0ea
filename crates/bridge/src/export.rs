//! Export: a database's tables into one commit of chunk files and
//! metadata, reusing the blobs of chunks that did not change.

use std::collections::BTreeMap;
use std::path::Path;

use crate::chunk::{store_chunks, ChunkBy, Chunker, ContentHash, Job};
use crate::engine::{self, key_columns, Source};
use crate::import::internal_table;
use crate::layout::{self, ChunkMeta, Chunking, Manifest, RowHash, Source as Origin, TableMeta};
use crate::meta::MAX_CHUNK_BYTES;
use crate::meta::{describe_schema, read_json, read_table_meta};
use crate::{chunk, git, meta};
use tessera_pack::ObjectId;

/// What an export failed with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Database(engine::Error),
    #[error(transparent)]
    Chunk(#[from] chunk::Error),
    /// The previous export's metadata, which this one builds on.
    #[error(transparent)]
    Meta(#[from] meta::Error),
    #[error(transparent)]
    Git(#[from] git::Error),
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    #[error("--chunk-by: table {table} has no column {column:?}")]
    NoChunkByColumn { table: String, column: String },
    #[error("a chunk size of {0} bytes: between 1 byte and {MAX_CHUNK_BYTES} (1 GiB) is supported")]
    ChunkSize(u64),
}

crate::from_engine_error!(Error);

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
    pub progress: crate::progress::Reporter,
}

/// A table an export wrote: its rows, in how many chunk files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedTable {
    pub table: String,
    pub rows: u64,
    pub chunks: usize,
}

/// What an export did.
#[derive(Debug, Default)]
pub struct ExportReport {
    pub tables: Vec<ExportedTable>,
    /// The commit written; `None` when nothing changed and none was needed.
    pub commit: Option<ObjectId>,
}

/// Exports the tables of `source` into `repo`; `database` names it in
/// the manifest and the commit message (its password is left out).
pub fn export(
    source: &mut dyn Source,
    database: &str,
    repo: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport, Error> {
    export_inner(source, database, repo, opts, false)
}

/// An export that makes no commit when nothing changed; returns the commit.
pub fn export_commit(
    source: &mut dyn Source,
    database: &str,
    repo: &Path,
    opts: &ExportOptions,
    skip_unchanged: bool,
) -> Result<Option<ObjectId>, Error> {
    export_inner(source, database, repo, opts, skip_unchanged).map(|r| r.commit)
}

fn export_inner(
    source: &mut dyn Source,
    database: &str,
    repo: &Path,
    opts: &ExportOptions,
    skip_unchanged: bool,
) -> Result<ExportReport, Error> {
    git::ensure_repo(repo)?;
    let branch = match &opts.branch {
        Some(b) => b.clone(),
        None => git::default_branch(repo)?,
    };
    git::adopt_branch(repo, &branch)?;
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
    let message = opts
        .message
        .clone()
        .unwrap_or_else(|| format!("Export {} table(s) from {}", names.len(), git::redact_url(database)));
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
        write_tables(source, &names, &mut commit, opts, &previous_metas, scheme, &mut known, &journal)?;
    let mut report = ExportReport::default();
    for m in &metas {
        report.tables.push(ExportedTable { table: m.name.clone(), rows: m.rows, chunks: m.chunks.len() });
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
    let origin =
        Origin { engine: source.engine().into(), database: git::redact_url(database), branch: None, commit: None };
    let manifest = manifest(origin, opts, scheme, &names, created_at);
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
pub fn write_tables(
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
        return Err(Error::ChunkSize(opts.max_chunk_bytes));
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
                        let col =
                            shape.columns.iter().position(|c| c.name == by.column).ok_or_else(|| {
                                Error::NoChunkByColumn { table: name.clone(), column: by.column.clone() }
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
                let meter = opts.progress.start(name);
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
                            meter.update(chunker.bytes, chunker.rows, "");
                        }
                        Ok(())
                    });
                    match scanned {
                        Err(engine::Error::NotInKeyOrder) => meter.restart(),
                        Err(e) => return Err(e.into()),
                        Ok(()) => {
                            chunker.finish()?;
                            break slot;
                        }
                    }
                };
                meter.finish();
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
        // The worker's error is the cause of a scan's `WriterStopped`.
        (_, Some(e)) => Some(e.into()),
        (Err(e), None) => Some(e),
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
pub fn manifest(source: Origin, opts: &ExportOptions, scheme: RowHash, names: &[String], created_at: u64) -> Manifest {
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
pub fn write_metadata(
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
    Ok(commit.file(".gitattributes", layout::GITATTRIBUTES.as_bytes())?)
}
