//! Cross-engine import: an export of one engine family loaded into another
//! (SQLite and doltlite are one family, PostgreSQL and MySQL/MariaDB one
//! each), each column's type mapped by the table below, every value
//! converted through its portable kind, and every approximation reported
//! per column.
//!
//! | source type                                        | kind        | SQLite, doltlite | PostgreSQL        | MySQL/MariaDB             |
//! |----------------------------------------------------|-------------|------------------|-------------------|---------------------------|
//! | smallint, integer, bigint, serial, year, bit, INTEGER | integer  | INTEGER          | bigint            | BIGINT                    |
//! | bigint unsigned                                    | unsigned    | TEXT             | numeric(20,0)     | BIGINT UNSIGNED           |
//! | real, float, double precision, REAL                | real        | REAL             | double precision  | DOUBLE                    |
//! | numeric, decimal, NUMERIC                          | decimal     | TEXT             | numeric[(p,s)]    | DECIMAL(p,s), else LONGTEXT |
//! | boolean, tinyint(1), BOOLEAN                       | boolean     | INTEGER 1/0      | boolean           | BOOLEAN (1/0)             |
//! | bytea, blob, binary, varbinary, BLOB               | binary      | BLOB             | bytea             | LONGBLOB (key: VARBINARY)       |
//! | char, varchar, text, TEXT                          | text        | TEXT             | text              | LONGTEXT (key: VARCHAR)      |
//! | json, dates, times, timestamps, intervals, uuid, arrays, enum, set, anything else | other | TEXT | text | LONGTEXT (key: VARCHAR) |
//!
//! Exact: integer, real, binary and text (strings), and decimal between
//! PostgreSQL and MySQL when the precision fits; everything else is
//! reported. NaN (and in MySQL, ±Infinity) become NULL where the target
//! has no such value, reported too. Primary keys and NOT NULL carry over;
//! other constraints, indexes and defaults do not (the source's DDL is in
//! `.dolt-metadata/schema.sql`). Every statement is built here from the
//! target's type names and quoted identifiers, never from repository text.

use std::path::Path;

use rusqlite::Connection;

use crate::csv::Cell;
use crate::layout::{Column, TableMeta};
use crate::ops::ImportReport;
use crate::value::{Affinity, Value};
use crate::{sqlite, Error};

/// The engine an import writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Sqlite,
    Doltlite,
    Postgres,
    Mysql,
}

impl Target {
    fn sqlite_family(self) -> bool {
        matches!(self, Target::Sqlite | Target::Doltlite)
    }
}

/// A column's kind, shared by every engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Portable {
    Integer,
    /// MySQL's BIGINT UNSIGNED, above what a signed 64-bit integer holds.
    Unsigned,
    Real,
    /// With the declared precision and scale, when there are any.
    Decimal(Option<(u32, u32)>),
    Boolean,
    Binary,
    Text,
    Other,
}

/// `(p, s)` or `(p)` of a declared type.
fn precision(declared: &str) -> Option<(u32, u32)> {
    let inner = declared.split_once('(')?.1.split_once(')')?.0;
    let mut parts = inner.split(',').map(|p| p.trim().parse::<u32>());
    let p = parts.next()?.ok()?;
    let s = match parts.next() {
        Some(s) => s.ok()?,
        None => 0,
    };
    Some((p, s))
}

/// A column's kind from its declared type in the source's dialect.
fn classify(column: &Column, source_engine: &str) -> Portable {
    let t = column.declared_type.trim().to_ascii_lowercase();
    if matches!(source_engine, "sqlite" | "doltlite") {
        // SQLite's own rules (affinity), plus the names that say more.
        return if t.starts_with("bool") {
            Portable::Boolean
        } else if t.starts_with("numeric") || t.starts_with("decimal") {
            // SQLite's NUMERIC holds integers and reals, not decimals of a
            // fixed scale: its declared precision says nothing.
            Portable::Decimal(None)
        } else {
            match column.affinity {
                Affinity::Integer => Portable::Integer,
                Affinity::Real => Portable::Real,
                Affinity::Text => Portable::Text,
                Affinity::Blob if !t.is_empty() => Portable::Binary,
                _ => Portable::Other,
            }
        };
    }
    // The type's name without its size or modifiers: `int(11) unsigned` → `int`.
    let base = t.split(['(', ' ']).next().unwrap_or("");
    if t.ends_with("[]") {
        Portable::Other
    } else if base.starts_with("bool") || t == "tinyint(1)" {
        Portable::Boolean
    } else if base == "bigint" && t.contains("unsigned") {
        Portable::Unsigned
    } else if matches!(
        base,
        "smallint"
            | "integer"
            | "int"
            | "bigint"
            | "tinyint"
            | "mediumint"
            | "int2"
            | "int4"
            | "int8"
            | "serial"
            | "smallserial"
            | "bigserial"
            | "year"
    ) || (base == "bit" && source_engine == "mysql")
    {
        Portable::Integer
    } else if base == "numeric" || base == "decimal" {
        Portable::Decimal(precision(&t))
    } else if matches!(base, "real" | "float" | "float4" | "float8" | "double") {
        Portable::Real
    } else if column.binary || base == "bytea" || base.contains("blob") || base.contains("binary") {
        Portable::Binary
    } else if base.contains("char") || base.contains("text") || base == "character" {
        Portable::Text
    } else {
        Portable::Other
    }
}

/// How one column is created and converted in the target.
struct ColumnPlan {
    kind: Portable,
    sql_type: String,
    /// What is approximated, for the report.
    note: Option<String>,
}

/// `key_chars`: for a primary-key column, the characters MySQL's index
/// may give it (its keys are at most 3072 bytes, four to a character).
fn plan_column(target: Target, column: &Column, key_chars: Option<u32>, source_engine: &str) -> ColumnPlan {
    let kind = classify(column, source_engine);
    let is_key = key_chars.is_some();
    let chars = key_chars.unwrap_or(768);
    let declared = column.declared_type.to_ascii_lowercase();
    let (sql_type, note): (String, Option<String>) = match (target, kind) {
        (_, Portable::Integer) if target.sqlite_family() => ("INTEGER".into(), None),
        (_, Portable::Real) if target.sqlite_family() => ("REAL".into(), None),
        (_, Portable::Binary) if target.sqlite_family() => ("BLOB".into(), None),
        (_, Portable::Boolean) if target.sqlite_family() => ("INTEGER".into(), Some("stored as INTEGER 1/0".into())),
        (_, Portable::Unsigned | Portable::Decimal(_)) if target.sqlite_family() => {
            ("TEXT".into(), Some("kept as exact TEXT".into()))
        }
        (_, Portable::Text) if target.sqlite_family() => ("TEXT".into(), None),
        (_, Portable::Other) if target.sqlite_family() => ("TEXT".into(), Some(other_note(&declared).into())),
        (Target::Postgres, Portable::Integer) => ("bigint".into(), None),
        (Target::Postgres, Portable::Unsigned) => ("numeric(20,0)".into(), Some("stored as numeric(20,0)".into())),
        (Target::Postgres, Portable::Real) => ("double precision".into(), None),
        (Target::Postgres, Portable::Decimal(Some((p, s)))) if (1..=1000).contains(&p) && s <= p => {
            (format!("numeric({p},{s})"), None)
        }
        (Target::Postgres, Portable::Decimal(_)) => ("numeric".into(), Some("stored as numeric".into())),
        (Target::Postgres, Portable::Boolean) => {
            ("boolean".into(), Some("stored as boolean (1/0 become true/false)".into()))
        }
        (Target::Postgres, Portable::Binary) => ("bytea".into(), None),
        (Target::Postgres, Portable::Text) => ("text".into(), None),
        (Target::Postgres, Portable::Other) => ("text".into(), Some(other_note(&declared).into())),
        (_, Portable::Integer) => ("BIGINT".into(), None),
        (_, Portable::Unsigned) => ("BIGINT UNSIGNED".into(), None),
        (_, Portable::Real) => ("DOUBLE".into(), None),
        (_, Portable::Decimal(Some((p, s)))) if (1..=65).contains(&p) && s <= 30 && s <= p => {
            (format!("DECIMAL({p},{s})"), None)
        }
        (_, Portable::Decimal(_)) if is_key => {
            (format!("VARCHAR({chars})"), Some(format!("kept as exact text (VARCHAR({chars}))")))
        }
        (_, Portable::Decimal(_)) => ("LONGTEXT".into(), Some("kept as exact text".into())),
        (_, Portable::Boolean) => ("BOOLEAN".into(), Some("stored as BOOLEAN 1/0".into())),
        (_, Portable::Binary) if is_key => {
            (format!("VARBINARY({})", chars * 4), Some(format!("key stored as VARBINARY({})", chars * 4)))
        }
        (_, Portable::Binary) => ("LONGBLOB".into(), None),
        (_, Portable::Text) if is_key => (format!("VARCHAR({chars})"), Some(format!("key stored as VARCHAR({chars})"))),
        (_, Portable::Text) => ("LONGTEXT".into(), None),
        (_, Portable::Other) if is_key => {
            (format!("VARCHAR({chars})"), Some(format!("{} (VARCHAR({chars}))", other_note(&declared))))
        }
        (_, Portable::Other) => ("LONGTEXT".into(), Some(other_note(&declared).into())),
    };
    ColumnPlan { kind, sql_type, note }
}

fn other_note(declared: &str) -> &'static str {
    if declared.ends_with("[]") {
        "array stored as its text literal"
    } else if declared.starts_with("json") {
        "stored as JSON text"
    } else {
        "stored as its text form"
    }
}

/// A cell of the source's export as a value of its kind. SQLite-family
/// exports are read by affinity (their profile escapes text); PostgreSQL
/// and MySQL exports hold each value's own text, and binary as `\x` hex.
fn decode(sqlite_source: bool, column: &Column, kind: Portable, cell: &Cell) -> Result<Value, String> {
    if sqlite_source {
        return crate::value::from_cell(cell, column.affinity).map_err(|e| e.to_string());
    }
    let Some(t) = cell else { return Ok(Value::Null) };
    Ok(match kind {
        Portable::Integer => match t.parse::<i64>() {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Text(t.clone()),
        },
        Portable::Real => Value::Real(match t.as_str() {
            "NaN" => f64::NAN,
            "Infinity" | "inf" => f64::INFINITY,
            "-Infinity" | "-inf" => f64::NEG_INFINITY,
            other => other.parse().map_err(|_| format!("{t:?} is not a number"))?,
        }),
        Portable::Boolean => match t.as_str() {
            "t" | "true" | "1" => Value::Integer(1),
            "f" | "false" | "0" => Value::Integer(0),
            other => return Err(format!("{other:?} is not a boolean")),
        },
        Portable::Binary => {
            let digits = t.strip_prefix("\\x").ok_or_else(|| format!("{t:?} is not \\x hex"))?;
            Value::Blob(hex::decode(digits).map_err(|_| format!("{t:?} is not valid hex"))?)
        }
        Portable::Unsigned | Portable::Decimal(_) | Portable::Text | Portable::Other => Value::Text(t.clone()),
    })
}

/// A value as the target takes it for a column of `kind`; `lost` is set
/// when it had to become NULL.
fn encode(target: Target, kind: Portable, value: Value, lost: &mut Option<&'static str>) -> Result<Value, String> {
    let as_text = |v: Value| match v {
        Value::Integer(i) => Value::Text(i.to_string()),
        Value::Real(f) => Value::Text(crate::value::real_text(f)),
        Value::Blob(b) => Value::Text(format!("\\x{}", hex::encode(b))),
        other => other,
    };
    Ok(match kind {
        Portable::Real => match value {
            Value::Integer(i) => Value::Real(i as f64),
            Value::Real(f) if f.is_nan() && target != Target::Postgres => {
                *lost = Some(if target == Target::Mysql {
                    "NaN stored as NULL (MySQL has no NaN)"
                } else {
                    "NaN stored as NULL (SQLite has no NaN)"
                });
                Value::Null
            }
            Value::Real(f) if f.is_infinite() && target == Target::Mysql => {
                *lost = Some("Infinity stored as NULL (MySQL has no infinities)");
                Value::Null
            }
            other => other,
        },
        Portable::Boolean => match value {
            Value::Integer(i) if target == Target::Postgres => Value::Text(if i != 0 { "t" } else { "f" }.into()),
            other => other,
        },
        Portable::Unsigned | Portable::Decimal(_) | Portable::Text | Portable::Other => as_text(value),
        Portable::Integer | Portable::Binary => value,
    })
}

/// The target database, as the import drives it.
enum Writer {
    Sqlite(Connection),
    Doltlite(crate::doltlite::Doltlite),
    // Boxed: the connections are much larger than the others.
    Postgres(Box<crate::postgres::Postgres>),
    Mysql(Box<crate::mysql::Mysql>),
}

impl Writer {
    fn open(target: Target, database: &str) -> Result<Writer, Error> {
        Ok(match target {
            Target::Sqlite => Writer::Sqlite(sqlite::create(database)?),
            Target::Doltlite => Writer::Doltlite(crate::doltlite::Doltlite::open(
                database.strip_prefix("sqlite://").unwrap_or(database),
                true,
            )?),
            Target::Postgres => Writer::Postgres(Box::new(crate::postgres::Postgres::connect(database)?)),
            Target::Mysql => Writer::Mysql(Box::new(crate::mysql::Mysql::connect(database)?)),
        })
    }

    fn quote(&self, ident: &str) -> String {
        match self {
            Writer::Sqlite(_) | Writer::Doltlite(_) => sqlite::quote(ident),
            Writer::Postgres(_) => crate::postgres::quote(ident),
            Writer::Mysql(_) => crate::mysql::quote(ident),
        }
    }

    fn exists(&mut self, table: &str) -> Result<bool, Error> {
        match self {
            Writer::Sqlite(conn) => Ok(sqlite::tables(conn)?.iter().any(|t| t == table)),
            Writer::Doltlite(db) => Ok(crate::ops::Source::tables(db)?.iter().any(|t| t == table)),
            Writer::Postgres(pg) => pg.table_exists(table),
            Writer::Mysql(my) => my.table_exists(table),
        }
    }

    /// Runs one generated statement.
    fn run(&mut self, sql: &str) -> Result<(), Error> {
        let failed = |e: String| Error::Database(format!("{sql}: {e}"));
        match self {
            Writer::Sqlite(conn) => conn.execute_batch(sql).map_err(|e| failed(e.to_string())),
            Writer::Doltlite(db) => db.execute(sql, &[]),
            Writer::Postgres(pg) => pg.execute(sql).map_err(|e| failed(e.to_string())),
            Writer::Mysql(my) => my.execute(sql).map_err(|e| failed(e.to_string())),
        }
    }

    /// The placeholder of parameter `n` (1-based) for a column of `sql_type`.
    fn placeholder(&self, n: usize, sql_type: &str) -> String {
        match self {
            // Values are bound by their own type; the cast lets text,
            // integers and floats reach numeric, boolean or bytea columns.
            Writer::Postgres(_) => format!("CAST(${n} AS {sql_type})"),
            _ => "?".into(),
        }
    }

    fn insert(&mut self, sql: &str, values: &[Value]) -> Result<(), String> {
        match self {
            Writer::Sqlite(conn) => conn
                .prepare_cached(sql)
                .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(values.iter().map(sqlite::to_sql))))
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Writer::Doltlite(db) => db.execute(sql, values).map_err(|e| e.to_string()),
            Writer::Postgres(pg) => pg.insert_values(sql, values),
            Writer::Mysql(my) => my.insert_values(sql, values),
        }
    }

    /// Where the engine commits DDL on its own (MySQL), tables are created
    /// before the transaction and dropped again if it fails.
    fn transactional_ddl(&self) -> bool {
        !matches!(self, Writer::Mysql(_))
    }
}

/// Loads `names` of an export from another engine family into `database`,
/// in one transaction (MySQL: tables created first, dropped again on
/// failure); refuses tables the target has unless `replace`.
pub(crate) fn import_cross(
    repo: &Path,
    rev: &str,
    names: &[String],
    source_engine: &str,
    database: &str,
    target: Target,
    replace: bool,
) -> Result<ImportReport, Error> {
    let sqlite_source = matches!(source_engine, "sqlite" | "doltlite");
    let metas: Vec<TableMeta> = names
        .iter()
        .map(|name| {
            crate::ops::read_table_meta(repo, rev, name)?
                .ok_or_else(|| Error::Layout(format!("no metadata for table {name}")))
        })
        .collect::<Result<_, _>>()?;
    let mut writer = Writer::open(target, database)?;
    let mut existing = Vec::new();
    for name in names {
        if writer.exists(name)? {
            if !replace {
                return Err(Error::TargetNotEmpty(name.clone()));
            }
            existing.push(name.clone());
        }
    }
    let mut report = ImportReport::default();
    let plans: Vec<Vec<ColumnPlan>> = metas
        .iter()
        .map(|m| {
            // MySQL's 3072 key bytes shared by the key's columns (8 bytes
            // set aside for each), four bytes to a character.
            let n = m.primary_key.len().max(1) as u32;
            let chars = ((3072 - 8 * n) / (4 * n)).min(768);
            m.columns
                .iter()
                .map(|c| plan_column(target, c, m.primary_key.contains(&c.name).then_some(chars), source_engine))
                .collect()
        })
        .collect();
    for (meta, plan) in metas.iter().zip(&plans) {
        for (c, p) in meta.columns.iter().zip(plan) {
            if let Some(how) = &p.note {
                report.approximations.push(format!("{}.{} ({}): {how}", meta.name, c.name, c.declared_type));
            }
        }
    }
    let mut ddl = Vec::new();
    for name in &existing {
        ddl.push(format!("DROP TABLE {}", writer.quote(name)));
    }
    for (meta, plan) in metas.iter().zip(&plans) {
        let mut defs: Vec<String> = meta
            .columns
            .iter()
            .zip(plan)
            .map(|(c, p)| {
                format!("{} {}{}", writer.quote(&c.name), p.sql_type, if c.not_null { " NOT NULL" } else { "" })
            })
            .collect();
        if !meta.primary_key.is_empty() {
            let pk: Vec<String> = meta.primary_key.iter().map(|c| writer.quote(c)).collect();
            defs.push(format!("PRIMARY KEY ({})", pk.join(", ")));
        }
        let options = if target == Target::Mysql {
            " ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
        } else {
            ""
        };
        ddl.push(format!("CREATE TABLE {} (\n  {}\n){options}", writer.quote(&meta.name), defs.join(",\n  ")));
    }
    let transactional = writer.transactional_ddl();
    if !transactional {
        writer.run("SET FOREIGN_KEY_CHECKS = 0")?;
        for stmt in &ddl {
            writer.run(stmt)?;
        }
    }
    writer.run("BEGIN")?;
    let mut load = |writer: &mut Writer| -> Result<(), Error> {
        if transactional {
            for stmt in &ddl {
                writer.run(stmt)?;
            }
        }
        for (meta, plan) in metas.iter().zip(&plans) {
            let rows = load_table(writer, repo, rev, meta, plan, sqlite_source, target, &mut report)?;
            report.tables.push((meta.name.clone(), rows));
        }
        writer.run("COMMIT")
    };
    if let Err(e) = load(&mut writer) {
        let _ = writer.run("ROLLBACK");
        if !transactional {
            for meta in &metas {
                let _ = writer.run(&format!("DROP TABLE IF EXISTS {}", writer.quote(&meta.name)));
            }
        }
        return Err(e);
    }
    match &mut writer {
        Writer::Mysql(_) => writer.run("SET FOREIGN_KEY_CHECKS = 1")?,
        Writer::Doltlite(db) => db.execute(
            "SELECT dolt_commit('-A', '-m', ?1)",
            &[Value::Text(format!("Import from git by tessera ({source_engine} export)"))],
        )?,
        _ => {}
    }
    Ok(report)
}

/// Inserts the rows of one table, each converted column by column.
#[allow(clippy::too_many_arguments)]
fn load_table(
    writer: &mut Writer,
    repo: &Path,
    rev: &str,
    meta: &TableMeta,
    plan: &[ColumnPlan],
    sqlite_source: bool,
    target: Target,
    report: &mut ImportReport,
) -> Result<u64, Error> {
    let cols: Vec<String> = meta.columns.iter().map(|c| writer.quote(&c.name)).collect();
    let row_marks = |writer: &Writer, first: usize| -> String {
        let marks: Vec<String> =
            plan.iter().enumerate().map(|(i, p)| writer.placeholder(first + i, &p.sql_type)).collect();
        format!("({})", marks.join(", "))
    };
    let insert = format!("INSERT INTO {} ({}) VALUES ", writer.quote(&meta.name), cols.join(", "));
    let one_row = format!("{insert}{}", row_marks(writer, 1));
    // PostgreSQL and MySQL take rows in multi-row INSERTs (a round trip
    // per row would dominate); SQLite's are in-process already.
    let per_batch = match writer {
        Writer::Postgres(_) | Writer::Mysql(_) => (30_000 / cols.len().max(1)).clamp(1, 500),
        _ => 1,
    };
    let batch_sql = |writer: &Writer, n: usize| -> String {
        let tuples: Vec<String> = (0..n).map(|r| row_marks(writer, 1 + r * cols.len())).collect();
        format!("{insert}{}", tuples.join(", "))
    };
    let mut pending: Vec<(usize, Vec<Value>)> = Vec::with_capacity(per_batch);
    let mut pending_file = String::new();
    let mut lost_notes: Vec<String> = Vec::new();
    let mut edited = Vec::new();
    let rows = crate::ops::read_rows(repo, rev, meta, false, &mut edited, &mut |file, line, _, record| {
        let damaged = |reason: String| Error::Damaged { file: file.to_string(), line, reason };
        let cells =
            crate::csv::Reader::new(record).next_record().map_err(|e| damaged(e.to_string()))?.unwrap_or_default();
        if cells.len() != meta.columns.len() {
            return Err(damaged(format!("{} fields, the table has {} columns", cells.len(), meta.columns.len())));
        }
        let mut values = Vec::with_capacity(cells.len());
        for ((cell, column), p) in cells.iter().zip(&meta.columns).zip(plan) {
            let mut lost = None;
            let value = decode(sqlite_source, column, p.kind, cell)
                .and_then(|v| encode(target, p.kind, v, &mut lost))
                .map_err(|r| damaged(format!("column {}: {r}", column.name)))?;
            if let Some(how) = lost {
                let note = format!("{}.{}: {how}", meta.name, column.name);
                if !lost_notes.contains(&note) {
                    lost_notes.push(note);
                }
            }
            values.push(value);
        }
        if per_batch == 1 {
            return writer.insert(&one_row, &values).map_err(damaged);
        }
        if pending_file != file {
            flush(writer, &pending_file, &mut pending, &batch_sql, &one_row)?;
            pending_file = file.to_string();
        }
        pending.push((line, values));
        if pending.len() == per_batch {
            flush(writer, &pending_file, &mut pending, &batch_sql, &one_row)?;
        }
        Ok(())
    })?;
    flush(writer, &pending_file, &mut pending, &batch_sql, &one_row)?;
    report.edited_chunks.extend(edited);
    report.approximations.extend(lost_notes);
    Ok(rows)
}

/// Inserts the rows of `pending` (all from `file`) in one statement; when
/// that fails, one by one, so the error names the row's line. PostgreSQL
/// aborts a transaction on a failed statement: the batch runs under a
/// savepoint there.
fn flush(
    writer: &mut Writer,
    file: &str,
    pending: &mut Vec<(usize, Vec<Value>)>,
    batch_sql: &dyn Fn(&Writer, usize) -> String,
    one_row: &str,
) -> Result<(), Error> {
    if pending.is_empty() {
        return Ok(());
    }
    let savepoint = matches!(writer, Writer::Postgres(_));
    if savepoint {
        writer.run("SAVEPOINT tessera_batch")?;
    }
    let values: Vec<Value> = pending.iter().flat_map(|(_, v)| v.iter().cloned()).collect();
    let batched = writer.insert(&batch_sql(writer, pending.len()), &values);
    if batched.is_ok() {
        if savepoint {
            writer.run("RELEASE SAVEPOINT tessera_batch")?;
        }
        pending.clear();
        return Ok(());
    }
    if savepoint {
        writer.run("ROLLBACK TO SAVEPOINT tessera_batch")?;
    }
    for (line, values) in pending.drain(..) {
        writer.insert(one_row, &values).map_err(|reason| Error::Damaged { file: file.to_string(), line, reason })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(declared: &str) -> Column {
        Column {
            name: "c".into(),
            declared_type: declared.into(),
            affinity: crate::value::Affinity::of_declared(declared),
            not_null: false,
            default: None,
            binary: false,
        }
    }

    #[test]
    fn the_type_table() {
        let check = |declared: &str, target: Target, is_key: bool, sql_type: &str, exact: bool| {
            let source = if declared.chars().any(|c| c.is_ascii_uppercase()) { "sqlite" } else { "postgres" };
            let p = plan_column(target, &column(declared), is_key.then_some(768), source);
            assert_eq!((p.sql_type.as_str(), p.note.is_none()), (sql_type, exact), "{declared} into {target:?}");
        };
        check("INTEGER", Target::Postgres, true, "bigint", true);
        check("integer", Target::Mysql, false, "BIGINT", true);
        check("bigint unsigned", Target::Postgres, false, "numeric(20,0)", false);
        check("bigint unsigned", Target::Mysql, false, "BIGINT UNSIGNED", true);
        check("numeric(12,3)", Target::Mysql, false, "DECIMAL(12,3)", true);
        check("numeric", Target::Mysql, false, "LONGTEXT", false);
        check("decimal(12,3)", Target::Postgres, false, "numeric(12,3)", true);
        check("NUMERIC", Target::Postgres, false, "numeric", false);
        let sqlite_decimal = plan_column(Target::Postgres, &column("DECIMAL(10,2)"), None, "sqlite");
        assert_eq!((sqlite_decimal.sql_type.as_str(), sqlite_decimal.note.is_some()), ("numeric", true));
        check("double precision", Target::Mysql, false, "DOUBLE", true);
        check("REAL", Target::Postgres, false, "double precision", true);
        check("boolean", Target::Mysql, false, "BOOLEAN", false);
        check("tinyint(1)", Target::Postgres, false, "boolean", false);
        check("BLOB", Target::Mysql, false, "LONGBLOB", true);
        check("bytea", Target::Mysql, true, "VARBINARY(3072)", false);
        check("TEXT", Target::Mysql, true, "VARCHAR(768)", false);
        check("varchar(20)", Target::Postgres, false, "text", true);
        check("jsonb", Target::Mysql, false, "LONGTEXT", false);
        check("timestamp with time zone", Target::Sqlite, false, "TEXT", false);
        check("integer[]", Target::Doltlite, false, "TEXT", false);
        check("interval", Target::Sqlite, false, "TEXT", false);
        check("point", Target::Mysql, false, "LONGTEXT", false);
        check("int(11) unsigned", Target::Postgres, false, "bigint", true);
        check("DATE", Target::Postgres, false, "text", false);
        check("UNSIGNED BIG INT", Target::Postgres, false, "bigint", true);
    }

    #[test]
    fn values_convert_by_kind() {
        let real = column("double precision");
        let mut lost = None;
        let nan = decode(false, &real, Portable::Real, &Some("NaN".into())).unwrap();
        assert!(
            matches!(encode(Target::Postgres, Portable::Real, nan.clone(), &mut lost), Ok(Value::Real(f)) if f.is_nan())
        );
        assert_eq!(encode(Target::Mysql, Portable::Real, nan, &mut lost), Ok(Value::Null));
        assert!(lost.is_some());
        let boolean = decode(false, &column("boolean"), Portable::Boolean, &Some("t".into())).unwrap();
        assert_eq!(
            encode(Target::Postgres, Portable::Boolean, boolean.clone(), &mut None),
            Ok(Value::Text("t".into()))
        );
        assert_eq!(encode(Target::Mysql, Portable::Boolean, boolean, &mut None), Ok(Value::Integer(1)));
        // SQLite's profile escapes text: decoded by affinity.
        let text = decode(true, &column("TEXT"), Portable::Text, &Some("\\\\x".into())).unwrap();
        assert_eq!(text, Value::Text("\\x".into()));
        assert_eq!(
            decode(false, &column("bytea"), Portable::Binary, &Some("\\x00ff".into())),
            Ok(Value::Blob(vec![0, 0xff]))
        );
        assert!(decode(false, &column("bytea"), Portable::Binary, &Some("zz".into())).is_err());
    }
}
