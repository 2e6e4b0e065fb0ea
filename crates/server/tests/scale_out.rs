//! Two server processes on one PostgreSQL database, pack bytes in the
//! database, behave as one server: what one takes in, the other serves;
//! racing pushes across them have exactly one winner; a merge on one is
//! seen at once by the other.

use std::process::Command;

use tessera_testkit::{commit_all, fsck, git, git_output, new_repo, write, Backend, TestServer};

fn api(url: &str, token: &str, method: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-X", method, "-w", "\n%{http_code}", "-u", &format!("t:{token}")])
        .arg(format!("{url}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.trim().parse().expect("status"), body.to_string())
}

fn remote_main(url: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = git(dir.path(), &["ls-remote", url, "refs/heads/main"]);
    out.split_whitespace().next().unwrap_or_default().to_string()
}

#[test]
fn two_processes_on_one_postgres_are_one_server() {
    let Some(a) = TestServer::start_with(Backend::Postgres, |c| c.storage = tessera_store::Storage::Database) else {
        return;
    };
    let b = a.peer();

    // Push to one, clone from the other, both ways.
    let src = new_repo();
    write(src.path(), "f", "1\n");
    let first = commit_all(src.path(), "one");
    git(src.path(), &["push", "-q", &a.push_url("/import/shared"), "main"]);
    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("from-b");
    git(dir.path(), &["clone", "-q", &b.repo("/import/shared"), clone.to_str().unwrap()]);
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]).trim(), first);
    fsck(&clone);
    write(src.path(), "f", "2\n");
    let second = commit_all(src.path(), "two");
    git(src.path(), &["push", "-q", &b.push_url("/import/shared"), "main"]);
    assert_eq!(remote_main(&a.repo("/import/shared")), second);
    git(&clone, &["pull", "-q", "--ff-only"]);
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]).trim(), second);
    fsck(&clone);

    // Racing pushes of diverging commits to one ref, one through each
    // process: exactly one wins, every round.
    let mut base = second;
    for round in 0..4 {
        let mut tips = Vec::new();
        for side in ["a", "b"] {
            git(src.path(), &["checkout", "-q", "--detach", &base]);
            write(src.path(), format!("{side}{round}"), "x\n");
            tips.push(commit_all(src.path(), &format!("{side} {round}")));
        }
        let urls = [a.push_url("/import/shared"), b.push_url("/import/shared")];
        let pushes: Vec<_> = tips
            .iter()
            .zip(urls)
            .map(|(tip, url)| {
                let (dir, refspec) = (src.path().to_path_buf(), format!("{tip}:refs/heads/main"));
                std::thread::spawn(move || git_output(&dir, &["push", "-q", &url, &refspec]).status.success())
            })
            .collect();
        let won: Vec<bool> = pushes.into_iter().map(|p| p.join().unwrap()).collect();
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "round {round}: {won:?}");
        let winner = &tips[won.iter().position(|w| *w).unwrap()];
        assert_eq!(&remote_main(&a.repo("/import/shared")), winner);
        assert_eq!(&remote_main(&b.repo("/import/shared")), winner);
        base = winner.clone();
    }

    // A merge request opened through one process and merged through the
    // other is what both serve at once.
    let project = dir.path().join("project");
    git(dir.path(), &["init", "-q", "-b", "main", project.to_str().unwrap()]);
    write(&project, "p.txt", "p\n");
    let pushed = commit_all(&project, "project");
    let out = git_output(&project, &["push", &a.push_url("/projects/shared"), "main"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("merge request !1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, body) = api(&b.url, &b.token, "POST", "/api/v1/mr/1/merge");
    assert_eq!(status, 200, "{body}");
    assert_eq!(remote_main(&a.repo("/projects/shared")), pushed);
    assert_eq!(remote_main(&b.repo("/projects/shared")), pushed);
    let root = dir.path().join("root");
    git(dir.path(), &["clone", "-q", &a.repo("/"), root.to_str().unwrap()]);
    assert!(root.join("projects/shared/p.txt").exists());
    fsck(&root);
}
