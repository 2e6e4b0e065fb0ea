//! receive-pack: updates, forced updates, deletes, atomic pushes, options,
//! authentication, and racing pushes.

use tessera_testkit::{
    commit_all, fsck, git, git_fails, new_repo, pack_revs, per_backend, push_body, write, Backend, TestServer,
};

fn server_ref(server: &TestServer, path: &str, name: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = git(dir.path(), &["ls-remote", &server.repo(path), name]);
    out.lines().find(|l| l.ends_with(&format!("\t{name}"))).map(|l| l[..40].to_string())
}

fn non_fast_forward_needs_force_and_delete_works(backend: Backend) {
    let Some(server) = TestServer::start(backend) else {
        return;
    };
    let src = new_repo();
    write(src.path(), "a", "1\n");
    commit_all(src.path(), "one");
    write(src.path(), "a", "2\n");
    let two = commit_all(src.path(), "two");
    let url = server.push_url("/import/nff");
    git(src.path(), &["push", "-q", &url, "main", "main:refs/heads/topic"]);
    git(src.path(), &["reset", "-q", "--hard", "HEAD~1"]);
    write(src.path(), "a", "other\n");
    let other = commit_all(src.path(), "diverged");
    let err = git_fails(src.path(), &["push", &url, "main"]);
    assert!(err.contains("non-fast-forward") || err.contains("fetch first"), "{err}");
    assert_eq!(server_ref(&server, "/import/nff", "refs/heads/main").as_deref(), Some(two.as_str()));
    git(src.path(), &["push", "-q", &url, "+main"]);
    assert_eq!(server_ref(&server, "/import/nff", "refs/heads/main").as_deref(), Some(other.as_str()));
    git(src.path(), &["push", "-q", &url, ":refs/heads/topic"]);
    assert_eq!(server_ref(&server, "/import/nff", "refs/heads/topic"), None);
}

fn atomic_push_with_one_stale_ref_changes_nothing(backend: Backend) {
    let Some(server) = TestServer::start(backend) else {
        return;
    };
    let url = server.push_url("/import/atomic");
    let src = new_repo();
    write(src.path(), "f", "base\n");
    let base = commit_all(src.path(), "base");
    git(src.path(), &["push", "-q", &url, "main", "main:refs/heads/other"]);
    write(src.path(), "f", "next\n");
    let next = commit_all(src.path(), "next");
    let pack = pack_revs(src.path(), &format!("{base}..{next}"));
    // `other` is claimed to be at an id it is not at: the server's
    // compare-and-swap fails for it, which no client-side check can catch.
    let stale = "1".repeat(40);
    let commands =
        [(base.as_str(), next.as_str(), "refs/heads/main"), (stale.as_str(), next.as_str(), "refs/heads/other")];
    let (_, reply) =
        server.post("/import/atomic", "git-receive-pack", &push_body(&commands, "report-status atomic", &pack), true);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    assert!(
        reply.contains("unpack ok")
            && reply.contains("ng refs/heads/main")
            && reply.contains("ng refs/heads/other fetch first"),
        "{reply}"
    );
    assert_eq!(
        server_ref(&server, "/import/atomic", "refs/heads/main").as_deref(),
        Some(base.as_str()),
        "main unchanged"
    );
    assert_eq!(server_ref(&server, "/import/atomic", "refs/heads/other").as_deref(), Some(base.as_str()));
    // Without atomic, the good update lands alone. The failed push kept
    // nothing (no ref would reach its objects), so the pack comes again.
    let (_, reply) =
        server.post("/import/atomic", "git-receive-pack", &push_body(&commands, "report-status", &pack), true);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    assert!(reply.contains("ok refs/heads/main") && reply.contains("ng refs/heads/other"), "{reply}");
    assert_eq!(server_ref(&server, "/import/atomic", "refs/heads/main").as_deref(), Some(next.as_str()));
    // The real client negotiates atomic pushes too.
    write(src.path(), "f", "third\n");
    let third = commit_all(src.path(), "third");
    git(src.path(), &["push", "-q", "--atomic", &url, "main", "+main:refs/heads/other"]);
    assert_eq!(server_ref(&server, "/import/atomic", "refs/heads/other").as_deref(), Some(third.as_str()));
}

fn push_options_and_quiet(backend: Backend) {
    let Some(server) = TestServer::start(backend) else {
        return;
    };
    let src = new_repo();
    write(src.path(), "f", "x\n");
    commit_all(src.path(), "x");
    let url = server.push_url("/import/opts");
    git(src.path(), &["push", "-q", "-o", "ci.skip", "-o", "note=hello", &url, "main"]);
    write(src.path(), "f", "y\n");
    let y = commit_all(src.path(), "y");
    git(src.path(), &["push", "--quiet", &url, "main"]);
    assert_eq!(server_ref(&server, "/import/opts", "refs/heads/main").as_deref(), Some(y.as_str()));
}

fn tokens_are_required_to_push(backend: Backend) {
    let Some(server) = TestServer::start(backend) else {
        return;
    };
    let src = new_repo();
    write(src.path(), "f", "x\n");
    commit_all(src.path(), "x");
    let anonymous = server.repo("/import/auth");
    let err = git_fails(src.path(), &["push", &anonymous, "main"]);
    assert!(err.contains("401") || err.contains("Authentication") || err.contains("could not read Username"), "{err}");
    let wrong = anonymous.replacen("http://", "http://me:tsr_wrong@", 1);
    let err = git_fails(src.path(), &["push", &wrong, "main"]);
    assert!(err.contains("401") || err.contains("Authentication failed") || err.contains("invalid"), "{err}");
    assert_eq!(server_ref_or_404(&server, "/import/auth"), None);
    git(src.path(), &["push", "-q", &server.push_url("/import/auth"), "main"]);
}

fn server_ref_or_404(server: &TestServer, path: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = tessera_testkit::git_output(dir.path(), &["ls-remote", &server.repo(path)]);
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn racing_pushes_exactly_one_wins(backend: Backend) {
    let Some(server) = TestServer::start(backend) else {
        return;
    };
    let url = server.push_url("/import/race");
    let base = new_repo();
    write(base.path(), "f", "base\n");
    commit_all(base.path(), "base");
    git(base.path(), &["push", "-q", &url, "main"]);
    for round in 0..5 {
        let clones: Vec<_> = (0..2)
            .map(|i| {
                let dir = tempfile::tempdir().unwrap();
                git(dir.path(), &["clone", "-q", &url, "c"]);
                let c = dir.path().join("c");
                write(&c, format!("f{i}"), format!("round {round} writer {i}\n"));
                let id = commit_all(&c, &format!("writer {i}"));
                (dir, c, id)
            })
            .collect();
        let handles: Vec<_> = clones
            .iter()
            .map(|(_, c, _)| {
                let c = c.clone();
                std::thread::spawn(move || tessera_testkit::git_output(&c, &["push", "origin", "main"]))
            })
            .collect();
        let outputs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<usize> = (0..2).filter(|i| outputs[*i].status.success()).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one push wins");
        let loser = String::from_utf8_lossy(&outputs[1 - winners[0]].stderr).into_owned();
        assert!(loser.contains("fetch first") || loser.contains("non-fast-forward"), "{loser}");
        let tip = server_ref(&server, "/import/race", "refs/heads/main").unwrap();
        assert_eq!(tip, clones[winners[0]].2, "the winner's commit is on the server");
        git(base.path(), &["pull", "-q", &url, "main"]);
    }
    let dest = tempfile::tempdir().unwrap();
    git(dest.path(), &["clone", "-q", &server.repo("/import/race"), "c"]);
    fsck(&dest.path().join("c"));
}

/// Clones taken while pushes land see the old tip or the new one, complete.
fn reads_during_pushes_see_whole_states(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let src = new_repo();
    write(src.path(), "f", "0\n");
    let first = commit_all(src.path(), "c0");
    let url = server.push_url("/import/live");
    git(src.path(), &["push", "-q", &url, "main"]);
    let mut pushed = vec![first];
    for i in 1..=8 {
        write(src.path(), "f", format!("{i}\n"));
        write(src.path(), format!("dir{i}/g"), format!("{i}\n"));
        pushed.push(commit_all(src.path(), &format!("c{i}")));
    }
    let read_url = server.repo("/import/live");
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for i in 0..8 {
            let dir = tempfile::tempdir().unwrap();
            let out = tessera_testkit::git_output(dir.path(), &["clone", "-q", &read_url, "c"]);
            assert!(out.status.success(), "clone {i}: {}", String::from_utf8_lossy(&out.stderr));
            let clone = dir.path().join("c");
            fsck(&clone);
            seen.push(git(&clone, &["rev-parse", "HEAD"]).trim().to_string());
        }
        seen
    });
    for id in &pushed[1..=8] {
        git(src.path(), &["push", "-q", &url, &format!("{id}:refs/heads/main")]);
    }
    for id in reader.join().unwrap() {
        assert!(pushed.contains(&id), "a clone saw {id}, which was never a tip");
    }
}

fn reads_can_require_tokens(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |c| c.require_token_for_reads = true) else {
        return;
    };
    let src = new_repo();
    write(src.path(), "f", "x\n");
    commit_all(src.path(), "x");
    git(src.path(), &["push", "-q", &server.push_url("/import/private"), "main"]);
    let dest = tempfile::tempdir().unwrap();
    git_fails(dest.path(), &["clone", "-q", &server.repo("/import/private"), "anon"]);
    git(dest.path(), &["clone", "-q", &server.push_url("/import/private"), "authed"]);
}

fn monorepo_root_branches_refuse_pushes(backend: Backend) {
    let Some(server) = TestServer::start(backend) else { return };
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["clone", "-q", &server.push_url("/"), "root"]);
    let root = dir.path().join("root");
    write(&root, "README.md", "edited directly\n");
    commit_all(&root, "direct push to the root");
    let err = git_fails(&root, &["push", "origin", "main"]);
    assert!(err.contains("merge requests"), "{err}");
}

per_backend!(
    non_fast_forward_needs_force_and_delete_works,
    atomic_push_with_one_stale_ref_changes_nothing,
    push_options_and_quiet,
    tokens_are_required_to_push,
    racing_pushes_exactly_one_wins,
    reads_can_require_tokens,
    reads_during_pushes_see_whole_states,
    monorepo_root_branches_refuse_pushes,
);
