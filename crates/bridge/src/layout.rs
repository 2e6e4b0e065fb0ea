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
    /// A chunk ends after a row whose key hash is divisible by the table's
    /// `divisor`, or before a row that would overflow `max_chunk_bytes`;
    /// this names the hash (see [`RowHash`]).
    pub algorithm: RowHash,
    #[serde(default)]
    pub compression: Compression,
    /// `--chunk-by`: the column (and `:year|month|day`) partitions follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_by: Option<String>,
}

/// The hash behind chunk boundaries and row content hashes. A repository
/// keeps the one it was first exported with, so later exports cut at the
/// same rows and per-chunk content hashes stay comparable.
///
/// Both hash the key cells encoded as, per cell, `0` for NULL or `1`, the
/// length as 8 bytes big-endian, and the UTF-8 text; the row content hash
/// is taken over the row's CSV record including its LF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowHash {
    /// Key hash: the first 8 bytes of SHA-256, big-endian; row hash: the
    /// first 16 bytes of SHA-256, big-endian. Written by the first releases.
    #[serde(rename = "key-hash")]
    Sha256,
    /// Key hash: XXH3-64; row hash: XXH3-128 (seed 0). A quarter of the
    /// CPU time of SHA-256 on short inputs; nothing here needs a
    /// cryptographic hash, since chunk files carry their own SHA-256.
    #[serde(rename = "key-hash-xxh3")]
    Xxh3,
}

impl RowHash {
    /// What new repositories get.
    pub const NEWEST: RowHash = RowHash::Xxh3;

    /// The key hash of key cells already encoded as described above.
    pub fn key(self, encoded: &[u8]) -> u64 {
        match self {
            RowHash::Sha256 => {
                let d = <sha2::Sha256 as sha2::Digest>::digest(encoded);
                u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
            }
            RowHash::Xxh3 => xxhash_rust::xxh3::xxh3_64(encoded),
        }
    }

    /// The hash of one CSV record, summed into a table's content hash.
    pub fn row(self, record: &[u8]) -> u128 {
        match self {
            RowHash::Sha256 => {
                let d = <sha2::Sha256 as sha2::Digest>::digest(record);
                u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
            }
            RowHash::Xxh3 => xxhash_rust::xxh3::xxh3_128(record),
        }
    }
}

/// Appends key cells to `out` in the encoding [`RowHash::key`] hashes.
pub fn encode_key<'a>(out: &mut Vec<u8>, cells: impl Iterator<Item = &'a Option<String>>) {
    for c in cells {
        match c {
            None => out.push(0),
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&(t.len() as u64).to_be_bytes());
                out.extend_from_slice(t.as_bytes());
            }
        }
    }
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
    /// The source's own DDL, as documentation: never executed. Imports
    /// generate their DDL from `schema`; metadata written before `schema`
    /// existed has it derived from this text (see [`crate::schema`]).
    pub create_sql: String,
    /// Documentation too (PostgreSQL: foreign keys, indexes, sequence
    /// positions as the source would write them); never executed.
    #[serde(default)]
    pub post_sql: Vec<String>,
    /// The table's schema as data, what an import's DDL is generated from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<crate::schema::TableSchema>,
    /// The DDL generated from `schema` when the metadata was loaded for an
    /// import ([`crate::meta::table_metas`]); never stored.
    #[serde(skip)]
    pub ddl: Option<crate::schema::Ddl>,
    /// The manifest's `max_chunk_bytes`, set when the metadata was read and
    /// checked (`meta::read_table_meta`): no chunk decompresses beyond it.
    /// 0 otherwise, which lets no chunk be read.
    #[serde(skip)]
    pub chunk_limit: u64,
    pub indexes: Vec<Index>,
    pub foreign_keys: Vec<ForeignKey>,
    pub rows: u64,
    /// Order-independent hash of all rows (see `verify`).
    pub content_hash: String,
    pub divisor: u64,
    pub chunks: Vec<ChunkMeta>,
}

/// `datapackage.json`: one Frictionless resource per table, valid under
/// the `tabular-data-package` profile of Frictionless v5 (each resource a
/// `tabular-data-resource`). Gzip chunks are declared with the
/// `compression` property of the specification's compressed-resources
/// pattern. Zstd is outside what Frictionless reads (see the crate
/// README).
pub fn datapackage(tables: &[TableMeta]) -> serde_json::Value {
    let resources: Vec<serde_json::Value> = tables
        .iter()
        .map(|t| {
            let gzip = t.chunks.first().is_some_and(|c| c.file.ends_with(".gz"));
            let mut resource = serde_json::json!({
                "profile": "tabular-data-resource",
                "name": resource_name(&t.name),
                "path": t.chunks.iter().map(|c| c.file.clone()).collect::<Vec<_>>(),
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "bytes": t.chunks.iter().map(|c| c.bytes).sum::<u64>(),
                "dialect": { "delimiter": ",", "lineTerminator": "\n", "quoteChar": "\"", "doubleQuote": true, "header": true },
                "schema": {
                    "fields": t.columns.iter().map(|c| {
                        let mut field = serde_json::json!({
                            "name": c.name,
                            "type": c.affinity.frictionless(),
                            "constraints": { "required": c.not_null },
                        });
                        // A NOT NULL column holds no NULL: an empty field
                        // there is the empty string, and says so.
                        if c.not_null {
                            field["missingValues"] = serde_json::json!([]);
                        }
                        field
                    }).collect::<Vec<_>>(),
                    "primaryKey": t.primary_key,
                    "foreignKeys": t.foreign_keys.iter().map(|f| serde_json::json!({
                        "fields": f.columns,
                        "reference": { "resource": resource_name(&f.ref_table), "fields": f.ref_columns },
                    })).collect::<Vec<_>>(),
                    "missingValues": [""],
                },
            });
            if gzip {
                resource["compression"] = "gz".into();
            }
            // Frictionless counts the bytes it reads: after decompression,
            // and without the header line of every part after the first.
            // Only one uncompressed file has a `bytes` both agree on.
            if gzip || t.chunks.len() > 1 {
                if let Some(fields) = resource.as_object_mut() {
                    fields.remove("bytes");
                }
            }
            resource
        })
        .collect();
    serde_json::json!({ "profile": "tabular-data-package", "resources": resources })
}

/// A table's name as a Frictionless resource name (lowercase letters,
/// digits, `-`, `_`, `.`): other characters become `_`.
fn resource_name(table: &str) -> String {
    table
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect()
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

#[cfg(test)]
mod row_hash_tests {
    use super::*;

    /// Repositories made with SHA-256 boundaries keep being cut where they
    /// were: these values are what the first releases computed.
    #[test]
    fn sha256_scheme_is_the_first_releases_hash() {
        let mut key = Vec::new();
        encode_key(&mut key, [Some("1".to_string()), None].iter());
        assert_eq!(key, b"\x01\0\0\0\0\0\0\0\x011\x00");
        assert_eq!(RowHash::Sha256.key(&key), 0xcbc3684541dff2f5);
        assert_eq!(RowHash::Sha256.row(b"1,x\n"), 0x73fc91d1fbe17d683656a8391d780609);
        assert_ne!(RowHash::Xxh3.key(&key), RowHash::Sha256.key(&key));
        let name = |h: RowHash| serde_json::to_string(&h).unwrap();
        assert_eq!((name(RowHash::Sha256), name(RowHash::Xxh3)), ("\"key-hash\"".into(), "\"key-hash-xxh3\"".into()));
    }
}
