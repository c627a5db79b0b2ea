//! Ray: a job submitted to the cluster's Jobs REST API (the dashboard's address), its state
//! and logs read from there, stopped there.
//!
//! The job's entrypoint is the environment's own program in the prefix Terrarium built on the
//! shared filesystem, not a Ray `runtime_env` of pip or conda packages: the entrypoint first
//! checks, on the node that runs it, that the prefix is the one the lock names (as Slurm's tasks
//! do). The job's variables travel in the request's `runtime_env.env_vars`, never in a file we
//! write; note that Ray keeps them with the job and shows them to whoever can read its API.
//!
//! Ray keeps a job's output itself; [`Engine::logs`] copies it (less the lines Ray adds) into the
//! run's log directory, as `task-0.log`, each time it is asked, so that Terrarium reads a Ray
//! job's output as it reads a Slurm task's.
//!
//! When the environment holds `ray`, the job's workers (its tasks and actors, on any node) run
//! in it too: the job's `runtime_env.py_executable` starts them through the same check (and,
//! with delivery=pack, the same build on a node that lacks it) as the entrypoint.
//!
//! A Ray job is one driver process: it has no nodes to ask for (`--nodes` above 1 is refused;
//! the script spreads work over the cluster with Ray's own API) and no time limit (`--time` is
//! refused rather than ignored).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

use crate::{
    shell_quote, ComputeError, Engine, JobSpec, JobState, JobStatus, OptionSpec, Target, TaskLog,
};

/// How long connecting to the Jobs API may take: an unreachable address fails this fast.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take in all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The job's output, as copied from Ray into the run's log directory.
pub const TASK_LOG: &str = "task-0.log";
/// The submitted document, with the variables' values left out, in the run's log directory.
pub const JOB_RECORD: &str = "job.json";

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "address",
        help: "the address of the cluster's dashboard, where its Jobs API answers (http://HOST:8265)",
        required: true,
        check: check_address,
    },
    OptionSpec {
        key: "cache",
        help: "where environments are built (delivery=shared) or packed (delivery=pack), on a filesystem every node sees (default: this machine's Terrarium cache)",
        required: false,
        check: crate::check_absolute,
    },
    OptionSpec {
        key: "logs",
        help: "where Terrarium keeps its copy of each job's output, one directory per run (default: the workspace's runs directory)",
        required: false,
        check: crate::check_absolute,
    },
    OptionSpec {
        key: "token_file",
        help: "a file holding the token of a cluster with token authentication (RAY_AUTH_MODE=token), sent as `Authorization: Bearer`",
        required: false,
        check: crate::check_absolute,
    },
    crate::delivery::DELIVERY,
    crate::delivery::NODE_CACHE,
    crate::delivery::PACK_REGISTRY,
    crate::delivery::PACK_SERVER,
    crate::delivery::PACK_LINK_LIFETIME,
    crate::delivery::TERRARIUM,
    crate::delivery::LOST_AFTER,
];

fn check_address(value: &str) -> Result<(), String> {
    let url = Url::parse(value).map_err(|err| {
        format!(
            "`{}` is not a URL like http://127.0.0.1:8265: {err}",
            value.escape_debug()
        )
    })?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(format!(
            "`{}` must be an http:// or https:// address like http://127.0.0.1:8265",
            value.escape_debug()
        ));
    }
    // Target options are shown to every reader of the workspace: credentials belong in
    // `token_file`, never in the address.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not hold a user name or password (readers of the workspace see the address): put a token in a file and name it with `token_file`".into(),
        );
    }
    Ok(())
}

pub struct Ray {
    target: Target,
    /// The `address` option without its trailing `/`.
    address: String,
    http: Client,
}

/// An HTTP answer, read whole.
struct Answer {
    status: StatusCode,
    body: String,
}

impl Ray {
    pub fn new(target: Target) -> Result<Self, ComputeError> {
        let address = target
            .option("address")
            .ok_or_else(|| ComputeError::Option {
                target: target.name.clone(),
                option: "address".into(),
                reason: "ray targets need it".into(),
            })?
            .trim_end_matches('/')
            .to_string();
        let http = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|err| ComputeError::Engine {
                target: target.name.clone(),
                message: format!("cannot make an HTTP client: {err}"),
            })?;
        Ok(Self {
            target,
            address,
            http,
        })
    }

    fn token(&self) -> Result<Option<String>, ComputeError> {
        let Some(path) = self.target.option("token_file") else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(path).map_err(|err| ComputeError::Option {
            target: self.target.name.clone(),
            option: "token_file".into(),
            reason: format!("cannot read {path}: {err}"),
        })?;
        Ok(Some(token.trim().to_string()))
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ComputeError> {
        let url = format!("{}{path}", self.address);
        let mut request = self.http.request(method, &url);
        if let Some(token) = self.token()? {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let unreachable = |source: reqwest::Error| ComputeError::Unreachable {
            target: self.target.name.clone(),
            option: "address",
            url: url.clone(),
            why: why(&source),
            source: Box::new(source),
        };
        let response = request.send().map_err(unreachable)?;
        let status = response.status();
        let body = response.text().map_err(unreachable)?;
        Ok(Answer { status, body })
    }

    /// The answer's JSON, when Ray said yes.
    fn json(&self, request: &str, answer: &Answer) -> Result<Value, ComputeError> {
        if !answer.status.is_success() {
            return Err(self.refused(request, answer));
        }
        serde_json::from_str(&answer.body).map_err(|err| ComputeError::Answer {
            target: self.target.name.clone(),
            request: request.into(),
            reason: err.to_string(),
        })
    }

    fn refused(&self, request: &str, answer: &Answer) -> ComputeError {
        let mut body: String = answer.body.trim().chars().take(500).collect();
        if matches!(
            answer.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            body.push_str(" (the cluster asks for a token: option `token_file`)");
        }
        ComputeError::Engine {
            target: self.target.name.clone(),
            message: format!("Ray answered {} to {request}: {body}", answer.status),
        }
    }

    /// The Ray version the cluster runs.
    pub fn cluster_version(&self) -> Result<String, ComputeError> {
        let request = "GET /api/version";
        let answer = self.send(Method::GET, "/api/version", None)?;
        let value = self.json(request, &answer)?;
        value["ray_version"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ComputeError::Answer {
                target: self.target.name.clone(),
                request: request.into(),
                reason: "no ray_version".into(),
            })
    }

    /// What is POSTed to `/api/jobs/`; with `values` unset, each variable's value is replaced
    /// by `<hidden>` (or `<secret>`), for what is shown and recorded.
    fn document(&self, job: &JobSpec, values: bool) -> Result<Value, ComputeError> {
        if job.command.is_empty() {
            return Err(ComputeError::Resources {
                what: "command",
                reason: "nothing to run".into(),
            });
        }
        let r = &job.resources;
        if r.nodes > 1 {
            return Err(ComputeError::Resources {
                what: "--nodes",
                reason: format!(
                    "a Ray job is one driver process on one node, so ray target `{}` takes no --nodes above 1; the script spreads its work over the cluster with Ray's own API",
                    self.target.name
                ),
            });
        }
        if r.time_seconds.is_some() {
            return Err(ComputeError::Resources {
                what: "--time",
                reason: format!(
                    "Ray has no time limit for jobs, so ray target `{}` takes no --time",
                    self.target.name
                ),
            });
        }
        let env_vars: serde_json::Map<String, Value> = job
            .env
            .iter()
            .map(|(name, value)| {
                let value = match () {
                    _ if values => value.as_str(),
                    _ if job.secret_names.contains(name) => "<secret>",
                    _ => "<hidden>",
                };
                (name.clone(), Value::from(value))
            })
            .collect();
        let mut runtime_env = json!({"env_vars": env_vars});
        if let Some(python) = worker_python(job)? {
            runtime_env["py_executable"] = python.into();
        }
        let mut document = json!({
            "entrypoint": entrypoint(job),
            "submission_id": submission_id(&job.run_id),
            "runtime_env": runtime_env,
            "metadata": {
                "terrarium_run": job.run_id,
                "terrarium_environment": job.environment,
            },
        });
        if let Some(cpus) = r.cpus {
            document["entrypoint_num_cpus"] = cpus.into();
        }
        if let Some(gpus) = r.gpus {
            document["entrypoint_num_gpus"] = gpus.into();
        }
        if let Some(mib) = r.memory_mib {
            document["entrypoint_memory"] = mib.saturating_mul(1024 * 1024).into();
        }
        Ok(document)
    }

    /// Refuse an environment whose lock holds a `ray` other than the cluster's: a script that
    /// imports it could not join the cluster. Without `ray` in the lock there is nothing to
    /// compare.
    fn check_ray_version(&self, job: &JobSpec) -> Result<(), ComputeError> {
        let Some(prefix) = &job.prefix else {
            return Ok(());
        };
        let locked = match &prefix.source {
            Some(source) => ray_versions(&source.lock),
            None => locked_ray_versions(&prefix.path)?,
        };
        if locked.is_empty() {
            return Ok(());
        }
        let cluster = self.cluster_version()?;
        if locked.iter().all(|v| *v == cluster) {
            return Ok(());
        }
        Err(ComputeError::RayVersion {
            target: self.target.name.clone(),
            environment: job.environment.clone(),
            cluster,
            locked: locked.into_iter().collect::<Vec<_>>().join(", "),
        })
    }

    /// The job's output as Ray has it now; `None` when Ray does not know the job.
    fn job_logs(&self, job_id: &str) -> Result<Option<String>, ComputeError> {
        self.check_job_id(job_id)?;
        let request = format!("GET /api/jobs/{job_id}/logs");
        let answer = self.send(Method::GET, &format!("/api/jobs/{job_id}/logs"), None)?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let value = self.json(&request, &answer)?;
        Ok(Some(value["logs"].as_str().unwrap_or_default().to_string()))
    }

    fn check_job_id(&self, job_id: &str) -> Result<(), ComputeError> {
        let plain = !job_id.is_empty()
            && job_id.len() <= 200
            && job_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if plain {
            Ok(())
        } else {
            Err(ComputeError::Answer {
                target: self.target.name.clone(),
                request: "a Ray submission id".into(),
                reason: format!("`{}` is not one", job_id.escape_debug()),
            })
        }
    }

    /// The submission id recorded in a run's log directory at submit, if there is one.
    fn recorded_job_id(&self, log_dir: &Path) -> Result<Option<String>, ComputeError> {
        let path = log_dir.join(JOB_RECORD);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(ComputeError::io(&path, "read", err)),
        };
        let value: Value = serde_json::from_str(&text).map_err(|err| ComputeError::Answer {
            target: self.target.name.clone(),
            request: path.display().to_string(),
            reason: err.to_string(),
        })?;
        let id = value["submission_id"].as_str().unwrap_or_default();
        self.check_job_id(id)?;
        Ok(Some(id.to_string()))
    }
}

impl Engine for Ray {
    fn check(&self) -> Result<String, ComputeError> {
        let version = self.cluster_version()?;
        Ok(format!("ray {version}, Jobs API at {}", self.address))
    }

    fn render(&self, job: &JobSpec) -> Result<String, ComputeError> {
        let document = self.document(job, false)?;
        Ok(format!(
            "# POST {}/api/jobs/\n# the variables' values go with the request only\n{}\n",
            self.address,
            serde_json::to_string_pretty(&document).unwrap_or_default()
        ))
    }

    fn submit(&self, job: &JobSpec) -> Result<String, ComputeError> {
        let document = self.document(job, true)?;
        self.check_ray_version(job)?;
        std::fs::create_dir_all(&job.log_dir)
            .map_err(|e| ComputeError::io(&job.log_dir, "create", e))?;
        let record = job.log_dir.join(JOB_RECORD);
        let shown = self.document(job, false)?;
        std::fs::write(
            &record,
            serde_json::to_string_pretty(&shown).unwrap_or_default() + "\n",
        )
        .map_err(|e| ComputeError::io(&record, "write", e))?;
        let request = "POST /api/jobs/";
        let answer = self.send(Method::POST, "/api/jobs/", Some(&document))?;
        let value = self.json(request, &answer)?;
        let id = value["submission_id"].as_str().unwrap_or_default();
        if id != document["submission_id"] {
            return Err(ComputeError::Answer {
                target: self.target.name.clone(),
                request: request.into(),
                reason: format!(
                    "expected the submission id {}, got `{}`",
                    document["submission_id"],
                    answer.body.trim().escape_debug()
                ),
            });
        }
        Ok(id.to_string())
    }

    fn status(&self, job_id: &str) -> Result<JobStatus, ComputeError> {
        self.check_job_id(job_id)?;
        let request = format!("GET /api/jobs/{job_id}");
        let answer = self.send(Method::GET, &format!("/api/jobs/{job_id}"), None)?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(JobStatus {
                state: JobState::Lost,
                exit_code: None,
                started_at: None,
                finished_at: None,
                nodes: Vec::new(),
                reason: Some("Ray no longer knows this job".into()),
            });
        }
        let value = self.json(&request, &answer)?;
        parse_job(&value).map_err(|reason| ComputeError::Answer {
            target: self.target.name.clone(),
            request,
            reason,
        })
    }

    fn status_in(&self, job_id: &str, log_dir: &Path) -> Result<JobStatus, ComputeError> {
        let mut status = self.status(job_id)?;
        // A failed driver's exception says why (a `NodeDiedError` naming the node that died):
        // read from the end of its output, copied now.
        if status.state == JobState::Failed {
            let _ = self.logs(log_dir);
            let raised = read_tail(&log_dir.join(TASK_LOG), 64 * 1024)
                .as_deref()
                .and_then(last_exception);
            if let Some(raised) = raised {
                let already = status
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains(&raised));
                if !already {
                    status.reason = Some(match status.reason.take() {
                        Some(base) => format!("{base}: {raised}"),
                        None => raised,
                    });
                }
            }
        }
        Ok(status)
    }

    fn log_interval(&self) -> std::time::Duration {
        // Each call fetches the whole log from the Jobs API.
        std::time::Duration::from_millis(250)
    }

    fn logs(&self, log_dir: &Path) -> Result<Vec<TaskLog>, ComputeError> {
        let copy = log_dir.join(TASK_LOG);
        if let Some(job_id) = self.recorded_job_id(log_dir)? {
            match self.job_logs(&job_id) {
                Ok(Some(text)) => refresh_copy(&copy, &job_output(&text, &job_id))?,
                // Ray has forgotten the job, or cannot be asked now: the copy is what there is.
                Ok(None) => {}
                Err(_) if copy.is_file() => {}
                Err(err) => return Err(err),
            }
        }
        Ok(if copy.is_file() {
            vec![TaskLog {
                task: "task 0".into(),
                path: copy,
            }]
        } else {
            Vec::new()
        })
    }

    fn cancel(&self, job_id: &str) -> Result<(), ComputeError> {
        self.check_job_id(job_id)?;
        let request = format!("POST /api/jobs/{job_id}/stop");
        let answer = self.send(Method::POST, &format!("/api/jobs/{job_id}/stop"), None)?;
        // `{"stopped": false}` is a job that had already ended.
        self.json(&request, &answer).map(|_| ())
    }
}

/// A run's Ray submission id.
pub fn submission_id(run_id: &str) -> String {
    format!("terrarium-{run_id}")
}

/// The shell command Ray runs (with `/bin/sh -c`): in the run's directory, the command in the
/// prefix once the prefix is checked to be the lock's (built first from the pack, with
/// delivery=pack), holding the prefix's in-use lock.
fn entrypoint(job: &JobSpec) -> String {
    let quote = |args: &[String]| {
        args.iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let cwd = shell_quote(&job.cwd.display().to_string());
    match &job.prefix {
        Some(prefix) => {
            let mut argv = vec![
                "/bin/bash".to_string(),
                "-c".into(),
                crate::delivery::task_script(
                    &job.environment,
                    &prefix.in_use,
                    prefix.source.as_ref(),
                ),
                "terrarium-task".into(),
            ];
            argv.extend(job.command.iter().cloned());
            format!(
                "export TERRARIUM_PREFIX={} TERRARIUM_LOCK_HASH={}; cd {cwd} && exec {}",
                shell_quote(&prefix.path.display().to_string()),
                shell_quote(&prefix.lock_hash),
                quote(&argv)
            )
        }
        None => format!("cd {cwd} && exec {}", quote(&job.command)),
    }
}

/// The command Ray starts each of the job's worker processes with (`runtime_env.py_executable`,
/// followed by the worker's own arguments) when the environment holds `ray`, so that the job's
/// tasks and actors run in the environment on every node, as its driver does: through the
/// task script (which first builds the environment from the pack on a node that lacks it, with
/// delivery=pack), then the prefix's Python. Ray starts workers from the raylet, not from the
/// driver, so the prefix and lock hash travel in the command. `None` when the lock holds no
/// `ray`: a script without it cannot use Ray's API, and starts no workers.
fn worker_python(job: &JobSpec) -> Result<Option<String>, ComputeError> {
    let Some(prefix) = &job.prefix else {
        return Ok(None);
    };
    let locked = match &prefix.source {
        Some(source) => ray_versions(&source.lock),
        None => locked_ray_versions(&prefix.path)?,
    };
    if locked.is_empty() {
        return Ok(None);
    }
    let argv = [
        "/bin/bash".to_string(),
        "-c".into(),
        crate::delivery::task_script(&job.environment, &prefix.in_use, prefix.source.as_ref()),
        "terrarium-task".into(),
        prefix.path.join("bin").join("python").display().to_string(),
    ];
    Ok(Some(format!(
        "env TERRARIUM_PREFIX={} TERRARIUM_LOCK_HASH={} {}",
        shell_quote(&prefix.path.display().to_string()),
        shell_quote(&prefix.lock_hash),
        argv.iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    )))
}

/// The versions of `ray` the lock a built prefix records holds, on any platform: PyPI's `ray`,
/// conda-forge's `ray-core`. Empty when there is none, or the prefix records no lock.
pub fn locked_ray_versions(prefix: &Path) -> Result<BTreeSet<String>, ComputeError> {
    // Written by terrarium-env next to the marker the entrypoint checks.
    let path = prefix.join(".terrarium/lock.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(err) => return Err(ComputeError::io(&path, "read", err)),
    };
    let lock = terrarium_lock::Lock::from_json(&text)
        .map_err(|source| ComputeError::Lock { path, source })?;
    Ok(ray_versions(&lock))
}

/// The versions of `ray` a lock holds, on any platform: PyPI's `ray`, conda-forge's `ray-core`.
pub fn ray_versions(lock: &terrarium_lock::Lock) -> BTreeSet<String> {
    lock.platforms
        .values()
        .flat_map(|platform| {
            let conda = platform
                .conda
                .iter()
                .filter(|p| matches!(p.name.as_str(), "ray-core" | "ray"))
                .map(|p| p.version.clone());
            let pypi = platform
                .pypi
                .iter()
                .filter(|p| p.name.eq_ignore_ascii_case("ray"))
                .map(|p| p.version.clone());
            conda.chain(pypi).collect::<Vec<_>>()
        })
        .collect()
}

/// The job's output in Ray's log of it: without the two lines Ray's job supervisor adds to
/// every job (`Runtime env is setting up.`, and `Running entrypoint for job ID: ` with the whole
/// entrypoint), which are Ray's and not the command's. Only whole lines are dropped, so that the
/// copy only ever grows at its end as Ray's log does.
pub fn job_output(log: &str, job_id: &str) -> String {
    let entrypoint = format!("Running entrypoint for job {job_id}: ");
    log.split_inclusive('\n')
        .filter(|line| {
            let Some(line) = line.strip_suffix('\n') else {
                return true;
            };
            let setting_up = line.contains("\tINFO job_manager.py:")
                && line.ends_with(" -- Runtime env is setting up.");
            !(setting_up || line.starts_with(&entrypoint))
        })
        .collect()
}

/// Replace the copy of the job's output with Ray's, when Ray's says more: written aside and
/// renamed, so that a reader never sees it half written.
pub(crate) fn refresh_copy(copy: &Path, text: &str) -> Result<(), ComputeError> {
    if text.is_empty() {
        return Ok(());
    }
    if std::fs::read(copy).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    let aside = copy.with_extension("log.part");
    std::fs::write(&aside, text).map_err(|e| ComputeError::io(&aside, "write", e))?;
    std::fs::rename(&aside, copy).map_err(|e| ComputeError::io(copy, "write", e))
}

/// A few words on why a request got no answer; the error itself is the cause.
fn why(err: &reqwest::Error) -> String {
    if let Some(io) = crate::io_why(err) {
        return io.into();
    }
    if err.is_timeout() {
        format!(
            "no answer within {} s",
            if err.is_connect() {
                CONNECT_TIMEOUT
            } else {
                REQUEST_TIMEOUT
            }
            .as_secs()
        )
    } else if err.is_connect() {
        "cannot connect".into()
    } else {
        "the request failed".into()
    }
}

/// `GET /api/jobs/{id}`: status, driver_exit_code, error_type, message, start/end_time (ms).
/// The last `max` bytes of a file, as text.
fn read_tail(path: &Path, max: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max))).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The last line of `text` that is a Python exception (`module.NameError: what`), cut to a
/// few hundred characters.
fn last_exception(text: &str) -> Option<String> {
    text.lines().rev().map(str::trim).find_map(|line| {
        let (name, _) = line.split_once(':').unwrap_or((line, ""));
        let is_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            && (name.ends_with("Error") || name.ends_with("Exception"));
        is_name.then(|| line.chars().take(300).collect())
    })
}

pub fn parse_job(value: &Value) -> Result<JobStatus, String> {
    let raw_state = value["status"].as_str().ok_or("no status")?;
    let state = match raw_state {
        "PENDING" => JobState::Queued,
        "RUNNING" => JobState::Running,
        "SUCCEEDED" => JobState::Completed,
        "FAILED" => JobState::Failed,
        "STOPPED" => JobState::Cancelled,
        other => return Err(format!("unknown status `{}`", other.escape_debug())),
    };
    let exit_code = if state.is_final() {
        match value["driver_exit_code"].as_i64() {
            // A driver a signal ended: Python's -N, as 128 + N.
            Some(code) if code < 0 => Some(128 - code as i32),
            Some(code) => i32::try_from(code).ok(),
            None if state == JobState::Completed => Some(0),
            None => None,
        }
    } else {
        None
    };
    let time = |key: &str| value[key].as_i64().filter(|&ms| ms > 0).and_then(utc);
    let node = value["driver_info"]["node_ip_address"]
        .as_str()
        .or(value["driver_node_id"].as_str())
        .filter(|n| !n.is_empty());
    let reason = if state == JobState::Failed {
        let base = value["error_type"]
            .as_str()
            .or(value["message"].as_str())
            .map(|r| r.lines().next().unwrap_or_default().to_string());
        // Ray's message ends with the driver's last output: its exception, when it raised one,
        // says why (a `NodeDiedError` naming the node that died, say).
        let raised = value["message"].as_str().and_then(last_exception);
        match (base, raised) {
            (Some(base), Some(raised)) if base != raised => Some(format!("{base}: {raised}")),
            (base, raised) => base.or(raised),
        }
    } else {
        None
    };
    Ok(JobStatus {
        state,
        exit_code,
        started_at: if state == JobState::Queued {
            None
        } else {
            time("start_time")
        },
        finished_at: if state.is_final() {
            time("end_time")
        } else {
            None
        },
        nodes: node.map(|n| vec![n.to_string()]).unwrap_or_default(),
        reason,
    })
}

/// Milliseconds since the epoch as RFC 3339, UTC, as the workspace writes times.
fn utc(ms: i64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    at.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Kind, Prefix, Resources};

    fn target(options: &[(&str, &str)]) -> Target {
        Target {
            name: "cluster".into(),
            kind: Kind::Ray,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn job() -> JobSpec {
        JobSpec {
            run_id: "20261202T000000-abcdef".into(),
            environment: "sklearn:3".into(),
            command: vec!["python".into(), "-c".into(), "print('it''s')".into()],
            env: vec![
                ("TOKEN".into(), "s3cr3t".into()),
                ("OMP".into(), "2".into()),
            ],
            secret_names: vec!["TOKEN".into()],
            cwd: "/work/my project".into(),
            prefix: Some(Prefix {
                path: "/shared/envs/abc".into(),
                lock_hash: "sha256:00ff".into(),
                in_use: "/shared/envs/abc.lock".into(),
                source: None,
            }),
            resources: Resources::parse(1, Some(2), Some(1), Some("1G"), None).unwrap(),
            log_dir: "/shared/runs/20261202T000000-abcdef".into(),
            spark: Default::default(),
            image: None,
        }
    }

    fn ray() -> Ray {
        Ray::new(target(&[("address", "http://127.0.0.1:8265/")])).unwrap()
    }

    #[test]
    fn the_document_asks_for_what_the_run_asked_and_shows_no_values() {
        let document = ray().document(&job(), true).unwrap();
        assert_eq!(
            document["submission_id"],
            "terrarium-20261202T000000-abcdef"
        );
        assert_eq!(document["runtime_env"]["env_vars"]["TOKEN"], "s3cr3t");
        assert_eq!(document["metadata"]["terrarium_environment"], "sklearn:3");
        assert_eq!(document["entrypoint_num_cpus"], 2);
        assert_eq!(document["entrypoint_num_gpus"], 1);
        assert_eq!(document["entrypoint_memory"], 1024u64 * 1024 * 1024);
        let entrypoint = document["entrypoint"].as_str().unwrap();
        assert!(
            entrypoint.starts_with(
                "export TERRARIUM_PREFIX=/shared/envs/abc TERRARIUM_LOCK_HASH=sha256:00ff; cd '/work/my project' && exec /bin/bash -c '"
            ),
            "{entrypoint}"
        );
        assert!(
            entrypoint.contains("exec flock --shared /shared/envs/abc.lock /bin/bash -c "),
            "{entrypoint}"
        );
        assert!(
            entrypoint.ends_with(r"' terrarium-task python -c 'print('\''it'\'''\''s'\'')'"),
            "{entrypoint}"
        );

        let shown = ray().render(&job()).unwrap();
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("\"TOKEN\": \"<secret>\""), "{shown}");
        assert!(shown.contains("\"OMP\": \"<hidden>\""), "{shown}");
        assert!(
            shown.starts_with("# POST http://127.0.0.1:8265/api/jobs/\n"),
            "{shown}"
        );
    }

    #[test]
    fn addresses_hold_no_credentials() {
        assert!(check_address("http://127.0.0.1:8265").is_ok());
        assert!(check_address("https://ray.example:443/").is_ok());
        for bad in [
            "http://user:secret@127.0.0.1:8265",
            "http://user@127.0.0.1:8265",
            "ftp://127.0.0.1",
            "127.0.0.1:8265",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_output_is_the_commands() {
        let log = "2026-12-02 07:29:32,647\tINFO job_manager.py:581 -- Runtime env is setting up.\nhi\nRunning entrypoint for job terrarium-1: exec x\nRunning entrypoint for job other: y\nerr\nRunning entrypoint for job terrarium-1: ";
        assert_eq!(
            job_output(log, "terrarium-1"),
            "hi\nRunning entrypoint for job other: y\nerr\nRunning entrypoint for job terrarium-1: "
        );
    }

    #[test]
    fn the_entrypoint_runs_as_quoted() {
        // Through a real shell: the check passes on a prefix that is the lock's, and the
        // command gets its arguments as they were.
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("prefix");
        std::fs::create_dir_all(prefix.join(".terrarium")).unwrap();
        std::fs::write(
            prefix.join(".terrarium/env.json"),
            "{\"lock_hash\": \"sha256:00ff\"}",
        )
        .unwrap();
        let mut job = job();
        job.cwd = dir.path().to_path_buf();
        job.prefix = Some(Prefix {
            path: prefix,
            lock_hash: "sha256:00ff".into(),
            in_use: dir.path().join("prefix.lock"),
            source: None,
        });
        job.command = vec![
            "/bin/sh".into(),
            "-c".into(),
            "printf '%s|' \"$@\" \"$PWD\"".into(),
            "x".into(),
            "a b".into(),
            "it's $HOME".into(),
        ];
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(entrypoint(&job))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("a b|it's $HOME|{}|", dir.path().display())
        );
        job.prefix.as_mut().unwrap().lock_hash = "sha256:11".into();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(entrypoint(&job))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(crate::NO_PREFIX_EXIT));
    }

    #[test]
    fn nodes_and_time_limits_are_refused() {
        let mut many = job();
        many.resources.nodes = 2;
        let err = ray().render(&many).unwrap_err().to_string();
        assert!(
            err.contains("--nodes") && err.contains("`cluster`"),
            "{err}"
        );
        let mut timed = job();
        timed.resources.time_seconds = Some(60);
        let err = ray().render(&timed).unwrap_err().to_string();
        assert!(
            err.contains("--time") && err.contains("no time limit"),
            "{err}"
        );
    }

    #[test]
    fn states_from_the_jobs_api() {
        let failed = parse_job(&json!({
            "status": "FAILED", "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR", "driver_exit_code": 3,
            "start_time": 1796196572634i64, "end_time": 1796196573756i64, "driver_node_id": "dc0d",
            "message": "Job entrypoint command failed with exit code 3",
        }))
        .unwrap();
        assert_eq!(failed.state, JobState::Failed);
        assert_eq!(failed.exit_code, Some(3));
        assert_eq!(
            failed.reason.as_deref(),
            Some("JOB_ENTRYPOINT_COMMAND_ERROR")
        );
        assert_eq!(
            failed.started_at.as_deref(),
            Some("2026-12-02T07:29:32.634Z")
        );
        assert_eq!(
            failed.finished_at.as_deref(),
            Some("2026-12-02T07:29:33.756Z")
        );
        assert_eq!(failed.nodes, vec!["dc0d".to_string()]);
        // A driver that raised: its exception is the reason too.
        let died = parse_job(&json!({
            "status": "FAILED", "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR", "driver_exit_code": 1,
            "message": "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\nTraceback (most recent call last):\n  File \"x.py\", line 3\nray.exceptions.NodeDiedError: Task failed due to the node (ID: ab, IP: 10.231.0.11) dying.\n",
        }))
        .unwrap();
        assert_eq!(
            died.reason.as_deref(),
            Some("JOB_ENTRYPOINT_COMMAND_ERROR: ray.exceptions.NodeDiedError: Task failed due to the node (ID: ab, IP: 10.231.0.11) dying.")
        );
        let pending = parse_job(&json!({"status": "PENDING", "start_time": 1})).unwrap();
        assert_eq!(
            (pending.state, pending.exit_code, pending.started_at),
            (JobState::Queued, None, None)
        );
        let done = parse_job(&json!({"status": "SUCCEEDED", "driver_exit_code": 0})).unwrap();
        assert_eq!((done.state, done.exit_code), (JobState::Completed, Some(0)));
        let stopped = parse_job(&json!({"status": "STOPPED", "driver_exit_code": -15})).unwrap();
        assert_eq!(
            (stopped.state, stopped.exit_code),
            (JobState::Cancelled, Some(143))
        );
        assert_eq!(
            parse_job(&json!({"status": "RUNNING"})).unwrap().state,
            JobState::Running
        );
        assert!(parse_job(&json!({"status": "WHAT"})).is_err());
        assert!(parse_job(&json!({})).is_err());
    }

    #[test]
    fn options_are_checked() {
        let err = target(&[]).validate().unwrap_err().to_string();
        assert!(err.contains("option `address`"), "{err}");
        assert!(target(&[("address", "127.0.0.1:8265")]).validate().is_err());
        assert!(target(&[("address", "ftp://host")]).validate().is_err());
        assert!(target(&[("address", "http://h:8265"), ("partition", "x")])
            .validate()
            .is_err());
        assert!(
            target(&[("address", "http://h:8265"), ("cache", "/shared/cache")])
                .validate()
                .is_ok()
        );
        assert!(ray().status("../x").is_err());
        assert!(ray().cancel("a b").is_err());
    }

    #[test]
    fn the_token_goes_in_the_authorization_header() {
        // A one-request server that answers /api/version and keeps what it was sent.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"ray_version": "9.9.9"}"#;
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken\n").unwrap();
        let ray = Ray::new(target(&[
            ("address", &address),
            ("token_file", token.to_str().unwrap()),
        ]))
        .unwrap();
        assert!(ray.check().unwrap().starts_with("ray 9.9.9"));
        let request = server.join().unwrap().to_ascii_lowercase();
        assert!(request.starts_with("get /api/version "), "{request}");
        assert!(
            request.contains("authorization: bearer t0ken\r\n"),
            "{request}"
        );
    }
}
