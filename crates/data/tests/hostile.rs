//! Hostile repositories (issue 14): metadata that smuggles SQL into DDL
//! fields or expressions, names columns that do not exist, records absurd
//! sizes, or ships a decompression bomb. Each import is refused with an
//! error naming what was wrong, and leaves the target database exactly as
//! it was (its table list and an unrelated table's rows), on SQLite and
//! PostgreSQL. Old repositories, whose metadata carries DDL text, import.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::Value as Json;
use tessera_data::layout::Compression;
use tessera_data::ops::{self, ImportOptions};

use super::mysql::MyDb;
use super::postgres::PgDb;
use super::{git, opts, rand_suffix};

/// Commits on a new branch `branch` (from `main`) what `edit` does to a
/// clone's work tree.
fn on_branch(repo: &Path, branch: &str, edit: impl FnOnce(&Path)) {
    let work = repo.parent().unwrap().join(format!("work-{branch}-{}", rand_suffix()));
    git(repo.parent().unwrap(), &["clone", "-q", "-b", "main", repo.to_str().unwrap(), work.to_str().unwrap()]);
    git(&work, &["checkout", "-q", "-b", branch]);
    edit(&work);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", &format!("hostile: {branch}")]);
    git(&work, &["push", "-q", "origin", branch]);
    std::fs::remove_dir_all(&work).unwrap();
}

/// Rewrites a JSON file of a work tree.
fn edit_json(work: &Path, file: &str, edit: impl FnOnce(&mut Json)) {
    let path = work.join(file);
    let mut v: Json = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// The tables an import loaded, with their rows.
fn tables(report: &ops::ImportReport) -> Vec<(String, u64)> {
    report.tables.iter().map(|t| (t.table.clone(), t.rows)).collect()
}

fn import_branch(branch: &str) -> ImportOptions {
    ImportOptions { tables: None, branch: Some(branch.into()), replace: false, progress: Default::default() }
}

/// A target database with an unrelated table `keep` (and, for `--replace`
/// cases, a table `t` named like the imported one).
trait Target {
    fn url(&self) -> String;
    /// Every table (and sequence) and the rows of `keep` and `t`.
    fn snapshot(&self) -> String;
}

struct Lite {
    path: PathBuf,
}

impl Lite {
    /// With a table `t` to replace when `with_t`.
    fn new(dir: &Path, with_t: bool) -> Lite {
        let path = dir.join(format!("target-{}.db", rand_suffix()));
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE keep (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO keep VALUES (1, 'precious'), (2, 'data');",
        )
        .unwrap();
        if with_t {
            conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (7, 'old t');")
                .unwrap();
        }
        Lite { path }
    }
}

impl Target for Lite {
    fn url(&self) -> String {
        self.path.to_str().unwrap().to_string()
    }
    fn snapshot(&self) -> String {
        let conn = Connection::open(&self.path).unwrap();
        let mut out = String::new();
        // Not SQLite's own sqlite_sequence, which creating an AUTOINCREMENT
        // table makes and which cannot be dropped again (its rows are).
        let mut stmt = conn
            .prepare(
                "SELECT type, name, coalesce(sql, '') FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .unwrap();
        let rows = stmt.query_map([], |r| {
            Ok(format!("{}|{}|{}\n", r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        });
        for r in rows.unwrap() {
            out.push_str(&r.unwrap());
        }
        for table in ["keep", "t"] {
            let exists: bool = conn
                .query_row("SELECT count(*) > 0 FROM sqlite_master WHERE name = ?1", [table], |r| r.get(0))
                .unwrap();
            if !exists {
                continue;
            }
            let mut stmt = conn.prepare(&format!("SELECT id, v FROM {table} ORDER BY id")).unwrap();
            let rows =
                stmt.query_map([], |r| Ok(format!("{table}: {} {}\n", r.get::<_, i64>(0)?, r.get::<_, String>(1)?)));
            for r in rows.unwrap() {
                out.push_str(&r.unwrap());
            }
        }
        // ATTACH creates files next to the database.
        let dir = self.path.parent().unwrap();
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".db") || n.contains("attached"))
            .collect();
        files.sort();
        out.push_str(&files.join(","));
        out
    }
}

struct Pg {
    db: PgDb,
}

impl Pg {
    /// With a table `t` to replace when `with_t`.
    fn new(with_t: bool) -> Option<Pg> {
        let db = PgDb::postgres()?;
        db.sql(
            "CREATE TABLE keep (id serial PRIMARY KEY, v text); INSERT INTO keep (v) VALUES ('precious'), ('data');",
        );
        if with_t {
            db.sql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (7, 'old t');");
        }
        Some(Pg { db })
    }
}

impl Target for Pg {
    fn url(&self) -> String {
        self.db.url()
    }
    fn snapshot(&self) -> String {
        self.db.sql(
            "SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
        ) + &self.db.sql("SELECT string_agg(id || ' ' || v, ',' ORDER BY id) FROM keep")
            + &self.db.sql("SELECT CASE WHEN to_regclass('t') IS NULL THEN '' ELSE query_to_xml('SELECT * FROM t ORDER BY id', false, false, '')::text END")
            + &self.db.sql("SELECT last_value || ' ' || is_called FROM keep_id_seq")
    }
}

/// Imports `branch` into `target` (with `--replace` when `replace`),
/// expects a refusal whose message contains `expected`, and the target
/// unchanged.
fn refused(repo: &Path, branch: &str, target: &dyn Target, replace: bool, expected: &str) {
    let before = target.snapshot();
    let options = ImportOptions { replace, ..import_branch(branch) };
    let err = match ops::import(repo, &target.url(), &options) {
        Ok(report) => panic!("{branch}: imported {:?}", report.tables),
        Err(e) => tessera_data::report(&e),
    };
    assert!(err.contains(expected), "{branch}: {err:?} does not mention {expected:?}");
    assert_eq!(target.snapshot(), before, "{branch}: the target changed ({err})");
}

const TABLE: &str = ".dolt-metadata/tables/t.json";

/// The hostile edits every engine is tried with: (branch, edit of the
/// table metadata, what the error names).
type Edit = Box<dyn Fn(&mut Json)>;

fn common_cases() -> Vec<(&'static str, Edit, &'static str)> {
    vec![
        (
            "default-injection",
            Box::new(|m| m["schema"]["columns"][1]["default"] = "'x' ); DROP TABLE keep; --".into()),
            "schema.columns[1].default",
        ),
        ("default-comment", Box::new(|m| m["schema"]["columns"][1]["default"] = "'x' -- hidden".into()), "comment"),
        (
            "default-function",
            Box::new(|m| m["schema"]["columns"][1]["default"] = "load_extension('evil')".into()),
            "load_extension",
        ),
        (
            "check-subquery",
            Box::new(|m| {
                m["schema"]["checks"] = serde_json::json!([{ "expr": "(SELECT count(*) FROM keep) > 0" }]);
            }),
            "subqueries are not accepted",
        ),
        (
            "type-injection",
            Box::new(|m| m["schema"]["columns"][1]["type"] = "TEXT, x INT); DROP TABLE keep; --".into()),
            "schema.columns[1].type",
        ),
        (
            "declared-type-injection",
            Box::new(|m| m["columns"][1]["declared_type"] = "text; DROP TABLE keep".into()),
            "columns[1].declared_type",
        ),
        (
            "index-expression",
            Box::new(|m| {
                m["schema"]["indexes"] =
                    serde_json::json!([{ "name": "i", "keys": [{ "expr": "v) ; DROP TABLE keep ; --" }] }]);
            }),
            "schema.indexes[0].keys[0]",
        ),
        ("pk-missing-column", Box::new(|m| m["primary_key"] = serde_json::json!(["nope"])), "primary_key: \"nope\""),
        (
            "schema-pk-missing-column",
            Box::new(|m| m["schema"]["primary_key"]["columns"] = serde_json::json!(["nope"])),
            "\"nope\" is not a column",
        ),
        ("negative-rows", Box::new(|m| m["rows"] = (-5).into()), "invalid value"),
        (
            "absurd-uncompressed-bytes",
            Box::new(|m| m["chunks"][0]["uncompressed_bytes"] = (1u64 << 40).into()),
            "uncompressed_bytes",
        ),
        ("absurd-chunk-rows", Box::new(|m| m["chunks"][0]["rows"] = u64::MAX.into()), "rows"),
        ("rows-disagree", Box::new(|m| m["rows"] = 1_000_000.into()), "rows"),
        ("absurd-name", Box::new(|m| m["columns"][0]["name"] = "x".repeat(100_000).into()), "bytes"),
        ("chunk-outside-table", Box::new(|m| m["chunks"][0]["file"] = "data/keep/../t/x.csv".into()), "chunks[0].file"),
    ]
}

/// Legacy metadata: no `schema`, so the DDL text is parsed; extra
/// statements are refused.
fn legacy(edit: impl Fn(&mut Json) + 'static) -> Edit {
    Box::new(move |m| {
        m.as_object_mut().unwrap().remove("schema");
        edit(m)
    })
}

fn sqlite_legacy_cases() -> Vec<(&'static str, Edit, &'static str)> {
    vec![
        (
            "create-sql-extra-statement",
            legacy(|m| {
                let create = m["create_sql"].as_str().unwrap().to_string();
                m["create_sql"] = format!("{create}; DROP TABLE keep").into();
            }),
            "create_sql: DROP TABLE",
        ),
        (
            "create-sql-attach",
            legacy(|m| {
                let create = m["create_sql"].as_str().unwrap().to_string();
                m["create_sql"] = format!("ATTACH DATABASE 'attached.db' AS x; {create}").into();
            }),
            "create_sql",
        ),
        (
            "create-sql-other-table",
            legacy(|m| m["create_sql"] = "CREATE TABLE keep2 (id INTEGER PRIMARY KEY, v TEXT)".into()),
            "not for the table \"t\"",
        ),
        (
            "index-sql-extra-statement",
            legacy(|m| m["indexes"][0]["sql"] = "CREATE INDEX t_v ON t (v); DROP TABLE keep".into()),
            "indexes[0].sql",
        ),
        (
            "index-sql-other-table",
            legacy(|m| m["indexes"][0]["sql"] = "CREATE INDEX keep_v ON keep (v)".into()),
            "indexes[0].sql",
        ),
    ]
}

fn postgres_legacy_cases() -> Vec<(&'static str, Edit, &'static str)> {
    vec![
        (
            "pg-create-sql-extra-statement",
            legacy(|m| {
                let create = m["create_sql"].as_str().unwrap().to_string();
                m["create_sql"] = format!("{create}; DROP TABLE keep").into();
            }),
            "create_sql: DROP TABLE",
        ),
        (
            "post-sql-extra-element",
            legacy(|m| m["post_sql"].as_array_mut().unwrap().push("DROP TABLE keep".into())),
            "post_sql[",
        ),
        (
            "post-sql-extra-statement",
            legacy(|m| {
                let first = m["post_sql"][0].as_str().unwrap().to_string();
                m["post_sql"][0] = format!("{first}; DROP TABLE keep").into();
            }),
            "post_sql[0]",
        ),
        (
            "post-sql-setval-other-table",
            legacy(|m| {
                m["post_sql"]
                    .as_array_mut()
                    .unwrap()
                    .push("SELECT setval(pg_get_serial_sequence('keep', 'id'), 99, true)".into())
            }),
            "post_sql[",
        ),
        (
            "post-sql-function",
            legacy(|m| m["post_sql"].as_array_mut().unwrap().push("SELECT pg_terminate_backend(1)".into())),
            "post_sql[",
        ),
        (
            "pg-nextval-other-sequence",
            Box::new(|m| m["schema"]["columns"][1]["default"] = "nextval('keep_id_seq'::regclass)".into()),
            "not a sequence of this table",
        ),
    ]
}

/// A source with table `t` (id, v, n), an index and a check, exported
/// into `dir/repo`.
fn sqlite_repo(dir: &Path, compression: Compression) -> PathBuf {
    let src = dir.join("src.db");
    Connection::open(&src)
        .unwrap()
        .execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT DEFAULT 'none', n INTEGER CHECK (n >= 0));
             CREATE INDEX t_v ON t (v);
             INSERT INTO t (v, n) VALUES ('a', 1), ('b', 2), ('c', 3);",
        )
        .unwrap();
    let repo = dir.join("repo");
    ops::export(src.to_str().unwrap(), &repo, &ops::ExportOptions { compression, ..opts(50 << 20) }).unwrap();
    git(&repo, &["config", "receive.denyCurrentBranch", "updateInstead"]);
    repo
}

fn postgres_repo(dir: &Path, src: &PgDb) -> PathBuf {
    postgres_repo_with(dir, src, Compression::None)
}

fn postgres_repo_with(dir: &Path, src: &PgDb, compression: Compression) -> PathBuf {
    src.sql(
        "CREATE TABLE t (id serial PRIMARY KEY, v text DEFAULT 'none', n int CHECK (n >= 0));
         CREATE INDEX t_v ON t (v);
         INSERT INTO t (v, n) VALUES ('a', 1), ('b', 2), ('c', 3);",
    );
    let repo = dir.join("repo");
    ops::export(&src.url(), &repo, &ops::ExportOptions { compression, ..opts(50 << 20) }).unwrap();
    git(&repo, &["config", "receive.denyCurrentBranch", "updateInstead"]);
    repo
}

fn run_cases(repo: &Path, cases: Vec<(&'static str, Edit, &'static str)>, target: &dyn Target) {
    for (branch, edit, expected) in cases {
        on_branch(repo, branch, |work| edit_json(work, TABLE, edit));
        refused(repo, branch, target, false, expected);
        // Replacing an existing table is one transaction: refused as well,
        // the old table kept.
        refused(repo, branch, target, true, expected);
    }
}

#[test]
fn hostile_metadata_is_refused_and_changes_nothing_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let repo = sqlite_repo(dir.path(), Compression::None);
    let target = Lite::new(dir.path(), true);
    let mut cases = common_cases();
    cases.extend(sqlite_legacy_cases());
    run_cases(&repo, cases, &target);
    // Manifest sizes.
    on_branch(&repo, "absurd-chunk-limit", |work| {
        edit_json(work, ".dolt-metadata/manifest.json", |m| m["chunking"]["max_chunk_bytes"] = (1u64 << 50).into())
    });
    refused(&repo, "absurd-chunk-limit", &target, false, "max_chunk_bytes");
    // The untouched export still imports (into a fresh database).
    let fresh = dir.path().join("fresh.db");
    ops::import(&repo, fresh.to_str().unwrap(), &import_branch("main")).unwrap();
}

#[test]
fn hostile_metadata_is_refused_and_changes_nothing_in_postgres() {
    let Some(src) = PgDb::postgres() else { return };
    let Some(target) = Pg::new(true) else { return };
    let dir = tempfile::tempdir().unwrap();
    let repo = postgres_repo(dir.path(), &src);
    let mut cases = common_cases();
    cases.retain(|(b, _, _)| *b != "default-function");
    cases.extend(postgres_legacy_cases());
    run_cases(&repo, cases, &target);
    let Some(fresh) = PgDb::postgres() else { return };
    ops::import(&repo, &fresh.url(), &import_branch("main")).unwrap();
    assert_eq!(fresh.sql("SELECT string_agg(v, ',' ORDER BY id) FROM t").trim(), "a,b,c");
}

struct My {
    db: MyDb,
}

impl Target for My {
    fn url(&self) -> String {
        self.db.url()
    }
    fn snapshot(&self) -> String {
        self.db.sql("SHOW FULL TABLES")
            + &self.db.sql("SELECT id, v FROM keep ORDER BY id")
            + &self.db.sql(
                "SELECT COALESCE(GROUP_CONCAT(CONCAT(id, ' ', v) ORDER BY id), '') FROM t \
                 WHERE (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 't') > 0",
            )
    }
}

/// MySQL imports generate their DDL too: the same hostile metadata is
/// refused, and the MySQL target (tables and rows) is left as it was.
#[test]
fn hostile_metadata_is_refused_and_changes_nothing_in_mysql() {
    let Some(src) = MyDb::mysql() else { return };
    let Some(db) = MyDb::mysql() else { return };
    db.sql("CREATE TABLE keep (id int AUTO_INCREMENT PRIMARY KEY, v text); INSERT INTO keep (v) VALUES ('precious'), ('data');");
    db.sql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (7, 'old t');");
    let target = My { db };
    src.sql(
        "CREATE TABLE t (id int AUTO_INCREMENT PRIMARY KEY, v varchar(20) DEFAULT 'none', n int CHECK (n >= 0), KEY t_v (v));
         INSERT INTO t (v, n) VALUES ('a', 1), ('b', 2), ('c', 3);",
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ops::export(&src.url(), &repo, &opts(50 << 20)).unwrap();
    git(&repo, &["config", "receive.denyCurrentBranch", "updateInstead"]);
    let mut cases = common_cases();
    cases.push((
        "mysql-create-sql-extra-statement",
        legacy(|m| {
            let create = m["create_sql"].as_str().unwrap().to_string();
            m["create_sql"] = format!("{create}; DROP TABLE keep").into();
        }),
        "create_sql: DROP TABLE",
    ));
    cases.push((
        "mysql-backslash-escape",
        Box::new(|m| m["schema"]["columns"][1]["default"] = "'x\\' , y INT) ; DROP TABLE keep ; --".into()),
        "schema.columns[1].default",
    ));
    run_cases(&repo, cases, &target);
    let Some(fresh) = MyDb::mysql() else { return };
    ops::import(&repo, &fresh.url(), &import_branch("main")).unwrap();
    assert_eq!(fresh.sql("SELECT GROUP_CONCAT(v ORDER BY id) FROM t").trim(), "a,b,c");
}

/// `data sync` against a database holding `t (id, v)` with two rows, whose
/// state `snapshot` shows: a branch whose metadata names a key column `t`
/// does not have is refused (it was a panic), and so is a branch adding a
/// table `u` whose legacy DDL drops `t`; the database is unchanged.
fn sync_refuses_hostile_branches(database: &str, snapshot: &dyn Fn() -> String) {
    use tessera_data::sync::{self, Direction, OnConflict, SyncOptions};
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let target = tessera_data::Repository { path: repo.clone(), remote: None };
    let options = |branch: &str| SyncOptions {
        direction: Direction::Both,
        on_conflict: OnConflict::Fail,
        branch: Some(branch.into()),
        repo_id: "hostile".into(),
        export: Some(opts(1 << 20)),
    };
    sync::sync(database, &target, &options("main")).unwrap();
    git(&repo, &["config", "receive.denyCurrentBranch", "updateInstead"]);
    on_branch(&repo, "pk-missing", |work| edit_json(work, TABLE, |m| m["primary_key"] = serde_json::json!(["nope"])));
    on_branch(&repo, "new-table-drops-t", |work| {
        let chunk = git(work, &["ls-files", "data/t/"]).trim().to_string();
        std::fs::create_dir_all(work.join("data/u")).unwrap();
        std::fs::copy(work.join(&chunk), work.join("data/u/u_000001.csv")).unwrap();
        let mut meta: Json = serde_json::from_slice(&std::fs::read(work.join(TABLE)).unwrap()).unwrap();
        meta["name"] = "u".into();
        meta["chunks"][0]["file"] = "data/u/u_000001.csv".into();
        meta.as_object_mut().unwrap().remove("schema");
        let create = meta["create_sql"].as_str().unwrap().replace("\"t\"", "\"u\"").replace("TABLE t ", "TABLE u ");
        meta["create_sql"] = format!("{create}; DROP TABLE t").into();
        std::fs::write(work.join(".dolt-metadata/tables/u.json"), serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
        edit_json(work, ".dolt-metadata/manifest.json", |m| m["tables"].as_array_mut().unwrap().push("u".into()));
    });
    for (branch, expected) in [("pk-missing", "primary_key: \"nope\""), ("new-table-drops-t", "create_sql: DROP TABLE")]
    {
        let before = snapshot();
        let err = sync::sync(database, &target, &options(branch)).unwrap_err().to_string();
        assert!(err.contains(expected), "{branch}: {err}");
        assert_eq!(snapshot(), before, "{branch}");
    }
    // A well-formed new table is created by the sync, from the commit it merged.
    on_branch(&repo, "new-table", |work| {
        let chunk = git(work, &["ls-files", "data/t/"]).trim().to_string();
        std::fs::create_dir_all(work.join("data/u")).unwrap();
        std::fs::copy(work.join(&chunk), work.join("data/u/u_000001.csv")).unwrap();
        let mut meta: Json = serde_json::from_slice(&std::fs::read(work.join(TABLE)).unwrap()).unwrap();
        meta["name"] = "u".into();
        meta["chunks"][0]["file"] = "data/u/u_000001.csv".into();
        if meta["schema"]["primary_key"]["name"].is_string() {
            meta["schema"]["primary_key"]["name"] = "u_pkey".into();
        }
        std::fs::write(work.join(".dolt-metadata/tables/u.json"), serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
        edit_json(work, ".dolt-metadata/manifest.json", |m| m["tables"].as_array_mut().unwrap().push("u".into()));
    });
    let report = sync::sync(database, &target, &options("new-table")).unwrap();
    assert_eq!(report.created, ["u"]);
}

#[test]
fn sync_refuses_hostile_branches_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');")
        .unwrap();
    let lite = Lite { path: db.clone() };
    sync_refuses_hostile_branches(db.to_str().unwrap(), &|| lite.snapshot() + &format!("{:?}", super::dump(&db)));
}

#[test]
fn sync_refuses_hostile_branches_in_postgres() {
    let Some(db) = PgDb::postgres() else { return };
    db.sql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b');");
    let snapshot = || {
        db.sql(
            "SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
        ) + &db.sql("SELECT string_agg(id || ' ' || v, ',' ORDER BY id) FROM t")
    };
    sync_refuses_hostile_branches(&db.url(), &snapshot);
}

/// Repositories exported before metadata described schemas as data (the
/// bundles in tests/fixtures, made by make_legacy.sh with that code): the
/// DDL text is parsed, and the tables come back with their keys, checks,
/// defaults, indexes and sequence positions.
#[test]
fn legacy_sqlite_repository_imports() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("legacy");
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-sqlite.bundle");
    git(dir.path(), &["clone", "-q", "--bare", bundle.to_str().unwrap(), repo.to_str().unwrap()]);
    let out = dir.path().join("out.db");
    let report = ops::import(&repo, out.to_str().unwrap(), &import_branch("main")).unwrap();
    assert_eq!(tables(&report), [("child".to_string(), 2), ("kinds".to_string(), 2)]);
    assert!(ops::verify(out.to_str().unwrap(), &repo, Some("main")).unwrap().iter().all(|d| d.same_content));
    let conn = Connection::open(&out).unwrap();
    let one = |sql: &str| -> String { conn.query_row(sql, [], |r| r.get::<_, String>(0)).unwrap() };
    assert_eq!(
        one("SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_index_list('kinds') ORDER BY name)"),
        "kinds_lower_t,kinds_r,sqlite_autoindex_kinds_1"
    );
    assert_eq!(one("SELECT CAST(sql LIKE '%AUTOINCREMENT%' AS TEXT) FROM sqlite_master WHERE name = 'kinds'"), "1");
    // AUTOINCREMENT continues after the deleted id 3, defaults apply, the check holds.
    conn.execute("INSERT INTO kinds (label) VALUES ('four')", []).unwrap();
    assert_eq!(one("SELECT id || ' ' || (created IS NOT NULL) FROM kinds WHERE label = 'four'"), "4 1");
    assert!(conn.execute("INSERT INTO kinds (label) VALUES (printf('%.200c', 'x'))", []).is_err(), "the check holds");
    assert_eq!(one("SELECT \"table\" || ' ' || \"from\" || ' ' || \"to\" || ' ' || on_delete FROM pragma_foreign_key_list('child')"), "kinds kind_id id CASCADE");
    assert_eq!(one("SELECT CAST(sql LIKE '%WITHOUT ROWID%' AS TEXT) FROM sqlite_master WHERE name = 'child'"), "1");
}

#[test]
fn legacy_postgres_repository_imports() {
    let Some(dst) = PgDb::postgres() else { return };
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("legacy");
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-postgres.bundle");
    git(dir.path(), &["clone", "-q", "--bare", bundle.to_str().unwrap(), repo.to_str().unwrap()]);
    let report = ops::import(&repo, &dst.url(), &import_branch("main")).unwrap();
    assert_eq!(tables(&report), [("kinds".to_string(), 3), ("parent".to_string(), 2)]);
    assert!(ops::verify(&dst.url(), &repo, Some("main")).unwrap().iter().all(|d| d.same_content));
    // Sequence positions: serial after the deleted 3, identity after 100.
    assert_eq!(dst.sql("INSERT INTO parent (name) VALUES ('d') RETURNING id").trim(), "4");
    assert_eq!(dst.sql("INSERT INTO kinds (t) VALUES ('next') RETURNING id").trim(), "3");
    assert!(dst.sql("SELECT indexdef FROM pg_indexes WHERE indexname = 'kinds_t'").contains("lower(t)"));
    assert!(dst.sql("SELECT indexdef FROM pg_indexes WHERE indexname = 'kinds_vc'").contains("WHERE (vc IS NOT NULL)"));
    assert_eq!(
        dst.sql("SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE contype = 'c' AND conrelid = 'kinds'::regclass").trim(),
        "kinds_qty_check,kinds_status_check"
    );
    assert_eq!(dst.sql("SELECT confdeltype FROM pg_constraint WHERE contype = 'f'").trim(), "n");
    assert_eq!(dst.sql("SELECT count(*) FROM pg_depend d JOIN pg_class s ON s.oid = d.objid WHERE s.relname = 'parent_id_seq' AND d.deptype = 'a'").trim(), "1");
    let check = psql_err(&dst, "INSERT INTO kinds (qty) VALUES (-1)");
    assert!(check.contains("kinds_qty_check"), "{check}");
    assert_eq!(dst.sql("SELECT qty || ' ' || (ts IS NOT NULL) FROM kinds WHERE t = 'next'").trim(), "0 true");
}

fn psql_err(db: &PgDb, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db.name(), "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------
// Decompression bombs

/// Writes to `path` 1 GiB of zeros after a valid header and row,
/// compressed as a stream (never 1 GiB in memory).
fn bomb(compression: Compression, path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let mut w: Box<dyn Write> = match compression {
        Compression::Gzip => Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::default())),
        Compression::Zstd => Box::new(zstd::stream::write::Encoder::new(file, 3).unwrap().auto_finish()),
        Compression::None => unreachable!("a bomb is compressed"),
    };
    w.write_all(BOMB_HEAD).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        w.write_all(&zeros).unwrap();
    }
    w.flush().unwrap();
}

const BOMB_HEAD: &[u8] = b"id,v,n\n1,a,1\n";

/// Replaces `t`'s only chunk with the bomb at `bomb`. `forged`: the
/// metadata is rewritten to match it (checksum, blob, and a small
/// recorded size), so the chunk counts as exported, not edited.
fn commit_bomb(repo: &Path, branch: &str, bomb: &Path, forged: bool) {
    let file = git(repo, &["ls-tree", "-r", "--name-only", "main", "data/t/"]).trim().to_string();
    on_branch(repo, branch, |work| {
        std::fs::copy(bomb, work.join(&file)).unwrap();
        if forged {
            use sha2::Digest;
            let data = std::fs::read(bomb).unwrap();
            let blob = git(work, &["hash-object", &file]).trim().to_string();
            edit_json(work, TABLE, |m| {
                let c = &mut m["chunks"][0];
                c["sha256"] = hex::encode(sha2::Sha256::digest(&data)).into();
                c["git_blob"] = blob.into();
                c["bytes"] = data.len().into();
                c["uncompressed_bytes"] = BOMB_HEAD.len().into();
            });
        }
    });
}

/// The child side of [`bombs_are_refused_in_bounded_memory`]: imports the
/// branch its environment names and prints the error.
#[test]
fn bomb_child() {
    let (Ok(repo), Ok(db), Ok(branch)) =
        (std::env::var("BOMB_REPO"), std::env::var("BOMB_DB"), std::env::var("BOMB_BRANCH"))
    else {
        return;
    };
    match ops::import(Path::new(&repo), &db, &import_branch(&branch)) {
        Ok(_) => println!("IMPORTED"),
        Err(e) => println!("REFUSED: {e}"),
    }
    // The process's own peak, as the kernel counts it since exec.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim();
    println!("PEAK {peak}");
}

/// Imports in a child process (this test binary running [`bomb_child`]);
/// returns its output and its peak RSS in bytes, as the child read its own
/// `VmHWM`. (`wait4`'s `ru_maxrss` is no measure here: Linux carries the
/// high-water mark of the forked copy of this process, whose memory is
/// that of every test running alongside, across the exec.)
fn import_in_child(repo: &Path, db: &str, branch: &str) -> (String, u64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hostile::bomb_child", "--nocapture", "--test-threads", "1"])
        .env("BOMB_REPO", repo)
        .env("BOMB_DB", db)
        .env("BOMB_BRANCH", branch)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let kb = out
        .lines()
        .find_map(|l| l.split("PEAK ").nth(1))
        .and_then(|p| p.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("the child did not report its peak: {out}"));
    (out, kb * 1024)
}

/// A 1 MB gzip chunk and a 33 KB zstd chunk that each inflate to 1 GiB,
/// once as a plain edit in git and once with metadata forged to match:
/// refused, the target unchanged, and the importing process stays under
/// 200 MB. Decompression stops at the recorded size (or the chunk limit
/// for an edit).
#[test]
fn bombs_are_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("bomb.gz");
    let zst = dir.path().join("bomb.zst");
    bomb(Compression::Gzip, &gz);
    bomb(Compression::Zstd, &zst);
    println!(
        "bombs: gzip {} bytes, zstd {} bytes, each 1 GiB inflated",
        std::fs::metadata(&gz).unwrap().len(),
        std::fs::metadata(&zst).unwrap().len()
    );
    let mut targets: Vec<(PathBuf, Box<dyn Target>)> = Vec::new();
    for compression in [Compression::Gzip, Compression::Zstd] {
        let sub = dir.path().join(format!("{compression:?}"));
        std::fs::create_dir(&sub).unwrap();
        targets.push((sqlite_repo(&sub, compression), Box::new(Lite::new(&sub, false))));
    }
    let pg_sources: Vec<PgDb> =
        [Compression::Gzip, Compression::Zstd].iter().filter_map(|_| PgDb::postgres()).collect();
    for (src, compression) in pg_sources.iter().zip([Compression::Gzip, Compression::Zstd]) {
        let Some(target) = Pg::new(false) else { continue };
        let sub = dir.path().join(format!("pg-{compression:?}"));
        std::fs::create_dir(&sub).unwrap();
        targets.push((postgres_repo_with(&sub, src, compression), Box::new(target)));
    }
    for (repo, target) in &targets {
        let compression = if git(repo, &["ls-tree", "-r", "--name-only", "main", "data/t/"]).contains(".gz") {
            Compression::Gzip
        } else {
            Compression::Zstd
        };
        let file = if compression == Compression::Gzip { &gz } else { &zst };
        for forged in [false, true] {
            let branch = format!("bomb-{compression:?}-{}", if forged { "forged" } else { "edited" });
            commit_bomb(repo, &branch, file, forged);
            let before = target.snapshot();
            let (out, rss) = import_in_child(repo, &target.url(), &branch);
            assert!(out.contains("REFUSED:") && out.contains("inflates to more than"), "{branch}: {out}");
            assert_eq!(target.snapshot(), before, "{branch}: the target changed");
            let engine = target.url().split("://").nth(1).map_or("sqlite", |_| "postgres");
            println!("{branch} into {engine}: peak RSS {} MB", rss >> 20);
            assert!(rss < 200 << 20, "{branch}: the import took {} MB", rss >> 20);
        }
    }
}
