//! The pages: plain data in, HTML out.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::{url_path, views, Crumb, Frame};

const STYLE: &str = r#"
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg2:#f6f8fa; --link:#0969da; --add:#e6ffec; --del:#ffebe9; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif; color:var(--fg); }
a { color:var(--link); text-decoration:none; } a:hover { text-decoration:underline; }
header { display:flex; gap:1em; align-items:center; padding:.6em 1.2em; border-bottom:1px solid var(--line); background:var(--bg2); }
header .brand { font-weight:600; color:var(--fg); } header .who { margin-left:auto; }
main { max-width:1200px; margin:0 auto; padding:1em 1.2em; }
nav.tabs { display:flex; gap:1.2em; border-bottom:1px solid var(--line); margin-bottom:1em; }
nav.tabs a { padding:.4em 0; } nav.tabs a.on { border-bottom:2px solid #fd8c73; color:var(--fg); font-weight:600; }
table.list { width:100%; border-collapse:collapse; } table.list td, table.list th { padding:.35em .6em; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
.muted { color:var(--muted); } .mono, pre, code { font-family:ui-monospace,SFMono-Regular,Menlo,monospace; font-size:12.5px; }
table.code { border-collapse:collapse; width:100%; } table.code td { padding:0 .6em; white-space:pre; vertical-align:top; }
table.code td.n { text-align:right; color:var(--muted); user-select:none; width:1%; } table.code td.n a { color:inherit; }
table.code tr:target { background:#fff8c5; }
tr.add td.t { background:var(--add); } tr.del td.t { background:var(--del); } tr.hunk td { background:#ddf4ff; color:var(--muted); }
.box { border:1px solid var(--line); border-radius:6px; margin:1em 0; overflow-x:auto; }
.box > .head { padding:.5em .8em; background:var(--bg2); border-bottom:1px solid var(--line); display:flex; gap:1em; }
.readme { padding:0 1.5em; } .clone input { width:28em; font-family:monospace; }
.badge { padding:.1em .5em; border-radius:1em; border:1px solid var(--line); font-size:12px; }
.open { background:#dafbe1; } .merged { background:#fbefff; } .closed, .conflict { background:#ffebe9; }
details > summary { cursor:pointer; padding:.4em 0; }
.check-success { color:#1a7f37; font-weight:600; } .check-failure { color:#cf222e; font-weight:600; } .check-pending { color:#9a6700; }
form.inline { display:inline; } button { cursor:pointer; } a.dir { font-weight:600; }
table.rows { border-collapse:collapse; } table.rows td, table.rows th { padding:.2em .6em; border:1px solid var(--line); white-space:pre; font-family:ui-monospace,SFMono-Regular,Menlo,monospace; font-size:12.5px; vertical-align:top; }
table.rows th { background:var(--bg2); text-align:left; } table.rows th.key { text-decoration:underline; }
table.rows tr.add td { background:var(--add); } table.rows tr.del td { background:var(--del); }
table.rows td.chg { background:#fff8c5; } table.rows td.chg del { background:var(--del); text-decoration:line-through; } table.rows td.chg ins { background:var(--add); text-decoration:none; }
.null { color:var(--muted); font-style:italic; }
"#;

/// The stylesheet every page links (`/-/style.css`): layout and highlighting.
pub fn stylesheet() -> String {
    format!("{STYLE}\n{}", crate::highlight::css())
}

fn page(frame: &Frame, body: Markup) -> String {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (frame.title) " · tessera" }
                link rel="stylesheet" href="/-/style.css";
            }
            body {
                header {
                    a.brand href="/" { "tessera" }
                    span.crumbs {
                        @for (i, crumb) in frame.crumbs.iter().enumerate() {
                            @if i > 0 { " / " }
                            a href=(crumb.href) { (crumb.name) }
                        }
                    }
                    span.who {
                        @match (&frame.user, &frame.csrf) {
                            (Some(user), Some(csrf)) => {
                                (user) " · "
                                form.inline method="post" action="/-/logout" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" { "Sign out" }
                                }
                            }
                            (Some(user), None) => { (user) }
                            _ => { a href="/-/login" { "Sign in" } }
                        }
                    }
                }
                main {
                    @if let Some(path) = &frame.path {
                        (tabs(path, frame.refname.as_deref().unwrap_or("main"), &frame.title, frame.data))
                    }
                    (body)
                }
            }
        }
    };
    markup.into_string()
}

fn tabs(path: &str, refname: &str, current: &str, data: bool) -> Markup {
    let base = views(path);
    let home = if path == "/" { "/".to_string() } else { url_path(path) };
    let tab = |name: &str, href: String| {
        let on = current.starts_with(name);
        html! { a class=@if on { "on" } href=(href) { (name) } }
    };
    html! {
        nav.tabs {
            (tab("Overview", home))
            (tab("Files", format!("{base}/tree/{}", url_path(refname))))
            (tab("Commits", format!("{base}/commits/{}", url_path(refname))))
            (tab("Find", format!("{base}/search/{}", url_path(refname))))
            (tab("Refs", format!("{base}/refs")))
            (tab("Merge requests", format!("{base}/mrs")))
            @if data { (tab("Data", format!("{base}/data/{}", url_path(refname)))) }
        }
    }
}

/// Breadcrumbs for a monorepo path: each directory links to its overview.
pub fn path_crumbs(path: &str) -> Vec<Crumb> {
    let mut crumbs = vec![Crumb { name: "root".into(), href: "/".into() }];
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        crumbs.push(Crumb { name: part.to_string(), href: url_path(&at) });
    }
    crumbs
}

/// One row of a tree listing.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    pub href: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Link,
    Submodule,
}

/// One commit in a list.
#[derive(Debug, Clone)]
pub struct CommitRow {
    pub id: String,
    pub title: String,
    pub author: String,
    pub date: String,
    pub href: String,
}

fn short(id: &str) -> &str {
    &id[..id.len().min(10)]
}

fn commit_table(rows: &[CommitRow]) -> Markup {
    html! {
        table.list {
            @for c in rows {
                tr {
                    td { a href=(c.href) { (c.title) } }
                    td.muted { (c.author) }
                    td.muted.mono { (c.date) }
                    td.mono { a href=(c.href) { (short(&c.id)) } }
                }
            }
        }
    }
}

fn entries_table(entries: &[Entry]) -> Markup {
    html! {
        table.list {
            @for e in entries {
                tr {
                    td {
                        @match e.kind {
                            EntryKind::Dir => { a.dir href=(e.href) { (e.name) "/" } }
                            EntryKind::Submodule => { (e.name) span.muted { " (submodule)" } }
                            EntryKind::Link => { a href=(e.href) { (e.name) } span.muted { " (symbolic link)" } }
                            EntryKind::File => { a href=(e.href) { (e.name) } }
                        }
                    }
                }
            }
        }
    }
}

/// A directory's or repository's home page.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    pub clone_http: String,
    pub clone_ssh: Option<String>,
    pub entries: Vec<Entry>,
    /// Sanitized HTML of the README, if there is one.
    pub readme: Option<String>,
    pub commits: Vec<CommitRow>,
    /// Import repositories below this path the caller may read.
    pub imports: Vec<Crumb>,
    pub kind: String,
}

pub fn overview(frame: &Frame, o: &Overview) -> String {
    page(
        frame,
        html! {
            p.muted { (o.kind) }
            div.clone {
                "Clone: " input readonly value=(format!("git clone {}", o.clone_http));
                @if let Some(ssh) = &o.clone_ssh { " " input readonly value=(format!("git clone {ssh}")); }
            }
            @if !o.imports.is_empty() {
                div.box { div.head { "Import repositories below" } table.list {
                    @for i in &o.imports { tr { td { a href=(i.href) { (i.name) } } } }
                } }
            }
            @if o.entries.is_empty() && o.commits.is_empty() {
                p { "Nothing here yet: push to it to create it." }
            } @else {
                div.box { div.head { "Files" } (entries_table(&o.entries)) }
                div.box { div.head { "Latest commits" } (commit_table(&o.commits)) }
            }
            @if let Some(readme) = &o.readme {
                div.box { div.head { "README" } div.readme { (PreEscaped(readme)) } }
            }
        },
    )
}

pub fn tree(frame: &Frame, subpath: &str, entries: &[Entry]) -> String {
    page(
        frame,
        html! {
            @if !subpath.is_empty() { p.mono { (subpath) } }
            div.box { (entries_table(entries)) }
        },
    )
}

/// Paths of a tree whose name holds a text.
#[derive(Debug, Clone)]
pub struct Search {
    /// Where the form sends its query (`…/-/search/<ref>`).
    pub action: String,
    pub query: String,
    pub results: Vec<Entry>,
    /// The walk or the list stopped at its bound.
    pub truncated: bool,
}

pub fn search(frame: &Frame, s: &Search) -> String {
    page(
        frame,
        html! {
            form method="get" action=(s.action) {
                input type="search" name="q" value=(s.query) placeholder="Find a path";
                " " button type="submit" { "Find" }
            }
            @if !s.query.is_empty() {
                p.muted { (s.results.len()) @if s.truncated { "+" } " path(s) matching " span.mono { (s.query) } }
                div.box { (entries_table(&s.results)) }
            }
        },
    )
}

/// A file's page.
#[derive(Debug, Clone)]
pub struct Blob {
    pub name: String,
    pub size: u64,
    pub raw_href: String,
    pub blame_href: String,
    pub content: BlobContent,
}

#[derive(Debug, Clone)]
pub enum BlobContent {
    /// Highlighted HTML, one fragment per line.
    Lines(Vec<String>),
    Binary,
    TooLarge,
}

pub fn blob(frame: &Frame, b: &Blob) -> String {
    page(
        frame,
        html! {
            div.box {
                div.head {
                    span.mono { (b.name) } span.muted { (b.size) " bytes" }
                    a href=(b.raw_href) { "Raw" } a href=(b.blame_href) { "Blame" }
                }
                @match &b.content {
                    BlobContent::Lines(lines) => {
                        table.code { @for (i, line) in lines.iter().enumerate() {
                            tr id=(format!("L{}", i + 1)) {
                                td.n { a href=(format!("#L{}", i + 1)) { (i + 1) } }
                                td.t { (PreEscaped(line)) }
                            }
                        } }
                    }
                    BlobContent::Binary => { p.readme { "Binary file: " a href=(b.raw_href) { "download it" } } }
                    BlobContent::TooLarge => { p.readme { "Too large to show here: " a href=(b.raw_href) { "view it raw" } } }
                }
            }
        },
    )
}

/// Who last changed each line of a file.
#[derive(Debug, Clone)]
pub struct Blame {
    pub name: String,
    pub blob_href: String,
    /// Each line with the commit that last changed it.
    pub lines: Vec<(String, CommitRow)>,
    /// History was walked only so far back: the oldest lines may be older.
    pub truncated: bool,
}

pub fn blame(frame: &Frame, b: &Blame) -> String {
    page(
        frame,
        html! {
            div.box {
                div.head { span.mono { (b.name) } a href=(b.blob_href) { "File" } }
                table.code { @for (i, (line, c)) in b.lines.iter().enumerate() {
                    @let first = i == 0 || b.lines[i - 1].1.id != c.id;
                    tr id=(format!("L{}", i + 1)) {
                        td.n { @if first { a href=(c.href) { (short(&c.id)) } } }
                        td.muted { @if first { (c.author) " " (c.date) } }
                        td.n { a href=(format!("#L{}", i + 1)) { (i + 1) } }
                        td.t { (line) }
                    }
                } }
            }
            @if b.truncated { p.muted { "History was read only so far back; the oldest lines may be older." } }
        },
    )
}

pub fn commits(frame: &Frame, rows: &[CommitRow], newer: Option<&str>, older: Option<&str>) -> String {
    page(
        frame,
        html! {
            div.box { (commit_table(rows)) }
            p {
                @if let Some(h) = newer { a href=(h) { "← Newer" } " " }
                @if let Some(h) = older { a href=(h) { "Older →" } }
            }
        },
    )
}

/// One changed file with its diff.
#[derive(Debug, Clone)]
pub struct FileDiff {
    pub path: String,
    pub status: String,
    pub added: usize,
    pub removed: usize,
    pub body: DiffBody,
}

#[derive(Debug, Clone)]
pub enum DiffBody {
    Lines(Vec<DiffLine>),
    Binary,
    /// Not shown (too large, or past the page's budget).
    Omitted(String),
}

#[derive(Debug, Clone)]
pub struct DiffLine {
    /// `+`, `-`, ` ` or `@` (a hunk header).
    pub kind: char,
    pub old: Option<usize>,
    pub new: Option<usize>,
    pub text: String,
}

/// Whether `path` is a file a data export writes (metadata and chunks),
/// whose line diff the row-level one above it already says better.
fn export_file(path: &str) -> bool {
    let path = path.trim_start_matches('/');
    [".dolt-metadata/", "data/"].iter().any(|dir| path.starts_with(dir) || path.contains(&format!("/{dir}")))
}

/// The line diffs of a change; with `rows_shown` (the change has a
/// row-level diff above), the export's own files fold away behind a summary.
fn diff_boxes(files: &[FileDiff], rows_shown: bool) -> Markup {
    let numbered: Vec<Numbered<'_>> = files.iter().enumerate().collect();
    let (folded, shown): (Vec<Numbered<'_>>, Vec<Numbered<'_>>) =
        numbered.into_iter().partition(|(_, f)| rows_shown && export_file(&f.path));
    html! {
        p.muted { (files.len()) " file(s) changed, +" (files.iter().map(|f| f.added).sum::<usize>()) " −" (files.iter().map(|f| f.removed).sum::<usize>()) }
        (file_diffs(&shown))
        @if !folded.is_empty() {
            details {
                summary.muted { "Line diffs of the data export's " (folded.len()) " metadata and chunk file(s)" }
                (file_diffs(&folded))
            }
        }
    }
}

/// A file's diff with its place among the change's files (its anchor).
type Numbered<'f> = (usize, &'f FileDiff);

fn file_diffs(files: &[Numbered<'_>]) -> Markup {
    html! {
        @for (n, f) in files.iter().copied() {
            div.box id=(format!("f{n}")) {
                div.head { span.mono { (f.path) } span.muted { (f.status) " +" (f.added) " −" (f.removed) } }
                @match &f.body {
                    DiffBody::Lines(lines) => {
                        table.code { @for l in lines {
                            @let class = match l.kind { '+' => "add", '-' => "del", '@' => "hunk", _ => "ctx" };
                            tr class=(class) {
                                td.n { @if let Some(o) = l.old { (o) } }
                                td.n { @if let Some(n) = l.new { (n) } }
                                td.t { (l.kind) (l.text) }
                            }
                        } }
                    }
                    DiffBody::Binary => { p.readme.muted { "Binary file" } }
                    DiffBody::Omitted(why) => { p.readme.muted { (why) } }
                }
            }
        }
    }
}

/// A commit's page.
#[derive(Debug, Clone)]
pub struct Commit {
    pub id: String,
    pub message: String,
    pub author: String,
    pub committer: String,
    pub parents: Vec<(String, String)>,
    pub tree_href: String,
    /// What changed in the tables of a data export, row by row.
    pub data: Vec<RowChanges>,
    pub files: Vec<FileDiff>,
}

pub fn commit(frame: &Frame, c: &Commit) -> String {
    let (title, rest) = c.message.split_once('\n').unwrap_or((&c.message, ""));
    page(
        frame,
        html! {
            h2 { (title) }
            @if !rest.trim().is_empty() { pre { (rest.trim()) } }
            table.list {
                tr { th { "commit" } td.mono { (c.id) " · " a href=(c.tree_href) { "browse files" } } }
                tr { th { "author" } td { (c.author) } }
                tr { th { "committer" } td { (c.committer) } }
                tr { th { "parents" } td.mono { @for (id, href) in &c.parents { a href=(href) { (short(id)) } " " } } }
            }
            @if !c.data.is_empty() { h3 { "Data changes" } (row_changes(&c.data)) }
            (diff_boxes(&c.files, !c.data.is_empty()))
        },
    )
}

/// Two refs compared: the commits of `to` since they diverged, and the
/// change from their common ancestor to `to`.
#[derive(Debug, Clone)]
pub struct Compare {
    pub from: String,
    pub to: String,
    /// The common ancestor, when there is one.
    pub base: Option<(String, String)>,
    pub commits: Vec<CommitRow>,
    /// More commits than listed.
    pub more: bool,
    pub data: Vec<RowChanges>,
    pub files: Vec<FileDiff>,
}

pub fn compare(frame: &Frame, c: &Compare) -> String {
    page(
        frame,
        html! {
            p {
                span.mono { (c.from) } " … " span.mono { (c.to) } ": "
                @match &c.base {
                    Some((id, href)) => { "since their common ancestor " a.mono href=(href) { (short(id)) } }
                    None => { "no common ancestor; the whole of " span.mono { (c.to) } }
                }
            }
            div.box { div.head { (c.commits.len()) @if c.more { "+" } " commit(s)" } (commit_table(&c.commits)) }
            @if !c.data.is_empty() { h3 { "Data changes" } (row_changes(&c.data)) }
            (diff_boxes(&c.files, !c.data.is_empty()))
        },
    )
}

pub fn refs(frame: &Frame, branches: &[(String, String, String)], tags: &[(String, String, String)]) -> String {
    let table = |rows: &[(String, String, String)]| {
        html! { table.list { @for (name, id, href) in rows { tr { td { a href=(href) { (name) } } td.mono { (short(id)) } } } } }
    };
    page(
        frame,
        html! {
            div.box { div.head { "Branches" } (table(branches)) }
            div.box { div.head { "Tags" } (table(tags)) }
        },
    )
}

/// One merge request in a list.
#[derive(Debug, Clone)]
pub struct MrRow {
    pub id: i64,
    pub title: String,
    pub path: String,
    pub status: String,
    pub author: String,
    pub href: String,
}

pub fn merge_requests(frame: &Frame, rows: &[MrRow], status: &str, base: &str) -> String {
    page(
        frame,
        html! {
            p { @for s in ["open", "merged", "closed", "conflict", "all"] {
                @if s == status { b { (s) } } @else { a href=(format!("{base}?status={s}")) { (s) } } " "
            } }
            @if rows.is_empty() { p.muted { "No merge requests." } }
            table.list { @for m in rows { tr {
                td { a href=(m.href) { "!" (m.id) " " (m.title) } }
                td.mono { (m.path) }
                td { span class=(format!("badge {}", m.status)) { (m.status) } }
                td.muted { (m.author) }
            } } }
        },
    )
}

/// A merge request's page.
#[derive(Debug, Clone)]
pub struct Mr {
    pub id: i64,
    pub title: String,
    pub path: String,
    pub branch: String,
    pub status: String,
    pub author: String,
    pub conflicts: Vec<String>,
    pub commits: Vec<CommitRow>,
    /// What it changes in the tables of a data export, row by row.
    pub data: Vec<RowChanges>,
    pub files: Vec<FileDiff>,
    /// Whether the viewer may merge and close it.
    pub can_maintain: bool,
    /// Whether the viewer may approve it (a maintainer, not its author).
    pub can_approve: bool,
    pub required_approvals: i64,
    /// Maintainers who approved the current head.
    pub approved_by: Vec<String>,
    /// Approvals of earlier heads (who has not seen the latest push).
    pub stale_approvals: Vec<String>,
    /// Checks of the current head, and those the path requires.
    pub checks: Vec<CheckView>,
    pub required_checks: Vec<String>,
    pub comments: Vec<CommentView>,
}

/// One check a CI posted on the head.
#[derive(Debug, Clone)]
pub struct CheckView {
    pub name: String,
    /// `pending`, `success` or `failure`.
    pub state: String,
    pub url: Option<String>,
    pub description: Option<String>,
}

/// One review comment.
#[derive(Debug, Clone)]
pub struct CommentView {
    pub author: String,
    pub when: String,
    /// `file:line`, if it is on a line.
    pub place: Option<String>,
    pub body: String,
}

pub fn merge_request(frame: &Frame, m: &Mr) -> String {
    page(
        frame,
        html! {
            h2 { "!" (m.id) " " (m.title) " " span class=(format!("badge {}", m.status)) { (m.status) } }
            p.muted { (m.author) " wants to merge " span.mono { (m.branch) } " into " span.mono { (m.path) } }
            @if !m.conflicts.is_empty() {
                div.box { div.head { "Conflicts" } ul { @for c in &m.conflicts { li.mono { (c) } } } }
            }
            @if m.can_maintain && (m.status == "open" || m.status == "conflict") {
                @if let Some(csrf) = &frame.csrf {
                    form.inline method="post" action=(format!("/-/mr/{}/merge", m.id)) {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Merge" }
                    }
                    " "
                    form.inline method="post" action=(format!("/-/mr/{}/close", m.id)) {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Close" }
                    }
                }
            }
            p {
                "Approvals: " (m.approved_by.len()) " of " (m.required_approvals) " required"
                @if !m.approved_by.is_empty() { " (" (m.approved_by.join(", ")) ")" }
                @if !m.stale_approvals.is_empty() { span.muted { " · approved an earlier push: " (m.stale_approvals.join(", ")) } }
                @if m.can_approve && (m.status == "open" || m.status == "conflict") {
                    @if let Some(csrf) = &frame.csrf {
                        " "
                        form.inline method="post" action=(format!("/-/mr/{}/approve", m.id)) {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Approve" }
                        }
                    }
                }
            }
            @if !m.checks.is_empty() || !m.required_checks.is_empty() {
                div.box {
                    div.head { "Checks" }
                    table.list {
                        @for c in &m.checks {
                            tr {
                                td.mono { (c.name) @if m.required_checks.contains(&c.name) { span.muted { " (required)" } } }
                                td { span class=(format!("check-{}", c.state)) { (c.state) } }
                                td.muted { @if let Some(d) = &c.description { (d) } }
                                // Only http(s) links: the URL comes from a CI token holder.
                                td { @if let Some(u) = c.url.as_deref().filter(|u| u.starts_with("https://") || u.starts_with("http://")) { a href=(u) rel="nofollow noopener" { "details" } } }
                            }
                        }
                        @for r in m.required_checks.iter().filter(|r| !m.checks.iter().any(|c| &c.name == *r)) {
                            tr { td.mono { (r) span.muted { " (required)" } } td.muted { "not reported" } td {} td {} }
                        }
                    }
                }
            }
            div.box { div.head { (m.commits.len()) " commit(s)" } (commit_table(&m.commits)) }
            @if !m.data.is_empty() { h3 { "Data changes" } (row_changes(&m.data)) }
            (diff_boxes(&m.files, !m.data.is_empty()))
            div.box {
                div.head { (m.comments.len()) " comment(s)" }
                @for c in &m.comments {
                    div.readme {
                        p { b { (c.author) } span.muted { " " (c.when) @if let Some(place) = &c.place { " on " span.mono { (place) } } } }
                        pre { (c.body) }
                    }
                }
                @if let Some(csrf) = &frame.csrf {
                    form.readme method="post" action=(format!("/-/mr/{}/comment", m.id)) {
                        input type="hidden" name="csrf" value=(csrf);
                        p { textarea name="body" rows="4" cols="80" {} }
                        p { "On file " input name="file" placeholder="optional: path"; " line " input name="line" size="5"; " " button type="submit" { "Comment" } }
                    }
                }
            }
        },
    )
}

pub fn login(frame: &Frame, error: Option<&str>, next: &str) -> String {
    page(
        frame,
        html! {
            h2 { "Sign in" }
            @if let Some(e) = error { p.closed { (e) } }
            form method="post" action="/-/login" {
                input type="hidden" name="next" value=(next);
                p { label { "User " input name="user" autocomplete="username"; } }
                p { label { "Password or token " input type="password" name="secret" autocomplete="current-password"; } }
                p { button type="submit" { "Sign in" } }
            }
            p.muted { "Sign in with your password (set with tessera user passwd) or with an access token." }
        },
    )
}

pub fn error(frame: &Frame, status: u16, message: &str) -> String {
    page(
        frame,
        html! {
            h2 { (status) }
            p { (message) }
            @if frame.user.is_none() && (status == 401 || status == 404) { p { a href="/-/login" { "Sign in" } " to see more." } }
        },
    )
}

/// A table cell: NULL set apart from text (an empty string shows empty).
fn cell(c: &Option<String>) -> Markup {
    html! { @match c { Some(t) => (t), None => span.null { "NULL" } } }
}

/// A table of a data export, as its list shows it.
#[derive(Debug, Clone)]
pub struct DataTable {
    pub name: String,
    pub href: String,
    /// Column names with their declared types.
    pub columns: Vec<(String, String)>,
    pub key: Vec<String>,
    pub rows: u64,
    pub chunks: usize,
    /// Stored bytes of its chunk files.
    pub bytes: u64,
}

/// The tables of a data export (`.dolt-metadata/`) at a commit.
#[derive(Debug, Clone)]
pub struct DataExport {
    /// The engine and database it was exported from.
    pub source: String,
    pub tables: Vec<DataTable>,
    /// Why a table is not listed (metadata the server refused to read).
    pub refused: Vec<String>,
}

pub fn data_tables(frame: &Frame, d: &DataExport) -> String {
    page(
        frame,
        html! {
            p.muted { "A data export of " (d.source) ": " (d.tables.len()) " table(s)." }
            @for t in &d.tables {
                div.box {
                    div.head {
                        a.mono href=(t.href) { (t.name) }
                        span.muted { (t.rows) " rows in " (t.chunks) " chunk(s), " (t.bytes) " bytes" }
                    }
                    table.list {
                        @for (name, kind) in &t.columns {
                            tr {
                                td.mono { (name) @if t.key.contains(name) { " " span.badge { "key" } } }
                                td.mono.muted { (kind) }
                            }
                        }
                    }
                }
            }
            @for r in &d.refused { p.muted { (r) } }
        },
    )
}

/// A page of one table's rows.
#[derive(Debug, Clone)]
pub struct TableRows {
    pub table: String,
    pub columns: Vec<String>,
    pub key: Vec<String>,
    /// The number of the first row shown (1-based) and the table's total.
    pub first: u64,
    pub total: u64,
    pub rows: Vec<Vec<Option<String>>>,
    pub newer: Option<String>,
    pub older: Option<String>,
}

pub fn table_rows(frame: &Frame, t: &TableRows) -> String {
    let last = t.first + t.rows.len() as u64 - u64::from(!t.rows.is_empty());
    page(
        frame,
        html! {
            p.muted { span.mono { (t.table) } ": rows " (t.first) "–" (last) " of " (t.total) }
            div.box {
                table.rows {
                    tr { @for c in &t.columns { th class=@if t.key.contains(c) { "key" } { (c) } } }
                    @for row in &t.rows { tr { @for c in row { td { (cell(c)) } } } }
                }
            }
            p {
                @if let Some(h) = &t.newer { a href=(h) { "← Previous" } " " }
                @if let Some(h) = &t.older { a href=(h) { "Next →" } }
            }
        },
    )
}

/// A changed row: its cells after the change, and before for those that changed.
#[derive(Debug, Clone)]
pub struct ChangedRow {
    pub row: Vec<Option<String>>,
    /// Per column: the value before, when it changed.
    pub before: Vec<Option<Option<String>>>,
}

/// What changed in one table, row by row.
#[derive(Debug, Clone, Default)]
pub struct RowChanges {
    pub table: String,
    pub header: Vec<String>,
    pub key: Vec<String>,
    /// Columns before and after, when they changed.
    pub columns: Option<(Vec<String>, Vec<String>)>,
    pub added: Vec<Vec<Option<String>>>,
    pub deleted: Vec<Vec<Option<String>>>,
    pub changed: Vec<ChangedRow>,
    pub counts: (u64, u64, u64),
    /// Rows past what one page lists were counted only.
    pub truncated: bool,
    /// Why no rows are shown (too much to compare, metadata refused).
    pub note: Option<String>,
}

fn row_changes(tables: &[RowChanges]) -> Markup {
    html! {
        @for t in tables {
            div.box {
                div.head {
                    span.mono { (t.table) }
                    span.muted { "+" (t.counts.0) " rows, −" (t.counts.1) ", ~" (t.counts.2) " changed" }
                }
                @if let Some((before, after)) = &t.columns {
                    p.readme.muted { "Columns: " (before.join(", ")) " → " (after.join(", ")) }
                }
                @if let Some(note) = &t.note { p.readme.muted { (note) } }
                @if !(t.added.is_empty() && t.deleted.is_empty() && t.changed.is_empty()) {
                    table.rows {
                        tr { th { } @for c in &t.header { th class=@if t.key.contains(c) { "key" } { (c) } } }
                        @for row in &t.deleted { tr.del { td { "−" } @for c in row { td { (cell(c)) } } } }
                        @for row in &t.added { tr.add { td { "+" } @for c in row { td { (cell(c)) } } } }
                        @for r in &t.changed {
                            tr {
                                td { "~" }
                                @for (c, before) in r.row.iter().zip(&r.before) {
                                    @match before {
                                        Some(b) => { td.chg { del { (cell(b)) } " " ins { (cell(c)) } } }
                                        None => { td { (cell(c)) } }
                                    }
                                }
                            }
                        }
                    }
                }
                @if t.truncated { p.readme.muted { "More rows changed than one page lists; the counts above cover them all." } }
            }
        }
    }
}
