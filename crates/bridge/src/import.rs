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
//!   still match ([`resume_point`]) and loads the rest. Indexes, sequence
//!   positions and the foreign-key check come in one final transaction,
//!   which drops the progress table.
//! - **Damage** (a chunk that does not parse or fit, a broken foreign key)
//!   drops what the import created: nothing is left half-imported. Any
//!   other interruption keeps the committed chunks for a re-run.
//! - **Replacing** tables the import did not create is one transaction, so
//!   a failure keeps the old ones (where DDL is transactional).
//!
//! The next chunk is read from git on a second thread while one loads.

use std::collections::HashSet;
use std::path::Path;

use crate::chunk::load_chunk;
use crate::engine::{ChunkRows, Target};
use crate::layout::{ChunkMeta, TableMeta};
use crate::mapping::{self, Conversion};
use crate::meta::{load_manifest, read_table_meta_in, table_metas};
use crate::value::Value;
use crate::{git, schema, Error};

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
    exists: &mut dyn FnMut(&str) -> Result<bool, Error>,
) -> Result<Option<String>, Error> {
    for name in names {
        if !ours.contains(name) && exists(name)? {
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}

/// The git blob of each chunk file of `meta` at `rev`, in chunk order: what
/// an import records per chunk, so a re-run knows the file is the same.
pub fn chunk_blobs(repo: &Path, rev: &str, meta: &TableMeta) -> Result<Vec<String>, Error> {
    let blobs: std::collections::HashMap<String, String> =
        git::ls_tree(repo, rev, &format!("data/{}/", meta.name))?.into_iter().collect();
    Ok(meta.chunks.iter().map(|c| blobs.get(&c.file).cloned().unwrap_or_default()).collect())
}

/// How many leading chunks an earlier run of this import loaded from these
/// very files: its `(position, blob)` records must match `blobs` one by
/// one. A record beyond that prefix means the files changed since, and the
/// table starts over (0).
pub fn resume_point(blobs: &[String], recorded: &[(i64, String)]) -> usize {
    let done = blobs.iter().zip(recorded).enumerate().take_while(|(i, (b, (p, r)))| *p == *i as i64 && r == *b).count();
    if done < recorded.len() {
        0
    } else {
        done
    }
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
            let ddl = meta.ddl.take().ok_or_else(|| Error::Layout(format!("no DDL for table {}", meta.name)))?;
            plan.tables.push(TablePlan { meta, ddl, conversion: None });
        }
        return Ok(plan);
    }
    let target = mapping::Target::of(target_engine)
        .ok_or_else(|| Error::Unsupported(format!("an import into {target_engine:?}")))?;
    let dialect = match target {
        mapping::Target::Sqlite | mapping::Target::Doltlite => schema::Engine::Sqlite,
        mapping::Target::Postgres => schema::Engine::Postgres,
        mapping::Target::Mysql => schema::Engine::Mysql,
    };
    for name in &names {
        let meta = read_table_meta_in(repo, rev, &manifest, name)?
            .ok_or_else(|| Error::Layout(format!("no metadata for table {name}")))?;
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
pub fn insert_values(target: &mut dyn Target, rows: ChunkRows<'_>, per_batch: usize) -> Result<u64, Error> {
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
    let flush = |target: &mut dyn Target, pending: &mut Vec<(usize, Vec<Value>)>| -> Result<(), Error> {
        if pending.is_empty() {
            return Ok(());
        }
        if pending.len() == 1 {
            let (line, values) = pending.pop().expect("one row");
            return target.execute(&one_row, &values).map_err(|e| Error::Damaged {
                file: file.clone(),
                line,
                reason: refusal(e),
            });
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
            target.execute(&one_row, &values).map_err(|e| Error::Damaged {
                file: file.clone(),
                line,
                reason: refusal(e),
            })?;
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
fn refusal(e: Error) -> String {
    match e {
        Error::Database(m) => m,
        other => other.to_string(),
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

/// Hands each chunk of `table` from `first` on to `load`, reading the next
/// one from git on another thread meanwhile.
fn each_chunk(
    repo: &Path,
    rev: &str,
    table: &TablePlan,
    first: usize,
    load: &mut dyn FnMut(usize, Fetched) -> Result<(), Error>,
) -> Result<(), Error> {
    let meta = &table.meta;
    std::thread::scope(|scope| {
        let spawn = |i: usize| scope.spawn(move || fetch(repo, rev, meta, &meta.chunks[i]));
        let mut ahead = None;
        for i in first..meta.chunks.len() {
            let fetched = ahead.take().unwrap_or_else(|| spawn(i));
            if i + 1 < meta.chunks.len() {
                ahead = Some(spawn(i + 1));
            }
            let fetched = fetched.join().map_err(|_| Error::Database("a chunk reader thread panicked".into()))??;
            load(i, fetched)?;
        }
        Ok(())
    })
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
        target
            .execute(stmt, &[])
            .map_err(|e| Error::Database(format!("creating {}: {}", table.meta.name, refusal(e))))?;
    }
    Ok(())
}

/// What follows a table's rows: its indexes and what the engine keeps
/// beside it. An index the rows do not satisfy is damage.
fn finish_table(target: &mut dyn Target, table: &TablePlan) -> Result<(), Error> {
    for stmt in &table.ddl.after {
        target.execute(stmt, &[]).map_err(|e| Error::Damaged {
            file: format!("data/{}/", table.meta.name),
            line: 0,
            reason: refusal(e),
        })?;
    }
    target.finish_table(&table.meta)
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
            let mut done = 0;
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
                done = resume_point(&blobs, &recorded);
            }
            if done == 0 {
                let drop = target.drop_table_sql(&meta.name);
                let forget = format!("DELETE FROM {progress} WHERE {tbl} = {p1}");
                let claim = [name.clone(), Value::Integer(-1), Value::Text(String::new())];
                if target.transactional_ddl() {
                    // A table of a previous, different run is ours to start over.
                    transaction(target, &mut |t| {
                        t.execute(&drop, &[])?;
                        t.execute(&forget, std::slice::from_ref(&name))?;
                        create(t, table)?;
                        t.execute(&mark, &claim)
                    })?;
                } else {
                    // DDL commits on its own: the table is claimed first, so
                    // a re-run knows it may drop and create it again.
                    transaction(target, &mut |t| {
                        t.execute(&forget, std::slice::from_ref(&name))?;
                        t.execute(&mark, &claim)
                    })?;
                    target.execute(&drop, &[])?;
                    create(target, table)?;
                }
            } else {
                report.resumed.push(ResumedTable { table: meta.name.clone(), chunks: done });
            }
            let mut rows: u64 = meta.chunks[..done].iter().map(|c| c.rows).sum();
            let meter = opts.progress.start(&meta.name);
            let mut bytes = 0;
            each_chunk(repo, rev, table, done, &mut |i, fetched| {
                report.edited_chunks.extend(fetched.edited);
                let chunk = &meta.chunks[i];
                let record = [name.clone(), Value::Integer(i as i64), Value::Text(blobs[i].clone())];
                let chunk_rows = ChunkRows::new(
                    meta,
                    chunk,
                    (fetched.data, fetched.intact),
                    table.conversion.as_ref(),
                    &mut report.approximations,
                );
                if let Some(n) = target.load_marked(&chunk_rows, (&mark, &record))? {
                    rows += n;
                    report.bulk_loaded_chunks += 1;
                    loading_message(meter.as_ref(), &mut bytes, rows, chunk);
                    return Ok(());
                }
                let mut chunk_rows = Some(chunk_rows);
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
                return Err(Error::Damaged { file: format!("data/{table}/"), line: 0, reason });
            }
            t.execute(&format!("DROP TABLE {progress}"), &[])
        })
    })();
    if let Err(e) = loaded {
        if matches!(e, Error::Damaged { .. }) {
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
            each_chunk(repo, rev, table, 0, &mut |i, fetched| {
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
                return Err(Error::Damaged { file: format!("data/{table}/"), line: 0, reason });
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
        target.execute(&forget, &[])
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

    #[test]
    fn resume_keeps_the_prefix_recorded_from_the_same_files() {
        let now = blobs(&["a", "b", "c"]);
        assert_eq!(resume_point(&now, &[]), 0);
        assert_eq!(resume_point(&now, &[(0, "a".into())]), 1);
        assert_eq!(resume_point(&now, &[(0, "a".into()), (1, "b".into())]), 2);
        assert_eq!(resume_point(&now, &[(0, "a".into()), (1, "b".into()), (2, "c".into())]), 3);
    }

    #[test]
    fn resume_starts_over_when_a_recorded_file_changed_or_is_out_of_place() {
        let now = blobs(&["a", "b", "c"]);
        // The second chunk's file changed since: what follows it is stale too.
        assert_eq!(resume_point(&now, &[(0, "a".into()), (1, "x".into())]), 0);
        // A gap in positions.
        assert_eq!(resume_point(&now, &[(0, "a".into()), (2, "c".into())]), 0);
        // More records than the table has chunks now.
        assert_eq!(resume_point(&blobs(&["a"]), &[(0, "a".into()), (1, "b".into())]), 0);
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
