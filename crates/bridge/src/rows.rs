//! Reading an export's tables without a database: a page of rows across
//! chunks, and what changed in a table between two commits, row by row.
//! Rows are matched by primary key (by content, for a table without one,
//! as sync matches them) and reported as added, deleted or changed, with
//! the changed cells named. Only chunks that differ are read: a chunk
//! whose SHA-256 both sides share holds the same rows.
//!
//! Callers hand in the chunk files' bytes (`read`), so this works on any
//! store: a git directory, or the server's object store. Every read is
//! bounded by `Limits`.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::chunk;
use crate::chunk::chunk_cells;
use crate::csv::Cell;
use crate::layout::{ChunkMeta, TableMeta};

/// What reading a table's rows without a database failed with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A chunk file that does not read as the table's rows.
    #[error(transparent)]
    Chunk(#[from] chunk::Error),
    /// More to read than [`Limits`] allows for one view.
    #[error("{0}")]
    OverLimit(String),
    /// The caller's reader failed.
    #[error("reading {file}: {reason}")]
    Read { file: String, reason: String },
}

/// How much a view may read and show.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Stored bytes of chunk files read, all sides together.
    pub read_bytes: u64,
    /// Rows reported (added, deleted and changed together).
    pub rows: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { read_bytes: 64 << 20, rows: 1_000 }
    }
}

/// What receives a chunk's rows, with their line numbers.
type EachCell<'e> = dyn FnMut(usize, &[Cell]) -> Result<(), Error> + 'e;

/// Reads a chunk file's stored bytes; `None` when it is missing.
pub type ReadChunk<'r> = dyn FnMut(&ChunkMeta) -> Result<Option<Vec<u8>>, Error> + 'r;

/// Names the content of a chunk file as it is stored (its git blob id):
/// two chunk files with one id hold the same rows. Metadata alone cannot
/// say so: a chunk edited in git keeps the SHA-256 its metadata recorded.
pub type ChunkId<'r> = dyn Fn(&ChunkMeta) -> Option<String> + 'r;

/// One side of a comparison: the table's metadata there (`None`: no such
/// table), what names its chunk files' content, and what reads them.
pub struct Side<'s, 'r> {
    pub meta: Option<&'s TableMeta>,
    pub id: &'s ChunkId<'r>,
    pub read: &'s mut ReadChunk<'r>,
}

/// The rows of `chunk` (its stored bytes `data`), with their line numbers.
fn cells_of(meta: &TableMeta, chunk: &ChunkMeta, data: Vec<u8>, each: &mut EachCell<'_>) -> Result<u64, Error> {
    // A chunk as exported inflates to its recorded size at most; an
    // edited one to the table's chunk limit (`chunk_cells` decides).
    let intact = hex::encode(Sha256::digest(&data)) == chunk.sha256;
    chunk_cells(meta, chunk, data, intact, each)
}

/// A page of a table's rows.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Page {
    pub rows: Vec<Vec<Cell>>,
    /// Whether rows follow this page.
    pub more: bool,
}

/// Rows `offset..offset + count` of the table, in key order (the order of
/// its chunks), reading only the chunks that hold them.
pub fn page(
    meta: &TableMeta,
    offset: u64,
    count: usize,
    limits: Limits,
    read: &mut ReadChunk<'_>,
) -> Result<Page, Error> {
    let mut out = Page::default();
    let mut skipped = 0u64;
    let mut read_bytes = 0u64;
    for chunk in &meta.chunks {
        if skipped + chunk.rows <= offset {
            skipped += chunk.rows;
            continue;
        }
        if out.rows.len() >= count {
            out.more = true;
            break;
        }
        read_bytes += chunk.bytes;
        if read_bytes > limits.read_bytes {
            return Err(Error::OverLimit(format!(
                "{}: more than {} bytes of chunks to read for one page",
                chunk.file, limits.read_bytes
            )));
        }
        let data = read(chunk)?.ok_or_else(|| chunk::Error::damaged(&chunk.file, 0, "chunk file is missing"))?;
        let mut n = 0u64;
        cells_of(meta, chunk, data, &mut |_, cells| {
            let at = skipped + n;
            n += 1;
            if at >= offset {
                if out.rows.len() < count {
                    out.rows.push(cells.to_vec());
                } else {
                    out.more = true;
                }
            }
            Ok(())
        })?;
        skipped += n;
    }
    Ok(out)
}

/// One changed row: its key, and each changed cell as `(column, before, after)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangedRow {
    pub key: Vec<(String, Cell)>,
    pub cells: Vec<(String, Cell, Cell)>,
    /// The whole row after the change, in the new columns' order.
    pub row: Vec<Cell>,
}

/// What changed in one table between two commits.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TableChange {
    pub table: String,
    /// Column names before and after, when they differ.
    pub columns: Option<(Vec<String>, Vec<String>)>,
    /// Columns of the rows below: the new ones (the old ones for a dropped table).
    pub header: Vec<String>,
    pub added: Vec<Vec<Cell>>,
    pub deleted: Vec<Vec<Cell>>,
    pub changed: Vec<ChangedRow>,
    /// Counts over the whole table, also past what is listed.
    pub added_count: u64,
    pub deleted_count: u64,
    pub changed_count: u64,
    /// Rows past [`Limits::rows`] are counted but not listed.
    pub truncated: bool,
    /// Chunk files read on each side, and in both.
    pub chunks_read: usize,
}

/// Rows of one side, by key (or by content, with copies counted).
struct Rows {
    columns: Vec<String>,
    by_key: HashMap<Vec<Cell>, Vec<Cell>>,
    copies: HashMap<Vec<Cell>, u64>,
}

fn key_positions(meta: &TableMeta) -> Vec<usize> {
    meta.primary_key.iter().filter_map(|k| meta.columns.iter().position(|c| &c.name == k)).collect()
}

/// The rows of `meta`'s chunks whose content the other side has not
/// (`shared`: the ids of the other side's chunk files).
#[allow(clippy::too_many_arguments)]
fn changed_rows(
    meta: &TableMeta,
    shared: &std::collections::HashSet<String>,
    key: &[usize],
    read_bytes: &mut u64,
    limits: Limits,
    chunks_read: &mut usize,
    id: &ChunkId<'_>,
    read: &mut ReadChunk<'_>,
) -> Result<Rows, Error> {
    let mut side = Rows {
        columns: meta.columns.iter().map(|c| c.name.clone()).collect(),
        by_key: HashMap::new(),
        copies: HashMap::new(),
    };
    for chunk in meta.chunks.iter().filter(|c| id(c).is_none_or(|i| !shared.contains(&i))) {
        *read_bytes += chunk.bytes;
        if *read_bytes > limits.read_bytes {
            return Err(Error::OverLimit(format!(
                "table {}: more than {} bytes of changed chunks to compare",
                meta.name, limits.read_bytes
            )));
        }
        *chunks_read += 1;
        let data = read(chunk)?.ok_or_else(|| chunk::Error::damaged(&chunk.file, 0, "chunk file is missing"))?;
        cells_of(meta, chunk, data, &mut |_, cells| {
            if key.is_empty() {
                *side.copies.entry(cells.to_vec()).or_default() += 1;
            } else {
                side.by_key.insert(key.iter().map(|&i| cells[i].clone()).collect(), cells.to_vec());
            }
            Ok(())
        })?;
    }
    Ok(side)
}

/// What changed in a table from the `old` side to the `new` one. Only
/// chunk files whose content the other side does not have are read.
pub fn diff_table(old: Side<'_, '_>, new: Side<'_, '_>, limits: Limits) -> Result<TableChange, Error> {
    let ids = |side: &Side<'_, '_>| -> std::collections::HashSet<String> {
        side.meta.map(|m| m.chunks.iter().filter_map(|c| (side.id)(c)).collect()).unwrap_or_default()
    };
    let (old_ids, new_ids) = (ids(&old), ids(&new));
    let Side { meta: old, id: id_old, read: read_old } = old;
    let Side { meta: new, id: id_new, read: read_new } = new;
    let Some(some) = new.or(old) else { return Ok(TableChange::default()) };
    let mut change = TableChange { table: some.name.clone(), ..TableChange::default() };
    let names = |m: &TableMeta| m.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    if let (Some(o), Some(n)) = (old, new) {
        if names(o) != names(n) {
            change.columns = Some((names(o), names(n)));
        }
    }
    change.header = names(some);
    // Rows are matched by the new side's key where both sides have one, by
    // content otherwise.
    let same_key = match (old, new) {
        (Some(o), Some(n)) => o.primary_key == n.primary_key,
        _ => true,
    };
    let key_of = |m: Option<&TableMeta>| -> Vec<usize> {
        match m {
            Some(m) if same_key => key_positions(m),
            _ => Vec::new(),
        }
    };
    let (old_key, new_key) = (key_of(old), key_of(new));
    let mut read_bytes = 0;
    let mut chunks_read = 0;
    let empty = || Rows { columns: Vec::new(), by_key: HashMap::new(), copies: HashMap::new() };
    let before = match old {
        Some(o) => changed_rows(o, &new_ids, &old_key, &mut read_bytes, limits, &mut chunks_read, id_old, read_old)?,
        None => empty(),
    };
    let after = match new {
        Some(n) => changed_rows(n, &old_ids, &new_key, &mut read_bytes, limits, &mut chunks_read, id_new, read_new)?,
        None => empty(),
    };
    change.chunks_read = chunks_read;
    // Old rows in the new columns' order (absent columns NULL).
    let header = change.header.clone();
    let project = |row: &[Cell], columns: &[String]| -> Vec<Cell> {
        header.iter().map(|h| columns.iter().position(|c| c == h).and_then(|i| row[i].clone())).collect()
    };
    let room = |change: &TableChange| change.added.len() + change.deleted.len() + change.changed.len() < limits.rows;
    let listed = |change: &mut TableChange| {
        let ok = room(change);
        if !ok {
            change.truncated = true;
        }
        ok
    };
    let key_names: Vec<String> = new.or(old).map(|m| m.primary_key.clone()).unwrap_or_default();
    let keyed = !old_key.is_empty() || !new_key.is_empty();
    if keyed {
        let mut keys: Vec<&Vec<Cell>> = after.by_key.keys().chain(before.by_key.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let b = before.by_key.get(key).map(|r| project(r, &before.columns));
            let a = after.by_key.get(key).map(|r| project(r, &after.columns));
            let key_cells: Vec<(String, Cell)> = key_names.iter().cloned().zip(key.iter().cloned()).collect();
            match (b, a) {
                (None, Some(a)) => {
                    change.added_count += 1;
                    if listed(&mut change) {
                        change.added.push(a);
                    }
                }
                (Some(b), None) => {
                    change.deleted_count += 1;
                    if listed(&mut change) {
                        change.deleted.push(b);
                    }
                }
                (Some(b), Some(a)) if a != b => {
                    change.changed_count += 1;
                    if listed(&mut change) {
                        let cells = header
                            .iter()
                            .zip(b.iter().zip(&a))
                            .filter(|(_, (x, y))| x != y)
                            .map(|(h, (x, y))| (h.clone(), x.clone(), y.clone()))
                            .collect();
                        change.changed.push(ChangedRow { key: key_cells, cells, row: a });
                    }
                }
                _ => {}
            }
        }
    } else {
        let mut rows: Vec<(Vec<Cell>, i64)> = Vec::new();
        let mut net: HashMap<Vec<Cell>, i64> = HashMap::new();
        for (row, n) in &after.copies {
            *net.entry(project(row, &after.columns)).or_default() += *n as i64;
        }
        for (row, n) in &before.copies {
            *net.entry(project(row, &before.columns)).or_default() -= *n as i64;
        }
        rows.extend(net.into_iter().filter(|(_, n)| *n != 0));
        rows.sort();
        for (row, n) in rows {
            for _ in 0..n.unsigned_abs() {
                if n > 0 {
                    change.added_count += 1;
                    if listed(&mut change) {
                        change.added.push(row.clone());
                    }
                } else {
                    change.deleted_count += 1;
                    if listed(&mut change) {
                        change.deleted.push(row.clone());
                    }
                }
            }
        }
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Column;
    use crate::value::Affinity;

    fn column(name: &str) -> Column {
        Column {
            name: name.into(),
            declared_type: "TEXT".into(),
            affinity: Affinity::Text,
            not_null: false,
            default: None,
            binary: false,
        }
    }

    /// A table whose chunks hold `chunks` (rows of cells), and the files.
    fn table(columns: &[&str], key: &[&str], chunks: &[&[&[&str]]]) -> (TableMeta, HashMap<String, Vec<u8>>) {
        let mut files = HashMap::new();
        let mut metas = Vec::new();
        for (n, rows) in chunks.iter().enumerate() {
            let mut csv = Vec::new();
            let head: Vec<Cell> = columns.iter().map(|c| Some(c.to_string())).collect();
            crate::csv::write_record(&mut csv, &head);
            for row in rows.iter() {
                let cells: Vec<Cell> = row.iter().map(|c| (*c != "NULL").then(|| c.to_string())).collect();
                crate::csv::write_record(&mut csv, &cells);
            }
            let file = format!("data/t/t_{:06}.csv", n + 1);
            metas.push(ChunkMeta {
                file: file.clone(),
                rows: rows.len() as u64,
                first_key: Vec::new(),
                last_key: Vec::new(),
                bytes: csv.len() as u64,
                uncompressed_bytes: csv.len() as u64,
                sha256: hex::encode(Sha256::digest(&csv)),
                git_blob: String::new(),
                partition: None,
                filter: None,
                content_hash: None,
            });
            files.insert(file, csv);
        }
        let meta = TableMeta {
            name: "t".into(),
            columns: columns.iter().map(|c| column(c)).collect(),
            primary_key: key.iter().map(|k| k.to_string()).collect(),
            row_identity: String::new(),
            autoincrement: false,
            autoincrement_seq: None,
            create_sql: String::new(),
            post_sql: Vec::new(),
            schema: None,
            ddl: None,
            chunk_limit: 1 << 20,
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            rows: chunks.iter().map(|c| c.len() as u64).sum(),
            content_hash: String::new(),
            divisor: 1,
            chunks: metas,
        };
        (meta, files)
    }

    fn reader(files: &HashMap<String, Vec<u8>>) -> impl FnMut(&ChunkMeta) -> Result<Option<Vec<u8>>, Error> + '_ {
        |c: &ChunkMeta| Ok(files.get(&c.file).cloned())
    }

    fn by_sha(c: &ChunkMeta) -> Option<String> {
        Some(c.sha256.clone())
    }

    /// Compares `old` and `new`, chunk files named by their SHA-256.
    fn diff(
        old: Option<&TableMeta>,
        new: Option<&TableMeta>,
        limits: Limits,
        read_old: &mut ReadChunk<'_>,
        read_new: &mut ReadChunk<'_>,
    ) -> Result<TableChange, Error> {
        diff_table(
            Side { meta: old, id: &by_sha, read: read_old },
            Side { meta: new, id: &by_sha, read: read_new },
            limits,
        )
    }

    fn cells(row: &[&str]) -> Vec<Cell> {
        row.iter().map(|c| (*c != "NULL").then(|| c.to_string())).collect()
    }

    #[test]
    fn rows_are_matched_by_key_and_changed_cells_named() {
        let (old, old_files) =
            table(&["id", "v", "w"], &["id"], &[&[&["1", "a", "x"], &["2", "b", "y"]], &[&["3", "c", "z"]]]);
        let (new, new_files) = table(
            &["id", "v", "w"],
            &["id"],
            &[&[&["1", "a", "x"], &["2", "B", "y"], &["4", "d", "NULL"]], &[&["3", "c", "z"]]],
        );
        let (mut read_old, mut read_new) = (reader(&old_files), reader(&new_files));
        let change = diff(Some(&old), Some(&new), Limits::default(), &mut read_old, &mut read_new).unwrap();
        assert_eq!(change.added, [cells(&["4", "d", "NULL"])]);
        assert!(change.deleted.is_empty());
        assert_eq!(change.changed.len(), 1);
        assert_eq!(change.changed[0].key, [("id".to_string(), Some("2".to_string()))]);
        assert_eq!(change.changed[0].cells, [("v".to_string(), Some("b".to_string()), Some("B".to_string()))]);
        // The second chunk is the same on both sides: not read.
        assert_eq!(change.chunks_read, 2);
    }

    #[test]
    fn a_chunk_edited_in_git_is_compared_by_its_content_not_its_metadata() {
        let (old, old_files) = table(&["id", "v"], &["id"], &[&[&["1", "a"], &["2", "b"]]]);
        let (_, mut new_files) = table(&["id", "v"], &["id"], &[&[&["1", "a"], &["2", "edited"]]]);
        // The same metadata on both sides; the file changed under it.
        let file = old.chunks[0].file.clone();
        let edited = new_files.remove(&file).unwrap();
        new_files.insert(file.clone(), edited.clone());
        let blob = |files: &HashMap<String, Vec<u8>>| {
            let files = files.clone();
            move |c: &ChunkMeta| files.get(&c.file).map(|d| hex::encode(Sha256::digest(d)))
        };
        let (id_old, id_new) = (blob(&old_files), blob(&new_files));
        let (mut read_old, mut read_new) = (reader(&old_files), reader(&new_files));
        let change = diff_table(
            Side { meta: Some(&old), id: &id_old, read: &mut read_old },
            Side { meta: Some(&old), id: &id_new, read: &mut read_new },
            Limits::default(),
        )
        .unwrap();
        assert_eq!(change.changed.len(), 1, "{change:?}");
        assert_eq!(change.changed[0].cells, [("v".to_string(), Some("b".to_string()), Some("edited".to_string()))]);
    }

    #[test]
    fn rows_of_a_table_without_key_are_matched_by_content() {
        let (old, old_files) = table(&["a", "b"], &[], &[&[&["x", "1"], &["x", "1"], &["y", "2"]]]);
        let (new, new_files) = table(&["a", "b"], &[], &[&[&["x", "1"], &["y", "2"], &["z", "3"]]]);
        let (mut read_old, mut read_new) = (reader(&old_files), reader(&new_files));
        let change = diff(Some(&old), Some(&new), Limits::default(), &mut read_old, &mut read_new).unwrap();
        assert_eq!(change.added, [cells(&["z", "3"])]);
        assert_eq!(change.deleted, [cells(&["x", "1"])], "one of two copies went");
        assert!(change.changed.is_empty());
    }

    #[test]
    fn new_and_dropped_tables_and_columns() {
        let (old, old_files) = table(&["id", "v"], &["id"], &[&[&["1", "a"]]]);
        let (new, new_files) = table(&["id", "v", "extra"], &["id"], &[&[&["1", "a", "e"]]]);
        let (mut read_old, mut read_new) = (reader(&old_files), reader(&new_files));
        let change = diff(Some(&old), Some(&new), Limits::default(), &mut read_old, &mut read_new).unwrap();
        assert!(change.columns.is_some());
        assert_eq!(change.changed[0].cells, [("extra".to_string(), None, Some("e".to_string()))]);
        let created = diff(None, Some(&new), Limits::default(), &mut read_old, &mut read_new).unwrap();
        assert_eq!(created.added_count, 1);
        let dropped = diff(Some(&old), None, Limits::default(), &mut read_old, &mut read_new).unwrap();
        assert_eq!(dropped.deleted, [cells(&["1", "a"])]);
    }

    #[test]
    fn listing_stops_at_the_row_limit_but_counting_does_not() {
        let rows: Vec<Vec<String>> = (0..50).map(|i| vec![i.to_string(), "v".into()]).collect();
        let rows: Vec<Vec<&str>> = rows.iter().map(|r| r.iter().map(String::as_str).collect()).collect();
        let rows: Vec<&[&str]> = rows.iter().map(|r| r.as_slice()).collect();
        let (new, files) = table(&["id", "v"], &["id"], &[&rows]);
        let (mut a, mut b) = (reader(&files), reader(&files));
        let limits = Limits { rows: 10, ..Limits::default() };
        let change = diff(None, Some(&new), limits, &mut a, &mut b).unwrap();
        assert_eq!((change.added.len(), change.added_count, change.truncated), (10, 50, true));
        let tight = Limits { read_bytes: 10, ..Limits::default() };
        assert!(diff(None, Some(&new), tight, &mut a, &mut b).is_err());
    }

    #[test]
    fn pages_run_across_chunks() {
        let (meta, files) =
            table(&["id", "v"], &["id"], &[&[&["1", "a"], &["2", "b"]], &[&["3", "c"]], &[&["4", "d"], &["5", "e"]]]);
        let mut read = reader(&files);
        let first = page(&meta, 0, 2, Limits::default(), &mut read).unwrap();
        assert_eq!((first.rows.len(), first.more), (2, true));
        let middle = page(&meta, 1, 3, Limits::default(), &mut read).unwrap();
        assert_eq!(middle.rows, [cells(&["2", "b"]), cells(&["3", "c"]), cells(&["4", "d"])]);
        assert!(middle.more);
        let last = page(&meta, 4, 3, Limits::default(), &mut read).unwrap();
        assert_eq!((last.rows, last.more), (vec![cells(&["5", "e"])], false));
    }
}
