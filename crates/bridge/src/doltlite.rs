//! Dolt databases in doltlite files: `libdoltlite.so` (PyPI package
//! `doltlite`) is loaded at run time and its SQLite C API called directly,
//! so its symbols never meet the SQLite that rusqlite bundles.
//!
//! This is the one module with `unsafe` code: every call goes to a C
//! function whose contract is SQLite's documented API; pointers come from
//! that API and are used only while the statement or connection that owns
//! them is alive.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};

use crate::csv::Cell;
use crate::ops::Shape;
use crate::value::{Affinity, Value};
use crate::Error;

const SQLITE_OK: c_int = 0;
const SQLITE_ROW: c_int = 100;
const SQLITE_DONE: c_int = 101;
const SQLITE_OPEN_READWRITE: c_int = 0x2;
const SQLITE_OPEN_CREATE: c_int = 0x4;
const SQLITE_TRANSIENT: isize = -1;

type Db = *mut c_void;
type Stmt = *mut c_void;

/// The C functions used, resolved once from the library.
struct Api {
    _lib: libloading::Library,
    open_v2: unsafe extern "C" fn(*const c_char, *mut Db, c_int, *const c_char) -> c_int,
    close: unsafe extern "C" fn(Db) -> c_int,
    errmsg: unsafe extern "C" fn(Db) -> *const c_char,
    prepare_v2: unsafe extern "C" fn(Db, *const c_char, c_int, *mut Stmt, *mut *const c_char) -> c_int,
    step: unsafe extern "C" fn(Stmt) -> c_int,
    finalize: unsafe extern "C" fn(Stmt) -> c_int,
    column_count: unsafe extern "C" fn(Stmt) -> c_int,
    column_type: unsafe extern "C" fn(Stmt, c_int) -> c_int,
    column_int64: unsafe extern "C" fn(Stmt, c_int) -> i64,
    column_double: unsafe extern "C" fn(Stmt, c_int) -> f64,
    column_text: unsafe extern "C" fn(Stmt, c_int) -> *const u8,
    column_blob: unsafe extern "C" fn(Stmt, c_int) -> *const c_void,
    column_bytes: unsafe extern "C" fn(Stmt, c_int) -> c_int,
    bind_null: unsafe extern "C" fn(Stmt, c_int) -> c_int,
    bind_int64: unsafe extern "C" fn(Stmt, c_int, i64) -> c_int,
    bind_double: unsafe extern "C" fn(Stmt, c_int, f64) -> c_int,
    bind_text: unsafe extern "C" fn(Stmt, c_int, *const c_char, c_int, isize) -> c_int,
    bind_blob: unsafe extern "C" fn(Stmt, c_int, *const c_void, c_int, isize) -> c_int,
    reset: unsafe extern "C" fn(Stmt) -> c_int,
}

/// Where libdoltlite.so is: `TESSERA_DOLTLITE_LIB`, else the `doltlite`
/// Python package's copy.
fn library_path() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("TESSERA_DOLTLITE_LIB") {
        return Ok(p.into());
    }
    let out = std::process::Command::new("python3")
        .args(["-c", "import importlib.util, os; s = importlib.util.find_spec('doltlite'); print(os.path.join(os.path.dirname(s.origin), '_lib', 'libdoltlite.so') if s else '')"])
        .output();
    if let Ok(out) = out {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() && Path::new(&p).exists() {
            return Ok(p.into());
        }
    }
    Err(Error::Unsupported(
        "this is a Dolt (doltlite) database, which needs libdoltlite.so: `pip install doltlite`, or set TESSERA_DOLTLITE_LIB to the library".into(),
    ))
}

macro_rules! sym {
    ($lib:expr, $name:literal) => {
        // SAFETY: the symbol is SQLite's C API function of that name, and
        // the field's type is its documented signature.
        unsafe {
            *$lib
                .get($name)
                .map_err(|e| Error::Database(format!("libdoltlite lacks {}: {e}", String::from_utf8_lossy($name))))?
        }
    };
}

impl Api {
    fn load() -> Result<Api, Error> {
        let path = library_path()?;
        // SAFETY: loading a shared library runs its initializers; libdoltlite's
        // are SQLite's, which have no preconditions.
        let lib = unsafe { libloading::Library::new(&path) }
            .map_err(|e| Error::Database(format!("loading {}: {e}", path.display())))?;
        Ok(Api {
            open_v2: sym!(lib, b"sqlite3_open_v2"),
            close: sym!(lib, b"sqlite3_close"),
            errmsg: sym!(lib, b"sqlite3_errmsg"),
            prepare_v2: sym!(lib, b"sqlite3_prepare_v2"),
            step: sym!(lib, b"sqlite3_step"),
            finalize: sym!(lib, b"sqlite3_finalize"),
            column_count: sym!(lib, b"sqlite3_column_count"),
            column_type: sym!(lib, b"sqlite3_column_type"),
            column_int64: sym!(lib, b"sqlite3_column_int64"),
            column_double: sym!(lib, b"sqlite3_column_double"),
            column_text: sym!(lib, b"sqlite3_column_text"),
            column_blob: sym!(lib, b"sqlite3_column_blob"),
            column_bytes: sym!(lib, b"sqlite3_column_bytes"),
            bind_null: sym!(lib, b"sqlite3_bind_null"),
            bind_int64: sym!(lib, b"sqlite3_bind_int64"),
            bind_double: sym!(lib, b"sqlite3_bind_double"),
            bind_text: sym!(lib, b"sqlite3_bind_text"),
            bind_blob: sym!(lib, b"sqlite3_bind_blob"),
            reset: sym!(lib, b"sqlite3_reset"),
            _lib: lib,
        })
    }
}

/// Whether `path` is a doltlite file (its header is `CTLD`, not SQLite's).
pub fn is_doltlite(path: &str) -> bool {
    let path = path.strip_prefix("sqlite://").unwrap_or(path);
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .map(|_| &head == b"CTLD")
        .unwrap_or(false)
}

/// An open doltlite database.
pub struct Doltlite {
    api: Api,
    db: Db,
    /// Read tables as of this Dolt commit (`dolt_at_<table>`) instead of the
    /// working set.
    pub at: Option<String>,
    /// Read only rows whose (single) key column is at least the first value
    /// and below the second, when set.
    pub range: Option<(Option<Value>, Option<Value>)>,
}

impl Drop for Doltlite {
    fn drop(&mut self) {
        // SAFETY: `db` came from open_v2 and is closed once, here.
        unsafe { (self.api.close)(self.db) };
    }
}

impl Doltlite {
    pub fn open(path: &str, create: bool) -> Result<Doltlite, Error> {
        let api = Api::load()?;
        let path = path.strip_prefix("sqlite://").unwrap_or(path);
        let c_path = CString::new(path).map_err(|_| Error::Database("path contains NUL".into()))?;
        let mut db: Db = std::ptr::null_mut();
        let flags = SQLITE_OPEN_READWRITE | if create { SQLITE_OPEN_CREATE } else { 0 };
        // SAFETY: valid C string and out-pointer; see SQLite's sqlite3_open_v2.
        let rc = unsafe { (api.open_v2)(c_path.as_ptr(), &mut db, flags, std::ptr::null()) };
        let me = Doltlite { api, db, at: None, range: None };
        if rc != SQLITE_OK {
            return Err(Error::Database(format!("opening {path}: {}", me.error())));
        }
        // Wait for another connection's lock (a reader, or Dolt's own
        // tools) instead of failing a commit at once.
        me.execute("PRAGMA busy_timeout = 10000", &[])?;
        Ok(me)
    }

    fn error(&self) -> String {
        // SAFETY: errmsg returns a NUL-terminated string owned by the connection.
        unsafe { CStr::from_ptr((self.api.errmsg)(self.db)) }.to_string_lossy().into_owned()
    }

    /// Runs `sql` with `params`, handing each result row to `each`.
    pub fn query(
        &self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(Vec<Value>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let c_sql = CString::new(sql).map_err(|_| Error::Database("SQL contains NUL".into()))?;
        let mut stmt: Stmt = std::ptr::null_mut();
        // SAFETY: valid connection and C string; out-pointer for the statement.
        let rc = unsafe { (self.api.prepare_v2)(self.db, c_sql.as_ptr(), -1, &mut stmt, std::ptr::null_mut()) };
        if rc != SQLITE_OK {
            return Err(Error::Database(format!("{}: {sql}", self.error())));
        }
        let result = self.run(stmt, params, each);
        // SAFETY: `stmt` came from prepare_v2 and is finalized once.
        unsafe { (self.api.finalize)(stmt) };
        result
    }

    fn run(
        &self,
        stmt: Stmt,
        params: &[Value],
        each: &mut dyn FnMut(Vec<Value>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let a = &self.api;
        for (i, p) in params.iter().enumerate() {
            let idx = i as c_int + 1;
            // SAFETY: `stmt` is live; text and blob bind with SQLITE_TRANSIENT,
            // so SQLite copies the bytes before the call returns.
            let rc = unsafe {
                match p {
                    Value::Null => (a.bind_null)(stmt, idx),
                    Value::Integer(v) => (a.bind_int64)(stmt, idx, *v),
                    Value::Real(v) => (a.bind_double)(stmt, idx, *v),
                    Value::Text(t) => {
                        (a.bind_text)(stmt, idx, t.as_ptr() as *const c_char, t.len() as c_int, SQLITE_TRANSIENT)
                    }
                    Value::Blob(b) => {
                        (a.bind_blob)(stmt, idx, b.as_ptr() as *const c_void, b.len() as c_int, SQLITE_TRANSIENT)
                    }
                }
            };
            if rc != SQLITE_OK {
                return Err(Error::Database(self.error()));
            }
        }
        loop {
            // SAFETY: `stmt` is live.
            match unsafe { (a.step)(stmt) } {
                SQLITE_ROW => {
                    // SAFETY: column accessors on the current row; pointers are
                    // read before the next step.
                    let row = unsafe {
                        let n = (a.column_count)(stmt);
                        let mut row = Vec::with_capacity(n as usize);
                        for i in 0..n {
                            row.push(match (a.column_type)(stmt, i) {
                                1 => Value::Integer((a.column_int64)(stmt, i)),
                                2 => Value::Real((a.column_double)(stmt, i)),
                                3 => {
                                    let p = (a.column_text)(stmt, i);
                                    let len = (a.column_bytes)(stmt, i) as usize;
                                    let bytes = if p.is_null() { &[][..] } else { std::slice::from_raw_parts(p, len) };
                                    Value::Text(
                                        String::from_utf8(bytes.to_vec())
                                            .map_err(|_| Error::Database("a TEXT value is not UTF-8".into()))?,
                                    )
                                }
                                4 => {
                                    let p = (a.column_blob)(stmt, i) as *const u8;
                                    let len = (a.column_bytes)(stmt, i) as usize;
                                    Value::Blob(if p.is_null() {
                                        Vec::new()
                                    } else {
                                        std::slice::from_raw_parts(p, len).to_vec()
                                    })
                                }
                                _ => Value::Null,
                            });
                        }
                        row
                    };
                    each(row)?;
                }
                SQLITE_DONE => {
                    // SAFETY: `stmt` is live.
                    unsafe { (a.reset)(stmt) };
                    return Ok(());
                }
                _ => return Err(Error::Database(self.error())),
            }
        }
    }

    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<(), Error> {
        self.query(sql, params, &mut |_| Ok(()))
    }

    pub(crate) fn strings(&self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, Error> {
        let mut out = Vec::new();
        self.query(sql, params, &mut |row| {
            out.push(row);
            Ok(())
        })?;
        Ok(out)
    }
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        Value::Integer(i) => i.to_string(),
        _ => String::new(),
    }
}

impl Doltlite {
    /// Records the Dolt commit the synced data is, when the working set of
    /// the user's tables is clean: the next sync then finds what changed
    /// with `dolt_diff_<table>` instead of reading every row.
    fn record_source_rev(&self, repo: &str, branch: &str) -> Result<(), Error> {
        let dirty = self.strings(
            "SELECT table_name FROM dolt_status WHERE table_name <> ?1",
            &[Value::Text(crate::sync::STATE_TABLE.into())],
        )?;
        let rev = if dirty.is_empty() {
            self.strings("SELECT dolt_hashof('HEAD')", &[])?.first().and_then(|r| r.first()).map(text)
        } else {
            None
        };
        let table = crate::sqlite::quote(crate::sync::STATE_TABLE);
        // State tables from before this column existed get it now.
        if !self.has_source_rev()? {
            self.execute(&format!("ALTER TABLE {table} ADD COLUMN source_rev VARCHAR(64)"), &[])?;
        }
        let sql = format!("UPDATE {table} SET source_rev = ?1 WHERE repo = ?2 AND branch = ?3");
        let rev = rev.map(Value::Text).unwrap_or(Value::Null);
        self.execute(&sql, &[rev, Value::Text(repo.into()), Value::Text(branch.into())])
    }

    fn has_source_rev(&self) -> Result<bool, Error> {
        let table = crate::sqlite::quote(crate::sync::STATE_TABLE);
        let columns = self.strings(&format!("PRAGMA table_info({table})"), &[])?;
        Ok(columns.iter().any(|c| c.get(1).map(text).as_deref() == Some("source_rev")))
    }

    /// The Dolt commit recorded by the last sync with `repo`'s `branch`.
    pub(crate) fn synced_source_rev(&self, repo: &str, branch: &str) -> Result<Option<String>, Error> {
        if !self.has_source_rev()? {
            return Ok(None);
        }
        let sql = format!(
            "SELECT source_rev FROM {} WHERE repo = ?1 AND branch = ?2",
            crate::sqlite::quote(crate::sync::STATE_TABLE)
        );
        let rows = self.strings(&sql, &[Value::Text(repo.into()), Value::Text(branch.into())])?;
        Ok(rows.first().and_then(|r| r.first()).filter(|v| !matches!(v, Value::Null)).map(text))
    }
}

impl crate::ops::Source for Doltlite {
    fn engine(&self) -> &'static str {
        "doltlite"
    }

    fn tables(&mut self) -> Result<Vec<String>, Error> {
        let rows = self.strings(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'dolt_%' ORDER BY name",
            &[],
        )?;
        Ok(rows.iter().map(|r| text(&r[0])).collect())
    }

    fn describe(&mut self, table: &str) -> Result<Shape, Error> {
        let create = self
            .strings("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", &[Value::Text(table.into())])?;
        let create_sql = create.first().map(|r| text(&r[0])).ok_or_else(|| Error::UnknownTable(table.to_string()))?;
        let info = self.strings(&format!("PRAGMA table_info({})", crate::sqlite::quote(table)), &[])?;
        let mut columns = Vec::new();
        let mut pk: Vec<(i64, String)> = Vec::new();
        for r in &info {
            let name = text(&r[1]);
            let declared = text(&r[2]);
            let affinity = Affinity::of_declared(&declared);
            if let Value::Integer(p) = r[5] {
                if p > 0 {
                    pk.push((p, name.clone()));
                }
            }
            columns.push(crate::layout::Column {
                name,
                binary: affinity == Affinity::Blob,
                declared_type: declared,
                affinity,
                not_null: matches!(r[3], Value::Integer(1)),
                default: match &r[4] {
                    Value::Null => None,
                    v => Some(text(v)),
                },
            });
        }
        pk.sort();
        let indexes = self
            .strings(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
                &[Value::Text(table.into())],
            )?
            .iter()
            .map(|r| crate::layout::Index {
                name: text(&r[0]),
                unique: text(&r[1]).contains("UNIQUE"),
                columns: vec![],
                sql: Some(text(&r[1])),
            })
            .collect();
        Ok(Shape {
            name: table.to_string(),
            columns,
            primary_key: pk.into_iter().map(|(_, n)| n).collect(),
            autoincrement: create_sql.to_ascii_uppercase().contains("AUTOINCREMENT"),
            autoincrement_seq: None,
            order_first: None,
            create_sql,
            post_sql: Vec::new(),
            indexes,
            foreign_keys: Vec::new(),
        })
    }

    fn divisor(&mut self, shape: &Shape, target_bytes: u64) -> Result<u64, Error> {
        // The average record of a sample of rows, as the chunks will hold it.
        let q = crate::sqlite::quote;
        let cols: Vec<String> = shape.columns.iter().map(|c| q(&c.name)).collect();
        let sql = format!("SELECT {} FROM {} LIMIT 1000", cols.join(", "), q(&shape.name));
        let (mut bytes, mut rows) = (0u64, 0u64);
        let mut record = Vec::new();
        self.query(&sql, &[], &mut |values| {
            let cells: Vec<Cell> = values.iter().zip(&shape.columns).map(|(v, c)| v.to_cell(c.affinity)).collect();
            record.clear();
            crate::csv::write_record(&mut record, &cells);
            bytes += record.len() as u64;
            rows += 1;
            Ok(())
        })?;
        let average = bytes.checked_div(rows).map_or(64, |a| a.max(1));
        Ok((target_bytes / average).max(1))
    }

    fn scan(&mut self, shape: &Shape, each: &mut dyn FnMut(&[Cell]) -> Result<(), Error>) -> Result<(), Error> {
        let q = crate::sqlite::quote;
        let order: Vec<String> = shape.order().iter().map(|c| q(c)).collect();
        let cols: Vec<String> = shape.columns.iter().map(|c| q(&c.name)).collect();
        let (from, params) = match &self.at {
            Some(commit) => {
                (format!("{}(?1)", q(&format!("dolt_at_{}", shape.name))), vec![Value::Text(commit.clone())])
            }
            None => (q(&shape.name), Vec::new()),
        };
        let (from, mut params) = (from, params);
        let mut conditions = Vec::new();
        if let (Some((low, high)), [key]) = (&self.range, shape.primary_key.as_slice()) {
            if let Some(v) = low {
                params.push(v.clone());
                conditions.push(format!("{} >= ?{}", q(key), params.len()));
            }
            if let Some(v) = high {
                params.push(v.clone());
                conditions.push(format!("{} < ?{}", q(key), params.len()));
            }
        }
        let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
        let sql = format!("SELECT {} FROM {from}{filter} ORDER BY {}", cols.join(", "), order.join(", "));
        let columns = shape.columns.clone();
        self.query(&sql, &params, &mut |values| {
            let cells: Vec<Cell> = values.iter().zip(&columns).map(|(v, c)| v.to_cell(c.affinity)).collect();
            each(&cells)
        })
    }

    fn sync_state(&mut self, repo: &str, branch: &str) -> Result<Option<String>, Error> {
        let exists = self.strings(
            "SELECT name FROM sqlite_master WHERE name = ?1",
            &[Value::Text(crate::sync::STATE_TABLE.into())],
        )?;
        if exists.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT commit_id FROM {} WHERE repo = ?1 AND branch = ?2",
            crate::sqlite::quote(crate::sync::STATE_TABLE)
        );
        let rows = self.strings(&sql, &[Value::Text(repo.into()), Value::Text(branch.into())])?;
        Ok(rows.first().and_then(|r| r.first()).map(text))
    }

    fn apply(&mut self, changes: &[crate::sync::TableChanges], state: Option<(&str, &str, &str)>) -> Result<(), Error> {
        self.execute("BEGIN", &[])?;
        let run = || -> Result<(), Error> {
            for stmt in crate::sync::statements(&crate::sqlite::DIALECT, changes) {
                let mut params = Vec::with_capacity(stmt.params.len());
                for (cell, col) in &stmt.params {
                    params.push(
                        crate::value::from_cell(cell, col.affinity)
                            .map_err(|e| Error::Database(format!("column {}: {e}", col.name)))?,
                    );
                }
                self.execute(&stmt.sql, &params)?;
            }
            if let Some((repo, branch, commit)) = state {
                self.execute(&crate::sync::state_ddl(crate::sqlite::quote), &[])?;
                for (sql, values) in crate::sync::state_statements(&crate::sqlite::DIALECT, repo, branch, commit) {
                    let values: Vec<Value> =
                        values.into_iter().map(|v| v.map(Value::Text).unwrap_or(Value::Null)).collect();
                    self.execute(&sql, &values)?;
                }
            }
            Ok(())
        };
        match run() {
            Ok(()) => {
                self.execute("COMMIT", &[])?;
                if !changes.iter().all(|c| c.deletes.is_empty() && c.inserts.is_empty() && c.updates.is_empty()) {
                    self.execute("SELECT dolt_commit('-A', '-m', 'Sync from git by tessera')", &[])?;
                }
                // Only the state written after a push (no rows to apply)
                // marks the data as synced up to the Dolt commit.
                if let (Some((repo, branch, _)), true) = (state, changes.is_empty()) {
                    self.record_source_rev(repo, branch)?;
                }
                Ok(())
            }
            Err(e) => {
                let _ = self.execute("ROLLBACK", &[]);
                Err(e)
            }
        }
    }
}

/// Loads an export into a new or existing doltlite file and records it as
/// one Dolt commit. Each chunk is a transaction of its own in the working
/// set that also records it in `_tessera_import`, so an interrupted import
/// picks up after the last chunk it committed; the progress table is gone
/// before the Dolt commit, so history never shows it. `--replace` of
/// tables the import did not create loads in one transaction instead.
pub fn import(
    repo: &Path,
    rev: &str,
    names: &[String],
    database: &str,
    replace: bool,
) -> Result<crate::ops::ImportReport, Error> {
    use crate::ops::IMPORT_PROGRESS;
    use crate::sqlite::quote;
    let path = database.strip_prefix("sqlite://").unwrap_or(database);
    let fresh = !Path::new(path).exists();
    let mut db = Doltlite::open(path, true)?;
    let existing: Vec<String> = if fresh { Vec::new() } else { crate::ops::Source::tables(&mut db)? };
    let ours: std::collections::HashSet<String> = if existing.iter().any(|t| t == IMPORT_PROGRESS) {
        let rows = db.strings(&format!("SELECT DISTINCT tbl FROM {}", quote(IMPORT_PROGRESS)), &[])?;
        rows.iter().filter_map(|r| r.first().map(text)).collect()
    } else {
        Default::default()
    };
    if crate::ops::first_taken(names, &ours, &mut |n| Ok(existing.iter().any(|e| e == n)))?.is_some() {
        // Without --replace, this names the table.
        return import_at_once(&db, repo, rev, names, &existing, replace);
    }
    let metas = crate::ops::table_metas(repo, rev, names)?;
    let progress = quote(IMPORT_PROGRESS);
    let mut report = crate::ops::ImportReport::default();
    // One transaction of the working set: `f`, then COMMIT, or ROLLBACK.
    let transaction = |f: &mut dyn FnMut() -> Result<(), Error>| -> Result<(), Error> {
        db.execute("BEGIN", &[])?;
        match f() {
            Ok(()) => db.execute("COMMIT", &[]),
            Err(e) => {
                let _ = db.execute("ROLLBACK", &[]);
                Err(e)
            }
        }
    };
    let loaded = (|| -> Result<(), Error> {
        db.execute(
            &format!(
                "CREATE TABLE IF NOT EXISTS {progress} (tbl TEXT NOT NULL, position INTEGER NOT NULL, \
                 blob TEXT NOT NULL, PRIMARY KEY (tbl, position))"
            ),
            &[],
        )?;
        for meta in &metas {
            let name = &meta.name;
            let blobs = crate::ops::chunk_blobs(repo, rev, meta)?;
            let mut done = 0;
            if ours.contains(name) && existing.contains(name) {
                let sql =
                    format!("SELECT position, blob FROM {progress} WHERE tbl = ? AND position >= 0 ORDER BY position");
                let recorded: Vec<(i64, String)> = db
                    .strings(&sql, &[Value::Text(name.clone())])?
                    .iter()
                    .map(|r| (text(&r[0]).parse().unwrap_or(-1), text(&r[1])))
                    .collect();
                done = crate::ops::resume_point(&blobs, &recorded);
            }
            if done == 0 {
                transaction(&mut || {
                    db.execute(&format!("DROP TABLE IF EXISTS {}", quote(name)), &[])?;
                    db.execute(&format!("DELETE FROM {progress} WHERE tbl = ?"), &[Value::Text(name.clone())])?;
                    for stmt in &crate::ops::ddl_of(meta)?.create {
                        db.execute(stmt, &[])?;
                    }
                    let claim = format!("INSERT INTO {progress} (tbl, position, blob) VALUES (?, -1, '')");
                    db.execute(&claim, &[Value::Text(name.clone())])
                })?;
            } else {
                report.resumed.push((name.clone(), done));
            }
            let mut rows: u64 = meta.chunks[..done].iter().map(|c| c.rows).sum();
            for (i, (chunk, blob)) in meta.chunks.iter().zip(&blobs).enumerate().skip(done) {
                transaction(&mut || {
                    let one = std::slice::from_ref(chunk);
                    rows += insert_rows(&db, repo, rev, meta, one, &mut report.edited_chunks)?;
                    let mark = format!("INSERT INTO {progress} (tbl, position, blob) VALUES (?, ?, ?)");
                    db.execute(&mark, &[Value::Text(name.clone()), Value::Integer(i as i64), Value::Text(blob.clone())])
                })?;
            }
            report.tables.push((name.clone(), rows));
        }
        transaction(&mut || {
            for meta in &metas {
                for stmt in &crate::ops::ddl_of(meta)?.after {
                    db.execute(stmt, &[])?;
                }
            }
            db.execute(&format!("DROP TABLE {progress}"), &[])
        })
    })();
    if let Err(e) = loaded {
        // Damage leaves nothing behind; an interruption of another kind
        // leaves the committed chunks for a re-run.
        if matches!(e, Error::Damaged { .. }) {
            for meta in &metas {
                let _ = db.execute(&format!("DROP TABLE IF EXISTS {}", quote(&meta.name)), &[]);
            }
            let _ = db.execute(&format!("DROP TABLE IF EXISTS {progress}"), &[]);
        }
        return Err(e);
    }
    db.execute("SELECT dolt_commit('-A', '-m', 'Import from git by tessera')", &[])?;
    Ok(report)
}

/// Inserts the rows of `chunks` into `meta`'s table, naming file and line
/// when one is refused; returns how many.
fn insert_rows(
    db: &Doltlite,
    repo: &Path,
    rev: &str,
    meta: &crate::layout::TableMeta,
    chunks: &[crate::layout::ChunkMeta],
    edited: &mut Vec<String>,
) -> Result<u64, Error> {
    let cols: Vec<String> = meta.columns.iter().map(|c| crate::sqlite::quote(&c.name)).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        crate::sqlite::quote(&meta.name),
        cols.join(", "),
        vec!["?"; cols.len()].join(", ")
    );
    crate::ops::read_chunks(repo, rev, meta, chunks, true, edited, &mut |file, line, values, _| {
        db.execute(&sql, &values).map_err(|e| Error::Damaged { file: file.to_string(), line, reason: e.to_string() })
    })
}

/// Replaces existing tables (`--replace`) in one transaction, so they
/// survive a failed import, then makes one Dolt commit.
fn import_at_once(
    db: &Doltlite,
    repo: &Path,
    rev: &str,
    names: &[String],
    existing: &[String],
    replace: bool,
) -> Result<crate::ops::ImportReport, Error> {
    let (metas, present) =
        crate::ops::load_metas(repo, rev, names, replace, &mut |n| Ok(existing.iter().any(|e| e == n)))?;
    let mut report = crate::ops::ImportReport::default();
    db.execute("BEGIN", &[])?;
    let result = (|| -> Result<(), Error> {
        for name in &present {
            db.execute(&format!("DROP TABLE {}", crate::sqlite::quote(name)), &[])?;
        }
        for meta in &metas {
            for stmt in &crate::ops::ddl_of(meta)?.create {
                db.execute(stmt, &[])?;
            }
        }
        for meta in &metas {
            let rows = insert_rows(db, repo, rev, meta, &meta.chunks, &mut report.edited_chunks)?;
            for stmt in &crate::ops::ddl_of(meta)?.after {
                db.execute(stmt, &[])?;
            }
            report.tables.push((meta.name.clone(), rows));
        }
        db.execute(&crate::ops::forget_interrupted_imports(crate::sqlite::quote), &[])
    })();
    match result {
        Ok(()) => {
            db.execute("COMMIT", &[])?;
            db.execute("SELECT dolt_commit('-A', '-m', 'Import from git by tessera')", &[])?;
            Ok(report)
        }
        Err(e) => {
            let _ = db.execute("ROLLBACK", &[]);
            Err(e)
        }
    }
}
