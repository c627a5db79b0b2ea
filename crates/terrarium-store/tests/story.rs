//! One story of the `Store` contract, written against `dyn Store` so that every backend runs the
//! same test: SQLite always, PostgreSQL when `TERRARIUM_TEST_POSTGRES` names a server.
//!
//! Coverage: `story` calls all 40 methods of the `Store` trait, on both backends, and checks
//! their results and the errors a user can reach (NotFound, Invalid, Curated, Referenced,
//! VersionConflict, Archived). It runs through [`Counted`], which fails the test when a
//! method of [`METHODS`] was never called:
//!
//! - versions (10): register, resolve, list, versions, events, set_label, remove_label,
//!   update_metadata, set_archived, delete_version
//! - locks (2): set_lock, get_lock
//! - runs (7): create_run, finish_run, list_runs, get_run, put_run_log, get_run_log,
//!   update_run
//! - compute targets (4): add_compute, get_compute, list_compute, remove_compute
//! - tokens (4): create_token, token_by_hash, list_tokens, revoke_token
//! - audit (3): append_audit, set_audit_status, list_audit
//! - images (2): add_image_build, list_image_builds
//! - deployments (3): put_deployment, get_deployment, list_deployments
//! - build contexts (3): put_context, get_context, has_context
//! - workspace metadata (2): meta_get, meta_set
//!
//! `audit_scope` checks that a change and its audit row commit together (`audit::with_scope`),
//! `delete_refusal_order` that both backends give the same refusal when several things
//! refer to a version, and `curated_seeding` that a workspace opened from its setting
//! (`terrarium_store::open`) is seeded with the curated environments once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use terrarium_spec::model::{Conda, Definition};
use terrarium_spec::names::Reference;
use terrarium_store::audit::{with_scope, AuditScope};
use terrarium_store::{
    AuditEntry, ComputeRecord, DeploymentRecord, EngineJob, Event, ImageBuildRecord,
    MetadataUpdate, PostgresStore, RegisterOutcome, RegisterRequest, RunRecord, RunState,
    RunUpdate, Source, SqliteStore, Store, StoreError, TokenRecord, VersionRecord,
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

fn versioned(name: &str, numpy: &str, version: &str) -> Definition {
    Definition {
        version: Some(version.to_string()),
        ..definition(name, numpy)
    }
}

fn request(definition: Definition) -> RegisterRequest {
    RegisterRequest {
        definition,
        source: Source::new("manual"),
        parent: None,
        actor: "story".into(),
        allow_curated: false,
        force_new: false,
        lock: None,
    }
}

fn register(store: &dyn Store, d: Definition) -> Result<(String, bool), StoreError> {
    let outcome = store.register(request(d))?;
    Ok((outcome.record.version, outcome.created))
}

fn latest(store: &dyn Store, name: &str) -> Result<String, StoreError> {
    Ok(store.resolve(&Reference::Latest(name.into()))?.version)
}

fn version(store: &dyn Store, name: &str, version: &str) -> Result<String, StoreError> {
    Ok(store
        .resolve(&Reference::Version(name.into(), version.into()))?
        .version)
}

fn version_record(store: &dyn Store, name: &str, version: &str) -> terrarium_store::VersionRecord {
    store
        .resolve(&Reference::Version(name.into(), version.into()))
        .unwrap()
}

fn hex(byte: &str) -> String {
    format!("sha256:{}", byte.repeat(32))
}

fn run(id: &str, experiment: &str, environment: &str, version: &str, at: &str) -> RunRecord {
    RunRecord {
        id: id.into(),
        experiment: experiment.into(),
        environment: environment.into(),
        version: version.into(),
        lock_hash: None,
        command: vec![
            "python".into(),
            "train.py".into(),
            "--lr".into(),
            "0.1".into(),
        ],
        cwd: "/work".into(),
        target: "local".into(),
        actor: "story".into(),
        started_at: at.into(),
        finished_at: None,
        exit_code: None,
        log_path: Some(format!("runs/{id}.log")),
        state: RunState::Running,
        job: None,
    }
}

fn deployment(name: &str, environment: &str, version: &str) -> DeploymentRecord {
    DeploymentRecord {
        name: name.into(),
        environment: environment.into(),
        version: version.into(),
        lock_hash: None,
        model_path: "./model".into(),
        model_hash: hex("0f"),
        entry: Some("score.py".into()),
        workers: 2,
        url: None,
        host: "host-1".into(),
        pid: None,
        state: terrarium_store::DeploymentState::Starting,
        reason: None,
        actor: "story".into(),
        started_at: "2026-01-01T00:00:00.000Z".into(),
        stopped_at: None,
        log_path: None,
    }
}

fn image_build(environment: &str, version: &str, digest: &str) -> ImageBuildRecord {
    ImageBuildRecord {
        environment: environment.into(),
        version: version.into(),
        lock_hash: hex("1a"),
        base: Some("debian:12".into()),
        base_digest: Some(hex("2b")),
        digest: digest.into(),
        pushed_to: None,
        output: Some("out/oci".into()),
        size: 123_456,
        layers: 3,
        seconds: 1.5,
        log: "built".into(),
        actor: "story".into(),
        built_at: "2026-01-01T00:00:00.000Z".into(),
    }
}

fn token(id: &str, role: &str, created_at: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        name: format!("{id}-name"),
        role: role.into(),
        token_hash: hex(&id[..2]),
        created_at: created_at.into(),
        created_by: "story".into(),
        expires_at: None,
        revoked_at: None,
    }
}

fn audit_entry(action: &str, target: Option<&str>) -> AuditEntry {
    AuditEntry {
        id: 0,
        at: "2026-01-01T00:00:00.000Z".into(),
        actor: "alice (token t1)".into(),
        action: action.into(),
        target: target.map(str::to_string),
        status: 200,
        remote: "127.0.0.1".into(),
    }
}

/// The reason of a `Referenced` refusal to delete `name:version`, or a panic.
fn refusal(store: &dyn Store, name: &str, version: &str) -> String {
    match store.delete_version(name, version, "story") {
        Err(StoreError::Referenced { reference, reason }) => {
            assert_eq!(reference, format!("{name}:{version}"));
            reason
        }
        other => panic!("deleting {name}:{version}: expected Referenced, got {other:?}"),
    }
}

/// The story, through [`Counted`]: every method of the trait must be called. `sql` runs a
/// statement on the backend's database directly, as an older Terrarium left it.
fn story(store: &dyn Store, sql: &dyn Fn(&str)) {
    let counted = Counted::new(store);
    let store: &dyn Store = &counted;
    versioning(store);
    labels_metadata_and_archive(store);
    curated_and_invalid(store);
    locks(store);
    runs(store);
    images_and_deployments(store);
    delete_refusals(store);
    tokens(store);
    audit_trail(store);
    contexts_and_meta(store);
    compute(store, sql);
    let missing: Vec<_> = METHODS
        .iter()
        .filter(|m| !counted.called.lock().unwrap().contains(*m))
        .collect();
    assert!(missing.is_empty(), "the story never called {missing:?}");
    eprintln!(
        "story: called {} of the {} Store methods",
        counted.called.lock().unwrap().len(),
        METHODS.len()
    );
}

/// A [`Store`] that notes which of its methods were called.
struct Counted<'a> {
    inner: &'a dyn Store,
    called: Mutex<BTreeSet<&'static str>>,
}

impl<'a> Counted<'a> {
    fn new(inner: &'a dyn Store) -> Self {
        Self {
            inner,
            called: Mutex::default(),
        }
    }
}

/// Every method of the trait, forwarded and noted; [`METHODS`] lists their names. A method
/// added to the trait and not here fails to compile.
macro_rules! counted {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        const METHODS: &[&str] = &[$(stringify!($name)),*];

        impl Store for Counted<'_> {
            $(fn $name(&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
                self.called.lock().unwrap().insert(stringify!($name));
                self.inner.$name($($arg),*)
            })*
        }
    };
}

counted! {
    register(request: RegisterRequest) -> RegisterOutcome;
    resolve(reference: &Reference) -> VersionRecord;
    list(include_archived: bool) -> Vec<VersionRecord>;
    versions(name: &str) -> Vec<VersionRecord>;
    events(name: &str) -> Vec<Event>;
    set_label(name: &str, version: &str, label: &str, actor: &str) -> ();
    remove_label(name: &str, label: &str, actor: &str) -> ();
    update_metadata(name: &str, version: &str, update: &MetadataUpdate, actor: &str) -> VersionRecord;
    set_archived(name: &str, version: Option<&str>, archived: bool, actor: &str) -> ();
    delete_version(name: &str, version: &str, actor: &str) -> ();
    set_lock(name: &str, version: &str, lock_hash: &str, lock: &str) -> String;
    get_lock(lock_hash: &str) -> String;
    create_run(run: &RunRecord) -> ();
    finish_run(id: &str, finished_at: &str, exit_code: i32) -> ();
    list_runs(experiment: Option<&str>, limit: usize) -> Vec<RunRecord>;
    get_run(id: &str) -> RunRecord;
    put_run_log(id: &str, log: &[u8]) -> ();
    get_run_log(id: &str) -> Option<Vec<u8>>;
    update_run(id: &str, update: &RunUpdate) -> RunRecord;
    add_compute(target: &ComputeRecord) -> ();
    get_compute(name: &str) -> ComputeRecord;
    list_compute() -> Vec<ComputeRecord>;
    remove_compute(name: &str) -> ();
    create_token(token: &TokenRecord) -> ();
    token_by_hash(token_hash: &str) -> Option<TokenRecord>;
    list_tokens() -> Vec<TokenRecord>;
    revoke_token(id: &str, at: &str) -> TokenRecord;
    append_audit(entry: &AuditEntry) -> ();
    set_audit_status(id: i64, status: i32) -> ();
    list_audit(limit: usize, offset: usize) -> Vec<AuditEntry>;
    add_image_build(build: &ImageBuildRecord) -> ();
    list_image_builds(name: &str, version: Option<&str>) -> Vec<ImageBuildRecord>;
    put_deployment(deployment: &DeploymentRecord) -> ();
    get_deployment(name: &str) -> DeploymentRecord;
    list_deployments() -> Vec<DeploymentRecord>;
    put_context(digest: &str, archive: &[u8]) -> ();
    get_context(digest: &str) -> Vec<u8>;
    has_context(digest: &str) -> bool;
    meta_get(key: &str) -> Option<String>;
    meta_set(key: &str, value: &str) -> ();
}

/// register (automatic and explicit versions, no-ops, conflicts, force_new, a lock, a parent),
/// resolve and versions.
fn versioning(store: &dyn Store) {
    let first = store.register(request(definition("env", "1.26"))).unwrap();
    assert!(first.created);
    let record = first.record;
    assert_eq!(record.version, "1");
    assert_eq!(
        record.content_hash,
        terrarium_spec::content_hash(&definition("env", "1.26"))
    );
    assert_eq!(record.labels, ["latest"]);
    assert_eq!(record.source, Source::new("manual"));
    assert_eq!(record.created_by, "story");
    assert_eq!(record.definition.version.as_deref(), Some("1"));
    assert!(record.parent.is_none() && record.lock_hash.is_none());
    assert!(!record.archived && !record.curated);

    // Identical content to the latest version is that version...
    assert_eq!(
        register(store, definition("env", "1.26")).unwrap(),
        ("1".into(), false)
    );
    // ...and a new description on it is an update, not a version.
    let described = Definition {
        description: Some("first".into()),
        ..definition("env", "1.26")
    };
    let outcome = store.register(request(described)).unwrap();
    assert!(!outcome.created);
    assert_eq!(outcome.record.version, "1");
    assert_eq!(outcome.record.description.as_deref(), Some("first"));

    let second = store.register(request(definition("env", "1.25"))).unwrap();
    assert_eq!(second.record.version, "2");
    assert_eq!(second.record.parent.as_deref(), Some("env:1"));

    // An explicit version: same content is a no-op, other content a conflict.
    assert_eq!(
        register(store, versioned("env", "1.24", "10")).unwrap(),
        ("10".into(), true)
    );
    assert_eq!(
        register(store, versioned("env", "1.24", "10")).unwrap(),
        ("10".into(), false)
    );
    match register(store, versioned("env", "1.23", "10")) {
        Err(StoreError::VersionConflict {
            name,
            version,
            existing,
        }) => {
            assert_eq!((name.as_str(), version.as_str()), ("env", "10"));
            assert_eq!(
                existing,
                terrarium_spec::content_hash(&definition("env", "1.24"))
            );
        }
        other => panic!("expected VersionConflict, got {other:?}"),
    }
    // Automatic numbering continues after the highest explicit number.
    assert_eq!(
        register(store, definition("env", "1.22")).unwrap(),
        ("11".into(), true)
    );

    // force_new: identical content, a new version all the same (relock).
    let relocked = store
        .register(RegisterRequest {
            force_new: true,
            ..request(definition("env", "1.22"))
        })
        .unwrap();
    assert!(relocked.created);
    assert_eq!(relocked.record.version, "12");
    assert_eq!(relocked.record.parent.as_deref(), Some("env:11"));
    assert_eq!(
        relocked.record.content_hash,
        version_record(store, "env", "11").content_hash
    );
    // Without it, that content is the latest version, 12 (not 11).
    assert_eq!(
        register(store, definition("env", "1.22")).unwrap(),
        ("12".into(), false)
    );

    // A lock stored with the new version, and an explicit parent.
    let locked = store
        .register(RegisterRequest {
            parent: Some("env:1".into()),
            lock: Some((hex("aa"), r#"{"lock":"aa"}"#.into())),
            source: Source {
                kind: "import".into(),
                file: Some("environment.yml".into()),
                format: None,
            },
            ..request(definition("env", "1.21"))
        })
        .unwrap();
    assert!(locked.created);
    assert_eq!(locked.record.version, "13");
    assert_eq!(locked.record.parent.as_deref(), Some("env:1"));
    assert_eq!(locked.record.lock_hash, Some(hex("aa")));
    assert_eq!(
        locked.record.source.file.as_deref(),
        Some("environment.yml")
    );
    assert_eq!(store.get_lock(&hex("aa")).unwrap(), r#"{"lock":"aa"}"#);

    // resolve: latest, a version, and what does not exist.
    let latest_record = store.resolve(&Reference::Latest("env".into())).unwrap();
    assert_eq!(latest_record.version, "13");
    assert_eq!(latest_record.labels, ["latest"]);
    let one = version_record(store, "env", "1");
    assert!(one.labels.is_empty());
    assert_eq!(one.description.as_deref(), Some("first"));
    assert!(matches!(
        version(store, "env", "99"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        latest(store, "nope"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.resolve(&Reference::Label("env".into(), "nope".into())),
        Err(StoreError::NotFound(_))
    ));

    let all: Vec<_> = store
        .versions("env")
        .unwrap()
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(all, ["1", "2", "10", "11", "12", "13"]);
    assert!(matches!(
        store.versions("nope"),
        Err(StoreError::NotFound(_))
    ));
}

/// set_label, remove_label, update_metadata, set_archived, an unreferenced delete_version, and
/// the events they leave, in order.
fn labels_metadata_and_archive(store: &dyn Store) {
    store.set_label("env", "2", "prod", "story").unwrap();
    assert_eq!(
        store
            .resolve(&Reference::Label("env".into(), "prod".into()))
            .unwrap()
            .version,
        "2"
    );
    assert_eq!(version_record(store, "env", "2").labels, ["prod"]);
    assert!(refusal(store, "env", "2").contains("label(s) prod"));
    // Moving the label frees version 2.
    store.set_label("env", "10", "prod", "story").unwrap();
    assert_eq!(
        store
            .resolve(&Reference::Label("env".into(), "prod".into()))
            .unwrap()
            .version,
        "10"
    );
    store.delete_version("env", "2", "story").unwrap();
    assert!(matches!(
        version(store, "env", "2"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_version("env", "2", "story"),
        Err(StoreError::NotFound(_))
    ));
    store.remove_label("env", "prod", "story").unwrap();
    assert!(matches!(
        store.resolve(&Reference::Label("env".into(), "prod".into())),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.remove_label("env", "prod", "story"),
        Err(StoreError::NotFound(_))
    ));
    for bad in ["latest", "a b", ""] {
        assert!(matches!(
            store.set_label("env", "1", bad, "story"),
            Err(StoreError::Invalid(_))
        ));
    }
    assert!(matches!(
        store.remove_label("env", "latest", "story"),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.set_label("env", "99", "prod", "story"),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        register(store, definition("env", "1.20")).unwrap(),
        ("14".into(), true)
    );
    // A deleted number is never handed out again, even the highest.
    for numpy in ["1.26", "1.25"] {
        register(store, definition("gap", numpy)).unwrap();
    }
    store.delete_version("gap", "2", "story").unwrap();
    assert_eq!(
        register(store, definition("gap", "1.24")).unwrap(),
        ("3".into(), true)
    );

    // Metadata changes make no version.
    let updated = store
        .update_metadata(
            "env",
            "10",
            &MetadataUpdate {
                description: Some(Some("ten".into())),
                set_tags: BTreeMap::from([
                    ("team".into(), "ml".into()),
                    ("stage".into(), "dev".into()),
                ]),
                remove_tags: vec![],
            },
            "story",
        )
        .unwrap();
    assert_eq!(updated.description.as_deref(), Some("ten"));
    assert_eq!(updated.definition.description.as_deref(), Some("ten"));
    assert_eq!(updated.tags.len(), 2);
    let updated = store
        .update_metadata(
            "env",
            "10",
            &MetadataUpdate {
                description: Some(None),
                set_tags: BTreeMap::new(),
                remove_tags: vec!["stage".into()],
            },
            "story",
        )
        .unwrap();
    assert_eq!(updated.description, None);
    assert_eq!(
        updated.tags,
        BTreeMap::from([("team".to_string(), "ml".to_string())])
    );
    assert_eq!(version_record(store, "env", "10").tags, updated.tags);
    assert!(matches!(
        store.update_metadata("env", "99", &MetadataUpdate::default(), "story"),
        Err(StoreError::NotFound(_))
    ));

    // Archiving the latest version makes the one before it latest.
    store
        .set_archived("env", Some("14"), true, "story")
        .unwrap();
    assert_eq!(latest(store, "env").unwrap(), "13");
    assert!(version_record(store, "env", "14").archived);
    // The whole environment: gone from `list`, and `latest` refuses; versions still resolve.
    store.set_archived("env", None, true, "story").unwrap();
    assert!(store.list(false).unwrap().iter().all(|r| r.name != "env"));
    let listed = store.list(true).unwrap();
    let env = listed.iter().find(|r| r.name == "env").unwrap();
    assert_eq!((env.version.as_str(), env.archived), ("13", true));
    assert!(matches!(latest(store, "env"), Err(StoreError::Archived(_))));
    let ten = version_record(store, "env", "10");
    assert!(ten.archived && ten.labels.is_empty());
    store.set_archived("env", None, false, "story").unwrap();
    store
        .set_archived("env", Some("14"), false, "story")
        .unwrap();
    assert_eq!(latest(store, "env").unwrap(), "14");
    let listed = store.list(false).unwrap();
    let env = listed.iter().find(|r| r.name == "env").unwrap();
    assert_eq!(env.version, "14");
    assert_eq!(env.labels, ["latest"]);
    assert!(matches!(
        store.set_archived("nope", None, true, "story"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.set_archived("env", Some("99"), true, "story"),
        Err(StoreError::NotFound(_))
    ));

    let events = store.events("env").unwrap();
    let actions: Vec<_> = events
        .iter()
        .map(|e| (e.action.as_str(), e.version.as_deref()))
        .collect();
    assert_eq!(
        actions,
        [
            ("update", Some("1")),
            ("label", Some("2")),
            ("label", Some("10")),
            ("delete", Some("2")),
            ("unlabel", Some("10")),
            ("update", Some("10")),
            ("update", Some("10")),
            ("archive", Some("14")),
            ("archive", None),
            ("restore", None),
            ("restore", Some("14")),
        ]
    );
    let details: Vec<_> = events.iter().map(|e| e.detail.as_deref()).collect();
    assert_eq!(details[2], Some("prod: 2 -> 10"));
    assert_eq!(details[5], Some("description, tag stage, tag team"));
    assert_eq!(details[6], Some("description, untag stage"));
    assert!(events.iter().all(|e| e.name == "env" && e.actor == "story"));
    // No history is no error (unlike `versions`).
    assert!(store.events("nope").unwrap().is_empty());

    // Every version archived: `latest` refuses, `list` shows it only when asked.
    assert_eq!(
        register(store, definition("solo", "1.26")).unwrap(),
        ("1".into(), true)
    );
    store
        .set_archived("solo", Some("1"), true, "story")
        .unwrap();
    assert!(matches!(
        latest(store, "solo"),
        Err(StoreError::Archived(_))
    ));
    assert!(store.list(false).unwrap().iter().all(|r| r.name != "solo"));
    let listed = store.list(true).unwrap();
    let solo = listed.iter().find(|r| r.name == "solo").unwrap();
    assert_eq!((solo.version.as_str(), solo.archived), ("1", true));
    // Registering into an archived environment restores it.
    store.set_archived("solo", None, true, "story").unwrap();
    assert_eq!(
        register(store, definition("solo", "1.25")).unwrap(),
        ("2".into(), true)
    );
    assert_eq!(latest(store, "solo").unwrap(), "2");
    let restore = store.events("solo").unwrap().pop().unwrap();
    assert_eq!(
        (restore.action.as_str(), restore.version.as_deref()),
        ("restore", Some("2"))
    );
}

/// `curated/` names are read-only outside curated seeding; bad names and versions are refused.
fn curated_and_invalid(store: &dyn Store) {
    let curated = definition("curated/base", "1.26");
    assert!(matches!(
        register(store, curated.clone()),
        Err(StoreError::Curated(_))
    ));
    let seeded = store
        .register(RegisterRequest {
            allow_curated: true,
            source: Source::new("curated"),
            ..request(curated)
        })
        .unwrap();
    assert!(seeded.created && seeded.record.curated);
    let name = "curated/base";
    let refused = [
        store.set_label(name, "1", "prod", "story"),
        store.remove_label(name, "prod", "story"),
        store
            .update_metadata(name, "1", &MetadataUpdate::default(), "story")
            .map(drop),
        store.set_archived(name, None, true, "story"),
        store.delete_version(name, "1", "story"),
    ];
    for result in refused {
        assert!(
            matches!(result, Err(StoreError::Curated(ref n)) if n == name),
            "{result:?}"
        );
    }
    assert!(latest(store, name).is_ok());

    for bad in [
        definition("bad name", "1.26"),
        definition("", "1.26"),
        versioned("env", "1.26", "1 0"),
    ] {
        assert!(matches!(register(store, bad), Err(StoreError::Invalid(_))));
    }
    // An `anonymous/` name is only the one the content gives.
    assert!(matches!(
        register(store, definition("anonymous/0123456789abcdef", "1.26")),
        Err(StoreError::Invalid(_))
    ));
    let mut nameless = definition("", "1.26");
    nameless.name = terrarium_spec::names::anonymous_name(&terrarium_spec::content_hash(&nameless));
    assert_eq!(register(store, nameless).unwrap(), ("1".into(), true));
}

/// A version's lock is set once: a second set_lock keeps the first.
fn locks(store: &dyn Store) {
    assert_eq!(
        store.set_lock("env", "1", &hex("bb"), "lock bb").unwrap(),
        hex("bb")
    );
    assert_eq!(
        store.set_lock("env", "1", &hex("cc"), "lock cc").unwrap(),
        hex("bb")
    );
    assert_eq!(store.get_lock(&hex("bb")).unwrap(), "lock bb");
    assert!(matches!(
        store.get_lock(&hex("cc")),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(version_record(store, "env", "1").lock_hash, Some(hex("bb")));
    // A version registered with a lock keeps that one.
    assert_eq!(
        store.set_lock("env", "13", &hex("cc"), "lock cc").unwrap(),
        hex("aa")
    );
    assert!(matches!(
        store.set_lock("env", "99", &hex("cc"), "lock cc"),
        Err(StoreError::NotFound(_))
    ));
}

fn runs(store: &dyn Store) {
    let r1 = run("r1", "exp", "env", "1", "2026-01-01T00:00:01.000Z");
    let r2 = run("r2", "other", "env", "10", "2026-01-01T00:00:02.000Z");
    let r3 = run("r3", "exp", "env", "1", "2026-01-01T00:00:03.000Z");
    for r in [&r1, &r2, &r3] {
        store.create_run(r).unwrap();
    }
    assert!(matches!(
        store.create_run(&run("r4", "exp", "env", "99", "2026-01-01T00:00:04.000Z")),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.get_run("r1").unwrap(), r1);
    store
        .finish_run("r1", "2026-01-01T00:01:00.000Z", 3)
        .unwrap();
    let finished = store.get_run("r1").unwrap();
    assert_eq!(
        finished,
        RunRecord {
            finished_at: Some("2026-01-01T00:01:00.000Z".into()),
            exit_code: Some(3),
            state: RunState::Failed,
            ..r1
        }
    );
    assert!(matches!(
        store.finish_run("nope", "2026-01-01T00:01:00.000Z", 0),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_run("nope"),
        Err(StoreError::NotFound(_))
    ));

    let ids = |experiment: Option<&str>, limit| -> Vec<String> {
        store
            .list_runs(experiment, limit)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(ids(None, 10), ["r3", "r2", "r1"]);
    assert_eq!(ids(Some("exp"), 10), ["r3", "r1"]);
    assert_eq!(ids(None, 1), ["r3"]);
    assert!(ids(Some("none"), 10).is_empty());
    assert_eq!(store.list_runs(Some("other"), 10).unwrap(), [r2]);

    assert_eq!(store.get_run_log("r1").unwrap(), None);
    store.put_run_log("r1", b"hello\n").unwrap();
    assert_eq!(
        store.get_run_log("r1").unwrap().as_deref(),
        Some(&b"hello\n"[..])
    );
    // Replaced, and bytes, not text.
    store.put_run_log("r1", b"bye\0\xff").unwrap();
    assert_eq!(
        store.get_run_log("r1").unwrap().as_deref(),
        Some(&b"bye\0\xff"[..])
    );
    assert!(matches!(
        store.put_run_log("nope", b"x"),
        Err(StoreError::NotFound(_))
    ));
}

fn images_and_deployments(store: &dyn Store) {
    let b1 = image_build("env", "13", &hex("01"));
    let b2 = image_build("env", "11", &hex("02"));
    let b3 = image_build("env", "13", &hex("03"));
    for b in [&b1, &b2, &b3] {
        store.add_image_build(b).unwrap();
    }
    assert_eq!(
        store.list_image_builds("env", None).unwrap(),
        [b3.clone(), b2, b1.clone()]
    );
    assert_eq!(
        store.list_image_builds("env", Some("13")).unwrap(),
        [b3, b1]
    );
    assert!(store.list_image_builds("nope", None).unwrap().is_empty());
    assert!(matches!(
        store.add_image_build(&image_build("env", "99", &hex("04"))),
        Err(StoreError::NotFound(_))
    ));

    let web = deployment("web", "env", "12");
    store.put_deployment(&web).unwrap();
    assert_eq!(store.get_deployment("web").unwrap(), web);
    // Put again: the record is replaced.
    let ready = DeploymentRecord {
        state: terrarium_store::DeploymentState::Ready,
        url: Some("http://127.0.0.1:8000".into()),
        pid: Some(4242),
        version: "14".into(),
        ..web
    };
    store.put_deployment(&ready).unwrap();
    assert_eq!(store.get_deployment("web").unwrap(), ready);
    let api = deployment("api", "env", "12");
    store.put_deployment(&api).unwrap();
    assert_eq!(store.list_deployments().unwrap(), [api, ready]);
    assert!(matches!(
        store.get_deployment("nope"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.put_deployment(&deployment("bad name", "env", "10")),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.put_deployment(&deployment("web2", "env", "99")),
        Err(StoreError::NotFound(_))
    ));
}

/// delete_version refuses a version that something refers to, one thing at a time (the states
/// where only one thing refers to it; several at once is `delete_refusal_order`).
fn delete_refusals(store: &dyn Store) {
    // Runs used env:1 (two) and env:10, images were built from env:11 and env:13 (two), and
    // deployments serve env:12 (api) and env:14 (web).
    assert!(refusal(store, "env", "1").starts_with("2 recorded run(s) used it"));
    assert!(refusal(store, "env", "10").starts_with("1 recorded run(s) used it"));
    assert!(refusal(store, "env", "11").starts_with("1 image(s) were built from it"));
    assert!(refusal(store, "env", "13").starts_with("2 image(s) were built from it"));
    assert_eq!(refusal(store, "env", "12"), "deployment(s) api serve it");
    assert_eq!(refusal(store, "env", "14"), "deployment(s) web serve it");
    // Once its deployment serves another version, a version can go.
    store
        .put_deployment(&deployment("api", "env", "14"))
        .unwrap();
    store.delete_version("env", "12", "story").unwrap();
    assert_eq!(
        refusal(store, "env", "14"),
        "deployment(s) api, web serve it"
    );
    assert!(matches!(
        store.delete_version("env", "99", "story"),
        Err(StoreError::NotFound(_))
    ));
}

fn tokens(store: &dyn Store) {
    // Created out of order: the list is by creation time.
    let admin = TokenRecord {
        expires_at: Some("2027-01-01T00:00:00.000Z".into()),
        ..token("t2", "admin", "2026-01-02T00:00:00.000Z")
    };
    let reader = token("t1", "reader", "2026-01-01T00:00:00.000Z");
    store.create_token(&admin).unwrap();
    store.create_token(&reader).unwrap();
    assert_eq!(
        store.list_tokens().unwrap(),
        [reader.clone(), admin.clone()]
    );
    assert_eq!(
        store.token_by_hash(&reader.token_hash).unwrap(),
        Some(reader.clone())
    );
    assert_eq!(store.token_by_hash(&hex("ff")).unwrap(), None);

    let revoked = store
        .revoke_token("t1", "2026-02-01T00:00:00.000Z")
        .unwrap();
    let expected = TokenRecord {
        revoked_at: Some("2026-02-01T00:00:00.000Z".into()),
        ..reader
    };
    assert_eq!(revoked, expected);
    // Revoking twice keeps the first time.
    assert_eq!(
        store
            .revoke_token("t1", "2026-03-01T00:00:00.000Z")
            .unwrap(),
        expected
    );
    assert_eq!(
        store.token_by_hash(&expected.token_hash).unwrap(),
        Some(expected.clone())
    );
    assert_eq!(store.list_tokens().unwrap(), [expected, admin]);
    assert!(matches!(
        store.revoke_token("nope", "2026-02-01T00:00:00.000Z"),
        Err(StoreError::NotFound(_))
    ));
}

/// append_audit, list_audit (newest first, paging) and set_audit_status.
fn audit_trail(store: &dyn Store) {
    // Nothing else in the story ran inside an audit scope.
    assert!(store.list_audit(100, 0).unwrap().is_empty());
    for (action, target) in [
        ("POST /api/v1/environments", Some("env")),
        ("POST /api/v1/tokens", None),
        ("DELETE /api/v1/environments/env/versions/2", Some("env:2")),
    ] {
        store.append_audit(&audit_entry(action, target)).unwrap();
    }
    let all = store.list_audit(10, 0).unwrap();
    let actions: Vec<_> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "DELETE /api/v1/environments/env/versions/2",
            "POST /api/v1/tokens",
            "POST /api/v1/environments",
        ]
    );
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(
        all[2],
        AuditEntry {
            id: all[2].id,
            ..audit_entry("POST /api/v1/environments", Some("env"))
        }
    );
    assert_eq!(store.list_audit(2, 0).unwrap(), all[..2]);
    assert_eq!(store.list_audit(2, 2).unwrap(), all[2..]);
    assert!(store.list_audit(2, 3).unwrap().is_empty());

    store.set_audit_status(all[1].id, 403).unwrap();
    let after = store.list_audit(10, 0).unwrap();
    assert_eq!(after[1].status, 403);
    assert_eq!((after[0].status, after[2].status), (200, 200));
}

fn contexts_and_meta(store: &dyn Store) {
    assert_eq!(store.meta_get("k").unwrap(), None);
    store.meta_set("k", "v").unwrap();
    assert_eq!(store.meta_get("k").unwrap().as_deref(), Some("v"));
    store.meta_set("k", "w").unwrap();
    assert_eq!(store.meta_get("k").unwrap().as_deref(), Some("w"));

    // Build contexts, content-addressed; keeping one twice is a no-op.
    let digest = hex("ab");
    assert!(!store.has_context(&digest).unwrap());
    store.put_context(&digest, b"first").unwrap();
    assert!(store.has_context(&digest).unwrap());
    store.put_context(&digest, b"first").unwrap();
    assert_eq!(store.get_context(&digest).unwrap(), b"first");
    assert!(matches!(
        store.get_context(&hex("cd")),
        Err(StoreError::NotFound(_))
    ));
    for bad in ["sha256:../x", "sha256:AB", "md5:00"] {
        assert!(matches!(
            store.put_context(bad, b"x"),
            Err(StoreError::Invalid(_))
        ));
    }
}

fn compute_target(name: &str, kind: &str, options: &[(&str, &str)]) -> ComputeRecord {
    ComputeRecord {
        name: name.into(),
        kind: kind.into(),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        created_by: "story".into(),
    }
}

fn job_update(state: RunState) -> RunUpdate {
    RunUpdate {
        state,
        started_at: None,
        finished_at: None,
        exit_code: None,
        node_list: None,
        reason: None,
    }
}

/// add_compute, get_compute, list_compute, remove_compute (refused while a run on the target
/// has not ended), update_run (queued -> running -> completed; a final run keeps its state),
/// and runs recorded before runs had a state.
fn compute(store: &dyn Store, sql: &dyn Fn(&str)) {
    let hpc = compute_target("hpc", "slurm", &[("partition", "gpu"), ("time", "2h")]);
    let cloud = compute_target("a-cloud", "ray", &[]);
    store.add_compute(&hpc).unwrap();
    store.add_compute(&cloud).unwrap();
    assert_eq!(store.get_compute("hpc").unwrap(), hpc);
    assert_eq!(store.list_compute().unwrap(), [cloud.clone(), hpc.clone()]);
    // A name is taken once; the first target stays as it was.
    assert!(matches!(
        store.add_compute(&compute_target("hpc", "ray", &[])),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.get_compute("hpc").unwrap(), hpc);
    for bad in ["local", "container", "curated/hpc", "", "two words", "-x"] {
        assert!(
            matches!(
                store.add_compute(&compute_target(bad, "slurm", &[])),
                Err(StoreError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(store.list_compute().unwrap().len(), 2);
    assert!(matches!(
        store.get_compute("nope"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.remove_compute("nope"),
        Err(StoreError::NotFound(_))
    ));

    // A job on hpc, queued.
    let queued_at = "2026-01-02T00:00:00.000Z";
    let job = RunRecord {
        target: "hpc".into(),
        state: RunState::Queued,
        job: Some(EngineJob {
            kind: "slurm".into(),
            job_id: "41".into(),
            nodes: 2,
            queued_at: queued_at.into(),
            node_list: None,
            reason: Some("Priority".into()),
            log_dir: Some("/shared/logs/j1".into()),
        }),
        ..run("j1", "jobs", "env", "1", queued_at)
    };
    store.create_run(&job).unwrap();
    assert_eq!(store.get_run("j1").unwrap(), job);
    let refused = |store: &dyn Store| match store.remove_compute("hpc") {
        Err(StoreError::Referenced { reference, reason }) => {
            assert_eq!(reference, "compute target hpc");
            assert!(reason.contains("j1"), "{reason}");
        }
        other => panic!("removing hpc with a live run: expected Referenced, got {other:?}"),
    };
    refused(store);

    // Queued -> running: its start and nodes; the reason goes with the state it explained.
    let running = store
        .update_run(
            "j1",
            &RunUpdate {
                started_at: Some("2026-01-02T00:05:00.000Z".into()),
                node_list: Some("node[1-2]".into()),
                ..job_update(RunState::Running)
            },
        )
        .unwrap();
    let expected = RunRecord {
        state: RunState::Running,
        started_at: "2026-01-02T00:05:00.000Z".into(),
        job: Some(EngineJob {
            node_list: Some("node[1-2]".into()),
            reason: None,
            ..job.job.clone().unwrap()
        }),
        ..job.clone()
    };
    assert_eq!(running, expected);
    assert_eq!(store.get_run("j1").unwrap(), expected);
    refused(store);

    // Running -> completed, with its exit code; the node list is kept.
    let completed = store
        .update_run(
            "j1",
            &RunUpdate {
                finished_at: Some("2026-01-02T01:00:00.000Z".into()),
                exit_code: Some(0),
                ..job_update(RunState::Completed)
            },
        )
        .unwrap();
    let expected = RunRecord {
        state: RunState::Completed,
        finished_at: Some("2026-01-02T01:00:00.000Z".into()),
        exit_code: Some(0),
        ..expected
    };
    assert_eq!(completed, expected);
    assert_eq!(store.get_run("j1").unwrap(), expected);

    // A final state never changes: the update is ignored and the run returned as it is.
    let ignored = store
        .update_run(
            "j1",
            &RunUpdate {
                started_at: Some("2026-01-03T00:00:00.000Z".into()),
                finished_at: Some("2026-01-03T00:00:00.000Z".into()),
                exit_code: Some(9),
                node_list: Some("node9".into()),
                reason: Some("NodeFail".into()),
                ..job_update(RunState::NodeFailed)
            },
        )
        .unwrap();
    assert_eq!(ignored, expected);
    assert_eq!(store.get_run("j1").unwrap(), expected);
    assert!(matches!(
        store.update_run("nope", &job_update(RunState::Running)),
        Err(StoreError::NotFound(_))
    ));

    // Its run has ended: the target can go.
    store.remove_compute("hpc").unwrap();
    assert!(matches!(
        store.get_compute("hpc"),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.list_compute().unwrap(), [cloud]);

    // Runs recorded before runs had a state (NULL): the state comes from the exit code.
    for (id, exit_code) in [
        ("old-ok", Some(0)),
        ("old-bad", Some(2)),
        ("old-live", None),
    ] {
        store
            .create_run(&run(id, "old", "env", "1", "2025-01-01T00:00:00.000Z"))
            .unwrap();
        if let Some(code) = exit_code {
            store
                .finish_run(id, "2025-01-01T00:01:00.000Z", code)
                .unwrap();
        }
    }
    sql("UPDATE runs SET state = NULL, job = NULL WHERE experiment = 'old'");
    let state = |id| store.get_run(id).unwrap().state;
    assert_eq!(state("old-ok"), RunState::Completed);
    assert_eq!(state("old-bad"), RunState::Failed);
    assert_eq!(state("old-live"), RunState::Running);
    // One that never finished can still be given its end.
    let lost = store
        .update_run(
            "old-live",
            &RunUpdate {
                reason: Some("the machine was gone".into()),
                ..job_update(RunState::Lost)
            },
        )
        .unwrap();
    assert_eq!((lost.state, lost.exit_code), (RunState::Lost, None));
    assert_eq!(state("old-live"), RunState::Lost);
}

/// A change inside an audit scope commits with exactly one audit row; a cancelled scope changes
/// nothing and writes no row.
fn audit_scope(store: &dyn Store) {
    let rows = || store.list_audit(100, 0).unwrap();
    assert!(rows().is_empty());

    let entry = audit_entry("POST /api/v1/environments", Some("scoped"));
    let scope = AuditScope::new(entry.clone());
    let created = with_scope(Some(scope.clone()), || {
        let outcome = store.register(request(definition("scoped", "1.26")));
        // A second change of the same request adds no second row.
        store.set_label("scoped", "1", "prod", "alice").unwrap();
        outcome
    })
    .unwrap();
    assert!(created.created);
    let id = scope.recorded().expect("the change recorded its row");
    assert_eq!(rows(), [AuditEntry { id, ..entry }]);
    assert_eq!(
        store
            .resolve(&Reference::Label("scoped".into(), "prod".into()))
            .unwrap()
            .version,
        "1"
    );
    store.set_audit_status(id, 201).unwrap();
    assert_eq!(rows()[0].status, 201);
    // Too late to cancel: the change happened.
    assert!(!scope.cancel());

    // A change that fails writes no row.
    let failed = AuditScope::new(audit_entry("POST /api/v1/environments", Some("scoped")));
    let conflict = with_scope(Some(failed.clone()), || {
        store.register(request(versioned("scoped", "1.25", "1")))
    });
    assert!(matches!(conflict, Err(StoreError::VersionConflict { .. })));
    assert_eq!(failed.recorded(), None);

    // Cancelled before the call: nothing lands, not even the environment.
    let cancelled = AuditScope::new(audit_entry("POST /api/v1/environments", Some("late")));
    assert!(cancelled.cancel());
    let result = with_scope(Some(cancelled.clone()), || {
        store.register(request(definition("late", "1.26")))
    });
    assert!(matches!(result, Err(StoreError::Cancelled)));
    assert_eq!(cancelled.recorded(), None);
    assert!(matches!(
        store.versions("late"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        latest(store, "late"),
        Err(StoreError::NotFound(_))
    ));

    // Outside a scope a change writes no row.
    store.meta_set("k", "v").unwrap();
    assert_eq!(rows().len(), 1);
    assert_eq!(store.versions("scoped").unwrap().len(), 1);
}

/// When several things refer to a version, both backends must refuse its deletion with the
/// same error. Which reason to name first is a choice; the test pins the order labels -> runs
/// -> deployments -> image builds: a run, a reference that never goes away, is named before a
/// deployment, which the user would otherwise move to another version only to be refused
/// again. (PostgreSQL checked deployments and images before runs until this test found it.)
fn delete_refusal_order(store: &dyn Store) {
    let at = "2026-01-01T00:00:00.000Z";
    for numpy in ["1.26", "1.25", "1.24"] {
        register(store, definition("refs", numpy)).unwrap();
    }
    // refs:1: a label, a run, a deployment and an image build.
    store.set_label("refs", "1", "prod", "story").unwrap();
    store
        .create_run(&run("run-1", "exp", "refs", "1", at))
        .unwrap();
    store
        .put_deployment(&deployment("web", "refs", "1"))
        .unwrap();
    store
        .add_image_build(&image_build("refs", "1", &hex("01")))
        .unwrap();
    // refs:2: a run and an image build; refs:3: a deployment and an image build.
    store
        .create_run(&run("run-2", "exp", "refs", "2", at))
        .unwrap();
    store
        .add_image_build(&image_build("refs", "2", &hex("02")))
        .unwrap();
    store
        .put_deployment(&deployment("api", "refs", "3"))
        .unwrap();
    store
        .add_image_build(&image_build("refs", "3", &hex("03")))
        .unwrap();

    let mut got = vec![(
        "refs:1 label+run+deployment+image",
        refusal(store, "refs", "1"),
    )];
    store.remove_label("refs", "prod", "story").unwrap();
    got.push(("refs:1 run+deployment+image", refusal(store, "refs", "1")));
    got.push(("refs:2 run+image", refusal(store, "refs", "2")));
    got.push(("refs:3 deployment+image", refusal(store, "refs", "3")));

    let expected = [
        "label(s) prod point to it",
        "1 recorded run(s) used it",
        "1 recorded run(s) used it",
        "deployment(s) api serve it",
    ];
    let wrong: Vec<String> = got
        .iter()
        .zip(expected)
        .filter(|((_, reason), want)| !reason.starts_with(want))
        .map(|((state, reason), want)| format!("{state}: expected `{want}...`, got `{reason}`"))
        .collect();
    assert!(
        wrong.is_empty(),
        "KNOWN BUG: delete_version must name the same reference on every backend \
         (labels, runs, deployments, image builds):\n{}",
        wrong.join("\n")
    );
}

/// Seeding registers every curated definition once, as version 1; seeding again, even with the
/// bundle's stored hash changed (a new binary with the same definitions), adds no version.
fn curated_seeding(store: &dyn Store) {
    use terrarium_store::curated;
    curated::seed(store).unwrap();
    let seeded: Vec<_> = store
        .list(false)
        .unwrap()
        .into_iter()
        .filter(|r| r.curated)
        .collect();
    assert_eq!(seeded.len(), curated::BUNDLE.len());
    for record in &seeded {
        assert_eq!(record.version, "1", "{}", record.name);
        assert_eq!(record.source.kind, "curated");
        assert_eq!(record.created_by, "terrarium");
    }
    let bundle = store.meta_get("curated_bundle").unwrap().unwrap();
    curated::seed(store).unwrap();
    store.meta_set("curated_bundle", "an older bundle").unwrap();
    curated::seed(store).unwrap();
    assert_eq!(store.meta_get("curated_bundle").unwrap(), Some(bundle));
    let mut compared = 0;
    for record in &seeded {
        assert_eq!(
            store.versions(&record.name).unwrap().len(),
            1,
            "{}",
            record.name
        );
        compared += 1;
    }
    assert_eq!(compared, curated::definitions().unwrap().len());
}

#[test]
fn sqlite_story() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let db = store.path().to_path_buf();
    story(&store, &|statement| {
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(statement)
            .unwrap();
    });
    let before = store.versions("env").unwrap();
    // Reopening runs no migration twice and keeps everything.
    drop(store);
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.versions("env").unwrap(), before);
}

#[test]
fn sqlite_audit_scope() {
    let dir = tempfile::tempdir().unwrap();
    audit_scope(&SqliteStore::open(dir.path()).unwrap());
}

#[test]
fn sqlite_curated_seeding() {
    let dir = tempfile::tempdir().unwrap();
    curated_seeding(terrarium_store::open(dir.path()).unwrap().as_ref());
    // `sqlite://DIR` names the same workspace.
    let url = format!("sqlite://{}", dir.path().display());
    let store = terrarium_store::open(&url).unwrap();
    assert_eq!(
        store.list(false).unwrap().len(),
        terrarium_store::curated::BUNDLE.len()
    );
}

#[test]
fn sqlite_delete_refusal_order() {
    let dir = tempfile::tempdir().unwrap();
    delete_refusal_order(&SqliteStore::open(dir.path()).unwrap());
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
    story(&store, &|statement| {
        postgres::Client::connect(&url, postgres::NoTls)
            .unwrap()
            .batch_execute(statement)
            .unwrap();
    });
    let before = store.versions("env").unwrap();
    drop(store);
    let store = PostgresStore::connect(&url).unwrap();
    assert_eq!(store.versions("env").unwrap(), before);
}

#[test]
fn postgres_audit_scope() {
    let Some(url) = postgres_database() else {
        return;
    };
    audit_scope(&PostgresStore::connect(&url).unwrap());
}

#[test]
fn postgres_curated_seeding() {
    let Some(url) = postgres_database() else {
        return;
    };
    curated_seeding(terrarium_store::open(&url).unwrap().as_ref());
}

#[test]
fn postgres_delete_refusal_order() {
    let Some(url) = postgres_database() else {
        return;
    };
    delete_refusal_order(&PostgresStore::connect(&url).unwrap());
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
