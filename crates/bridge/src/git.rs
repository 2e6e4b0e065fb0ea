//! The target repository: new objects go straight into its object store as
//! one pack per export ([`CommitWriter`], no work tree, no `git
//! fast-import`); git's plumbing reads them back, moves refs and talks to
//! remotes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use tessera_pack::ObjectId;

/// What git's plumbing, a remote or the pack an export writes failed with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// git could not be started, or a file of the repository not read or written.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A git command failed; `stderr` is what it said.
    #[error("{what}: {stderr}")]
    Command { what: String, stderr: String },
    /// A remote refused the credential tried.
    #[error("{what}: authentication failed using {tried}: {stderr}")]
    Auth { what: String, tried: String, stderr: String },
    /// A remote kept failing in ways that usually pass.
    #[error("{what}: gave up after {attempts} attempts: {stderr}")]
    GaveUp { what: String, attempts: u32, stderr: String },
    /// A repository refused as a target (a work tree with changes, a
    /// work tree where a bare repository was asked for).
    #[error("{0}")]
    Refused(String),
    #[error("no branch {0} to push")]
    NoBranch(String),
    #[error("a file of {bytes} bytes is over the push limit of {limit} bytes")]
    OverPushLimit { bytes: u64, limit: u64 },
    #[error("{0:?} is not an object id")]
    BadId(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn git(repo: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C").arg(repo);
    c
}

fn run(mut cmd: Command, what: &str) -> Result<Vec<u8>, Error> {
    let out = cmd.output().map_err(io(what))?;
    if !out.status.success() {
        return Err(Error::Command { what: what.into(), stderr: String::from_utf8_lossy(&out.stderr).trim().into() });
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

/// Creates a bare repository at `path` if nothing is there yet; refuses a
/// repository with a work tree (`--bare`).
pub fn ensure_bare_repo(path: &Path) -> Result<(), Error> {
    if path.join(".git").exists() {
        return Err(Error::Refused(format!(
            "--bare: {} is a repository with a work tree; export to it without --bare, or to a new path",
            path.display()
        )));
    }
    if path.join("HEAD").exists() {
        return Ok(());
    }
    let mut cmd = Command::new("git");
    cmd.args(["init", "-q", "--bare"]).arg(path);
    run(cmd, "git init --bare").map(|_| ())
}

/// The branch `repo`'s work tree has checked out, if it has a work tree
/// (`None` for a bare repository or a detached HEAD).
fn checked_out(repo: &Path) -> Option<String> {
    let bare = git(repo).args(["rev-parse", "--is-bare-repository"]).output().ok()?;
    if String::from_utf8_lossy(&bare.stdout).trim() != "false" {
        return None;
    }
    let head = git(repo).args(["symbolic-ref", "-q", "HEAD"]).output().ok()?;
    head.status.success().then(|| String::from_utf8_lossy(&head.stdout).trim().to_string())
}

/// Refuses to write to `branch` when it is checked out in `repo`'s work
/// tree and that work tree or its index holds changes (or files git does
/// not track): the export moves the branch and then brings the work tree
/// to it, which must not lose anyone's work.
pub fn require_clean(repo: &Path, branch: &str) -> Result<(), Error> {
    if checked_out(repo).as_deref() != Some(format!("refs/heads/{branch}").as_str()) {
        return Ok(());
    }
    let mut c = git(repo);
    c.args(["status", "--porcelain=v1", "-z", "--untracked-files=all"]);
    let out = run(c, "checking the work tree")?;
    let entries: Vec<&[u8]> = out.split(|b| *b == 0).filter(|e| e.len() > 3).collect();
    // Exports before this version never checked files out: an empty index
    // and no files, every tracked file "deleted". Nothing of anyone's is
    // there, and the update after the export fills it in.
    if entries.is_empty() || (index_is_empty(repo)? && entries.iter().all(|e| e.starts_with(b"D  "))) {
        return Ok(());
    }
    let changed: Vec<String> = entries.iter().map(|e| String::from_utf8_lossy(&e[3..]).into_owned()).collect();
    let shown: Vec<&str> = changed.iter().take(5).map(String::as_str).collect();
    let more = if changed.len() > 5 { format!(" and {} more", changed.len() - 5) } else { String::new() };
    Err(Error::Refused(format!(
        "{} has changes in its work tree ({}{more}); commit, stash or remove them first \
         (tessera updates the work tree to the commit it writes; a work tree an older tessera \
         left behind comes back to the branch with `git reset --hard`)",
        repo.display(),
        shown.join(", ")
    )))
}

/// Whether `repo`'s index has no entries.
fn index_is_empty(repo: &Path) -> Result<bool, Error> {
    let mut c = git(repo);
    c.args(["ls-files", "--cached", "-z"]);
    Ok(run(c, "reading the index")?.is_empty())
}

/// Brings `repo`'s index and work tree from `old` to `new` when the branch
/// that moved (`refname`) is the one checked out there, so `git status`
/// stays clean after an export or a sync. A bare repository has nothing to
/// update.
fn update_work_tree(repo: &Path, refname: &str, old: Option<ObjectId>, new: ObjectId) -> Result<(), Error> {
    let (old, new) = (old.map(|o| o.to_string()), new.to_string());
    if checked_out(repo).as_deref() != Some(refname) {
        return Ok(());
    }
    let mut c = git(repo);
    if index_is_empty(repo)? {
        // Nothing checked out yet (a new repository, or one an older
        // tessera wrote without a work tree; require_clean saw no files).
        c.args(["read-tree", "--reset", "-u", &new]);
    } else {
        c.args(["read-tree", "-m", "-u"]);
        c.args(old);
        c.arg(&new);
    }
    run(c, &format!("updating the work tree of {} to {new}", repo.display())).map(|_| ())
}

/// Points HEAD of a repository without commits at `branch`, so that the
/// first export to another branch than git's default (`--branch main`
/// where `init.defaultBranch` is master) is the one checked out, and the
/// work tree shows it. A repository with commits is left as it is.
pub fn adopt_branch(repo: &Path, branch: &str) -> Result<(), Error> {
    let born = git(repo).args(["rev-parse", "--verify", "-q", "HEAD"]).output().map(|o| o.status.success());
    if born.unwrap_or(true) {
        return Ok(());
    }
    let mut cmd = git(repo);
    cmd.args(["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")]);
    run(cmd, "pointing HEAD at the exported branch").map(|_| ())
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
        .map_err(io(format!("reading {rev}:{file}")))?;
    Ok(out.status.success().then_some(out.stdout))
}

/// [`read_file`] of at most `limit` bytes: a larger file is not read
/// further (`Ok(Some(Err(bytes read)))`, more than `limit`). One `git
/// cat-file` whose output is read as a stream, so the bytes checked are the
/// bytes read even if the branch moves meanwhile.
pub fn read_file_limited(
    repo: &Path,
    rev: &str,
    file: &str,
    limit: u64,
) -> Result<Option<Result<Vec<u8>, u64>>, Error> {
    use std::io::Read;
    let mut child = git(repo)
        .args(["cat-file", "blob", &format!("{rev}:{file}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(io(format!("reading {rev}:{file}")))?;
    let mut out = Vec::new();
    let read = match child.stdout.take() {
        Some(stdout) => stdout.take(limit.saturating_add(1)).read_to_end(&mut out),
        None => Ok(0),
    };
    if out.len() as u64 > limit {
        // Stop git rather than drain the rest.
        let _ = child.kill();
        let _ = child.wait();
        return Ok(Some(Err(out.len() as u64)));
    }
    let status = child.wait().map_err(io(format!("reading {rev}:{file}")))?;
    read.map_err(io(format!("reading {rev}:{file}")))?;
    Ok(status.success().then_some(Ok(out)))
}

/// The object id `spec` names (`rev-parse --verify`), if it exists.
fn verify(repo: &Path, spec: &str) -> Option<String> {
    let out =
        git(repo).args(["rev-parse", "-q", "--verify", spec]).stderr(std::process::Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The blob id of a file at `rev`.
pub fn blob_id(repo: &Path, rev: &str, file: &str) -> Result<Option<String>, Error> {
    Ok(verify(repo, &format!("{rev}:{file}")))
}

/// Who made a commit: `Name <email> <unix seconds> <+hhmm>`, as git writes it.
pub fn identity(repo: &Path, which: &str) -> String {
    let mut c = git(repo);
    c.args(["var", which]);
    run(c, "reading the git identity").map(|o| String::from_utf8_lossy(&o).trim().to_string()).unwrap_or_else(|_| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        format!("tessera <tessera@localhost> {now} +0000")
    })
}

/// The commit a ref points at, if it exists.
pub fn resolve(repo: &Path, rev: &str) -> Option<ObjectId> {
    object_id(repo, &format!("{rev}^{{commit}}"))
}

/// The object `spec` names, as an id.
fn object_id(repo: &Path, spec: &str) -> Option<ObjectId> {
    verify(repo, spec).and_then(|hex| ObjectId::from_hex(hex.as_bytes()).ok())
}

/// One commit being written straight into the repository's object store:
/// chunk blobs are compressed by the caller (on worker threads) and
/// appended to one new pack; trees and the commit object follow at
/// [`CommitWriter::finish`], which then moves the branch by compare-and-swap.
pub struct CommitWriter {
    repo: std::path::PathBuf,
    refname: String,
    parent: Option<ObjectId>,
    message: String,
    pub pack: tessera_pack::local::PackBuilder,
    files: BTreeMap<String, ObjectId>,
}

impl CommitWriter {
    /// Starts a commit on `branch` whose tree holds exactly the files given.
    pub fn start(repo: &Path, branch: &str, message: &str) -> Result<CommitWriter, Error> {
        let mut w = CommitWriter::detached(repo)?;
        w.refname = format!("refs/heads/{branch}");
        w.parent = resolve(repo, &w.refname);
        w.message = message.to_string();
        Ok(w)
    }

    /// A writer for commits that no branch follows yet
    /// ([`CommitWriter::commit_detached`]).
    pub fn detached(repo: &Path) -> Result<CommitWriter, Error> {
        let mut c = git(repo);
        c.args(["rev-parse", "--path-format=absolute", "--git-path", "objects/pack"]);
        let pack_dir = String::from_utf8_lossy(&run(c, "locating the object store")?).trim().to_string();
        let pack = tessera_pack::local::PackBuilder::create(Path::new(&pack_dir))
            .map_err(io(format!("starting a pack in {pack_dir}")))?;
        Ok(CommitWriter {
            repo: repo.to_path_buf(),
            refname: String::new(),
            parent: None,
            message: String::new(),
            pack,
            files: BTreeMap::new(),
        })
    }

    /// Writes `data` as the file at `path`.
    pub fn file(&mut self, path: &str, data: &[u8]) -> Result<(), Error> {
        let id = self.pack.add(tessera_pack::Kind::Blob, data).map_err(io(format!("writing {path}")))?;
        self.files.insert(path.to_string(), id);
        Ok(())
    }

    /// Puts a blob already written (to this pack or the repository) at `path`.
    pub fn file_ref(&mut self, path: &str, blob: &str) -> Result<(), Error> {
        let id = ObjectId::from_hex(blob.as_bytes()).map_err(|_| Error::BadId(blob.into()))?;
        self.files.insert(path.to_string(), id);
        Ok(())
    }

    /// Writes the trees and the commit, seals the pack and moves the branch
    /// from the commit it pointed at when this writer started. With
    /// `skip_unchanged`, a tree equal to the parent's makes no commit and
    /// returns `None`.
    pub fn finish(mut self, skip_unchanged: bool) -> Result<Option<ObjectId>, Error> {
        let tree = self.write_tree()?;
        if skip_unchanged {
            if let Some(parent) = &self.parent {
                if tree_of(&self.repo, &parent.to_string()) == Some(tree) {
                    self.pack.abandon().map_err(io("writing objects"))?;
                    return Ok(None);
                }
            }
        }
        let parents: Vec<ObjectId> = self.parent.iter().copied().collect();
        let message = std::mem::take(&mut self.message);
        let commit = self.write_commit(tree, &parents, &message, None, None)?;
        self.pack.finish().map_err(io("writing objects"))?;
        let old = self.parent.map_or_else(|| "0".repeat(40), |p| p.to_string());
        let mut c = git(&self.repo);
        c.args(["update-ref", "-m", "tessera data export", &self.refname, &commit.to_string(), &old]);
        run(c, &format!("moving {} (did someone else write to it meanwhile?)", self.refname))?;
        update_work_tree(&self.repo, &self.refname, self.parent, commit)?;
        Ok(Some(commit))
    }

    /// Writes the tree of the files given so far (and forgets them, for the
    /// next commit).
    fn write_tree(&mut self) -> Result<ObjectId, Error> {
        let mut root = Dir::default();
        for (path, id) in std::mem::take(&mut self.files) {
            root.insert(&path, id);
        }
        root.write(&mut self.pack).map_err(io("writing trees"))
    }

    fn write_commit(
        &mut self,
        tree: ObjectId,
        parents: &[ObjectId],
        message: &str,
        author: Option<String>,
        committer: Option<String>,
    ) -> Result<ObjectId, Error> {
        let author = author.unwrap_or_else(|| identity(&self.repo, "GIT_AUTHOR_IDENT"));
        let committer = committer.unwrap_or_else(|| identity(&self.repo, "GIT_COMMITTER_IDENT"));
        let mut body = format!("tree {tree}\n");
        for p in parents {
            body.push_str(&format!("parent {p}\n"));
        }
        body.push_str(&format!("author {author}\ncommitter {committer}\n\n{message}"));
        if !body.ends_with('\n') {
            body.push('\n');
        }
        self.pack.add(tessera_pack::Kind::Commit, body.as_bytes()).map_err(io("writing a commit"))
    }

    /// Writes a commit of the files given so far with explicit parents and
    /// identities, without moving any branch (history replay); the files
    /// start empty again for the next one. [`CommitWriter::seal`] makes
    /// every such commit readable.
    pub fn commit_detached(
        &mut self,
        parents: &[ObjectId],
        message: &str,
        author: &str,
        committer: &str,
    ) -> Result<ObjectId, Error> {
        let tree = self.write_tree()?;
        self.write_commit(tree, parents, message, Some(author.into()), Some(committer.into()))
    }

    /// Seals the pack of detached commits.
    pub fn seal(self) -> Result<(), Error> {
        self.pack.finish().map(|_| ()).map_err(io("writing objects"))
    }
}

/// The resume journal of exports: `<sha256> <blob id>` lines for chunk
/// files an export wrote into a sealed pack but did not commit (it was
/// interrupted). The next export reuses those blobs instead of compressing
/// the chunks again; a successful export clears it. It lives in the git
/// directory, so it never travels with the repository.
pub struct Journal {
    path: std::path::PathBuf,
}

impl Journal {
    pub fn open(repo: &Path) -> Result<Journal, Error> {
        let mut c = git(repo);
        c.args(["rev-parse", "--path-format=absolute", "--git-path", "tessera-export-journal"]);
        let path = String::from_utf8_lossy(&run(c, "locating the git directory")?).trim().to_string();
        Ok(Journal { path: path.into() })
    }

    /// The journal's entries whose blobs the repository has.
    pub fn load(&self, repo: &Path) -> Result<std::collections::HashMap<String, String>, Error> {
        let Ok(text) = std::fs::read_to_string(&self.path) else { return Ok(Default::default()) };
        let entries: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once(' ')).collect();
        if entries.is_empty() {
            return Ok(Default::default());
        }
        let ids: String = entries.iter().map(|(_, blob)| format!("{blob}\n")).collect();
        let present: std::collections::HashSet<String> = batch_check(repo, "%(objectname)", ids)?
            .lines()
            .filter(|l| !l.ends_with(" missing"))
            .map(|l| l.trim().to_string())
            .collect();
        Ok(entries
            .into_iter()
            .filter(|(_, blob)| present.contains(*blob))
            .map(|(sha, blob)| (sha.to_string(), blob.to_string()))
            .collect())
    }

    pub fn record(&self, entries: &[(String, String)]) -> Result<(), Error> {
        use std::io::Write;
        let lines: String = entries.iter().map(|(sha, blob)| format!("{sha} {blob}\n")).collect();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io(self.path.display().to_string()))?;
        f.write_all(lines.as_bytes()).and_then(|_| f.sync_data()).map_err(io(self.path.display().to_string()))
    }

    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `git cat-file --batch-check=<format>` of object ids (one per line).
fn batch_check(repo: &Path, format: &str, ids: String) -> Result<String, Error> {
    use std::io::Write;
    let mut child = git(repo)
        .arg("cat-file")
        .arg(format!("--batch-check={format}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(io("git cat-file"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || stdin.write_all(ids.as_bytes()));
    let out = child.wait_with_output().map_err(io("git cat-file"))?;
    let _ = writer.join();
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `path → blob id` of the files under `prefix` at `rev`.
pub fn ls_tree(repo: &Path, rev: &str, prefix: &str) -> Result<Vec<(String, String)>, Error> {
    let mut c = git(repo);
    c.args(["ls-tree", "-r", "-z", rev, "--", prefix]);
    let out = run(c, &format!("listing {prefix} at {rev}"))?;
    Ok(out
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let entry = std::str::from_utf8(entry).ok()?;
            let (meta, path) = entry.split_once('\t')?;
            let blob = meta.split(' ').nth(2)?;
            Some((path.to_string(), blob.to_string()))
        })
        .collect())
}

/// `(commit, value)` for every commit reachable from a branch whose
/// message has the trailer `key`.
pub fn trailers(repo: &Path, key: &str) -> Result<Vec<(String, String)>, Error> {
    let mut c = git(repo);
    c.args(["log", "--branches", &format!("--format=%H %(trailers:key={key},valueonly=true,separator=%x2C)")]);
    let out = run(c, "reading commit trailers")?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(c, v)| (c.to_string(), v.trim().to_string()))
        .collect())
}

/// `(commit, parents)` of every commit reachable from a branch, parents first.
pub fn commits_parents_first(repo: &Path) -> Result<Vec<(String, Vec<String>)>, Error> {
    let mut c = git(repo);
    c.args(["rev-list", "--topo-order", "--reverse", "--parents", "--branches"]);
    let out = run(c, "listing commits")?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| {
            let mut ids = l.split(' ').map(str::to_string);
            Some((ids.next()?, ids.collect()))
        })
        .collect())
}

/// Author name, email, time (unix seconds) and message of a commit.
pub fn commit_info(repo: &Path, commit: &str) -> Result<(String, String, i64, String), Error> {
    let mut c = git(repo);
    c.args(["show", "-s", "--format=%an%x00%ae%x00%at%x00%B", commit]);
    let out = String::from_utf8_lossy(&run(c, "reading a commit")?).into_owned();
    let mut parts = out.splitn(4, '\0');
    let (name, email, at, message) = (parts.next(), parts.next(), parts.next(), parts.next());
    Ok((
        name.unwrap_or_default().to_string(),
        email.unwrap_or_default().to_string(),
        at.and_then(|t| t.trim().parse().ok()).unwrap_or(0),
        message.unwrap_or_default().to_string(),
    ))
}

/// Local branches and the commits they point at.
pub fn branches(repo: &Path) -> Result<Vec<(String, String)>, Error> {
    let mut c = git(repo);
    c.args(["for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads"]);
    let out = run(c, "listing branches")?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(b, c)| (b.to_string(), c.to_string()))
        .collect())
}

/// Points `branch` at `commit`.
pub fn set_branch(repo: &Path, branch: &str, commit: ObjectId) -> Result<(), Error> {
    let refname = format!("refs/heads/{branch}");
    let old = resolve(repo, &refname);
    let mut c = git(repo);
    c.args(["update-ref", "-m", "tessera data export --history", &refname, &commit.to_string()]);
    run(c, &format!("moving {branch}"))?;
    update_work_tree(repo, &refname, old, commit)
}

/// The tree id of a commit.
pub fn tree_of(repo: &Path, commit: &str) -> Option<ObjectId> {
    object_id(repo, &format!("{commit}^{{tree}}"))
}

/// A directory of the tree being written.
#[derive(Default)]
struct Dir {
    files: BTreeMap<String, ObjectId>,
    dirs: BTreeMap<String, Dir>,
}

impl Dir {
    fn insert(&mut self, path: &str, id: ObjectId) {
        match path.split_once('/') {
            Some((dir, rest)) => self.dirs.entry(dir.to_string()).or_default().insert(rest, id),
            None => {
                self.files.insert(path.to_string(), id);
            }
        }
    }

    /// Writes this directory and everything under it; returns the tree id.
    fn write(&self, pack: &mut tessera_pack::local::PackBuilder) -> std::io::Result<ObjectId> {
        // git orders a tree's entries by name, a directory's name with a
        // trailing '/'.
        let mut entries: Vec<(Vec<u8>, &str, ObjectId)> = Vec::new();
        for (name, id) in &self.files {
            entries.push((name.as_bytes().to_vec(), "100644", *id));
        }
        for (name, dir) in &self.dirs {
            let mut key = name.as_bytes().to_vec();
            key.push(b'/');
            entries.push((key, "40000", dir.write(pack)?));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut body = Vec::new();
        for (key, mode, id) in entries {
            let name = key.strip_suffix(b"/").filter(|_| mode == "40000").unwrap_or(&key);
            body.extend_from_slice(mode.as_bytes());
            body.push(b' ');
            body.extend_from_slice(name);
            body.push(0);
            body.extend_from_slice(id.as_bytes());
        }
        pack.add(tessera_pack::Kind::Tree, &body)
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

/// A URL (a remote's, a database's) without its password, for metadata
/// and messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let auth = &url[scheme + 3..at];
            let user = auth.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
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
        let fetched = run_remote_classified(&url, &format!("fetching {shown}"), &|| {
            let mut cmd = remote_git(&url, Some(&path));
            cmd.args(["fetch", "--quiet", "--prune", &url, "+refs/heads/*:refs/heads/*"]);
            cmd
        });
        match fetched {
            Ok(_) => {}
            // The remote answered that it has no such repository (a new
            // import path an earlier export failed to push to, on a
            // credential say): the cache must not keep that export's
            // commits as if the remote had them, so it starts empty again,
            // as a fresh clone would.
            Err((Failure::Other, _)) if may_create => {
                for (branch, _) in branches(&path)? {
                    let mut c = git(&path);
                    c.args(["update-ref", "-d", &format!("refs/heads/{branch}")]);
                    run(c, "emptying the cache")?;
                }
            }
            Err((_, e)) => return Err(e),
        }
    } else {
        std::fs::create_dir_all(path.parent().expect("cache path has a parent")).map_err(io("creating the cache"))?;
        let cloned = run_remote_classified(&url, &format!("cloning {shown}"), &|| {
            let _ = std::fs::remove_dir_all(&path);
            let mut cmd = remote_git(&url, None);
            cmd.args(["clone", "--bare", "--quiet", &url]).arg(&path);
            cmd
        });
        if let Err((failure, e)) = cloned {
            // Only a remote that answered (it has no such repository yet)
            // may start empty; a network or credential failure is reported.
            if !may_create || failure != Failure::Other {
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

/// A git command that talks to `url`: never prompts without a terminal,
/// and sends the token in `TESSERA_GIT_TOKEN` (as the password of
/// `TESSERA_GIT_USER`, default `tessera`) to http(s) URLs that carry no
/// credentials of their own; otherwise git's credential helper applies.
fn remote_git(url: &str, repo: Option<&Path>) -> Command {
    use std::io::IsTerminal;
    let mut cmd = Command::new("git");
    if let Some(token) = env_token(url) {
        use base64::Engine;
        let user = std::env::var("TESSERA_GIT_USER").unwrap_or_else(|_| "tessera".into());
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
        cmd.arg("-c").arg(format!("http.extraHeader=Authorization: Basic {basic}"));
    }
    if let Some(repo) = repo {
        cmd.arg("-C").arg(repo);
    }
    if !std::io::stdin().is_terminal() {
        cmd.env("GIT_TERMINAL_PROMPT", "0");
    }
    cmd
}

/// The token from the environment, for an http(s) URL without credentials.
fn env_token(url: &str) -> Option<String> {
    let http = url.starts_with("http://") || url.starts_with("https://");
    let has_userinfo =
        url.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or("").contains('@')).unwrap_or(false);
    if !http || has_userinfo {
        return None;
    }
    std::env::var("TESSERA_GIT_TOKEN").ok().filter(|t| !t.is_empty())
}

/// Which credential a command against `url` used, for error messages.
fn credential_tried(url: &str) -> String {
    if url.starts_with("ssh://") || url.starts_with("git@") {
        return "your SSH agent and keys".into();
    }
    if let Some((_, rest)) = url.split_once("://") {
        let host = rest.split('/').next().unwrap_or("");
        if let Some((userinfo, _)) = host.rsplit_once('@') {
            let user = userinfo.split(':').next().unwrap_or("");
            return format!("the credentials in the URL (user {user:?})");
        }
    }
    if env_token(url).is_some() {
        return "the token in TESSERA_GIT_TOKEN".into();
    }
    if url.starts_with("http") {
        let helper = Command::new("git")
            .args(["config", "--get", "credential.helper"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|h| !h.is_empty());
        return match helper {
            Some(h) => format!("git's credential helper ({h})"),
            None => "no credential (set TESSERA_GIT_TOKEN or a git credential helper)".into(),
        };
    }
    "none".into()
}

/// How a failed remote git command failed.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    Auth,
    Transient,
    Other,
}

fn classify(stderr: &str) -> Failure {
    let e = stderr.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| e.contains(n));
    if any(&[
        "authentication failed",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "invalid username or password",
        "permission denied (publickey",
        "permission denied, please try again",
        "error: 401",
        "error: 403",
        " 401 ",
        " 403 ",
    ]) {
        Failure::Auth
    } else if any(&[
        "could not resolve host",
        "connection refused",
        "connection reset",
        "connection timed out",
        "operation timed out",
        "failed to connect",
        "the remote end hung up unexpectedly",
        "rpc failed",
        "early eof",
        "temporary failure",
        "error: 500",
        "error: 502",
        "error: 503",
        "error: 504",
    ]) {
        Failure::Transient
    } else {
        Failure::Other
    }
}

/// Runs a git command against `url`, retrying transient network failures
/// with exponential backoff and jitter (`TESSERA_GIT_RETRIES` attempts in
/// all, default 4, from `TESSERA_GIT_RETRY_MS`, default 500 ms); an
/// authentication failure stops at once and names the credential tried.
fn run_remote(url: &str, what: &str, command: &dyn Fn() -> Command) -> Result<Vec<u8>, Error> {
    run_remote_classified(url, what, command).map_err(|(_, e)| e)
}

/// [`run_remote`], telling how it failed.
fn run_remote_classified(url: &str, what: &str, command: &dyn Fn() -> Command) -> Result<Vec<u8>, (Failure, Error)> {
    let attempts: u32 = std::env::var("TESSERA_GIT_RETRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(4).max(1);
    let base: u64 = std::env::var("TESSERA_GIT_RETRY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let shown = redact_url(url);
    let mut attempt = 1;
    loop {
        let out = command().output().map_err(|e| (Failure::Other, io(what)(e)))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().replace(url, &shown);
        match classify(&stderr) {
            Failure::Auth => {
                let tried = credential_tried(url);
                return Err((Failure::Auth, Error::Auth { what: what.into(), tried, stderr }));
            }
            Failure::Transient if attempt < attempts => {
                let jitter = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| u64::from(d.subsec_nanos()) % (base + 1))
                    .unwrap_or(0);
                let delay = base * (1 << (attempt - 1)).min(64) + jitter;
                tracing::warn!(
                    "{what} failed ({}); attempt {attempt} of {attempts}, retrying in {delay} ms",
                    stderr.lines().last().unwrap_or("")
                );
                std::thread::sleep(std::time::Duration::from_millis(delay));
                attempt += 1;
            }
            Failure::Transient => {
                let e = Error::GaveUp { what: what.into(), attempts, stderr };
                return Err((Failure::Transient, e));
            }
            Failure::Other => return Err((Failure::Other, Error::Command { what: what.into(), stderr })),
        }
    }
}

/// Git hosts refuse pushes over 2 GB; a push bigger than this is split.
const PUSH_LIMIT: u64 = 1900 << 20;

/// Sends `branch` back to the remote the target was fetched from. When the
/// objects the remote lacks add up to more than the push limit
/// (`TESSERA_PUSH_LIMIT` bytes, default 1.9 GiB), the new blobs go first in
/// several commits that each stage a share of them under
/// `.tessera-staging/` on top of the remote's tree (every such commit is
/// still a valid export of the old data: import reads only files the
/// metadata lists), each pushed on its own; then the real commit, re-parented
/// on the last of them, which only moves them into place.
pub fn push(target: &Target, branch: &str) -> Result<(), Error> {
    let Some(url) = &target.remote else { return Ok(()) };
    let limit = std::env::var("TESSERA_PUSH_LIMIT").ok().and_then(|v| v.parse().ok()).unwrap_or(PUSH_LIMIT);
    let refname = format!("refs/heads/{branch}");
    let head = resolve(&target.path, &refname).ok_or_else(|| Error::NoBranch(branch.into()))?;
    let remote_head = remote_branch(url, &target.path, branch)?.and_then(|c| resolve(&target.path, &c));
    let blobs = new_blobs(&target.path, head, remote_head)?;
    let total: u64 = blobs.iter().map(|(_, size)| size).sum();
    let pushes = if total > limit { staged_commits(target, head, remote_head, &blobs, limit)? } else { vec![head] };
    let shown = redact_url(url);
    let n = pushes.len();
    for (i, commit) in pushes.iter().enumerate() {
        let spec = format!("{commit}:{refname}");
        let what =
            if n > 1 { format!("pushing part {} of {n} to {shown}", i + 1) } else { format!("pushing to {shown}") };
        run_remote(url, &what, &|| {
            let mut cmd = remote_git(url, Some(&target.path));
            cmd.args(["push", "--quiet", url, &spec]);
            cmd
        })?;
    }
    if let Some(last) = pushes.last().filter(|c| **c != head) {
        set_branch(&target.path, branch, *last)?;
    }
    Ok(())
}

/// The commit `branch` points at on the remote, if any.
fn remote_branch(url: &str, repo: &Path, branch: &str) -> Result<Option<String>, Error> {
    let listed = run_remote_classified(url, &format!("asking {} for {branch}", redact_url(url)), &|| {
        let mut cmd = remote_git(url, Some(repo));
        cmd.args(["ls-remote", url, &format!("refs/heads/{branch}")]);
        cmd
    });
    match listed {
        Ok(out) => Ok(String::from_utf8_lossy(&out).split_whitespace().next().map(str::to_string)),
        // No such repository yet (hosts like tessera create it on the first
        // push): the push itself says whether it may.
        Err((Failure::Other, _)) => Ok(None),
        Err((_, e)) => Err(e),
    }
}

/// Blobs reachable from `head` but not from `base`, with their sizes.
fn new_blobs(repo: &Path, head: ObjectId, base: Option<ObjectId>) -> Result<Vec<(String, u64)>, Error> {
    let mut c = git(repo);
    c.args(["rev-list", "--objects", &head.to_string()]);
    if let Some(b) = base {
        c.args(["--not", &b.to_string()]);
    }
    let listed = run(c, "listing objects to push")?;
    let ids: String = String::from_utf8_lossy(&listed)
        .lines()
        .filter_map(|l| l.split(' ').next())
        .map(|id| format!("{id}\n"))
        .collect();
    Ok(batch_check(repo, "%(objectname) %(objecttype) %(objectsize)", ids)?
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (id, kind, size) = (f.next()?, f.next()?, f.next()?.parse().ok()?);
            (kind == "blob").then(|| (id.to_string(), size))
        })
        .collect())
}

/// The staging commits of a split push and the re-parented final commit.
fn staged_commits(
    target: &Target,
    head: ObjectId,
    base: Option<ObjectId>,
    blobs: &[(String, u64)],
    limit: u64,
) -> Result<Vec<ObjectId>, Error> {
    let repo = &target.path;
    let mut batches: Vec<Vec<&str>> = vec![Vec::new()];
    let mut size = 0;
    for (id, bytes) in blobs {
        if *bytes > limit {
            return Err(Error::OverPushLimit { bytes: *bytes, limit });
        }
        if size + bytes > limit {
            batches.push(Vec::new());
            size = 0;
        }
        size += bytes;
        batches.last_mut().expect("one batch").push(id);
    }
    let base_files = match base {
        Some(b) => ls_tree(repo, &b.to_string(), ".")?,
        None => Vec::new(),
    };
    let ident = identity(repo, "GIT_COMMITTER_IDENT");
    let mut writer = CommitWriter::detached(repo)?;
    let mut parents: Vec<ObjectId> = base.into_iter().collect();
    let mut staged = Vec::new();
    let mut out = Vec::new();
    let n = batches.len();
    for (k, batch) in batches.iter().enumerate() {
        staged.extend(batch.iter().copied());
        for (path, blob) in &base_files {
            writer.file_ref(path, blob)?;
        }
        for blob in &staged {
            writer.file_ref(&format!(".tessera-staging/{blob}"), blob)?;
        }
        let message = format!("Staging part {} of {n} of a large export (moved into place by the next commits)", k + 1);
        let commit = writer.commit_detached(&parents, &message, &ident, &ident)?;
        parents = vec![commit];
        out.push(commit);
    }
    // The real commit, on top of the staging ones: same tree, message and
    // identities.
    let mut c = git(repo);
    c.args(["cat-file", "commit", &head.to_string()]);
    let raw = String::from_utf8_lossy(&run(c, "reading the export commit")?).into_owned();
    let (headers, message) = raw.split_once("\n\n").unwrap_or((&raw, ""));
    let field = |key: &str| headers.lines().find_map(|l| l.strip_prefix(key)).unwrap_or("").to_string();
    for (path, blob) in ls_tree(repo, &head.to_string(), ".")? {
        writer.file_ref(&path, &blob)?;
    }
    let last = writer.commit_detached(&parents, message, &field("author "), &field("committer "))?;
    writer.seal()?;
    out.push(last);
    Ok(out)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC):
/// the dates of Dolt commits replayed into git, of the web pages and of
/// the API.
pub fn iso_date(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3_600, rem % 3_600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_apart() {
        for auth in [
            "fatal: Authentication failed for 'https://example.com/x.git/'",
            "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
            "git@github.com: Permission denied (publickey).",
            "remote: Invalid username or password.",
        ] {
            assert_eq!(classify(auth), Failure::Auth, "{auth}");
        }
        for transient in [
            "fatal: unable to access 'https://x/': Could not resolve host: x",
            "fatal: unable to access 'http://127.0.0.1:1/x/': Failed to connect to 127.0.0.1 port 1",
            "error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502",
            "fatal: the remote end hung up unexpectedly",
            "fatal: early EOF",
        ] {
            assert_eq!(classify(transient), Failure::Transient, "{transient}");
        }
        assert_eq!(classify("fatal: repository 'https://x/y.git/' not found"), Failure::Other);
        assert_eq!(classify("! [rejected] main -> main (fetch first)"), Failure::Other);
    }

    #[test]
    fn the_credential_tried_is_named_without_its_secret() {
        let named = credential_tried("https://alice:hunter2@example.com/x.git");
        assert!(named.contains("alice") && !named.contains("hunter2"), "{named}");
        assert_eq!(credential_tried("ssh://git@example.com/x.git"), "your SSH agent and keys");
    }
}
