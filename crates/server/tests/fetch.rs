//! upload-pack: advertisements, negotiation, incremental fetch, shallow and
//! partial clones.

use std::path::Path;

use tessera_testkit::{
    commit_all, commit_at, fsck, git, git_fails, git_output, new_repo, per_backend, write, Backend, TestServer,
};

/// Pushes a linear history of `n` commits to `path`; returns the repo.
fn seeded(server: &TestServer, path: &str, n: usize) -> tempfile::TempDir {
    let src = new_repo();
    for i in 0..n {
        write(src.path(), "file.txt", format!("version {i}\n"));
        write(src.path(), format!("dir/{}.txt", i % 5), format!("{i}\n"));
        commit_at(src.path(), &format!("commit {i}"), 1_700_000_000 + i as i64 * 86_400);
    }
    git(src.path(), &["tag", "-a", "v1", "-m", "v1"]);
    git(src.path(), &["push", "-q", &server.push_url(path), "main", "--tags"]);
    src
}

fn ls_remote_prefixes_and_peeled(backend: Backend) {
    let Some(server) = TestServer::start(backend) else {
        return;
    };
    let src = seeded(&server, "/import/ls", 3);
    let tag = git(src.path(), &["rev-parse", "v1"]).trim().to_string();
    let peeled = git(src.path(), &["rev-parse", "v1^{}"]).trim().to_string();
    for version in ["0", "2"] {
        let out = git(
            src.path(),
            &["-c", &format!("protocol.version={version}"), "ls-remote", &server.repo("/import/ls"), "refs/tags/*"],
        );
        assert!(out.contains(&format!("{tag}\trefs/tags/v1")), "v{version}: {out}");
        assert!(out.contains(&format!("{peeled}\trefs/tags/v1^{{}}")), "v{version}: {out}");
        assert!(!out.contains("refs/heads/main"), "prefix filter applied in v{version}: {out}");
    }
    let out = git(src.path(), &["ls-remote", "--symref", &server.repo("/import/ls"), "HEAD"]);
    assert!(out.contains("ref: refs/heads/main\tHEAD"), "{out}");
    // The agent and object format are advertised in both versions.
    for version in ["0", "2"] {
        let out = std::process::Command::new("curl")
            .args(["-s", "-H", &format!("Git-Protocol: version={version}")])
            .arg(format!("{}/import/ls/info/refs?service=git-upload-pack", server.url))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("agent=tessera/") && text.contains("object-format=sha1"), "v{version}: {text}");
    }
}

fn tags_follow_fetched_commits(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let src = seeded(&server, "/import/tags", 2);
    for version in ["0", "2"] {
        let dest = tempfile::tempdir().unwrap();
        git(dest.path(), &["clone", "-q", &server.repo("/import/tags"), "c"]);
        let clone = dest.path().join("c");
        write(src.path(), "file.txt", format!("tagged {version}\n"));
        commit_all(src.path(), "to be tagged");
        let tag = format!("v2-{version}");
        git(src.path(), &["tag", "-a", &tag, "-m", "annotated"]);
        git(src.path(), &["push", "-q", &server.push_url("/import/tags"), "main", &tag]);
        // No --tags: the annotated tag arrives by include-tag with its commit.
        git(&clone, &["-c", &format!("protocol.version={version}"), "fetch", "-q", "origin"]);
        assert_eq!(git(&clone, &["rev-parse", &tag]), git(src.path(), &["rev-parse", &tag]), "v{version}");
    }
}

/// Counts the objects of the next fetch by keeping them loose.
fn fetch_count(dir: &Path, extra: &[&str]) -> usize {
    let before = loose_objects(dir);
    let mut args = vec!["-c", "fetch.unpackLimit=1000000", "-c", "transfer.unpackLimit=1000000"];
    args.extend_from_slice(extra);
    args.extend(["fetch", "-q", "origin"]);
    git(dir, &args);
    loose_objects(dir) - before
}

fn loose_objects(dir: &Path) -> usize {
    let out = git(dir, &["count-objects", "-v"]);
    out.lines().find_map(|l| l.strip_prefix("count: ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

fn incremental_fetch_sends_only_new_objects(backend: Backend) {
    let Some(server) = TestServer::start(backend) else {
        return;
    };
    let src = seeded(&server, "/import/inc", 20);
    for version in ["0", "2"] {
        let dest = tempfile::tempdir().unwrap();
        git(
            dest.path(),
            &["-c", &format!("protocol.version={version}"), "clone", "-q", &server.repo("/import/inc"), "c"],
        );
        let clone = dest.path().join("c");
        git(&clone, &["config", "protocol.version", version]);
        // Three commits, each changing one file at the root: 3 commits, 3 trees, 3 blobs.
        for i in 0..3 {
            write(src.path(), "file.txt", format!("v{version} new {i}\n"));
            commit_all(src.path(), &format!("new {i}"));
        }
        git(src.path(), &["push", "-q", &server.push_url("/import/inc"), "main"]);
        assert_eq!(fetch_count(&clone, &[]), 9, "protocol v{version}");
        assert_eq!(git(&clone, &["rev-parse", "origin/main"]), git(src.path(), &["rev-parse", "main"]));
        fsck(&clone);
    }
}

fn negotiation_with_many_local_commits(backend: Backend) {
    let Some(server) = TestServer::start(backend) else {
        return;
    };
    let src = seeded(&server, "/import/neg", 5);
    for version in ["0", "2"] {
        let dest = tempfile::tempdir().unwrap();
        git(dest.path(), &["clone", "-q", &server.repo("/import/neg"), "c"]);
        let clone = dest.path().join("c");
        git(&clone, &["config", "protocol.version", version]);
        // Many commits the server does not have force several rounds of haves.
        git(&clone, &["checkout", "-q", "-b", "local"]);
        for i in 0..300 {
            write(&clone, "local.txt", format!("{i}\n"));
            commit_all(&clone, &format!("local {i}"));
        }
        write(src.path(), "file.txt", format!("upstream change {version}\n"));
        commit_all(src.path(), "upstream");
        git(src.path(), &["push", "-q", &server.push_url("/import/neg"), "main"]);
        assert_eq!(fetch_count(&clone, &[]), 3, "protocol v{version}: one commit, one tree, one blob");
        fsck(&clone);
    }
}

fn progress_is_reported(backend: Backend) {
    let Some(server) = TestServer::start(backend) else {
        return;
    };
    let _src = seeded(&server, "/import/progress", 3);
    let dest = tempfile::tempdir().unwrap();
    let out = git_output(dest.path(), &["clone", "--progress", &server.repo("/import/progress"), "c"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("remote: Enumerating objects"), "{stderr}");
}

fn shallow_clones(backend: Backend) {
    let Some(server) = TestServer::start(backend) else {
        return;
    };
    let src = seeded(&server, "/import/shallow", 10);
    let url = server.repo("/import/shallow");
    for version in ["0", "2"] {
        let pv = format!("protocol.version={version}");
        let dest = tempfile::tempdir().unwrap();
        let count =
            |dir: &str| git(&dest.path().join(dir), &["rev-list", "--count", "HEAD"]).trim().parse::<usize>().unwrap();

        git(dest.path(), &["-c", &pv, "clone", "-q", "--depth", "1", &url, "d1"]);
        assert_eq!(count("d1"), 1, "v{version} --depth 1");
        fsck(&dest.path().join("d1"));
        git(&dest.path().join("d1"), &["-c", &pv, "fetch", "-q", "--deepen", "3"]);
        assert_eq!(count("d1"), 4, "v{version} --deepen 3");
        git(&dest.path().join("d1"), &["-c", &pv, "fetch", "-q", "--unshallow"]);
        assert_eq!(count("d1"), 10, "v{version} --unshallow");
        assert!(!dest.path().join("d1/.git/shallow").exists());
        fsck(&dest.path().join("d1"));

        // Commits are a day apart, starting at 1_700_000_000.
        let since = (1_700_000_000 + 7 * 86_400).to_string();
        git(dest.path(), &["-c", &pv, "clone", "-q", &format!("--shallow-since={since}"), &url, "since"]);
        assert_eq!(count("since"), 3, "v{version} --shallow-since");
        fsck(&dest.path().join("since"));

        let exclude = git(src.path(), &["rev-parse", "main~6"]).trim().to_string();
        git(
            src.path(),
            &["push", "-q", "-f", &server.push_url("/import/shallow"), &format!("{exclude}:refs/heads/old")],
        );
        git(dest.path(), &["-c", &pv, "clone", "-q", "--shallow-exclude=old", &url, "excl"]);
        assert_eq!(count("excl"), 6, "v{version} --shallow-exclude");
        fsck(&dest.path().join("excl"));
    }
}

fn partial_clones(backend: Backend) {
    let Some(server) = TestServer::start(backend) else {
        return;
    };
    let src = seeded(&server, "/import/partial", 5);
    write(src.path(), "large.bin", vec![b'x'; 4096]);
    commit_all(src.path(), "large file");
    git(src.path(), &["push", "-q", &server.push_url("/import/partial"), "main"]);
    let url = server.repo("/import/partial");
    for version in ["0", "2"] {
        let pv = format!("protocol.version={version}");
        for filter in ["blob:none", "blob:limit=1k", "tree:0"] {
            let dest = tempfile::tempdir().unwrap();
            git(dest.path(), &["-c", &pv, "clone", "-q", "--no-checkout", &format!("--filter={filter}"), &url, "c"]);
            let clone = dest.path().join("c");
            let missing = git(&clone, &["rev-list", "--objects", "--all", "--missing=print"]);
            let n_missing = missing.lines().filter(|l| l.starts_with('?')).count();
            assert!(n_missing > 0, "v{version} {filter}: the filter left nothing out");
            if filter == "blob:limit=1k" {
                let large = git(src.path(), &["rev-parse", "HEAD:large.bin"]).trim().to_string();
                let small = git(src.path(), &["rev-parse", "HEAD:file.txt"]).trim().to_string();
                assert!(missing.contains(&format!("?{large}")), "large blob omitted");
                assert!(!missing.contains(&format!("?{small}")), "small blob kept");
            }
            // Lazy fetches fill in what checkout and log -p need.
            git(&clone, &["-c", &pv, "checkout", "-q", "main"]);
            assert_eq!(std::fs::read(clone.join("large.bin")).unwrap().len(), 4096);
            let log = git(&clone, &["-c", &pv, "log", "-p", "--format=%s"]);
            assert!(log.contains("+version 4"), "v{version} {filter}: log -p shows content");
            fsck(&clone);
        }
    }
}

fn unknown_repository_is_404(backend: Backend) {
    let Some(server) = TestServer::start(backend) else {
        return;
    };
    let dest = tempfile::tempdir().unwrap();
    let err = git_fails(dest.path(), &["clone", "-q", &server.repo("/import/nope"), "c"]);
    assert!(err.contains("not found") || err.contains("404"), "{err}");
}

per_backend!(
    ls_remote_prefixes_and_peeled,
    incremental_fetch_sends_only_new_objects,
    negotiation_with_many_local_commits,
    progress_is_reported,
    shallow_clones,
    partial_clones,
    unknown_repository_is_404,
    tags_follow_fetched_commits,
);

#[test]
fn clone_over_the_object_limit_is_refused_with_advice() {
    let server = TestServer::start_with(Backend::Sqlite, |c| c.max_clone_objects = Some(5)).unwrap();
    let _src = seeded(&server, "/import/limited", 5);
    let dest = tempfile::tempdir().unwrap();
    let err = git_fails(dest.path(), &["clone", "-q", &server.repo("/import/limited"), "c"]);
    assert!(err.contains("--filter=blob:none"), "{err}");
}
