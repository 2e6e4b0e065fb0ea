//! Test helpers, used only as a dev-dependency: [`TestServer`] runs a real
//! tessera server on `127.0.0.1:0` over SQLite, PostgreSQL or MariaDB (each
//! test gets its own database), and [`git`] runs the real git CLI.
//!
//! A backend that cannot be reached skips the test with a message, except
//! under `CI=true`, where it fails: CI must never pass by skipping.

mod http_backend;
pub mod packs;
pub use http_backend::HttpBackend;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tessera_server::{Config, Server};

/// Which database a [`TestServer`] stores into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const MYSQL_ADMIN: &str = "mysql://root@127.0.0.1:3306/test";

fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
}

/// Reports an unavailable backend: a skip locally, a failure in CI.
pub fn unavailable(what: &str, why: &str) {
    if in_ci() {
        panic!("{what} is required under CI=true but unavailable: {why}");
    }
    eprintln!("SKIPPED: {what} unavailable: {why}");
}

/// A fresh database on a real server, dropped again when the guard goes.
pub struct TempDatabase {
    pub url: String,
    admin: String,
    name: String,
    backend: Backend,
}

impl TempDatabase {
    /// Creates a uniquely named database, or `None` if the server is unreachable.
    pub fn create(backend: Backend) -> Option<TempDatabase> {
        let name = format!("tessera_t_{:016x}", rand::random::<u64>());
        let (admin, url) = match backend {
            Backend::Postgres => (PG_ADMIN.to_string(), format!("postgres://postgres@127.0.0.1:5432/{name}")),
            Backend::Mysql => (MYSQL_ADMIN.to_string(), format!("mysql://root@127.0.0.1:3306/{name}")),
            Backend::Sqlite => unreachable!("SQLite needs no server"),
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let created = rt.block_on(async {
            sqlx::any::install_default_drivers();
            use sqlx::Connection;
            let mut conn = sqlx::AnyConnection::connect(&admin).await?;
            let create = match backend {
                // utf8mb4 whatever the server's default: tests store emoji.
                Backend::Mysql => format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
                _ => format!("CREATE DATABASE {name}"),
            };
            sqlx::query(&create).execute(&mut conn).await?;
            Ok::<_, sqlx::Error>(())
        });
        match created {
            Ok(()) => Some(TempDatabase { url, admin, name, backend }),
            Err(e) => {
                unavailable(&format!("{backend:?} at {admin}"), &e.to_string());
                None
            }
        }
    }
}

impl TempDatabase {
    /// The database's name on its server.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let sql = match self.backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        let admin = self.admin.clone();
        // Dropped from inside or outside a runtime: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::AnyConnection::connect(&admin).await.ok()?;
                sqlx::query(&sql).execute(&mut conn).await.ok()
            })
        })
        .join();
    }
}

/// A running server with a token, its data dir and database.
pub struct TestServer {
    pub url: String,
    pub token: String,
    pub data_dir: tempfile::TempDir,
    pub backend: Backend,
    config: Config,
    // Declared before the database so the server stops before it is dropped.
    _shutdown: Shutdown,
    _database: Option<TempDatabase>,
}

/// A second server over the same database, from [`TestServer::peer`].
pub struct Peer {
    pub url: String,
    pub token: String,
    _shutdown: Shutdown,
    _data_dir: tempfile::TempDir,
}

impl Peer {
    pub fn repo(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    pub fn push_url(&self, path: &str) -> String {
        self.repo(path).replacen("http://", &format!("http://tester:{}@", self.token), 1)
    }
}

/// Another server process over the same data, from [`TestServer::restart`].
pub struct Instance {
    pub url: String,
    _shutdown: Shutdown,
}

impl Instance {
    pub fn repo(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }
}

fn spawn_server(config: Config, create_token: bool) -> (std::net::SocketAddr, String, Shutdown) {
    // Server warnings and errors show up in a failing test's output.
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let mut token = String::new();
            if create_token {
                let store = tessera_server::open_store(&config).await.expect("store opens");
                // An admin, so that tests of other features are not
                // tests of permissions.
                let user = store.create_user("test", None, true).await.expect("user");
                token = store.create_token(&user, "test", tessera_store::Scope::Admin, None).await.expect("token").1;
                store.pool().close().await;
            }
            let server = Server::bind(config).await.expect("server starts");
            tx.send((server.local_addr(), token)).expect("test waits");
            let _ = server
                .run_until(async move {
                    let _ = stop_rx.await;
                })
                .await;
        });
    });
    let (addr, token) = rx.recv().expect("server reports its address");
    (addr, token, Shutdown { stop: Some(stop_tx), thread: Some(thread) })
}

/// Stops a server (and closes its database connections) when dropped.
pub struct Shutdown {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl TestServer {
    /// Starts a server; `None` when the backend is unavailable outside CI.
    pub fn start(backend: Backend) -> Option<TestServer> {
        Self::start_with(backend, |_| {})
    }

    /// Starts a server after letting `adjust` change its configuration.
    pub fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<TestServer> {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let database = match backend {
            Backend::Sqlite => None,
            other => Some(TempDatabase::create(other)?),
        };
        let mut config = Config::with_data_dir(data_dir.path().to_path_buf());
        config.listen = "127.0.0.1:0".into();
        if let Some(db) = &database {
            config.database = db.url.clone();
        }
        adjust(&mut config);
        // Small pools: many test servers share one database server.
        config.max_db_connections.get_or_insert(4);
        let (addr, token, shutdown) = spawn_server(config.clone(), true);
        Some(TestServer {
            url: format!("http://{addr}"),
            token,
            data_dir,
            backend,
            config,
            _shutdown: shutdown,
            _database: database,
        })
    }

    /// Starts a second, fresh server process (own caches) over the same
    /// data, as a restart would.
    /// The database URL the server uses.
    pub fn database_url(&self) -> &str {
        &self.config.database
    }

    pub fn restart(&self) -> Instance {
        let (addr, _, shutdown) = spawn_server(self.config.clone(), false);
        Instance { url: format!("http://{addr}"), _shutdown: shutdown }
    }

    /// Another server process over the same database, with its own data
    /// directory (pack files, caches): two servers sharing one PostgreSQL
    /// with `packs_in_database`.
    pub fn peer(&self) -> Peer {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = self.config.clone();
        config.data_dir = data_dir.path().to_path_buf();
        let (addr, _, shutdown) = spawn_server(config, false);
        Peer { url: format!("http://{addr}"), token: self.token.clone(), _shutdown: shutdown, _data_dir: data_dir }
    }

    /// URL of a repository path for reads.
    pub fn repo(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// URL of a repository path carrying the token, for pushes.
    pub fn push_url(&self, path: &str) -> String {
        self.repo(path).replacen("http://", &format!("http://tester:{}@", self.token), 1)
    }
}

/// Runs git in `dir` with a clean, deterministic environment.
pub fn git_output(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Tess Tester")
        .env("GIT_AUTHOR_EMAIL", "tess@example.com")
        .env("GIT_COMMITTER_NAME", "Tess Tester")
        .env("GIT_COMMITTER_EMAIL", "tess@example.com")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .env("LC_ALL", "C")
        .output()
        .expect("git runs")
}

/// Runs git and insists it succeeds; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs git expecting failure; returns stderr.
pub fn git_fails(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(!out.status.success(), "git {args:?} unexpectedly succeeded:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `git show-ref` output of a repository, sorted (refs and ids).
pub fn refs(dir: &Path, filter: &str) -> Vec<String> {
    let out = git_output(dir, &["show-ref"]);
    let mut lines: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(filter)).map(str::to_string).collect();
    lines.sort();
    lines
}

/// Writes `content` to `dir/name`, creating parent directories.
pub fn write(dir: &Path, name: impl AsRef<Path>, content: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, content).expect("write");
    path
}

/// A new repository in a temp dir, with `main` as its initial branch.
pub fn new_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    git(dir.path(), &["init", "-q", "-b", "main"]);
    dir
}

/// Commits everything in the work tree with `message`; returns the commit id.
pub fn commit_all(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", message]);
    git(dir, &["rev-parse", "HEAD"]).trim().to_string()
}

/// Runs `git fsck --strict` and insists it is clean.
pub fn fsck(dir: &Path) {
    git(dir, &["fsck", "--strict", "--no-progress"]);
}

/// Commits everything with author and committer date `epoch` (seconds).
pub fn commit_at(dir: &Path, message: &str, epoch: i64) -> String {
    git(dir, &["add", "-A"]);
    let date = format!("@{epoch} +0000");
    let out = Command::new("git")
        .args(["commit", "-q", "--allow-empty", "-m", message])
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Tess Tester")
        .env("GIT_AUTHOR_EMAIL", "tess@example.com")
        .env("GIT_COMMITTER_NAME", "Tess Tester")
        .env("GIT_COMMITTER_EMAIL", "tess@example.com")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "commit failed: {}", String::from_utf8_lossy(&out.stderr));
    git(dir, &["rev-parse", "HEAD"]).trim().to_string()
}

/// Generates one `#[test]` per backend for each named `fn(Backend)`.
#[macro_export]
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite { use $crate::Backend; $( #[test] fn $name() { super::$name(Backend::Sqlite) } )* }
        mod postgres { use $crate::Backend; $( #[test] fn $name() { super::$name(Backend::Postgres) } )* }
        mod mysql { use $crate::Backend; $( #[test] fn $name() { super::$name(Backend::Mysql) } )* }
    };
}

/// One pkt-line holding `line`.
pub fn pkt(line: &str) -> Vec<u8> {
    let mut out = format!("{:04x}", line.len() + 4).into_bytes();
    out.extend_from_slice(line.as_bytes());
    out
}

/// A receive-pack request body: commands (capabilities on the first), a
/// flush, then `pack`.
pub fn push_body(commands: &[(&str, &str, &str)], caps: &str, pack: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (old, new, name)) in commands.iter().enumerate() {
        if i == 0 {
            body.extend(pkt(&format!("{old} {new} {name}\0{caps}\n")));
        } else {
            body.extend(pkt(&format!("{old} {new} {name}\n")));
        }
    }
    body.extend_from_slice(b"0000");
    body.extend_from_slice(pack);
    body
}

/// A pack of exactly the objects named (no traversal), made by git.
pub fn pack_objects(dir: &Path, ids: &[&str]) -> Vec<u8> {
    pack_objects_args(dir, &[], &ids.join("\n"))
}

/// A pack of what `revs` (e.g. `a..b`) reaches, made by git.
pub fn pack_revs(dir: &Path, revs: &str) -> Vec<u8> {
    pack_objects_args(dir, &["--revs"], revs)
}

fn pack_objects_args(dir: &Path, extra: &[&str], input: &str) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("git")
        .args(["pack-objects", "--stdout", "-q"])
        .args(extra)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git runs");
    child.stdin.take().expect("piped").write_all(format!("{input}\n").as_bytes()).expect("write");
    let out = child.wait_with_output().expect("git pack-objects");
    assert!(out.status.success(), "pack-objects failed");
    out.stdout
}

impl TestServer {
    /// POSTs `body` to `path`'s `service` endpoint (with the token when
    /// `auth`); returns the HTTP status and the response body.
    pub fn post(&self, path: &str, service: &str, body: &[u8], auth: bool) -> (u16, Vec<u8>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("body");
        std::fs::write(&file, body).expect("write body");
        let url = if auth { self.push_url(path) } else { self.repo(path) };
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "-H",
                &format!("Content-Type: application/x-{service}-request"),
            ])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(format!("{url}/{service}"))
            .output()
            .expect("curl runs");
        let text = out.stdout;
        let split = text.iter().rposition(|b| *b == b'\n').expect("status line");
        let status = String::from_utf8_lossy(&text[split + 1..]).trim().parse().expect("numeric status");
        (status, text[..split].to_vec())
    }
}

/// An S3-compatible server for tests: moto's, from PyPI (`moto[server]`),
/// on a free port of 127.0.0.1, killed when dropped.
pub struct S3Server {
    pub endpoint: String,
    child: std::process::Child,
}

impl S3Server {
    /// Starts a moto server with bucket `bucket`; `None` (a failure under
    /// CI=true) when moto is not installed.
    pub fn start(bucket: &str) -> Option<S3Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                unavailable("moto_server (pip install 'moto[server]')", &e.to_string());
                return None;
            }
        };
        let server = S3Server { endpoint: format!("http://127.0.0.1:{port}"), child };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "moto_server did not start on port {port}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let made = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
            .arg(format!("{}/{bucket}", server.endpoint))
            .output()
            .expect("curl runs");
        assert_eq!(String::from_utf8_lossy(&made.stdout), "200", "creating bucket {bucket}");
        Some(server)
    }

    /// The server's storage setting for `bucket/prefix`.
    pub fn storage(&self, bucket: &str, prefix: &str) -> tessera_store::Storage {
        let options = tessera_store::S3Options {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            allow_http: true,
        };
        tessera_store::Storage::S3(
            tessera_store::S3Config::parse(&format!("s3://{bucket}/{prefix}"), options).expect("an S3 URL"),
        )
    }

    /// The environment a `tessera` process needs for `s3://bucket/prefix`:
    /// the storage keys and moto's (any) credentials.
    pub fn env(&self, bucket: &str, prefix: &str) -> Vec<(&'static str, String)> {
        vec![
            ("TESSERA_STORAGE", format!("s3://{bucket}/{prefix}")),
            ("TESSERA_S3_ENDPOINT", self.endpoint.clone()),
            ("TESSERA_S3_REGION", "us-east-1".into()),
            ("TESSERA_S3_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "tessera-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "tessera-test".into()),
        ]
    }

    /// The keys of the bucket's objects under `prefix`, with their sizes.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let out = Command::new("curl")
            .arg("-s")
            .arg(format!("{}/{bucket}?list-type=2&prefix={prefix}&max-keys=1000", self.endpoint))
            .output()
            .expect("curl runs");
        let xml = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |part: &str, tag: &str| -> Option<String> {
            let start = part.find(&format!("<{tag}>"))? + tag.len() + 2;
            let end = part[start..].find(&format!("</{tag}>"))? + start;
            Some(part[start..end].to_string())
        };
        xml.split("<Contents>")
            .skip(1)
            .filter_map(|part| Some((field(part, "Key")?, field(part, "Size")?.parse().ok()?)))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
