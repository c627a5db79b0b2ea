//! Runs on a Kubernetes target through the CLI. No Kubernetes API server can run on these
//! machines, so the client runs against a fake one (`common/kube.rs`) that answers with real
//! request and response shapes and plays the job controller and a kubelet: its pods pull the
//! environment's image from a real registry by digest and run it with runc. Every Job Terrarium
//! submits is also checked by kubernetes-models, validators generated from Kubernetes' OpenAPI
//! schema (`TERRARIUM_TEST_KUBE_MODELS`, from scripts/test-tools.sh).

mod common;

#[path = "common/conda_channel.rs"]
mod conda_channel;
#[path = "common/kube.rs"]
mod kube;
#[path = "common/registry.rs"]
mod registry;

use std::path::Path;
use std::process::Command;

use common::{make_wheels, uv_available, TestContext};
use conda_channel::{make_channel, Package};
use kube::FakeCluster;
use registry::{is_root, tool, Registry};
use serde_json::Value;

const VARIABLES: &str = "  MODE: fast\n  TOKEN: ${secret:api-token}\n  URL: https://bot:${secret:api-token}@example.com/$(HOME)/$$x\n";

/// Check Job manifests with kubernetes-models; in CI it must be there.
fn validate(cx: &TestContext, manifests: &[Value]) {
    let Some(models) = std::env::var_os("TERRARIUM_TEST_KUBE_MODELS") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI validates the manifests: scripts/test-tools.sh installs kubernetes-models"
        );
        eprintln!("not validated: set TERRARIUM_TEST_KUBE_MODELS (scripts/test-tools.sh)");
        return;
    };
    let mut files = Vec::new();
    for (n, manifest) in manifests.iter().enumerate() {
        files.push(cx.write(
            &format!("manifests/job-{n}.json"),
            serde_json::to_vec_pretty(manifest).unwrap(),
        ));
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubernetes/validate.mjs");
    let out = Command::new("node")
        .arg(script)
        .arg(models)
        .args(&files)
        .output()
        .expect("node runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubernetes-models refused a manifest:\n{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        said.matches("valid batch/v1 Job").count(),
        manifests.len(),
        "{said}"
    );
}

/// The manifest a dry run prints, after its `# POST URL` line.
fn dry_run_manifest(stdout: &str) -> (String, Value) {
    let (first, rest) = stdout.split_once('\n').unwrap();
    (first.to_string(), serde_json::from_str(rest).unwrap())
}

fn tools_channel(cx: &TestContext) -> std::path::PathBuf {
    make_channel(
        &cx.path("channel"),
        &[Package {
            name: "tool",
            version: "1.0",
            depends: &[],
            files: &[("bin/tool", "#!/bin/sh\necho tool\n", true)],
        }],
    )
}

/// Options and the cluster are checked at `compute add`; a dry run prints the Job, which
/// Kubernetes' schema accepts, with every option and resource where Kubernetes wants it, and
/// secrets as references.
#[test]
fn targets_are_checked_and_dry_runs_print_valid_jobs() {
    let cx = TestContext::new();
    let cluster = FakeCluster::start(&cx.path("cluster"));
    let kubeconfig = cx.path("kubeconfig");
    cluster.kubeconfig(&kubeconfig, "ml");
    let kc = format!("kubeconfig={}", kubeconfig.display());
    // `compute add k8s` with a good registry and this kubeconfig.
    let add_k8s = |kubeconfig: &Path| {
        cx.run(&[
            "compute",
            "add",
            "k8s",
            "--kind",
            "kubernetes",
            "--set",
            "registry=127.0.0.1:5000/team",
            "--set",
            &format!("kubeconfig={}", kubeconfig.display()),
        ])
    };

    // Malformed options name the target and the option; nothing is stored.
    for (set, option) in [
        ("registry=ml", "registry"),
        ("registry=127.0.0.1:5000/ml:v1", "registry"),
        ("namespace=ML", "namespace"),
        ("node_selector=gpu", "node_selector"),
        ("tolerations=gpu=true:Sometimes", "tolerations"),
        ("backoff_limit=-1", "backoff_limit"),
    ] {
        let mut args = vec![
            "compute",
            "add",
            "k8s",
            "--kind",
            "kubernetes",
            "--set",
            &kc,
        ];
        let registry = "registry=127.0.0.1:5000/team";
        if !set.starts_with("registry=") {
            args.extend(["--set", registry]);
        }
        args.extend(["--set", set]);
        let run = cx.run(&args);
        assert_eq!(run.code, 2, "{set}: {}", run.stderr);
        assert!(
            run.stderr.contains("`k8s`") && run.stderr.contains(&format!("`{option}`")),
            "{set}: {}",
            run.stderr
        );
    }
    let run = cx.run(&[
        "compute",
        "add",
        "k8s",
        "--kind",
        "kubernetes",
        "--set",
        &kc,
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("`registry`"), "{}", run.stderr);
    // A kubeconfig that is not there, and a cluster that does not answer.
    let run = add_k8s(Path::new("/nowhere/kubeconfig"));
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("`kubeconfig`") && run.stderr.contains("/nowhere/kubeconfig"),
        "{}",
        run.stderr
    );
    let closed = registry::free_port();
    let dead = cx.write(
        "dead-kubeconfig",
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .replace(&cluster.url(), &format!("http://127.0.0.1:{closed}")),
    );
    let run = add_k8s(&dead);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot be reached") && run.stderr.contains(&closed.to_string()),
        "{}",
        run.stderr
    );
    // A token the cluster refuses.
    let refused = cx.write(
        "refused-kubeconfig",
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .replace(kube::TOKEN, "wrong"),
    );
    let run = add_k8s(&refused);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("401") && run.stderr.contains("credentials"),
        "{}",
        run.stderr
    );
    // A kubeconfig others may change is not read: it could name a program to run.
    let shared = cx.write("shared-kubeconfig", std::fs::read(&kubeconfig).unwrap());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o666)).unwrap();
    let run = add_k8s(&shared);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("writable by group or others") && run.stderr.contains("chmod go-w"),
        "{}",
        run.stderr
    );
    let listed = cx.run(&["compute", "list", "--json"]).success().json();
    assert_eq!(listed, serde_json::json!([]), "nothing stored: {listed}");

    // A good one: the cluster is asked.
    let added = add_k8s(&kubeconfig).success();
    assert!(
        added.stderr.contains("v1.33.0-fake") || added.stdout.contains("v1.33.0-fake"),
        "{}{}",
        added.stdout,
        added.stderr
    );
    cx.run(&[
        "compute",
        "add",
        "gpu",
        "--kind",
        "kubernetes",
        "--set",
        "registry=127.0.0.1:5000/team",
        "--set",
        &kc,
        "--set",
        "namespace=training",
        "--set",
        "node_selector=accelerator=a100;kubernetes.io/arch=amd64",
        "--set",
        "tolerations=nvidia.com/gpu=present:NoSchedule;spot:NoExecute",
        "--set",
        "image_pull_secret=regcred",
        "--set",
        "service_account=trainer",
        "--set",
        "secret=team-secrets",
        "--set",
        "backoff_limit=2",
    ])
    .success();

    let channel = tools_channel(&cx);
    let file = cx.write(
        "environment.yml",
        format!(
            "name: tools\nchannels:\n  - file://{}\ndependencies:\n  - tool\nvariables:\n{VARIABLES}",
            channel.display()
        ),
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    let calls_before = cluster.calls().len();
    let run = cx
        .run(&[
            "run",
            "--target",
            "k8s",
            "--env",
            "tools",
            "--dry-run",
            "--",
            "tool",
            "--flag",
            "it's",
        ])
        .success();
    let (post, simple) = dry_run_manifest(&run.stdout);
    assert_eq!(
        post,
        format!("# POST {}/apis/batch/v1/namespaces/ml/jobs", cluster.url())
    );
    let run = cx
        .run(&[
            "run",
            "--target",
            "gpu",
            "--env",
            "tools",
            "--dry-run",
            "--nodes",
            "2",
            "--cpus",
            "2",
            "--memory",
            "1G",
            "--gpus",
            "1",
            "--time",
            "90m",
            "--",
            "tool",
        ])
        .success();
    let (_, full) = dry_run_manifest(&run.stdout);
    // A dry run submits nothing, and builds nothing.
    assert_eq!(cluster.calls().len(), calls_before, "{:?}", cluster.calls());
    assert!(
        cx.run(&["image", "list", "tools", "--json"])
            .success()
            .json()
            == serde_json::json!([]),
        "a dry run built an image"
    );

    let name = simple["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("terrarium-"), "{simple}");
    assert_eq!(simple["metadata"]["namespace"], "ml");
    assert_eq!(simple["spec"]["backoffLimit"], 0);
    assert!(simple["spec"].get("completionMode").is_none());
    let pod = &simple["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "127.0.0.1:5000/team/tools:1");
    assert_eq!(
        container["command"],
        serde_json::json!(["tool", "--flag", "it's"])
    );
    let env = container["env"].as_array().unwrap();
    let var = |name: &str| {
        env.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {env:?}"))
            .clone()
    };
    assert_eq!(var("MODE")["value"], "fast");
    assert_eq!(
        var("TOKEN")["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "terrarium-secrets", "key": "api-token"})
    );
    assert_eq!(
        var("URL")["value"],
        "https://bot:$(TERRARIUM_SECRET_6170692d746f6b656e)@example.com/$$(HOME)/$$$$x"
    );
    assert_eq!(
        var("TERRARIUM_SECRET_6170692d746f6b656e")["valueFrom"]["secretKeyRef"]["key"],
        "api-token"
    );
    assert!(
        env.iter().any(|v| v["name"] == "TERRARIUM_RUN_ID"),
        "{env:?}"
    );
    // The helper comes before the variable that uses it, as `$(VAR)` needs.
    let position = |name: &str| env.iter().position(|v| v["name"] == name).unwrap();
    assert!(position("TERRARIUM_SECRET_6170692d746f6b656e") < position("URL"));
    // The expansion the kubelet does gives back the value as written.
    let mut resolved: Vec<(String, String)> = Vec::new();
    for v in env {
        let value = match v["value"].as_str() {
            Some(text) => kube::expand(text, &resolved),
            None => "s3cret".to_string(),
        };
        resolved.push((v["name"].as_str().unwrap().to_string(), value));
    }
    assert_eq!(
        resolved.iter().find(|(k, _)| k == "URL").unwrap().1,
        "https://bot:s3cret@example.com/$(HOME)/$$x"
    );
    // A dry run resolves no secret: the value set on this machine appears nowhere.
    let local = cx
        .command()
        .env("TERRARIUM_SECRET_api_token", "local-only-value")
        .args([
            "run",
            "--target",
            "k8s",
            "--env",
            "tools",
            "--dry-run",
            "--",
            "tool",
        ])
        .output()
        .unwrap();
    let local: common::Run = local.into();
    let local = local.success();
    assert!(local.stdout.contains("secretKeyRef"), "{}", local.stdout);
    assert!(
        !local.stdout.contains("local-only-value"),
        "{}",
        local.stdout
    );

    assert_eq!(full["metadata"]["namespace"], "training");
    let spec = &full["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["completions"], 2);
    assert_eq!(spec["parallelism"], 2);
    assert_eq!(spec["activeDeadlineSeconds"], 5400);
    assert_eq!(spec["backoffLimit"], 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "trainer");
    assert_eq!(
        pod["imagePullSecrets"],
        serde_json::json!([{"name": "regcred"}])
    );
    assert_eq!(
        pod["nodeSelector"],
        serde_json::json!({"accelerator": "a100", "kubernetes.io/arch": "amd64"})
    );
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([
            {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"},
            {"key": "spot", "operator": "Exists", "effect": "NoExecute"},
        ])
    );
    let resources = &pod["containers"][0]["resources"];
    assert_eq!(
        *resources,
        serde_json::json!({
            "requests": {"cpu": "2", "memory": "1024Mi"},
            "limits": {"cpu": "2", "memory": "1024Mi", "nvidia.com/gpu": "1"},
        })
    );
    assert_eq!(
        pod["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "TOKEN")
            .unwrap()["valueFrom"]["secretKeyRef"]["name"],
        "team-secrets"
    );
    validate(&cx, &[simple, full]);

    // A malformed secret reference is refused, naming the variable.
    let bad = cx.write(
        "bad.yml",
        format!(
            "name: bad\nchannels:\n  - file://{}\ndependencies:\n  - tool\nvariables:\n  KEY: ${{secret:no such}}\n",
            channel.display()
        ),
    );
    cx.run_path(&["env", "create", "-f"], &bad, &[]).success();
    let run = cx.run(&[
        "run",
        "--target",
        "k8s",
        "--env",
        "bad",
        "--dry-run",
        "--",
        "tool",
    ]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("KEY") && run.stderr.contains("no such"),
        "{}",
        run.stderr
    );
}

/// A pip environment on the Debian base image, run as Jobs: the image is built and pushed to
/// the target's registry and run by digest; the output, exit code, state, nodes and logs come
/// from the cluster; secrets arrive as the cluster's; `--nodes 2` runs two indexed pods, a time
/// limit ends in `timed_out`, a cancel deletes the Job. Every call the client made is listed.
#[test]
fn jobs_run_the_environment_image_on_a_cluster() {
    let Some(base) = std::env::var_os("TERRARIUM_TEST_BASE_IMAGE") else {
        assert!(std::env::var_os("CI").is_none(), "CI needs the base image");
        eprintln!("skipped: set TERRARIUM_TEST_BASE_IMAGE (scripts/test-tools.sh)");
        return;
    };
    let base = base.to_string_lossy().to_string();
    let ready = uv_available()
        && tool("skopeo").is_some()
        && tool("umoci").is_some()
        && tool("runc").is_some()
        && is_root();
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI has uv, skopeo, umoci, runc and root"
        );
        eprintln!("skipped: the fake cluster's kubelet needs uv, skopeo, umoci, runc and root");
        return;
    }
    let cx = TestContext::new();
    let Some(registry) = Registry::start(&cx) else {
        assert!(std::env::var_os("CI").is_none(), "CI has docker-registry");
        return;
    };
    let cluster = FakeCluster::start(&cx.path("cluster"));
    let kubeconfig = cx.path("kubeconfig");
    cluster.kubeconfig(&kubeconfig, "ml");
    let wheels = cx.path("wheels");
    make_wheels(&wheels, &["alpha==1.0:beta>=2", "beta==2.1"]);
    let file = cx.write(
        "env.yml",
        format!(
            "name: pipenv\npython:\n  pip:\n    - --no-index\n    - --find-links {}\n    - alpha\nenvironment_variables:\n{VARIABLES}",
            wheels.display()
        ),
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    let repository = format!("{}/team-{}", registry.address(), std::process::id());
    cx.run(&[
        "compute",
        "add",
        "k8s",
        "--kind",
        "kubernetes",
        "--set",
        &format!("registry={repository}"),
        "--set",
        &format!("kubeconfig={}", kubeconfig.display()),
        "--set",
        &format!("base={base}"),
    ])
    .success();
    // Every run has a value for the secret on this machine too: none may reach the cluster,
    // whose own Secret gives the pods theirs.
    let run_on = |extra: &[&str], command: &str| -> common::Run {
        let mut args = vec!["run", "--target", "k8s", "--env", "pipenv"];
        args.extend(extra);
        args.extend(["--", "python", "-c", command]);
        cx.command()
            .env("TERRARIUM_SECRET_api_token", "local-only-value")
            .args(&args)
            .output()
            .unwrap()
            .into()
    };

    // The Secret the variables name is not there: said before anything runs.
    let run = run_on(&[], "print('never')");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no Secret `terrarium-secrets` in namespace ml")
            && run
                .stderr
                .contains("kubectl create secret generic terrarium-secrets"),
        "{}",
        run.stderr
    );
    assert_eq!(
        cx.run(&["runs", "list", "--json"]).success().json(),
        serde_json::json!([])
    );
    assert!(cluster.calls().iter().all(|c| c.method != "POST"));
    cluster.add_secret("terrarium-secrets", "api-token", "s3cret");

    // Attached: the job's output, its exit code; the image is the pushed one, by digest.
    let run = run_on(
        &[],
        "import alpha, os, sys; print('alpha', alpha.__version__, sys.prefix); print(os.environ['MODE'], os.environ['TOKEN'], os.environ['URL']); print('as given: $$ $(MODE) $')",
    )
    .success();
    // The command arrives as given: Kubernetes' expansion of it is escaped.
    assert!(
        run.stdout.contains("as given: $$ $(MODE) $"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("local-only-value"), "{}", run.stdout);
    assert!(
        run.stdout.contains("alpha 1.0 /opt/terrarium/envs/pipenv"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout
            .contains("fast s3cret https://bot:s3cret@example.com/$(HOME)/$$x"),
        "{}",
        run.stdout
    );
    let builds = cx
        .run(&["image", "list", "pipenv", "--json"])
        .success()
        .json();
    let digest = builds[0]["digest"].as_str().unwrap().to_string();
    assert_eq!(builds[0]["pushed_to"], format!("{repository}/pipenv:1"));
    let runs = cx.run(&["runs", "list", "--json"]).success().json();
    let first = &runs[0];
    assert_eq!(first["state"], "completed", "{first}");
    assert_eq!(first["exit_code"], 0);
    assert_eq!(first["job"]["kind"], "kubernetes");
    assert_eq!(first["job"]["node_list"], "node-0", "{first}");
    let job_name = first["job"]["job_id"].as_str().unwrap().to_string();
    let job = cluster.job(&job_name).unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{repository}/pipenv@{digest}")
    );
    // The log is kept after the pods are gone.
    let logs = cx
        .run(&["runs", "logs", first["id"].as_str().unwrap()])
        .success()
        .stdout;
    assert!(logs.contains("alpha 1.0"), "{logs}");

    // A failing command: its exit code, and the Job's reason; no retry (backoffLimit 0).
    let run = run_on(
        &[],
        "import sys; sys.stdout.buffer.write(b'bytes \\xff end\\n'); sys.stdout.flush(); raise SystemExit(3)",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    // Output that is not UTF-8 is shown as it can be, not taken for an unreachable cluster.
    assert!(run.stdout.contains("bytes \u{fffd} end"), "{}", run.stdout);
    let failed = &cx.run(&["runs", "list", "--json"]).success().json()[0];
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["job"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("BackoffLimitExceeded"),
        "{failed}"
    );

    // Two nodes: an Indexed Job, each pod with its index, on the same image.
    let run = run_on(
        &["--nodes", "2"],
        "import os, alpha; print('index', os.environ['JOB_COMPLETION_INDEX'], alpha.__file__)",
    )
    .success();
    for index in ["0", "1"] {
        assert!(
            run.stdout.contains(&format!(
                "[task {index}] index {index} /opt/terrarium/envs/pipenv/lib/"
            )),
            "{}",
            run.stdout
        );
    }
    let two = &cx.run(&["runs", "list", "--json"]).success().json()[0];
    assert_eq!(two["job"]["node_list"], "node-0,node-1", "{two}");

    // A time limit: activeDeadlineSeconds; the Job fails with DeadlineExceeded.
    let run = run_on(
        &["--time", "0:00:03"],
        "import time; print('sleeping', flush=True); time.sleep(60)",
    );
    assert_ne!(run.code, 0, "{}", run.stderr);
    let timed = &cx.run(&["runs", "list", "--json"]).success().json()[0];
    assert_eq!(timed["state"], "timed_out", "{timed}");

    // Detached, then cancelled: the Job is deleted with its pods; the run is cancelled, and
    // what it printed is kept.
    let run = run_on(
        &["--detach"],
        "import time; print('started', flush=True); time.sleep(120)",
    )
    .success();
    let id = run.stdout.trim().to_string();
    cx.wait_for_state(&id, "running", 120);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cx.run(&["runs", "logs", &id]).stdout.contains("started") {
        assert!(
            std::time::Instant::now() < deadline,
            "no output from the running pod"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    cx.run(&["runs", "cancel", &id]).success();
    cx.wait_for_state(&id, "cancelled", 30);
    let cancelled_job = kube_name(&id);
    assert!(cluster.job(&cancelled_job).is_none());
    assert!(
        cluster
            .pods()
            .iter()
            .all(|p| !p.starts_with(&cancelled_job)),
        "{:?}",
        cluster.pods()
    );
    assert!(cx
        .run(&["runs", "logs", &id])
        .success()
        .stdout
        .contains("started"));

    // Every call the client made, and each kind the issue names.
    let calls = cluster.calls();
    let lines: Vec<String> = calls.iter().map(|c| c.line()).collect();
    let has = |what: &str, pred: &dyn Fn(&kube::Call) -> bool| {
        assert!(
            calls.iter().any(pred),
            "no {what} among:\n{}",
            lines.join("\n")
        );
    };
    let jobs = "/apis/batch/v1/namespaces/ml/jobs";
    has("version", &|c| c.method == "GET" && c.uri == "/version");
    has("create", &|c| c.method == "POST" && c.uri.starts_with(jobs));
    // Created suspended, resumed once the run was recorded.
    has("resume", &|c| {
        c.method == "PATCH"
            && c.uri.starts_with(&format!("{jobs}/{job_name}"))
            && serde_json::from_str::<Value>(&c.body).unwrap()["spec"]["suspend"] == false
    });
    let create = calls
        .iter()
        .position(|c| c.method == "POST" && c.body.contains(&job_name))
        .unwrap();
    let resume = calls
        .iter()
        .position(|c| c.method == "PATCH" && c.uri.contains(&job_name))
        .unwrap();
    assert!(create < resume, "{lines:?}");
    for job in calls.iter().filter(|c| c.method == "POST") {
        assert_eq!(
            serde_json::from_str::<Value>(&job.body).unwrap()["spec"]["suspend"],
            true
        );
    }
    has("get", &|c| {
        c.method == "GET" && c.uri.starts_with(&format!("{jobs}/{job_name}"))
    });
    has("watch", &|c| {
        c.method == "GET"
            && c.uri.starts_with(&format!("{jobs}?"))
            && c.uri.contains("watch=true")
            && c.uri
                .contains(&format!("fieldSelector=metadata.name%3D{job_name}"))
    });
    has("pods by label", &|c| {
        c.method == "GET"
            && c.uri.starts_with("/api/v1/namespaces/ml/pods?")
            && c.uri
                .contains(&format!("labelSelector=job-name%3D{job_name}"))
    });
    has("logs", &|c| {
        c.method == "GET"
            && c.uri
                .starts_with(&format!("/api/v1/namespaces/ml/pods/{job_name}-"))
            && c.uri.contains("/log")
    });
    has("delete", &|c| {
        c.method == "DELETE"
            && c.uri.starts_with(&format!("{jobs}/{cancelled_job}"))
            && serde_json::from_str::<Value>(&c.body).unwrap()["propagationPolicy"] == "Background"
    });
    has("secret", &|c| {
        c.method == "GET"
            && c.uri
                .starts_with("/api/v1/namespaces/ml/secrets/terrarium-secrets")
    });
    // Nothing else: no call to a path the client has no business with.
    for call in &calls {
        let known = call.uri == "/version"
            || call.uri.starts_with(jobs)
            || call.uri.starts_with("/api/v1/namespaces/ml/pods")
            || call
                .uri
                .starts_with("/api/v1/namespaces/ml/secrets/terrarium-secrets");
        assert!(known, "unexpected call {}", call.line());
    }
    // Every Job submitted passes Kubernetes' schema.
    let created: Vec<Value> = calls
        .iter()
        .filter(|c| c.method == "POST")
        .map(|c| serde_json::from_str(&c.body).unwrap())
        .collect();
    assert_eq!(created.len(), 5, "{lines:?}");
    assert!(
        calls
            .iter()
            .all(|c| !c.body.contains("local-only-value") && !c.uri.contains("local-only-value")),
        "a secret value of this machine reached the cluster"
    );
    for entry in walk(&cx.path("workspace")) {
        if entry.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            assert!(!text.contains("local-only-value"), "{}", entry.display());
        }
    }
    validate(&cx, &created);
    drop(registry);
}

fn kube_name(run_id: &str) -> String {
    format!("terrarium-{}", run_id.to_ascii_lowercase())
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}
