//! SQLite as a source and a target, with its exact DDL.

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::layout::{Column, ForeignKey, Index};
use crate::value::{Affinity, Value};
use crate::Error;

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
    Connection::open(path).map_err(|e| Error::Database(format!("opening {path}: {e}")))
}

pub fn create(path: &str) -> Result<Connection, Error> {
    let path = path.strip_prefix("sqlite://").unwrap_or(path);
    Connection::open(path).map_err(|e| Error::Database(format!("creating {path}: {e}")))
}

fn db(e: rusqlite::Error) -> Error {
    Error::Database(e.to_string())
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
    each: &mut dyn FnMut(&[crate::csv::Cell]) -> Result<(), Error>,
) -> Result<(), Error> {
    use crate::value::{set_cell, ValueRef as V};
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

/// How SQLite spells sync's statements.
pub(crate) const DIALECT: crate::sync::Dialect = crate::sync::Dialect {
    quote,
    param: |_, _| "?".into(),
    is: "IS",
    delete_one: |table, cond| {
        format!("DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {cond} LIMIT 1)")
    },
};

/// The commit last synced with `repo`'s `branch`.
pub(crate) fn sync_state(conn: &Connection, repo: &str, branch: &str) -> Result<Option<String>, Error> {
    let exists: bool = conn
        .query_row("SELECT count(*) > 0 FROM sqlite_master WHERE name = ?1", [crate::sync::STATE_TABLE], |r| r.get(0))
        .map_err(db)?;
    if !exists {
        return Ok(None);
    }
    let sql = format!("SELECT commit_id FROM {} WHERE repo = ?1 AND branch = ?2", quote(crate::sync::STATE_TABLE));
    match conn.query_row(&sql, [repo, branch], |r| r.get(0)) {
        Ok(c) => Ok(Some(c)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(db(e)),
    }
}

/// Applies sync's changes and state inside the caller's transaction.
pub(crate) fn apply(
    conn: &Connection,
    changes: &[crate::sync::TableChanges],
    state: Option<(&str, &str, &str)>,
) -> Result<(), Error> {
    conn.execute_batch("PRAGMA defer_foreign_keys = ON").map_err(db)?;
    for stmt in crate::sync::statements(&DIALECT, changes) {
        let mut params = Vec::with_capacity(stmt.params.len());
        for (cell, col) in &stmt.params {
            let v = crate::value::from_cell(cell, col.affinity)
                .map_err(|e| Error::Database(format!("column {}: {e}", col.name)))?;
            params.push(to_sql(&v));
        }
        conn.execute(&stmt.sql, rusqlite::params_from_iter(params))
            .map_err(|e| Error::Database(format!("{}: {e}", stmt.sql)))?;
    }
    if let Some((repo, branch, commit)) = state {
        conn.execute_batch(&crate::sync::state_ddl(quote)).map_err(db)?;
        for (sql, values) in crate::sync::state_statements(&DIALECT, repo, branch, commit) {
            conn.execute(&sql, rusqlite::params_from_iter(values)).map_err(db)?;
        }
    }
    Ok(())
}
