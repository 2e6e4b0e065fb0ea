//! Reading a repository's metadata: the manifest and each table's
//! description, checked when they are loaded (sizes, names, keys that are
//! columns), and the DDL generated from them for an engine.

use std::path::Path;

use crate::chunk::{max_stored_bytes, ChunkBy};
use crate::engine::Shape;
use crate::layout::{self, Manifest, RowHash, TableMeta};
use crate::{git, schema};

/// Metadata an operation refuses, or cannot find.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No export here, or a table the manifest lists without its file.
    #[error("not a tessera data repository: {0}")]
    Layout(String),
    #[error("the repository uses layout format version {0}, newer than this tessera understands ({max}); upgrade tessera", max = layout::FORMAT_VERSION)]
    NewerFormat(u32),
    /// A field naming a column the table does not have, an absurd size,
    /// DDL text other than the one statement expected, an expression
    /// outside what schemas may contain. Nothing has been changed in any
    /// database.
    #[error("{file}: {reason}")]
    Refused { file: String, reason: String },
    #[error("{file}: not JSON of the expected shape")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: {source}")]
    Schema {
        file: String,
        #[source]
        source: schema::SchemaError,
    },
    #[error("an export from {0:?}, which this tessera does not read")]
    UnknownEngine(String),
    #[error(transparent)]
    Git(#[from] git::Error),
}

/// Largest manifest or table metadata file read: far above what a table
/// of millions of chunks needs, far below what would exhaust memory.
pub const MAX_METADATA_BYTES: u64 = 256 << 20;

/// Largest chunk size limit (`--chunk-size`) a repository may ask for:
/// an import holds a chunk, decompressed, in memory.
pub const MAX_CHUNK_BYTES: u64 = 1 << 30;

/// Most tables a manifest may list, and chunks a table may have.
const MAX_TABLES: usize = 100_000;
const MAX_CHUNKS: usize = 10_000_000;

pub fn read_json<T: serde::de::DeserializeOwned>(repo: &Path, rev: &str, file: &str) -> Result<Option<T>, Error> {
    match git::read_file_limited(repo, rev, file, MAX_METADATA_BYTES)? {
        None => Ok(None),
        Some(Err(_)) => Err(Error::Refused {
            file: file.to_string(),
            reason: format!("more than the {MAX_METADATA_BYTES} bytes a metadata file may have"),
        }),
        Some(Ok(bytes)) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|source| Error::Json { file: file.to_string(), source })
        }
    }
}

/// The metadata of table `name` at `rev`, checked against the manifest
/// there by [`check_table_meta`]: nothing read from a repository is trusted.
pub fn read_table_meta(repo: &Path, rev: &str, name: &str) -> Result<Option<TableMeta>, Error> {
    read_table_meta_in(repo, rev, &load_manifest(repo, rev)?, name)
}

/// [`read_table_meta`] with the manifest at `rev` already read.
pub fn read_table_meta_in(repo: &Path, rev: &str, manifest: &Manifest, name: &str) -> Result<Option<TableMeta>, Error> {
    let file = layout::table_meta_path(name);
    let Some(mut meta) = read_json::<TableMeta>(repo, rev, &file)? else { return Ok(None) };
    check_table_meta(&meta, name, manifest).map_err(|reason| Error::Refused { file, reason })?;
    meta.chunk_limit = manifest.chunking.max_chunk_bytes;
    Ok(Some(meta))
}

/// What the code reading a table's metadata relies on: it describes the
/// table it is named after; names are bounded; every key, index, foreign
/// key and partition column is a column; types are data types of the
/// source's dialect (sync splices them into statements); sizes and counts
/// are within the manifest's chunk limit and add up. Returns why not.
pub fn check_table_meta(meta: &TableMeta, name: &str, manifest: &Manifest) -> Result<(), String> {
    let engine = schema::Engine::of_source(&manifest.source.engine)
        .ok_or_else(|| format!("unknown source engine {:?}", manifest.source.engine))?;
    let text = |e: schema::SchemaError| e.to_string();
    if meta.name != name {
        return Err(format!("name: describes the table {:?}, not {name:?}", meta.name));
    }
    schema::check_name("name", name).map_err(text)?;
    if meta.columns.is_empty() || meta.columns.len() > schema::MAX_ITEMS {
        return Err(format!("columns: {} columns, between 1 and {} expected", meta.columns.len(), schema::MAX_ITEMS));
    }
    let mut names = std::collections::HashSet::new();
    for (i, c) in meta.columns.iter().enumerate() {
        schema::check_name(&format!("columns[{i}].name"), &c.name).map_err(text)?;
        if !names.insert(c.name.as_str()) {
            return Err(format!("columns[{i}].name: {:?} appears twice", c.name));
        }
        schema::check_type(engine, &format!("columns[{i}].declared_type"), &c.declared_type).map_err(text)?;
    }
    let is_column = |field: &str, c: &str| {
        if names.contains(c) {
            Ok(())
        } else {
            Err(format!("{field}: {c:?} is not a column of the table"))
        }
    };
    let mut key = std::collections::HashSet::new();
    for c in &meta.primary_key {
        is_column("primary_key", c)?;
        if !key.insert(c) {
            return Err(format!("primary_key: {c:?} appears twice"));
        }
    }
    if !matches!(meta.row_identity.as_str(), "primary_key" | "content") {
        return Err(format!("row_identity: {:?} is neither primary_key nor content", meta.row_identity));
    }
    if meta.indexes.len() > schema::MAX_ITEMS || meta.foreign_keys.len() > schema::MAX_ITEMS {
        return Err("more than 4096 indexes or foreign keys".into());
    }
    for (i, idx) in meta.indexes.iter().enumerate() {
        schema::check_name(&format!("indexes[{i}].name"), &idx.name).map_err(text)?;
        for c in idx.columns.iter().filter(|c| *c != "<expression>") {
            is_column(&format!("indexes[{i}].columns"), c)?;
        }
    }
    for (i, fk) in meta.foreign_keys.iter().enumerate() {
        for c in &fk.columns {
            is_column(&format!("foreign_keys[{i}].columns"), c)?;
        }
    }
    if let Some(spec) = &manifest.chunking.partition_by {
        let by = ChunkBy::parse(spec).map_err(|e| format!("chunking.partition_by in the manifest: {e}"))?;
        is_column("chunking.partition_by in the manifest", &by.column)?;
    }
    if meta.chunks.len() > MAX_CHUNKS {
        return Err(format!("chunks: {} chunks, more than the {MAX_CHUNKS} accepted", meta.chunks.len()));
    }
    let limit = manifest.chunking.max_chunk_bytes;
    let prefix = format!("data/{name}/");
    let mut rows = 0u64;
    for (i, c) in meta.chunks.iter().enumerate() {
        let field = |part: &str| format!("chunks[{i}].{part}");
        if !c.file.starts_with(&prefix) || c.file.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(format!("{}: {:?} is not a file under {prefix}", field("file"), c.file));
        }
        if c.uncompressed_bytes > limit {
            return Err(format!(
                "{}: {}, more than the manifest's chunk limit of {limit} bytes",
                field("uncompressed_bytes"),
                c.uncompressed_bytes
            ));
        }
        if c.bytes > max_stored_bytes(limit) {
            return Err(format!(
                "{}: {}, more than a chunk of at most {limit} bytes can take",
                field("bytes"),
                c.bytes
            ));
        }
        // Every row takes at least its line end.
        if c.rows > c.uncompressed_bytes {
            return Err(format!("{}: {} rows in {} bytes", field("rows"), c.rows, c.uncompressed_bytes));
        }
        if c.first_key.len() > schema::MAX_ITEMS || c.last_key.len() > schema::MAX_ITEMS {
            return Err(format!("{}: too many key cells", field("first_key")));
        }
        rows += c.rows;
    }
    if rows != meta.rows {
        return Err(format!("rows: {}, but the chunks hold {rows}", meta.rows));
    }
    Ok(())
}

/// The DDL creating `meta`'s table in `engine`: generated from its schema
/// description, or from the description derived from the DDL text of
/// metadata written before descriptions existed. Never the text itself.
pub fn table_ddl(meta: &TableMeta, engine: schema::Engine) -> Result<schema::Ddl, Error> {
    let file = layout::table_meta_path(&meta.name);
    let refused = |source| Error::Schema { file: file.clone(), source };
    let derived;
    let description = match &meta.schema {
        Some(s) => s,
        None => {
            let index_sql: Vec<&str> = meta.indexes.iter().filter_map(|i| i.sql.as_deref()).collect();
            derived =
                schema::TableSchema::from_legacy(engine, &meta.name, &meta.create_sql, &index_sql, &meta.post_sql)
                    .map_err(refused)?;
            &derived
        }
    };
    let columns: Vec<&str> = meta.columns.iter().map(|c| c.name.as_str()).collect();
    description.validate(engine, &columns).map_err(refused)?;
    description.generate(engine, &meta.name).map_err(refused)
}

/// The schema description an export records for `shape`, from the
/// source's own DDL. A table whose DDL falls outside what imports accept
/// is exported without one; importing it then names what was refused.
pub fn describe_schema(engine: &str, shape: &Shape) -> Option<schema::TableSchema> {
    let engine = schema::Engine::of_source(engine)?;
    let index_sql: Vec<&str> = shape.indexes.iter().filter_map(|i| i.sql.as_deref()).collect();
    match schema::TableSchema::from_legacy(engine, &shape.name, &shape.create_sql, &index_sql, &shape.post_sql) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(table = %shape.name, "exported without a schema description, which imports need: {e}");
            None
        }
    }
}

/// The metadata of tables `names` at `rev`.
/// Each is checked, and carries the DDL generated for it (`ddl`), so an
/// import refuses bad metadata before it changes anything.
pub fn table_metas(repo: &Path, rev: &str, names: &[String]) -> Result<Vec<TableMeta>, Error> {
    let manifest = load_manifest(repo, rev)?;
    let engine = schema::Engine::of_source(&manifest.source.engine)
        .ok_or_else(|| Error::UnknownEngine(manifest.source.engine.clone()))?;
    names
        .iter()
        .map(|name| {
            let mut meta = read_table_meta_in(repo, rev, &manifest, name)?
                .ok_or_else(|| Error::Layout(format!("no metadata for table {name}")))?;
            meta.ddl = Some(table_ddl(&meta, engine)?);
            Ok(meta)
        })
        .collect()
}

/// The row hash of the export at `rev`, or what a new repository gets.
pub fn row_hash_at(repo: &Path, rev: &str) -> Result<RowHash, Error> {
    Ok(read_json::<Manifest>(repo, rev, layout::MANIFEST)?.map_or(RowHash::NEWEST, |m| m.chunking.algorithm))
}

/// The manifest at `rev`, checked ([`check_manifest`]).
pub fn load_manifest(repo: &Path, rev: &str) -> Result<Manifest, Error> {
    let manifest: Manifest = read_json(repo, rev, layout::MANIFEST)?.ok_or_else(|| {
        Error::Layout(format!("{} has no {} on {rev}: not a tessera data export", repo.display(), layout::MANIFEST))
    })?;
    check_manifest(manifest)
}

/// A manifest from the bytes of `.dolt-metadata/manifest.json`, read
/// elsewhere than from a git directory (the server's object store),
/// checked as [`load_manifest`] checks it.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, Error> {
    let refuse = |reason: String| Error::Refused { file: layout::MANIFEST.into(), reason };
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err(refuse(format!("more than the {MAX_METADATA_BYTES} bytes a metadata file may have")));
    }
    check_manifest(
        serde_json::from_slice(bytes).map_err(|source| Error::Json { file: layout::MANIFEST.into(), source })?,
    )
}

/// A table's metadata from the bytes of its file, checked against
/// `manifest` as [`read_table_meta`] checks it.
pub fn parse_table_meta(bytes: &[u8], name: &str, manifest: &Manifest) -> Result<TableMeta, Error> {
    let file = layout::table_meta_path(name);
    let refuse = |reason: String| Error::Refused { file: file.clone(), reason };
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err(refuse(format!("more than the {MAX_METADATA_BYTES} bytes a metadata file may have")));
    }
    let mut meta: TableMeta =
        serde_json::from_slice(bytes).map_err(|source| Error::Json { file: file.clone(), source })?;
    check_table_meta(&meta, name, manifest).map_err(refuse)?;
    meta.chunk_limit = manifest.chunking.max_chunk_bytes;
    Ok(meta)
}

/// What the code reading a manifest relies on: a format this version
/// reads, a chunk limit within [`MAX_CHUNK_BYTES`], bounded and distinct
/// table names.
fn check_manifest(manifest: Manifest) -> Result<Manifest, Error> {
    if manifest.format_version > layout::FORMAT_VERSION {
        return Err(Error::NewerFormat(manifest.format_version));
    }
    let refuse = |reason: String| Error::Refused { file: layout::MANIFEST.into(), reason };
    let limit = manifest.chunking.max_chunk_bytes;
    if limit == 0 || limit > MAX_CHUNK_BYTES {
        return Err(refuse(format!("chunking.max_chunk_bytes: {limit}, between 1 and {MAX_CHUNK_BYTES} expected")));
    }
    if manifest.tables.len() > MAX_TABLES {
        return Err(refuse(format!("tables: {}, more than the {MAX_TABLES} accepted", manifest.tables.len())));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in manifest.tables.iter().enumerate() {
        schema::check_name(&format!("tables[{i}]"), t).map_err(|e| refuse(e.to_string()))?;
        if !seen.insert(t) {
            return Err(refuse(format!("tables[{i}]: {t:?} appears twice")));
        }
    }
    Ok(manifest)
}
