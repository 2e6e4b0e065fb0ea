//! b-link lite views end to end: the real binary, real git clones of
//! `/-/blink/<path>`, the real `tessera blink install` filter, and pushes
//! through the lite view compared with the same change pushed through the
//! full view, ids included.

mod common;

use std::path::Path;
use std::process::Command;

use common::{rest, text, with, Site};
use tessera_testkit::{commit_at, fsck, git, git_output, write, Backend};

const THRESHOLD: &str = "1000000";

/// Deterministic bytes that do not compress away.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

fn b_link(blob: &str) -> String {
    format!("version https://mega.com/directory/spec/v1\nblob {blob}\n")
}

/// GET `url` into a file; the status and the bytes.
fn download(url: &str, token: Option<&str>, to: &Path) -> (u16, Vec<u8>) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o"]).arg(to).args(["-w", "%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-u", &format!("x:{t}")]);
    }
    let out = cmd.arg(url).output().unwrap();
    (text(&out.stdout).trim().parse().unwrap(), std::fs::read(to).unwrap_or_default())
}

fn merge(url: &str, token: &str, id: u64) {
    let (status, body) = rest("POST", &format!("{url}/api/v1/mr/{id}/merge"), Some(token));
    assert_eq!(status, 200, "merging !{id}: {body}");
}

fn mr_head(url: &str, token: &str, id: u64) -> String {
    let (status, body) = rest("GET", &format!("{url}/api/v1/mr/{id}"), Some(token));
    assert_eq!(status, 200, "{body}");
    let mr: serde_json::Value = serde_json::from_str(&body).unwrap();
    mr["head"].as_str().unwrap_or_else(|| panic!("no head in {mr}")).to_string()
}

fn rev(dir: &Path, what: &str) -> String {
    git(dir, &["rev-parse", what]).trim().to_string()
}

fn tessera_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessera")).args(args).current_dir(dir).output().unwrap()
}

/// Serves a copy of a SQLite site's data directory (the server stopped).
fn serve_copy(data: &Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    let database = format!("sqlite://{}/tessera.db", data.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(["--database", &database])
        .env("TESSERA_BLINK_THRESHOLD", THRESHOLD)
        .env_remove("TESSERA_REQUIRE_TOKEN_FOR_READS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut banner).unwrap();
    let url = banner.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_string();
    (child, url)
}

fn copy_dir(from: &Path, to: &Path) {
    let out = Command::new("cp").arg("-a").arg(from).arg(to).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn lite_views(backend: Backend) {
    let Some(site) = Site::with_env(backend, vec![("TESSERA_BLINK_THRESHOLD", THRESHOLD.to_string())]) else { return };
    site.admin(&["user", "add", "admin", "--admin", "--init"]);
    site.admin(&["user", "add", "alice"]);
    site.admin(&["user", "add", "bob"]);
    site.admin(&["access", "grant", "/projects", "write", "--user", "alice"]);
    site.admin(&["access", "grant", "/projects/app", "write", "--user", "bob"]);
    site.admin(&["access", "public", "/projects/secret", "off"]);
    let admin = site.token("admin", "t", "admin");
    let alice = site.token("alice", "t", "write");
    let bob = site.token("bob", "t", "write");
    let (mut server, url) = site.serve(&[]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // /projects/app: a 10 MB file and a 2 MB one (over the threshold), a
    // 500 kB one (under it) and a small text file.
    let app = w.join("app");
    git(w, &["init", "-q", "-b", "main", app.to_str().unwrap()]);
    let big = noise(10_000_000, 1);
    write(&app, "big.bin", &big);
    write(&app, "media/medium.bin", noise(2_000_000, 2));
    write(&app, "media/tiny.bin", noise(500_000, 3));
    write(&app, "docs/readme.txt", "hello\n");
    commit_at(&app, "add app", 1_700_000_000);
    let out = git_output(&app, &["push", &with(&format!("{url}/projects/app"), &alice), "main"]);
    assert!(text(&out.stderr).contains("merge request !1 opened"), "{}", text(&out.stderr));
    merge(&url, &admin, 1);
    // A private directory with its own large file.
    let secret = w.join("secret");
    git(w, &["init", "-q", "-b", "main", secret.to_str().unwrap()]);
    write(&secret, "plans.bin", noise(1_500_000, 4));
    commit_at(&secret, "plans", 1_700_000_100);
    let out = git_output(&secret, &["push", &with(&format!("{url}/projects/secret"), &admin), "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    merge(&url, &admin, 2);

    let full = w.join("full");
    git(w, &["clone", "-q", &with(&format!("{url}/projects/app"), &alice), full.to_str().unwrap()]);
    let big_id = rev(&full, "HEAD:big.bin");
    let medium_id = rev(&full, "HEAD:media/medium.bin");
    let tiny_id = rev(&full, "HEAD:media/tiny.bin");

    // The lite view: b-link files for the two large blobs, the rest as is.
    let lite = w.join("lite");
    git(w, &["clone", "-q", &with(&format!("{url}/-/blink/projects/app"), &alice), lite.to_str().unwrap()]);
    fsck(&lite);
    assert_eq!(std::fs::read_to_string(lite.join("big.bin")).unwrap(), b_link(&big_id));
    assert_eq!(std::fs::read_to_string(lite.join("media/medium.bin")).unwrap(), b_link(&medium_id));
    assert_eq!(rev(&lite, "HEAD:media/tiny.bin"), tiny_id);
    assert_eq!(rev(&lite, "HEAD:docs/readme.txt"), rev(&full, "HEAD:docs/readme.txt"));
    assert_ne!(rev(&lite, "HEAD"), rev(&full, "HEAD"));
    let lite_log = git(&lite, &["log", "--format=%an %ae %at %cn %ce %ct %s"]);
    assert_eq!(lite_log, git(&full, &["log", "--format=%an %ae %at %cn %ce %ct %s"]), "same authors, dates, messages");
    // Deterministic: a second clone has the same ids.
    let again = w.join("again");
    git(w, &["clone", "-q", "--bare", &format!("{url}/-/blink/projects/app"), again.to_str().unwrap()]);
    assert_eq!(rev(&again, "HEAD"), rev(&lite, "HEAD"));
    let pack_bytes: u64 =
        std::fs::read_dir(again.join("objects/pack")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(pack_bytes < 2_000_000, "the lite clone carries no large blob: {pack_bytes} bytes of packs");

    // blob-by-id: the replaced blobs, to whoever can read a directory
    // whose lite view replaced them; nothing else.
    let got = w.join("got");
    let (status, bytes) = download(&format!("{url}/projects/app/-/blob-by-id/{big_id}"), Some(&alice), &got);
    assert_eq!(status, 200);
    assert!(bytes == big, "blob-by-id serves the blob's bytes");
    let (status, _) = download(&format!("{url}/projects/app/-/blob-by-id/{tiny_id}"), Some(&alice), &got);
    assert_eq!(status, 404, "a blob no lite view replaced");
    let (status, _) = download(&format!("{url}/projects/app/-/blob-by-id/zz"), Some(&alice), &got);
    assert_eq!(status, 400);
    let admin_secret = w.join("admin-secret");
    git(w, &["clone", "-q", &with(&format!("{url}/-/blink/projects/secret"), &admin), admin_secret.to_str().unwrap()]);
    let secret_id = rev(&secret, "HEAD:plans.bin");
    assert_eq!(std::fs::read_to_string(admin_secret.join("plans.bin")).unwrap(), b_link(&secret_id));
    let (status, _) = download(&format!("{url}/projects/secret/-/blob-by-id/{secret_id}"), Some(&admin), &got);
    assert_eq!(status, 200);
    let (status, _) = download(&format!("{url}/projects/app/-/blob-by-id/{secret_id}"), Some(&bob), &got);
    assert_eq!(status, 404, "bob cannot read /projects/secret, whatever path he asks through");
    let (status, _) = download(&format!("{url}/projects/secret/-/blob-by-id/{secret_id}"), None, &got);
    assert!(status == 401 || status == 404, "anonymous: {status}");

    // tessera blink install: the real content is checked out, and the
    // work tree is clean (content turns back into the same b-link file).
    let out = tessera_in(&lite, &["blink", "install"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("2 file(s)"), "{}", text(&out.stdout));
    assert!(std::fs::read(lite.join("big.bin")).unwrap() == big);
    assert_eq!(std::fs::read(lite.join("media/medium.bin")).unwrap().len(), 2_000_000);
    assert_eq!(git(&lite, &["status", "--porcelain"]), "");
    git(&lite, &["add", "--renormalize", "."]);
    assert_eq!(git(&lite, &["status", "--porcelain"]), "", "clean turns unchanged content back into b-link files");

    // Change another file through the lite view and through the full view,
    // identically: the merge request's head is the full view's commit.
    let on_server = site_state(&site, &mut server);
    write(&lite, "docs/readme.txt", "hello, lite\n");
    let lite_commit = commit_at(&lite, "edit readme", 1_700_000_500);
    write(&full, "docs/readme.txt", "hello, lite\n");
    let full_commit = commit_at(&full, "edit readme", 1_700_000_500);
    assert_ne!(lite_commit, full_commit);
    let url = on_server.url.clone();
    let out = git_output(&lite, &["push", &with(&format!("{url}/-/blink/projects/app"), &alice), "main"]);
    assert!(text(&out.stderr).contains("merge request !3 opened"), "{}", text(&out.stderr));
    assert_eq!(mr_head(&url, &admin, 3), full_commit, "the lite push maps to the full view's commit");
    merge(&url, &admin, 3);
    git(&full, &["fetch", "-q", &format!("{url}/projects/app"), "main"]);
    assert_eq!(rev(&full, "FETCH_HEAD"), full_commit);
    // The pusher's lite clone is up to date after a pull: the lite view of
    // the merged commit is the commit pushed.
    git(&lite, &["pull", "-q", "--rebase", &with(&format!("{url}/-/blink/projects/app"), &alice), "main"]);
    assert_eq!(rev(&lite, "HEAD"), lite_commit);
    assert_eq!(git(&lite, &["status", "--porcelain"]), "");
    let root = w.join("root");
    git(w, &["clone", "-q", "--bare", &with(&format!("{url}/"), &admin), root.to_str().unwrap()]);
    fsck(&root);
    assert_eq!(rev(&root, "HEAD:projects/app/big.bin"), big_id);
    assert_eq!(rev(&root, "HEAD:projects/app/docs/readme.txt"), rev(&full, "HEAD:docs/readme.txt"));

    // The same change pushed through the full view of a copy of the site
    // (taken before the lite push) gives the same root history, ids and all.
    if let Some(copy) = &on_server.copy {
        let (mut twin, twin_url) = serve_copy(copy);
        let out = git_output(&full, &["push", &with(&format!("{twin_url}/projects/app"), &alice), "main"]);
        assert!(text(&out.stderr).contains("merge request !3 opened"), "{}", text(&out.stderr));
        merge(&twin_url, &admin, 3);
        let twin_root = w.join("twin-root");
        git(w, &["clone", "-q", "--bare", &with(&format!("{twin_url}/"), &admin), twin_root.to_str().unwrap()]);
        assert_eq!(rev(&twin_root, "HEAD"), rev(&root, "HEAD"), "the merged root history is the full view's");
        let _ = twin.kill();
        let _ = twin.wait();
    }

    // Refusals: a b-link file naming a blob the server does not have, and
    // one naming a blob the pusher cannot read.
    let bob_lite = w.join("bob-lite");
    git(w, &["clone", "-q", &with(&format!("{url}/-/blink/projects/app"), &bob), bob_lite.to_str().unwrap()]);
    write(&bob_lite, "ghost.bin", b_link(&"3".repeat(40)));
    commit_at(&bob_lite, "ghost", 1_700_000_600);
    let out = git_output(&bob_lite, &["push", &with(&format!("{url}/-/blink/projects/app"), &bob), "main"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("names blob 3333"), "{}", text(&out.stderr));
    git(&bob_lite, &["reset", "-q", "--hard", "HEAD~1"]);
    write(&bob_lite, "stolen.bin", b_link(&secret_id));
    commit_at(&bob_lite, "stolen", 1_700_000_700);
    let out = git_output(&bob_lite, &["push", &with(&format!("{url}/-/blink/projects/app"), &bob), "main"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(&format!("names blob {secret_id}")), "{}", text(&out.stderr));
    // A push building on commits outside the lite view is refused too.
    let out = git_output(&full, &["push", &with(&format!("{url}/-/blink/projects/app"), &bob), "HEAD:refs/for/main"]);
    assert!(!out.status.success());
    // The server still serves.
    let (status, _) = rest("GET", &format!("{url}/health"), None);
    assert_eq!(status, 200);
    let mut server = on_server.server;
    let _ = server.kill();
    let _ = server.wait();
}

/// The running server, and (on SQLite) a copy of its data directory taken
/// with the server stopped and restarted.
struct OnServer {
    server: std::process::Child,
    url: String,
    copy: Option<std::path::PathBuf>,
    _dir: tempfile::TempDir,
}

fn site_state(site: &Site, server: &mut std::process::Child) -> OnServer {
    let dir = tempfile::tempdir().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let copy = site.database.starts_with("sqlite://").then(|| {
        let to = dir.path().join("data");
        copy_dir(Path::new(&site.data), &to);
        to
    });
    let (server, url) = site.serve(&[]);
    OnServer { server, url, copy, _dir: dir }
}

#[test]
fn lite_views_on_sqlite() {
    lite_views(Backend::Sqlite);
}

#[test]
fn lite_views_on_postgres() {
    lite_views(Backend::Postgres);
}
