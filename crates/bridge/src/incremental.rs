//! Sync's shortcut on Dolt: Dolt knows which rows changed since the commit
//! the last sync recorded (`dolt_diff_<table>`), and content-defined chunk
//! boundaries mean only the chunks holding those keys can change. Those
//! chunks are re-read by key range (`key >= first AND key < next first`)
//! and cut again; a window grows into the next chunk only while the cut
//! has not come back onto an old boundary. Every other chunk keeps its blob,
//! and the table's content hash is updated from the per-chunk hashes.
//!
//! It applies to tables with a single INTEGER or TEXT key, chunked by size,
//! with unchanged columns, when the working set was clean at the last sync;
//! otherwise [`export_changes`] returns `None` and sync exports in full.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::path::Path;

use crate::chunk::{self, ContentHash};
use crate::engine::{Shape, Target, Versioned};
use crate::export::Error;
use crate::layout::{self, ChunkMeta, Manifest, TableMeta};
use crate::value::{self, Affinity, Value};
use crate::{git, meta};

/// Compares two key cells as SQLite orders them; `None` when the cells are
/// not plain integers or text, which this shortcut does not handle.
fn compare(a: &str, b: &str, affinity: Affinity) -> Option<Ordering> {
    match affinity {
        Affinity::Integer => Some(a.parse::<i64>().ok()?.cmp(&b.parse::<i64>().ok()?)),
        Affinity::Text if !a.starts_with('\\') && !b.starts_with('\\') => Some(a.as_bytes().cmp(b.as_bytes())),
        _ => None,
    }
}

/// The index of the chunk whose key range `[first, next first)` holds `key`
/// (the first chunk for keys below every chunk).
fn chunk_of(key: &str, chunks: &[ChunkMeta], affinity: Affinity) -> Option<usize> {
    let mut found = 0;
    for (i, c) in chunks.iter().enumerate() {
        let first = c.first_key.first()?.as_deref()?;
        match compare(first, key, affinity)? {
            Ordering::Greater => break,
            _ => found = i,
        }
    }
    Some(found)
}

/// Old chunks `start..=end` replaced by re-cut ones.
struct Window {
    start: usize,
    end: usize,
    chunks: Vec<(ChunkMeta, ContentHash)>,
}

/// One table re-cut around `affected` chunk indices.
#[allow(clippy::too_many_arguments)]
fn recut(
    db: &mut dyn Versioned,
    shape: &Shape,
    meta: &TableMeta,
    manifest: &Manifest,
    affected: &BTreeSet<usize>,
    commit: &mut git::CommitWriter,
    known: &std::collections::HashMap<String, String>,
    journal: &git::Journal,
) -> Result<Vec<Window>, Error> {
    let affinity =
        shape.columns.iter().find(|c| c.name == shape.primary_key[0]).map(|c| c.affinity).unwrap_or(Affinity::Text);
    let bound = |i: usize| -> Result<Option<Value>, Error> {
        match meta.chunks.get(i).and_then(|c| c.first_key.first().cloned().flatten()) {
            None => Ok(None),
            Some(t) => value::from_cell(&Some(t), affinity).map(Some).map_err(|e| {
                Error::Meta(meta::Error::Refused {
                    file: layout::table_meta_path(&meta.name),
                    reason: format!("chunks[{i}].first_key: {e}"),
                })
            }),
        }
    };
    let (sink, jobs) = std::sync::mpsc::sync_channel::<chunk::Job>(1);
    let compression = manifest.chunking.compression;
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let (scanned, outcome) = std::thread::scope(|scope| {
        let pack = &mut commit.pack;
        let scheme = manifest.chunking.algorithm;
        let worker = scope.spawn(move || chunk::store_chunks(jobs, pack, compression, scheme, known, journal));
        let mut run = || -> Result<(), Error> {
            let mut next = 0;
            for &start in affected {
                if start < next {
                    continue;
                }
                let mut chunker = chunk::Chunker::new(
                    &shape.name,
                    spans.len(),
                    &shape.columns,
                    crate::engine::key_columns(shape),
                    meta.divisor.max(1),
                    manifest.chunking.max_chunk_bytes,
                    scheme,
                    compression,
                    &sink,
                );
                let mut end = start;
                loop {
                    let low = if end == 0 { None } else { bound(end)? };
                    db.scan_range(shape, low, bound(end + 1)?, &mut |cells| Ok(chunker.push(cells)?))?;
                    let more = end + 1 < meta.chunks.len();
                    if more && (chunker.pending() || affected.contains(&(end + 1))) {
                        end += 1;
                    } else {
                        break;
                    }
                }
                chunker.finish()?;
                spans.push((start, end));
                next = end + 1;
            }
            Ok(())
        };
        let scanned = run();
        drop(sink);
        (scanned, worker.join().expect("the chunk writer does not panic"))
    });
    scanned?;
    if let Some(e) = outcome.error {
        return Err(e.into());
    }
    let mut windows: Vec<Window> =
        spans.into_iter().map(|(start, end)| Window { start, end, chunks: Vec::new() }).collect();
    for s in outcome.stored {
        windows[s.table].chunks.push((s.meta, s.hash));
    }
    Ok(windows)
}

/// Exports only what Dolt says changed since the last sync, on top of
/// `head`. `None`: the shortcut does not apply here; `Some(commit)`: done
/// (`None` inside when nothing changed).
pub fn export_changes(
    db: &mut dyn Target,
    repo: &Path,
    branch: &str,
    head: &str,
    repo_id: &str,
    manifest: &Manifest,
    message: &str,
) -> Result<Option<Option<tessera_pack::ObjectId>>, Error> {
    if manifest.chunking.partition_by.is_some() {
        return Ok(None);
    }
    let Some(versioned) = db.versioned() else { return Ok(None) };
    let Some(newer) = versioned.commits_since_sync(repo_id, branch)? else { return Ok(None) };
    let mut names = db.tables()?;
    names.retain(|n| !crate::import::internal_table(n));
    let listed: BTreeSet<&String> = manifest.tables.iter().collect();
    if names.iter().collect::<BTreeSet<_>>() != listed {
        return Ok(None);
    }
    let mut plans = Vec::new();
    for name in &manifest.tables {
        let Some(meta) = meta::read_table_meta(repo, head, name)? else {
            return Ok(None);
        };
        let shape = db.describe(name)?;
        let same_columns = shape.columns.len() == meta.columns.len()
            && shape
                .columns
                .iter()
                .zip(&meta.columns)
                .all(|(a, b)| a.name == b.name && a.declared_type == b.declared_type);
        if !same_columns || shape.primary_key.len() != 1 || shape.primary_key != meta.primary_key {
            return Ok(None);
        }
        if meta.chunks.iter().any(|c| c.content_hash.is_none() || c.partition.is_some()) {
            return Ok(None);
        }
        let affinity = shape.columns.iter().find(|c| c.name == shape.primary_key[0]).map(|c| c.affinity);
        let Some(affinity @ (Affinity::Integer | Affinity::Text)) = affinity else { return Ok(None) };
        let mut affected = BTreeSet::new();
        let Some(versioned) = db.versioned() else { return Ok(None) };
        for key in versioned.changed_keys(name, &shape.primary_key[0], &newer, affinity)? {
            match chunk_of(&key, &meta.chunks, affinity) {
                Some(i) => affected.insert(i),
                None => return Ok(None),
            };
        }
        if meta.chunks.is_empty() && !affected.is_empty() {
            return Ok(None);
        }
        plans.push((meta, shape, affected));
    }

    let mut commit = git::CommitWriter::start(repo, branch, message)?;
    let journal = git::Journal::open(repo)?;
    let mut known = journal.load(repo)?;
    for (meta, _, _) in &plans {
        for c in &meta.chunks {
            known.insert(c.sha256.clone(), c.git_blob.clone());
        }
    }
    let mut metas = Vec::new();
    for (meta, shape, affected) in plans {
        let windows = if affected.is_empty() {
            Vec::new()
        } else {
            let Some(versioned) = db.versioned() else { return Ok(None) };
            recut(versioned, &shape, &meta, manifest, &affected, &mut commit, &known, &journal)?
        };
        let mut hash = ContentHash::from_hex(&meta.content_hash).unwrap_or_default();
        let mut rows = meta.rows;
        let mut chunks: Vec<ChunkMeta> = Vec::new();
        let mut windows = windows.into_iter().peekable();
        let mut i = 0;
        while i < meta.chunks.len() {
            match windows.peek() {
                Some(w) if w.start == i => {
                    let w = windows.next().expect("peeked");
                    for old in &meta.chunks[w.start..=w.end] {
                        hash.remove(
                            ContentHash::from_hex(old.content_hash.as_deref().unwrap_or("")).unwrap_or_default(),
                        );
                        rows -= old.rows;
                    }
                    for (c, h) in w.chunks {
                        hash.merge(h);
                        rows += c.rows;
                        chunks.push(c);
                    }
                    i = w.end + 1;
                }
                _ => {
                    chunks.push(meta.chunks[i].clone());
                    i += 1;
                }
            }
        }
        // File names follow positions, as a full export names them.
        for (n, c) in chunks.iter_mut().enumerate() {
            c.file = layout::chunk_path(&meta.name, n + 1, manifest.chunking.compression);
            commit.file_ref(&c.file, &c.git_blob)?;
        }
        metas.push(TableMeta { rows, content_hash: hash.hex(), chunks, ..meta });
    }
    let schema = git::read_file(repo, head, layout::SCHEMA)?.unwrap_or_default();
    let mut manifest = manifest.clone();
    manifest.created_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    crate::export::write_metadata(&mut commit, &manifest, &metas, &String::from_utf8_lossy(&schema))?;
    let pushed = commit.finish(true)?;
    journal.clear();
    Ok(Some(pushed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(first: &str) -> ChunkMeta {
        ChunkMeta {
            file: String::new(),
            rows: 1,
            first_key: vec![Some(first.into())],
            last_key: vec![Some(first.into())],
            bytes: 0,
            uncompressed_bytes: 0,
            sha256: String::new(),
            git_blob: String::new(),
            partition: None,
            filter: None,
            content_hash: None,
        }
    }

    #[test]
    fn keys_find_their_chunk_in_database_order() {
        let chunks: Vec<ChunkMeta> = ["5", "40", "300"].into_iter().map(chunk).collect();
        assert_eq!(chunk_of("1", &chunks, Affinity::Integer), Some(0));
        assert_eq!(chunk_of("39", &chunks, Affinity::Integer), Some(0));
        assert_eq!(chunk_of("40", &chunks, Affinity::Integer), Some(1));
        assert_eq!(chunk_of("1000", &chunks, Affinity::Integer), Some(2));
        // As text, "1000" sorts before "300".
        assert_eq!(chunk_of("1000", &chunks, Affinity::Text), Some(0));
        assert_eq!(chunk_of("x", &chunks, Affinity::Integer), None);
    }
}
