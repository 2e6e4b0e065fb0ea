//! Dolt databases in doltlite files: `libdoltlite.so` (PyPI package
//! `doltlite`) is loaded at run time and its SQLite C API called directly,
//! so its symbols never meet the SQLite that rusqlite bundles.
//!
//! This is the one module with `unsafe` code: every call goes to a C
//! function whose contract is SQLite's documented API; pointers come from
//! that API and are used only while the statement or connection that owns
//! them is alive.
#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};

use tessera_bridge::csv::{self, Cell};
use tessera_bridge::engine::Error;
use tessera_bridge::engine::{ChunkRows, Shape, Source, Target, Versioned};
use tessera_bridge::schema;
use tessera_bridge::sync::{self, Dialect};
use tessera_bridge::value::{Affinity, Value};

pub mod history;

fn quote(ident: &str) -> String {
    schema::Engine::Sqlite.quote(ident)
}

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
                .map_err(|e| Error::driver(format!("libdoltlite lacks {}", String::from_utf8_lossy($name)), e))?
        }
    };
}

impl Api {
    fn load() -> Result<Api, Error> {
        let path = library_path()?;
        // SAFETY: loading a shared library runs its initializers; libdoltlite's
        // are SQLite's, which have no preconditions.
        let lib = unsafe { libloading::Library::new(&path) }
            .map_err(|e| Error::driver(format!("loading {}", path.display()), e))?;
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
    pub fn each_row(
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
        self.each_row(sql, params, &mut |_| Ok(()))
    }

    pub fn strings(&self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, Error> {
        let mut out = Vec::new();
        self.each_row(sql, params, &mut |row| {
            out.push(row);
            Ok(())
        })?;
        Ok(out)
    }
}

pub fn text(v: &Value) -> String {
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
            &[Value::Text(sync::STATE_TABLE.into())],
        )?;
        let rev = if dirty.is_empty() {
            self.strings("SELECT dolt_hashof('HEAD')", &[])?.first().and_then(|r| r.first()).map(text)
        } else {
            None
        };
        let table = quote(sync::STATE_TABLE);
        // State tables from before this column existed get it now.
        if !self.has_source_rev()? {
            Doltlite::execute(self, &format!("ALTER TABLE {table} ADD COLUMN source_rev VARCHAR(64)"), &[])?;
        }
        let sql = format!("UPDATE {table} SET source_rev = ?1 WHERE repo = ?2 AND branch = ?3");
        let rev = rev.map(Value::Text).unwrap_or(Value::Null);
        Doltlite::execute(self, &sql, &[rev, Value::Text(repo.into()), Value::Text(branch.into())])
    }

    fn has_source_rev(&self) -> Result<bool, Error> {
        let table = quote(sync::STATE_TABLE);
        let columns = self.strings(&format!("PRAGMA table_info({table})"), &[])?;
        Ok(columns.iter().any(|c| c.get(1).map(text).as_deref() == Some("source_rev")))
    }

    /// The Dolt commit recorded by the last sync with `repo`'s `branch`.
    pub fn synced_source_rev(&self, repo: &str, branch: &str) -> Result<Option<String>, Error> {
        if !self.has_source_rev()? {
            return Ok(None);
        }
        let sql = format!("SELECT source_rev FROM {} WHERE repo = ?1 AND branch = ?2", quote(sync::STATE_TABLE));
        let rows = self.strings(&sql, &[Value::Text(repo.into()), Value::Text(branch.into())])?;
        Ok(rows.first().and_then(|r| r.first()).filter(|v| !matches!(v, Value::Null)).map(text))
    }
}

impl Source for Doltlite {
    fn engine(&self) -> &'static str {
        "doltlite"
    }

    fn versioned(&mut self) -> Option<&mut dyn Versioned> {
        Some(self)
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
        let info = self.strings(&format!("PRAGMA table_info({})", quote(table)), &[])?;
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
            columns.push(tessera_bridge::layout::Column {
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
            .map(|r| tessera_bridge::layout::Index {
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
        let q = quote;
        let cols: Vec<String> = shape.columns.iter().map(|c| q(&c.name)).collect();
        let sql = format!("SELECT {} FROM {} LIMIT 1000", cols.join(", "), q(&shape.name));
        let (mut bytes, mut rows) = (0u64, 0u64);
        let mut record = Vec::new();
        self.each_row(&sql, &[], &mut |values| {
            let cells: Vec<Cell> = values.iter().zip(&shape.columns).map(|(v, c)| v.to_cell(c.affinity)).collect();
            record.clear();
            csv::write_record(&mut record, &cells);
            bytes += record.len() as u64;
            rows += 1;
            Ok(())
        })?;
        let average = bytes.checked_div(rows).map_or(64, |a| a.max(1));
        Ok((target_bytes / average).max(1))
    }

    fn scan(&mut self, shape: &Shape, each: &mut dyn FnMut(&[Cell]) -> Result<(), Error>) -> Result<(), Error> {
        let q = quote;
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
        self.each_row(&sql, &params, &mut |values| {
            let cells: Vec<Cell> = values.iter().zip(&columns).map(|(v, c)| v.to_cell(c.affinity)).collect();
            each(&cells)
        })
    }

    fn sync_state(&mut self, repo: &str, branch: &str) -> Result<Option<String>, Error> {
        let exists =
            self.strings("SELECT name FROM sqlite_master WHERE name = ?1", &[Value::Text(sync::STATE_TABLE.into())])?;
        if exists.is_empty() {
            return Ok(None);
        }
        let sql = format!("SELECT commit_id FROM {} WHERE repo = ?1 AND branch = ?2", quote(sync::STATE_TABLE));
        let rows = self.strings(&sql, &[Value::Text(repo.into()), Value::Text(branch.into())])?;
        Ok(rows.first().and_then(|r| r.first()).map(text))
    }

    fn apply(&mut self, changes: &[sync::TableChanges], state: Option<(&str, &str, &str)>) -> Result<(), Error> {
        Doltlite::execute(self, "BEGIN", &[])?;
        let run = || -> Result<(), Error> {
            for stmt in sync::statements(&Dialect::SQLITE, changes) {
                let mut params = Vec::with_capacity(stmt.params.len());
                for (cell, col) in &stmt.params {
                    params.push(
                        tessera_bridge::value::from_cell(cell, col.affinity)
                            .map_err(|e| Error::Database(format!("column {}: {e}", col.name)))?,
                    );
                }
                Doltlite::execute(self, &stmt.sql, &params)?;
            }
            if let Some((repo, branch, commit)) = state {
                Doltlite::execute(self, &sync::state_ddl(quote), &[])?;
                for (sql, values) in sync::state_statements(&Dialect::SQLITE, repo, branch, commit) {
                    let values: Vec<Value> =
                        values.into_iter().map(|v| v.map(Value::Text).unwrap_or(Value::Null)).collect();
                    Doltlite::execute(self, &sql, &values)?;
                }
            }
            Ok(())
        };
        match run() {
            Ok(()) => {
                Doltlite::execute(self, "COMMIT", &[])?;
                if !changes.iter().all(|c| c.deletes.is_empty() && c.inserts.is_empty() && c.updates.is_empty()) {
                    Doltlite::execute(self, "SELECT dolt_commit('-A', '-m', 'Sync from git by tessera')", &[])?;
                }
                // Only the state written after a push (no rows to apply)
                // marks the data as synced up to the Dolt commit.
                if let (Some((repo, branch, _)), true) = (state, changes.is_empty()) {
                    self.record_source_rev(repo, branch)?;
                }
                Ok(())
            }
            Err(e) => {
                let _ = Doltlite::execute(self, "ROLLBACK", &[]);
                Err(e)
            }
        }
    }
}

/// The rows changed in Dolt since the last sync, read with `dolt_diff_<table>`.
impl Versioned for Doltlite {
    fn commits_since_sync(&mut self, repo: &str, branch: &str) -> Result<Option<Vec<String>>, Error> {
        let Some(rev) = self.synced_source_rev(repo, branch)? else { return Ok(None) };
        let log: Vec<String> =
            self.strings("SELECT commit_hash FROM dolt_log", &[])?.iter().map(|r| text(&r[0])).collect();
        Ok(log.iter().position(|h| *h == rev).map(|pos| log[..pos].to_vec()))
    }

    /// Keys changed in `table` since Dolt commit `since`: in commits after it on
    /// the current branch (`newer`) and in the working set.
    fn changed_keys(
        &mut self,
        table: &str,
        key: &str,
        newer: &[String],
        affinity: Affinity,
    ) -> Result<Vec<String>, Error> {
        let q = quote;
        let marks: Vec<String> = (1..=newer.len()).map(|i| format!("?{i}")).collect();
        let mut filter = "to_commit = 'WORKING'".to_string();
        if !marks.is_empty() {
            filter.push_str(&format!(" OR to_commit IN ({})", marks.join(", ")));
        }
        let sql = format!(
            "SELECT {}, {} FROM {} WHERE {filter}",
            q(&format!("to_{key}")),
            q(&format!("from_{key}")),
            q(&format!("dolt_diff_{table}"))
        );
        let params: Vec<Value> = newer.iter().map(|h| Value::Text(h.clone())).collect();
        let mut keys = BTreeSet::new();
        for row in self.strings(&sql, &params)? {
            for v in row {
                if let Some(cell) = v.to_cell(affinity) {
                    keys.insert(cell);
                }
            }
        }
        Ok(keys.into_iter().collect())
    }

    fn scan_range(
        &mut self,
        shape: &Shape,
        low: Option<Value>,
        high: Option<Value>,
        each: &mut dyn FnMut(&[Cell]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.range = Some((low, high));
        let scanned = self.scan(shape, each);
        self.range = None;
        scanned
    }
}

/// A doltlite file as an import's target: rows inserted one prepared
/// statement at a time (in-process, no round trips), the import recorded
/// as one Dolt commit at the end.
impl Target for Doltlite {
    fn dialect(&self) -> schema::Engine {
        schema::Engine::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<(), Error> {
        Doltlite::execute(self, sql, params)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Option<String>>>, Error> {
        let rows = self.strings(sql, params)?;
        Ok(rows
            .into_iter()
            .map(|r| r.into_iter().map(|v| if v == Value::Null { None } else { Some(text(&v)) }).collect())
            .collect())
    }

    fn load(&mut self, rows: ChunkRows<'_>) -> Result<u64, Error> {
        let meta = rows.meta;
        let file = rows.chunk.file.clone();
        let cols: Vec<String> = meta.columns.iter().map(|c| quote(&c.name)).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(&meta.name),
            cols.join(", "),
            vec!["?"; cols.len()].join(", ")
        );
        rows.values(&mut |line, values| {
            Doltlite::execute(self, &sql, values).map_err(|e| Error::damaged(&file, line, e.to_string()))
        })
    }

    fn finish_load(&mut self, message: &str) -> Result<(), Error> {
        Doltlite::execute(self, "SELECT dolt_commit('-A', '-m', ?1)", &[Value::Text(message.to_string())])
    }
}
