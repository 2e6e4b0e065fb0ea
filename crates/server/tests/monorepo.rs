//! Monorepo directories: clone any directory with its history, pushes open
//! merge requests, merging rewrites the root, import directories are part
//! of the tree.

use std::path::{Path, PathBuf};
use std::process::Command;

use tessera_testkit::{
    commit_all, fsck, git, git_fails, git_output, new_repo, per_backend, write, Backend, TestServer,
};

fn api(server: &TestServer, method: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-X", method, "-w", "\n%{http_code}", "-u", &format!("t:{}", server.token)])
        .arg(format!("{}{path}", server.url))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.trim().parse().expect("status"), body.to_string())
}

fn mr_ids(server: &TestServer, status: &str) -> Vec<i64> {
    let (_, body) = api(server, "GET", &format!("/api/v1/mr?status={status}"));
    body.split("\"id\":").skip(1).filter_map(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()).collect()
}

fn clone(server: &TestServer, path: &str, into: &Path) -> PathBuf {
    let dest = into.join(format!("c{}", rand_suffix()));
    git(into, &["clone", "-q", &server.push_url(path), dest.to_str().unwrap()]);
    dest
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn head(dir: &Path, rev: &str) -> String {
    git(dir, &["rev-parse", rev]).trim().to_string()
}

/// Pushes three commits creating `/projects/x` and merges them.
fn create_project(server: &TestServer, work: &Path) -> PathBuf {
    let src = work.join("src");
    git(work, &["init", "-q", "-b", "main", src.to_str().unwrap()]);
    for i in 1..=3 {
        write(&src, format!("f{i}.txt"), format!("v{i}\n"));
        write(&src, "nested/deep/n.txt", format!("n{i}\n"));
        commit_all(&src, &format!("x commit {i}"));
    }
    let out = git_output(&src, &["push", &server.push_url("/projects/x"), "main"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("merge request !"), "push reports the MR");
    let open = mr_ids(server, "open");
    assert_eq!(open.len(), 1);
    let (status, body) = api(server, "POST", &format!("/api/v1/mr/{}/merge", open[0]));
    assert_eq!(status, 200, "{body}");
    src
}

fn directories_clone_with_their_history(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let work = tempfile::tempdir().unwrap();
    let src = create_project(&server, work.path());
    let x = clone(&server, "/projects/x", work.path());
    assert_eq!(head(&x, "HEAD"), head(&src, "main"), "pushed ids survive a fast-forward merge");
    assert_eq!(git(&x, &["rev-list", "--count", "HEAD"]).trim(), "3");
    let nested = clone(&server, "/projects/x/nested/deep", work.path());
    assert_eq!(
        git(&nested, &["log", "--format=%s"]).lines().collect::<Vec<_>>(),
        ["x commit 3", "x commit 2", "x commit 1"]
    );
    let db_state = || db_fingerprint(&server);
    let before_reads = db_state();
    let root = clone(&server, "/", work.path());
    let subjects = git(&root, &["log", "--format=%s"]);
    assert!(subjects.starts_with("x commit 3\nx commit 2\nx commit 1\n"), "{subjects}");
    assert_eq!(std::fs::read_to_string(root.join("projects/x/f2.txt")).unwrap(), "v2\n");
    for dir in [&x, &nested, &root] {
        fsck(dir);
    }
    assert_eq!(db_state(), before_reads, "reads wrote to the database");

    // The same ids on every clone, also from a fresh server process.
    let again = clone(&server, "/projects/x/nested/deep", work.path());
    assert_eq!(head(&again, "HEAD"), head(&nested, "HEAD"));
    let restarted = server.restart();
    let fresh = work.path().join("fresh");
    git(work.path(), &["clone", "-q", &restarted.repo("/projects/x/nested/deep"), fresh.to_str().unwrap()]);
    assert_eq!(head(&fresh, "HEAD"), head(&nested, "HEAD"));
}

fn push_opens_merge_request_and_merge_moves_main(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let work = tempfile::tempdir().unwrap();
    create_project(&server, work.path());
    let x = clone(&server, "/projects/x", work.path());
    let before = head(&x, "HEAD");
    for i in 0..3 {
        write(&x, format!("new{i}.txt"), format!("{i}\n"));
        commit_all(&x, &format!("mr commit {i}"));
    }
    let tip = head(&x, "HEAD");
    git(&x, &["push", "-q", "origin", "main"]);
    let check = clone(&server, "/projects/x", work.path());
    assert_eq!(head(&check, "HEAD"), before, "main does not move before the merge");
    let open = mr_ids(&server, "open");
    assert_eq!(open.len(), 1);
    let (_, shown) = api(&server, "GET", &format!("/api/v1/mr/{}", open[0]));
    assert!(
        shown.contains("\"new2.txt\"") && shown.contains("mr commit 1") && shown.contains("\"diffstat\""),
        "{shown}"
    );
    let (status, _) = api(&server, "POST", &format!("/api/v1/mr/{}/merge", open[0]));
    assert_eq!(status, 200);
    git(&check, &["pull", "-q"]);
    assert_eq!(head(&check, "HEAD"), tip);
    let root = clone(&server, "/", work.path());
    assert!(git(&root, &["log", "--format=%s", "-3"]).contains("mr commit 2"));
    fsck(&root);
    fsck(&check);
}

fn disjoint_merge_requests_both_merge_and_conflicts_are_reported(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let work = tempfile::tempdir().unwrap();
    create_project(&server, work.path());
    let a = clone(&server, "/projects/x", work.path());
    let b = clone(&server, "/projects/x", work.path());
    write(&a, "f1.txt", "a\n");
    commit_all(&a, "a edits f1");
    git(&a, &["push", "-q", "origin", "main"]);
    write(&b, "f2.txt", "b\n");
    commit_all(&b, "b edits f2");
    git(&b, &["push", "-q", "origin", "HEAD:refs/for/main"]);
    let mut open = mr_ids(&server, "open");
    open.sort();
    assert_eq!(open.len(), 2);
    for id in &open {
        let (status, body) = api(&server, "POST", &format!("/api/v1/mr/{id}/merge"));
        assert_eq!(status, 200, "{body}");
    }
    let check = clone(&server, "/projects/x", work.path());
    assert_eq!(std::fs::read_to_string(check.join("f1.txt")).unwrap(), "a\n");
    assert_eq!(std::fs::read_to_string(check.join("f2.txt")).unwrap(), "b\n");
    fsck(&check);
    // Now both sides change the same file.
    git(&a, &["pull", "-q", "--rebase"]);
    git(&b, &["pull", "-q", "--rebase"]);
    write(&a, "f3.txt", "from a\n");
    commit_all(&a, "a edits f3");
    git(&a, &["push", "-q", "origin", "main"]);
    write(&b, "f3.txt", "from b\n");
    commit_all(&b, "b edits f3");
    git(&b, &["push", "-q", "origin", "HEAD:refs/for/main"]);
    let mut open = mr_ids(&server, "open");
    open.sort();
    let (status, _) = api(&server, "POST", &format!("/api/v1/mr/{}/merge", open[0]));
    assert_eq!(status, 200);
    let (status, body) = api(&server, "POST", &format!("/api/v1/mr/{}/merge", open[1]));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("\"conflict\"") && body.contains("f3.txt"), "{body}");
    let check = clone(&server, "/projects/x", work.path());
    assert_eq!(std::fs::read_to_string(check.join("f3.txt")).unwrap(), "from a\n");
}

fn pushes_with_unknown_base_are_refused(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let work = tempfile::tempdir().unwrap();
    create_project(&server, work.path());
    let stranger = new_repo();
    write(stranger.path(), "other.txt", "unrelated\n");
    commit_all(stranger.path(), "unrelated history");
    // Refused before its pack is stored, so nothing unreachable is left.
    let packs = || std::fs::read_dir(server.data_dir.path().join("packs")).unwrap().count();
    let before = packs();
    let err = git_fails(stranger.path(), &["push", &server.push_url("/projects/x"), "HEAD:refs/for/main"]);
    assert!(err.contains("do not build on the history"), "{err}");
    assert_eq!(packs(), before, "a refused push stored its pack");
    // The same for a branch no merge request can come of.
    let err = git_fails(stranger.path(), &["push", &server.push_url("/projects/x"), "HEAD:refs/heads/feature"]);
    assert!(err.contains("only main"), "{err}");
    assert_eq!(packs(), before, "a refused push stored its pack");
}

fn import_pushes_appear_in_the_root_and_conversion_keeps_history(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let work = tempfile::tempdir().unwrap();
    let lib = new_repo();
    for i in 0..4 {
        write(lib.path(), "lib.rs", format!("// {i}\n"));
        commit_all(lib.path(), &format!("lib {i}"));
    }
    git(lib.path(), &["push", "-q", &server.push_url("/import/lib"), "main"]);
    let root = clone(&server, "/", work.path());
    assert_eq!(std::fs::read_to_string(root.join("import/lib/lib.rs")).unwrap(), "// 3\n");
    assert!(git(&root, &["log", "-1", "--format=%s"]).starts_with("sync /import/lib to "));
    fsck(&root);
    let imported = clone(&server, "/import/lib", work.path());
    assert_eq!(head(&imported, "HEAD"), head(lib.path(), "main"));

    // Other refs than the default branch cannot live on in a directory:
    // conversion lists them and refuses, unless told to drop them.
    git(lib.path(), &["tag", "v1"]);
    git(lib.path(), &["branch", "side", "HEAD~1"]);
    git(lib.path(), &["push", "-q", &server.push_url("/import/lib"), "v1", "side"]);
    let (status, body) = api(&server, "POST", "/api/v1/import/convert?path=/import/lib");
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("refs/tags/v1") && body.contains("refs/heads/side") && body.contains("--drop-refs"),
        "{body}"
    );
    assert_eq!(git(imported.as_path(), &["ls-remote", "origin"]).lines().count(), 4, "nothing changed");
    let (status, body) = api(&server, "POST", "/api/v1/import/convert?path=/import/lib&drop_refs=true");
    assert_eq!(status, 200, "{body}");
    let converted = clone(&server, "/import/lib", work.path());
    assert_eq!(head(&converted, "HEAD"), head(lib.path(), "main"), "conversion keeps the import history");
    assert_eq!(git(&converted, &["rev-list", "--count", "HEAD"]).trim(), "4");
    write(&converted, "lib.rs", "// changed via MR\n");
    commit_all(&converted, "after conversion");
    let out = git_output(&converted, &["push", "origin", "main"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("merge request !"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = mr_ids(&server, "open")[0];
    assert_eq!(api(&server, "POST", &format!("/api/v1/mr/{id}/merge")).0, 200);
    let after = clone(&server, "/import/lib", work.path());
    assert_eq!(git(&after, &["rev-list", "--count", "HEAD"]).trim(), "5");
    fsck(&after);
}

fn racing_merges_keep_both_changes(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let work = tempfile::tempdir().unwrap();
    create_project(&server, work.path());
    for i in 0..4 {
        let c = clone(&server, "/projects/x", work.path());
        write(&c, format!("race{i}.txt"), format!("{i}\n"));
        commit_all(&c, &format!("race {i}"));
        git(&c, &["push", "-q", "origin", &format!("HEAD:refs/for/race{i}")]);
    }
    let ids = mr_ids(&server, "open");
    assert_eq!(ids.len(), 4);
    let server = std::sync::Arc::new(server);
    let handles: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let server = server.clone();
            std::thread::spawn(move || api(&server, "POST", &format!("/api/v1/mr/{id}/merge")))
        })
        .collect();
    for h in handles {
        let (status, body) = h.join().unwrap();
        assert_eq!(status, 200, "{body}");
    }

    let check = clone(&server, "/projects/x", work.path());
    for i in 0..4 {
        assert!(check.join(format!("race{i}.txt")).exists(), "change {i} survived");
    }
    fsck(&check);
    fsck(&clone(&server, "/", work.path()));
}

fn tags_on_the_root(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let work = tempfile::tempdir().unwrap();
    let root = clone(&server, "/", work.path());
    git(&root, &["tag", "-a", "v1", "-m", "first release"]);
    git(&root, &["tag", "light"]);
    git(&root, &["push", "-q", "origin", "--tags"]);
    let again = clone(&server, "/", work.path());
    assert_eq!(head(&again, "v1"), head(&root, "v1"));
    assert_eq!(head(&again, "light"), head(&root, "HEAD"));
    fsck(&again);
}

/// The commits of the root history that change nothing.
fn empty_root_commits(root: &Path) -> Vec<String> {
    git(root, &["rev-list", "main"])
        .lines()
        .filter(|c| {
            let parent = git_output(root, &["rev-parse", "--verify", "-q", &format!("{c}^")]);
            parent.status.success() && git_output(root, &["diff", "--quiet", &format!("{c}^"), c]).status.success()
        })
        .map(str::to_string)
        .collect()
}

fn mr_status(server: &TestServer, id: i64) -> String {
    let (_, body) = api(server, "GET", &format!("/api/v1/mr/{id}"));
    let mr: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    mr["status"].as_str().expect("a status").to_string()
}

fn stacked_merge_requests_land_once(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let work = tempfile::tempdir().unwrap();
    create_project(&server, work.path());
    let x = clone(&server, "/projects/x", work.path());
    // !2 holds A; !3 was pushed on top of it and holds A and B.
    write(&x, "a.txt", "a\n");
    commit_all(&x, "stack A");
    git(&x, &["push", "-q", "origin", "HEAD:refs/for/one"]);
    write(&x, "b.txt", "b\n");
    commit_all(&x, "stack B");
    git(&x, &["push", "-q", "origin", "HEAD:refs/for/two"]);
    for id in [2, 3] {
        let (status, body) = api(&server, "POST", &format!("/api/v1/mr/{id}/merge"));
        assert_eq!(status, 200, "{body}");
    }
    let root = clone(&server, "/", work.path());
    assert_eq!(empty_root_commits(&root), Vec::<String>::new(), "a commit landed twice");
    let subjects = git(&root, &["log", "--format=%s"]);
    assert_eq!(subjects.matches("stack A").count(), 1, "{subjects}");
    let dir = clone(&server, "/projects/x", work.path());
    assert_eq!(git(&dir, &["log", "--format=%s", "-2"]), "stack B\nstack A\n");

    // The other way round: merging the stacked request first brings the
    // first one's commits in, and it shows as merged.
    git(&x, &["pull", "-q", "--rebase", "origin", "main"]);
    write(&x, "c.txt", "c\n");
    commit_all(&x, "stack C");
    git(&x, &["push", "-q", "origin", "HEAD:refs/for/three"]);
    write(&x, "d.txt", "d\n");
    commit_all(&x, "stack D");
    git(&x, &["push", "-q", "origin", "HEAD:refs/for/four"]);
    let (status, body) = api(&server, "POST", "/api/v1/mr/5/merge");
    assert_eq!(status, 200, "{body}");
    assert_eq!(mr_status(&server, 4), "merged");
    let (status, _) = api(&server, "POST", "/api/v1/mr/4/merge");
    assert_eq!(status, 409, "merging it again is refused");
    let root = clone(&server, "/", work.path());
    assert_eq!(empty_root_commits(&root), Vec::<String>::new());
    assert_eq!(git(&root, &["log", "--format=%s"]).matches("stack C").count(), 1);

    // A directory created as a side effect of a change to its parent has
    // the commit that created it in its history.
    let parent = clone(&server, "/projects", work.path());
    write(&parent, "y/new.txt", "y\n");
    commit_all(&parent, "create y inside projects");
    git(&parent, &["push", "-q", "origin", "HEAD:refs/for/main"]);
    let id = *mr_ids(&server, "open").iter().max().unwrap();
    let (status, body) = api(&server, "POST", &format!("/api/v1/mr/{id}/merge"));
    assert_eq!(status, 200, "{body}");
    let y = clone(&server, "/projects/y", work.path());
    assert_eq!(git(&y, &["log", "--format=%s"]), "create y inside projects\n");
    for dir in [&root, &dir, &y] {
        fsck(dir);
    }
}

fn unknown_paths_and_push_feedback(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let work = tempfile::tempdir().unwrap();
    create_project(&server, work.path());
    let src = new_repo();
    write(src.path(), "n.txt", "n\n");
    commit_all(src.path(), "new");
    // A new directory only inside an existing one; otherwise a 404 naming
    // the missing parent.
    let err = git_fails(src.path(), &["push", &server.push_url("/foo/bar"), "main"]);
    assert!(err.contains("/foo does not exist"), "{err}");
    assert!(mr_ids(&server, "open").is_empty());
    let out = git_output(src.path(), &["push", &server.push_url("/projects/new"), "main"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("merge request !2 opened"), "{out:?}");

    // `git push origin main` to a directory, someone else's change merged
    // first, then ours (rebased): the remote message says what to run,
    // and after it the clone is exactly the server's main.
    let ours = clone(&server, "/projects/x", work.path());
    let theirs = clone(&server, "/projects/x", work.path());
    write(&theirs, "theirs.txt", "t\n");
    commit_all(&theirs, "their change");
    git(&theirs, &["push", "-q", "origin", "HEAD:refs/for/main"]);
    write(&ours, "ours.txt", "o\n");
    commit_all(&ours, "our change");
    let out = git_output(&ours, &["push", "origin", "main"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains("run `git pull --rebase`"), "{said}");
    let mut ids = mr_ids(&server, "open");
    ids.sort_unstable();
    assert_eq!(ids, [2, 3, 4], "/projects/new, theirs, ours");
    let (theirs_id, ours_id) = (3, 4);
    assert_eq!(api(&server, "POST", &format!("/api/v1/mr/{theirs_id}/merge")).0, 200);
    assert_eq!(api(&server, "POST", &format!("/api/v1/mr/{ours_id}/merge")).0, 200);
    git(&ours, &["pull", "-q", "--rebase"]);
    assert_eq!(head(&ours, "HEAD"), head(&ours, "origin/main"), "the clone is the server's main");
    assert!(git(&ours, &["status", "--porcelain"]).is_empty());
    let subjects = git(&ours, &["log", "--format=%s", "-2"]);
    assert_eq!(subjects, "our change\ntheir change\n");
}

fn same_file_changes_merge_line_by_line(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let work = tempfile::tempdir().unwrap();
    create_project(&server, work.path());
    let base: String = (1..=20).map(|i| format!("line {i}\n")).collect();
    let setup = clone(&server, "/projects/x", work.path());
    write(&setup, "shared.txt", &base);
    commit_all(&setup, "shared file");
    git(&setup, &["push", "-q", "origin", "HEAD:refs/for/setup"]);
    let id = *mr_ids(&server, "open").iter().max().unwrap();
    assert_eq!(api(&server, "POST", &format!("/api/v1/mr/{id}/merge")).0, 200);

    // Both change shared.txt, in different places: it merges.
    let a = clone(&server, "/projects/x", work.path());
    let b = clone(&server, "/projects/x", work.path());
    write(&a, "shared.txt", base.replace("line 2\n", "line 2 (a)\n"));
    commit_all(&a, "a changes line 2");
    git(&a, &["push", "-q", "origin", "HEAD:refs/for/a"]);
    write(&b, "shared.txt", base.replace("line 18\n", "line 18 (b)\n").replace("line 19\n", ""));
    commit_all(&b, "b changes the end");
    git(&b, &["push", "-q", "origin", "HEAD:refs/for/b"]);
    let mut open = mr_ids(&server, "open");
    open.sort();
    for id in &open {
        let (status, body) = api(&server, "POST", &format!("/api/v1/mr/{id}/merge"));
        assert_eq!(status, 200, "{body}");
    }
    let check = clone(&server, "/projects/x", work.path());
    let merged = std::fs::read_to_string(check.join("shared.txt")).unwrap();
    assert_eq!(
        merged,
        base.replace("line 2\n", "line 2 (a)\n").replace("line 18\n", "line 18 (b)\n").replace("line 19\n", "")
    );
    fsck(&check);

    // Both change line 10: a conflict that shows both sides' hunks.
    git(&a, &["pull", "-q", "--rebase", "origin", "main"]);
    write(&a, "shared.txt", merged.replace("line 10\n", "ten from a\n"));
    commit_all(&a, "a changes line 10");
    git(&a, &["push", "-q", "origin", "HEAD:refs/for/a2"]);
    let c = clone(&server, "/projects/x", work.path());
    write(&c, "shared.txt", merged.replace("line 10\n", "ten from c\n"));
    commit_all(&c, "c changes line 10");
    git(&c, &["push", "-q", "origin", "HEAD:refs/for/c"]);
    let mut open = mr_ids(&server, "open");
    open.sort();
    assert_eq!(api(&server, "POST", &format!("/api/v1/mr/{}/merge", open[0])).0, 200);
    let (status, body) = api(&server, "POST", &format!("/api/v1/mr/{}/merge", open[1]));
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("shared.txt: lines 10-10") && body.contains("ten from a") && body.contains("ten from c"),
        "{body}"
    );
}

fn merge_requests_holding_merges_land_squashed(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let work = tempfile::tempdir().unwrap();
    create_project(&server, work.path());
    let a = clone(&server, "/projects/x", work.path());
    let b = clone(&server, "/projects/x", work.path());
    write(&a, "from-a.txt", "a\n");
    commit_all(&a, "a's work");
    git(&a, &["push", "-q", "origin", "HEAD:refs/for/a"]);
    write(&b, "from-b.txt", "b\n");
    commit_all(&b, "b's work");
    git(&b, &["push", "-q", "origin", "HEAD:refs/for/b"]);
    let b_id = *mr_ids(&server, "open").iter().max().unwrap();
    assert_eq!(api(&server, "POST", &format!("/api/v1/mr/{b_id}/merge")).0, 200);
    // a merges the directory's main into her branch (a merge commit) and
    // pushes again: the request now holds a merge.
    git(&a, &["fetch", "-q", "origin"]);
    git(&a, &["merge", "-q", "--no-edit", "--no-ff", "origin/main"]);
    write(&a, "from-a.txt", "a, after merging main\n");
    commit_all(&a, "a's follow-up");
    let out = git_output(&a, &["push", "origin", "HEAD:refs/for/a"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a_id = *mr_ids(&server, "open").iter().max().unwrap();
    let (status, body) = api(&server, "POST", &format!("/api/v1/mr/{a_id}/merge"));
    assert_eq!(status, 200, "{body}");
    let x = clone(&server, "/projects/x", work.path());
    assert_eq!(std::fs::read_to_string(x.join("from-a.txt")).unwrap(), "a, after merging main\n");
    assert_eq!(std::fs::read_to_string(x.join("from-b.txt")).unwrap(), "b\n");
    assert!(git(&x, &["log", "-1", "--format=%s"]).contains("squashed"), "{}", git(&x, &["log", "-1"]));
    let root = clone(&server, "/", work.path());
    for dir in [&x, &root] {
        assert_eq!(git(dir, &["rev-list", "--merges", "HEAD"]), "", "histories stay linear");
        fsck(dir);
    }
}

/// The directories' heads as `ls-remote` shows them at `url`.
fn listed_heads(url: &str, dirs: &[&str]) -> Vec<Option<String>> {
    let work = tempfile::tempdir().unwrap();
    dirs.iter()
        .map(|d| {
            let out = git_output(work.path(), &["ls-remote", &format!("{url}{d}"), "refs/heads/main"]);
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).split('\t').next().unwrap().to_string())
        })
        .collect()
}

/// The directory-head index's root commit and its answers for `dirs`.
fn indexed_heads(server: &TestServer, dirs: &[&str]) -> (Option<String>, Vec<Option<Option<String>>>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let data = tempfile::tempdir().unwrap();
        let store = tessera_store::Store::open(server.database_url(), data.path(), Default::default()).await.unwrap();
        let root = store.repo_by_path("/").await.unwrap().unwrap();
        let as_of = store.dir_heads_as_of(root.id).await.unwrap();
        let mut out = Vec::new();
        for d in dirs {
            let head = match as_of {
                Some(at) => store.indexed_dir_head(root.id, d, &at).await.unwrap().map(|h| h.map(|h| h.to_string())),
                None => None,
            };
            out.push(head);
        }
        store.pool().close().await;
        (as_of.map(|a| a.to_string()), out)
    })
}

/// Runs SQL on the server's database.
fn run_sql(server: &TestServer, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let data = tempfile::tempdir().unwrap();
        let store = tessera_store::Store::open(server.database_url(), data.path(), Default::default()).await.unwrap();
        sqlx::query(sql).execute(store.pool()).await.unwrap();
        store.pool().close().await;
    })
}

fn merge_one(server: &TestServer) {
    let open = mr_ids(server, "open");
    assert_eq!(open.len(), 1, "one open request");
    let (status, body) = api(server, "POST", &format!("/api/v1/mr/{}/merge", open[0]));
    assert_eq!(status, 200, "{body}");
}

fn directory_heads_come_from_an_index_rebuilt_when_stale(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let work = tempfile::tempdir().unwrap();
    create_project(&server, work.path());
    let y = work.path().join("y");
    git(work.path(), &["init", "-q", "-b", "main", y.to_str().unwrap()]);
    write(&y, "y.txt", "y\n");
    commit_all(&y, "y");
    git(&y, &["push", "-q", &server.push_url("/projects/y"), "main"]);
    merge_one(&server);
    // A directory removed: its head is gone from the index too.
    let x = clone(&server, "/projects/x", work.path());
    git(&x, &["rm", "-q", "-r", "nested/deep"]);
    write(&x, "nested/keep.txt", "keep\n");
    commit_all(&x, "drop deep");
    git(&x, &["push", "-q", "origin", "HEAD:refs/for/main"]);
    merge_one(&server);

    let dirs = ["/projects", "/projects/x", "/projects/x/nested", "/projects/x/nested/deep", "/projects/y"];
    let listed = listed_heads(&server.url, &dirs);
    assert!(listed[3].is_none(), "the removed directory is gone: {listed:?}");
    assert!(listed.iter().enumerate().all(|(i, h)| i == 3 || h.is_some()), "{listed:?}");
    let root = listed_heads(&server.url, &["/"])[0].clone();
    let (as_of, indexed) = indexed_heads(&server, &dirs);
    assert_eq!(as_of, root, "the index is current as of the root's head");
    let expected: Vec<Option<Option<String>>> = listed.iter().map(|h| Some(h.clone())).collect();
    assert_eq!(indexed, expected, "the index answers what a walk does");

    // A stale index (as a database from before it, or a root moved by a
    // process that found it stale): reads walk, and a merge leaves it stale.
    run_sql(&server, "DELETE FROM dir_heads");
    let stale = format!("UPDATE dir_heads_state SET root_commit = '{}'", "0".repeat(40));
    run_sql(&server, &stale);
    assert_eq!(listed_heads(&server.url, &dirs), listed, "reads walk the history when the index is stale");
    write(&y, "y.txt", "y2\n");
    commit_all(&y, "y2");
    git(&y, &["push", "-q", &server.push_url("/projects/y"), "main"]);
    merge_one(&server);
    let listed = listed_heads(&server.url, &dirs);
    assert_eq!(indexed_heads(&server, &dirs).0, Some("0".repeat(40)), "a merge leaves a stale index stale");

    // A restart rebuilds it in one pass, current as of the root's head.
    let again = server.restart();
    let root = listed_heads(&again.url, &["/"])[0].clone();
    let (as_of, indexed) = indexed_heads(&server, &dirs);
    assert_eq!(as_of, root);
    let expected: Vec<Option<Option<String>>> = listed.iter().map(|h| Some(h.clone())).collect();
    assert_eq!(indexed, expected);
    assert_eq!(listed_heads(&again.url, &dirs), listed);
    fsck(&clone(&server, "/projects/y", work.path()));
}

/// A merge request whose second commit is the first to touch a
/// subdirectory: the subdirectory's new commit continues its history.
fn subdirectories_first_changed_late_in_a_request_keep_their_history(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let work = tempfile::tempdir().unwrap();
    create_project(&server, work.path());
    let deep = clone(&server, "/projects/x/nested/deep", work.path());
    let before = git(&deep, &["rev-list", "--count", "HEAD"]).trim().parse::<u32>().unwrap();
    let x = clone(&server, "/projects/x", work.path());
    write(&x, "f1.txt", "changed first\n");
    commit_all(&x, "top level first");
    write(&x, "nested/deep/n.txt", "changed second\n");
    commit_all(&x, "deep second");
    git(&x, &["push", "-q", "origin", "HEAD:refs/for/main"]);
    merge_one(&server);
    let deep = clone(&server, "/projects/x/nested/deep", work.path());
    let after = git(&deep, &["rev-list", "--count", "HEAD"]).trim().parse::<u32>().unwrap();
    assert_eq!(after, before + 1, "the subdirectory's history goes on from where it was");
    fsck(&deep);
}

/// A merge that builds more than `merge_buffer_bytes` stores what it built
/// in pieces as it goes; fast-forwards and rebases land whole and right.
fn large_merges_store_their_objects_in_pieces(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |c| c.merge_buffer_bytes = 2048) else { return };
    let work = tempfile::tempdir().unwrap();
    create_project(&server, work.path());
    let packs_before = pack_count(&server);
    // Forty commits over several subdirectories, fast-forwarded.
    let x = clone(&server, "/projects/x", work.path());
    for i in 0..40 {
        write(&x, format!("d{}/f{i}.txt", i % 5), format!("{i}\n"));
        commit_all(&x, &format!("ff {i}"));
    }
    git(&x, &["push", "-q", "origin", "HEAD:refs/for/main"]);
    merge_one(&server);
    assert!(pack_count(&server) >= packs_before + 3, "stored in pieces: {} packs", pack_count(&server));
    let check = clone(&server, "/projects/x", work.path());
    assert_eq!(head(&check, "HEAD"), head(&x, "HEAD"), "a fast-forward keeps the pushed ids");
    assert_eq!(git(&clone(&server, "/projects/x/d3", work.path()), &["rev-list", "--count", "HEAD"]).trim(), "8");
    // Thirty more, rebased onto a directory that moved meanwhile.
    let other = clone(&server, "/projects/x", work.path());
    write(&other, "f1.txt", "moved\n");
    commit_all(&other, "move the directory");
    git(&other, &["push", "-q", "origin", "HEAD:refs/for/main"]);
    merge_one(&server);
    for i in 40..70 {
        write(&x, format!("d{}/f{i}.txt", i % 5), format!("{i}\n"));
        commit_all(&x, &format!("rebased {i}"));
    }
    git(&x, &["push", "-q", "origin", "HEAD:refs/for/main"]);
    merge_one(&server);
    let check = clone(&server, "/projects/x", work.path());
    assert_eq!(std::fs::read_to_string(check.join("f1.txt")).unwrap(), "moved\n");
    assert_eq!(std::fs::read_to_string(check.join("d4/f69.txt")).unwrap(), "69\n");
    assert_eq!(git(&check, &["rev-list", "--count", "HEAD"]).trim(), (3 + 40 + 1 + 30).to_string());
    fsck(&check);
    fsck(&clone(&server, "/", work.path()));
}

fn pack_count(server: &TestServer) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let data = tempfile::tempdir().unwrap();
        let store = tessera_store::Store::open(server.database_url(), data.path(), Default::default()).await.unwrap();
        let root = store.repo_by_path("/").await.unwrap().unwrap();
        let n = store.repo_pack_ids(root.id).await.unwrap().len();
        store.pool().close().await;
        n
    })
}

per_backend!(
    large_merges_store_their_objects_in_pieces,
    subdirectories_first_changed_late_in_a_request_keep_their_history,
    directory_heads_come_from_an_index_rebuilt_when_stale,
    merge_requests_holding_merges_land_squashed,
    same_file_changes_merge_line_by_line,
    stacked_merge_requests_land_once,
    unknown_paths_and_push_feedback,
    directories_clone_with_their_history,
    push_opens_merge_request_and_merge_moves_main,
    disjoint_merge_requests_both_merge_and_conflicts_are_reported,
    pushes_with_unknown_base_are_refused,
    import_pushes_appear_in_the_root_and_conversion_keeps_history,
    tags_on_the_root,
    racing_merges_keep_both_changes,
);

/// What a read must not change: repository versions and row counts (SQLite
/// only, read with the sqlite3 CLI; other backends return a constant).
fn db_fingerprint(server: &TestServer) -> String {
    if server.backend != Backend::Sqlite {
        return String::new();
    }
    let db = server.data_dir.path().join("tessera.db");
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT (SELECT SUM(version) FROM repos), (SELECT COUNT(*) FROM objects), (SELECT COUNT(*) FROM commits), (SELECT COUNT(*) FROM dir_commits), (SELECT COUNT(*) FROM refs)")
        .output()
        .expect("sqlite3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
