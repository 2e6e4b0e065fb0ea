//! Writing and reading the target repository through git itself:
//! `git fast-import` writes blobs, tree and commit straight into the object
//! database (no work tree); plumbing commands read them back.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::Error;

fn git(repo: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C").arg(repo);
    c
}

fn run(mut cmd: Command, what: &str) -> Result<Vec<u8>, Error> {
    let out = cmd.output().map_err(|e| Error::Git(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Git(format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(out.stdout)
}

/// Creates the repository if `path` does not exist yet.
pub fn ensure_repo(path: &Path) -> Result<(), Error> {
    if path.join(".git").exists() || path.join("HEAD").exists() {
        return Ok(());
    }
    let mut cmd = Command::new("git");
    cmd.args(["init", "-q"]).arg(path);
    run(cmd, "git init").map(|_| ())
}

/// The branch HEAD names (the repository's default branch).
pub fn default_branch(repo: &Path) -> Result<String, Error> {
    let mut cmd = git(repo);
    cmd.args(["symbolic-ref", "--short", "HEAD"]);
    Ok(String::from_utf8_lossy(&run(cmd, "reading HEAD")?).trim().to_string())
}

/// The file's content at `rev`, or `None` if it is not there.
pub fn read_file(repo: &Path, rev: &str, file: &str) -> Result<Option<Vec<u8>>, Error> {
    let out = git(repo)
        .args(["cat-file", "blob", &format!("{rev}:{file}")])
        .output()
        .map_err(|e| Error::Git(e.to_string()))?;
    Ok(out.status.success().then_some(out.stdout))
}

/// The blob id of a file at `rev`.
pub fn blob_id(repo: &Path, rev: &str, file: &str) -> Result<Option<String>, Error> {
    let out = git(repo)
        .args(["rev-parse", "-q", "--verify", &format!("{rev}:{file}")])
        .output()
        .map_err(|e| Error::Git(e.to_string()))?;
    Ok(out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()))
}

pub fn rev_exists(repo: &Path, rev: &str) -> bool {
    git(repo)
        .args(["rev-parse", "-q", "--verify", &format!("{rev}^{{commit}}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The id git gives a blob with this content.
pub fn blob_id_of(data: &[u8]) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", data.len()).as_bytes());
    h.update(data);
    hex::encode(h.finalize())
}

/// One commit being streamed into `git fast-import`.
pub struct CommitWriter {
    child: Child,
    stdin: ChildStdin,
}

impl CommitWriter {
    /// Starts a commit on `branch` that replaces the whole tree.
    pub fn start(repo: &Path, branch: &str, message: &str) -> Result<CommitWriter, Error> {
        let ident = run(
            {
                let mut c = git(repo);
                c.args(["var", "GIT_COMMITTER_IDENT"]);
                c
            },
            "reading the committer identity",
        )
        .map(|o| String::from_utf8_lossy(&o).trim().to_string())
        .unwrap_or_else(|_| {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            format!("tessera <tessera@localhost> {now} +0000")
        });
        // Chunks are zlib-compressed once into the pack; level 1 costs a
        // fraction of the default level's time for a few percent of size,
        // and `git gc` recompresses later if the user wants.
        let mut child = git(repo)
            .args(["-c", "core.compression=1", "-c", "pack.compression=1", "fast-import", "--quiet", "--depth=0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Git(format!("git fast-import: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped");
        let refname = format!("refs/heads/{branch}");
        let mut head = format!("commit {refname}\ncommitter {ident}\ndata {}\n{message}\n", message.len());
        if rev_exists(repo, &refname) {
            head.push_str(&format!("from {refname}^0\n"));
        }
        head.push_str("deleteall\n");
        stdin.write_all(head.as_bytes()).map_err(|e| Error::Git(e.to_string()))?;
        Ok(CommitWriter { child, stdin })
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> Result<(), Error> {
        let head = format!("M 100644 inline {path}\ndata {}\n", data.len());
        self.stdin
            .write_all(head.as_bytes())
            .and_then(|_| self.stdin.write_all(data))
            .and_then(|_| self.stdin.write_all(b"\n"))
            .map_err(|e| Error::Git(e.to_string()))
    }

    /// Puts an existing blob at `path` without sending its content again.
    pub fn file_ref(&mut self, path: &str, blob: &str) -> Result<(), Error> {
        self.stdin.write_all(format!("M 100644 {blob} {path}\n").as_bytes()).map_err(|e| Error::Git(e.to_string()))
    }

    pub fn finish(mut self) -> Result<(), Error> {
        self.stdin.write_all(b"\ndone\n").map_err(|e| Error::Git(e.to_string()))?;
        drop(self.stdin);
        let out = self.child.wait_with_output().map_err(|e| Error::Git(e.to_string()))?;
        if !out.status.success() {
            return Err(Error::Git(format!("git fast-import: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(())
    }
}

/// Where a `<REPO>` argument lives: a local repository, or a local cache
/// of a remote one that `push` sends back.
pub struct Target {
    pub path: std::path::PathBuf,
    pub remote: Option<String>,
}

fn is_remote(repo: &str) -> bool {
    repo.contains("://") || repo.starts_with("git@") || repo.starts_with("github.com/")
}

/// The URL without credentials, for messages.
pub fn redact_url(url: &str) -> String {
    crate::ops::redact(url)
}

fn cache_root() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("TESSERA_CACHE_DIR") {
        return dir.into();
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return std::path::PathBuf::from(dir).join("tessera");
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("tessera")
}

/// Resolves `<REPO>`: local paths as they are; remote URLs (`https://`,
/// `ssh://`, `file://`, `git@host:path`, `github.com/user/repo`) are cloned
/// or fetched into a bare cache with the user's own git credentials.
///
/// With `may_create`, a remote that cannot be cloned (it does not exist
/// yet: tessera creates import repositories on the first push) starts as an
/// empty cache, and the push later says whether the remote accepts it.
pub fn open_target(repo: &str, may_create: bool) -> Result<Target, Error> {
    if !is_remote(repo) {
        return Ok(Target { path: repo.into(), remote: None });
    }
    let url = match repo.strip_prefix("github.com/") {
        Some(rest) => format!("https://github.com/{rest}"),
        None => repo.to_string(),
    };
    use sha2::Digest;
    let key = hex::encode(&sha2::Sha256::digest(url.as_bytes())[..12]);
    let path = cache_root().join("repos").join(format!("{key}.git"));
    let shown = redact_url(&url);
    if path.join("HEAD").exists() {
        let mut cmd = git(&path);
        cmd.args(["fetch", "--quiet", "--prune", &url, "+refs/heads/*:refs/heads/*"]);
        run(cmd, &format!("fetching {shown}"))?;
    } else {
        std::fs::create_dir_all(path.parent().expect("cache path has a parent"))
            .map_err(|e| Error::Git(format!("creating the cache: {e}")))?;
        let mut cmd = Command::new("git");
        cmd.args(["clone", "--bare", "--quiet", &url]).arg(&path);
        if let Err(e) = run(cmd, &format!("cloning {shown}")) {
            if !may_create {
                return Err(e);
            }
            let _ = std::fs::remove_dir_all(&path);
            let mut init = Command::new("git");
            init.args(["init", "--bare", "--quiet", "-b", "main"]).arg(&path);
            run(init, "creating the cache")?;
        }
    }
    Ok(Target { path, remote: Some(url) })
}

/// Sends `branch` back to the remote the target was fetched from.
pub fn push(target: &Target, branch: &str) -> Result<(), Error> {
    let Some(url) = &target.remote else { return Ok(()) };
    let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
    let mut cmd = git(&target.path);
    cmd.args(["push", "--quiet", url, &spec]);
    run(cmd, &format!("pushing to {}", redact_url(url))).map(|_| ())
}
