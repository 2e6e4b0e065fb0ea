//! The data bridge with every engine: databases named by URL, opened with
//! the engine the URL names, handed to the core's drivers
//! (`tessera-bridge`). This crate is the one place that knows every
//! engine; the core knows none, and the server links only the core.
//!
//! URLs: `postgres://` or `postgresql://`, `mysql://` or `mariadb://`, a
//! path (or `sqlite://path`) to an SQLite file, or to a doltlite file
//! (recognized by its header; a new file becomes doltlite when the export
//! imported into it came from doltlite).

use std::path::Path;

use tessera_bridge::engine::{Opener, Source, Target};
use tessera_bridge_doltlite::Doltlite;
use tessera_bridge_mysql::Mysql;
use tessera_bridge_postgres::Postgres;
use tessera_bridge_sqlite::Sqlite;

pub use tessera_bridge::engine::Error;
pub use tessera_bridge::git::{open_target, push, Target as Repository};
pub use tessera_bridge::{chunk, csv, engine, git, layout, meta, progress, report, schema, value};
pub use tessera_bridge_doltlite::history;

/// A database named by its URL, opened when an operation needs it.
#[derive(Debug, Clone)]
pub struct Database {
    url: String,
}

impl Database {
    pub fn new(url: &str) -> Database {
        Database { url: url.to_string() }
    }

    fn path(&self) -> &str {
        self.url.strip_prefix("sqlite://").unwrap_or(&self.url)
    }

    /// Opens the database to read it (it must exist).
    pub fn source(&self) -> Result<Box<dyn Target>, Error> {
        self.open(None)
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn is_mysql(url: &str) -> bool {
    url.starts_with("mysql://") || url.starts_with("mariadb://")
}

impl Opener for Database {
    fn label(&self) -> String {
        tessera_bridge::git::redact_url(&self.url)
    }

    fn engine(&self, export_engine: Option<&str>) -> Result<&'static str, Error> {
        if is_postgres(&self.url) {
            return Ok("postgres");
        }
        if is_mysql(&self.url) {
            return Ok("mysql");
        }
        if self.url.contains("://") && !self.url.starts_with("sqlite://") {
            return Err(Error::Unsupported(format!(
                "{}: this version reads SQLite, doltlite, PostgreSQL and MySQL/MariaDB",
                self.label()
            )));
        }
        let doltlite = tessera_bridge_doltlite::is_doltlite(self.path())
            || (export_engine == Some("doltlite") && !Path::new(self.path()).exists());
        Ok(if doltlite { "doltlite" } else { "sqlite" })
    }

    fn is_new_file(&self) -> bool {
        !is_postgres(&self.url) && !is_mysql(&self.url) && !Path::new(self.path()).exists()
    }

    /// For an import (`export_engine` given) a file is created when it
    /// does not exist; otherwise it must.
    fn open(&self, export_engine: Option<&str>) -> Result<Box<dyn Target>, Error> {
        let create = export_engine.is_some();
        Ok(match self.engine(export_engine)? {
            "postgres" => Box::new(Postgres::connect(&self.url)?),
            "mysql" => Box::new(Mysql::connect(&self.url)?),
            "doltlite" => Box::new(Doltlite::open(self.path(), create)?),
            _ if create => Box::new(Sqlite::create(self.path())?),
            _ => Box::new(Sqlite::open(self.path())?),
        })
    }
}

/// Export, import and verify by URL.
pub mod ops {
    use super::*;

    pub use tessera_bridge::chunk::ChunkBy;
    pub use tessera_bridge::export::{self, ExportOptions, ExportReport, ExportedTable};
    pub use tessera_bridge::import::{self, ImportOptions, ImportReport, LoadedTable, ResumedTable};
    pub use tessera_bridge::verify::{self, summarize, Difference, TableDiff};

    pub fn export(database: &str, repo: &Path, opts: &ExportOptions) -> Result<ExportReport, export::Error> {
        let db = Database::new(database);
        let mut source = db.source()?;
        tessera_bridge::export::export(source.as_mut(), &db.label(), repo, opts)
    }

    /// Imports the head of `opts.branch` (or of the default branch). The
    /// repository's metadata is checked, and the DDL generated, before the
    /// database is opened: a refused import leaves no trace.
    pub fn import(repo: &Path, database: &str, opts: &ImportOptions) -> Result<ImportReport, import::Error> {
        let branch = match &opts.branch {
            Some(b) => b.clone(),
            None => tessera_bridge::git::default_branch(repo)?,
        };
        let rev = format!("refs/heads/{branch}");
        let db = Database::new(database);
        let manifest = tessera_bridge::meta::load_manifest(repo, &rev)?;
        let engine = db.engine(Some(&manifest.source.engine))?;
        let plan = tessera_bridge::import::prepare(repo, &rev, opts.tables.as_deref(), engine)?;
        let mut target = db.open(Some(&manifest.source.engine))?;
        tessera_bridge::import::run(repo, &plan, target.as_mut(), opts)
    }

    pub fn verify(database: &str, repo: &Path, branch: Option<&str>) -> Result<Vec<TableDiff>, verify::Error> {
        let mut source = Database::new(database).source()?;
        let source: &mut dyn Source = source.as_mut();
        tessera_bridge::verify::verify(source, repo, branch)
    }
}

/// Sync by URL.
pub mod sync {
    use super::*;

    pub use tessera_bridge::sync::{
        conflict_report, Direction, Error, OnConflict, PulledTable, SyncOptions, SyncReport, STATE_TABLE,
    };

    pub fn sync(database: &str, target: &Repository, opts: &SyncOptions) -> Result<SyncReport, Error> {
        tessera_bridge::sync::sync(&Database::new(database), target, opts)
    }

    pub fn record_base(database: &str, repo_id: &str, branch: &str, commit: &str) -> Result<(), Error> {
        tessera_bridge::sync::record_base(&Database::new(database), repo_id, branch, commit)
    }
}
