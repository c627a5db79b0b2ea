//! Compute targets and runs on them, through the CLI, against a real one-node Slurm cluster
//! (`eval "$(scripts/slurm.sh start DIR)"`, which `.ci/run` does) and a wheelhouse the test
//! writes.

mod common;

#[path = "common/conda_channel.rs"]
mod conda_channel;

use common::{make_wheels, uv_available, TestContext};
use conda_channel::{make_channel, Package};

fn slurm_conf() -> Option<String> {
    let conf = std::env::var("TERRARIUM_TEST_SLURM_CONF").ok();
    if conf.is_none() {
        eprintln!("skipped: TERRARIUM_TEST_SLURM_CONF is not set (scripts/slurm.sh start DIR)");
    }
    conf
}

/// A workspace with a Slurm target `hpc` and a pip environment `wh` (alpha 1.0 from a local
/// wheelhouse).
fn setup(conf: &str) -> TestContext {
    let cx = TestContext::new();
    let wheels = cx.path("wheels");
    make_wheels(&wheels, &["alpha==1.0"]);
    let file = cx.write(
        "env.yml",
        format!(
            "name: wh\npython:\n  pip:\n    - --no-index\n    - --find-links {}\n    - alpha\nenvironment_variables:\n  GREETING: hello\n  TOKEN: ${{secret:API_TOKEN}}\n",
            wheels.display()
        ),
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    cx.run(&[
        "compute",
        "add",
        "hpc",
        "--kind",
        "slurm",
        "--set",
        &format!("conf={conf}"),
        "--set",
        "partition=debug",
    ])
    .success();
    cx
}

#[test]
fn compute_targets_are_checked_before_they_are_stored() {
    let Some(conf) = slurm_conf() else { return };
    let cx = TestContext::new();
    // An unknown partition: named, with the ones there are; nothing stored.
    let out = cx
        .run(&[
            "compute",
            "add",
            "hpc",
            "--kind",
            "slurm",
            "--set",
            &format!("conf={conf}"),
            "--set",
            "partition=gpu",
        ])
        .user_error();
    assert!(
        out.stderr.contains("no partition `gpu`") && out.stderr.contains("debug"),
        "{}",
        out.stderr
    );
    // An option the kind does not take, and a kind that does not exist.
    let out = cx
        .run(&[
            "compute",
            "add",
            "hpc",
            "--kind",
            "slurm",
            "--set",
            "partitoin=debug",
        ])
        .user_error();
    assert!(out.stderr.contains("`partitoin`"), "{}", out.stderr);
    cx.run(&["compute", "add", "hpc", "--kind", "lsf"])
        .user_error();
    assert_eq!(
        cx.run(&["compute", "list", "--json"]).success().json(),
        serde_json::json!([])
    );

    cx.run(&[
        "compute",
        "add",
        "hpc",
        "--kind",
        "slurm",
        "--set",
        &format!("conf={conf}"),
    ])
    .success();
    let list = cx.run(&["compute", "list", "--json"]).success().json();
    assert_eq!(list[0]["name"], "hpc");
    assert_eq!(list[0]["kind"], "slurm");
    let shown = cx
        .run(&["compute", "show", "hpc", "--json"])
        .success()
        .json();
    assert_eq!(shown["check"]["ok"], true, "{shown}");
    // A name taken, and the built-in names.
    cx.run(&["compute", "add", "hpc", "--kind", "slurm", "--no-check"])
        .user_error();
    cx.run(&["compute", "add", "local", "--kind", "slurm", "--no-check"])
        .user_error();
    cx.run(&["compute", "remove", "hpc"]).success();
    cx.run(&["compute", "show", "hpc"]).user_error();
}

#[test]
fn a_run_on_slurm_streams_its_output_and_exits_with_the_jobs_code() {
    let Some(conf) = slurm_conf() else { return };
    if !uv_available() {
        return;
    }
    let cx = setup(&conf);
    let script = "import os, sys, alpha; print('alpha', alpha.__version__, os.environ['GREETING'], os.environ['TOKEN'], sys.prefix == os.environ['TERRARIUM_PREFIX']); sys.exit(3)";
    let out = cx
        .command()
        .env("TERRARIUM_SECRET_API_TOKEN", "s3cr3t-value")
        .args([
            "run", "--env", "wh", "--target", "hpc", "--", "python", "-c", script,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("alpha 1.0 hello s3cr3t-value True"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("submitted to slurm target `hpc` as job"),
        "{stderr}"
    );
    assert!(stderr.contains("failed, exit code 3"), "{stderr}");

    let runs = cx.run(&["runs", "list", "--json"]).success().json();
    let run = &runs[0];
    assert_eq!(run["target"], "hpc");
    assert_eq!(run["state"], "failed");
    assert_eq!(run["exit_code"], 3);
    assert_eq!(run["job"]["kind"], "slurm");
    assert_eq!(run["job"]["nodes"], 1);
    assert!(run["job"]["job_id"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .is_ok());
    let id = run["id"].as_str().unwrap();
    let logs = cx.run(&["runs", "logs", id]).success();
    assert!(logs.stdout.contains("==> task 0 <=="), "{}", logs.stdout);
    assert!(logs.stdout.contains("alpha 1.0 hello"), "{}", logs.stdout);
    // The batch script on disk holds no secret.
    let script =
        std::fs::read_to_string(cx.workspace().join("runs").join(id).join("job.sh")).unwrap();
    assert!(!script.contains("s3cr3t-value"), "{script}");
    // The job's logs are kept in the workspace too (every client and the web UI read them
    // there), with the secret's value masked.
    let db = rusqlite::Connection::open(cx.workspace().join("workspace.db")).unwrap();
    let kept: Vec<u8> = db
        .query_row("SELECT log FROM run_logs WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .unwrap();
    let kept = String::from_utf8(kept).unwrap();
    assert!(kept.contains("==> task 0 <=="), "{kept}");
    assert!(kept.contains("alpha 1.0 hello *** True"), "{kept}");
    assert!(!kept.contains("s3cr3t-value"), "{kept}");
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
fn detached_runs_are_followed_waited_for_and_cancelled() {
    let Some(conf) = slurm_conf() else { return };
    if !uv_available() {
        return;
    }
    let cx = setup(&conf);
    // Dry run: the script and the sbatch line, nothing submitted, nothing recorded.
    let dry = cx
        .run(&[
            "run",
            "--env",
            "wh",
            "--target",
            "hpc",
            "--nodes",
            "2",
            "--cpus",
            "1",
            "--memory",
            "100M",
            "--time",
            "10m",
            "--dry-run",
            "--",
            "python",
            "-c",
            "pass",
        ])
        .success();
    for expected in [
        "#SBATCH --nodes=2",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=100M",
        "#SBATCH --time=0-00:10:00",
        "#SBATCH --partition=debug",
        "TOKEN (secret)",
        "srun --kill-on-bad-exit=1",
    ] {
        assert!(dry.stdout.contains(expected), "{expected}:\n{}", dry.stdout);
    }
    assert_eq!(
        cx.run(&["runs", "list", "--json"]).success().json(),
        serde_json::json!([])
    );

    // Detached: the id on stdout; `runs wait` gives the exit code.
    let id = run_secret(
        &cx,
        &[
            "run",
            "--env",
            "wh",
            "--target",
            "hpc",
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

    // A long job, cancelled: its state says so, and `runs wait` exits non-zero.
    let id = run_secret(
        &cx,
        &[
            "run",
            "--env",
            "wh",
            "--target",
            "hpc",
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
    let shown = cx.run(&["runs", "show", &id, "--json"]).success().json();
    assert_eq!(shown["state"], "cancelled", "{shown}");
    assert_ne!(cx.run(&["runs", "wait", &id]).code, 0);

    // The target cannot go while a run on it has not ended; once all have, it can.
    cx.run(&["compute", "remove", "hpc"]).success();
}

#[test]
fn job_flags_are_refused_where_they_mean_nothing() {
    let cx = TestContext::new();
    let out = cx
        .run(&["run", "--env", "nothing", "--nodes", "2", "--", "true"])
        .user_error();
    assert!(
        out.stderr
            .contains("--nodes is for runs on a compute target"),
        "{}",
        out.stderr
    );
    let out = cx
        .run(&[
            "run", "--env", "nothing", "--target", "nowhere", "--", "true",
        ])
        .user_error();
    assert!(
        out.stderr.contains("no compute target `nowhere`") && out.stderr.contains("compute add"),
        "{}",
        out.stderr
    );
}

/// With a `pack_registry` the nodes need not see the pack: it is pushed to the registry as an
/// OCI artifact at submit, and each node fetches it by digest, checks it, and builds from it.
#[test]
fn with_a_pack_registry_each_node_fetches_the_pack_by_digest() {
    let Some(conf) = slurm_conf() else { return };
    let Ok(registry) = std::env::var("TERRARIUM_TEST_REGISTRY") else {
        assert!(std::env::var_os("CI").is_none(), "CI starts a registry");
        eprintln!("skipped: TERRARIUM_TEST_REGISTRY is not set (scripts/registry.sh start DIR)");
        return;
    };
    if !uv_available() {
        return;
    }
    let cx = setup(&conf);
    let node = cx.path("node");
    let repository = format!("{registry}/packs-{}", std::process::id());
    cx.run(&[
        "compute",
        "add",
        "fetched",
        "--kind",
        "slurm",
        "--set",
        &format!("conf={conf}"),
        "--set",
        "delivery=pack",
        "--set",
        &format!("pack_registry={repository}"),
        "--set",
        &format!("cache={}", cx.path("submitter").display()),
        "--set",
        &format!("node_cache={}", node.display()),
    ])
    .success();
    let shown = cx.run(&["compute", "show", "fetched"]).success();
    assert!(
        shown
            .stdout
            .contains(&format!("builds from {repository} (an OCI artifact")),
        "{}",
        shown.stdout
    );
    let dry = run_secret(
        &cx,
        &[
            "run",
            "--env",
            "wh",
            "--target",
            "fetched",
            "--dry-run",
            "--",
            "python",
            "-c",
            "pass",
        ],
    )
    .success();
    assert!(
        dry.stdout
            .contains(&format!("env unpack {repository}@sha256:")),
        "{}",
        dry.stdout
    );
    let out = run_secret(
        &cx,
        &[
            "run",
            "--env",
            "wh",
            "--target",
            "fetched",
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
    // The node said where it built from: the registry, by digest.
    let id = cx.run(&["runs", "list", "--json"]).success().json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let logs = cx.run(&["runs", "logs", &id]).success();
    assert!(
        logs.stdout.contains(&format!("from {repository}@sha256:"))
            || logs.stderr.contains(&format!("from {repository}@sha256:")),
        "{}\n{}",
        logs.stdout,
        logs.stderr
    );
}

/// With a `pack_server` the pack is uploaded to the team server with the submitter's token, and
/// each node fetches it through a signed link, with no token; a second job uploads nothing; the
/// link's signature shows in no log.
#[test]
fn with_a_pack_server_each_node_fetches_the_pack_through_a_signed_link() {
    let Some(conf) = slurm_conf() else { return };
    if !uv_available() {
        return;
    }
    let cx = setup(&conf);
    let db = format!("sqlite://{}", cx.path("team").display());
    let token = common::server::bootstrap_token(&cx, &db, "contributor", "alice");
    let packs = cx.path("team-packs");
    let server = common::server::Server::start(&cx, &db, &["--packs", packs.to_str().unwrap()]);
    let node = cx.path("node");
    let add = |name: &str, extra: &[String]| {
        let mut args: Vec<String> = [
            "compute",
            "add",
            name,
            "--kind",
            "slurm",
            "--set",
            &format!("conf={conf}"),
            "--set",
            "delivery=pack",
            "--set",
            &format!("cache={}", cx.path("submitter").display()),
            "--set",
            &format!("node_cache={}", node.display()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().cloned());
        cx.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // One place to fetch from: a registry and a server together are refused, as is a server
    // address with a path, and nothing is stored.
    let both = add(
        "both",
        &[
            "--set".into(),
            format!("pack_server={}", server.url),
            "--set".into(),
            "pack_registry=127.0.0.1:5000/packs".into(),
        ],
    )
    .user_error();
    assert!(both.stderr.contains("not both"), "{}", both.stderr);
    let path = add(
        "path",
        &["--set".into(), format!("pack_server={}/api/v1", server.url)],
    )
    .user_error();
    assert!(path.stderr.contains("pack_server"), "{}", path.stderr);
    add(
        "served",
        &[
            "--set".into(),
            format!("pack_server={}", server.url),
            "--set".into(),
            "pack_link_lifetime=2h".into(),
        ],
    )
    .success();
    let listed = cx.run(&["compute", "list", "--json"]).success().json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let shown = cx.run(&["compute", "show", "served"]).success();
    assert!(
        shown
            .stdout
            .contains(&format!("builds from the team server {}", server.url)),
        "{}",
        shown.stdout
    );
    // The workspace is this directory, not that server: its token is the pack server's own
    // variable, and TERRARIUM_TOKEN (the workspace's) never goes to a target's server.
    let job = |token: Option<&str>| -> common::Run {
        let mut command = cx.command();
        command.env("TERRARIUM_SECRET_API_TOKEN", "s3cr3t-value");
        command.env("TERRARIUM_TOKEN", "trm_workspace_token_not_for_targets");
        match token {
            Some(token) => command.env("TERRARIUM_PACK_SERVER_TOKEN", token),
            None => command.env_remove("TERRARIUM_PACK_SERVER_TOKEN"),
        };
        command
            .args([
                "run",
                "--env",
                "wh",
                "--target",
                "served",
                "--",
                "python",
                "-c",
                "import os, sys, alpha; print('prefix', sys.prefix); print('credentials', sorted(k for k in os.environ if k in ('TERRARIUM_TOKEN', 'TERRARIUM_PACK_SERVER_TOKEN') or k.startswith('TERRARIUM_SECRET_')))",
            ])
            .output()
            .unwrap()
            .into()
    };
    // Without a token the upload is refused, said so, and nothing runs or is recorded.
    let refused = job(None).user_error();
    assert!(
        refused.stderr.contains("pack_server")
            && refused.stderr.contains("TERRARIUM_PACK_SERVER_TOKEN"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        cx.run(&["runs", "list", "--json"]).success().json(),
        serde_json::json!([])
    );
    let out = job(Some(&token));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // The job sees none of the submitter's credentials (sbatch hands it the rest of the
    // submitter's variables).
    assert!(out.stdout.contains("credentials []"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("prefix {}", node.join("envs").display())),
        "{}",
        out.stdout
    );
    // The server keeps the pack under its digest; the node said it built from the server.
    let kept: Vec<String> = std::fs::read_dir(&packs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tpack"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let id = cx.run(&["runs", "list", "--json"]).success().json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let logs = cx.run(&["runs", "logs", &id]).success();
    let all = format!("{}{}", logs.stdout, logs.stderr);
    assert!(
        all.contains(&format!("from {}/api/v1/packs/sha256:", server.url)),
        "{all}"
    );
    // The signature is in the batch script the node runs, and in no log.
    assert!(!all.contains("signature="), "{all}");
    let script =
        std::fs::read_to_string(cx.workspace().join("runs").join(&id).join("job.sh")).unwrap();
    assert!(script.contains("signature="), "{script}");
    assert!(!script.contains(&token), "the batch script holds no token");
    // A second job: the server keeps the pack, so only a new link is asked for (an upload
    // would have put a new file in its place).
    use std::os::unix::fs::MetadataExt as _;
    let kept = packs.join(&kept[0]);
    let before = std::fs::metadata(&kept).unwrap().ino();
    let again = job(Some(&token));
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(std::fs::metadata(&kept).unwrap().ino(), before);
    drop(server);
}

/// delivery=pack: the submitting machine packs the lock once into the shared cache, and the
/// node builds it from the pack into its own cache, once; a damaged pack is refused on the
/// node and nothing is built from it.
#[test]
fn with_delivery_pack_each_node_builds_from_the_pack_once() {
    let Some(conf) = slurm_conf() else { return };
    if !uv_available() {
        return;
    }
    let cx = setup(&conf);
    let shared = cx.path("shared");
    let node = cx.path("node");
    cx.run(&[
        "compute",
        "add",
        "packed",
        "--kind",
        "slurm",
        "--set",
        &format!("conf={conf}"),
        "--set",
        "delivery=pack",
        "--set",
        &format!("cache={}", shared.display()),
        "--set",
        &format!("node_cache={}", node.display()),
    ])
    .success();
    let shown = cx.run(&["compute", "show", "packed"]).success();
    assert!(
        shown
            .stdout
            .contains("environments: pack: each node builds from")
            && shown.stdout.contains(&node.display().to_string()),
        "{}",
        shown.stdout
    );
    let script = "import sys, alpha; print('prefix', sys.prefix)";
    let run = |expect: i32| {
        let out = run_secret(
            &cx,
            &[
                "run", "--env", "wh", "--target", "packed", "--", "python", "-c", script,
            ],
        );
        assert_eq!(out.code, expect, "{}\n{}", out.stdout, out.stderr);
        out
    };
    let first = run(0);
    let envs = node.join("envs");
    assert!(
        first.stdout.contains(&format!("prefix {}", envs.display())),
        "{}",
        first.stdout
    );
    // The pack and the programs that install it are in the shared cache, the environment is
    // not: it was built on the node only.
    let packs: Vec<_> = std::fs::read_dir(shared.join("packs")).unwrap().collect();
    assert_eq!(packs.len(), 1);
    assert!(shared.join("bin").is_dir());
    assert!(!shared.join("envs").exists());
    // The `terrarium` shipped to the nodes is statically linked (static-pie, as every build of
    // the workspace on linux-gnu, `.cargo/config.toml`): it runs whatever C library a node has.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let shipped: Vec<std::path::PathBuf> = std::fs::read_dir(shared.join("bin"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("terrarium-"))
            })
            .collect();
        assert_eq!(shipped.len(), 1, "{shipped:?}");
        let headers = std::process::Command::new("readelf")
            .arg("-lW")
            .arg(&shipped[0])
            .output()
            .expect("readelf (binutils)");
        let text = String::from_utf8_lossy(&headers.stdout);
        assert!(
            headers.status.success()
                && text.contains("LOAD")
                && !text.contains("program interpreter"),
            "{text}"
        );
    }
    let built: Vec<std::path::PathBuf> = std::fs::read_dir(&envs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(built.len(), 1, "{built:?}");
    let marker = built[0].join(".terrarium/env.json");
    let stamp = std::fs::metadata(&marker).unwrap().modified().unwrap();

    // A second job on the same lock builds nothing on the node.
    run(0);
    assert_eq!(
        std::fs::metadata(&marker).unwrap().modified().unwrap(),
        stamp
    );

    // A pack whose files no longer match the lock: refused on the node, nothing runs and
    // nothing is built.
    std::fs::remove_dir_all(&envs).unwrap();
    let pack = packs[0].as_ref().unwrap().path();
    let mut bytes = std::fs::read(&pack).unwrap();
    let at = bytes.len() - 4096;
    bytes[at] ^= 0xff;
    std::fs::write(&pack, bytes).unwrap();
    let refused = run(97);
    let id = cx.run(&["runs", "list", "--json"]).success().json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let logs = cx.run(&["runs", "logs", &id]).success();
    assert!(
        logs.stdout.contains("could not build the environment wh:1"),
        "{}\n{}",
        logs.stdout,
        refused.stderr
    );
    assert!(!logs.stdout.contains("prefix "), "{}", logs.stdout);
    let left: Vec<_> = std::fs::read_dir(&envs)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// A conda environment (from a local channel the test writes) runs on Slurm with either
/// delivery: built in the shared cache, or on the node from its pack.
#[test]
fn a_conda_environment_runs_on_slurm_with_either_delivery() {
    let Some(conf) = slurm_conf() else { return };
    let cx = TestContext::new();
    let channel = make_channel(
        &cx.path("channel"),
        &[
            Package { name: "libbeta", version: "1.0", depends: &[], files: &[("share/libbeta/VERSION", "1.0\n", false)] },
            Package {
                name: "tool",
                version: "1.0",
                depends: &["libbeta"],
                files: &[("bin/tool", "#!/bin/sh\necho \"tool 1.0 with libbeta $(cat \"$CONDA_PREFIX/share/libbeta/VERSION\")\"\n", true)],
            },
        ],
    );
    let file = cx.write(
        "environment.yml",
        format!(
            "name: tools\nchannels:\n  - file://{}\ndependencies:\n  - tool\n",
            channel.display()
        ),
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    for (name, delivery) in [("shared", "shared"), ("packed", "pack")] {
        cx.run(&[
            "compute",
            "add",
            name,
            "--kind",
            "slurm",
            "--set",
            &format!("conf={conf}"),
            "--set",
            &format!("delivery={delivery}"),
            "--set",
            &format!("cache={}", cx.path(&format!("{name}-cache")).display()),
            "--set",
            &format!("node_cache={}", cx.path(&format!("{name}-node")).display()),
        ])
        .success();
        let out = cx.run(&["run", "--env", "tools", "--target", name, "--", "tool"]);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("tool 1.0 with libbeta 1.0"),
            "{delivery}: {}",
            out.stdout
        );
    }
    // With the pack, the environment was built on the node, not in the shared cache.
    assert!(cx.path("packed-node").join("envs").is_dir());
    assert!(!cx.path("packed-cache").join("envs").exists());
}
