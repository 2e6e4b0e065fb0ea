//! Git LFS end to end: the real `git` and `git-lfs` clients against the
//! real server, plus raw HTTP for what the clients never send (wrong
//! hashes, anonymous uploads, ranges, other people's objects).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{rest, text, with, Site, SshClient};
use sha2::Digest;
use tessera_testkit::Backend;

/// git with LFS's filters in its global configuration (and nothing else
/// from the machine), as a user who ran `git lfs install` would have.
struct Lfs {
    home: tempfile::TempDir,
}

impl Lfs {
    fn new() -> Lfs {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("gitconfig"),
            "[filter \"lfs\"]\n\tclean = git-lfs clean -- %f\n\tsmudge = git-lfs smudge -- %f\n\
             \tprocess = git-lfs filter-process\n\trequired = true\n\
             [user]\n\tname = Lars Files\n\temail = lars@example.com\n[init]\n\tdefaultBranch = main\n",
        )
        .unwrap();
        Lfs { home }
    }

    fn output(&self, dir: &Path, args: &[&str]) -> Output {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("HOME", self.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", self.home.path().join("gitconfig"))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_LFS_SKIP_PUSH_LOCKS_VERIFICATION", "0")
            .output()
            .unwrap()
    }

    fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.output(dir, args);
        assert!(out.status.success(), "git {args:?}: {}\n{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    fn refused(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.output(dir, args);
        assert!(!out.status.success(), "git {args:?} succeeded: {}", text(&out.stderr));
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    }

    /// A new repository tracking `*.bin` with LFS, hooks installed.
    fn repo(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        self.ok(dir.path(), &["init", "-q", "-b", "main"]);
        self.ok(dir.path(), &["lfs", "install", "--local"]);
        self.ok(dir.path(), &["lfs", "track", "*.bin"]);
        dir
    }

    fn clone(&self, url: &str, into: &Path) {
        self.ok(into.parent().unwrap(), &["clone", "-q", url, into.to_str().unwrap()]);
        self.ok(into, &["lfs", "install", "--local"]);
    }
}

/// `n` bytes that do not compress, the same for the same seed.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn curl(args: &[&str]) -> (u16, Vec<u8>, String) {
    let headers = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-D"])
        .arg(headers.path())
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let split = out.stdout.iter().rposition(|b| *b == b'\n').unwrap();
    let status = text(&out.stdout[split + 1..]).trim().parse().unwrap();
    (status, out.stdout[..split].to_vec(), std::fs::read_to_string(headers.path()).unwrap())
}

/// A batch request; returns the status and the JSON answer.
fn batch(url: &str, token: Option<&str>, operation: &str, objects: &[(&str, u64)]) -> (u16, serde_json::Value) {
    let objects: Vec<serde_json::Value> =
        objects.iter().map(|(oid, size)| serde_json::json!({ "oid": oid, "size": size })).collect();
    let body = serde_json::json!({ "operation": operation, "transfers": ["basic"], "objects": objects }).to_string();
    let auth = token.map(|t| format!("x:{t}"));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let data = format!("@{}", file.path().display());
    let mut args = vec![
        "-X",
        "POST",
        "-H",
        "Accept: application/vnd.git-lfs+json",
        "-H",
        "Content-Type: application/vnd.git-lfs+json",
        "--data-binary",
        &data,
    ];
    if let Some(a) = &auth {
        args.extend(["-u", a]);
    }
    let endpoint = format!("{url}/info/lfs/objects/batch");
    args.push(&endpoint);
    let (status, body, headers) = curl(&args);
    assert!(headers.to_lowercase().contains("content-type: application/vnd.git-lfs+json"), "{headers}");
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

/// Checks a batch answer against what git-lfs's batch schema requires.
fn check_batch_answer(answer: &serde_json::Value, operation: &str) {
    assert_eq!(answer["transfer"], "basic");
    for object in answer["objects"].as_array().expect("objects") {
        let oid = object["oid"].as_str().expect("oid is a string");
        assert!(!oid.is_empty());
        assert!(object["size"].as_i64().expect("size is an integer") >= 0);
        match (object.get("actions"), object.get("error")) {
            (Some(_), Some(_)) => panic!("actions and error together: {object}"),
            (Some(actions), None) => {
                for (name, action) in actions.as_object().expect("actions is an object") {
                    let allowed: &[&str] = if operation == "download" { &["download"] } else { &["upload", "verify"] };
                    assert!(allowed.contains(&name.as_str()), "{name} in a {operation} answer");
                    assert!(action["href"].as_str().expect("href").starts_with("http"), "{action}");
                    if let Some(h) = action.get("header") {
                        assert!(h.as_object().unwrap().values().all(|v| v.is_string()));
                    }
                    if let Some(n) = action.get("expires_in") {
                        assert!(n.as_i64().unwrap().abs() <= 2147483647);
                    }
                }
            }
            (None, Some(error)) => {
                assert!(error["code"].as_i64().is_some() && error["message"].is_string(), "{error}");
            }
            (None, None) => assert_eq!(operation, "upload", "a download answer needs an action or an error"),
        }
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Where a test site keeps pack files and LFS objects.
#[derive(Clone, Copy, PartialEq)]
enum Stored {
    Files,
    Database,
    /// A moto S3 bucket; `presigned`: downloads go to the bucket itself.
    S3 {
        presigned: bool,
    },
}

const BUCKET: &str = "tessera-lfs";

fn lfs_end_to_end(backend: Backend, stored: Stored) {
    let s3 = match stored {
        Stored::S3 { .. } => match tessera_testkit::S3Server::start(BUCKET) {
            Some(s3) => Some(s3),
            None => return,
        },
        _ => None,
    };
    let mut env = Vec::new();
    match stored {
        Stored::Files => {}
        Stored::Database => env.push(("TESSERA_STORAGE", "database".to_string())),
        Stored::S3 { presigned } => {
            env.extend(s3.as_ref().unwrap().env(BUCKET, "site"));
            if presigned {
                env.push(("TESSERA_LFS_PRESIGNED_DOWNLOADS", "true".to_string()));
            }
        }
    }
    let presigned = stored == Stored::S3 { presigned: true };
    let Some(site) = Site::with_env(backend, env) else { return };
    site.admin(&["user", "add", "admin", "--admin", "--init"]);
    for user in ["alice", "bob", "carol"] {
        site.admin(&["user", "add", user]);
    }
    let admin = site.token("admin", "t", "admin");
    let alice = site.token("alice", "t", "write");
    let bob = site.token("bob", "t", "write");
    let carol = site.token("carol", "t", "write");
    site.admin(&["access", "grant", "/import", "write", "--user", "alice"]);
    site.admin(&["access", "grant", "/import", "write", "--user", "bob"]);
    site.admin(&["access", "grant", "/projects/x", "write", "--user", "alice"]);
    site.admin(&["access", "public", "/import/secret", "off"]);
    let (mut server, url) = site.serve(&[]);
    let lfs = Lfs::new();
    let work = tempfile::tempdir().unwrap();

    // Three LFS files, one of 100 MB, pushed to a new import repository.
    let src = lfs.repo();
    let big = noise(100 << 20, 1);
    let small = noise(300_000, 2);
    std::fs::write(src.path().join("big.bin"), &big).unwrap();
    std::fs::write(src.path().join("small.bin"), &small).unwrap();
    std::fs::write(src.path().join("tiny.bin"), b"tiny\n").unwrap();
    std::fs::write(src.path().join("README"), "plain file\n").unwrap();
    lfs.ok(src.path(), &["add", "-A"]);
    lfs.ok(src.path(), &["commit", "-q", "-m", "three LFS files"]);
    let remote = with(&format!("{url}/import/big"), &alice);
    let before = peak_rss_kib(server.id());
    lfs.ok(src.path(), &["push", "-q", &remote, "main"]);
    let after = peak_rss_kib(server.id());
    eprintln!("server peak RSS before the 100 MB upload: {before} KiB, after: {after} KiB");
    assert!(after < 100 << 10, "the server held the upload in memory: peak {after} KiB");

    // Clone (anonymous reads), fetch --all, pull: the content comes back.
    let clone = work.path().join("clone");
    lfs.clone(&format!("{url}/import/big"), &clone);
    assert_eq!(sha256(&std::fs::read(clone.join("big.bin")).unwrap()), sha256(&big));
    assert_eq!(std::fs::read(clone.join("small.bin")).unwrap(), small);
    tessera_testkit::fsck(&clone);
    lfs.ok(&clone, &["lfs", "fetch", "--all"]);
    lfs.ok(&clone, &["lfs", "pull"]);
    let listed = lfs.ok(&clone, &["lfs", "ls-files"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");

    // Raw HTTP: the batch answers follow the specification.
    let (big_oid, small_oid) = (sha256(&big), sha256(&small));
    let repo = format!("{url}/import/big");
    let (status, answer) = batch(&repo, None, "download", &[(&big_oid, big.len() as u64), (&"0".repeat(64), 1)]);
    assert_eq!(status, 200, "{answer}");
    check_batch_answer(&answer, "download");
    assert_eq!(answer["objects"][1]["error"]["code"], 404, "{answer}");
    let href = answer["objects"][0]["actions"]["download"]["href"].as_str().unwrap().to_string();
    if presigned {
        // Straight from the bucket, signed, with no credential of ours.
        let endpoint = &s3.as_ref().unwrap().endpoint;
        assert!(href.starts_with(endpoint) && href.contains("X-Amz-Signature="), "{answer}");
        assert!(answer["objects"][0]["actions"]["download"].get("header").is_none(), "{answer}");
        let (status, body, _) = curl(&["-r", "0-99", &href]);
        assert_eq!((status, body), (206, big[..100].to_vec()));
    } else {
        assert!(href.starts_with(&url), "{answer}");
    }
    let (status, answer) = batch(&repo, Some(&alice), "upload", &[(&small_oid, small.len() as u64), ("nothex", 1)]);
    assert_eq!(status, 200);
    check_batch_answer(&answer, "upload");
    assert!(answer["objects"][0].get("actions").is_none(), "already present: {answer}");
    assert_eq!(answer["objects"][1]["error"]["code"], 422, "{answer}");

    // An anonymous upload is asked for credentials; a wrong hash is refused
    // and nothing is kept.
    let (status, answer) = batch(&repo, None, "upload", &[(&small_oid, 1)]);
    assert_eq!(status, 401, "{answer}");
    let content = b"some other content".to_vec();
    let claimed = sha256(b"what it should have been");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &content).unwrap();
    let put_url = format!("{repo}/info/lfs/objects/{claimed}");
    let upload = format!("@{}", file.path().display());
    let (status, _, headers) = curl(&["-X", "PUT", "--data-binary", &upload, &put_url]);
    assert_eq!(status, 401);
    assert!(headers.to_lowercase().contains("lfs-authenticate: basic"), "{headers}");
    let auth = format!("x:{alice}");
    let (status, body, _) = curl(&["-X", "PUT", "-u", &auth, "--data-binary", &upload, &put_url]);
    assert_eq!(status, 422, "{}", text(&body));
    let (_, answer) = batch(&repo, Some(&alice), "download", &[(&claimed, content.len() as u64)]);
    assert_eq!(answer["objects"][0]["error"]["code"], 404, "a refused upload is visible: {answer}");

    // Range downloads (resumed transfers); with presigned downloads, the
    // server redirects to the bucket, which answers the range itself.
    let get_url = format!("{repo}/info/lfs/objects/{big_oid}");
    if presigned {
        let (status, _, headers) = curl(&["-r", "1000-1999", &get_url]);
        assert_eq!(status, 307, "{headers}");
        let endpoint = &s3.as_ref().unwrap().endpoint;
        assert!(headers.to_lowercase().contains(&format!("location: {endpoint}")), "{headers}");
    }
    let follow = if presigned { "-L" } else { "-s" };
    let (status, body, headers) = curl(&[follow, "-r", "1000-1999", &get_url]);
    assert_eq!(status, 206, "{headers}");
    assert_eq!(body, big[1000..2000].to_vec());
    assert!(headers.contains(&format!("bytes 1000-1999/{}", big.len())), "{headers}");
    let (status, _, _) = curl(&["-r", &format!("{}-", big.len() + 10), &get_url]);
    assert_eq!(status, 416);

    // Objects are stored once but seen only where they were uploaded: one
    // pushed to a private repository is "not there" to carol, at any path
    // she can read, and uploading it does not tell her otherwise.
    let secret_repo = lfs.repo();
    let secret = noise(50_000, 3);
    std::fs::write(secret_repo.path().join("secret.bin"), &secret).unwrap();
    lfs.ok(secret_repo.path(), &["add", "-A"]);
    lfs.ok(secret_repo.path(), &["commit", "-q", "-m", "secret"]);
    lfs.ok(secret_repo.path(), &["push", "-q", &with(&format!("{url}/import/secret"), &admin), "main"]);
    let secret_oid = sha256(&secret);
    let (_, answer) = batch(&repo, Some(&carol), "download", &[(&secret_oid, secret.len() as u64)]);
    assert_eq!(answer["objects"][0]["error"]["code"], 404, "{answer}");
    let (status, _) = batch(&format!("{url}/import/secret"), Some(&carol), "download", &[(&secret_oid, 1)]);
    assert_eq!(status, 404);
    let (_, answer) = batch(&repo, Some(&bob), "upload", &[(&secret_oid, secret.len() as u64)]);
    assert!(answer["objects"][0]["actions"]["upload"].is_object(), "revealed as present: {answer}");

    // A push whose pointers name objects never uploaded is refused.
    let liar = tempfile::tempdir().unwrap();
    tessera_testkit::git(liar.path(), &["init", "-q", "-b", "main"]);
    let fake = sha256(b"never uploaded");
    std::fs::write(
        liar.path().join("fake.bin"),
        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{fake}\nsize 14\n"),
    )
    .unwrap();
    tessera_testkit::commit_all(liar.path(), "a pointer to nothing");
    let out = tessera_testkit::git_output(liar.path(), &["push", &with(&format!("{url}/import/liar"), &bob), "main"]);
    assert!(!out.status.success() && text(&out.stderr).contains("missing LFS objects"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&fake), "{}", text(&out.stderr));

    // Locks: alice locks small.bin; bob's push that changes it is refused
    // by the server, whatever his client checks; after the unlock it goes.
    let alice_clone = work.path().join("alice");
    lfs.clone(&remote, &alice_clone);
    lfs.ok(&alice_clone, &["lfs", "lock", "small.bin"]);
    let bob_clone = work.path().join("bob");
    lfs.clone(&with(&format!("{url}/import/big"), &bob), &bob_clone);
    lfs.ok(&bob_clone, &["config", "lfs.locksverify", "false"]);
    std::fs::write(bob_clone.join("small.bin"), noise(1000, 4)).unwrap();
    lfs.ok(&bob_clone, &["commit", "-q", "-am", "bob changes a locked file"]);
    let err = lfs.refused(&bob_clone, &["push", "-q", "origin", "main"]);
    assert!(err.contains("small.bin (locked by alice)"), "{err}");
    let (status, body) = rest("GET", &format!("{url}/import/big/info/lfs/locks?path=small.bin"), Some(&bob));
    assert_eq!(status, 200);
    assert!(body.contains("\"name\":\"alice\""), "{body}");
    // bob may not break it; a maintainer may.
    let err = lfs.refused(&bob_clone, &["lfs", "unlock", "--force", "small.bin"]);
    assert!(err.contains("maintain"), "{err}");
    lfs.ok(&alice_clone, &["lfs", "unlock", "small.bin"]);
    lfs.ok(&bob_clone, &["push", "-q", "origin", "main"]);
    lfs.ok(&alice_clone, &["lfs", "lock", "tiny.bin"]);
    let admin_clone = work.path().join("admin");
    lfs.clone(&with(&format!("{url}/import/big"), &admin), &admin_clone);
    lfs.ok(&admin_clone, &["lfs", "unlock", "--force", "tiny.bin"]);
    let (_, body) = rest("GET", &format!("{url}/import/big/info/lfs/locks"), Some(&bob));
    assert!(body.contains("\"locks\":[]"), "{body}");

    // Through a merge request on /projects/x, and from / after the merge.
    let mr = lfs.repo();
    let design = noise(2 << 20, 5);
    std::fs::write(mr.path().join("design.bin"), &design).unwrap();
    lfs.ok(mr.path(), &["add", "-A"]);
    lfs.ok(mr.path(), &["commit", "-q", "-m", "design"]);
    let out = lfs.output(mr.path(), &["push", &with(&format!("{url}/projects/x"), &alice), "main"]);
    assert!(text(&out.stderr).contains("merge request !1 opened"), "{}", text(&out.stderr));
    let (status, body) = rest("POST", &format!("{url}/api/v1/mr/1/merge"), Some(&admin));
    assert_eq!(status, 200, "{body}");
    let x = work.path().join("x");
    lfs.clone(&format!("{url}/projects/x"), &x);
    assert_eq!(std::fs::read(x.join("design.bin")).unwrap(), design);
    let root = work.path().join("root");
    // (/ holds the private /import/secret: only those who can read all of
    // it clone it. git-lfs turns `http://HOST/` into `http://HOST.git/...`,
    // so the root is cloned as `/.git`, which git and tessera read as `/`.)
    lfs.clone(&with(&format!("{url}/.git"), &admin), &root);
    assert_eq!(std::fs::read(root.join("projects/x/design.bin")).unwrap(), design);
    assert_eq!(sha256(&std::fs::read(root.join("import/big/big.bin")).unwrap()), big_oid);

    let _ = server.kill();
    let _ = server.wait();
    // Every LFS write is in the audit log.
    let log = site.admin(&["audit", "--limit", "1000"]);
    for needle in ["\talice\tlfs.upload\t/import/big\tok", "\talice\tlfs.lock\t", "\tadmin\tlfs.unlock\t"] {
        assert!(log.contains(needle), "{needle:?} missing:\n{log}");
    }
    let shown = site.admin(&["storage", "show"]);
    assert!(shown.contains("lfs objects: 6 ("), "{shown}");
    let local: Vec<PathBuf> = walk(&PathBuf::from(&site.data).join("lfs/objects"));
    // Each object once, however many paths use it (big.bin is visible at
    // /import/big and, through /, nowhere else stored twice).
    let mut names: Vec<String> = match stored {
        Stored::Files => local.iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect(),
        Stored::Database => {
            assert!(local.is_empty(), "objects kept as files too: {local:?}");
            vec![big_oid.clone()]
        }
        Stored::S3 { .. } => {
            assert!(local.is_empty(), "objects kept as files too: {local:?}");
            let listed = s3.as_ref().unwrap().list(BUCKET, "site/lfs/");
            assert!(listed.iter().any(|(k, size)| k.ends_with(&big_oid) && *size == big.len() as u64), "{listed:?}");
            listed.iter().map(|(k, _)| k.rsplit('/').next().unwrap().to_string()).collect()
        }
    };
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len());
    assert!(names.contains(&big_oid));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn lfs_on_sqlite() {
    lfs_end_to_end(Backend::Sqlite, Stored::Files);
}

#[test]
fn lfs_on_sqlite_with_objects_in_the_database() {
    lfs_end_to_end(Backend::Sqlite, Stored::Database);
}

#[test]
fn lfs_on_sqlite_with_objects_in_s3() {
    lfs_end_to_end(Backend::Sqlite, Stored::S3 { presigned: false });
}

#[test]
fn lfs_on_postgres_with_objects_in_s3_and_presigned_downloads() {
    lfs_end_to_end(Backend::Postgres, Stored::S3 { presigned: true });
}

/// Hostile LFS requests get clear refusals, keep nothing, and leave the
/// server serving.
#[test]
fn hostile_lfs_requests_are_refused_and_the_server_serves() {
    let Some(site) = Site::new(Backend::Sqlite) else { return };
    site.admin(&["user", "add", "eve", "--init"]);
    site.admin(&["access", "grant", "/import", "write", "--user", "eve"]);
    let eve = site.token("eve", "t", "write");
    let (mut server, url) = site.spawn_with_env(&[("TESSERA_LFS_MAX_OBJECT_BYTES", "1000000")]);
    let repo = format!("{url}/import/r");
    let auth = format!("x:{eve}");
    let json = ["-H", "Content-Type: application/vnd.git-lfs+json"];

    // Too many objects, malformed JSON, an unknown hash algorithm.
    let many: Vec<(String, u64)> = (0..10_001).map(|i| (format!("{i:064x}"), 1)).collect();
    let many: Vec<(&str, u64)> = many.iter().map(|(o, s)| (o.as_str(), *s)).collect();
    let (status, _) = batch(&repo, Some(&eve), "upload", &many);
    assert_eq!(status, 413);
    let batch_url = format!("{repo}/info/lfs/objects/batch");
    let (status, _, _) = curl(&["-u", &auth, json[0], json[1], "--data-binary", "{\"operation\":", &batch_url]);
    assert_eq!(status, 422);
    let sha1 = r#"{"operation":"download","objects":[],"hash_algo":"sha1"}"#;
    let (status, _, _) = curl(&["-u", &auth, json[0], json[1], "--data-binary", sha1, &batch_url]);
    assert_eq!(status, 409);
    // Larger than the configured limit: refused by Content-Length, and
    // while streaming when chunked.
    let big = noise(2_000_000, 9);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &big).unwrap();
    let put = format!("{repo}/info/lfs/objects/{}", sha256(&big));
    let data = format!("@{}", file.path().display());
    let (status, _, _) = curl(&["-X", "PUT", "-u", &auth, "--data-binary", &data, &put]);
    assert_eq!(status, 413);
    let (status, _, _) =
        curl(&["-X", "PUT", "-u", &auth, "-H", "Transfer-Encoding: chunked", "--data-binary", &data, &put]);
    assert_eq!(status, 413);
    // Lock paths that leave the repository.
    let locks = format!("{repo}/info/lfs/locks");
    for path in ["../../etc/passwd", "/abs", "a//b", ""] {
        let body = serde_json::json!({ "path": path }).to_string();
        let (status, _, _) = curl(&["-u", &auth, json[0], json[1], "--data-binary", &body, &locks]);
        assert_eq!(status, 422, "{path:?}");
    }
    // Unknown endpoints and oids that are not hashes.
    let (status, _, _) = curl(&["-u", &auth, &format!("{repo}/info/lfs/objects/../../../etc/passwd")]);
    assert!(status == 404 || status == 422 || status == 400, "{status}");
    let (status, _, _) = curl(&["-u", &auth, &format!("{repo}/info/lfs/nothing")]);
    assert_eq!(status, 404);

    // Nothing was kept, and the server still takes a real upload.
    let stored = walk(&PathBuf::from(&site.data).join("lfs"));
    assert!(stored.is_empty(), "{stored:?}");
    let fine = noise(1000, 10);
    std::fs::write(file.path(), &fine).unwrap();
    let put = format!("{repo}/info/lfs/objects/{}", sha256(&fine));
    let (status, body, _) = curl(&["-X", "PUT", "-u", &auth, "--data-binary", &data, &put]);
    assert_eq!(status, 200, "{}", text(&body));
    let (_, answer) = batch(&repo, Some(&eve), "download", &[(&sha256(&fine), 1000)]);
    assert!(answer["objects"][0]["actions"]["download"].is_object(), "{answer}");
    let _ = rest("GET", &format!("{url}/api/v1/repos"), None);
    let _ = server.kill();
    let _ = server.wait();
}

/// git-lfs over SSH: `git-lfs-authenticate` hands out a short-lived token
/// for the HTTP API, after the same permission check.
#[test]
fn lfs_over_ssh_authenticates_with_short_lived_tokens() {
    let Some(site) = Site::new(Backend::Sqlite) else { return };
    site.admin(&["user", "add", "alice", "--init"]);
    site.admin(&["user", "add", "mallory"]);
    site.admin(&["access", "grant", "/import", "write", "--user", "alice"]);
    site.admin(&["access", "public", "/import/private", "off"]);
    let (mut server, url, port) = site.serve_ssh();
    let client = SshClient::new(&site, port, &["alice", "mallory"]);
    site.admin(&["user", "key", "add", "alice", &client.public("alice")]);
    site.admin(&["user", "key", "add", "mallory", &client.public("mallory")]);

    // The real clients: git and git-lfs over an ssh:// remote.
    let lfs = Lfs::new();
    let src = lfs.repo();
    let payload = noise(3 << 20, 7);
    std::fs::write(src.path().join("data.bin"), &payload).unwrap();
    lfs.ok(src.path(), &["add", "-A"]);
    lfs.ok(src.path(), &["commit", "-q", "-m", "LFS over SSH"]);
    let ssh_env = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("HOME", lfs.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", lfs.home.path().join("gitconfig"))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSH_COMMAND", client.command("alice"))
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    };
    ssh_env(src.path(), &["push", "-q", &client.url("/import/private"), "main"]);
    let work = tempfile::tempdir().unwrap();
    ssh_env(work.path(), &["clone", "-q", &client.url("/import/private"), "c"]);
    assert_eq!(std::fs::read(work.path().join("c/data.bin")).unwrap(), payload);

    // The answer itself: an href on the HTTP side and a header that works
    // there, for what the check allowed and nothing more.
    let out = client.ssh("alice", "git-lfs-authenticate '/import/private' download");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(answer["href"].as_str().unwrap().ends_with("/import/private.git/info/lfs"), "{answer}");
    assert!(answer["expires_in"].as_i64().unwrap() > 0);
    let header = format!("Authorization: {}", answer["header"]["Authorization"].as_str().unwrap());
    let oid = sha256(&payload);
    let get = format!("{url}/import/private/info/lfs/objects/{oid}");
    let (status, body, _) = curl(&["-H", &header, &get]);
    assert_eq!(status, 200);
    assert_eq!(body.len(), payload.len());
    // A download token does not upload.
    let put = format!("{url}/import/private/info/lfs/objects/{}", sha256(b"x"));
    let (status, _, _) = curl(&["-X", "PUT", "-H", &header, "--data-binary", "x", &put]);
    assert_eq!(status, 403);
    // A tampered token is refused.
    let token = answer["header"]["Authorization"].as_str().unwrap().trim_start_matches("Basic ");
    let decoded = String::from_utf8(base64_decode(token)).unwrap();
    let forged = decoded.replacen(".read.", ".write.", 1);
    assert_ne!(forged, decoded);
    let (status, _, _) = curl(&["-u", &forged, &get]);
    assert_eq!(status, 401);
    // mallory may not read the private path: no token, and a clear error.
    let out = client.ssh("mallory", "git-lfs-authenticate '/import/private' download");
    assert!(!out.status.success() && text(&out.stderr).contains("not found"), "{}", text(&out.stderr));
    let out = client.ssh("alice", "git-lfs-authenticate '/import/private' delete");
    assert!(!out.status.success());
    // Disabling alice ends her tokens at once.
    site.admin(&["user", "disable", "alice"]);
    let (status, _, _) = curl(&["-H", &header, &get]);
    assert_eq!(status, 401);
    let _ = server.kill();
    let _ = server.wait();
}

fn base64_decode(text: &str) -> Vec<u8> {
    let out = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = out.unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    child.wait_with_output().unwrap().stdout
}

/// `tessera storage migrate` copies packs and LFS objects from files into
/// a bucket while the server goes on serving, stops and resumes, and a
/// server on the bucket then serves the same repository without the files.
#[test]
fn storage_migrates_from_files_to_s3_resumably() {
    let Some(s3) = tessera_testkit::S3Server::start(BUCKET) else { return };
    let Some(site) = Site::new(Backend::Sqlite) else { return };
    site.admin(&["user", "add", "admin", "--admin", "--init"]);
    let admin = site.token("admin", "t", "admin");
    let (mut server, url) = site.serve(&[]);
    let lfs = Lfs::new();
    let src = lfs.repo();
    let (one, two) = (noise(3 << 20, 11), noise(40_000, 12));
    std::fs::write(src.path().join("one.bin"), &one).unwrap();
    std::fs::write(src.path().join("notes.txt"), "v1\n").unwrap();
    lfs.ok(src.path(), &["add", "-A"]);
    lfs.ok(src.path(), &["commit", "-q", "-m", "one"]);
    let remote = with(&format!("{url}/import/m"), &admin);
    lfs.ok(src.path(), &["push", "-q", &remote, "main"]);
    std::fs::write(src.path().join("two.bin"), &two).unwrap();
    std::fs::write(src.path().join("notes.txt"), "v2\n").unwrap();
    lfs.ok(src.path(), &["add", "-A"]);
    lfs.ok(src.path(), &["commit", "-q", "-m", "two"]);
    lfs.ok(src.path(), &["push", "-q", &remote, "main"]);
    let head = lfs.ok(src.path(), &["rev-parse", "HEAD"]);
    let (packs, objects) = {
        let shown = site.admin(&["storage", "show"]);
        let count = |label: &str| -> usize {
            let line = shown.lines().find(|l| l.starts_with(label)).unwrap();
            line[label.len()..].split_whitespace().next().unwrap().parse().unwrap()
        };
        (count("packs: "), count("lfs objects: "))
    };
    assert!(packs >= 2 && objects == 2, "packs {packs}, objects {objects}");

    let migrate = |extra: &[&str]| -> String {
        let target = format!("s3://{BUCKET}/moved");
        let mut args = vec!["storage", "migrate", "--to", &target, "--s3-endpoint", &s3.endpoint, "--s3-allow-http"];
        args.extend(extra);
        args.extend(["--data-dir", &site.data, "--database", &site.database]);
        let out = common::tessera(
            &args,
            &[
                ("AWS_ACCESS_KEY_ID", "tessera-test"),
                ("AWS_SECRET_ACCESS_KEY", "tessera-test"),
                ("AWS_DEFAULT_REGION", "us-east-1"),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    // Interrupted after one object (--limit), while the server serves.
    let first = migrate(&["--limit", "1"]);
    assert!(first.contains("stopped at --limit"), "{first}");
    assert_eq!(s3.list(BUCKET, "moved/").len(), 1, "{first}");
    let work = tempfile::tempdir().unwrap();
    let during = work.path().join("during");
    lfs.clone(&format!("{url}/import/m"), &during);
    assert_eq!(std::fs::read(during.join("one.bin")).unwrap(), one);
    // Resumed: what is there is not copied again.
    let second = migrate(&[]);
    assert!(second.contains(&format!("1 already in s3://{BUCKET}/moved")), "{second}");
    assert!(second.contains("set storage ="), "{second}");
    let listed = s3.list(BUCKET, "moved/");
    assert_eq!(listed.len(), packs + objects, "{listed:?}");
    let third = migrate(&[]);
    assert!(third.contains("0 pack(s) and 0 LFS object(s) copied"), "{third}");

    // A server on the bucket, with the local files gone, serves it all.
    let _ = server.kill();
    let _ = server.wait();
    std::fs::remove_dir_all(PathBuf::from(&site.data).join("packs")).unwrap();
    std::fs::remove_dir_all(PathBuf::from(&site.data).join("lfs/objects")).unwrap();
    let env = s3.env(BUCKET, "moved");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (mut server, url) = site.serve(&env);
    let after = work.path().join("after");
    lfs.clone(&format!("{url}/import/m"), &after);
    assert_eq!(lfs.ok(&after, &["rev-parse", "HEAD"]), head);
    assert_eq!(std::fs::read(after.join("one.bin")).unwrap(), one);
    assert_eq!(std::fs::read(after.join("two.bin")).unwrap(), two);
    tessera_testkit::fsck(&after);
    let _ = server.kill();
    let _ = server.wait();
}

/// Two server processes with data directories of their own, one
/// PostgreSQL database and one bucket, are one server: what is pushed to
/// one, packs and LFS objects, the other serves.
#[test]
fn two_servers_share_postgres_and_a_bucket() {
    let Some(s3) = tessera_testkit::S3Server::start(BUCKET) else { return };
    let Some(site) = Site::with_env(Backend::Postgres, s3.env(BUCKET, "shared")) else { return };
    site.admin(&["user", "add", "admin", "--admin", "--init"]);
    let admin = site.token("admin", "t", "admin");
    let (mut a, a_url) = site.serve(&[]);
    let other = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--database", &site.database])
        .arg("--data-dir")
        .arg(other.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (k, v) in &site.env {
        cmd.env(k, v);
    }
    let mut b = cmd.spawn().unwrap();
    let mut banner = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(b.stdout.take().unwrap()), &mut banner).unwrap();
    let b_url = banner.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_string();

    let lfs = Lfs::new();
    let src = lfs.repo();
    let data = noise(5 << 20, 21);
    std::fs::write(src.path().join("data.bin"), &data).unwrap();
    std::fs::write(src.path().join("README"), "shared\n").unwrap();
    lfs.ok(src.path(), &["add", "-A"]);
    lfs.ok(src.path(), &["commit", "-q", "-m", "shared"]);
    lfs.ok(src.path(), &["push", "-q", &with(&format!("{a_url}/import/shared"), &admin), "main"]);
    let work = tempfile::tempdir().unwrap();
    let from_b = work.path().join("from-b");
    lfs.clone(&format!("{b_url}/import/shared"), &from_b);
    assert_eq!(std::fs::read(from_b.join("data.bin")).unwrap(), data);
    tessera_testkit::fsck(&from_b);
    // The bytes are in the bucket, and B's copy of the pack in its cache.
    let listed = s3.list(BUCKET, "shared/");
    assert!(listed.iter().any(|(k, _)| k.starts_with("shared/packs/")), "{listed:?}");
    assert!(listed.iter().any(|(k, _)| k.ends_with(&sha256(&data))), "{listed:?}");
    assert!(std::fs::read_dir(other.path().join("pack-cache")).unwrap().count() > 0);
    // And back: a push to B is served by A.
    std::fs::write(from_b.join("README"), "changed on b\n").unwrap();
    lfs.ok(&from_b, &["commit", "-q", "-am", "from b"]);
    lfs.ok(&from_b, &["push", "-q", &with(&format!("{b_url}/import/shared"), &admin), "main"]);
    let head = lfs.ok(&from_b, &["rev-parse", "HEAD"]);
    let from_a = work.path().join("from-a");
    lfs.clone(&format!("{a_url}/import/shared"), &from_a);
    assert_eq!(lfs.ok(&from_a, &["rev-parse", "HEAD"]), head);
    tessera_testkit::fsck(&from_a);
    for child in [&mut a, &mut b] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A migration killed mid-way (SIGKILL) leaves only whole objects in the
/// bucket, and the next run copies the rest and nothing twice.
#[test]
fn a_killed_storage_migration_resumes() {
    let Some(s3) = tessera_testkit::S3Server::start(BUCKET) else { return };
    let Some(site) = Site::new(Backend::Sqlite) else { return };
    site.admin(&["user", "add", "admin", "--admin", "--init"]);
    let admin = site.token("admin", "t", "admin");
    let (mut server, url) = site.serve(&[]);
    let lfs = Lfs::new();
    let src = lfs.repo();
    let files: Vec<Vec<u8>> = (0..24).map(|i| noise(2 << 20, 100 + i)).collect();
    for (i, data) in files.iter().enumerate() {
        std::fs::write(src.path().join(format!("f{i:02}.bin")), data).unwrap();
    }
    lfs.ok(src.path(), &["add", "-A"]);
    lfs.ok(src.path(), &["commit", "-q", "-m", "many"]);
    lfs.ok(src.path(), &["push", "-q", &with(&format!("{url}/import/many"), &admin), "main"]);
    let _ = server.kill();
    let _ = server.wait();

    let target = format!("s3://{BUCKET}/killed");
    let args = |cmd: &mut Command| {
        cmd.args(["storage", "migrate", "--to", &target, "--s3-endpoint", &s3.endpoint, "--s3-allow-http"])
            .args(["--data-dir", &site.data, "--database", &site.database])
            .env("AWS_ACCESS_KEY_ID", "tessera-test")
            .env("AWS_SECRET_ACCESS_KEY", "tessera-test")
            .env("AWS_DEFAULT_REGION", "us-east-1");
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    args(&mut cmd);
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("copied "), "{first}");
    child.kill().unwrap();
    let _ = child.wait();
    let after_kill = s3.list(BUCKET, "killed/");
    let shown = site.admin(&["storage", "show"]);
    let count = |label: &str| -> usize {
        let line = shown.lines().find(|l| l.starts_with(label)).unwrap();
        line[label.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    let total = count("packs: ") + count("lfs objects: ");
    assert_eq!(count("lfs objects: "), 24, "{shown}");
    assert!(!after_kill.is_empty() && after_kill.len() < total, "not interrupted: {} objects", after_kill.len());
    // Whatever is there is whole: each LFS object has its full size.
    for (key, size) in &after_kill {
        if key.contains("/lfs/") {
            assert_eq!(*size, 2 << 20, "{key}");
        }
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    args(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let copied = said.lines().filter(|l| l.starts_with("copied ")).count();
    assert_eq!(copied + after_kill.len(), total, "{said}");
    assert!(said.contains(&format!("{} already in {target}", after_kill.len())), "{said}");
    assert_eq!(s3.list(BUCKET, "killed/").len(), total);
}
