//! tessera's SQL storage: repositories, refs, the object index, packs and
//! tokens, on SQLite (embedded default), PostgreSQL or MySQL/MariaDB.
//!
//! The central types are [`Store`] (a connection pool plus the pack
//! storage), [`RefUpdate`] (one compare-and-swap on a ref) and
//! [`index::RepoIndex`] (an in-memory snapshot of where a repository's
//! objects live, refreshed incrementally by pack id).
//!
//! Object content never goes through SQL row by row: every received pack is
//! kept whole (as a file, or in `pack_chunks`) and `objects` maps each object
//! id to its pack and offset. Refs move by compare-and-swap inside the same
//! transaction that bumps the repository's version, after the objects they
//! need are committed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tessera_store::Error> {
//! let store = tessera_store::Store::open("sqlite://tessera-data/tessera.db", "tessera-data".as_ref(), Default::default()).await?;
//! let repo = store.create_repo("/import/demo", tessera_store::RepoKind::Import).await?;
//! let refs = store.list_refs(repo.id).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod access;
mod blink;
pub mod hooks;
pub mod index;
mod keys;
pub mod lfs;
mod monorepo;
mod objects;
pub mod packs;
mod push;
mod refs;
pub mod review;
pub mod schema;
pub mod storage;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

pub use access::{Level, Policy, Scope, Token, TokenCheck, User};
pub use keys::SshKey;
pub use lfs::{LfsLock, LfsStorage};
pub use monorepo::{MergeRequest, MrStatus};
pub use objects::{NewCommit, NewObject, NewPack, PackToStore};
pub use packs::PackStorage;
pub use push::{Destination, Received};
pub use refs::{Ref, RefOutcome, RefUpdate};
pub use storage::{Bucket, S3Config, S3Options, Storage};
pub use tessera_pack::ObjectId;

/// Dies on the spot when the environment variable `TESSERA_FAILPOINT`
/// names `point`, so that crash tests can kill a process at an exact step
/// of a write. Only tests set it.
pub fn failpoint(point: &str) {
    if std::env::var_os("TESSERA_FAILPOINT").is_some_and(|v| v == point) {
        eprintln!("failpoint {point}: aborting");
        std::process::abort();
    }
}

/// Which SQL dialect a database URL speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

impl Dialect {
    pub fn from_url(url: &str) -> Option<Dialect> {
        let scheme = url.split(':').next()?;
        match scheme {
            "sqlite" => Some(Dialect::Sqlite),
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::Mysql),
            _ => None,
        }
    }

    pub fn parse(name: &str) -> Option<Dialect> {
        Dialect::from_url(&format!("{name}:"))
    }
}

/// Every failure of the store; each variant names what was being done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database URL {0:?} is not sqlite://, postgres:// or mysql://")]
    UnknownScheme(String),
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database schema version {found} is newer than this tessera understands ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("pack storage failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("repository {0:?} already exists")]
    RepoExists(String),
    /// Something named by the caller does not exist (user, group, token).
    #[error("{0}")]
    NotFound(String),
    /// A name the caller chose is taken.
    #[error("{0} already exists")]
    Exists(String),
    /// The caller's input is not acceptable; the message says why.
    #[error("{0}")]
    Invalid(String),
}

/// Where a repository sits in the monorepo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// An ordinary git repository under an import root, with its own history.
    Import,
    /// The monorepo itself.
    Mono,
    /// A former import repository whose directory now takes merge requests.
    Converted,
}

impl RepoKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RepoKind::Import => "import",
            RepoKind::Mono => "mono",
            RepoKind::Converted => "converted",
        }
    }
}

/// A row of `repos`.
#[derive(Debug, Clone)]
pub struct Repo {
    pub id: i64,
    pub path: String,
    pub kind: RepoKind,
    /// The ref HEAD points at, e.g. `refs/heads/main`.
    pub head: String,
    pub version: i64,
}

/// Tunables of [`Store::open`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep pack bytes in the database instead of files under the data dir.
    /// Where pack files and LFS objects are kept.
    pub storage: Storage,
    pub max_connections: Option<u32>,
}

/// The storage handle shared by the whole server.
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    packs: PackStorage,
    lfs: LfsStorage,
    /// SQLite allows one writer; serializing writers in-process avoids
    /// SQLITE_BUSY on lock upgrades instead of retrying them.
    write_lock: Option<tokio::sync::Mutex<()>>,
}

pub(crate) fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub(crate) fn parse_oid(hex: &str) -> Result<ObjectId, Error> {
    ObjectId::from_hex(hex.trim().as_bytes()).map_err(|_| Error::Corrupt(format!("bad object id {hex:?}")))
}

impl Store {
    /// Connects, creates the schema if needed, and checks its version.
    pub async fn open(url: &str, data_dir: &Path, options: Options) -> Result<Store, Error> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(url).ok_or_else(|| Error::UnknownScheme(url.to_string()))?;
        let url = match dialect {
            Dialect::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let max = options.max_connections.unwrap_or(if dialect == Dialect::Sqlite { 8 } else { 16 });
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    match dialect {
                        Dialect::Sqlite => {
                            conn.execute("PRAGMA busy_timeout = 30000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                        }
                        Dialect::Mysql => {
                            conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
                        }
                        Dialect::Postgres => {
                            // CREATE ... IF NOT EXISTS on every start would
                            // otherwise log a notice per table.
                            conn.execute("SET client_min_messages = warning").await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(Error::Connect)?;
        if dialect == Dialect::Sqlite {
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        let (packs, lfs) = match &options.storage {
            Storage::Files => (PackStorage::Files { dir: data_dir.join("packs") }, LfsStorage::files(data_dir)),
            Storage::Database => {
                (PackStorage::Database { cache_dir: data_dir.join("pack-cache") }, LfsStorage::database(data_dir))
            }
            Storage::S3(config) => {
                let bucket = Bucket::open(config)?;
                let lfs = LfsStorage::s3(data_dir, bucket.clone());
                (PackStorage::S3 { bucket, cache_dir: data_dir.join("pack-cache") }, lfs)
            }
        };
        let store = Store {
            pool,
            dialect,
            packs,
            lfs,
            write_lock: (dialect == Dialect::Sqlite).then(|| tokio::sync::Mutex::new(())),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Whether `url` names a database tessera has set up (administration
    /// commands refuse to create one by accident).
    pub async fn exists(url: &str) -> Result<bool, Error> {
        let dialect = Dialect::from_url(url).ok_or_else(|| Error::UnknownScheme(url.to_string()))?;
        if dialect == Dialect::Sqlite {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" || !Path::new(path).exists() {
                return Ok(false);
            }
        }
        sqlx::any::install_default_drivers();
        use sqlx::Connection;
        let mut conn = match sqlx::AnyConnection::connect(url).await {
            Ok(c) => c,
            Err(e) => {
                let text = e.to_string();
                if text.contains("does not exist") || text.contains("Unknown database") {
                    return Ok(false);
                }
                return Err(Error::Connect(e));
            }
        };
        let found = sqlx::query("SELECT version FROM tessera_schema").fetch_optional(&mut conn).await;
        let _ = conn.close().await;
        Ok(matches!(found, Ok(Some(_))))
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn pack_storage(&self) -> &PackStorage {
        &self.packs
    }

    /// Rewrites `?` placeholders for dialects that number them.
    pub(crate) fn sql(&self, query: &str) -> String {
        if self.dialect != Dialect::Postgres {
            return query.to_string();
        }
        let mut out = String::with_capacity(query.len() + 16);
        let mut n = 0;
        for c in query.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }

    pub(crate) async fn write_guard(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    async fn migrate(&self) -> Result<(), Error> {
        let _guard = self.write_guard().await;
        self.pool.execute("CREATE TABLE IF NOT EXISTS tessera_schema (version BIGINT NOT NULL)").await?;
        let rows = self.pool.fetch_all("SELECT version FROM tessera_schema").await?;
        let found: Option<i64> = rows.first().map(|row| row.try_get(0)).transpose()?;
        if let Some(found) = found {
            if found > schema::VERSION {
                return Err(Error::SchemaTooNew { found, supported: schema::VERSION });
            }
            for from in found..schema::VERSION {
                for stmt in schema::migration(from) {
                    if let Err(e) = self.pool.execute(stmt.as_str()).await {
                        // A migration an earlier start stopped in the middle of.
                        let text = e.to_string().to_lowercase();
                        if !(text.contains("duplicate column") || text.contains("already exists")) {
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        for stmt in schema::statements(self.dialect) {
            if let Err(e) = self.pool.execute(stmt.as_str()).await {
                // MySQL lacks CREATE INDEX IF NOT EXISTS: a duplicate index is fine.
                let duplicate = self.dialect == Dialect::Mysql && e.to_string().contains("Duplicate key name");
                if !duplicate {
                    return Err(e.into());
                }
            }
        }
        match found {
            None => {
                sqlx::query(&self.sql("INSERT INTO tessera_schema (version) VALUES (?)"))
                    .bind(schema::VERSION)
                    .execute(&self.pool)
                    .await?;
            }
            Some(found) if found < schema::VERSION => {
                if found < 2 {
                    self.tokens_to_users().await?;
                }
                sqlx::query(&self.sql("UPDATE tessera_schema SET version = ?"))
                    .bind(schema::VERSION)
                    .execute(&self.pool)
                    .await?;
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Inserts a row and returns its generated `id` (RETURNING where the
    /// dialect has it; MySQL reports it with the result).
    pub(crate) async fn insert_id<'c, E>(&self, executor: E, query: &str, binds: Vec<BindValue>) -> Result<i64, Error>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        if self.dialect != Dialect::Mysql {
            let sql = self.sql(&format!("{query} RETURNING id"));
            let row = bind_all(sqlx::query(&sql), binds).fetch_one(executor).await?;
            Ok(row.try_get(0)?)
        } else {
            let sql = self.sql(query);
            let done = bind_all(sqlx::query(&sql), binds).execute(executor).await?;
            done.last_insert_id().ok_or_else(|| Error::Corrupt("insert returned no id".into()))
        }
    }

    pub async fn create_repo(&self, path: &str, kind: RepoKind) -> Result<Repo, Error> {
        let _guard = self.write_guard().await;
        if self.repo_by_path(path).await?.is_some() {
            return Err(Error::RepoExists(path.to_string()));
        }
        let now = now();
        let head = "refs/heads/main".to_string();
        let id = self
            .insert_id(
                &self.pool,
                "INSERT INTO repos (path, kind, head, version, created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?)",
                vec![path.into(), kind.as_str().into(), head.clone().into(), now.into(), now.into()],
            )
            .await?;
        Ok(Repo { id, path: path.to_string(), kind, head, version: 0 })
    }

    /// Removes an import repository that has no refs, with its object and
    /// commit rows and the packs no other repository uses; returns whether
    /// it was removed. A push that created a repository and then moved no
    /// ref (its pack refused, or every command rejected) leaves nothing.
    pub async fn remove_repo_without_refs(&self, repo_id: i64) -> Result<bool, Error> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        // Takes the repository's row lock, so no push can move a ref meanwhile.
        self.bump_version(&mut tx, repo_id).await?;
        let n_refs: i64 = sqlx::query(&self.sql("SELECT COUNT(*) FROM refs WHERE repo_id = ?"))
            .bind(repo_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if n_refs > 0 {
            return Ok(false);
        }
        let pack_rows = sqlx::query(&self.sql("SELECT DISTINCT pack_id FROM objects WHERE repo_id = ?"))
            .bind(repo_id)
            .fetch_all(&mut *tx)
            .await?;
        let mut pack_ids = Vec::with_capacity(pack_rows.len());
        for row in &pack_rows {
            pack_ids.push(row.try_get::<i64, _>(0)?);
        }
        for table in ["objects", "commits", "dir_commits"] {
            sqlx::query(&self.sql(&format!("DELETE FROM {table} WHERE repo_id = ?")))
                .bind(repo_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(&self.sql("DELETE FROM repos WHERE id = ?")).bind(repo_id).execute(&mut *tx).await?;
        let mut orphans = Vec::new();
        for pack_id in pack_ids {
            let users: i64 = sqlx::query(&self.sql("SELECT COUNT(*) FROM objects WHERE pack_id = ?"))
                .bind(pack_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if users == 0 {
                sqlx::query(&self.sql("DELETE FROM pack_chunks WHERE pack_id = ?"))
                    .bind(pack_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&self.sql("DELETE FROM packs WHERE id = ?")).bind(pack_id).execute(&mut *tx).await?;
                orphans.push(pack_id);
            }
        }
        tx.commit().await?;
        for pack_id in orphans {
            self.forget_pack(pack_id).await;
        }
        Ok(true)
    }

    fn repo_from_row(row: &AnyRow) -> Result<Repo, Error> {
        let kind: String = row.try_get(2)?;
        Ok(Repo {
            id: row.try_get(0)?,
            path: text(row, 1)?,
            kind: match kind.as_str() {
                "mono" => RepoKind::Mono,
                "converted" => RepoKind::Converted,
                _ => RepoKind::Import,
            },

            head: text(row, 3)?,
            version: row.try_get(4)?,
        })
    }

    pub async fn repo_by_path(&self, path: &str) -> Result<Option<Repo>, Error> {
        let sql = self.sql("SELECT id, path, kind, head, version FROM repos WHERE path = ?");
        let row = sqlx::query(&sql).bind(path).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::repo_from_row).transpose()
    }

    pub async fn repo_version(&self, repo_id: i64) -> Result<i64, Error> {
        let sql = self.sql("SELECT version FROM repos WHERE id = ?");
        let row = sqlx::query(&sql).bind(repo_id).fetch_one(&self.pool).await?;
        Ok(row.try_get(0)?)
    }

    pub async fn list_repos(&self) -> Result<Vec<Repo>, Error> {
        let rows =
            sqlx::query("SELECT id, path, kind, head, version FROM repos ORDER BY path").fetch_all(&self.pool).await?;
        rows.iter().map(Self::repo_from_row).collect()
    }

    pub async fn set_head(&self, repo_id: i64, head: &str) -> Result<(), Error> {
        let _guard = self.write_guard().await;
        let sql = self.sql("UPDATE repos SET head = ?, updated_at = ? WHERE id = ?");
        sqlx::query(&sql).bind(head).bind(now()).bind(repo_id).execute(&self.pool).await?;
        Ok(())
    }

    pub fn data_dir_hint(&self) -> Option<PathBuf> {
        match &self.packs {
            PackStorage::Files { dir } => dir.parent().map(Path::to_path_buf),
            PackStorage::Database { cache_dir } | PackStorage::S3 { cache_dir, .. } => {
                cache_dir.parent().map(Path::to_path_buf)
            }
        }
    }
}

/// A value to bind, for helpers that build queries from lists.
#[derive(Debug, Clone)]
pub(crate) enum BindValue {
    Int(i64),
    Text(String),
    NullText,
    NullInt,
}

impl From<i64> for BindValue {
    fn from(v: i64) -> Self {
        BindValue::Int(v)
    }
}
impl From<String> for BindValue {
    fn from(v: String) -> Self {
        BindValue::Text(v)
    }
}
impl From<&str> for BindValue {
    fn from(v: &str) -> Self {
        BindValue::Text(v.to_string())
    }
}
impl From<Option<i64>> for BindValue {
    fn from(v: Option<i64>) -> Self {
        v.map(BindValue::Int).unwrap_or(BindValue::NullInt)
    }
}
impl From<Option<String>> for BindValue {
    fn from(v: Option<String>) -> Self {
        v.map(BindValue::Text).unwrap_or(BindValue::NullText)
    }
}

pub(crate) fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: Vec<BindValue>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for b in binds {
        query = match b {
            BindValue::Int(v) => query.bind(v),
            BindValue::Text(v) => query.bind(v),
            BindValue::NullText => query.bind(Option::<String>::None),
            BindValue::NullInt => query.bind(Option::<i64>::None),
        };
    }
    query
}

/// A text column. MySQL reports `utf8mb4_bin` columns (used so names compare
/// byte-wise) as binary, so fall back to bytes holding UTF-8.
/// A nullable text column (MySQL reports long and binary-collated text as bytes).
pub(crate) fn opt_text(row: &AnyRow, idx: usize) -> Result<Option<String>, Error> {
    match row.try_get::<Option<String>, _>(idx) {
        Ok(s) => Ok(s),
        Err(_) => {
            let bytes: Option<Vec<u8>> = row.try_get(idx)?;
            bytes
                .map(|b| String::from_utf8(b).map_err(|_| Error::Corrupt(format!("column {idx} is not UTF-8"))))
                .transpose()
        }
    }
}

pub(crate) fn text(row: &AnyRow, idx: usize) -> Result<String, Error> {
    match row.try_get::<String, _>(idx) {
        Ok(s) => Ok(s),
        Err(_) => {
            let bytes: Vec<u8> = row.try_get(idx)?;
            String::from_utf8(bytes).map_err(|_| Error::Corrupt(format!("column {idx} is not UTF-8")))
        }
    }
}
