//! The `tessera` command itself: tokens, schema, merge requests, conversion.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tessera_testkit::{commit_all, git, new_repo, write, Backend, TestServer};

fn tessera(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(args).env_remove("TESSERA_SERVER").env_remove("TESSERA_TOKEN");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("tessera runs")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn schema_is_printed_for_every_dialect() {
    for dialect in ["sqlite", "postgres", "mysql"] {
        let sql = ok(&tessera(&["db", "schema", "--dialect", dialect], &[]));
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS refs") && sql.contains("merge_requests"), "{dialect}");
    }
    let out = tessera(&["db", "schema", "--dialect", "oracle"], &[]);
    assert!(!out.status.success());
}

#[test]
fn tokens_belong_to_users_and_are_revoked_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    // Administration never creates a database by accident.
    let out = tessera(&["token", "create", "--user", "ci", "--data-dir", data], &[]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--init"));
    assert!(!dir.path().join("data").exists(), "nothing was created");
    ok(&tessera(&["user", "add", "ci", "--init", "--data-dir", data], &[]));
    let out = ok(&tessera(&["token", "create", "--user", "ci", "--name", "a", "--data-dir", data], &[]));
    let secret = out.split_whitespace().last().unwrap().to_string();
    assert!(secret.starts_with("tsr_"), "{out}");
    let out = tessera(&["token", "create", "--user", "ci", "--name", "a", "--data-dir", data], &[]);
    assert!(!out.status.success(), "token names are unique per user");
    let out = tessera(&["token", "create", "--user", "nobody", "--data-dir", data], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user \"nobody\""));
    let out = tessera(&["token", "create", "--user", "ci", "--scope", "admin", "--data-dir", data], &[]);
    assert!(!out.status.success(), "admin scope is for admins");
    ok(&tessera(&["user", "add", "other", "--data-dir", data], &[]));
    ok(&tessera(&["token", "create", "--user", "other", "--name", "a", "--data-dir", data], &[]));
    let listed = ok(&tessera(&["token", "list", "--data-dir", data], &[]));
    assert!(listed.contains("\tci/a\t") && listed.contains("\tother/a\t") && !listed.contains(&secret));
    // A bare name could mean two tokens: refused, nothing revoked.
    assert!(!tessera(&["token", "revoke", "a", "--data-dir", data], &[]).status.success());
    ok(&tessera(&["token", "revoke", "ci/a", "--data-dir", data], &[]));
    let listed = ok(&tessera(&["token", "list", "--data-dir", data], &[]));
    assert_eq!(listed.matches("revoked").count(), 1, "{listed}");
    assert!(!tessera(&["token", "revoke", "ci/a", "--data-dir", data], &[]).status.success());
}

#[test]
fn bad_database_url_is_a_clear_error() {
    let out = tessera(&["token", "list", "--database", "oracle://x"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sqlite://, postgres:// or mysql://"));
    let out = tessera(&["token", "list", "--database", "postgres://nobody@127.0.0.1:1/none"], &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn push_mr(server: &TestServer, work: &Path, file: &str) {
    let dir = work.join(file);
    git(work, &["clone", "-q", &server.push_url("/projects"), dir.to_str().unwrap()]);
    write(&dir, file, "content\n");
    commit_all(&dir, &format!("add {file}"));
    let topic = file.trim_end_matches(".txt");
    git(&dir, &["push", "-q", "origin", &format!("HEAD:refs/for/{topic}")]);
}

#[test]
fn merge_requests_through_the_cli() {
    let server = TestServer::start(Backend::Sqlite).expect("sqlite");
    let work = tempfile::tempdir().unwrap();
    push_mr(&server, work.path(), "one.txt");
    push_mr(&server, work.path(), "two.txt");
    let env = [("TESSERA_SERVER", server.url.as_str()), ("TESSERA_TOKEN", server.token.as_str())];
    let listed = ok(&tessera(&["mr", "list"], &env));
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let shown = ok(&tessera(&["mr", "show", "1"], &env));
    assert!(shown.starts_with("!1 ") && shown.contains("1 file(s) changed") && shown.contains("one.txt"), "{shown}");
    let json = ok(&tessera(&["mr", "show", "1", "--json"], &env));
    assert!(json.contains("one.txt") && json.contains("\"diffstat\""), "{json}");
    ok(&tessera(&["mr", "close", "2"], &env));
    assert!(ok(&tessera(&["mr", "list", "--status", "closed"], &env)).contains("!2"));
    ok(&tessera(&["mr", "reopen", "2"], &env));
    // Merging needs the token.
    let anonymous = tessera(&["mr", "merge", "1"], &[("TESSERA_SERVER", server.url.as_str())]);
    assert!(!anonymous.status.success());
    let said = String::from_utf8_lossy(&anonymous.stderr);
    assert!(said.contains("--token") && said.contains("TESSERA_TOKEN"), "{said}");
    assert!(ok(&tessera(&["mr", "merge", "1"], &env)).contains("merged"));
    assert!(ok(&tessera(&["mr", "merge", "2"], &env)).contains("merged"));
    let clone = work.path().join("check");
    git(work.path(), &["clone", "-q", &server.repo("/projects"), clone.to_str().unwrap()]);
    assert!(clone.join("one.txt").exists() && clone.join("two.txt").exists());
}

#[test]
fn import_convert_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap().to_string();
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.data_dir = data.clone();
        c.database = format!("sqlite://{}", data.join("tessera.db").display());
    })
    .expect("sqlite");
    let src = new_repo();
    write(src.path(), "a", "1\n");
    let id = commit_all(src.path(), "one");
    git(src.path(), &["push", "-q", &server.push_url("/import/lib"), "main"]);
    let out = ok(&tessera(&["import", "convert", "/import/lib", "--data-dir", &data_s], &[]));
    assert!(out.contains(&id), "{out}");
    let again = tessera(&["import", "convert", "/import/lib", "--data-dir", &data_s], &[]);
    assert!(!again.status.success(), "conversion is one-way");
}

/// Starts `tessera serve` in `dir`, returns its first stdout line, stops it.
fn serve_banner(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    use std::io::BufRead;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.arg("serve")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for var in ["TESSERA_DATA_DIR", "TESSERA_LISTEN", "TESSERA_DATABASE", "TESSERA_CONFIG"] {
        cmd.env_remove(var);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("tessera serve starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    line
}

#[test]
fn configuration_layers_flags_over_env_over_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tessera.toml"), "data_dir = \"from-file\"\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let banner = serve_banner(dir.path(), &[], &[]);
    assert!(banner.contains("listening on http://127.0.0.1:") && banner.contains("from-file"), "{banner}");
    assert!(dir.path().join("from-file/tessera.db").exists(), "SQLite database created in the data dir");
    let banner = serve_banner(dir.path(), &[], &[("TESSERA_DATA_DIR", "from-env")]);
    assert!(banner.contains("from-env"), "{banner}");
    let banner = serve_banner(dir.path(), &["--data-dir", "from-flag"], &[("TESSERA_DATA_DIR", "from-env")]);
    assert!(banner.contains("from-flag"), "{banner}");
    std::fs::write(dir.path().join("tessera.toml"), "bogus_key = 1\n").unwrap();
    let out = tessera(&["token", "list"], &[("TESSERA_CONFIG", dir.path().join("tessera.toml").to_str().unwrap())]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("bogus_key"));
}

#[test]
fn data_commands_print_no_progress_when_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let status = Command::new("sqlite3")
        .arg(&db)
        .arg("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) INSERT INTO t SELECT i, 'row ' || i FROM n;")
        .status()
        .expect("sqlite3 runs");
    assert!(status.success());
    let repo = dir.path().join("repo");
    let out = tessera(&["data", "export", db.to_str().unwrap(), repo.to_str().unwrap()], &[]);
    assert_eq!(ok(&out).trim(), "t: 20000 rows in 1 chunk(s)");
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let restored = dir.path().join("restored.db");
    let out = tessera(&["data", "import", repo.to_str().unwrap(), restored.to_str().unwrap()], &[]);
    ok(&out);
    assert!(out.stderr.is_empty());
    assert!(ok(&tessera(&["data", "verify", restored.to_str().unwrap(), repo.to_str().unwrap()], &[]))
        .contains("identical"));
    // Unsupported requests are refused clearly.
    let out = tessera(&["data", "import", repo.to_str().unwrap(), restored.to_str().unwrap()], &[]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--replace"));
}

/// A SQLite database with `t (id, v)` holding rows 1..=n.
fn sqlite_table(db: &Path, n: u32) {
    let sql = format!("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) INSERT INTO t SELECT i, 'row ' || i FROM n;");
    assert!(Command::new("sqlite3").arg(db).arg(sql).status().expect("sqlite3 runs").success());
}

fn sqlite_exec(db: &Path, sql: &str) {
    assert!(Command::new("sqlite3").arg(db).arg(sql).status().expect("sqlite3 runs").success());
}

/// Sync against a git host that wants a token, given in TESSERA_GIT_TOKEN:
/// the first sync exports, a one-row change is one commit touching one
/// chunk, and `bare` (the host's repository on disk) is the oracle.
fn sync_through_host(url: &str, token: &str, bare: &dyn Fn() -> PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
    sqlite_table(&db, 5000);
    let cache = dir.path().join("cache");
    let env = [("TESSERA_GIT_TOKEN", token), ("TESSERA_CACHE_DIR", cache.to_str().unwrap())];
    let args = ["data", "sync", db.to_str().unwrap(), url];
    assert!(ok(&tessera(&args, &env)).contains("pushed commit"));
    sqlite_exec(&db, "UPDATE t SET v = 'changed' WHERE id = 2500");
    let pushed = ok(&tessera(&args, &env));
    let head = pushed.trim().rsplit(' ').next().unwrap().to_string();
    let repo = bare();
    assert_eq!(git(&repo, &["rev-parse", "main"]).trim(), head, "the host has the new commit");
    assert_eq!(git(&repo, &["rev-list", "--count", "main"]).trim(), "2");
    assert_eq!(git(&repo, &["diff", "--name-only", "main~1", "main", "--", "data/"]).lines().count(), 1);
    assert!(ok(&tessera(&args, &env)).contains("nothing to push"));
    tessera_testkit::fsck(&repo);
    // A wrong token: no retry, and the error names the credential.
    sqlite_exec(&db, "UPDATE t SET v = 'again' WHERE id = 1");
    let wrong = [("TESSERA_GIT_TOKEN", "wrong"), ("TESSERA_CACHE_DIR", cache.to_str().unwrap())];
    let out = tessera(&args, &wrong);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("authentication failed using the token in TESSERA_GIT_TOKEN"),
        "{err}"
    );
    assert!(!err.contains("retrying"), "{err}");
    assert_eq!(git(&repo, &["rev-parse", "main"]).trim(), head);
}

#[test]
fn data_sync_against_c_git_http_backend_with_a_token() {
    let root = tempfile::tempdir().unwrap();
    git(root.path(), &["init", "-q", "--bare", "-b", "main", "data.git"]);
    let host = tessera_testkit::HttpBackend::start(root.path(), "s3cret");
    let bare = root.path().join("data.git");
    sync_through_host(&format!("{}/data.git", host.url), "s3cret", &|| bare.clone());
}

#[test]
fn data_sync_against_a_running_tessera_server() {
    let server = TestServer::start(Backend::Sqlite).expect("sqlite");
    let url = server.repo("/import/data");
    let clone_dir = tempfile::tempdir().unwrap();
    let mirror = clone_dir.path().join("mirror.git");
    let fetch_url = server.push_url("/import/data");
    sync_through_host(&url, &server.token, &|| {
        let _ = std::fs::remove_dir_all(&mirror);
        git(clone_dir.path(), &["clone", "-q", "--mirror", &fetch_url, mirror.to_str().unwrap()]);
        mirror.clone()
    });
}

#[test]
fn transient_network_failures_are_retried_then_reported() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
    sqlite_table(&db, 10);
    let cache = dir.path().join("cache");
    let env = [
        ("TESSERA_GIT_RETRIES", "3"),
        ("TESSERA_GIT_RETRY_MS", "10"),
        ("TESSERA_CACHE_DIR", cache.to_str().unwrap()),
        ("RUST_LOG", "warn"),
    ];
    let out = tessera(&["data", "export", db.to_str().unwrap(), "http://127.0.0.1:1/nowhere.git"], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    assert_eq!(err.matches("retrying in").count(), 2, "{err}");
}

#[test]
fn pushes_over_the_limit_are_split_into_several() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
    sqlite_table(&db, 60_000);
    let bare = dir.path().join("remote.git");
    git(dir.path(), &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()]);
    let url = format!("file://{}", bare.display());
    let cache = dir.path().join("cache");
    // About 1.3 MB of CSV in 64 KB chunks, pushed 300 KB at a time.
    let env = [("TESSERA_PUSH_LIMIT", "300000"), ("TESSERA_CACHE_DIR", cache.to_str().unwrap())];
    ok(&tessera(&["data", "export", db.to_str().unwrap(), &url, "--chunk-size", "64KB"], &env));
    let commits = git(&bare, &["rev-list", "--reverse", "main"]);
    let commits: Vec<&str> = commits.lines().collect();
    assert!(commits.len() >= 4, "{commits:?}");
    for c in &commits[1..commits.len() - 1] {
        // Each staging commit adds at most the limit in blobs.
        let objects = git(&bare, &["rev-list", "--objects", c, &format!("^{c}~1")]);
        let ids: Vec<&str> = objects.lines().filter_map(|l| l.split(' ').next()).collect();
        let sizes: u64 = ids
            .iter()
            .filter(|id| git(&bare, &["cat-file", "-t", id]).trim() == "blob")
            .map(|id| git(&bare, &["cat-file", "-s", id]).trim().parse::<u64>().unwrap())
            .sum();
        assert!(sizes <= 300_000, "{c}: {sizes} bytes");
    }
    let files = git(&bare, &["ls-tree", "-r", "--name-only", "main"]);
    assert!(!files.contains(".tessera-staging"), "{files}");
    assert!(git(&bare, &["ls-tree", "-r", "--name-only", "main~1"]).contains(".tessera-staging/"));
    tessera_testkit::fsck(&bare);
    let restored = dir.path().join("restored.db");
    ok(&tessera(&["data", "import", &url, restored.to_str().unwrap()], &env));
    assert!(ok(&tessera(&["data", "verify", restored.to_str().unwrap(), &url], &env)).contains("identical"));
}

/// Starts `tessera data import REPO TARGET`, kills it with SIGKILL once 20
/// chunks are committed, and checks that a re-run keeps them, ends
/// identical to the repository, and leaves no `_tessera_*` table.
/// `query` runs SQL on the target (`None` when it fails); `leftovers`
/// lists the target's tables named `_tessera%`.
fn kill_then_resume(repo: &Path, target: &str, query: &dyn Fn(&str) -> Option<String>, leftovers: &str) {
    let repo = repo.to_str().unwrap();
    let loaded = || -> u64 {
        query("SELECT count(*) FROM _tessera_import WHERE position >= 0")
            .and_then(|o| o.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["data", "import", repo, target])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while loaded() < 20 && started.elapsed() < std::time::Duration::from_secs(60) {
        assert!(child.try_wait().unwrap().is_none(), "the import ended before 20 chunks were loaded");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success(), "killed before it finished");
    let before = loaded();
    assert!(before >= 20, "{before} chunks loaded before the kill");
    let resumed = ok(&tessera(&["data", "import", repo, target], &[]));
    assert!(resumed.contains("resumed an interrupted import after"), "{resumed}");
    let n: u64 = resumed.split("after ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(n >= before, "{n} < {before}");
    assert!(ok(&tessera(&["data", "verify", target, repo], &[])).contains("identical"));
    assert_eq!(query(leftovers).unwrap_or_default().trim(), "", "no progress table left");
}

#[test]
fn a_killed_import_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    sqlite_table(&db, 200_000);
    let repo = dir.path().join("repo");
    ok(&tessera(&["data", "export", db.to_str().unwrap(), repo.to_str().unwrap(), "--chunk-size", "16KB"], &[]));
    let out = dir.path().join("out.db");
    let query = |sql: &str| -> Option<String> {
        let o = Command::new("sqlite3").arg(&out).arg(sql).output().ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    kill_then_resume(
        &repo,
        out.to_str().unwrap(),
        &query,
        "SELECT name FROM sqlite_master WHERE name LIKE '_tessera%'",
    );
}

fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_killed_postgres_import_resumes_where_it_stopped() {
    let name = format!("cli_resume_{}", std::process::id());
    if Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", "SELECT 1"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        tessera_testkit::unavailable("PostgreSQL", "psql cannot reach 127.0.0.1:5432");
        return;
    }
    psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"));
    psql("postgres", &format!("CREATE DATABASE {name}"));
    psql("postgres", &format!("DROP DATABASE IF EXISTS {name}_in"));
    psql("postgres", &format!("CREATE DATABASE {name}_in"));
    psql(&name, "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL); INSERT INTO t SELECT i, 'row ' || i FROM generate_series(1, 200000) i");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let src = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let dst = format!("postgres://postgres@127.0.0.1:5432/{name}_in");
    ok(&tessera(&["data", "export", &src, repo.to_str().unwrap(), "--chunk-size", "16KB"], &[]));
    let query = |sql: &str| -> Option<String> {
        let o = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", &format!("{name}_in"), "-qAt", "-c", sql])
            .output()
            .ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    kill_then_resume(&repo, &dst, &query, "SELECT tablename FROM pg_tables WHERE tablename LIKE '\\_tessera%'");
    psql("postgres", &format!("DROP DATABASE {name} WITH (FORCE)"));
    psql("postgres", &format!("DROP DATABASE {name}_in WITH (FORCE)"));
}

#[test]
fn a_killed_doltlite_import_resumes_and_makes_one_dolt_commit() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    let out = dir.path().join("out.db");
    // Runs a Python script with the doltlite module; `None` when it fails.
    let python = |script: &str| -> Option<String> {
        let o =
            Command::new("python3").arg("-c").arg(format!("import os, doltlite, sqlite3\n{script}")).output().ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    if python("").is_none() {
        tessera_testkit::unavailable("doltlite", "python3 cannot import doltlite (pip install doltlite)");
        return;
    }
    python(&format!(
        "c = sqlite3.connect({src:?})\n\
         c.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)')\n\
         c.executemany('INSERT INTO t VALUES (?, ?)', ((i, 'row %d' % i) for i in range(1, 600001)))\n\
         c.commit()\n\
         c.execute(\"SELECT dolt_commit('-A', '-m', 'seed')\")\n",
        src = src.to_str().unwrap()
    ))
    .expect("source filled");
    let repo = dir.path().join("repo");
    ok(&tessera(&["data", "export", src.to_str().unwrap(), repo.to_str().unwrap(), "--chunk-size", "16KB"], &[]));
    // Reads only a file that exists: connecting would create an empty one.
    let query = |sql: &str| {
        python(&format!(
            "p = {out:?}\nassert os.path.exists(p)\nfor r in sqlite3.connect(p).execute({sql:?}).fetchall(): print(*r)",
            out = out.to_str().unwrap()
        ))
    };
    kill_then_resume(
        &repo,
        out.to_str().unwrap(),
        &query,
        "SELECT name FROM sqlite_master WHERE name LIKE '_tessera%'",
    );
    let log = query("SELECT message FROM dolt_log").unwrap();
    assert_eq!(log.matches("Import from git by tessera").count(), 1, "{log}");
    let status = query("SELECT count(*) FROM dolt_status").unwrap();
    assert_eq!(status.trim(), "0", "the import is committed, progress table included in nothing");
}

/// Runs SQL with the `mysql` client as root on 127.0.0.1:3306.
fn mysql(db: Option<&str>, sql: &str) -> Option<String> {
    let mut cmd = Command::new("mysql");
    cmd.args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-N", "-B", "-e", sql]);
    if let Some(db) = db {
        cmd.arg(db);
    }
    let o = cmd.output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn a_killed_mysql_import_resumes_where_it_stopped() {
    let name = format!("cli_resume_{}", std::process::id());
    if mysql(None, "SELECT 1").is_none() {
        tessera_testkit::unavailable("MariaDB", "mysql cannot reach 127.0.0.1:3306");
        return;
    }
    for db in [name.clone(), format!("{name}_in")] {
        mysql(None, &format!("DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}")).expect("database created");
    }
    mysql(
        Some(&name),
        "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT NOT NULL); \
         CREATE TEMPORARY TABLE d (i INT); INSERT INTO d VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9); \
         CREATE TEMPORARY TABLE d2 AS SELECT * FROM d; CREATE TEMPORARY TABLE d3 AS SELECT * FROM d; \
         CREATE TEMPORARY TABLE d4 AS SELECT * FROM d; CREATE TEMPORARY TABLE d5 AS SELECT * FROM d; \
         INSERT INTO t SELECT n, CONCAT('row ', n) FROM (SELECT 1 + a.i + 10 * b.i + 100 * c.i + 1000 * e.i \
         + 10000 * f.i AS n FROM d a, d2 b, d3 c, d4 e, d5 f) x; \
         INSERT INTO t SELECT id + 100000, CONCAT('row ', id + 100000) FROM t",
    )
    .expect("source table filled");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let src = format!("mysql://root@127.0.0.1:3306/{name}");
    let dst = format!("mysql://root@127.0.0.1:3306/{name}_in");
    ok(&tessera(&["data", "export", &src, repo.to_str().unwrap(), "--chunk-size", "16KB"], &[]));
    let target = format!("{name}_in");
    let query = |sql: &str| mysql(Some(&target), sql);
    kill_then_resume(
        &repo,
        &dst,
        &query,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE '\\_tessera%'",
    );
    mysql(None, &format!("DROP DATABASE {name}; DROP DATABASE {name}_in"));
}

/// `git status --porcelain` of a work tree: empty when clean.
fn status(repo: &Path) -> String {
    git(repo, &["status", "--porcelain", "--untracked-files=all"])
}

/// A local export leaves a work tree that matches the new commit (index
/// too), is recorded as the base of the next sync (no false conflicts), and
/// a sync keeps the work tree in step; `--bare` makes a bare repository.
#[test]
fn data_export_leaves_a_clean_work_tree_and_is_a_sync_base() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
    sqlite_table(&db, 3000);
    let repo = dir.path().join("repo");
    let (db_arg, repo_arg) = (db.to_str().unwrap(), repo.to_str().unwrap());
    ok(&tessera(&["data", "export", db_arg, repo_arg, "--chunk-size", "16KB"], &[]));
    assert_eq!(status(&repo), "", "a fresh export leaves a clean work tree");
    assert!(repo.join("datapackage.json").is_file() && repo.join(".dolt-metadata/manifest.json").is_file());
    let files = git(&repo, &["ls-files", "data/t/"]);
    assert!(files.lines().count() > 2, "{files}");

    // The first sync after the export: a row changed in the database and
    // one changed in git merge without conflict (without the export as the
    // base, each side's change was the other's conflict).
    sqlite_exec(&db, "UPDATE t SET v = 'changed in the database' WHERE id = 1500");
    let chunk = git(&repo, &["grep", "-l", "^2900,", "HEAD", "--", "data/"]);
    let chunk = chunk.trim().trim_start_matches("HEAD:").to_string();
    let text = std::fs::read_to_string(repo.join(&chunk)).unwrap();
    std::fs::write(repo.join(&chunk), text.replace("2900,row 2900", "2900,changed in git")).unwrap();
    git(&repo, &["-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qam", "edit in git"]);
    let out = ok(&tessera(&["data", "sync", db_arg, repo_arg], &[]));
    assert!(out.contains("pushed commit") && out.contains("pulled 0 insert(s), 1 update(s)"), "{out}");
    assert_eq!(git(&repo, &["rev-list", "--count", "HEAD"]).trim(), "3");
    assert_eq!(status(&repo), "", "a sync keeps the work tree clean");
    assert!(git(&repo, &["grep", "-c", "changed in the database", "--", "data/"]).contains(':'));
    let one = |sql: &str| {
        let out = Command::new("sqlite3").arg(&db).arg(sql).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(one("SELECT v FROM t WHERE id = 2900"), "changed in git");

    // Uncommitted work in the work tree is never overwritten.
    std::fs::write(repo.join("notes.txt"), "mine").unwrap();
    sqlite_exec(&db, "UPDATE t SET v = 'again' WHERE id = 10");
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let out = tessera(&["data", "sync", db_arg, repo_arg], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("changes in its work tree") && err.contains("notes.txt"), "{err}");
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), head);
    std::fs::remove_file(repo.join("notes.txt")).unwrap();
    ok(&tessera(&["data", "sync", db_arg, repo_arg], &[]));
    assert_eq!(status(&repo), "");

    // --bare: no work tree at all. A sync right after the export, with no
    // change, makes no commit.
    let bare = dir.path().join("bare");
    ok(&tessera(&["data", "export", db_arg, bare.to_str().unwrap(), "--bare"], &[]));
    assert_eq!(git(&bare, &["rev-parse", "--is-bare-repository"]).trim(), "true");
    let exported = git(&bare, &["rev-parse", "HEAD"]);
    assert!(ok(&tessera(&["data", "sync", db_arg, bare.to_str().unwrap()], &[])).contains("nothing to push"));
    assert_eq!(git(&bare, &["rev-parse", "HEAD"]), exported);
    sqlite_exec(&db, "DELETE FROM t WHERE id = 7");
    assert!(ok(&tessera(&["data", "sync", db_arg, bare.to_str().unwrap()], &[])).contains("pushed commit"));
    assert!(!git(&bare, &["show", "HEAD:data/t/t_000001.csv"]).contains("\n7,row 7\n"));
    let out = tessera(&["data", "export", db_arg, repo_arg, "--bare"], &[]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("work tree"));
}

/// A table another database added to the repository is created by the
/// next sync of the first (it failed, naming a commit id as a branch).
#[test]
fn data_sync_creates_a_table_added_on_the_repository_side() {
    let dir = tempfile::tempdir().unwrap();
    let (db1, db2) = (dir.path().join("one.sqlite"), dir.path().join("two.sqlite"));
    sqlite_table(&db1, 100);
    let repo = dir.path().join("repo");
    let repo_arg = repo.to_str().unwrap();
    ok(&tessera(&["data", "export", db1.to_str().unwrap(), repo_arg], &[]));
    // The second database starts from the repository and adds a table.
    assert!(ok(&tessera(&["data", "sync", db2.to_str().unwrap(), repo_arg], &[])).contains("t: created"));
    sqlite_exec(&db2, "CREATE TABLE u (id INTEGER PRIMARY KEY, name TEXT NOT NULL); INSERT INTO u VALUES (1, 'new');");
    assert!(ok(&tessera(&["data", "sync", db2.to_str().unwrap(), repo_arg], &[])).contains("pushed commit"));
    let out = ok(&tessera(&["data", "sync", db1.to_str().unwrap(), repo_arg], &[]));
    assert!(out.contains("u: created from the repository"), "{out}");
    assert!(ok(&tessera(&["data", "verify", db1.to_str().unwrap(), repo_arg], &[])).contains("2 table(s) identical"));
    assert_eq!(status(&repo), "");
}

/// An export to a new repository on a host that refused the credential
/// leaves nothing behind in the cache that stops the rerun with the right
/// one; the same for an existing repository behind C git's http-backend.
#[test]
fn a_failed_remote_export_does_not_poison_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
    sqlite_table(&db, 50);
    let cache = dir.path().join("cache");
    let server = TestServer::start(Backend::Sqlite).expect("sqlite");
    let root = tempfile::tempdir().unwrap();
    git(root.path(), &["init", "-q", "--bare", "-b", "main", "data.git"]);
    let host = tessera_testkit::HttpBackend::start(root.path(), "s3cret");
    let hosts = [
        (server.repo("/import/fresh"), server.token.clone(), server.push_url("/import/fresh")),
        (format!("{}/data.git", host.url), "s3cret".to_string(), root.path().join("data.git").display().to_string()),
    ];
    for (url, token, read_url) in hosts {
        let args = ["data", "export", db.to_str().unwrap(), &url];
        let wrong = [("TESSERA_GIT_TOKEN", "wrong"), ("TESSERA_CACHE_DIR", cache.to_str().unwrap())];
        let out = tessera(&args, &wrong);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("authentication failed"), "{url}: {err}");
        let right = [("TESSERA_GIT_TOKEN", token.as_str()), ("TESSERA_CACHE_DIR", cache.to_str().unwrap())];
        ok(&tessera(&args, &right));
        let clone = dir.path().join(format!("clone-{}", url.len()));
        git(dir.path(), &["clone", "-q", &read_url, clone.to_str().unwrap()]);
        assert!(std::fs::read_to_string(clone.join("data/t/t_000001.csv")).unwrap().contains("50,row 50"));
        assert_eq!(git(&clone, &["rev-list", "--count", "HEAD"]).trim(), "1", "{url}: only the export that worked");
    }
}

#[test]
fn every_configuration_key_can_be_set_in_the_environment() {
    // One sample per key of tessera.toml: the variable's value, and what
    // `config show` prints for it. A new key without a sample fails here.
    let samples: &[(&str, &str, &str)] = &[
        ("data_dir", "/tmp/x-data", "data_dir = \"/tmp/x-data\""),
        ("listen", "127.0.0.1:9999", "listen = \"127.0.0.1:9999\""),
        ("ssh_listen", "127.0.0.1:2222", "ssh_listen = \"127.0.0.1:2222\""),
        ("public_url", "https://git.example.com", "public_url = \"https://git.example.com\""),
        ("database", "postgres://u@h/db", "database = \"postgres://u@h/db\""),
        ("import_roots", "/import, /vendor", "import_roots = [\"/import\", \"/vendor\"]"),
        ("require_token_for_reads", "true", "require_token_for_reads = true"),
        ("packs_in_database", "true", "storage = \"database\""),
        ("storage", "s3://tessera-test/objects", "storage = \"s3://tessera-test/objects\""),
        ("s3_endpoint", "http://127.0.0.1:9000", "s3_endpoint = \"http://127.0.0.1:9000\""),
        ("s3_region", "eu-west-1", "s3_region = \"eu-west-1\""),
        ("s3_allow_http", "true", "s3_allow_http = true"),
        ("lfs_presigned_downloads", "true", "lfs_presigned_downloads = true"),
        ("webhooks_allow_private", "true", "webhooks_allow_private = true"),
        ("webhook_retry_secs", "3", "webhook_retry_secs = 3"),
        ("max_push_bytes", "12345", "max_push_bytes = 12345"),
        ("max_clone_objects", "777", "max_clone_objects = 777"),
        ("max_object_bytes", "4096", "max_object_bytes = 4096"),
        ("max_db_connections", "3", "max_db_connections = 3"),
        ("merge_buffer_bytes", "1048576", "merge_buffer_bytes = 1048576"),
        ("request_timeout_secs", "7", "request_timeout_secs = 7"),
        ("lfs_max_object_bytes", "1000", "lfs_max_object_bytes = 1000"),
        ("lfs_verify_pushes", "false", "lfs_verify_pushes = false"),
        ("blink_threshold", "1000000", "blink_threshold = 1000000"),
        (
            "fsck",
            "badFilemode=ignore,missingTaggerEntry=error",
            "fsck = \"badFilemode=ignore,missingTaggerEntry=error\"",
        ),
    ];
    let keys = ok(&tessera(&["config", "keys"], &[]));
    for line in keys.lines() {
        let (key, var) = line.split_once('\t').unwrap();
        assert_eq!(var, format!("TESSERA_{}", key.to_uppercase()));
        let (_, value, shown) = samples
            .iter()
            .find(|(k, _, _)| *k == key)
            .unwrap_or_else(|| panic!("no sample for {key}: add one, and check that {var} works"));
        // S3 options apply to S3 storage only.
        let mut env = vec![(var, *value)];
        if key.starts_with("s3_") || key == "lfs_presigned_downloads" {
            env.push(("TESSERA_STORAGE", "s3://tessera-test"));
        }
        let out = ok(&tessera(&["config", "show"], &env));
        assert!(out.contains(shown), "{var}={value}:\n{out}");
    }
    assert_eq!(keys.lines().count(), samples.len(), "{keys}");
    // A value of the wrong kind is an error naming the variable's source.
    let out = tessera(&["config", "show"], &[("TESSERA_MAX_PUSH_BYTES", "lots")]);
    assert!(!out.status.success());
    // A merge buffer too small to be a buffer, or too large to be a bound.
    for bad in ["100", "2147483648"] {
        let out = tessera(&["config", "show"], &[("TESSERA_MERGE_BUFFER_BYTES", bad)]);
        assert!(!out.status.success(), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("merge_buffer_bytes must be"), "{bad}");
    }
}
