//! Dolt history as git history, and back: `export --history` replays every
//! Dolt commit reachable from a branch as a git commit (author, date and
//! message kept, git branches named after the Dolt branches), and
//! `import --history` replays such a repository into a new doltlite file,
//! one `dolt_commit` per git commit.
//!
//! Each git commit carries a `Dolt-Commit: <hash>` trailer and its manifest
//! names the Dolt commit (`source.commit`): that is the mapping, and a later
//! export skips every Dolt commit it already finds there. Chunks are cut as
//! a plain export cuts them, per commit, from `dolt_at_<table>(commit)`; a
//! chunk whose content an earlier commit already stored is referenced by its
//! blob, so a commit that changed one row adds one chunk file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use tessera_bridge::engine::{self, Layer, Source};
use tessera_bridge::export::{self, ExportOptions};
use tessera_bridge::layout::{self, TableMeta};
use tessera_bridge::value::Value;
use tessera_bridge::ObjectId;
use tessera_bridge::{chunk, git, import, meta};

use crate::{quote, text, Doltlite};

/// The trailer naming a git commit's Dolt commit.
pub const TRAILER: &str = "Dolt-Commit";

/// The working branch `import --history` replays commits on.
const REPLAY_BRANCH: &str = "_tessera_replay";

/// What a history export or import failed with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Database(engine::Error),
    #[error(transparent)]
    Chunk(#[from] chunk::Error),
    #[error(transparent)]
    Meta(#[from] meta::Error),
    #[error(transparent)]
    Git(#[from] git::Error),
    #[error(transparent)]
    Export(#[from] export::Error),
    /// What a history export or import will not do as asked.
    #[error("{0}")]
    Refused(String),
}

impl From<engine::Error> for Error {
    fn from(e: engine::Error) -> Self {
        match e.into_layer() {
            Layer::Chunk(e) => Error::Chunk(e),
            Layer::Meta(e) => Error::Meta(e),
            Layer::Git(e) => Error::Git(e),
            Layer::Database(e) => Error::Database(e),
        }
    }
}

/// A branch after a history export or import, and the commit it points
/// at: a git commit on export, a Dolt commit on import (Dolt's hashes are
/// not git object ids, so both are kept as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchHead {
    pub branch: String,
    pub commit: String,
}

/// What a history export or import did.
#[derive(Debug, Default)]
pub struct HistoryReport {
    /// Commits written (git commits on export, Dolt commits on import).
    pub written: usize,
    /// Branches and the commits they point at afterwards.
    pub branches: Vec<BranchHead>,
}

struct DoltCommit {
    committer: String,
    email: String,
    /// Seconds since the epoch, UTC.
    time: i64,
    message: String,
    parents: Vec<String>,
    /// The first branch (by name) whose history has this commit.
    branch: String,
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS` (UTC, as Dolt reports commit dates) in seconds.
fn unix_seconds(date: &str) -> Result<i64, engine::Error> {
    let bad = || engine::Error::Database(format!("unexpected Dolt commit date {date:?}"));
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<i64>().ok()).ok_or_else(bad);
    let (day, time) = date.trim().split_once([' ', 'T']).ok_or_else(bad)?;
    let mut d = day.split('-');
    let (y, m, dd) = (num(d.next())?, num(d.next())?, num(d.next())?);
    let mut t = time.trim_end_matches('Z').split(':');
    let (h, mi) = (num(t.next())?, num(t.next())?);
    let s = num(t.next().map(|s| s.split('.').next().unwrap_or(s)))?;
    Ok(days_from_civil(y, m, dd) * 86_400 + h * 3_600 + mi * 60 + s)
}

pub use tessera_bridge::git::iso_date;

fn one_text(db: &Doltlite, sql: &str, params: &[Value]) -> Result<Option<String>, engine::Error> {
    Ok(db.strings(sql, params)?.first().and_then(|r| r.first()).map(text))
}

/// The commits reachable from each branch, with their parents.
#[allow(clippy::type_complexity)]
type Graph = (Vec<(String, String)>, HashMap<String, DoltCommit>);

fn dolt_graph(db: &Doltlite) -> Result<Graph, engine::Error> {
    let branches: Vec<(String, String)> = db
        .strings("SELECT name, hash FROM dolt_branches ORDER BY name", &[])?
        .iter()
        .map(|r| (text(&r[0]), text(&r[1])))
        .filter(|(name, _)| name != REPLAY_BRANCH)
        .collect();
    let mut commits = HashMap::new();
    for (branch, _) in &branches {
        let log = db.strings(
            "SELECT commit_hash, committer, email, date, message FROM dolt_log(?1)",
            &[Value::Text(branch.clone())],
        )?;
        for r in log {
            let hash = text(&r[0]);
            if commits.contains_key(&hash) {
                continue;
            }
            commits.insert(
                hash,
                DoltCommit {
                    committer: text(&r[1]),
                    email: text(&r[2]),
                    time: unix_seconds(&text(&r[3]))?,
                    message: text(&r[4]),
                    parents: Vec::new(),
                    branch: branch.clone(),
                },
            );
        }
    }
    let edges = db.strings(
        "SELECT commit_hash, parent_hash FROM dolt_commit_ancestors WHERE parent_hash IS NOT NULL \
         ORDER BY commit_hash, parent_index",
        &[],
    )?;
    for r in edges {
        if let Some(c) = commits.get_mut(&text(&r[0])) {
            c.parents.push(text(&r[1]));
        }
    }
    Ok((branches, commits))
}

/// Commits in an order where parents come before children.
fn parents_first(heads: &[String], commits: &HashMap<String, DoltCommit>) -> Vec<String> {
    let mut out = Vec::new();
    let mut done = HashSet::new();
    for head in heads {
        // Iterative post-order: (commit, parents pushed yet?).
        let mut stack = vec![(head.clone(), false)];
        while let Some((c, expanded)) = stack.pop() {
            if done.contains(&c) || !commits.contains_key(&c) {
                continue;
            }
            if expanded {
                done.insert(c.clone());
                out.push(c);
                continue;
            }
            stack.push((c.clone(), true));
            for p in commits[&c].parents.iter().rev() {
                stack.push((p.clone(), false));
            }
        }
    }
    out
}

/// Whether `table` exists as of `commit`.
fn exists_at(db: &Doltlite, table: &str, commit: &str) -> Result<bool, engine::Error> {
    let sql = format!("SELECT 1 FROM {}(?1) LIMIT 1", quote(&format!("dolt_at_{table}")));
    match db.strings(&sql, &[Value::Text(commit.into())]) {
        Ok(_) => Ok(true),
        Err(e) if e.to_string().contains("table not found") => Ok(false),
        Err(e) => Err(e),
    }
}

/// `export --history`: every Dolt commit not yet in the repository becomes a
/// git commit; git branches follow the Dolt branches.
pub fn export_history(database: &str, repo: &Path, opts: &ExportOptions) -> Result<HistoryReport, Error> {
    if !crate::is_doltlite(database) {
        return Err(Error::Refused(format!(
            "--history replays Dolt commits: {} is not a Dolt database (a doltlite file)",
            git::redact_url(database)
        )));
    }
    git::ensure_repo(repo)?;
    // The branch checked out in a work tree may move: it must be clean.
    if let Ok(checked_out) = git::default_branch(repo) {
        git::require_clean(repo, &checked_out)?;
    }
    let mut db = Doltlite::open(database, false)?;
    let (branches, commits) = dolt_graph(&db)?;
    let heads: Vec<String> = branches.iter().map(|(_, h)| h.clone()).collect();
    let mut mapped: HashMap<String, ObjectId> = git::trailers(repo, TRAILER)?
        .into_iter()
        .filter_map(|(git_commit, dolt)| Some((dolt, ObjectId::from_hex(git_commit.as_bytes()).ok()?)))
        .collect();
    let mut names = db.tables()?;
    names.retain(|n| !import::internal_table(n));
    if let Some(only) = &opts.tables {
        names.retain(|n| only.contains(n));
    }
    let journal = git::Journal::open(repo)?;
    let mut known = journal.load(repo)?;
    let mut writer = git::CommitWriter::detached(repo)?;
    // Row hash and metadata of the commits written or found, for chunk
    // reuse and a stable divisor and hash per table. Commits written by
    // this run sit in an unsealed pack git cannot read yet, so they are
    // only ever found here.
    let mut metas_of: HashMap<ObjectId, (layout::RowHash, BTreeMap<String, TableMeta>)> = HashMap::new();
    let mut report = HistoryReport::default();
    for hash in parents_first(&heads, &commits) {
        if mapped.contains_key(&hash) {
            continue;
        }
        let c = &commits[&hash];
        let parents: Vec<ObjectId> = c.parents.iter().filter_map(|p| mapped.get(p).copied()).collect();
        let (scheme, previous) = match parents.first() {
            Some(p) => match metas_of.get(p) {
                Some(found) => found.clone(),
                None => {
                    let (p, mut m) = (p.to_string(), BTreeMap::new());
                    for name in &names {
                        if let Some(meta) = meta::read_table_meta(repo, &p, name)? {
                            m.insert(name.clone(), meta);
                        }
                    }
                    (meta::row_hash_at(repo, &p)?, m)
                }
            },
            None => (layout::RowHash::NEWEST, BTreeMap::new()),
        };
        for meta in previous.values() {
            for chunk in &meta.chunks {
                known.entry(chunk.sha256.clone()).or_insert_with(|| chunk.git_blob.clone());
            }
        }
        let mut present = Vec::new();
        for name in &names {
            if exists_at(&db, name, &hash)? {
                present.push(name.clone());
            }
        }
        db.at = Some(hash.clone());
        let written =
            export::write_tables(&mut db, &present, &mut writer, opts, &previous, scheme, &mut known, &journal);
        db.at = None;
        let (metas, schema_sql) = written?;
        let source = layout::Source {
            engine: "doltlite".into(),
            database: git::redact_url(database),
            branch: Some(c.branch.clone()),
            commit: Some(hash.clone()),
        };
        let manifest = export::manifest(source, opts, scheme, &present, c.time.max(0) as u64);
        export::write_metadata(&mut writer, &manifest, &metas, &schema_sql)?;
        let ident = format!("{} <{}> {} +0000", c.committer, c.email, c.time);
        let message = format!("{}\n\n{TRAILER}: {hash}\n", c.message.trim_end());
        let id = writer.commit_detached(&parents, &message, &ident, &ident)?;
        metas_of.insert(id, (scheme, metas.into_iter().map(|m| (m.name.clone(), m)).collect()));
        mapped.insert(hash, id);
        report.written += 1;
    }
    writer.seal()?;
    journal.clear();
    for (branch, head) in &branches {
        let commit = mapped
            .get(head)
            .ok_or_else(|| Error::Refused(format!("branch {branch}: commit {head} is not in the history read")))?;
        git::set_branch(repo, branch, *commit)?;
        report.branches.push(BranchHead { branch: branch.clone(), commit: commit.to_string() });
    }
    Ok(report)
}

/// A commit message without the `Dolt-Commit` trailer export added.
fn strip_trailer(message: &str) -> String {
    let kept: Vec<&str> = message.trim_end().lines().filter(|l| !l.starts_with(&format!("{TRAILER}: "))).collect();
    kept.join("\n").trim_end().to_string()
}

/// Same tree id for a path in two commits (both missing counts as same).
fn same_path(repo: &Path, a: &str, b: &str, path: &str) -> Result<bool, git::Error> {
    Ok(git::blob_id(repo, a, path)? == git::blob_id(repo, b, path)?)
}

/// `import --history`: replays every commit reachable from a branch into a
/// new doltlite file, one `dolt_commit` each (author, date and message
/// kept), and creates the branches.
pub fn import_history(repo: &Path, database: &str) -> Result<HistoryReport, Error> {
    let path = database.strip_prefix("sqlite://").unwrap_or(database);
    if Path::new(path).exists() {
        return Err(Error::Refused(format!("import --history makes a new doltlite file, and {path} exists")));
    }
    let db = Doltlite::open(path, true)?;
    let run = |sql: &str, params: &[Value]| db.execute(sql, params);
    let init = one_text(&db, "SELECT commit_hash FROM dolt_log ORDER BY date LIMIT 1", &[])?
        .ok_or_else(|| Error::Refused(format!("{path} has no initial Dolt commit")))?;
    let home = one_text(&db, "SELECT active_branch()", &[])?.unwrap_or_else(|| "main".into());
    let mut mapped: HashMap<String, String> = HashMap::new();
    let mut report = HistoryReport::default();
    let mut edited = Vec::new();
    for (commit, parents) in git::commits_parents_first(repo)? {
        let manifest = meta::load_manifest(repo, &commit)?;
        if parents.is_empty() && manifest.tables.is_empty() {
            // Dolt's own first commit: the new file has one already.
            mapped.insert(commit, init.clone());
            continue;
        }
        let base_git = parents.first().cloned();
        let base = base_git.as_ref().and_then(|p| mapped.get(p).cloned()).unwrap_or_else(|| init.clone());
        run("SELECT dolt_checkout(?1)", &[Value::Text(home.clone())])?;
        run("SELECT dolt_branch('-f', ?1, ?2)", &[Value::Text(REPLAY_BRANCH.into()), Value::Text(base)])?;
        run("SELECT dolt_checkout(?1)", &[Value::Text(REPLAY_BRANCH.into())])?;
        let before: Vec<String> = match &base_git {
            Some(p) => meta::load_manifest(repo, p)?.tables,
            None => Vec::new(),
        };
        run("BEGIN", &[])?;
        let mut load = || -> Result<(), Error> {
            for gone in before.iter().filter(|t| !manifest.tables.contains(t)) {
                run(&format!("DROP TABLE {}", quote(gone)), &[])?;
            }
            for name in &manifest.tables {
                let unchanged = match &base_git {
                    Some(p) if before.contains(name) => {
                        same_path(repo, p, &commit, &format!("data/{name}"))?
                            && same_path(repo, p, &commit, &layout::table_meta_path(name))?
                    }
                    _ => false,
                };
                if unchanged {
                    continue;
                }
                let meta = meta::read_table_meta_in(repo, &commit, &manifest, name)?
                    .ok_or_else(|| meta::Error::Layout(format!("{commit}: no metadata for table {name}")))?;
                // Generated from the checked description, never the stored text.
                let ddl = meta::table_ddl(&meta, tessera_bridge::schema::Engine::Sqlite)?;
                run(&format!("DROP TABLE IF EXISTS {}", quote(name)), &[])?;
                for stmt in &ddl.create {
                    run(stmt, &[])?;
                }
                let cols: Vec<String> = meta.columns.iter().map(|c| quote(&c.name)).collect();
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    quote(name),
                    cols.join(", "),
                    vec!["?"; cols.len()].join(", ")
                );
                chunk::read_rows(repo, &commit, &meta, true, &mut edited, &mut |file, line, values, _| {
                    db.execute(&sql, &values)
                        .map_err(|e| Error::Chunk(chunk::Error::damaged(file, line, e.to_string())))
                })?;
                for stmt in &ddl.after {
                    run(stmt, &[])?;
                }
            }
            Ok(())
        };
        if let Err(e) = load() {
            let _ = run("ROLLBACK", &[]);
            return Err(e);
        }
        run("COMMIT", &[])?;
        let (name, email, time, message) = git::commit_info(repo, &commit)?;
        let hash = one_text(
            &db,
            "SELECT dolt_commit('-A', '--allow-empty', '-m', ?1, '--author', ?2, '--date', ?3)",
            &[
                Value::Text(strip_trailer(&message)),
                Value::Text(format!("{name} <{email}>")),
                Value::Text(iso_date(time)),
            ],
        )?
        .ok_or_else(|| Error::Refused("dolt_commit returned no hash".into()))?;
        mapped.insert(commit, hash);
        report.written += 1;
    }
    // Branches, then back to the home branch without the replay branch.
    let git_branches = git::branches(repo)?;
    if report.written > 0 {
        run("SELECT dolt_checkout(?1)", &[Value::Text(REPLAY_BRANCH.into())])?;
    }
    for (branch, head) in &git_branches {
        let Some(hash) = mapped.get(head) else { continue };
        run("SELECT dolt_branch('-f', ?1, ?2)", &[Value::Text(branch.clone()), Value::Text(hash.clone())])?;
        report.branches.push(BranchHead { branch: branch.clone(), commit: hash.clone() });
    }
    let target = match git::default_branch(repo) {
        Ok(b) if git_branches.iter().any(|(name, _)| *name == b) => b,
        _ => home,
    };
    run("SELECT dolt_checkout(?1)", &[Value::Text(target)])?;
    if report.written > 0 {
        run("SELECT dolt_branch('-D', ?1)", &[Value::Text(REPLAY_BRANCH.into())])?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_both_ways() {
        assert_eq!(unix_seconds("1970-01-01 00:00:00").unwrap(), 0);
        assert_eq!(unix_seconds("2020-01-02 03:04:05").unwrap(), 1_577_934_245);
        assert_eq!(unix_seconds("2000-02-29T23:59:59Z").unwrap(), 951_868_799);
        for t in [0, 951_868_799, 1_577_934_245, 4_102_444_800] {
            assert_eq!(unix_seconds(&iso_date(t)).unwrap(), t);
        }
        assert!(unix_seconds("yesterday").is_err());
    }

    #[test]
    fn the_trailer_is_stripped_on_import() {
        assert_eq!(strip_trailer("fix a row\n\nDolt-Commit: abc\n"), "fix a row");
        assert_eq!(strip_trailer("title\n\nbody line\n\nDolt-Commit: abc"), "title\n\nbody line");
    }
}
