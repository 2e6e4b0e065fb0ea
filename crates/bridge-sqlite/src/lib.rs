//! SQLite as a source and a target of the data bridge: exports read
//! tables with their exact DDL, imports load chunks through one prepared
//! INSERT per chunk, sync applies row changes in one transaction.

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use tessera_bridge::csv::{self, Cell};
use tessera_bridge::engine::Error;
use tessera_bridge::engine::{ChunkRows, Shape, Source, Target};
use tessera_bridge::layout::{Column, ForeignKey, Index, TableMeta};
use tessera_bridge::schema;
use tessera_bridge::sync::{self, Dialect};
use tessera_bridge::value::{Affinity, Value};

/// A table's shape as SQLite describes it.
pub struct TableSchema {
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub autoincrement: bool,
    pub create_sql: String,
    pub indexes: Vec<Index>,
    pub foreign_keys: Vec<ForeignKey>,
}

pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

pub fn open(path: &str) -> Result<Connection, Error> {
    let path = path.strip_prefix("sqlite://").unwrap_or(path);
    if !std::path::Path::new(path).exists() {
        return Err(Error::Database(format!("SQLite database {path} does not exist")));
    }
    Connection::open(path).map_err(|e| Error::driver(format!("opening {path}"), e))
}

pub fn create(path: &str) -> Result<Connection, Error> {
    let path = path.strip_prefix("sqlite://").unwrap_or(path);
    Connection::open(path).map_err(|e| Error::driver(format!("creating {path}"), e))
}

fn db(e: rusqlite::Error) -> Error {
    Error::driver("SQLite", e)
}

/// User tables, in name order.
pub fn tables(conn: &Connection) -> Result<Vec<String>, Error> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .map_err(db)?;
    let names =
        stmt.query_map([], |r| r.get::<_, String>(0)).map_err(db)?.collect::<Result<Vec<_>, _>>().map_err(db)?;
    Ok(names)
}

pub fn schema(conn: &Connection, table: &str) -> Result<TableSchema, Error> {
    let create_sql: String = conn
        .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| r.get(0))
        .map_err(|_| Error::UnknownTable(table.to_string()))?;
    let mut columns = Vec::new();
    let mut pk: Vec<(i64, String)> = Vec::new();
    {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", quote(table))).map_err(db)?;
        let mut rows = stmt.query([]).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let name: String = r.get(1).map_err(db)?;
            let declared: String = r.get(2).map_err(db)?;
            let affinity = Affinity::of_declared(&declared);
            let pk_pos: i64 = r.get(5).map_err(db)?;
            if pk_pos > 0 {
                pk.push((pk_pos, name.clone()));
            }
            columns.push(Column {
                name,
                binary: affinity == Affinity::Blob,
                declared_type: declared,
                affinity,
                not_null: r.get::<_, i64>(3).map_err(db)? != 0,
                default: r.get(4).map_err(db)?,
            });
        }
    }
    pk.sort();
    let mut indexes = Vec::new();
    {
        let mut stmt = conn.prepare(&format!("PRAGMA index_list({})", quote(table))).map_err(db)?;
        let list: Vec<(String, bool, String)> = stmt
            .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(2)? != 0, r.get::<_, String>(3)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        for (name, unique, origin) in list {
            let mut cols_stmt = conn.prepare(&format!("PRAGMA index_info({})", quote(&name))).map_err(db)?;
            let cols: Vec<String> = cols_stmt
                .query_map([], |r| r.get::<_, Option<String>>(2))
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?
                .into_iter()
                .map(|c| c.unwrap_or_else(|| "<expression>".into()))
                .collect();
            let sql: Option<String> = conn
                .query_row("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1", [&name], |r| r.get(0))
                .unwrap_or(None);
            // Indexes made by UNIQUE/PRIMARY KEY constraints come back with the table.
            let sql = if origin == "c" { sql } else { None };
            indexes.push(Index { name, unique, columns: cols, sql });
        }
    }
    let mut foreign_keys: Vec<ForeignKey> = Vec::new();
    {
        let mut stmt = conn.prepare(&format!("PRAGMA foreign_key_list({})", quote(table))).map_err(db)?;
        let rows: Vec<(i64, String, String, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        let mut by_id: std::collections::BTreeMap<i64, ForeignKey> = Default::default();
        for (id, ref_table, from, to) in rows {
            let fk = by_id.entry(id).or_insert(ForeignKey { columns: vec![], ref_table, ref_columns: vec![] });
            fk.columns.push(from);
            fk.ref_columns.push(to.unwrap_or_default());
        }
        foreign_keys.extend(by_id.into_values());
    }
    let autoincrement = create_sql.to_ascii_uppercase().contains("AUTOINCREMENT");
    Ok(TableSchema {
        name: table.to_string(),
        columns,
        primary_key: pk.into_iter().map(|(_, n)| n).collect(),
        autoincrement,
        create_sql,
        indexes,
        foreign_keys,
    })
}

/// Streams the table's rows as cells in `order`, reusing one row of cells
/// (no allocation per value once the strings have grown).
pub fn scan_cells(
    conn: &Connection,
    schema: &TableSchema,
    order: &[String],
    each: &mut dyn FnMut(&[Cell]) -> Result<(), Error>,
) -> Result<(), Error> {
    use tessera_bridge::value::{set_cell, ValueRef as V};
    let order: Vec<String> = order.iter().map(|c| quote(c)).collect();
    let cols: Vec<String> = schema.columns.iter().map(|c| quote(&c.name)).collect();
    let sql = format!("SELECT {} FROM {} ORDER BY {}", cols.join(", "), quote(&schema.name), order.join(", "));
    let mut stmt = conn.prepare(&sql).map_err(db)?;
    let mut rows = stmt.query([]).map_err(db)?;
    let mut cells = vec![None; schema.columns.len()];
    while let Some(r) = rows.next().map_err(db)? {
        for (i, (cell, col)) in cells.iter_mut().zip(&schema.columns).enumerate() {
            let v =
                match r.get_ref(i).map_err(db)? {
                    ValueRef::Null => V::Null,
                    ValueRef::Integer(n) => V::Integer(n),
                    ValueRef::Real(f) => V::Real(f),
                    ValueRef::Text(t) => V::Text(std::str::from_utf8(t).map_err(|_| {
                        Error::Database(format!("a TEXT value of column {} is not valid UTF-8", col.name))
                    })?),
                    ValueRef::Blob(b) => V::Blob(b),
                };
            set_cell(cell, v, col.affinity);
        }
        each(&cells)?;
    }
    Ok(())
}

pub fn to_sql(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Integer(i) => rusqlite::types::Value::Integer(*i),
        Value::Real(f) => rusqlite::types::Value::Real(*f),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
        Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
    }
}

/// The commit last synced with `repo`'s `branch`.
pub fn sync_state(conn: &Connection, repo: &str, branch: &str) -> Result<Option<String>, Error> {
    let exists: bool = conn
        .query_row("SELECT count(*) > 0 FROM sqlite_master WHERE name = ?1", [sync::STATE_TABLE], |r| r.get(0))
        .map_err(db)?;
    if !exists {
        return Ok(None);
    }
    let sql = format!("SELECT commit_id FROM {} WHERE repo = ?1 AND branch = ?2", quote(sync::STATE_TABLE));
    match conn.query_row(&sql, [repo, branch], |r| r.get(0)) {
        Ok(c) => Ok(Some(c)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(db(e)),
    }
}

/// Applies sync's changes and state inside the caller's transaction.
pub fn apply(
    conn: &Connection,
    changes: &[sync::TableChanges],
    state: Option<(&str, &str, &str)>,
) -> Result<(), Error> {
    conn.execute_batch("PRAGMA defer_foreign_keys = ON").map_err(db)?;
    for stmt in sync::statements(&Dialect::SQLITE, changes) {
        let mut params = Vec::with_capacity(stmt.params.len());
        for (cell, col) in &stmt.params {
            let v = tessera_bridge::value::from_cell(cell, col.affinity)
                .map_err(|e| Error::Database(format!("column {}: {e}", col.name)))?;
            params.push(to_sql(&v));
        }
        conn.execute(&stmt.sql, rusqlite::params_from_iter(params)).map_err(|e| Error::driver(stmt.sql.clone(), e))?;
    }
    if let Some((repo, branch, commit)) = state {
        conn.execute_batch(&sync::state_ddl(quote)).map_err(db)?;
        for (sql, values) in sync::state_statements(&Dialect::SQLITE, repo, branch, commit) {
            conn.execute(&sql, rusqlite::params_from_iter(values)).map_err(db)?;
        }
    }
    Ok(())
}

/// Rows per chunk aimed at when no earlier export fixed the divisor.
fn estimate_divisor(conn: &Connection, schema: &TableSchema, target: u64) -> Result<u64, Error> {
    let mut bytes = 0u64;
    let mut n = 0u64;
    let mut buf = Vec::new();
    let sample = format!("SELECT * FROM {} LIMIT 1000", quote(&schema.name));
    let mut stmt = conn.prepare(&sample).map_err(db)?;
    let mut rows = stmt.query([]).map_err(db)?;
    while let Some(r) = rows.next().map_err(db)? {
        buf.clear();
        let cells: Vec<Cell> = (0..schema.columns.len())
            .map(|i| r.get_ref(i).map(|v| format!("{v:?}").len()).unwrap_or(0))
            .map(|len| Some("x".repeat(len.min(64))))
            .collect();
        csv::write_record(&mut buf, &cells);
        bytes += buf.len() as u64;
        n += 1;
    }
    let avg = bytes.checked_div(n).map_or(64, |a| a.max(1));
    Ok((target / avg).max(1))
}

/// An SQLite database file.
pub struct Sqlite {
    conn: Connection,
}

impl Source for Sqlite {
    fn engine(&self) -> &'static str {
        "sqlite"
    }
    fn tables(&mut self) -> Result<Vec<String>, Error> {
        tables(&self.conn)
    }
    fn describe(&mut self, table: &str) -> Result<Shape, Error> {
        let s = schema(&self.conn, table)?;
        let autoincrement_seq = if s.autoincrement {
            self.conn.query_row("SELECT seq FROM sqlite_sequence WHERE name = ?1", [table], |r| r.get(0)).ok()
        } else {
            None
        };
        Ok(Shape {
            name: s.name,
            columns: s.columns,
            primary_key: s.primary_key,
            autoincrement: s.autoincrement,
            autoincrement_seq,
            order_first: None,
            create_sql: s.create_sql,
            post_sql: Vec::new(),
            indexes: s.indexes,
            foreign_keys: s.foreign_keys,
        })
    }
    fn divisor(&mut self, shape: &Shape, target_bytes: u64) -> Result<u64, Error> {
        let schema = schema(&self.conn, &shape.name)?;
        estimate_divisor(&self.conn, &schema, target_bytes)
    }
    fn scan(&mut self, shape: &Shape, each: &mut dyn FnMut(&[Cell]) -> Result<(), Error>) -> Result<(), Error> {
        let schema = schema(&self.conn, &shape.name)?;
        scan_cells(&self.conn, &schema, &shape.order(), each)
    }
    fn sync_state(&mut self, repo: &str, branch: &str) -> Result<Option<String>, Error> {
        sync_state(&self.conn, repo, branch)
    }
    fn apply(&mut self, changes: &[sync::TableChanges], state: Option<(&str, &str, &str)>) -> Result<(), Error> {
        let tx = self.conn.transaction().map_err(db)?;
        apply(&tx, changes, state)?;
        tx.commit().map_err(|e| Error::driver("committing the sync", e))
    }
}

impl Sqlite {
    /// Opens an existing database file (`path` or `sqlite://path`).
    pub fn open(path: &str) -> Result<Sqlite, Error> {
        Ok(Sqlite { conn: open(path)? })
    }

    /// Opens a database file, creating it when it does not exist.
    pub fn create(path: &str) -> Result<Sqlite, Error> {
        Ok(Sqlite { conn: create(path)? })
    }
}

fn bind(params: &[Value]) -> impl Iterator<Item = rusqlite::types::Value> + '_ {
    params.iter().map(to_sql)
}

impl Target for Sqlite {
    fn dialect(&self) -> schema::Engine {
        schema::Engine::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<(), Error> {
        if params.is_empty() {
            return self.conn.execute_batch(sql).map_err(db);
        }
        let mut stmt = self.conn.prepare_cached(sql).map_err(db)?;
        stmt.execute(rusqlite::params_from_iter(bind(params))).map(|_| ()).map_err(db)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Option<String>>>, Error> {
        let mut stmt = self.conn.prepare(sql).map_err(db)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(bind(params))).map_err(db)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db)? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i).map_err(db)? {
                    ValueRef::Null => None,
                    ValueRef::Integer(v) => Some(v.to_string()),
                    ValueRef::Real(v) => Some(v.to_string()),
                    ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
                });
            }
            out.push(row);
        }
        Ok(out)
    }

    fn start_load(&mut self) -> Result<(), Error> {
        // Foreign keys are checked once everything is in place.
        self.conn.execute_batch("PRAGMA foreign_keys = OFF").map_err(db)
    }

    fn load(&mut self, rows: ChunkRows<'_>) -> Result<u64, Error> {
        let meta = rows.meta;
        let file = rows.chunk.file.clone();
        let cols: Vec<String> = meta.columns.iter().map(|c| quote(&c.name)).collect();
        let marks = vec!["?"; cols.len()];
        let sql = format!("INSERT INTO {} ({}) VALUES ({})", quote(&meta.name), cols.join(", "), marks.join(", "));
        let mut stmt = self.conn.prepare_cached(&sql).map_err(db)?;
        rows.values(&mut |line, values| {
            stmt.execute(rusqlite::params_from_iter(bind(values)))
                .map(|_| ())
                .map_err(|e| Error::damaged(&file, line, e.to_string()))
        })
    }

    fn finish_table(&mut self, meta: &TableMeta) -> Result<(), Error> {
        if let Some(seq) = meta.autoincrement_seq {
            self.conn.execute("DELETE FROM sqlite_sequence WHERE name = ?1", [&meta.name]).map_err(db)?;
            self.conn
                .execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)", rusqlite::params![meta.name, seq])
                .map_err(db)?;
        }
        Ok(())
    }

    fn foreign_key_violation(&mut self) -> Result<Option<(String, String)>, Error> {
        let mut stmt = self.conn.prepare("PRAGMA foreign_key_check").map_err(db)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1).unwrap_or(0)))).map_err(db)?;
        let violations: Vec<(String, i64)> = rows.collect::<Result<_, _>>().map_err(db)?;
        Ok(violations.first().map(|(table, rowid)| {
            let reason = format!("{} row(s) break a foreign key, e.g. rowid {rowid} of {table}", violations.len());
            (table.clone(), reason)
        }))
    }

    fn finish_load(&mut self, _message: &str) -> Result<(), Error> {
        self.conn.execute_batch("PRAGMA foreign_keys = ON").map_err(db)
    }
}
