//! Many nodes on one machine: a job spread over several nodes gets the same environment on
//! each. The nodes are namespaces `scripts/nodes.sh start DIR` makes (which `.ci/run` does):
//! each has its own hostname, its own address on a private bridge, and its own node-local
//! cache that the others cannot see; the test's workspace and caches are on the filesystem
//! they all share. Each test is skipped when its cluster's variable is unset.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{make_wheels, uv_available, TestContext};

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

/// A workspace with a pip environment `wh` (alpha 1.0 from a local wheelhouse).
fn pip_environment() -> TestContext {
    let cx = TestContext::new();
    let wheels = cx.path("wheels");
    make_wheels(&wheels, &["alpha==1.0"]);
    let file = cx.write(
        "env.yml",
        format!(
            "name: wh\npython:\n  pip:\n    - --no-index\n    - --find-links {}\n    - alpha\n",
            wheels.display()
        ),
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    cx
}

/// What each task prints of its node, as one `NODE {json}` line: its hostname, the prefix it
/// runs in, `terrarium env verify` of the prefix from the node's own cache, every file of the
/// prefix with its sha256 (links with their target), and what it sees of the other nodes'
/// caches' backing directories. Arguments: terrarium, the workspace, the node cache, the
/// nodes' backing directory.
const REPORT: &str = r#"
import hashlib, json, os, socket, subprocess, sys
import alpha
terrarium, workspace, node_cache, backing = sys.argv[1:5]
prefix = os.environ["TERRARIUM_PREFIX"]
verify = subprocess.run(
    [terrarium, "--workspace", workspace, "env", "verify", "wh:1", "--json"],
    env={**os.environ, "TERRARIUM_CACHE_DIR": node_cache},
    capture_output=True, text=True,
)
files = {}
# Not the environment's files but records of this node's build and use: how long the build
# took, and when the prefix was last used (env.json's lock hash is compared apart).
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
print("NODE " + json.dumps({
    "host": socket.gethostname(),
    "prefix": prefix,
    "python_prefix": sys.prefix,
    "alpha": alpha.__version__,
    "lock_hash": json.load(open(os.path.join(prefix, ".terrarium/env.json")))["lock_hash"],
    "verify_code": verify.returncode,
    "verify": json.loads(verify.stdout) if verify.returncode == 0 else verify.stderr,
    "files": files,
    "backing": sorted(os.listdir(backing)) if os.path.isdir(backing) else None,
}, sort_keys=True), flush=True)
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
    let node_cache = std::env::var("TERRARIUM_TEST_NODES_NODE_CACHE").unwrap();
    let backing = PathBuf::from(std::env::var("TERRARIUM_TEST_NODES_DIR").unwrap()).join("nodes");
    let caches = node_caches();
    assert_eq!(caches.len(), 2, "{caches:?}");
    let before: Vec<_> = caches.iter().map(|(_, cache)| built(cache)).collect();

    let cx = pip_environment();
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
        REPORT,
        env!("CARGO_BIN_EXE_terrarium"),
        &workspace,
        &node_cache,
        &backing,
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

    // On each node: the environment, verified against the lock from the node's own cache; the
    // other nodes' caches are out of sight.
    let all: String = logs.values().cloned().collect();
    let reports = node_reports(&all);
    assert_eq!(reports.keys().cloned().collect::<Vec<_>>(), names, "{all}");
    for (host, report) in &reports {
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
    // The same files, with the same hashes, on both nodes.
    let [first, second] = [&reports[&names[0]], &reports[&names[1]]];
    assert_eq!(first["prefix"], second["prefix"]);
    assert_eq!(first["lock_hash"], second["lock_hash"]);
    assert!(first["lock_hash"].as_str().unwrap().starts_with("sha256:"));
    let files = first["files"].as_object().unwrap();
    assert!(files.len() > 10, "{files:?}");
    let differ: Vec<&String> = files
        .keys()
        .filter(|k| second["files"][k.as_str()] != files[k.as_str()])
        .chain(
            second["files"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| !files.contains_key(k.as_str())),
        )
        .collect();
    assert!(
        differ.is_empty(),
        "files that differ between nodes: {differ:?}"
    );
    eprintln!(
        "{} files with the same sha256 on {} and {}",
        files.len(),
        names[0],
        names[1]
    );

    // Each node built it once, in its own cache, and the shared cache holds the pack only.
    let after: Vec<_> = caches.iter().map(|(_, cache)| built(cache)).collect();
    let key = Path::new(first["prefix"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
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
    for host in &names {
        assert_eq!(again[host]["files"], reports[host]["files"], "{host}");
        assert_eq!(again[host]["verify_code"], 0, "{host}");
    }
    let last: Vec<_> = caches.iter().map(|(_, cache)| built(cache)).collect();
    assert_eq!(last, after);
}
