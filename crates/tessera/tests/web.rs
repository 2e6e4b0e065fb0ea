//! The web UI end to end: the real binary, pages fetched with curl (with a
//! cookie jar for sessions), repositories pushed with the real git.

mod common;

use std::path::Path;
use std::process::Command;

use common::{text, with, Site};
use tessera_testkit::{commit_all, git_output, new_repo, write, Backend};

/// A browser-like client: curl with its own cookie jar.
struct Browser {
    jar: tempfile::NamedTempFile,
}

struct Page {
    status: u16,
    headers: String,
    body: String,
}

impl Browser {
    fn new() -> Browser {
        Browser { jar: tempfile::NamedTempFile::new().unwrap() }
    }

    fn request(&self, args: &[&str]) -> Page {
        let headers = tempfile::NamedTempFile::new().unwrap();
        let jar = self.jar.path().to_str().unwrap();
        let out = Command::new("curl")
            .args(["-s", "-b", jar, "-c", jar, "-o", "-", "-D"])
            .arg(headers.path())
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        let body = text(&out.stdout);
        let (body, status) = body.rsplit_once('\n').unwrap();
        Page {
            status: status.trim().parse().unwrap(),
            headers: std::fs::read_to_string(headers.path()).unwrap().to_lowercase(),
            body: body.to_string(),
        }
    }

    fn get(&self, url: &str) -> Page {
        self.request(&[url])
    }

    fn post(&self, url: &str, fields: &[(&str, &str)]) -> Page {
        let mut args = Vec::new();
        for (k, v) in fields {
            args.push("--data-urlencode".to_string());
            args.push(format!("{k}={v}"));
        }
        args.push(url.to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.request(&args)
    }

    fn sign_in(&self, url: &str, user: &str, secret: &str) -> Page {
        self.post(&format!("{url}/-/login"), &[("user", user), ("secret", secret), ("next", "/")])
    }
}

/// The value of the first `name="csrf"` field on a page.
fn csrf(page: &Page) -> String {
    let at = page.body.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    page.body[at..].split('"').next().unwrap().to_string()
}

fn push(dir: &Path, url: &str) {
    let out = git_output(dir, &["push", "-q", url, "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn web_ui(backend: Backend) {
    let Some(site) = Site::new(backend) else { return };
    site.admin(&["user", "add", "admin", "--admin", "--init"]);
    for user in ["alice", "bob"] {
        site.admin(&["user", "add", user]);
    }
    let admin = site.token("admin", "t", "admin");
    let alice = site.token("alice", "t", "write");
    site.admin(&["access", "grant", "/projects/a", "write", "--user", "alice"]);
    site.admin(&["access", "grant", "/projects/a", "maintain", "--user", "bob"]);
    site.admin(&["access", "public", "/import/secret", "off"]);
    let mut passwd = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["user", "passwd", "bob", "--data-dir", &site.data, "--database", &site.database])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut passwd.stdin.take().unwrap(), b"correct horse battery\n").unwrap();
    assert!(passwd.wait().unwrap().success());
    let (mut server, url) = site.serve(&[]);

    // A repository with a README that tries to run script, code, and an
    // HTML file whose raw view must not render.
    let demo = new_repo();
    write(demo.path(), "README.md", "# Demo\n\n**bold** <script>alert(1)</script> <a href=\"javascript:x\">x</a>\n");
    write(demo.path(), "src/main.rs", "fn main() {\n    println!(\"<b>hi</b>\");\n}\n");
    write(demo.path(), "page.html", "<script>alert(document.cookie)</script>\n");
    commit_all(demo.path(), "first");
    write(demo.path(), "src/main.rs", "fn main() {\n    println!(\"<b>hi</b>\");\n}\nfn added() {}\n");
    let second = commit_all(demo.path(), "second: add a function");
    push(demo.path(), &with(&format!("{url}/import/demo"), &admin));
    let secret = new_repo();
    write(secret.path(), "plans.txt", "secret\n");
    commit_all(secret.path(), "plans");
    push(secret.path(), &with(&format!("{url}/import/secret"), &admin));

    let anon = Browser::new();
    let page = anon.get(&format!("{url}/import/demo"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<h1>Demo</h1>") && page.body.contains("<strong>bold</strong>"), "{}", page.body);
    assert!(!page.body.contains("<script") && !page.body.contains("javascript:"), "{}", page.body);
    assert!(page.headers.contains("content-security-policy: default-src 'none'"), "{}", page.headers);
    assert!(page.body.contains("git clone http://") && page.body.contains("second: add a function"));
    // Tree, blob with highlighting and line anchors, raw, history, commit.
    let page = anon.get(&format!("{url}/import/demo/-/tree/main/src"));
    assert!(page.status == 200 && page.body.contains("/import/demo/-/blob/main/src/main.rs"), "{}", page.body);
    let page = anon.get(&format!("{url}/import/demo/-/blob/main/src/main.rs"));
    assert!(page.body.contains("id=\"L2\"") && page.body.contains("hl-"), "{}", page.body);
    assert!(page.body.contains("&lt;b&gt;hi&lt;/b&gt;") && !page.body.contains("<b>hi</b>"), "{}", page.body);
    let page = anon.get(&format!("{url}/import/demo/-/raw/main/page.html"));
    assert_eq!(page.body, "<script>alert(document.cookie)</script>\n");
    // Raw bytes carry their blob id as ETag; a client holding them gets a
    // 304, and content named by a commit id may be kept for good.
    let etag = page.headers.lines().find_map(|l| l.strip_prefix("etag: ")).expect("an etag").trim().to_string();
    let again =
        anon.request(&["-H", &format!("If-None-Match: {etag}"), &format!("{url}/import/demo/-/raw/main/page.html")]);
    assert!(again.status == 304 && again.body.is_empty(), "{} {}", again.status, again.body);
    let pinned = anon.get(&format!("{url}/import/demo/-/raw/{second}/page.html"));
    assert!(pinned.headers.contains("cache-control: private, max-age=31536000, immutable"), "{}", pinned.headers);
    assert!(page.headers.contains("content-type: text/plain") && page.headers.contains("sandbox"), "{}", page.headers);
    // Pages of content a commit id names carry a tag of their HTML: the
    // same page again is a 304; a page of a branch has none.
    for pinned in [format!("/import/demo/-/tree/{second}/src"), format!("/import/demo/-/blob/{second}/src/main.rs")] {
        let page = anon.get(&format!("{url}{pinned}"));
        let etag = page.headers.lines().find_map(|l| l.strip_prefix("etag: ")).expect(&pinned).trim().to_string();
        assert!(page.headers.contains("cache-control: private, no-cache"), "{}", page.headers);
        let again = anon.request(&["-H", &format!("If-None-Match: {etag}"), &format!("{url}{pinned}")]);
        assert!(again.status == 304 && again.body.is_empty(), "{pinned}: {} {}", again.status, again.body);
    }
    let branch_page = anon.get(&format!("{url}/import/demo/-/tree/main/src"));
    assert!(!branch_page.headers.contains("etag:"), "{}", branch_page.headers);
    let page = anon.get(&format!("{url}/import/demo/-/commits/main"));
    assert!(page.body.contains("second: add a function") && page.body.contains("first"));
    let page = anon.get(&format!("{url}/import/demo/-/commits/main/page.html"));
    assert!(page.body.contains("first") && !page.body.contains("second: add"), "history of one file");
    let page = anon.get(&format!("{url}/import/demo/-/commit/{second}"));
    assert!(page.body.contains("+fn added() {}") && page.body.contains("1 file(s) changed"), "{}", page.body);
    // Compare: the commits of `main` since the first, and their change.
    let first = text(&git_output(demo.path(), &["rev-parse", "HEAD~1"]).stdout).trim().to_string();
    let page = anon.get(&format!("{url}/import/demo/-/compare/{first}...main"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("1 commit(s)") && page.body.contains("second: add a function"), "{}", page.body);
    assert!(page.body.contains("+fn added() {}") && !page.body.contains(">first<"), "{}", page.body);
    assert_eq!(anon.get(&format!("{url}/import/demo/-/compare/main...nowhere")).status, 404);
    // The same reads as JSON.
    let json = |path: &str| -> serde_json::Value {
        let (status, body) = common::rest("GET", &format!("{url}{path}"), None);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    // The API describes itself; the description is valid OpenAPI.
    let openapi = json("/api/v1/openapi.json");
    assert!(openapi["paths"]["/api/v1/refs"]["get"].is_object(), "{openapi}");
    match Command::new("openapi-spec-validator").arg("--version").output() {
        Ok(_) => {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), openapi.to_string()).unwrap();
            let out = Command::new("openapi-spec-validator").arg(file.path()).output().unwrap();
            assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
        }
        Err(e) => tessera_testkit::unavailable("openapi-spec-validator (pip)", &e.to_string()),
    }
    let refs = json("/api/v1/refs?path=/import/demo");
    assert_eq!((&refs["head"], &refs["branches"][0]["name"]), (&"main".into(), &"main".into()), "{refs}");
    let tree = json("/api/v1/tree?path=/import/demo&ref=main&sub=src");
    assert_eq!(tree["entries"], serde_json::json!([{ "name": "main.rs", "kind": "file" }]), "{tree}");
    let blob = json("/api/v1/blob?path=/import/demo&file=src/main.rs");
    assert!(blob["text"].as_str().unwrap().contains("fn added() {}") && blob["binary"] == false, "{blob}");
    let commits = json("/api/v1/commits?path=/import/demo&ref=main");
    assert_eq!(commits["commits"].as_array().unwrap().len(), 2, "{commits}");
    assert_eq!(commits["commits"][0]["title"], "second: add a function");
    let commit = json(&format!("/api/v1/commit?path=/import/demo&id={second}"));
    assert_eq!(
        commit["files"],
        serde_json::json!([{ "path": "src/main.rs", "status": "modified", "added": 1, "removed": 0 }]),
        "{commit}"
    );
    let (status, body) = common::rest("GET", &format!("{url}/api/v1/tree?path=/import/secret&ref=main"), None);
    assert!(status == 401 && body.contains("\"error\""), "a private repository: {status} {body}");
    let (status, _) = common::rest("GET", &format!("{url}/api/v1/blob?path=/import/demo&file=nope"), None);
    assert_eq!(status, 404);
    // Blame: lines 1-3 of src/main.rs come from the first commit, line 4
    // from the second.
    let page = anon.get(&format!("{url}/import/demo/-/blame/main/src/main.rs"));
    assert_eq!(page.status, 200, "{}", page.body);
    let row = |n: usize| {
        let at = page.body.find(&format!("<tr id=\"L{n}\">")).unwrap_or_else(|| panic!("line {n}: {}", page.body));
        page.body[at..].split("</tr>").next().unwrap().to_string()
    };
    assert!(row(1).contains(&first[..10]) && row(4).contains(&second[..10]), "{}", page.body);
    assert!(!row(2).contains("/commit/") && row(4).contains("fn added() {}"), "{}", page.body);
    let page = anon.get(&format!("{url}/import/demo/-/blob/main/src/main.rs"));
    assert!(page.body.contains("/import/demo/-/blame/main/src/main.rs"), "a Blame link: {}", page.body);

    // An archive of a ref: the files git has at main, under demo-main/.
    let fetched =
        Command::new("curl").args(["-sf", &format!("{url}/import/demo/-/archive/main.tar.gz")]).output().unwrap();
    assert!(fetched.status.success(), "{}", text(&fetched.stderr));
    let unpacked = tempfile::tempdir().unwrap();
    std::fs::write(unpacked.path().join("a.tar.gz"), &fetched.stdout).unwrap();
    let tar = Command::new("tar").arg("-xzf").arg("a.tar.gz").current_dir(unpacked.path()).output().unwrap();
    assert!(tar.status.success(), "{}", text(&tar.stderr));
    let files = text(&git_output(demo.path(), &["ls-tree", "-r", "--name-only", "main"]).stdout);
    for file in files.lines() {
        let ours = std::fs::read(unpacked.path().join("demo-main").join(file)).unwrap();
        assert_eq!(ours, std::fs::read(demo.path().join(file)).unwrap(), "{file}");
    }
    let (status, _) = common::rest("GET", &format!("{url}/import/secret/-/archive/main.tar.gz"), None);
    assert_eq!(status, 401, "no archive of what the caller cannot read");

    // Finding a path by name, as a page and as JSON.
    let page = anon.get(&format!("{url}/import/demo/-/search/main?q=MAIN"));
    assert!(page.status == 200 && page.body.contains("/import/demo/-/blob/main/src/main.rs"), "{}", page.body);
    assert!(page.body.contains("1 path(s) matching") && !page.body.contains("page.html"), "{}", page.body);
    let found = json("/api/v1/search?path=/import/demo&q=src");
    assert_eq!(found["paths"], serde_json::json!([{ "path": "src", "kind": "dir" }]), "{found}");
    let page = anon.get(&format!("{url}/import/demo/-/refs"));
    assert!(page.body.contains(">main<"), "{}", page.body);
    let page = anon.get(&format!("{url}/-/style.css"));
    assert!(page.status == 200 && page.body.contains(".hl-"));

    // Hostile URLs are 404s, and the server goes on.
    for bad in [
        "/import/demo/-/blob/main/../../../etc/passwd",
        "/import/demo/-/blob/nosuchref/x",
        "/import/demo/-/commit/zzzz",
        "/import/demo/-/nosuchview",
        "/%ff%fe/-/tree/main",
    ] {
        let page = anon.get(&format!("{url}{bad}"));
        assert!(matches!(page.status, 400 | 404), "{bad}: {}", page.status);
    }

    // Pages past the history, or not numbers, are pages, not errors.
    for odd in ["?page=99999999999999999999", "?page=100000", "?page=-1"] {
        assert_eq!(anon.get(&format!("{url}/import/demo/-/commits/main{odd}")).status, 200, "{odd}");
    }

    // Private paths: anonymous callers are asked to sign in, alice gets a
    // 404, and no listing shows them.
    let page = anon.get(&format!("{url}/import/secret"));
    assert_eq!(page.status, 401);
    assert!(page.body.contains("/-/login"));
    let alice_browser = Browser::new();
    let page = alice_browser.sign_in(&url, "alice", &alice);
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(page.headers.contains("httponly") && page.headers.contains("samesite=lax"), "{}", page.headers);
    let page = alice_browser.get(&format!("{url}/import/secret/-/tree/main"));
    assert_eq!(page.status, 404);
    // A directory holding a private one lists only what alice may read,
    // and shows no history (it would tell of the rest).
    let page = alice_browser.get(&format!("{url}/import"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("/import/demo") && !page.body.contains("secret"), "{}", page.body);
    let page = alice_browser.get(&format!("{url}/import/-/commits/main"));
    assert_eq!(page.status, 403);
    let page = alice_browser.get(&format!("{url}/import/-/tree/main/secret"));
    assert_eq!(page.status, 404);
    // Wrong credentials read the same whatever was wrong.
    let wrong = Browser::new().sign_in(&url, "bob", "not his password");
    let unknown = Browser::new().sign_in(&url, "nobody", "whatever");
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert!(wrong.body.contains("wrong user name, password or token") && unknown.body.contains("wrong user name"));

    // A merge request: alice opens it; her page has no merge button; bob
    // (password sign-in) merges it through the form, which needs its token.
    let a = new_repo();
    write(a.path(), "a.txt", "from alice\n");
    commit_all(a.path(), "alice's change");
    let out = git_output(a.path(), &["push", &with(&format!("{url}/projects/a"), &alice), "main"]);
    assert!(text(&out.stderr).contains("merge request !1 opened"), "{}", text(&out.stderr));
    let page = alice_browser.get(&format!("{url}/-/mr/1"));
    assert!(page.status == 200 && page.body.contains("+from alice"), "{}", page.body);
    assert!(!page.body.contains("action=\"/-/mr/1/merge\""), "alice may not merge");
    let page = alice_browser.get(&format!("{url}/projects/-/mrs"));
    assert!(page.body.contains("alice&#39;s change") || page.body.contains("alice's change"), "{}", page.body);
    let bob_browser = Browser::new();
    assert_eq!(bob_browser.sign_in(&url, "bob", "correct horse battery").status, 303);
    let page = bob_browser.get(&format!("{url}/-/mr/1"));
    assert!(page.body.contains("action=\"/-/mr/1/merge\""), "{}", page.body);
    let token = csrf(&page);
    let forged = bob_browser.post(&format!("{url}/-/mr/1/merge"), &[("csrf", "0000")]);
    assert_eq!(forged.status, 403);
    let stolen = alice_browser.post(&format!("{url}/-/mr/1/merge"), &[("csrf", &token)]);
    assert_eq!(stolen.status, 403, "another session's token");
    let merged = bob_browser.post(&format!("{url}/-/mr/1/merge"), &[("csrf", &token)]);
    assert_eq!(merged.status, 303, "{}", merged.body);
    let page = bob_browser.get(&format!("{url}/-/mr/1"));
    assert!(page.body.contains("badge merged"), "{}", page.body);
    let page = anon.get(&format!("{url}/projects/a"));
    assert!(page.body.contains("a.txt"), "{}", page.body);
    // Signing out ends the session in this browser.
    let page = bob_browser.get(&format!("{url}/"));
    let out = bob_browser.post(&format!("{url}/-/logout"), &[("csrf", &csrf(&page))]);
    assert_eq!(out.status, 303);
    assert!(bob_browser.get(&format!("{url}/")).body.contains("Sign in"));

    let _ = server.kill();
    let _ = server.wait();
    let log = site.admin(&["audit", "--limit", "100"]);
    assert!(log.contains("\tbob\tmr.merge\t/projects/a\tok"), "{log}");
}

#[test]
fn web_ui_on_sqlite() {
    web_ui(Backend::Sqlite);
}

#[test]
fn web_ui_on_postgres() {
    web_ui(Backend::Postgres);
}

fn tessera_as(url: &str, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env("TESSERA_SERVER", url)
        .env("TESSERA_TOKEN", token)
        .output()
        .unwrap()
}

/// Comments, approvals of a head, and the approvals a path requires,
/// through the CLI, REST and the pages.
#[test]
fn reviews_need_current_approvals_from_maintainers() {
    let Some(site) = Site::new(Backend::Sqlite) else { return };
    site.admin(&["user", "add", "admin", "--admin", "--init"]);
    for user in ["alice", "bob", "carol"] {
        site.admin(&["user", "add", user]);
    }
    let alice = site.token("alice", "t", "write");
    let bob = site.token("bob", "t", "write");
    let carol = site.token("carol", "t", "write");
    site.admin(&["access", "grant", "/projects/a", "write", "--user", "alice"]);
    site.admin(&["access", "grant", "/projects/a", "maintain", "--user", "bob"]);
    site.admin(&["access", "grant", "/projects/a", "maintain", "--user", "carol"]);
    let (mut server, url) = site.serve(&[]);

    // Maintainers set the rule; writers cannot.
    let out = tessera_as(&url, &alice, &["mr", "require-approvals", "/projects/a", "0"]);
    assert!(!out.status.success(), "alice changed the rule");
    let out = tessera_as(&url, &bob, &["mr", "require-approvals", "/projects/a", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let a = new_repo();
    write(a.path(), "a.txt", "one\n");
    commit_all(a.path(), "alice's change");
    push(a.path(), &with(&format!("{url}/projects/a"), &alice));
    let out = tessera_as(&url, &alice, &["mr", "comment", "1", "please review"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tessera_as(&url, &bob, &["mr", "comment", "1", "why one?", "--file", "a.txt", "--line", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tessera_as(&url, &alice, &["mr", "approve", "1"]);
    assert!(!out.status.success(), "the author approved");
    let out = tessera_as(&url, &bob, &["mr", "approve", "1"]);
    assert!(text(&out.stdout).contains("1 of 2 required"), "{}", text(&out.stdout));
    let out = tessera_as(&url, &bob, &["mr", "merge", "1"]);
    assert!(!out.status.success() && text(&out.stderr).contains("needs 2 approval(s)"), "{}", text(&out.stderr));

    // carol approves on the page.
    let browser = Browser::new();
    assert_eq!(browser.sign_in(&url, "carol", &carol).status, 303);
    let page = browser.get(&format!("{url}/-/mr/1"));
    assert!(
        page.body.contains("why one?") && page.body.contains("a.txt:1") && page.body.contains("1 of 2"),
        "{}",
        page.body
    );
    let approved = browser.post(&format!("{url}/-/mr/1/approve"), &[("csrf", &csrf(&page))]);
    assert_eq!(approved.status, 303);
    let commented = browser.post(&format!("{url}/-/mr/1/comment"), &[("csrf", &csrf(&page)), ("body", "looks fine")]);
    assert_eq!(commented.status, 303);

    // A new push keeps the comments and resets the approvals.
    write(a.path(), "a.txt", "one\ntwo\n");
    commit_all(a.path(), "alice answers");
    push(a.path(), &with(&format!("{url}/projects/a"), &alice));
    let shown = tessera_as(&url, &bob, &["mr", "show", "1"]);
    let shown = text(&shown.stdout);
    assert!(
        shown.contains("approvals: 0 of 2") && shown.contains("3 comment(s)") && shown.contains("looks fine"),
        "{shown}"
    );
    let out = tessera_as(&url, &bob, &["mr", "merge", "1"]);
    assert!(!out.status.success(), "stale approvals merged");
    let page = browser.get(&format!("{url}/-/mr/1"));
    assert!(page.body.contains("approved an earlier push"), "{}", page.body);
    for token in [&bob, &carol] {
        assert!(tessera_as(&url, token, &["mr", "approve", "1"]).status.success());
    }
    let out = tessera_as(&url, &bob, &["mr", "merge", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let _ = server.kill();
    let _ = server.wait();
    let log = site.admin(&["audit", "--limit", "100"]);
    for needle in [
        "\tbob\tsettings.approvals\t/projects/a\tok",
        "\tcarol\tmr.approve\t",
        "\talice\tmr.comment\t",
        "\tbob\tmr.merge\t/projects/a\trefused",
    ] {
        assert!(log.contains(needle), "{needle:?} missing:\n{log}");
    }
}

/// The pages in a real browser: headless Chromium renders them under
/// their Content-Security-Policy (the stylesheet loads, nothing is
/// refused), escapes what the repository holds, and draws them.
#[test]
fn pages_render_in_headless_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
    else {
        tessera_testkit::unavailable("chromium", "no chromium on PATH (apt-get install chromium)");
        return;
    };
    let Some(site) = Site::new(Backend::Sqlite) else { return };
    site.admin(&["user", "add", "admin", "--admin", "--init"]);
    let admin = site.token("admin", "t", "admin");
    let (mut server, url) = site.serve(&[]);
    let demo = new_repo();
    write(demo.path(), "README.md", "# Rendered\n\n<img src=x onerror=\"document.title='pwned'\">\n");
    write(demo.path(), "lib.rs", "/// docs\npub fn f() -> u32 { 42 }\n");
    commit_all(demo.path(), "demo");
    push(demo.path(), &with(&format!("{url}/import/demo"), &admin));
    let profile = tempfile::tempdir().unwrap();
    let browse = |page: &str, extra: &[&str]| {
        Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-logging=stderr", "--v=0"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("{url}{page}"))
            .output()
            .unwrap()
    };
    for page in ["/import/demo", "/import/demo/-/blob/main/lib.rs", "/import/demo/-/commits/main"] {
        let out = browse(page, &["--dump-dom"]);
        let dom = text(&out.stdout);
        let log = text(&out.stderr);
        assert!(dom.contains("tessera") && dom.contains("</main>"), "{page}: {dom}");
        assert!(!dom.contains("pwned") && !dom.contains("onerror"), "{page}: {dom}");
        assert!(!log.contains("Content Security Policy") && !log.contains("Refused to"), "{page}: {log}");
    }
    let dom = text(&browse("/import/demo/-/blob/main/lib.rs", &["--dump-dom"]).stdout);
    assert!(dom.contains("id=\"L2\"") && dom.contains("hl-"), "{dom}");
    let shot = profile.path().join("page.png");
    let out = browse("/import/demo", &["--window-size=1200,900", &format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).unwrap_or_else(|_| panic!("no screenshot: {}", text(&out.stderr)));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
    let _ = server.kill();
    let _ = server.wait();
}

fn sqlite(db: &Path, sql: &str) {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().expect("sqlite3 runs");
    assert!(out.status.success(), "{sql}: {}", text(&out.stderr));
}

fn tessera_data(args: &[&str]) {
    let out = common::tessera(&[&["data"], args].concat(), &[]);
    assert!(out.status.success(), "tessera data {args:?}: {}", text(&out.stderr));
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A data export pushed to the server: its tables and their rows are
/// pages, and a commit's page shows what changed in each table row by row
/// (gzip chunks too). Hostile metadata and a chunk that inflates past its
/// limit are named on the page, and the server goes on serving.
fn data_views(backend: Backend) {
    let Some(site) = Site::new(backend) else { return };
    site.admin(&["user", "add", "admin", "--admin", "--init"]);
    let admin = site.token("admin", "t", "admin");
    let (mut server, url) = site.serve(&[]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    sqlite(
        &db,
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, note TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO people SELECT i, 'person ' || i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'note ' || i END FROM n;
         CREATE TABLE tags (t TEXT);
         INSERT INTO tags VALUES ('a'), ('b'), ('b');",
    );
    let repo = dir.path().join("export");
    let (db_s, repo_s) = (db.to_str().unwrap(), repo.to_str().unwrap());
    tessera_data(&["export", db_s, repo_s, "--chunk-size", "16KB", "--compress", "gzip", "--branch", "main"]);
    let remote = with(&format!("{url}/import/app-data"), &admin);
    git_in(&repo, &["push", "-q", &remote, "main"]);
    sqlite(
        &db,
        "UPDATE people SET name = 'Ada <b>Lovelace</b>' WHERE id = 1500;
         DELETE FROM people WHERE id = 10;
         INSERT INTO people VALUES (5000, 'newcomer', NULL);
         INSERT INTO tags VALUES ('c');",
    );
    tessera_data(&["export", db_s, repo_s, "--chunk-size", "16KB", "--compress", "gzip", "--branch", "main"]);
    let second = git_in(&repo, &["rev-parse", "main"]).trim().to_string();
    git_in(&repo, &["push", "-q", &remote, "main"]);

    let anon = Browser::new();
    let page = anon.get(&format!("{url}/import/app-data"));
    assert!(page.status == 200 && page.body.contains("/import/app-data/-/data/main"), "a Data tab: {}", page.body);
    let page = anon.get(&format!("{url}/import/app-data/-/data/main"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("people") && page.body.contains("3000 rows"), "{}", page.body);
    assert!(page.body.contains("tags") && page.body.contains("4 rows"), "{}", page.body);
    // Rows across chunks: the second page starts at row 101, id 102 (the
    // second export deleted id 10).
    let page = anon.get(&format!("{url}/import/app-data/-/data/main/people?page=1"));
    assert!(page.status == 200 && page.body.contains("rows 101–200 of 3000"), "{}", page.body);
    assert!(page.body.contains("<tr><td>102</td><td>person 102</td>") && page.body.contains("Next →"), "{}", page.body);
    assert!(page.body.contains("class=\"null\""), "NULL is set apart from text: {}", page.body);
    let page = anon.get(&format!("{url}/import/app-data/-/data/main/people?page=14"));
    assert!(
        page.body.contains("Ada &lt;b&gt;Lovelace&lt;/b&gt;") && !page.body.contains("<b>Lovelace"),
        "{}",
        page.body
    );

    // The commit, row by row.
    let page = anon.get(&format!("{url}/import/app-data/-/commit/{second}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Data changes"), "{}", page.body);
    assert!(page.body.contains("+1 rows, −1, ~1 changed"), "people: {}", page.body);
    assert!(page.body.contains("<del>person 1500</del> <ins>Ada &lt;b&gt;Lovelace&lt;/b&gt;</ins>"), "{}", page.body);
    assert!(page.body.contains("<td>newcomer</td>") && page.body.contains("<td>person 10</td>"), "{}", page.body);
    assert!(page.body.contains("+1 rows, −0, ~0 changed"), "tags, matched by content: {}", page.body);

    // The same through the JSON API.
    let json = |path: &str| -> serde_json::Value {
        let (status, body) = common::rest("GET", &format!("{url}{path}"), None);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let tables = json("/api/v1/data?path=/import/app-data&ref=main");
    assert_eq!(tables["tables"][0]["name"], "people", "{tables}");
    assert_eq!(tables["tables"][0]["rows"], 3000);
    assert_eq!(tables["tables"][0]["primary_key"][0], "id");
    let rows = json("/api/v1/data?path=/import/app-data&table=people&page=1");
    assert_eq!((&rows["offset"], &rows["rows"][0][0], &rows["more"]), (&100.into(), &"102".into(), &true.into()));
    assert!(rows["rows"][3][2].is_null(), "NULL (id 105) is null: {rows}");
    let changes = json(&format!("/api/v1/data/changes?path=/import/app-data&commit={second}"));
    let people = &changes["tables"][0];
    assert_eq!(people["counts"], serde_json::json!({ "added": 1, "deleted": 1, "changed": 1 }), "{changes}");
    assert_eq!(
        people["changed"][0]["cells"][0],
        serde_json::json!({ "column": "name", "before": "person 1500", "after": "Ada <b>Lovelace</b>" })
    );
    let (status, _) = common::rest("GET", &format!("{url}/api/v1/data?path=/import/nowhere"), None);
    assert_eq!(status, 404);

    // Pushed to a new monorepo directory, the export opens a merge request
    // whose page shows the rows it adds.
    let out = git_output(&repo, &["push", "-q", &with(&format!("{url}/appdata"), &admin), "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let maintainer = Browser::new();
    maintainer.sign_in(&url, "admin", &admin);
    let page = maintainer.get(&format!("{url}/-/mr/1"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Data changes") && page.body.contains("+3000 rows, −0, ~0 changed"), "{}", page.body);

    // Hostile: metadata naming a key column that does not exist, and a
    // chunk edited in git that inflates far past the chunk limit.
    git_in(&repo, &["config", "user.name", "t"]);
    git_in(&repo, &["config", "user.email", "t@example.com"]);
    let meta_path = repo.join(".dolt-metadata/tables/people.json");
    let meta = std::fs::read_to_string(&meta_path).unwrap();
    std::fs::write(&meta_path, meta.replacen("\"primary_key\": [\n    \"id\"\n  ]", "\"primary_key\": [\"nope\"]", 1))
        .unwrap();
    let chunk =
        git_in(&repo, &["ls-tree", "-r", "--name-only", "main", "data/tags/"]).lines().next().unwrap().to_string();
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut bomb, &vec![b'a'; 64 << 20]).unwrap();
    std::fs::write(repo.join(&chunk), bomb.finish().unwrap()).unwrap();
    git_in(&repo, &["commit", "-qam", "hostile"]);
    let hostile = git_in(&repo, &["rev-parse", "main"]).trim().to_string();
    git_in(&repo, &["push", "-q", &remote, "main"]);
    let page = anon.get(&format!("{url}/import/app-data/-/data/main"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("people: not shown") && page.body.contains("nope"), "{}", page.body);
    let page = anon.get(&format!("{url}/import/app-data/-/data/main/tags"));
    assert!(page.body.contains("inflates to more than"), "{}", page.body);
    let page = anon.get(&format!("{url}/import/app-data/-/commit/{hostile}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("not compared here") && page.body.contains("inflates to more than"), "{}", page.body);
    assert_eq!(anon.get(&format!("{url}/import/app-data")).status, 200, "the server still serves");
    server.kill().unwrap();
}

#[test]
fn data_views_on_sqlite() {
    data_views(Backend::Sqlite);
}

#[test]
fn data_views_on_postgres() {
    data_views(Backend::Postgres);
}
