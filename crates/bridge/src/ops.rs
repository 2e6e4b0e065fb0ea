//! export, import and verify.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::csv::{self, Cell};
use crate::layout::{self, ChunkMeta, Chunking, Manifest, Source, TableMeta};
use crate::value::{self, Value};
use crate::{git, sqlite, Error};

/// Options of [`export`].
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub max_chunk_bytes: u64,
    pub tables: Option<Vec<String>>,
    pub branch: Option<String>,
    pub message: Option<String>,
}

/// What an export did.
#[derive(Debug, Default)]
pub struct ExportReport {
    pub tables: Vec<(String, u64, usize)>,
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
    let avg = if n == 0 { 64 } else { (bytes / n).max(1) };
    Ok((target / avg).max(1))
}

fn key_hash(cells: &[Cell]) -> u64 {
    let mut h = Sha256::new();
    for c in cells {
        match c {
            None => h.update([0u8]),
            Some(t) => {
                h.update([1u8]);
                h.update((t.len() as u64).to_be_bytes());
                h.update(t.as_bytes());
            }
        }
    }
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// Order-independent hash of a set of rows: the wrapping sum of each
/// encoded row's SHA-256 prefix.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub struct ContentHash(u128);

impl ContentHash {
    pub fn add(&mut self, record: &[u8]) {
        let d = Sha256::digest(record);
        self.0 = self.0.wrapping_add(u128::from_be_bytes(d[..16].try_into().expect("16 bytes")));
    }
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

fn header(schema_cols: &[layout::Column]) -> Vec<u8> {
    let mut out = Vec::new();
    let names: Vec<Cell> = schema_cols.iter().map(|c| Some(c.name.clone())).collect();
    csv::write_record(&mut out, &names);
    out
}

fn read_json<T: serde::de::DeserializeOwned>(repo: &Path, rev: &str, file: &str) -> Result<Option<T>, Error> {
    match git::read_file(repo, rev, file)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Layout(format!("{file}: {e}"))),
    }
}

pub fn export(database: &str, repo: &Path, opts: &ExportOptions) -> Result<ExportReport, Error> {
    let conn = sqlite::open(database)?;
    git::ensure_repo(repo)?;
    let branch = match &opts.branch {
        Some(b) => b.clone(),
        None => git::default_branch(repo)?,
    };
    let rev = format!("refs/heads/{branch}");
    let previous_exists = git::rev_exists(repo, &rev);
    let mut names = sqlite::tables(&conn)?;
    if let Some(only) = &opts.tables {
        for t in only {
            if !names.contains(t) {
                return Err(Error::UnknownTable(t.clone()));
            }
        }
        names.retain(|n| only.contains(n));
    }
    let message = opts.message.clone().unwrap_or_else(|| format!("Export {} table(s) from {database}", names.len()));
    let mut commit = git::CommitWriter::start(repo, &branch, &message)?;
    let mut metas = Vec::new();
    let mut report = ExportReport::default();
    let mut schema_sql = String::new();
    for name in &names {
        let schema = sqlite::schema(&conn, name)?;
        let previous: Option<TableMeta> =
            if previous_exists { read_json(repo, &rev, &layout::table_meta_path(name))? } else { None };
        let divisor = match &previous {
            Some(p) => p.divisor,
            None => estimate_divisor(&conn, &schema, opts.max_chunk_bytes / 2)?,
        };
        let head = header(&schema.columns);
        let key_idx: Vec<usize> = if schema.primary_key.is_empty() {
            (0..schema.columns.len()).collect()
        } else {
            schema
                .primary_key
                .iter()
                .map(|k| schema.columns.iter().position(|c| &c.name == k).expect("pk is a column"))
                .collect()
        };
        let mut chunks: Vec<ChunkMeta> = Vec::new();
        let mut chunk = head.clone();
        let mut chunk_rows = 0u64;
        let mut first_key: Vec<Cell> = Vec::new();
        let mut last_key: Vec<Cell> = Vec::new();
        let mut hash = ContentHash::default();
        let mut rows = 0u64;
        let mut record = Vec::new();
        let mut flush = |chunk: &mut Vec<u8>,
                         chunk_rows: &mut u64,
                         first: &mut Vec<Cell>,
                         last: &Vec<Cell>,
                         commit: &mut git::CommitWriter|
         -> Result<(), Error> {
            if *chunk_rows == 0 {
                return Ok(());
            }
            let file = layout::chunk_path(name, chunks.len() + 1);
            commit.file(&file, chunk)?;
            chunks.push(ChunkMeta {
                file,
                rows: *chunk_rows,
                first_key: std::mem::take(first),
                last_key: last.clone(),
                bytes: chunk.len() as u64,
                uncompressed_bytes: chunk.len() as u64,
                sha256: hex::encode(Sha256::digest(&chunk[..])),
                git_blob: git::blob_id_of(chunk),
            });
            chunk.truncate(0);
            chunk.extend_from_slice(&head);
            *chunk_rows = 0;
            Ok(())
        };
        sqlite::scan(&conn, &schema, &mut |values: Vec<Value>| {
            let cells: Vec<Cell> = values.iter().zip(&schema.columns).map(|(v, c)| v.to_cell(c.affinity)).collect();
            record.clear();
            csv::write_record(&mut record, &cells);
            let key: Vec<Cell> = key_idx.iter().map(|i| cells[*i].clone()).collect();
            if head.len() + record.len() > opts.max_chunk_bytes as usize {
                return Err(Error::RowTooLarge {
                    table: name.clone(),
                    key: format!("{key:?}"),
                    bytes: record.len() as u64,
                });
            }
            if chunk.len() + record.len() > opts.max_chunk_bytes as usize {
                flush(&mut chunk, &mut chunk_rows, &mut first_key, &last_key, &mut commit)?;
            }
            if chunk_rows == 0 {
                first_key = key.clone();
            }
            chunk.extend_from_slice(&record);
            chunk_rows += 1;
            rows += 1;
            hash.add(&record);
            let cut = key_hash(&key) % divisor == 0;
            last_key = key;
            if cut {
                flush(&mut chunk, &mut chunk_rows, &mut first_key, &last_key, &mut commit)?;
            }
            Ok(())
        })?;
        flush(&mut chunk, &mut chunk_rows, &mut first_key, &last_key, &mut commit)?;
        schema_sql.push_str(&format!("{};\n", schema.create_sql));
        for idx in schema.indexes.iter().filter_map(|i| i.sql.as_ref()) {
            schema_sql.push_str(&format!("{idx};\n"));
        }
        report.tables.push((name.clone(), rows, chunks.len()));
        metas.push(TableMeta {
            name: name.clone(),
            row_identity: if schema.primary_key.is_empty() { "content".into() } else { "primary_key".into() },
            columns: schema.columns,
            primary_key: schema.primary_key,
            autoincrement: schema.autoincrement,
            autoincrement_seq: if schema.autoincrement {
                conn.query_row("SELECT seq FROM sqlite_sequence WHERE name = ?1", [name], |r| r.get(0)).ok()
            } else {
                None
            },
            create_sql: schema.create_sql,
            indexes: schema.indexes,
            foreign_keys: schema.foreign_keys,
            rows,
            content_hash: hash.hex(),
            divisor,
            chunks,
        });
    }
    let manifest = Manifest {
        format_version: layout::FORMAT_VERSION,
        created_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        creator: concat!("tessera ", env!("CARGO_PKG_VERSION")).into(),
        source: Source { engine: "sqlite".into(), database: database.to_string(), branch: None, commit: None },
        chunking: Chunking {
            strategy: "size".into(),
            max_chunk_bytes: opts.max_chunk_bytes,
            algorithm: "key-hash".into(),
        },
        tables: names.clone(),
    };
    for meta in &metas {
        let json = serde_json::to_vec_pretty(meta).expect("metadata serializes");
        commit.file(&layout::table_meta_path(&meta.name), &json)?;
    }
    commit.file(layout::MANIFEST, &serde_json::to_vec_pretty(&manifest).expect("manifest serializes"))?;
    commit.file(layout::SCHEMA, schema_sql.as_bytes())?;
    commit.file("datapackage.json", &serde_json::to_vec_pretty(&layout::datapackage(&metas)).expect("serializes"))?;
    commit.file("README.md", layout::readme(&manifest, &metas).as_bytes())?;
    commit.file(".gitattributes", layout::GITATTRIBUTES.as_bytes())?;
    commit.finish()?;
    Ok(report)
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
}

fn load_manifest(repo: &Path, rev: &str) -> Result<Manifest, Error> {
    let manifest: Manifest = read_json(repo, rev, layout::MANIFEST)?.ok_or_else(|| {
        Error::Layout(format!("{} has no {} on {rev}: not a tessera data export", repo.display(), layout::MANIFEST))
    })?;
    if manifest.format_version > layout::FORMAT_VERSION {
        return Err(Error::NewerFormat(manifest.format_version));
    }
    Ok(manifest)
}

/// Reads every chunk of a table, checking it, and hands each row to `each`.
fn read_rows(
    repo: &Path,
    rev: &str,
    meta: &TableMeta,
    edited: &mut Vec<String>,
    each: &mut dyn FnMut(&str, usize, Vec<Value>, &[u8]) -> Result<(), Error>,
) -> Result<u64, Error> {
    let mut total = 0;
    for chunk in &meta.chunks {
        let data = git::read_file(repo, rev, &chunk.file)?.ok_or_else(|| Error::Damaged {
            file: chunk.file.clone(),
            line: 0,
            reason: "chunk file is missing".into(),
        })?;
        let intact = hex::encode(Sha256::digest(&data)) == chunk.sha256;
        if !intact {
            // Changed since export: an edit made through git has a new blob id.
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
        let mut reader = csv::Reader::new(&data);
        let damaged = |line: usize, reason: String| Error::Damaged { file: chunk.file.clone(), line, reason };
        let header = reader.next_record().map_err(|e| damaged(1, e.to_string()))?.unwrap_or_default();
        let names: Vec<Cell> = meta.columns.iter().map(|c| Some(c.name.clone())).collect();
        if header != names {
            return Err(damaged(1, "header does not name the table's columns".into()));
        }
        let mut rows = 0u64;
        let mut record = Vec::new();
        loop {
            let line = reader.line();
            let Some(cells) = reader.next_record().map_err(|e| damaged(line, e.to_string()))? else { break };
            if cells.len() != meta.columns.len() {
                return Err(damaged(
                    line,
                    format!("{} fields, the table has {} columns", cells.len(), meta.columns.len()),
                ));
            }
            let mut values = Vec::with_capacity(cells.len());
            for (cell, col) in cells.iter().zip(&meta.columns) {
                let v = value::from_cell(cell, col.affinity)
                    .map_err(|e| damaged(line, format!("column {}: {e}", col.name)))?;
                if v == Value::Null && col.not_null {
                    return Err(damaged(line, format!("column {} is NOT NULL", col.name)));
                }
                values.push(v);
            }
            record.clear();
            let canon: Vec<Cell> = values.iter().zip(&meta.columns).map(|(v, c)| v.to_cell(c.affinity)).collect();
            csv::write_record(&mut record, &canon);
            each(&chunk.file, line, values, &record)?;
            rows += 1;
        }
        if intact && rows != chunk.rows {
            return Err(damaged(0, format!("{rows} rows, the metadata of the same commit says {}", chunk.rows)));
        }
        total += rows;
    }
    Ok(total)
}

pub fn import(repo: &Path, database: &str, opts: &ImportOptions) -> Result<ImportReport, Error> {
    let branch = match &opts.branch {
        Some(b) => b.clone(),
        None => git::default_branch(repo)?,
    };
    let rev = format!("refs/heads/{branch}");
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
    let mut conn = sqlite::create(database)?;
    let existing = sqlite::tables(&conn)?;
    for n in &names {
        if existing.contains(n) && !opts.replace {
            return Err(Error::TargetNotEmpty(n.clone()));
        }
    }
    let tx = conn.transaction().map_err(|e| Error::Database(e.to_string()))?;
    tx.execute_batch("PRAGMA defer_foreign_keys = ON").map_err(|e| Error::Database(e.to_string()))?;
    let mut report = ImportReport::default();
    // All tables first, so foreign keys (checked at commit) find their targets.
    let mut metas = Vec::new();
    for name in &names {
        let meta: TableMeta = read_json(repo, &rev, &layout::table_meta_path(name))?
            .ok_or_else(|| Error::Layout(format!("no metadata for table {name}")))?;
        if existing.contains(name) {
            tx.execute_batch(&format!("DROP TABLE {}", sqlite::quote(name)))
                .map_err(|e| Error::Database(e.to_string()))?;
        }
        tx.execute_batch(&meta.create_sql).map_err(|e| Error::Database(format!("creating {name}: {e}")))?;
        metas.push(meta);
    }
    for meta in &metas {
        let name = &meta.name;
        let cols: Vec<String> = meta.columns.iter().map(|c| sqlite::quote(&c.name)).collect();
        let marks: Vec<&str> = vec!["?"; cols.len()];
        let sql = format!("INSERT INTO {} ({}) VALUES ({})", sqlite::quote(name), cols.join(", "), marks.join(", "));
        let mut stmt = tx.prepare(&sql).map_err(|e| Error::Database(e.to_string()))?;
        let rows = read_rows(repo, &rev, meta, &mut report.edited_chunks, &mut |file, line, values, _| {
            let params: Vec<rusqlite::types::Value> = values.iter().map(sqlite::to_sql).collect();
            stmt.execute(rusqlite::params_from_iter(params)).map_err(|e| Error::Damaged {
                file: file.to_string(),
                line,
                reason: e.to_string(),
            })?;
            Ok(())
        })?;
        drop(stmt);
        for idx in meta.indexes.iter().filter_map(|i| i.sql.as_ref()) {
            tx.execute_batch(idx).map_err(|e| Error::Database(format!("index on {name}: {e}")))?;
        }
        if let Some(seq) = meta.autoincrement_seq {
            tx.execute("DELETE FROM sqlite_sequence WHERE name = ?1", [name])
                .map_err(|e| Error::Database(e.to_string()))?;
            tx.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)", rusqlite::params![name, seq])
                .map_err(|e| Error::Database(e.to_string()))?;
        }
        report.tables.push((name.clone(), rows));
    }
    tx.commit().map_err(|e| Error::Database(format!("committing the import: {e}")))?;
    Ok(report)
}

/// One table's comparison.
#[derive(Debug)]
pub struct TableDiff {
    pub table: String,
    pub database_rows: Option<u64>,
    pub repo_rows: u64,
    pub same_content: bool,
}

pub fn verify(database: &str, repo: &Path, branch: Option<&str>) -> Result<Vec<TableDiff>, Error> {
    let conn = sqlite::open(database)?;
    let branch = match branch {
        Some(b) => b.to_string(),
        None => git::default_branch(repo)?,
    };
    let rev = format!("refs/heads/{branch}");
    let manifest = load_manifest(repo, &rev)?;
    let present = sqlite::tables(&conn)?;
    let mut out = Vec::new();
    let mut edited = Vec::new();
    for name in &manifest.tables {
        let meta: TableMeta = read_json(repo, &rev, &layout::table_meta_path(name))?
            .ok_or_else(|| Error::Layout(format!("no metadata for table {name}")))?;
        let mut repo_hash = ContentHash::default();
        let repo_rows = read_rows(repo, &rev, &meta, &mut edited, &mut |_, _, _, record| {
            repo_hash.add(record);
            Ok(())
        })?;
        if !present.contains(name) {
            out.push(TableDiff { table: name.clone(), database_rows: None, repo_rows, same_content: false });
            continue;
        }
        let schema = sqlite::schema(&conn, name)?;
        let mut db_hash = ContentHash::default();
        let mut db_rows = 0;
        let mut record = Vec::new();
        sqlite::scan(&conn, &schema, &mut |values| {
            record.clear();
            let cells: Vec<Cell> = values.iter().zip(&schema.columns).map(|(v, c)| v.to_cell(c.affinity)).collect();
            csv::write_record(&mut record, &cells);
            db_hash.add(&record);
            db_rows += 1;
            Ok(())
        })?;
        out.push(TableDiff {
            table: name.clone(),
            database_rows: Some(db_rows),
            repo_rows,
            same_content: db_hash == repo_hash && db_rows == repo_rows,
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
