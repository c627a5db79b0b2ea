//! The compute and run-state routes over real HTTP: the whole app (access layer included) on a
//! SQLite workspace, on 127.0.0.1:0, driven by [`RemoteStore`] and by raw requests.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use terrarium_store::{
    ComputeRecord, EngineJob, RunRecord, RunState, RunUpdate, SqliteStore, Store, StoreError,
};

use crate::client::RemoteStore;
use crate::server::{app, ServerConfig};
use crate::state::AppState;

/// A server on its own runtime, with a contributor (alice), another contributor (bob), a
/// reader and an admin.
struct TestServer {
    url: String,
    store: Arc<dyn Store>,
    alice: String,
    bob: String,
    reader: String,
    admin: String,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl TestServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let token = |name: &str, role: &str| {
            crate::auth::issue_token(store.as_ref(), name, role, None, "test")
                .unwrap()
                .0
        };
        let (alice, bob, reader, admin) = (
            token("alice", "contributor"),
            token("bob", "contributor"),
            token("rita", "reader"),
            token("root", "admin"),
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address = listener.local_addr().unwrap();
        let config = ServerConfig::new(address);
        let mut state = AppState::new(vec![Arc::clone(&store)], false);
        state.packs = Some(Arc::new(
            crate::packs::PackStore::open(&dir.path().join("packs")).unwrap(),
        ));
        let router = app(Arc::new(state), &config);
        let log: terrarium_serve::Log = Arc::new(|line: &str| eprintln!("test server: {line}"));
        runtime.spawn(terrarium_serve::listen::serve(
            vec![listener],
            router,
            config.header_timeout,
            64,
            log,
            std::future::pending(),
        ));
        Self {
            url: format!("http://{address}"),
            store,
            alice,
            bob,
            reader,
            admin,
            _runtime: runtime,
            _dir: dir,
        }
    }

    fn client(&self, token: &str) -> RemoteStore {
        RemoteStore::new(&self.url, Some(token.to_string())).unwrap()
    }

    /// A raw request: its status and JSON answer.
    fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut request = http
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn slurm(name: &str) -> ComputeRecord {
    ComputeRecord {
        name: name.into(),
        kind: "slurm".into(),
        options: [("partition".to_string(), "gpu".to_string())].into(),
        created_at: "ignored".into(),
        created_by: "ignored".into(),
    }
}

/// A queued job of alice's on `target`, in a registered environment.
fn job(server: &TestServer, id: &str, target: &str) -> RunRecord {
    if server
        .store
        .resolve(&terrarium_spec::names::Reference::Latest("env".into()))
        .is_err()
    {
        let definition = terrarium_spec::Definition {
            name: "env".into(),
            ..Default::default()
        };
        server
            .store
            .register(terrarium_store::RegisterRequest {
                definition,
                source: terrarium_store::Source::new("manual"),
                parent: None,
                actor: "test".into(),
                allow_curated: false,
                force_new: false,
                lock: None,
            })
            .unwrap();
    }
    RunRecord {
        id: id.into(),
        experiment: "exp".into(),
        environment: "env".into(),
        version: "1".into(),
        lock_hash: None,
        command: vec!["python".into(), "train.py".into()],
        cwd: "/work".into(),
        target: target.into(),
        actor: "alice".into(),
        started_at: "2026-01-01T00:00:00.000Z".into(),
        finished_at: None,
        exit_code: None,
        log_path: None,
        state: RunState::Queued,
        job: Some(EngineJob {
            kind: "slurm".into(),
            job_id: "7".into(),
            nodes: 1,
            queued_at: "2026-01-01T00:00:00.000Z".into(),
            node_list: None,
            reason: Some("Priority".into()),
            log_dir: None,
        }),
    }
}

fn update(state: RunState) -> RunUpdate {
    RunUpdate {
        state,
        started_at: None,
        finished_at: None,
        exit_code: None,
        node_list: None,
        reason: None,
    }
}

fn remote_status(result: Result<impl std::fmt::Debug, StoreError>) -> (u16, String) {
    match result {
        Err(StoreError::Remote { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn compute_targets_are_added_listed_shown_and_removed() {
    let server = TestServer::start();
    let alice = server.client(&server.alice);
    alice.add_compute(&slurm("hpc")).unwrap();
    let stored = alice.get_compute("hpc").unwrap();
    // Who and when are the server's.
    assert_eq!(stored.created_by, "alice");
    assert_ne!(stored.created_at, "ignored");
    assert_eq!((stored.kind.as_str(), stored.options.len()), ("slurm", 1));
    alice.add_compute(&slurm("b-hpc")).unwrap();
    let names: Vec<_> = alice
        .list_compute()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["b-hpc", "hpc"]);
    // Readers read, and only read.
    let reader = server.client(&server.reader);
    assert_eq!(reader.get_compute("hpc").unwrap(), stored);
    assert_eq!(remote_status(reader.add_compute(&slurm("r"))).0, 403);
    assert_eq!(remote_status(reader.remove_compute("hpc")).0, 403);
    // A name is taken once.
    assert_eq!(
        remote_status(alice.add_compute(&slurm("hpc"))),
        (409, "conflict".to_string())
    );
    assert!(matches!(
        alice.get_compute("nope"),
        Err(StoreError::NotFound(_))
    ));

    // A target with a job that has not ended stays; once it has ended, it can go.
    let run = job(&server, "j1", "hpc");
    alice.create_run(&run).unwrap();
    assert_eq!(
        remote_status(alice.remove_compute("hpc")),
        (409, "referenced".to_string())
    );
    alice
        .update_run(
            "j1",
            &RunUpdate {
                exit_code: Some(1),
                finished_at: Some("2026-01-01T01:00:00".into()),
                ..update(RunState::Failed)
            },
        )
        .unwrap();
    // Any contributor may remove a target.
    server.client(&server.bob).remove_compute("hpc").unwrap();
    assert!(matches!(
        alice.get_compute("hpc"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        alice.remove_compute("hpc"),
        Err(StoreError::NotFound(_))
    ));

    // Each change is in the audit trail, under the target's name.
    let audit = server.client(&server.admin).list_audit(100, 0).unwrap();
    let compute: Vec<_> = audit
        .iter()
        .filter(|e| e.target.as_deref() == Some("compute target hpc"))
        .map(|e| (e.action.as_str(), e.status))
        .collect();
    assert!(
        compute.contains(&("DELETE /api/v1/compute/hpc", 204)),
        "{compute:?}"
    );
    assert!(
        compute.contains(&("DELETE /api/v1/compute/hpc", 409)),
        "{compute:?}"
    );
    assert!(audit
        .iter()
        .any(|e| e.action == "POST /api/v1/compute" && e.status == 201));
}

#[test]
fn compute_targets_are_checked_before_they_are_stored() {
    let server = TestServer::start();
    let alice = &server.alice;
    let refused = |body: Value| {
        let (status, answer) = server.call("POST", "/api/v1/compute", alice, Some(body.clone()));
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], "invalid", "{answer}");
        answer["error"]["message"].as_str().unwrap().to_string()
    };
    for name in [
        "local",
        "container",
        "curated/x",
        "",
        "-x",
        "a b",
        "x/y",
        &"n".repeat(256),
    ] {
        refused(json!({"name": name, "kind": "slurm"}));
    }
    assert!(refused(json!({"name": "x", "kind": "pbs"})).contains("pbs"));
    refused(json!({"name": "x", "kind": "SLURM"}));
    // Options: known keys of the kind, well-formed values, plain text of bounded size.
    refused(json!({"name": "x", "kind": "slurm", "options": {"colour": "red"}}));
    refused(json!({"name": "x", "kind": "slurm", "options": {"partition": "a b"}}));
    refused(json!({"name": "x", "kind": "slurm", "options": {"logs": "relative/dir"}}));
    let message =
        refused(json!({"name": "x", "kind": "slurm", "options": {"logs": "/a\u{1b}[31m"}}));
    assert!(message.contains("U+001B"), "{message}");
    refused(
        json!({"name": "x", "kind": "slurm", "options": {"logs": format!("/{}", "a".repeat(5000))}}),
    );
    refused(json!({"name": "x", "kind": "slurm", "options": {"": "x"}}));
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    refused(json!({"name": "x", "kind": "slurm", "options": many}));
    // Unknown fields and who/when are not the caller's to say.
    refused(json!({"name": "x", "kind": "slurm", "created_by": "mallory"}));
    assert!(server.store.list_compute().unwrap().is_empty());

    let (status, created) = server.call(
        "POST",
        "/api/v1/compute",
        alice,
        Some(json!({"name": "gpu.cluster-1", "kind": "slurm", "options": {"partition": "gpu", "time": "2h", "logs": "/shared/logs"}})),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["created_by"], "alice");
    let (status, page) = server.call("GET", "/api/v1/compute?limit=1", &server.reader, None);
    assert_eq!((status, page["total"].as_u64()), (200, Some(1)), "{page}");
}

#[test]
fn run_states_come_from_the_runs_author_and_end_once() {
    let server = TestServer::start();
    let alice = server.client(&server.alice);
    alice.add_compute(&slurm("hpc")).unwrap();
    // A run is recorded queued or running; a job, on a compute target of its kind.
    let refused = |run: RunRecord| {
        let body = serde_json::to_value(&run).unwrap();
        let (status, answer) = server.call("POST", "/api/v1/runs", &server.alice, Some(body));
        assert_eq!(status, 400, "{answer}");
    };
    refused(RunRecord {
        state: RunState::Completed,
        ..job(&server, "j0", "hpc")
    });
    refused(job(&server, "j0", "nope"));
    refused(job(&server, "j0", "local"));
    let mut ray = job(&server, "j0", "hpc");
    ray.job.as_mut().unwrap().kind = "ray".into();
    refused(ray);
    let mut id = job(&server, "j0", "hpc");
    id.job.as_mut().unwrap().job_id = "7\n8".into();
    refused(id);
    assert!(matches!(
        server.store.get_run("j0"),
        Err(StoreError::NotFound(_))
    ));
    alice.create_run(&job(&server, "j1", "hpc")).unwrap();
    let path = "/api/v1/runs/j1/state";

    // Only its author (or an admin) says what became of a run.
    let (status, _) = server.call("POST", path, &server.bob, Some(json!({"state": "running"})));
    assert_eq!(status, 403);
    let (status, _) = server.call(
        "POST",
        path,
        &server.reader,
        Some(json!({"state": "running"})),
    );
    assert_eq!(status, 403);
    // Updates that do not hang together are refused, and change nothing.
    for body in [
        json!({"state": "finished"}),
        json!({"state": "running", "exit_code": 0}),
        json!({"state": "queued", "finished_at": "2026-01-01T00:00:00Z"}),
        json!({"state": "running", "started_at": "yesterday"}),
        json!({"state": "running", "reason": "a\nb"}),
        json!({"state": "running", "node_list": "n".repeat(5000)}),
        json!({"state": "running", "job_id": "8"}),
    ] {
        let (status, answer) = server.call("POST", path, &server.alice, Some(body.clone()));
        assert_eq!(status, 400, "{body} -> {answer}");
    }
    assert_eq!(server.store.get_run("j1").unwrap().state, RunState::Queued);

    let (status, running) = server.call(
        "POST",
        path,
        &server.alice,
        Some(json!({"state": "running", "started_at": "2026-01-01T00:05:00", "node_list": "node[1-2]"})),
    );
    assert_eq!(status, 200, "{running}");
    assert_eq!(running["state"], "running");
    assert_eq!(running["started_at"], "2026-01-01T00:05:00");
    assert_eq!(running["job"]["node_list"], "node[1-2]");
    // The reason went with the state it explained.
    assert!(running["job"].get("reason").is_none(), "{running}");

    // An admin may end it.
    let (status, done) = server.call(
        "POST",
        path,
        &server.admin,
        Some(json!({"state": "completed", "exit_code": 0, "finished_at": "2026-01-01T01:00:00.000Z"})),
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (done["state"].as_str(), done["exit_code"].as_i64()),
        (Some("completed"), Some(0))
    );

    // A final state never changes: the API says so, and the client keeps the trait's word
    // (the run, as it is).
    let (status, answer) = server.call(
        "POST",
        path,
        &server.alice,
        Some(json!({"state": "failed"})),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{answer}"
    );
    let kept = alice.update_run("j1", &update(RunState::Lost)).unwrap();
    assert_eq!(kept.state, RunState::Completed);
    assert_eq!(kept, server.store.get_run("j1").unwrap());
    assert!(matches!(
        alice.update_run("nope", &update(RunState::Running)),
        Err(StoreError::NotFound(_))
    ));
}

/// Another user reading a job run through the server sees what the engine says, though only the
/// run's author may record it; the author's reading records it.
#[test]
fn another_users_reading_shows_the_engines_word_unrecorded() {
    let server = TestServer::start();
    let alice = server.client(&server.alice);
    let bob = server.client(&server.bob);
    alice.add_compute(&slurm("hpc")).unwrap();
    alice.create_run(&job(&server, "j1", "hpc")).unwrap();
    let run = bob.get_run("j1").unwrap();
    let status = terrarium_compute::JobStatus {
        state: RunState::Running,
        exit_code: None,
        started_at: Some("2026-01-01T00:05:00".into()),
        finished_at: None,
        nodes: vec!["node1".into()],
        reason: None,
    };
    let shown = terrarium_compute::runs::record(&bob, &run, &status).unwrap();
    assert_eq!(shown.state, RunState::Running);
    assert_eq!(shown.started_at, "2026-01-01T00:05:00");
    assert_eq!(
        shown.job.as_ref().unwrap().node_list.as_deref(),
        Some("node1")
    );
    assert_eq!(server.store.get_run("j1").unwrap().state, RunState::Queued);
    let recorded = terrarium_compute::runs::record(&alice, &run, &status).unwrap();
    assert_eq!(recorded, server.store.get_run("j1").unwrap());
    assert_eq!(recorded.state, RunState::Running);
}

#[test]
fn the_openapi_document_has_the_compute_and_state_routes() {
    let doc = serde_json::to_value(<super::ApiDoc as utoipa::OpenApi>::openapi()).unwrap();
    let paths = &doc["paths"];
    for (path, method) in [
        ("/api/v1/compute", "get"),
        ("/api/v1/compute", "post"),
        ("/api/v1/compute/{name}", "get"),
        ("/api/v1/compute/{name}", "delete"),
        ("/api/v1/runs/{id}/state", "post"),
    ] {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        // Every write documents the refusals the access layer gives.
        if method != "get" {
            for code in ["401", "403", "404", "409", "413"] {
                assert!(
                    operation["responses"][code].is_object(),
                    "{method} {path}: {code}"
                );
            }
        }
    }
    let schemas = &doc["components"]["schemas"];
    for schema in [
        "ComputeRecord",
        "ComputeBody",
        "RunStateBody",
        "EngineJob",
        "RunRecord",
    ] {
        assert!(schemas[schema].is_object(), "{schema}");
    }
    assert_eq!(
        schemas["RunRecord"]["properties"]["state"]["type"],
        "string"
    );
    // Examples the fuzzer starts from.
    assert_eq!(schemas["ComputeBody"]["example"]["kind"], "slurm");
    assert_eq!(schemas["RunStateBody"]["example"]["state"], "running");
}

#[test]
fn the_web_ui_shows_compute_targets_and_job_states() {
    let server = TestServer::start();
    let page = |path: &str| {
        let response = reqwest::blocking::Client::new()
            .get(format!("{}{path}", server.url))
            .bearer_auth(&server.reader)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        response.text().unwrap()
    };
    assert!(page("/ui/compute").contains("No compute targets"));
    let alice = server.client(&server.alice);
    alice.add_compute(&slurm("hpc")).unwrap();
    alice.create_run(&job(&server, "j1", "hpc")).unwrap();
    alice
        .update_run(
            "j1",
            &RunUpdate {
                node_list: Some("node<1>".into()),
                reason: Some("<b>Resources</b>".into()),
                ..update(RunState::Running)
            },
        )
        .unwrap();

    let compute = page("/ui/compute");
    for text in [
        "id=\"compute\"",
        ">hpc<",
        ">slurm<",
        "partition=gpu",
        "alice",
    ] {
        assert!(compute.contains(text), "{text}: {compute}");
    }
    assert!(page("/ui").contains("href=\"/ui/compute\""));
    let runs = page("/ui/runs");
    for text in ["hpc", "slurm 7", ">running<"] {
        assert!(runs.contains(text), "{text}: {runs}");
    }
    let run = page("/ui/runs/j1");
    for text in [
        "id=\"job\"",
        ">running<",
        "node&lt;1&gt;",
        "&lt;b&gt;Resources&lt;/b&gt;",
        "2026-01-01T00:00:00.000Z",
    ] {
        assert!(run.contains(text), "{text}: {run}");
    }
    assert!(!run.contains("<b>Resources"), "{run}");
}

#[test]
fn unknown_and_mistyped_fields_in_a_body_are_refused_by_path() {
    let server = TestServer::start();
    // A misspelled key, and a conda file's keys sent as they are: refused, not dropped (which
    // would register an empty environment).
    for (definition, field) in [
        (json!({"name": "x", "pyhton": {}}), "definition.pyhton"),
        (
            json!({"name": "x", "channels": ["conda-forge"], "dependencies": ["numpy"]}),
            "definition.channels",
        ),
    ] {
        let (status, answer) = server.call(
            "POST",
            "/api/v1/environments",
            &server.alice,
            Some(json!({ "definition": definition })),
        );
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer
                .to_string()
                .contains(&format!("unknown field `{field}`")),
            "{answer}"
        );
    }
    let (status, answer) = server.call(
        "POST",
        "/api/v1/environments",
        &server.alice,
        Some(json!({"definition": {"name": "x", "environment_variables": "A=1"}})),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer
            .to_string()
            .contains("field `definition.environment_variables`"),
        "{answer}"
    );
    assert!(server
        .store
        .list(true)
        .unwrap()
        .iter()
        .all(|v| v.name != "x"));
}

/// Packs: kept by digest only when the bytes match it, fetched with a token or a signed link
/// (no token), and never by a link for another pack, an expired one or a forged one.
#[test]
fn packs_are_kept_by_digest_and_fetched_through_signed_links() {
    use sha2::Digest as _;
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("p.tpack");
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&pack, &bytes).unwrap();
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
    let alice = server.client(&server.alice);
    assert!(alice.pack_link(&digest, "1d").unwrap().is_none());
    // A reader may not upload; bytes that are not the digest's are refused and not kept.
    assert_eq!(
        remote_status(
            server
                .client(&server.reader)
                .upload_pack(&digest, &pack, "1d")
        )
        .0,
        403
    );
    let other = dir.path().join("other.tpack");
    std::fs::write(&other, b"not the pack").unwrap();
    let (status, code) = remote_status(alice.upload_pack(&digest, &other, "1d"));
    assert_eq!((status, code.as_str()), (400, "invalid"));
    assert!(alice.pack_link(&digest, "1d").unwrap().is_none());
    let packs_dir = server._dir.path().join("packs");
    let kept = || {
        std::fs::read_dir(&packs_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != ".link-key")
            .collect::<Vec<_>>()
    };
    assert!(kept().is_empty(), "{:?}", kept());
    // Too long a link is refused before a byte is taken, by the client and by the server.
    assert!(matches!(
        alice.upload_pack(&digest, &pack, "31d"),
        Err(StoreError::Invalid(_))
    ));
    let (status, answer) = server.call(
        "PUT",
        &format!("/api/v1/packs/{digest}?lifetime=31d"),
        &server.alice,
        None,
    );
    assert_eq!(status, 400, "{answer}");
    let uploaded = alice.upload_pack(&digest, &pack, "1d").unwrap();
    assert_eq!(uploaded.size, bytes.len() as u64);
    assert_eq!(kept(), vec![format!("sha256-{}.tpack", &digest[7..])]);
    // The signed link fetches it with no token, checked against the digest.
    let fetched = dir.path().join("fetched.tpack");
    crate::client::download_pack(&format!("{}{}", server.url, uploaded.link), &fetched).unwrap();
    assert_eq!(std::fs::read(&fetched).unwrap(), bytes);
    // A contributor may ask for a new link to it; a reader may not (a link outlives the token
    // that asked for it).
    let relinked = alice.pack_link(&digest, "2h").unwrap().unwrap();
    assert_eq!(relinked.size, uploaded.size);
    assert_eq!(
        remote_status(server.client(&server.reader).pack_link(&digest, "2h")).0,
        403
    );
    // More than a pack may hold is refused from its announced length, before any byte.
    let answer = {
        use std::io::{Read as _, Write as _};
        let mut socket =
            std::net::TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
        write!(
            socket,
            "PUT /api/v1/packs/{digest} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            server.alice,
            crate::packs::MAX_PACK_BYTES + 1
        )
        .unwrap();
        let mut answer = String::new();
        let _ = socket.read_to_string(&mut answer);
        answer
    };
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // With a token, no link is needed; without either, nothing is served.
    let path = format!("/api/v1/packs/{digest}");
    let http = reqwest::blocking::Client::new();
    let get = |url: String| http.get(url).send().unwrap();
    assert_eq!(
        http.get(format!("{}{path}", server.url))
            .bearer_auth(&server.reader)
            .send()
            .unwrap()
            .bytes()
            .unwrap()
            .len(),
        bytes.len()
    );
    let answer = get(format!("{}{path}", server.url));
    assert_eq!(answer.status().as_u16(), 401);
    // A link for another pack, a changed expiry, a forged signature or an expired link: 403.
    let (query_path, query) = uploaded.link.split_once('?').unwrap();
    let expires: i64 = query
        .split('&')
        .find_map(|p| p.strip_prefix("expires="))
        .unwrap()
        .parse()
        .unwrap();
    let signature = query
        .split('&')
        .find_map(|p| p.strip_prefix("signature="))
        .unwrap();
    let zero = format!("sha256:{}", "0".repeat(64));
    for link in [
        format!("/api/v1/packs/{zero}?{query}"),
        format!("{query_path}?expires={}&signature={signature}", expires + 1),
        format!(
            "{query_path}?expires={expires}&signature={}",
            "ab".repeat(32)
        ),
        format!("{query_path}?expires=1&signature={signature}"),
    ] {
        let answer = get(format!("{}{link}", server.url));
        assert_eq!(answer.status().as_u16(), 403, "{link}");
    }
    // A download that is not its digest's is refused by the client, and an address that is
    // not a pack's is not fetched at all.
    let wrong = format!("{}/api/v1/packs/{zero}?{query}", server.url);
    assert!(crate::client::download_pack(&wrong, &fetched).is_err());
    for bad in [
        format!("{}/api/v1/packs/sha256:..%2F..%2Fetc?{query}", server.url),
        format!("{}/api/v1/runs?{query}", server.url),
        format!("file:///api/v1/packs/{digest}"),
    ] {
        assert!(
            matches!(
                crate::client::download_pack(&bad, &fetched),
                Err(StoreError::Invalid(_))
            ),
            "{bad}"
        );
    }
    // The uploads were audited; the fetches change nothing and are not.
    let audit = server.store.list_audit(100, 0).unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action.starts_with("PUT /api/v1/packs/") && e.status == 201));
}
