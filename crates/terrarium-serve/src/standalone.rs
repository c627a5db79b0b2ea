//! `terrarium-serve` (and `terrarium serve`): an entry script served with a given interpreter,
//! without a workspace. This is what a deployment's image runs: the `terrarium-serve` binary is
//! built statically (`scripts/build-front.sh`), so the image needs no C library for it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::http::Routes;
use crate::{
    buffered_log, serve_with, shutdown_signal, Limits, PoolConfig, ServeConfig, Stopped,
    WorkerCommand,
};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The environment's Python.
    #[arg(long, value_name = "PATH")]
    pub python: PathBuf,
    /// The entry script.
    #[arg(long, value_name = "FILE")]
    pub entry: Option<PathBuf>,
    /// The model directory (`AZUREML_MODEL_DIR`).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// A directory to put on the workers' PYTHONPATH (the worker shim).
    #[arg(long, value_name = "DIR")]
    pub shim: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub workers: u32,
    /// The address to listen on: this machine only, unless told otherwise (`0.0.0.0`).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    #[arg(long, default_value_t = 5001)]
    pub port: u16,
    /// How long one run() may take before its worker is killed and restarted.
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    pub timeout_ms: u64,
    /// Requests that may wait for a worker before the service answers 503 (default 32 per worker).
    #[arg(long)]
    pub queue: Option<usize>,
    #[arg(long, default_value_t = 100, value_name = "MIB")]
    pub max_body_mib: usize,
    /// How long a client may take to send a request's line and headers (also how long an idle
    /// kept-alive connection stays open); then its connection is closed.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub header_timeout_ms: u64,
    /// How long a client may take to send a request's whole body; then it gets 408.
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    pub body_timeout_ms: u64,
    /// Connections held at once (fewer if the open-files limit is lower). At the cap, a new
    /// connection closes the oldest idle one.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
}

/// Serve until SIGINT/SIGTERM (exit 0) or until the workers fail to start (exit 1).
pub fn run(args: ServeArgs) -> std::io::Result<ExitCode> {
    let workers = args.workers.max(1) as usize;
    let mut env = vec![(
        "AZUREML_MODEL_DIR".to_string(),
        args.model.display().to_string(),
    )];
    if let Some(entry) = &args.entry {
        env.push(("AZUREML_ENTRY_SCRIPT".into(), entry.display().to_string()));
    }
    let app_root = args
        .entry
        .as_ref()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| args.model.clone());
    let config = ServeConfig {
        name: "terrarium".into(),
        worker: WorkerCommand {
            python: args.python,
            python_path: args.shim.into_iter().collect(),
            entry: args.entry,
            env,
            cwd: app_root.clone(),
        },
        pool: PoolConfig {
            workers,
            queue: args.queue.unwrap_or(32 * workers),
            request_timeout: Duration::from_millis(args.timeout_ms),
            startup_timeout: Duration::from_secs(600),
        },
        host: args.host,
        port: args.port,
        routes: Routes::default(),
        extra_ports: Vec::new(),
        body_limit: args.max_body_mib * 1024 * 1024,
        app_root,
        shutdown_grace: Duration::from_secs(30),
    };
    let limits = Limits {
        header_timeout: Duration::from_millis(args.header_timeout_ms.max(1)),
        body_timeout: Duration::from_millis(args.body_timeout_ms.max(1)),
        max_connections: args.max_connections.max(1),
    };
    let (log, _flush) = buffered_log(std::io::stderr());
    match serve_with(config, limits, log, |_| {}, shutdown_signal())? {
        Stopped::Signal => Ok(ExitCode::SUCCESS),
        // Reported by the caller's printer (the CLI's, or `terrarium-serve`'s main).
        Stopped::Failed(reason) => Err(std::io::Error::other(format!(
            "the service failed: {reason}"
        ))),
    }
}
