//! The team server under attack from a contributor, a page of another origin and slow
//! clients: records belong to their authors, locks to their definitions, a timed-out change
//! never lands, every committed change has its audit row, and a few slow clients cannot
//! starve the others. See SECURITY.md.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::server::{bootstrap_token, parse_response, Server};
use common::TestContext;

/// One raw HTTP/1.1 request with extra headers; returns (status, head, body).
fn request(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, String, String) {
    let address = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).unwrap();
    if let Some(body) = body {
        let _ = stream.write_all(body);
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let head = String::from_utf8_lossy(&response)
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let (status, body) = parse_response(&response);
    (status, head, body)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn json_post(url: &str, path: &str, token: &str, body: &serde_json::Value) -> (u16, String) {
    let auth = bearer(token);
    let (status, _, text) = request(
        url,
        "POST",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(body.to_string().as_bytes()),
    );
    (status, text)
}

fn json_put(url: &str, path: &str, token: &str, body: &serde_json::Value) -> (u16, String) {
    let auth = bearer(token);
    let (status, _, text) = request(
        url,
        "PUT",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(body.to_string().as_bytes()),
    );
    (status, text)
}

fn get(url: &str, path: &str, token: &str) -> (u16, String) {
    let auth = bearer(token);
    let (status, _, text) = request(url, "GET", path, &[("Authorization", &auth)], None);
    (status, text)
}

fn definition(name: &str, pin: &str) -> serde_json::Value {
    serde_json::json!({
        "definition": {
            "name": name,
            "python": {"version": "3.11", "pip": [{"spec": format!("requests=={pin}")}]}
        }
    })
}

fn sqlite(cx: &TestContext) -> (String, std::path::PathBuf) {
    let dir = cx.path("server-ws");
    (format!("sqlite://{}", dir.display()), dir)
}

fn count(db_dir: &std::path::Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db_dir.join("workspace.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn records_and_locks_belong_to_their_authors() {
    let cx = TestContext::new();
    let (db, _) = sqlite(&cx);
    let admin = bootstrap_token(&cx, &db, "admin", "root");
    let alice = bootstrap_token(&cx, &db, "contributor", "alice");
    let bob = bootstrap_token(&cx, &db, "contributor", "bob");
    let server = Server::start(&cx, &db, &[]);
    let url = server.url.as_str();

    // A run: only alice (or an admin) finishes it or writes its log.
    let run = serde_json::json!({
        "id": "run-1", "experiment": "exp", "environment": "curated/sklearn", "version": "1",
        "lock_hash": null, "command": ["python"], "cwd": "/tmp", "target": "local",
        "actor": "", "started_at": "2026-12-02T00:00:00.000Z", "finished_at": null,
        "exit_code": null, "log_path": null
    });
    let (status, body) = json_post(url, "/api/v1/runs", &alice, &run);
    assert_eq!(status, 201, "{body}");
    let finish = serde_json::json!({"finished_at": "2026-12-02T00:00:01.000Z", "exit_code": 0});
    let (status, body) = json_post(url, "/api/v1/runs/run-1/finish", &bob, &finish);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("only its author or an admin"), "{body}");
    let auth = bearer(&bob);
    let (status, _, _) = request(
        url,
        "PUT",
        "/api/v1/runs/run-1/log",
        &[("Authorization", &auth)],
        Some(b"forged"),
    );
    assert_eq!(status, 403);
    let (status, body) = json_post(url, "/api/v1/runs/run-1/finish", &alice, &finish);
    assert_eq!(status, 204, "{body}");

    // A deployment: bob cannot point alice's record at another process or file.
    let deployment = |pid: u32, log: &str| {
        serde_json::json!({
            "name": "svc", "environment": "curated/sklearn", "version": "1", "lock_hash": null,
            "model_path": "/m", "model_hash": "sha256:00", "entry": "score.py", "workers": 1,
            "url": null, "host": "h", "pid": pid, "state": "ready", "reason": null, "actor": "",
            "started_at": "2026-12-02T00:00:00.000Z", "stopped_at": null, "log_path": log
        })
    };
    let (status, body) = json_put(
        url,
        "/api/v1/deployments/svc",
        &alice,
        &deployment(10, "/a"),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = json_put(
        url,
        "/api/v1/deployments/svc",
        &bob,
        &deployment(1, "/etc/hostname"),
    );
    assert_eq!(status, 403, "{body}");
    let (_, body) = get(url, "/api/v1/deployments/svc", &alice);
    let stored: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stored["pid"], 10, "{body}");
    let (status, body) = json_put(
        url,
        "/api/v1/deployments/svc",
        &admin,
        &deployment(11, "/a"),
    );
    assert_eq!(status, 200, "an admin may: {body}");
    let (status, body) = json_put(
        url,
        "/api/v1/deployments/..%2Fx",
        &alice,
        &deployment(1, "/a"),
    );
    assert_eq!(status, 400, "{body}");

    // A lock: only the version's author may give it one, and a wrong hash is not echoed.
    let (status, body) = json_post(
        url,
        "/api/v1/environments",
        &alice,
        &definition("web", "2.31.0"),
    );
    assert_eq!(status, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let version = created["record"]["version"].as_str().unwrap().to_string();
    let content_hash = created["record"]["content_hash"].as_str().unwrap();
    let lock = serde_json::json!({
        "lock_version": 1, "kind": "resolved", "content_hash": content_hash, "tools": {},
        "platforms": {"linux-64": {"pypi": [{
            "name": "requests", "version": "2.0.0",
            "url": "https://evil.example/requests-2.0.0-py3-none-any.whl", "sha256": "00"
        }]}}
    });
    let body = serde_json::json!({"lock_hash": "sha256:0", "lock": lock.to_string()});
    let path = format!("/api/v1/environments/web/versions/{version}/lock");
    let (status, text) = json_put(url, &path, &bob, &body);
    assert_eq!(status, 403, "{text}");
    let (status, text) = json_put(url, &path, &alice, &body);
    assert_eq!(status, 400, "{text}");
    assert!(
        !text.contains("sha256:") || text.matches("sha256:").count() == 0,
        "{text}"
    );
    assert!(text.contains("does not hash"), "{text}");
}

/// A malformed source or parent is refused, and so is a token name that reads as another.
#[test]
fn registration_fields_and_names_are_checked() {
    let cx = TestContext::new();
    let (db, _) = sqlite(&cx);
    let alice = bootstrap_token(&cx, &db, "contributor", "alice");
    let server = Server::start(&cx, &db, &[]);
    let url = server.url.as_str();
    let (status, text) = json_post(url, "/api/v1/environments", &alice, &definition("web", "1"));
    assert_eq!(status, 201, "{text}");
    for (field, value, message) in [
        (
            "source",
            serde_json::json!({"kind": "anything"}),
            "source.kind",
        ),
        (
            "source",
            serde_json::json!({"kind": "import", "format": "nope"}),
            "source.format",
        ),
        (
            "source",
            serde_json::json!({"kind": "import", "file": "a\u{1b}[31mb"}),
            "source.file",
        ),
        (
            "parent",
            serde_json::json!("no-such-env:1"),
            "not a version",
        ),
        ("parent", serde_json::json!("../x"), "NAME:VERSION"),
    ] {
        let mut body = definition("web", "2.31.0");
        body[field] = value.clone();
        let (status, text) = json_post(url, "/api/v1/environments", &alice, &body);
        assert_eq!(status, 400, "{field} {value}: {text}");
        assert!(text.contains(message), "{field} {value}: {text}");
    }
    let mut body = definition("web", "2.31.0");
    body["parent"] = serde_json::json!("web:1");
    let (status, text) = json_post(url, "/api/v1/environments", &alice, &body);
    assert_eq!(status, 201, "{text}");
    let refused = cx
        .command_without_workspace()
        .args([
            "token",
            "create",
            "--db",
            &db,
            "--role",
            "reader",
            "--name",
            "admin\u{202E}nimda",
        ])
        .output()
        .unwrap();
    let refused: common::Run = refused.into();
    let refused = refused.user_error();
    assert!(refused.stderr.contains("U+202E"), "{}", refused.stderr);
}

/// A request that times out before its change commits is answered 503 and its change never
/// lands, even though the store call goes on in the background.
#[test]
fn a_timed_out_change_does_not_land() {
    let cx = TestContext::new();
    let (db, dir) = sqlite(&cx);
    let alice = bootstrap_token(&cx, &db, "contributor", "alice");
    let server = Server::start(&cx, &db, &["--request-timeout", "1"]);
    let url = server.url.clone();
    // Another process holds the database's write lock for 3 s.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(dir.join("workspace.db")).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_secs(3));
            conn.execute_batch("COMMIT").unwrap();
        })
    };
    locked_rx.recv().unwrap();
    let (status, body) = json_post(
        &url,
        "/api/v1/environments",
        &alice,
        &definition("slow", "1"),
    );
    assert_eq!(status, 503, "{body}");
    holder.join().unwrap();
    // The store call finishes after the lock is released: it must roll back.
    std::thread::sleep(Duration::from_millis(1500));
    let (status, body) = get(&url, "/api/v1/environments/slow", &alice);
    assert_eq!(status, 404, "the timed-out registration landed: {body}");
    assert_eq!(
        count(&dir, "SELECT COUNT(*) FROM audit WHERE action = 'POST /api/v1/environments' AND status = 503"),
        1
    );
}

/// Kill -9 the server while clients register: every version that committed has its audit row.
#[test]
fn every_committed_change_has_its_audit_row_through_kill_9() {
    let cx = TestContext::new();
    let (db, dir) = sqlite(&cx);
    let alice = bootstrap_token(&cx, &db, "contributor", "alice");
    let mut next = 0u32;
    for _round in 0..3 {
        let server = Server::start(&cx, &db, &[]);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for client in 0..4 {
            let url = server.url.clone();
            let alice = alice.clone();
            let stop = std::sync::Arc::clone(&stop);
            let start = next + client * 100_000;
            clients.push(std::thread::spawn(move || {
                let mut n = start;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = definition(&format!("e{n}"), "1").to_string();
                    let address = url.trim_start_matches("http://").to_string();
                    let Ok(mut stream) = TcpStream::connect(&address) else {
                        return;
                    };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let text = format!(
                        "POST /api/v1/environments HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(text.as_bytes());
                    let mut out = Vec::new();
                    let _ = stream.read_to_end(&mut out);
                    n += 1;
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(1500));
        drop(server); // SIGKILL
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for client in clients {
            client.join().unwrap();
        }
        next += 1_000_000;
    }
    let versions = count(&dir, "SELECT COUNT(*) FROM versions WHERE name LIKE 'e%'");
    let audited = count(
        &dir,
        "SELECT COUNT(*) FROM audit WHERE action = 'POST /api/v1/environments' AND status IN (200, 201)",
    );
    assert!(versions > 10, "too few registrations to tell: {versions}");
    assert_eq!(versions, audited, "versions without an audit row");
}

/// A page of another origin on the same host cannot use the UI's cookie to change anything;
/// every answer carries the security headers; signing out forgets the cookie.
#[test]
fn the_ui_cookie_works_only_from_the_ui_itself() {
    let cx = TestContext::new();
    let (db, _) = sqlite(&cx);
    let alice = bootstrap_token(&cx, &db, "contributor", "alice");
    let server = Server::start(&cx, &db, &[]);
    let url = server.url.as_str();
    let host = url.trim_start_matches("http://");
    let cookie = format!("terrarium_token={alice}");
    let body = definition("web", "2.31.0").to_string();
    let post = |headers: &[(&str, &str)]| {
        let mut all = vec![
            ("Cookie", cookie.as_str()),
            ("Content-Type", "application/json"),
        ];
        all.extend_from_slice(headers);
        request(
            url,
            "POST",
            "/api/v1/environments",
            &all,
            Some(body.as_bytes()),
        )
    };
    let (status, _, text) = post(&[("Origin", "http://127.0.0.1:1")]);
    assert_eq!(status, 403, "{text}");
    let (status, _, text) = post(&[("Sec-Fetch-Site", "same-site")]);
    assert_eq!(status, 403, "{text}");
    let (status, _, text) = post(&[]);
    assert_eq!(status, 403, "a cookie alone is not enough: {text}");
    let origin = format!("http://{host}");
    let (status, _, text) = post(&[("Origin", &origin)]);
    assert_eq!(status, 201, "{text}");
    // A bearer token is not sent by browsers on their own: no origin needed.
    let (status, text) = json_post(
        url,
        "/api/v1/environments",
        &alice,
        &definition("web2", "1"),
    );
    assert_eq!(status, 201, "{text}");

    let (status, head, _) = request(url, "GET", "/ui", &[("Cookie", &cookie)], None);
    assert_eq!(status, 200);
    for header in [
        "content-security-policy: default-src 'none'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
    ] {
        assert!(head.contains(header), "{header} missing:\n{head}");
    }
    let (status, head, _) = request(
        url,
        "POST",
        "/ui/logout",
        &[("Cookie", &cookie), ("Origin", &origin)],
        None,
    );
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("max-age=0"), "{head}");
    let (status, head, _) = request(
        url,
        "POST",
        "/ui/login",
        &[
            ("Origin", &origin),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Forwarded-Proto", "https"),
        ],
        Some(format!("token={alice}").as_bytes()),
    );
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("; secure"), "{head}");
}

/// Errors that axum makes itself have the API's JSON shape too.
#[test]
fn every_error_answer_is_json() {
    let cx = TestContext::new();
    let (db, _) = sqlite(&cx);
    let alice = bootstrap_token(&cx, &db, "contributor", "alice");
    let server = Server::start(&cx, &db, &[]);
    let url = server.url.as_str();
    let origin = format!("http://{}", url.trim_start_matches("http://"));
    let auth = bearer(&alice);
    let big = vec![b'x'; 17 * 1024 * 1024];
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Option<&'a [u8]>,
        u16,
    );
    let cases: Vec<Case> = vec![
        (
            "DELETE",
            "/api/v1/runs",
            vec![("Authorization", &auth)],
            None,
            405,
        ),
        (
            "PUT",
            "/api/v1/runs/r/log",
            vec![("Authorization", &auth)],
            Some(&big),
            413,
        ),
        (
            "POST",
            "/ui/login",
            vec![
                ("Origin", &origin),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            Some(b"nothing=here"),
            422,
        ),
    ];
    for (method, path, headers, body, expected) in cases {
        let (status, head, text) = request(url, method, path, &headers, body);
        assert_eq!(status, expected, "{method} {path}: {text}");
        assert!(
            head.contains("content-type: application/json"),
            "{method} {path}: {head}"
        );
        let error: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text:?}"));
        assert_eq!(error["error"]["status"], expected, "{text}");
    }
}

/// A proxy on the same host makes every outside client look local: anonymous access is
/// refused for a request that carries a forwarding header.
#[test]
fn anonymous_access_is_refused_through_a_proxy() {
    let cx = TestContext::new();
    let (db, _) = sqlite(&cx);
    let server = Server::start(&cx, &db, &["--allow-anonymous-local"]);
    let url = server.url.as_str();
    let (status, _, _) = request(url, "GET", "/api/v1/environments", &[], None);
    assert_eq!(status, 200);
    for header in ["X-Forwarded-For", "Forwarded", "X-Real-IP"] {
        let (status, _, text) = request(
            url,
            "GET",
            "/api/v1/environments",
            &[(header, "203.0.113.9")],
            None,
        );
        assert_eq!(status, 401, "{header}: {text}");
        assert!(text.contains("proxy"), "{text}");
    }
}

/// Clients that open connections and never finish a request's head hold no slot for long,
/// and never keep a normal request from being answered.
#[test]
fn slow_clients_cannot_starve_others() {
    let cx = TestContext::new();
    let (db, _) = sqlite(&cx);
    let server = Server::start(
        &cx,
        &db,
        &["--max-connections", "16", "--header-timeout", "2"],
    );
    let address = server.url.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..60 {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        slow.push(stream);
    }
    for attempt in 0..5 {
        let started = Instant::now();
        let (status, _, body) = request(&server.url, "GET", "/healthz", &[], None);
        assert_eq!(status, 200, "attempt {attempt}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "attempt {attempt} waited {:?}",
            started.elapsed()
        );
    }
    // The slow ones are closed once their head is late.
    std::thread::sleep(Duration::from_secs(3));
    let mut closed = 0;
    for stream in &mut slow {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(_) => closed += 1, // EOF, or an error answer before closing
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Err(_) => {}
        }
    }
    assert_eq!(
        closed,
        slow.len(),
        "connections left open past the header deadline"
    );
}
