//! The front against clients that send half a request, or a body slowly, or too many
//! connections for the open-files limit: they must not keep the others from being served, and
//! every error answer the front makes has its documented shape (`{"message": ...}`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use terrarium_serve::http::Routes;
use terrarium_serve::{Event, Limits, Log, PoolConfig, ServeConfig, Stopped, WorkerCommand};

const SCRIPT: &str = r#"from azureml.contrib.services.aml_response import AMLResponse
import terrarium_worker

def init():
    pass

def run(raw):
    if raw == 'old-shim':
        # A shim from before it checked the status: the front must catch it.
        terrarium_worker._STATUS_MIN, terrarium_worker._STATUS_MAX = -(1 << 70), 1 << 70
        return 'old'
    if raw.startswith('status '):
        return AMLResponse('odd', int(raw.split()[1]))
    return raw
"#;

/// The shim as the binary carries it (installed once per shim version, atomically), not the
/// source folder this test was built from, which a test binary outlives when its checkout moves.
fn shim() -> PathBuf {
    terrarium_serve::shim::install(&std::env::temp_dir().join("terrarium-serve-test-shim")).unwrap()
}

/// The service in this process, on a port of its own, stopped when dropped.
struct Front {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<Stopped>>>,
    _dir: tempfile::TempDir,
}

impl Front {
    fn start(limits: Limits) -> Front {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("score.py");
        std::fs::write(&entry, SCRIPT).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let log: Log = {
            let lines = Arc::clone(&lines);
            Arc::new(move |line: &str| lines.lock().unwrap().push(line.to_string()))
        };
        let config = ServeConfig {
            name: "front".into(),
            worker: WorkerCommand {
                python: "python3".into(),
                python_path: vec![shim()],
                entry: Some(entry),
                env: Vec::new(),
                cwd: dir.path().to_path_buf(),
            },
            pool: PoolConfig {
                workers: 1,
                queue: 8,
                request_timeout: Duration::from_secs(30),
                startup_timeout: Duration::from_secs(60),
            },
            host: "127.0.0.1".parse().unwrap(),
            port: 0,
            routes: Routes::default(),
            extra_ports: Vec::new(),
            body_limit: 1 << 20,
            app_root: dir.path().to_path_buf(),
            shutdown_grace: Duration::from_secs(5),
        };
        let (events, events_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let on_event = move |event| {
                let _ = events.send(event);
            };
            terrarium_serve::serve_with(config, limits, log, on_event, async move {
                let _ = stop_rx.await;
            })
        });
        let mut addr = None;
        loop {
            match events_rx.recv_timeout(Duration::from_secs(60)) {
                Ok(Event::Listening(addresses)) => addr = addresses.first().copied(),
                Ok(Event::Ready) => break,
                Ok(Event::Failed(reason)) => panic!("the service failed: {reason}"),
                Ok(Event::Stopping) => {}
                Err(err) => panic!("the service did not start: {err}"),
            }
        }
        Front {
            addr: addr.expect("the service said where it listens"),
            lines,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| panic!("{err}: {:?}", self.body))
    }

    /// The front's error shape: `{"message": ...}` as JSON, and no run() failure unless said.
    fn assert_error_shape(&self, status: u16, run_failed: bool) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let failed = if run_failed { "True" } else { "False" };
        assert_eq!(
            self.header("x-ms-run-function-failed"),
            Some(failed),
            "{self:?}"
        );
        let body = self.json();
        assert!(
            body.as_object().is_some_and(|o| o.len() == 1) && body["message"].is_string(),
            "{self:?}"
        );
        assert!(self.header("x-request-id").is_some(), "{self:?}");
    }
}

/// Read one answer (the connection closes after it: `Connection: close`), or fail after 10 s.
fn read_answer(stream: &mut TcpStream) -> Answer {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut raw = Vec::new();
    if let Err(err) = stream.read_to_end(&mut raw) {
        panic!(
            "no answer ({err}); read so far: {:?}",
            String::from_utf8_lossy(&raw)
        );
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    read_answer(&mut stream)
}

/// A client that sends the start of a request line, then nothing.
fn stall(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHo").unwrap();
    stream
}

/// Whether the server closed `stream` within `wait`.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // Whatever the server says before it closes.
            Ok(_) => continue,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            // Reset: closed with our bytes unread.
            Err(_) => return true,
        }
    }
}

/// Clients that send half a request line, and kept-alive clients that send nothing more, are
/// closed once the header timeout passes; meanwhile others are served. They used to stay open
/// for as long as they liked.
#[test]
fn stalled_clients_are_closed_after_the_header_timeout() {
    let front = Front::start(Limits {
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    });
    let opened = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..20).map(|_| stall(front.addr)).collect();
    // Kept alive after one answer, then idle.
    for _ in 0..3 {
        let mut stream = TcpStream::connect(front.addr).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        stalled.push(stream);
    }
    let health = request(front.addr, "GET", "/health", "");
    assert_eq!(health.status, 200, "{health:?}");
    for (n, stream) in stalled.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(5)),
            "connection {n} is still open after {:?}",
            opened.elapsed()
        );
    }
    let elapsed = opened.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed after {elapsed:?}"
    );
}

/// At the connection cap, a new client closes the oldest idle connection instead of waiting
/// behind it: 50 stalled clients against a cap of 8 and a 30 s header timeout do not delay a
/// request for /health.
#[test]
fn at_the_connection_cap_stalled_clients_make_room() {
    let front = Front::start(Limits {
        header_timeout: Duration::from_secs(30),
        max_connections: 8,
        ..Limits::default()
    });
    let mut stalled: Vec<TcpStream> = (0..50).map(|_| stall(front.addr)).collect();
    let started = Instant::now();
    let health = request(front.addr, "GET", "/health", "");
    assert_eq!(health.status, 200, "{health:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // All but the 7 newest made room for the next ones.
    let closed = stalled
        .iter_mut()
        .filter_map(|stream| closed_within(stream, Duration::from_millis(200)).then_some(()))
        .count();
    assert!(closed >= 50 - 8, "{closed} of 50 closed");
}

/// The finding, as it was: under `ulimit -n 64`, 100 stalled clients took every file
/// descriptor, and no one else was served again (axum's accept loop sleeps on EMFILE). Runs
/// the `terrarium-serve` binary, since the limit is the process's.
#[test]
fn under_a_low_open_files_limit_stalled_clients_cannot_starve_others() {
    let dir = tempfile::tempdir().unwrap();
    let entry = dir.path().join("score.py");
    std::fs::write(&entry, SCRIPT).unwrap();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_terrarium-serve"))
        .args(["--python", "python3", "--host", "127.0.0.1", "--port", "0"])
        .arg("--shim")
        .arg(shim())
        .arg("--model")
        .arg(dir.path())
        .arg("--entry")
        .arg(&entry)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let child = Stop(child);
    // The log, line by line, from a thread: the address, then readiness.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut addr: Option<SocketAddr> = None;
    let mut seen = Vec::new();
    loop {
        let line = match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(err) => panic!(
                "the service did not get ready ({err}):\n{}",
                seen.join("\n")
            ),
        };
        if let Some(rest) = line.strip_prefix("listening on http://") {
            addr = rest.parse().ok();
        }
        let ready = line.starts_with("ready");
        seen.push(line);
        if ready {
            break;
        }
    }
    let addr = addr.unwrap_or_else(|| panic!("no address in:\n{}", seen.join("\n")));
    let _stalled: Vec<TcpStream> = (0..100).map(|_| stall(addr)).collect();
    for _ in 0..3 {
        let health = request(addr, "GET", "/health", "");
        assert_eq!(health.status, 200, "{health:?}");
        assert_eq!(health.json()["status"], "READY", "{health:?}");
    }
    let scored = request(addr, "POST", "/score", "hello");
    assert_eq!((scored.status, scored.body.as_str()), (200, "\"hello\""));
    drop(child);
}

/// A body that does not arrive within the body timeout gets 408, in the front's error shape,
/// and the connection is closed. The front used to wait for it for as long as the client liked.
#[test]
fn a_body_sent_too_slowly_gets_408() {
    let front = Front::start(Limits {
        body_timeout: Duration::from_secs(1),
        ..Limits::default()
    });
    let started = Instant::now();
    let mut stream = TcpStream::connect(front.addr).unwrap();
    stream
        .write_all(b"POST /score HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n0123456789")
        .unwrap();
    let answer = read_answer(&mut stream);
    answer.assert_error_shape(408, false);
    assert_eq!(
        answer.json()["message"],
        "The request's body did not arrive within 1000 ms."
    );
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(front.log().contains("POST /score 408"), "{}", front.log());
    // Nothing reached the worker.
    let health = request(front.addr, "GET", "/health", "");
    assert_eq!(health.json()["served"], 0, "{health:?}");
}

/// Every error the front answers itself has its shape: 404, 405 (which was an empty body),
/// 413, 408; and a repeated query parameter is not a plain-text 400.
#[test]
fn the_front_answers_errors_in_one_shape() {
    let front = Front::start(Limits::default());
    request(front.addr, "GET", "/nowhere", "").assert_error_shape(404, false);
    for path in ["/health", "/", "/swagger.json", "/ping"] {
        let answer = request(front.addr, "POST", path, "{}");
        answer.assert_error_shape(405, false);
        assert!(answer.header("allow").is_some(), "{answer:?}");
    }
    let answer = request(front.addr, "GET", "/invocations", "");
    answer.assert_error_shape(405, false);
    assert_eq!(answer.header("allow"), Some("POST"));
    request(front.addr, "PUT", "/score", "{}").assert_error_shape(405, false);
    // Refused on its declared length, before any of it is sent (a client still sending would
    // be reset when the front closes).
    let mut stream = TcpStream::connect(front.addr).unwrap();
    stream
        .write_all(b"POST /score HTTP/1.1\r\nHost: test\r\nContent-Length: 2000000\r\n\r\n")
        .unwrap();
    read_answer(&mut stream).assert_error_shape(413, false);
    let answer = request(front.addr, "GET", "/swagger.json?version=2&version=3", "");
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{answer:?}"
    );
}

/// An `AMLResponse` whose status is no HTTP status is a 500 in the front's error shape,
/// naming the status in the log, and the worker goes on: whether the worker's shim checks the
/// status or (an older one) the front does. It used to stall 5 s, then kill the worker.
#[test]
fn a_status_that_is_not_http_is_a_500_and_the_worker_lives() {
    let front = Front::start(Limits::default());
    let check = |front: &Front| {
        for bad in ["70000", "1000", "-1"] {
            let started = Instant::now();
            let answer = request(front.addr, "POST", "/score", &format!("status {bad}"));
            answer.assert_error_shape(500, true);
            assert_eq!(
                answer.json()["message"],
                "An unexpected error occurred in scoring script. Check the logs for more info."
            );
            assert!(answer.header("x-terrarium-error-id").is_some());
            assert!(started.elapsed() < Duration::from_secs(3));
            let log = front.log();
            assert!(log.contains(&format!("status {bad},")), "{log}");
        }
    };
    check(&front);
    let answer = request(front.addr, "POST", "/score", "old-shim");
    assert_eq!(answer.status, 200, "{answer:?}");
    front.lines.lock().unwrap().clear();
    check(&front);
    let health = request(front.addr, "GET", "/health", "").json();
    assert_eq!(health["restarts"], 0, "{health}");
    assert_eq!(health["status"], "READY", "{health}");
}
