//! `tessera data ...`: the commands, as the binary mounts them.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use std::io::IsTerminal;
use std::sync::Arc;

use tessera_data::ops::{self, ExportOptions, ImportOptions};
use tessera_data::progress::{Meter, Progress, Reporter};

/// Progress bars on stderr, one per table: bytes, throughput, rows and
/// where the work is. Drawn only when stderr is a terminal.
struct Bars;

impl Progress for Bars {
    fn start(&self, unit: &str) -> Box<dyn Meter> {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {prefix}: {binary_bytes} ({binary_bytes_per_sec}) {msg}",
            )
            .expect("the template is valid"),
        );
        bar.set_prefix(unit.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Box::new(Bar(bar))
    }
}

struct Bar(indicatif::ProgressBar);

impl Meter for Bar {
    fn update(&self, bytes: u64, rows: u64, note: &str) {
        self.0.set_position(bytes);
        let secs = self.0.elapsed().as_secs_f64().max(0.001);
        let rate = rows as f64 / secs;
        self.0.set_message(if note.is_empty() {
            format!("{rows} rows, {rate:.0} rows/s")
        } else {
            format!("{rows} rows, {rate:.0} rows/s, {note}")
        });
    }
    fn restart(&self) {
        self.0.set_position(0);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// Bars on a terminal, nothing otherwise.
fn reporter() -> Reporter {
    if std::io::stderr().is_terminal() {
        Reporter::new(Arc::new(Bars))
    } else {
        Reporter::default()
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Export tables into a git repository as chunked CSV with schema and metadata.
    Export(ExportArgs),
    /// Import a repository made by `export` into a database.
    Import(ImportArgs),
    /// Compare a database with a repository (row counts and content hashes).
    Verify(VerifyArgs),
    /// Sync a database and a repository both ways: a three-way merge of rows
    /// and cells since the last sync.
    Sync(SyncArgs),
}

#[derive(Args)]
pub struct SyncArgs {
    pub database: String,
    pub repo: String,
    /// Only send database changes to the repository.
    #[arg(long, conflicts_with = "pull_only")]
    pub push_only: bool,
    /// Only apply repository changes to the database.
    #[arg(long)]
    pub pull_only: bool,
    /// A cell changed differently on both sides: fail (report, change nothing),
    /// ours (the database wins) or theirs (the repository wins).
    #[arg(long, default_value = "fail", value_parser = ["fail", "ours", "theirs"])]
    pub on_conflict: String,
    #[arg(long)]
    pub branch: Option<String>,
    /// Create a missing local repository bare (no work tree). By default a
    /// local repository has a work tree that each sync brings to the new
    /// commit.
    #[arg(long)]
    pub bare: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The database: a SQLite file path or sqlite:// URL, postgres://…, or mysql://… (MySQL, MariaDB).
    pub database: String,
    /// The repository: a local path (created if missing) or a remote URL
    /// (https://, ssh://, file://, git@host:path, github.com/user/repo), pushed with your git credentials.
    pub repo: String,
    /// Largest chunk file, e.g. 50MB, 512KB.
    #[arg(long, default_value = "50MB")]
    pub chunk_size: String,
    /// Only these tables (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tables: Option<Vec<String>>,
    /// Partition files by a column's value, or by the year, month or day of
    /// a date column: COLUMN[:year|month|day].
    #[arg(long)]
    pub chunk_by: Option<String>,
    /// Compress chunk files: gzip or zstd (the size limit still bounds the
    /// uncompressed rows, so compressed files stay below it).
    #[arg(long, value_parser = ["gzip", "zstd"])]
    pub compress: Option<String>,
    /// Branch to commit to [default: the repository's default branch].
    #[arg(long)]
    pub branch: Option<String>,
    #[arg(long)]
    pub message: Option<String>,
    /// Dolt databases: replay every commit of every branch as git commits
    /// (author, date and message kept; branches named after Dolt's). A later
    /// run adds only new Dolt commits.
    #[arg(long)]
    pub history: bool,
    /// Create a missing local repository bare (no work tree). By default a
    /// local repository has a work tree, brought to the new commit with its
    /// index (an export refuses to run over uncommitted changes there).
    #[arg(long)]
    pub bare: bool,
}

#[derive(Args)]
pub struct ImportArgs {
    pub repo: String,
    /// The target database: a SQLite file path (created if missing), postgres://… or mysql://….
    pub database: Option<String>,
    #[arg(long, value_delimiter = ',')]
    pub tables: Option<Vec<String>>,
    #[arg(long)]
    pub branch: Option<String>,
    /// Overwrite tables that already exist in the target.
    #[arg(long)]
    pub replace: bool,
    /// Recreate the commits and branches of an `export --history` in a new
    /// doltlite file, one Dolt commit per git commit.
    #[arg(long)]
    pub history: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    pub database: String,
    pub repo: String,
    #[arg(long)]
    pub branch: Option<String>,
}

/// Parses sizes like `50MB`, `512KB`, `1GB` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_uppercase();
    let (digits, mult) = if let Some(d) = t.strip_suffix("GB") {
        (d, 1u64 << 30)
    } else if let Some(d) = t.strip_suffix("MB") {
        (d, 1 << 20)
    } else if let Some(d) = t.strip_suffix("KB") {
        (d, 1 << 10)
    } else {
        (t.strip_suffix('B').unwrap_or(&t), 1)
    };
    let n: u64 = digits.trim().parse().map_err(|_| format!("--chunk-size {s:?} is not a size like 50MB"))?;
    if n.saturating_mul(mult) < 1024 {
        return Err("--chunk-size must be at least 1KB".into());
    }
    n.checked_mul(mult).ok_or_else(|| format!("--chunk-size {s:?} is too large"))
}

/// Opens `<REPO>` for writing: `--bare` creates a missing local
/// repository without a work tree.
fn open_for_writing(repo: &str, bare: bool) -> Result<tessera_data::git::Target, Failure> {
    let target = tessera_data::git::open_target(repo, true)?;
    if bare {
        if target.remote.is_some() {
            return Err("--bare applies to a local repository path, not a URL".into());
        }
        tessera_data::git::ensure_bare_repo(&target.path)?;
    }
    Ok(target)
}

/// How the sync state names a repository: its URL without credentials, or
/// its canonical path, so that an export and a later sync agree.
fn repo_id(target: &tessera_data::git::Target, repo: &str) -> String {
    match &target.remote {
        Some(url) => tessera_data::git::redact_url(url),
        None => std::fs::canonicalize(repo).map(|p| p.display().to_string()).unwrap_or_else(|_| repo.to_string()),
    }
}

/// Any failure of a command: the operations' typed errors, or a usage error.
type Failure = Box<dyn std::error::Error + Send + Sync>;

fn run_inner(cmd: Command) -> Result<ExitCode, Failure> {
    match cmd {
        Command::Export(a) => {
            let compression = match a.compress.as_deref() {
                Some("gzip") => tessera_data::layout::Compression::Gzip,
                Some("zstd") => tessera_data::layout::Compression::Zstd,
                _ => tessera_data::layout::Compression::None,
            };
            let opts = ExportOptions {
                max_chunk_bytes: parse_size(&a.chunk_size)?,
                chunk_by: a.chunk_by.as_deref().map(ops::ChunkBy::parse).transpose()?,
                compression,
                tables: a.tables,
                branch: a.branch,
                message: a.message,
                progress: reporter(),
            };
            let target = open_for_writing(&a.repo, a.bare)?;
            if a.history {
                let report = tessera_data::history::export_history(&a.database, &target.path, &opts)?;
                for tessera_data::history::BranchHead { branch, .. } in &report.branches {
                    tessera_data::git::push(&target, branch)?;
                }
                println!(
                    "{} new commit(s); branches: {}",
                    report.written,
                    report.branches.iter().map(|b| b.branch.as_str()).collect::<Vec<_>>().join(", ")
                );
                return Ok(ExitCode::SUCCESS);
            }
            let report = ops::export(&a.database, &target.path, &opts)?;
            let branch = match &opts.branch {
                Some(b) => b.clone(),
                None => tessera_data::git::default_branch(&target.path)?,
            };
            tessera_data::git::push(&target, &branch)?;
            // The commit is the database as it was read: the base of the
            // next sync, which would otherwise see every later change on
            // either side as a conflict. A database tessera may not write
            // to (a replica, a read-only role) is still exported.
            if let Some(commit) = &report.commit {
                if let Err(e) = tessera_data::sync::record_base(
                    &a.database,
                    &repo_id(&target, &a.repo),
                    &branch,
                    &commit.to_string(),
                ) {
                    eprintln!(
                        "warning: the export was not recorded as the base of a later sync: {}",
                        tessera_data::report(&e)
                    );
                }
            }
            for t in report.tables {
                println!("{}: {} rows in {} chunk(s)", t.table, t.rows, t.chunks);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(a) => {
            let database = a.database.ok_or("name the target database: tessera data import <repo> <database>")?;
            if a.history {
                let report = tessera_data::history::import_history(
                    &tessera_data::git::open_target(&a.repo, false)?.path,
                    &database,
                )?;
                println!(
                    "{} Dolt commit(s); branches: {}",
                    report.written,
                    report.branches.iter().map(|b| b.branch.as_str()).collect::<Vec<_>>().join(", ")
                );
                return Ok(ExitCode::SUCCESS);
            }
            let opts = ImportOptions { tables: a.tables, branch: a.branch, replace: a.replace, progress: reporter() };
            let report = ops::import(&tessera_data::git::open_target(&a.repo, false)?.path, &database, &opts)?;
            for note in &report.approximations {
                println!("approximated: {note}");
            }
            for file in &report.edited_chunks {
                println!("accepted an edit made in git: {file}");
            }
            for r in &report.resumed {
                println!("{}: resumed an interrupted import after {} chunk(s) already loaded", r.table, r.chunks);
            }
            for t in report.tables {
                println!("{}: {} rows", t.table, t.rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync(a) => {
            use tessera_data::sync::{Direction, OnConflict, SyncOptions};
            let target = open_for_writing(&a.repo, a.bare)?;
            tessera_data::git::ensure_repo(&target.path)?;
            let repo_id = repo_id(&target, &a.repo);
            let opts = SyncOptions {
                direction: if a.push_only {
                    Direction::PushOnly
                } else if a.pull_only {
                    Direction::PullOnly
                } else {
                    Direction::Both
                },
                on_conflict: match a.on_conflict.as_str() {
                    "ours" => OnConflict::Ours,
                    "theirs" => OnConflict::Theirs,
                    _ => OnConflict::Fail,
                },
                branch: a.branch,
                repo_id,
                export: None,
            };
            let report = tessera_data::sync::sync(&a.database, &target, &opts)?;
            for file in &report.edited_chunks {
                println!("accepted an edit made in git: {file}");
            }
            for t in &report.created {
                println!("{t}: created from the repository");
            }
            for t in &report.pulled {
                println!(
                    "{}: pulled {} insert(s), {} update(s), {} delete(s)",
                    t.table, t.inserted, t.updated, t.deleted
                );
            }
            if report.resolved > 0 {
                println!("resolved {} conflicting cell(s) by --on-conflict {}", report.resolved, a.on_conflict);
            }
            if report.via_dolt_diff {
                println!("found the database's changes with Dolt's diff");
            }
            match &report.pushed {
                Some(c) => println!("pushed commit {c}"),
                None => println!("nothing to push"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(a) => {
            let diffs =
                ops::verify(&a.database, &tessera_data::git::open_target(&a.repo, false)?.path, a.branch.as_deref())?;
            let mut same = true;
            for d in &diffs {
                if !d.same_content {
                    same = false;
                    match d.database_rows {
                        None => {
                            println!("{}: missing from the database ({} rows in the repository)", d.table, d.repo_rows)
                        }
                        Some(n) => match &d.first_difference {
                            Some(first) => {
                                println!("{}: {first} (database {n} rows, repository {} rows)", d.table, d.repo_rows)
                            }
                            None => {
                                println!("{}: differs (database {n} rows, repository {} rows)", d.table, d.repo_rows)
                            }
                        },
                    }
                }
            }
            if same {
                println!("{} table(s) identical", diffs.len());
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// Runs a `tessera data` command, printing any error; exit 1 on error or
/// on differences found by verify.
pub fn run(cmd: Command) -> ExitCode {
    match run_inner(cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", tessera_data::report(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
