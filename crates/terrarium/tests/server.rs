//! The team server: REST API, tokens and roles, audit, the CLI against a server workspace,
//! robustness (body limits, JSON errors, graceful shutdown), on SQLite and PostgreSQL.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::server::{backends, bootstrap_token, http, remote, Server};
use common::TestContext;

const DEMO: &str = "name: demo\ndescription: team demo\ntags:\n  team: vision\npython:\n  version: \"3.11\"\n  pip:\n    - numpy==1.26.4\n";

fn token_of(run: common::Run) -> String {
    run.success().json()["token"].as_str().unwrap().to_string()
}

#[test]
fn tokens_roles_audit_and_the_cli_against_a_server() {
    let cx = TestContext::new();
    for db in backends(&cx, "terrarium_srv") {
        let admin = bootstrap_token(&cx, &db, "admin", "root");
        let server = Server::start(&cx, &db, &[]);
        let url = server.url.as_str();

        // No token: refused with the stable error shape; the API description is public.
        let (status, body) = http(url, "GET", "/api/v1/environments", None, None);
        assert_eq!(status, 401, "{body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["error"]["code"], "unauthorized");
        assert_eq!(error["error"]["status"], 401);
        let (status, body) = http(url, "GET", "/openapi.json", None, None);
        assert_eq!(status, 200);
        let openapi: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(openapi["paths"]["/api/v1/environments"]["post"].is_object());
        let run = remote(&cx, url, None, &["env", "list"]).user_error();
        assert!(run.stderr.contains("needs a token"), "{}", run.stderr);

        // The admin hands out tokens through the server.
        let reader = token_of(remote(
            &cx,
            url,
            Some(&admin),
            &[
                "token", "create", "--role", "reader", "--name", "rita", "--json",
            ],
        ));
        let alice = token_of(remote(
            &cx,
            url,
            Some(&admin),
            &[
                "token",
                "create",
                "--role",
                "contributor",
                "--name",
                "alice",
                "--expires",
                "30d",
                "--json",
            ],
        ));
        let listed = remote(&cx, url, Some(&admin), &["token", "list", "--json"]).success();
        assert!(
            !listed.stdout.contains(&alice),
            "token secrets are never listed"
        );
        assert!(!listed.stdout.contains("token_hash"));
        assert_eq!(listed.json().as_array().unwrap().len(), 3);

        // A contributor registers, labels and diffs, with the same commands as locally.
        let file = cx.write("demo.yml", DEMO);
        let v1 = remote(
            &cx,
            url,
            Some(&alice),
            &[
                "env",
                "create",
                "--no-lock",
                "--json",
                "-f",
                file.to_str().unwrap(),
            ],
        )
        .success()
        .json();
        assert_eq!(v1["version"], "1");
        assert_eq!(v1["created_by"], "alice", "the actor is the token's name");
        let again = remote(
            &cx,
            url,
            Some(&alice),
            &[
                "env",
                "create",
                "--no-lock",
                "--json",
                "-f",
                file.to_str().unwrap(),
            ],
        )
        .success()
        .json();
        assert_eq!(
            again["version"], "1",
            "identical content is the same version"
        );
        let file = cx.write("demo.yml", DEMO.replace("1.26.4", "1.26.3"));
        let v2 = remote(
            &cx,
            url,
            Some(&alice),
            &[
                "env",
                "create",
                "--no-lock",
                "--json",
                "-f",
                file.to_str().unwrap(),
            ],
        )
        .success()
        .json();
        assert_eq!(v2["version"], "2");
        assert_eq!(v2["parent"], "demo:1");
        remote(&cx, url, Some(&alice), &["env", "label", "demo:1", "prod"]).success();
        let shown = remote(
            &cx,
            url,
            Some(&reader),
            &["env", "show", "demo@prod", "--json"],
        )
        .success()
        .json();
        assert_eq!(shown["version"], "1");
        let diff = remote(
            &cx,
            url,
            Some(&reader),
            &["env", "diff", "demo:1", "demo:2", "--json"],
        )
        .success()
        .json();
        assert_eq!(diff["changes"][0]["key"], "numpy");
        let history = remote(
            &cx,
            url,
            Some(&reader),
            &["env", "history", "demo", "--json"],
        )
        .success()
        .stdout;
        assert!(history.contains("\"label\""), "{history}");
        let exported = remote(
            &cx,
            url,
            Some(&reader),
            &["env", "export", "demo:2", "--format", "requirements"],
        )
        .success();
        assert!(
            exported.stdout.contains("numpy==1.26.3"),
            "{}",
            exported.stdout
        );

        // The reader reads only; the contributor cannot delete or archive.
        let denied = remote(
            &cx,
            url,
            Some(&reader),
            &["env", "create", "--no-lock", "-f", file.to_str().unwrap()],
        )
        .user_error();
        assert!(
            denied.stderr.contains("needs the contributor role"),
            "{}",
            denied.stderr
        );
        let denied = remote(&cx, url, Some(&alice), &["env", "delete", "demo:2"]).user_error();
        assert!(
            denied.stderr.contains("needs the admin role"),
            "{}",
            denied.stderr
        );
        remote(&cx, url, Some(&alice), &["env", "archive", "demo"]).user_error();
        remote(&cx, url, Some(&alice), &["audit"]).user_error();
        // The admin may.
        remote(&cx, url, Some(&admin), &["env", "delete", "demo:2"]).success();
        remote(&cx, url, Some(&admin), &["env", "archive", "demo"]).success();
        remote(&cx, url, Some(&admin), &["env", "restore", "demo"]).success();
        // Curated environments are seeded by the server and read-only for everyone.
        let listed = remote(&cx, url, Some(&reader), &["env", "list", "--json"])
            .success()
            .json();
        assert!(listed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "curated/sklearn"));
        let curated = cx.write(
            "curated.yml",
            "name: curated/mine\npython:\n  version: \"3.11\"\n",
        );
        remote(
            &cx,
            url,
            Some(&admin),
            &[
                "env",
                "create",
                "--no-lock",
                "-f",
                curated.to_str().unwrap(),
            ],
        )
        .user_error();

        // Every mutating request is in the audit trail: who, what, when, from where.
        let audit = remote(
            &cx,
            url,
            Some(&admin),
            &["audit", "--json", "--limit", "200"],
        )
        .success()
        .json();
        let audit = audit.as_array().unwrap();
        let find = |actor: &str, action: &str, status: i64| {
            audit.iter().any(|e| {
                e["actor"].as_str().unwrap().starts_with(actor)
                    && e["action"].as_str().unwrap().starts_with(action)
                    && e["status"] == status
                    && e["remote"].as_str().unwrap().starts_with("127.0.0.1:")
                    && e["at"].as_str().unwrap().starts_with("20")
            })
        };
        assert!(
            find("alice", "POST /api/v1/environments", 201),
            "{audit:#?}"
        );
        assert!(
            find("alice", "PUT /api/v1/environments/demo/labels/prod", 204),
            "{audit:#?}"
        );
        assert!(
            find("rita", "POST /api/v1/environments", 403),
            "denied attempts are audited too"
        );
        assert!(find(
            "alice",
            "DELETE /api/v1/environments/demo/versions/2",
            403
        ));
        assert!(find(
            "root",
            "DELETE /api/v1/environments/demo/versions/2",
            204
        ));
        assert!(find("root", "POST /api/v1/tokens", 201));
        assert!(
            audit.iter().all(|e| !e.to_string().contains(&alice)),
            "tokens never appear in the audit trail"
        );
        // The bootstrap is audited as direct database access.
        let direct = cx
            .command_without_workspace()
            .args(["audit", "--db", &db, "--json", "--limit", "1000"])
            .output()
            .unwrap();
        let direct: common::Run = direct.into();
        assert!(direct.success().stdout.contains("direct database access"));

        // A run against the server workspace: recorded there with its log; secrets are masked
        // in the stored log and never reach the server.
        let python = which("python3");
        let sys = cx.write("sys.yml", format!("name: sysenv\npython:\n  user_managed: true\n  interpreter: {python}\nenvironment_variables:\n  GREETING: hello\n  API_KEY: \"${{secret:API_KEY}}\"\n"));
        let mut cmd = cx.command_without_workspace();
        cmd.arg("--workspace")
            .arg(url)
            .args(["run", "--experiment", "team", "--env"])
            .arg(&sys)
            .args(["--", "sh", "-c", "echo $GREETING $API_KEY; exit 3"])
            .env("TERRARIUM_HOME", cx.path("home"))
            .env("TERRARIUM_TOKEN", &alice)
            .env("TERRARIUM_SECRET_API_KEY", "s3cr3t-value-42");
        let run: common::Run = cmd.output().unwrap().into();
        // The process itself gets the secret: what it prints of it is masked, which only
        // the exact value is.
        assert_eq!(run.code, 3, "{}", run.stderr);
        assert!(run.stdout.contains("hello ***"), "{}", run.stdout);
        assert!(!run.stdout.contains("s3cr3t-value-42"), "{}", run.stdout);
        let runs = remote(
            &cx,
            url,
            Some(&reader),
            &["runs", "list", "--experiment", "team", "--json"],
        )
        .success()
        .json();
        let id = runs[0]["id"].as_str().unwrap().to_string();
        assert_eq!(runs[0]["exit_code"], 3);
        assert_eq!(runs[0]["actor"], "alice");
        let log = remote(&cx, url, Some(&reader), &["runs", "logs", &id])
            .success()
            .stdout;
        assert_eq!(log.trim(), "hello ***");
        let (status, body) = http(
            url,
            "GET",
            &format!("/api/v1/runs/{id}/log"),
            Some(&reader),
            None,
        );
        assert_eq!((status, body.trim()), (200, "hello ***"));
        for (path, token) in [
            ("/api/v1/environments/sysenv", &reader),
            (&*format!("/api/v1/runs/{id}"), &reader),
        ] {
            let (_, body) = http(url, "GET", path, Some(token), None);
            assert!(!body.contains("s3cr3t"), "{body}");
            assert!(
                body.contains("${secret:API_KEY}") || path.contains("runs"),
                "{body}"
            );
        }

        // Revoked and expired tokens stop working at once.
        let short = token_of(remote(
            &cx,
            url,
            Some(&admin),
            &[
                "token",
                "create",
                "--role",
                "reader",
                "--name",
                "brief",
                "--expires",
                "1s",
                "--json",
            ],
        ));
        let rita_id = listed_id(&cx, url, &admin, "rita");
        remote(&cx, url, Some(&admin), &["token", "revoke", &rita_id]).success();
        let revoked = remote(&cx, url, Some(&reader), &["env", "list"]).user_error();
        assert!(revoked.stderr.contains("revoked"), "{}", revoked.stderr);
        std::thread::sleep(Duration::from_millis(1500));
        let expired = remote(&cx, url, Some(&short), &["env", "list"]).user_error();
        assert!(expired.stderr.contains("expired"), "{}", expired.stderr);

        // The server's own log never holds tokens or secrets.
        let log = server.log();
        for secret in [&admin, &alice, &reader, &"s3cr3t-value-42".to_string()] {
            assert!(!log.contains(secret.as_str()), "{log}");
        }
    }
}

fn listed_id(cx: &TestContext, url: &str, admin: &str, name: &str) -> String {
    let tokens = remote(cx, url, Some(admin), &["token", "list", "--json"])
        .success()
        .json();
    tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn which(program: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn anonymous_access_only_when_asked_and_only_on_loopback() {
    let cx = TestContext::new();
    let db = format!("sqlite://{}", cx.path("ws").display());
    let refused = cx
        .command_without_workspace()
        .args([
            "server",
            "--db",
            &db,
            "--listen",
            "0.0.0.0:0",
            "--allow-anonymous-local",
        ])
        .output()
        .unwrap();
    let refused: common::Run = refused.into();
    let refused = refused.user_error();
    assert!(
        refused.stderr.contains("only for loopback"),
        "{}",
        refused.stderr
    );

    let server = Server::start(&cx, &db, &["--allow-anonymous-local"]);
    let file = cx.write("demo.yml", DEMO);
    let created = remote(
        &cx,
        &server.url,
        None,
        &[
            "env",
            "create",
            "--no-lock",
            "--json",
            "-f",
            file.to_str().unwrap(),
        ],
    )
    .success()
    .json();
    assert_eq!(created["created_by"], "anonymous");
    // Anonymous is a contributor, never an admin.
    remote(&cx, &server.url, None, &["env", "delete", "demo:1"]).user_error();
}

#[test]
fn bad_requests_get_json_errors_and_leave_nothing_behind() {
    let cx = TestContext::new();
    let db = format!("sqlite://{}", cx.path("ws").display());
    let admin = bootstrap_token(&cx, &db, "admin", "root");
    let server = Server::start(&cx, &db, &["--body-limit", "65536"]);
    let url = server.url.as_str();
    let before = remote(
        &cx,
        url,
        Some(&admin),
        &["env", "list", "--archived", "--json"],
    )
    .success()
    .stdout;
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            "/api/v1/environments",
            b"{not json".to_vec(),
            400,
            "invalid",
        ),
        (
            "POST",
            "/api/v1/environments",
            br#"{"definition": {"name": "x", "python": {"pip": ["numpy>>>1"]}}}"#.to_vec(),
            400,
            "invalid",
        ),
        (
            "POST",
            "/api/v1/environments",
            br#"{"definition": {"name": "Bad Name!"}}"#.to_vec(),
            400,
            "invalid",
        ),
        (
            "POST",
            "/api/v1/environments",
            br#"{"definition": {"name": "x", "conda": {"dependencies": ["numpy >=>= 1"]}}}"#
                .to_vec(),
            400,
            "invalid",
        ),
        (
            "POST",
            "/api/v1/environments",
            br#"{"definition": {"name": "x"}, "bogus": 1}"#.to_vec(),
            400,
            "invalid",
        ),
        (
            "POST",
            "/api/v1/environments",
            format!(
                r#"{{"definition": {{"name": "x", "description": "{}"}}}}"#,
                "a".repeat(100_000)
            )
            .into_bytes(),
            413,
            "payload_too_large",
        ),
        // NUL characters, which PostgreSQL cannot store (found by schemathesis).
        (
            "POST",
            "/api/v1/environments",
            br#"{"definition": {"name": "x", "description": "a\u0000b"}}"#.to_vec(),
            400,
            "invalid",
        ),
        (
            "PATCH",
            "/api/v1/environments/demo/versions/1",
            br#"{"set_tags": {"k": "\u0000"}}"#.to_vec(),
            400,
            "invalid",
        ),
        ("GET", "/api/v1/runs/a%00b", vec![], 400, "invalid"),
        ("GET", "/api/v1/runs?experiment=%00", vec![], 400, "invalid"),
        ("GET", "/api/v1/environments/nope", vec![], 404, "not_found"),
        (
            "GET",
            "/api/v1/environments/demo/versions/not%20a%20version",
            vec![],
            400,
            "invalid",
        ),
        (
            "GET",
            "/api/v1/environments?limit=abc",
            vec![],
            400,
            "invalid",
        ),
        ("GET", "/api/v1/no/such/route", vec![], 404, "not_found"),
        (
            "PUT",
            "/api/v1/environments/nope/labels/prod",
            br#"{"version": "1"}"#.to_vec(),
            404,
            "not_found",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let body = (!body.is_empty()).then_some(body);
        let (got, text) = http(url, method, path, Some(&admin), body.as_deref());
        assert_eq!(got, status, "{method} {path}: {text}");
        let error: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        assert_eq!(error["error"]["code"], code, "{method} {path}: {text}");
        assert_eq!(error["error"]["status"], status);
        assert!(error["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let after = remote(
        &cx,
        url,
        Some(&admin),
        &["env", "list", "--archived", "--json"],
    )
    .success()
    .stdout;
    assert_eq!(before, after, "failed requests change nothing");
}

#[test]
fn graceful_shutdown_finishes_requests_in_flight() {
    let cx = TestContext::new();
    let db = format!("sqlite://{}", cx.path("ws").display());
    let admin = bootstrap_token(&cx, &db, "admin", "root");
    let mut server = Server::start(&cx, &db, &[]);
    let address = server.url.trim_start_matches("http://").to_string();
    let body = br#"{"definition": {"name": "inflight", "python": {"version": "3.11"}}}"#;
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!("POST /api/v1/environments HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Stop while the request is half sent.
    std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // New connections are no longer accepted...
    assert!(
        std::net::TcpStream::connect(&address)
            .map(|mut s| {
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
                let mut buf = [0u8; 1];
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                matches!(s.read(&mut buf), Ok(0) | Err(_))
            })
            .unwrap_or(true),
        "a stopping server takes no new requests"
    );
    // ...but the one in flight completes.
    stream.write_all(&body[10..]).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let (status, text) = common::server::parse_response(&response);
    assert_eq!(status, 201, "{text}");
    assert_eq!(server.stop(), Some(0), "{}", server.log());
    assert!(server.log().contains("finishing requests in flight"));
    // And it was stored.
    let mut cmd = cx.command_without_workspace();
    cmd.arg("--workspace")
        .arg(cx.path("ws"))
        .args(["env", "show", "inflight:1", "--json"]);
    let run: common::Run = cmd.output().unwrap().into();
    run.success();
}

#[test]
fn two_servers_on_one_postgres_sixteen_concurrent_clients() {
    let cx = TestContext::new();
    let Some(db) = common::server::postgres_database("terrarium_two") else {
        return;
    };
    let admin = bootstrap_token(&cx, &db, "admin", "root");
    let servers = [Server::start(&cx, &db, &[]), Server::start(&cx, &db, &[])];
    let spawn_all = |files: &[std::path::PathBuf]| -> Vec<serde_json::Value> {
        let children: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(i, file)| {
                let mut cmd = cx.command_without_workspace();
                cmd.arg("--workspace")
                    .arg(&servers[i % 2].url)
                    .args(["env", "create", "--no-lock", "--json", "-f"])
                    .arg(file)
                    .env("TERRARIUM_TOKEN", &admin)
                    .env("TERRARIUM_HOME", cx.path("home"))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                cmd.spawn().unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|child| {
                let run: common::Run = child.wait_with_output().unwrap().into();
                run.success().json()
            })
            .collect()
    };
    // 16 changed definitions of one environment at once, through two servers.
    let files: Vec<_> = (0..16)
        .map(|i| {
            cx.write(
                &format!("shared-{i}.yml"),
                format!("name: shared\npython:\n  version: \"3.11\"\n  pip:\n    - pkg{i}==1.0\n"),
            )
        })
        .collect();
    let mut versions: Vec<u32> = spawn_all(&files)
        .iter()
        .map(|r| r["version"].as_str().unwrap().parse().unwrap())
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        (1..=16).collect::<Vec<_>>(),
        "no duplicate, no lost version, no gap"
    );
    // 16 clients with one identical new definition: one version.
    let same: Vec<_> = (0..16)
        .map(|i| {
            cx.write(
                &format!("same-{i}.yml"),
                "name: shared\npython:\n  version: \"3.11\"\n  pip:\n    - common==2.0\n",
            )
        })
        .collect();
    let results = spawn_all(&same);
    assert!(results.iter().all(|r| r["version"] == "17"), "{results:?}");
    let history = remote(
        &cx,
        &servers[1].url,
        Some(&admin),
        &["env", "history", "shared", "--json"],
    )
    .success()
    .json();
    let listed: Vec<&str> = history["versions"]
        .as_array()
        .or(history.as_array())
        .unwrap()
        .iter()
        .filter_map(|v| v["version"].as_str())
        .collect();
    assert_eq!(listed.len(), 17, "{history}");
}
