//! Kubernetes: a run is a `batch/v1` Job, submitted through the API server with kube-rs, its
//! state read from the Job's conditions, its logs from its pods, cancelled by deleting it.
//!
//! The environment reaches the nodes as its image: built from the lock and pushed to the
//! target's registry before the job is submitted (the CLI does that), and named in the Job by
//! digest, so that every pod runs exactly the locked files. The command runs in the image's
//! working directory; the submitting machine's files are not sent.
//!
//! A variable whose value names a secret (`${secret:NAME}`) becomes a reference to key `NAME` of
//! the target's Kubernetes Secret (option `secret`): its value never leaves the cluster, and is
//! never read here. A value that mixes text and secrets is built on the node with Kubernetes' own
//! `$(VAR)` expansion; every other `$` is escaped (`$$`) so that a value arrives as it was written.
//!
//! `--nodes N` above 1 makes an Indexed Job of N pods, run in parallel; each finds its index in
//! `JOB_COMPLETION_INDEX`. `--time` becomes the Job's `activeDeadlineSeconds`, `--gpus`
//! `nvidia.com/gpu`. The Job is not retried unless the target's `backoff_limit` says so.
//!
//! The Job is created suspended and resumed once its run is recorded ([`Engine::recorded`]).
//! Its name is the run's (`terrarium-<run id>`, lowercased), and the cluster and namespace it
//! was created in are kept beside the run's logs ([`CLUSTER_RECORD`]): every later call about
//! the run goes there, and a record naming another Job is refused.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Value};

use crate::{ComputeError, Engine, JobSpec, JobState, JobStatus, OptionSpec, Target, TaskLog};

/// How long connecting to the API server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one answer may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a follower's watch waits for the Job to change before it asks again anyway (a
/// pod's troubles, such as an image that cannot be pulled, are not changes of the Job).
pub const WATCH_SECONDS: u32 = 2;
/// The most of a pod's log fetched at once.
pub const LOG_LIMIT: i64 = 8 * 1024 * 1024;
/// The submitted manifest, in the run's log directory.
pub const JOB_RECORD: &str = "job.json";
/// Written in the run's log directory before its Job is deleted by `runs cancel`: a Job that
/// is gone is then cancelled, not lost.
pub const CANCELLED_MARKER: &str = "cancelled";
/// The cluster and namespace a run's Job was created in, in the run's log directory: every
/// later call about the run goes there, whatever the kubeconfig's current context says then.
pub const CLUSTER_RECORD: &str = "cluster.json";
/// The variables that carry secrets into values that mix them with text.
const SECRET_VARIABLE_PREFIX: &str = "TERRARIUM_SECRET_";
/// The label every Job and pod of Terrarium's carries, with the run's id.
pub const RUN_LABEL: &str = "terrarium.dev/run";
/// Where a pod's index is, on an Indexed Job's pods.
const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// The Secret `${secret:NAME}` variables refer to, unless the target names another.
pub const DEFAULT_SECRET: &str = "terrarium-secrets";

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "registry",
        help: "where the environments' images are pushed and pulled from by the nodes: REGISTRY/REPOSITORY-PREFIX (e.g. registry.example.com/ml); each environment is pushed as PREFIX/NAME:VERSION and run by digest",
        required: true,
        check: crate::check_repository,
    },
    OptionSpec {
        key: "kubeconfig",
        help: "the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)",
        required: false,
        check: crate::check_absolute,
    },
    OptionSpec {
        key: "context",
        help: "the kubeconfig context (default: its current context)",
        required: false,
        check: check_context,
    },
    OptionSpec {
        key: "namespace",
        help: "the namespace the Jobs are created in (default: the context's, else `default`)",
        required: false,
        check: check_label_name,
    },
    OptionSpec {
        key: "image_pull_secret",
        help: "the Secret the nodes pull the images with (imagePullSecrets)",
        required: false,
        check: check_object_name,
    },
    OptionSpec {
        key: "service_account",
        help: "the service account the pods run as",
        required: false,
        check: check_object_name,
    },
    OptionSpec {
        key: "node_selector",
        help: "labels the nodes must have: KEY=VALUE;KEY=VALUE",
        required: false,
        check: check_node_selector,
    },
    OptionSpec {
        key: "tolerations",
        help: "taints the pods tolerate, as kubectl writes taints: KEY=VALUE:EFFECT or KEY:EFFECT (any value), separated by `;`",
        required: false,
        check: check_tolerations,
    },
    OptionSpec {
        key: "secret",
        help: "the Secret whose keys `${secret:NAME}` variables refer to (default: terrarium-secrets)",
        required: false,
        check: check_object_name,
    },
    OptionSpec {
        key: "backoff_limit",
        help: "how many times a failed pod is retried (default: 0, never)",
        required: false,
        check: check_backoff_limit,
    },
    OptionSpec {
        key: "base",
        help: "the base image the images of pip-only environments are built on (REGISTRY/REPOSITORY[:TAG]); conda environments need none",
        required: false,
        check: check_image,
    },
    OptionSpec {
        key: "logs",
        help: "where Terrarium keeps its copy of each job's pod logs, one directory per run (default: the workspace's runs directory)",
        required: false,
        check: crate::check_absolute,
    },
    crate::delivery::LOST_AFTER,
];

fn is_label_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

fn check_label_name(value: &str) -> Result<(), String> {
    if is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a namespace name: at most 63 lowercase letters, digits and `-`, starting and ending with a letter or digit",
            value.escape_debug()
        ))
    }
}

fn check_object_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a Kubernetes object name: lowercase letters, digits, `-` and `.`",
            value.escape_debug()
        ))
    }
}

fn check_context(value: &str) -> Result<(), String> {
    if value.is_empty() || value.contains(['\n', '\0']) {
        Err("must be the name of a context in the kubeconfig".into())
    } else {
        Ok(())
    }
}

fn check_backoff_limit(value: &str) -> Result<(), String> {
    match value.parse::<u32>() {
        Ok(n) if n <= 1000 => Ok(()),
        _ => Err(format!(
            "`{}` is not a number of retries from 0 to 1000",
            value.escape_debug()
        )),
    }
}

fn check_image(value: &str) -> Result<(), String> {
    let plain = !value.is_empty()
        && value.contains('/')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b));
    if plain {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an image like registry.example.com/python:3.12",
            value.escape_debug()
        ))
    }
}

/// A label key (`[prefix/]name`) or value.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    prefix.is_none_or(|p| check_object_name(p).is_ok()) && is_label_value(name) && !name.is_empty()
}

fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && value
            .bytes()
            .next()
            .is_none_or(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .last()
            .is_none_or(|b| b.is_ascii_alphanumeric())
}

/// `KEY=VALUE;KEY=VALUE`, checked.
fn node_selector(value: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, label) = pair.split_once('=').ok_or_else(|| {
            format!(
                "`{}` is not KEY=VALUE (e.g. node_selector=gpu=a100;zone=b)",
                pair.escape_debug()
            )
        })?;
        if !is_label_key(key) || !is_label_value(label) {
            return Err(format!(
                "`{}` is not a node label KEY=VALUE (letters, digits, `-_.`, at most 63 each; a key may have a DNS prefix/)",
                pair.escape_debug()
            ));
        }
        labels.insert(key.to_string(), label.to_string());
    }
    Ok(labels)
}

fn check_node_selector(value: &str) -> Result<(), String> {
    node_selector(value).map(|_| ())
}

/// `KEY=VALUE:EFFECT;KEY:EFFECT`, as tolerations.
fn tolerations(value: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for taint in value.split(';').map(str::trim).filter(|t| !t.is_empty()) {
        let malformed = || {
            format!(
                "`{}` is not a taint KEY=VALUE:EFFECT or KEY:EFFECT, with EFFECT NoSchedule, PreferNoSchedule or NoExecute",
                taint.escape_debug()
            )
        };
        let (pair, effect) = taint.rsplit_once(':').ok_or_else(malformed)?;
        if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
            return Err(malformed());
        }
        let toleration = match pair.split_once('=') {
            Some((key, value)) if is_label_key(key) && is_label_value(value) => {
                json!({"key": key, "operator": "Equal", "value": value, "effect": effect})
            }
            None if is_label_key(pair) => {
                json!({"key": pair, "operator": "Exists", "effect": effect})
            }
            _ => return Err(malformed()),
        };
        out.push(toleration);
    }
    Ok(out)
}

fn check_tolerations(value: &str) -> Result<(), String> {
    tolerations(value).map(|_| ())
}

/// A kubeconfig a target names (a record any contributor may write) is read only when no one
/// but this user (or root) can change it, as ssh treats its config: a kubeconfig names programs
/// that are run for credentials (`exec`), so one that others can write would run their code.
///
/// The file is opened once and the checks are of the opened file, whose bytes are then the
/// ones parsed: swapping the path (or a link on it) between the check and the read cannot
/// slip another file in.
fn read_private(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let cannot = |err: std::io::Error| format!("cannot read {}: {err}", path.display());
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    let me = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|uid| uid.parse::<u32>().ok())
        });
    let owner_ok = meta.uid() == 0 || Some(meta.uid()) == me;
    if owner_ok && meta.mode() & 0o022 == 0 {
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(cannot)?;
        Ok(text)
    } else {
        Err(format!(
            "{} can be changed by other users (it is {}); a kubeconfig can name programs to run for credentials, so Terrarium reads only one that is yours alone: `chmod go-w` it, or point the target at your own copy",
            path.display(),
            if owner_ok { "writable by group or others" } else { "owned by another user" }
        ))
    }
}

/// The runtime every call to a cluster runs on: one per process, kept, since the clients it
/// made run their connections on it.
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: std::sync::OnceLock<Result<tokio::runtime::Runtime, String>> =
        std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|err| format!("cannot start a runtime: {err}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The Job of a run: `terrarium-<run id>`, lowercased, `_` as `-`.
pub fn job_name(run_id: &str) -> String {
    format!(
        "terrarium-{}",
        run_id.to_ascii_lowercase().replace('_', "-")
    )
}

pub struct Kubernetes {
    target: Target,
}

/// What a call needs: a client, the namespace, and the server's address for errors.
struct Connection {
    client: kube::Client,
    namespace: String,
    url: String,
}

impl Kubernetes {
    pub fn new(target: Target) -> Self {
        Self { target }
    }

    fn engine_error(&self, message: String) -> ComputeError {
        ComputeError::Engine {
            target: self.target.name.clone(),
            message,
        }
    }

    /// The kubeconfig: the target's file, else `$KUBECONFIG` (merged, as kubectl does), else
    /// `~/.kube/config`.
    fn kubeconfig(&self) -> Result<Kubeconfig, ComputeError> {
        let option = |reason: String| ComputeError::Option {
            target: self.target.name.clone(),
            option: "kubeconfig".into(),
            reason,
        };
        if let Some(path) = self.target.option("kubeconfig") {
            let text = read_private(Path::new(path)).map_err(&option)?;
            return Kubeconfig::from_yaml(&text).map_err(|err| option(format!("{path}: {err}")));
        }
        match Kubeconfig::from_env() {
            Ok(Some(config)) => return Ok(config),
            Ok(None) => {}
            Err(err) => return Err(option(format!("$KUBECONFIG: {err}"))),
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .ok_or_else(|| option("set it, or $KUBECONFIG: there is no $HOME".into()))?;
        let path = home.join(".kube").join("config");
        Kubeconfig::read_from(&path).map_err(|err| {
            option(format!(
                "{err}; set the option (or $KUBECONFIG) to the cluster's kubeconfig"
            ))
        })
    }

    async fn config(&self) -> Result<kube::Config, ComputeError> {
        let kubeconfig = self.kubeconfig()?;
        let options = KubeConfigOptions {
            context: self.target.option("context").map(str::to_string),
            ..KubeConfigOptions::default()
        };
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|err| ComputeError::Option {
                target: self.target.name.clone(),
                option: if self.target.option("context").is_some() {
                    "context".into()
                } else {
                    "kubeconfig".into()
                },
                reason: err.to_string(),
            })?;
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        config.read_timeout = Some(REQUEST_TIMEOUT);
        Ok(config)
    }

    fn namespace(&self, config: &kube::Config) -> String {
        self.target
            .option("namespace")
            .map_or_else(|| config.default_namespace.clone(), str::to_string)
    }

    /// Run `call` with a connection to the cluster, on a runtime of its own. With a run's
    /// `log_dir`, the connection is to the cluster and namespace the run's Job was created in.
    fn call<T, F, Fut>(&self, log_dir: Option<&Path>, call: F) -> Result<T, ComputeError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = Result<T, ComputeError>>,
    {
        let runtime = runtime().map_err(|err| self.engine_error(err))?;
        runtime.block_on(async {
            let (client, url, default_namespace) = self.client().await?;
            let mut namespace = default_namespace;
            if let Some((server, pinned)) = log_dir.map(|d| self.pinned(d)).transpose()?.flatten() {
                if server != url {
                    return Err(self.engine_error(format!(
                        "the run's Job was created on {server}, but the target's kubeconfig now names {url}; select that cluster's context again to follow or cancel the run"
                    )));
                }
                namespace = pinned;
            }
            call(Connection {
                client,
                namespace,
                url,
            })
            .await
        })
    }

    /// The client of this target's kubeconfig and context, its server and namespace: made
    /// once per process and kept, so that a follower does not read the kubeconfig, or run its
    /// credential program (`exec`), at every ask; the client refreshes an expired token itself.
    async fn client(&self) -> Result<(kube::Client, String, String), ComputeError> {
        type Clients = std::collections::HashMap<String, (kube::Client, String, String)>;
        static CLIENTS: std::sync::Mutex<Option<Clients>> = std::sync::Mutex::new(None);
        let key = format!(
            "{:?}\0{:?}\0{:?}",
            self.target.option("kubeconfig"),
            self.target.option("context"),
            self.target.option("namespace")
        );
        if let Some(found) = CLIENTS
            .lock()
            .ok()
            .and_then(|clients| clients.as_ref().and_then(|c| c.get(&key).cloned()))
        {
            return Ok(found);
        }
        let config = self.config().await?;
        let namespace = self.namespace(&config);
        let url = config.cluster_url.to_string();
        let client = kube::Client::try_from(config)
            .map_err(|err| self.engine_error(format!("cannot make a client: {err}")))?;
        let made = (client, url, namespace);
        if let Ok(mut clients) = CLIENTS.lock() {
            clients
                .get_or_insert_with(Default::default)
                .insert(key, made.clone());
        }
        Ok(made)
    }

    /// The cluster and namespace a run's Job was created in (recorded at submit), if any.
    fn pinned(&self, log_dir: &Path) -> Result<Option<(String, String)>, ComputeError> {
        let path = log_dir.join(CLUSTER_RECORD);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(ComputeError::io(&path, "read", err)),
        };
        let bad = |reason: &str| ComputeError::Answer {
            target: self.target.name.clone(),
            request: path.display().to_string(),
            reason: reason.into(),
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
        let server = value["server"].as_str().ok_or_else(|| bad("no server"))?;
        let namespace = value["namespace"]
            .as_str()
            .ok_or_else(|| bad("no namespace"))?;
        check_label_name(namespace).map_err(|e| bad(&e))?;
        Ok(Some((server.to_string(), namespace.to_string())))
    }

    /// The job id of the run whose log directory is `log_dir`: it must be that run's Job.
    fn check_run_job(&self, job_id: &str, log_dir: &Path) -> Result<(), ComputeError> {
        let expected = job_name(&run_id_of(&self.target.name, log_dir)?);
        if job_id == expected {
            Ok(())
        } else {
            Err(ComputeError::Answer {
                target: self.target.name.clone(),
                request: "the run's Job".into(),
                reason: format!(
                    "the run records Job `{}`, but its Job is `{expected}`",
                    job_id.escape_debug()
                ),
            })
        }
    }

    /// A failed request as a compute error: a refusal with the server's words, or an
    /// unreachable server.
    fn failed(&self, connection: &Connection, request: &str, err: kube::Error) -> ComputeError {
        match err {
            kube::Error::Api(status) => {
                let hint = match status.code {
                    401 => "; check the kubeconfig's credentials",
                    403 => "; the kubeconfig's user needs the right to do this in the namespace",
                    _ => "",
                };
                self.engine_error(format!(
                    "the API server refused {request}: {} ({} {}){hint}",
                    status.message.trim(),
                    status.code,
                    status.reason
                ))
            }
            kube::Error::Auth(err) => self.engine_error(format!(
                "cannot authenticate for {request}: {err}; check the kubeconfig's credentials"
            )),
            other => ComputeError::Unreachable {
                target: self.target.name.clone(),
                option: "kubeconfig",
                url: connection.url.clone(),
                why: why(&other),
                source: Box::new(other),
            },
        }
    }

    /// The Secret `${secret:NAME}` variables refer to.
    fn secret(&self) -> &str {
        self.target.option("secret").unwrap_or(DEFAULT_SECRET)
    }

    /// The Job `submit` creates, as JSON (what a dry run prints).
    pub fn manifest(&self, job: &JobSpec, namespace: &str) -> Result<Value, ComputeError> {
        let image = job.image.as_deref().ok_or_else(|| {
            self.engine_error(format!(
                "{} has no image to run on Kubernetes",
                job.environment
            ))
        })?;
        crate::runs::check_run_id(&self.target.name, &job.run_id)?;
        let name = job_name(&job.run_id);
        let labels = json!({
            "app.kubernetes.io/managed-by": "terrarium",
            RUN_LABEL: job.run_id,
        });
        let (env, _) = env_vars(job, self.secret()).map_err(|reason| ComputeError::Option {
            target: self.target.name.clone(),
            option: "secret".into(),
            reason,
        })?;
        let resources = &job.resources;
        let mut requests = serde_json::Map::new();
        let mut limits = serde_json::Map::new();
        if let Some(cpus) = resources.cpus {
            requests.insert("cpu".into(), json!(cpus.to_string()));
            limits.insert("cpu".into(), json!(cpus.to_string()));
        }
        if let Some(mib) = resources.memory_mib {
            requests.insert("memory".into(), json!(format!("{mib}Mi")));
            limits.insert("memory".into(), json!(format!("{mib}Mi")));
        }
        if let Some(gpus) = resources.gpus {
            limits.insert("nvidia.com/gpu".into(), json!(gpus.to_string()));
        }
        let mut container = json!({
            "name": "main",
            "image": image,
            // Kubernetes expands `$(VAR)` and `$$` in the command too: escaped, every argument
            // arrives as it was given.
            "command": job.command.iter().map(|a| a.replace('$', "$$")).collect::<Vec<_>>(),
            "env": env,
        });
        if !requests.is_empty() || !limits.is_empty() {
            let mut r = serde_json::Map::new();
            if !requests.is_empty() {
                r.insert("requests".into(), Value::Object(requests));
            }
            if !limits.is_empty() {
                r.insert("limits".into(), Value::Object(limits));
            }
            container["resources"] = Value::Object(r);
        }
        let mut pod = json!({
            "restartPolicy": "Never",
            "containers": [container],
        });
        if let Some(account) = self.target.option("service_account") {
            pod["serviceAccountName"] = json!(account);
        }
        if let Some(secret) = self.target.option("image_pull_secret") {
            pod["imagePullSecrets"] = json!([{ "name": secret }]);
        }
        let option = |key: &str, reason: String| ComputeError::Option {
            target: self.target.name.clone(),
            option: key.into(),
            reason,
        };
        if let Some(selector) = self.target.option("node_selector") {
            pod["nodeSelector"] =
                json!(node_selector(selector).map_err(|r| option("node_selector", r))?);
        }
        if let Some(taints) = self.target.option("tolerations") {
            pod["tolerations"] = json!(tolerations(taints).map_err(|r| option("tolerations", r))?);
        }
        let backoff: u32 = self
            .target
            .option("backoff_limit")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut spec = json!({
            // Created suspended, resumed once the run is recorded (`Engine::recorded`): a
            // submitter stopped in between leaves a Job that never runs, not one unrecorded.
            "suspend": true,
            "backoffLimit": backoff,
            "template": {
                "metadata": { "labels": labels },
                "spec": pod,
            },
        });
        if resources.nodes > 1 {
            spec["completionMode"] = json!("Indexed");
            spec["completions"] = json!(resources.nodes);
            spec["parallelism"] = json!(resources.nodes);
        }
        if let Some(seconds) = resources.time_seconds {
            spec["activeDeadlineSeconds"] = json!(seconds);
        }
        let mut annotations = json!({ "terrarium.dev/environment": job.environment });
        if let Some(prefix) = &job.prefix {
            annotations["terrarium.dev/lock-hash"] = json!(prefix.lock_hash);
        }
        Ok(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "annotations": annotations,
            },
            "spec": spec,
        }))
    }

    /// The Job a job id names; the id must be one of ours.
    fn check_job_id(&self, job_id: &str) -> Result<(), ComputeError> {
        if job_id.starts_with("terrarium-") && is_label_name(job_id) {
            Ok(())
        } else {
            Err(ComputeError::Answer {
                target: self.target.name.clone(),
                request: "a Kubernetes Job name".into(),
                reason: format!("`{}` is not one of Terrarium's", job_id.escape_debug()),
            })
        }
    }

    /// The Job and its pods, or `None` when the Job is gone.
    async fn job_and_pods(
        &self,
        connection: &Connection,
        job_id: &str,
    ) -> Result<Option<(Job, Vec<Pod>)>, ComputeError> {
        let jobs: Api<Job> = Api::namespaced(connection.client.clone(), &connection.namespace);
        let request = format!("getting Job {job_id}");
        let Some(job) = jobs
            .get_opt(job_id)
            .await
            .map_err(|e| self.failed(connection, &request, e))?
        else {
            return Ok(None);
        };
        let pods = self.pods(connection, job_id).await?;
        Ok(Some((job, pods)))
    }

    async fn pods(&self, connection: &Connection, job_id: &str) -> Result<Vec<Pod>, ComputeError> {
        let pods: Api<Pod> = Api::namespaced(connection.client.clone(), &connection.namespace);
        let request = format!("listing the pods of Job {job_id}");
        Ok(pods
            .list(&ListParams::default().labels(&format!("job-name={job_id}")))
            .await
            .map_err(|e| self.failed(connection, &request, e))?
            .items)
    }

    /// Check that the Secret holds every key the job's variables refer to (its values are
    /// not looked at). When the user may not read Secrets, the cluster checks at start.
    async fn check_secret_keys(
        &self,
        connection: &Connection,
        keys: &[String],
    ) -> Result<(), ComputeError> {
        if keys.is_empty() {
            return Ok(());
        }
        let secrets: Api<Secret> =
            Api::namespaced(connection.client.clone(), &connection.namespace);
        let name = self.secret();
        let secret = match secrets.get_opt(name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                return Err(self.engine_error(format!(
                    "the environment's variables refer to secrets {}, but there is no Secret `{name}` in namespace {}; create it (kubectl create secret generic {name} --from-literal=KEY=VALUE ...) or name another with `--set secret=NAME`",
                    keys.join(", "),
                    connection.namespace
                )))
            }
            Err(kube::Error::Api(status)) if status.code == 403 => return Ok(()),
            Err(err) => return Err(self.failed(connection, &format!("getting Secret {name}"), err)),
        };
        let held: Vec<&String> = secret
            .data
            .iter()
            .flat_map(|d| d.keys())
            .chain(secret.string_data.iter().flat_map(|d| d.keys()))
            .collect();
        let missing: Vec<&str> = keys
            .iter()
            .filter(|k| !held.contains(k))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(self.engine_error(format!(
                "Secret `{name}` in namespace {} has no key {}, which the environment's variables refer to; add it (kubectl edit secret {name})",
                connection.namespace,
                missing.join(", ")
            )))
        }
    }
}

/// The container's variables, and the Secret keys they refer to. A value that is exactly
/// `${secret:NAME}` is a reference to key NAME; one that mixes text and secrets refers to a
/// variable per secret and is put together by Kubernetes' `$(VAR)` expansion; every other `$`
/// is written `$$`, which that expansion turns back into `$`.
fn env_vars(job: &JobSpec, secret: &str) -> Result<(Vec<Value>, Vec<String>), String> {
    let mut env = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let reference = |key: &str| json!({ "secretKeyRef": { "name": secret, "key": key } });
    for (name, value) in &job.env {
        if name.starts_with(SECRET_VARIABLE_PREFIX) {
            return Err(format!(
                "variable {name}: names starting with {SECRET_VARIABLE_PREFIX} are Terrarium's own on Kubernetes; rename it"
            ));
        }
        let parts = secret_parts(value).map_err(|reason| format!("variable {name}: {reason}"))?;
        match parts.as_slice() {
            [] => env.push(json!({ "name": name, "value": "" })),
            [Part::Secret(key)] => {
                env.push(json!({ "name": name, "valueFrom": reference(key) }));
                keys.push(key.clone());
            }
            parts => {
                let mut text = String::new();
                for part in parts {
                    match part {
                        Part::Text(t) => text.push_str(&t.replace('$', "$$")),
                        Part::Secret(key) => {
                            let helper = secret_variable(key);
                            if !keys.contains(key) {
                                keys.push(key.clone());
                            }
                            if !env.iter().any(|v| v["name"] == helper.as_str()) {
                                env.push(json!({ "name": helper, "valueFrom": reference(key) }));
                            }
                            text.push_str(&format!("$({helper})"));
                        }
                    }
                }
                env.push(json!({ "name": name, "value": text }));
            }
        }
    }
    keys.sort();
    keys.dedup();
    Ok((env, keys))
}

/// The variable that holds secret `key` for a value that mixes it with text: the key's bytes
/// in hex, so that no two keys share one.
fn secret_variable(key: &str) -> String {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{SECRET_VARIABLE_PREFIX}{hex}")
}

#[derive(Debug, PartialEq)]
enum Part {
    Text(String),
    Secret(String),
}

/// A value as text and `${secret:NAME}` references; NAME must be a Secret key.
fn secret_parts(value: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${secret:") {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_string()));
        }
        let after = &rest[start + "${secret:".len()..];
        let end = after
            .find('}')
            .ok_or("a `${secret:` reference has no closing `}`")?;
        let key = &after[..end];
        let valid = !key.is_empty()
            && key.len() <= 253
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !valid {
            return Err(format!(
                "`{}` is not a Secret key (letters, digits, `-`, `_`, `.`)",
                key.escape_debug()
            ));
        }
        parts.push(Part::Secret(key.to_string()));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(parts)
}

/// A few words on why a request got no answer.
fn why(err: &kube::Error) -> String {
    if let Some(io) = crate::io_why(err) {
        return io.into();
    }
    let text = err.to_string();
    if text.to_ascii_lowercase().contains("timed out") || text.contains("elapsed") {
        "no answer in time".into()
    } else {
        text
    }
}

/// A timestamp as RFC 3339.
fn time(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<String> {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
}

/// A pod's index in its Job (0 for a Job that is not Indexed).
fn pod_index(pod: &Pod) -> u32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_ANNOTATION))
        .and_then(|i| i.parse().ok())
        .unwrap_or(0)
}

/// The last pod of each index (a retried index has several), by index.
fn latest_pods(pods: &[Pod]) -> BTreeMap<u32, &Pod> {
    let mut latest: BTreeMap<u32, &Pod> = BTreeMap::new();
    for pod in pods {
        let created = pod.metadata.creation_timestamp.as_ref().and_then(time);
        let index = pod_index(pod);
        let newer = latest
            .get(&index)
            .is_none_or(|seen| created >= seen.metadata.creation_timestamp.as_ref().and_then(time));
        if newer {
            latest.insert(index, pod);
        }
    }
    latest
}

/// What the Job's conditions and its pods say.
fn job_status(job: &Job, pods: &[Pod]) -> JobStatus {
    let status = job.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let holds = |kind: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == kind && c.status == "True")
    };
    let latest = latest_pods(pods);
    let mut nodes: Vec<String> = latest
        .values()
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    nodes.sort();
    nodes.dedup();
    let terminated: Vec<(u32, i32, Option<String>)> = latest
        .iter()
        .flat_map(|(index, pod)| {
            pod.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
                .map(|t| (*index, t.exit_code, t.reason.clone()))
        })
        .collect();
    // When the first container started (the Job's own startTime is when the controller took
    // it, before any pod was scheduled or its image pulled); the Job's until a pod has.
    let started_at = latest
        .values()
        .flat_map(|pod| {
            pod.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .filter_map(|c| {
                    let state = c.state.as_ref()?;
                    state
                        .running
                        .as_ref()
                        .and_then(|r| r.started_at.as_ref())
                        .or_else(|| {
                            state
                                .terminated
                                .as_ref()
                                .and_then(|t| t.started_at.as_ref())
                        })
                        .and_then(time)
                })
        })
        .min()
        .or_else(|| status.start_time.as_ref().and_then(time));
    let (state, reason, finished_at) = if let Some(done) = holds("Complete") {
        (
            JobState::Completed,
            None,
            status
                .completion_time
                .as_ref()
                .or(done.last_transition_time.as_ref())
                .and_then(time),
        )
    } else if let Some(failed) = holds("Failed") {
        let why = failed.reason.clone().unwrap_or_else(|| "Failed".into());
        let state = if why == "DeadlineExceeded" {
            JobState::TimedOut
        } else {
            JobState::Failed
        };
        let message = failed
            .message
            .as_deref()
            .map(|m| format!("{why}: {m}"))
            .unwrap_or(why);
        (
            state,
            Some(message),
            failed.last_transition_time.as_ref().and_then(time),
        )
    } else if holds("Suspended").is_some() {
        (JobState::Queued, Some("the Job is suspended".into()), None)
    } else {
        // A pod that has ended has run: between its end and the Job's condition (Kubernetes
        // 1.31+ sets SuccessCriteriaMet first) the run is still running, not queued again.
        let running = latest.values().any(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| matches!(phase, "Running" | "Succeeded" | "Failed"))
        });
        let state = if running {
            JobState::Running
        } else {
            JobState::Queued
        };
        (state, pod_trouble(&latest), None)
    };
    let exit_code = match state {
        JobState::Completed => Some(0),
        _ if state.is_final() => terminated
            .iter()
            .map(|(_, code, _)| *code)
            .find(|code| *code != 0),
        _ => None,
    };
    JobStatus {
        state,
        exit_code,
        started_at,
        finished_at,
        nodes,
        reason,
    }
}

/// Why the Job's pods are not running, when a pod says: one that cannot be scheduled, or
/// whose container waits for something other than its start (an image it cannot pull, a
/// Secret key that is missing).
fn pod_trouble(latest: &BTreeMap<u32, &Pod>) -> Option<String> {
    for pod in latest.values() {
        let name = pod.metadata.name.as_deref().unwrap_or("?");
        let Some(status) = &pod.status else { continue };
        for container in status.container_statuses.iter().flatten() {
            if let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                let reason = waiting.reason.as_deref().unwrap_or("");
                if !reason.is_empty()
                    && reason != "ContainerCreating"
                    && reason != "PodInitializing"
                {
                    return Some(match &waiting.message {
                        Some(message) => format!("pod {name}: {reason}: {message}"),
                        None => format!("pod {name}: {reason}"),
                    });
                }
            }
        }
        for condition in status.conditions.iter().flatten() {
            if condition.type_ == "PodScheduled" && condition.status == "False" {
                let reason = condition.reason.as_deref().unwrap_or("not scheduled");
                return Some(match &condition.message {
                    Some(message) => format!("pod {name}: {reason}: {message}"),
                    None => format!("pod {name}: {reason}"),
                });
            }
        }
    }
    None
}

/// The run id a log directory belongs to (its name), checked.
fn run_id_of(target: &str, log_dir: &Path) -> Result<String, ComputeError> {
    let id = log_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    crate::runs::check_run_id(target, &id)?;
    Ok(id)
}

/// The log copies in `log_dir` (`task-N.log`), in task order.
fn task_logs(log_dir: &Path) -> Vec<TaskLog> {
    let mut logs: Vec<(u32, PathBuf)> = std::fs::read_dir(log_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let index = name
                .strip_prefix("task-")?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((index, entry.path()))
        })
        .collect();
    logs.sort();
    logs.into_iter()
        .map(|(index, path)| TaskLog {
            task: format!("task {index}"),
            path,
        })
        .collect()
}

impl Kubernetes {
    /// What the cluster says of the Job (where the run's log directory says it is).
    fn status_at(&self, job_id: &str, log_dir: Option<&Path>) -> Result<JobStatus, ComputeError> {
        self.check_job_id(job_id)?;
        self.call(log_dir, |connection| async move {
            Ok(match self.job_and_pods(&connection, job_id).await? {
                Some((job, pods)) => job_status(&job, &pods),
                None => JobStatus {
                    state: JobState::Lost,
                    exit_code: None,
                    started_at: None,
                    finished_at: None,
                    nodes: Vec::new(),
                    reason: Some(format!(
                        "the Job is gone from namespace {}",
                        connection.namespace
                    )),
                },
            })
        })
    }

    /// Delete the Job, its pods with it (where the run's log directory says it is).
    fn cancel_at(&self, job_id: &str, log_dir: Option<&Path>) -> Result<(), ComputeError> {
        self.check_job_id(job_id)?;
        self.call(log_dir, |connection| async move {
            let jobs: Api<Job> = Api::namespaced(connection.client.clone(), &connection.namespace);
            match jobs.delete(job_id, &DeleteParams::background()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                Err(err) => Err(self.failed(&connection, &format!("deleting Job {job_id}"), err)),
            }
        })
    }
}

impl Engine for Kubernetes {
    fn check(&self) -> Result<String, ComputeError> {
        self.call(None, |connection| async move {
            let info = connection
                .client
                .apiserver_version()
                .await
                .map_err(|e| self.failed(&connection, "its version", e))?;
            let jobs: Api<Job> = Api::namespaced(connection.client.clone(), &connection.namespace);
            jobs.list(&ListParams::default().limit(1))
                .await
                .map_err(|e| {
                    self.failed(
                        &connection,
                        &format!("listing Jobs in namespace {}", connection.namespace),
                        e,
                    )
                })?;
            Ok(format!(
                "Kubernetes {} at {}, namespace {}",
                info.git_version, connection.url, connection.namespace
            ))
        })
    }

    fn render(&self, job: &JobSpec) -> Result<String, ComputeError> {
        let runtime = runtime().map_err(|err| self.engine_error(err))?;
        let config = runtime.block_on(self.config())?;
        let namespace = self.namespace(&config);
        let manifest = self.manifest(job, &namespace)?;
        Ok(format!(
            "# POST {}apis/batch/v1/namespaces/{namespace}/jobs\n{}\n",
            config
                .cluster_url
                .to_string()
                .trim_end_matches('/')
                .to_string()
                + "/",
            serde_json::to_string_pretty(&manifest).unwrap_or_default()
        ))
    }

    fn submit(&self, job: &JobSpec) -> Result<String, ComputeError> {
        self.call(None, |connection| async move {
            let manifest = self.manifest(job, &connection.namespace)?;
            let (_, keys) =
                env_vars(job, self.secret()).map_err(|reason| ComputeError::Option {
                    target: self.target.name.clone(),
                    option: "secret".into(),
                    reason,
                })?;
            self.check_secret_keys(&connection, &keys).await?;
            let typed: Job =
                serde_json::from_value(manifest.clone()).map_err(|err| ComputeError::Answer {
                    target: self.target.name.clone(),
                    request: "the Job manifest".into(),
                    reason: err.to_string(),
                })?;
            std::fs::create_dir_all(&job.log_dir)
                .map_err(|e| ComputeError::io(&job.log_dir, "create", e))?;
            let record = job.log_dir.join(JOB_RECORD);
            std::fs::write(
                &record,
                serde_json::to_string_pretty(&manifest).unwrap_or_default() + "\n",
            )
            .map_err(|e| ComputeError::io(&record, "write", e))?;
            let cluster = job.log_dir.join(CLUSTER_RECORD);
            std::fs::write(
                &cluster,
                json!({"server": connection.url, "namespace": connection.namespace}).to_string(),
            )
            .map_err(|e| ComputeError::io(&cluster, "write", e))?;
            let jobs: Api<Job> = Api::namespaced(connection.client.clone(), &connection.namespace);
            let name = job_name(&job.run_id);
            let created = match jobs.create(&PostParams::default(), &typed).await {
                Ok(created) => created,
                Err(err) => {
                    // No answer does not mean no Job: one created anyway is suspended, and is
                    // deleted here so that it does not linger.
                    if !matches!(err, kube::Error::Api(_)) {
                        let _ = jobs.delete(&name, &DeleteParams::background()).await;
                    }
                    return Err(self.failed(
                        &connection,
                        &format!("creating Job {name} in namespace {}", connection.namespace),
                        err,
                    ));
                }
            };
            let created_name = created.metadata.name.unwrap_or_default();
            if created_name != name {
                return Err(ComputeError::Answer {
                    target: self.target.name.clone(),
                    request: format!("creating Job {name}"),
                    reason: format!("the server created `{}`", created_name.escape_debug()),
                });
            }
            Ok(name)
        })
    }

    fn status(&self, job_id: &str) -> Result<JobStatus, ComputeError> {
        self.status_at(job_id, None)
    }

    fn status_in(&self, job_id: &str, log_dir: &Path) -> Result<JobStatus, ComputeError> {
        self.check_run_job(job_id, log_dir)?;
        let mut status = self.status_at(job_id, Some(log_dir))?;
        if status.state == JobState::Lost && log_dir.join(CANCELLED_MARKER).is_file() {
            status.state = JobState::Cancelled;
            status.reason = Some("its Job was deleted by `terrarium runs cancel`".into());
        }
        Ok(status)
    }

    fn log_interval(&self) -> Duration {
        // Each call lists the pods and fetches each one's log from the API server.
        Duration::from_secs(1)
    }

    fn logs(&self, log_dir: &Path) -> Result<Vec<TaskLog>, ComputeError> {
        let run_id = run_id_of(&self.target.name, log_dir)?;
        let job_id = job_name(&run_id);
        let fetched = self.call(Some(log_dir), |connection| async move {
            let pods = self.pods(&connection, &job_id).await?;
            let api: Api<Pod> = Api::namespaced(connection.client.clone(), &connection.namespace);
            let mut texts = Vec::new();
            for (index, pod) in latest_pods(&pods) {
                let Some(name) = pod.metadata.name.as_deref() else {
                    continue;
                };
                let params = LogParams {
                    limit_bytes: Some(LOG_LIMIT),
                    ..LogParams::default()
                };
                let read = async {
                    use futures_util::AsyncReadExt;
                    let mut stream = std::pin::pin!(api.log_stream(name, &params).await?);
                    let mut bytes = Vec::new();
                    stream
                        .read_to_end(&mut bytes)
                        .await
                        .map_err(kube::Error::ReadEvents)?;
                    Ok::<_, kube::Error>(bytes)
                };
                match read.await {
                    // A program's output need not be UTF-8: shown as it can be.
                    Ok(bytes) => texts.push((index, String::from_utf8_lossy(&bytes).into_owned())),
                    // A pod that has not started has no log yet; one that is gone has none.
                    Err(kube::Error::Api(status)) if matches!(status.code, 400 | 404) => {}
                    Err(err) => {
                        return Err(self.failed(
                            &connection,
                            &format!("the log of pod {name}"),
                            err,
                        ))
                    }
                }
            }
            Ok(texts)
        });
        match fetched {
            Ok(texts) => {
                if !texts.is_empty() {
                    std::fs::create_dir_all(log_dir)
                        .map_err(|e| ComputeError::io(log_dir, "create", e))?;
                }
                for (index, text) in texts {
                    crate::ray::refresh_copy(&log_dir.join(format!("task-{index}.log")), &text)?;
                }
            }
            // The server cannot be asked now: the copies are what there is.
            Err(_) if !task_logs(log_dir).is_empty() => {}
            Err(err) => return Err(err),
        }
        Ok(task_logs(log_dir))
    }

    fn cancel(&self, job_id: &str) -> Result<(), ComputeError> {
        self.cancel_at(job_id, None)
    }

    fn recorded(&self, job_id: &str, log_dir: &Path) -> Result<(), ComputeError> {
        self.check_run_job(job_id, log_dir)?;
        self.call(Some(log_dir), |connection| async move {
            let jobs: Api<Job> = Api::namespaced(connection.client.clone(), &connection.namespace);
            let resume = Patch::Merge(json!({ "spec": { "suspend": false } }));
            jobs.patch(job_id, &PatchParams::default(), &resume)
                .await
                .map(|_| ())
                .map_err(|e| self.failed(&connection, &format!("resuming Job {job_id}"), e))
        })
    }

    fn cancel_in(&self, job_id: &str, log_dir: &Path) -> Result<(), ComputeError> {
        self.check_run_job(job_id, log_dir)?;
        // The pods' logs go with the Job: copied first.
        let _ = self.logs(log_dir);
        let marker = log_dir.join(CANCELLED_MARKER);
        std::fs::create_dir_all(log_dir).map_err(|e| ComputeError::io(log_dir, "create", e))?;
        std::fs::write(&marker, b"").map_err(|e| ComputeError::io(&marker, "write", e))?;
        self.cancel_at(job_id, Some(log_dir)).inspect_err(|_| {
            let _ = std::fs::remove_file(&marker);
        })
    }

    fn wait_for_change(&self, job_id: &str, log_dir: &Path, _poll: Duration) {
        let watched = self.check_run_job(job_id, log_dir).and_then(|()| {
            self.call(Some(log_dir), |connection| async move {
                let jobs: Api<Job> =
                    Api::namespaced(connection.client.clone(), &connection.namespace);
                let request = format!("watching Job {job_id}");
                let Some(job) = jobs
                    .get_opt(job_id)
                    .await
                    .map_err(|e| self.failed(&connection, &request, e))?
                else {
                    // Gone: the next ask says so; there is nothing to watch.
                    return Err(self.engine_error(format!("Job {job_id} is gone")));
                };
                let version = job.metadata.resource_version.unwrap_or_default();
                let params = WatchParams::default()
                    .fields(&format!("metadata.name={job_id}"))
                    .timeout(WATCH_SECONDS);
                let stream = jobs
                    .watch(&params, &version)
                    .await
                    .map_err(|e| self.failed(&connection, &request, e))?;
                use futures_util::StreamExt;
                let mut stream = std::pin::pin!(stream);
                // The first change, or the end of the watch's time.
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(WatchEvent::Bookmark(_)) => continue,
                        _ => break,
                    }
                }
                Ok(())
            })
        });
        if watched.is_err() {
            // Not watchable now: wait as a poller would, and let the next ask say why.
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_become_references_and_dollars_are_escaped() {
        assert_eq!(
            secret_parts("a${secret:db-pass}b").unwrap(),
            vec![
                Part::Text("a".into()),
                Part::Secret("db-pass".into()),
                Part::Text("b".into())
            ]
        );
        assert!(secret_parts("${secret:a b}").is_err());
        assert!(secret_parts("${secret:open").is_err());
        assert_eq!(
            secret_variable("db-pass"),
            "TERRARIUM_SECRET_64622d70617373"
        );
        assert_ne!(secret_variable("db-pass"), secret_variable("db_pass"));
    }

    #[test]
    fn options_are_checked() {
        use crate::check_repository;
        assert!(check_repository("127.0.0.1:5000/ml").is_ok());
        assert!(check_repository("registry.example.com/team/ml").is_ok());
        assert!(check_repository("ml").is_err());
        assert!(check_repository("docker.io/ml:v1").is_err());
        assert!(check_repository("localhost/").is_err());
        assert!(check_repository("localhost/a//b").is_err());
        assert!(check_repository("localhost/a/").is_err());
        assert!(check_label_name("team-a").is_ok());
        assert!(check_label_name("Team").is_err());
        assert!(check_label_name("-a").is_err());
        assert_eq!(
            node_selector("gpu=a100; kubernetes.io/arch=amd64").unwrap(),
            [
                ("gpu".to_string(), "a100".to_string()),
                ("kubernetes.io/arch".to_string(), "amd64".to_string())
            ]
            .into()
        );
        assert!(node_selector("gpu").is_err());
        assert!(node_selector("g pu=1").is_err());
        let t = tolerations("gpu=true:NoSchedule;spot:NoExecute").unwrap();
        assert_eq!(t[0]["operator"], "Equal");
        assert_eq!(t[1]["operator"], "Exists");
        assert!(tolerations("gpu=true").is_err());
        assert!(tolerations("gpu:Sometimes").is_err());
        assert!(check_backoff_limit("3").is_ok());
        assert!(check_backoff_limit("-1").is_err());
    }

    #[test]
    fn states_come_from_the_jobs_conditions_and_its_pods() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "terrarium-x"},
            "status": {"startTime": "2026-12-02T10:00:00Z", "active": 1},
        }))
        .unwrap();
        let pod = |phase: &str, state: Value| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "terrarium-x-0-abc", "creationTimestamp": "2026-12-02T10:00:00Z"},
                "spec": {"nodeName": "node-a", "containers": [{"name": "main"}]},
                "status": {"phase": phase, "containerStatuses": [{"name": "main", "ready": true,
                    "restartCount": 0, "image": "i", "imageID": "", "state": state}]},
            }))
            .unwrap()
        };
        // Waiting for its image: queued, with the pod's reason; started when the controller did.
        let pulling = job_status(
            &job,
            &[pod(
                "Pending",
                json!({"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}),
            )],
        );
        assert_eq!(pulling.state, JobState::Queued);
        assert_eq!(
            pulling.reason.as_deref(),
            Some("pod terrarium-x-0-abc: ImagePullBackOff: no such image")
        );
        // Running: started when its container did, not when the Job was taken.
        let running = job_status(
            &job,
            &[pod(
                "Running",
                json!({"running": {"startedAt": "2026-12-02T10:02:30Z"}}),
            )],
        );
        assert_eq!(running.state, JobState::Running);
        assert_eq!(running.started_at.as_deref(), Some("2026-12-02T10:02:30Z"));
        assert_eq!(running.nodes, vec!["node-a".to_string()]);
        // Ended, before the Job's condition: still running, not queued again.
        let ended = job_status(
            &job,
            &[pod(
                "Succeeded",
                json!({"terminated": {"exitCode": 0, "startedAt": "2026-12-02T10:02:30Z"}}),
            )],
        );
        assert_eq!(ended.state, JobState::Running);
        // Failed past its deadline: timed out.
        let deadline: Job = serde_json::from_value(json!({
            "metadata": {"name": "terrarium-x"},
            "status": {"startTime": "2026-12-02T10:00:00Z", "conditions": [{"type": "Failed", "status": "True",
                "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline",
                "lastTransitionTime": "2026-12-02T11:00:00Z"}]},
        }))
        .unwrap();
        let timed = job_status(&deadline, &[]);
        assert_eq!(timed.state, JobState::TimedOut);
        assert_eq!(timed.finished_at.as_deref(), Some("2026-12-02T11:00:00Z"));
    }

    #[test]
    fn job_names_are_dns_labels() {
        let name = job_name("20261128T041530-3fa2b1");
        assert_eq!(name, "terrarium-20261128t041530-3fa2b1");
        assert!(is_label_name(&name));
    }
}
