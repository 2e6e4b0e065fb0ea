//! tessera's web pages, rendered on the server: no JavaScript needed.
//!
//! This crate turns plain data (what the server read from a repository,
//! already authorized) into HTML. It knows nothing of HTTP, SQL or git's
//! object format; the server's `ui` module gathers the data and calls it.
//! Everything from a repository is hostile: text is escaped by the
//! templates (maud), Markdown is rendered and then sanitized (ammonia),
//! highlighting is bounded ([`highlight::MAX_BYTES`]).
#![forbid(unsafe_code)]

pub mod highlight;
pub mod markdown;
mod pages;

pub use pages::*;

/// One step of the breadcrumb trail.
#[derive(Debug, Clone)]
pub struct Crumb {
    pub name: String,
    pub href: String,
}

/// What every page shows around its content.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    pub title: String,
    /// The signed-in user's name.
    pub user: Option<String>,
    /// The form token of the signed-in session, for POST forms.
    pub csrf: Option<String>,
    pub crumbs: Vec<Crumb>,
    /// The repository or directory path the page is about (`/` for the
    /// root), for its tabs; `None` on pages about no path.
    pub path: Option<String>,
    /// The ref the tabs should keep (`main`).
    pub refname: Option<String>,
    /// The path holds a data export: its tabs include the data view.
    pub data: bool,
}

/// Percent-encodes a path for an href, keeping `/`.
pub fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// The URL prefix of a path's views: `/a/b/-` (or `/-` for the root).
pub fn views(path: &str) -> String {
    if path == "/" {
        "/-".to_string()
    } else {
        format!("{}/-", url_path(path))
    }
}
