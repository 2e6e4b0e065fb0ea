//! Checks and webhooks end to end: the real binary, real git pushes, a CI
//! posting checks through the REST API, and a webhook receiver that
//! answers 500 once and checks every signature.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{text, with, Site};
use hmac::Mac;
use tessera_testkit::{commit_all, git, git_output, write, Backend};

const SECRET: &str = "a webhook secret of some length";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> String {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).unwrap_or_default()
    }
}

/// An HTTP receiver on 127.0.0.1 that records every request and answers
/// 500 to the first one, 200 to the others.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = Vec::new();
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(':') {
                        headers.push((k.trim().to_string(), v.trim().to_string()));
                    }
                }
                let length: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let n = {
                    let mut got = seen.lock().unwrap();
                    got.push(Received { headers, body: String::from_utf8(body).unwrap() });
                    got.len()
                };
                let status = if n == 1 { "500 Internal Server Error" } else { "200 OK" };
                let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Receiver { url, got }
    }

    /// Waits for a request of `event` beyond the first `skip` of them.
    fn wait_for(&self, event: &str, skip: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got: Vec<Received> =
                self.got.lock().unwrap().iter().filter(|r| r.header("x-tessera-event") == event).cloned().collect();
            if got.len() > skip {
                return got;
            }
            assert!(Instant::now() < deadline, "no {event} delivery in 30 s: {:?}", self.got.lock().unwrap());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn signed(body: &str) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A REST call with a JSON body; returns the status and the JSON answer.
fn call(method: &str, url: &str, token: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-w", "\n%{http_code}", "-X", method, "-u", &format!("x:{token}")]);
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", &b.to_string()]);
    }
    let out = cmd.arg(url).output().unwrap();
    let all = text(&out.stdout);
    let (body, status) = all.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

fn checks_and_webhooks(backend: Backend) {
    let env =
        vec![("TESSERA_WEBHOOKS_ALLOW_PRIVATE", "true".to_string()), ("TESSERA_WEBHOOK_RETRY_SECS", "1".to_string())];
    let Some(site) = Site::with_env(backend, env) else { return };
    site.admin(&["user", "add", "admin", "--admin", "--init"]);
    site.admin(&["user", "add", "alice"]);
    site.admin(&["user", "add", "ci"]);
    site.admin(&["access", "grant", "/projects", "write", "--user", "alice"]);
    site.admin(&["access", "grant", "/projects", "write", "--user", "ci"]);
    site.admin(&["access", "grant", "/import", "write", "--user", "alice"]);
    let admin = site.token("admin", "t", "admin");
    let alice = site.token("alice", "t", "write");
    let ci = site.token("ci", "t", "write");
    let (mut server, url) = site.serve(&[]);
    let receiver = Receiver::start();

    // Maintainers configure webhooks; others may not.
    let hook = serde_json::json!({ "url": receiver.url, "secret": SECRET,
        "events": ["push", "mr.opened", "mr.updated", "mr.merged", "mr.closed"] });
    let (status, _) = call("POST", &format!("{url}/api/v1/webhooks?path=/projects"), &alice, Some(hook.clone()));
    assert_eq!(status, 403);
    let (status, made) = call("POST", &format!("{url}/api/v1/webhooks?path=/projects"), &admin, Some(hook.clone()));
    assert_eq!(status, 201, "{made}");
    assert!(made.get("secret").is_none(), "the secret is never shown: {made}");
    let hook_id = made["id"].as_i64().unwrap();
    let (status, made) = call("POST", &format!("{url}/api/v1/webhooks?path=/import"), &admin, Some(hook));
    assert_eq!(status, 201, "{made}");
    // Without webhooks_allow_private, a loopback receiver is refused.
    let (mut strict, strict_url) = site.serve(&[("TESSERA_WEBHOOKS_ALLOW_PRIVATE", "false")]);
    let local = serde_json::json!({ "url": "http://127.0.0.1:9/x", "secret": SECRET, "events": ["push"] });
    let (status, answer) = call("POST", &format!("{strict_url}/api/v1/webhooks?path=/projects"), &admin, Some(local));
    assert_eq!(status, 422, "{answer}");
    let _ = strict.kill();
    let _ = strict.wait();

    // /projects requires the check ci/build.
    let settings = serde_json::json!({ "required_checks": ["ci/build"] });
    let (status, answer) = call("POST", &format!("{url}/api/v1/settings?path=/projects"), &admin, Some(settings));
    assert_eq!(status, 200, "{answer}");

    // alice opens a merge request: mr.opened arrives, first answered 500,
    // then again, signed, with the same delivery id.
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("app");
    git(work.path(), &["init", "-q", "-b", "main", app.to_str().unwrap()]);
    write(&app, "main.c", "int main(void) { return 0; }\n");
    let first = commit_all(&app, "app");
    let out = git_output(&app, &["push", &with(&format!("{url}/projects/app"), &alice), "main"]);
    assert!(text(&out.stderr).contains("merge request !1 opened"), "{}", text(&out.stderr));
    let opened = receiver.wait_for("mr.opened", 1);
    assert_eq!(opened[0].header("x-tessera-delivery"), opened[1].header("x-tessera-delivery"));
    for r in &opened {
        assert_eq!(r.header("x-tessera-signature-256"), signed(&r.body), "{r:?}");
        let event: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(event["event"], "mr.opened");
        assert_eq!(event["path"], "/projects/app");
        assert_eq!(event["merge_request"]["id"], 1);
        assert_eq!(event["pusher"], "alice");
    }

    // No check reported: the merge waits. Pending: still. Success: merged.
    let merge = format!("{url}/api/v1/mr/1/merge");
    let (status, answer) = call("POST", &merge, &admin, None);
    assert_eq!(status, 409, "{answer}");
    assert!(answer.to_string().contains("ci/build (not reported)"), "{answer}");
    let checks = format!("{url}/api/v1/mr/1/checks");
    let post = |state: &str, head: &str| {
        let body = serde_json::json!({ "name": "ci/build", "state": state, "head": head,
                                       "url": "https://ci.example.com/build/1" });
        call("POST", &checks, &ci, Some(body))
    };
    assert_eq!(post("pending", &first).0, 201);
    let (status, answer) = call("POST", &merge, &admin, None);
    assert_eq!(status, 409);
    assert!(answer.to_string().contains("ci/build (pending)"), "{answer}");
    // A result for another head than the request's is refused.
    assert_eq!(post("success", &"1".repeat(40)).0, 409);
    // So is an unknown state, and a check from someone who may not write there.
    assert_eq!(post("green", &first).0, 400);
    let body = serde_json::json!({ "name": "ci/build", "state": "success" });
    let (status, _) = call("POST", &checks, &site.token("admin", "ro", "read"), Some(body));
    assert_eq!(status, 403);

    // A new push resets the checks: they are of the head they ran on.
    write(&app, "main.c", "int main(void) { return 1; }\n");
    let second = commit_all(&app, "app, again");
    let out = git_output(&app, &["push", &with(&format!("{url}/projects/app"), &alice), "main"]);
    assert!(text(&out.stderr).contains("merge request !1 updated"), "{}", text(&out.stderr));
    receiver.wait_for("mr.updated", 0);
    let (_, listed) = call("GET", &checks, &ci, None);
    assert_eq!(listed["head"], second.as_str());
    assert_eq!(listed["checks"], serde_json::json!([]));
    assert_eq!(listed["passing"], false);
    assert_eq!(post("success", &second).0, 201);
    let (_, listed) = call("GET", &checks, &ci, None);
    assert_eq!(listed["passing"], true, "{listed}");
    assert_eq!(listed["checks"][0]["by"], "ci");
    // The merge request's page shows it, marked required, with its link.
    let page = std::process::Command::new("curl")
        .args(["-s", "-u", &format!("x:{admin}"), &format!("{url}/-/mr/1")])
        .output()
        .unwrap();
    let page = text(&page.stdout);
    assert!(page.contains("ci/build") && page.contains("(required)"), "{page}");
    assert!(
        page.contains("class=\"check-success\"") && page.contains("href=\"https://ci.example.com/build/1\""),
        "{page}"
    );
    let (status, answer) = call("POST", &merge, &admin, None);
    assert_eq!(status, 200, "{answer}");
    let merged = receiver.wait_for("mr.merged", 0);
    assert_eq!(merged[0].header("x-tessera-signature-256"), signed(&merged[0].body));

    // A push to an import repository below a hooked path: a push event
    // naming the refs moved.
    let lib = work.path().join("lib");
    git(work.path(), &["init", "-q", "-b", "main", lib.to_str().unwrap()]);
    write(&lib, "lib.rs", "pub fn f() {}\n");
    let lib_head = commit_all(&lib, "lib");
    git(&lib, &["push", "-q", &with(&format!("{url}/import/lib"), &alice), "main"]);
    let pushed = receiver.wait_for("push", 0);
    let event: serde_json::Value = serde_json::from_str(&pushed[0].body).unwrap();
    assert_eq!(event["path"], "/import/lib");
    assert_eq!(event["refs"][0]["ref"], "refs/heads/main");
    assert_eq!(event["refs"][0]["after"], lib_head.as_str());
    assert_eq!(event["refs"][0]["before"], serde_json::Value::Null);

    // The delivery log: the retried one took two attempts.
    let (status, log) = call("GET", &format!("{url}/api/v1/webhooks/{hook_id}/deliveries"), &admin, None);
    assert_eq!(status, 200, "{log}");
    let deliveries = log["deliveries"].as_array().unwrap();
    let first_delivery = deliveries.iter().find(|d| d["event"] == "mr.opened").unwrap();
    assert_eq!((first_delivery["state"].as_str(), first_delivery["attempts"].as_i64()), (Some("delivered"), Some(2)));
    assert_eq!(first_delivery["last_status"], 200);
    // Deleting the hook stops deliveries to it.
    let (status, _) = call("DELETE", &format!("{url}/api/v1/webhooks/{hook_id}"), &admin, None);
    assert_eq!(status, 204);
    let (status, _) = call("GET", &format!("{url}/api/v1/webhooks/{hook_id}/deliveries"), &admin, None);
    assert_eq!(status, 404);
    let _ = server.kill();
    let _ = server.wait();
    let log = site.admin(&["audit", "--limit", "100"]);
    for needle in ["\tadmin\twebhook.add\t/projects\t", "\tci\tmr.check\t/projects/app\t", "\tadmin\tsettings.checks\t"]
    {
        assert!(log.contains(needle), "{needle:?} missing:\n{log}");
    }
}

#[test]
fn checks_and_webhooks_on_sqlite() {
    checks_and_webhooks(Backend::Sqlite);
}

#[test]
fn checks_and_webhooks_on_postgres() {
    checks_and_webhooks(Backend::Postgres);
}
