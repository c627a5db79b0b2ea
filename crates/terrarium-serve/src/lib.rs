//! A scoring web service for a model, in the environment it was trained in.
//!
//! The HTTP front ([`http`]) is Rust (axum), its connections held to deadlines and a cap
//! ([`listen`]) so that slow clients cannot starve the others. Python workers ([`pool`]) run
//! inside the materialized environment: each loads the Azure ML style entry script once, calls
//! `init()`, then serves `run()` calls sent over a unix socket with a small framed protocol
//! ([`protocol`]); their output goes to the log ([`output`]). The worker is dependency-free
//! Python shipped in this crate ([`shim`]). A named deployment of the service on this machine
//! ([`deployment`]) has a log, a pidfile that says which process serves it, and a record its
//! caller keeps; the model it serves is identified by a hash of its directory.

pub mod deployment;
mod error;
pub mod http;
pub mod listen;
pub mod output;
pub mod pool;
pub mod protocol;
pub mod shim;
pub mod standalone;
pub mod swagger;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::DeploymentError;
pub use listen::Limits;
pub use pool::{Health, PoolConfig, WorkerCommand};

/// Where the service's log lines go (the front's and the workers' output).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// A log of whole lines into `out`, through a buffer flushed every 100 ms: an access-log line per
/// request costs no system call of its own. Keep the [`LogFlush`] until the end: dropping it
/// writes what is left, on the caller's thread (not on the flusher's, which may be cut off when
/// the process exits).
pub fn buffered_log(out: impl std::io::Write + Send + 'static) -> (Log, LogFlush) {
    let out: Arc<std::sync::Mutex<dyn std::io::Write + Send>> = Arc::new(std::sync::Mutex::new(
        std::io::BufWriter::with_capacity(1 << 16, out),
    ));
    let weak = Arc::downgrade(&out);
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(100));
        let Some(out) = weak.upgrade() else { return };
        let Ok(mut out) = out.lock() else { return };
        let _ = out.flush();
    });
    let flush = LogFlush(Arc::clone(&out));
    let log: Log = Arc::new(move |line: &str| {
        if let Ok(mut out) = out.lock() {
            let _ = out.write_all(line.as_bytes());
            let _ = out.write_all(b"\n");
        }
    });
    (log, flush)
}

/// Flushes a [`buffered_log`] when dropped.
pub struct LogFlush(Arc<std::sync::Mutex<dyn std::io::Write + Send>>);

impl Drop for LogFlush {
    fn drop(&mut self) {
        if let Ok(mut out) = self.0.lock() {
            let _ = out.flush();
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The deployment's name (the swagger title).
    pub name: String,
    pub worker: WorkerCommand,
    pub pool: PoolConfig,
    pub host: IpAddr,
    /// The main port (0 picks a free one); routes from `inference_config` may add others.
    pub port: u16,
    pub routes: http::Routes,
    /// Other ports that the definition's routes name.
    pub extra_ports: Vec<u16>,
    pub body_limit: usize,
    /// Where azmlinfsrv would look for `swagger.json` (the entry script's directory).
    pub app_root: PathBuf,
    /// How long a graceful stop waits for requests in flight.
    pub shutdown_grace: Duration,
}

/// What the service went through, for the caller to record.
#[derive(Debug, Clone)]
pub enum Event {
    Listening(Vec<SocketAddr>),
    Ready,
    Failed(String),
    Stopping,
}

#[derive(Debug)]
pub enum Stopped {
    /// Stopped by SIGINT or SIGTERM (or the caller's `stop`, see [`serve_with`]), after
    /// draining.
    Signal,
    /// A worker's `init()` failed (or it could not start); nothing was served.
    Failed(String),
}

/// Run the service, with the default [`Limits`], until a signal, or until the workers fail to
/// start.
pub fn serve(
    config: ServeConfig,
    log: Log,
    on_event: impl Fn(Event) + Send + Sync + 'static,
) -> std::io::Result<Stopped> {
    serve_with(config, Limits::default(), log, on_event, shutdown_signal())
}

/// Run the service until `stop` completes (then drain, as after a signal), or until the
/// workers fail to start.
pub fn serve_with(
    config: ServeConfig,
    limits: Limits,
    log: Log,
    on_event: impl Fn(Event) + Send + Sync + 'static,
    stop: impl Future<Output = ()>,
) -> std::io::Result<Stopped> {
    // One thread: the front only shuffles bytes between sockets, and the CPUs are better left to
    // the Python workers; a multi-threaded runtime spent most of its time waking threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(config, limits, log, on_event, stop))
}

async fn run(
    config: ServeConfig,
    limits: Limits,
    log: Log,
    on_event: impl Fn(Event) + Send + Sync + 'static,
    stop: impl Future<Output = ()>,
) -> std::io::Result<Stopped> {
    let scoring = config
        .routes
        .scoring
        .clone()
        .unwrap_or_else(|| "/score".into());
    let swagger = swagger::Swagger::load(&config.app_root, &config.name, &scoring)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut listeners = vec![tokio::net::TcpListener::bind((config.host, config.port)).await?];
    for port in &config.extra_ports {
        if *port != config.port && *port != 0 {
            listeners.push(tokio::net::TcpListener::bind((config.host, *port)).await?);
        }
    }
    let addresses = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<std::io::Result<Vec<_>>>()?;
    let pool = Arc::new(pool::Pool::start(
        config.worker.clone(),
        config.pool.clone(),
        Arc::clone(&log),
    )?);
    let app = Arc::new(http::App {
        pool: Arc::clone(&pool),
        swagger,
        log: Arc::clone(&log),
        server_version: format!("terrarium/{}", env!("CARGO_PKG_VERSION")),
    });
    let router = http::router(app, &config.routes, config.body_limit, limits.body_timeout);
    // Besides connections, each worker holds a socket and two pipes (more while it restarts),
    // and the runtime and the log a few.
    let reserved = 32 + 8 * config.pool.workers;
    let cap = listen::connection_cap(limits.max_connections, reserved);
    if cap < limits.max_connections {
        log(&format!(
            "the open-files limit leaves room for {cap} connections at once (of {})",
            limits.max_connections
        ));
    }
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(listen::serve(
        listeners,
        router,
        limits.header_timeout,
        cap,
        Arc::clone(&log),
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
    ));
    for address in &addresses {
        log(&format!("listening on http://{address}"));
    }
    on_event(Event::Listening(addresses));

    tokio::pin!(stop);
    let outcome = tokio::select! {
        started = pool.wait_started() => match started {
            Ok(()) => {
                log("ready: every worker has finished init()");
                on_event(Event::Ready);
                stop.await;
                Stopped::Signal
            }
            Err(reason) => {
                log(&format!("failed: {reason}"));
                on_event(Event::Failed(reason.clone()));
                Stopped::Failed(reason)
            }
        },
        _ = &mut stop => Stopped::Signal,
    };
    if matches!(outcome, Stopped::Signal) {
        log("stopping: finishing the requests in flight");
        on_event(Event::Stopping);
    }
    let _ = stop_tx.send(true);
    let grace = config.shutdown_grace;
    let drained = tokio::time::timeout(grace, server).await;
    if drained.is_err() {
        log(&format!(
            "requests still in flight after {} s were cut off",
            grace.as_secs()
        ));
    }
    pool.shutdown().await;
    log("stopped");
    Ok(outcome)
}

/// SIGINT or SIGTERM: the `stop` of [`serve`].
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        // Without a SIGTERM handler, SIGTERM stops the process as it would by default.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
