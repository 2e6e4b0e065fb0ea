//! tessera's HTTP server: git's smart HTTP protocol over [`tessera_store`].
//!
//! [`Config`] says where data lives and who may do what; [`Server::bind`]
//! opens the store (migrating it), sets up the monorepo layout on first
//! start, and serves until the future is dropped. Each request resolves a
//! repository path, refreshes that repository's cached index snapshot, and
//! hands the protocol work to blocking threads.
#![forbid(unsafe_code)]

mod api;
mod auth;
mod blink;
mod datapages;
mod error;
mod hooks;
mod layout;
mod lfs;
mod push;
mod repos;
mod review;
mod serve;
mod smart;
pub mod ssh;
mod ui;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tessera_store::Store;

pub use error::HttpError;

/// Everything the server needs to know; built by the binary from flags,
/// environment and `tessera.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: String,
    /// Where to serve git over SSH; `None`: no SSH.
    pub ssh_listen: Option<String>,
    /// The server's HTTP URL as users reach it (`https://git.example.com`),
    /// for links the server makes outside an HTTP request (SSH pushes,
    /// `git-lfs-authenticate`); default `http://<listen>`.
    pub public_url: Option<String>,
    pub database: String,
    /// Paths under which a push creates an import repository, e.g. `/import`.
    pub import_roots: Vec<String>,
    /// Require a token for reads too (pushes always need one).
    pub require_token_for_reads: bool,
    /// Where pack files and LFS objects are kept: files in the data
    /// directory, the database, or an S3-compatible bucket.
    pub storage: tessera_store::Storage,
    /// Hand LFS downloads presigned URLs of the bucket itself (S3 storage
    /// only), valid for 15 minutes, instead of serving the bytes.
    pub lfs_presigned_downloads: bool,
    /// Deliver webhooks to loopback and private addresses too (tests, or a
    /// CI on the same network).
    pub webhooks_allow_private: bool,
    /// Seconds before a failed webhook delivery's first retry; each next
    /// wait doubles (five attempts in all).
    pub webhook_retry_secs: u64,
    /// The largest push accepted, in bytes.
    pub max_push_bytes: u64,
    /// The largest fetch request body (wants and haves), in bytes.
    pub max_request_bytes: usize,
    /// Seconds a client may take to send a request's headers, or to send
    /// the next piece of a request body, before the connection is closed.
    pub request_timeout_secs: u64,
    /// Refuse fetches that would send more objects than this.
    pub max_clone_objects: Option<u64>,
    /// Size of the database connection pool (default: 8 on SQLite, 16 otherwise).
    pub max_db_connections: Option<u32>,
    /// The largest object a push may hold, whole or as a delta's result;
    /// checked before anything is allocated for it.
    pub max_object_bytes: u64,
    /// Severity overrides per fsck message id (`badFilemode = "error"`),
    /// like git's `receive.fsck.<id>`.
    pub fsck: Vec<(String, String)>,
    /// The largest Git LFS object an upload may bring.
    pub lfs_max_object_bytes: u64,
    /// Bytes of new objects (rewritten trees, derived commits) a merge
    /// holds in memory before storing them and going on: what bounds a
    /// large merge request's memory.
    pub merge_buffer_bytes: usize,
    /// Blobs larger than this many bytes are b-link files in lite views
    /// (`/-/blink/<path>`); changing it changes every lite commit id.
    pub blink_threshold: u64,
    /// Refuse pushes whose new LFS pointers name objects not uploaded
    /// (where the pusher can see them), as GitLab does.
    pub lfs_verify_pushes: bool,
}

impl Config {
    /// Defaults for a data directory: SQLite inside it, `/import` as the import root.
    pub fn with_data_dir(data_dir: PathBuf) -> Config {
        let database = format!("sqlite://{}", data_dir.join("tessera.db").display());
        Config {
            data_dir,
            listen: "127.0.0.1:8000".into(),
            ssh_listen: None,
            public_url: None,
            database,
            import_roots: vec!["/import".into()],
            require_token_for_reads: false,
            storage: tessera_store::Storage::Files,
            lfs_presigned_downloads: false,
            webhooks_allow_private: false,
            webhook_retry_secs: 10,
            max_push_bytes: 8 << 30,
            max_request_bytes: 64 << 20,
            request_timeout_secs: 30,
            max_clone_objects: None,
            max_db_connections: None,
            max_object_bytes: tessera_pack::index::Limits::default().max_object_size,
            fsck: Vec::new(),
            lfs_max_object_bytes: 50 << 30,
            lfs_verify_pushes: true,
            blink_threshold: 1 << 20,
            merge_buffer_bytes: tessera_repo::monorepo::FLUSH_BYTES,
        }
    }
}

pub(crate) struct State {
    pub config: Config,
    pub store: Store,
    pub snapshots: tessera_repo::Snapshots,
    /// How pushes are checked: limits and fsck severities from `config`.
    pub ingest: tessera_repo::ingest::Options,
    /// The access rules, cached by their version (`auth::policy`).
    pub policy: std::sync::RwLock<Option<Arc<tessera_store::Policy>>>,
    /// Wakes this process's webhook deliverer when an event is queued.
    pub hooks_wake: tokio::sync::Notify,
    /// Lite views are built one at a time (`blink::lite_head`).
    pub blink_builds: tokio::sync::Mutex<()>,
}

impl State {
    /// The monorepo, with this server's settings.
    pub(crate) fn mono(&self) -> tessera_repo::monorepo::Monorepo<'_> {
        let mut mono = tessera_repo::monorepo::Monorepo::new(&self.store, &self.snapshots);
        mono.flush_bytes = self.config.merge_buffer_bytes;
        mono
    }
}

/// A bound, ready server.
pub struct Server {
    listener: tokio::net::TcpListener,
    ssh: Option<(tokio::net::TcpListener, Arc<russh::server::Config>)>,
    state: Arc<State>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] tessera_store::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("cannot set up the monorepo layout: {0}")]
    Layout(#[from] tessera_repo::Error),
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("fsck configuration: {0}")]
    Fsck(#[from] tessera_protocol::fsck::PolicyError),
    #[error(transparent)]
    Ssh(#[from] ssh::SshError),
}

impl Server {
    /// Opens storage, sets up the layout and binds the listening socket.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| StartError::DataDir { path: config.data_dir.clone(), source })?;
        let ingest = ingest_options(&config)?;
        let store = Store::open(
            &config.database,
            &config.data_dir,
            tessera_store::Options { storage: config.storage.clone(), max_connections: config.max_db_connections },
        )
        .await?;
        layout::ensure(&store, &config).await?;
        let freed = store.pack_storage().clean_spool();
        if freed > 0 {
            tracing::info!("removed {freed} bytes of spool files left by interrupted pushes");
        }
        let freed = store.lfs_storage().clean_uploads();
        if freed > 0 {
            tracing::info!("removed {freed} bytes of LFS uploads left by interrupted requests");
        }
        let freed = store.clean_orphan_packs().await?;
        if freed > 0 {
            tracing::info!("removed {freed} bytes of pack files left by interrupted pushes");
        }
        // Import repositories whose last push stopped before the monorepo
        // root took it in are mounted before anything is served: `/` never
        // shows an import behind its own refs.
        let snapshots = tessera_repo::Snapshots::default();
        let synced = tessera_repo::monorepo::Monorepo::new(&store, &snapshots).reconcile_imports().await?;
        if !synced.is_empty() {
            tracing::info!("mounted imports the monorepo root was behind on: {}", synced.join(", "));
        }
        let started = std::time::Instant::now();
        if let Some(n) = tessera_repo::monorepo::Monorepo::new(&store, &snapshots).ensure_dir_heads().await? {
            tracing::info!("indexed the heads of {n} directories in {:.1} s", started.elapsed().as_secs_f64());
        }
        tessera_repo::memory::release_free_memory();
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|source| StartError::Listen { addr: config.listen.clone(), source })?;
        // Links name the address actually bound (port 0 picks one).
        let mut config = config;
        if let Ok(addr) = listener.local_addr() {
            config.listen = addr.to_string();
        }
        let ssh = match &config.ssh_listen {
            Some(addr) => {
                let key = ssh::host_key(&config.data_dir)?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Listen { addr: addr.clone(), source })?;
                Some((listener, Arc::new(ssh::russh_config(key, config.request_timeout_secs))))
            }
            None => None,
        };
        let state = Arc::new(State {
            config,
            store,
            snapshots,
            ingest,
            policy: Default::default(),
            hooks_wake: tokio::sync::Notify::new(),
            blink_builds: tokio::sync::Mutex::new(()),
        });
        Ok(Server { listener, ssh, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where git over SSH is served, if it is.
    pub fn ssh_addr(&self) -> Option<SocketAddr> {
        self.ssh.as_ref().map(|(l, _)| l.local_addr().expect("a bound listener has an address"))
    }

    /// Whether nobody can push yet: the database has no user.
    pub async fn has_no_users(&self) -> Result<bool, tessera_store::Error> {
        Ok(self.state.store.list_users().await?.is_empty())
    }

    /// Serves until the process ends.
    pub async fn run(self) -> std::io::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `shutdown` completes, then finishes open requests and
    /// closes the database pool.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let app = smart::router(self.state.clone())
            .merge(api::router(self.state.clone()))
            .merge(review::router(self.state.clone()))
            .merge(hooks::router(self.state));
        // One shutdown signal for both listeners.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let deliverer = tokio::spawn(hooks::deliver_loop(state.clone(), stopped.clone()));
        let ssh = self
            .ssh
            .map(|(listener, config)| tokio::spawn(ssh::run(listener, config, state.clone(), wait(stopped.clone()))));
        let result = serve::run(self.listener, app, &state.config, wait(stopped)).await;
        if let Some(ssh) = ssh {
            let _ = ssh.await;
        }
        let _ = deliverer.await;
        state.store.pool().close().await;
        result
    }
}

impl Config {
    /// [`Config::public_url`], or `http://<listen>` without it.
    pub fn http_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }
}

/// The push checks `config` asks for.
fn ingest_options(config: &Config) -> Result<tessera_repo::ingest::Options, StartError> {
    let mut options = tessera_repo::ingest::Options::default();
    options.limits.max_object_size = config.max_object_bytes;
    for (id, severity) in &config.fsck {
        options.fsck.set(id, severity)?;
    }
    Ok(options)
}

/// Opens the store as the server would, for CLI commands (tokens, schema).
pub async fn open_store(config: &Config) -> Result<Store, StartError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StartError::DataDir { path: config.data_dir.clone(), source })?;
    Ok(Store::open(
        &config.database,
        &config.data_dir,
        tessera_store::Options { storage: config.storage.clone(), max_connections: Some(2) },
    )
    .await?)
}
