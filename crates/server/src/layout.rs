//! The monorepo layout a fresh data directory starts with (the seed's
//! `mega init`): a root commit holding a README, `projects/` and `import/`.

use tessera_pack::Kind;
use tessera_repo::monorepo::{Meta, Monorepo};
use tessera_repo::objects::Builder;
use tessera_repo::tree::{encode, Entry};
use tessera_repo::Snapshots;
use tessera_store::{RepoKind, Store};

use crate::{Config, StartError};

const ROOT_README: &str = "# Monorepo\n\nThis is the root of a tessera monorepo.\n\n- `projects/` holds directories developed here; a push to one opens a merge request.\n- `import/` holds git repositories imported with their own history.\n";
const PROJECTS_README: &str = "# projects\n\nDirectories developed in this monorepo.\n";
const IMPORT_README: &str =
    "# import\n\nGit repositories hosted with their full history. Push to /import/<name> to create one.\n";

fn file(name: &str, id: tessera_pack::ObjectId) -> Entry {
    Entry { mode: b"100644".to_vec(), name: name.as_bytes().to_vec(), id }
}

fn dir(name: &str, id: tessera_pack::ObjectId) -> Entry {
    Entry { mode: b"40000".to_vec(), name: name.as_bytes().to_vec(), id }
}

/// Creates the monorepo root with its first commit, once (again if a
/// process stopped between creating the root and its first commit).
pub async fn ensure(store: &Store, config: &Config) -> Result<(), StartError> {
    match store.repo_by_path("/").await? {
        Some(root) if !store.list_refs(root.id).await?.is_empty() => return Ok(()),
        Some(_) => {}
        None => match store.create_repo("/", RepoKind::Mono).await {
            // Another process sharing the database is setting it up.
            Err(tessera_store::Error::RepoExists(_)) => return Ok(()),
            other => {
                other?;
            }
        },
    }
    let mut b = Builder::default();
    let readme = b.add(Kind::Blob, ROOT_README.as_bytes().to_vec());
    let projects_readme = b.add(Kind::Blob, PROJECTS_README.as_bytes().to_vec());
    let import_readme = b.add(Kind::Blob, IMPORT_README.as_bytes().to_vec());
    let projects = b.add(Kind::Tree, encode(vec![file("README.md", projects_readme)]));
    let import = b.add(Kind::Tree, encode(vec![file("README.md", import_readme)]));
    let root =
        b.add(Kind::Tree, encode(vec![file("README.md", readme), dir("projects", projects), dir("import", import)]));
    let snapshots = Snapshots::default();
    match Monorepo::new(store, &snapshots).initialize(b, root, Meta::system("Initialize monorepo".into())).await {
        Ok(_) => tracing::info!("initialized monorepo layout in {}", config.data_dir.display()),
        // Another process sharing the database wrote it first.
        Err(tessera_repo::Error::Contended) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
