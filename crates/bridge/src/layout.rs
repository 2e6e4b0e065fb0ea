//! The repository layout: `.dolt-metadata/` (manifest, schema, per-table
//! metadata), `data/<table>/<table>_NNNNNN.csv`, README.md, datapackage.json
//! and .gitattributes.

use serde::{Deserialize, Serialize};

use crate::value::Affinity;

/// The layout version this build writes; newer ones are refused.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = ".dolt-metadata/manifest.json";
pub const SCHEMA: &str = ".dolt-metadata/schema.sql";

pub fn table_meta_path(table: &str) -> String {
    format!(".dolt-metadata/tables/{table}.json")
}

pub fn chunk_path(table: &str, n: usize, compression: Compression) -> String {
    format!("data/{table}/{table}_{n:06}.csv{}", compression.suffix())
}

/// A partitioned chunk's file: `<t>_<value>_NNNNNN.csv`, the value made
/// safe for file names.
pub fn partition_chunk_path(table: &str, value: &str, n: usize, compression: Compression) -> String {
    let safe: String = value.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("data/{table}/{table}_{safe}_{n:06}.csv{}", compression.suffix())
}

/// How chunk files are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }

    /// The compression a chunk file's name says it has.
    pub fn of_file(name: &str) -> Compression {
        if name.ends_with(".gz") {
            Compression::Gzip
        } else if name.ends_with(".zst") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub created_at: u64,
    pub creator: String,
    pub source: Source,
    pub chunking: Chunking,
    pub tables: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub engine: String,
    pub database: String,
    pub branch: Option<String>,
    pub commit: Option<String>,
}

/// How chunk boundaries are chosen; recorded so a later export cuts the
/// same way.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Chunking {
    pub strategy: String,
    /// No chunk file is larger than this.
    pub max_chunk_bytes: u64,
    /// `key-hash`: a chunk ends after a row whose key hash (first 8 bytes of
    /// SHA-256 of the key cells, big-endian) is divisible by the table's
    /// `divisor`, or before a row that would overflow `max_chunk_bytes`.
    pub algorithm: String,
    #[serde(default)]
    pub compression: Compression,
    /// `--chunk-by`: the column (and `:year|month|day`) partitions follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub declared_type: String,
    pub affinity: Affinity,
    pub not_null: bool,
    pub default: Option<String>,
    /// Binary values are written as `\x` + hex.
    pub binary: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    pub name: String,
    pub unique: bool,
    pub columns: Vec<String>,
    pub sql: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForeignKey {
    pub columns: Vec<String>,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkMeta {
    pub file: String,
    pub rows: u64,
    pub first_key: Vec<Option<String>>,
    pub last_key: Vec<Option<String>>,
    pub bytes: u64,
    pub uncompressed_bytes: u64,
    pub sha256: String,
    /// The git blob id of the file as exported: a chunk whose content no
    /// longer matches `sha256` is a human edit if git has a different blob
    /// for it (it was changed through git), damage otherwise.
    pub git_blob: String,
    /// For `--chunk-by`: the partition value and the SQL filter selecting it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The order-independent hash of this chunk's rows (the table's
    /// `content_hash` is their sum), so a partial re-export can update it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableMeta {
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    /// `primary_key`, or `content` for tables without one (rows ordered by
    /// all columns; identity is the whole row).
    pub row_identity: String,
    pub autoincrement: bool,
    /// SQLite's `sqlite_sequence` value: the last AUTOINCREMENT id handed
    /// out, which may be above the largest id still present.
    #[serde(default)]
    pub autoincrement_seq: Option<i64>,
    pub create_sql: String,
    /// Statements run after all tables are loaded (PostgreSQL: foreign
    /// keys, indexes, sequence positions).
    #[serde(default)]
    pub post_sql: Vec<String>,
    pub indexes: Vec<Index>,
    pub foreign_keys: Vec<ForeignKey>,
    pub rows: u64,
    /// Order-independent hash of all rows (see `verify`).
    pub content_hash: String,
    pub divisor: u64,
    pub chunks: Vec<ChunkMeta>,
}

/// `datapackage.json`: one Frictionless resource per table.
pub fn datapackage(tables: &[TableMeta]) -> serde_json::Value {
    let resources: Vec<serde_json::Value> = tables
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name.to_lowercase(),
                "path": t.chunks.iter().map(|c| c.file.clone()).collect::<Vec<_>>(),
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "bytes": t.chunks.iter().map(|c| c.bytes).sum::<u64>(),
                "hash": format!("sha256:{}", t.content_hash),
                "dialect": { "delimiter": ",", "lineTerminator": "\n", "quoteChar": "\"", "doubleQuote": true, "header": true },
                "schema": {
                    "fields": t.columns.iter().map(|c| serde_json::json!({
                        "name": c.name,
                        "type": c.affinity.frictionless(),
                        "constraints": { "required": c.not_null },
                    })).collect::<Vec<_>>(),
                    "primaryKey": t.primary_key,
                    "foreignKeys": t.foreign_keys.iter().map(|f| serde_json::json!({
                        "fields": f.columns,
                        "reference": { "resource": f.ref_table.to_lowercase(), "fields": f.ref_columns },
                    })).collect::<Vec<_>>(),
                    "missingValues": [""],
                },
            })
        })
        .collect();
    serde_json::json!({ "profile": "tabular-data-package", "resources": resources })
}

pub fn readme(manifest: &Manifest, tables: &[TableMeta]) -> String {
    let mut s = String::from("# Data exported by tessera\n\n");
    s.push_str(&format!(
        "Source: {} database `{}`.\n\n| table | rows | chunks |\n|---|---:|---:|\n",
        manifest.source.engine, manifest.source.database
    ));
    for t in tables {
        s.push_str(&format!("| {} | {} | {} |\n", t.name, t.rows, t.chunks.len()));
    }
    s.push_str("\nImport it back with `tessera data import <this repository> <database>`.\n\n");
    s.push_str("CSV profile: UTF-8, LF, RFC 4180 quoting; an unquoted empty field is NULL and `\"\"` is the empty string; binary values are `\\x` + hex; text starting with `\\` gets one more `\\`; reals are in shortest round-trip form (`NaN`, `Infinity`, `-Infinity`).\n");
    s
}

pub const GITATTRIBUTES: &str = "data/** -text -diff merge=binary linguist-generated\ndata/**/*.csv -text diff\n";
