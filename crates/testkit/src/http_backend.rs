//! C git's `git http-backend` behind a minimal HTTP/1.1 server on
//! `127.0.0.1:0` that requires a token (the Basic password), the reference
//! git host the data bridge is tested against.
//!
//! One thread per connection, `Connection: close` on every response; request
//! bodies may be sized or chunked and are passed to the CGI as they came
//! (with `HTTP_CONTENT_ENCODING`, so gzip-compressed negotiation works).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running `git http-backend` serving the bare repositories under `root`.
pub struct HttpBackend {
    /// `http://127.0.0.1:PORT`; repositories are `{url}/{name}.git`.
    pub url: String,
    pub root: PathBuf,
}

impl HttpBackend {
    /// Serves `root`; every request must carry `token` as its Basic password.
    pub fn start(root: &Path, token: &str) -> HttpBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (root_dir, token) = (root.to_path_buf(), token.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, token) = (root_dir.clone(), token.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &root, &token);
                });
            }
        });
        HttpBackend { url, root: root.to_path_buf() }
    }
}

fn serve(stream: TcpStream, root: &Path, token: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("GET").to_string(), parts.next().unwrap_or("/").to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let authorized = header("authorization")
        .and_then(|v| v.strip_prefix("Basic ").map(str::to_string))
        .and_then(|b| decode_base64(&b))
        .map(|cred| cred.split_once(':').map(|(_, pass)| pass == token).unwrap_or(false))
        .unwrap_or(false);
    if !authorized {
        return out.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", "tester")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (name, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(v) = header(name) {
            cgi.env(var, v);
        }
    }
    let mut child = cgi.spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let feeder = std::thread::spawn(move || stdin.write_all(&body));
    let mut response = Vec::new();
    child.stdout.take().expect("piped").read_to_end(&mut response)?;
    let _ = feeder.join();
    child.wait()?;
    // CGI headers end at the first blank line; `Status:` becomes the status line.
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| response.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head, rest) = match split {
        Some((i, n)) => (String::from_utf8_lossy(&response[..i]).into_owned(), &response[i + n..]),
        None => (String::new(), &response[..]),
    };
    let mut status = "200 OK".to_string();
    let mut out_head = String::new();
    for h in head.lines() {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => out_head.push_str(&format!("{h}\r\n")),
            None => {}
        }
    }
    out.write_all(
        format!("HTTP/1.1 {status}\r\n{out_head}Content-Length: {}\r\nConnection: close\r\n\r\n", rest.len())
            .as_bytes(),
    )?;
    out.write_all(rest)
}

fn decode_base64(s: &str) -> Option<String> {
    use base64::Engine;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()?).ok()
}
