//! Hostile pushes and requests against the real `tessera serve` binary:
//! each is refused clearly or stored servably, the process keeps serving,
//! its memory stays bounded, and clones of the repository and of `/` still
//! pass `git fsck`. One test per finding of the hardening issue.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tessera_testkit::packs::{self, PackWriter};
use tessera_testkit::{git, git_output, pkt, push_body};

const NULL: &str = "0000000000000000000000000000000000000000";

/// A `tessera serve` process over a fresh SQLite data directory.
struct Served {
    child: Child,
    url: String,
    token: String,
    data: tempfile::TempDir,
}

impl Served {
    fn start(config: &str) -> Served {
        let data = tempfile::tempdir().unwrap();
        let config_path = data.path().join("tessera.toml");
        std::fs::write(&config_path, config).unwrap();
        Self::start_in(data, &config_path)
    }

    fn start_in(data: tempfile::TempDir, config_path: &Path) -> Served {
        let dir = data.path().join("data");
        let token = create_token(&dir);
        let log = std::fs::File::create(data.path().join("server.log")).unwrap();
        let (child, url) = spawn_serve(&dir, config_path, log.into(), &[]);
        Served { child, url, token, data }
    }

    fn repo(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn push_url(&self, path: &str) -> String {
        self.repo(path).replacen("http://", &format!("http://t:{}@", self.token), 1)
    }

    /// The process is alive and answers `/health` at once.
    fn assert_serving(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "the server died; log:\n{}", self.log());
        let out = Command::new("curl")
            .args(["-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("{}/health", self.url))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "health; log:\n{}", self.log());
    }

    /// The server process's peak resident memory so far, in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }

    /// POSTs a raw body to a service endpoint; returns status and body.
    fn post(&self, path: &str, service: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("body");
        std::fs::write(&file, body).unwrap();
        let out = Command::new("curl")
            .args(["-s", "-m", "120", "-o", "-", "-w", "\n%{http_code}", "-H"])
            .arg(format!("Content-Type: application/x-{service}-request"))
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(format!("{}/{service}", self.push_url(path)))
            .output()
            .unwrap();
        let text = out.stdout;
        let split = text.iter().rposition(|b| *b == b'\n').expect("status line");
        let status = String::from_utf8_lossy(&text[split + 1..]).trim().parse().unwrap_or(0);
        (status, text[..split].to_vec())
    }

    fn get(&self, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-m", "60", "-o", "-", "-w", "\n%{http_code}"])
            .arg(format!("{}{path}", self.url))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Mirror-clones `path` and checks it with `git fsck`; returns the clone.
    fn clone_and_fsck(&self, path: &str, into: &Path) -> PathBuf {
        static CLONES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CLONES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let target = into.join(format!("clone{n}{}", path.replace('/', "_")));
        git(into, &["clone", "-q", "--mirror", &self.repo(path), target.to_str().unwrap()]);
        git(&target, &["fsck", "--no-progress"]);
        target
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tessera(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(args);
    for var in ["TESSERA_DATA_DIR", "TESSERA_LISTEN", "TESSERA_DATABASE", "TESSERA_CONFIG", "TESSERA_LOG"] {
        cmd.env_remove(var);
    }
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Pushes `pack` to `refs/heads/main` of `path` as a raw request.
fn push_pack(server: &Served, path: &str, new: &str, pack: &[u8]) -> String {
    let body = push_body(&[(NULL, new, "refs/heads/main")], "report-status side-band-64k", pack);
    let (status, reply) = server.post(path, "git-receive-pack", &body);
    assert_eq!(status, 200, "{}", text(&reply));
    text(&reply)
}

/// Writes a blob and `depth` deltas, each appending a byte to the one
/// before; returns the last one's content.
fn deep_chain(w: &mut PackWriter, depth: usize) -> Vec<u8> {
    let mut content = b"a".to_vec();
    let mut at = w.whole("blob", &content);
    for _ in 0..depth {
        at = w.ofs_delta(at, &packs::appending_delta(content.len() as u64, b"b"));
        content.push(b'b');
    }
    content
}

/// A commit holding one file, as a pack; returns (pack, commit id).
fn one_file_commit(writer: &mut PackWriter, tree: &[u8]) -> String {
    let tree_id = packs::object_id("tree", tree);
    writer.whole("tree", tree);
    let commit = packs::commit(&tree_id, &[], "hostile");
    writer.whole("commit", &commit);
    packs::object_id("commit", &commit)
}

#[test]
fn delta_bombs_are_refused_before_anything_is_allocated() {
    let mut server = Served::start("");
    // A 64 KiB base and deltas that each promise 1 GiB by copying it 16,384
    // times, chained three deep: a 67 KB pack.
    let base = vec![b'x'; 64 << 10];
    let mut w = PackWriter::default();
    let base_at = w.whole("blob", &base);
    let bomb = packs::copying_delta(base.len() as u64, base.len() as u64, 16_384);
    let first = w.ofs_delta(base_at, &bomb);
    let second = w.ofs_delta(first, &packs::copying_delta(1 << 30, 1 << 23, 128));
    w.ofs_delta(second, &packs::copying_delta(1 << 30, 1 << 23, 128));
    let blob_id = packs::object_id("blob", &base);
    let commit = one_file_commit(&mut w, &packs::tree(&[("100644", b"f", &blob_id)]));
    let pack = w.finish();
    assert!(pack.len() < 200_000, "{}", pack.len());

    let reply = push_pack(&server, "/import/bomb", &commit, &pack);
    assert!(reply.contains("over the limit"), "{reply}");
    assert!(!reply.contains("unpack ok"), "{reply}");
    server.assert_serving();
    let rss = server.peak_rss();
    assert!(rss < 256 << 20, "server peaked at {} MB", rss >> 20);
    // A refused push to a new path leaves no repository behind.
    let dir = tempfile::tempdir().unwrap();
    let out = git_output(dir.path(), &["ls-remote", &server.repo("/import/bomb")]);
    assert!(!out.status.success(), "the refused push created a repository");
    server.clone_and_fsck("/", dir.path());
}

#[test]
fn deep_delta_chains_are_stored_servably() {
    let mut server = Served::start("");
    // 12,000 deltas, each appending a byte to the one before.
    let mut w = PackWriter::default();
    let content = deep_chain(&mut w, 12_000);
    let blob_id = packs::object_id("blob", &content);
    let commit = one_file_commit(&mut w, &packs::tree(&[("100644", b"f", &blob_id)]));
    let pack = w.finish();

    let reply = push_pack(&server, "/import/chain", &commit, &pack);
    assert!(reply.contains("unpack ok") && reply.contains("ok refs/heads/main"), "{reply}");
    server.assert_serving();
    let dir = tempfile::tempdir().unwrap();
    let clone = server.clone_and_fsck("/import/chain", dir.path());
    let shown = git(&clone, &["cat-file", "blob", &format!("{commit}:f")]);
    assert_eq!(shown.len(), content.len());
    server.clone_and_fsck("/", dir.path());
    // Every object that was accepted reads back, through a fresh process too.
    let work = dir.path().join("work");
    git(dir.path(), &["clone", "-q", &server.repo("/import/chain"), work.to_str().unwrap()]);
    assert_eq!(std::fs::read(work.join("f")).unwrap(), content);
}

#[test]
fn deep_nesting_never_overflows_the_stack() {
    let mut server = Served::start("");
    // A path of 3,000 segments.
    let deep_path = format!("/import/{}", vec!["d"; 3000].join("/"));
    let dir = tempfile::tempdir().unwrap();
    let out = git_output(dir.path(), &["ls-remote", &server.repo(&deep_path)]);
    assert!(!out.status.success());
    let (status, reply) = server.post(&deep_path, "git-receive-pack", b"0000");
    assert!(status == 400 || text(&reply).contains("invalid"), "{status} {}", text(&reply));
    server.assert_serving();

    // A tree nested 3,000 deep, pushed to an import and to a monorepo directory.
    let mut w = PackWriter::default();
    let blob = b"leaf\n";
    w.whole("blob", blob);
    let mut tree = packs::tree(&[("100644", b"f", &packs::object_id("blob", blob))]);
    for _ in 0..3000 {
        let id = packs::object_id("tree", &tree);
        w.whole("tree", &tree);
        tree = packs::tree(&[("40000", b"d", &id)]);
    }
    let commit = one_file_commit(&mut w, &tree);
    let pack = w.finish();
    let reply = push_pack(&server, "/import/deep", &commit, &pack);
    assert!(reply.contains("unpack ok"), "{reply}");
    server.assert_serving();
    server.clone_and_fsck("/import/deep", dir.path());
    server.clone_and_fsck("/", dir.path());

    let body = push_body(&[(NULL, &commit, "refs/heads/main")], "report-status", &pack);
    let (status, reply) = server.post("/projects/deep", "git-receive-pack", &body);
    assert_eq!(status, 200, "{}", text(&reply));
    server.assert_serving();
    // Views of a merge request holding that tree, anonymously.
    for id in 1..=2 {
        let (status, _) = server.get(&format!("/api/v1/mr/{id}"));
        assert!(status > 0, "no answer for MR {id}");
        server.assert_serving();
    }
    server.clone_and_fsck("/", dir.path());
}

/// A history as old tools wrote it: a `100664` file, a zero-padded tree
/// mode and a tag without a tagger.
fn odd_history() -> (Vec<u8>, String, String) {
    let mut w = PackWriter::default();
    let readme = b"old\n";
    w.whole("blob", readme);
    let readme_id = packs::object_id("blob", readme);
    let sub = packs::tree(&[("100644", b"x", &readme_id)]);
    w.whole("tree", &sub);
    let sub_id = packs::object_id("tree", &sub);
    let root = packs::tree(&[("100664", b"README", &readme_id), ("040000", b"sub", &sub_id)]);
    let commit = one_file_commit(&mut w, &root);
    let tag = format!("object {commit}\ntype commit\ntag v0.1\n\nan old tag\n");
    w.whole("tag", tag.as_bytes());
    (w.finish(), commit, packs::object_id("tag", tag.as_bytes()))
}

#[test]
fn old_histories_are_accepted_counted_and_served_back() {
    let mut server = Served::start("");
    let (pack, commit, tag) = odd_history();
    // A bare repository holding it, pushed with the stock client.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.git");
    git(dir.path(), &["init", "-q", "--bare", src.to_str().unwrap()]);
    let pack_path = dir.path().join("odd.pack");
    std::fs::write(&pack_path, &pack).unwrap();
    let out = Command::new("git")
        .args(["index-pack", "--stdin"])
        .current_dir(&src)
        .stdin(std::fs::File::open(&pack_path).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    git(&src, &["update-ref", "refs/heads/main", &commit]);
    git(&src, &["update-ref", "refs/tags/v0.1", &tag]);
    let out = git_output(&src, &["push", "--mirror", &server.push_url("/import/old")]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("badFilemode: 1") && stderr.contains("zeroPaddedFilemode: 1"), "{stderr}");
    assert!(stderr.contains("missingTaggerEntry: 1"), "{stderr}");
    server.assert_serving();

    let clone = server.clone_and_fsck("/import/old", dir.path());
    let refs = |repo: &Path| git(repo, &["for-each-ref", "--format=%(objectname) %(refname)"]);
    assert_eq!(refs(&clone), refs(&src));
    server.clone_and_fsck("/", dir.path());

    // The operator can make any finding an error, as with receive.fsck.<id>.
    let strict = Served::start("[fsck]\nbadFilemode = \"error\"\n");
    let out = git_output(&src, &["push", "--mirror", &strict.push_url("/import/old")]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("badFilemode"), "{}", text(&out.stderr));
}

#[test]
fn dangerous_names_are_refused_even_where_git_only_warns() {
    let mut server = Served::start("");
    let blob = b"#!/bin/sh\necho owned\n";
    let blob_id = packs::object_id("blob", blob);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (packs::tree(&[("100755", b".GIT", &blob_id)]), "hasDotgit"),
        (packs::tree(&[("100644", b"..", &blob_id)]), "hasDotdot"),
        (packs::tree(&[("120000", b".gitmodules", &blob_id)]), "gitmodulesSymlink"),
    ];
    for (tree, id) in cases {
        let mut w = PackWriter::default();
        w.whole("blob", blob);
        let commit = one_file_commit(&mut w, &tree);
        let reply = push_pack(&server, "/import/evil", &commit, &w.finish());
        assert!(reply.contains(id) && !reply.contains("unpack ok"), "{id}: {reply}");
    }
    // .gitmodules whose url a client would run as an option.
    let modules = b"[submodule \"x\"]\n\tpath = x\n\turl = --upload-pack=touch$IFS/tmp/owned\n";
    let mut w = PackWriter::default();
    w.whole("blob", modules);
    let commit =
        one_file_commit(&mut w, &packs::tree(&[("100644", b".gitmodules", &packs::object_id("blob", modules))]));
    let reply = push_pack(&server, "/import/evil", &commit, &w.finish());
    assert!(reply.contains("gitmodulesUrl"), "{reply}");
    // A repository path through `.git` would never show up in `/`.
    let (status, reply) = server.post("/import/evil/.git/hooks", "git-receive-pack", b"0000");
    assert_eq!(status, 400, "{}", text(&reply));
    server.assert_serving();
    let dir = tempfile::tempdir().unwrap();
    assert!(!git_output(dir.path(), &["ls-remote", &server.repo("/import/evil")]).status.success());
    server.clone_and_fsck("/", dir.path());
}

#[test]
fn overlong_and_endless_requests_do_not_break_the_server() {
    let mut server = Served::start("");
    // An unknown v0 upload-pack line of 65,516 bytes: the reply quotes it.
    let mut body = format!("{:04x}", 65_520).into_bytes();
    body.extend(vec![b'z'; 65_516]);
    body.extend_from_slice(b"0000");
    let (status, _) = server.post("/", "git-upload-pack", &body);
    assert!(status > 0);
    server.assert_serving();
    assert!(!server.log().contains("panicked"), "{}", server.log());

    // 40,000 deletes of refs that do not exist: parsed once, each refused.
    let mut commands = Vec::new();
    for i in 0..40_000 {
        let line = if i == 0 {
            format!("{} {NULL} refs/heads/b{i}\0report-status\n", "1".repeat(40))
        } else {
            format!("{} {NULL} refs/heads/b{i}\n", "1".repeat(40))
        };
        commands.extend(pkt(&line));
    }
    commands.extend_from_slice(b"0000");
    let (status, reply) = server.post("/import/many", "git-receive-pack", &commands);
    assert_eq!(status, 200);
    assert!(text(&reply).contains("ng refs/heads/b39999"), "{}", text(&reply).len());
    server.assert_serving();
}

#[test]
fn slow_clients_are_cut_off_and_do_not_hold_the_server() {
    use std::io::{Read, Write};
    let mut server = Served::start("request_timeout_secs = 2\n");
    let addr = server.url.trim_start_matches("http://").to_string();
    // Slowloris: many connections sending their headers a byte at a time.
    let mut slow: Vec<std::net::TcpStream> = (0..64)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    // A push whose body stops after its command list.
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("t:{}", server.token))
    };
    let mut commands = pkt(&format!("{NULL} {} refs/heads/main\0report-status\n", "1".repeat(40)));
    commands.extend_from_slice(b"0000PACK");
    let head = format!(
        "POST /import/stall/git-receive-pack HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/x-git-receive-pack-request\r\nContent-Length: 1000000\r\n\r\n"
    );
    stalled.write_all(head.as_bytes()).unwrap();
    stalled.write_all(&commands).unwrap();
    let started = std::time::Instant::now();
    // Trickle for longer than the limit: the server must still serve, and
    // then close every slow connection on its own.
    while started.elapsed() < std::time::Duration::from_secs(5) {
        for c in &mut slow {
            let _ = c.write_all(b"X");
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    server.assert_serving();
    // Closed: reading reaches the end (or a reset) instead of waiting.
    let closed = slow
        .iter_mut()
        .filter_map(|c| {
            c.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let mut rest = Vec::new();
            let ended = match c.read_to_end(&mut rest) {
                Ok(_) => true,
                Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            };
            ended.then_some(())
        })
        .count();
    assert_eq!(closed, slow.len(), "slow connections the server kept open");
    // The stalled push got an answer (408) instead of holding its spool file.
    stalled.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut reply = Vec::new();
    let _ = stalled.read_to_end(&mut reply);
    assert!(text(&reply).starts_with("HTTP/1.1 408"), "{}", text(&reply));
    let incoming = server.data.path().join("data/packs/incoming");
    let left: Vec<_> = std::fs::read_dir(&incoming).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(left.is_empty(), "spool files left: {left:?}");
    server.assert_serving();
}

#[test]
fn spool_files_of_killed_pushes_are_removed_at_start() {
    let data = tempfile::tempdir().unwrap();
    let incoming = data.path().join("data").join("packs").join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let dead = incoming.join("spool-dead");
    std::fs::write(&dead, vec![0u8; 1 << 20]).unwrap();
    // A spool another live process holds stays.
    let live = incoming.join("spool-live");
    std::fs::write(&live, b"PACK").unwrap();
    let held = std::fs::OpenOptions::new().read(true).write(true).open(&live).unwrap();
    held.try_lock().unwrap();
    let config = data.path().join("tessera.toml");
    std::fs::write(&config, "").unwrap();
    let mut server = Served::start_in(data, &config);
    server.assert_serving();
    assert!(!dead.exists(), "a dead push's spool file was kept");
    assert!(live.exists(), "a live push's spool file was removed");
    drop(held);
}

#[test]
fn merge_request_views_summarise_huge_blobs() {
    let mut server = Served::start("");
    // A 200 MiB blob from a 64 KiB base, in a pack of a few KB, pushed to a
    // monorepo directory: it opens a merge request.
    let base = vec![b'y'; 64 << 10];
    let mut w = PackWriter::default();
    let base_at = w.whole("blob", &base);
    w.ofs_delta(base_at, &packs::copying_delta(base.len() as u64, base.len() as u64, 3200));
    let huge_id = sha1_of_repeated(&base, 3200);
    let commit = one_file_commit(
        &mut w,
        &packs::tree(&[("100644", b"big.bin", &huge_id), ("100644", b"small", &packs::object_id("blob", &base))]),
    );
    let reply = push_pack(&server, "/projects/big", &commit, &w.finish());
    assert!(reply.contains("merge request !1"), "{reply}");
    let after_push = server.peak_rss();
    // Anonymous views, two at a time.
    let url = format!("{}/api/v1/mr/1", server.url);
    let views: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Command::new("curl").args(["-s", "-m", "120", &url]).output().unwrap())
        })
        .collect();
    server.assert_serving();
    for view in views {
        let out = view.join().unwrap();
        let json = text(&out.stdout);
        assert!(json.contains("\"big.bin\"") && json.contains("too large"), "{json}");
    }
    let after_views = server.peak_rss();
    assert!(
        after_views < after_push + (64 << 20),
        "views took the server from {} MB to {} MB",
        after_push >> 20,
        after_views >> 20
    );
    server.assert_serving();
}

/// The id of a blob made of `piece` repeated `n` times.
fn sha1_of_repeated(piece: &[u8], n: usize) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", piece.len() * n).as_bytes());
    for _ in 0..n {
        h.update(piece);
    }
    hex::encode(h.finalize())
}

/// Creates a token in the data directory `dir`; returns its secret.
fn create_token(dir: &Path) -> String {
    let data = dir.to_str().unwrap();
    let out = tessera(&["user", "add", "t", "--admin", "--init", "--data-dir", data]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tessera(&["token", "create", "--user", "t", "--scope", "admin", "--data-dir", data]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).split_whitespace().last().unwrap().to_string()
}

/// Starts `tessera serve` over the data directory `dir` with `config` and
/// `env`, its log to `stderr`; returns it and its URL.
fn spawn_serve(dir: &Path, config: &Path, stderr: Stdio, env: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = tessera(&["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.to_str().unwrap()]);
    cmd.arg("--config").arg(config).stdout(Stdio::piped()).stderr(stderr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("tessera serve starts");
    let mut banner = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut banner).unwrap();
    let url = banner.split_whitespace().find(|w| w.starts_with("http://")).expect("banner names the URL").to_string();
    (child, url)
}

/// Starts `tessera serve` over `dir` (its `tessera.toml`) with `env`.
fn serve_at(dir: &Path, env: &[(&str, &str)]) -> (Child, String) {
    spawn_serve(dir, &dir.join("tessera.toml"), Stdio::null(), env)
}

fn pack_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("packs"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| n.ends_with(".pack"));
    names.sort();
    names
}

#[test]
fn pushes_killed_at_any_step_leave_old_refs_and_no_debris() {
    // The last point is after the refs moved, before the monorepo root took
    // the import in: the restart must catch the root up.
    for point in ["receive-upload", "receive-ingest", "receive-ref-update", "receive-sync"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tessera.toml"), "").unwrap();
        let token = create_token(&dir);
        let push_url =
            |url: &str, path: &str| format!("{}{path}", url.replacen("http://", &format!("http://t:{token}@"), 1));

        let src = tessera_testkit::new_repo();
        tessera_testkit::write(src.path(), "f", "one\n");
        let first = tessera_testkit::commit_all(src.path(), "one");
        let (mut server, url) = serve_at(&dir, &[]);
        git(src.path(), &["push", "-q", &push_url(&url, "/import/k"), "main"]);
        let _ = server.kill();
        let _ = server.wait();
        let packs_before = pack_files(&dir);
        let rows_before = count_rows(&dir);

        tessera_testkit::write(src.path(), "f", "two\n");
        let second = tessera_testkit::commit_all(src.path(), "two");
        let paths: &[&str] = if point == "receive-sync" { &["/import/k"] } else { &["/import/k", "/import/new"] };
        for path in paths {
            let (mut server, url) = serve_at(&dir, &[("TESSERA_FAILPOINT", point)]);
            let out = git_output(src.path(), &["push", "-q", &push_url(&url, path), "main"]);
            assert!(!out.status.success(), "{point}: the push to {path} succeeded");
            let status = server.wait().unwrap();
            assert!(!status.success(), "{point}: the server did not die");
        }

        // Restarted: refs are old or new, never in between.
        let (mut server, url) = serve_at(&dir, &[]);
        let work = tempfile::tempdir().unwrap();
        let refs = git(work.path(), &["ls-remote", &format!("{url}/import/k")]);
        let incoming = dir.join("packs").join("incoming");
        let left: Vec<_> = std::fs::read_dir(&incoming).map(|d| d.flatten().collect()).unwrap_or_default();
        assert!(left.is_empty(), "{point}: spool files left: {left:?}");
        if point == "receive-sync" {
            // Committed: the import has the new head, and the root shows it.
            assert!(refs.contains(&second), "{point}: {refs}");
            let root = work.path().join("root");
            git(work.path(), &["clone", "-q", &format!("{url}/"), root.to_str().unwrap()]);
            let f = std::fs::read_to_string(root.join("import/k/f")).unwrap();
            assert_eq!(f, "two\n", "{point}: the monorepo root was not caught up");
        } else {
            assert!(refs.contains(&first) && !refs.contains(&second), "{point}: {refs}");
            // Nothing was kept: no pack file, no rows, no repository.
            assert_eq!(pack_files(&dir), packs_before, "{point}");
            assert_eq!(count_rows(&dir), rows_before, "{point}");
            let new_repo = git_output(work.path(), &["ls-remote", &format!("{url}/import/new")]);
            assert!(!new_repo.status.success(), "{point}: an empty repository was left");
        }
        // The same pushes work now, and everything serves.
        for path in paths {
            git(src.path(), &["push", "-q", &push_url(&url, path), "main"]);
        }
        for path in paths.iter().copied().chain(["/"]) {
            let target = work.path().join(format!("c{}", path.replace('/', "_")));
            git(work.path(), &["clone", "-q", "--mirror", &format!("{url}{path}"), target.to_str().unwrap()]);
            git(&target, &["fsck", "--no-progress"]);
        }
        let _ = server.kill();
        let _ = server.wait();
    }
}

/// Rows in the tables a push writes, read with the sqlite3 CLI.
fn count_rows(dir: &Path) -> Vec<(String, String)> {
    let db = dir.join("tessera.db");
    ["repos", "packs", "objects", "commits", "refs"]
        .iter()
        .map(|table| {
            let out = Command::new("sqlite3").arg(&db).arg(format!("SELECT COUNT(*) FROM {table}")).output().unwrap();
            assert!(out.status.success(), "sqlite3: {}", text(&out.stderr));
            (table.to_string(), text(&out.stdout).trim().to_string())
        })
        .collect()
}

#[test]
fn fsck_repairs_chains_an_earlier_version_stored_too_deep() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tessera.toml"), "").unwrap();
    let data = dir.to_str().unwrap();
    create_token(&dir);

    // A 12,000-deep chain stored the way the previous version did: whole
    // chain kept, ref moved.
    let mut w = PackWriter::default();
    let content = deep_chain(&mut w, 12_000);
    let tree = packs::tree(&[("100644", b"f", &packs::object_id("blob", &content))]);
    let tree_id = packs::object_id("tree", &tree);
    let commit = one_file_commit(&mut w, &tree);
    let spooled = dir.join("old.pack");
    std::fs::write(&spooled, w.finish()).unwrap();
    let oid = |hex: &str| tessera_pack::ObjectId::from_hex(hex.as_bytes()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", dir.join("tessera.db").display());
        let options = tessera_store::Options { storage: tessera_store::Storage::Files, max_connections: Some(2) };
        let store = tessera_store::Store::open(&url, &dir, options).await.unwrap();
        let repo = store.create_repo("/import/old", tessera_store::RepoKind::Import).await.unwrap();
        let limits = tessera_pack::index::Limits { max_delta_depth: u32::MAX, ..Default::default() };
        let scanned = tessera_pack::index::scan(&spooled, limits, &mut |_| Ok(None), &mut |_, _| Ok(())).unwrap();
        let size = std::fs::metadata(&spooled).unwrap().len();
        let commits = [tessera_store::NewCommit {
            id: oid(&commit),
            tree: oid(&tree_id),
            parents: Vec::new(),
            generation: 1,
            time: 1_700_000_000,
        }];
        let pack = tessera_store::NewPack { checksum: scanned.checksum, size };
        store.add_pack(repo.id, &spooled, pack, &scanned.objects, &commits).await.unwrap();
        let update = tessera_store::RefUpdate {
            name: "refs/heads/main".into(),
            old: None,
            new: Some(oid(&commit)),
            peeled: None,
        };
        store.update_refs(repo.id, &[update], true).await.unwrap();
        store.pool().close().await;
    });

    // Unservable as stored, and fsck says so.
    let work = tempfile::tempdir().unwrap();
    let (mut server, url) = serve_at(&dir, &[]);
    let clone = git_output(work.path(), &["clone", "-q", "--mirror", &format!("{url}/import/old"), "before"]);
    assert!(!clone.status.success(), "the deep chain was servable before the repair");
    let _ = server.kill();
    let _ = server.wait();
    let out = tessera(&["fsck", "/import/old", "--data-dir", data]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("delta chain"), "{}", text(&out.stdout));

    let out = tessera(&["fsck", "--repair", "--data-dir", data]).output().unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stderr).contains("stored again whole"), "{}", text(&out.stderr));
    let out = tessera(&["fsck", "--data-dir", data]).output().unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));

    let (mut server, url) = serve_at(&dir, &[]);
    let target = work.path().join("after");
    git(work.path(), &["clone", "-q", "--mirror", &format!("{url}/import/old"), target.to_str().unwrap()]);
    git(&target, &["fsck", "--no-progress"]);
    assert_eq!(git(&target, &["cat-file", "blob", &format!("{commit}:f")]).len(), content.len());
    let _ = server.kill();
    let _ = server.wait();
}
