//! Where pack files and LFS objects are kept: one choice for both, made by
//! configuration ([`Storage`]).
//!
//! - **files** under the data directory (the default);
//! - **the database**: 8 MiB chunks in `pack_chunks` and `lfs_chunks`;
//! - **an S3-compatible bucket** ([`Bucket`], through `object_store`), for
//!   several server processes sharing one database: each keeps a local
//!   cache of the packs it reads, and LFS downloads may go to the bucket
//!   itself through presigned URLs.
//!
//! Either way the metadata (which packs and objects exist, who may see
//! them) stays in SQL; storage holds bytes only, under names derived from
//! ids (`packs/pack-0000000042.pack`, `lfs/ab/cd/<oid>`), never from input.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Error;

/// Which backend holds pack and LFS bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Storage {
    #[default]
    Files,
    Database,
    S3(S3Config),
}

impl Storage {
    /// `files`, `database`, or `s3://bucket[/prefix]` with the options of
    /// `s3` (endpoint, region, plain HTTP).
    pub fn parse(spec: &str, s3: S3Options) -> Result<Storage, Error> {
        match spec {
            "" | "files" | "file" => Ok(Storage::Files),
            "database" | "db" => Ok(Storage::Database),
            url if url.starts_with("s3://") => Ok(Storage::S3(S3Config::parse(url, s3)?)),
            other => Err(Error::Invalid(format!("storage {other:?}: files, database or s3://bucket/prefix"))),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Storage::Files => "files",
            Storage::Database => "database",
            Storage::S3(_) => "s3",
        }
    }
}

/// Options of an S3 backend beyond its URL. Credentials come from the
/// usual AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`), or the instance's role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// An S3-compatible service's URL (MinIO, Ceph, moto); AWS when unset.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Allows `http://` endpoints (a service on the same host).
    pub allow_http: bool,
}

/// A bucket and the prefix tessera's objects go under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    pub prefix: String,
    pub options: S3Options,
}

impl S3Config {
    pub fn parse(url: &str, options: S3Options) -> Result<S3Config, Error> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| Error::Invalid(format!("{url:?} is not s3://...")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(Error::Invalid(format!("{url:?}: {bucket:?} is not an S3 bucket name")));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(Error::Invalid(format!("{url:?}: the prefix must be plain path segments")));
        }
        Ok(S3Config { bucket: bucket.to_string(), prefix: prefix.to_string(), options })
    }

    /// `s3://bucket/prefix`, for messages.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Makes rustls's ring provider the process's TLS provider, for the HTTP
/// clients of buckets and webhooks; one installed before stays.
pub fn install_tls() {
    // ring's provider lacks post-quantum key exchange (hence rustls's
    // deprecation); aws-lc-rs has it but is a second C crypto build next
    // to the ring that SSH uses. See ARCHITECTURE.md.
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Fills `buf` from `file` as far as the file goes; returns how much it
/// filled (less than `buf.len()` only at the end, 0 at the end). The
/// database backends store files as rows of one such buffer each.
pub(crate) async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Parts of a multipart upload, and the size of one read of a download.
const PART: usize = 8 << 20;

/// An S3-compatible bucket holding pack files and LFS objects.
#[derive(Debug, Clone)]
pub struct Bucket {
    s3: Arc<AmazonS3>,
    prefix: String,
    label: String,
}

fn s3_error(what: String) -> impl FnOnce(object_store::Error) -> Error {
    move |e| Error::Io(std::io::Error::other(format!("{what}: {e}")))
}

impl Bucket {
    pub fn open(config: &S3Config) -> Result<Bucket, Error> {
        install_tls();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&config.bucket);
        if let Some(endpoint) = &config.options.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.options.region {
            builder = builder.with_region(region);
        }
        builder = builder.with_allow_http(config.options.allow_http);
        let s3 = builder.build().map_err(s3_error(format!("configuring {}", config.url())))?;
        Ok(Bucket { s3: Arc::new(s3), prefix: config.prefix.clone(), label: config.url() })
    }

    fn key(&self, name: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(name)
        } else {
            Key::from(format!("{}/{name}", self.prefix))
        }
    }

    /// The object's size, or `None` when the bucket does not have it.
    pub async fn size(&self, name: &str) -> Result<Option<u64>, Error> {
        match self.s3.head(&self.key(name)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error(format!("looking up {name} in {}", self.label))(e)),
        }
    }

    /// Uploads a local file as `name`, in parts of 8 MiB, two in flight:
    /// memory stays bounded whatever the file's size. The object appears
    /// only once complete.
    pub async fn upload_file(&self, name: &str, local: &Path) -> Result<u64, Error> {
        let what = || format!("uploading {name} to {}", self.label);
        let upload = self.s3.put_multipart(&self.key(name)).await.map_err(s3_error(what()))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut file = tokio::fs::File::open(local).await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e.into());
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(2).await {
                let _ = writer.abort().await;
                return Err(s3_error(what())(e));
            }
            writer.write(&buf[..n]);
            total += n as u64;
        }
        writer.finish().await.map_err(s3_error(what()))?;
        Ok(total)
    }

    /// Bytes `range` of `name` (all of it for `None`), as a stream.
    pub async fn read(
        &self,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, Error> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let got = self
            .s3
            .get_opts(&self.key(name), options)
            .await
            .map_err(s3_error(format!("reading {name} from {}", self.label)))?;
        Ok(got.into_stream().map_err(std::io::Error::other).boxed())
    }

    /// Downloads `name` into the local file `to` (written aside, then
    /// renamed in, so a reader never sees half a file).
    pub async fn download(&self, name: &str, to: &Path) -> Result<(), Error> {
        let dir = to.parent().ok_or_else(|| Error::Invalid(format!("{} has no directory", to.display())))?;
        tokio::fs::create_dir_all(dir).await?;
        let tmp = dir.join(format!(".download-{}", rand::random::<u64>()));
        let copied = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut stream = self.read(name, None).await?;
            while let Some(chunk) = stream.next().await {
                file.write_all(&chunk?).await?;
            }
            file.flush().await?;
            file.sync_all().await?;
            tokio::fs::rename(&tmp, to).await?;
            Ok::<_, Error>(())
        }
        .await;
        if copied.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        copied
    }

    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        match self.s3.delete(&self.key(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error(format!("deleting {name} from {}", self.label))(e)),
        }
    }

    /// A URL that lets its holder `GET` `name` for `expires`, without other
    /// credentials.
    pub async fn presigned_get(&self, name: &str, expires: Duration) -> Result<String, Error> {
        let url = self
            .s3
            .signed_url(object_store::signer::Method::GET, &self.key(name), expires)
            .await
            .map_err(s3_error(format!("signing a URL for {name}")))?;
        Ok(url.to_string())
    }

    /// `s3://bucket/prefix`.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// What [`Store::copy_to_bucket`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub packs_copied: u64,
    pub lfs_copied: u64,
    /// Already in the bucket with the right size (an earlier run's).
    pub already_there: u64,
    pub bytes: u64,
    /// Stopped at the run's limit: run again to go on.
    pub stopped_early: bool,
}

impl crate::Store {
    /// Copies every stored pack and LFS object into `bucket`, from this
    /// store's own backend, which nothing here changes: readers go on
    /// reading from it meanwhile. An object the bucket already has with
    /// the same size is skipped, and an upload appears only once complete,
    /// so an interrupted run is resumed by running it again. At most
    /// `limit` objects are copied per run; `each` hears of every copy.
    pub async fn copy_to_bucket(
        &self,
        bucket: &Bucket,
        limit: Option<u64>,
        each: &mut (dyn FnMut(&str, u64) + Send),
    ) -> Result<CopyReport, Error> {
        use sqlx::Row;
        let mut report = CopyReport::default();
        let mut packs: Vec<(i64, i64)> = Vec::new();
        for row in sqlx::query("SELECT id, size FROM packs ORDER BY id").fetch_all(&self.pool).await? {
            packs.push((row.try_get(0)?, row.try_get(1)?));
        }
        let mut objects: Vec<(String, i64)> = Vec::new();
        for row in sqlx::query("SELECT oid, size FROM lfs_objects ORDER BY oid").fetch_all(&self.pool).await? {
            objects.push((crate::text(&row, 0)?, row.try_get(1)?));
        }
        let full = |report: &CopyReport| limit.is_some_and(|n| report.packs_copied + report.lfs_copied >= n);
        for (id, size) in packs {
            let name = crate::packs::PackStorage::object_name(id);
            if bucket.size(&name).await? == Some(size as u64) {
                report.already_there += 1;
                continue;
            }
            if full(&report) {
                report.stopped_early = true;
                return Ok(report);
            }
            let local = self.pack_path(id).await?;
            report.bytes += bucket.upload_file(&name, &local).await?;
            report.packs_copied += 1;
            each(&name, size as u64);
        }
        for (oid, size) in objects {
            if !tessera_oid(&oid) {
                return Err(Error::Corrupt(format!("lfs_objects holds {oid:?}, not a sha256")));
            }
            let name = crate::lfs::LfsStorage::object_name(&oid);
            if bucket.size(&name).await? == Some(size as u64) {
                report.already_there += 1;
                continue;
            }
            if full(&report) {
                report.stopped_early = true;
                return Ok(report);
            }
            // Through a local file, whatever the backend: memory stays bounded.
            let temp = self.lfs_storage().upload_file()?;
            let mut file = tokio::fs::File::create(temp.path()).await?;
            let mut stream = self.read_lfs_object(&oid, 0..size as u64).await?;
            while let Some(chunk) = stream.next().await {
                file.write_all(&chunk?).await?;
            }
            file.flush().await?;
            drop(file);
            report.bytes += bucket.upload_file(&name, temp.path()).await?;
            report.lfs_copied += 1;
            each(&name, size as u64);
        }
        Ok(report)
    }
}

impl crate::Store {
    /// How many packs and LFS objects are stored, and their bytes.
    pub async fn storage_totals(&self) -> Result<(i64, i64, i64, i64), Error> {
        use sqlx::Row;
        // SUM of BIGINT is NUMERIC on PostgreSQL and DECIMAL on MySQL.
        let int = if self.dialect == crate::Dialect::Mysql { "SIGNED" } else { "BIGINT" };
        let totals = |table: &str| format!("SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS {int}) FROM {table}");
        let packs = sqlx::query(&totals("packs")).fetch_one(&self.pool).await?;
        let lfs = sqlx::query(&totals("lfs_objects")).fetch_one(&self.pool).await?;
        Ok((packs.try_get(0)?, packs.try_get(1)?, lfs.try_get(0)?, lfs.try_get(1)?))
    }
}

/// 64 lowercase hex digits.
fn tessera_oid(oid: &str) -> bool {
    oid.len() == 64 && oid.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_are_checked() {
        let s3 = |url: &str| Storage::parse(url, S3Options::default());
        assert_eq!(s3("files").unwrap(), Storage::Files);
        assert_eq!(s3("database").unwrap(), Storage::Database);
        let Storage::S3(c) = s3("s3://tessera-data/prod/objects/").unwrap() else { panic!() };
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("tessera-data", "prod/objects"));
        assert_eq!(c.url(), "s3://tessera-data/prod/objects");
        for bad in ["s3://", "s3://A_B", "s3://ok-bucket/../x", "s3://ok-bucket/a//b", "ftp://x", "memory"] {
            assert!(s3(bad).is_err(), "{bad}");
        }
    }
}
