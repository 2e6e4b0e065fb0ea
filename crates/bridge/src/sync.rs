//! `tessera data sync`: a three-way merge between a database and a
//! repository, with the last synced commit as the base.
//!
//! The base is not stored row by row: it *is* the last synced commit, whose
//! chunk files hold every row as it was. The state is one row per
//! (repository, branch) in the table `_tessera_sync` inside the database,
//! written in the same transaction as the pulled changes, so the database
//! and its record of what it has seen can never disagree.
//!
//! Finding changes costs one scan of the database, cut into chunks exactly
//! as an export cuts them: a chunk whose blob id is a file of the base
//! commit is unchanged (content-defined boundaries make that the common
//! case), and only the rows of the other chunks are compared. On the
//! repository side, only files whose blob differs between the base and the
//! branch head are read. Rows are matched by primary key (by content for
//! tables without one) and merged cell by cell.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use crate::chunk::{self, ChunkBy};
use crate::csv::Cell;
use crate::engine::{self, Opener, Shape, Source, Target};
use crate::export::{self, ExportOptions};
use crate::import::{self, ImportOptions};
use crate::layout::{self, TableMeta};
use crate::{git, meta};
use tessera_pack::ObjectId;

/// What a sync failed with. Nothing was applied to the database nor
/// pushed: a sync applies its row changes in one transaction, and records
/// the commit it synced with in the same one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Database(engine::Error),
    #[error(transparent)]
    Chunk(#[from] chunk::Error),
    #[error(transparent)]
    Meta(#[from] meta::Error),
    #[error(transparent)]
    Git(#[from] git::Error),
    /// The export of the database's side.
    #[error(transparent)]
    Export(#[from] export::Error),
    /// The import of tables the database does not have yet.
    #[error(transparent)]
    Import(#[from] import::Error),
    /// `--on-conflict fail` found cells changed differently on both sides;
    /// the report lists them.
    #[error("{report}")]
    Conflicts { count: usize, report: String },
    /// What this sync will not do as asked (say so, and how to go on).
    #[error("{0}")]
    Refused(String),
}

crate::from_engine_error!(Error);

/// Rows a sync changed in one table of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledTable {
    pub table: String,
    pub inserted: usize,
    pub updated: usize,
    pub deleted: usize,
}

pub use crate::engine::{ColumnChange, Row, TableChanges, STATE_TABLE};

/// Which way changes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Both,
    PushOnly,
    PullOnly,
}

/// What to do with a cell changed differently on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConflict {
    #[default]
    Fail,
    /// The database's value wins.
    Ours,
    /// The repository's value wins.
    Theirs,
}

#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub direction: Direction,
    pub on_conflict: OnConflict,
    pub branch: Option<String>,
    /// How the state row names the repository (its URL, or its path).
    pub repo_id: String,
    /// Export settings for a first sync into an empty repository.
    pub export: Option<ExportOptions>,
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Per table: rows inserted, updated and deleted in the database.
    pub pulled: Vec<PulledTable>,
    /// The commit written to the repository, if any.
    pub pushed: Option<ObjectId>,
    /// Conflicting cells resolved by `--on-conflict ours|theirs`.
    pub resolved: usize,
    /// Tables created in the database from the repository.
    pub created: Vec<String>,
    /// Chunk files changed by hand since the last sync and applied as edits.
    pub edited_chunks: Vec<String>,
    /// The push re-read only the chunks Dolt's diff pointed at.
    pub via_dolt_diff: bool,
}

/// One conflicting cell, for the report.
#[derive(Debug)]
pub struct Conflict {
    pub table: String,
    pub key: String,
    pub column: String,
    pub base: Cell,
    pub ours: Cell,
    pub theirs: Cell,
}

/// The conflict report `--on-conflict fail` prints.
pub fn conflict_report(conflicts: &[Conflict]) -> String {
    let show = |c: &Cell| match c {
        None => "NULL / (absent)".to_string(),
        Some(t) => format!("{t:?}"),
    };
    let mut out = format!("{} conflicting cell(s); nothing was changed on either side:\n", conflicts.len());
    for c in conflicts {
        out.push_str(&format!(
            "  table {} key {} column {}\n    base:   {}\n    ours:   {} (database)\n    theirs: {} (repository)\n",
            c.table,
            c.key,
            c.column,
            show(&c.base),
            show(&c.ours),
            show(&c.theirs)
        ));
    }
    out.push_str("Resolve with --on-conflict ours|theirs, or change one side and sync again.\n");
    out
}

/// Rows of one side around the changes, by key: for tables identified by
/// content the key is the whole row and the value counts its copies.
#[derive(Default)]
struct Side {
    rows: HashMap<Row, Row>,
    counts: HashMap<Row, usize>,
}

impl Side {
    fn add(&mut self, key: &[usize], row: Row) {
        if key.is_empty() {
            *self.counts.entry(row).or_default() += 1;
        } else {
            self.rows.insert(key.iter().map(|i| row[*i].clone()).collect(), row);
        }
    }
    fn keys(&self) -> impl Iterator<Item = &Row> {
        self.rows.keys().chain(self.counts.keys())
    }
}

/// Base rows with where their file is found: still in the database (an
/// identical chunk) and still on the branch head (the same blob).
struct BaseRow {
    row: Row,
    in_db: bool,
    in_head: bool,
}

fn key_text(key: &Row) -> String {
    let parts: Vec<String> =
        key.iter().map(|c| c.as_deref().map(|t| format!("{t:?}")).unwrap_or("NULL".into())).collect();
    format!("({})", parts.join(", "))
}

fn parse_record(record: &[u8]) -> Row {
    crate::csv::Reader::new(record).next_record().ok().flatten().unwrap_or_default()
}

/// Rows of the given chunk files of `meta` at commit `rev`.
fn rows_of(
    repo: &Path,
    rev: &str,
    meta: &TableMeta,
    files: &BTreeSet<String>,
    edited: &mut Vec<String>,
    each: &mut dyn FnMut(&str, Row),
) -> Result<(), Error> {
    let only: Vec<layout::ChunkMeta> = meta.chunks.iter().filter(|c| files.contains(&c.file)).cloned().collect();
    chunk::read_chunks::<Error>(repo, rev, meta, &only, false, edited, &mut |file, _, _, record| {
        each(file, parse_record(record));
        Ok(())
    })?;
    Ok(())
}

/// File path → blob id of the data files of a commit.
fn data_files(repo: &Path, rev: &str) -> Result<HashMap<String, String>, Error> {
    Ok(git::ls_tree(repo, rev, "data/")?.into_iter().collect())
}

/// The database's chunks of a table, cut as an export of `meta` would cut
/// them: the rows of every chunk whose blob is not among `base_blobs`, and
/// the set of blobs that are.
fn database_changes(
    source: &mut dyn Source,
    shape: &Shape,
    partition: Option<(usize, ChunkBy)>,
    meta: &TableMeta,
    manifest: &layout::Manifest,
    base_blobs: &HashSet<String>,
) -> Result<(Vec<Row>, HashSet<String>), Error> {
    let (sink, jobs) = std::sync::mpsc::sync_channel::<chunk::Job>(1);
    let compression = manifest.chunking.compression;
    let key_idx = crate::engine::key_columns(shape);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<(Vec<Row>, HashSet<String>), Error> {
            let mut changed = Vec::new();
            let mut matched = HashSet::new();
            for job in jobs {
                let stored = chunk::compress(compression, &job.csv)?;
                let blob = tessera_pack::object_id(tessera_pack::Kind::Blob, &stored).to_string();
                if base_blobs.contains(&blob) {
                    matched.insert(blob);
                    continue;
                }
                let mut start = job.header_len;
                for &end in &job.ends {
                    changed.push(parse_record(&job.csv[start..end as usize]));
                    start = end as usize;
                }
            }
            Ok((changed, matched))
        });
        let mut chunker = chunk::Chunker::new(
            &shape.name,
            0,
            &shape.columns,
            key_idx,
            meta.divisor.max(1),
            manifest.chunking.max_chunk_bytes,
            manifest.chunking.algorithm,
            compression,
            &sink,
        );
        chunker.partition = partition;
        let wanted = chunker.wanted(shape.columns.len());
        let scanned = source
            .scan_records(shape, &wanted, &mut |cells, record| Ok(chunker.push_record(cells, record)?))
            .map_err(Error::from)
            .and_then(|_| Ok(chunker.finish()?));
        drop(sink);
        let found = reader.join().expect("the chunk reader does not panic");
        // The reader's error is the cause of a scan's `WriterStopped`.
        match (scanned, found) {
            (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
            (Ok(()), Ok(found)) => Ok(found),
        }
    })
}

/// Three-way merge of one cell-level row: `None` rows are absent.
#[allow(clippy::too_many_arguments)]
fn merge_row(
    table: &str,
    columns: &[layout::Column],
    key: &Row,
    base: Option<&Row>,
    ours: Option<&Row>,
    theirs: Option<&Row>,
    on_conflict: OnConflict,
    conflicts: &mut Vec<Conflict>,
    resolved: &mut usize,
) -> Option<Row> {
    if ours == theirs {
        return ours.cloned();
    }
    if ours == base {
        return theirs.cloned();
    }
    if theirs == base {
        return ours.cloned();
    }
    let mut conflict = |column: &str, b: Cell, o: Cell, t: Cell| -> bool {
        match on_conflict {
            OnConflict::Fail => {
                conflicts.push(Conflict {
                    table: table.into(),
                    key: key_text(key),
                    column: column.into(),
                    base: b,
                    ours: o,
                    theirs: t,
                });
                false
            }
            OnConflict::Ours => {
                *resolved += 1;
                true
            }
            OnConflict::Theirs => {
                *resolved += 1;
                false
            }
        }
    };
    match (ours, theirs) {
        (Some(o), Some(t)) => {
            let empty = vec![None; columns.len()];
            let b = base.unwrap_or(&empty);
            let mut out = Vec::with_capacity(columns.len());
            for (i, col) in columns.iter().enumerate() {
                let cell = if o[i] == t[i] || t[i] == b[i] {
                    o[i].clone()
                } else if o[i] == b[i] {
                    t[i].clone()
                } else if conflict(&col.name, b[i].clone(), o[i].clone(), t[i].clone()) {
                    o[i].clone()
                } else {
                    t[i].clone()
                };
                out.push(cell);
            }
            Some(out)
        }
        // Deleted on one side, changed on the other: a conflict over the
        // whole row.
        (o, t) => {
            let b = base.cloned().unwrap_or_default();
            let summary = |r: Option<&Row>| r.map(|r| crate::csv::write_record_string(r)).or(Some("(deleted)".into()));
            let ours_wins = conflict("(row)", Some(crate::csv::write_record_string(&b)), summary(o), summary(t));
            if ours_wins {
                o.cloned()
            } else {
                t.cloned()
            }
        }
    }
}

/// How a table's database columns become the repository's: the column
/// changes made in git since the base (as ALTERs), and where each
/// repository column is found in a database row and in a base row.
struct ColumnPlan {
    ddl: Vec<ColumnChange>,
    from_db: Vec<Option<usize>>,
    from_base: Vec<Option<usize>>,
}

fn column_plan(
    table: &str,
    db: &[layout::Column],
    head: &[layout::Column],
    base: Option<&[layout::Column]>,
) -> Result<ColumnPlan, Error> {
    let names = |cols: &[layout::Column]| cols.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    let (db_names, head_names) = (names(db), names(head));
    let base_names = base.map(names).unwrap_or_else(|| db_names.clone());
    let position = |list: &[String], name: &str| list.iter().position(|n| n == name);
    // Dropped in git: in the database and the base, not in the head. Added
    // in git: in the head only. A drop and an add at the same position with
    // the same type are a rename.
    let dropped: Vec<usize> = (0..db.len())
        .filter(|&i| position(&head_names, &db_names[i]).is_none() && position(&base_names, &db_names[i]).is_some())
        .collect();
    let added: Vec<usize> = (0..head.len())
        .filter(|&i| position(&db_names, &head_names[i]).is_none() && position(&base_names, &head_names[i]).is_none())
        .collect();
    let db_side: Vec<&String> = db_names
        .iter()
        .filter(|n| position(&head_names, n).is_none() && position(&base_names, n).is_none())
        .chain(head_names.iter().filter(|n| position(&db_names, n).is_none() && position(&base_names, n).is_some()))
        .collect();
    if !db_side.is_empty() {
        return Err(Error::Refused(format!(
            "table {table}: the database changed columns ({}) while the repository changed too; \
             push the database's change first (sync --push-only --on-conflict ours) or pull first",
            db_side.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let renames: Vec<(usize, usize)> = dropped
        .iter()
        .filter_map(|&d| {
            added.iter().find(|&&a| a == d && head[a].declared_type == db[d].declared_type).map(|&a| (d, a))
        })
        .collect();
    let mut ddl = Vec::new();
    for &(d, a) in &renames {
        ddl.push(ColumnChange::Rename(db_names[d].clone(), head_names[a].clone()));
    }
    for &d in dropped.iter().filter(|d| !renames.iter().any(|(r, _)| r == *d)) {
        ddl.push(ColumnChange::Drop(db_names[d].clone()));
    }
    for &a in added.iter().filter(|a| !renames.iter().any(|(_, r)| r == *a)) {
        ddl.push(ColumnChange::Add(head_names[a].clone(), head[a].declared_type.clone()));
    }
    let source_name = |i: usize| -> String {
        renames
            .iter()
            .find(|(_, a)| *a == i)
            .map(|(d, _)| db_names[*d].clone())
            .unwrap_or_else(|| head_names[i].clone())
    };
    let from_db = (0..head.len()).map(|i| position(&db_names, &source_name(i))).collect();
    let from_base = (0..head.len()).map(|i| position(&base_names, &source_name(i))).collect();
    Ok(ColumnPlan { ddl, from_db, from_base })
}

/// A row rearranged into the repository's columns (absent ones NULL).
fn project(row: Row, map: &[Option<usize>]) -> Row {
    if row.len() == map.len() && map.iter().enumerate().all(|(i, m)| *m == Some(i)) {
        return row;
    }
    map.iter().map(|m| m.and_then(|i| row.get(i).cloned().flatten())).collect()
}

/// Syncs `database` with the repository `target` (a local repository, or
/// the cache of a remote one, which receives the new commit before the
/// state records it).
pub fn sync(db: &dyn Opener, target: &git::Target, opts: &SyncOptions) -> Result<SyncReport, Error> {
    let repo = target.path.as_path();
    git::ensure_repo(repo)?;
    let branch = match &opts.branch {
        Some(b) => b.clone(),
        None => git::default_branch(repo)?,
    };
    git::require_clean(repo, &branch)?;
    let rev = format!("refs/heads/{branch}");
    let mut report = SyncReport::default();
    // Commits name revisions of git's plumbing here: hex.
    let head = git::resolve(repo, &rev).map(|h| h.to_string());
    let database = db.label();
    if db.is_new_file() {
        // No database yet: the first sync creates it from the repository.
        let Some(head) = head else {
            return Err(Error::Refused(format!("{database} does not exist and {branch} has nothing to import")));
        };
        if opts.direction == Direction::PushOnly {
            return Err(Error::Refused(format!("{database} does not exist: nothing to push")));
        }
        return first_pull(db, repo, &branch, &head, opts, report);
    }
    let mut source = db.open(None)?;
    let Some(head) = head else {
        // An empty repository: the first sync is an export.
        if opts.direction == Direction::PullOnly {
            return Err(Error::Refused(format!("{} has no branch {branch} to pull from", repo.display())));
        }
        return first_push(db, source.as_mut(), target, &branch, opts, report);
    };
    let manifest = meta::load_manifest(repo, &head)?;
    let base = source.sync_state(&opts.repo_id, &branch)?;
    let base = base.filter(|b| git::resolve(repo, b).is_some());
    let present: Vec<String> = source.tables()?.into_iter().filter(|t| t != STATE_TABLE).collect();
    if base.is_none() && manifest.tables.iter().all(|t| !present.contains(t)) {
        // A database that has none of the tables: the first sync is an import.
        if opts.direction == Direction::PushOnly {
            return Err(Error::Refused("the database has none of the repository's tables; nothing to push".into()));
        }
        drop(source);
        return first_pull(db, repo, &branch, &head, opts, report);
    }
    // The base only has to exist, not to be an ancestor of the head (a
    // rewritten branch still merges against it); a repository that lost it
    // (recreated) syncs as if for the first time (see above).
    if base.as_deref() == Some(head.as_str()) {
        // Nothing changed in the repository since the last sync: the
        // database's changes, if any, are one export (which reuses the blobs
        // of unchanged chunks and makes no commit when nothing changed).
        if opts.direction == Direction::PullOnly {
            return Ok(report);
        }
        return push(db, source.as_mut(), target, &branch, &head, &manifest, opts, report, true);
    }
    let base_files = match &base {
        Some(b) => data_files(repo, b)?,
        None => HashMap::new(),
    };
    let head_files = data_files(repo, &head)?;
    let head_blobs: HashSet<String> = head_files.values().cloned().collect();
    let base_blobs: HashSet<String> = base_files.values().cloned().collect();

    let mut plans: Vec<TableChanges> = Vec::new();
    let mut conflicts = Vec::new();
    let mut theirs_changed_anything = false;
    for name in &manifest.tables {
        let meta: TableMeta = meta::read_table_meta_in(repo, &head, &manifest, name)?
            .ok_or_else(|| meta::Error::Layout(format!("no metadata for table {name}")))?;
        if !present.contains(name) {
            if opts.direction != Direction::PushOnly {
                report.created.push(name.clone());
                theirs_changed_anything = true;
            }
            continue;
        }
        let mut shape = source.describe(name)?;
        // Cut as the export did: by partition first when it used --chunk-by.
        let partition = match &manifest.chunking.partition_by {
            Some(spec) => {
                let by = ChunkBy::parse(spec)?;
                let col = shape.columns.iter().position(|c| c.name == by.column).ok_or_else(|| {
                    Error::Refused(format!("table {name} has no column {:?} to partition by", by.column))
                })?;
                shape.order_first = Some(by.column.clone());
                Some((col, by))
            }
            None => None,
        };
        let base_meta: Option<TableMeta> = match &base {
            Some(b) => meta::read_table_meta(repo, b, name)?,
            None => None,
        };
        // Rows are merged in the repository's columns; column changes made
        // in git since the base become ALTERs run before the row changes.
        let plan = column_plan(name, &shape.columns, &meta.columns, base_meta.as_ref().map(|m| m.columns.as_slice()))?;
        if !plan.ddl.is_empty() {
            theirs_changed_anything = true;
        }
        let key: Vec<usize> = meta
            .primary_key
            .iter()
            .map(|k| {
                meta.columns.iter().position(|c| &c.name == k).ok_or_else(|| meta::Error::Refused {
                    file: layout::table_meta_path(name),
                    reason: format!("primary_key: {k:?} is not a column of the table"),
                })
            })
            .collect::<Result<_, _>>()?;
        // Ours: the database's rows in chunks that are not base files.
        // Without a base (a first sync between a database and a repository
        // that both have the table), chunks identical on both sides hold
        // rows that agree, so only the others are compared.
        let match_blobs = if base.is_some() { &base_blobs } else { &head_blobs };
        let (ours_rows, in_db) = database_changes(source.as_mut(), &shape, partition, &meta, &manifest, match_blobs)?;
        let mut ours = Side::default();
        for r in ours_rows {
            ours.add(&key, project(r, &plan.from_db));
        }
        // Base: the rows of base files the database or the head no longer has.
        let mut base_side: HashMap<Row, Vec<BaseRow>> = HashMap::new();
        if let (Some(b), Some(bm)) = (&base, &base_meta) {
            let mut wanted = BTreeSet::new();
            let mut where_: HashMap<String, (bool, bool)> = HashMap::new();
            for c in &bm.chunks {
                let blob = base_files.get(&c.file).cloned().unwrap_or_default();
                let (d, h) = (in_db.contains(&blob), head_blobs.contains(&blob));
                if !d || !h {
                    wanted.insert(c.file.clone());
                    where_.insert(c.file.clone(), (d, h));
                }
            }
            rows_of(repo, b, bm, &wanted, &mut Vec::new(), &mut |file, row| {
                let row = project(row, &plan.from_base);
                let (in_db, in_head) = where_[file];
                let k = if key.is_empty() { row.clone() } else { key.iter().map(|i| row[*i].clone()).collect() };
                base_side.entry(k).or_default().push(BaseRow { row, in_db, in_head });
            })?;
        }
        // Theirs: rows of head files that are not base files.
        let mut theirs = Side::default();
        let wanted: BTreeSet<String> = meta
            .chunks
            .iter()
            .filter(|c| {
                head_files.get(&c.file).is_some_and(|b| {
                    if base.is_some() {
                        !base_blobs.contains(b)
                    } else {
                        !in_db.contains(b)
                    }
                })
            })
            .map(|c| c.file.clone())
            .collect();
        rows_of(repo, &head, &meta, &wanted, &mut report.edited_chunks, &mut |_, row| theirs.add(&key, row))?;
        if !wanted.is_empty() || base_side.values().flatten().any(|r| !r.in_head) {
            theirs_changed_anything = true;
        }

        let keys: BTreeSet<Row> =
            ours.keys().chain(theirs.keys()).chain(base_side.keys()).cloned().collect::<BTreeSet<_>>();
        let (mut deletes, mut inserts, mut updates) = (Vec::new(), Vec::new(), Vec::new());
        for k in &keys {
            let b = base_side.get(k);
            if key.is_empty() {
                // Identity by content: merge copy counts.
                let count =
                    |pred: &dyn Fn(&BaseRow) -> bool| b.map(|v| v.iter().filter(|r| pred(r)).count()).unwrap_or(0);
                let n_base = b.map(Vec::len).unwrap_or(0) as i64;
                let n_ours = (ours.counts.get(k).copied().unwrap_or(0) + count(&|r| r.in_db)) as i64;
                let n_theirs = (theirs.counts.get(k).copied().unwrap_or(0) + count(&|r| r.in_head)) as i64;
                let merged = (n_base + (n_ours - n_base) + (n_theirs - n_base)).max(0);
                for _ in merged..n_ours {
                    deletes.push(k.clone());
                }
                for _ in n_ours..merged {
                    inserts.push(k.clone());
                }
                continue;
            }
            let base_row = b.and_then(|v| v.first());
            let o = ours.rows.get(k).or_else(|| base_row.filter(|r| r.in_db).map(|r| &r.row));
            let t = theirs.rows.get(k).or_else(|| base_row.filter(|r| r.in_head).map(|r| &r.row));
            let merged = merge_row(
                name,
                &meta.columns,
                k,
                base_row.map(|r| &r.row),
                o,
                t,
                opts.on_conflict,
                &mut conflicts,
                &mut report.resolved,
            );
            match (o, merged) {
                (Some(_), None) => deletes.push(o.cloned().expect("present")),
                (None, Some(m)) => inserts.push(m),
                (Some(o), Some(m)) if *o != m => {
                    let changed = (0..m.len()).filter(|i| o[*i] != m[*i]).collect();
                    updates.push((m, changed));
                }
                _ => {}
            }
        }
        plans.push(TableChanges {
            table: meta.name,
            columns: meta.columns,
            key,
            ddl: plan.ddl,
            deletes,
            inserts,
            updates,
        });
    }
    if !conflicts.is_empty() {
        return Err(Error::Conflicts { count: conflicts.len(), report: conflict_report(&conflicts) });
    }
    if opts.direction == Direction::PushOnly && theirs_changed_anything && opts.on_conflict != OnConflict::Ours {
        return Err(Error::Refused(format!(
            "{branch} changed since the last sync and --push-only would overwrite those changes: \
             sync without --push-only (or --pull-only first), or pass --on-conflict ours to overwrite them"
        )));
    }
    if opts.direction != Direction::PushOnly {
        if !report.created.is_empty() {
            // Exactly the commit merged (the branch may have moved meanwhile).
            let engine = source.engine();
            let plan = import::prepare(repo, &head, Some(&report.created), engine)?;
            import::run(repo, &plan, source.as_mut(), &ImportOptions::default())?;
        }
        source.apply(&plans, Some((&opts.repo_id, &branch, &head)))?;
        for t in &plans {
            if !t.deletes.is_empty() || !t.inserts.is_empty() || !t.updates.is_empty() {
                report.pulled.push(PulledTable {
                    table: t.table.clone(),
                    inserted: t.inserts.len(),
                    updated: t.updates.len(),
                    deleted: t.deletes.len(),
                });
            }
        }
    }
    if opts.direction != Direction::PullOnly {
        return push(db, source.as_mut(), target, &branch, &head, &manifest, opts, report, false);
    }
    Ok(report)
}

/// Records `commit` as the last commit of `branch` that `database` and the
/// repository agreed on: what an export does, so that the first sync after
/// it merges against the export instead of without a base.
pub fn record_base(db: &dyn Opener, repo_id: &str, branch: &str, commit: &str) -> Result<(), Error> {
    Ok(db.open(None)?.apply(&[], Some((repo_id, branch, commit)))?)
}

/// The database holds the merge: an export on top of the head writes only
/// chunks whose rows changed, and nothing if none did; the state follows.
#[allow(clippy::too_many_arguments)]
fn push(
    db: &dyn Opener,
    source: &mut dyn Target,
    target: &git::Target,
    branch: &str,
    head: &str,
    manifest: &layout::Manifest,
    opts: &SyncOptions,
    mut report: SyncReport,
    repo_unchanged: bool,
) -> Result<SyncReport, Error> {
    let database = db.label();
    let export = export_options(opts, branch, &database, Some(&manifest.chunking))?;
    // On Dolt, when only the database moved, Dolt's own diff says which
    // chunks to rewrite.
    let shortcut = if repo_unchanged {
        let message = export.message.clone().unwrap_or_default();
        crate::incremental::export_changes(source, &target.path, branch, head, &opts.repo_id, manifest, &message)?
    } else {
        None
    };
    report.via_dolt_diff = shortcut.is_some();
    let pushed = match shortcut {
        Some(pushed) => pushed,
        None => export::export_commit(source, &database, &target.path, &export, true)?,
    };
    if pushed.is_some() {
        git::push(target, branch)?;
    }
    let synced = pushed.map_or_else(|| head.to_string(), |p| p.to_string());
    source.apply(&[], Some((&opts.repo_id, branch, &synced)))?;
    report.pushed = pushed;
    Ok(report)
}

/// The export a sync makes: the caller's settings, else the repository's
/// chunking (or the defaults, into an empty repository).
fn export_options(
    opts: &SyncOptions,
    branch: &str,
    database: &str,
    chunking: Option<&layout::Chunking>,
) -> Result<ExportOptions, Error> {
    let chunk_by = chunking.and_then(|c| c.partition_by.as_deref()).map(ChunkBy::parse).transpose()?;
    let mut export = opts.export.clone().unwrap_or_else(|| ExportOptions {
        chunk_by,
        max_chunk_bytes: chunking.map(|c| c.max_chunk_bytes).unwrap_or(50 << 20),
        compression: chunking.map(|c| c.compression).unwrap_or_default(),
        tables: None,
        branch: None,
        message: None,
        progress: Default::default(),
    });
    export.branch = Some(branch.to_string());
    export.message.get_or_insert_with(|| format!("Sync from {database}"));
    Ok(export)
}

/// The first sync into a database without the repository's tables: an
/// import, then the state.
fn first_pull(
    db: &dyn Opener,
    repo: &Path,
    branch: &str,
    head: &str,
    opts: &SyncOptions,
    mut report: SyncReport,
) -> Result<SyncReport, Error> {
    let plan = import::prepare(repo, head, None, db.engine(Some(&meta::load_manifest(repo, head)?.source.engine))?)?;
    let mut database = db.open(Some(&plan.source_engine))?;
    let imported = import::run(repo, &plan, database.as_mut(), &ImportOptions::default())?;
    report.created = imported.tables.into_iter().map(|t| t.table).collect();
    report.edited_chunks = imported.edited_chunks;
    database.apply(&[], Some((&opts.repo_id, branch, head)))?;
    Ok(report)
}

fn first_push(
    db: &dyn Opener,
    source: &mut dyn Target,
    target: &git::Target,
    branch: &str,
    opts: &SyncOptions,
    mut report: SyncReport,
) -> Result<SyncReport, Error> {
    let database = db.label();
    let export = export_options(opts, branch, &database, None)?;
    let pushed = export::export_commit(source, &database, &target.path, &export, false)?;
    if let Some(c) = &pushed {
        git::push(target, branch)?;
        source.apply(&[], Some((&opts.repo_id, branch, &c.to_string())))?;
    }
    report.pushed = pushed;
    Ok(report)
}

/// How an engine spells what [`statements`] needs.
pub struct Dialect {
    pub quote: fn(&str) -> String,
    /// The placeholder for parameter `n` (1-based) bound to a cell of `column`.
    pub param: fn(usize, &layout::Column) -> String,
    /// Null-safe equality.
    pub is: &'static str,
    /// `DELETE` of one row of `table` matching `condition`.
    pub delete_one: fn(&str, &str) -> String,
}

/// How SQLite spells sync's statements.
impl Dialect {
    /// SQLite and doltlite.
    pub const SQLITE: Dialect = Dialect {
        quote: |ident| crate::schema::Engine::Sqlite.quote(ident),
        param: |_, _| "?".into(),
        is: "IS",
        delete_one: |table, cond| {
            format!("DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {cond} LIMIT 1)")
        },
    };
}

/// One statement and the cells bound to its placeholders, in order.
pub struct Stmt<'a> {
    pub sql: String,
    pub params: Vec<(&'a Cell, &'a layout::Column)>,
}

/// A text column, for binding the state table's values.
pub fn text_column(name: &str) -> layout::Column {
    layout::Column {
        name: name.into(),
        declared_type: "text".into(),
        affinity: crate::value::Affinity::Text,
        not_null: true,
        default: None,
        binary: false,
    }
}

/// The statements for `changes`, in an order that keeps keys unique: all
/// deletes, then updates, then inserts.
pub fn statements<'a>(d: &Dialect, changes: &'a [TableChanges]) -> Vec<Stmt<'a>> {
    let mut out: Vec<Stmt<'a>> = Vec::new();
    for t in changes {
        let table = (d.quote)(&t.table);
        for change in &t.ddl {
            let sql = match change {
                ColumnChange::Rename(from, to) => {
                    format!("ALTER TABLE {table} RENAME COLUMN {} TO {}", (d.quote)(from), (d.quote)(to))
                }
                ColumnChange::Drop(name) => format!("ALTER TABLE {table} DROP COLUMN {}", (d.quote)(name)),
                ColumnChange::Add(name, ty) => format!("ALTER TABLE {table} ADD COLUMN {} {ty}", (d.quote)(name)),
            };
            out.push(Stmt { sql: sql.trim_end().to_string(), params: Vec::new() });
        }
    }
    let condition =
        |t: &'a TableChanges, row: &'a Row, first: usize, params: &mut Vec<(&'a Cell, &'a layout::Column)>| {
            let cols: Vec<usize> = if t.key.is_empty() { (0..t.columns.len()).collect() } else { t.key.clone() };
            let parts: Vec<String> = cols
                .iter()
                .enumerate()
                .map(|(n, &i)| {
                    params.push((&row[i], &t.columns[i]));
                    let op = if row[i].is_none() { d.is } else { "=" };
                    format!("{} {op} {}", (d.quote)(&t.columns[i].name), (d.param)(first + n, &t.columns[i]))
                })
                .collect();
            parts.join(" AND ")
        };
    for t in changes {
        let table = (d.quote)(&t.table);
        for row in &t.deletes {
            let mut params = Vec::new();
            let cond = condition(t, row, 1, &mut params);
            let sql = if t.key.is_empty() {
                (d.delete_one)(&table, &cond)
            } else {
                format!("DELETE FROM {table} WHERE {cond}")
            };
            out.push(Stmt { sql, params });
        }
    }
    for t in changes {
        let table = (d.quote)(&t.table);
        for (row, changed) in &t.updates {
            let mut params = Vec::new();
            let sets: Vec<String> = changed
                .iter()
                .enumerate()
                .map(|(n, &i)| {
                    params.push((&row[i], &t.columns[i]));
                    format!("{} = {}", (d.quote)(&t.columns[i].name), (d.param)(n + 1, &t.columns[i]))
                })
                .collect();
            let cond = condition(t, row, changed.len() + 1, &mut params);
            out.push(Stmt { sql: format!("UPDATE {table} SET {} WHERE {cond}", sets.join(", ")), params });
        }
    }
    for t in changes {
        let table = (d.quote)(&t.table);
        let cols: Vec<String> = t.columns.iter().map(|c| (d.quote)(&c.name)).collect();
        let marks: Vec<String> = t.columns.iter().enumerate().map(|(n, c)| (d.param)(n + 1, c)).collect();
        let sql = format!("INSERT INTO {table} ({}) VALUES ({})", cols.join(", "), marks.join(", "));
        for row in &t.inserts {
            out.push(Stmt { sql: sql.clone(), params: row.iter().zip(&t.columns).collect() });
        }
    }
    out
}

/// The state table's DDL, valid in SQLite, PostgreSQL and MySQL.
pub fn state_ddl(quote: fn(&str) -> String) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (repo VARCHAR(500) NOT NULL, branch VARCHAR(200) NOT NULL, \
         commit_id VARCHAR(64) NOT NULL, synced_at VARCHAR(40) NOT NULL, source_rev VARCHAR(64), \
         PRIMARY KEY (repo, branch))",
        quote(STATE_TABLE)
    )
}

/// Statements that record `(repo, branch) → commit`, with their values.
pub fn state_statements(d: &Dialect, repo: &str, branch: &str, commit: &str) -> Vec<(String, Vec<Cell>)> {
    let t = (d.quote)(STATE_TABLE);
    let c = text_column("v");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    vec![
        (
            format!("DELETE FROM {t} WHERE repo = {} AND branch = {}", (d.param)(1, &c), (d.param)(2, &c)),
            vec![Some(repo.to_string()), Some(branch.to_string())],
        ),
        (
            format!(
                "INSERT INTO {t} (repo, branch, commit_id, synced_at) VALUES ({}, {}, {}, {})",
                (d.param)(1, &c),
                (d.param)(2, &c),
                (d.param)(3, &c),
                (d.param)(4, &c)
            ),
            vec![Some(repo.to_string()), Some(branch.to_string()), Some(commit.to_string()), Some(now.to_string())],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Affinity;

    fn cols(names: &[(&str, &str)]) -> Vec<layout::Column> {
        names
            .iter()
            .map(|(n, t)| layout::Column {
                name: n.to_string(),
                declared_type: t.to_string(),
                affinity: Affinity::Text,
                not_null: false,
                default: None,
                binary: false,
            })
            .collect()
    }

    fn row(cells: &[&str]) -> Row {
        cells.iter().map(|c| if *c == "NULL" { None } else { Some(c.to_string()) }).collect()
    }

    fn merge(
        base: Option<&Row>,
        ours: Option<&Row>,
        theirs: Option<&Row>,
        on: OnConflict,
    ) -> (Option<Row>, usize, usize) {
        let columns = cols(&[("id", "int"), ("a", "text"), ("b", "text")]);
        let (mut conflicts, mut resolved) = (Vec::new(), 0);
        let key = row(&["1"]);
        let out = merge_row("t", &columns, &key, base, ours, theirs, on, &mut conflicts, &mut resolved);
        (out, conflicts.len(), resolved)
    }

    #[test]
    fn cells_changed_on_one_side_merge_without_conflict() {
        let base = row(&["1", "x", "y"]);
        let ours = row(&["1", "X", "y"]);
        let theirs = row(&["1", "x", "Y"]);
        assert_eq!(
            merge(Some(&base), Some(&ours), Some(&theirs), OnConflict::Fail),
            (Some(row(&["1", "X", "Y"])), 0, 0)
        );
        // One side unchanged: the other wins whole, deletions included.
        assert_eq!(merge(Some(&base), Some(&base), Some(&theirs), OnConflict::Fail), (Some(theirs.clone()), 0, 0));
        assert_eq!(merge(Some(&base), Some(&ours), Some(&base), OnConflict::Fail), (Some(ours.clone()), 0, 0));
        assert_eq!(merge(Some(&base), None, Some(&base), OnConflict::Fail), (None, 0, 0));
        // The same change on both sides is no conflict.
        assert_eq!(merge(Some(&base), Some(&ours), Some(&ours), OnConflict::Fail), (Some(ours), 0, 0));
    }

    #[test]
    fn a_cell_changed_differently_on_both_sides_conflicts_or_is_resolved() {
        let base = row(&["1", "x", "y"]);
        let ours = row(&["1", "ours", "y"]);
        let theirs = row(&["1", "theirs", "Y"]);
        let (_, conflicts, _) = merge(Some(&base), Some(&ours), Some(&theirs), OnConflict::Fail);
        assert_eq!(conflicts, 1, "only column a conflicts; b merges");
        assert_eq!(
            merge(Some(&base), Some(&ours), Some(&theirs), OnConflict::Ours),
            (Some(row(&["1", "ours", "Y"])), 0, 1)
        );
        assert_eq!(
            merge(Some(&base), Some(&ours), Some(&theirs), OnConflict::Theirs),
            (Some(row(&["1", "theirs", "Y"])), 0, 1)
        );
        // NULL is a value like any other.
        let nulled = row(&["1", "NULL", "y"]);
        assert_eq!(merge(Some(&base), Some(&nulled), Some(&theirs), OnConflict::Fail).1, 1);
    }

    #[test]
    fn deleted_on_one_side_and_changed_on_the_other_is_a_row_conflict() {
        let base = row(&["1", "x", "y"]);
        let theirs = row(&["1", "x", "changed"]);
        assert_eq!(merge(Some(&base), None, Some(&theirs), OnConflict::Fail).1, 1);
        assert_eq!(merge(Some(&base), None, Some(&theirs), OnConflict::Ours), (None, 0, 1));
        assert_eq!(merge(Some(&base), None, Some(&theirs), OnConflict::Theirs), (Some(theirs), 0, 1));
        // Inserted on both sides with the same key: cells merge against
        // NULLs, so only cells both sides set, differently, conflict.
        let ours = row(&["1", "a", "NULL"]);
        let theirs = row(&["1", "NULL", "b"]);
        assert_eq!(merge(None, Some(&ours), Some(&theirs), OnConflict::Fail), (Some(row(&["1", "a", "b"])), 0, 0));
        let theirs = row(&["1", "other", "b"]);
        assert_eq!(merge(None, Some(&ours), Some(&theirs), OnConflict::Fail).1, 1);
    }

    #[test]
    fn the_column_plan_finds_renames_drops_and_adds_made_in_git() {
        let db = cols(&[("id", "int"), ("old", "text"), ("gone", "text")]);
        let base = db.clone();
        let head = cols(&[("id", "int"), ("new", "text"), ("added", "real")]);
        let plan = column_plan("t", &db, &head, Some(&base)).unwrap();
        let ddl: Vec<String> = plan.ddl.iter().map(|c| format!("{c:?}")).collect();
        assert_eq!(ddl, ["Rename(\"old\", \"new\")", "Drop(\"gone\")", "Add(\"added\", \"real\")"]);
        assert_eq!(plan.from_db, [Some(0), Some(1), None]);
        assert_eq!(plan.from_base, [Some(0), Some(1), None]);
        assert_eq!(project(row(&["1", "v", "g"]), &plan.from_db), row(&["1", "v", "NULL"]));
    }

    #[test]
    fn the_column_plan_refuses_column_changes_on_both_sides() {
        let base = cols(&[("id", "int"), ("a", "text")]);
        let db = cols(&[("id", "int"), ("a", "text"), ("db_only", "text")]);
        let head = cols(&[("id", "int"), ("a", "text"), ("git_only", "text")]);
        let err = column_plan("t", &db, &head, Some(&base)).err().expect("refused");
        assert!(err.to_string().contains("db_only"), "{err}");
        // The same columns everywhere: nothing to do, rows map one to one.
        let plan = column_plan("t", &base, &base, Some(&base)).unwrap();
        assert!(plan.ddl.is_empty());
        assert_eq!(plan.from_db, [Some(0), Some(1)]);
    }
}
