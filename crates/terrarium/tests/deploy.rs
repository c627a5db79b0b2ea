//! `terrarium deploy`: Azure ML entry scripts served by the Rust front and Python workers in
//! the environment. Real processes, real HTTP, real crashes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestContext;
use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scoring")
        .join(name)
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A model directory with the linear model's weights.
fn model(cx: &TestContext) -> PathBuf {
    cx.write("model/weights.json", "[1.0, 2.0, 3.0]");
    cx.path("model")
}

/// A system-managed environment (built by uv from a local wheelhouse) with package `alpha`.
fn system_env(cx: &TestContext) -> Option<PathBuf> {
    if !common::uv_available() {
        return None;
    }
    let wheels = cx.path("wheels");
    common::make_wheels(&wheels, &["alpha==1.0"]);
    Some(cx.write(
        "scoring.yml",
        format!(
            "name: scoring\npython:\n  pip:\n    - --no-index\n    - --find-links {}\n    - alpha\n",
            wheels.display()
        ),
    ))
}

/// A user-managed environment: a venv the user made, with `alpha` and, if asked, the shim.
fn venv_env(cx: &TestContext, python: &str, with_shim: bool) -> PathBuf {
    let venv = cx.path("venv");
    let status = Command::new(python)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(status.success());
    let wheels = cx.path("wheels");
    common::make_wheels(&wheels, &["alpha==1.0"]);
    let pip = |what: &[&str]| {
        let status = Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--find-links",
            ])
            .arg(&wheels)
            .args(what)
            .status()
            .unwrap();
        assert!(status.success());
    };
    pip(&["alpha"]);
    if with_shim {
        let out = cx
            .command()
            .args(["deployments", "shim", "--wheel"])
            .arg(&wheels)
            .output()
            .unwrap();
        assert!(out.status.success());
        pip(&["terrarium_worker"]);
    }
    cx.write(
        "venv.yml",
        format!(
            "name: mine\npython:\n  user_managed: true\n  interpreter: {}\n",
            venv.join("bin/python").display()
        ),
    )
}

/// A deployment started with `--detach`, stopped when dropped.
struct Deployment<'a> {
    cx: &'a TestContext,
    name: String,
    url: String,
}

impl Drop for Deployment<'_> {
    fn drop(&mut self) {
        let _ = self.cx.run(&["deployments", "stop", &self.name]);
    }
}

impl Deployment<'_> {
    fn show(&self) -> Value {
        self.cx
            .run(&["deployments", "show", &self.name, "--json"])
            .success()
            .json()
    }

    /// The log, once it holds `needle` (it is flushed every 100 ms).
    fn log_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self
                .cx
                .run(&["deployments", "logs", &self.name])
                .success()
                .stdout;
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::blocking::Response {
        http()
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    }

    fn health(&self) -> Value {
        http()
            .get(format!("{}/health", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

fn deploy<'a>(
    cx: &'a TestContext,
    name: &str,
    env: &Path,
    entry: &Path,
    extra: &[&str],
) -> Deployment<'a> {
    let model = model(cx);
    let out = cx
        .command()
        .args(["deploy", name, "--detach", "--port", "0", "--env"])
        .arg(env)
        .arg("--model")
        .arg(&model)
        .arg("--entry")
        .arg(entry)
        .args(extra)
        .output()
        .unwrap();
    let run: common::Run = out.into();
    let run = run.success();
    assert!(run.stdout.contains("serving"), "{}", run.stdout);
    let shown = cx
        .run(&["deployments", "show", name, "--json"])
        .success()
        .json();
    assert_eq!(shown["state"], "ready", "{shown}");
    Deployment {
        cx,
        name: name.to_string(),
        url: shown["url"].as_str().unwrap().to_string(),
    }
}

#[test]
fn serves_an_entry_script_in_a_system_managed_environment() {
    let cx = TestContext::new();
    let Some(env) = system_env(&cx) else { return };
    let d = deploy(
        &cx,
        "linear",
        &env,
        &fixture("linear.py"),
        &["--workers", "2"],
    );

    // Liveness and the AML scoring contract.
    let live = http().get(format!("{}/", d.url)).send().unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.text().unwrap(), "Healthy");
    let response = http()
        .post(format!("{}/score", d.url))
        .header("x-request-id", "req-1")
        .body(r#"{"data": [[1, 1, 1], [0, 1, 0]]}"#)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-request-id"], "req-1");
    assert_eq!(response.headers()["x-ms-run-function-failed"], "False");
    assert!(response.headers().contains_key("x-ms-run-fn-exec-ms"));
    let body: Value = response.json().unwrap();
    assert_eq!(body["predictions"], json!([6.0, 2.0]));

    // MLflow's routes: /invocations falls back to run() without an MLflow model.
    let ping = http().get(format!("{}/ping", d.url)).send().unwrap();
    assert_eq!(ping.status(), 200);
    let invoked = d.post("/invocations", &json!({"data": [[2, 0, 0]]}));
    assert_eq!(invoked.status(), 200);
    assert_eq!(
        invoked.json::<Value>().unwrap()["predictions"],
        json!([2.0])
    );

    // swagger, health, unknown routes.
    let swagger: Value = http()
        .get(format!("{}/swagger.json", d.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(swagger["swagger"], "2.0");
    assert!(swagger["paths"]["/score"]["post"].is_object());
    let v3: Value = http()
        .get(format!("{}/swagger.json?version=3", d.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v3["openapi"], "3.0.1");
    let bad = http()
        .get(format!("{}/swagger.json?version=9", d.url))
        .send()
        .unwrap();
    assert_eq!(bad.status(), 404);
    let health = d.health();
    assert_eq!(health["status"], "READY", "{health}");
    assert_eq!(health["workers"], 2);
    let missing = http().get(format!("{}/nope", d.url)).send().unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.json::<Value>().unwrap()["message"].is_string());

    // The record: environment version, model hash, state.
    let shown = d.show();
    assert_eq!(shown["environment"], "scoring");
    assert_eq!(shown["version"], "1");
    assert!(shown["model_hash"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(shown["workers"], 2);
    let list = cx.run(&["deployments", "list", "--json"]).success().json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    // The worker ran in the environment (the shim injected, alpha imported from the prefix).
    let log = d.log_with("init: loaded");
    assert!(log.contains("init: loaded 3 weights; alpha 1.0"), "{log}");

    // A version that a deployment serves cannot be deleted.
    let refused = cx.run(&["env", "delete", "scoring:1"]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("linear"), "{}", refused.stderr);

    // Stop: the record says stopped, the port is closed.
    let url = d.url.clone();
    drop(d);
    let shown = cx
        .run(&["deployments", "show", "linear", "--json"])
        .success()
        .json();
    assert_eq!(shown["state"], "stopped");
    assert!(http().get(format!("{url}/")).send().is_err());
}

#[test]
fn aml_responses_request_headers_rawhttp_and_errors() {
    let cx = TestContext::new();
    let env = venv_env(&cx, "python3", true);
    let d = deploy(&cx, "responses", &env, &fixture("responses.py"), &[]);
    let r = d.post("/score", &json!({"kind": "aml", "value": 5}));
    assert_eq!(r.status(), 201);
    let custom: Vec<_> = r
        .headers()
        .get_all("x-custom")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(custom, ["a", "b"]);
    assert_eq!(r.text().unwrap(), r#"{"echo": 5}"#);
    let r = d.post("/score", &json!({"kind": "text"}));
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().unwrap(), "plain words");
    let r = d.post("/score", &json!({"kind": "error"}));
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-ms-run-function-failed"], "True");
    let r = d.post("/score", &json!({"kind": "none"}));
    assert_eq!(r.text().unwrap(), "{}");
    let r = http()
        .post(format!("{}/score", d.url))
        .header("X-Agent", "tests")
        .body(r#"{"kind": "headers"}"#)
        .send()
        .unwrap();
    assert_eq!(r.json::<Value>().unwrap(), json!({"agent": "tests"}));
    let r = d.post("/score", &json!({"kind": "string"}));
    assert_eq!(r.text().unwrap(), r#""a string""#);

    // An exception: 500, an error id, the traceback in the log and not in the response.
    let r = d.post("/score", &json!({"kind": "raise"}));
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["x-ms-run-function-failed"], "True");
    let error_id = r.headers()["x-terrarium-error-id"]
        .to_str()
        .unwrap()
        .to_string();
    let text = r.text().unwrap();
    assert!(
        !text.contains("Traceback") && !text.contains("boom"),
        "{text}"
    );
    let r = d.post("/score", &json!({"kind": "unserialisable"}));
    assert_eq!(r.status(), 500);
    let log = d.log_with("RuntimeError: boom");
    assert!(
        log.contains(&format!("request {error_id}: run() raised")),
        "{log}"
    );
    assert!(log.contains("RuntimeError: boom"), "{log}");
    drop(d);

    let d = deploy(&cx, "raw", &env, &fixture("rawhttp.py"), &[]);
    let r: Value = http()
        .post(format!("{}/score", d.url))
        .header("content-type", "application/json")
        .body(r#"{"x": 1}"#)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        r,
        json!({"method": "POST", "length": 8, "type": "application/json", "json": {"x": 1}})
    );
    let r: Value = http()
        .get(format!("{}/score?a=1&b=two", d.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r, json!({"method": "GET", "args": {"a": "1", "b": "two"}}));
}

#[test]
fn a_failing_init_reports_failed_and_does_not_serve() {
    let cx = TestContext::new();
    let env = venv_env(&cx, "python3", true);
    let model = model(&cx);
    let run: common::Run = cx
        .command()
        .args(["deploy", "broken", "--detach", "--port", "0", "--env"])
        .arg(&env)
        .arg("--model")
        .arg(&model)
        .arg("--entry")
        .arg(fixture("failing_init.py"))
        .output()
        .unwrap()
        .into();
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("init() failed: FileNotFoundError: no model file in"),
        "{}",
        run.stderr
    );
    let shown = cx
        .run(&["deployments", "show", "broken", "--json"])
        .success()
        .json();
    assert_eq!(shown["state"], "failed");
    assert!(shown["reason"]
        .as_str()
        .unwrap()
        .contains("FileNotFoundError"));
    // The traceback is in the log.
    let log = cx.run(&["deployments", "logs", "broken"]).success().stdout;
    assert!(log.contains("Traceback"), "{log}");

    // In the foreground too: a clear error and a non-zero exit.
    let run: common::Run = cx
        .command()
        .args(["deploy", "broken", "--port", "0", "--env"])
        .arg(&env)
        .arg("--model")
        .arg(&model)
        .arg("--entry")
        .arg(fixture("failing_init.py"))
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("deployment broken failed"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_user_managed_environment_without_the_shim_is_refused() {
    let cx = TestContext::new();
    let env = venv_env(&cx, "python3", false);
    let model = model(&cx);
    let run: common::Run = cx
        .command()
        .args(["deploy", "svc", "--port", "0", "--env"])
        .arg(&env)
        .arg("--model")
        .arg(&model)
        .arg("--entry")
        .arg(fixture("linear.py"))
        .output()
        .unwrap()
        .into();
    let run = run.user_error();
    assert!(
        run.stderr.contains("has no `terrarium_worker` package"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("terrarium deployments shim --wheel"));
    // Nothing recorded.
    let list = cx.run(&["deployments", "list", "--json"]).success().json();
    assert_eq!(list, json!([]));
    // Bad arguments name what is wrong.
    let run = cx.run(&[
        "deploy", "svc", "--env", "mine", "--model", "nowhere", "--entry", "x.py",
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--model nowhere"), "{}", run.stderr);
}

/// 32 clients at once against 2 workers; some requests crash their worker (os._exit, a
/// segfault). Every other request is answered correctly; only the crashing ones fail.
#[test]
fn crashed_workers_are_restarted_and_only_their_requests_fail() {
    let cx = TestContext::new();
    let env = venv_env(&cx, "python3", true);
    let d = deploy(
        &cx,
        "crashy",
        &env,
        &fixture("linear.py"),
        &["--workers", "2", "--queue", "256"],
    );
    let url = d.url.clone();
    let threads: Vec<_> = (0..32)
        .map(|client| {
            let url = url.clone();
            std::thread::spawn(move || {
                let http = http();
                let mut results = Vec::new();
                for i in 0..10 {
                    let crash = match (client, i) {
                        (3, 4) => Some("exit"),
                        (17, 2) => Some("segfault"),
                        (29, 7) => Some("exit"),
                        _ => None,
                    };
                    let mut body = json!({"data": [[client as f64, i as f64, 1.0]]});
                    if let Some(kind) = crash {
                        body["crash"] = json!(kind);
                    }
                    let r = http
                        .post(format!("{url}/score"))
                        .body(body.to_string())
                        .send()
                        .unwrap();
                    let status = r.status().as_u16();
                    let value: Value = r.json().unwrap_or(Value::Null);
                    results.push((client, i, crash.is_some(), status, value));
                }
                results
            })
        })
        .collect();
    let mut ok = 0;
    let mut failed = 0;
    for thread in threads {
        for (client, i, crash, status, value) in thread.join().unwrap() {
            if crash {
                assert_eq!(status, 500, "{value}");
                failed += 1;
            } else {
                assert_eq!(status, 200, "client {client} request {i}: {value}");
                let expected = client as f64 + 2.0 * i as f64 + 3.0;
                assert_eq!(value["predictions"], json!([expected]));
                ok += 1;
            }
        }
    }
    assert_eq!((ok, failed), (317, 3));
    let health = d.health();
    assert_eq!(health["restarts"], 3, "{health}");
    assert_eq!(health["status"], "READY", "{health}");
    let log = d.log_with("signal 11");
    assert!(log.contains("exit code 7"), "{log}");
    assert!(log.contains("signal 11"), "{log}");
}

#[test]
fn timeouts_backpressure_and_a_graceful_stop() {
    let cx = TestContext::new();
    let env = venv_env(&cx, "python3", true);
    let d = deploy(
        &cx,
        "slow",
        &env,
        &fixture("linear.py"),
        &["--timeout-ms", "3000", "--queue", "2"],
    );
    // A run() that overruns the timeout: 500, and the worker is replaced.
    let r = d.post("/score", &json!({"sleep": 30, "data": [[1, 1, 1]]}));
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().unwrap()["message"],
        "Scoring timeout after 3000 ms"
    );
    let r = d.post("/score", &json!({"data": [[1, 1, 1]]}));
    assert_eq!(r.status(), 200);

    // One worker, a queue of 2: of 8 concurrent slow requests, those beyond 1 + 2 get 503
    // with Retry-After.
    let url = d.url.clone();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20 * i));
                let r = http()
                    .post(format!("{url}/score"))
                    .body(r#"{"sleep": 1.5, "data": [[1, 0, 0]]}"#)
                    .send()
                    .unwrap();
                (
                    r.status().as_u16(),
                    r.headers().get("retry-after").is_some(),
                )
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let busy = results.iter().filter(|(s, _)| *s == 503).count();
    let served = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(busy + served, 8, "{results:?}");
    assert!(busy >= 4 && served >= 3, "{results:?}");
    assert!(results.iter().all(|(s, retry)| *s != 503 || *retry));

    // A graceful stop finishes the request in flight.
    let url2 = d.url.clone();
    let in_flight = std::thread::spawn(move || {
        http()
            .post(format!("{url2}/score"))
            .body(r#"{"sleep": 2.0, "data": [[0, 0, 1]]}"#)
            .send()
            .unwrap()
    });
    // Wait until the request is in the worker's hands.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.health()["busy"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the request did not reach a worker"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    cx.run(&["deployments", "stop", "slow"]).success();
    assert!(started.elapsed() >= Duration::from_millis(500));
    let r = in_flight.join().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["predictions"], json!([3.0]));
    let shown = d.show();
    assert_eq!(shown["state"], "stopped");
}

/// The same entry script, served by Terrarium (with its stand-in AMLResponse, no Flask) and by
/// Microsoft's `azmlinfsrv`: the same requests get the same status, content type, body and
/// `x-ms-run-function-failed`.
#[test]
fn answers_as_azmlinfsrv_does() {
    let Some(azmlinfsrv) = std::env::var_os("TERRARIUM_TEST_AZMLINFSRV") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs azmlinfsrv: scripts/test-tools.sh installs it"
        );
        eprintln!("skipped: set TERRARIUM_TEST_AZMLINFSRV (scripts/test-tools.sh)");
        return;
    };
    let cx = TestContext::new();
    let env = venv_env(&cx, "python3", true);
    let ours = deploy(&cx, "compat", &env, &fixture("responses.py"), &[]);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let entry = fixture("responses.py");
    let log = std::fs::File::create(cx.path("azmlinfsrv.log")).unwrap();
    let mut theirs = Command::new(&azmlinfsrv)
        .arg("--entry_script")
        .arg(&entry)
        .args(["--port", &port.to_string()])
        .env("AZUREML_MODEL_DIR", cx.path("model"))
        .current_dir(entry.parent().unwrap())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut theirs);
    let their_url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http().get(format!("{their_url}/")).send().is_err() {
        assert!(
            Instant::now() < deadline,
            "azmlinfsrv did not start: {}",
            std::fs::read_to_string(cx.path("azmlinfsrv.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    type Request<'a> = (&'a str, &'a str, Vec<u8>, Vec<(&'a str, &'a str)>);
    let requests: Vec<Request> = vec![
        (
            "POST",
            "/score",
            br#"{"kind": "aml", "value": 5}"#.to_vec(),
            vec![],
        ),
        ("POST", "/score", br#"{"kind": "text"}"#.to_vec(), vec![]),
        ("POST", "/score", br#"{"kind": "error"}"#.to_vec(), vec![]),
        ("POST", "/score", br#"{"kind": "none"}"#.to_vec(), vec![]),
        (
            "POST",
            "/score",
            br#"{"kind": "headers"}"#.to_vec(),
            vec![("X-Agent", "compat")],
        ),
        ("POST", "/score", br#"{"kind": "string"}"#.to_vec(), vec![]),
        ("POST", "/score", br#"{"kind": "raise"}"#.to_vec(), vec![]),
        (
            "POST",
            "/score",
            br#"{"kind": "unserialisable"}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "/score",
            br#"{"kind": "echo", "x": [1, 2.5, "s", null, {"y": true}]}"#.to_vec(),
            vec![("content-type", "application/json")],
        ),
        ("POST", "/score", b"\xff\xfe not utf-8".to_vec(), vec![]),
        ("POST", "/score", b"not json at all".to_vec(), vec![]),
        ("GET", "/score?kind=string", vec![], vec![]),
        ("GET", "/score?kind=echo&n=1&n=2&s=x", vec![], vec![]),
        ("OPTIONS", "/score", vec![], vec![]),
        ("PUT", "/score", b"{}".to_vec(), vec![]),
        ("GET", "/", vec![], vec![]),
        ("GET", "/swagger.json?version=7", vec![], vec![]),
    ];
    let client = http();
    let mut differences = Vec::new();
    for (method, path, body, headers) in &requests {
        let answer = |base: &str| {
            let mut request = client.request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{base}{path}"),
            );
            for (k, v) in headers {
                request = request.header(*k, *v);
            }
            let r = request.body(body.clone()).send().unwrap();
            let header = |name: &str| {
                r.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_string())
            };
            let summary = (
                r.status().as_u16(),
                header("content-type"),
                header("x-ms-run-function-failed"),
            );
            (summary, r.bytes().unwrap().to_vec())
        };
        let ours = answer(&ours.url);
        let theirs = answer(&their_url);
        if ours != theirs {
            differences.push(format!(
                "{method} {path}:\n  terrarium:  {:?} {}\n  azmlinfsrv: {:?} {}",
                ours.0,
                String::from_utf8_lossy(&ours.1),
                theirs.0,
                String::from_utf8_lossy(&theirs.1)
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// A deployment against a team server (SQLite and PostgreSQL behind it): recorded there, listed
/// by any client, stopped through the record; a reader may look but not deploy.
#[test]
fn deployments_are_recorded_on_a_team_server() {
    use common::server::{bootstrap_token, remote, Server};
    let cx = TestContext::new();
    let env = venv_env(&cx, "python3", true);
    let model = model(&cx);
    for db in common::server::backends(&cx, "terrarium_deploy") {
        let token = bootstrap_token(&cx, &db, "contributor", "alice");
        let reader = bootstrap_token(&cx, &db, "reader", "bob");
        let server = Server::start(&cx, &db, &[]);
        let deploy = |token: &str| {
            remote(
                &cx,
                &server.url,
                Some(token),
                &[
                    "deploy",
                    "remote-svc",
                    "--detach",
                    "--port",
                    "0",
                    "--env",
                    env.to_str().unwrap(),
                    "--model",
                    model.to_str().unwrap(),
                    "--entry",
                    fixture("linear.py").to_str().unwrap(),
                ],
            )
        };
        let refused = deploy(&reader);
        assert_ne!(refused.code, 0, "{}", refused.stderr);
        deploy(&token).success();
        let shown = remote(
            &cx,
            &server.url,
            Some(&reader),
            &["deployments", "show", "remote-svc", "--json"],
        )
        .success()
        .json();
        assert_eq!(shown["state"], "ready", "{shown}");
        assert_eq!(shown["actor"], "alice");
        assert_eq!(shown["environment"], "mine");
        let url = shown["url"].as_str().unwrap();
        let r = http()
            .post(format!("{url}/score"))
            .body(r#"{"data": [[1, 1, 1]]}"#)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        remote(
            &cx,
            &server.url,
            Some(&token),
            &["deployments", "stop", "remote-svc"],
        )
        .success();
        let listed = remote(
            &cx,
            &server.url,
            Some(&token),
            &["deployments", "list", "--json"],
        )
        .success()
        .json();
        assert_eq!(listed[0]["state"], "stopped", "{listed}");
        // Images recorded on the server, listed through it by version and by environment.
        let version = shown["version"].as_str().unwrap();
        let build = serde_json::json!({
            "environment": "mine", "version": version, "lock_hash": "sha256:11",
            "base": null, "base_digest": null, "digest": "sha256:33", "pushed_to": null,
            "output": "/tmp/img", "size": 1024, "layers": 3, "seconds": 0.5, "log": "",
            "actor": "ignored", "built_at": "2026-11-29T12:00:00.000Z"
        });
        let r = http()
            .post(format!("{}/api/v1/environments/mine/images", server.url))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(build.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        for reference in [format!("mine:{version}"), "mine".to_string()] {
            let images = remote(
                &cx,
                &server.url,
                Some(&reader),
                &["image", "list", &reference, "--json"],
            )
            .success()
            .json();
            assert_eq!(images.as_array().unwrap().len(), 1, "{images}");
            assert_eq!(images[0]["digest"], "sha256:33");
            assert_eq!(images[0]["actor"], "alice");
        }
        let none = remote(
            &cx,
            &server.url,
            Some(&reader),
            &["image", "list", "mine:999", "--json"],
        );
        assert_ne!(none.code, 0, "{}", none.stdout);
        // The audit trail has the deployment's state changes.
        let admin = bootstrap_token(&cx, &db, "admin", "root");
        let audit = remote(&cx, &server.url, Some(&admin), &["audit", "--json"])
            .success()
            .stdout;
        assert!(audit.contains("/api/v1/deployments/remote-svc"), "{audit}");
    }
}

/// A user-managed environment on the system's python3, registered by its first use.
fn system_python_env(cx: &TestContext) -> PathBuf {
    let python = Command::new("sh")
        .args(["-c", "command -v python3"])
        .output()
        .unwrap()
        .stdout;
    cx.write(
        "mine.yml",
        format!(
            "name: mine\npython:\n  user_managed: true\n  interpreter: {}\n",
            String::from_utf8(python).unwrap().trim()
        ),
    )
}

/// This machine's name, as deployment records give it.
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// A process the test owns, killed when dropped.
struct Bystander(std::process::Child);

impl Bystander {
    fn sleep() -> Self {
        Self(Command::new("sleep").arg("300").spawn().unwrap())
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Change a deployment record behind the CLI's back, as anyone who may write records could.
fn tamper(
    cx: &TestContext,
    name: &str,
    change: impl FnOnce(&mut terrarium_store::DeploymentRecord),
) -> Result<(), terrarium_store::StoreError> {
    use terrarium_store::Store as _;
    let store = terrarium_store::SqliteStore::open(&cx.workspace())?;
    let mut record = store.get_deployment(name)?;
    change(&mut record);
    store.put_deployment(&record)
}

/// Puts a tampered record's pid back when dropped, so that the deployment can be stopped even
/// when the test fails half-way.
struct RestorePid<'a>(&'a TestContext, &'static str, u32);

impl Drop for RestorePid<'_> {
    fn drop(&mut self) {
        let _ = tamper(self.0, self.1, |r| r.pid = Some(self.2));
    }
}

/// A record whose pid was changed to another process of the user: `stop` signals nothing and
/// says why; the deployment itself keeps serving and stops once its record is right again.
#[test]
fn stop_signals_only_the_process_the_pidfile_vouches_for() {
    use std::os::unix::fs::PermissionsExt;
    let cx = TestContext::new();
    let env = venv_env(&cx, "python3", true);
    let d = deploy(&cx, "svc", &env, &fixture("linear.py"), &[]);
    let real_pid = d.show()["pid"].as_u64().unwrap() as u32;
    // The serving process vouches for itself in the workspace's own folder, for its owner only.
    let pidfile = cx.workspace().join("deployments/svc.pid");
    let mode = std::fs::metadata(&pidfile).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{pidfile:?}");

    let mut bystander = Bystander::sleep();
    // Dropped before `d`, whose drop stops the deployment.
    let restore = RestorePid(&cx, "svc", real_pid);
    tamper(&cx, "svc", |r| r.pid = Some(bystander.pid())).unwrap();
    let refused = cx.run(&["deployments", "stop", "svc"]).user_error();
    assert!(
        refused.stderr.contains(&format!(
            "process {} is not deployment svc (its command line is `sleep 300`)",
            bystander.pid()
        )),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("nothing was signalled"),
        "{}",
        refused.stderr
    );
    assert!(bystander.alive(), "the bystander was signalled");
    assert_eq!(
        http().get(format!("{}/", d.url)).send().unwrap().status(),
        200
    );
    // Listing does not record the deployment as stopped because of the changed record.
    let shown = d.show();
    assert_eq!(shown["state"], "ready", "{shown}");

    // The record is put right again.
    drop(restore);

    // A record for a deployment that never ran here, naming the bystander: no pidfile, refused.
    {
        use terrarium_store::Store as _;
        let store = terrarium_store::SqliteStore::open(&cx.workspace()).unwrap();
        let mut ghost = store.get_deployment("svc").unwrap();
        ghost.name = "ghost".into();
        ghost.pid = Some(bystander.pid());
        store.put_deployment(&ghost).unwrap();
    }
    let refused = cx.run(&["deployments", "stop", "ghost"]).user_error();
    assert!(
        refused.stderr.contains("nothing was signalled"),
        "{}",
        refused.stderr
    );
    assert!(bystander.alive(), "the bystander was signalled");

    // With its record right again, the deployment stops, and its pidfile goes with it.
    cx.run(&["deployments", "stop", "svc"]).success();
    assert_eq!(d.show()["state"], "stopped");
    assert!(!pidfile.exists());
    assert!(bystander.alive());
}

/// `deployments logs` reads the workspace's own log file, never the file a record names, and
/// refuses a name that would leave the logs folder.
#[test]
fn logs_are_read_from_the_workspace_never_from_the_record() {
    use terrarium_store::Store as _;
    let cx = TestContext::new();
    let outside = cx.write("outside/private.txt", "PRIVATE CONTENTS\n");
    let env = system_python_env(&cx);
    cx.run_path(&["env", "create", "-f"], &env, &[]).success();
    let store = terrarium_store::SqliteStore::open(&cx.workspace()).unwrap();
    let record = terrarium_store::DeploymentRecord {
        name: "svc".into(),
        environment: "mine".into(),
        version: "1".into(),
        lock_hash: None,
        model_path: "/model".into(),
        model_hash: "sha256:00".into(),
        entry: None,
        workers: 1,
        url: None,
        host: this_host(),
        pid: None,
        state: terrarium_store::DeploymentState::Stopped,
        reason: None,
        actor: "mallory".into(),
        started_at: "2026-12-01T00:00:00.000Z".into(),
        stopped_at: None,
        log_path: Some(outside.display().to_string()),
    };
    store.put_deployment(&record).unwrap();
    drop(store);
    cx.write(
        "workspace/deployments/svc.log",
        "the deployment's own log\n",
    );

    let logs = cx.run(&["deployments", "logs", "svc"]).success();
    assert_eq!(logs.stdout, "the deployment's own log\n");
    let refused = cx
        .run(&["deployments", "logs", "../outside/private"])
        .user_error();
    assert!(
        refused.stderr.contains("invalid name"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stdout.contains("PRIVATE"), "{}", refused.stdout);
    let refused = cx
        .run(&["deployments", "stop", "../outside/private"])
        .user_error();
    assert!(
        refused.stderr.contains("invalid name"),
        "{}",
        refused.stderr
    );
}

/// A deployment name with `../` (or a folder) is refused before anything is written: nothing is
/// created outside the logs folder, not even the workspace.
#[test]
fn deploy_refuses_a_name_that_leaves_the_logs_folder() {
    let cx = TestContext::new();
    let env = system_python_env(&cx);
    let model = model(&cx);
    for (name, detach) in [
        ("../../escaped/x", true),
        ("../../escaped/x", false),
        ("curated/x", true),
        ("a/b", true),
        ("", true),
    ] {
        let mut command = cx.command();
        command
            .args(["deploy", name, "--port", "0", "--env"])
            .arg(&env);
        command.arg("--model").arg(&model);
        command.arg("--entry").arg(fixture("linear.py"));
        if detach {
            command.arg("--detach");
        }
        let run: common::Run = command.output().unwrap().into();
        let run = run.user_error();
        assert!(
            run.stderr.contains("invalid") || run.stderr.contains("needs a name"),
            "{name}: {}",
            run.stderr
        );
        assert!(
            !cx.path("escaped").exists(),
            "{name}: a folder was created outside"
        );
        assert!(
            !cx.workspace().exists(),
            "{name}: the workspace was touched"
        );
    }
}

/// A nameless requirements file deploys: it is registered anonymously, the deployment records
/// that version, and the same file deploys the same version again.
#[test]
fn a_nameless_requirements_file_deploys() {
    let cx = TestContext::new();
    if !common::uv_available() {
        return;
    }
    let wheels = cx.path("wheels");
    common::make_wheels(&wheels, &["alpha==1.0"]);
    let requirements = cx.write(
        "requirements.txt",
        format!("--no-index\n--find-links {}\nalpha\n", wheels.display()),
    );
    let d = deploy(&cx, "nameless", &requirements, &fixture("linear.py"), &[]);
    let shown = d.show();
    let environment = shown["environment"].as_str().unwrap().to_string();
    assert!(environment.starts_with("anonymous/"), "{shown}");
    let answer = d.post("/score", &json!({"data": [[1, 2, 3]]}));
    assert_eq!(answer.status(), 200);
    drop(d);
    let again = deploy(&cx, "nameless-2", &requirements, &fixture("linear.py"), &[]);
    assert_eq!(again.show()["environment"], environment.as_str());
    assert_eq!(again.show()["version"], shown["version"]);
}
