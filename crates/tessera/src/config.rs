//! Configuration: flags, then `TESSERA_*` environment variables, then
//! `tessera.toml`, then defaults. Every key of the file can be set in the
//! environment as `TESSERA_<KEY>` (upper case); lists are comma-separated,
//! and `fsck` takes `id=severity` pairs.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Deserialize;
use tessera_server::Config;
use tessera_store::Dialect;

use crate::ServerArgs;

/// `tessera.toml`; every key is optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    /// Serve git over SSH here too (`127.0.0.1:2222`); default: no SSH.
    ssh_listen: Option<String>,
    /// The HTTP URL users reach the server at, for links made outside a
    /// request (SSH pushes, git-lfs-authenticate); default http://<listen>.
    public_url: Option<String>,
    database: Option<String>,
    import_roots: Option<Vec<String>>,
    require_token_for_reads: Option<bool>,
    /// The same as `storage = "database"` (older configurations).
    packs_in_database: Option<bool>,
    /// Where pack files and LFS objects are kept: `files` (default),
    /// `database`, or `s3://bucket/prefix` (credentials from the AWS
    /// variables).
    storage: Option<String>,
    /// An S3-compatible service's URL (MinIO, Ceph); AWS when unset.
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    /// Allow an `http://` S3 endpoint.
    s3_allow_http: Option<bool>,
    /// LFS downloads get presigned URLs of the bucket (S3 storage only).
    lfs_presigned_downloads: Option<bool>,
    /// Deliver webhooks to loopback and private addresses too.
    webhooks_allow_private: Option<bool>,
    /// Seconds before a failed webhook delivery's first retry (doubling).
    webhook_retry_secs: Option<u64>,
    max_push_bytes: Option<u64>,
    max_clone_objects: Option<u64>,
    max_object_bytes: Option<u64>,
    max_db_connections: Option<u32>,
    /// Bytes of new objects a merge holds before storing them: what bounds
    /// a large merge request's memory (about five times this at most).
    merge_buffer_bytes: Option<u64>,
    request_timeout_secs: Option<u64>,
    /// The largest Git LFS object an upload may bring.
    lfs_max_object_bytes: Option<u64>,
    /// Refuse pushes whose LFS pointers name objects never uploaded.
    lfs_verify_pushes: Option<bool>,
    /// Blobs larger than this many bytes become b-link files in lite
    /// views (`/-/blink/<path>`); default 1 MiB. Changing it changes every
    /// lite commit id (full views never change).
    blink_threshold: Option<u64>,
    /// fsck severities per C git message id, as `receive.fsck.<id>`.
    fsck: Option<std::collections::BTreeMap<String, String>>,
}

/// Bounds of `merge_buffer_bytes`: below 64 KiB a merge stores a pack per
/// few commits; above 1 GiB it is no bound.
const MIN_MERGE_BUFFER: u64 = 64 << 10;
const MAX_MERGE_BUFFER: u64 = 1 << 30;

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &["import_roots"];
/// Keys whose environment value is comma-separated `key=value` pairs.
const MAP_KEYS: &[&str] = &["fsck"];

/// The keys of `tessera.toml`, read off [`FileConfig`] itself so that a
/// new key cannot miss its environment variable.
pub fn keys() -> &'static [&'static str] {
    struct Fields(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields = Fields(None);
    let _ = FileConfig::deserialize(&mut fields);
    fields.0.unwrap_or(&[])
}

/// The environment variable of `key`.
pub fn env_name(key: &str) -> String {
    format!("TESSERA_{}", key.to_uppercase())
}

/// A value from the environment, as TOML: lists and maps by their key,
/// booleans and integers as such, anything else a string.
fn env_value(key: &str, raw: &str) -> anyhow::Result<toml::Value> {
    let items = || raw.split(',').map(str::trim).filter(|s| !s.is_empty());
    if LIST_KEYS.contains(&key) {
        return Ok(toml::Value::Array(items().map(|s| toml::Value::String(s.to_string())).collect()));
    }
    if MAP_KEYS.contains(&key) {
        let mut table = toml::Table::new();
        for item in items() {
            let (k, v) =
                item.split_once('=').with_context(|| format!("{}: {item:?} is not id=value", env_name(key)))?;
            table.insert(k.trim().to_string(), toml::Value::String(v.trim().to_string()));
        }
        return Ok(toml::Value::Table(table));
    }
    Ok(match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => match raw.parse::<i64>() {
            Ok(n) => toml::Value::Integer(n),
            Err(_) => toml::Value::String(raw.to_string()),
        },
    })
}

pub fn load(args: &ServerArgs) -> anyhow::Result<Config> {
    let (path, required) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("tessera.toml"), false),
    };
    let mut table: toml::Table = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    for key in keys() {
        if let Ok(raw) = std::env::var(env_name(key)) {
            table.insert(key.to_string(), env_value(key, &raw)?);
        }
    }
    let file: FileConfig = toml::Table::try_into(table)
        .with_context(|| format!("configuration from {} and TESSERA_* variables", path.display()))?;
    let data_dir = args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("tessera-data"));
    let mut config = Config::with_data_dir(data_dir);
    if let Some(listen) = args.listen.clone().or(file.listen) {
        config.listen = listen;
    }
    config.ssh_listen = args.ssh_listen.clone().or(file.ssh_listen).filter(|s| !s.is_empty());
    if let Some(url) = file.public_url.filter(|u| !u.is_empty()) {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("public_url must start with http:// or https://");
        }
        config.public_url = Some(url);
    }
    if let Some(db) = args.database.clone().or(file.database) {
        Dialect::from_url(&db)
            .with_context(|| format!("database URL {db:?} must start with sqlite://, postgres:// or mysql://"))?;
        config.database = db;
    }
    if let Some(roots) = file.import_roots {
        if roots.iter().any(|r| !r.starts_with('/') || r == "/") {
            bail!("import_roots must be paths below / such as /import");
        }
        config.import_roots = roots;
    }
    config.require_token_for_reads = file.require_token_for_reads.unwrap_or(false);
    let s3 = tessera_store::S3Options {
        endpoint: file.s3_endpoint.filter(|e| !e.is_empty()),
        region: file.s3_region.filter(|r| !r.is_empty()),
        allow_http: file.s3_allow_http.unwrap_or(false),
    };
    config.storage = match (file.storage.as_deref(), file.packs_in_database) {
        (Some(spec), Some(true)) if spec != "database" => {
            bail!("packs_in_database = true and storage = {spec:?} disagree; keep storage only")
        }
        (Some(spec), _) => tessera_store::Storage::parse(spec, s3)?,
        (None, Some(true)) => tessera_store::Storage::Database,
        (None, _) => tessera_store::Storage::Files,
    };
    config.lfs_presigned_downloads = file.lfs_presigned_downloads.unwrap_or(false);
    config.webhooks_allow_private = file.webhooks_allow_private.unwrap_or(false);
    if let Some(secs) = file.webhook_retry_secs {
        if !(1..=3600).contains(&secs) {
            bail!("webhook_retry_secs must be 1 to 3600");
        }
        config.webhook_retry_secs = secs;
    }
    if config.lfs_presigned_downloads && !matches!(config.storage, tessera_store::Storage::S3(_)) {
        bail!("lfs_presigned_downloads needs storage = \"s3://...\"");
    }
    if let Some(max) = file.max_push_bytes {
        config.max_push_bytes = max;
    }
    config.max_clone_objects = file.max_clone_objects;
    if let Some(max) = file.max_object_bytes {
        config.max_object_bytes = max;
    }
    config.max_db_connections = file.max_db_connections;
    if let Some(bytes) = file.merge_buffer_bytes {
        if !(MIN_MERGE_BUFFER..=MAX_MERGE_BUFFER).contains(&bytes) {
            bail!("merge_buffer_bytes must be {MIN_MERGE_BUFFER} to {MAX_MERGE_BUFFER}");
        }
        config.merge_buffer_bytes = bytes as usize;
    }
    if let Some(secs) = file.request_timeout_secs {
        if secs == 0 {
            bail!("request_timeout_secs must be at least 1");
        }
        config.request_timeout_secs = secs;
    }
    config.fsck = file.fsck.unwrap_or_default().into_iter().collect();
    if let Some(max) = file.lfs_max_object_bytes {
        config.lfs_max_object_bytes = max;
    }
    config.lfs_verify_pushes = file.lfs_verify_pushes.unwrap_or(true);
    if let Some(threshold) = file.blink_threshold {
        if threshold < tessera_repo::blink::MIN_THRESHOLD {
            bail!("blink_threshold must be at least {} bytes", tessera_repo::blink::MIN_THRESHOLD);
        }
        config.blink_threshold = threshold;
    }
    Ok(config)
}

/// The effective configuration, one `key = value` per line (what
/// `tessera config show` prints).
pub fn show(config: &Config) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k} = {v}\n"));
    line("data_dir", format!("{:?}", config.data_dir.display().to_string()));
    line("listen", format!("{:?}", config.listen));
    line("ssh_listen", config.ssh_listen.as_ref().map_or("none".into(), |s| format!("{s:?}")));
    line("public_url", config.public_url.as_ref().map_or("none".into(), |s| format!("{s:?}")));
    line("database", format!("{:?}", config.database));
    line("import_roots", format!("{:?}", config.import_roots));
    line("require_token_for_reads", config.require_token_for_reads.to_string());
    match &config.storage {
        tessera_store::Storage::S3(s3) => {
            line("storage", format!("{:?}", s3.url()));
            line("s3_endpoint", s3.options.endpoint.as_ref().map_or("none".into(), |e| format!("{e:?}")));
            line("s3_region", s3.options.region.as_ref().map_or("none".into(), |r| format!("{r:?}")));
            line("s3_allow_http", s3.options.allow_http.to_string());
        }
        other => line("storage", format!("{:?}", other.kind())),
    }
    line("lfs_presigned_downloads", config.lfs_presigned_downloads.to_string());
    line("webhooks_allow_private", config.webhooks_allow_private.to_string());
    line("webhook_retry_secs", config.webhook_retry_secs.to_string());
    line("max_push_bytes", config.max_push_bytes.to_string());
    line("max_clone_objects", config.max_clone_objects.map_or("none".into(), |n| n.to_string()));
    line("max_object_bytes", config.max_object_bytes.to_string());
    line("max_db_connections", config.max_db_connections.map_or("none".into(), |n| n.to_string()));
    line("merge_buffer_bytes", config.merge_buffer_bytes.to_string());
    line("request_timeout_secs", config.request_timeout_secs.to_string());
    line("lfs_max_object_bytes", config.lfs_max_object_bytes.to_string());
    line("lfs_verify_pushes", config.lfs_verify_pushes.to_string());
    line("blink_threshold", config.blink_threshold.to_string());
    let fsck: Vec<String> = config.fsck.iter().map(|(k, v)| format!("{k}={v}")).collect();
    line("fsck", format!("{:?}", fsck.join(",")));
    out
}
