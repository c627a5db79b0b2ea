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
use terrarium_lock::LockKind;
use terrarium_serve::deployment::{self, Change, DeploymentError, Folder, Recorded, Recorder};
use terrarium_serve::{http::Routes, PoolConfig, ServeConfig, Stopped, WorkerCommand};
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
        "--env",
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
    let folder = folder(context)?;
    // Here, the pidfile says whether it runs (whatever the record says); elsewhere, the record.
    let existing = store.get_deployment(&args.name).ok();
    if let Some(pid) = folder.running(&args.name, existing.as_ref().map(recorded).as_ref()) {
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
    let log_path = folder.log_path(&args.name)?;
    if args.detach {
        return detach(context, &args, &record, store.as_ref(), &log_path);
    }

    let (lock, lock_hash) = terrarium_compute::environment::ensure_lock(
        store.as_ref(),
        &record,
        &args.lock.options()?,
        &crate::printer::Spinner::lazy(),
    )?;
    if lock.kind == LockKind::UserManaged {
        environments::check_user_managed(&lock, &record);
    }
    let env = terrarium_compute::environment::materialize(&lock, &crate::printer::Spinner::lazy())?;
    let mut vars = terrarium_compute::environment::process_env(
        &record,
        &lock,
        env.as_ref().map(|e| e.prefix.as_path()),
    )?;
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
            let shim = terrarium_serve::shim::install(
                &terrarium_compute::environment::cache_dir()?.join("serve"),
            )
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
    let model_hash = deployment::hash_dir(&model)?;
    let starting = DeploymentRecord {
        name: args.name.clone(),
        environment: record.name.clone(),
        version: record.version.clone(),
        lock_hash: Some(lock_hash),
        model_path: model.display().to_string(),
        model_hash,
        entry: entry.as_ref().map(|e| e.display().to_string()),
        workers: args.workers,
        url: None,
        host: deployment::hostname(),
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
    let _pidfile = folder.claim(&args.name)?;
    store.put_deployment(&starting)?;

    // `_flush` writes the log's last lines when this function returns.
    let to_stderr: terrarium_serve::Log = Arc::new(|line: &str| {
        let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
    });
    let (log, _flush) = folder.open_log(&args.name, (!args.detached_child).then_some(to_stderr))?;
    let recorder = StoreRecorder {
        store: Arc::clone(&store),
        deployment: starting,
    };
    // Every error goes through the CLI's printer; a failed service is reported once its
    // state is recorded.
    let outcome = deployment::serve(config, log, recorder);
    drop(env);
    match outcome {
        Ok(Stopped::Signal) => Ok(ExitCode::SUCCESS),
        Ok(Stopped::Failed(reason)) => Err(anyhow::anyhow!(
            "deployment {} failed: {reason}; its log is in {} (`terrarium deployments logs {}`)",
            args.name,
            log_path.display(),
            args.name
        )),
        Err(DeploymentError::Serve(err)) => Err(user_error(
            format!("deployment {} cannot serve: {err}", args.name),
            Some("choose another --port if the address is in use"),
        )),
        Err(err) => Err(err.into()),
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
    match terrarium_serve::shim::is_installed(python) {
        Ok(true) => Ok(()),
        Ok(false) => Err(user_error(
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

/// The deployments folder of this workspace on this machine.
pub fn folder(context: &Context) -> Result<Folder> {
    Ok(Folder::new(logs_dir(context)?))
}

/// What a record says of its deployment's process, for the liveness checks.
pub fn recorded(d: &DeploymentRecord) -> Recorded<'_> {
    Recorded {
        name: &d.name,
        host: &d.host,
        pid: d.pid,
        live: d.state.is_live(),
    }
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

/// Keeps the workspace's record of a deployment as its service goes.
struct StoreRecorder {
    store: Arc<dyn Store>,
    deployment: DeploymentRecord,
}

impl Recorder for StoreRecorder {
    fn record(&mut self, change: &Change) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let deployment = &mut self.deployment;
        match change {
            Change::Listening(url) => deployment.url = Some(url.clone()),
            Change::Ready => {
                deployment.state = DeploymentState::Ready;
                let workers = deployment.workers;
                printer::status(&format!(
                    "deployment {} serving {}:{} at {} ({workers} worker{})",
                    deployment.name,
                    deployment.environment,
                    deployment.version,
                    deployment.url.as_deref().unwrap_or("?"),
                    if workers == 1 { "" } else { "s" }
                ));
            }
            Change::Failed(reason) => {
                deployment.state = DeploymentState::Failed;
                deployment.reason = Some(reason.clone());
                deployment.stopped_at = Some(terrarium_store::now());
            }
            Change::Stopped => {
                deployment.state = DeploymentState::Stopped;
                deployment.stopped_at = Some(terrarium_store::now());
            }
        }
        self.store.put_deployment(deployment)?;
        Ok(())
    }
}
