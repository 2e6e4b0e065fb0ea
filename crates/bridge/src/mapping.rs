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

use crate::csv::Cell;
use crate::layout::{Column, TableMeta};
use crate::value::{Affinity, Value};

/// The engine an import writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Sqlite,
    Doltlite,
    Postgres,
    Mysql,
}

impl Target {
    /// The target of an engine's name as manifests spell it.
    pub fn of(engine: &str) -> Option<Target> {
        match engine {
            "sqlite" => Some(Target::Sqlite),
            "doltlite" => Some(Target::Doltlite),
            "postgres" => Some(Target::Postgres),
            "mysql" => Some(Target::Mysql),
            _ => None,
        }
    }

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
#[derive(Debug, Clone)]
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

/// How an export from one engine family becomes tables of another: each
/// column's type in the target and the conversion of its values. The
/// import driver ([`crate::import`]) loads through it like any other.
#[derive(Debug, Clone)]
pub struct Conversion {
    target: Target,
    sqlite_source: bool,
    columns: Vec<ColumnPlan>,
}

impl Conversion {
    /// The plan for `meta`, exported from `source_engine`, in `target`.
    pub fn plan(target: Target, meta: &TableMeta, source_engine: &str) -> Conversion {
        // MySQL's 3072 key bytes shared by the key's columns (8 bytes set
        // aside for each), four bytes to a character.
        let n = meta.primary_key.len().max(1) as u32;
        let chars = ((3072 - 8 * n) / (4 * n)).min(768);
        let columns = meta
            .columns
            .iter()
            .map(|c| plan_column(target, c, meta.primary_key.contains(&c.name).then_some(chars), source_engine))
            .collect();
        Conversion { target, sqlite_source: matches!(source_engine, "sqlite" | "doltlite"), columns }
    }

    /// What is approximated, one line per column.
    pub fn notes(&self, meta: &TableMeta) -> Vec<String> {
        meta.columns
            .iter()
            .zip(&self.columns)
            .filter_map(|(c, p)| {
                p.note.as_ref().map(|how| format!("{}.{} ({}): {how}", meta.name, c.name, c.declared_type))
            })
            .collect()
    }

    /// The target's type of column `i`.
    pub fn sql_type(&self, i: usize) -> &str {
        &self.columns[i].sql_type
    }

    /// The table in the target: its columns, NOT NULL and primary key,
    /// built from type names of the table above and `quote`d names.
    pub fn ddl(&self, meta: &TableMeta, quote: &dyn Fn(&str) -> String) -> crate::schema::Ddl {
        let mut defs: Vec<String> = meta
            .columns
            .iter()
            .zip(&self.columns)
            .map(|(c, p)| format!("{} {}{}", quote(&c.name), p.sql_type, if c.not_null { " NOT NULL" } else { "" }))
            .collect();
        if !meta.primary_key.is_empty() {
            let pk: Vec<String> = meta.primary_key.iter().map(|c| quote(c)).collect();
            defs.push(format!("PRIMARY KEY ({})", pk.join(", ")));
        }
        let options = if self.target == Target::Mysql {
            " ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
        } else {
            ""
        };
        crate::schema::Ddl {
            create: vec![format!("CREATE TABLE {} (\n  {}\n){options}", quote(&meta.name), defs.join(",\n  "))],
            after: Vec::new(),
        }
    }

    /// One row's cells as the target's values; a value that had to become
    /// NULL adds its note to `lost` (once per column).
    pub fn convert(&self, meta: &TableMeta, cells: &[Cell], lost: &mut Vec<String>) -> Result<Vec<Value>, String> {
        let mut values = Vec::with_capacity(cells.len());
        for ((cell, column), p) in cells.iter().zip(&meta.columns).zip(&self.columns) {
            let mut how = None;
            let value = decode(self.sqlite_source, column, p.kind, cell)
                .and_then(|v| encode(self.target, p.kind, v, &mut how))
                .map_err(|r| format!("column {}: {r}", column.name))?;
            if let Some(how) = how {
                let note = format!("{}.{}: {how}", meta.name, column.name);
                if !lost.contains(&note) {
                    lost.push(note);
                }
            }
            values.push(value);
        }
        Ok(values)
    }
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
