//! The Python workers: started, supervised, restarted, and fed from a bounded queue.
//!
//! Each worker slot is a task that owns one process and its unix socket. An idle slot waits on
//! the shared queue; a busy one takes a second request only when its worker is fast and no other
//! worker is idle (see [`Slot::serve`]), so a request never waits behind a slow or busy worker
//! while another is free. When a worker dies (a segfault, `os._exit`, the OOM killer) or
//! overruns the timeout, only the request it was serving fails; one it had not begun goes to
//! the next worker, and the slot starts a new process and goes on with the queue.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::output::Lines;
use crate::protocol::{read_frame, write_frame, RequestHeader, WorkerMessage};
use crate::Log;

/// How to start one worker process.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    /// The environment's interpreter.
    pub python: PathBuf,
    /// Prepended to `PYTHONPATH` (the shim, for system-managed environments).
    pub python_path: Vec<PathBuf>,
    /// The entry script (`init()`, `run()`).
    pub entry: Option<PathBuf>,
    /// The environment's variables, `AZUREML_MODEL_DIR` among them.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub workers: usize,
    /// Requests that may wait for a worker; beyond that the front answers 503.
    pub queue: usize,
    /// How long one run() may take before its worker is killed and restarted.
    pub request_timeout: Duration,
    /// How long loading the script and `init()` may take.
    pub startup_timeout: Duration,
}

/// A worker's answer to one request, or why there is none.
#[derive(Debug)]
pub enum Outcome {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        exec_ms: f64,
    },
    /// The worker exited while serving the request.
    Crashed(String),
    /// The worker's answer cannot be an HTTP response (a status that is not one); why, as
    /// logged. The worker goes on serving.
    Invalid(String),
    /// run() overran the timeout; the worker was killed.
    TimedOut(Duration),
}

#[derive(Debug)]
pub enum SubmitError {
    /// The queue is full: come back later.
    Full,
    /// The pool is stopping or has failed.
    Closed,
}

/// The service's state, in the spirit of Cog's health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    /// Not every worker has finished `init()` yet.
    Starting,
    /// Every worker has finished `init()`, and at least one is idle.
    Ready,
    /// Every live worker is serving a request.
    Busy,
    /// `init()` failed; the service does not serve.
    Failed,
}

struct Job {
    header: RequestHeader,
    body: Vec<u8>,
    reply: oneshot::Sender<Outcome>,
}

struct Shared {
    workers: usize,
    /// Workers that finished `init()` at least once.
    initialized: AtomicUsize,
    /// Workers alive and past `init()`.
    live: AtomicUsize,
    busy: AtomicUsize,
    restarts: AtomicU64,
    served: AtomicU64,
    failed: Mutex<Option<String>>,
    stopping: AtomicBool,
    /// Whether run() reads the request's headers, as the workers said when ready (every worker
    /// runs the same script); until one has, assumed so.
    headers_wanted: AtomicBool,
    changed: watch::Sender<()>,
    log: Log,
}

impl Shared {
    fn fail(&self, reason: String) {
        let mut failed = self.failed.lock().unwrap();
        if failed.is_none() {
            *failed = Some(reason);
        }
        drop(failed);
        self.changed.send_replace(());
    }
}

/// A point-in-time view of the workers, for `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub status: Health,
    pub workers: usize,
    pub live: usize,
    pub busy: usize,
    pub queued: usize,
    pub restarts: u64,
    pub served: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub struct Pool {
    /// The only sender: taken (dropped) at shutdown, so the slots drain the queue and stop.
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    shared: Arc<Shared>,
    queue: usize,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    // Holds the sockets' directory for the pool's life.
    _sockets: tempfile::TempDir,
}

impl Pool {
    /// Start `config.workers` workers. Returns at once; see [`Pool::wait_started`].
    pub fn start(command: WorkerCommand, config: PoolConfig, log: Log) -> std::io::Result<Pool> {
        // Unix socket paths are short (108 bytes): keep them in the temporary directory.
        let sockets = tempfile::Builder::new().prefix("trm-serve-").tempdir()?;
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let (changed, _) = watch::channel(());
        let shared = Arc::new(Shared {
            workers: config.workers,
            initialized: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            restarts: AtomicU64::new(0),
            served: AtomicU64::new(0),
            failed: Mutex::new(None),
            stopping: AtomicBool::new(false),
            headers_wanted: AtomicBool::new(true),
            changed,
            log,
        });
        let command = Arc::new(command);
        let config = Arc::new(config);
        let tasks = (0..config.workers)
            .map(|index| {
                let slot = Slot {
                    index,
                    socket: sockets.path().join(format!("w{index}.sock")),
                    command: Arc::clone(&command),
                    config: Arc::clone(&config),
                    shared: Arc::clone(&shared),
                    rx: Arc::clone(&rx),
                    requeue: tx.downgrade(),
                };
                tokio::spawn(slot.run())
            })
            .collect();
        Ok(Pool {
            tx: Mutex::new(Some(tx)),
            shared,
            queue: config.queue.max(1),
            tasks: Mutex::new(tasks),
            _sockets: sockets,
        })
    }

    /// Wait until every worker has finished `init()` (Ok) or one failed (Err with the reason).
    pub async fn wait_started(&self) -> Result<(), String> {
        let mut changed = self.shared.changed.subscribe();
        loop {
            match self.health() {
                Health::Failed => return Err(self.reason().unwrap_or_default()),
                Health::Starting => {}
                _ => return Ok(()),
            }
            if changed.changed().await.is_err() {
                return Err("the workers stopped".into());
            }
        }
    }

    pub fn health(&self) -> Health {
        let s = &self.shared;
        if s.failed.lock().unwrap().is_some() {
            return Health::Failed;
        }
        if s.initialized.load(Ordering::SeqCst) < s.workers {
            return Health::Starting;
        }
        let live = s.live.load(Ordering::SeqCst);
        if live == 0 || s.busy.load(Ordering::SeqCst) >= live {
            Health::Busy
        } else {
            Health::Ready
        }
    }

    /// Whether requests need their headers (and client address): the front leaves them out
    /// when no worker's run() reads them.
    pub fn headers_wanted(&self) -> bool {
        self.shared.headers_wanted.load(Ordering::Relaxed)
    }

    pub fn reason(&self) -> Option<String> {
        self.shared.failed.lock().unwrap().clone()
    }

    pub fn status(&self) -> Status {
        let s = &self.shared;
        Status {
            status: self.health(),
            workers: s.workers,
            live: s.live.load(Ordering::SeqCst),
            busy: s.busy.load(Ordering::SeqCst),
            queued: self
                .tx
                .lock()
                .unwrap()
                .as_ref()
                .map_or(0, |tx| self.queue - tx.capacity()),
            restarts: s.restarts.load(Ordering::SeqCst),
            served: s.served.load(Ordering::SeqCst),
            reason: self.reason(),
        }
    }

    /// Queue a request; the receiver gets the worker's answer.
    pub fn submit(
        &self,
        header: RequestHeader,
        body: Vec<u8>,
    ) -> Result<oneshot::Receiver<Outcome>, SubmitError> {
        if self.shared.failed.lock().unwrap().is_some()
            || self.shared.stopping.load(Ordering::SeqCst)
        {
            return Err(SubmitError::Closed);
        }
        let (reply, receiver) = oneshot::channel();
        let job = Job {
            header,
            body,
            reply,
        };
        let sent = match self.tx.lock().unwrap().as_ref() {
            Some(tx) => tx.try_send(job),
            None => return Err(SubmitError::Closed),
        };
        match sent {
            Ok(()) => Ok(receiver),
            Err(mpsc::error::TrySendError::Full(_)) => Err(SubmitError::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::Closed),
        }
    }

    /// Stop taking requests, let the workers finish the queue, then stop them.
    pub async fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        drop(self.tx.lock().unwrap().take());
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        for task in tasks {
            let _ = task.await;
        }
    }
}

struct Slot {
    index: usize,
    socket: PathBuf,
    command: Arc<WorkerCommand>,
    config: Arc<PoolConfig>,
    shared: Arc<Shared>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    /// Puts a request that never began back in the queue, for any worker; dead once the pool
    /// stops taking requests.
    requeue: mpsc::WeakSender<Job>,
}

enum Ended {
    /// The queue closed: the pool is stopping.
    Stopped,
    /// The worker died or was killed; start another.
    Restart,
}

impl Slot {
    fn log(&self, message: &str) {
        (self.shared.log)(&format!("worker {}: {message}", self.index));
    }

    async fn run(self) {
        let mut initialized = false;
        // A request handed to a worker that died before it began it: the next worker's first.
        let mut carry: Option<Job> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.shared.stopping.load(Ordering::SeqCst)
                || self.shared.failed.lock().unwrap().is_some()
            {
                if let Some(job) = carry.take() {
                    let message = format!(
                        "request {} had not begun when its worker died, and no worker is left to serve it",
                        job.header.id
                    );
                    self.log(&message);
                    let _ = job.reply.send(Outcome::Crashed(message));
                }
                return;
            }
            match self.life(&mut initialized, &mut carry).await {
                Ok(Ended::Stopped) => return,
                Ok(Ended::Restart) => {
                    self.shared.restarts.fetch_add(1, Ordering::SeqCst);
                    self.log("restarting");
                    backoff = Duration::from_millis(100);
                }
                Err(reason) => {
                    // A worker that cannot start at all fails the deployment at first start;
                    // later (say, a model store that hiccups) it is retried with backoff.
                    if !initialized {
                        self.log(&format!("failed: {reason}"));
                        self.shared.fail(reason);
                        return;
                    }
                    self.log(&format!(
                        "cannot restart: {reason}; retrying in {backoff:?}"
                    ));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// One worker process, from start to exit.
    async fn life(&self, initialized: &mut bool, carry: &mut Option<Job>) -> Result<Ended, String> {
        let _ = std::fs::remove_file(&self.socket);
        let listener = UnixListener::bind(&self.socket)
            .map_err(|err| format!("cannot listen on {}: {err}", self.socket.display()))?;
        let (mut child, output) = self.spawn()?;
        let startup = self.config.startup_timeout;
        let stream = tokio::select! {
            accepted = listener.accept() => accepted.map_err(|e| e.to_string())?.0,
            status = child.wait() => {
                return Err(format!("the worker exited before it connected ({})", describe(status.ok())));
            }
            _ = tokio::time::sleep(startup) => {
                let _ = child.kill().await;
                return Err(format!("the worker did not connect within {} s", startup.as_secs()));
            }
        };
        drop(listener);
        let _ = std::fs::remove_file(&self.socket);
        let (reader, mut writer) = stream.into_split();
        // Buffered: a response frame is read with one `recv`, not four.
        let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, reader);
        let started = tokio::time::timeout(startup, async {
            match read_frame(&mut reader).await {
                Ok(Some((WorkerMessage::Hello { pid, .. }, _))) => {
                    self.log(&format!("started (pid {pid}); loading the entry script"));
                }
                other => return Err(format!("the worker did not say hello: {other:?}")),
            }
            match read_frame(&mut reader).await {
                Ok(Some((WorkerMessage::Ready { needs_headers }, _))) => Ok(needs_headers),
                Ok(Some((WorkerMessage::InitFailed { reason }, _))) => {
                    Err(format!("init() failed: {reason}"))
                }
                Ok(None) | Err(_) => {
                    let status = child.wait().await.ok();
                    Err(format!(
                        "the worker exited during init() ({})",
                        describe(status)
                    ))
                }
                Ok(Some(other)) => Err(format!("unexpected message during init(): {other:?}")),
            }
        })
        .await;
        let needs_headers = match started {
            Ok(Ok(needs_headers)) => needs_headers,
            Ok(Err(reason)) => {
                let _ = child.kill().await;
                // init() failing is the script's fault, not chance: never retried.
                self.shared.fail(reason.clone());
                return Err(reason);
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(format!(
                    "init() did not finish within {} s",
                    startup.as_secs()
                ));
            }
        };
        if !*initialized {
            *initialized = true;
            self.shared.initialized.fetch_add(1, Ordering::SeqCst);
        }
        self.shared
            .headers_wanted
            .store(needs_headers, Ordering::Relaxed);
        self.shared.live.fetch_add(1, Ordering::SeqCst);
        self.shared.changed.send_replace(());
        self.log("ready");

        let ended = self
            .serve(
                &mut child,
                &mut reader,
                &mut writer,
                output,
                needs_headers,
                carry,
            )
            .await;
        self.shared.live.fetch_sub(1, Ordering::SeqCst);
        self.shared.changed.send_replace(());
        Ok(ended)
    }

    /// Feed one live worker requests until the queue closes (`Stopped`) or the worker dies or
    /// overruns the timeout (`Restart`).
    ///
    /// A worker whose run() is fast is handed its next request while it finishes the current
    /// one, so that it never waits for the front between requests; the front, one thread for
    /// every connection, is often busy when a response arrives. That happens only when a request
    /// is waiting and no other worker is idle (an idle worker holds the queue while it waits), so
    /// a request never waits behind a busy worker while another is free, and never behind a slow
    /// run(). Each request's timeout counts from when its worker began it: when the answer
    /// before it arrived.
    async fn serve(
        &self,
        child: &mut tokio::process::Child,
        reader: &mut tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>,
        writer: &mut tokio::net::unix::OwnedWriteHalf,
        mut output: OutputClosed,
        needs_headers: bool,
        carry: &mut Option<Job>,
    ) -> Ended {
        let mut in_flight: VecDeque<Job> = VecDeque::with_capacity(2);
        let mut began = Instant::now();
        // The worker's recent run() time; pipelining only while it stays short.
        let mut recent_exec_ms = f64::INFINITY;
        // A worker whose stdout or stderr is closed cannot print: its next print() raises. It
        // is replaced, once idle. Not when that happened during init(), which would do it
        // again.
        let mut watch_output = match *output.borrow() {
            Some(stream) => {
                self.log(&format!(
                    "its {stream} was closed during init(); what it prints there is lost"
                ));
                false
            }
            None => true,
        };
        let ended = loop {
            let output_closed = if watch_output { *output.borrow() } else { None };
            if in_flight.is_empty() {
                if let Some(stream) = output_closed {
                    break self.replace(child, writer, stream).await;
                }
                let job = match carry.take() {
                    Some(job) => Some(job),
                    None => tokio::select! {
                        job = async { self.rx.lock().await.recv().await } => job,
                        closed = output.wait_for(Option::is_some), if watch_output => {
                            // The readers gone without a word: nothing left to watch.
                            watch_output = closed.is_ok();
                            continue;
                        }
                    },
                };
                let Some(job) = job else {
                    let _ = write_frame(writer, &serde_json::json!({"type": "stop"}), b"").await;
                    if tokio::time::timeout(Duration::from_secs(10), child.wait())
                        .await
                        .is_err()
                    {
                        let _ = child.kill().await;
                    }
                    break Ended::Stopped;
                };
                if job.reply.is_closed() {
                    // The client went away while the request waited.
                    continue;
                }
                self.shared.busy.fetch_add(1, Ordering::SeqCst);
                self.shared.changed.send_replace(());
                began = Instant::now();
                let deadline = began + self.config.request_timeout;
                match send(writer, job, needs_headers, deadline).await {
                    Ok(job) => in_flight.push_back(job),
                    Err(Unsent::Gone(job)) => {
                        // It never reached the worker, which is gone.
                        self.requeue(job, carry);
                        self.shared.busy.fetch_sub(1, Ordering::SeqCst);
                        self.shared.changed.send_replace(());
                        self.reap(child).await;
                        break Ended::Restart;
                    }
                    Err(Unsent::TimedOut(job)) => {
                        // A worker that does not read its requests is as stuck as a slow one.
                        let _ = child.kill().await;
                        let timeout = self.config.request_timeout;
                        self.log(&format!(
                            "request {} could not be handed to the worker within the {} ms timeout; the worker was killed",
                            job.header.id,
                            timeout.as_millis()
                        ));
                        let _ = job.reply.send(Outcome::TimedOut(timeout));
                        self.shared.busy.fetch_sub(1, Ordering::SeqCst);
                        self.shared.changed.send_replace(());
                        break Ended::Restart;
                    }
                }
            }
            if in_flight.len() == 1 && recent_exec_ms < PIPELINE_BELOW_MS && output_closed.is_none()
            {
                let next = carry.take().or_else(|| {
                    let mut rx = self.rx.try_lock().ok()?;
                    rx.try_recv().ok()
                });
                match next {
                    // Small enough to sit in the socket's buffer while the worker is busy, so
                    // that writing it never waits for the worker.
                    Some(job) if job.body.len() <= PIPELINE_MAX_BODY && !job.reply.is_closed() => {
                        let deadline = began + self.config.request_timeout;
                        match send(writer, job, needs_headers, deadline).await {
                            Ok(job) => in_flight.push_back(job),
                            Err(Unsent::Gone(job) | Unsent::TimedOut(job)) => {
                                self.requeue(job, carry)
                            }
                        }
                    }
                    Some(job) if !job.reply.is_closed() => *carry = Some(job),
                    _ => {}
                }
            }
            let deadline = began + self.config.request_timeout;
            let answer = tokio::time::timeout_at(deadline.into(), read_frame(reader)).await;
            let job = in_flight.pop_front().expect("a request is in flight");
            let id = &job.header.id;
            let failure = match answer {
                Ok(Ok(Some((
                    WorkerMessage::Response {
                        id: answered,
                        status,
                        headers,
                        exec_ms,
                    },
                    body,
                )))) if answered == *id => {
                    began = Instant::now();
                    recent_exec_ms = if recent_exec_ms.is_finite() {
                        0.8 * recent_exec_ms + 0.2 * exec_ms
                    } else {
                        exec_ms
                    };
                    self.shared.served.fetch_add(1, Ordering::SeqCst);
                    let outcome = match status.http() {
                        Some(status) => Outcome::Response {
                            status,
                            headers,
                            body,
                            exec_ms,
                        },
                        None => {
                            // Shims older than their own status check let any status
                            // through. The worker is fine: only this answer is not.
                            let message = format!(
                                "request {id}: run() answered with status {status}, which is not an HTTP status (100-999); answering 500"
                            );
                            self.log(&message);
                            Outcome::Invalid(message)
                        }
                    };
                    let _ = job.reply.send(outcome);
                    if in_flight.is_empty() {
                        self.shared.busy.fetch_sub(1, Ordering::SeqCst);
                        self.shared.changed.send_replace(());
                    }
                    continue;
                }
                Ok(Ok(Some((other, _)))) => {
                    let _ = child.kill().await;
                    let message = format!("the worker answered request {id} with {other:?}");
                    self.log(&message);
                    Outcome::Crashed(message)
                }
                Ok(Err(err)) if err.kind() == std::io::ErrorKind::InvalidData => {
                    // The channel is out of step, and the worker alive: no use waiting for it
                    // to exit.
                    let _ = child.kill().await;
                    let message =
                        format!("the worker answered request {id} with a malformed frame: {err}");
                    self.log(&message);
                    Outcome::Crashed(message)
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let status = self.reap(child).await;
                    let message = format!(
                        "the worker exited while serving request {id} ({})",
                        describe(status)
                    );
                    self.log(&message);
                    Outcome::Crashed(message)
                }
                Err(_) => {
                    let _ = child.kill().await;
                    let timeout = self.config.request_timeout;
                    self.log(&format!(
                        "request {id} overran the {} ms timeout; the worker was killed",
                        timeout.as_millis()
                    ));
                    Outcome::TimedOut(timeout)
                }
            };
            let _ = job.reply.send(failure);
            // A request handed ahead had not begun: another worker serves it.
            if let Some(next) = in_flight.pop_front() {
                self.log(&format!(
                    "request {} had not begun; the next worker serves it",
                    next.header.id
                ));
                self.requeue(next, carry);
            }
            self.shared.busy.fetch_sub(1, Ordering::SeqCst);
            self.shared.changed.send_replace(());
            break Ended::Restart;
        };
        ended
    }

    /// Back into the queue for whichever worker is free, or, when the queue is full or closed,
    /// kept for this slot's next worker.
    fn requeue(&self, job: Job, carry: &mut Option<Job>) {
        let job = match self.requeue.upgrade() {
            Some(tx) => match tx.try_send(job) {
                Ok(()) => return,
                Err(
                    mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job),
                ) => job,
            },
            None => job,
        };
        if let Some(earlier) = carry.replace(job) {
            // At most one request is handed ahead, so this slot never holds two.
            let _ = earlier
                .reply
                .send(Outcome::Crashed("the worker died".into()));
        }
    }

    /// Replace an idle worker whose `stream` (stdout or stderr) was closed: asked to stop,
    /// killed if it lingers.
    async fn replace(
        &self,
        child: &mut tokio::process::Child,
        writer: &mut tokio::net::unix::OwnedWriteHalf,
        stream: &'static str,
    ) -> Ended {
        // A worker that exits closes its output too: then say so, not that its output closed.
        if let Ok(status) = tokio::time::timeout(Duration::from_millis(100), child.wait()).await {
            self.log(&format!("the worker exited ({})", describe(status.ok())));
            return Ended::Restart;
        }
        self.log(&format!(
            "its {stream} was closed, so its prints would fail; replacing it"
        ));
        let _ = write_frame(writer, &serde_json::json!({"type": "stop"}), b"").await;
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
        Ended::Restart
    }

    /// The exit status of a worker that closed its channel (killed if it lingers).
    async fn reap(&self, child: &mut tokio::process::Child) -> Option<ExitStatus> {
        match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = child.kill().await;
                None
            }
        }
    }

    /// Start a worker; with it, which of its output streams was closed, when one is.
    fn spawn(&self) -> Result<(tokio::process::Child, OutputClosed), String> {
        let command = &self.command;
        let mut python_path: Vec<String> = command
            .python_path
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let inherited = command
            .env
            .iter()
            .find(|(k, _)| k == "PYTHONPATH")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("PYTHONPATH").ok());
        if let Some(existing) = inherited.filter(|p| !p.is_empty()) {
            python_path.push(existing);
        }
        let mut process = tokio::process::Command::new(&command.python);
        process
            .args(["-u", "-m", "terrarium_worker", "--socket"])
            .arg(&self.socket)
            .arg("--index")
            .arg(self.index.to_string());
        if let Some(entry) = &command.entry {
            process.arg("--entry").arg(entry);
        }
        process
            .envs(
                command
                    .env
                    .iter()
                    .filter(|(k, _)| k != "PYTHONPATH")
                    .cloned(),
            )
            .env("PYTHONPATH", python_path.join(":"))
            .current_dir(&command.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = process
            .spawn()
            .map_err(|err| format!("cannot start {}: {err}", command.python.display()))?;
        // The worker's output (the entry script's prints, tracebacks) goes to the deployment log.
        let (closed, output) = watch::channel(None);
        let closed = Arc::new(closed);
        for (name, stream) in [
            (
                "stdout",
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ),
            (
                "stderr",
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ),
        ] {
            let Some(stream) = stream else { continue };
            let log = Arc::clone(&self.shared.log);
            let closed = Arc::clone(&closed);
            let index = self.index;
            tokio::spawn(async move {
                let mut lines = Lines::new(stream);
                loop {
                    match lines.next_line().await {
                        Ok(Some(line)) => log(&format!("worker {index} | {line}")),
                        Ok(None) => break,
                        Err(err) => {
                            log(&format!("worker {index}: cannot read its {name}: {err}"));
                            break;
                        }
                    }
                }
                // Unread from now on, the pipe breaks the worker's next print().
                closed.send_replace(Some(name));
            });
        }
        Ok((child, output))
    }
}

/// Which of a worker's output streams was closed (or could no longer be read), once one is.
type OutputClosed = watch::Receiver<Option<&'static str>>;

/// A worker whose recent run() calls average less than this is handed its next request early.
const PIPELINE_BELOW_MS: f64 = 2.0;
/// ... if the request is no larger than this: it must fit the socket's buffer.
const PIPELINE_MAX_BODY: usize = 32 * 1024;

/// Why a request was not written to its worker; it never reached it, either way.
enum Unsent {
    /// The worker is gone.
    Gone(Job),
    /// The worker did not read it before the deadline.
    TimedOut(Job),
}

/// Write a request to a worker by `deadline`; the job back, either way.
async fn send(
    writer: &mut tokio::net::unix::OwnedWriteHalf,
    mut job: Job,
    needs_headers: bool,
    deadline: Instant,
) -> Result<Job, Unsent> {
    if !needs_headers {
        job.header.headers.clear();
    }
    let written =
        tokio::time::timeout_at(deadline.into(), write_frame(writer, &job.header, &job.body)).await;
    match written {
        Ok(Ok(())) => Ok(job),
        Ok(Err(_)) => Err(Unsent::Gone(job)),
        Err(_) => Err(Unsent::TimedOut(job)),
    }
}

fn describe(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}{}", signal_name(signal)),
            _ => status.to_string(),
        },
        None => "status unknown".into(),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        6 => " (SIGABRT)",
        9 => " (SIGKILL, as the out-of-memory killer sends)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(dir: &std::path::Path, script: &str) -> (Pool, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let log: Log = {
            let lines = Arc::clone(&lines);
            Arc::new(move |line: &str| lines.lock().unwrap().push(line.to_string()))
        };
        (pool_with_log(dir, script, log), lines)
    }

    fn pool_with_log(dir: &std::path::Path, script: &str, log: Log) -> Pool {
        let entry = dir.join("score.py");
        std::fs::write(&entry, script).unwrap();
        let command = WorkerCommand {
            python: "python3".into(),
            // The shim as the binary carries it, not the source folder this test was built
            // from (which a test binary outlives when its checkout moves).
            python_path: vec![crate::shim::install(&dir.join("shim")).unwrap()],
            entry: Some(entry),
            env: Vec::new(),
            cwd: dir.to_path_buf(),
        };
        let config = PoolConfig {
            workers: 1,
            queue: 4,
            request_timeout: Duration::from_secs(30),
            startup_timeout: Duration::from_secs(60),
        };
        Pool::start(command, config, log).unwrap()
    }

    /// Wait until the pool's worker has started; when it cannot, fail with what it printed.
    async fn started(pool: &Pool, lines: &Mutex<Vec<String>>) {
        if let Err(err) = pool.wait_started().await {
            panic!("{err}; the log:\n{}", lines.lock().unwrap().join("\n"));
        }
    }

    /// Wait (up to 30 s) until `count` is at least `at_least`.
    async fn wait_for_count(count: &AtomicUsize, at_least: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while count.load(Ordering::SeqCst) < at_least {
            assert!(
                Instant::now() < deadline,
                "{} of {at_least}",
                count.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait (up to 20 s) until the log has a line for which `found` holds.
    async fn wait_for_line(lines: &Mutex<Vec<String>>, found: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if lines.lock().unwrap().iter().any(|l| found(l)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no such line in the log:\n{}",
                lines.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn request(pool: &Pool, id: &str, body: &str) -> oneshot::Receiver<Outcome> {
        let header = RequestHeader {
            kind: "request",
            id: id.into(),
            route: "score",
            method: "POST".into(),
            path: "/score".into(),
            query: String::new(),
            headers: Vec::new(),
            remote_addr: None,
        };
        pool.submit(header, body.as_bytes().to_vec()).unwrap()
    }

    fn status(outcome: Outcome) -> String {
        match outcome {
            Outcome::Response { status, body, .. } => {
                format!("{status} {}", String::from_utf8_lossy(&body))
            }
            other => format!("{other:?}"),
        }
    }

    const SCRIPT: &str = "import os, time\n\ndef init():\n    pass\n\ndef run(raw):\n    if raw == 'crash':\n        time.sleep(0.2)\n        os._exit(9)\n    if raw == 'big':\n        time.sleep(0.2)\n        return 'x' * 2000000\n    return raw\n";

    /// One worker, a fast request to show it is fast, then two requests queued together: the
    /// second is handed to the worker while it runs the first, which kills the worker. Only the
    /// first fails; the second had not begun, and the restarted worker answers it.
    #[tokio::test]
    async fn a_request_handed_ahead_survives_the_crash_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, lines) = pool(dir.path(), SCRIPT);
        started(&pool, &lines).await;
        assert_eq!(
            status(request(&pool, "warm", "fast").await.unwrap()),
            "200 \"fast\""
        );
        // Both queued before the slot runs again (one thread): it takes `crash`, then `after`.
        let crash = request(&pool, "crash", "crash");
        let after = request(&pool, "after", "after");
        let crash = status(crash.await.unwrap());
        assert!(crash.starts_with("Crashed"), "{crash}");
        assert_eq!(status(after.await.unwrap()), "200 \"after\"");
        let lines = lines.lock().unwrap().join("\n");
        assert!(
            lines.contains("request after had not begun; the next worker serves it"),
            "{lines}"
        );
        pool.shutdown().await;
    }

    /// A worker killed while idle: the next request cannot be written to it, goes to the
    /// restarted worker, and the pool does not count a busy worker that is not.
    #[tokio::test]
    async fn a_worker_killed_while_idle_costs_no_request() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, lines) = pool(dir.path(), SCRIPT);
        started(&pool, &lines).await;
        let started = lines.lock().unwrap().join("\n");
        let pid = started
            .split("started (pid ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .expect("the worker's pid is logged")
            .to_string();
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            status(request(&pool, "next", "next").await.unwrap()),
            "200 \"next\""
        );
        let status = pool.status();
        assert_eq!((status.busy, status.restarts), (0, 1), "{status:?}");
        assert_eq!(pool.health(), Health::Ready);
        pool.shutdown().await;
    }

    /// A large request is not handed to a busy worker: the front would block writing it while
    /// the worker blocks writing its large answer, until the timeout killed both requests.
    #[tokio::test]
    async fn large_requests_wait_for_their_worker() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, _lines) = pool(dir.path(), SCRIPT);
        pool.wait_started().await.unwrap();
        assert_eq!(
            status(request(&pool, "warm", "fast").await.unwrap()),
            "200 \"fast\""
        );
        let big_answer = request(&pool, "big-answer", "big");
        let body = "y".repeat(4 << 20);
        let big_request = request(&pool, "big-request", &body);
        let answered = tokio::time::timeout(Duration::from_secs(20), async {
            (big_answer.await.unwrap(), big_request.await.unwrap())
        })
        .await
        .expect("both answered well within the timeout");
        match answered {
            (
                Outcome::Response {
                    status: 200,
                    body: first,
                    ..
                },
                Outcome::Response {
                    status: 200,
                    body: second,
                    ..
                },
            ) => {
                assert_eq!(first.len(), 2_000_002);
                assert_eq!(second.len(), body.len() + 2);
            }
            other => panic!("{other:?}"),
        }
        pool.shutdown().await;
    }

    const OUTPUT: &str = r#"import os, sys

def init():
    pass

def run(raw):
    if raw == 'bad-bytes':
        sys.stdout.buffer.write(b'\xff\xfe\n')
        sys.stdout.buffer.flush()
        print('after the bad bytes')
    elif raw == 'long':
        sys.stdout.write('x' * 50000000)
        sys.stdout.flush()
    elif raw == 'close-stdout':
        os.close(1)
    else:
        print('printed ' + raw)
    return raw
"#;

    /// Bytes that are not UTF-8 on a worker's stdout are logged, replaced, and the log goes on.
    /// They used to stop the log reader, after which every print() in run() failed with
    /// BrokenPipe (a 500) while `/health` said READY.
    #[tokio::test]
    async fn output_that_is_not_utf8_does_not_stop_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, lines) = pool(dir.path(), OUTPUT);
        started(&pool, &lines).await;
        assert_eq!(
            status(request(&pool, "bad", "bad-bytes").await.unwrap()),
            "200 \"bad-bytes\""
        );
        wait_for_line(&lines, |l| l == "worker 0 | \u{fffd}\u{fffd}").await;
        wait_for_line(&lines, |l| l == "worker 0 | after the bad bytes").await;
        for n in 0..3 {
            let body = format!("later-{n}");
            assert_eq!(
                status(request(&pool, &body, &body).await.unwrap()),
                format!("200 \"{body}\"")
            );
            let printed = format!("worker 0 | printed {body}");
            wait_for_line(&lines, |l| l == printed).await;
        }
        assert_eq!(pool.status().restarts, 0);
        pool.shutdown().await;
    }

    /// 50 MB printed without a newline (as a `\r` progress bar does) reaches the log as it
    /// arrives, in lines no longer than the bound: the front holds one line of it at most (the
    /// last, until the next newline). It used to hold all of it, waiting for a newline.
    #[tokio::test]
    async fn long_output_is_logged_in_bounded_lines() {
        const PRINTED: usize = 50_000_000;
        let dir = tempfile::tempdir().unwrap();
        // The bytes of `x` logged, and the worker's longest line.
        let seen = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let log: Log = {
            let seen = Arc::clone(&seen);
            Arc::new(move |line: &str| {
                if let Some(text) = line.strip_prefix("worker 0 | ") {
                    // The leading run only: other text (a temporary path) may hold an `x` too.
                    let xs = text.bytes().take_while(|&b| b == b'x').count();
                    seen.0.fetch_add(xs, Ordering::SeqCst);
                    seen.1.fetch_max(text.len(), Ordering::SeqCst);
                }
            })
        };
        let pool = pool_with_log(dir.path(), OUTPUT, log);
        pool.wait_started().await.unwrap();
        assert_eq!(
            status(request(&pool, "long", "long").await.unwrap()),
            "200 \"long\""
        );
        // All but the last line, which has not ended.
        wait_for_count(&seen.0, PRINTED - PRINTED % crate::output::MAX_LINE).await;
        // Its end: the next print.
        assert_eq!(
            status(request(&pool, "flush", "flush").await.unwrap()),
            "200 \"flush\""
        );
        wait_for_count(&seen.0, PRINTED).await;
        assert_eq!(seen.0.load(Ordering::SeqCst), PRINTED);
        let longest = seen.1.load(Ordering::SeqCst);
        assert!(
            longest <= crate::output::MAX_LINE,
            "a line of {longest} bytes"
        );
        pool.shutdown().await;
    }

    /// A worker whose stdout is closed can no longer print (each print() in run() would fail):
    /// once its request is answered it is restarted, and the next worker's prints are logged.
    #[tokio::test]
    async fn a_worker_whose_output_closes_is_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, lines) = pool(dir.path(), OUTPUT);
        started(&pool, &lines).await;
        assert_eq!(
            status(request(&pool, "close", "close-stdout").await.unwrap()),
            "200 \"close-stdout\""
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while pool.status().restarts < 1 || pool.health() != Health::Ready {
            assert!(Instant::now() < deadline, "{:?}", pool.status());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            status(request(&pool, "after", "after").await.unwrap()),
            "200 \"after\""
        );
        wait_for_line(&lines, |l| l == "worker 0 | printed after").await;
        wait_for_line(&lines, |l| l.contains("stdout was closed")).await;
        assert_eq!(pool.status().restarts, 1);
        pool.shutdown().await;
    }

    const STATUS: &str = r#"from azureml.contrib.services.aml_response import AMLResponse
import terrarium_worker

def init():
    pass

def run(raw):
    if raw == 'old-shim':
        # A shim from before it checked the status (user-managed environments carry their
        # own): the front must catch it.
        terrarium_worker._STATUS_MIN, terrarium_worker._STATUS_MAX = -(1 << 70), 1 << 70
        return 'old'
    if raw.startswith('status '):
        return AMLResponse('odd', int(raw.split()[1]), {'X-Extra': 'y'})
    return raw
"#;

    /// An `AMLResponse` whose status is not an HTTP status gets a 500, with a log line naming
    /// it, and its worker goes on serving. A status above 65535 used to break the channel: the
    /// front waited 5 s for the worker to exit, then killed it.
    #[tokio::test]
    async fn a_status_that_is_not_http_is_a_500_and_the_worker_lives() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, lines) = pool(dir.path(), STATUS);
        started(&pool, &lines).await;
        for bad in ["70000", "1000", "99", "-5"] {
            let answer = status(request(&pool, bad, &format!("status {bad}")).await.unwrap());
            assert!(
                answer.starts_with("500 ") && answer.contains("scoring script"),
                "{bad}: {answer}"
            );
            wait_for_line(&lines, |l| l.contains(&format!("status {bad},"))).await;
        }
        assert_eq!(
            status(request(&pool, "ok", "status 299").await.unwrap()),
            "299 odd"
        );
        // The front's own check, for shims that do not check.
        assert_eq!(
            status(request(&pool, "old", "old-shim").await.unwrap()),
            "200 \"old\""
        );
        for bad in ["70000", "1000", "-5"] {
            let answer = status(request(&pool, bad, &format!("status {bad}")).await.unwrap());
            assert!(answer.starts_with("Invalid("), "{bad}: {answer}");
            wait_for_line(&lines, |l| l.contains(&format!("status {bad},"))).await;
        }
        assert_eq!(
            status(request(&pool, "after", "after").await.unwrap()),
            "200 \"after\""
        );
        assert_eq!(pool.status().restarts, 0);
        pool.shutdown().await;
    }
}
