//! Data views: the tables of a data export (`.dolt-metadata/`, `data/`) in
//! a repository or directory, a page of a table's rows across its chunks,
//! and what a commit changed in each table, row by row. Everything is read
//! through the bridge's core (`tessera_bridge::meta` checks the metadata,
//! `tessera_bridge::rows` reads chunks within limits), which names no
//! database engine; the files come from the server's own object store
//! through the caller's `read`.

use tessera_bridge::layout::{self, Manifest, TableMeta};
use tessera_bridge::rows::{self, Limits};

use tessera_web as web;

/// The files of the tree being shown.
pub(crate) trait Files {
    /// A file's bytes: `None` when there is none, an error (shown as it is)
    /// when it is larger than `max` bytes.
    fn read(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String>;
    /// The id of a file's content (its blob id).
    fn id(&self, path: &str) -> Option<String>;
}

/// A tree without files (the side of a root commit without a parent).
pub(crate) struct NoFiles;

impl Files for NoFiles {
    fn read(&self, _: &str, _: u64) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }
    fn id(&self, _: &str) -> Option<String> {
        None
    }
}

/// Largest metadata file a page reads (the bridge accepts up to 256 MiB,
/// for tables of millions of chunks; a page shows less).
const MAX_PAGE_METADATA: u64 = 32 << 20;

/// Rows on one page of a table.
pub(crate) const ROWS_PER_PAGE: usize = 100;

/// A data export as a page reads it: the checked manifest and the tables
/// whose metadata passed the bridge's checks.
pub(crate) struct Export {
    pub manifest: Manifest,
    pub tables: Vec<TableMeta>,
    /// Tables whose metadata was refused, with why.
    pub refused: Vec<(String, String)>,
}

/// The export at the root of a tree, if there is one.
pub(crate) fn load(files: &dyn Files) -> Result<Option<Export>, String> {
    let Some(bytes) = files.read(layout::MANIFEST, MAX_PAGE_METADATA)? else { return Ok(None) };
    let manifest = tessera_bridge::meta::parse_manifest(&bytes).map_err(|e| tessera_bridge::report(&e))?;
    let mut export = Export { manifest, tables: Vec::new(), refused: Vec::new() };
    for name in export.manifest.tables.clone() {
        let file = layout::table_meta_path(&name);
        let parsed = match files.read(&file, MAX_PAGE_METADATA) {
            Ok(Some(bytes)) => tessera_bridge::meta::parse_table_meta(&bytes, &name, &export.manifest)
                .map_err(|e| tessera_bridge::report(&e)),
            Ok(None) => Err(format!("{file}: missing")),
            Err(e) => Err(e),
        };
        match parsed {
            Ok(meta) => export.tables.push(meta),
            Err(e) => export.refused.push((name, e)),
        }
    }
    Ok(Some(export))
}

/// The list of tables, linking each to its rows under `href_base`.
pub(crate) fn tables(export: &Export, href_base: &str) -> web::DataExport {
    let tables = export
        .tables
        .iter()
        .map(|t| web::DataTable {
            name: t.name.clone(),
            href: format!("{href_base}/{}", web::url_path(&t.name)),
            columns: t.columns.iter().map(|c| (c.name.clone(), c.declared_type.clone())).collect(),
            key: t.primary_key.clone(),
            rows: t.rows,
            chunks: t.chunks.len(),
            bytes: t.chunks.iter().map(|c| c.bytes).sum(),
        })
        .collect();
    web::DataExport {
        source: format!("{} ({})", export.manifest.source.database, export.manifest.source.engine),
        tables,
        refused: export.refused.iter().map(|(name, why)| format!("{name}: not shown: {why}")).collect(),
    }
}

/// Reads a chunk file named by its metadata, within what the page may read.
fn chunk_reader(
    files: &dyn Files,
    limits: Limits,
) -> impl FnMut(&layout::ChunkMeta) -> Result<Option<Vec<u8>>, rows::Error> + '_ {
    move |chunk| {
        files
            .read(&chunk.file, limits.read_bytes)
            .map_err(|reason| rows::Error::Read { file: chunk.file.clone(), reason })
    }
}

/// Page `page` of `table`'s rows.
pub(crate) fn rows_page(table: &TableMeta, page: u64, href: &str, files: &dyn Files) -> Result<web::TableRows, String> {
    let limits = Limits::default();
    let offset = page.saturating_mul(ROWS_PER_PAGE as u64);
    let mut reader = chunk_reader(files, limits);
    let got = rows::page(table, offset, ROWS_PER_PAGE, limits, &mut reader).map_err(|e| tessera_bridge::report(&e))?;
    Ok(web::TableRows {
        table: table.name.clone(),
        columns: table.columns.iter().map(|c| c.name.clone()).collect(),
        key: table.primary_key.clone(),
        first: offset + 1,
        total: table.rows,
        rows: got.rows,
        newer: (page > 0).then(|| format!("{href}?page={}", page - 1)),
        older: got.more.then(|| format!("{href}?page={}", page + 1)),
    })
}

/// Whether a table holds the same rows on both sides: the same columns and
/// key, and chunk files with the same content (their blob ids: an edit in
/// git changes a file under unchanged metadata).
fn same(a: &TableMeta, a_files: &dyn Files, b: &TableMeta, b_files: &dyn Files) -> bool {
    a.columns.iter().map(|c| &c.name).eq(b.columns.iter().map(|c| &c.name))
        && a.primary_key == b.primary_key
        && a.chunks.iter().map(|c| a_files.id(&c.file)).eq(b.chunks.iter().map(|c| b_files.id(&c.file)))
}

/// What changed in each table between two trees (`None`: no export
/// there), row by row; tables whose rows are the same are left out.
pub(crate) fn changes(
    old: Option<&Export>,
    new: Option<&Export>,
    old_files: &dyn Files,
    new_files: &dyn Files,
) -> Vec<web::RowChanges> {
    let find = |e: Option<&Export>, name: &str| e.and_then(|e| e.tables.iter().find(|t| t.name == name)).cloned();
    let mut names: Vec<String> = new
        .iter()
        .chain(old.iter())
        .flat_map(|e| e.tables.iter().map(|t| t.name.clone()).chain(e.refused.iter().map(|(n, _)| n.clone())))
        .collect();
    names.sort();
    names.dedup();
    let limits = Limits::default();
    let mut out = Vec::new();
    for name in names {
        // A side whose metadata was refused is not compared: it would
        // read as a table dropped or created.
        let refused = new.iter().chain(old.iter()).find_map(|e| e.refused.iter().find(|(n, _)| *n == name));
        if let Some((_, why)) = refused {
            out.push(web::RowChanges {
                table: name.clone(),
                note: Some(format!("not compared here: {why}")),
                ..Default::default()
            });
            continue;
        }
        let (before, after) = (find(old, &name), find(new, &name));
        if let (Some(b), Some(a)) = (&before, &after) {
            if same(b, old_files, a, new_files) {
                continue;
            }
        }
        let key = after.as_ref().or(before.as_ref()).map(|t| t.primary_key.clone()).unwrap_or_default();
        let mut view = web::RowChanges { table: name.clone(), key, ..Default::default() };
        let diff = {
            let (mut read_a, mut read_b) = (chunk_reader(old_files, limits), chunk_reader(new_files, limits));
            let id_a = |c: &layout::ChunkMeta| old_files.id(&c.file);
            let id_b = |c: &layout::ChunkMeta| new_files.id(&c.file);
            rows::diff_table(
                rows::Side { meta: before.as_ref(), id: &id_a, read: &mut read_a },
                rows::Side { meta: after.as_ref(), id: &id_b, read: &mut read_b },
                limits,
            )
        };
        match diff {
            Ok(d) => {
                view.header = d.header.clone();
                view.columns = d.columns.clone();
                view.counts = (d.added_count, d.deleted_count, d.changed_count);
                view.truncated = d.truncated;
                view.added = d.added;
                view.deleted = d.deleted;
                view.changed = d
                    .changed
                    .into_iter()
                    .map(|c| web::ChangedRow {
                        before: d
                            .header
                            .iter()
                            .map(|h| c.cells.iter().find(|(name, _, _)| name == h).map(|(_, b, _)| b.clone()))
                            .collect(),
                        row: c.row,
                    })
                    .collect();
                if before.is_none() {
                    view.note = Some("a new table".into());
                } else if after.is_none() {
                    view.note = Some("the table was dropped".into());
                }
            }
            Err(e) => view.note = Some(format!("not compared here: {}", tessera_bridge::report(&e))),
        }
        out.push(view);
    }
    out
}
