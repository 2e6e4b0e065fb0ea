//! `tessera blink`: the client side of b-link lite views.
//!
//! A clone of `http://HOST/-/blink/<path>` holds b-link files where the
//! full view has large blobs. `tessera blink install`, run in the clone,
//! sets up a git filter (git's long-running filter process protocol, one
//! process per git command):
//! - on checkout (smudge), a b-link file becomes the blob it names,
//!   fetched from `GET /<path>/-/blob-by-id/<sha1>` with the user's
//!   credentials (those in the remote URL, or git's credential helpers),
//!   checked against its id, and kept in `.git/blink/objects`;
//! - on `git add` (clean), content that is one of those blobs, unchanged,
//!   becomes the same b-link file again; anything else is stored as is.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode, Stdio};

use anyhow::{bail, Context};
use clap::Subcommand;
use tessera_pack::{Hasher, Kind, ObjectId};
use tessera_repo::blink::{parse, pointer, POINTER_LEN};

#[derive(Subcommand)]
pub enum Command {
    /// Set up this clone of a lite view (`/-/blink/<path>`): a git filter
    /// that checks out the real content of b-link files, and turns
    /// unchanged content back into them on `git add`. Then checks out the
    /// real content of every b-link file already checked out.
    Install {
        /// The remote the clone came from.
        #[arg(long, default_value = "origin")]
        remote: String,
        /// The lite view's HTTP URL, when the remote is not one (SSH).
        #[arg(long)]
        url: Option<String>,
    },
    /// The filter git runs (`filter.blink.process`); not for people.
    #[command(hide = true)]
    FilterProcess,
}

pub fn run(command: Command) -> ExitCode {
    let result = match command {
        Command::Install { remote, url } => install(&remote, url),
        Command::FilterProcess => filter_process(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs git with `args` here; its standard output, or its error.
fn git(args: &[&str]) -> anyhow::Result<String> {
    let out = Process::new("git").args(args).stderr(Stdio::piped()).output().context("running git")?;
    if !out.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A lite view's HTTP URL split into the server's base, the credentials
/// it carries and the directory: `http://u:p@h/-/blink/a/b.git` →
/// (`http://h`, `Some(("u", "p"))`, `/a/b`).
#[derive(Debug, PartialEq, Eq)]
struct LiteUrl {
    base: String,
    credentials: Option<(String, String)>,
    dir: String,
}

fn parse_url(url: &str) -> Option<LiteUrl> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let (credentials, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (Some((percent_decode(user), percent_decode(password))), host)
        }
        None => (None, authority),
    };
    let at = path.find("/-/blink")?;
    let after = &path[at + "/-/blink".len()..];
    if !(after.is_empty() || after.starts_with('/')) {
        return None;
    }
    let dir = after.trim_end_matches('/');
    let dir = dir.strip_suffix(".git").unwrap_or(dir).trim_end_matches('/');
    let dir = if dir.is_empty() { "/".to_string() } else { dir.to_string() };
    Some(LiteUrl { base: format!("{scheme}://{host}{}", &path[..at]), credentials, dir })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A path for a shell command line, quoted.
fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn install(remote: &str, url: Option<String>) -> anyhow::Result<()> {
    let git_dir = PathBuf::from(git(&["rev-parse", "--absolute-git-dir"])?.trim());
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?.trim());
    let url = match url {
        Some(u) => u,
        None => git(&["config", "--get", &format!("remote.{remote}.url")])
            .with_context(|| format!("no URL for remote {remote}; pass --url"))?
            .trim()
            .to_string(),
    };
    if parse_url(&url).is_none() {
        bail!("{url} is not the HTTP URL of a lite view (http(s)://HOST/-/blink/<path>); pass --url");
    }
    let exe = std::env::current_exe().context("finding the tessera executable")?;
    let exe = shell_quote(&exe.to_string_lossy());
    git(&["config", "blink.url", &url])?;
    git(&["config", "filter.blink.process", &format!("{exe} blink filter-process")])?;
    git(&["config", "filter.blink.required", "true"])?;
    let attributes = git_dir.join("info").join("attributes");
    let existing = std::fs::read_to_string(&attributes).unwrap_or_default();
    if !existing.lines().any(|l| l.trim() == "* filter=blink") {
        std::fs::create_dir_all(git_dir.join("info"))?;
        let mut text = existing;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("* filter=blink\n");
        std::fs::write(&attributes, text)?;
    }
    // Check out again, through the filter, every file that is a b-link
    // file in the index.
    let listed = Process::new("git").args(["ls-files", "-s", "-z"]).current_dir(&top).output()?;
    let mut candidates: Vec<(String, String)> = Vec::new();
    for record in listed.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let record = String::from_utf8_lossy(record);
        let Some((meta, path)) = record.split_once('\t') else { continue };
        let fields: Vec<&str> = meta.split(' ').collect();
        if fields.len() == 3 && fields[0].starts_with("100") {
            candidates.push((fields[1].to_string(), path.to_string()));
        }
    }
    let pointers = pointer_paths(&top, &candidates)?;
    if !pointers.is_empty() {
        for path in &pointers {
            let _ = std::fs::remove_file(top.join(path));
        }
        let mut child = Process::new("git")
            .args(["checkout-index", "-f", "-u", "-z", "--stdin"])
            .current_dir(&top)
            .stdin(Stdio::piped())
            .spawn()?;
        {
            let mut stdin = child.stdin.take().context("git checkout-index's input")?;
            for path in &pointers {
                stdin.write_all(path.as_bytes())?;
                stdin.write_all(b"\0")?;
            }
        }
        if !child.wait()?.success() {
            bail!("git checkout-index could not check out the b-link files' content");
        }
    }
    println!("b-link filter installed; {} file(s) checked out with their content", pointers.len());
    Ok(())
}

/// Which of `candidates` (blob id, path) are b-link files, read through
/// one `git cat-file --batch`.
fn pointer_paths(top: &Path, candidates: &[(String, String)]) -> anyhow::Result<Vec<String>> {
    let mut child = Process::new("git")
        .args(["cat-file", "--batch"])
        .current_dir(top)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("git cat-file's input")?;
    let mut stdout = BufReader::new(child.stdout.take().context("git cat-file's output")?);
    let mut found = Vec::new();
    for (id, path) in candidates {
        writeln!(stdin, "{id}")?;
        stdin.flush()?;
        let mut header = Vec::new();
        read_line(&mut stdout, &mut header)?;
        let header = String::from_utf8_lossy(&header);
        if header.ends_with(" missing") {
            continue;
        }
        let size: u64 = header.split(' ').nth(2).and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        if size > POINTER_LEN {
            // Not a b-link file: skip its content without holding it.
            std::io::copy(&mut (&mut stdout).take(size + 1), &mut std::io::sink())?;
            continue;
        }
        let mut data = vec![0; size as usize + 1];
        stdout.read_exact(&mut data)?;
        data.pop();
        if parse(&data).is_some() {
            found.push(path.clone());
        }
    }
    drop(stdin);
    child.wait()?;
    Ok(found)
}

fn read_line(r: &mut impl Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    loop {
        if r.read(&mut byte)? == 0 || byte[0] == b'\n' {
            return Ok(());
        }
        out.push(byte[0]);
    }
}

// The long-running filter process protocol (gitattributes(5)).

/// The longest pkt-line payload.
const MAX_PAYLOAD: usize = 65516;

/// One packet; `None` is a flush packet.
fn read_packet(r: &mut impl Read) -> anyhow::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).context("reading from git")?;
    let len = std::str::from_utf8(&len).ok().and_then(|s| usize::from_str_radix(s, 16).ok());
    match len {
        Some(0) => Ok(None),
        Some(n) if (5..=MAX_PAYLOAD + 4).contains(&n) => {
            let mut data = vec![0; n - 4];
            r.read_exact(&mut data).context("reading from git")?;
            Ok(Some(data))
        }
        _ => bail!("git sent a malformed packet"),
    }
}

/// Text packets up to a flush, without their newlines.
fn read_list(r: &mut impl Read) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    while let Some(p) = read_packet(r)? {
        out.push(String::from_utf8_lossy(&p).trim_end_matches('\n').to_string());
    }
    Ok(out)
}

fn write_text(w: &mut impl Write, line: &str) -> std::io::Result<()> {
    writeln!(w, "{:04x}{line}", line.len() + 5)
}

fn write_flush(w: &mut impl Write) -> std::io::Result<()> {
    w.write_all(b"0000")
}

fn write_content(w: &mut impl Write, mut r: impl Read) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_PAYLOAD];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        write!(w, "{:04x}", n + 4)?;
        w.write_all(&buf[..n])?;
    }
}

/// Where the filter keeps what it fetched, and spools what git sends.
struct Cache {
    objects: PathBuf,
    tmp: PathBuf,
}

impl Cache {
    fn path(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_string();
        self.objects.join(&hex[..2]).join(&hex[2..])
    }

    /// A new temporary file, removed when dropped.
    fn spool(&self) -> anyhow::Result<tempfile::NamedTempFile> {
        std::fs::create_dir_all(&self.tmp)?;
        Ok(tempfile::Builder::new().prefix("spool").tempfile_in(&self.tmp)?)
    }

    /// Keeps the spooled file as `id`'s content.
    fn keep(&self, spooled: tempfile::NamedTempFile, id: &ObjectId) -> anyhow::Result<PathBuf> {
        let path = self.path(id);
        std::fs::create_dir_all(path.parent().expect("objects have a directory"))?;
        spooled.persist(&path).map_err(|e| e.error)?;
        Ok(path)
    }
}

/// Copies `content` packets from git into `spooled`, returning the blob id
/// and size of what arrived.
fn spool_content(r: &mut impl Read, spooled: &tempfile::NamedTempFile) -> anyhow::Result<(ObjectId, u64)> {
    let mut size = 0u64;
    {
        let mut w = BufWriter::new(spooled.as_file());
        while let Some(p) = read_packet(r)? {
            size += p.len() as u64;
            w.write_all(&p)?;
        }
        w.flush()?;
    }
    Ok((hash_file(spooled.path(), size)?, size))
}

/// The blob id of a file of `size` bytes.
fn hash_file(path: &Path, size: u64) -> anyhow::Result<ObjectId> {
    let mut hasher = Hasher::new(Kind::Blob, size);
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    if total != size {
        bail!("{} changed while it was read", path.display());
    }
    Ok(hasher.finish())
}

/// Fetches blob `id` of the lite view at `url` into the cache.
fn fetch(url: &LiteUrl, cache: &Cache, id: &ObjectId) -> anyhow::Result<PathBuf> {
    let dir = if url.dir == "/" { String::new() } else { url.dir.clone() };
    let target = format!("{}{dir}/-/blob-by-id/{id}", url.base);
    let agent = ureq::AgentBuilder::new().timeout_connect(std::time::Duration::from_secs(30)).build();
    let get = |credentials: Option<&(String, String)>| {
        let mut request = agent.get(&target);
        if let Some((user, password)) = credentials {
            use base64::Engine;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request = request.set("Authorization", &format!("Basic {basic}"));
        }
        request.call().map_err(Box::new)
    };
    let unauthorized = |e: &ureq::Error| matches!(e, ureq::Error::Status(401, _));
    let mut helper_credentials = None;
    let response = match get(url.credentials.as_ref()) {
        Ok(r) => r,
        Err(e) if unauthorized(&e) && url.credentials.is_none() => {
            let asked = credential("fill", &url.base, None)?;
            let answer = get(Some(&asked));
            match &answer {
                Ok(_) => helper_credentials = Some(asked),
                Err(e) if unauthorized(e) => {
                    let _ = credential("reject", &url.base, Some(&asked));
                }
                Err(_) => {}
            }
            answer.with_context(|| format!("fetching {target}"))?
        }
        Err(e) => return Err(e).with_context(|| format!("fetching {target}")),
    };
    let spooled = cache.spool()?;
    let mut size = 0u64;
    {
        let mut w = BufWriter::new(spooled.as_file());
        size += std::io::copy(&mut response.into_reader(), &mut w)?;
        w.flush()?;
    }
    let got = hash_file(spooled.path(), size)?;
    if got != *id {
        bail!("the server sent content for blob {id} whose id is {got}");
    }
    if let Some(asked) = helper_credentials {
        let _ = credential("approve", &url.base, Some(&asked));
    }
    spooled.as_file().sync_all()?;
    cache.keep(spooled, id)
}

/// `git credential fill|approve|reject` for the server at `base`.
fn credential(action: &str, base: &str, known: Option<&(String, String)>) -> anyhow::Result<(String, String)> {
    let (protocol, host) = base.split_once("://").context("a URL")?;
    let host = host.split('/').next().unwrap_or(host);
    let mut input = format!("protocol={protocol}\nhost={host}\n");
    if let Some((user, password)) = known {
        input.push_str(&format!("username={user}\npassword={password}\n"));
    }
    input.push('\n');
    let mut child = Process::new("git")
        .args(["credential", action])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running git credential")?;
    child.stdin.take().context("git credential's input")?.write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if action != "fill" {
        return Ok(known.cloned().unwrap_or_default());
    }
    if !out.status.success() {
        bail!("git credential fill found no credentials for {base}");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or("").to_string();
    Ok((value("username"), value("password")))
}

/// One file's worth of work: what to send back, or why it failed.
enum Output {
    Bytes(Vec<u8>),
    File(PathBuf),
}

fn smudge(url: &LiteUrl, cache: &Cache, spooled: &tempfile::NamedTempFile, size: u64) -> anyhow::Result<Output> {
    if size != POINTER_LEN {
        return Ok(Output::File(spooled.path().to_path_buf()));
    }
    let data = std::fs::read(spooled.path())?;
    let Some(id) = parse(&data) else { return Ok(Output::Bytes(data)) };
    let cached = cache.path(&id);
    if cached.is_file() {
        return Ok(Output::File(cached));
    }
    Ok(Output::File(fetch(url, cache, &id)?))
}

fn clean(cache: &Cache, spooled: &tempfile::NamedTempFile, id: &ObjectId) -> Output {
    if cache.path(id).is_file() {
        Output::Bytes(pointer(id))
    } else {
        Output::File(spooled.path().to_path_buf())
    }
}

fn filter_process() -> anyhow::Result<()> {
    let git_dir = PathBuf::from(git(&["rev-parse", "--absolute-git-dir"])?.trim());
    let url_text =
        git(&["config", "--get", "blink.url"]).context("blink.url is not set: run `tessera blink install`")?;
    let url = parse_url(url_text.trim()).context("blink.url is not the URL of a lite view")?;
    let cache = Cache { objects: git_dir.join("blink").join("objects"), tmp: git_dir.join("blink").join("tmp") };
    let stdin = std::io::stdin();
    let mut r = BufReader::new(stdin.lock());
    let stdout = std::io::stdout();
    let mut w = BufWriter::new(stdout.lock());

    let hello = read_list(&mut r)?;
    if hello.first().map(String::as_str) != Some("git-filter-client") || !hello.iter().any(|l| l == "version=2") {
        bail!("git did not start the filter protocol version 2");
    }
    write_text(&mut w, "git-filter-server")?;
    write_text(&mut w, "version=2")?;
    write_flush(&mut w)?;
    w.flush()?;
    let offered = read_list(&mut r)?;
    for capability in ["capability=clean", "capability=smudge"] {
        if offered.iter().any(|c| c == capability) {
            write_text(&mut w, capability)?;
        }
    }
    write_flush(&mut w)?;
    w.flush()?;

    loop {
        let request = match read_packet(&mut r) {
            Ok(Some(first)) => {
                let mut lines = vec![String::from_utf8_lossy(&first).trim_end_matches('\n').to_string()];
                lines.extend(read_list(&mut r)?);
                lines
            }
            Ok(None) => continue,
            // git closes the pipe when it is done.
            Err(_) => return Ok(()),
        };
        let command = request.iter().find_map(|l| l.strip_prefix("command=")).unwrap_or("").to_string();
        let pathname = request.iter().find_map(|l| l.strip_prefix("pathname=")).unwrap_or("").to_string();
        let spooled = cache.spool()?;
        let (id, size) = spool_content(&mut r, &spooled)?;
        let outcome = match command.as_str() {
            "smudge" => smudge(&url, &cache, &spooled, size),
            "clean" => Ok(clean(&cache, &spooled, &id)),
            other => Err(anyhow::anyhow!("unknown filter command {other:?}")),
        };
        match outcome {
            Ok(out) => {
                write_text(&mut w, "status=success")?;
                write_flush(&mut w)?;
                match out {
                    Output::Bytes(b) => write_content(&mut w, &b[..])?,
                    Output::File(p) => write_content(&mut w, std::fs::File::open(p)?)?,
                }
                write_flush(&mut w)?;
                write_flush(&mut w)?;
            }
            Err(e) => {
                eprintln!("tessera blink: {command} {pathname}: {e:#}");
                write_text(&mut w, "status=error")?;
                write_flush(&mut w)?;
            }
        }
        w.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lite_urls_split_into_base_credentials_and_directory() {
        let u = parse_url("http://x:t%40k@127.0.0.1:8000/-/blink/projects/x.git").unwrap();
        assert_eq!(u.base, "http://127.0.0.1:8000");
        assert_eq!(u.credentials, Some(("x".into(), "t@k".into())));
        assert_eq!(u.dir, "/projects/x");
        let u = parse_url("https://git.example.com/tessera/-/blink/").unwrap();
        assert_eq!((u.base.as_str(), u.dir.as_str(), u.credentials), ("https://git.example.com/tessera", "/", None));
        assert_eq!(parse_url("http://h/projects/x"), None);
        assert_eq!(parse_url("http://h/-/blinkers/x"), None);
        assert_eq!(parse_url("ssh://git@h/-/blink/x"), None);
    }

    #[test]
    fn packets_round_trip_and_bad_lengths_are_refused() {
        let mut out = Vec::new();
        write_text(&mut out, "command=smudge").unwrap();
        write_flush(&mut out).unwrap();
        write_content(&mut out, &vec![7u8; MAX_PAYLOAD + 10][..]).unwrap();
        write_flush(&mut out).unwrap();
        let mut r = &out[..];
        assert_eq!(read_list(&mut r).unwrap(), vec!["command=smudge".to_string()]);
        assert_eq!(read_packet(&mut r).unwrap().unwrap().len(), MAX_PAYLOAD);
        assert_eq!(read_packet(&mut r).unwrap().unwrap().len(), 10);
        assert_eq!(read_packet(&mut r).unwrap(), None);
        for bad in [&b"0003"[..], b"zzzz", b"fff5"] {
            assert!(read_packet(&mut &bad[..]).is_err());
        }
    }
}
