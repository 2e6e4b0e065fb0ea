//! Hostile and broken requests: each gets a clear error, stores nothing,
//! leaves refs alone, and the server keeps serving.

use std::process::Command;

use tessera_testkit::{
    commit_all, git, git_fails, new_repo, pack_objects, pack_revs, per_backend, pkt, push_body, write, Backend,
    TestServer,
};

fn contains(hay: &[u8], needle: &str) -> bool {
    String::from_utf8_lossy(hay).contains(needle)
}

/// A server with one repository whose main is at the returned id.
fn seeded(backend: Backend) -> Option<(TestServer, tempfile::TempDir, String)> {
    let server = TestServer::start(backend)?;
    let src = new_repo();
    write(src.path(), "f", "x\n");
    let id = commit_all(src.path(), "x");
    git(src.path(), &["push", "-q", &server.push_url("/import/bad"), "main"]);
    Some((server, src, id))
}

fn main_is(server: &TestServer, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = git(dir.path(), &["ls-remote", &server.repo("/import/bad"), "refs/heads/main"]);
    assert!(out.starts_with(expected), "main moved: {out}");
}

fn malformed_pkt_lines(backend: Backend) {
    let Some((server, _src, id)) = seeded(backend) else {
        return;
    };
    for body in [&b"zzzz"[..], b"0003", b"00ffwant", b"0032want 0000000000000000000000000000000000000000\n0000"] {
        let (status, reply) = server.post("/import/bad", "git-upload-pack", body, false);
        assert!(status >= 400 || contains(&reply, "ERR "), "{status} {:?}", String::from_utf8_lossy(&reply));
        let (status, reply) = server.post("/import/bad", "git-receive-pack", body, true);
        assert!(
            status >= 400 || contains(&reply, "ERR ") || contains(&reply, "unpack "),
            "{status} {:?}",
            String::from_utf8_lossy(&reply)
        );
    }
    main_is(&server, &id);
}

fn truncated_and_corrupt_packs(backend: Backend) {
    let Some((server, src, id)) = seeded(backend) else {
        return;
    };
    write(src.path(), "f", "y\n");
    let next = commit_all(src.path(), "y");
    let pack = pack_revs(src.path(), &format!("{id}..{next}"));
    let mut corrupt = pack.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x55;
    // Content altered and the trailer recomputed: the checksum passes, but
    // the objects inside no longer hash to what the push claims.
    let mut rehashed = pack.clone();
    let body_len = rehashed.len() - 20;
    rehashed[body_len - 3] ^= 0x01;
    let trailer = sha1_of(&rehashed[..body_len]);
    rehashed[body_len..].copy_from_slice(&trailer);
    for bad in [&pack[..pack.len() / 2], &corrupt[..], &rehashed[..], &b"PACK"[..], &[][..]] {
        let (status, reply) = server.post(
            "/import/bad",
            "git-receive-pack",
            &push_body(&[(&id, &next, "refs/heads/main")], "report-status", bad),
            true,
        );
        assert_eq!(status, 200);
        assert!(contains(&reply, "ng refs/heads/main"), "{}", String::from_utf8_lossy(&reply));
        assert!(!contains(&reply, "unpack ok") || contains(&reply, "missing"), "{}", String::from_utf8_lossy(&reply));
        main_is(&server, &id);
    }
    // The same push, intact, still works afterwards.
    let (_, reply) = server.post(
        "/import/bad",
        "git-receive-pack",
        &push_body(&[(&id, &next, "refs/heads/main")], "report-status", &pack),
        true,
    );
    assert!(
        contains(&reply, "unpack ok") && contains(&reply, "ok refs/heads/main"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}

fn sha1_of(data: &[u8]) -> [u8; 20] {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d");
    std::fs::write(&file, data).unwrap();
    let out = Command::new("sha1sum").arg(&file).output().unwrap();
    let hex = String::from_utf8_lossy(&out.stdout)[..40].to_string();
    let mut raw = [0u8; 20];
    for i in 0..20 {
        raw[i] = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    raw
}

fn malicious_trees_are_refused(backend: Backend) {
    let Some((server, src, id)) = seeded(backend) else {
        return;
    };
    let blob = git(src.path(), &["rev-parse", "HEAD:f"]).trim().to_string();
    let raw_blob = hex_bytes(&blob);
    let entry = |mode: &str, name: &[u8]| {
        let mut e = format!("{mode} ").into_bytes();
        e.extend_from_slice(name);
        e.push(0);
        e.extend_from_slice(&raw_blob);
        e
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", entry("100644", b"..")),
        ("dotgit", entry("100644", b".git")),
        ("slash", entry("100644", b"a/b")),
        ("empty", entry("100644", b"")),
        ("unsorted", [entry("100644", b"b"), entry("100644", b"a")].concat()),
    ];
    for (label, tree) in cases {
        let file = src.path().join(format!("../tree-{label}"));
        std::fs::write(&file, &tree).unwrap();
        let tree_id = git(src.path(), &["hash-object", "-w", "--literally", "-t", "tree", file.to_str().unwrap()])
            .trim()
            .to_string();
        let commit = git(src.path(), &["commit-tree", &tree_id, "-p", &id, "-m", label]).trim().to_string();
        let pack = pack_objects(src.path(), &[&commit, &tree_id]);
        let (_, reply) = server.post(
            "/import/bad",
            "git-receive-pack",
            &push_body(&[(&id, &commit, "refs/heads/main")], "report-status", &pack),
            true,
        );
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.contains("ng refs/heads/main") && !reply.contains("unpack ok"), "{label}: {reply}");
        main_is(&server, &id);
    }
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect()
}

fn bad_ref_names_are_refused(backend: Backend) {
    let Some((server, src, id)) = seeded(backend) else {
        return;
    };
    write(src.path(), "f", "z\n");
    let next = commit_all(src.path(), "z");
    let pack = pack_revs(src.path(), &format!("{id}..{next}"));
    let zero = "0".repeat(40);
    for name in ["refs/heads/a..b", "refs/heads/x.lock", "HEAD", "refs/heads/sp ace", "main"] {
        let (_, reply) = server.post(
            "/import/bad",
            "git-receive-pack",
            &push_body(&[(&zero, &next, name)], "report-status", &pack),
            true,
        );
        assert!(contains(&reply, &format!("ng {name}")), "{name}: {}", String::from_utf8_lossy(&reply));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = git(dir.path(), &["ls-remote", &server.repo("/import/bad")]);
    assert_eq!(out.lines().count(), 2, "only HEAD and main: {out}");
}

fn wrong_token_is_refused(backend: Backend) {
    let Some((server, src, id)) = seeded(backend) else {
        return;
    };
    let (status, _) = server.post(
        "/import/bad",
        "git-receive-pack",
        &push_body(&[(&id, &id, "refs/heads/main")], "report-status", b""),
        false,
    );
    assert_eq!(status, 401);
    let wrong = server.repo("/import/bad").replacen("http://", "http://u:not-a-token@", 1);
    git_fails(src.path(), &["push", &wrong, "main"]);
    main_is(&server, &id);
}

fn oversized_requests_are_refused(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |c| {
        c.max_request_bytes = 4096;
        c.max_push_bytes = 64 * 1024;
    }) else {
        return;
    };
    let src = new_repo();
    write(src.path(), "f", "x\n");
    let id = commit_all(src.path(), "x");
    git(src.path(), &["push", "-q", &server.push_url("/import/bad"), "main"]);
    let mut body = Vec::new();
    for _ in 0..200 {
        body.extend(pkt(&format!("have {id}\n")));
    }
    let (status, _) = server.post("/import/bad", "git-upload-pack", &body, false);
    assert_eq!(status, 413);
    let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.wrapping_mul(2654435761).to_le_bytes()).collect();
    write(src.path(), "big", big);
    commit_all(src.path(), "big");
    let err = git_fails(src.path(), &["push", &server.push_url("/import/bad"), "main"]);
    assert!(err.contains("limit") || err.contains("unpack"), "{err}");
    main_is(&server, &id);
}

per_backend!(
    malformed_pkt_lines,
    truncated_and_corrupt_packs,
    malicious_trees_are_refused,
    bad_ref_names_are_refused,
    wrong_token_is_refused,
    oversized_requests_are_refused,
);
