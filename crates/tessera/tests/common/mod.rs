//! What the end-to-end tests of the binary share: a site (data dir and
//! database) administered with the real `tessera` commands and served by
//! the real binary, and small HTTP and git helpers.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use tessera_testkit::{git_output, Backend, TempDatabase};

pub fn tessera(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(args).env_remove("TESSERA_REQUIRE_TOKEN_FOR_READS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("tessera runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub struct Site {
    pub data: String,
    pub database: String,
    /// Set for every command and server of the site (storage settings).
    pub env: Vec<(String, String)>,
    _db: Option<TempDatabase>,
    _dir: tempfile::TempDir,
}

impl Site {
    pub fn new(backend: Backend) -> Option<Site> {
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
        Some(Site { data, database, env: Vec::new(), _db: db, _dir: dir })
    }

    /// A site whose commands and servers all run with `env`.
    pub fn with_env(backend: Backend, env: Vec<(&'static str, String)>) -> Option<Site> {
        let mut site = Site::new(backend)?;
        site.env = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        Some(site)
    }

    fn site_env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// Runs an administration command on this site; panics if it fails.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = self.admin_output(args);
        assert!(out.status.success(), "tessera {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    pub fn admin_output(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data-dir", &self.data, "--database", &self.database]);
        tessera(&all, &self.site_env())
    }

    pub fn token(&self, user: &str, name: &str, scope: &str) -> String {
        let out = self.admin(&["token", "create", "--user", user, "--name", name, "--scope", scope]);
        out.split_whitespace().last().unwrap().to_string()
    }

    pub fn serve(&self, env: &[(&str, &str)]) -> (Child, String) {
        let (child, url, _) = self.spawn(&[], env);
        (child, url)
    }

    /// Serves HTTP and SSH; returns the HTTP URL and the SSH port.
    /// Serves HTTP with `env` set; returns the child and the URL.
    pub fn spawn_with_env(&self, env: &[(&str, &str)]) -> (Child, String) {
        let (child, url, _) = self.spawn(&[], env);
        (child, url)
    }

    pub fn serve_ssh(&self) -> (Child, String, u16) {
        let (child, url, ssh) = self.spawn(&["--ssh-listen", "127.0.0.1:0"], &[]);
        let port = ssh.expect("an SSH banner").rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
        (child, url, port)
    }

    pub fn spawn(&self, extra: &[&str], env: &[(&str, &str)]) -> (Child, String, Option<String>) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir", &self.data, "--database", &self.database])
            .args(extra)
            .env_remove("TESSERA_REQUIRE_TOKEN_FOR_READS")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in self.site_env().into_iter().chain(env.iter().copied()) {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        lines.read_line(&mut banner).unwrap();
        let url = banner.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_string();
        let ssh = (!extra.is_empty()).then(|| {
            let mut line = String::new();
            lines.read_line(&mut line).unwrap();
            line.split_whitespace().find(|w| w.starts_with("ssh://")).unwrap().to_string()
        });
        (child, url, ssh)
    }
}

/// `url` with `token` as the Basic password.
pub fn with(url: &str, token: &str) -> String {
    url.replacen("http://", &format!("http://x:{token}@"), 1)
}

/// A REST call; returns the status and body.
pub fn rest(method: &str, url: &str, token: Option<&str>) -> (u16, String) {
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
pub fn git_refused(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(!out.status.success(), "git {args:?} succeeded");
    text(&out.stderr)
}

/// An OpenSSH client identity, and the `GIT_SSH_COMMAND` that uses it
/// (and only it) against the server's host key, pinned in known_hosts.
pub struct SshClient {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl SshClient {
    pub fn new(site: &Site, port: u16, names: &[&str]) -> SshClient {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            let key = dir.path().join(name);
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", &format!("{name}@test"), "-f"])
                .arg(&key)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
        // The host key the server generated in its data dir, pinned.
        let host_key = Path::new(&site.data).join("ssh_host_ed25519_key");
        let out = Command::new("ssh-keygen").arg("-y").arg("-f").arg(&host_key).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let known = format!("[127.0.0.1]:{port} {}", text(&out.stdout));
        std::fs::write(dir.path().join("known_hosts"), known).unwrap();
        SshClient { dir, port }
    }

    pub fn public(&self, name: &str) -> String {
        self.dir.path().join(format!("{name}.pub")).to_str().unwrap().to_string()
    }

    /// The ssh command line for `name`'s key.
    pub fn command(&self, name: &str) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \
             -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o LogLevel=ERROR",
            self.dir.path().join(name).display(),
            self.dir.path().join("known_hosts").display()
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("ssh://git@127.0.0.1:{}{path}", self.port)
    }

    /// git with `name`'s key.
    pub fn git(&self, name: &str, dir: &Path, args: &[&str]) -> Output {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_SSH_COMMAND", self.command(name))
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap()
    }

    /// Runs `remote` over ssh as `name`.
    pub fn ssh(&self, name: &str, remote: &str) -> Output {
        let mut args: Vec<String> = self.command(name).split_whitespace().skip(1).map(str::to_string).collect();
        args.extend(["-p".into(), self.port.to_string(), "git@127.0.0.1".into()]);
        if !remote.is_empty() {
            args.push(remote.into());
        }
        Command::new("ssh").args(&args).stdin(Stdio::null()).output().unwrap()
    }
}
