//! Verify: whether a database holds exactly what a commit of the
//! repository holds, and where they first differ.

use std::collections::BTreeMap;
use std::path::Path;

use crate::chunk::{read_rows, ContentHash};
use crate::csv::Cell;
use crate::engine::{self, Shape, Source};
use crate::layout::{self, RowHash, TableMeta};
use crate::meta::{load_manifest, read_table_meta_in};
use crate::{chunk, git, meta};

/// What a verification failed with (a difference is not a failure: it is
/// in the report).
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
}

crate::from_engine_error!(Error);

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
    read_rows::<Error>(repo, rev, meta, typed, &mut Vec::new(), &mut |_, _, _, record| {
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
    read_rows::<Error>(repo, rev, meta, typed, &mut Vec::new(), &mut |_, _, _, record| {
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

/// Compares the tables of a commit of `repo` (the head of `branch`, or of
/// the default branch) with those of `source`.
pub fn verify(source: &mut dyn Source, repo: &Path, branch: Option<&str>) -> Result<Vec<TableDiff>, Error> {
    let branch = match branch {
        Some(b) => b.to_string(),
        None => git::default_branch(repo)?,
    };
    let rev = format!("refs/heads/{branch}");
    let manifest = load_manifest(repo, &rev)?;
    // The database side is read exactly as an export reads it, so both
    // sides hash the same canonical records.
    let present = source.tables()?;
    let typed = matches!(manifest.source.engine.as_str(), "sqlite" | "doltlite");
    let mut out = Vec::new();
    let mut edited = Vec::new();
    for name in &manifest.tables {
        let meta = read_table_meta_in(repo, &rev, &manifest, name)?
            .ok_or_else(|| meta::Error::Layout(format!("no metadata for table {name}")))?;
        let mut repo_hash = ContentHash::default();
        let repo_rows = read_rows::<Error>(repo, &rev, &meta, typed, &mut edited, &mut |_, _, _, record| {
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
            if same_content { None } else { first_difference(source, &shape, repo, &rev, &meta, typed)? };
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
