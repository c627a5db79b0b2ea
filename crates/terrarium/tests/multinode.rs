//! Many nodes on one machine: a job spread over several nodes gets the same environment on
//! each. The nodes are namespaces `scripts/nodes.sh start DIR` makes (which `.ci/run` does):
//! each has its own hostname, its own address on a private bridge, and its own node-local
//! cache that the others cannot see; the test's workspace and caches are on the filesystem
//! they all share. Each test is skipped when its cluster's variable is unset.
//!
//! Some tests kill one node's daemon mid-job (`scripts/nodes.sh kill`) and start it again
//! after (`revive`): they have their engine's nodes to themselves, through [`SLURM`], [`RAY`]
//! and [`SPARK`], which the other tests of that engine hold shared.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use common::{make_wheels, uv_available, TestContext};

/// Each engine's nodes: shared by the tests that only run jobs, exclusive to one that kills a
/// daemon.
static SLURM: RwLock<()> = RwLock::new(());
static RAY: RwLock<()> = RwLock::new(());
static SPARK: RwLock<()> = RwLock::new(());

/// The nodes' caches: a test that builds into them and then checks that a second job built
/// nothing holds them alone, so that another test's build is not taken for its own.
static NODE_CACHES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn shared(lock: &RwLock<()>) -> RwLockReadGuard<'_, ()> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn exclusive(lock: &RwLock<()>) -> RwLockWriteGuard<'_, ()> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// `scripts/nodes.sh ACTION DIR ENGINE NODE`, on the nodes of `TERRARIUM_TEST_NODES_DIR`.
fn nodes_sh(action: &str, engine: &str, node: &str) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/nodes.sh");
    let dir = std::env::var("TERRARIUM_TEST_NODES_DIR").unwrap();
    Command::new(script)
        .args([action, &dir, engine, node])
        .output()
        .unwrap()
}

/// One node's daemon, killed by `scripts/nodes.sh kill`, and started again (`revive`, which
/// waits until the engine has both nodes back) when this is dropped, when the test fails too.
struct Killed {
    engine: &'static str,
    node: &'static str,
    at: Instant,
}

impl Killed {
    fn now(engine: &'static str, node: &'static str) -> Self {
        let killed = Self {
            engine,
            node,
            at: Instant::now(),
        };
        let out = nodes_sh("kill", engine, node);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        killed
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let started = Instant::now();
        let out = nodes_sh("revive", self.engine, self.node);
        eprintln!(
            "{} on {} revived in {:?}",
            self.engine,
            self.node,
            started.elapsed()
        );
        if !out.status.success() && !std::thread::panicking() {
            panic!(
                "could not revive {} on {}: {}",
                self.engine,
                self.node,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The output of `command`, which must end within `seconds`: killed, and the test failed, if
/// it hangs.
fn within(mut command: Command, seconds: u64) -> common::Run {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || send.send(child.wait_with_output()));
    match receive.recv_timeout(Duration::from_secs(seconds)) {
        Ok(output) => output.unwrap().into(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{command:?} hung: still running after {seconds} s");
        }
    }
}

/// Poll until `done` holds, failing after `seconds`.
fn poll(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not after {seconds} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A variable `scripts/nodes.sh start` prints, or `None` with a message saying how to get it.
fn nodes_var(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    if value.is_none() {
        eprintln!("skipped: {name} is not set (eval \"$(scripts/nodes.sh start DIR)\")");
    }
    value
}

/// The nodes' names, and where this machine sees each node's cache (`DIR/nodes/NODE/cache`,
/// which only that node sees, at `TERRARIUM_TEST_NODES_NODE_CACHE`).
fn node_caches() -> Vec<(String, PathBuf)> {
    let dir = PathBuf::from(std::env::var("TERRARIUM_TEST_NODES_DIR").unwrap());
    std::env::var("TERRARIUM_TEST_NODES_NAMES")
        .unwrap()
        .split(',')
        .map(|name| (name.to_string(), dir.join("nodes").join(name).join("cache")))
        .collect()
}

/// A workspace with a pip environment `NAME` of alpha 1.0 (from a local wheelhouse) and
/// `more` requirements from the wheelhouses `links`.
fn pip_environment(name: &str, links: &[&str], more: &[&str]) -> TestContext {
    let cx = TestContext::new();
    let wheels = cx.path("wheels");
    make_wheels(&wheels, &["alpha==1.0"]);
    let mut pip = vec![
        "--no-index".to_string(),
        format!("--find-links {}", wheels.display()),
    ];
    pip.extend(links.iter().map(|link| format!("--find-links {link}")));
    pip.push("alpha".into());
    pip.extend(more.iter().map(|m| m.to_string()));
    let items: String = pip.iter().map(|p| format!("    - {p}\n")).collect();
    let file = cx.write("env.yml", format!("name: {name}\npython:\n  pip:\n{items}"));
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    cx
}

/// `report(terrarium, workspace, node_cache, backing, environment)`: what a task sees of its
/// node, as a dict: its hostname, the prefix it runs in, `terrarium env verify ENVIRONMENT`
/// from the node's own cache, every file of the prefix with its sha256 (links with their target),
/// and what it sees of the nodes' caches' backing directories (`backing`).
const NODE_REPORT: &str = r#"
import hashlib, json, os, socket, subprocess, sys

def report(terrarium, workspace, node_cache, backing, environment):
    import alpha
    prefix = os.environ["TERRARIUM_PREFIX"]
    verify = subprocess.run(
        [terrarium, "--workspace", workspace, "env", "verify", environment, "--json"],
        env={**os.environ, "TERRARIUM_CACHE_DIR": node_cache},
        capture_output=True, text=True,
    )
    files = {}
    # Not the environment's files but records of this node's build and use: how long the
    # build took, and when the prefix was last used (env.json's lock hash is compared apart).
    records = {".terrarium/env.json", ".terrarium/last-used"}
    for root, dirs, names in os.walk(prefix):
        # Bytecode the interpreter writes as it runs is not the environment's either.
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, prefix)
            if rel in records:
                continue
            if os.path.islink(path):
                files[rel] = "link " + os.readlink(path)
            else:
                with open(path, "rb") as f:
                    files[rel] = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(prefix, ".terrarium/env.json")) as f:
        lock_hash = json.load(f)["lock_hash"]
    return {
        "host": socket.gethostname(),
        "prefix": prefix,
        "python_prefix": sys.prefix,
        "alpha": alpha.__version__,
        "lock_hash": lock_hash,
        "verify_code": verify.returncode,
        "verify": json.loads(verify.stdout) if verify.returncode == 0 else verify.stderr,
        "files": files,
        "backing": sorted(os.listdir(backing)) if os.path.isdir(backing) else None,
    }
"#;

/// A Slurm task's command: its node's report as one `NODE {json}` line. Arguments: those of
/// `report`.
const SLURM_TASK: &str = r#"
import json, sys
print("NODE " + json.dumps(report(*sys.argv[1:6]), sort_keys=True), flush=True)
"#;

/// A Ray driver: one task pinned to each node of the cluster, each returning its node's report,
/// printed as `NODE {json}` lines. Arguments as [`SLURM_TASK`]'s.
const RAY_DRIVER: &str = r#"
import json, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
task = ray.remote(num_cpus=1)(report)
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
pinned = [
    task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
    for node in nodes
]
print("driver on", socket.gethostname(), "in", sys.prefix, "with", len(nodes), "nodes", flush=True)
for found in ray.get([t.remote(*sys.argv[1:6]) for t in pinned]):
    print("NODE " + json.dumps(found, sort_keys=True), flush=True)
"#;

/// The `NODE` reports in `text`, by host.
fn node_reports(text: &str) -> BTreeMap<String, serde_json::Value> {
    text.lines()
        .filter_map(|line| line.strip_prefix("NODE "))
        .map(|json| {
            let report: serde_json::Value = serde_json::from_str(json).unwrap();
            (report["host"].as_str().unwrap().to_string(), report)
        })
        .collect()
}

/// Check the nodes' reports: one from each of `names`; on each, the environment in its own
/// node cache, verified against the lock there, the other nodes' caches out of sight; and the
/// same files with the same hashes on every node. Returns the environment's key (its
/// directory's name in the node caches).
fn assert_same_environment(
    reports: &BTreeMap<String, serde_json::Value>,
    names: &[String],
    node_cache: &str,
) -> String {
    assert_eq!(
        reports.keys().cloned().collect::<Vec<_>>(),
        names,
        "{reports:#?}"
    );
    for (host, report) in reports {
        assert_eq!(report["verify_code"], 0, "{host}: {report}");
        let verified = &report["verify"];
        assert_eq!(verified["problems"], serde_json::json!([]), "{host}");
        assert!(verified["files_checked"].as_u64().unwrap() > 0, "{host}");
        assert_eq!(verified["prefix"], report["prefix"], "{host}");
        assert!(
            report["prefix"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{node_cache}/")),
            "{host}: {report}"
        );
        assert_eq!(report["python_prefix"], report["prefix"], "{host}");
        assert_eq!(report["alpha"], "1.0", "{host}");
        assert_eq!(report["backing"], serde_json::json!([]), "{host}");
    }
    let first = &reports[&names[0]];
    assert!(first["lock_hash"].as_str().unwrap().starts_with("sha256:"));
    let files = first["files"].as_object().unwrap();
    assert!(files.len() > 10, "{files:?}");
    for name in &names[1..] {
        let other = &reports[name];
        assert_eq!(first["prefix"], other["prefix"]);
        assert_eq!(first["lock_hash"], other["lock_hash"]);
        let differ: Vec<&String> = files
            .keys()
            .filter(|k| other["files"][k.as_str()] != files[k.as_str()])
            .chain(
                other["files"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| !files.contains_key(k.as_str())),
            )
            .collect();
        assert!(
            differ.is_empty(),
            "files that differ between {} and {name}: {differ:?}",
            names[0]
        );
    }
    eprintln!(
        "{} files with the same sha256 on {}",
        files.len(),
        names.join(" and ")
    );
    Path::new(first["prefix"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A second job on the same lock: every node reports the same files as the first time and
/// verifies, and no node cache built anything (`after`: the caches after the first job).
fn assert_nothing_rebuilt(
    names: &[String],
    reports: &BTreeMap<String, serde_json::Value>,
    again: &BTreeMap<String, serde_json::Value>,
    caches: &[(String, PathBuf)],
    after: &[BTreeMap<String, std::time::SystemTime>],
) {
    for host in names {
        assert_eq!(again[host]["files"], reports[host]["files"], "{host}");
        assert_eq!(again[host]["verify_code"], 0, "{host}");
    }
    let last: Vec<_> = caches.iter().map(|(_, cache)| built(cache)).collect();
    assert_eq!(last, after);
}

/// The directories of built environments in a node cache, with their marker's modification
/// time: what the node built, and when.
fn built(cache: &Path) -> BTreeMap<String, std::time::SystemTime> {
    let Ok(entries) = std::fs::read_dir(cache.join("envs")) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.join(".terrarium/env.json").is_file())
        .map(|p| {
            let stamp = std::fs::metadata(p.join(".terrarium/env.json"))
                .unwrap()
                .modified()
                .unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), stamp)
        })
        .collect()
}

/// `run --detach ARGS`, waited for: the run's id, its exit code, and its logs by task.
fn run_and_wait(cx: &TestContext, args: &[&str]) -> (String, i32, BTreeMap<String, String>) {
    let mut all = vec!["run", "--detach"];
    all.extend_from_slice(args);
    let id = cx.run(&all).success().stdout.trim().to_string();
    let waited = cx.run(&["runs", "wait", &id]);
    // Brings the run's copy of logs an engine keeps itself (Ray's) up to date.
    cx.run(&["runs", "logs", &id]).success();
    let dir = cx.workspace().join("runs").join(&id);
    let logs = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    (id, waited.code, logs)
}

/// A `--nodes 2` Slurm job with delivery=pack: each node builds the environment from the pack
/// into its own cache, `env verify` passes on each, and every file of the prefix has the same
/// hash on both. A second job on the same lock builds nothing on any node.
#[test]
fn a_slurm_job_on_two_nodes_builds_the_same_environment_on_each() {
    let Some(conf) = nodes_var("TERRARIUM_TEST_NODES_SLURM_CONF") else {
        return;
    };
    if !uv_available() {
        return;
    }
    let _nodes = shared(&SLURM);
    let _caches = NODE_CACHES.lock().unwrap_or_else(PoisonError::into_inner);
    let node_cache = std::env::var("TERRARIUM_TEST_NODES_NODE_CACHE").unwrap();
    let backing = PathBuf::from(std::env::var("TERRARIUM_TEST_NODES_DIR").unwrap()).join("nodes");
    let caches = node_caches();
    assert_eq!(caches.len(), 2, "{caches:?}");
    let before: Vec<_> = caches.iter().map(|(_, cache)| built(cache)).collect();

    let cx = pip_environment("wh", &[], &[]);
    cx.run(&[
        "compute",
        "add",
        "nodes",
        "--kind",
        "slurm",
        "--set",
        &format!("conf={conf}"),
        "--set",
        "delivery=pack",
        "--set",
        &format!("cache={}", cx.path("shared").display()),
        "--set",
        &format!("node_cache={node_cache}"),
    ])
    .success();
    let workspace = cx.workspace().display().to_string();
    let backing = backing.display().to_string();
    let slurm_task = format!("{NODE_REPORT}{SLURM_TASK}");
    let args = [
        "--env",
        "wh",
        "--target",
        "nodes",
        "--nodes",
        "2",
        "--",
        "python",
        "-c",
        &slurm_task,
        env!("CARGO_BIN_EXE_terrarium"),
        &workspace,
        &node_cache,
        &backing,
        "wh:1",
    ];

    let started = std::time::Instant::now();
    let (id, code, logs) = run_and_wait(&cx, &args);
    eprintln!("the first two-node job took {:?}", started.elapsed());
    assert_eq!(code, 0, "{logs:#?}");
    let shown = cx.run(&["runs", "show", &id, "--json"]).success().json();
    assert_eq!(shown["job"]["nodes"], 2, "{shown}");
    // One task per node, each of which built the environment from the pack, and says so.
    let mut hosts = Vec::new();
    for task in ["task-0", "task-1"] {
        let log = &logs[task];
        let said: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("terrarium: node"))
            .collect();
        assert_eq!(said.len(), 1, "{task}:\n{log}");
        assert!(said[0].contains(": built sha256:"), "{task}:\n{log}");
        assert!(said[0].contains(".tpack"), "{task}:\n{log}");
        hosts.push(said[0].split(':').nth(1).unwrap().trim().to_string());
    }
    hosts.sort();
    let names: Vec<String> = caches.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(hosts, names, "{logs:#?}");

    let all: String = logs.values().cloned().collect();
    let reports = node_reports(&all);
    let key = assert_same_environment(&reports, &names, &node_cache);
    // Each node built it once, in its own cache, and the shared cache holds the pack only.
    let after: Vec<_> = caches.iter().map(|(_, cache)| built(cache)).collect();
    for ((name, _), (was, is)) in caches.iter().zip(before.iter().zip(&after)) {
        assert!(!was.contains_key(&key), "{name} had it before the job");
        assert!(is.contains_key(&key), "{name}: {is:?}");
    }
    assert!(!cx.path("shared").join("envs").exists());

    // A second job on the same lock builds nothing on any node: no task says it built, and
    // neither node's environment was touched.
    let (_, code, logs) = run_and_wait(&cx, &args);
    assert_eq!(code, 0, "{logs:#?}");
    for task in ["task-0", "task-1"] {
        let log = &logs[task];
        assert!(
            !log.lines().any(|l| l.starts_with("terrarium: node")),
            "{task}:\n{log}"
        );
    }
    let again = node_reports(&logs.values().cloned().collect::<String>());
    assert_eq!(again.keys().cloned().collect::<Vec<_>>(), names);
    assert_nothing_rebuilt(&names, &reports, &again, &caches, &after);
}

/// A Ray job on a head and a worker node with delivery=pack, whose tasks land on both: each
/// task runs in the environment, built from the pack in its node's own cache, verified there,
/// with the same files on both nodes. A second job on the same lock builds nothing.
#[test]
fn a_ray_job_whose_tasks_land_on_both_nodes_sees_the_same_environment() {
    let Some(address) = nodes_var("TERRARIUM_TEST_NODES_RAY_ADDRESS") else {
        return;
    };
    if !uv_available() {
        return;
    }
    let _nodes = shared(&RAY);
    let _caches = NODE_CACHES.lock().unwrap_or_else(PoisonError::into_inner);
    let token_file = std::env::var("TERRARIUM_TEST_NODES_RAY_TOKEN_FILE").unwrap();
    let ray_wheels = std::env::var("TERRARIUM_TEST_NODES_RAY_WHEELS").unwrap();
    let node_cache = std::env::var("TERRARIUM_TEST_NODES_NODE_CACHE").unwrap();
    let backing = PathBuf::from(std::env::var("TERRARIUM_TEST_NODES_DIR").unwrap()).join("nodes");
    let caches = node_caches();
    let names: Vec<String> = caches.iter().map(|(name, _)| name.clone()).collect();
    let before: Vec<_> = caches.iter().map(|(_, cache)| built(cache)).collect();

    // The cluster's ray, so that the job's workers can run in the environment.
    let cx = pip_environment("rw", &[&ray_wheels], &["ray==2.60.0"]);
    cx.run(&[
        "compute",
        "add",
        "cluster",
        "--kind",
        "ray",
        "--set",
        &format!("address={address}"),
        "--set",
        &format!("token_file={token_file}"),
        "--set",
        "delivery=pack",
        "--set",
        &format!("cache={}", cx.path("shared").display()),
        "--set",
        &format!("node_cache={node_cache}"),
    ])
    .success();
    let workspace = cx.workspace().display().to_string();
    let backing = backing.display().to_string();
    let driver = format!("{NODE_REPORT}{RAY_DRIVER}");
    let args = [
        "--env",
        "rw",
        "--target",
        "cluster",
        "--",
        "python",
        "-c",
        &driver,
        env!("CARGO_BIN_EXE_terrarium"),
        &workspace,
        &node_cache,
        &backing,
        "rw:1",
    ];

    let started = std::time::Instant::now();
    let (_, code, logs) = run_and_wait(&cx, &args);
    eprintln!("the first Ray job took {:?}", started.elapsed());
    let log = &logs["task-0"];
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("with 2 nodes"), "{log}");
    let reports = node_reports(log);
    let key = assert_same_environment(&reports, &names, &node_cache);
    // Each node built it, in its own cache: the driver's node for the driver, the other for
    // the task's worker.
    let after: Vec<_> = caches.iter().map(|(_, cache)| built(cache)).collect();
    for ((name, _), (was, is)) in caches.iter().zip(before.iter().zip(&after)) {
        assert!(!was.contains_key(&key), "{name} had it before the job");
        assert!(is.contains_key(&key), "{name}: {is:?}");
    }
    assert!(log.contains(": built sha256:"), "{log}");
    assert!(!cx.path("shared").join("envs").exists());

    // A second job on the same lock builds nothing on any node.
    let (_, code, logs) = run_and_wait(&cx, &args);
    let log = &logs["task-0"];
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(": built sha256:"), "{log}");
    let again = node_reports(log);
    assert_nothing_rebuilt(&names, &reports, &again, &caches, &after);
}

/// A Spark job (the driver on this machine, a master and a worker on each node): its executors
/// on both nodes run the environment's Python, from the prefix on the shared filesystem,
/// with its packages.
#[test]
fn a_spark_jobs_executors_on_both_nodes_use_the_environment() {
    let Some(master) = nodes_var("TERRARIUM_TEST_NODES_SPARK_MASTER") else {
        return;
    };
    if !uv_available() {
        return;
    }
    let _nodes = shared(&SPARK);
    let master_ui = std::env::var("TERRARIUM_TEST_NODES_SPARK_MASTER_UI").unwrap();
    let wheels = std::env::var("TERRARIUM_TEST_NODES_SPARK_WHEELS").unwrap();
    let login_ip = std::env::var("TERRARIUM_TEST_NODES_LOGIN_IP").unwrap();
    let names: Vec<String> = node_caches().into_iter().map(|(name, _)| name).collect();

    let cx = pip_environment("sp", &[&wheels], &["pyspark"]);
    cx.run(&[
        "compute",
        "add",
        "standalone",
        "--kind",
        "spark",
        "--set",
        &format!("master={master}"),
        "--set",
        &format!("master_ui={master_ui}"),
        "--set",
        &format!("cache={}", cx.path("shared").display()),
        "--set",
        "executor_cores=1",
        "--set",
        "executor_memory=512m",
        // An executor on each node (one core each) before the first task, and the UI off.
        "--set",
        "conf=spark.cores.max=2;spark.scheduler.minRegisteredResourcesRatio=1.0;spark.scheduler.maxRegisteredResourcesWaitingTime=120s;spark.ui.enabled=false",
    ])
    .success();
    cx.write(
        "job.py",
        "import json, os, socket, sys\n\
         from pyspark.sql import SparkSession\n\
         spark = SparkSession.builder.getOrCreate()\n\
         def where(_):\n\
         \x20   import alpha, os, socket, sys, time\n\
         \x20   time.sleep(0.2)\n\
         \x20   yield (socket.gethostname(), sys.executable, sys.prefix, alpha.__version__)\n\
         seen = sorted(set(spark.sparkContext.parallelize(range(16), 16).mapPartitions(where).collect()))\n\
         print('driver on', socket.gethostname(), 'in', sys.prefix, flush=True)\n\
         for host, executable, prefix, alpha in seen:\n\
         \x20   print('EXECUTOR ' + json.dumps({'host': host, 'executable': executable, 'prefix': prefix, 'alpha': alpha, 'driver_prefix': sys.prefix}), flush=True)\n\
         spark.stop()\n",
    );
    let started = std::time::Instant::now();
    let out: common::Run = cx
        .command()
        .current_dir(cx.path(""))
        // The driver runs here: the executors reach it at this machine's address on the
        // nodes' bridge.
        .env("SPARK_LOCAL_IP", &login_ip)
        .args([
            "run",
            "--env",
            "sp",
            "--target",
            "standalone",
            "--",
            "python",
            "job.py",
        ])
        .output()
        .unwrap()
        .into();
    eprintln!("the Spark job took {:?}", started.elapsed());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let executors: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .filter_map(|line| line.strip_prefix("EXECUTOR "))
        .map(|json| serde_json::from_str(json).unwrap())
        .collect();
    let mut hosts: Vec<String> = executors
        .iter()
        .map(|e| e["host"].as_str().unwrap().to_string())
        .collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts, names, "{}", out.stdout);
    for executor in &executors {
        assert_eq!(executor["prefix"], executor["driver_prefix"], "{executor}");
        assert_eq!(
            executor["executable"].as_str().unwrap(),
            format!("{}/bin/python", executor["prefix"].as_str().unwrap()),
            "{executor}"
        );
        assert_eq!(executor["alpha"], "1.0", "{executor}");
    }
    assert!(
        executors[0]["prefix"]
            .as_str()
            .unwrap()
            .starts_with(&cx.path("shared").display().to_string()),
        "{}",
        out.stdout
    );
}

/// A task that says where it runs, then holds its node for five minutes.
const HOLD: &str = "import socket, time\n\
print('RUNNING on', socket.gethostname(), flush=True)\n\
time.sleep(300)\n";

/// `runs wait ID` after one of the run's nodes died: it returns (within `seconds`), and the
/// run's record, shown as JSON, is final.
fn wait_after_kill(
    cx: &TestContext,
    id: &str,
    killed: &Killed,
    seconds: u64,
) -> (common::Run, serde_json::Value) {
    let mut wait = cx.command();
    wait.args(["runs", "wait", id]);
    let waited = within(wait, seconds);
    eprintln!(
        "`runs wait` returned {:?} after the kill, with {}",
        killed.at.elapsed(),
        waited.code
    );
    let shown = cx.run(&["runs", "show", id, "--json"]).success().json();
    (waited, shown)
}

/// A `--nodes 2` Slurm job running on both nodes, whose second node's slurmd dies (that daemon
/// alone: the job's step there lives on, silent): Slurm finds the node not answering after
/// SlurmdTimeout (10 s in scripts/nodes.sh, about 25 s in all with its pings), sets it DOWN and
/// ends the job NODE_FAIL, which is the run's end, `node_failed`, not a requeue; `runs wait`
/// returns.
#[test]
fn a_slurm_job_whose_second_nodes_slurmd_dies_ends_node_failed() {
    let Some(conf) = nodes_var("TERRARIUM_TEST_NODES_SLURM_CONF") else {
        return;
    };
    if !uv_available() {
        return;
    }
    let _nodes = exclusive(&SLURM);
    let cx = pip_environment("kn", &[], &[]);
    cx.run(&[
        "compute",
        "add",
        "nodes",
        "--kind",
        "slurm",
        "--set",
        &format!("conf={conf}"),
        "--set",
        &format!("cache={}", cx.path("shared").display()),
    ])
    .success();
    let id = cx
        .run(&[
            "run", "--detach", "--env", "kn", "--target", "nodes", "--nodes", "2", "--", "python",
            "-c", HOLD,
        ])
        .success()
        .stdout
        .trim()
        .to_string();
    let dir = cx.workspace().join("runs").join(&id);
    let log =
        |task: &str| std::fs::read_to_string(dir.join(format!("{task}.log"))).unwrap_or_default();
    poll("a task running on each node", 60, || {
        log("task-0").contains("RUNNING on") && log("task-1").contains("RUNNING on")
    });
    let mut hosts = vec![log("task-0"), log("task-1")];
    hosts.sort();
    assert!(hosts[0].contains("RUNNING on node0"), "{hosts:?}");
    assert!(hosts[1].contains("RUNNING on node1"), "{hosts:?}");

    let killed = Killed::now("slurm", "node1");
    let (waited, shown) = wait_after_kill(&cx, &id, &killed, 90);
    assert_ne!(waited.code, 0, "{}", waited.stderr);
    assert_eq!(shown["state"], "node_failed", "{shown}");
    assert_eq!(shown["job"]["nodes"], 2, "{shown}");
    eprintln!("reason: {}", shown["job"]["reason"]);
}

/// A Ray job whose task runs on the worker node (pinned there, no retries), whose raylet dies:
/// the task fails, the driver with it, and the run ends `failed` (or `lost`) with a reason;
/// `runs wait` returns.
#[test]
fn a_ray_job_whose_task_nodes_raylet_dies_fails_with_a_reason() {
    let Some(address) = nodes_var("TERRARIUM_TEST_NODES_RAY_ADDRESS") else {
        return;
    };
    if !uv_available() {
        return;
    }
    let _nodes = exclusive(&RAY);
    let token_file = std::env::var("TERRARIUM_TEST_NODES_RAY_TOKEN_FILE").unwrap();
    let ray_wheels = std::env::var("TERRARIUM_TEST_NODES_RAY_WHEELS").unwrap();
    let cx = pip_environment("rk", &[&ray_wheels], &["ray==2.60.0"]);
    cx.run(&[
        "compute",
        "add",
        "cluster",
        "--kind",
        "ray",
        "--set",
        &format!("address={address}"),
        "--set",
        &format!("token_file={token_file}"),
        "--set",
        &format!("cache={}", cx.path("shared").display()),
    ])
    .success();
    let driver = r#"import socket, sys, time
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
here = ray.get_runtime_context().get_node_id()
other = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != here][0]
print("driver on", socket.gethostname(), flush=True)

@ray.remote(num_cpus=1, max_retries=0)
def hold(marker):
    with open(marker, "w") as f:
        f.write(socket.gethostname())
    time.sleep(300)

pinned = NodeAffinitySchedulingStrategy(other, soft=False)
ray.get(hold.options(scheduling_strategy=pinned).remote(sys.argv[1]))
print("the task returned", flush=True)
"#;
    let marker = cx.path("task-started");
    let id = cx
        .run(&[
            "run",
            "--detach",
            "--env",
            "rk",
            "--target",
            "cluster",
            "--",
            "python",
            "-c",
            driver,
            &marker.display().to_string(),
        ])
        .success()
        .stdout
        .trim()
        .to_string();
    poll("the task running on node1", 120, || {
        std::fs::read_to_string(&marker).is_ok_and(|host| host == "node1")
    });

    let killed = Killed::now("ray", "node1");
    let (_, shown) = wait_after_kill(&cx, &id, &killed, 120);
    assert!(
        shown["state"] == "failed" || shown["state"] == "lost",
        "{shown}"
    );
    let reason = shown["job"]["reason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "{shown}");
    // The driver's own words say why: Ray's exception for a task whose node died.
    let logs = cx.run(&["runs", "logs", &id]).stdout;
    let why = logs
        .lines()
        .find(|l| l.starts_with("ray.exceptions."))
        .unwrap_or_else(|| panic!("no Ray exception in the logs:\n{logs}"));
    eprintln!("reason: {reason}; the driver: {why}");
    assert!(
        why.contains("NodeDiedError") || why.contains("WorkerCrashedError"),
        "{why}"
    );
    // And the run's reason says it too, when Ray failed the job (not when it was lost).
    if shown["state"] == "failed" {
        assert!(
            reason.contains("NodeDiedError") || reason.contains("WorkerCrashedError"),
            "{reason}"
        );
    }
    assert!(!logs.lines().any(|l| l == "the task returned"), "{logs}");
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A Spark job with an executor on each node, whose second node's worker dies (with its
/// executor) mid-job: Spark runs the lost tasks again on the other node's executor and the job
/// completes, every task's result there; the run does not hang.
#[test]
fn a_spark_job_whose_second_worker_dies_completes_on_the_other() {
    let Some(master) = nodes_var("TERRARIUM_TEST_NODES_SPARK_MASTER") else {
        return;
    };
    if !uv_available() {
        return;
    }
    let _nodes = exclusive(&SPARK);
    let master_ui = std::env::var("TERRARIUM_TEST_NODES_SPARK_MASTER_UI").unwrap();
    let wheels = std::env::var("TERRARIUM_TEST_NODES_SPARK_WHEELS").unwrap();
    let login_ip = std::env::var("TERRARIUM_TEST_NODES_LOGIN_IP").unwrap();
    let cx = pip_environment("sk", &[&wheels], &["pyspark"]);
    cx.run(&[
        "compute",
        "add",
        "standalone",
        "--kind",
        "spark",
        "--set",
        &format!("master={master}"),
        "--set",
        &format!("master_ui={master_ui}"),
        "--set",
        &format!("cache={}", cx.path("shared").display()),
        "--set",
        "executor_cores=1",
        "--set",
        "executor_memory=512m",
        "--set",
        "conf=spark.cores.max=2;spark.scheduler.minRegisteredResourcesRatio=1.0;spark.scheduler.maxRegisteredResourcesWaitingTime=120s;spark.ui.enabled=false",
    ])
    .success();
    let marks = cx.path("marks");
    std::fs::create_dir_all(&marks).unwrap();
    cx.write(
        "job.py",
        "import os, sys\n\
         from pyspark.sql import SparkSession\n\
         spark = SparkSession.builder.getOrCreate()\n\
         marks = sys.argv[1]\n\
         def slow(i):\n\
         \x20   import os, socket, time\n\
         \x20   host = socket.gethostname()\n\
         \x20   open(os.path.join(marks, f'{host}-{i}-{os.getpid()}'), 'w').close()\n\
         \x20   time.sleep(2)\n\
         \x20   return (i, host)\n\
         done = sorted(spark.sparkContext.parallelize(range(6), 6).map(slow).collect())\n\
         print('DONE', len(done), 'tasks on', sorted(set(h for _, h in done)), flush=True)\n\
         spark.stop()\n",
    );
    let mut run = cx.command();
    run.current_dir(cx.path(""))
        .env("SPARK_LOCAL_IP", &login_ip)
        .args([
            "run",
            "--env",
            "sk",
            "--target",
            "standalone",
            "--",
            "python",
            "job.py",
        ])
        .arg(&marks);
    let started = Instant::now();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || send.send(within(run, 240)));
    poll("a task running on node1", 180, || {
        std::fs::read_dir(&marks).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("node1-")
        })
    });
    eprintln!("a task ran on node1 after {:?}", started.elapsed());
    let killed = Killed::now("spark", "node1");
    let out = receive.recv().unwrap();
    eprintln!(
        "the Spark job ended {:?} after the kill, with {}",
        killed.at.elapsed(),
        out.code
    );
    assert_eq!(
        out.code,
        0,
        "{}\n{}",
        out.stdout,
        last_lines(&out.stderr, 40)
    );
    assert!(
        out.stdout.contains("DONE 6 tasks on ['node0"),
        "{}",
        out.stdout
    );
    drop(killed);
}
