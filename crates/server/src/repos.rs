//! Repository paths: normalizing them and finding what they name.

use tessera_store::Repo;

use crate::error::HttpError;
use crate::State;

/// The most segments a repository path may have; deeper directories are
/// still served inside their parents' clones.
pub const MAX_PATH_SEGMENTS: usize = 64;
/// The longest repository path, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;

/// Turns a URL path into a monorepo path: one leading `/`, no trailing `.git`
/// or `/`, no empty, `.` or `..` segments, no segment a checkout would take
/// for `.git`, and within [`MAX_PATH_SEGMENTS`] and [`MAX_PATH_BYTES`].
pub fn normalize(raw: &str) -> Result<String, HttpError> {
    let invalid = |why: &str| {
        let shown: String = raw.chars().take(120).collect();
        HttpError::bad_request(format!("invalid repository path {shown:?}: {why}"))
    };
    if raw.len() > MAX_PATH_BYTES {
        return Err(invalid(&format!("longer than {MAX_PATH_BYTES} bytes")));
    }
    let trimmed = raw.trim_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed).trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    let mut out = String::new();
    for (n, segment) in trimmed.split('/').enumerate() {
        if n >= MAX_PATH_SEGMENTS {
            return Err(invalid(&format!("deeper than {MAX_PATH_SEGMENTS} directories")));
        }
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(invalid("empty, . or .. segment"));
        }
        if segment.chars().any(|c| c.is_control() || c == '\\') {
            return Err(invalid("control character or backslash"));
        }
        // The path becomes tree entries of `/`: a name git refuses there
        // would make the repository unreachable from the root.
        if tessera_protocol::fsck::is_dot_git(segment.as_bytes()) {
            return Err(invalid("a segment names a .git directory"));
        }
        out.push('/');
        out.push_str(segment);
    }
    Ok(out)
}

/// Whether `path` lies strictly below one of the import roots.
pub fn under_import_root(state: &State, path: &str) -> bool {
    state.config.import_roots.iter().any(|root| {
        let root = root.trim_end_matches('/');
        path.len() > root.len() + 1 && path.starts_with(root) && path.as_bytes()[root.len()] == b'/'
    })
}

/// Why a merge request may not change directory `dir`: import directories
/// are read-only from the monorepo side (only pushes to their repository
/// change them), so a directory below an import root, or one holding an
/// import root, takes no merge requests, unless it lies in an import
/// converted into a monorepo directory.
pub async fn merge_requests_refused(state: &State, dir: &str) -> Result<Option<String>, HttpError> {
    let holds_root = state.config.import_roots.iter().any(|root| {
        let root = root.trim_end_matches('/');
        dir == "/" || root == dir || root.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
    });
    if holds_root {
        return Ok(Some(format!(
            "{dir} holds import directories, which change only by pushes to their repositories; push to a directory beside them"
        )));
    }
    if !under_import_root(state, dir) {
        return Ok(None);
    }
    for at in tessera_store::access::ancestors(dir) {
        if let Some(repo) = state.store.repo_by_path(at).await? {
            if repo.kind == tessera_store::RepoKind::Converted {
                return Ok(None);
            }
        }
    }
    Ok(Some(format!("{dir} is inside an import directory, which changes only by pushes to its repository")))
}

/// The import repository strictly above `path`, if any: a repository
/// cannot be created inside another.
pub async fn enclosing_import(state: &State, path: &str) -> Result<Option<String>, HttpError> {
    for at in tessera_store::access::ancestors(path).skip(1) {
        if let Some(repo) = state.store.repo_by_path(at).await? {
            if repo.kind == tessera_store::RepoKind::Import {
                return Ok(Some(repo.path));
            }
        }
    }
    Ok(None)
}

pub async fn find(state: &State, path: &str) -> Result<Repo, HttpError> {
    match state.store.repo_by_path(path).await? {
        Some(repo) => Ok(repo),
        None => Err(HttpError::not_found(format!("repository {path} not found"))),
    }
}

/// The repository's snapshot, refreshed if it changed since.
pub async fn snapshot(state: &State, repo_id: i64) -> Result<Snapshot, HttpError> {
    Ok(state.snapshots.get(&state.store, repo_id).await?)
}

pub use tessera_repo::Snapshot;

/// What a repository path names.
#[derive(Clone)]
pub enum Target {
    /// An import repository with its own refs and history.
    Import(Repo),
    /// The monorepo root `/`.
    Root(Repo),
    /// A directory of the monorepo (including converted import directories).
    Dir { root: Repo, path: String },
}

/// Resolves a path for reading or pushing (without creating anything).
pub async fn resolve(state: &State, path: &str) -> Result<Option<Target>, HttpError> {
    match state.store.repo_by_path(path).await? {
        Some(repo) if repo.kind == tessera_store::RepoKind::Import => return Ok(Some(Target::Import(repo))),
        Some(repo) if repo.kind == tessera_store::RepoKind::Mono => return Ok(Some(Target::Root(repo))),
        _ => {}
    }
    let Some(root) = state.store.repo_by_path("/").await? else { return Ok(None) };
    Ok(Some(Target::Dir { root, path: path.to_string() }))
}

/// Refs, HEAD and the snapshot to serve for a read of `target`; `None`
/// when a directory does not exist.
pub async fn read_view(
    state: &State,
    target: &Target,
) -> Result<Option<(Vec<tessera_store::Ref>, String, Snapshot)>, HttpError> {
    match target {
        Target::Import(repo) | Target::Root(repo) => {
            let refs = state.store.list_refs(repo.id).await?;
            let snapshot = snapshot(state, repo.id).await?;
            Ok(Some((refs, repo.head.clone(), snapshot)))
        }
        Target::Dir { root, path } => {
            let mono = state.mono();
            // Head first, then the snapshot, which then holds all it needs.
            let Some(root_head) = mono.root_head(root).await.map_err(repo_error)? else { return Ok(None) };
            let snapshot = snapshot(state, root.id).await?;
            let Some(head) = mono.dir_head(root, &snapshot, path, root_head).await.map_err(repo_error)? else {
                return Ok(None);
            };
            let main = tessera_repo::monorepo::MAIN.to_string();
            Ok(Some((vec![tessera_store::Ref { name: main.clone(), target: head, peeled: None }], main, snapshot)))
        }
    }
}

/// Maps repository-operation failures: refusals are the user's to see.
pub fn repo_error(e: tessera_repo::Error) -> HttpError {
    match e {
        tessera_repo::Error::Refused(message) => HttpError::new(axum::http::StatusCode::CONFLICT, message),
        other => HttpError::internal("updating the monorepo", other),
    }
}
