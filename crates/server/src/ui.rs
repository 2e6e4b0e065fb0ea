//! The web UI: `/<path>` is a directory's or repository's overview, and
//! `/<path>/-/<view>/...` its views (tree, blob, raw, commits, commit,
//! refs, merge requests), GitLab-style so nested monorepo paths stay
//! unambiguous: the first `/-/` ends the path. `/-/login`, `/-/logout` and
//! `/-/mr/N` are the site's own pages.
//!
//! Every page is authorized by [`auth`] exactly as git and REST are: the
//! UI has no rules of its own. The caller is the session cookie (a signed
//! token, HttpOnly, SameSite=Lax, Secure behind https) or HTTP Basic. Every
//! form carries a CSRF token derived from the session. Repository content
//! is escaped, READMEs sanitized, raw files served with `nosniff` and a
//! sandboxing CSP, and reads are bounded (blob sizes, diff budgets, history
//! walks).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tessera_pack::{Kind, ObjectId};
use tessera_repo::tree::{self, View};
use tessera_store::{MergeRequest, MrStatus};
use tessera_web as web;

use crate::auth::{self, Caller, Need};
use crate::datapages;
use crate::error::HttpError;
use crate::repos::{self, Snapshot, Target};
use crate::State;

const SESSION_COOKIE: &str = "tessera_session";
const SESSION_SECS: i64 = 12 * 3600;
/// Blobs larger than this are not shown inline (the raw view serves them).
const MAX_SHOWN_BLOB: u64 = 1 << 20;
/// Bytes of blobs one diff page reads at most.
const DIFF_BUDGET: u64 = 8 << 20;
/// Files one diff page shows at most.
const MAX_DIFF_FILES: usize = 300;
const PAGE: usize = 50;
/// Commits one history page walks at most (filtered histories).
const MAX_WALK: usize = 20_000;

/// Whether this request is the UI's: GETs (and the UI's own POSTs) that are
/// not git, LFS or REST requests.
pub(crate) fn is_ui(method: &Method, path: &str) -> bool {
    if path.starts_with("/api/") || path.contains("/info/lfs") {
        return false;
    }
    match *method {
        Method::GET | Method::HEAD => !path.ends_with("/info/refs") && path != "/health",
        Method::POST => path == "/-/login" || path == "/-/logout" || path.starts_with("/-/mr/"),
        _ => false,
    }
}

pub(crate) async fn dispatch(state: Arc<State>, request: Request) -> Response {
    let headers = request.headers().clone();
    let session = session_cookie(&headers);
    let caller = match caller(&state, &headers, session.as_deref()).await {
        Ok(c) => c,
        // A stale session: treat as signed out (and drop the cookie).
        Err(_) => Caller::anonymous(),
    };
    let csrf = match (&caller.user, &session) {
        (Some(_), Some(s)) => auth::csrf_token(&state, s).await.ok(),
        _ => None,
    };
    let mut frame =
        web::Frame { user: caller.user.as_ref().map(|u| u.name.clone()), csrf: csrf.clone(), ..Default::default() };
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let result = if request.method() == Method::POST {
        post(&state, &caller, csrf.as_deref(), &path, request).await
    } else {
        get(&state, &caller, &mut frame, &path, &query).await
    };
    let mut response = match result {
        // A client that holds this content already gets a 304.
        Ok(r)
            if r.headers().get(header::ETAG).is_some_and(|tag| {
                headers
                    .get_all(header::IF_NONE_MATCH)
                    .iter()
                    .any(|m| m.to_str().is_ok_and(|m| m.split(',').any(|t| t.trim() == tag.to_str().unwrap_or(""))))
            }) =>
        {
            let mut not_modified = Response::new(Body::empty());
            *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
            for name in [header::ETAG, header::CACHE_CONTROL] {
                if let Some(v) = r.headers().get(&name) {
                    not_modified.headers_mut().insert(name, v.clone());
                }
            }
            not_modified
        }
        Ok(r) => r,
        Err(e) => {
            frame.title = format!("{}", e.status.as_u16());
            frame.path = None;
            let mut r = (e.status, web::error(&frame, e.status.as_u16(), &e.message)).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            r
        }
    };
    let h = response.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(
        "default-src 'none'; style-src 'self'; img-src 'self' https: data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == SESSION_COOKIE && !v.is_empty()).then(|| v.to_string())
    })
}

async fn caller(state: &State, headers: &HeaderMap, session: Option<&str>) -> Result<Caller, HttpError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return auth::caller(state, headers).await;
    }
    match session {
        Some(secret) => auth::caller_for_secret(state, secret).await,
        None => Ok(Caller::anonymous()),
    }
}

fn html(body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

/// A page of content a commit id names (a tree, a file, a commit): its
/// HTML is tagged with a hash of itself, so a browser revalidating it gets
/// a 304 instead of the page again. The tag covers everything on the page,
/// the signed-in user's bar and form token included, so it is per session,
/// and `no-cache` makes the browser ask each time (what the viewer may see
/// can change).
fn html_tagged(body: String) -> Response {
    use sha2::Digest;
    let tag = format!("\"{}\"", hex::encode(&sha2::Sha256::digest(body.as_bytes())[..16]));
    let mut r = html(body);
    let h = r.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&tag).expect("hex is a header value"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    r
}

/// Whether `refname` is a commit id, whose content never changes.
fn is_commit_id(refname: &str) -> bool {
    refname.len() == 40 && ObjectId::from_hex(refname.as_bytes()).is_ok()
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")));
    r
}

/// `/a/b/-/view/rest` → (`/a/b`, `view`, `rest`); no `/-/`: the overview.
fn split_url(path: &str) -> (String, Option<String>, String) {
    let decoded = crate::wire::percent_decode(path);
    let (repo, views) = if let Some(rest) = decoded.strip_prefix("/-/") {
        ("/".to_string(), Some(rest.to_string()))
    } else if let Some((repo, rest)) = decoded.split_once("/-/") {
        (repo.to_string(), Some(rest.to_string()))
    } else {
        (decoded.trim_end_matches('/').to_string(), None)
    };
    let repo = if repo.is_empty() { "/".to_string() } else { repo };
    match views {
        None => (repo, None, String::new()),
        Some(v) => {
            let (view, rest) = v.split_once('/').unwrap_or((&v, ""));
            (repo, Some(view.to_string()), rest.to_string())
        }
    }
}

fn query_value(query: &str, key: &str) -> Option<String> {
    crate::wire::query_pairs(query).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// What a page reads: the refs, HEAD's name and the objects of `path`.
struct Repo {
    path: String,
    /// The caller can read the path but not everything below it: only a
    /// filtered listing is shown, no history (it would tell of the rest).
    partial: bool,
    refs: Vec<tessera_store::Ref>,
    head: String,
    snapshot: Snapshot,
    kind: &'static str,
}

async fn open(state: &State, caller: &Caller, path: &str) -> Result<Repo, HttpError> {
    let path = repos::normalize(path)?;
    let policy = auth::policy(state).await?;
    let partial = match auth::decide(&policy, caller, &path, Need::Read) {
        Ok(()) => false,
        Err(e) if e.status == StatusCode::FORBIDDEN && policy.level(caller.user.as_ref(), &path).is_some() => true,
        Err(e) => return Err(e),
    };
    let target =
        repos::resolve(state, &path).await?.ok_or_else(|| HttpError::not_found(format!("{path} not found")))?;
    let kind = match &target {
        Target::Import(_) => "Import repository",
        Target::Root(_) => "Monorepo root",
        Target::Dir { .. } => "Monorepo directory",
    };
    let (refs, head, snapshot) = repos::read_view(state, &target)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("{path} is neither a repository nor a directory")))?;
    Ok(Repo { path, partial, refs, head, snapshot, kind })
}

/// The commit a URL's leading segments name (a branch, a tag or an id,
/// longest first since branch names hold slashes) and the rest of it.
fn resolve_rev(repo: &Repo, rest: &str) -> Result<(String, ObjectId, String), HttpError> {
    let parts: Vec<&str> = rest.split('/').collect();
    for n in (1..=parts.len()).rev() {
        let name = parts[..n].join("/");
        let found = repo
            .refs
            .iter()
            .find(|r| r.name == format!("refs/heads/{name}") || r.name == format!("refs/tags/{name}"))
            .map(|r| r.peeled.unwrap_or(r.target))
            .or_else(|| {
                let id = ObjectId::from_hex(name.as_bytes()).ok()?;
                repo.snapshot.index.objects.get(&id).is_some_and(|l| l.kind == Kind::Commit).then_some(id)
            });
        if let Some(id) = found {
            return Ok((name, id, parts[n..].join("/")));
        }
    }
    Err(HttpError::not_found(format!("no branch, tag or commit {:?} in {}", parts.first().unwrap_or(&""), repo.path)))
}

fn head_commit(repo: &Repo) -> Option<ObjectId> {
    repo.refs.iter().find(|r| r.name == repo.head).map(|r| r.target)
}

fn short_ref(name: &str) -> &str {
    name.strip_prefix("refs/heads/").or_else(|| name.strip_prefix("refs/tags/")).unwrap_or(name)
}

/// Runs reads over the repository's objects on a blocking thread.
async fn blocking<T: Send + 'static>(
    snapshot: &Snapshot,
    work: impl FnOnce(&View<'_>) -> Result<T, tessera_repo::Error> + Send + 'static,
) -> Result<T, HttpError> {
    let snapshot = snapshot.clone();
    tokio::task::spawn_blocking(move || {
        let odb = snapshot.odb();
        let builder = tessera_repo::objects::Builder::default();
        work(&View { odb: &odb, builder: &builder })
    })
    .await
    .map_err(|e| HttpError::internal("reading the repository", e))?
    .map_err(|e| match e {
        tessera_repo::Error::Refused(m) => HttpError::not_found(m),
        other => HttpError::internal("reading the repository", other),
    })
}

/// A commit's parsed header and message.
struct CommitInfo {
    tree: ObjectId,
    parents: Vec<ObjectId>,
    author: String,
    committer: String,
    message: String,
}

fn read_commit(view: &View<'_>, id: &ObjectId) -> Result<CommitInfo, tessera_repo::Error> {
    let raw = view.read_commit(id)?;
    let meta = tessera_repo::monorepo::Meta::of_commit(&raw);
    let header_end = raw.windows(2).position(|w| w == b"\n\n").unwrap_or(raw.len());
    let mut tree = None;
    let mut parents = Vec::new();
    for line in raw[..header_end].split(|b| *b == b'\n') {
        if let Some(hex) = line.strip_prefix(b"tree ") {
            tree = ObjectId::from_hex(hex).ok();
        } else if let Some(hex) = line.strip_prefix(b"parent ") {
            parents.extend(ObjectId::from_hex(hex).ok());
        }
    }
    Ok(CommitInfo {
        tree: tree.ok_or(tessera_repo::Error::NotACommit(*id))?,
        parents,
        author: meta.author,
        committer: meta.committer,
        message: String::from_utf8_lossy(&meta.message).into_owned(),
    })
}

/// `Name <mail> 1700000000 +0100` → (`Name`, `2023-11-14 22:13`).
fn person(signature: &str) -> (String, String) {
    let name = signature.split('<').next().unwrap_or(signature).trim().to_string();
    let seconds = signature.rsplit(' ').nth(1).and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
    let date = crate::wire::rfc3339(seconds);
    (name, date.replace('T', " ").trim_end_matches('Z').chars().take(16).collect())
}

fn commit_row(repo_path: &str, id: ObjectId, info: &CommitInfo) -> web::CommitRow {
    let (author, date) = person(&info.author);
    web::CommitRow {
        id: id.to_string(),
        title: info.message.lines().next().unwrap_or("").to_string(),
        author,
        date,
        href: format!("{}/commit/{id}", web::views(repo_path)),
    }
}

/// The newest commits from `start` (first parents), skipping `skip`; only
/// those changing `subpath` when one is given.
fn history(
    view: &View<'_>,
    start: ObjectId,
    subpath: &str,
    skip: usize,
    take: usize,
) -> Result<(Vec<(ObjectId, CommitInfo)>, bool), tessera_repo::Error> {
    let mut out = Vec::new();
    let mut seen = 0;
    let mut walked = 0;
    let mut current = Some(start);
    while let Some(id) = current {
        walked += 1;
        if walked > MAX_WALK + skip {
            break;
        }
        let info = read_commit(view, &id)?;
        let parent = info.parents.first().copied();
        let touches = subpath.is_empty() || {
            let at = |c: Option<ObjectId>| -> Result<Option<ObjectId>, tessera_repo::Error> {
                let Some(c) = c else { return Ok(None) };
                let tree = read_commit(view, &c)?.tree;
                entry_at(view, tree, subpath)
            };
            at(Some(id))? != at(parent)?
        };
        if touches {
            if seen >= skip {
                if out.len() == take {
                    return Ok((out, true));
                }
                out.push((id, info));
            }
            seen += 1;
        }
        current = parent;
    }
    Ok((out, false))
}

/// The id of the entry at `path` under `tree`.
fn entry_at(view: &View<'_>, tree: ObjectId, path: &str) -> Result<Option<ObjectId>, tessera_repo::Error> {
    let parts: Vec<&str> = tree::components(path).collect();
    let mut current = tree;
    for (i, part) in parts.iter().enumerate() {
        let entries = view.read_tree(&current)?;
        let Some(e) = entries.iter().find(|e| e.name == part.as_bytes()) else { return Ok(None) };
        if i + 1 == parts.len() {
            return Ok(Some(e.id));
        }
        if !e.is_tree() {
            return Ok(None);
        }
        current = e.id;
    }
    Ok(Some(current))
}

/// Each line of `file` at `start` with the commit that last changed it:
/// first-parent history is walked back, and at each change a line diff
/// (similar's Myers) carries the lines the older version had to their
/// place there; the others belong to the newer commit. Within
/// [`MAX_WALK`] commits (the rest go to the oldest commit reached, and the
/// answer says it stopped) and for files up to [`MAX_SHOWN_BLOB`] bytes.
fn blame_lines(
    view: &View<'_>,
    start: ObjectId,
    file: &str,
) -> Result<(Vec<(String, ObjectId)>, bool), tessera_repo::Error> {
    let refused = tessera_repo::Error::Refused;
    let blob_at = |commit: &ObjectId| -> Result<Option<ObjectId>, tessera_repo::Error> {
        let tree = read_commit(view, commit)?.tree;
        Ok(entry_at(view, tree, file)?
            .filter(|id| view.odb.index.objects.get(id).is_some_and(|l| l.kind == Kind::Blob)))
    };
    let text_of = |id: &ObjectId| -> Result<String, tessera_repo::Error> {
        if view.odb.index.objects.get(id).is_some_and(|l| l.size > MAX_SHOWN_BLOB) {
            return Err(refused(format!("{file:?} is too large to blame here")));
        }
        Ok(String::from_utf8_lossy(&view.odb.read(id)?.1).into_owned())
    };
    let mut blob = blob_at(&start)?.ok_or_else(|| refused(format!("no file {file:?} there")))?;
    let text = text_of(&blob)?;
    let lines: Vec<String> = text.split_inclusive('\n').map(|l| l.trim_end_matches('\n').to_string()).collect();
    let mut owner: Vec<Option<ObjectId>> = vec![None; lines.len()];
    // Lines not yet attributed: (line of the file at `start`, line in the version being walked).
    let mut pending: Vec<(usize, usize)> = (0..lines.len()).map(|i| (i, i)).collect();
    let (mut commit, mut current, mut walked, mut truncated) = (start, text, 0, false);
    while !pending.is_empty() {
        walked += 1;
        let parent = read_commit(view, &commit)?.parents.first().copied();
        let older = match parent {
            Some(p) if walked <= MAX_WALK => blob_at(&p)?.map(|b| (p, b)),
            Some(_) => {
                truncated = true;
                None
            }
            None => None,
        };
        let Some((parent, older_blob)) = older else {
            // Created here (or as far back as the walk goes).
            for (line, _) in pending.drain(..) {
                owner[line] = Some(commit);
            }
            break;
        };
        if older_blob != blob {
            let old_text = text_of(&older_blob)?;
            let diff = similar::TextDiff::from_lines(old_text.as_str(), current.as_str());
            let mut to_old: Vec<Option<usize>> = vec![None; current.split_inclusive('\n').count()];
            for op in diff.ops() {
                if let similar::DiffOp::Equal { old_index, new_index, len } = *op {
                    for k in 0..len {
                        if let Some(slot) = to_old.get_mut(new_index + k) {
                            *slot = Some(old_index + k);
                        }
                    }
                }
            }
            pending.retain_mut(|(line, at)| match to_old.get(*at).copied().flatten() {
                Some(old) => {
                    *at = old;
                    true
                }
                None => {
                    owner[*line] = Some(commit);
                    false
                }
            });
            current = old_text;
            blob = older_blob;
        }
        commit = parent;
    }
    let out = lines.into_iter().zip(owner).map(|(l, o)| (l, o.unwrap_or(start))).collect();
    Ok((out, truncated))
}

/// A `.tar.gz` of the tree of `commit`, every path under `top/`, streamed
/// as it is written (memory holds one file and a buffer, whatever the
/// tree's size). Submodules are left out, as `git archive` does.
fn archive(snapshot: &Snapshot, commit: ObjectId, top: String) -> Response {
    let (sink, mut chunks) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let snapshot = snapshot.clone();
    let filename = format!("{top}.tar.gz");
    tokio::task::spawn_blocking(move || {
        let odb = snapshot.odb();
        let builder = tessera_repo::objects::Builder::default();
        let view = View { odb: &odb, builder: &builder };
        let out = Chunks { sink: sink.clone(), buf: Vec::with_capacity(64 << 10) };
        let written = write_archive(&view, commit, &top, out);
        if let Err(e) = written {
            // The client sees a cut stream, not a valid archive.
            let _ = sink.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures::stream::poll_fn(move |cx| chunks.poll_recv(cx));
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/gzip"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", filename.replace('"', ""))) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// Bytes on their way to an archive's response, 64 KiB at a time.
struct Chunks {
    sink: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    buf: Vec<u8>,
}

impl std::io::Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 << 10 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(64 << 10));
        self.sink.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::other("the client went away"))
    }
}

fn write_archive(view: &View<'_>, commit: ObjectId, top: &str, out: Chunks) -> Result<(), Box<dyn std::error::Error>> {
    let info = read_commit(view, &commit)?;
    // The committer's time, as `git archive` stamps entries.
    let mtime: u64 = info.committer.rsplit(' ').nth(1).and_then(|t| t.parse().ok()).unwrap_or(0);
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
    let mut tar = tar::Builder::new(gz);
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(mtime);
        h
    };
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, format!("{top}/"), std::io::empty())?;
    // Depth first with a stack of our own: nothing recurses on what a
    // repository holds.
    let mut stack = vec![(info.tree, String::new())];
    while let Some((tree, prefix)) = stack.pop() {
        for e in view.read_tree(&tree)? {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            let path = format!("{top}/{prefix}{name}");
            match e.mode.as_slice() {
                b"160000" => {}
                _ if e.is_tree() => {
                    let mut h = header(tar::EntryType::Directory, 0o755, 0);
                    tar.append_data(&mut h, format!("{path}/"), std::io::empty())?;
                    stack.push((e.id, format!("{prefix}{name}/")));
                }
                b"120000" => {
                    let (_, target) = view.odb.read(&e.id)?;
                    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                    tar.append_link(&mut h, &path, String::from_utf8_lossy(&target).as_ref())?;
                }
                mode => {
                    let (_, data) = view.odb.read(&e.id)?;
                    let executable = mode == b"100755";
                    let mut h =
                        header(tar::EntryType::Regular, if executable { 0o755 } else { 0o644 }, data.len() as u64);
                    tar.append_data(&mut h, &path, &data[..])?;
                }
            }
        }
    }
    let mut gz = tar.into_inner()?;
    std::io::Write::flush(&mut gz)?;
    let mut out = gz.finish()?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}

/// Most tree entries a path search walks, and paths it lists.
const MAX_SEARCH_WALK: usize = 200_000;
const MAX_SEARCH_RESULTS: usize = 200;

/// Paths under `tree` whose name holds `query` (ignoring case), breadth
/// first, directories before files at each depth; only those `visible`.
/// Whether the walk or the list stopped at its bound.
fn find_paths(
    view: &View<'_>,
    tree: ObjectId,
    query: &str,
    base: &str,
    refname: &str,
    visible: &dyn Fn(&str) -> bool,
) -> Result<(Vec<web::Entry>, bool), tessera_repo::Error> {
    let needle = query.trim().to_lowercase();
    let mut found = Vec::new();
    let mut walked = 0;
    let mut queue = std::collections::VecDeque::from([(tree, String::new())]);
    while let Some((tree, prefix)) = queue.pop_front() {
        for e in view.read_tree(&tree)? {
            walked += 1;
            if walked > MAX_SEARCH_WALK || found.len() >= MAX_SEARCH_RESULTS {
                return Ok((found, true));
            }
            let name = String::from_utf8_lossy(&e.name).into_owned();
            let full = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            if !visible(&full) {
                continue;
            }
            let kind = match e.mode.as_slice() {
                b"160000" => web::EntryKind::Submodule,
                b"120000" => web::EntryKind::Link,
                _ if e.is_tree() => web::EntryKind::Dir,
                _ => web::EntryKind::File,
            };
            if name.to_lowercase().contains(&needle) {
                let page = if kind == web::EntryKind::Dir { "tree" } else { "blob" };
                let href = format!("{base}/{page}/{}/{}", web::url_path(refname), web::url_path(&full));
                found.push(web::Entry { name: full.clone(), kind, href });
            }
            if kind == web::EntryKind::Dir {
                queue.push_back((e.id, full));
            }
        }
    }
    Ok((found, false))
}

/// A tree's files for the data views.
struct TreeFiles<'v, 'o> {
    view: &'v View<'o>,
    tree: ObjectId,
    /// Each directory's entries, by the directory's path, read once: a
    /// table's chunk files are looked up one by one, thousands of them in
    /// one directory.
    dirs: std::cell::RefCell<HashMap<String, Option<Listing>>>,
}

/// A directory's entries by name.
type Listing = HashMap<Vec<u8>, ObjectId>;

impl<'v, 'o> TreeFiles<'v, 'o> {
    fn new(view: &'v View<'o>, tree: ObjectId) -> Self {
        TreeFiles { view, tree, dirs: Default::default() }
    }

    /// The id of the entry at `path`, reading each directory once.
    fn lookup(&self, path: &str) -> Result<Option<ObjectId>, tessera_repo::Error> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let mut dirs = self.dirs.borrow_mut();
        if !dirs.contains_key(dir) {
            let listing = match entry_at(self.view, self.tree, dir)? {
                Some(id) if self.view.odb.index.objects.get(&id).is_none_or(|l| l.kind == Kind::Tree) => {
                    Some(self.view.read_tree(&id)?.into_iter().map(|e| (e.name.to_vec(), e.id)).collect())
                }
                _ => None,
            };
            dirs.insert(dir.to_string(), listing);
        }
        Ok(dirs[dir].as_ref().and_then(|entries| entries.get(name.as_bytes()).copied()))
    }
}

impl datapages::Files for TreeFiles<'_, '_> {
    fn read(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        let Some(id) = self.lookup(path).map_err(|e| e.to_string())? else { return Ok(None) };
        match self.view.odb.index.objects.get(&id) {
            Some(l) if l.kind != Kind::Blob => return Ok(None),
            Some(l) if l.size > max => {
                return Err(format!("{path}: {} bytes, more than the {max} one page reads", l.size));
            }
            _ => {}
        }
        Ok(Some(self.view.odb.read(&id).map_err(|e| e.to_string())?.1.as_ref().clone()))
    }

    fn id(&self, path: &str) -> Option<String> {
        self.lookup(path).ok().flatten().map(|id| id.to_string())
    }
}

fn entries(
    view: &View<'_>,
    tree: ObjectId,
    base: &str,
    refname: &str,
    subpath: &str,
    visible: &dyn Fn(&str) -> bool,
) -> Result<Vec<web::Entry>, tessera_repo::Error> {
    let mut list: Vec<web::Entry> = view
        .read_tree(&tree)?
        .into_iter()
        .filter(|e| {
            let name = String::from_utf8_lossy(&e.name);
            visible(&if subpath.is_empty() { name.into_owned() } else { format!("{subpath}/{name}") })
        })
        .map(|e| {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            let full = if subpath.is_empty() { name.clone() } else { format!("{subpath}/{name}") };
            let kind = match e.mode.as_slice() {
                b"160000" => web::EntryKind::Submodule,
                b"120000" => web::EntryKind::Link,
                _ if e.is_tree() => web::EntryKind::Dir,
                _ => web::EntryKind::File,
            };
            let view = if kind == web::EntryKind::Dir { "tree" } else { "blob" };
            let href = format!("{base}/{view}/{}/{}", web::url_path(refname), web::url_path(&full));
            web::Entry { name, kind, href }
        })
        .collect();
    list.sort_by(|a, b| {
        (a.kind != web::EntryKind::Dir).cmp(&(b.kind != web::EntryKind::Dir)).then(a.name.cmp(&b.name))
    });
    Ok(list)
}

fn crumbs(path: &str) -> Vec<web::Crumb> {
    web::path_crumbs(path)
}

async fn get(
    state: &State,
    caller: &Caller,
    frame: &mut web::Frame,
    url: &str,
    query: &str,
) -> Result<Response, HttpError> {
    let (path, view, rest) = split_url(url);
    match (path.as_str(), view.as_deref()) {
        ("/", Some("style.css")) => {
            let mut r = Response::new(Body::from(web::stylesheet()));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
            return Ok(r);
        }
        ("/", Some("login")) => {
            frame.title = "Sign in".into();
            let next = query_value(query, "next").unwrap_or_else(|| "/".into());
            return Ok(html(web::login(frame, None, &next)));
        }
        ("/", Some("mr")) => return mr_page(state, caller, frame, &rest).await,
        _ => {}
    }
    let repo = open(state, caller, &path).await?;
    frame.crumbs = crumbs(&repo.path);
    frame.path = Some(repo.path.clone());
    let base = web::views(&repo.path);
    let head_name = short_ref(&repo.head).to_string();
    // In a partly readable directory, what the caller may see of it.
    let policy = auth::policy(state).await?;
    let visible: Arc<dyn Fn(&str) -> bool + Send + Sync> = if repo.partial {
        let (policy, user, root) = (policy.clone(), caller.user.clone(), repo.path.clone());
        Arc::new(move |sub: &str| {
            let full = if root == "/" { format!("/{sub}") } else { format!("{root}/{sub}") };
            policy.level(user.as_ref(), &full).is_some()
        })
    } else {
        Arc::new(|_: &str| true)
    };
    if repo.partial && !matches!(view.as_deref(), None | Some("tree") | Some("blob") | Some("raw") | Some("search")) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            format!("{} holds directories you cannot read; open one of its directories you can read", repo.path),
        ));
    }
    frame.refname = Some(head_name.clone());
    // A data export at the head gets the data view among its tabs.
    if let (false, Some(head)) = (repo.partial, head_commit(&repo)) {
        frame.data = blocking(&repo.snapshot, move |view| {
            let info = read_commit(view, &head)?;
            Ok(entry_at(view, info.tree, tessera_bridge::layout::MANIFEST)?.is_some())
        })
        .await
        .unwrap_or(false);
    }
    match view.as_deref() {
        None => {
            frame.title = format!("Overview {}", repo.path);
            let head = head_commit(&repo);
            let imports: Vec<web::Crumb> = if repo.kind == "Import repository" {
                Vec::new()
            } else {
                let policy = auth::policy(state).await?;
                let prefix = if repo.path == "/" { "/".to_string() } else { format!("{}/", repo.path) };
                state
                    .store
                    .list_repos()
                    .await?
                    .into_iter()
                    .filter(|r| r.path.starts_with(&prefix) && r.kind == tessera_store::RepoKind::Import)
                    .filter(|r| policy.level(caller.user.as_ref(), &r.path).is_some())
                    .map(|r| web::Crumb { href: web::url_path(&r.path), name: r.path })
                    .collect()
            };
            let http = format!("{}{}", state.config.http_url(), if repo.path == "/" { "/" } else { &repo.path });
            let ssh = state.config.ssh_listen.as_ref().map(|listen| {
                let port = listen.rsplit(':').next().unwrap_or("22");
                let host = state.config.http_url();
                let host = host
                    .split("://")
                    .nth(1)
                    .unwrap_or("localhost")
                    .split([':', '/'])
                    .next()
                    .unwrap_or("localhost")
                    .to_string();
                format!("ssh://git@{host}:{port}{}", repo.path)
            });
            let path = repo.path.clone();
            let refname = head_name.clone();
            let kind = repo.kind.to_string();
            let partial = repo.partial;
            let visible = visible.clone();
            let mut overview = blocking(&repo.snapshot, move |view| {
                let mut o = web::Overview { clone_http: http, clone_ssh: ssh, imports, kind, ..Default::default() };
                let Some(head) = head else { return Ok(o) };
                let info = read_commit(view, &head)?;
                o.entries = entries(view, info.tree, &base, &refname, "", &*visible)?;
                let readme = view.read_tree(&info.tree)?.into_iter().find(|e| {
                    let n = String::from_utf8_lossy(&e.name).to_lowercase();
                    !e.is_tree()
                        && (n == "readme.md" || n == "readme" || n == "readme.markdown" || n == "readme.txt")
                        && visible(&String::from_utf8_lossy(&e.name))
                });
                if let Some(readme) = readme {
                    let (kind, data) = view.odb.read(&readme.id)?;
                    if kind == Kind::Blob {
                        let text = String::from_utf8_lossy(&data);
                        o.readme = Some(web::markdown::render(&text));
                    }
                }
                if partial {
                    o.kind.push_str(" (some directories here are private: open one to see its history)");
                } else {
                    let (rows, _) = history(view, head, "", 0, 10)?;
                    o.commits = rows.iter().map(|(id, info)| commit_row(&path, *id, info)).collect();
                }
                Ok(o)
            })
            .await?;
            overview.imports.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(html(web::overview(frame, &overview)))
        }
        Some("tree") => {
            let (refname, commit, subpath) = resolve_rev(&repo, &rest)?;
            let immutable = is_commit_id(&refname);
            frame.title = format!("Files {}", repo.path);
            frame.refname = Some(refname.clone());
            let shown = subpath.clone();
            if !subpath.is_empty() && !visible(&subpath) {
                return Err(HttpError::not_found(format!("no directory {subpath:?} at {refname}")));
            }
            let visible = visible.clone();
            let list = blocking(&repo.snapshot, move |view| {
                let info = read_commit(view, &commit)?;
                let tree = entry_at(view, info.tree, &subpath)?
                    .ok_or_else(|| tessera_repo::Error::Refused(format!("no directory {subpath:?} at {refname}")))?;
                entries(view, tree, &base, &refname, &subpath, &*visible)
            })
            .await?;
            let page = web::tree(frame, &shown, &list);
            Ok(if immutable { html_tagged(page) } else { html(page) })
        }
        Some(v @ ("blob" | "raw")) => {
            let raw = v == "raw";
            let (refname, commit, file) = resolve_rev(&repo, &rest)?;
            frame.title = format!("Files: {file} · {}", repo.path);
            frame.refname = Some(refname.clone());
            if !visible(&file) {
                return Err(HttpError::not_found(format!("no file {file:?} at {refname}")));
            }
            let name = file.rsplit('/').next().unwrap_or(&file).to_string();
            let raw_href = format!("{base}/raw/{}/{}", web::url_path(&refname), web::url_path(&file));
            let blame_href = format!("{base}/blame/{}/{}", web::url_path(&refname), web::url_path(&file));
            // A commit id names content that never changes.
            let immutable = ObjectId::from_hex(refname.as_bytes()).is_ok();
            let (blob_id, size, data) = blocking(&repo.snapshot, move |view| {
                let info = read_commit(view, &commit)?;
                let id = entry_at(view, info.tree, &file)?
                    .ok_or_else(|| tessera_repo::Error::Refused(format!("no file {file:?} at {refname}")))?;
                let size = view.odb.index.objects.get(&id).map(|l| l.size).unwrap_or(0);
                if view.odb.index.objects.get(&id).is_some_and(|l| l.kind != Kind::Blob) {
                    return Err(tessera_repo::Error::Refused(format!("{file:?} is not a file")));
                }
                if !raw && size > MAX_SHOWN_BLOB {
                    return Ok((id, size, None));
                }
                let (_, data) = view.odb.read(&id)?;
                Ok((id, size, Some(data)))
            })
            .await?;
            if raw {
                let data = data.map(|d| d.as_ref().clone()).unwrap_or_default();
                let text = std::str::from_utf8(&data).is_ok() && !data.contains(&0);
                let mut r = Response::new(Body::from(data));
                let h = r.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(if text {
                        "text/plain; charset=utf-8"
                    } else {
                        "application/octet-stream"
                    }),
                );
                h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
                // The blob id is the content's own tag. Private: what a
                // caller may read is the caller's.
                if let Ok(tag) = HeaderValue::from_str(&format!("\"{blob_id}\"")) {
                    h.insert(header::ETAG, tag);
                }
                h.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(if immutable {
                        "private, max-age=31536000, immutable"
                    } else {
                        "private, no-cache"
                    }),
                );
                return Ok(r);
            }
            let content = match data {
                None => web::BlobContent::TooLarge,
                Some(d) if d.iter().take(8000).any(|b| *b == 0) => web::BlobContent::Binary,
                Some(d) => {
                    let text = String::from_utf8_lossy(&d).into_owned();
                    let name = name.clone();
                    let lines = tokio::task::spawn_blocking(move || web::highlight::lines(&name, &text))
                        .await
                        .map_err(|e| HttpError::internal("highlighting", e))?;
                    web::BlobContent::Lines(lines)
                }
            };
            let page = web::blob(frame, &web::Blob { name, size, raw_href, blame_href, content });
            Ok(if immutable { html_tagged(page) } else { html(page) })
        }
        Some("commits") => {
            let (refname, commit, subpath) = if rest.is_empty() {
                let head = head_commit(&repo).ok_or_else(|| HttpError::not_found("no commits yet"))?;
                (head_name.clone(), head, String::new())
            } else {
                resolve_rev(&repo, &rest)?
            };
            frame.title = format!("Commits {}", repo.path);
            frame.refname = Some(refname.clone());
            let page: usize = query_value(query, "page").and_then(|p| p.parse().ok()).unwrap_or(0).min(100_000);
            let path = repo.path.clone();
            let sub = subpath.clone();
            let (rows, more) = blocking(&repo.snapshot, move |view| {
                let (list, more) = history(view, commit, &sub, page * PAGE, PAGE)?;
                Ok((list.iter().map(|(id, info)| commit_row(&path, *id, info)).collect::<Vec<_>>(), more))
            })
            .await?;
            let here = format!(
                "{base}/commits/{}{}",
                web::url_path(&refname),
                if subpath.is_empty() { String::new() } else { format!("/{}", web::url_path(&subpath)) }
            );
            let newer = (page > 0).then(|| format!("{here}?page={}", page - 1));
            let older = more.then(|| format!("{here}?page={}", page + 1));
            Ok(html(web::commits(frame, &rows, newer.as_deref(), older.as_deref())))
        }
        Some("commit") => {
            let id = ObjectId::from_hex(rest.trim_matches('/').as_bytes())
                .map_err(|_| HttpError::not_found(format!("no commit {rest:?}")))?;
            if repo.snapshot.index.objects.get(&id).is_none_or(|l| l.kind != Kind::Commit) {
                return Err(HttpError::not_found(format!("no commit {id} in {}", repo.path)));
            }
            frame.title = format!("Commit {}", &id.to_string()[..10]);
            let path = repo.path.clone();
            let page = blocking(&repo.snapshot, move |view| {
                let info = read_commit(view, &id)?;
                let parent_tree = match info.parents.first() {
                    Some(p) => Some(read_commit(view, p)?.tree),
                    None => None,
                };
                let files = diff_pages(view, parent_tree, Some(info.tree))?;
                let data = data_changes(view, parent_tree, Some(info.tree));
                let (author, adate) = person(&info.author);
                let (committer, cdate) = person(&info.committer);
                Ok(web::Commit {
                    id: id.to_string(),
                    message: info.message.clone(),
                    author: format!("{author}, {adate}"),
                    committer: format!("{committer}, {cdate}"),
                    parents: info
                        .parents
                        .iter()
                        .map(|p| (p.to_string(), format!("{}/commit/{p}", web::views(&path))))
                        .collect(),
                    tree_href: format!("{}/tree/{id}", web::views(&path)),
                    data,
                    files,
                })
            })
            .await?;
            Ok(html_tagged(web::commit(frame, &page)))
        }
        Some("refs") => {
            frame.title = format!("Refs {}", repo.path);
            let row = |r: &tessera_store::Ref| {
                let name = short_ref(&r.name).to_string();
                let href = format!("{base}/tree/{}", web::url_path(&name));
                (name, r.target.to_string(), href)
            };
            let branches: Vec<_> = repo.refs.iter().filter(|r| r.name.starts_with("refs/heads/")).map(row).collect();
            let tags: Vec<_> = repo.refs.iter().filter(|r| r.name.starts_with("refs/tags/")).map(row).collect();
            Ok(html(web::refs(frame, &branches, &tags)))
        }
        Some("mrs") => {
            frame.title = format!("Merge requests {}", repo.path);
            let status = query_value(query, "status").unwrap_or_else(|| "open".into());
            let wanted = match status.as_str() {
                "all" => None,
                s => Some(MrStatus::named(s).ok_or_else(|| HttpError::bad_request(format!("unknown status {s:?}")))?),
            };
            let policy = auth::policy(state).await?;
            let prefix = if repo.path == "/" { "/".to_string() } else { format!("{}/", repo.path) };
            let rows: Vec<web::MrRow> = state
                .store
                .list_mrs(wanted)
                .await?
                .into_iter()
                .filter(|m| m.path == repo.path || m.path.starts_with(&prefix))
                .filter(|m| policy.level(caller.user.as_ref(), &m.path).is_some())
                .map(|m| web::MrRow {
                    id: m.id,
                    href: format!("/-/mr/{}", m.id),
                    title: m.title,
                    path: m.path,
                    status: m.status.as_str().to_string(),
                    author: m.author,
                })
                .collect();
            Ok(html(web::merge_requests(frame, &rows, &status, &format!("{base}/mrs"))))
        }
        Some("blame") => {
            let (refname, commit, file) = resolve_rev(&repo, &rest)?;
            frame.title = format!("Blame: {file} · {}", repo.path);
            frame.refname = Some(refname.clone());
            let name = file.rsplit('/').next().unwrap_or(&file).to_string();
            let blob_href = format!("{base}/blob/{}/{}", web::url_path(&refname), web::url_path(&file));
            let path = repo.path.clone();
            let page = blocking(&repo.snapshot, move |view| {
                let (lines, truncated) = blame_lines(view, commit, &file)?;
                let mut rows: HashMap<ObjectId, web::CommitRow> = HashMap::new();
                let mut out = Vec::with_capacity(lines.len());
                for (line, id) in lines {
                    let row = match rows.entry(id) {
                        std::collections::hash_map::Entry::Occupied(known) => known.get().clone(),
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            let info = read_commit(view, &id)?;
                            slot.insert(commit_row(&path, id, &info)).clone()
                        }
                    };
                    out.push((line, row));
                }
                Ok(web::Blame { name, blob_href, lines: out, truncated })
            })
            .await?;
            Ok(html(web::blame(frame, &page)))
        }
        Some("archive") => {
            let name = rest
                .strip_suffix(".tar.gz")
                .ok_or_else(|| HttpError::not_found("archives are /-/archive/<ref>.tar.gz"))?
                .to_string();
            let (refname, commit, more) = resolve_rev(&repo, &name)?;
            if !more.is_empty() {
                return Err(HttpError::not_found(format!("no branch, tag or commit {name:?} in {}", repo.path)));
            }
            let base_name = repo.path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("root");
            let top = format!("{base_name}-{}", refname.replace('/', "-"));
            Ok(archive(&repo.snapshot, commit, top))
        }
        Some("search") => {
            let rest = if rest.is_empty() { head_name.clone() } else { rest.clone() };
            let (refname, commit, _) = resolve_rev(&repo, &rest)?;
            frame.title = format!("Find a path · {}", repo.path);
            frame.refname = Some(refname.clone());
            let query = query_value(query, "q").unwrap_or_default();
            let action = format!("{base}/search/{}", web::url_path(&refname));
            let (results, truncated) = if query.trim().is_empty() {
                (Vec::new(), false)
            } else {
                let (q, visible) = (query.clone(), visible.clone());
                blocking(&repo.snapshot, move |view| {
                    let info = read_commit(view, &commit)?;
                    find_paths(view, info.tree, &q, &base, &refname, &*visible)
                })
                .await?
            };
            Ok(html(web::search(frame, &web::Search { action, query, results, truncated })))
        }
        Some("compare") => {
            let (from, to) = rest
                .split_once("...")
                .ok_or_else(|| HttpError::not_found("compare two refs or commits: /-/compare/<from>...<to>"))?;
            let whole = |part: &str| -> Result<(String, ObjectId), HttpError> {
                match resolve_rev(&repo, part)? {
                    (name, id, rest) if rest.is_empty() => Ok((name, id)),
                    _ => Err(HttpError::not_found(format!("no branch, tag or commit {part:?} in {}", repo.path))),
                }
            };
            let ((from_name, from_id), (to_name, to_id)) = (whole(from)?, whole(to)?);
            frame.title = format!("Compare {from_name}...{to_name} · {}", repo.path);
            frame.refname = Some(to_name.clone());
            let path = repo.path.clone();
            let page = blocking(&repo.snapshot, move |view| {
                // What `from` has: its ancestors, within the walk's bound.
                let mut theirs = std::collections::HashSet::new();
                let mut queue = std::collections::VecDeque::from([from_id]);
                while let Some(c) = queue.pop_front() {
                    if theirs.len() >= MAX_WALK || !theirs.insert(c) {
                        continue;
                    }
                    queue.extend(read_commit(view, &c)?.parents);
                }
                // `to`'s commits back to the nearest one `from` has.
                let (mut commits, mut base, mut more) = (Vec::new(), None, false);
                let mut seen = std::collections::HashSet::new();
                let mut queue = std::collections::VecDeque::from([to_id]);
                while let Some(c) = queue.pop_front() {
                    if theirs.contains(&c) {
                        base.get_or_insert(c);
                        continue;
                    }
                    if seen.len() >= MAX_WALK || !seen.insert(c) {
                        continue;
                    }
                    let info = read_commit(view, &c)?;
                    queue.extend(info.parents.iter().copied());
                    if commits.len() < 2 * PAGE {
                        commits.push(commit_row(&path, c, &info));
                    } else {
                        more = true;
                    }
                }
                let base_tree = match base {
                    Some(b) => Some(read_commit(view, &b)?.tree),
                    None => None,
                };
                let to_tree = read_commit(view, &to_id)?.tree;
                Ok(web::Compare {
                    from: from_name,
                    to: to_name,
                    base: base.map(|b| (b.to_string(), format!("{}/commit/{b}", web::views(&path)))),
                    commits,
                    more,
                    data: data_changes(view, base_tree, Some(to_tree)),
                    files: diff_pages(view, base_tree, Some(to_tree))?,
                })
            })
            .await?;
            Ok(html(web::compare(frame, &page)))
        }
        Some("data") => {
            let rest = if rest.is_empty() { head_name.clone() } else { rest.clone() };
            let (refname, commit, table) = resolve_rev(&repo, &rest)?;
            frame.refname = Some(refname.clone());
            frame.data = true;
            frame.title = if table.is_empty() {
                format!("Data {}", repo.path)
            } else {
                format!("Data: {table} · {}", repo.path)
            };
            let page: u64 = query_value(query, "page").and_then(|p| p.parse().ok()).unwrap_or(0).min(1 << 40);
            let href_base = format!("{base}/data/{}", web::url_path(&refname));
            let shown = blocking(&repo.snapshot, move |view| {
                let refused = tessera_repo::Error::Refused;
                let info = read_commit(view, &commit)?;
                let files = TreeFiles::new(view, info.tree);
                let export = datapages::load(&files).map_err(refused)?.ok_or_else(|| {
                    refused(format!("no data export at {refname}: no {}", tessera_bridge::layout::MANIFEST))
                })?;
                if table.is_empty() {
                    return Ok(Err(datapages::tables(&export, &href_base)));
                }
                let meta = export
                    .tables
                    .iter()
                    .find(|t| t.name == table)
                    .ok_or_else(|| refused(format!("no table {table:?} at {refname}")))?;
                let href = format!("{href_base}/{}", web::url_path(&table));
                datapages::rows_page(meta, page, &href, &files).map(Ok).map_err(refused)
            })
            .await?;
            Ok(html(match shown {
                Ok(rows) => web::table_rows(frame, &rows),
                Err(tables) => web::data_tables(frame, &tables),
            }))
        }
        Some(other) => Err(HttpError::not_found(format!("no view {other:?}"))),
    }
}

/// What changed between two trees in the tables of a data export, row by
/// row (nothing when neither tree holds one).
fn data_changes(view: &View<'_>, old: Option<ObjectId>, new: Option<ObjectId>) -> Vec<web::RowChanges> {
    let side = |tree: Option<ObjectId>| -> Box<dyn datapages::Files + '_> {
        match tree {
            Some(tree) => Box::new(TreeFiles::new(view, tree)),
            None => Box::new(datapages::NoFiles),
        }
    };
    let (old_files, new_files) = (side(old), side(new));
    let before = datapages::load(old_files.as_ref()).ok().flatten();
    let after = datapages::load(new_files.as_ref()).ok().flatten();
    if before.is_none() && after.is_none() {
        return Vec::new();
    }
    datapages::changes(before.as_ref(), after.as_ref(), old_files.as_ref(), new_files.as_ref())
}

/// The diff of two trees as the pages show it, within the page budgets.
fn diff_pages(
    view: &View<'_>,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
) -> Result<Vec<web::FileDiff>, tessera_repo::Error> {
    let changes = tree::diff_files(view, old, new)?;
    let mut budget = DIFF_BUDGET;
    let mut out = Vec::new();
    for (n, (path, (before, after))) in changes.into_iter().enumerate() {
        let status = match (&before, &after) {
            (None, _) => "added",
            (_, None) => "deleted",
            _ => "modified",
        }
        .to_string();
        let omitted = |path, status, why: &str| web::FileDiff {
            path,
            status,
            added: 0,
            removed: 0,
            body: web::DiffBody::Omitted(why.to_string()),
        };
        if n >= MAX_DIFF_FILES {
            out.push(omitted(path, status, "past the files one page shows"));
            continue;
        }
        let size = |s: &Option<tree::FileState>| {
            s.as_ref().and_then(|(_, id)| view.odb.index.objects.get(id).map(|l| l.size)).unwrap_or(0)
        };
        let (a_size, b_size) = (size(&before), size(&after));
        if a_size > MAX_SHOWN_BLOB || b_size > MAX_SHOWN_BLOB || a_size + b_size > budget {
            out.push(omitted(path, status, "too large to show here"));
            continue;
        }
        budget -= a_size + b_size;
        let read = |s: &Option<tree::FileState>| -> Result<Vec<u8>, tessera_repo::Error> {
            match s {
                Some((mode, id)) if mode.as_slice() != b"160000" => Ok(view.odb.read(id)?.1.as_ref().clone()),
                _ => Ok(Vec::new()),
            }
        };
        let (a, b) = (read(&before)?, read(&after)?);
        if a.iter().chain(b.iter()).take(16_000).any(|b| *b == 0) {
            out.push(web::FileDiff { path, status, added: 0, removed: 0, body: web::DiffBody::Binary });
            continue;
        }
        let (a, b) = (String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
        let diff = similar::TextDiff::from_lines(a.as_ref(), b.as_ref());
        let (mut added, mut removed) = (0, 0);
        let mut lines = Vec::new();
        for group in diff.grouped_ops(3) {
            let (first, last) = (group.first().expect("non-empty"), group.last().expect("non-empty"));
            lines.push(web::DiffLine {
                kind: '@',
                old: None,
                new: None,
                text: format!(
                    "@ -{},{} +{},{} @@",
                    first.old_range().start + 1,
                    last.old_range().end - first.old_range().start,
                    first.new_range().start + 1,
                    last.new_range().end - first.new_range().start
                ),
            });
            for op in &group {
                for change in diff.iter_changes(op) {
                    let kind = match change.tag() {
                        similar::ChangeTag::Insert => {
                            added += 1;
                            '+'
                        }
                        similar::ChangeTag::Delete => {
                            removed += 1;
                            '-'
                        }
                        similar::ChangeTag::Equal => ' ',
                    };
                    lines.push(web::DiffLine {
                        kind,
                        old: change.old_index().map(|i| i + 1),
                        new: change.new_index().map(|i| i + 1),
                        text: change.value().trim_end_matches('\n').to_string(),
                    });
                }
            }
        }
        out.push(web::FileDiff { path, status, added, removed, body: web::DiffBody::Lines(lines) });
    }
    Ok(out)
}

async fn mr_page(state: &State, caller: &Caller, frame: &mut web::Frame, rest: &str) -> Result<Response, HttpError> {
    let id: i64 =
        rest.trim_matches('/').parse().map_err(|_| HttpError::not_found(format!("no merge request {rest:?}")))?;
    let mr: MergeRequest = auth::load_for(state, caller, id, Need::Read, "mr.show").await?;
    let policy = auth::policy(state).await?;
    let can_maintain = auth::decide(&policy, caller, &mr.path, Need::Maintain).is_ok();
    frame.title = format!("!{id} {}", mr.title);
    frame.crumbs = crumbs(&mr.path);
    let mono = state.mono();
    let root = mono.root().await.map_err(repos::repo_error)?;
    let snapshot = repos::snapshot(state, root.id).await?;
    let (base, head, path) = (mr.base, mr.head, mr.path.clone());
    let (commits, files, data) = blocking(&snapshot, move |view| {
        let mut commits = Vec::new();
        let mut current = Some(head);
        while let Some(c) = current {
            if Some(c) == base || commits.len() >= 1000 {
                break;
            }
            let info = read_commit(view, &c)?;
            current = info.parents.first().copied();
            commits.push(commit_row(&path, c, &info));
        }
        let base_tree = match base {
            Some(b) => Some(read_commit(view, &b)?.tree),
            None => None,
        };
        let head_tree = read_commit(view, &head)?.tree;
        let data = data_changes(view, base_tree, Some(head_tree));
        Ok((commits, diff_pages(view, base_tree, Some(head_tree))?, data))
    })
    .await?;
    let approvals = crate::review::approvals(state, &mr).await?;
    let checks = state
        .store
        .checks(id, mr.head)
        .await?
        .into_iter()
        .map(|c| web::CheckView { name: c.name, state: c.state, url: c.url, description: c.description })
        .collect();
    let (required_checks, _) = state.store.required_checks(&mr.path).await?;
    let user = caller.user.as_ref().map(|u| u.name.clone());
    let comments = state
        .store
        .comments(id)
        .await?
        .into_iter()
        .map(|c| web::CommentView {
            when: crate::wire::rfc3339(c.created_at).replace('T', " ").trim_end_matches('Z').chars().take(16).collect(),
            place: c.file.map(|f| match c.line {
                Some(l) => format!("{f}:{l}"),
                None => f,
            }),
            author: c.author,
            body: c.body,
        })
        .collect();
    let page = web::Mr {
        can_approve: can_maintain && user.as_deref() != Some(mr.author.as_str()),
        required_approvals: approvals.required,
        approved_by: approvals.current,
        stale_approvals: approvals.stale.into_iter().map(|(u, _)| u).collect(),
        checks,
        required_checks,
        comments,
        id,
        title: mr.title.clone(),
        path: mr.path.clone(),
        branch: mr.branch.clone(),
        status: mr.status.as_str().to_string(),
        author: mr.author.clone(),
        conflicts: mr.conflicts.clone(),
        commits,
        data,
        files,
        can_maintain,
    };
    Ok(html(web::merge_request(frame, &page)))
}

/// `application/x-www-form-urlencoded` fields of a small form.
async fn form(state: &State, request: Request) -> Result<HashMap<String, String>, HttpError> {
    let body = crate::wire::read_body(request, 64 << 10, state.config.request_timeout_secs).await?;
    let text = String::from_utf8_lossy(&body);
    Ok(crate::wire::query_pairs(&text).into_iter().collect())
}

fn secure(state: &State, headers: &HeaderMap) -> bool {
    state.config.http_url().starts_with("https://")
        || headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https")
}

async fn post(
    state: &State,
    caller: &Caller,
    csrf: Option<&str>,
    path: &str,
    request: Request,
) -> Result<Response, HttpError> {
    let headers = request.headers().clone();
    let secure = secure(state, &headers);
    let fields = form(state, request).await?;
    if path == "/-/login" {
        let user = fields.get("user").cloned().unwrap_or_default();
        let secret = fields.get("secret").cloned().unwrap_or_default();
        let next =
            fields.get("next").filter(|n| n.starts_with('/') && !n.starts_with("//")).cloned().unwrap_or("/".into());
        let signed_in = auth::sign_in(state, &user, &secret).await;
        let (user, scope) = match signed_in {
            Ok(ok) => ok,
            Err(e) => {
                let frame = web::Frame { title: "Sign in".into(), ..Default::default() };
                let mut r = (StatusCode::UNAUTHORIZED, web::login(&frame, Some(&e.message), &next)).into_response();
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
                return Ok(r);
            }
        };
        let token = auth::signed_token(state, &user, scope, SESSION_SECS).await?;
        let cookie = format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_SECS}{}",
            if secure { "; Secure" } else { "" }
        );
        let mut r = redirect(&next);
        r.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).map_err(|e| HttpError::internal("setting the session", e))?,
        );
        return Ok(r);
    }
    // Every other form needs the session's CSRF token.
    let sent = fields.get("csrf").map(String::as_str);
    if caller.user.is_none() || csrf.is_none() || sent != csrf {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "the form is stale or not from this site: reload the page and try again",
        ));
    }
    if path == "/-/logout" {
        let cookie = format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
            if secure { "; Secure" } else { "" }
        );
        let mut r = redirect("/");
        r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("ascii"));
        return Ok(r);
    }
    let rest = path.strip_prefix("/-/mr/").unwrap_or("");
    let (id, action) = rest.split_once('/').ok_or_else(|| HttpError::not_found("no such form"))?;
    let id: i64 = id.parse().map_err(|_| HttpError::not_found("no such merge request"))?;
    match action {
        "merge" => {
            crate::api::merge_as(state, caller, id).await?;
        }
        "close" => {
            crate::api::set_status_as(state, caller, id, &[MrStatus::Open, MrStatus::Conflict], MrStatus::Closed)
                .await?;
        }
        "approve" => {
            crate::review::approve_as(state, caller, id).await?;
        }
        "comment" => {
            let body = fields.get("body").map(String::as_str).unwrap_or("");
            let file = fields.get("file").map(|f| f.trim()).filter(|f| !f.is_empty());
            let line = match fields.get("line").map(|l| l.trim()).filter(|l| !l.is_empty()) {
                Some(l) => Some(l.parse::<i64>().map_err(|_| HttpError::bad_request("the line must be a number"))?),
                None => None,
            };
            crate::review::comment_as(state, caller, id, body, file, line).await?;
        }
        _ => return Err(HttpError::not_found("no such form")),
    }
    Ok(redirect(&format!("/-/mr/{id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_at_the_first_dash_segment() {
        assert_eq!(split_url("/"), ("/".into(), None, String::new()));
        assert_eq!(split_url("/projects/x/"), ("/projects/x".into(), None, String::new()));
        assert_eq!(split_url("/-/tree/main/a"), ("/".into(), Some("tree".into()), "main/a".into()));
        assert_eq!(
            split_url("/projects/x/-/blob/feature/y/src/-/lib.rs"),
            ("/projects/x".into(), Some("blob".into()), "feature/y/src/-/lib.rs".into())
        );
        assert_eq!(split_url("/a%20b/-/refs"), ("/a b".into(), Some("refs".into()), String::new()));
    }
}

/// The caller of an API request and the repository it names. A
/// directory the caller can read only in part is refused unless the
/// answer filters by path (`partial_ok`).
async fn open_for_api(
    state: &State,
    headers: &HeaderMap,
    path: &str,
    partial_ok: bool,
) -> Result<(Caller, Repo), HttpError> {
    let caller = auth::caller(state, headers).await?;
    let repo = open(state, &caller, path).await?;
    if repo.partial && !partial_ok {
        let why = format!("{} holds directories you cannot read; ask for one of them", repo.path);
        return Err(HttpError::new(StatusCode::FORBIDDEN, why));
    }
    Ok((caller, repo))
}

/// The query of the data API.
#[derive(serde::Deserialize)]
pub(crate) struct DataQuery {
    path: String,
    #[serde(rename = "ref")]
    refname: Option<String>,
    table: Option<String>,
    page: Option<u64>,
    commit: Option<String>,
}

/// What the data pages show, as JSON, read by the same functions and
/// under the same permissions:
/// - `GET /api/v1/data?path=P[&ref=R]`: the tables of the export at `R`;
/// - `…&table=T[&page=N]`: a page of `T`'s rows;
/// - `GET /api/v1/data/changes?path=P&commit=C`: what `C` changed in each
///   table, row by row.
pub(crate) async fn data_json(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<DataQuery>,
    changes: bool,
) -> Result<axum::Json<serde_json::Value>, crate::error::ApiError> {
    use serde_json::json;
    let (_, repo) = open_for_api(&state, &headers, &q.path, false).await?;
    let refused = tessera_repo::Error::Refused;
    if changes {
        let id = q.commit.as_deref().ok_or_else(|| HttpError::bad_request("commit= is required"))?;
        let id =
            ObjectId::from_hex(id.as_bytes()).map_err(|_| HttpError::bad_request(format!("{id:?} is no commit id")))?;
        if repo.snapshot.index.objects.get(&id).is_none_or(|l| l.kind != Kind::Commit) {
            return Err(HttpError::not_found(format!("no commit {id} in {}", repo.path)).into());
        }
        let tables = blocking(&repo.snapshot, move |view| {
            let info = read_commit(view, &id)?;
            let parent = match info.parents.first() {
                Some(p) => Some(read_commit(view, p)?.tree),
                None => None,
            };
            Ok(data_changes(view, parent, Some(info.tree)))
        })
        .await?;
        let tables: Vec<serde_json::Value> = tables
            .into_iter()
            .map(|t| {
                let changed: Vec<serde_json::Value> = t
                    .changed
                    .iter()
                    .map(|r| {
                        let cells: Vec<serde_json::Value> = t
                            .header
                            .iter()
                            .zip(r.before.iter().zip(&r.row))
                            .filter_map(|(column, (before, after))| {
                                before.as_ref().map(|b| json!({ "column": column, "before": b, "after": after }))
                            })
                            .collect();
                        json!({ "row": r.row, "cells": cells })
                    })
                    .collect();
                json!({
                    "table": t.table,
                    "columns": t.columns.map(|(before, after)| json!({ "before": before, "after": after })),
                    "header": t.header,
                    "primary_key": t.key,
                    "added": t.added,
                    "deleted": t.deleted,
                    "changed": changed,
                    "counts": { "added": t.counts.0, "deleted": t.counts.1, "changed": t.counts.2 },
                    "truncated": t.truncated,
                    "note": t.note,
                })
            })
            .collect();
        return Ok(axum::Json(json!({ "path": repo.path, "commit": id.to_string(), "tables": tables })));
    }
    let head = short_ref(&repo.head).to_string();
    let (refname, commit, _) = resolve_rev(&repo, q.refname.as_deref().unwrap_or(&head))?;
    let (table, page) = (q.table.clone(), q.page.unwrap_or(0).min(1 << 40));
    let href_base = format!("{}/data/{}", web::views(&repo.path), web::url_path(&refname));
    let path = repo.path.clone();
    let body = blocking(&repo.snapshot, move |view| {
        let info = read_commit(view, &commit)?;
        let files = TreeFiles::new(view, info.tree);
        let export = datapages::load(&files)
            .map_err(refused)?
            .ok_or_else(|| refused(format!("no data export at {refname}: no {}", tessera_bridge::layout::MANIFEST)))?;
        let Some(table) = table else {
            let tables: Vec<serde_json::Value> = export
                .tables
                .iter()
                .map(|t| {
                    let columns: Vec<serde_json::Value> =
                        t.columns.iter().map(|c| json!({ "name": c.name, "type": c.declared_type })).collect();
                    json!({
                        "name": t.name,
                        "columns": columns,
                        "primary_key": t.primary_key,
                        "rows": t.rows,
                        "chunks": t.chunks.len(),
                        "bytes": t.chunks.iter().map(|c| c.bytes).sum::<u64>(),
                    })
                })
                .collect();
            let refused: Vec<serde_json::Value> =
                export.refused.iter().map(|(t, why)| json!({ "table": t, "reason": why })).collect();
            return Ok(json!({
                "path": path,
                "ref": refname,
                "commit": commit.to_string(),
                "source": { "engine": export.manifest.source.engine, "database": export.manifest.source.database },
                "tables": tables,
                "refused": refused,
            }));
        };
        let meta = export
            .tables
            .iter()
            .find(|t| t.name == table)
            .ok_or_else(|| refused(format!("no table {table:?} at {refname}")))?;
        let href = format!("{href_base}/{}", web::url_path(&table));
        let rows = datapages::rows_page(meta, page, &href, &files).map_err(refused)?;
        Ok(json!({
            "table": rows.table,
            "columns": rows.columns,
            "primary_key": rows.key,
            "offset": rows.first - 1,
            "total": rows.total,
            "rows": rows.rows,
            "more": rows.older.is_some(),
        }))
    })
    .await?;
    Ok(axum::Json(body))
}

/// The query of the repository read API.
#[derive(serde::Deserialize)]
pub(crate) struct RepoQuery {
    path: String,
    #[serde(rename = "ref")]
    refname: Option<String>,
    /// A directory (tree, commits) below the path.
    sub: Option<String>,
    file: Option<String>,
    id: Option<String>,
    page: Option<usize>,
    /// A path search's text.
    q: Option<String>,
}

/// What the pages show of a repository or directory, as JSON, through
/// the same reads and permissions:
/// - `GET /api/v1/refs?path=P`: branches and tags;
/// - `GET /api/v1/tree?path=P[&ref=R][&sub=S]`: a directory's entries;
/// - `GET /api/v1/blob?path=P[&ref=R]&file=F`: a file's id, size and, for
///   text up to 1 MiB, its content (bytes: `/-/raw/`);
/// - `GET /api/v1/commits?path=P[&ref=R][&sub=S][&page=N]`: history, 50
///   per page;
/// - `GET /api/v1/commit?path=P&id=C`: a commit and the files it changed.
pub(crate) async fn repo_json(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<RepoQuery>,
    what: &'static str,
) -> Result<axum::Json<serde_json::Value>, crate::error::ApiError> {
    use serde_json::json;
    let (caller, repo) = open_for_api(&state, &headers, &q.path, matches!(what, "tree" | "blob" | "search")).await?;
    let policy = auth::policy(&state).await?;
    let visible: Arc<dyn Fn(&str) -> bool + Send + Sync> = if repo.partial {
        let (user, root) = (caller.user.clone(), repo.path.clone());
        Arc::new(move |sub: &str| {
            let full = if root == "/" { format!("/{sub}") } else { format!("{root}/{sub}") };
            policy.level(user.as_ref(), &full).is_some()
        })
    } else {
        Arc::new(|_: &str| true)
    };
    let head = short_ref(&repo.head).to_string();
    let commit_of = |name: &str| -> Result<(String, ObjectId), HttpError> {
        match resolve_rev(&repo, name)? {
            (name, id, rest) if rest.is_empty() => Ok((name, id)),
            _ => Err(HttpError::not_found(format!("no branch, tag or commit {name:?} in {}", repo.path))),
        }
    };
    let path = repo.path.clone();
    let sub = q.sub.clone().unwrap_or_default().trim_matches('/').to_string();
    let body = match what {
        "refs" => {
            let list = |prefix: &str| -> Vec<serde_json::Value> {
                repo.refs
                    .iter()
                    .filter(|r| r.name.starts_with(prefix))
                    .map(|r| json!({ "name": short_ref(&r.name), "id": r.target.to_string() }))
                    .collect()
            };
            json!({ "path": path, "head": head, "branches": list("refs/heads/"), "tags": list("refs/tags/") })
        }
        "tree" => {
            let (refname, commit) = commit_of(q.refname.as_deref().unwrap_or(&head))?;
            if !sub.is_empty() && !visible(&sub) {
                return Err(HttpError::not_found(format!("no directory {sub:?} at {refname}")).into());
            }
            let base = web::views(&path);
            let entries = blocking(&repo.snapshot, move |view| {
                let info = read_commit(view, &commit)?;
                let tree = entry_at(view, info.tree, &sub)?
                    .ok_or_else(|| tessera_repo::Error::Refused(format!("no directory {sub:?} at {refname}")))?;
                let list = entries(view, tree, &base, &refname, &sub, &*visible)?;
                Ok(json!({
                    "path": path,
                    "ref": refname,
                    "commit": commit.to_string(),
                    "sub": sub,
                    "entries": list.iter().map(|e| json!({
                        "name": e.name,
                        "kind": match e.kind {
                            web::EntryKind::Dir => "dir",
                            web::EntryKind::File => "file",
                            web::EntryKind::Link => "link",
                            web::EntryKind::Submodule => "submodule",
                        },
                    })).collect::<Vec<_>>(),
                }))
            })
            .await?;
            entries
        }
        "blob" => {
            let (refname, commit) = commit_of(q.refname.as_deref().unwrap_or(&head))?;
            let file = q.file.clone().ok_or_else(|| HttpError::bad_request("file= is required"))?;
            if !visible(&file) {
                return Err(HttpError::not_found(format!("no file {file:?} at {refname}")).into());
            }
            let raw = format!("{}/raw/{}/{}", web::views(&path), web::url_path(&refname), web::url_path(&file));
            blocking(&repo.snapshot, move |view| {
                let info = read_commit(view, &commit)?;
                let id = entry_at(view, info.tree, &file)?
                    .ok_or_else(|| tessera_repo::Error::Refused(format!("no file {file:?} at {refname}")))?;
                let located = view.odb.index.objects.get(&id).map(|l| (l.kind, l.size));
                if located.is_some_and(|(kind, _)| kind != Kind::Blob) {
                    return Err(tessera_repo::Error::Refused(format!("{file:?} is not a file")));
                }
                let size = located.map_or(0, |(_, size)| size);
                let data = if size <= MAX_SHOWN_BLOB { Some(view.odb.read(&id)?.1) } else { None };
                let binary = data.as_ref().is_some_and(|d| d.iter().take(8000).any(|b| *b == 0));
                let text =
                    data.as_ref().filter(|_| !binary).and_then(|d| std::str::from_utf8(d).ok().map(str::to_string));
                Ok(json!({
                    "path": path, "ref": refname, "file": file, "id": id.to_string(), "size": size,
                    "binary": binary, "text": text, "raw": raw,
                }))
            })
            .await?
        }
        "search" => {
            let (refname, commit) = commit_of(q.refname.as_deref().unwrap_or(&head))?;
            let query = q.q.clone().unwrap_or_default();
            if query.trim().is_empty() {
                return Err(HttpError::bad_request("q= is required").into());
            }
            let base = web::views(&path);
            blocking(&repo.snapshot, move |view| {
                let info = read_commit(view, &commit)?;
                let (found, truncated) = find_paths(view, info.tree, &query, &base, &refname, &*visible)?;
                let paths: Vec<serde_json::Value> = found
                    .iter()
                    .map(|e| json!({ "path": e.name, "kind": if e.kind == web::EntryKind::Dir { "dir" } else { "file" } }))
                    .collect();
                Ok(json!({ "path": path, "ref": refname, "q": query, "paths": paths, "truncated": truncated }))
            })
            .await?
        }
        "commits" => {
            let (refname, commit) = commit_of(q.refname.as_deref().unwrap_or(&head))?;
            let page = q.page.unwrap_or(0).min(100_000);
            blocking(&repo.snapshot, move |view| {
                let (list, more) = history(view, commit, &sub, page * PAGE, PAGE)?;
                let commits: Vec<serde_json::Value> = list
                    .iter()
                    .map(|(id, info)| {
                        let row = commit_row(&path, *id, info);
                        json!({ "id": row.id, "title": row.title, "author": row.author, "date": row.date })
                    })
                    .collect();
                Ok(json!({ "path": path, "ref": refname, "sub": sub, "page": page, "commits": commits, "more": more }))
            })
            .await?
        }
        _ => {
            let id = q.id.as_deref().ok_or_else(|| HttpError::bad_request("id= is required"))?;
            let id = ObjectId::from_hex(id.as_bytes())
                .map_err(|_| HttpError::bad_request(format!("{id:?} is no commit id")))?;
            if repo.snapshot.index.objects.get(&id).is_none_or(|l| l.kind != Kind::Commit) {
                return Err(HttpError::not_found(format!("no commit {id} in {}", repo.path)).into());
            }
            blocking(&repo.snapshot, move |view| {
                let info = read_commit(view, &id)?;
                let parent_tree = match info.parents.first() {
                    Some(p) => Some(read_commit(view, p)?.tree),
                    None => None,
                };
                let files: Vec<serde_json::Value> = diff_pages(view, parent_tree, Some(info.tree))?
                    .iter()
                    .map(|f| json!({ "path": f.path, "status": f.status, "added": f.added, "removed": f.removed }))
                    .collect();
                let (author, authored) = person(&info.author);
                let (committer, committed) = person(&info.committer);
                Ok(json!({
                    "path": path,
                    "id": id.to_string(),
                    "tree": info.tree.to_string(),
                    "parents": info.parents.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    "author": { "name": author, "date": authored },
                    "committer": { "name": committer, "date": committed },
                    "message": info.message,
                    "files": files,
                }))
            })
            .await?
        }
    };
    Ok(axum::Json(body))
}
