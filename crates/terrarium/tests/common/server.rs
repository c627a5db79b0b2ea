//! A real `terrarium server` process on a free loopback port, and a PostgreSQL database per test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::TestContext;

/// A fresh database on `TERRARIUM_TEST_POSTGRES`; `None` (a failure under CI) without one.
pub fn postgres_database(prefix: &str) -> Option<String> {
    let Ok(url) = std::env::var("TERRARIUM_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "TERRARIUM_TEST_POSTGRES must be set in CI"
        );
        eprintln!(
            "PostgreSQL part skipped: set TERRARIUM_TEST_POSTGRES (scripts/postgres.sh start DIR)"
        );
        return None;
    };
    let name = format!(
        "{prefix}_{}_{}",
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
    Some(format!("{}/{name}", url.rsplit_once('/').unwrap().0))
}

/// The databases a server test runs against: SQLite always, PostgreSQL when available.
pub fn backends(cx: &TestContext, prefix: &str) -> Vec<String> {
    let mut dbs = vec![format!("sqlite://{}", cx.path("server-ws").display())];
    dbs.extend(postgres_database(prefix));
    dbs
}

pub struct Server {
    child: Child,
    pub url: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Start `terrarium server --db DB --listen 127.0.0.1:0 EXTRA...` and wait until it listens.
    pub fn start(cx: &TestContext, db: &str, extra: &[&str]) -> Server {
        let mut child = cx
            .command_without_workspace()
            .args(["server", "--db", db, "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("terrarium server listening on ") {
                    let _ = tx.send(url.to_string());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the server did not start:\n{}", log.lock().unwrap()));
        Server { child, url, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the server did not stop within 30 s");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Create a token directly in the database.
pub fn bootstrap_token(cx: &TestContext, db: &str, role: &str, name: &str) -> String {
    let created = cx
        .command_without_workspace()
        .args([
            "token", "create", "--db", db, "--role", role, "--name", name, "--json",
        ])
        .output()
        .unwrap();
    let run: super::Run = created.into();
    run.success().json()["token"].as_str().unwrap().to_string()
}

/// The CLI against a server workspace with a token.
pub fn remote(cx: &TestContext, url: &str, token: Option<&str>, args: &[&str]) -> super::Run {
    let mut cmd = cx.command_without_workspace();
    cmd.arg("--workspace").arg(url).args(args);
    cmd.env("TERRARIUM_HOME", cx.path("home"));
    cmd.env("TERRARIUM_CONFIG", cx.path("no-config.toml"));
    match token {
        Some(token) => cmd.env("TERRARIUM_TOKEN", token),
        None => cmd.env_remove("TERRARIUM_TOKEN"),
    };
    cmd.output().unwrap().into()
}

/// One raw HTTP/1.1 request; returns (status, body).
pub fn http(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    if let Some(body) = body {
        // The server may answer (413) and close before reading everything.
        let _ = stream.write_all(body);
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    parse_response(&response)
}

pub fn parse_response(response: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(head, body)| {
            if head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
            {
                dechunk(body)
            } else {
                body.to_string()
            }
        })
        .unwrap_or_default();
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
