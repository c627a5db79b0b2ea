//! Runs on a Ray target through the CLI, against a real one-node Ray head
//! (`eval "$(scripts/ray.sh start DIR)"`, which `.ci/run` does; it asks for the token in
//! `TERRARIUM_TEST_RAY_TOKEN_FILE`) and a wheelhouse the test writes.

mod common;

#[path = "common/conda_channel.rs"]
mod conda_channel;

use common::{make_wheels, uv_available, TestContext};
use conda_channel::{make_channel, Package};

fn ray_address() -> Option<String> {
    let address = std::env::var("TERRARIUM_TEST_RAY_ADDRESS").ok();
    if address.is_none() {
        eprintln!("skipped: TERRARIUM_TEST_RAY_ADDRESS is not set (scripts/ray.sh start DIR)");
    }
    address
}

/// A workspace with a Ray target `ray1` and a pip environment `wh` of `packages` from a local
/// wheelhouse.
fn setup(address: &str, packages: &[&str]) -> TestContext {
    let cx = TestContext::new();
    let wheels = cx.path("wheels");
    make_wheels(&wheels, packages);
    let names: String = packages
        .iter()
        .map(|p| format!("    - {}\n", p.split("==").next().unwrap()))
        .collect();
    let file = cx.write(
        "env.yml",
        format!(
            "name: wh\npython:\n  pip:\n    - --no-index\n    - --find-links {}\n{names}environment_variables:\n  GREETING: hello\n  TOKEN: ${{secret:API_TOKEN}}\n",
            wheels.display()
        ),
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    add_target(&cx, "ray1", address, shared_token_file(), &[]);
    cx
}

/// The token file of the shared test cluster, when it has token authentication on.
fn shared_token_file() -> Option<String> {
    std::env::var("TERRARIUM_TEST_RAY_TOKEN_FILE").ok()
}

/// `compute add NAME --kind ray` at `address`, with its token file and more `KEY=VALUE` options.
fn add_target(
    cx: &TestContext,
    name: &str,
    address: &str,
    token_file: Option<String>,
    options: &[String],
) {
    let mut sets = vec![format!("address={address}")];
    sets.extend(token_file.map(|file| format!("token_file={file}")));
    sets.extend(options.iter().cloned());
    let mut add = vec!["compute", "add", name, "--kind", "ray"];
    for set in &sets {
        add.extend(["--set", set.as_str()]);
    }
    cx.run(&add).success();
}

/// `terrarium ARGS` with the environment's secret set.
fn run_secret(cx: &TestContext, args: &[&str]) -> common::Run {
    cx.command()
        .env("TERRARIUM_SECRET_API_TOKEN", "s3cr3t-value")
        .args(args)
        .output()
        .unwrap()
        .into()
}

#[test]
fn a_run_on_ray_streams_its_output_and_exits_with_the_jobs_code() {
    let Some(address) = ray_address() else { return };
    if !uv_available() {
        return;
    }
    let cx = setup(&address, &["alpha==1.0"]);
    let shown = cx
        .run(&["compute", "show", "ray1", "--json"])
        .success()
        .json();
    assert_eq!(shown["kind"], "ray");
    assert!(
        shown["check"]["engine"]
            .as_str()
            .is_some_and(|e| e.starts_with("ray 2.")),
        "{shown}"
    );

    let script = "import os, sys, alpha; print('alpha', alpha.__version__, os.environ['GREETING'], os.environ['TOKEN'], sys.prefix == os.environ['TERRARIUM_PREFIX']); sys.exit(3)";
    let started = std::time::Instant::now();
    let out = run_secret(
        &cx,
        &[
            "run", "--env", "wh", "--target", "ray1", "--", "python", "-c", script,
        ],
    );
    eprintln!("the run took {:?}", started.elapsed());
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("alpha 1.0 hello s3cr3t-value True"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr
            .contains("submitted to ray target `ray1` as job terrarium-"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("failed, exit code 3"), "{}", out.stderr);

    let runs = cx.run(&["runs", "list", "--json"]).success().json();
    let id = runs[0]["id"].as_str().unwrap().to_string();
    let run = cx.run(&["runs", "show", &id, "--json"]).success().json();
    assert_eq!(run["target"], "ray1");
    assert_eq!(run["state"], "failed");
    assert_eq!(run["exit_code"], 3);
    assert_eq!(run["job"]["kind"], "ray");
    assert_eq!(run["job"]["job_id"], format!("terrarium-{id}"));
    assert_eq!(run["job"]["reason"], "JOB_ENTRYPOINT_COMMAND_ERROR");
    let logs = cx.run(&["runs", "logs", &id]).success();
    assert!(logs.stdout.contains("alpha 1.0 hello"), "{}", logs.stdout);
    // What is kept on disk of the submission holds no secret.
    let record =
        std::fs::read_to_string(cx.workspace().join("runs").join(&id).join("job.json")).unwrap();
    assert!(!record.contains("s3cr3t-value"), "{record}");
}

#[test]
fn detached_ray_runs_are_waited_for_and_cancelled() {
    let Some(address) = ray_address() else { return };
    if !uv_available() {
        return;
    }
    let cx = setup(&address, &["alpha==1.0"]);
    // What Ray does not have is refused; nothing is submitted.
    for (flag, value, expected) in [
        ("--nodes", "2", "one driver process"),
        ("--time", "10m", "no time limit"),
    ] {
        let out = run_secret(
            &cx,
            &[
                "run", "--env", "wh", "--target", "ray1", flag, value, "--", "python", "-c", "pass",
            ],
        )
        .user_error();
        assert!(out.stderr.contains(expected), "{}", out.stderr);
    }
    // A dry run: the document, the variables' names and no values.
    let dry = cx
        .run(&[
            "run",
            "--env",
            "wh",
            "--target",
            "ray1",
            "--cpus",
            "1",
            "--memory",
            "100M",
            "--dry-run",
            "--",
            "python",
            "-c",
            "pass",
        ])
        .success();
    for expected in [
        "# POST ",
        "\"entrypoint_num_cpus\": 1",
        "\"entrypoint_memory\": 104857600",
        "\"TOKEN\": \"<secret>\"",
        "exec flock --shared",
    ] {
        assert!(dry.stdout.contains(expected), "{expected}:\n{}", dry.stdout);
    }
    assert_eq!(
        cx.run(&["runs", "list", "--json"]).success().json(),
        serde_json::json!([])
    );

    let id = run_secret(
        &cx,
        &[
            "run",
            "--env",
            "wh",
            "--target",
            "ray1",
            "--detach",
            "--",
            "python",
            "-c",
            "print('detached')",
        ],
    )
    .success()
    .stdout
    .trim()
    .to_string();
    let waited = cx.run(&["runs", "wait", &id]).success();
    assert!(waited.stderr.contains("completed"), "{}", waited.stderr);
    let shown = cx.run(&["runs", "show", &id, "--json"]).success().json();
    assert_eq!(shown["state"], "completed");
    assert_eq!(shown["exit_code"], 0);
    assert!(cx
        .run(&["runs", "logs", &id])
        .success()
        .stdout
        .contains("detached"));

    let id = run_secret(
        &cx,
        &[
            "run",
            "--env",
            "wh",
            "--target",
            "ray1",
            "--detach",
            "--",
            "python",
            "-c",
            "import time; print('started', flush=True); time.sleep(300)",
        ],
    )
    .success()
    .stdout
    .trim()
    .to_string();
    cx.wait_for_state(&id, "running", 60);
    cx.run(&["runs", "cancel", &id]).success();
    cx.wait_for_state(&id, "cancelled", 30);
    assert_ne!(cx.run(&["runs", "wait", &id]).code, 0);
    cx.run(&["compute", "remove", "ray1"]).success();
}

#[test]
fn an_environment_with_another_ray_is_refused_at_submit() {
    let Some(address) = ray_address() else { return };
    if !uv_available() {
        return;
    }
    let cx = setup(&address, &["ray==0.0.1"]);
    let cluster = cx
        .run(&["compute", "show", "ray1", "--json"])
        .success()
        .json()["check"]["engine"]
        .as_str()
        .unwrap()
        .strip_prefix("ray ")
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let out = run_secret(
        &cx,
        &[
            "run",
            "--env",
            "wh",
            "--target",
            "ray1",
            "--",
            "python",
            "-c",
            "import ray",
        ],
    )
    .user_error();
    assert!(
        out.stderr.contains(&format!("runs ray {cluster}"))
            && out.stderr.contains("holds ray 0.0.1"),
        "{}",
        out.stderr
    );
    assert_eq!(
        cx.run(&["runs", "list", "--json"]).success().json(),
        serde_json::json!([])
    );
}

#[test]
fn ray_targets_need_an_address_that_answers() {
    let cx = TestContext::new();
    let out = cx
        .run(&["compute", "add", "ray1", "--kind", "ray", "--no-check"])
        .user_error();
    assert!(out.stderr.contains("option `address`"), "{}", out.stderr);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let out = cx
        .run(&[
            "compute",
            "add",
            "ray1",
            "--kind",
            "ray",
            "--set",
            &format!("address=http://127.0.0.1:{port}"),
        ])
        .user_error();
    assert!(started.elapsed() < std::time::Duration::from_secs(6));
    assert!(
        out.stderr.contains("option `address`") && out.stderr.contains("connection refused"),
        "{}",
        out.stderr
    );
    assert_eq!(
        cx.run(&["compute", "list", "--json"]).success().json(),
        serde_json::json!([])
    );
}

/// delivery=pack on Ray: the job's entrypoint builds the environment from the pack into the
/// node's cache, and the command runs in it.
#[test]
fn with_delivery_pack_the_ray_node_builds_from_the_pack() {
    let Some(address) = ray_address() else { return };
    if !uv_available() {
        return;
    }
    let cx = setup(&address, &["alpha==1.0"]);
    let node = cx.path("node");
    add_target(
        &cx,
        "raypack",
        &address,
        shared_token_file(),
        &[
            "delivery=pack".into(),
            format!("cache={}", cx.path("shared").display()),
            format!("node_cache={}", node.display()),
        ],
    );
    let out = run_secret(
        &cx,
        &[
            "run",
            "--env",
            "wh",
            "--target",
            "raypack",
            "--",
            "python",
            "-c",
            "import sys, alpha; print('prefix', sys.prefix)",
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains(&format!("prefix {}", node.join("envs").display())),
        "{}",
        out.stdout
    );
}

/// delivery=pack on Ray with a `pack_server`: the pack goes to the team server, and the node
/// fetches it through a signed link (no token in the job) and builds from it.
#[test]
fn with_a_pack_server_the_ray_node_fetches_the_pack_through_a_signed_link() {
    let Some(address) = ray_address() else { return };
    if !uv_available() {
        return;
    }
    let cx = setup(&address, &["alpha==1.0"]);
    let db = format!("sqlite://{}", cx.path("team").display());
    let token = common::server::bootstrap_token(&cx, &db, "contributor", "alice");
    let packs = cx.path("team-packs");
    let server = common::server::Server::start(&cx, &db, &["--packs", packs.to_str().unwrap()]);
    let node = cx.path("node");
    add_target(
        &cx,
        "rayserved",
        &address,
        shared_token_file(),
        &[
            "delivery=pack".into(),
            format!("pack_server={}", server.url),
            format!("cache={}", cx.path("shared").display()),
            format!("node_cache={}", node.display()),
        ],
    );
    let out: common::Run = cx
        .command()
        .env("TERRARIUM_SECRET_API_TOKEN", "s3cr3t-value")
        .env("TERRARIUM_PACK_SERVER_TOKEN", &token)
        .args([
            "run",
            "--env",
            "wh",
            "--target",
            "rayserved",
            "--",
            "python",
            "-c",
            "import sys, alpha; print('prefix', sys.prefix)",
        ])
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains(&format!("prefix {}", node.join("envs").display())),
        "{}",
        out.stdout
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains(&format!("from {}/api/v1/packs/sha256:", server.url)),
        "{all}"
    );
    assert!(!all.contains("signature="), "{all}");
    drop(server);
}

/// A Ray head of the test's own, killed mid-job: `runs wait` does not hang, and once the head
/// has not answered for the target's `lost_after` the run is lost, saying why.
#[test]
fn a_ray_head_killed_mid_job_gives_lost_with_the_reason() {
    let Some(shared) = ray_address() else { return };
    if !uv_available() {
        return;
    }
    let cx = setup(&shared, &["alpha==1.0"]);
    let dir = cx.path("own-ray");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ray.sh");
    let started = std::process::Command::new(&script)
        .arg("start")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(started.status.success(), "{started:?}");
    struct Stop(std::path::PathBuf, std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::process::Command::new(&self.0)
                .arg("stop")
                .arg(&self.1)
                .status();
        }
    }
    let _stop = Stop(script.clone(), dir.clone());
    let exports = String::from_utf8_lossy(&started.stdout).to_string();
    let address = exports
        .split_whitespace()
        .find_map(|w| w.strip_prefix("TERRARIUM_TEST_RAY_ADDRESS="))
        .unwrap()
        .to_string();
    add_target(
        &cx,
        "own",
        &address,
        Some(dir.join("token").display().to_string()),
        &["lost_after=3s".into()],
    );
    let id = run_secret(
        &cx,
        &[
            "run",
            "--env",
            "wh",
            "--target",
            "own",
            "--detach",
            "--",
            "python",
            "-c",
            "import time; print('started', flush=True); time.sleep(600)",
        ],
    )
    .success()
    .stdout
    .trim()
    .to_string();
    cx.wait_for_state(&id, "running", 120);
    // The head dies at once, as on a crash: every process of its session, killed.
    let pid = std::fs::read_to_string(dir.join("ray.pid")).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", pid.trim())])
        .status()
        .unwrap();
    assert!(killed.success());
    let waited = cx.run(&["runs", "wait", &id]);
    assert_ne!(waited.code, 0, "{}", waited.stderr);
    assert!(
        waited.stderr.contains("does not answer"),
        "{}",
        waited.stderr
    );
    let shown = cx.run(&["runs", "show", &id, "--json"]).success().json();
    assert_eq!(shown["state"], "lost", "{shown}");
    let reason = shown["job"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("did not answer") && reason.contains(&address),
        "{shown}"
    );
}

/// A conda environment (from a local channel the test writes) runs on Ray, its program from
/// the built prefix.
#[test]
fn a_conda_environment_runs_on_ray() {
    let Some(address) = ray_address() else { return };
    if !uv_available() {
        return;
    }
    let cx = setup(&address, &["alpha==1.0"]);
    let channel = make_channel(
        &cx.path("channel"),
        &[Package {
            name: "tool",
            version: "1.0",
            depends: &[],
            files: &[(
                "bin/tool",
                "#!/bin/sh\necho \"tool 1.0 in $CONDA_PREFIX\"\n",
                true,
            )],
        }],
    );
    let file = cx.write(
        "environment.yml",
        format!(
            "name: tools\nchannels:\n  - file://{}\ndependencies:\n  - tool\n",
            channel.display()
        ),
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    let out = run_secret(
        &cx,
        &["run", "--env", "tools", "--target", "ray1", "--", "tool"],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("tool 1.0 in /"), "{}", out.stdout);
}
