//! Import: the one driver that loads an export into any [`Target`].
//!
//! Engines load rows; this module owns everything around them, once:
//! - **Checks first.** [`prepare`] reads and checks every table's metadata
//!   and generates its DDL (from the table's description for an engine of
//!   the export's family, from the type table of [`crate::mapping`] for
//!   another) before any database is opened.
//! - **Resume.** Without `--replace`, each chunk is loaded in a transaction
//!   of its own that also records `(table, position, blob)` in
//!   `_tessera_import`. A re-run keeps the chunks whose position and blob
//!   still match ([`resumed_chunks`]) and loads the rest. Indexes, sequence
//!   positions and the foreign-key check come in one final transaction,
//!   which drops the progress table.
//! - **Side by side.** Where the engine offers [`Loader`]s (connections of
//!   their own), chunks load on several threads at once, each chunk with
//!   its record in its own transaction; resume takes any set of recorded
//!   chunks, not only a prefix.
//! - **Damage** (a chunk that does not parse or fit, a broken foreign key)
//!   drops what the import created: nothing is left half-imported. Any
//!   other interruption keeps the committed chunks for a re-run.
//! - **Replacing** tables the import did not create is one transaction, so
//!   a failure keeps the old ones (where DDL is transactional).
//!
//! Otherwise the next chunk is read from git on a second thread while one
//! loads.

use std::collections::HashSet;
use std::path::Path;

use crate::chunk::{self, load_chunk};
use crate::engine::{self, ChunkRows, Loader, Target};
use crate::layout::{ChunkMeta, TableMeta};
use crate::mapping::{self, Conversion};
use crate::meta::{load_manifest, read_table_meta_in, table_metas};
use crate::value::Value;
use crate::{git, meta, schema};

/// What an import failed with. Whatever it is, the target holds no table
/// half loaded: damage dropped what the import created, and any other
/// failure kept committed chunks for a re-run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Database(engine::Error),
    /// A chunk that does not read, a row or an index the database refused,
    /// a broken foreign key: damage.
    #[error(transparent)]
    Chunk(#[from] chunk::Error),
    /// Metadata refused before anything was changed.
    #[error(transparent)]
    Meta(#[from] meta::Error),
    #[error(transparent)]
    Git(#[from] git::Error),
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    #[error("table {0:?} already exists in the target database; pass --replace to overwrite it")]
    TargetNotEmpty(String),
    #[error("tessera cannot import into {0:?}")]
    UnknownTarget(String),
    #[error("creating table {table}")]
    Create {
        table: String,
        #[source]
        source: engine::Error,
    },
    #[error("a {0} thread panicked")]
    Panicked(&'static str),
}

crate::from_engine_error!(Error);

impl Error {
    /// Whether the import found damage (and dropped what it created).
    pub fn is_damage(&self) -> bool {
        matches!(self, Error::Chunk(chunk::Error::Damaged { .. }))
    }
}

/// Options of an import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub tables: Option<Vec<String>>,
    pub branch: Option<String>,
    pub replace: bool,
    pub progress: crate::progress::Reporter,
}

/// A table an import loaded, and its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedTable {
    pub table: String,
    pub rows: u64,
}

/// A table an interrupted import had begun, and the chunks kept from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumedTable {
    pub table: String,
    pub chunks: usize,
}

/// What an import did, including chunks accepted as human edits.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub tables: Vec<LoadedTable>,
    pub edited_chunks: Vec<String>,
    /// What a cross-engine import had to approximate, per column.
    pub approximations: Vec<String>,
    /// Tables whose first chunks an interrupted import had loaded.
    pub resumed: Vec<ResumedTable>,
    /// Chunks loaded by the engine's bulk path (MySQL: LOAD DATA LOCAL
    /// INFILE); the others were inserted row by row.
    pub bulk_loaded_chunks: usize,
}

pub use crate::engine::{internal_table, IMPORT_PROGRESS};

/// The first of `names` that exists in the target (`exists`) and is not
/// one an interrupted import created (`ours`): loading it needs `--replace`.
pub fn first_taken(
    names: &[String],
    ours: &HashSet<String>,
    exists: &mut dyn FnMut(&str) -> Result<bool, engine::Error>,
) -> Result<Option<String>, engine::Error> {
    for name in names {
        if !ours.contains(name) && exists(name)? {
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}

/// The git blob of each chunk file of `meta` at `rev`, in chunk order: what
/// an import records per chunk, so a re-run knows the file is the same.
pub fn chunk_blobs(repo: &Path, rev: &str, meta: &TableMeta) -> Result<Vec<String>, git::Error> {
    let blobs: std::collections::HashMap<String, String> =
        git::ls_tree(repo, rev, &format!("data/{}/", meta.name))?.into_iter().collect();
    Ok(meta.chunks.iter().map(|c| blobs.get(&c.file).cloned().unwrap_or_default()).collect())
}

/// Which chunks an earlier run of this import loaded from these very files:
/// its `(position, blob)` records, each matching `blobs` at its position.
/// One record that does not match (the files changed since) means the
/// table starts over: `None`. Records need not form a prefix: chunks load
/// side by side and commit in any order.
pub fn resumed_chunks(blobs: &[String], recorded: &[(i64, String)]) -> Option<Vec<bool>> {
    let mut done = vec![false; blobs.len()];
    for (position, blob) in recorded {
        let i = usize::try_from(*position).ok().filter(|&i| i < blobs.len())?;
        if &blobs[i] != blob || done[i] {
            return None;
        }
        done[i] = true;
    }
    Some(done)
}

/// SQLite and doltlite share the SQLite dialect and CSV profile: an export
/// of one imports into the other as into itself.
fn family(engine: &str) -> &str {
    if engine == "doltlite" {
        "sqlite"
    } else {
        engine
    }
}

/// One table to load: checked metadata, the DDL generated for the target,
/// and for an export of another engine family, how values convert.
pub struct TablePlan {
    pub meta: TableMeta,
    pub ddl: schema::Ddl,
    pub conversion: Option<Conversion>,
}

/// An import checked and planned, before any database is touched.
pub struct Prepared {
    pub rev: String,
    pub source_engine: String,
    pub tables: Vec<TablePlan>,
    /// What converting to another engine family approximates, per column.
    pub approximations: Vec<String>,
}

impl Prepared {
    fn names(&self) -> Vec<String> {
        self.tables.iter().map(|t| t.meta.name.clone()).collect()
    }
}

/// Reads and checks the metadata of the tables an import of `rev` loads
/// (`tables`, or all), and generates their DDL for `target_engine`
/// (`sqlite`, `doltlite`, `postgres` or `mysql`). Hostile metadata is
/// refused here, before any engine touches the target.
pub fn prepare(repo: &Path, rev: &str, tables: Option<&[String]>, target_engine: &str) -> Result<Prepared, Error> {
    let manifest = load_manifest(repo, rev)?;
    let mut names = manifest.tables.clone();
    if let Some(only) = tables {
        for t in only {
            if !names.contains(t) {
                return Err(Error::UnknownTable(t.clone()));
            }
        }
        names.retain(|n| only.contains(n));
    }
    let source_engine = manifest.source.engine.clone();
    let mut plan = Prepared { rev: rev.to_string(), source_engine, tables: Vec::new(), approximations: Vec::new() };
    if family(&manifest.source.engine) == family(target_engine) {
        for mut meta in table_metas(repo, rev, &names)? {
            let ddl = meta.ddl.take().ok_or_else(|| meta::Error::Layout(format!("no DDL for table {}", meta.name)))?;
            plan.tables.push(TablePlan { meta, ddl, conversion: None });
        }
        return Ok(plan);
    }
    let target = mapping::Target::of(target_engine).ok_or_else(|| Error::UnknownTarget(target_engine.into()))?;
    let dialect = match target {
        mapping::Target::Sqlite | mapping::Target::Doltlite => schema::Engine::Sqlite,
        mapping::Target::Postgres => schema::Engine::Postgres,
        mapping::Target::Mysql => schema::Engine::Mysql,
    };
    for name in &names {
        let meta = read_table_meta_in(repo, rev, &manifest, name)?
            .ok_or_else(|| meta::Error::Layout(format!("no metadata for table {name}")))?;
        let conversion = Conversion::plan(target, &meta, &manifest.source.engine);
        plan.approximations.extend(conversion.notes(&meta));
        let ddl = conversion.ddl(&meta, &|ident| dialect.quote(ident));
        plan.tables.push(TablePlan { meta, ddl, conversion: Some(conversion) });
    }
    Ok(plan)
}

/// Inserts `rows` with generated INSERTs of `per_batch` rows each; when a
/// batch fails, row by row, so the error names the row's file and line.
/// Where a failed statement aborts the transaction, batches run under a
/// savepoint. For targets without a bulk path of their own, and for
/// converted rows.
pub fn insert_values(target: &mut dyn Target, rows: ChunkRows<'_>, per_batch: usize) -> Result<u64, engine::Error> {
    let meta = rows.meta;
    let file = rows.chunk.file.clone();
    let types: Vec<Option<String>> = (0..meta.columns.len()).map(|i| rows.sql_type(i).map(str::to_string)).collect();
    let cols: Vec<String> = meta.columns.iter().map(|c| target.quote(&c.name)).collect();
    let insert = format!("INSERT INTO {} ({}) VALUES ", target.quote(&meta.name), cols.join(", "));
    let marks = |target: &dyn Target, rows: usize| -> String {
        let tuples: Vec<String> = (0..rows)
            .map(|r| {
                let one: Vec<String> = types
                    .iter()
                    .enumerate()
                    .map(|(i, t)| target.placeholder(1 + r * cols.len() + i, t.as_deref()))
                    .collect();
                format!("({})", one.join(", "))
            })
            .collect();
        format!("{insert}{}", tuples.join(", "))
    };
    let per_batch = per_batch.max(1);
    let one_row = marks(target, 1);
    let full_batch = marks(target, per_batch);
    let savepoint = target.failed_statement_aborts();
    let mut pending: Vec<(usize, Vec<Value>)> = Vec::with_capacity(per_batch);
    let flush = |target: &mut dyn Target, pending: &mut Vec<(usize, Vec<Value>)>| -> Result<(), engine::Error> {
        if pending.is_empty() {
            return Ok(());
        }
        if pending.len() == 1 {
            let (line, values) = pending.pop().expect("one row");
            return target.execute(&one_row, &values).map_err(|e| engine::Error::damaged(&file, line, refusal(e)));
        }
        if savepoint {
            target.execute("SAVEPOINT tessera_batch", &[])?;
        }
        let values: Vec<Value> = pending.iter().flat_map(|(_, v)| v.iter().cloned()).collect();
        let sql = if pending.len() == per_batch { full_batch.clone() } else { marks(target, pending.len()) };
        if target.execute(&sql, &values).is_ok() {
            if savepoint {
                target.execute("RELEASE SAVEPOINT tessera_batch", &[])?;
            }
            pending.clear();
            return Ok(());
        }
        if savepoint {
            target.execute("ROLLBACK TO SAVEPOINT tessera_batch", &[])?;
        }
        for (line, values) in pending.drain(..) {
            target.execute(&one_row, &values).map_err(|e| engine::Error::damaged(&file, line, refusal(e)))?;
        }
        Ok(())
    };
    let n = rows.values(&mut |line, values| {
        pending.push((line, values.to_vec()));
        if pending.len() == per_batch {
            flush(target, &mut pending)?;
        }
        Ok(())
    })?;
    flush(target, &mut pending)?;
    Ok(n)
}

/// The database's own words for a refused row.
fn refusal(e: engine::Error) -> String {
    match e {
        engine::Error::Database(m) => m,
        engine::Error::Driver { source, .. } => crate::report(source.as_ref()),
        other => crate::report(&other),
    }
}

/// Loads a prepared import into `target`. See the module's description
/// for resume, damage and replacing.
pub fn run(repo: &Path, plan: &Prepared, target: &mut dyn Target, opts: &ImportOptions) -> Result<ImportReport, Error> {
    let names = plan.names();
    let existing = target.tables()?;
    let mut ours: HashSet<String> = HashSet::new();
    if existing.iter().any(|t| t == IMPORT_PROGRESS) {
        let sql = format!("SELECT DISTINCT tbl FROM {}", target.quote(IMPORT_PROGRESS));
        ours = target.query(&sql, &[])?.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect();
    }
    let mut report = ImportReport { approximations: plan.approximations.clone(), ..ImportReport::default() };
    let message = if plan.tables.iter().any(|t| t.conversion.is_some()) {
        format!("Import from git by tessera ({} export)", plan.source_engine)
    } else {
        "Import from git by tessera".to_string()
    };
    if let Some(taken) = first_taken(&names, &ours, &mut |n| Ok(existing.iter().any(|e| e == n)))? {
        if !opts.replace {
            return Err(Error::TargetNotEmpty(taken));
        }
        let present: Vec<String> = names.iter().filter(|n| existing.contains(n)).cloned().collect();
        at_once(repo, plan, target, &present, opts, &mut report)?;
    } else {
        let resumable: HashSet<String> = ours.into_iter().filter(|n| existing.contains(n)).collect();
        resumably(repo, plan, target, &resumable, opts, &mut report)?;
    }
    target.finish_load(&message)?;
    Ok(report)
}

/// A chunk's stored bytes read ahead of its load, and whether it was edited.
struct Fetched {
    data: Vec<u8>,
    intact: bool,
    edited: Vec<String>,
}

fn fetch(repo: &Path, rev: &str, meta: &TableMeta, chunk: &ChunkMeta) -> Result<Fetched, Error> {
    let mut edited = Vec::new();
    let (data, intact) = load_chunk(repo, rev, chunk, meta.chunk_limit, &mut edited)?;
    Ok(Fetched { data, intact, edited })
}

/// Hands the chunks of `table` at `positions` to `load`, in order, reading
/// the next one from git on another thread meanwhile.
fn each_chunk(
    repo: &Path,
    rev: &str,
    table: &TablePlan,
    positions: &[usize],
    load: &mut dyn FnMut(usize, Fetched) -> Result<(), Error>,
) -> Result<(), Error> {
    let meta = &table.meta;
    std::thread::scope(|scope| {
        let spawn = |i: usize| scope.spawn(move || fetch(repo, rev, meta, &meta.chunks[i]));
        let mut ahead = None;
        for (n, &i) in positions.iter().enumerate() {
            let fetched = ahead.take().unwrap_or_else(|| spawn(i));
            if let Some(&next) = positions.get(n + 1) {
                ahead = Some(spawn(next));
            }
            let fetched = fetched.join().map_err(|_| Error::Panicked("chunk reader"))??;
            load(i, fetched)?;
        }
        Ok(())
    })
}

/// What loading chunks side by side did.
#[derive(Default)]
struct SideBySide {
    rows: u64,
    chunks: usize,
    /// Chunks a loader declined, for [`Target::load`].
    declined: Vec<usize>,
    edited: Vec<String>,
}

/// Loads the chunks of `table` at `positions` through `loaders`, one
/// thread each, every chunk with its progress record (`mark` with the
/// table's name, position and blob) in a transaction of its loader. The
/// first error stops every thread and is returned; chunks committed until
/// then stay for a re-run.
#[allow(clippy::too_many_arguments)]
fn side_by_side(
    repo: &Path,
    rev: &str,
    table: &TablePlan,
    positions: &[usize],
    blobs: &[String],
    loaders: &mut [Box<dyn Loader>],
    mark: &str,
    meter: &dyn crate::progress::Meter,
) -> Result<SideBySide, Error> {
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::Mutex;
    let meta = &table.meta;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (rows, bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    let out = Mutex::new(SideBySide::default());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for loader in loaders.iter_mut() {
            let (next, stop, rows, bytes, out, first_error) = (&next, &stop, &rows, &bytes, &out, &first_error);
            scope.spawn(move || {
                let mut work = || -> Result<(), Error> {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(&i) = positions.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                        let chunk = &meta.chunks[i];
                        let fetched = fetch(repo, rev, meta, chunk)?;
                        let record =
                            [Value::Text(meta.name.clone()), Value::Integer(i as i64), Value::Text(blobs[i].clone())];
                        let mut lost = Vec::new();
                        let chunk_rows = ChunkRows::new(meta, chunk, (fetched.data, fetched.intact), None, &mut lost);
                        let loaded = loader.load_marked(&chunk_rows, (mark, &record))?;
                        let mut out = out.lock().map_err(|_| Error::Panicked("loader"))?;
                        out.edited.extend(fetched.edited);
                        match loaded {
                            Some(n) => {
                                out.rows += n;
                                out.chunks += 1;
                                let done = rows.fetch_add(n, Ordering::Relaxed) + n;
                                let read = bytes.fetch_add(chunk.uncompressed_bytes, Ordering::Relaxed);
                                meter.update(read + chunk.uncompressed_bytes, done, &chunk.file);
                            }
                            None => out.declined.push(i),
                        }
                    }
                    Ok(())
                };
                if let Err(e) = work() {
                    stop.store(true, Ordering::Relaxed);
                    if let Ok(mut first) = first_error.lock() {
                        first.get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().map_err(|_| Error::Panicked("loader"))? {
        return Err(e);
    }
    let mut out = out.into_inner().map_err(|_| Error::Panicked("loader"))?;
    out.declined.sort_unstable();
    Ok(out)
}

/// Runs `f` in a transaction of the target: committed when it succeeds,
/// rolled back when it fails.
fn transaction<T>(target: &mut dyn Target, f: &mut dyn FnMut(&mut dyn Target) -> Result<T, Error>) -> Result<T, Error> {
    target.begin()?;
    match f(target) {
        Ok(v) => {
            target.commit()?;
            Ok(v)
        }
        Err(e) => {
            target.rollback();
            Err(e)
        }
    }
}

fn create(target: &mut dyn Target, table: &TablePlan) -> Result<(), Error> {
    for stmt in &table.ddl.create {
        target.execute(stmt, &[]).map_err(|source| Error::Create { table: table.meta.name.clone(), source })?;
    }
    Ok(())
}

/// What follows a table's rows: its indexes and what the engine keeps
/// beside it. An index the rows do not satisfy is damage.
fn finish_table(target: &mut dyn Target, table: &TablePlan) -> Result<(), Error> {
    for stmt in &table.ddl.after {
        target
            .execute(stmt, &[])
            .map_err(|e| chunk::Error::damaged(&format!("data/{}/", table.meta.name), 0, refusal(e)))?;
    }
    Ok(target.finish_table(&table.meta)?)
}

fn loading_message(meter: &dyn crate::progress::Meter, bytes: &mut u64, rows: u64, chunk: &ChunkMeta) {
    *bytes += chunk.uncompressed_bytes;
    meter.update(*bytes, rows, &chunk.file);
}

/// The import without `--replace`: resumable, one transaction per chunk.
fn resumably(
    repo: &Path,
    plan: &Prepared,
    target: &mut dyn Target,
    resumable: &HashSet<String>,
    opts: &ImportOptions,
    report: &mut ImportReport,
) -> Result<(), Error> {
    let rev = plan.rev.as_str();
    let progress = target.quote(IMPORT_PROGRESS);
    let (tbl, position, blob) = (target.quote("tbl"), target.quote("position"), target.quote("blob"));
    let (p1, p2, p3) = (target.placeholder(1, None), target.placeholder(2, None), target.placeholder(3, None));
    target.start_load()?;
    // Connections of their own, one per core (a few at most), for loading
    // chunks side by side.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    let mut loaders = target.loaders(cores)?;
    target.execute(
        &format!(
            "CREATE TABLE IF NOT EXISTS {progress} ({tbl} VARCHAR(255) NOT NULL, {position} BIGINT NOT NULL, \
             {blob} VARCHAR(64) NOT NULL, PRIMARY KEY ({tbl}, {position}))"
        ),
        &[],
    )?;
    let mark = format!("INSERT INTO {progress} ({tbl}, {position}, {blob}) VALUES ({p1}, {p2}, {p3})");
    let loaded = (|| -> Result<(), Error> {
        for table in &plan.tables {
            let meta = &table.meta;
            let name = Value::Text(meta.name.clone());
            let blobs = chunk_blobs(repo, rev, meta)?;
            let mut done: Option<Vec<bool>> = None;
            if resumable.contains(&meta.name) {
                let sql = format!(
                    "SELECT {position}, {blob} FROM {progress} WHERE {tbl} = {p1} AND {position} >= 0 ORDER BY {position}"
                );
                let recorded: Vec<(i64, String)> = target
                    .query(&sql, std::slice::from_ref(&name))?
                    .into_iter()
                    .map(|r| {
                        let mut r = r.into_iter();
                        let pos = r.next().flatten().and_then(|p| p.parse().ok()).unwrap_or(-1);
                        (pos, r.next().flatten().unwrap_or_default())
                    })
                    .collect();
                done = resumed_chunks(&blobs, &recorded).filter(|d| d.iter().any(|&x| x));
            }
            let done = match done {
                Some(done) => {
                    let chunks = done.iter().filter(|&&d| d).count();
                    report.resumed.push(ResumedTable { table: meta.name.clone(), chunks });
                    done
                }
                None => {
                    let drop = target.drop_table_sql(&meta.name);
                    let forget = format!("DELETE FROM {progress} WHERE {tbl} = {p1}");
                    let claim = [name.clone(), Value::Integer(-1), Value::Text(String::new())];
                    if target.transactional_ddl() {
                        // A table of a previous, different run is ours to start over.
                        transaction(target, &mut |t| {
                            t.execute(&drop, &[])?;
                            t.execute(&forget, std::slice::from_ref(&name))?;
                            create(t, table)?;
                            Ok(t.execute(&mark, &claim)?)
                        })?;
                    } else {
                        // DDL commits on its own: the table is claimed first, so
                        // a re-run knows it may drop and create it again.
                        transaction(target, &mut |t| {
                            t.execute(&forget, std::slice::from_ref(&name))?;
                            Ok(t.execute(&mark, &claim)?)
                        })?;
                        target.execute(&drop, &[])?;
                        create(target, table)?;
                    }
                    vec![false; meta.chunks.len()]
                }
            };
            let mut rows: u64 = meta.chunks.iter().zip(&done).filter(|(_, &d)| d).map(|(c, _)| c.rows).sum();
            let mut todo: Vec<usize> = (0..meta.chunks.len()).filter(|&i| !done[i]).collect();
            let meter = opts.progress.start(&meta.name);
            if table.conversion.is_none() && todo.len() > 1 && !loaders.is_empty() {
                let parallel = side_by_side(repo, rev, table, &todo, &blobs, &mut loaders, &mark, meter.as_ref())?;
                rows += parallel.rows;
                report.bulk_loaded_chunks += parallel.chunks;
                report.edited_chunks.extend(parallel.edited);
                todo = parallel.declined;
            }
            let mut bytes = 0;
            each_chunk(repo, rev, table, &todo, &mut |i, fetched| {
                report.edited_chunks.extend(fetched.edited);
                let chunk = &meta.chunks[i];
                let record = [name.clone(), Value::Integer(i as i64), Value::Text(blobs[i].clone())];
                let mut chunk_rows = Some(ChunkRows::new(
                    meta,
                    chunk,
                    (fetched.data, fetched.intact),
                    table.conversion.as_ref(),
                    &mut report.approximations,
                ));
                rows += transaction(target, &mut |t| {
                    let n = t.load(chunk_rows.take().expect("loaded once"))?;
                    t.execute(&mark, &record)?;
                    Ok(n)
                })?;
                loading_message(meter.as_ref(), &mut bytes, rows, chunk);
                Ok(())
            })?;
            meter.finish();
            report.tables.push(LoadedTable { table: meta.name.clone(), rows });
        }
        transaction(target, &mut |t| {
            for table in &plan.tables {
                finish_table(t, table)?;
            }
            if let Some((table, reason)) = t.foreign_key_violation()? {
                return Err(chunk::Error::damaged(&format!("data/{table}/"), 0, reason).into());
            }
            Ok(t.execute(&format!("DROP TABLE {progress}"), &[])?)
        })
    })();
    if let Err(e) = loaded {
        if e.is_damage() {
            for table in &plan.tables {
                let drop = target.drop_table_sql(&table.meta.name);
                let _ = target.execute(&drop, &[]);
            }
            let _ = target.execute(&format!("DROP TABLE IF EXISTS {progress}"), &[]);
        }
        return Err(e);
    }
    Ok(())
}

/// The import with `--replace` of tables it did not create: one
/// transaction, so a failure keeps the old tables. Where DDL commits on its
/// own (MySQL), the tables are replaced first and dropped again if loading
/// fails. The progress of an interrupted import is dropped at the end, so
/// no table counts as one an import created (and may drop) any more.
fn at_once(
    repo: &Path,
    plan: &Prepared,
    target: &mut dyn Target,
    present: &[String],
    opts: &ImportOptions,
    report: &mut ImportReport,
) -> Result<(), Error> {
    let rev = plan.rev.as_str();
    let forget = format!("DROP TABLE IF EXISTS {}", target.quote(IMPORT_PROGRESS));
    let transactional = target.transactional_ddl();
    target.start_load()?;
    let replace = |t: &mut dyn Target| -> Result<(), Error> {
        for name in present {
            let drop = t.drop_table_sql(name);
            t.execute(&drop, &[])?;
        }
        // All tables first, so foreign keys find their targets.
        for table in &plan.tables {
            create(t, table)?;
        }
        Ok(())
    };
    if !transactional {
        replace(target)?;
    }
    let mut load_all = |t: &mut dyn Target| -> Result<(), Error> {
        if transactional {
            replace(t)?;
        }
        for table in &plan.tables {
            let meta = &table.meta;
            let meter = opts.progress.start(&meta.name);
            let (mut rows, mut bytes) = (0, 0);
            let all: Vec<usize> = (0..meta.chunks.len()).collect();
            each_chunk(repo, rev, table, &all, &mut |i, fetched| {
                report.edited_chunks.extend(fetched.edited);
                let chunk = &meta.chunks[i];
                rows += t.load(ChunkRows::new(
                    meta,
                    chunk,
                    (fetched.data, fetched.intact),
                    table.conversion.as_ref(),
                    &mut report.approximations,
                ))?;
                loading_message(meter.as_ref(), &mut bytes, rows, chunk);
                Ok(())
            })?;
            meter.finish();
            report.tables.push(LoadedTable { table: meta.name.clone(), rows });
        }
        if transactional {
            for table in &plan.tables {
                finish_table(t, table)?;
            }
            if let Some((table, reason)) = t.foreign_key_violation()? {
                return Err(chunk::Error::damaged(&format!("data/{table}/"), 0, reason).into());
            }
            t.execute(&forget, &[])?;
        }
        Ok(())
    };
    let loaded = transaction(target, &mut load_all);
    if transactional {
        return loaded;
    }
    let finished = loaded.and_then(|()| {
        for table in &plan.tables {
            finish_table(target, table)?;
        }
        Ok(target.execute(&forget, &[])?)
    });
    if let Err(e) = finished {
        for table in &plan.tables {
            let drop = target.drop_table_sql(&table.meta.name);
            let _ = target.execute(&drop, &[]);
        }
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn done(flags: &[u8]) -> Option<Vec<bool>> {
        Some(flags.iter().map(|&f| f == 1).collect())
    }

    #[test]
    fn resume_keeps_the_chunks_recorded_from_the_same_files() {
        let now = blobs(&["a", "b", "c"]);
        assert_eq!(resumed_chunks(&now, &[]), done(&[0, 0, 0]));
        assert_eq!(resumed_chunks(&now, &[(0, "a".into())]), done(&[1, 0, 0]));
        assert_eq!(resumed_chunks(&now, &[(0, "a".into()), (1, "b".into()), (2, "c".into())]), done(&[1, 1, 1]));
        // Chunks loaded side by side commit in any order.
        assert_eq!(resumed_chunks(&now, &[(0, "a".into()), (2, "c".into())]), done(&[1, 0, 1]));
        assert_eq!(resumed_chunks(&now, &[(1, "b".into())]), done(&[0, 1, 0]));
    }

    #[test]
    fn resume_starts_over_when_a_recorded_file_changed_or_is_out_of_place() {
        let now = blobs(&["a", "b", "c"]);
        // The second chunk's file changed since: its rows in the table are stale.
        assert_eq!(resumed_chunks(&now, &[(0, "a".into()), (1, "x".into())]), None);
        // A record past the table's chunks, or before them.
        assert_eq!(resumed_chunks(&blobs(&["a"]), &[(0, "a".into()), (1, "b".into())]), None);
        assert_eq!(resumed_chunks(&now, &[(-2, "a".into())]), None);
        // The same position twice.
        assert_eq!(resumed_chunks(&now, &[(0, "a".into()), (0, "a".into())]), None);
    }

    #[test]
    fn taken_tables_exclude_those_an_interrupted_import_created() {
        let names = blobs(&["a", "b"]);
        let ours: HashSet<String> = ["a".to_string()].into();
        let mut exists = |n: &str| Ok(n == "a" || n == "b");
        assert_eq!(first_taken(&names, &ours, &mut exists).unwrap(), Some("b".into()));
        let mut only_a = |n: &str| Ok(n == "a");
        assert_eq!(first_taken(&names, &ours, &mut only_a).unwrap(), None);
    }
}
