//! Cross-engine import: a PostgreSQL or MySQL export loaded into SQLite,
//! with each column's type mapped by the table below and every
//! approximation reported.
//!
//! | source type                                   | SQLite    | note                              |
//! |-----------------------------------------------|-----------|-----------------------------------|
//! | smallint, integer, bigint, serial, year, bit  | INTEGER   | unsigned values above i64 stay TEXT |
//! | real, float, double precision                 | REAL      | exact (shortest round-trip text)  |
//! | numeric, decimal, bigint unsigned             | TEXT      | kept as exact text, not REAL      |
//! | NaN in a float column                         | NULL      | SQLite stores no NaN; reported    |
//! | boolean                                       | INTEGER   | true/false become 1/0             |
//! | bytea, blob, binary, varbinary                | BLOB      | exact                             |
//! | json, jsonb                                   | TEXT      | the source's JSON text            |
//! | date, time, timestamp, timestamptz, interval  | TEXT      | the source's ISO text, offsets kept |
//! | arrays, uuid, enum, set, anything else        | TEXT      | the source's text form            |

use rusqlite::Connection;

use crate::csv::Cell;
use crate::layout::TableMeta;
use crate::ops::ImportReport;
use crate::value::Value;
use crate::{sqlite, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Portable {
    Integer,
    Real,
    Decimal,
    Boolean,
    Binary,
    Text,
}

fn classify(declared: &str) -> Portable {
    let t = declared.to_ascii_lowercase();
    if t.ends_with("[]") {
        Portable::Text
    } else if t.starts_with("bool") || t == "tinyint(1)" {
        Portable::Boolean
    } else if t.starts_with("bigint") && t.contains("unsigned") {
        // Above i64::MAX SQLite would turn the value into a lossy REAL.
        Portable::Decimal
    } else if t.contains("int") || t.contains("serial") || t.starts_with("year") || t.starts_with("bit") {
        Portable::Integer
    } else if t.starts_with("numeric") || t.starts_with("decimal") {
        Portable::Decimal
    } else if t.starts_with("real") || t.starts_with("float") || t.starts_with("double") {
        Portable::Real
    } else if t == "bytea" || t.contains("blob") || t.contains("binary") {
        Portable::Binary
    } else {
        Portable::Text
    }
}

fn sqlite_type(p: Portable) -> &'static str {
    match p {
        Portable::Integer | Portable::Boolean => "INTEGER",
        Portable::Real => "REAL",
        Portable::Binary => "BLOB",
        Portable::Decimal | Portable::Text => "TEXT",
    }
}

fn convert(cell: &Cell, p: Portable) -> Result<Value, String> {
    let Some(t) = cell else { return Ok(Value::Null) };
    Ok(match p {
        Portable::Integer => match t.parse::<i64>() {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Text(t.clone()),
        },
        Portable::Real => Value::Real(match t.as_str() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
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
        Portable::Decimal | Portable::Text => Value::Text(t.clone()),
    })
}

fn note(column: &str, declared: &str, p: Portable) -> Option<String> {
    let how = match p {
        Portable::Decimal => "kept as exact TEXT",
        Portable::Boolean => "stored as INTEGER 1/0",
        Portable::Text if declared.ends_with("[]") => "array stored as its text literal",
        Portable::Text if declared.to_ascii_lowercase().starts_with("json") => "stored as JSON text",
        Portable::Text
            if !declared.to_ascii_lowercase().contains("char") && !declared.to_ascii_lowercase().contains("text") =>
        {
            "stored as its text form"
        }
        _ => return None,
    };
    Some(format!("{column} ({declared}): {how}"))
}

/// Loads a PostgreSQL or MySQL export into SQLite in one transaction.
pub fn import_into_sqlite(
    repo: &std::path::Path,
    rev: &str,
    names: &[String],
    database: &str,
    replace: bool,
) -> Result<ImportReport, Error> {
    let mut conn: Connection = sqlite::create(database)?;
    let existing = sqlite::tables(&conn)?;
    for n in names {
        if existing.contains(n) && !replace {
            return Err(Error::TargetNotEmpty(n.clone()));
        }
    }
    let mut report = ImportReport::default();
    let tx = conn.transaction().map_err(|e| Error::Database(e.to_string()))?;
    for name in names {
        let meta: TableMeta = crate::ops::read_table_meta(repo, rev, name)?
            .ok_or_else(|| Error::Layout(format!("no metadata for table {name}")))?;
        let kinds: Vec<Portable> = meta.columns.iter().map(|c| classify(&c.declared_type)).collect();
        let mut defs: Vec<String> = meta
            .columns
            .iter()
            .zip(&kinds)
            .map(|(c, k)| {
                format!("{} {}{}", sqlite::quote(&c.name), sqlite_type(*k), if c.not_null { " NOT NULL" } else { "" })
            })
            .collect();
        if !meta.primary_key.is_empty() {
            let pk: Vec<String> = meta.primary_key.iter().map(|c| sqlite::quote(c)).collect();
            defs.push(format!("PRIMARY KEY ({})", pk.join(", ")));
        }
        for (c, k) in meta.columns.iter().zip(&kinds) {
            report.approximations.extend(note(&format!("{name}.{}", c.name), &c.declared_type, *k));
        }
        if existing.contains(name) {
            tx.execute_batch(&format!("DROP TABLE {}", sqlite::quote(name)))
                .map_err(|e| Error::Database(e.to_string()))?;
        }
        tx.execute_batch(&format!("CREATE TABLE {} (\n  {}\n)", sqlite::quote(name), defs.join(",\n  ")))
            .map_err(|e| Error::Database(format!("creating {name}: {e}")))?;
        let cols: Vec<String> = meta.columns.iter().map(|c| sqlite::quote(&c.name)).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            sqlite::quote(name),
            cols.join(", "),
            vec!["?"; cols.len()].join(", ")
        );
        let mut stmt = tx.prepare(&sql).map_err(|e| Error::Database(e.to_string()))?;
        let mut nan_notes: Vec<String> = Vec::new();
        let rows =
            crate::ops::read_rows(repo, rev, &meta, false, &mut report.edited_chunks, &mut |file, line, _, record| {
                let damaged = |reason: String| Error::Damaged { file: file.to_string(), line, reason };
                let cells = crate::csv::Reader::new(record)
                    .next_record()
                    .map_err(|e| damaged(e.to_string()))?
                    .unwrap_or_default();
                let mut params = Vec::with_capacity(cells.len());
                for ((cell, k), c) in cells.iter().zip(&kinds).zip(&meta.columns) {
                    let v = convert(cell, *k).map_err(|r| damaged(format!("column {}: {r}", c.name)))?;
                    if matches!(v, Value::Real(f) if f.is_nan()) {
                        let n = format!("{name}.{}: NaN stored as NULL (SQLite has no NaN)", c.name);
                        if !nan_notes.contains(&n) {
                            nan_notes.push(n);
                        }
                    }
                    params.push(sqlite::to_sql(&v));
                }
                stmt.execute(rusqlite::params_from_iter(params)).map_err(|e| damaged(e.to_string()))?;
                Ok(())
            })?;
        drop(stmt);
        report.approximations.extend(nan_notes);
        report.tables.push((name.clone(), rows));
    }
    tx.commit().map_err(|e| Error::Database(format!("committing the import: {e}")))?;
    Ok(report)
}
