//! One story of the versioning contract, written against `dyn Store` so that every backend
//! runs the same test (SQLite now; PostgreSQL next).

use terrarium_spec::model::{Conda, Definition};
use terrarium_spec::names::Reference;
use terrarium_store::{MetadataUpdate, RegisterRequest, Source, SqliteStore, Store, StoreError};

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
