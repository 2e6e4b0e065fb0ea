//! Push everything, clone it back: same refs, same ids, fsck-clean.

use std::path::Path;

use tessera_testkit::{commit_all, fsck, git, new_repo, per_backend, refs, write, Backend, TestServer};

/// A repository with every kind of object and entry git has.
fn rich_repo(dir: &Path) {
    write(dir, "README.md", "hello\n");
    write(dir, "empty", "");
    let exe = write(dir, "bin/run.sh", "#!/bin/sh\necho run\n");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::symlink("README.md", dir.join("link")).unwrap();
    write(dir, "unicodé/日本語 ☃.txt", "snow\n");
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9.txt");
        write(dir, name, "not utf-8 name\n");
    }
    let base = commit_all(dir, "initial");
    // A gitlink (submodule entry) pointing at some commit.
    git(dir, &["update-index", "--add", "--cacheinfo", &format!("160000,{base},vendor/sub")]);
    git(dir, &["commit", "-q", "-m", "add submodule entry"]);
    // Branches and merges, including an octopus.
    for b in ["a", "b", "c"] {
        git(dir, &["checkout", "-q", "-b", b, "main"]);
        write(dir, format!("{b}.txt"), format!("{b}\n"));
        commit_all(dir, &format!("branch {b}"));
    }
    git(dir, &["checkout", "-q", "main"]);
    git(dir, &["merge", "-q", "--no-edit", "a"]);
    git(dir, &["merge", "-q", "--no-edit", "b", "c"]);
    // A signed commit: a gpgsig header, as a signing client writes it.
    let tree = git(dir, &["rev-parse", "HEAD^{tree}"]).trim().to_string();
    let head = git(dir, &["rev-parse", "HEAD"]).trim().to_string();
    let signed = format!(
        "tree {tree}\nparent {head}\nauthor Tess Tester <tess@example.com> 1704067200 +0000\ncommitter Tess Tester <tess@example.com> 1704067200 +0000\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n =abcd\n -----END PGP SIGNATURE-----\n\nsigned commit\n"
    );
    let file = write(dir, "../signed-commit", signed);
    let id = git(dir, &["hash-object", "-w", "-t", "commit", file.to_str().unwrap()]).trim().to_string();
    git(dir, &["update-ref", "refs/heads/main", &id]);
    git(dir, &["reset", "-q", "--hard"]);
    git(dir, &["tag", "light"]);
    git(dir, &["tag", "-a", "v1.0", "-m", "release 1.0"]);
    git(dir, &["tag", "-a", "nested", "-m", "tag of a tag", "v1.0"]);
    git(dir, &["tag", "-a", "tree-tag", "-m", "tags a tree", &tree]);
}

fn push_all_and_clone(backend: Backend) {
    let Some(server) = TestServer::start(backend) else {
        return;
    };
    let src = new_repo();
    rich_repo(src.path());
    fsck(src.path());
    let url = server.push_url("/import/rich.git");
    git(src.path(), &["push", "-q", &url, "--all"]);
    git(src.path(), &["push", "-q", &url, "--tags"]);
    for version in ["0", "1", "2"] {
        let dest = tempfile::tempdir().unwrap();
        let clone = dest.path().join("c");
        git(
            dest.path(),
            &[
                "-c",
                &format!("protocol.version={version}"),
                "clone",
                "-q",
                "--mirror",
                &server.repo("/import/rich.git"),
                clone.to_str().unwrap(),
            ],
        );
        assert_eq!(refs(&clone, "refs/"), refs(src.path(), "refs/"), "protocol v{version}");
        fsck(&clone);
    }
    // HEAD follows the pushed default branch.
    let dest = tempfile::tempdir().unwrap();
    git(dest.path(), &["clone", "-q", &server.repo("/import/rich"), "w"]);
    assert_eq!(git(&dest.path().join("w"), &["symbolic-ref", "HEAD"]).trim(), "refs/heads/main");
    assert!(dest.path().join("w/link").is_symlink());
}

/// A file over 100 MB survives the trip with its content intact.
fn large_file(backend: Backend) {
    let Some(server) = TestServer::start(backend) else {
        return;
    };
    let src = new_repo();
    let mut data = Vec::with_capacity(101 << 20);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while data.len() < (101 << 20) {
        // xorshift: incompressible enough that the pack stays large.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    write(src.path(), "big.bin", &data);
    commit_all(src.path(), "big file");
    git(src.path(), &["push", "-q", &server.push_url("/import/big"), "main"]);
    let dest = tempfile::tempdir().unwrap();
    git(dest.path(), &["clone", "-q", &server.repo("/import/big"), "c"]);
    let cloned = std::fs::read(dest.path().join("c/big.bin")).unwrap();
    assert!(cloned == data, "big file content differs after the round trip");
    fsck(&dest.path().join("c"));
}

/// Packs kept in the database instead of files, under a nested import path.
fn packs_in_the_database(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |c| c.storage = tessera_store::Storage::Database) else {
        return;
    };
    let src = new_repo();
    rich_repo(src.path());
    let url = server.push_url("/import/org/team/rich");
    git(src.path(), &["push", "-q", &url, "--all"]);
    git(src.path(), &["push", "-q", &url, "--tags"]);
    assert!(
        !server
            .data_dir
            .path()
            .join("packs")
            .read_dir()
            .map(|d| d.filter_map(Result::ok).any(|e| e.path().extension().is_some_and(|x| x == "pack")))
            .unwrap_or(false),
        "no pack files on disk"
    );
    // A fresh process has no cached pack files and must fetch them from the database.
    let fresh = server.restart();
    let dest = tempfile::tempdir().unwrap();
    let clone = dest.path().join("c");
    git(dest.path(), &["clone", "-q", "--mirror", &fresh.repo("/import/org/team/rich.git"), clone.to_str().unwrap()]);
    assert_eq!(refs(&clone, "refs/"), refs(src.path(), "refs/"));
    fsck(&clone);
}

per_backend!(push_all_and_clone, large_file, packs_in_the_database);

#[test]
fn monorepo_root_is_cloneable() {
    let server = TestServer::start(Backend::Sqlite).expect("sqlite always works");
    let dest = tempfile::tempdir().unwrap();
    git(dest.path(), &["clone", "-q", &server.repo("/"), "root"]);
    let root = dest.path().join("root");
    assert!(root.join("projects").is_dir() && root.join("import").is_dir() && root.join("README.md").is_file());
    fsck(&root);
}
