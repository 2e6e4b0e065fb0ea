//! Users, tokens and per-path permissions end to end: the real `git` client
//! against `tessera serve`, set up with the real `tessera` administration
//! commands. On SQLite, and once on PostgreSQL.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{git_refused, rest, text, with, Site, SshClient};

use tessera_testkit::{commit_all, fsck, git, git_output, new_repo, pack_revs, pkt, write, Backend};

fn users_paths_and_tokens(backend: Backend) {
    let Some(site) = Site::new(backend) else { return };
    site.admin(&["user", "add", "admin", "--admin", "--init"]);
    for user in ["alice", "bob", "carol"] {
        site.admin(&["user", "add", user]);
    }
    let admin = site.token("admin", "t", "admin");
    let alice = site.token("alice", "t", "write");
    let alice_ro = site.token("alice", "ro", "read");
    let bob = site.token("bob", "t", "write");
    let carol = site.token("carol", "t", "write");
    let expired = site.token("carol", "old", "write");
    site.admin(&["access", "grant", "/projects/a", "write", "--user", "alice"]);
    site.admin(&["access", "grant", "/projects/a", "maintain", "--user", "bob"]);
    site.admin(&["group", "add", "secret-keepers"]);
    site.admin(&["group", "member", "add", "secret-keepers", "bob"]);
    site.admin(&["access", "grant", "/projects/private", "maintain", "--group", "secret-keepers"]);
    site.admin(&["access", "public", "/projects/private", "off"]);
    site.admin(&["access", "grant", "/import", "write", "--user", "carol"]);
    let listed = site.admin(&["access", "list"]);
    assert!(listed.contains("/projects/a\talice\twrite") && listed.contains("@secret-keepers"), "{listed}");
    // An expired token: as if its lifetime had passed.
    expire(&site, "old");

    let (mut server, url) = site.serve(&[]);
    let work = tempfile::tempdir().unwrap();
    let src = new_repo();
    write(src.path(), "a.txt", "from alice\n");
    commit_all(src.path(), "alice's change");

    // alice may write /projects/a: her push opens a merge request.
    let out = git_output(src.path(), &["push", &with(&format!("{url}/projects/a"), &alice), "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("merge request !1 opened"), "{}", text(&out.stderr));
    // Not /projects/b, and the message names the path.
    let err = git_refused(src.path(), &["push", &with(&format!("{url}/projects/b"), &alice), "main"]);
    assert!(err.contains("/projects/b") && err.contains("write access"), "{err}");
    // A read-scoped token cannot push, even where its user may.
    let err = git_refused(src.path(), &["push", &with(&format!("{url}/projects/a"), &alice_ro), "main"]);
    assert!(err.contains("read scope"), "{err}");

    // Only maintainers merge.
    let (status, body) = rest("POST", &format!("{url}/api/v1/mr/1/merge"), Some(&alice));
    assert_eq!(status, 403, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).expect("REST errors are JSON");
    assert!(error["error"].as_str().unwrap().contains("maintain access to /projects/a"), "{body}");
    let (status, body) = rest("POST", &format!("{url}/api/v1/mr/1/merge"), Some(&bob));
    assert_eq!(status, 200, "{body}");

    // A private path: bob (through his group) pushes there; nobody else
    // sees it, over git or REST, nor finds out it exists.
    let private = new_repo();
    write(private.path(), "plans.txt", "secret\n");
    commit_all(private.path(), "plans");
    let out = git_output(private.path(), &["push", &with(&format!("{url}/projects/private"), &bob), "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (status, _) = rest("POST", &format!("{url}/api/v1/mr/2/merge"), Some(&bob));
    assert_eq!(status, 200);
    let clone = |token: Option<&str>, path: &str, to: &str| {
        let from = match token {
            Some(t) => with(&format!("{url}{path}"), t),
            None => format!("{url}{path}"),
        };
        git_output(work.path(), &["clone", "-q", &from, to])
    };
    let err = text(&clone(None, "/projects/private", "anon").stderr);
    assert!(!work.path().join("anon").exists(), "{err}");
    let err = text(&clone(Some(&alice), "/projects/private", "alice-private").stderr);
    assert!(err.contains("not found"), "{err}");
    let err_missing = text(&clone(Some(&alice), "/projects/nothing-here", "alice-missing").stderr);
    assert!(err_missing.contains("not found"), "{err_missing}");
    assert!(clone(Some(&bob), "/projects/private", "bob-private").status.success());
    let (status, body) = rest("GET", &format!("{url}/api/v1/mr?status=all"), Some(&alice));
    assert_eq!(status, 200);
    assert!(body.contains("/projects/a") && !body.contains("/projects/private"), "{body}");
    let (status, _) = rest("GET", &format!("{url}/api/v1/mr/2"), Some(&alice));
    assert_eq!(status, 404);
    let (status, _) = rest("GET", &format!("{url}/api/v1/mr/2"), None);
    assert_eq!(status, 401);
    let (_, body) = rest("GET", &format!("{url}/api/v1/mr?status=all"), Some(&bob));
    assert!(body.contains("/projects/private"), "{body}");

    // `/` holds the private path: refused to whoever cannot read all of
    // it, with a hint; served whole to whoever can.
    let err = text(&clone(Some(&alice), "/", "alice-root").stderr);
    assert!(err.contains("cannot read") && err.contains("clone one of its directories"), "{err}");
    assert!(!work.path().join("alice-root").exists());
    let out = clone(Some(&bob), "/", "bob-root");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(work.path().join("bob-root/projects/private/plans.txt").exists());
    git(&work.path().join("bob-root"), &["fsck", "--strict", "--no-progress"]);
    assert!(clone(Some(&alice), "/projects/a", "alice-a").status.success());

    // Import directories are read-only from the monorepo side, and no
    // repository is created inside another.
    let err = git_refused(src.path(), &["push", &with(&format!("{url}/import"), &admin), "main"]);
    assert!(err.contains("import"), "{err}");
    let out = git_output(src.path(), &["push", &with(&format!("{url}/import/small"), &carol), "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = git_refused(src.path(), &["push", &with(&format!("{url}/import/small/sub"), &carol), "main"]);
    assert!(err.contains("inside import repository /import/small"), "{err}");
    let err = git_refused(src.path(), &["push", &with(&format!("{url}/import/small/x"), &carol), "main"]);
    assert!(err.contains("inside import repository"), "{err}");
    // Tags need maintain: carol has write on /import only.
    git(src.path(), &["tag", "v1"]);
    let err = git_refused(src.path(), &["push", &with(&format!("{url}/import/small"), &carol), "v1"]);
    assert!(err.contains("needs maintain"), "{err}");

    // Listings show only what the caller may read.
    let secret = new_repo();
    write(secret.path(), "s.txt", "s\n");
    commit_all(secret.path(), "secret import");
    site.admin(&["access", "public", "/import/secret", "off"]);
    let out = git_output(secret.path(), &["push", &with(&format!("{url}/import/secret"), &admin), "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (_, listed) = rest("GET", &format!("{url}/api/v1/repos"), Some(&alice));
    assert!(listed.contains("/import/small") && !listed.contains("/import/secret"), "{listed}");
    let (_, listed) = rest("GET", &format!("{url}/api/v1/repos"), None);
    assert!(!listed.contains("/import/secret"), "{listed}");
    let (_, listed) = rest("GET", &format!("{url}/api/v1/repos"), Some(&admin));
    assert!(listed.contains("/import/secret"), "{listed}");

    // Expired tokens and disabled users are refused, with a reason.
    // (git sends credentials only when asked, so a private path; the REST
    // API gets them at once and says why.)
    git_refused(work.path(), &["ls-remote", &with(&format!("{url}/projects/private"), &expired)]);
    let (status, body) = rest("GET", &format!("{url}/api/v1/mr"), Some(&expired));
    assert!(status == 401 && body.contains("expired"), "{status} {body}");
    site.admin(&["user", "disable", "carol"]);
    let err = git_refused(src.path(), &["push", &with(&format!("{url}/import/small"), &carol), "main"]);
    assert!(err.contains("Authentication failed") || err.contains("disabled"), "{err}");
    let (status, body) = rest("GET", &format!("{url}/api/v1/mr"), Some(&carol));
    assert!(status == 401 && body.contains("carol is disabled"), "{status} {body}");

    // The admin API: rules and the audit log, for admins only.
    let (status, _) = rest("GET", &format!("{url}/api/v1/access"), Some(&alice));
    assert_eq!(status, 403);
    let (status, body) = rest("GET", &format!("{url}/api/v1/access?path=/projects"), Some(&admin));
    assert_eq!(status, 200);
    assert!(body.contains("alice") && body.contains("maintain"), "{body}");
    let (status, body) = rest("GET", &format!("{url}/api/v1/audit?path=/projects/a"), Some(&admin));
    assert_eq!(status, 200);
    assert!(body.contains("\"mr.merge\"") && body.contains("\"bob\"") && body.contains("\"alice\""), "{body}");
    let _ = server.kill();
    let _ = server.wait();

    // Reads can require a token server-wide, from the environment too.
    let (mut server, url) = site.serve(&[("TESSERA_REQUIRE_TOKEN_FOR_READS", "true")]);
    let out = git_output(work.path(), &["ls-remote", &format!("{url}/projects/a")]);
    assert!(!out.status.success(), "an anonymous read was served");
    let out = git_output(work.path(), &["ls-remote", &with(&format!("{url}/projects/a"), &alice)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let _ = server.kill();
    let _ = server.wait();

    // Everything above is in the audit log, with who did it.
    let log = site.admin(&["audit", "--limit", "1000"]);
    for needle in [
        "\talice\tpush\t/projects/a\tok",
        "\talice\tpush\t/projects/b\tdenied",
        "\tbob\tmr.merge\t/projects/a\tok",
        "\talice\tmr.merge\t/projects/a\tdenied",
        "\tcarol\tpush\t/import/small\tok",
        "\tuser.add\t",
        "\tuser.disable\t",
        "\ttoken.create\t",
        "\taccess.grant\t/projects/a\t",
        "\taccess.public\t/projects/private\t",
        "\tgroup.member.add\t",
    ] {
        assert!(log.contains(needle), "{needle:?} missing from the audit log:\n{log}");
    }
    let bobs = site.admin(&["audit", "--user", "bob"]);
    assert!(bobs.lines().all(|l| l.contains("\tbob\t")), "{bobs}");
}

/// Moves the token named `name` past its expiry, in the database.
fn expire(site: &Site, name: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        use sqlx::Connection;
        let mut conn = sqlx::AnyConnection::connect(&site.database).await.unwrap();
        let sql = if site.database.starts_with("postgres") {
            "UPDATE tokens SET expires_at = 1 WHERE name = $1"
        } else {
            "UPDATE tokens SET expires_at = 1 WHERE name = ?"
        };
        let done = sqlx::query(sql).bind(name).execute(&mut conn).await.unwrap();
        assert_eq!(done.rows_affected(), 1);
    });
}

#[test]
fn users_paths_and_tokens_on_sqlite() {
    users_paths_and_tokens(Backend::Sqlite);
}

#[test]
fn users_paths_and_tokens_on_postgres() {
    users_paths_and_tokens(Backend::Postgres);
}

fn ssh_transport(backend: Backend) {
    let Some(site) = Site::new(backend) else { return };
    site.admin(&["user", "add", "admin", "--admin", "--init"]);
    for user in ["alice", "bob", "carol"] {
        site.admin(&["user", "add", user]);
    }
    let bob_token = site.token("bob", "t", "write");
    site.admin(&["access", "grant", "/projects/a", "write", "--user", "alice"]);
    site.admin(&["access", "grant", "/projects/a", "maintain", "--user", "bob"]);
    site.admin(&["access", "grant", "/projects/private", "maintain", "--user", "bob"]);
    site.admin(&["access", "public", "/projects/private", "off"]);
    site.admin(&["access", "grant", "/import", "write", "--user", "carol"]);

    let (mut server, url, port) = site.serve_ssh();
    let client = SshClient::new(&site, port, &["alice", "bob", "carol", "stranger"]);
    for user in ["alice", "bob", "carol"] {
        let added = site.admin(&["user", "key", "add", user, &client.public(user)]);
        assert!(added.contains(&format!("{user}@test")), "{added}");
    }
    // The fingerprint is the one ssh-keygen computes.
    let listed = site.admin(&["user", "key", "list", "alice"]);
    let out = Command::new("ssh-keygen").args(["-l", "-f", &client.public("alice")]).output().unwrap();
    let fingerprint = text(&out.stdout).split_whitespace().nth(1).unwrap().to_string();
    assert!(listed.contains(&fingerprint) && listed.contains("ssh-ed25519"), "{listed} / {fingerprint}");
    // One key, one user; a private key or garbage is refused with a reason.
    let dup = site.admin_output(&["user", "key", "add", "bob", &client.public("alice")]);
    assert!(!dup.status.success() && text(&dup.stderr).contains("registered to user alice"), "{}", text(&dup.stderr));
    let private = client.dir.path().join("alice").to_str().unwrap().to_string();
    let bad = site.admin_output(&["user", "key", "add", "bob", &private]);
    assert!(!bad.status.success() && text(&bad.stderr).contains("private key"), "{}", text(&bad.stderr));

    // alice pushes to /projects/a over SSH: a merge request opens.
    let src = new_repo();
    write(src.path(), "a.txt", "over ssh\n");
    commit_all(src.path(), "alice's change over ssh");
    let out = client.git("alice", src.path(), &["push", &client.url("/projects/a"), "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("merge request !1 opened"), "{}", text(&out.stderr));
    // Not to /projects/b, and the message names the path.
    let out = client.git("alice", src.path(), &["push", &client.url("/projects/b"), "main"]);
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("/projects/b") && err.contains("write access"), "{err}");
    // bob merges (REST); alice clones the directory over SSH and gets what
    // HTTP serves.
    let (status, body) = rest("POST", &format!("{url}/api/v1/mr/1/merge"), Some(&bob_token));
    assert_eq!(status, 200, "{body}");
    let work = tempfile::tempdir().unwrap();
    let out = client.git("alice", work.path(), &["clone", "-q", &client.url("/projects/a"), "a-ssh"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    fsck(&work.path().join("a-ssh"));
    assert_eq!(text(&std::fs::read(work.path().join("a-ssh/a.txt")).unwrap()), "over ssh\n");
    let over_http = git(work.path(), &["ls-remote", &format!("{url}/projects/a")]);
    let over_ssh = client.git("alice", work.path(), &["ls-remote", &client.url("/projects/a")]);
    assert_eq!(text(&over_ssh.stdout), over_http);

    // A private path is "not found" to alice over SSH, as over HTTP.
    let out = client.git("alice", work.path(), &["clone", "-q", &client.url("/projects/private"), "p"]);
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("not found"), "{err}");
    assert!(!work.path().join("p").exists());

    // carol creates an import repository over SSH, pushes more history
    // (incrementally) and a delete; fetches see exactly what HTTP sees.
    let imp = new_repo();
    for i in 0..5 {
        write(imp.path(), format!("f{i}.txt"), format!("{i}\n"));
        commit_all(imp.path(), &format!("commit {i}"));
    }
    let out = client.git("carol", imp.path(), &["push", &client.url("/import/lib"), "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    write(imp.path(), "more.txt", "more\n");
    commit_all(imp.path(), "more");
    git(imp.path(), &["branch", "side"]);
    let out = client.git("carol", imp.path(), &["push", &client.url("/import/lib"), "main", "side"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = client.git("carol", imp.path(), &["push", &client.url("/import/lib"), ":side"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = client.git("carol", work.path(), &["clone", "-q", "--mirror", &client.url("/import/lib"), "lib.git"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    fsck(&work.path().join("lib.git"));
    assert_eq!(git(&work.path().join("lib.git"), &["rev-parse", "main"]), git(imp.path(), &["rev-parse", "main"]));
    assert_eq!(git(work.path(), &["ls-remote", &format!("{url}/import/lib")]).lines().count(), 2);
    // An incremental fetch over SSH (negotiation over several rounds).
    write(imp.path(), "later.txt", "later\n");
    commit_all(imp.path(), "later");
    assert!(client.git("carol", imp.path(), &["push", &client.url("/import/lib"), "main"]).status.success());
    let out = client.git("carol", &work.path().join("lib.git"), &["fetch", "-q", "origin"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(git(&work.path().join("lib.git"), &["rev-parse", "main"]), git(imp.path(), &["rev-parse", "main"]));

    // Keys nobody registered, removed keys and disabled users are refused.
    let out = client.git("stranger", work.path(), &["ls-remote", &client.url("/projects/a")]);
    assert!(!out.status.success() && text(&out.stderr).contains("Permission denied"), "{}", text(&out.stderr));
    site.admin(&["user", "key", "remove", "carol", "carol@test"]);
    let out = client.git("carol", work.path(), &["ls-remote", &client.url("/import/lib")]);
    assert!(!out.status.success(), "a removed key still signs in");
    site.admin(&["user", "disable", "bob"]);
    let out = client.git("bob", work.path(), &["ls-remote", &client.url("/projects/private")]);
    assert!(!out.status.success(), "a disabled user still signs in");

    // No shell, no other commands; the server goes on serving.
    let out = client.ssh("alice", "");
    assert!(!out.status.success() && text(&out.stderr).contains("no shell"), "{}", text(&out.stderr));
    let out = client.ssh("alice", "sh -c 'touch /tmp/tessera-pwned'");
    assert!(!out.status.success() && text(&out.stderr).contains("not served"), "{}", text(&out.stderr));
    assert!(!Path::new("/tmp/tessera-pwned").exists());
    let out = client.ssh("alice", "git-upload-pack '/projects/a'; id");
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let out = client.ssh("alice", "git-lfs-authenticate '/projects/a' download");
    assert!(out.status.success() && text(&out.stdout).contains("/projects/a.git/info/lfs"), "{}", text(&out.stderr));
    let out = client.ssh("alice", "git-lfs-authenticate '/projects/b' upload");
    assert!(!out.status.success() && text(&out.stderr).contains("write access"), "{}", text(&out.stderr));
    // Protocol v0 fetches are refused with a way forward.
    let out = Command::new("git")
        .args(["-c", "protocol.version=0", "ls-remote", &client.url("/projects/a")])
        .env("GIT_SSH_COMMAND", client.command("alice"))
        .output()
        .unwrap();
    assert!(!out.status.success() && text(&out.stderr).contains("protocol version 2"), "{}", text(&out.stderr));

    // The host key stays across restarts (clients pinned it above).
    let _ = server.kill();
    let _ = server.wait();
    let (mut server, _, port2) = site.serve_ssh();
    let client2 = SshClient { dir: tempfile::tempdir().unwrap(), port: port2 };
    std::fs::copy(client.dir.path().join("alice"), client2.dir.path().join("alice")).unwrap();
    let known = std::fs::read_to_string(client.dir.path().join("known_hosts")).unwrap();
    std::fs::write(client2.dir.path().join("known_hosts"), known.replace(&format!(":{port} "), &format!(":{port2} ")))
        .unwrap();
    let out = client2.git("alice", work.path(), &["ls-remote", &client2.url("/projects/a")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let _ = server.kill();
    let _ = server.wait();

    // The audit log names the SSH pushes and key changes.
    let log = site.admin(&["audit", "--limit", "1000"]);
    for needle in [
        "\talice\tpush\t/projects/a\tok",
        "\talice\tpush\t/projects/b\tdenied",
        "\tcarol\tpush\t/import/lib\tok",
        "\tkey.add\t",
        "\tkey.remove\t",
    ] {
        assert!(log.contains(needle), "{needle:?} missing from the audit log:\n{log}");
    }
}

#[test]
fn ssh_transport_on_sqlite() {
    ssh_transport(Backend::Sqlite);
}

#[test]
fn ssh_transport_on_postgres() {
    ssh_transport(Backend::Postgres);
}

/// A client that keeps its side open after the pack, waiting for the
/// report (as clients other than C git may): the server finds the pack's
/// end by itself. Also hostile bytes on the SSH port, and connections
/// that never sign in, leave the server serving.
#[test]
fn ssh_pushes_end_where_the_pack_ends_and_junk_does_not_hurt() {
    use std::io::{Read, Write};
    let Some(site) = Site::new(Backend::Sqlite) else { return };
    site.admin(&["user", "add", "carol", "--init"]);
    site.admin(&["access", "grant", "/import", "write", "--user", "carol"]);
    let (mut server, url, port) = site.serve_ssh();
    let client = SshClient::new(&site, port, &["carol"]);
    site.admin(&["user", "key", "add", "carol", &client.public("carol")]);

    // Junk and silence on the SSH port.
    let mut junk = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut garbage = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    garbage.write_all(b"SSH-2.0-x\r\n").unwrap();
    garbage.write_all(&[0xffu8; 70_000]).unwrap_or(());
    let _silent: Vec<_> = (0..20).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();

    let src = new_repo();
    write(src.path(), "x.txt", "x\n");
    let head = commit_all(src.path(), "x");
    let pack = pack_revs(src.path(), &head);
    let mut ssh_args: Vec<String> = client.command("carol").split_whitespace().skip(1).map(str::to_string).collect();
    ssh_args.extend(["-p".into(), port.to_string(), "git@127.0.0.1".into(), "git-receive-pack '/import/open'".into()]);
    let mut child = Command::new("ssh")
        .args(&ssh_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // The advertisement: pkt-lines up to a flush.
    let mut advertised = Vec::new();
    loop {
        let mut len = [0u8; 4];
        stdout.read_exact(&mut len).unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&len).unwrap(), 16).unwrap();
        if n == 0 {
            break;
        }
        let mut line = vec![0u8; n - 4];
        stdout.read_exact(&mut line).unwrap();
        advertised.extend(line);
    }
    assert!(text(&advertised).contains("report-status"), "{}", text(&advertised));
    let zero = "0".repeat(40);
    let mut request = pkt(&format!("{zero} {head} refs/heads/main\0report-status\n"));
    request.extend_from_slice(b"0000");
    request.extend_from_slice(&pack);
    stdin.write_all(&request).unwrap();
    stdin.flush().unwrap();
    // stdin stays open: the report must come anyway.
    let mut report = Vec::new();
    let mut buf = [0u8; 4096];
    while !text(&report).contains("0000") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "the server hung up without a report: {}", text(&report));
        report.extend_from_slice(&buf[..n]);
    }
    let report = text(&report);
    assert!(report.contains("unpack ok") && report.contains("ok refs/heads/main"), "{report}");
    drop(stdin);
    let _ = child.wait();

    // Still serving, over both transports.
    let work = tempfile::tempdir().unwrap();
    let out = client.git("carol", work.path(), &["clone", "-q", &client.url("/import/open"), "open"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(git(&work.path().join("open"), &["rev-parse", "HEAD"]).trim(), head);
    git(work.path(), &["ls-remote", &format!("{url}/import/open")]);
    let _ = server.kill();
    let _ = server.wait();
}
