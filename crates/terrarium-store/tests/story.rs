//! One story of the versioning contract, written against `dyn Store` so that every backend
//! runs the same test (SQLite now; PostgreSQL next).

use terrarium_spec::model::{Conda, Definition};
use terrarium_spec::names::Reference;
use terrarium_store::{
    MetadataUpdate, PostgresStore, RegisterRequest, Source, SqliteStore, Store, StoreError,
};

fn definition(name: &str, numpy: &str) -> Definition {
    Definition {
        name: name.to_string(),
        conda: Some(Conda {
            channels: vec!["conda-forge".into()],
            dependencies: vec!["python=3.11".into(), format!("numpy={numpy}")],
        }),
        ..Definition::default()
    }
}

fn register(store: &dyn Store, d: Definition) -> Result<(String, bool), StoreError> {
    let outcome = store.register(RegisterRequest {
        definition: d,
        source: Source::new("manual"),
        parent: None,
        actor: "story".into(),
        allow_curated: false,
        force_new: false,
        lock: None,
    })?;
    Ok((outcome.record.version, outcome.created))
}

fn story(store: &dyn Store) {
    assert_eq!(
        register(store, definition("env", "1.26")).unwrap(),
        ("1".into(), true)
    );
    assert_eq!(
        register(store, definition("env", "1.26")).unwrap(),
        ("1".into(), false)
    );
    assert_eq!(
        register(store, definition("env", "1.25")).unwrap(),
        ("2".into(), true)
    );

    let mut explicit = definition("env", "1.24");
    explicit.version = Some("10".into());
    assert_eq!(
        register(store, explicit.clone()).unwrap(),
        ("10".into(), true)
    );
    assert_eq!(register(store, explicit).unwrap(), ("10".into(), false));
    let mut conflict = definition("env", "1.23");
    conflict.version = Some("10".into());
    assert!(matches!(
        register(store, conflict),
        Err(StoreError::VersionConflict { .. })
    ));
    assert_eq!(
        register(store, definition("env", "1.22")).unwrap(),
        ("11".into(), true)
    );

    let latest = store.resolve(&Reference::Latest("env".into())).unwrap();
    assert_eq!(latest.version, "11");
    assert_eq!(latest.parent.as_deref(), Some("env:10"));
    assert!(latest.labels.contains(&"latest".to_string()));

    store.set_label("env", "2", "prod", "story").unwrap();
    assert_eq!(
        store
            .resolve(&Reference::Label("env".into(), "prod".into()))
            .unwrap()
            .version,
        "2"
    );
    assert!(matches!(
        store.delete_version("env", "2", "story"),
        Err(StoreError::Referenced { .. })
    ));
    store.remove_label("env", "prod", "story").unwrap();
    store.delete_version("env", "2", "story").unwrap();
    assert!(matches!(
        store.resolve(&Reference::Version("env".into(), "2".into())),
        Err(StoreError::NotFound(_))
    ));

    store
        .set_archived("env", Some("11"), true, "story")
        .unwrap();
    assert_eq!(
        store
            .resolve(&Reference::Latest("env".into()))
            .unwrap()
            .version,
        "10"
    );
    store.set_archived("env", None, true, "story").unwrap();
    assert!(store.list(false).unwrap().iter().all(|r| r.name != "env"));
    assert!(store.list(true).unwrap().iter().any(|r| r.name == "env"));
    assert!(matches!(
        store.resolve(&Reference::Latest("env".into())),
        Err(StoreError::Archived(_))
    ));
    store.set_archived("env", None, false, "story").unwrap();

    let updated = store
        .update_metadata(
            "env",
            "10",
            &MetadataUpdate {
                description: Some(Some("d".into())),
                ..Default::default()
            },
            "story",
        )
        .unwrap();
    assert_eq!(updated.description.as_deref(), Some("d"));

    let versions: Vec<_> = store
        .versions("env")
        .unwrap()
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, ["1", "10", "11"]);
    let events: Vec<_> = store
        .events("env")
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        events,
        ["label", "unlabel", "delete", "archive", "archive", "restore", "update"]
    );

    let mut curated = definition("curated/x", "1.26");
    curated.version = None;
    assert!(matches!(
        register(store, curated),
        Err(StoreError::Curated(_))
    ));

    store.meta_set("k", "v").unwrap();
    assert_eq!(store.meta_get("k").unwrap().as_deref(), Some("v"));

    // Build contexts, content-addressed; keeping one twice is a no-op.
    let digest = format!("sha256:{}", "ab".repeat(32));
    store.put_context(&digest, b"first").unwrap();
    store.put_context(&digest, b"first").unwrap();
    assert_eq!(store.get_context(&digest).unwrap(), b"first");
    assert!(matches!(
        store.get_context(&format!("sha256:{}", "cd".repeat(32))),
        Err(StoreError::NotFound(_))
    ));
    for bad in ["sha256:../x", "sha256:AB", "md5:00"] {
        assert!(matches!(
            store.put_context(bad, b"x"),
            Err(StoreError::Invalid(_))
        ));
    }

    // An `anonymous/` name is only the one the content gives.
    let mut squat = definition("anonymous/0123456789abcdef", "1.26");
    squat.version = None;
    assert!(matches!(
        register(store, squat),
        Err(StoreError::Invalid(_))
    ));
    let mut nameless = definition("", "1.26");
    nameless.version = None;
    nameless.name = terrarium_spec::names::anonymous_name(&terrarium_spec::content_hash(&nameless));
    let (version, created) = register(store, nameless).unwrap();
    assert_eq!((version.as_str(), created), ("1", true));
}

#[test]
fn sqlite_story() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    story(&store);
    // Reopening runs no migration twice and keeps everything.
    drop(store);
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.versions("env").unwrap().len(), 3);
}

/// A fresh database on the test server named by `TERRARIUM_TEST_POSTGRES`
/// (`scripts/postgres.sh start` makes one). Under CI a missing server fails; elsewhere the
/// PostgreSQL tests are skipped with a message.
fn postgres_database() -> Option<String> {
    let Ok(url) = std::env::var("TERRARIUM_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "TERRARIUM_TEST_POSTGRES must be set in CI"
        );
        eprintln!("skipped: set TERRARIUM_TEST_POSTGRES (scripts/postgres.sh start DIR)");
        return None;
    };
    let name = format!(
        "terrarium_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    );
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let base = url.rsplit_once('/').unwrap().0;
    Some(format!("{base}/{name}"))
}

#[test]
fn postgres_story() {
    let Some(url) = postgres_database() else {
        return;
    };
    let store = PostgresStore::connect(&url).unwrap();
    story(&store);
    drop(store);
    let store = PostgresStore::connect(&url).unwrap();
    assert_eq!(store.versions("env").unwrap().len(), 3);
}

/// 16 clients, each with its own connection, register changed definitions of one environment
/// at once: versions 1..16, none lost or doubled; then 16 register the same definition: one
/// version.
#[test]
fn postgres_concurrent_registration() {
    let Some(url) = postgres_database() else {
        return;
    };
    PostgresStore::connect(&url).unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let url = url.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let store = PostgresStore::connect(&url).unwrap();
                barrier.wait();
                let changed = register(&store, definition("race", &format!("1.{i}"))).unwrap();
                barrier.wait();
                let same = register(&store, definition("same", "1.26")).unwrap();
                (changed, same)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut versions: Vec<u32> = results
        .iter()
        .map(|((v, created), _)| {
            assert!(created);
            v.parse().unwrap()
        })
        .collect();
    versions.sort();
    assert_eq!(versions, (1..=16).collect::<Vec<_>>());
    assert!(results.iter().all(|(_, (v, _))| v == "1"));
    assert_eq!(
        results.iter().filter(|(_, (_, created))| *created).count(),
        1
    );
    let store = PostgresStore::connect(&url).unwrap();
    assert_eq!(store.versions("race").unwrap().len(), 16);
    assert_eq!(store.versions("same").unwrap().len(), 1);
}
