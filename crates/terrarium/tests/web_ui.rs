//! The web UI in a real browser: Debian's headless Chromium, driven over WebDriver
//! (chromedriver). Clicks through environments -> environment -> diff, a version's lock and
//! definition, and runs with their logs; saves a screenshot of each page under
//! `$CARGO_TARGET_TMPDIR/ui-screenshots/`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::server::{bootstrap_token, http, remote, Server};
use common::TestContext;
use serde_json::{json, Value};

/// A WebDriver session on a chromedriver process.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    shots: PathBuf,
}

impl Browser {
    fn start(profile: &std::path::Path) -> Option<Browser> {
        let (Some(driver), Some(chromium)) = (find("chromedriver"), find("chromium")) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "chromium and chromedriver must be installed in CI (scripts/test-tools.sh does it)"
            );
            eprintln!("skipped: install Debian's chromium and chromium-driver");
            return None;
        };
        let port = free_port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(format!("{base}/status")).send().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let response: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {response}"))
            .to_string();
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Some(Browser {
            driver,
            base,
            session,
            http,
            shots,
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let request = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body.unwrap_or(json!({}))),
        };
        let value: Value = request.send().unwrap().json().unwrap();
        if value["value"]["error"].is_string() {
            panic!("WebDriver {method} {path}: {}", value["value"]);
        }
        value["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_string()
    }

    fn find(&self, css: &str) -> String {
        let value = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        value
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap()
            .to_string()
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            o.as_object()
                .unwrap()
                .values()
                .next()
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
    }

    fn text(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), None);
    }

    /// Clicks an element that navigates, and waits until the new page has loaded: a click
    /// returns once the event is dispatched, not when the form's answer has arrived.
    fn click_to_navigate(&self, element: &str) {
        let before = self.url();
        self.click(element);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self.call(
                "POST",
                "/execute/sync",
                Some(json!({"script": "return document.readyState", "args": []})),
            );
            if self.url() != before && state == "complete" {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the click did not leave {before} within 30 s; the page says: {}",
                    self.page_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_into(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        );
    }

    fn page_text(&self) -> String {
        let body = self.find("body");
        self.text(&body)
    }

    fn screenshot(&self, name: &str) {
        let data = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn find(program: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!path.is_empty()).then_some(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn click_through_environments_versions_diff_lock_and_runs() {
    let cx = TestContext::new();
    for db in common::server::backends(&cx, "terrarium_ui") {
        let backend = if db.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        };
        let token = bootstrap_token(&cx, &db, "contributor", "alice");
        let server = Server::start(&cx, &db, &[]);
        let url = server.url.clone();
        let define = |name: &str, text: &str| {
            let file = cx.write(name, text);
            remote(
                &cx,
                &url,
                Some(&token),
                &["env", "create", "--no-lock", "-f", file.to_str().unwrap()],
            )
            .success();
        };
        define("a.yml", "name: vision-train\ndescription: image models\ntags:\n  team: vision\npython:\n  version: \"3.11\"\n  pip:\n    - numpy==1.26.4\n    - pillow==10.4.0\n");
        define("a.yml", "name: vision-train\ndescription: image models\ntags:\n  team: vision\npython:\n  version: \"3.11\"\n  pip:\n    - numpy==2.1.0\n    - pillow==10.4.0\n    - torch==2.5.1\n");
        define("b.yml", "name: nlp-serve\ntags:\n  team: nlp\npython:\n  version: \"3.12\"\n  pip:\n    - transformers==4.46.0\n");
        // An image built from vision-train:2, as `terrarium image build --push` records it.
        let build = json!({
            "environment": "vision-train", "version": "2", "lock_hash": "sha256:1111",
            "base": "127.0.0.1:5000/library/debian-python:bookworm", "base_digest": "sha256:2222",
            "digest": "sha256:3333aaaa", "pushed_to": "127.0.0.1:5000/team/vision:v2",
            "output": null, "size": 52_428_800u64, "layers": 7, "seconds": 3.5,
            "log": "installed 3 PyPI packages", "actor": "ignored", "built_at": "2026-11-28T12:00:00.000Z"
        });
        let (status, body) = http(
            &url,
            "POST",
            "/api/v1/environments/vision-train/images",
            Some(&token),
            Some(build.to_string().as_bytes()),
        );
        assert_eq!(status, 201, "{body}");
        // A locked environment (locked by the CLI against a local wheelhouse, stored on the server).
        assert!(common::uv_available() || std::env::var_os("CI").is_none());
        let locked = common::uv_available();
        if locked {
            let wheels = cx.path("wheels");
            common::make_wheels(&wheels, &["alpha==1.0:beta>=2", "beta==2.1"]);
            let file = cx.write(
                "locked.yml",
                format!(
                    "name: locked\npython:\n  pip:\n    - --no-index\n    - --find-links {}\n    - alpha\n",
                    wheels.display()
                ),
            );
            remote(
                &cx,
                &url,
                Some(&token),
                &["env", "create", "-f", file.to_str().unwrap()],
            )
            .success();
        }
        let python = find("python3").unwrap();
        let sys = cx.write(
            "sys.yml",
            format!("name: sysenv\npython:\n  user_managed: true\n  interpreter: {python}\n"),
        );
        let mut cmd = cx.command_without_workspace();
        cmd.arg("--workspace")
            .arg(&url)
            .args(["run", "--experiment", "ui", "--env"])
            .arg(&sys)
            .args(["--", "sh", "-c", "echo epoch 1 loss 0.25"])
            .env("TERRARIUM_TOKEN", &token)
            .env("TERRARIUM_HOME", cx.path("home"));
        let run: common::Run = cmd.output().unwrap().into();
        run.success();

        let Some(mut browser) = Browser::start(&cx.path(&format!("chromium-profile-{backend}")))
        else {
            return;
        };
        browser.shots = browser.shots.join(backend);
        std::fs::create_dir_all(&browser.shots).unwrap();
        // Without a token the UI asks for one.
        browser.goto(&format!("{url}/ui"));
        assert!(browser.url().ends_with("/ui/login"), "{}", browser.url());
        browser.screenshot("01-login");
        let input = browser.find("input[name=token]");
        browser.type_into(&input, &token);
        let submit = browser.find("button[type=submit]");
        browser.click_to_navigate(&submit);

        // Environments, filtered by tag through the form.
        assert!(browser.url().ends_with("/ui"), "{}", browser.url());
        let text = browser.page_text();
        assert!(
            text.contains("vision-train") && text.contains("nlp-serve"),
            "{text}"
        );
        assert!(text.contains("alice · contributor"), "{text}");
        browser.screenshot("02-environments");
        let tag = browser.find("input[name=tag]");
        browser.type_into(&tag, "team=vision");
        browser.click_to_navigate(&browser.find("form.inline button[type=submit]"));
        let rows = browser.find_all("#environments tbody tr");
        assert_eq!(rows.len(), 1);
        assert!(browser.text(&rows[0]).contains("vision-train"));
        browser.screenshot("03-filtered");

        // The environment's timeline, newest first.
        browser.click_to_navigate(&browser.find("a.env"));
        let entries = browser.find_all("#timeline li");
        assert_eq!(entries.len(), 2);
        assert!(
            browser.text(&entries[0]).starts_with("version 2"),
            "{}",
            browser.text(&entries[0])
        );
        assert!(browser.text(&entries[1]).contains("alice"));
        browser.screenshot("04-timeline");

        // Diff 1 -> 2 (the form's defaults).
        browser.click_to_navigate(&browser.find("#diff-button"));
        let changes = browser.text(&browser.find("#changes"));
        assert!(
            changes.contains("numpy")
                && changes.contains("numpy==1.26.4")
                && changes.contains("numpy==2.1.0"),
            "{changes}"
        );
        assert!(
            changes.contains("torch") && changes.contains("added"),
            "{changes}"
        );
        assert!(
            !changes.contains("pillow"),
            "unchanged entries are not shown: {changes}"
        );
        browser.screenshot("05-diff");

        // A version page: definition, lock state.
        browser.goto(&format!("{url}/ui/environments/vision-train"));
        browser.click_to_navigate(&browser.find("a.version"));
        let definition = browser.text(&browser.find("#definition"));
        assert!(definition.contains("torch==2.5.1"), "{definition}");
        assert!(browser.page_text().contains("not locked yet"));
        // Its images: digest, size, base, where it was pushed, who built it.
        let images = browser.text(&browser.find("#images"));
        assert!(
            images.contains("sha256:3333aaaa")
                && images.contains("50.0 MiB")
                && images.contains("127.0.0.1:5000/team/vision:v2")
                && images.contains("alice"),
            "{images}"
        );
        browser.screenshot("06-version");

        // The lock's contents: packages, sizes, sources.
        if locked {
            browser.goto(&format!("{url}/ui/environments/locked/versions/1"));
            let table = browser.text(&browser.find("table.lock"));
            assert!(
                table.contains("alpha") && table.contains("beta") && table.contains("2.1"),
                "{table}"
            );
            assert!(
                table.contains("pypi") && table.contains("local file"),
                "{table}"
            );
            assert!(
                table.contains(" B") || table.contains("KiB"),
                "sizes are shown: {table}"
            );
            browser.screenshot("07-lock");
        }

        // Runs and a run's log.
        browser.goto(&format!("{url}/ui/runs"));
        browser.screenshot("08-runs");
        browser.click_to_navigate(&browser.find("a.run"));
        let log = browser.text(&browser.find("#log"));
        assert_eq!(log.trim(), "epoch 1 loss 0.25");
        browser.screenshot("09-run");
        eprintln!("screenshots in {}", browser.shots.display());
    }
}
