//! The web UI in a real browser: Debian's headless Chromium driven through
//! ChromeDriver with W3C WebDriver (a small client here: WebDriver is JSON
//! over HTTP), against the real server. A user clicks from `/` to a file,
//! opens a commit's diff, signs in and merges a merge request with its
//! button, and sees a table's changed cell row by row; attacker-controlled
//! names, messages and READMEs stay text, and no script of theirs runs.
//! Screenshots of the pages go to `TESSERA_SCREENSHOTS` when it is set.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{text, with, Site};
use serde_json::{json, Value};
use tessera_testkit::{commit_all, git_output, new_repo, write, Backend};

/// ChromeDriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    base: String,
}

impl Driver {
    fn start() -> Option<Driver> {
        if Command::new("chromedriver").arg("--version").output().is_err() {
            tessera_testkit::unavailable("chromedriver", "apt-get install chromium-driver");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let driver = Driver { child, base: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if driver.call("GET", "/status", None).get("value").and_then(|v| v["ready"].as_bool()) == Some(true) {
                return Some(driver);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("chromedriver did not become ready on port {port}");
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-X", method, "-H", "Content-Type: application/json"]);
        if let Some(b) = body {
            cmd.args(["--data-binary", &b.to_string()]);
        } else if method == "POST" {
            cmd.args(["--data-binary", "{}"]);
        }
        let out = cmd.arg(format!("{}{path}", self.base)).output().expect("curl runs");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn session(&self) -> Session<'_> {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900",
                         "--disable-dev-shm-usage"]
            }
        }}});
        let made = self.call("POST", "/session", Some(caps));
        let id = made["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {made}")).to_string();
        Session { driver: self, id }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser window.
struct Session<'d> {
    driver: &'d Driver,
    id: String,
}

impl Session<'_> {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let answer = self.driver.call(method, &format!("/session/{}{path}", self.id), body);
        assert!(answer["value"].get("error").is_none(), "{method} {path}: {answer}");
        answer["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_string()
    }

    /// The first element matching `css`, waited for up to five seconds.
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let answer = self.driver.call(
                "POST",
                &format!("/session/{}/element", self.id),
                Some(json!({ "using": "css selector", "value": css })),
            );
            if let Some(id) = answer["value"].as_object().and_then(|o| o.values().next()).and_then(Value::as_str) {
                return id.to_string();
            }
            assert!(Instant::now() < deadline, "no element {css} on {}: {answer}", self.url());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The first link whose text is `label`.
    fn link(&self, label: &str) -> String {
        let answer = self.call("POST", "/element", Some(json!({ "using": "link text", "value": label })));
        answer.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_string()
    }

    fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), None);
    }

    fn type_into(&self, element: &str, keys: &str) {
        self.call("POST", &format!("/element/{element}/value"), Some(json!({ "text": keys })));
    }

    fn text_of(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), None).as_str().unwrap().to_string()
    }

    /// The page's visible text.
    fn page_text(&self) -> String {
        let body = self.find("body");
        self.text_of(&body)
    }

    fn script(&self, js: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({ "script": js, "args": [] })))
    }

    /// That no script of the page's content ran: no alert is open, the
    /// title is the page's own, and no marker was set.
    fn assert_no_injected_script(&self) {
        let alert = self.driver.call("GET", &format!("/session/{}/alert/text", self.id), None);
        assert_eq!(alert["value"]["error"], "no such alert", "an alert opened on {}: {alert}", self.url());
        let title = self.script("return document.title");
        assert!(!title.as_str().unwrap_or_default().contains("pwned"), "{title}");
        assert_eq!(self.script("return typeof window.pwned"), "undefined");
    }

    fn screenshot(&self, name: &str, dir: &Path) {
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64_decode(png.as_str().unwrap());
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000, "{name}: {} bytes", bytes.len());
        std::fs::write(dir.join(format!("{name}.png")), &bytes).unwrap();
        if let Ok(keep) = std::env::var("TESSERA_SCREENSHOTS") {
            std::fs::create_dir_all(&keep).unwrap();
            std::fs::write(Path::new(&keep).join(format!("{name}.png")), &bytes).unwrap();
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.driver.call("DELETE", &format!("/session/{}", self.id), None);
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            _ => 63,
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for group in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in group.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        out.extend(&n.to_be_bytes()[1..group.len()]);
    }
    out
}

fn push(dir: &Path, url: &str) -> String {
    let out = git_output(dir, &["push", url, "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stderr)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn a_user_browses_reviews_and_merges_in_chromium() {
    let Some(driver) = Driver::start() else { return };
    let Some(site) = Site::new(Backend::Sqlite) else { return };
    site.admin(&["user", "add", "admin", "--admin", "--init"]);
    let admin = site.token("admin", "t", "admin");
    let (mut server, url) = site.serve(&[]);
    let shots = tempfile::tempdir().unwrap();

    // A repository with hostile names, messages and README, and a second
    // commit that changes a file.
    let demo = new_repo();
    write(demo.path(), "README.md", "# Demo\n\n<script>window.pwned = 1; document.title = 'pwned'</script>\n");
    write(demo.path(), "src/lib.rs", "/// The answer.\npub fn answer() -> u32 {\n    41\n}\n");
    write(demo.path(), "<img src=x onerror=alert(1)>.md", "hostile name\n");
    commit_all(demo.path(), "first <script>alert('message')</script>");
    write(demo.path(), "src/lib.rs", "/// The answer.\npub fn answer() -> u32 {\n    42\n}\n");
    commit_all(demo.path(), "Fix the answer");
    push(demo.path(), &with(&format!("{url}/import/demo"), &admin));

    let browser = driver.session();
    // From / to a file of the imported repository, by clicking.
    browser.go(&format!("{url}/"));
    browser.assert_no_injected_script();
    browser.screenshot("root", shots.path());
    browser.click(&browser.link("/import/demo"));
    assert!(browser.url().ends_with("/import/demo"), "{}", browser.url());
    let page = browser.page_text();
    assert!(page.contains("<img src=x onerror=alert(1)>.md"), "a hostile name is text: {page}");
    // The README is rendered, and sanitized: its script is not on the page.
    assert!(page.contains("Demo"), "{page}");
    assert_eq!(browser.script("return document.querySelectorAll('script').length"), 0);
    browser.assert_no_injected_script();
    browser.screenshot("repository", shots.path());
    browser.click(&browser.link("src/"));
    browser.click(&browser.link("lib.rs"));
    assert!(browser.url().contains("/import/demo/-/blob/"), "{}", browser.url());
    let code = browser.text_of(&browser.find("#L3"));
    assert!(code.contains("42"), "line 3: {code}");
    browser.screenshot("file", shots.path());

    // A commit and its diff, from the history.
    browser.go(&format!("{url}/import/demo/-/commits/main"));
    browser.assert_no_injected_script();
    assert!(browser.page_text().contains("first <script>alert('message')</script>"));
    browser.screenshot("history", shots.path());
    browser.click(&browser.link("Fix the answer"));
    assert!(browser.url().contains("/import/demo/-/commit/"), "{}", browser.url());
    let diff = browser.page_text();
    assert!(diff.contains("src/lib.rs") && diff.contains("41") && diff.contains("42"), "{diff}");
    browser.find("del, .del, .removed, td.del");
    browser.screenshot("commit", shots.path());

    // A merge request, merged by its button after signing in.
    let project = new_repo();
    write(project.path(), "hello.txt", "hello\n");
    commit_all(project.path(), "Add hello");
    let said = push(project.path(), &with(&format!("{url}/projects/hello"), &admin));
    assert!(said.contains("merge request !1 opened"), "{said}");
    browser.go(&format!("{url}/-/login"));
    browser.type_into(&browser.find("input[name=user]"), "admin");
    browser.type_into(&browser.find("input[name=secret]"), &admin);
    browser.click(&browser.find("form[action='/-/login'] button"));
    browser.go(&format!("{url}/-/mr/1"));
    assert!(browser.page_text().contains("Add hello"), "{}", browser.page_text());
    browser.screenshot("merge-request", shots.path());
    browser.click(&browser.find("form[action='/-/mr/1/merge'] button"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser.page_text().contains("merged") {
        assert!(Instant::now() < deadline, "not merged: {}", browser.page_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, mr) = common::rest("GET", &format!("{url}/api/v1/mr/1"), Some(&admin));
    assert!(status == 200 && mr.contains("\"status\":\"merged\""), "{mr}");

    // A table export whose one cell changed: the commit shows the row.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let sql = |s: &str| run(Command::new("sqlite3").arg(&db).arg(s));
    sql("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price INTEGER);
         INSERT INTO items VALUES (1, 'apple', 3), (2, 'pear', 4), (3, 'plum', 5);");
    let repo = dir.path().join("export");
    let export = |repo: &Path| {
        let out =
            common::tessera(&["data", "export", db.to_str().unwrap(), repo.to_str().unwrap(), "--branch", "main"], &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    export(&repo);
    push(&repo, &with(&format!("{url}/import/shop"), &admin));
    sql("UPDATE items SET price = 7 WHERE id = 2;");
    export(&repo);
    push(&repo, &with(&format!("{url}/import/shop"), &admin));
    let head = run(Command::new("git").arg("-C").arg(&repo).args(["rev-parse", "main"])).trim().to_string();
    browser.go(&format!("{url}/import/shop/-/commit/{head}"));
    let page = browser.page_text();
    assert!(page.contains("Data changes") && page.contains("~1 changed"), "{page}");
    assert_eq!(browser.text_of(&browser.find("del")), "4");
    assert_eq!(browser.text_of(&browser.find("ins")), "7");
    browser.screenshot("row-diff", shots.path());
    browser.go(&format!("{url}/import/shop/-/data/main/items"));
    assert!(browser.page_text().contains("pear"));
    browser.screenshot("table", shots.path());

    // A narrow window still lays the page out.
    browser.call("POST", "/window/rect", Some(json!({ "width": 420, "height": 900 })));
    browser.go(&format!("{url}/import/demo"));
    let overflow = browser.script("return document.documentElement.scrollWidth - window.innerWidth");
    assert!(overflow.as_i64().unwrap_or(0) <= 0, "horizontal scroll at 420 px: {overflow}");
    browser.screenshot("narrow", shots.path());
    drop(browser);
    let _ = server.kill();
    let _ = server.wait();
}
