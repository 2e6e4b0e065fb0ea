//! The smart HTTP endpoints: `info/refs`, `git-upload-pack`, `git-receive-pack`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tessera_pktline::{self as pkt, Packet};
use tessera_protocol::advertise::{self, LsRefs, Service};
use tessera_protocol::upload;

use crate::auth::{self, Caller, Need};
use crate::error::HttpError;
use crate::repos::{self, Target};
use crate::wire::{err_packet, git_response, read_body};
use crate::State;

pub fn router(state: Arc<State>) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(AxState(state): AxState<Arc<State>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let method = request.method().clone();
    let get = method == Method::GET;
    let post = method == Method::POST;
    // `<repo>/info/lfs/...`: the Git LFS API of that repository or directory.
    if let Some(at) = path.find("/info/lfs").filter(|at| {
        let rest = &path[at + "/info/lfs".len()..];
        rest.is_empty() || rest.starts_with('/')
    }) {
        let (repo, rest) = (path[..at].to_string(), path[at + "/info/lfs".len()..].to_string());
        // A lite view's LFS objects are its directory's.
        let repo = crate::blink::lite_dir(&repo).unwrap_or(repo);
        let repo = if repo.is_empty() { "/".to_string() } else { repo };
        return crate::lfs::dispatch(state, &repo, &rest, request).await;
    }
    let result = if let (true, Some(repo)) = (get, path.strip_suffix("/info/refs")) {
        info_refs(&state, repo, &query, request.headers()).await
    } else if let (true, Some(repo)) = (post, path.strip_suffix("/git-upload-pack")) {
        upload_pack(state.clone(), repo, request).await
    } else if let (true, Some(repo)) = (post, path.strip_suffix("/git-receive-pack")) {
        crate::push::receive_pack(state.clone(), repo, request).await
    } else if let (true, Some((dir, id))) = (get, path.split_once("/-/blob-by-id/")) {
        match auth::caller(&state, request.headers()).await {
            Ok(caller) => crate::blink::blob_by_id(&state, &caller, dir, id).await,
            Err(e) => Err(e),
        }
    } else if method == Method::GET && path == "/health" {
        Ok((StatusCode::OK, "tessera git server\n").into_response())
    } else if crate::ui::is_ui(&method, &path) {
        return crate::ui::dispatch(state, request).await;
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
    let caller = match service {
        Service::UploadPack => auth::caller(state, headers).await?,
        Service::ReceivePack => auth::require(state, headers).await?,
    };
    let content_type = match service {
        Service::UploadPack => "application/x-git-upload-pack-advertisement",
        Service::ReceivePack => "application/x-git-receive-pack-advertisement",
    };
    let mut body = Vec::new();
    pkt::write_line(&mut body, format!("# service={}", service.name()));
    pkt::write_flush(&mut body);
    if service == Service::UploadPack && protocol_v2(headers) {
        upload_view(state, &caller, &path).await?;
        body.extend(advertise::v2_capabilities());
    } else {
        body.extend(advertisement(state, &caller, &path, service, asks_protocol(headers, 1)).await?);
    }
    Ok(git_response(content_type, body))
}

/// The v0/v1 ref advertisement of `service` at `path` for `caller`, after
/// the permission checks (the HTTP banner is the caller's to add). Every
/// transport starts here.
pub(crate) async fn advertisement(
    state: &State,
    caller: &Caller,
    path: &str,
    service: Service,
    version_1: bool,
) -> Result<Vec<u8>, HttpError> {
    // The lite view of a directory has that directory's permissions.
    let lite = crate::blink::lite_dir(path);
    let path = lite.as_deref().unwrap_or(path);
    // Permissions first, so that a path the caller may not read looks the
    // same whether it exists or not.
    match service {
        Service::UploadPack => auth::check(state, caller, path, Need::Read).await?,
        Service::ReceivePack => {
            if let Err(denied) = auth::check(state, caller, path, Need::Write).await {
                crate::push::record_denied(state, caller.name(), path, &denied).await;
                return Err(denied);
            }
        }
    }
    let target = repos::resolve(state, path).await?;
    if service == Service::ReceivePack {
        // As the push will resolve it: a new path under an import root.
        let as_pushed = match &target {
            Some(Target::Dir { .. })
                if repos::under_import_root(state, path) && state.store.repo_by_path(path).await?.is_none() =>
            {
                None
            }
            other => other.clone(),
        };
        if let Err(refused) = crate::push::refuse_target(state, path, &as_pushed).await {
            crate::push::record_denied(state, caller.name(), path, &refused).await;
            return Err(refused);
        }
    }
    if lite.is_some() {
        let refs = match (&target, service) {
            (Some(Target::Dir { .. }), _) | (Some(_), Service::UploadPack) => {
                crate::blink::read_view(state, path).await?.map(|(refs, _, _)| refs)
            }
            _ => {
                return Err(HttpError::new(
                    StatusCode::FORBIDDEN,
                    format!("{path} is not a monorepo directory: lite views take pushes only for directories"),
                ))
            }
        };
        let refs = match (refs, service) {
            (Some(refs), _) => refs,
            // A new directory: the push opens a merge request that creates it.
            (None, Service::ReceivePack) => Vec::new(),
            (None, Service::UploadPack) => return Err(HttpError::not_found(format!("{path} does not exist"))),
        };
        let head_id = refs.first().map(|r| r.target);
        let main = tessera_repo::monorepo::MAIN;
        return Ok(advertise::v0_refs(service, &refs, head_id.map(|id| (main, id)), version_1));
    }
    let (refs, head) = match (&target, service) {
        (None, Service::ReceivePack) if repos::under_import_root(state, path) => {
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
    Ok(advertise::v0_refs(service, &refs, head_id.map(|id| (head.as_str(), id)), version_1))
}

/// The work that writes a pack into a sink, on a blocking thread.
pub(crate) type PackWork = Box<dyn FnOnce(&mut upload::Sink<'_>) -> Result<(), upload::ServeError> + Send>;

/// What upload-pack answers one request with: bytes at once, or a pack
/// written by `work`.
pub(crate) enum Reply {
    Now(Vec<u8>),
    Stream { sideband: bool, work: PackWork },
}

/// Runs `work` on a blocking thread and returns what it sinks, in order.
/// An error before any output becomes an `ERR` packet; after output
/// began, a side-band error message.
pub(crate) fn spawn_work(sideband: bool, work: PackWork) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
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
        // A walk over a long history (a fetch that negotiates) allocates
        // and frees as much as a push does.
        tessera_repo::memory::release_free_memory();
    });
    rx
}

fn reply_response(reply: Reply) -> Response {
    const RESULT: &str = "application/x-git-upload-pack-result";
    match reply {
        Reply::Now(bytes) => git_response(RESULT, bytes),
        Reply::Stream { sideband, work } => {
            let rx = spawn_work(sideband, work);
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, std::io::Error>(Bytes::from(b)), rx))
            });
            git_response(RESULT, Body::from_stream(stream))
        }
    }
}

/// What a fetch reads: the refs, HEAD's target and the objects.
#[derive(Clone)]
pub(crate) struct View {
    pub refs: Vec<tessera_store::Ref>,
    pub head: String,
    pub snapshot: repos::Snapshot,
    pub max_objects: Option<u64>,
}

/// The view `caller` may fetch from at `path`, after the read check.
pub(crate) async fn upload_view(state: &State, caller: &Caller, path: &str) -> Result<View, HttpError> {
    if let Some(dir) = crate::blink::lite_dir(path) {
        auth::check(state, caller, &dir, Need::Read).await?;
        let (refs, head, snapshot) = crate::blink::read_view(state, &dir)
            .await?
            .ok_or_else(|| HttpError::not_found(format!("{dir} does not exist")))?;
        return Ok(View { refs, head, snapshot, max_objects: state.config.max_clone_objects });
    }
    auth::check(state, caller, path, Need::Read).await?;
    let target = repos::resolve(state, path)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("repository {path} not found")))?;
    let (refs, head, snapshot) = repos::read_view(state, &target).await?.ok_or_else(|| {
        HttpError::not_found(format!("{path} is neither a repository nor a directory of the monorepo"))
    })?;
    Ok(View { refs, head, snapshot, max_objects: state.config.max_clone_objects })
}

/// Answers one protocol v0 request (wants, haves, done) in one go, as a
/// stateless transport sends it.
pub(crate) fn v0_request(view: View, body: &[u8]) -> Reply {
    let req = match upload::parse_v0(body) {
        Ok(r) => r,
        Err(e) => return Reply::Now(err_packet(&e.to_string())),
    };
    let sideband = req.caps.contains("side-band-64k") || req.caps.contains("side-band");
    Reply::Stream {
        sideband,
        work: Box::new(move |sink| {
            let odb = view.snapshot.odb();
            upload::Upload { odb: &odb, refs: &view.refs, max_pack_objects: view.max_objects }.respond_v0(&req, sink)
        }),
    }
}

/// Answers one protocol v2 command (`ls-refs` or `fetch`).
pub(crate) fn v2_request(view: View, body: &[u8]) -> Reply {
    let (command, args) = match parse_v2_command(body) {
        Ok(c) => c,
        Err(e) => return Reply::Now(err_packet(&e)),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match command.as_str() {
        "ls-refs" => {
            let ls = LsRefs::parse(&args);
            let id = view.refs.iter().find(|r| r.name == view.head).map(|r| r.target);
            Reply::Now(ls.respond(&view.refs, (&view.head, id)))
        }
        "fetch" => {
            let req = match upload::parse_v2_fetch(&args) {
                Ok(r) => r,
                Err(e) => return Reply::Now(err_packet(&e.to_string())),
            };
            Reply::Stream {
                sideband: true,
                work: Box::new(move |sink| {
                    let odb = view.snapshot.odb();
                    upload::Upload { odb: &odb, refs: &view.refs, max_pack_objects: view.max_objects }
                        .respond_v2(req, sink)
                }),
            }
        }
        other => Reply::Now(err_packet(&format!("unknown command {other:?}"))),
    }
}

async fn upload_pack(state: Arc<State>, raw_path: &str, request: Request) -> Result<Response, HttpError> {
    let path = repos::normalize(raw_path)?;
    let caller = auth::caller(&state, request.headers()).await?;
    let view = upload_view(&state, &caller, &path).await?;
    let v2 = protocol_v2(request.headers());
    let body = read_body(request, state.config.max_request_bytes, state.config.request_timeout_secs).await?;
    let reply = if v2 { v2_request(view, &body) } else { v0_request(view, &body) };
    Ok(reply_response(reply))
}

/// Splits a v2 request into its command and argument lines.
pub(crate) fn parse_v2_command(body: &[u8]) -> Result<(String, Vec<String>), String> {
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
