//! The monorepo layout a fresh data directory starts with (the seed's
//! `mega init`): a root commit holding a README, `projects/` and `import/`.

use std::collections::HashMap;
use std::sync::Arc;

use tessera_pack::{Kind, ObjectId};
use tessera_store::index::RepoIndex;
use tessera_store::{RefUpdate, RepoKind, Store};

use crate::repos::Snapshot;
use crate::{Config, StartError};

const ROOT_README: &str = "# Monorepo\n\nThis is the root of a tessera monorepo.\n\n- `projects/` holds directories developed here; a push to one opens a merge request.\n- `import/` holds git repositories imported with their own history.\n";
const PROJECTS_README: &str = "# projects\n\nDirectories developed in this monorepo.\n";
const IMPORT_README: &str = "# import\n\nGit repositories hosted with their full history. Push to /import/<name> to create one.\n";

fn tree(entries: &mut [(&str, &str, ObjectId)]) -> Vec<u8> {
    entries.sort_by(|a, b| gix_order(a, b));
    let mut out = Vec::new();
    for (mode, name, id) in entries.iter() {
        out.extend_from_slice(mode.as_bytes());
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(id.as_bytes());
    }
    out
}

fn gix_order(a: &(&str, &str, ObjectId), b: &(&str, &str, ObjectId)) -> std::cmp::Ordering {
    let key = |e: &(&str, &str, ObjectId)| {
        let mut k = e.1.as_bytes().to_vec();
        if e.0 == "40000" {
            k.push(b'/');
        }
        k
    };
    key(a).cmp(&key(b))
}

/// Creates the monorepo root with its first commit, once.
pub async fn ensure(store: &Store, config: &Config) -> Result<(), StartError> {
    if store.repo_by_path("/").await?.is_some() {
        return Ok(());
    }
    let repo = store.create_repo("/", RepoKind::Mono).await?;
    let mut objects: Vec<(Kind, Vec<u8>)> = Vec::new();
    let mut add = |kind: Kind, data: Vec<u8>| {
        let id = tessera_pack::object_id(kind, &data);
        objects.push((kind, data));
        id
    };
    let readme = add(Kind::Blob, ROOT_README.as_bytes().to_vec());
    let projects_readme = add(Kind::Blob, PROJECTS_README.as_bytes().to_vec());
    let import_readme = add(Kind::Blob, IMPORT_README.as_bytes().to_vec());
    let projects = add(
        Kind::Tree,
        tree(&mut [("100644", "README.md", projects_readme)]),
    );
    let import = add(
        Kind::Tree,
        tree(&mut [("100644", "README.md", import_readme)]),
    );
    let root = add(
        Kind::Tree,
        tree(&mut [
            ("100644", "README.md", readme),
            ("40000", "projects", projects),
            ("40000", "import", import),
        ]),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let commit = add(
        Kind::Commit,
        format!("tree {root}\nauthor tessera <tessera@localhost> {now} +0000\ncommitter tessera <tessera@localhost> {now} +0000\n\nInitialize monorepo\n").into_bytes(),
    );

    let spool_dir = store.pack_storage().spool_dir();
    std::fs::create_dir_all(&spool_dir).map_err(|source| StartError::DataDir {
        path: spool_dir.clone(),
        source,
    })?;
    let io = |source| StartError::DataDir {
        path: spool_dir.clone(),
        source,
    };
    let spooled = tempfile::NamedTempFile::new_in(&spool_dir).map_err(io)?;
    let mut writer = tessera_pack::write::Writer::new(
        std::io::BufWriter::new(spooled.reopen().map_err(io)?),
        objects.len() as u32,
    )
    .map_err(|e| io(std::io::Error::other(e)))?;
    for (kind, data) in &objects {
        writer
            .whole(*kind, data)
            .map_err(|e| io(std::io::Error::other(e)))?;
    }
    writer.finish().map_err(|e| io(std::io::Error::other(e)))?;
    let snapshot = Snapshot {
        index: Arc::new(RepoIndex::new(repo.id)),
        pack_paths: Arc::new(HashMap::new()),
    };
    crate::push::ingest(store, repo.id, &snapshot, spooled.path().to_path_buf())
        .await
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    store
        .update_refs(
            repo.id,
            &[RefUpdate {
                name: "refs/heads/main".into(),
                old: None,
                new: Some(commit),
                peeled: None,
            }],
            true,
        )
        .await?;
    tracing::info!(
        "initialized monorepo layout in {}",
        config.data_dir.display()
    );
    Ok(())
}
