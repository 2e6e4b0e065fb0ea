//! git over SSH: `git clone ssh://git@HOST:PORT/projects/x` and pushes.
//!
//! russh speaks the SSH protocol; this module decides who connects (a
//! public key registered with `tessera user key add`; passwords and
//! anonymous logins are refused, whatever SSH user name is given) and runs
//! `git-upload-pack` or `git-receive-pack` on one session channel, through
//! the same permission checks ([`crate::auth`]), advertisement, fetch and
//! push code as smart HTTP. Fetches use protocol v2 (git sends
//! `GIT_PROTOCOL=version=2` by default since 2.26); pushes use v0 or v1,
//! as git has no v2 push.
//!
//! Bounds: a fixed number of connections at once, one command per channel
//! and a few channels per connection, sign-in within the request timeout,
//! every read from the client and every write to it within the request
//! timeout, requests no larger than `max_request_bytes`, pushes no larger
//! than `max_push_bytes`. Keepalives find peers that went away while the
//! server works (a large push is checked in silence).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, Handle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tessera_pktline as pkt;
use tessera_protocol::advertise::{self, Service};
use tessera_store::access::Scope;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::auth::Caller;
use crate::error::HttpError;
use crate::push::{self, Input, PackEnds};
use crate::smart::{self, Reply};
use crate::wire::err_packet;
use crate::{repos, State};

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// Session channels one connection may open (git uses one).
const MAX_CHANNELS: usize = 4;
/// The longest exec command accepted (a command and a quoted path).
const MAX_COMMAND_BYTES: usize = 8 << 10;

/// The host key file in the data directory, created on first start.
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

/// Why the SSH side could not start.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("SSH host key {path}: {detail}")]
    HostKey { path: String, detail: String },
}

/// A public key as `tessera user key add` registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    /// `SHA256:<base64>`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// `<algorithm> <base64>`, without the comment.
    pub openssh: String,
    pub comment: String,
}

/// Parses one OpenSSH public key line (`ssh-ed25519 AAAA... comment`).
pub fn parse_public_key(text: &str) -> Result<ParsedKey, String> {
    if text.contains("PRIVATE KEY-----") {
        return Err("this is a private key; give the .pub file".into());
    }
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let line = match lines.as_slice() {
        [one] => *one,
        [] => return Err("no public key found; expected one line such as `ssh-ed25519 AAAA... you@host`".into()),
        _ => return Err(format!("{} keys found; add one key at a time", lines.len())),
    };
    if line.len() > 16 << 10 {
        return Err("the key line is longer than 16 KiB".into());
    }
    let key = PublicKey::from_openssh(line).map_err(|e| format!("not an OpenSSH public key: {e}"))?;
    let openssh = key.to_openssh().map_err(|e| format!("encoding the key: {e}"))?;
    let openssh = openssh.split(' ').take(2).collect::<Vec<_>>().join(" ");
    Ok(ParsedKey {
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        openssh,
        comment: key.comment().to_string(),
    })
}

/// The server's host key, read from the data directory, or generated (and
/// written there, readable by the owner only) on first start.
pub fn host_key(data_dir: &Path) -> Result<PrivateKey, SshError> {
    let path = data_dir.join(HOST_KEY_FILE);
    let fail = |detail: String| SshError::HostKey { path: path.display().to_string(), detail };
    match std::fs::read_to_string(&path) {
        Ok(text) => PrivateKey::from_openssh(text.as_bytes()).map_err(|e| fail(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed: [u8; 32] = rand::random();
            let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
            let key = PrivateKey::from(pair);
            let text = key.to_openssh(russh::keys::ssh_key::LineEnding::LF).map_err(|e| fail(e.to_string()))?;
            // Written aside and renamed: a racing second process keeps
            // whichever key landed first.
            let tmp = data_dir.join(format!("{HOST_KEY_FILE}.{}.tmp", std::process::id()));
            write_private(&tmp, text.as_bytes()).map_err(|e| fail(e.to_string()))?;
            std::fs::hard_link(&tmp, &path).or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(fail(e.to_string())),
            })?;
            let _ = std::fs::remove_file(&tmp);
            let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
            PrivateKey::from_openssh(text.as_bytes()).map_err(|e| fail(e.to_string()))
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// russh's settings: public keys only, keepalives, no inactivity cut-off
/// of its own (the reads and writes here have theirs).
pub(crate) fn russh_config(key: PrivateKey, timeout_secs: u64) -> russh::server::Config {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    russh::server::Config {
        server_id: russh::SshId::Standard(format!("SSH-2.0-tessera_{}", env!("CARGO_PKG_VERSION")).into()),
        methods,
        auth_rejection_time: Duration::from_millis(300),
        // OpenSSH probes with "none" first: no need to make it wait.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        max_auth_attempts: 6,
        inactivity_timeout: Some(Duration::from_secs(timeout_secs.max(1) * 20)),
        keepalive_interval: Some(Duration::from_secs(timeout_secs.clamp(5, 60))),
        keepalive_max: 4,
        nodelay: true,
        ..Default::default()
    }
}

/// Accepts SSH connections until `shutdown` resolves.
pub(crate) async fn run(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accepting an SSH connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let config = config.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let signed_in = Arc::new(AtomicBool::new(false));
            let handler = Connection {
                state: state.clone(),
                peer,
                caller: None,
                channels: HashMap::new(),
                signed_in: signed_in.clone(),
            };
            let deadline = Duration::from_secs(state.config.request_timeout_secs.max(1));
            let session = async move {
                match russh::server::run_stream(config, socket, handler).await {
                    Ok(session) => {
                        if let Err(e) = session.await {
                            tracing::debug!("SSH connection from {peer}: {e}");
                        }
                    }
                    Err(e) => tracing::debug!("SSH handshake with {peer}: {e}"),
                }
            };
            tokio::pin!(session);
            // Sign in within the request timeout, or the connection goes.
            tokio::select! {
                _ = &mut session => return,
                _ = tokio::time::sleep(deadline) => {}
            }
            if !signed_in.load(Ordering::Acquire) {
                tracing::debug!("SSH connection from {peer} did not sign in within {} s", deadline.as_secs());
                return;
            }
            session.await;
        });
    }
}

/// One command a channel may run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GitCommand {
    Git { service: Service, path: String },
    LfsAuthenticate { path: String, upload: bool },
}

/// Parses an exec request: `git-upload-pack '/a/b'` (also `git
/// upload-pack`), the path single-quoted as git's client quotes it or a
/// bare word.
fn parse_command(raw: &[u8]) -> Result<GitCommand, String> {
    if raw.len() > MAX_COMMAND_BYTES {
        return Err("the command is too long".into());
    }
    let text = std::str::from_utf8(raw).map_err(|_| "the command is not UTF-8".to_string())?;
    let text = text.trim();
    let (program, rest) = if let Some(rest) = text.strip_prefix("git ") {
        let rest = rest.trim_start();
        let (sub, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        (format!("git-{sub}"), rest)
    } else {
        let (program, rest) = text.split_once(' ').unwrap_or((text, ""));
        (program.to_string(), rest)
    };
    let service = match program.as_str() {
        "git-upload-pack" => Service::UploadPack,
        "git-receive-pack" => Service::ReceivePack,
        "git-lfs-authenticate" => {
            let (path, operation) = rest.trim().rsplit_once(' ').ok_or("usage: git-lfs-authenticate PATH OPERATION")?;
            let path = unquote(path.trim()).ok_or("the repository path is not one quoted argument")?;
            let upload = match operation {
                "upload" => true,
                "download" => false,
                other => {
                    let shown: String = other.chars().take(20).collect();
                    return Err(format!("git-lfs-authenticate: unknown operation {shown:?}"));
                }
            };
            return Ok(GitCommand::LfsAuthenticate { path, upload });
        }
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(format!("{shown:?} is not served; tessera serves git-upload-pack and git-receive-pack"));
        }
    };
    let path = unquote(rest.trim()).ok_or("the repository path is not one quoted argument")?;
    Ok(GitCommand::Git { service, path })
}

/// One shell word: `'...'` with `'\''` for a quote inside (git's quoting),
/// or a bare word of safe characters.
fn unquote(word: &str) -> Option<String> {
    if word.is_empty() {
        return None;
    }
    if !word.starts_with('\'') {
        let safe = word.chars().all(|c| c.is_ascii_alphanumeric() || "/._-~+@".contains(c));
        return safe.then(|| word.to_string());
    }
    let mut out = String::new();
    let mut chars = word.chars().peekable();
    loop {
        // Inside quotes until the closing quote.
        if chars.next() != Some('\'') {
            return None;
        }
        loop {
            match chars.next()? {
                '\'' => break,
                c => out.push(c),
            }
        }
        match chars.peek() {
            None => return Some(out),
            // `'\''`: an escaped quote, then quoting resumes.
            Some('\\') => {
                chars.next();
                match chars.next()? {
                    c @ ('\'' | '!') => out.push(c),
                    _ => return None,
                }
                if chars.peek().is_none() {
                    return Some(out);
                }
            }
            Some(_) => return None,
        }
    }
}

/// One SSH connection.
struct Connection {
    state: Arc<State>,
    peer: SocketAddr,
    caller: Option<Caller>,
    channels: HashMap<ChannelId, Pending>,
    signed_in: Arc<AtomicBool>,
}

/// A session channel that has not run its command yet.
struct Pending {
    channel: Channel<Msg>,
    /// `GIT_PROTOCOL`, if the client sent it.
    protocol: Option<String>,
}

impl Connection {
    async fn key_user(&self, key: &PublicKey) -> Option<(i64, tessera_store::User)> {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        match self.state.store.user_by_ssh_key(&fingerprint).await {
            Ok(Some((key, user))) if !user.disabled => Some((key.id, user)),
            Ok(Some((_, user))) => {
                tracing::info!("SSH key {fingerprint} of disabled user {} refused ({})", user.name, self.peer);
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!("looking up SSH key {fingerprint}: {e}");
                None
            }
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, _user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        // Unknown keys are turned away before the client signs anything.
        Ok(match self.key_user(offer.public_key).await {
            Some(_) => Auth::Accept,
            None => Auth::reject(),
        })
    }

    async fn auth_publickey(&mut self, _user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let Some((key_id, user)) = self.key_user(key.public_key).await else { return Ok(Auth::reject()) };
        if let Err(e) = self.state.store.touch_ssh_key(key_id).await {
            tracing::warn!("recording the use of SSH key {key_id}: {e}");
        }
        tracing::debug!("SSH sign-in by {} from {}", user.name, self.peer);
        self.caller = Some(Caller { user: Some(user), scope: Scope::Write });
        self.signed_in.store(true, Ordering::Release);
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.caller.is_none() || self.channels.len() >= MAX_CHANNELS {
            return Ok(()); // dropping `reply` refuses the channel
        }
        self.channels.insert(channel.id(), Pending { channel, protocol: None });
        reply.accept().await;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(pending) if name == "GIT_PROTOCOL" && value.len() <= 256 => {
                pending.protocol = Some(value.to_string());
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // `ssh -T` is what git does; a terminal is allowed only so that an
        // interactive login can be told there is no shell.
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        let Some(pending) = self.channels.remove(&channel) else { return Ok(()) };
        session.channel_success(channel)?;
        let name = self.caller.as_ref().map_or("", |c| c.name()).to_string();
        let handle = session.handle();
        tokio::spawn(async move {
            let text = format!("Hi {name}! You are signed in to tessera, which serves git here and no shell.\r\n");
            let _ = handle.extended_data(channel, 1, Bytes::from(text)).await;
            finish(&handle, channel, 1).await;
            drop(pending);
        });
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(pending) = self.channels.remove(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        let Some(caller) = self.caller.clone() else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let handle = session.handle();
        let command = parse_command(data);
        let state = self.state.clone();
        tokio::spawn(async move {
            let code = match command {
                Ok(GitCommand::Git { service, path }) => {
                    serve_git(&state, &caller, pending, &handle, service, &path).await
                }
                Ok(GitCommand::LfsAuthenticate { path, upload }) => {
                    match lfs_authenticate(&state, &caller, &path, upload).await {
                        Ok(json) => {
                            let _ = handle.data(channel, Bytes::from(json)).await;
                            0
                        }
                        Err(e) => {
                            stderr(&handle, channel, &e.message).await;
                            1
                        }
                    }
                }
                Err(message) => {
                    stderr(&handle, channel, &message).await;
                    1
                }
            };
            finish(&handle, channel, code).await;
        });
        Ok(())
    }
}

async fn stderr(handle: &Handle, channel: ChannelId, message: &str) {
    let text = format!("tessera: {message}\n");
    let _ = handle.extended_data(channel, 1, Bytes::from(text)).await;
}

async fn finish(handle: &Handle, channel: ChannelId, code: u32) {
    let _ = handle.exit_status_request(channel, code).await;
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;
}

/// Runs one git service on a channel; returns the exit status.
async fn serve_git(
    state: &State,
    caller: &Caller,
    pending: Pending,
    handle: &Handle,
    service: Service,
    raw_path: &str,
) -> u32 {
    let Pending { mut channel, protocol } = pending;
    let id = channel.id();
    let timeout = Duration::from_secs(state.config.request_timeout_secs.max(1));
    let mut out = Writer { inner: channel.make_writer(), timeout, written: 0 };
    let input = channel.make_reader();
    let asks = |n: &str| protocol.as_deref().is_some_and(|p| p.split(':').any(|v| v.trim() == format!("version={n}")));
    let result = async {
        let path = repos::normalize(raw_path)?;
        match service {
            Service::UploadPack => {
                let view = smart::upload_view(state, caller, &path).await?;
                if !asks("2") {
                    return Err(HttpError::bad_request(
                        "tessera serves fetches over SSH with git protocol version 2: use git 2.26 or later, \
                         or set protocol.version=2",
                    ));
                }
                out.write(&advertise::v2_capabilities()).await?;
                let mut reader = Reader::new(input, timeout);
                while let Some(request) = reader.request(state.config.max_request_bytes).await? {
                    match smart::v2_request(view.clone(), &request) {
                        Reply::Now(bytes) => out.write(&bytes).await?,
                        Reply::Stream { sideband, work } => {
                            let mut rx = smart::spawn_work(sideband, work);
                            while let Some(bytes) = rx.recv().await {
                                out.write(&bytes).await?;
                            }
                        }
                    }
                }
                Ok(())
            }
            Service::ReceivePack => {
                let advertised = smart::advertisement(state, caller, &path, service, asks("1")).await?;
                out.write(&advertised).await?;
                let host = ssh_host(state);
                let input = Reader::new(input, timeout);
                let report = push::receive(state, caller, &path, &host, input, PackEnds::Framed).await;
                tessera_repo::memory::release_free_memory();
                let report = report?;
                out.write(&report).await?;
                Ok(())
            }
        }
    }
    .await;
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::info!("SSH {} of {raw_path} by {}: {}", service.name(), caller.name(), e.message);
            // git shows an ERR packet as "remote error: ..."; after the
            // exchange began, stderr reaches the user through ssh.
            if out.written == 0 {
                let _ = out.write(&err_packet(&e.message)).await;
            } else {
                stderr(handle, id, &e.message).await;
            }
            1
        }
    }
}

/// The HTTP host merge request links name when the push came by SSH.
fn ssh_host(state: &State) -> String {
    let url = state.config.http_url();
    url.split_once("://").map_or(url.as_str(), |(_, rest)| rest).trim_end_matches('/').to_string()
}

/// How long the token `git-lfs-authenticate` hands out lasts.
const LFS_TOKEN_SECS: i64 = 3600;

/// `git-lfs-authenticate PATH download|upload`: where the path's LFS API
/// is over HTTP, and a short-lived token for it, after the same check as
/// the LFS request itself will make.
async fn lfs_authenticate(state: &State, caller: &Caller, raw_path: &str, upload: bool) -> Result<String, HttpError> {
    let path = repos::normalize(raw_path)?;
    let need = if upload { crate::auth::Need::Write } else { crate::auth::Need::Read };
    crate::auth::check(state, caller, &path, need).await?;
    let user = caller.user.as_ref().ok_or_else(|| HttpError::bad_request("not signed in"))?;
    let scope = if upload { Scope::Write } else { Scope::Read };
    let token = crate::auth::signed_token(state, user, scope, LFS_TOKEN_SECS).await?;
    let base = state.config.http_url();
    let base = base.trim_end_matches('/');
    let href = if path == "/" { format!("{base}/.git/info/lfs") } else { format!("{base}{path}.git/info/lfs") };
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{token}", user.name));
    let answer = serde_json::json!({
        "href": href,
        "header": { "Authorization": format!("Basic {basic}") },
        "expires_in": LFS_TOKEN_SECS,
    });
    Ok(format!("{answer}\n"))
}

/// Writes to the channel, each write within the timeout.
struct Writer<W> {
    inner: W,
    timeout: Duration,
    written: u64,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        let timed_out =
            || HttpError::new(axum::http::StatusCode::REQUEST_TIMEOUT, "the client stopped reading".to_string());
        let gone = |e: std::io::Error| HttpError::bad_request(format!("the client went away: {e}"));
        tokio::time::timeout(self.timeout, self.inner.write_all(bytes))
            .await
            .map_err(|_| timed_out())?
            .map_err(gone)?;
        tokio::time::timeout(self.timeout, self.inner.flush()).await.map_err(|_| timed_out())?.map_err(gone)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Reads from the channel, each read within the timeout.
struct Reader<R> {
    inner: R,
    timeout: Duration,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin + Send> Reader<R> {
    fn new(inner: R, timeout: Duration) -> Self {
        Reader { inner, timeout, buf: Vec::new() }
    }

    async fn read(&mut self) -> Result<Option<Bytes>, HttpError> {
        if !self.buf.is_empty() {
            return Ok(Some(Bytes::from(std::mem::take(&mut self.buf))));
        }
        let mut chunk = vec![0u8; 64 << 10];
        let n = tokio::time::timeout(self.timeout, self.inner.read(&mut chunk))
            .await
            .map_err(|_| {
                HttpError::new(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    format!("the client sent nothing for {} s", self.timeout.as_secs()),
                )
            })?
            .map_err(|e| HttpError::bad_request(format!("reading from the client: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        chunk.truncate(n);
        Ok(Some(Bytes::from(chunk)))
    }

    /// One v2 request: packets up to and including a flush; `None` when the
    /// client ends the session (a lone flush, or closing its side).
    async fn request(&mut self, limit: usize) -> Result<Option<Vec<u8>>, HttpError> {
        let mut request = Vec::new();
        let mut pos = 0;
        loop {
            // Walk the complete packets held so far.
            loop {
                match pkt::decode(&request[pos..]) {
                    Ok(Some((packet, used))) => {
                        pos += used;
                        if packet == pkt::Packet::Flush {
                            if pos == used {
                                return Ok(None); // a lone flush ends the session
                            }
                            // Anything after the request is the next one's.
                            self.buf = request.split_off(pos);
                            return Ok(Some(request));
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(HttpError::bad_request(format!("malformed request: {e}"))),
                }
            }
            if request.len() > limit {
                return Err(HttpError::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request is over the limit of {limit} bytes"),
                ));
            }
            match self.read().await? {
                Some(chunk) => request.extend_from_slice(&chunk),
                None if request.is_empty() => return Ok(None),
                None => return Err(HttpError::bad_request("the request ended inside a packet")),
            }
        }
    }
}

impl<R: AsyncRead + Unpin + Send> Input for Reader<R> {
    async fn next(&mut self) -> Result<Option<Bytes>, HttpError> {
        self.read().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_as_git_sends_them() {
        let git = |s: Service, p: &str| Ok(GitCommand::Git { service: s, path: p.to_string() });
        assert_eq!(parse_command(b"git-upload-pack '/projects/x'"), git(Service::UploadPack, "/projects/x"));
        assert_eq!(parse_command(b"git-receive-pack 'import/a.git'"), git(Service::ReceivePack, "import/a.git"));
        assert_eq!(parse_command(b"git upload-pack '/a'"), git(Service::UploadPack, "/a"));
        assert_eq!(parse_command(b"git-upload-pack /a/b"), git(Service::UploadPack, "/a/b"));
        assert_eq!(parse_command(b"git-upload-pack '/it'\\''s'"), git(Service::UploadPack, "/it's"));
        assert_eq!(
            parse_command(b"git-lfs-authenticate '/a' download"),
            Ok(GitCommand::LfsAuthenticate { path: "/a".into(), upload: false })
        );
        assert_eq!(
            parse_command(b"git-lfs-authenticate 'x/y.git' upload"),
            Ok(GitCommand::LfsAuthenticate { path: "x/y.git".into(), upload: true })
        );
        assert!(parse_command(b"git-lfs-authenticate '/a' delete").is_err());
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            &b"sh -c 'rm -rf /'"[..],
            b"git-upload-pack '/a'; rm -rf /",
            b"git-upload-pack '/a' '/b'",
            b"git-upload-pack $(id)",
            b"git-upload-pack '/a",
            b"git-upload-archive '/a'",
            b"git-upload-pack",
            b"\xff\xfe",
        ] {
            assert!(parse_command(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse_command(&vec![b'a'; MAX_COMMAND_BYTES + 1]).is_err());
    }

    #[test]
    fn public_keys_parse_with_their_fingerprint() {
        // ssh-keygen -t ed25519; fingerprint from `ssh-keygen -lf`.
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";
        let key = parse_public_key(line).unwrap();
        assert!(key.fingerprint.starts_with("SHA256:"), "{}", key.fingerprint);
        assert_eq!(key.comment, "alice@laptop");
        assert!(key.openssh.starts_with("ssh-ed25519 AAAA") && !key.openssh.contains("alice"));
        assert!(parse_public_key("").is_err());
        assert!(parse_public_key("ssh-ed25519 notbase64!").is_err());
        assert!(parse_public_key(&format!("{line}\n{line}")).is_err());
        assert!(parse_public_key("-----BEGIN OPENSSH PRIVATE KEY-----").is_err());
    }
}
