//! The permission store on every backend: users, groups, tokens, rules,
//! public paths, the audit log, and the migration of schema 1 tokens.

use tessera_store::access::{Level, Scope, Subject, TokenCheck};
use tessera_store::Store;
use tessera_testkit::{per_backend, Backend, TempDatabase};

/// A fresh database for `backend`: its URL, and guards that drop it.
fn database(backend: Backend) -> Option<(String, Option<TempDatabase>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let db = match backend {
        Backend::Sqlite => None,
        other => Some(TempDatabase::create(other)?),
    };
    let url = match &db {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dir.path().join("t.db").display()),
    };
    Some((url, db, dir))
}

fn with_store(backend: Backend, test: impl AsyncFnOnce(&Store)) {
    let Some((url, _db, dir)) = database(backend) else { return };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = Store::open(&url, dir.path(), Default::default()).await.unwrap();
        test(&store).await;
        store.pool().close().await;
    });
}

fn rules_groups_tokens_and_the_audit_log(backend: Backend) {
    with_store(backend, async |store| {
        let alice = store.create_user("alice", Some("a@example.com"), false).await.unwrap();
        let bob = store.create_user("bob", None, false).await.unwrap();
        assert!(store.create_user("alice", None, false).await.is_err(), "duplicate user");
        assert!(store.create_user("../x", None, false).await.is_err(), "bad name");
        store.create_group("devs").await.unwrap();
        store.add_group_member("devs", "bob").await.unwrap();
        let v0 = store.access_version().await.unwrap();
        store.grant("/projects/a", Subject::User(alice.id), Level::Write).await.unwrap();
        let devs = store.subject(None, Some("devs")).await.unwrap();
        store.grant("/projects", devs, Level::Maintain).await.unwrap();
        store.set_public("/projects/private", false).await.unwrap();
        assert!(store.access_version().await.unwrap() > v0, "changes bump the version");

        let policy = store.load_policy(true).await.unwrap();
        assert_eq!(policy.level(Some(&alice), "/projects/a/x"), Some(Level::Write));
        assert_eq!(policy.level(Some(&alice), "/projects/b"), Some(Level::Read));
        assert_eq!(policy.level(Some(&alice), "/projects/private"), None);
        assert_eq!(policy.level(Some(&bob), "/projects/private"), Some(Level::Maintain));
        assert_eq!(policy.level(None, "/projects/private/x"), None);
        assert_eq!(policy.rules(Some("/projects/a")).len(), 1);
        assert!(store.revoke("/projects/a", Subject::User(alice.id)).await.unwrap());
        assert!(!store.revoke("/projects/a", Subject::User(alice.id)).await.unwrap());

        let (token, secret) = store.create_token(&alice, "ci", Scope::Read, None).await.unwrap();
        assert!(store.create_token(&alice, "ci", Scope::Write, None).await.is_err(), "names are unique per user");
        store.create_token(&bob, "ci", Scope::Write, None).await.unwrap();
        match store.check_token(&secret).await.unwrap() {
            TokenCheck::Valid(t, u) => assert_eq!((t.id, t.scope, u.name.as_str()), (token.id, Scope::Read, "alice")),
            other => panic!("{other:?}"),
        }
        let (_, old) = store.create_token(&alice, "old", Scope::Write, Some(1)).await.unwrap();
        assert!(matches!(store.check_token(&old).await.unwrap(), TokenCheck::Expired(_)));
        assert!(store.revoke_token("ci").await.is_err(), "a bare name is ambiguous");
        assert_eq!(store.revoke_token("alice/ci").await.unwrap().id, token.id);
        assert!(matches!(store.check_token(&secret).await.unwrap(), TokenCheck::Invalid));
        assert!(store.revoke_token("alice/ci").await.is_err(), "already revoked");
        let (_, bobs) = store.create_token(&bob, "other", Scope::Write, None).await.unwrap();
        store.disable_user("bob").await.unwrap();
        assert!(matches!(store.check_token(&bobs).await.unwrap(), TokenCheck::Disabled(_)));

        store.audit("alice", "push", Some("/projects/a"), "refs/heads/main: ok", "ok").await.unwrap();
        store.audit("bob", "push", Some("/projects/ab"), "x", "ok").await.unwrap();
        store.audit("bob", "mr.merge", Some("/projects/a/deep"), "!1", "ok").await.unwrap();
        let under_a = store.list_audit(Some("/projects/a"), None, 10).await.unwrap();
        assert_eq!(under_a.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["mr.merge", "push"]);
        assert_eq!(store.list_audit(None, Some("bob"), 10).await.unwrap().len(), 2);
    });
}

fn schema_1_tokens_become_users(backend: Backend) {
    let Some((url, _db, dir)) = database(backend) else { return };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = Store::open(&url, dir.path(), Default::default()).await.unwrap();
        // A database as schema 1 left it: tokens without users, two of
        // them sharing a name.
        let sql =
            "INSERT INTO tokens (name, hash, created_at) VALUES ('me', 'h1', 1), ('me', 'h2', 2), ('ci', 'h3', 3)";
        sqlx::query(sql).execute(store.pool()).await.unwrap();
        sqlx::query("UPDATE tessera_schema SET version = 1").execute(store.pool()).await.unwrap();
        store.pool().close().await;

        // Reopened by this build: each token belongs to a user of its name,
        // who keeps what tokens could do before.
        let store = Store::open(&url, dir.path(), Default::default()).await.unwrap();
        let tokens = store.list_tokens(None).await.unwrap();
        let names: Vec<String> = tokens.iter().map(|t| format!("{}/{}", t.user, t.name)).collect();
        assert_eq!(names, ["me/me", "me/me-2", "ci/ci"]);
        let me = store.user("me").await.unwrap().unwrap();
        assert!(!me.is_admin);
        let policy = store.load_policy(true).await.unwrap();
        assert_eq!(policy.level(Some(&me), "/anything"), Some(Level::Maintain));
        // Opening again changes nothing.
        store.pool().close().await;
        let store = Store::open(&url, dir.path(), Default::default()).await.unwrap();
        assert_eq!(store.list_tokens(None).await.unwrap().len(), 3);
        assert_eq!(store.list_users().await.unwrap().len(), 2);
        store.pool().close().await;
    });
}

per_backend!(rules_groups_tokens_and_the_audit_log, schema_1_tokens_become_users);
