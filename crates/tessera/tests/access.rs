//! Users, tokens and per-path permissions end to end: the real `git` client
//! against `tessera serve`, set up with the real `tessera` administration
//! commands. On SQLite, and once on PostgreSQL.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use tessera_testkit::{commit_all, git, git_output, new_repo, write, Backend, TempDatabase};

fn tessera(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(args).env_remove("TESSERA_REQUIRE_TOKEN_FOR_READS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("tessera runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct Site {
    data: String,
    database: String,
    _db: Option<TempDatabase>,
    _dir: tempfile::TempDir,
}

impl Site {
    fn new(backend: Backend) -> Option<Site> {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data").to_str().unwrap().to_string();
        let db = match backend {
            Backend::Sqlite => None,
            other => Some(TempDatabase::create(other)?),
        };
        let database = match &db {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{data}/tessera.db"),
        };
        Some(Site { data, database, _db: db, _dir: dir })
    }

    /// Runs an administration command on this site; panics if it fails.
    fn admin(&self, args: &[&str]) -> String {
        let out = self.admin_output(args);
        assert!(out.status.success(), "tessera {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    fn admin_output(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data-dir", &self.data, "--database", &self.database]);
        tessera(&all, &[])
    }

    fn token(&self, user: &str, name: &str, scope: &str) -> String {
        let out = self.admin(&["token", "create", "--user", user, "--name", name, "--scope", scope]);
        out.split_whitespace().last().unwrap().to_string()
    }

    fn serve(&self, env: &[(&str, &str)]) -> (Child, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir", &self.data, "--database", &self.database])
            .env_remove("TESSERA_REQUIRE_TOKEN_FOR_READS")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut banner = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut banner).unwrap();
        let url = banner.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_string();
        (child, url)
    }
}

/// `url` with `token` as the Basic password.
fn with(url: &str, token: &str) -> String {
    url.replacen("http://", &format!("http://x:{token}@"), 1)
}

/// A REST call; returns the status and body.
fn rest(method: &str, url: &str, token: Option<&str>) -> (u16, String) {
    let mut args = vec!["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method];
    let auth;
    if let Some(t) = token {
        auth = format!("x:{t}");
        args.extend(["-u", &auth]);
    }
    args.push(url);
    let out = Command::new("curl").args(&args).output().unwrap();
    let body = text(&out.stdout);
    let (body, code) = body.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

/// A git command that must fail; returns its stderr.
fn git_refused(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(!out.status.success(), "git {args:?} succeeded");
    text(&out.stderr)
}

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
    assert!(body.contains("maintain access to /projects/a"), "{body}");
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
