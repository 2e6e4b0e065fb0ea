//! The smart HTTP endpoints: `info/refs`, `git-upload-pack`, `git-receive-pack`.

use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use tessera_pack::{Kind, ObjectId};
use tessera_pktline::{self as pkt, Packet};
use tessera_protocol::advertise::{self, LsRefs, Service};
use tessera_protocol::{receive, upload};
use tessera_store::{RefOutcome, RefUpdate, Repo, RepoKind};
use tokio::io::AsyncWriteExt;

use crate::error::HttpError;
use crate::repos::{self, Snapshot, Target};
use crate::{auth, State};
use tessera_repo::ingest as push;
use tessera_repo::monorepo::Monorepo;

pub fn router(state: Arc<State>) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(AxState(state): AxState<Arc<State>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let method = request.method().clone();
    let get = method == Method::GET;
    let post = method == Method::POST;
    let result = if let (true, Some(repo)) = (get, path.strip_suffix("/info/refs")) {
        info_refs(&state, repo, &query, request.headers()).await
    } else if let (true, Some(repo)) = (post, path.strip_suffix("/git-upload-pack")) {
        upload_pack(state.clone(), repo, request).await
    } else if let (true, Some(repo)) = (post, path.strip_suffix("/git-receive-pack")) {
        receive_pack(state.clone(), repo, request).await
    } else if method == Method::GET && (path == "/" || path == "/health") {
        Ok((StatusCode::OK, "tessera git server\n").into_response())
    } else {
        Err(HttpError::not_found(format!("no such endpoint: {method} {path}")))
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Whether the client asked for protocol `version=N` in `Git-Protocol`.
fn asks_protocol(headers: &HeaderMap, n: u8) -> bool {
    let wanted = format!("version={n}");
    headers
        .get("git-protocol")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').any(|p| p.trim() == wanted))
        .unwrap_or(false)
}

fn protocol_v2(headers: &HeaderMap) -> bool {
    asks_protocol(headers, 2)
}

fn git_response(content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut res = Response::new(body.into());
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, max-age=0, must-revalidate"));
    res
}

async fn info_refs(state: &State, raw_path: &str, query: &str, headers: &HeaderMap) -> Result<Response, HttpError> {
    let service = match query.split('&').find_map(|kv| kv.strip_prefix("service=")) {
        Some("git-upload-pack") => Service::UploadPack,
        Some("git-receive-pack") => Service::ReceivePack,
        _ => {
            return Err(HttpError::new(
                StatusCode::FORBIDDEN,
                "only the smart HTTP protocol is served (service=git-upload-pack or git-receive-pack)",
            ))
        }
    };
    let path = repos::normalize(raw_path)?;
    match service {
        Service::UploadPack => auth::require_read(state, headers).await?,
        Service::ReceivePack => {
            auth::require(state, headers).await?;
        }
    }
    let target = repos::resolve(state, &path).await?;
    let (refs, head) = match (&target, service) {
        (None, Service::ReceivePack) if repos::under_import_root(state, &path) => {
            (Vec::new(), "refs/heads/main".to_string())
        }
        (None, _) => return Err(HttpError::not_found(format!("repository {path} not found"))),
        (Some(target @ Target::Dir { .. }), Service::ReceivePack) => match repos::read_view(state, target).await? {
            Some((refs, head, _)) => (refs, head),
            // A new directory: the push opens a merge request that creates it.
            None => (Vec::new(), "refs/heads/main".to_string()),
        },
        (Some(target), _) => match repos::read_view(state, target).await? {
            Some((refs, head, _)) => (refs, head),
            None => {
                return Err(HttpError::not_found(format!(
                    "{path} is neither a repository nor a directory of the monorepo"
                )))
            }
        },
    };
    let head_id = refs.iter().find(|r| r.name == head).map(|r| r.target);
    let content_type = match service {
        Service::UploadPack => "application/x-git-upload-pack-advertisement",
        Service::ReceivePack => "application/x-git-receive-pack-advertisement",
    };
    let body = if service == Service::UploadPack && protocol_v2(headers) {
        let mut out = Vec::new();
        pkt::write_line(&mut out, "# service=git-upload-pack");
        pkt::write_flush(&mut out);
        out.extend(advertise::v2_capabilities());
        out
    } else {
        advertise::v0(service, &refs, head_id.map(|id| (head.as_str(), id)), asks_protocol(headers, 1))
    };
    Ok(git_response(content_type, body))
}

fn not_pushable(path: &str) -> HttpError {
    HttpError::not_found(format!(
        "repository {path} not found; pushing creates repositories only under an import root such as /import/<name>"
    ))
}

/// Reads a whole request body up to `limit` bytes, un-gzipping if needed.
async fn read_body(request: Request, limit: usize) -> Result<Vec<u8>, HttpError> {
    let gzip = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.contains("gzip"))
        .unwrap_or(false);
    let mut stream = request.into_body().into_data_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| HttpError::bad_request(format!("reading request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is over the limit of {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|_| HttpError::bad_request("request body is not valid gzip"))?;
        if out.len() > limit {
            return Err(HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is over the limit of {limit} bytes"),
            ));
        }
        body = out;
    }
    Ok(body)
}

fn err_packet(message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    pkt::write_line(&mut out, format!("ERR {message}"));
    out
}

/// Runs `work` on a blocking thread, streaming what it sinks as the
/// response body. An error before any output becomes an `ERR` packet; after
/// output began, a side-band error message.
fn stream_response(
    content_type: &'static str,
    sideband: bool,
    work: impl FnOnce(&mut upload::Sink<'_>) -> Result<(), upload::ServeError> + Send + 'static,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    tokio::task::spawn_blocking(move || {
        let mut started = false;
        let result = {
            let mut sink = |bytes: Vec<u8>| {
                started = true;
                tx.blocking_send(bytes)
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
            };
            work(&mut sink)
        };
        if let Err(e) = result {
            tracing::warn!("upload-pack failed: {e}");
            let message = e.to_string();
            let out = if !started {
                err_packet(&message)
            } else if sideband {
                let mut out = Vec::new();
                pkt::sideband(&mut out, pkt::Channel::Error, format!("{message}\n").as_bytes());
                out
            } else {
                Vec::new()
            };
            let _ = tx.blocking_send(out);
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(Bytes::from(b)), rx))
    });
    git_response(content_type, Body::from_stream(stream))
}

async fn upload_pack(state: Arc<State>, raw_path: &str, request: Request) -> Result<Response, HttpError> {
    const RESULT: &str = "application/x-git-upload-pack-result";
    auth::require_read(&state, request.headers()).await?;
    let path = repos::normalize(raw_path)?;
    let target = repos::resolve(&state, &path)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("repository {path} not found")))?;
    let (refs, head, snapshot) = repos::read_view(&state, &target).await?.ok_or_else(|| {
        HttpError::not_found(format!("{path} is neither a repository nor a directory of the monorepo"))
    })?;
    let v2 = protocol_v2(request.headers());
    let body = read_body(request, state.config.max_request_bytes).await?;
    let max_objects = state.config.max_clone_objects;

    if !v2 {
        let req = match upload::parse_v0(&body) {
            Ok(r) => r,
            Err(e) => return Ok(git_response(RESULT, err_packet(&e.to_string()))),
        };
        let sideband = req.caps.contains("side-band-64k") || req.caps.contains("side-band");
        return Ok(stream_response(RESULT, sideband, move |sink| {
            let odb = snapshot.odb();
            upload::Upload { odb: &odb, refs: &refs, max_pack_objects: max_objects }.respond_v0(&req, sink)
        }));
    }

    let (command, args) = match parse_v2_command(&body) {
        Ok(c) => c,
        Err(e) => return Ok(git_response(RESULT, err_packet(&e))),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match command.as_str() {
        "ls-refs" => {
            let ls = LsRefs::parse(&args);
            let id = refs.iter().find(|r| r.name == head).map(|r| r.target);
            Ok(git_response(RESULT, ls.respond(&refs, (&head, id))))
        }
        "fetch" => {
            let req = match upload::parse_v2_fetch(&args) {
                Ok(r) => r,
                Err(e) => return Ok(git_response(RESULT, err_packet(&e.to_string()))),
            };
            Ok(stream_response(RESULT, true, move |sink| {
                let odb = snapshot.odb();
                upload::Upload { odb: &odb, refs: &refs, max_pack_objects: max_objects }.respond_v2(req, sink)
            }))
        }
        other => Ok(git_response(RESULT, err_packet(&format!("unknown command {other:?}")))),
    }
}

/// Splits a v2 request into its command and argument lines.
fn parse_v2_command(body: &[u8]) -> Result<(String, Vec<String>), String> {
    let mut parser = pkt::Parser::new(body);
    let mut command = None;
    let mut args = Vec::new();
    let mut in_args = false;
    loop {
        match parser.next_packet().map_err(|e| e.to_string())? {
            None | Some(Packet::Flush) => break,
            Some(Packet::Delim) => in_args = true,
            Some(Packet::ResponseEnd) => return Err("unexpected response-end packet".into()),
            Some(p @ Packet::Data(_)) => {
                let line = String::from_utf8_lossy(p.line().unwrap_or_default()).into_owned();
                if in_args {
                    args.push(line);
                } else if let Some(c) = line.strip_prefix("command=") {
                    command = Some(c.to_string());
                }
            }
        }
    }
    Ok((command.ok_or("request names no command")?, args))
}

async fn receive_pack(state: Arc<State>, raw_path: &str, request: Request) -> Result<Response, HttpError> {
    const RESULT: &str = "application/x-git-receive-pack-result";
    let who = auth::require(&state, request.headers()).await?;
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_string();
    let path = repos::normalize(raw_path)?;
    let target = match repos::resolve(&state, &path).await? {
        Some(Target::Dir { .. })
            if repos::under_import_root(&state, &path) && state.store.repo_by_path(&path).await?.is_none() =>
        {
            None
        }
        other => other,
    };
    if target.is_none() && !repos::under_import_root(&state, &path) {
        return Err(not_pushable(&path));
    }

    // Commands first, held in memory; the pack that follows goes to disk.
    // The list is parsed only once a flush packet (its end) has arrived, so
    // a long list sent in small pieces costs one pass, not one per piece.
    let mut stream = request.into_body().into_data_stream();
    let mut head = Vec::new();
    let mut framing = receive::Framing::default();
    let req = loop {
        match framing.advance(&head) {
            Err(e) => return Ok(git_response(RESULT, err_packet(&format!("bad push request: {e}")))),
            Ok(true) => match receive::parse(&head) {
                Ok(Some(req)) => break req,
                Ok(None) => {}
                Err(e) => return Ok(git_response(RESULT, err_packet(&format!("bad push request: {e}")))),
            },
            Ok(false) => {}
        }
        if head.len() > 64 << 20 {
            return Err(HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, "push command list is too long"));
        }
        match stream.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(HttpError::bad_request(format!("reading push: {e}"))),
            None => return Ok(git_response(RESULT, err_packet("push request ended inside its command list"))),
        }
    };
    let spooled = state.store.pack_storage().new_spool().map_err(|e| HttpError::internal("creating spool file", e))?;
    let mut file =
        tokio::fs::File::from_std(spooled.reopen().map_err(|e| HttpError::internal("opening spool file", e))?);
    let mut n_bytes = (head.len() - req.pack_offset) as u64;
    file.write_all(&head[req.pack_offset..]).await.map_err(|e| HttpError::internal("spooling push", e))?;
    file.flush().await.map_err(|e| HttpError::internal("spooling push", e))?;
    failpoint("receive-upload");
    let mut too_large = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| HttpError::bad_request(format!("reading push: {e}")))?;
        n_bytes += chunk.len() as u64;
        if n_bytes > state.config.max_push_bytes {
            too_large = true;
            break;
        }
        file.write_all(&chunk).await.map_err(|e| HttpError::internal("spooling push", e))?;
    }
    file.flush().await.map_err(|e| HttpError::internal("spooling push", e))?;
    drop(file);

    // Where the objects go: the import repository, or the monorepo root;
    // a new import repository is created only for a pack that passed.
    let existing = match target {
        Some(Target::Import(repo)) | Some(Target::Root(repo)) => Some((repo, None)),
        Some(Target::Dir { root, path }) => Some((root, Some(path))),
        None => None,
    };
    let refused = |e: push::IngestError| {
        tracing::warn!("push to {path} by {who} refused: {e}");
        e.to_string()
    };
    // The snapshot the pack is checked against, and the ref checks after.
    let mut snapshot = match &existing {
        Some((repo, _)) => repos::snapshot(&state, repo.id).await?,
        None => Snapshot::empty(),
    };
    let checked: Result<Option<push::Checked>, String> = if too_large {
        Err(format!("push is over the limit of {} bytes", state.config.max_push_bytes))
    } else if n_bytes == 0 {
        // No pack (deletes only, or every object already here): the ref
        // checks below find any object that is missing.
        Ok(None)
    } else {
        failpoint("receive-ingest");
        push::check(&snapshot, spooled.path().to_path_buf(), &state.ingest).await.map(Some).map_err(refused)
    };
    let mut created = false;
    let (repo, directory) = match existing {
        Some(found) => found,
        None => {
            if let Err(reason) = &checked {
                let results: Vec<_> =
                    req.commands.iter().map(|c| (c.name.clone(), Err("unpacker error".to_string()))).collect();
                return Ok(git_response(RESULT, receive::report(&req, Err(reason.clone()), &results)));
            }
            match state.store.create_repo(&path, RepoKind::Import).await {
                Ok(repo) => {
                    created = true;
                    (repo, None)
                }
                Err(tessera_store::Error::RepoExists(_)) => (repos::find(&state, &path).await?, None),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let unpack: Result<push::Ingested, String> = match checked {
        Err(reason) => Err(reason),
        Ok(None) => Ok(push::Ingested::default()),
        // The snapshot is the repository's own unless the pack was checked
        // against the empty one of a repository not created yet.
        Ok(Some(checked)) if created || snapshot.index.repo_id == repo.id => {
            push::register(&state.store, repo.id, &snapshot, checked).await.map_err(refused)
        }
        Ok(Some(_)) => {
            // Another process created the repository meanwhile: check again
            // against what it holds.
            snapshot = repos::snapshot(&state, repo.id).await?;
            push::ingest(&state.store, repo.id, &snapshot, spooled.path().to_path_buf(), &state.ingest)
                .await
                .map_err(refused)
        }
    };
    failpoint("receive-ref-update");
    let mut body = Vec::new();
    let results = match (&unpack, directory) {
        (Err(_), _) => req.commands.iter().map(|c| (c.name.clone(), Err("unpacker error".to_string()))).collect(),
        (Ok(_), Some(dir)) => open_merge_requests(&state, &req, &dir, &who, &host, &mut body).await,
        (Ok(ingested), None) => {
            let results = update_refs(&state, &repo, &req, ingested, &snapshot).await?;
            if repo.kind == RepoKind::Import {
                sync_import(&state, &repo, &results, ingested, &req, &mut body).await;
            }
            results
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
    if unpack.is_ok() && results.iter().any(|(_, r)| r.is_ok()) {
        let summary =
            format!("tessera: {} ref(s) updated in {}\n", results.iter().filter(|(_, r)| r.is_ok()).count(), path);
        body.extend(receive::progress(&req, &summary));
    }
    // A repository this push created holds nothing unless a ref moved.
    if created && !results.iter().any(|(_, r)| r.is_ok()) {
        if let Err(e) = state.store.remove_repo_without_refs(repo.id).await {
            tracing::error!("removing the empty repository {path} a failed push created: {e}");
        }
    }
    body.extend(receive::report(&req, unpack.map(|_| ()), &results));
    Ok(git_response(RESULT, body))
}

/// Dies on the spot when `TESSERA_FAILPOINT` names `point`, so that crash
/// tests can kill the server at an exact step of a push. Never set in
/// production.
fn failpoint(point: &str) {
    if std::env::var_os("TESSERA_FAILPOINT").is_some_and(|v| v == point) {
        eprintln!("failpoint {point}: aborting");
        std::process::abort();
    }
}

/// A push to a monorepo directory: each accepted branch update opens (or
/// updates) a merge request; `main` itself does not move.
async fn open_merge_requests(
    state: &State,
    req: &receive::PushRequest,
    dir: &str,
    who: &str,
    host: &str,
    messages: &mut Vec<u8>,
) -> Vec<(String, Result<(), String>)> {
    let mono = Monorepo::new(&state.store, &state.snapshots);
    let mut results = Vec::new();
    for c in &req.commands {
        let for_main = c.name == tessera_repo::monorepo::MAIN || c.name.starts_with("refs/for/");
        let result = match (c.new, for_main) {
            (_, false) => Err(format!("only main (or refs/for/main) can be pushed to monorepo directory {dir}")),
            (None, true) => Err("monorepo directories cannot be deleted by a push".to_string()),
            (Some(new), true) => match mono.open_mr(dir, &c.name, new, who).await {
                Ok((mr, created)) => {
                    let verb = if created { "opened" } else { "updated" };
                    let text = format!(
                        "tessera: merge request !{} {verb} for {dir}: http://{host}/api/v1/mr/{}\ntessera: {} stays where it is until the merge request is merged\n",
                        mr.id, mr.id, c.name
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

/// After a push to an import repository moved its default branch, mounts
/// the new tree in the monorepo root.
async fn sync_import(
    state: &State,
    repo: &Repo,
    results: &[(String, Result<(), String>)],
    ingested: &push::Ingested,
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
    let mono = Monorepo::new(&state.store, &state.snapshots);
    match mono.sync_import(&repo, ingested.pack_id, head).await {
        Ok(root) => messages.extend(receive::message(
            req,
            &format!("tessera: monorepo root {root} now holds {} at {head}\n", repo.path),
        )),
        Err(e) => tracing::error!("syncing {} into the monorepo: {e}", repo.path),
    }
}

/// Checks each command, then moves the refs by compare-and-swap.
/// `snapshot` is the one the pack was checked against: with what the pack
/// added, it is all the checks need (refreshing it would reload every row
/// the push just wrote).
async fn update_refs(
    state: &State,
    repo: &Repo,
    req: &receive::PushRequest,
    ingested: &push::Ingested,
    snapshot: &Snapshot,
) -> Result<Vec<(String, Result<(), String>)>, HttpError> {
    let kind_of =
        |id: &ObjectId| ingested.kinds.get(id).copied().or_else(|| snapshot.index.objects.get(id).map(|l| l.kind));
    let mut checked: Vec<(String, Result<RefUpdate, String>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for c in &req.commands {
        let verdict = (|| {
            if !receive::valid_ref_name(&c.name) {
                return Err("invalid ref name".to_string());
            }
            if repo.kind == RepoKind::Mono && !c.name.starts_with("refs/tags/") {
                return Err(
                    "the monorepo root's branches move only by merge requests; push tags here, or push to a directory"
                        .to_string(),
                );
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
        checked.push((c.name.clone(), verdict));
    }
    let atomic = req.atomic();
    if atomic && checked.iter().any(|(_, v)| v.is_err()) {
        return Ok(checked
            .into_iter()
            .map(|(name, v)| (name, Err(v.err().unwrap_or_else(|| "atomic push failed".into()))))
            .collect());
    }
    let updates: Vec<RefUpdate> = checked.iter().filter_map(|(_, v)| v.as_ref().ok().cloned()).collect();
    let outcomes = state.store.update_refs(repo.id, &updates, atomic).await?;
    let mut outcomes = outcomes.into_iter();
    let mut results = Vec::new();
    for (name, verdict) in checked {
        let result = match verdict {
            Err(reason) => Err(reason),
            Ok(_) => match outcomes.next() {
                Some(RefOutcome::Updated) => Ok(()),
                Some(RefOutcome::Rejected(reason)) => Err(reason),
                None => Err("not applied".into()),
            },
        };
        results.push((name, result));
    }
    fix_head(state, repo, &results, req).await?;
    Ok(results)
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
fn peel(snapshot: &Snapshot, ingested: &push::Ingested, mut id: ObjectId) -> Result<ObjectId, String> {
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
