//! Taking a push (`git-receive-pack`): the command list, the pack spooled to
//! disk and checked there, then one transaction that creates the repository
//! (for a new import path), stores the pack and moves the refs. A push to a
//! monorepo directory opens merge requests instead of moving refs.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use tessera_pack::{Kind, ObjectId};
use tessera_protocol::{receive, upload};
use tessera_repo::ingest::{self, Ingested};
use tessera_store::{failpoint, Destination, RefOutcome, RefUpdate, Repo, RepoKind};
use tokio::io::AsyncWriteExt;

use crate::auth::{self, Caller, Need};
use crate::error::HttpError;
use crate::repos::{self, Snapshot, Target};
use crate::wire::{err_packet, git_response, not_pushable};
use crate::State;

const RESULT: &str = "application/x-git-receive-pack-result";

/// What became of each command: `Ok` or the reason sent as `ng`.
type Results = Vec<(String, Result<(), String>)>;

/// Where a push's bytes come from: an HTTP request body, an SSH channel.
pub(crate) trait Input: Send {
    /// The next piece of the push; `None` when the client closed its side.
    fn next(&mut self) -> impl std::future::Future<Output = Result<Option<Bytes>, HttpError>> + Send;
}

/// An HTTP request body; every read waits at most `idle_secs`.
struct BodyInput {
    stream: axum::body::BodyDataStream,
    idle_secs: u64,
}

impl Input for BodyInput {
    async fn next(&mut self) -> Result<Option<Bytes>, HttpError> {
        match crate::serve::next_chunk(&mut self.stream, self.idle_secs).await? {
            Some(Ok(chunk)) => Ok(Some(chunk)),
            Some(Err(e)) => Err(HttpError::bad_request(format!("reading push: {e}"))),
            None => Ok(None),
        }
    }
}

/// Where a pack ends: with the input (HTTP: the request body ends with
/// it), or where its own framing says (SSH: the client may keep its side
/// open while it waits for the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PackEnds {
    AtEndOfInput,
    Framed,
}

pub(crate) async fn receive_pack(state: Arc<State>, raw_path: &str, request: Request) -> Result<Response, HttpError> {
    let caller = auth::require(&state, request.headers()).await?;
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_string();
    let path = repos::normalize(raw_path)?;
    let input =
        BodyInput { stream: request.into_body().into_data_stream(), idle_secs: state.config.request_timeout_secs };
    let body = receive(&state, &caller, &path, &host, input, PackEnds::AtEndOfInput).await;
    tessera_repo::memory::release_free_memory();
    let body = body?;
    Ok(git_response(RESULT, body))
}

/// Takes one push to `path` by `caller` from `input` (what follows the ref
/// advertisement) and returns what the client is sent back: messages and
/// the status report. Every transport's push comes here.
pub(crate) async fn receive(
    state: &State,
    caller: &Caller,
    path: &str,
    host: &str,
    mut input: impl Input,
    ends: PackEnds,
) -> Result<Vec<u8>, HttpError> {
    let who = caller.name().to_string();
    // A push to a lite view (`/-/blink/<dir>`) is one to `<dir>`, mapped.
    let lite = crate::blink::lite_dir(path);
    let path = lite.as_deref().unwrap_or(path);
    let policy = auth::policy(state).await?;
    if let Err(denied) = auth::decide(&policy, caller, path, Need::Write) {
        record_denied(state, &who, path, &denied).await;
        return Err(denied);
    }
    // Tags need maintain on the path (on `/` for the monorepo root).
    let may_tag = auth::decide(&policy, caller, path, Need::Maintain).is_ok();
    let target = match repos::resolve(state, path).await? {
        Some(Target::Dir { .. })
            if repos::under_import_root(state, path) && state.store.repo_by_path(path).await?.is_none() =>
        {
            None
        }
        other => other,
    };
    if target.is_none() && !repos::under_import_root(state, path) {
        return Err(not_pushable(path));
    }
    if let Err(refused) = refuse_target(state, path, &target).await {
        record_denied(state, &who, path, &refused).await;
        return Err(refused);
    }
    if lite.is_some() && !matches!(target, Some(Target::Dir { .. })) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            format!("{path} is not a monorepo directory: lite views take pushes only for directories"),
        ));
    }

    // Commands first, held in memory; the pack that follows goes to disk.
    // The list is parsed only once a flush packet (its end) has arrived, so
    // a long list sent in small pieces costs one pass, not one per piece.
    let mut head = Vec::new();
    let mut framing = receive::Framing::default();
    let req = loop {
        match framing.advance(&head) {
            Err(e) => return Ok(err_packet(&format!("bad push request: {e}"))),
            Ok(true) => match receive::parse(&head) {
                Ok(Some(req)) => break req,
                Ok(None) => {}
                Err(e) => return Ok(err_packet(&format!("bad push request: {e}"))),
            },
            Ok(false) => {}
        }
        if head.len() > 64 << 20 {
            return Err(HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, "push command list is too long"));
        }
        match input.next().await? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None if head.is_empty() && ends == PackEnds::Framed => {
                // The client hung up without a command (git does this when
                // nothing needs pushing): nothing to answer.
                return Ok(Vec::new());
            }
            None => return Ok(err_packet("push request ended inside its command list")),
        }
    };
    let spooled = state.store.pack_storage().new_spool().map_err(|e| HttpError::internal("creating spool file", e))?;
    let mut file =
        tokio::fs::File::from_std(spooled.reopen().map_err(|e| HttpError::internal("opening spool file", e))?);
    // Over a framed transport, reading stops where the pack ends (or at
    // once when no pack can follow: deletes only).
    let mut pack_end = match ends {
        PackEnds::Framed => Some(tessera_pack::stream::PackEnd::new()),
        PackEnds::AtEndOfInput => None,
    };
    let mut framing_error = None;
    let mut done = pack_end.is_some() && !req.expects_pack();
    let mut n_bytes = 0u64;
    let mut too_large = false;
    let mut piece = Bytes::copy_from_slice(&head[req.pack_offset..]);
    drop(head);
    let mut first = true;
    let mut spooling = false;
    while !done {
        if !first {
            match input.next().await? {
                Some(chunk) => piece = chunk,
                None => break,
            }
        }
        first = false;
        if let Some(end) = pack_end.as_mut() {
            match end.feed(&piece) {
                Ok(Some(used)) => {
                    piece.truncate(used);
                    done = true;
                }
                Ok(None) => {}
                Err(e) => {
                    framing_error = Some(e.to_string());
                    break;
                }
            }
        }
        n_bytes += piece.len() as u64;
        if n_bytes > state.config.max_push_bytes {
            too_large = true;
            break;
        }
        file.write_all(&piece).await.map_err(|e| HttpError::internal("spooling push", e))?;
        if !spooling {
            spooling = true;
            file.flush().await.map_err(|e| HttpError::internal("spooling push", e))?;
            failpoint("receive-upload");
        }
    }
    file.flush().await.map_err(|e| HttpError::internal("spooling push", e))?;
    drop(file);

    let push = Push {
        state,
        caller,
        req: &req,
        path,
        who: &who,
        may_tag,
        lite: lite.is_some(),
        spooled: spooled.path(),
        has_pack: n_bytes > 0,
    };
    let mut body = Vec::new();
    let (unpack, results) = if too_large {
        let reason = format!("push is over the limit of {} bytes", state.config.max_push_bytes);
        (Err(reason), unpacker_error(&req))
    } else if let Some(reason) = framing_error {
        (Err(reason), unpacker_error(&req))
    } else {
        match target {
            Some(Target::Dir { root, path: dir }) => push.to_directory(&root, &dir, host, &mut body).await?,
            Some(Target::Import(repo)) | Some(Target::Root(repo)) => push.to_repository(Some(repo), &mut body).await?,
            None => push.to_repository(None, &mut body).await?,
        }
    };
    if let Ok(ingested) = &unpack {
        if !ingested.fsck.is_empty() {
            let text = format!(
                "tessera: accepted objects with findings git's fsck reports (set their severity with [fsck] in tessera.toml): {}\n",
                ingested.fsck.summary()
            );
            body.extend(receive::message(&req, &text));
        }
    }
    record(state, &who, path, &unpack, &results).await;
    body.extend(receive::report(&req, unpack.map(|_| ()), &results));
    // The spool file (already moved into storage if the pack was kept) is
    // unlocked only now, after the transaction that stored it.
    drop(spooled);
    Ok(body)
}

/// Pushes no permission allows: a repository inside an import repository,
/// and merge requests on import directories. Checked when the client asks
/// for the refs (where git shows the message) and again on the push.
pub(crate) async fn refuse_target(state: &State, path: &str, target: &Option<Target>) -> Result<(), HttpError> {
    match target {
        None => {
            if let Some(outer) = repos::enclosing_import(state, path).await? {
                return Err(HttpError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "{path} is inside import repository {outer}; a repository cannot be created inside another"
                    ),
                ));
            }
        }
        Some(target @ Target::Dir { root, path: dir }) => {
            if let Some(reason) = repos::merge_requests_refused(state, dir).await? {
                return Err(HttpError::new(StatusCode::FORBIDDEN, reason));
            }
            // A push creates a directory only inside one that exists.
            let parent = match dir.rsplit_once('/') {
                Some(("", _)) | None => "/".to_string(),
                Some((parent, _)) => parent.to_string(),
            };
            if parent != "/" && repos::read_view(state, target).await?.is_none() {
                let parent_target = Target::Dir { root: root.clone(), path: parent.clone() };
                if repos::read_view(state, &parent_target).await?.is_none() {
                    return Err(HttpError::not_found(format!(
                        "{parent} does not exist: a push creates a directory only inside an existing one \
                         (push to {parent} first, or to an import root such as /import/<name>)"
                    )));
                }
            }
        }
        Some(_) => {}
    }
    Ok(())
}

/// The audit log entry of a push refused before it was read.
pub(crate) async fn record_denied(state: &State, who: &str, path: &str, why: &HttpError) {
    if let Err(e) = state.store.audit(who, "push", Some(path), &why.message, "denied").await {
        tracing::error!("recording the refused push to {path} by {who} in the audit log: {e}");
    }
}

/// The audit log entry of a push: each command's outcome.
async fn record(state: &State, who: &str, path: &str, unpack: &Result<Ingested, String>, results: &Results) {
    const SHOWN: usize = 20;
    let mut detail: Vec<String> = results
        .iter()
        .take(SHOWN)
        .map(|(name, r)| match r {
            Ok(()) => format!("{name}: ok"),
            Err(reason) => format!("{name}: {reason}"),
        })
        .collect();
    if results.len() > SHOWN {
        detail.push(format!("and {} more", results.len() - SHOWN));
    }
    if let Err(reason) = unpack {
        detail.insert(0, format!("unpack: {reason}"));
    }
    let outcome = if results.iter().any(|(_, r)| r.is_ok()) { "ok" } else { "refused" };
    if let Err(e) = state.store.audit(who, "push", Some(path), &detail.join("; "), outcome).await {
        tracing::error!("recording the push to {path} by {who} in the audit log: {e}");
    }
}

fn unpacker_error(req: &receive::PushRequest) -> Results {
    req.commands.iter().map(|c| (c.name.clone(), Err("unpacker error".to_string()))).collect()
}

/// One push being applied.
struct Push<'a> {
    state: &'a State,
    caller: &'a Caller,
    req: &'a receive::PushRequest,
    path: &'a str,
    who: &'a str,
    /// Whether the pusher has maintain on the path, which tags need.
    may_tag: bool,
    /// Pushed to the directory's lite view: mapped to the full view first.
    lite: bool,
    spooled: &'a std::path::Path,
    has_pack: bool,
}

impl Push<'_> {
    /// Checks the spooled pack against `snapshot`, writing nothing; `None`
    /// when the push brought no pack (deletes only, or every object already
    /// here: the command checks find any object that is missing). An error
    /// is the reason the client sees as `unpack <reason>`.
    async fn check_pack(&self, snapshot: &Snapshot) -> Result<Option<ingest::Prepared>, String> {
        if !self.has_pack {
            return Ok(None);
        }
        failpoint("receive-ingest");
        match ingest::check(snapshot, self.spooled.to_path_buf(), &self.state.ingest).await {
            Ok(checked) => Ok(Some(ingest::prepare(snapshot, checked))),
            Err(e) => Err(self.refused(e)),
        }
    }

    /// What Git LFS asks of a push: the objects its new pointers name were
    /// uploaded (where the pusher can see them), and it changes no file
    /// someone else holds a lock on. `Some(reason)` refuses every command.
    async fn check_lfs(
        &self,
        snapshot: &Snapshot,
        prepared: &ingest::Prepared,
        updates: &[(Option<ObjectId>, Option<ObjectId>)],
    ) -> Result<Option<String>, HttpError> {
        let state = self.state;
        if state.config.lfs_verify_pushes {
            let mut missing = Vec::new();
            for pointer in &prepared.ingested.lfs_pointers {
                if state.store.lfs_visible(&pointer.oid, self.path).await? != Some(pointer.size) {
                    missing.push(pointer.oid.clone());
                }
            }
            if !missing.is_empty() {
                let shown: Vec<&str> = missing.iter().take(10).map(String::as_str).collect();
                let more = if missing.len() > 10 { format!(" and {} more", missing.len() - 10) } else { String::new() };
                return Ok(Some(format!(
                    "missing LFS objects: {}{more}; run `git lfs push --all` to this remote first",
                    shown.join(", ")
                )));
            }
        }
        let locked = crate::lfs::locked_by_others(state, self.who, self.path, prepared, snapshot, updates).await?;
        if !locked.is_empty() {
            return Ok(Some(format!("changes locked files: {}", locked.join(", "))));
        }
        Ok(None)
    }

    fn refused(&self, e: ingest::IngestError) -> String {
        tracing::warn!("push to {} by {} refused: {e}", self.path, self.who);
        e.to_string()
    }

    /// A push to an import repository (`repo`, or a new one at the push's
    /// path) or to the monorepo root (tags only): checked, then stored
    /// with its ref updates in one transaction.
    async fn to_repository(
        &self,
        mut repo: Option<Repo>,
        messages: &mut Vec<u8>,
    ) -> Result<(Result<Ingested, String>, Results), HttpError> {
        let state = self.state;
        // Twice at most: a new path another process created meanwhile is
        // checked again against what that repository holds.
        for attempt in 0..2 {
            let snapshot = match &repo {
                Some(r) => repos::snapshot(state, r.id).await?,
                None => Snapshot::empty(),
            };
            let prepared = match self.check_pack(&snapshot).await {
                Ok(prepared) => prepared,
                Err(reason) => return Ok((Err(reason), unpacker_error(self.req))),
            };
            let nothing = Ingested::default();
            let ingested = prepared.as_ref().map_or(&nothing, |p| &p.ingested);
            let kind = repo.as_ref().map_or(RepoKind::Import, |r| r.kind);
            let tags = if self.may_tag { Ok(()) } else { Err(self.path) };
            let verdicts = check_commands(kind, self.req, ingested, &snapshot, tags);
            let atomic = self.req.atomic();
            let updates: Vec<RefUpdate> = verdicts.iter().filter_map(|(_, v)| v.as_ref().ok().cloned()).collect();
            if updates.is_empty() || (atomic && updates.len() < verdicts.len()) {
                // Nothing would move: nothing is stored.
                // The only accepted commands here are those of a failed
                // atomic push.
                let results = verdicts
                    .into_iter()
                    .map(|(name, v)| (name, v.and_then(|_| Err("atomic push failed".to_string()))))
                    .collect();
                let ingested = prepared.map(|p| p.ingested).unwrap_or_default();
                return Ok((Ok(ingested), results));
            }
            if let Some(p) = &prepared {
                let pairs: Vec<_> = updates.iter().map(|u| (u.old, u.new)).collect();
                if let Some(reason) = self.check_lfs(&snapshot, p, &pairs).await? {
                    let results = verdicts.into_iter().map(|(name, _)| (name, Err(reason.clone()))).collect();
                    return Ok((Ok(prepared.map(|p| p.ingested).unwrap_or_default()), results));
                }
            }
            let head = default_head(&verdicts);
            let destination = match &repo {
                Some(r) => Destination::Repo(r.id),
                None => Destination::New { path: self.path, kind: RepoKind::Import, head: &head },
            };
            let received =
                match state.store.receive(destination, prepared.as_ref().map(|p| p.to_store()), &updates, atomic).await
                {
                    Ok(received) => received,
                    Err(tessera_store::Error::RepoExists(_)) if attempt == 0 => {
                        repo = Some(repos::find(state, self.path).await?);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
            let mut outcomes = received.outcomes.into_iter();
            let results: Results = verdicts
                .into_iter()
                .map(|(name, verdict)| {
                    let result = match verdict {
                        Err(reason) => Err(reason),
                        Ok(_) => match outcomes.next() {
                            Some(RefOutcome::Updated) => Ok(()),
                            Some(RefOutcome::Rejected(reason)) => Err(reason),
                            None => Err("not applied".into()),
                        },
                    };
                    (name, result)
                })
                .collect();
            let mut ingested = prepared.map(|p| p.ingested).unwrap_or_default();
            ingested.pack_id = received.pack_id;
            let repo = match repo {
                Some(r) => r,
                None => {
                    Repo { id: received.repo_id, path: self.path.to_string(), kind: RepoKind::Import, head, version: 0 }
                }
            };
            if results.iter().any(|(_, r)| r.is_ok()) {
                fix_head(state, &repo, &results, self.req).await?;
                failpoint("receive-sync");
                if repo.kind == RepoKind::Import {
                    sync_import(state, &repo, &results, &ingested, self.req, messages).await;
                }
                let updated = results.iter().filter(|(_, r)| r.is_ok()).count();
                let id = |o: &Option<ObjectId>| o.map(|i| i.to_string());
                let moved: Vec<serde_json::Value> = results
                    .iter()
                    .filter(|(_, r)| r.is_ok())
                    .filter_map(|(name, _)| self.req.commands.iter().find(|c| &c.name == name))
                    .map(|c| serde_json::json!({ "ref": c.name, "before": id(&c.old), "after": id(&c.new) }))
                    .collect();
                let event = serde_json::json!({ "pusher": self.who, "refs": moved });
                crate::hooks::emit(state, self.path, "push", event).await;
                let summary = format!("tessera: {updated} ref(s) updated in {}\n", self.path);
                messages.extend(receive::progress(self.req, &summary));
            }
            return Ok((Ok(ingested), results));
        }
        unreachable!("the second attempt returns")
    }

    /// A push to a monorepo directory: the objects go to the monorepo's
    /// store, and each accepted branch update opens (or updates) a merge
    /// request; `main` itself does not move.
    async fn to_directory(
        &self,
        root: &Repo,
        dir: &str,
        host: &str,
        messages: &mut Vec<u8>,
    ) -> Result<(Result<Ingested, String>, Results), HttpError> {
        let state = self.state;
        // Commands no merge request can come of are refused before the
        // pack is stored: no ref would ever reach it.
        let verdicts: Vec<Result<ObjectId, String>> =
            self.req.commands.iter().map(|c| mr_command(dir, &c.name, c.new)).collect();
        if verdicts.iter().all(Result::is_err) {
            let results =
                self.req.commands.iter().zip(verdicts).map(|(c, v)| (c.name.clone(), v.map(|_| ()))).collect();
            return Ok((Ok(Ingested::default()), results));
        }
        let snapshot = repos::snapshot(state, root.id).await?;
        let prepared = match self.check_pack(&snapshot).await {
            Ok(prepared) => prepared,
            Err(reason) => return Ok((Err(reason), unpacker_error(self.req))),
        };
        if self.lite {
            return self.to_lite_directory(root, dir, host, prepared, &snapshot, verdicts, messages).await;
        }
        // Each proposed head must be able to open a merge request before
        // anything is stored ("nothing new", "does not build on ...").
        let pushed = prepared.as_ref().map(|p| p.commit_parents()).unwrap_or_default();
        let mono = state.mono();
        let mut verdicts = verdicts;
        for verdict in verdicts.iter_mut() {
            if let Ok(new) = verdict {
                match mono.check_mr(dir, *new, &pushed).await {
                    Ok(()) => {}
                    Err(tessera_repo::Error::Refused(reason)) => *verdict = Err(reason),
                    Err(e) => return Err(repos::repo_error(e)),
                }
            }
        }
        let nothing = || Ingested::default();
        if verdicts.iter().all(Result::is_err) {
            let ingested = prepared.map(|p| p.ingested).unwrap_or_else(nothing);
            let results =
                self.req.commands.iter().zip(verdicts).map(|(c, v)| (c.name.clone(), v.map(|_| ()))).collect();
            return Ok((Ok(ingested), results));
        }
        let ingested = match self.store_for_directory(root, &snapshot, prepared, &verdicts).await? {
            Ok(ingested) => ingested,
            Err(answer) => return Ok(answer),
        };
        failpoint("receive-ref-update");
        let results = open_merge_requests(state, self.req, dir, &verdicts, self.who, host, messages).await;
        Ok((Ok(ingested), results))
    }

    /// A directory push's pack, after the LFS checks of the commands that
    /// may open merge requests (`verdicts`), stored in the monorepo; `Err`
    /// is the answer to send instead (every command refused, or the
    /// unpack error).
    async fn store_for_directory(
        &self,
        root: &Repo,
        snapshot: &Snapshot,
        prepared: Option<ingest::Prepared>,
        verdicts: &[Result<ObjectId, String>],
    ) -> Result<Result<Ingested, (Result<Ingested, String>, Results)>, HttpError> {
        let Some(prepared) = prepared else { return Ok(Ok(Ingested::default())) };
        let pairs: Vec<_> = self
            .req
            .commands
            .iter()
            .zip(verdicts)
            .filter_map(|(c, v)| v.as_ref().ok().map(|new| (c.old, Some(*new))))
            .collect();
        if let Some(reason) = self.check_lfs(snapshot, &prepared, &pairs).await? {
            let results = self.req.commands.iter().map(|c| (c.name.clone(), Err(reason.clone()))).collect();
            return Ok(Err((Ok(prepared.ingested), results)));
        }
        Ok(match prepared.store(&self.state.store, root.id).await {
            Ok(ingested) => Ok(ingested),
            Err(e) => Err((Err(self.refused(e)), unpacker_error(self.req))),
        })
    }

    /// A push to the lite view of directory `dir`: the checked pack is
    /// stored (a lite view's objects, reachable from no ref), its commits
    /// are mapped to the full view, and the full heads open merge requests
    /// as a push of them to `dir` would.
    #[allow(clippy::too_many_arguments)]
    async fn to_lite_directory(
        &self,
        root: &Repo,
        dir: &str,
        host: &str,
        prepared: Option<ingest::Prepared>,
        snapshot: &Snapshot,
        verdicts: Vec<Result<ObjectId, String>>,
        messages: &mut Vec<u8>,
    ) -> Result<(Result<Ingested, String>, Results), HttpError> {
        let state = self.state;
        let pushed = prepared.as_ref().map(|p| p.commit_parents()).unwrap_or_default();
        let ingested = match self.store_for_directory(root, snapshot, prepared, &verdicts).await? {
            Ok(ingested) => ingested,
            Err(answer) => return Ok(answer),
        };
        let mut verdicts = crate::blink::map_push(state, self.caller, root, dir, &pushed, &verdicts).await?;
        let mono = state.mono();
        let nothing_pushed = std::collections::HashMap::new();
        for verdict in verdicts.iter_mut() {
            if let Ok(new) = verdict {
                match mono.check_mr(dir, *new, &nothing_pushed).await {
                    Ok(()) => {}
                    Err(tessera_repo::Error::Refused(reason)) => *verdict = Err(reason),
                    Err(e) => return Err(repos::repo_error(e)),
                }
            }
        }
        failpoint("receive-ref-update");
        let results = open_merge_requests(state, self.req, dir, &verdicts, self.who, host, messages).await;
        Ok((Ok(ingested), results))
    }
}

/// The branch a repository created by this push names as HEAD: `main` or
/// `master` if pushed, else the first branch pushed.
fn default_head(verdicts: &[(String, Result<RefUpdate, String>)]) -> String {
    let pushed: Vec<&str> = verdicts
        .iter()
        .filter(|(name, v)| name.starts_with("refs/heads/") && v.as_ref().is_ok_and(|u| u.new.is_some()))
        .map(|(name, _)| name.as_str())
        .collect();
    ["refs/heads/main", "refs/heads/master"]
        .into_iter()
        .find(|n| pushed.contains(n))
        .or_else(|| pushed.first().copied())
        .unwrap_or("refs/heads/main")
        .to_string()
}

/// Checks each command against the pushed objects and `snapshot`: a valid
/// name, named once, pointing at an object of the right kind that exists.
fn check_commands(
    kind: RepoKind,
    req: &receive::PushRequest,
    ingested: &Ingested,
    snapshot: &Snapshot,
    tags: Result<(), &str>,
) -> Vec<(String, Result<RefUpdate, String>)> {
    let kind_of =
        |id: &ObjectId| ingested.kinds.get(id).copied().or_else(|| snapshot.index.objects.get(id).map(|l| l.kind));
    let mut seen = HashSet::new();
    req.commands
        .iter()
        .map(|c| {
            let verdict = (|| {
                if !receive::valid_ref_name(&c.name) {
                    return Err("invalid ref name".to_string());
                }
                if kind == RepoKind::Mono && !c.name.starts_with("refs/tags/") {
                    return Err(
                        "the monorepo root's branches move only by merge requests; push tags here, or push to a directory"
                            .to_string(),
                    );
                }
                if let (true, Err(path)) = (c.name.starts_with("refs/tags/"), tags) {
                    return Err(format!("pushing tags to {path} needs maintain access"));
                }
                if !seen.insert(c.name.clone()) {
                    return Err("ref named twice in one push".to_string());
                }
                let mut peeled = None;
                if let Some(new) = c.new {
                    let kind = kind_of(&new).ok_or("missing necessary objects")?;
                    if c.name.starts_with("refs/heads/") && kind != Kind::Commit {
                        return Err("non-commit object on a branch".to_string());
                    }
                    if kind == Kind::Tag {
                        peeled = Some(peel(snapshot, ingested, new)?);
                    }
                }
                Ok(RefUpdate { name: c.name.clone(), old: c.old, new: c.new, peeled })
            })();
            (c.name.clone(), verdict)
        })
        .collect()
}

/// A push to a monorepo directory: each accepted branch update opens (or
/// updates) a merge request; `main` itself does not move.
async fn open_merge_requests(
    state: &State,
    req: &receive::PushRequest,
    dir: &str,
    verdicts: &[Result<ObjectId, String>],
    who: &str,
    host: &str,
    messages: &mut Vec<u8>,
) -> Vec<(String, Result<(), String>)> {
    let mono = state.mono();
    let mut results = Vec::new();
    for (c, verdict) in req.commands.iter().zip(verdicts) {
        let result = match verdict.clone() {
            Err(reason) => Err(reason),
            Ok(new) => match mono.open_mr(dir, &c.name, new, who).await {
                Ok((mr, created)) => {
                    let verb = if created { "opened" } else { "updated" };
                    let mut event = crate::hooks::mr_event(&mr);
                    event["pusher"] = serde_json::json!(who);
                    crate::hooks::emit(state, dir, &format!("mr.{verb}"), event).await;
                    let next = if c.name == tessera_repo::monorepo::MAIN {
                        "your origin/main now shows your push, but the server's main moves only with the merge; \
                         after it, run `git pull --rebase` to get main as merged"
                    } else {
                        "after it is merged, run `git pull --rebase origin main` to get main as merged"
                    };
                    let text = format!(
                        "tessera: merge request !{} {verb} for {dir}: http://{host}/api/v1/mr/{}\ntessera: {next}\n",
                        mr.id, mr.id
                    );
                    messages.extend(receive::message(req, &text));
                    Ok(())
                }
                Err(tessera_repo::Error::Refused(reason)) => Err(reason),
                Err(e) => {
                    tracing::error!("opening a merge request for {dir}: {e}");
                    Err("internal error opening the merge request".to_string())
                }
            },
        };
        results.push((c.name.clone(), result));
    }
    results
}

/// The commit a push command to monorepo directory `dir` proposes, or why
/// it cannot open a merge request.
fn mr_command(dir: &str, name: &str, new: Option<ObjectId>) -> Result<ObjectId, String> {
    let for_main = name == tessera_repo::monorepo::MAIN || name.starts_with("refs/for/");
    match (new, for_main) {
        (_, false) => Err(format!("only main (or refs/for/main) can be pushed to monorepo directory {dir}")),
        (None, true) => Err("monorepo directories cannot be deleted by a push".to_string()),
        (Some(new), true) => Ok(new),
    }
}

/// After a push to an import repository moved its default branch, mounts
/// the new tree in the monorepo root.
async fn sync_import(
    state: &State,
    repo: &Repo,
    results: &[(String, Result<(), String>)],
    ingested: &Ingested,
    req: &receive::PushRequest,
    messages: &mut Vec<u8>,
) {
    let Ok(Some(repo)) = state.store.repo_by_path(&repo.path).await else { return };
    let moved = results.iter().any(|(name, r)| r.is_ok() && *name == repo.head);
    if !moved {
        return;
    }
    let Ok(refs) = state.store.list_refs(repo.id).await else { return };
    let Some(head) = refs.iter().find(|r| r.name == repo.head).map(|r| r.target) else { return };
    let mono = state.mono();
    match mono.sync_import(&repo, ingested.pack_id, head).await {
        Ok(root) => messages.extend(receive::message(
            req,
            &format!("tessera: monorepo root {root} now holds {} at {head}\n", repo.path),
        )),
        Err(e) => tracing::error!("syncing {} into the monorepo: {e}", repo.path),
    }
}

/// Points HEAD at a pushed branch when the one it names does not exist.
async fn fix_head(
    state: &State,
    repo: &Repo,
    results: &[(String, Result<(), String>)],
    req: &receive::PushRequest,
) -> Result<(), HttpError> {
    let refs = state.store.list_refs(repo.id).await?;
    if refs.iter().any(|r| r.name == repo.head) {
        return Ok(());
    }
    let pushed: Vec<&str> = results
        .iter()
        .filter(|(name, r)| {
            r.is_ok()
                && name.starts_with("refs/heads/")
                && req.commands.iter().any(|c| &c.name == name && c.new.is_some())
        })
        .map(|(name, _)| name.as_str())
        .collect();
    let choice = ["refs/heads/main", "refs/heads/master"]
        .into_iter()
        .find(|n| pushed.contains(n))
        .or_else(|| pushed.first().copied())
        .or_else(|| refs.iter().map(|r| r.name.as_str()).find(|n| n.starts_with("refs/heads/")));
    if let Some(head) = choice {
        state.store.set_head(repo.id, head).await?;
    }
    Ok(())
}

/// Follows a tag chain to the first non-tag object.
fn peel(snapshot: &Snapshot, ingested: &Ingested, mut id: ObjectId) -> Result<ObjectId, String> {
    let odb = snapshot.odb();
    for _ in 0..64 {
        let target = match ingested.tag_targets.get(&id) {
            Some(t) => *t,
            None => match odb.read(&id) {
                Ok((Kind::Tag, data)) => upload::tag_target(&data).ok_or("malformed tag")?,
                Ok(_) => return Ok(id),
                Err(_) => return Err("missing necessary objects".into()),
            },
        };
        let target_kind =
            ingested.kinds.get(&target).copied().or_else(|| snapshot.index.objects.get(&target).map(|l| l.kind));
        match target_kind {
            Some(Kind::Tag) => id = target,
            Some(_) => return Ok(target),
            None => return Err("missing necessary objects".into()),
        }
    }
    Err("tag chain too deep".into())
}
