//! `terrarium deploy`: serve a model as a web service, in an environment version.
//!
//! The HTTP front runs in this process; Python workers run in the materialized environment
//! (see `terrarium-serve`). The deployment is recorded in the workspace with its environment
//! version and model hash, and its state follows the service: starting, ready, failed, stopped.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;
use sha2::{Digest, Sha256};
use terrarium_lock::LockKind;
use terrarium_serve::{http::Routes, Event, PoolConfig, ServeConfig, Stopped, WorkerCommand};
use terrarium_store::{DeploymentRecord, DeploymentState, Store};

use super::Context;
use crate::environments::{self, LockArgs};
use crate::printer::{self, user_error};
use crate::workspace;

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The deployment's name.
    name: String,
    /// The environment: NAME, NAME:VERSION, NAME@LABEL, or a definition file (registered first).
    #[arg(long = "env", value_name = "REF|FILE")]
    env: String,
    /// Register the --env file as the environment of this name [default: the file's own name;
    /// a nameless file is registered anonymously, as `anonymous/HASH`].
    #[arg(long = "env-name", alias = "name", value_name = "NAME")]
    env_name: Option<String>,
    /// The model directory, given to the entry script as `AZUREML_MODEL_DIR`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The entry script, with `init()` and `run(raw_data)` (optional for an MLflow model
    /// directory, which is served on `/invocations`).
    #[arg(long, value_name = "FILE")]
    entry: Option<PathBuf>,
    /// Python worker processes.
    #[arg(long, default_value_t = 1)]
    workers: u32,
    /// The port [default: the definition's `inference_config.scoring_route.port`, else 5001].
    #[arg(long)]
    port: Option<u16>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// How long one run() may take before its worker is killed and restarted, in ms.
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    timeout_ms: u64,
    /// How long loading the entry script and init() may take, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    startup_timeout: u64,
    /// Requests that may wait for a free worker; more get 503 with Retry-After
    /// [default: 32 per worker].
    #[arg(long)]
    queue: Option<usize>,
    /// The largest request body, in MiB.
    #[arg(long, default_value_t = 100, value_name = "MIB")]
    max_body_mib: usize,
    /// Run in the background; print where it serves once every worker is ready.
    #[arg(long)]
    detach: bool,
    /// Set by --detach for the background process.
    #[arg(long, hide = true)]
    detached_child: bool,
    #[command(flatten)]
    lock: LockArgs,
}

pub fn run(context: &Context, args: DeployArgs) -> Result<ExitCode> {
    // Before anything touches the filesystem: the name becomes file names in the logs folder.
    validate_deployment_name(&args.name)?;
    let store: Arc<dyn Store> = Arc::from(context.store()?);
    let record = environments::resolve_or_register(
        context,
        store.as_ref(),
        &args.env,
        "deploy",
        args.env_name.as_deref(),
    )?;
    let model = std::fs::canonicalize(&args.model).map_err(|err| {
        user_error(
            format!("--model {}: {err}", args.model.display()),
            Some("give the directory that holds the model's files"),
        )
    })?;
    if !model.is_dir() {
        return Err(user_error(
            format!("--model {}: not a directory", args.model.display()),
            None,
        ));
    }
    let entry = match &args.entry {
        Some(entry) => {
            let path = std::fs::canonicalize(entry)
                .map_err(|err| user_error(format!("--entry {}: {err}", entry.display()), None))?;
            Some(path)
        }
        None if model.join("MLmodel").is_file() => None,
        None => {
            return Err(user_error(
                "--entry is required: the model directory is not an MLflow model (no MLmodel file)",
                Some("pass the scoring script, e.g. --entry score.py"),
            ))
        }
    };
    if args.workers == 0 {
        return Err(user_error("--workers must be at least 1", None));
    }
    let logs = logs_dir(context)?;
    // Here, the pidfile says whether it runs (whatever the record says); elsewhere, the record.
    let existing = store.get_deployment(&args.name).ok();
    let running = match serving_pid(&logs, &args.name) {
        Some(pid) => Some(pid),
        None => existing
            .as_ref()
            .filter(|d| d.host != hostname() && says_running(d))
            .map(|d| d.pid.unwrap_or(0)),
    };
    if let Some(pid) = running {
        return Err(user_error(
            format!(
                "deployment {} is already running (pid {pid}, {})",
                args.name,
                existing
                    .as_ref()
                    .and_then(|d| d.url.as_deref())
                    .unwrap_or("no address yet")
            ),
            Some(&format!(
                "stop it first: terrarium deployments stop {}",
                args.name
            )),
        ));
    }
    let log_path = logs.join(format!("{}.log", args.name));
    if args.detach {
        return detach(context, &args, &record, store.as_ref(), &log_path);
    }

    let (lock, lock_hash) =
        environments::ensure_lock(store.as_ref(), &record, &args.lock.options()?)?;
    if lock.kind == LockKind::UserManaged {
        environments::check_user_managed(&lock, &record);
    }
    let env = environments::materialize(&lock)?;
    let mut vars = environments::process_env(&record, &lock, env.as_ref())?;
    let (python, python_path) = match &env {
        Some(env) => {
            let python = env.bin_dir().join("python");
            if !python.exists() {
                return Err(user_error(
                    format!(
                        "{}:{} has no Python interpreter ({} is missing)",
                        record.name,
                        record.version,
                        python.display()
                    ),
                    Some("add python to the environment's dependencies"),
                ));
            }
            let shim = terrarium_serve::shim::install(&environments::cache_dir()?.join("serve"))
                .context("cannot write the worker shim to the cache")?;
            (python, vec![shim])
        }
        None => {
            let interpreter = user_managed_interpreter(&lock)?;
            check_shim(&interpreter, &record)?;
            (interpreter, Vec::new())
        }
    };
    vars.push(("AZUREML_MODEL_DIR".into(), model.display().to_string()));
    if let Some(entry) = &entry {
        vars.push(("AZUREML_ENTRY_SCRIPT".into(), entry.display().to_string()));
    }

    let inference = record.definition.inference.clone().unwrap_or_default();
    let port = args
        .port
        .or(inference.scoring_route.as_ref().map(|r| r.port))
        .unwrap_or(5001);
    let routes = Routes {
        scoring: inference.scoring_route.as_ref().map(|r| r.path.clone()),
        liveness: inference.liveness_route.as_ref().map(|r| r.path.clone()),
        readiness: inference.readiness_route.as_ref().map(|r| r.path.clone()),
    };
    let extra_ports = [&inference.liveness_route, &inference.readiness_route]
        .into_iter()
        .flatten()
        .map(|r| r.port)
        .collect();
    let app_root = entry
        .as_ref()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| model.clone());
    let config = ServeConfig {
        name: args.name.clone(),
        worker: WorkerCommand {
            python,
            python_path,
            entry: entry.clone(),
            env: vars,
            cwd: std::env::current_dir()?,
        },
        pool: PoolConfig {
            workers: args.workers as usize,
            queue: args.queue.unwrap_or(32 * args.workers as usize),
            request_timeout: Duration::from_millis(args.timeout_ms),
            startup_timeout: Duration::from_secs(args.startup_timeout),
        },
        host: args.host,
        port,
        routes,
        extra_ports,
        body_limit: args.max_body_mib * 1024 * 1024,
        app_root,
        shutdown_grace: Duration::from_secs(30),
    };

    printer::status("hashing the model directory");
    let model_hash = hash_dir(&model)?;
    let deployment = DeploymentRecord {
        name: args.name.clone(),
        environment: record.name.clone(),
        version: record.version.clone(),
        lock_hash: Some(lock_hash),
        model_path: model.display().to_string(),
        model_hash,
        entry: entry.as_ref().map(|e| e.display().to_string()),
        workers: args.workers,
        url: None,
        host: hostname(),
        pid: Some(std::process::id()),
        state: DeploymentState::Starting,
        reason: None,
        actor: workspace::actor(),
        started_at: terrarium_store::now(),
        stopped_at: None,
        log_path: Some(log_path.display().to_string()),
    };
    // Written before the record names this process, and removed when it ends (`_pidfile`):
    // `deployments stop` signals only the process the pidfile vouches for.
    let _pidfile = PidFile::write_own(&logs, &args.name)?;
    store.put_deployment(&deployment)?;

    // `_flush` writes the log's last lines when this function returns.
    let (log, _flush) = open_log(&log_path, !args.detached_child)?;
    // The store is blocking (and may be a remote workspace): record state changes on a thread
    // of their own, in order.
    let (events_tx, events_rx) = std::sync::mpsc::channel::<Event>();
    let recorder = {
        let store = Arc::clone(&store);
        let mut deployment = deployment.clone();
        let log = Arc::clone(&log);
        let workers = args.workers;
        std::thread::spawn(move || {
            for event in events_rx {
                match event {
                    Event::Listening(addresses) => {
                        deployment.url = addresses.first().map(|a| format!("http://{a}"));
                    }
                    Event::Ready => {
                        deployment.state = DeploymentState::Ready;
                        printer::status(&format!(
                            "deployment {} serving {}:{} at {} ({workers} worker{})",
                            deployment.name,
                            deployment.environment,
                            deployment.version,
                            deployment.url.as_deref().unwrap_or("?"),
                            if workers == 1 { "" } else { "s" }
                        ));
                    }
                    Event::Failed(reason) => {
                        deployment.state = DeploymentState::Failed;
                        deployment.reason = Some(reason);
                        deployment.stopped_at = Some(terrarium_store::now());
                    }
                    Event::Stopping => continue,
                }
                if let Err(err) = store.put_deployment(&deployment) {
                    log(&format!("cannot record the deployment's state: {err}"));
                }
            }
            deployment
        })
    };
    let outcome = terrarium_serve::serve(config, Arc::clone(&log), move |event| {
        let _ = events_tx.send(event);
    });
    let mut deployment = recorder.join().expect("the recorder thread does not panic");
    // Every error goes through the CLI's printer; a failed service is reported once its
    // state is recorded.
    let failed = match outcome {
        Ok(Stopped::Signal) => {
            deployment.state = DeploymentState::Stopped;
            deployment.stopped_at = Some(terrarium_store::now());
            None
        }
        Ok(Stopped::Failed(reason)) => Some(reason),
        Err(err) => {
            deployment.state = DeploymentState::Failed;
            deployment.reason = Some(err.to_string());
            deployment.stopped_at = Some(terrarium_store::now());
            store.put_deployment(&deployment)?;
            return Err(user_error(
                format!("deployment {} cannot serve: {err}", deployment.name),
                Some("choose another --port if the address is in use"),
            ));
        }
    };
    store.put_deployment(&deployment)?;
    drop(env);
    match failed {
        None => Ok(ExitCode::SUCCESS),
        Some(reason) => Err(anyhow::anyhow!(
            "deployment {} failed: {reason}; its log is in {} (`terrarium deployments logs {}`)",
            deployment.name,
            log_path.display(),
            deployment.name
        )),
    }
}

/// The interpreter a user-managed environment recorded.
fn user_managed_interpreter(lock: &terrarium_lock::Lock) -> Result<PathBuf> {
    let platform = terrarium_lock::current_platform();
    lock.platforms
        .get(&platform)
        .and_then(|p| p.python.as_ref())
        .and_then(|p| p.interpreter.as_ref())
        .map(PathBuf::from)
        .ok_or_else(|| {
            user_error(
                "the user-managed environment records no Python interpreter to deploy with",
                Some("set python.interpreter in its definition"),
            )
        })
}

/// User-managed environments must carry the worker shim, as Azure ML requires
/// `azureml-defaults` in deployable user-managed environments.
fn check_shim(python: &Path, record: &terrarium_store::VersionRecord) -> Result<()> {
    let output = Command::new(python)
        .args(["-m", "terrarium_worker", "--socket", "-", "--check"])
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(out) if out.status.success() => Ok(()),
        Ok(_) => Err(user_error(
            format!(
                "the user-managed environment {}:{} cannot be deployed: its interpreter {} has no `terrarium_worker` package, the scoring worker that Terrarium runs in the environment",
                record.name,
                record.version,
                python.display()
            ),
            Some(&format!(
                "install it into the environment: terrarium deployments shim --wheel DIR && {} -m pip install DIR/terrarium_worker-{}-py3-none-any.whl",
                python.display(),
                terrarium_serve::shim::VERSION
            )),
        )),
        Err(err) => Err(user_error(
            format!("cannot run the environment's interpreter {}: {err}", python.display()),
            None,
        )),
    }
}

/// Start this deployment in the background and wait until it is ready or has failed.
fn detach(
    context: &Context,
    args: &DeployArgs,
    record: &terrarium_store::VersionRecord,
    store: &dyn Store,
    log_path: &Path,
) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(log_path.parent().expect("logs are in a directory"))?;
    let mut command = Command::new(std::env::current_exe()?);
    if let Some(workspace) = &context.workspace {
        command.arg("--workspace").arg(workspace);
    }
    command
        .arg("deploy")
        .arg(&args.name)
        .arg("--env")
        .arg(format!("{}:{}", record.name, record.version))
        .arg("--model")
        .arg(&args.model)
        .arg("--workers")
        .arg(args.workers.to_string())
        .arg("--host")
        .arg(args.host.to_string())
        .arg("--timeout-ms")
        .arg(args.timeout_ms.to_string())
        .arg("--startup-timeout")
        .arg(args.startup_timeout.to_string())
        .arg("--max-body-mib")
        .arg(args.max_body_mib.to_string())
        .arg("--detached-child");
    if let Some(entry) = &args.entry {
        command.arg("--entry").arg(entry);
    }
    if let Some(port) = args.port {
        command.arg("--port").arg(port.to_string());
    }
    if let Some(queue) = args.queue {
        command.arg("--queue").arg(queue.to_string());
    }
    for platform in &args.lock.platform {
        command.arg("--platform").arg(platform);
    }
    for package in &args.lock.virtual_packages {
        command.arg("--virtual-package").arg(package);
    }
    let started_at = terrarium_store::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a Ctrl-C in this terminal does not reach it.
        .process_group(0)
        .spawn()
        .context("cannot start the background deployment")?;
    let deadline = Instant::now() + Duration::from_secs(args.startup_timeout + 600);
    loop {
        if let Some(status) = child.try_wait()? {
            let reason = store
                .get_deployment(&args.name)
                .ok()
                .filter(|d| d.started_at >= started_at)
                .and_then(|d| d.reason)
                .unwrap_or_else(|| format!("it exited ({status})"));
            return Err(user_error(
                format!("deployment {} failed: {reason}", args.name),
                Some(&format!(
                    "see its log: terrarium deployments logs {}",
                    args.name
                )),
            ));
        }
        if let Ok(d) = store.get_deployment(&args.name) {
            if d.started_at >= started_at
                && d.pid == Some(child.id())
                && d.state == DeploymentState::Ready
            {
                println!(
                    "deployment {} serving {}:{} at {} (pid {})",
                    d.name,
                    d.environment,
                    d.version,
                    d.url.as_deref().unwrap_or("?"),
                    child.id()
                );
                return Ok(ExitCode::SUCCESS);
            }
        }
        if Instant::now() > deadline {
            return Err(user_error(
                format!("deployment {} did not become ready in time", args.name),
                Some(&format!(
                    "see its log: terrarium deployments logs {}",
                    args.name
                )),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where deployment logs go, beside the run logs.
pub fn logs_dir(context: &Context) -> Result<PathBuf> {
    let runs = context.runs_dir()?;
    Ok(runs
        .parent()
        .map(|p| p.join("deployments"))
        .unwrap_or_else(|| PathBuf::from("deployments")))
}

type Log = terrarium_serve::Log;

/// The deployment's log file (and stderr, in the foreground). Buffered, and flushed every
/// 100 ms by a thread of its own: an access-log line per request must not cost a `write` each.
fn open_log(path: &Path, to_stderr: bool) -> Result<(Log, terrarium_serve::LogFlush)> {
    std::fs::create_dir_all(path.parent().expect("logs are in a directory"))?;
    // The workers' output may hold anything their environment holds, secrets included:
    // readable by the owner only (a log left by an older version is made so too).
    let file = {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file
    };
    let (file, flush) = terrarium_serve::buffered_log(file);
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
    );
    let log: Log = Arc::new(move |line: &str| {
        let stamp = time::OffsetDateTime::now_utc()
            .format(&format)
            .unwrap_or_default();
        let line = format!("{stamp} {line}");
        file(&line);
        if to_stderr {
            let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
        }
    });
    Ok((log, flush))
}

/// SHA-256 over the directory's regular files: relative path, size and contents, in path order.
pub fn hash_dir(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current)
            .with_context(|| format!("cannot read {}", current.display()))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() || kind.is_symlink() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        let relative = file.strip_prefix(dir).unwrap_or(&file);
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        let mut reader = std::fs::File::open(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let size = std::io::copy(&mut reader, &mut hasher)?;
        hasher.update(size.to_be_bytes());
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Deployment names become file names in the logs folder (`NAME.log`, `NAME.pid`): they follow
/// the rule for environment names, without the `curated/` prefix (which would be a folder).
pub fn validate_deployment_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(user_error("a deployment needs a name", None));
    }
    if terrarium_spec::names::is_curated(name) {
        return Err(user_error(
            format!(
                "invalid deployment name `{name}`: `{}` is reserved for curated environments",
                terrarium_spec::names::CURATED_PREFIX
            ),
            None,
        ));
    }
    terrarium_spec::names::validate_name(name).map_err(|err| user_error(err, None))
}

/// Whether the record says the deployment is up. A record is what anyone with write access to
/// the workspace (maybe a team server) says; on this machine only the pidfile is trusted.
pub fn says_running(d: &DeploymentRecord) -> bool {
    d.state.is_live()
}

/// What this machine knows of a deployment's serving process, for one that says it runs here.
pub enum Serving {
    /// The record's process is the deployment: its pidfile names it, with the same start time,
    /// and its command line is `... deploy NAME ...`. Only this may be signalled.
    Verified(u32),
    /// Nothing serves it: the record's process, and the pidfile's, are gone.
    Gone,
    /// A live process that cannot be confirmed as the deployment; why, in a sentence.
    Unverified(String),
}

/// Check the record's process against the local pidfile and `/proc`.
pub fn check_serving(logs: &Path, d: &DeploymentRecord) -> Serving {
    let name = &d.name;
    match (d.pid, PidFile::state(logs, name)) {
        (Some(pid), PidState::Running(file)) if file.pid == pid => Serving::Verified(pid),
        (recorded, PidState::Running(file)) => {
            let recorded = match recorded {
                Some(pid) if pid_alive(pid) => not_the_deployment(pid, name),
                Some(pid) => format!("the record names process {pid}, which is gone"),
                None => "the record names no process".to_string(),
            };
            Serving::Unverified(format!(
                "{recorded}; deployment {name} runs as process {} (its pidfile says so)",
                file.pid
            ))
        }
        // The pidfile's process ended (its pid may be in use again): the deployment is gone.
        (Some(pid), PidState::Exited(file)) if file.pid == pid => Serving::Gone,
        (Some(pid), _) if pid_alive(pid) => Serving::Unverified(not_the_deployment(pid, name)),
        _ => Serving::Gone,
    }
}

/// Why live process `pid` is not taken for deployment `name`.
fn not_the_deployment(pid: u32, name: &str) -> String {
    let command = command_line(pid).unwrap_or_default();
    if is_deploy_command(&command, name) {
        format!(
            "process {pid} runs `{}` but no pidfile of this workspace vouches for it",
            shown_command(&command)
        )
    } else {
        format!(
            "process {pid} is not deployment {name} (its command line is `{}`)",
            shown_command(&command)
        )
    }
}

/// The pid of the process serving deployment `name` on this machine, per its pidfile.
pub fn serving_pid(logs: &Path, name: &str) -> Option<u32> {
    match PidFile::state(logs, name) {
        PidState::Running(file) => Some(file.pid),
        _ => None,
    }
}

/// Remove deployment `name`'s pidfile once its process `pid` has exited (it removes it itself,
/// unless it was killed).
pub fn remove_pidfile(logs: &Path, name: &str, pid: u32) {
    if let PidState::Exited(file) = PidFile::state(logs, name) {
        if file.pid == pid {
            PidFile::remove_if_nonce(logs, name, &file.nonce);
        }
    }
}

/// `<logs>/<name>.pid`: which process serves a deployment on this machine. It is written by the
/// serving process itself, in the workspace's local folder, so unlike the record (which may live
/// on a team server anyone can write to) it can be trusted to say which process to signal. The
/// start time tells a process from a later one given the same pid; the nonce tells this
/// deployment's pidfile from the next one's, so that a process removes only its own.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PidFile {
    /// The format's version.
    version: u32,
    pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks after boot.
    start_time: u64,
    /// 16 random bytes, hex.
    nonce: String,
}

enum PidState {
    /// No pidfile, or one this version cannot read.
    Missing,
    /// Its process has ended, or the pid is another process's now.
    Exited(PidFile),
    /// Its process runs, and is the deployment.
    Running(PidFile),
    /// Its process runs but is not `deploy NAME` (its command line changed).
    Foreign,
}

/// Removes the serving process's pidfile when the process stops serving.
struct PidFileGuard {
    logs: PathBuf,
    name: String,
    nonce: String,
}

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        PidFile::remove_if_nonce(&self.logs, &self.name, &self.nonce);
    }
}

impl PidFile {
    const VERSION: u32 = 1;

    fn path(logs: &Path, name: &str) -> PathBuf {
        logs.join(format!("{name}.pid"))
    }

    /// Write this process's pidfile for deployment `name`: mode 0600, and atomically (a temporary
    /// file renamed over the old one), so a reader never sees half of it.
    fn write_own(logs: &Path, name: &str) -> Result<PidFileGuard> {
        let pid = std::process::id();
        let start_time = start_time(pid).context("cannot read this process's start time")?;
        let mut nonce = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut nonce))
            .context("cannot read /dev/urandom")?;
        let file = PidFile {
            version: Self::VERSION,
            pid,
            start_time,
            nonce: hex::encode(nonce),
        };
        std::fs::create_dir_all(logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        let path = Self::path(logs, name);
        // tempfile creates its files with mode 0600.
        let mut temp = tempfile::NamedTempFile::new_in(logs)
            .with_context(|| format!("cannot write into {}", logs.display()))?;
        temp.write_all(&serde_json::to_vec(&file)?)?;
        temp.as_file().sync_all()?;
        temp.persist(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(PidFileGuard {
            logs: logs.to_path_buf(),
            name: name.to_string(),
            nonce: file.nonce,
        })
    }

    fn read(logs: &Path, name: &str) -> Option<PidFile> {
        // Names from a record are not trusted to stay inside the folder.
        validate_deployment_name(name).ok()?;
        let text = std::fs::read(Self::path(logs, name)).ok()?;
        serde_json::from_slice::<PidFile>(&text)
            .ok()
            .filter(|f| f.version == Self::VERSION)
    }

    fn state(logs: &Path, name: &str) -> PidState {
        let Some(file) = Self::read(logs, name) else {
            return PidState::Missing;
        };
        if !pid_alive(file.pid) || start_time(file.pid) != Some(file.start_time) {
            return PidState::Exited(file);
        }
        match command_line(file.pid) {
            Some(command) if is_deploy_command(&command, name) => PidState::Running(file),
            _ => PidState::Foreign,
        }
    }

    /// Remove the pidfile if it is still the one with `nonce` (not a newer deployment's).
    fn remove_if_nonce(logs: &Path, name: &str, nonce: &str) {
        if Self::read(logs, name).is_some_and(|now| now.nonce == nonce) {
            let _ = std::fs::remove_file(Self::path(logs, name));
        }
    }
}

/// A process's start time, field 22 of `/proc/<pid>/stat` (the fields after the command name,
/// which may hold spaces and parentheses, start at field 3).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// A process's arguments, from `/proc/<pid>/cmdline`.
fn command_line(pid: u32) -> Option<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        bytes
            .split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

/// Whether a command line is `... deploy ... NAME ...`, as the serving process's is.
fn is_deploy_command(command: &[String], name: &str) -> bool {
    command.iter().any(|arg| arg == "deploy") && command.iter().any(|arg| arg == name)
}

/// A command line for a message: its arguments joined, control characters escaped.
fn shown_command(command: &[String]) -> String {
    command
        .iter()
        .map(|arg| arg.escape_debug().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) is not alive.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}
