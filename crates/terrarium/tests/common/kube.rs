//! A fake Kubernetes API server, for the Kubernetes target's tests: no API server can run on
//! these machines.
//!
//! It answers the requests Terrarium's client makes with the shapes a real server gives
//! (`/version`, Jobs: create, get, list, watch, delete; pods by label and their logs; Secrets),
//! records every call, and plays the job controller and a kubelet: a created Job gets one pod
//! per index, each pod pulls the Job's image from the registry by digest (skopeo), unpacks it
//! (umoci) and runs the container's command in it with runc, with the variables resolved as
//! Kubernetes does (`secretKeyRef`, `$(VAR)`, `$$`). Its output is the pod's log; its exit code
//! ends the pod, and the Job is Complete, retried up to `backoffLimit`, Failed
//! (`BackoffLimitExceeded`) or, after `activeDeadlineSeconds`, Failed (`DeadlineExceeded`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub const TOKEN: &str = "fake-cluster-token";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The path and query, as sent.
    pub uri: String,
    pub body: String,
}

impl Call {
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.uri)
    }
}

struct Pod {
    object: Value,
    log: PathBuf,
    /// The runc container, while it runs.
    container: Option<String>,
}

#[derive(Default)]
struct Cluster {
    calls: Vec<Call>,
    jobs: BTreeMap<String, Value>,
    pods: BTreeMap<String, Pod>,
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    version: u64,
    /// Unpacked images (rootfs and config), by reference.
    images: BTreeMap<String, PathBuf>,
}

impl Cluster {
    fn bump(&mut self) -> String {
        self.version += 1;
        self.version.to_string()
    }
}

pub struct FakeCluster {
    state: Arc<Mutex<Cluster>>,
    changes: tokio::sync::broadcast::Sender<String>,
    pub port: u16,
    dir: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<Cluster>>,
    changes: tokio::sync::broadcast::Sender<String>,
    dir: PathBuf,
}

impl FakeCluster {
    /// Start it on a free port of 127.0.0.1; `dir` holds its pods' logs and unpacked images.
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(Cluster::default()));
        let (changes, _) = tokio::sync::broadcast::channel(256);
        let shared = Shared {
            state: state.clone(),
            changes: changes.clone(),
            dir: dir.to_path_buf(),
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let shared = shared.clone();
                async move { handle(shared, method, uri, headers, body).await }
            },
        );
        runtime.spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            state,
            changes,
            port,
            dir: dir.to_path_buf(),
            runtime: Some(runtime),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig for it, context `fake`, namespace `namespace`.
    pub fn kubeconfig(&self, path: &Path, namespace: &str) {
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: {namespace}\ncurrent-context: fake\nusers:\n- name: tester\n  user:\n    token: {TOKEN}\n",
                self.url()
            ),
        )
        .unwrap();
    }

    pub fn add_secret(&self, name: &str, key: &str, value: &str) {
        self.state
            .lock()
            .unwrap()
            .secrets
            .entry(name.into())
            .or_default()
            .insert(key.into(), value.into());
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The Job as the server holds it now.
    pub fn job(&self, name: &str) -> Option<Value> {
        self.state.lock().unwrap().jobs.get(name).cloned()
    }

    /// Names of pods still held.
    pub fn pods(&self) -> Vec<String> {
        self.state.lock().unwrap().pods.keys().cloned().collect()
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        let containers: Vec<String> = self
            .state
            .lock()
            .unwrap()
            .pods
            .values()
            .filter_map(|p| p.container.clone())
            .collect();
        for id in containers {
            kill_container(&id);
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // RFC 3339, UTC, seconds.
    let days = now / 86_400;
    let secs = now % 86_400;
    let (y, m, d) = civil(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 as a date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(value: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    shared: Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.state.lock().unwrap().calls.push(Call {
        method: method.to_string(),
        uri: uri.to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    if !authorized {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let path: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let q = query(&uri);
    match (method.as_str(), path.as_slice()) {
        ("GET", ["version"]) => ok(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2", "compiler": "gc",
            "platform": "linux/amd64",
        })),
        ("GET", ["apis", "batch", "v1", "namespaces", ns, "jobs"]) => {
            if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                return watch(shared, ns, &q).await;
            }
            let state = shared.state.lock().unwrap();
            let items: Vec<Value> = state
                .jobs
                .values()
                .filter(|j| j["metadata"]["namespace"] == *ns)
                .cloned()
                .collect();
            ok(json!({
                "apiVersion": "batch/v1", "kind": "JobList",
                "metadata": {"resourceVersion": state.version.to_string()}, "items": items,
            }))
        }
        ("POST", ["apis", "batch", "v1", "namespaces", ns, "jobs"]) => {
            create_job(&shared, ns, &body)
        }
        ("GET", ["apis", "batch", "v1", "namespaces", ns, "jobs", name]) => {
            match shared.state.lock().unwrap().jobs.get(*name) {
                Some(job) if job["metadata"]["namespace"] == *ns => ok(job.clone()),
                _ => status(404, "NotFound", &format!("jobs.batch \"{name}\" not found")),
            }
        }
        ("PATCH", ["apis", "batch", "v1", "namespaces", ns, "jobs", name]) => {
            patch_job(&shared, ns, name, &headers, &body)
        }
        ("DELETE", ["apis", "batch", "v1", "namespaces", ns, "jobs", name]) => {
            delete_job(&shared, ns, name, &body)
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods"]) => {
            let selector = q.get("labelSelector").cloned().unwrap_or_default();
            let (key, value) = selector.split_once('=').unwrap_or(("", ""));
            let state = shared.state.lock().unwrap();
            let items: Vec<Value> = state
                .pods
                .values()
                .map(|p| &p.object)
                .filter(|p| p["metadata"]["namespace"] == *ns)
                .filter(|p| key.is_empty() || p["metadata"]["labels"][key] == value)
                .cloned()
                .collect();
            ok(json!({
                "apiVersion": "v1", "kind": "PodList",
                "metadata": {"resourceVersion": state.version.to_string()}, "items": items,
            }))
        }
        ("GET", ["api", "v1", "namespaces", _ns, "pods", name, "log"]) => {
            let state = shared.state.lock().unwrap();
            let Some(pod) = state.pods.get(*name) else {
                return status(404, "NotFound", &format!("pods \"{name}\" not found"));
            };
            let started = pod.object["status"]["containerStatuses"][0]["state"]
                .get("waiting")
                .is_none();
            if !started {
                return status(
                    400,
                    "BadRequest",
                    &format!("container \"main\" in pod \"{name}\" is waiting to start: ContainerCreating"),
                );
            }
            let text = std::fs::read(&pod.log).unwrap_or_default();
            let limit: usize = q
                .get("limitBytes")
                .and_then(|l| l.parse().ok())
                .unwrap_or(usize::MAX);
            (StatusCode::OK, text[..text.len().min(limit)].to_vec()).into_response()
        }
        ("GET", ["api", "v1", "namespaces", ns, "secrets", name]) => {
            use base64::Engine as _;
            match shared.state.lock().unwrap().secrets.get(*name) {
                Some(data) => ok(json!({
                    "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": name, "namespace": ns},
                    "data": data.iter().map(|(k, v)| (k.clone(), json!(base64::engine::general_purpose::STANDARD.encode(v)))).collect::<serde_json::Map<_, _>>(),
                })),
                None => status(404, "NotFound", &format!("secrets \"{name}\" not found")),
            }
        }
        _ => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

/// A watch of one Job (`fieldSelector=metadata.name=NAME`): its changes after
/// `resourceVersion`, until `timeoutSeconds`.
async fn watch(shared: Shared, ns: &str, q: &BTreeMap<String, String>) -> Response {
    let name = q
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("metadata.name="))
        .unwrap_or_default()
        .to_string();
    let since: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout: u64 = q
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let receiver = shared.changes.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let ns = ns.to_string();
    let current = |shared: &Shared| -> Option<(String, Value)> {
        let state = shared.state.lock().unwrap();
        match state.jobs.get(&name) {
            Some(job) if job["metadata"]["namespace"] == ns.as_str() => {
                let version: u64 = job["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                (version > since).then(|| ("MODIFIED".to_string(), job.clone()))
            }
            Some(_) => None,
            None => Some((
                "DELETED".to_string(),
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": ns}}),
            )),
        }
    };
    let first = current(&shared);
    let stream = futures_util::stream::unfold(
        (receiver, first, shared.clone(), false),
        move |(mut receiver, pending, shared, done)| async move {
            if done {
                return None;
            }
            if let Some((kind, object)) = pending {
                let line = json!({"type": kind, "object": object}).to_string() + "\n";
                return Some((
                    Ok::<_, std::convert::Infallible>(Bytes::from(line)),
                    (receiver, None, shared, true),
                ));
            }
            loop {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Ok(changed)) => {
                        let state = shared.state.lock().unwrap();
                        let event = match state.jobs.get(&changed) {
                            Some(job) => ("MODIFIED", job.clone()),
                            None => (
                                "DELETED",
                                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": changed}}),
                            ),
                        };
                        drop(state);
                        if event.1["metadata"]["name"] != changed.as_str() {
                            continue;
                        }
                        let line = json!({"type": event.0, "object": event.1}).to_string() + "\n";
                        return Some((Ok(Bytes::from(line)), (receiver, None, shared, true)));
                    }
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                    _ => return None,
                }
            }
        },
    );
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn create_job(shared: &Shared, ns: &str, body: &[u8]) -> Response {
    let Ok(mut job) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "the body is not JSON");
    };
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if job["metadata"]["namespace"]
        .as_str()
        .is_some_and(|n| n != ns)
    {
        return status(
            400,
            "BadRequest",
            "the namespace of the object does not match the namespace on the request",
        );
    }
    let mut state = shared.state.lock().unwrap();
    if state.jobs.contains_key(&name) {
        return status(
            409,
            "AlreadyExists",
            &format!("jobs.batch \"{name}\" already exists"),
        );
    }
    let version = state.bump();
    let uid = format!("00000000-0000-4000-8000-{:012}", state.version);
    job["metadata"]["namespace"] = json!(ns);
    job["metadata"]["uid"] = json!(uid);
    job["metadata"]["resourceVersion"] = json!(version);
    job["metadata"]["creationTimestamp"] = json!(now());
    let completions = job["spec"]["completions"].as_u64().unwrap_or(1);
    job["spec"]["completions"] = json!(completions);
    job["spec"]["parallelism"] = json!(job["spec"]["parallelism"].as_u64().unwrap_or(1));
    if job["spec"]["completionMode"].is_null() {
        job["spec"]["completionMode"] = json!("NonIndexed");
    }
    let suspended = job["spec"]["suspend"] == true;
    job["status"] = if suspended {
        json!({"active": 0, "ready": 0, "conditions": [{"type": "Suspended", "status": "True",
            "reason": "JobSuspended", "message": "Job suspended",
            "lastProbeTime": now(), "lastTransitionTime": now()}]})
    } else {
        json!({"startTime": now(), "active": completions, "ready": 0})
    };
    state.jobs.insert(name.clone(), job.clone());
    drop(state);
    if !suspended {
        run_job(shared, &name, &job);
    }
    let _ = shared.changes.send(name);
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        job.to_string(),
    )
        .into_response()
}

/// The job controller starts a Job (created, or resumed): its pods, and its deadline.
fn run_job(shared: &Shared, name: &str, job: &Value) {
    let completions = job["spec"]["completions"].as_u64().unwrap_or(1);
    for index in 0..completions {
        start_pod(shared, name, index);
    }
    if let Some(deadline) = job["spec"]["activeDeadlineSeconds"].as_u64() {
        let shared = shared.clone();
        let name = name.to_string();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(deadline));
            fail_job(
                &shared,
                &name,
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            );
        });
    }
}

/// A merge patch of a Job: only `spec.suspend` is taken (resuming starts it).
fn patch_job(shared: &Shared, ns: &str, name: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let merge = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/merge-patch+json"));
    if !merge {
        return status(
            415,
            "UnsupportedMediaType",
            "the fake takes merge patches only",
        );
    }
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "the body is not JSON");
    };
    let mut state = shared.state.lock().unwrap();
    let version = state.bump();
    let Some(job) = state
        .jobs
        .get_mut(name)
        .filter(|j| j["metadata"]["namespace"] == ns)
    else {
        return status(404, "NotFound", &format!("jobs.batch \"{name}\" not found"));
    };
    let was_suspended = job["spec"]["suspend"] == true;
    if let Some(suspend) = patch["spec"]["suspend"].as_bool() {
        job["spec"]["suspend"] = json!(suspend);
    }
    let resumed = was_suspended && job["spec"]["suspend"] == false;
    if resumed {
        let completions = job["spec"]["completions"].as_u64().unwrap_or(1);
        job["status"] = json!({"startTime": now(), "active": completions, "ready": 0,
            "conditions": [{"type": "Suspended", "status": "False", "reason": "JobResumed",
                "message": "Job resumed", "lastProbeTime": now(), "lastTransitionTime": now()}]});
    }
    job["metadata"]["resourceVersion"] = json!(version);
    let answer = job.clone();
    drop(state);
    if resumed {
        run_job(shared, name, &answer);
    }
    let _ = shared.changes.send(name.to_string());
    ok(answer)
}

fn delete_job(shared: &Shared, ns: &str, name: &str, body: &[u8]) -> Response {
    let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut state = shared.state.lock().unwrap();
    let Some(job) = state.jobs.get(name) else {
        return status(404, "NotFound", &format!("jobs.batch \"{name}\" not found"));
    };
    if job["metadata"]["namespace"] != ns {
        return status(404, "NotFound", &format!("jobs.batch \"{name}\" not found"));
    }
    let uid = job["metadata"]["uid"].clone();
    state.jobs.remove(name);
    state.bump();
    // The garbage collector deletes the pods: at once with Background propagation; with
    // Orphan (the default for Jobs) they would be left running.
    let background = options["propagationPolicy"] == "Background";
    let mut containers = Vec::new();
    if background {
        let pods: Vec<String> = state
            .pods
            .iter()
            .filter(|(_, p)| p.object["metadata"]["labels"]["job-name"] == name)
            .map(|(k, _)| k.clone())
            .collect();
        for pod in pods {
            if let Some(pod) = state.pods.remove(&pod) {
                containers.extend(pod.container);
            }
        }
    }
    drop(state);
    for id in containers {
        kill_container(&id);
    }
    let _ = shared.changes.send(name.to_string());
    ok(json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": "batch", "kind": "jobs", "uid": uid},
    }))
}

fn kill_container(id: &str) {
    let _ = Command::new("runc")
        .args(["kill", id, "KILL"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Change a Job (under the lock), bump its version and tell the watchers.
fn update_job(shared: &Shared, name: &str, change: impl FnOnce(&mut Value)) -> bool {
    let mut state = shared.state.lock().unwrap();
    let version = state.bump();
    let Some(job) = state.jobs.get_mut(name) else {
        return false;
    };
    change(job);
    job["metadata"]["resourceVersion"] = json!(version);
    drop(state);
    let _ = shared.changes.send(name.to_string());
    true
}

fn is_finished(job: &Value) -> bool {
    job["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
    })
}

fn fail_job(shared: &Shared, name: &str, reason: &str, message: &str) {
    let mut failed = false;
    update_job(shared, name, |job| {
        if is_finished(job) {
            return;
        }
        failed = true;
        let conditions = job["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut conditions = conditions;
        conditions.push(json!({
            "type": "Failed", "status": "True", "reason": reason, "message": message,
            "lastProbeTime": now(), "lastTransitionTime": now(),
        }));
        job["status"]["conditions"] = json!(conditions);
        job["status"]["active"] = json!(0);
    });
    if failed {
        let containers: Vec<String> = shared
            .state
            .lock()
            .unwrap()
            .pods
            .values()
            .filter(|p| p.object["metadata"]["labels"]["job-name"] == name)
            .filter_map(|p| p.container.clone())
            .collect();
        for id in containers {
            kill_container(&id);
        }
    }
}

/// The job controller makes a pod for `index`; the kubelet runs it on its own thread.
fn start_pod(shared: &Shared, job_name: &str, index: u64) {
    let mut state = shared.state.lock().unwrap();
    let Some(job) = state.jobs.get(job_name).cloned() else {
        return;
    };
    let version = state.bump();
    let attempt = state
        .pods
        .values()
        .filter(|p| p.object["metadata"]["labels"]["job-name"] == job_name)
        .count();
    let pod_name = format!("{job_name}-{index}-{attempt:05x}");
    let mut labels = job["spec"]["template"]["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels["job-name"] = json!(job_name);
    labels["batch.kubernetes.io/job-name"] = json!(job_name);
    labels["controller-uid"] = job["metadata"]["uid"].clone();
    let mut annotations = json!({});
    if job["spec"]["completionMode"] == "Indexed" {
        annotations["batch.kubernetes.io/job-completion-index"] = json!(index.to_string());
    }
    let mut spec = job["spec"]["template"]["spec"].clone();
    spec["nodeName"] = json!(format!("node-{}", index % 2));
    let object = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": pod_name, "namespace": job["metadata"]["namespace"],
            "labels": labels, "annotations": annotations,
            "creationTimestamp": now(), "resourceVersion": version,
        },
        "spec": spec,
        "status": {
            "phase": "Pending",
            "containerStatuses": [{"name": "main", "ready": false, "restartCount": 0,
                "image": spec["containers"][0]["image"], "imageID": "",
                "state": {"waiting": {"reason": "ContainerCreating"}}}],
        },
    });
    let log = shared.dir.join(format!("{pod_name}.log"));
    state.pods.insert(
        pod_name.clone(),
        Pod {
            object,
            log: log.clone(),
            container: None,
        },
    );
    drop(state);
    let shared = shared.clone();
    let job_name = job_name.to_string();
    std::thread::spawn(move || kubelet(&shared, &job_name, &pod_name, index, &job, &log));
}

fn set_pod(shared: &Shared, pod: &str, change: impl FnOnce(&mut Pod)) -> bool {
    let mut state = shared.state.lock().unwrap();
    let version = state.bump();
    match state.pods.get_mut(pod) {
        Some(p) => {
            change(p);
            p.object["metadata"]["resourceVersion"] = json!(version);
            true
        }
        None => false,
    }
}

fn waiting(shared: &Shared, pod: &str, reason: &str, message: &str) {
    set_pod(shared, pod, |p| {
        p.object["status"]["containerStatuses"][0]["state"] =
            json!({"waiting": {"reason": reason, "message": message}});
    });
}

/// Run pod `pod` of Job `job_name` as a kubelet would: pull and unpack its image, resolve its
/// variables, run its command with runc, and end the pod (and the Job) with its exit code.
fn kubelet(shared: &Shared, job_name: &str, pod: &str, index: u64, job: &Value, log: &Path) {
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let image = container["image"].as_str().unwrap_or_default().to_string();
    let rootfs = match pull(shared, &image) {
        Ok(dir) => dir,
        Err(message) => return waiting(shared, pod, "ErrImagePull", &message),
    };
    let namespace = job["metadata"]["namespace"].as_str().unwrap_or_default();
    let env = match resolve_env(shared, namespace, container, job, index) {
        Ok(env) => env,
        Err(message) => return waiting(shared, pod, "CreateContainerConfigError", &message),
    };
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(rootfs.join("config.json")).unwrap()).unwrap();
    let mut process_env: Vec<String> = config["process"]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .filter(|kv| {
            let key = kv.split('=').next().unwrap_or_default();
            !env.iter().any(|(k, _)| k == key)
        })
        .collect();
    process_env.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    process_env.push(format!("HOSTNAME={pod}"));
    config["process"]["env"] = json!(process_env);
    // The kubelet expands `$(VAR)` and `$$` in the command as in the variables' values.
    config["process"]["args"] = json!(container["command"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| expand(a.as_str().unwrap_or_default(), &env))
        .collect::<Vec<_>>());
    config["process"]["terminal"] = json!(false);
    config["root"] = json!({"path": rootfs.join("rootfs"), "readonly": true});
    let bundle = shared.dir.join(format!("bundle-{pod}"));
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let id = format!("fake-{pod}");
    let out = std::fs::File::create(log).unwrap();
    let mut child = match Command::new("runc")
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
    {
        Ok(child) => child,
        Err(err) => return waiting(shared, pod, "RunContainerError", &err.to_string()),
    };
    let started = now();
    let running = set_pod(shared, pod, |p| {
        p.container = Some(id.clone());
        p.object["status"]["phase"] = json!("Running");
        p.object["status"]["startTime"] = json!(started);
        p.object["status"]["containerStatuses"][0]["ready"] = json!(true);
        p.object["status"]["containerStatuses"][0]["state"] =
            json!({"running": {"startedAt": started}});
    });
    update_job(shared, job_name, |job| {
        job["status"]["ready"] = json!(job["status"]["ready"].as_u64().unwrap_or(0) + 1);
    });
    if !running {
        // Deleted while it started.
        kill_container(&id);
    }
    let status = child.wait().unwrap();
    let _ = Command::new("runc")
        .args(["delete", "--force", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let finished = now();
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    let still_here = set_pod(shared, pod, |p| {
        p.container = None;
        p.object["status"]["phase"] = json!(phase);
        p.object["status"]["containerStatuses"][0]["ready"] = json!(false);
        p.object["status"]["containerStatuses"][0]["state"] = json!({"terminated": {
            "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
            "startedAt": started, "finishedAt": finished,
        }});
    });
    if !still_here {
        return;
    }
    // The job controller.
    let mut retry = false;
    let mut fail = false;
    update_job(shared, job_name, |job| {
        if is_finished(job) {
            return;
        }
        let ready = job["status"]["ready"].as_u64().unwrap_or(1);
        job["status"]["ready"] = json!(ready.saturating_sub(1));
        if code == 0 {
            let succeeded = job["status"]["succeeded"].as_u64().unwrap_or(0) + 1;
            job["status"]["succeeded"] = json!(succeeded);
            let active = job["status"]["active"].as_u64().unwrap_or(1);
            job["status"]["active"] = json!(active.saturating_sub(1));
            if succeeded >= job["spec"]["completions"].as_u64().unwrap_or(1) {
                job["status"]["completionTime"] = json!(finished);
                job["status"]["conditions"] = json!([
                    {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "lastProbeTime": finished, "lastTransitionTime": finished},
                    {"type": "Complete", "status": "True", "reason": "CompletionsReached", "lastProbeTime": finished, "lastTransitionTime": finished},
                ]);
            }
        } else {
            let failed = job["status"]["failed"].as_u64().unwrap_or(0) + 1;
            job["status"]["failed"] = json!(failed);
            if failed > job["spec"]["backoffLimit"].as_u64().unwrap_or(6) {
                fail = true;
            } else {
                retry = true;
            }
        }
    });
    if fail {
        fail_job(
            shared,
            job_name,
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        );
    } else if retry {
        start_pod(shared, job_name, index);
    }
}

/// The container's variables as the kubelet makes them: `secretKeyRef` from the Secret, each
/// value's `$(VAR)` expanded from the ones before it, `$$` as `$`; and the index of an Indexed
/// Job's pod.
fn resolve_env(
    shared: &Shared,
    namespace: &str,
    container: &Value,
    job: &Value,
    index: u64,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = Vec::new();
    if job["spec"]["completionMode"] == "Indexed" {
        env.push(("JOB_COMPLETION_INDEX".into(), index.to_string()));
    }
    for var in container["env"].as_array().cloned().unwrap_or_default() {
        let name = var["name"].as_str().unwrap_or_default().to_string();
        let value = if let Some(reference) = var["valueFrom"].get("secretKeyRef") {
            let secret = reference["name"].as_str().unwrap_or_default();
            let key = reference["key"].as_str().unwrap_or_default();
            let state = shared.state.lock().unwrap();
            let data = state
                .secrets
                .get(secret)
                .ok_or(format!("secret \"{secret}\" not found"))?;
            data.get(key).cloned().ok_or(format!(
                "couldn't find key {key} in Secret {namespace}/{secret}"
            ))?
        } else {
            expand(var["value"].as_str().unwrap_or_default(), &env)
        };
        env.push((name, value));
    }
    Ok(env)
}

/// Kubernetes' expansion of a variable's value (k8s.io/kubernetes third_party/forked/golang/
/// expansion): `$(NAME)` of a variable defined before it, `$$` as `$`, anything else as it is.
pub fn expand(value: &str, env: &[(String, String)]) -> String {
    let bytes = value.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = value[i + 2..].find(')') {
                        let name = &value[i + 2..i + 2 + end];
                        match env.iter().rev().find(|(k, _)| k == name) {
                            Some((_, v)) => out.push_str(v),
                            None => out.push_str(&value[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = value[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The image, pulled from its registry by digest and unpacked once (a node's image cache).
fn pull(shared: &Shared, image: &str) -> Result<PathBuf, String> {
    // One pull at a time: two pods of one image unpack it once.
    static PULLING: Mutex<()> = Mutex::new(());
    let _one = PULLING.lock().unwrap();
    if let Some(dir) = shared.state.lock().unwrap().images.get(image) {
        return Ok(dir.clone());
    }
    let n = shared.state.lock().unwrap().images.len();
    let layout = shared.dir.join(format!("image-{n}"));
    let bundle = shared.dir.join(format!("unpacked-{n}"));
    let run = |command: &mut Command| -> Result<(), String> {
        let out = command.output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    };
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{image}"),
        &format!("oci:{}:pulled", layout.display()),
    ]))
    .map_err(|e| format!("Failed to pull image \"{image}\": {e}"))?;
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:pulled", layout.display()))
        .arg(&bundle))
    .map_err(|e| format!("Failed to unpack image \"{image}\": {e}"))?;
    shared
        .state
        .lock()
        .unwrap()
        .images
        .insert(image.to_string(), bundle.clone());
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn expansion_is_kubernetes_own() {
        let env = vec![("A".to_string(), "x".to_string())];
        assert_eq!(
            super::expand("$(A)-$$(A)-$(B)-$$-$", &env),
            "x-$(A)-$(B)-$-$"
        );
    }
}
