//! Typed values and their cell text, the part of the CSV profile that is
//! about types: blobs as `\x` + hex, text starting with `\` escaped by one
//! more `\`, integers in decimal, reals in shortest round-trip form (always
//! with a `.` or exponent), `NaN`, `Infinity`, `-Infinity`.

use crate::csv::Cell;

/// A value as SQLite stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// How a column converts cell text back into values (SQLite's affinities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affinity {
    Integer,
    Real,
    Text,
    Blob,
    Numeric,
}

impl Affinity {
    /// SQLite's rules for a declared type (section 3.1 of its datatype docs).
    pub fn of_declared(declared: &str) -> Affinity {
        let t = declared.to_ascii_uppercase();
        if t.contains("INT") {
            Affinity::Integer
        } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
            Affinity::Text
        } else if t.contains("BLOB") || t.is_empty() {
            Affinity::Blob
        } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }

    /// The Frictionless field type for a column of this affinity.
    pub fn frictionless(self) -> &'static str {
        match self {
            Affinity::Integer => "integer",
            Affinity::Real | Affinity::Numeric => "number",
            Affinity::Text => "string",
            Affinity::Blob => "any",
        }
    }
}

pub fn real_text(f: f64) -> String {
    let mut s = String::new();
    write_real(&mut s, f);
    s
}

fn write_real(out: &mut String, f: f64) {
    use std::fmt::Write;
    if f.is_nan() {
        out.push_str("NaN");
    } else if f == f64::INFINITY {
        out.push_str("Infinity");
    } else if f == f64::NEG_INFINITY {
        out.push_str("-Infinity");
    } else {
        // Debug is Rust's shortest round-trip form, and keeps a `.0` or an
        // exponent so a real never reads back as an integer.
        write!(out, "{f:?}").expect("writing to a String");
    }
}

/// A value borrowed from the engine's row buffer.
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl Value {
    /// The cell for this value in a column of `affinity`.
    pub fn to_cell(&self, affinity: Affinity) -> Cell {
        let mut cell = None;
        set_cell(&mut cell, self.as_ref(), affinity);
        cell
    }

    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }
}

/// Writes the cell for `v` in a column of `affinity` into `cell`, reusing
/// its string when it has one (exports call this once per value). Text
/// that would read back as a number in a column that is not TEXT gets the
/// `\` escape, so it stays text.
pub fn set_cell(cell: &mut Cell, v: ValueRef<'_>, affinity: Affinity) {
    use std::fmt::Write;
    let text = match v {
        ValueRef::Null => {
            *cell = None;
            return;
        }
        _ => cell.get_or_insert_with(String::new),
    };
    text.clear();
    match v {
        ValueRef::Null => unreachable!("handled above"),
        ValueRef::Integer(i) => write!(text, "{i}").expect("writing to a String"),
        ValueRef::Real(f) => write_real(text, f),
        ValueRef::Text(s) => {
            let numeric =
                affinity != Affinity::Text && !s.is_empty() && (s.parse::<i64>().is_ok() || parse_real(s).is_some());
            if numeric || s.starts_with('\\') {
                text.push('\\');
            }
            text.push_str(s);
        }
        ValueRef::Blob(b) => {
            text.reserve(2 + b.len() * 2);
            text.push_str("\\x");
            for byte in b {
                write!(text, "{byte:02x}").expect("writing to a String");
            }
        }
    }
}

/// Why a cell is not a valid value; returned by [`from_cell`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("{0:?} is not valid hex for a binary value")]
    BadHex(String),
    #[error("{0:?} is not a valid integer")]
    NotInteger(String),
    #[error("{0:?} is not a valid number")]
    NotReal(String),
}

fn parse_real(t: &str) -> Option<f64> {
    match t {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => t.parse().ok(),
    }
}

/// The value a cell stands for in a column of `affinity`.
pub fn from_cell(cell: &Cell, affinity: Affinity) -> Result<Value, Error> {
    let Some(t) = cell else { return Ok(Value::Null) };
    if let Some(hexdigits) = t.strip_prefix("\\x") {
        return hex::decode(hexdigits).map(Value::Blob).map_err(|_| Error::BadHex(t.clone()));
    }
    if let Some(rest) = t.strip_prefix('\\') {
        return Ok(Value::Text(rest.to_string()));
    }
    let looks_integer = !t.is_empty() && t.trim() == t && t.parse::<i64>().is_ok();
    Ok(match affinity {
        Affinity::Text => Value::Text(t.clone()),
        Affinity::Integer | Affinity::Numeric | Affinity::Blob if looks_integer => {
            Value::Integer(t.parse().expect("checked"))
        }
        Affinity::Real => match parse_real(t) {
            Some(f) if t.trim() == t => Value::Real(f),
            _ => Value::Text(t.clone()),
        },
        _ => match parse_real(t) {
            Some(f) if t.trim() == t && !t.is_empty() => Value::Real(f),
            _ => Value::Text(t.clone()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: Value, affinity: Affinity) {
        let cell = v.to_cell(affinity);
        let back = from_cell(&cell, affinity).unwrap();
        match (&v, &back) {
            (Value::Real(a), Value::Real(b)) if a.is_nan() => assert!(b.is_nan()),
            (Value::Real(a), Value::Real(b)) => assert_eq!(a.to_bits(), b.to_bits(), "{cell:?}"),
            _ => assert_eq!(v, back, "{cell:?}"),
        }
    }

    #[test]
    fn values_round_trip() {
        for a in [Affinity::Integer, Affinity::Numeric, Affinity::Blob] {
            check(Value::Integer(i64::MIN), a);
            check(Value::Integer(i64::MAX), a);
            check(Value::Real(0.1), a);
            check(Value::Real(3.0), a);
            check(Value::Real(1e300), a);
            check(Value::Real(-0.0), a);
            check(Value::Real(f64::NAN), a);
            check(Value::Real(f64::INFINITY), a);
            check(Value::Real(f64::MIN_POSITIVE), a);
            check(Value::Text("hello".into()), a);
        }
        check(Value::Real(5e-324), Affinity::Real);
        check(Value::Text("\\x not hex".into()), Affinity::Text);
        check(Value::Text("123".into()), Affinity::Text);
        check(Value::Text("123".into()), Affinity::Blob);
        check(Value::Text("NaN".into()), Affinity::Numeric);
        check(Value::Text("1e5".into()), Affinity::Integer);
        check(Value::Text(String::new()), Affinity::Text);
        check(Value::Blob(vec![0, 1, 255]), Affinity::Blob);
        check(Value::Blob(vec![]), Affinity::Text);
        check(Value::Null, Affinity::Integer);
    }
}
