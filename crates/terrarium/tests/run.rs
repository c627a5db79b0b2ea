//! Locks, built environments and runs, against a local wheelhouse the tests write themselves.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{make_wheels, uv_available, TestContext};

/// A wheelhouse: gamma -> alpha -> beta>=2; beta has 2.0 and 2.1.
fn wheelhouse(cx: &TestContext) -> std::path::PathBuf {
    let dir = cx.path("wheels");
    make_wheels(
        &dir,
        &[
            "alpha==1.0:beta>=2",
            "beta==2.0",
            "beta==2.1",
            "gamma==0.1:alpha",
            "delta==3.0:beta<2",
        ],
    );
    dir
}

fn pip_env(name: &str, wheels: &Path, requirements: &[&str]) -> String {
    let mut text = format!(
        "name: {name}\npython:\n  pip:\n    - --no-index\n    - --find-links {}\n",
        wheels.display()
    );
    for r in requirements {
        text.push_str(&format!("    - \"{r}\"\n"));
    }
    text
}

#[test]
fn lock_build_run_and_record() {
    if !uv_available() {
        return;
    }
    let cx = TestContext::new();
    let wheels = wheelhouse(&cx);
    let file = cx.write(
        "env.yml",
        pip_env("wh", &wheels, &["gamma"])
            + "environment_variables:\n  GREETING: hello\n  TOKEN: ${secret:API_TOKEN}\n",
    );
    let created = cx
        .run_path(&["env", "create", "--json", "-f"], &file, &[])
        .success()
        .json();
    let lock_hash = created["lock_hash"]
        .as_str()
        .expect("registration locks by default")
        .to_string();

    let lock = cx.run(&["env", "lock", "wh", "--json"]).success().json();
    assert_eq!(lock["lock_hash"], lock_hash);
    let names: Vec<String> = lock["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}=={}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["alpha==1.0", "beta==2.1", "gamma==0.1"]);

    // Run: the environment's interpreter first on PATH, variables and secrets set, exit code
    // passed through, output streamed and saved.
    let script = "import os, sys, gamma, beta; print('beta', beta.__version__, os.environ['GREETING'], os.environ['TOKEN']); print('to stderr', file=sys.stderr); sys.exit(3)";
    let run = cx
        .command()
        .args([
            "run",
            "--env",
            "wh",
            "--experiment",
            "exp1",
            "--",
            "python",
            "-c",
            script,
        ])
        .env("TERRARIUM_SECRET_API_TOKEN", "s3cret")
        .output()
        .unwrap();
    let run: common::Run = run.into();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        // The process gets the secret: what it prints of it is masked, which only the exact
        // value is.
        run.stdout.contains("beta 2.1 hello ***"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("to stderr"), "{}", run.stderr);

    let runs = cx.run(&["runs", "list", "--json"]).success().json();
    let record = &runs.as_array().unwrap()[0];
    for key in [
        "id",
        "experiment",
        "environment",
        "version",
        "lock_hash",
        "command",
        "exit_code",
        "started_at",
        "finished_at",
    ] {
        assert!(
            record.get(key).is_some_and(|v| !v.is_null()),
            "run lacks {key}: {record}"
        );
    }
    assert_eq!(record["experiment"], "exp1");
    assert_eq!(record["environment"], "wh");
    assert_eq!(record["version"], "1");
    assert_eq!(record["lock_hash"], lock_hash);
    assert_eq!(record["exit_code"], 3);
    let id = record["id"].as_str().unwrap();
    let shown = cx.run(&["runs", "show", id, "--json"]).success().json();
    assert_eq!(shown["command"][0], "python");
    let logs = cx.run(&["runs", "logs", id]).success();
    assert!(
        logs.stdout.contains("beta 2.1") && logs.stdout.contains("to stderr"),
        "{}",
        logs.stdout
    );
    // The secret's value is in the program's own output (it printed it), never in the record.
    assert!(!serde_json::to_string(&shown).unwrap().contains("s3cret"));

    // A missing secret is an error naming it, before anything runs.
    let missing = cx
        .run(&["run", "--env", "wh", "--", "python", "-c", "pass"])
        .user_error();
    assert!(
        missing.stderr.contains("secret `API_TOKEN` is not set"),
        "{}",
        missing.stderr
    );

    // Verify passes, then detects a tampered file.
    cx.run(&["env", "verify", "wh"]).success();
    let prefix = cx.run(&["env", "build", "wh", "--json"]).success().json()["prefix"]
        .as_str()
        .unwrap()
        .to_string();
    let module = std::fs::read_dir(Path::new(&prefix).join("lib"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("site-packages/beta/__init__.py");
    std::fs::write(&module, "__version__ = 'tampered'\n").unwrap();
    let verify = cx.run(&["env", "verify", "wh", "--json"]);
    assert_eq!(verify.code, 1);
    let report = verify.json();
    assert!(
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains("beta/__init__.py")),
        "{report}"
    );

    // Standard lock formats.
    let pylock = cx
        .run(&["env", "export", "wh", "--format", "pylock"])
        .success()
        .stdout;
    assert!(
        pylock.contains("lock-version = \"1.0\"")
            && pylock.contains("name = \"gamma\"")
            && pylock.contains("sha256"),
        "{pylock}"
    );
    let pixi = cx
        .run(&["env", "export", "wh", "--format", "pixi-lock"])
        .success()
        .stdout;
    assert!(pixi.starts_with("version: "), "{pixi}");
    assert!(
        pixi.contains("name: beta") && pixi.contains("sha256:"),
        "{pixi}"
    );
}

#[test]
fn locking_is_deterministic_and_relock_makes_a_version() {
    if !uv_available() {
        return;
    }
    let a = TestContext::new();
    let b = TestContext::new();
    let wheels = wheelhouse(&a);
    let file = a.write("env.yml", pip_env("det", &wheels, &["gamma", "beta"]));
    let first = a
        .run_path(&["env", "create", "--json", "-f"], &file, &[])
        .success()
        .json();
    let second = b
        .run_path(&["env", "create", "--json", "-f"], &file, &[])
        .success()
        .json();
    assert_eq!(first["lock_hash"], second["lock_hash"]);
    let export = |cx: &TestContext, format: &str| {
        cx.run(&["env", "export", "det", "--format", format])
            .success()
            .stdout
    };
    assert_eq!(export(&a, "pylock"), export(&b, "pylock"));
    assert_eq!(export(&a, "pixi-lock"), export(&b, "pixi-lock"));

    // A new release appears; the version's lock does not move, relock makes a new version.
    make_wheels(&wheels, &["beta==2.2"]);
    a.run(&["env", "build", "det"]).success();
    let lock = a.run(&["env", "lock", "det", "--json"]).success().json();
    assert_eq!(lock["lock_hash"], first["lock_hash"]);
    let relocked = a.run(&["env", "relock", "det", "--json"]).success().json();
    assert_eq!(relocked["version"], "2");
    assert_eq!(relocked["source"]["kind"], "relock");
    assert_eq!(relocked["parent"], "det:1");
    assert_eq!(relocked["content_hash"], first["content_hash"]);
    assert_ne!(relocked["lock_hash"], first["lock_hash"]);
    let diff = a
        .run(&["env", "diff", "det:1", "det:2", "--json"])
        .success()
        .json();
    let changes = diff["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{diff}");
    assert_eq!(changes[0]["section"], "locked");
    assert_eq!(changes[0]["key"], "pypi:beta");
    assert_eq!(changes[0]["old"], "2.1");
    assert_eq!(changes[0]["new"], "2.2");

    // --no-lock defers locking to first use, after which the lock is fixed.
    let file = a.write("later.yml", pip_env("later", &wheels, &["alpha"]));
    let deferred = a
        .run_path(&["env", "create", "--no-lock", "--json", "-f"], &file, &[])
        .success()
        .json();
    assert!(deferred["lock_hash"].is_null());
    a.run(&[
        "run",
        "--env",
        "later",
        "--",
        "python",
        "-c",
        "import alpha",
    ])
    .success();
    let locked = a.run(&["env", "show", "later", "--json"]).success().json();
    assert!(locked["lock_hash"].is_string());
}

#[test]
fn unsatisfiable_and_missing_packages() {
    if !uv_available() {
        return;
    }
    let cx = TestContext::new();
    let wheels = wheelhouse(&cx);
    let before = cx.snapshot();
    // gamma needs beta>=2 (through alpha), delta needs beta<2.
    let file = cx.write(
        "conflict.yml",
        pip_env("conflict", &wheels, &["gamma", "delta"]),
    );
    let run = cx
        .run_path(&["env", "create", "-f"], &file, &[])
        .user_error();
    assert!(run.stderr.contains("cannot be resolved"), "{}", run.stderr);
    for name in ["gamma", "delta", "beta"] {
        assert!(
            run.stderr.contains(name),
            "the error should name {name}:\n{}",
            run.stderr
        );
    }
    let file = cx.write(
        "missing.yml",
        pip_env("missing", &wheels, &["no-such-package"]),
    );
    let run = cx
        .run_path(&["env", "create", "-f"], &file, &[])
        .user_error();
    assert!(run.stderr.contains("no-such-package"), "{}", run.stderr);
    // Nothing was registered.
    assert_eq!(cx.snapshot(), before);
}

#[test]
fn materializing_needs_no_index_once_cached() {
    if !uv_available() {
        return;
    }
    let cx = TestContext::new();
    let wheels = wheelhouse(&cx);
    // Serve the wheelhouse over HTTP on loopback, as an index would be.
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(&wheels)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let port = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        line.split("port ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let text = format!("name: served\npython:\n  pip:\n    - --no-index\n    - --find-links http://127.0.0.1:{port}/\n    - gamma\n");
    let file = cx.write("env.yml", text);
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    cx.run(&["env", "build", "served"]).success();
    server.kill().unwrap();
    server.wait().unwrap();
    // Remove the built prefix; rebuild from the lock with the index gone.
    let gc = cx
        .run(&["cache", "gc", "--max-size", "0", "--json"])
        .success()
        .json();
    assert_eq!(gc.as_array().unwrap().len(), 1);
    let rebuilt = cx
        .run(&["env", "build", "served", "--json"])
        .success()
        .json();
    assert_eq!(rebuilt["built"], true);
    cx.run(&[
        "run",
        "--env",
        "served",
        "--",
        "python",
        "-c",
        "import gamma, alpha, beta",
    ])
    .success();
    cx.run(&["env", "verify", "served"]).success();
}

#[test]
fn four_concurrent_runs_of_a_new_environment() {
    if !uv_available() {
        return;
    }
    let cx = TestContext::new();
    let wheels = wheelhouse(&cx);
    let file = cx.write("env.yml", pip_env("together", &wheels, &["gamma"]));
    let children: Vec<_> = (0..4)
        .map(|i| {
            cx.command()
                .args(["run", "--env"])
                .arg(&file)
                .args([
                    "--",
                    "python",
                    "-c",
                    &format!("import gamma; print('run {i}', gamma.__version__)"),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let run: common::Run = child.wait_with_output().unwrap().into();
        let run = run.success();
        assert!(
            run.stdout.contains(&format!("run {i} 0.1")),
            "{}",
            run.stdout
        );
    }
    let history = cx
        .run(&["env", "history", "together", "--json"])
        .success()
        .json();
    assert_eq!(
        history["versions"].as_array().unwrap().len(),
        1,
        "one version"
    );
    assert_eq!(history["versions"][0]["source"]["kind"], "run");
    let cache = cx.run(&["cache", "list", "--json"]).success().json();
    assert_eq!(cache.as_array().unwrap().len(), 1, "one prefix: {cache}");
    let runs = cx.run(&["runs", "list", "--json"]).success().json();
    assert_eq!(runs.as_array().unwrap().len(), 4);
    assert!(runs.as_array().unwrap().iter().all(|r| r["exit_code"] == 0));
    // Another environment that resolves identically shares the prefix.
    let twin = cx.write("twin.yml", pip_env("twin", &wheels, &["gamma"]));
    cx.run_path(&["env", "create", "-f"], &twin, &[]).success();
    let built = cx.run(&["env", "build", "twin", "--json"]).success().json();
    assert_eq!(built["built"], false, "same lock, same prefix");
    assert_eq!(
        cx.run(&["cache", "list", "--json"])
            .success()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn kill_during_materialization_then_clean_rebuild() {
    if !uv_available() {
        return;
    }
    let cx = TestContext::new();
    let wheels = cx.path("wheels");
    // Enough packages that a build takes a moment.
    let specs: Vec<String> = (0..40).map(|i| format!("pkg{i}==1.0")).collect();
    make_wheels(
        &wheels,
        &specs.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let reqs: Vec<String> = (0..40).map(|i| format!("pkg{i}")).collect();
    let file = cx.write(
        "env.yml",
        pip_env(
            "killed",
            &wheels,
            &reqs.iter().map(String::as_str).collect::<Vec<_>>(),
        ),
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    // Kill -9 the build at increasing delays; after each, nothing may look complete unless it is.
    for delay_ms in [5u64, 20, 50, 100, 200] {
        cx.run(&["cache", "gc", "--max-size", "0"]).success();
        let mut child = cx
            .command()
            .args(["env", "build", "killed"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let entries = cx.run(&["cache", "list", "--json"]).success().json();
        for entry in entries.as_array().unwrap() {
            if entry["complete"] == true {
                // A prefix that says it is complete must be.
                cx.run(&["env", "verify", "killed"]).success();
            }
        }
    }
    let built = cx
        .run(&["env", "build", "killed", "--json"])
        .success()
        .json();
    assert!(Path::new(built["prefix"].as_str().unwrap())
        .join(".terrarium/env.json")
        .is_file());
    cx.run(&["env", "verify", "killed"]).success();
    // No temporary directories are left once a build has finished.
    let root = cx.path("cache/envs");
    let leftovers: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn user_managed_environments_are_recorded_not_resolved() {
    if !uv_available() {
        return;
    }
    let cx = TestContext::new();
    let wheels = wheelhouse(&cx);
    let venv = cx.path("mine");
    let uv = std::env::var("TERRARIUM_UV").unwrap_or_else(|_| "uv".into());
    let ok = Command::new(&uv)
        .args(["venv", "--quiet", "--python", "python3"])
        .arg(&venv)
        .env("UV_PYTHON_DOWNLOADS", "never")
        .status()
        .unwrap();
    assert!(ok.success());
    let python = venv.join("bin/python");
    let install = |pkg: &str| {
        let ok = Command::new(&uv)
            .args(["pip", "install", "--quiet", "--no-index", "--find-links"])
            .arg(&wheels)
            .arg("--python")
            .arg(&python)
            .arg(pkg)
            .env("UV_CACHE_DIR", cx.path("uv-cache"))
            .status()
            .unwrap();
        assert!(ok.success());
    };
    install("alpha");
    let file = cx.write(
        "mine.yml",
        format!(
            "name: mine\npython:\n  user_managed: true\n  interpreter: {}\n",
            python.display()
        ),
    );
    let created = cx
        .run_path(&["env", "create", "--json", "-f"], &file, &[])
        .success()
        .json();
    assert!(
        created["lock_hash"].is_null(),
        "user-managed: locked at first use"
    );
    let run = cx
        .run(&[
            "run",
            "--env",
            "mine",
            "--",
            "python",
            "-c",
            "import alpha, sys; print(sys.prefix)",
        ])
        .success();
    assert!(
        run.stdout
            .contains(venv.file_name().unwrap().to_str().unwrap()),
        "{}",
        run.stdout
    );
    let lock = cx.run(&["env", "lock", "mine", "--json"]).success().json();
    assert_eq!(lock["kind"], "user-managed");
    assert!(lock["packages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "alpha"));
    // The drift check remembers the interpreter's listing while its package directories are
    // unchanged: a second run starts no interpreter to list them (the listing is not rewritten).
    let listings = cx.path("cache").join("interpreters");
    let listing = |()| {
        use std::os::unix::fs::MetadataExt as _;
        let entries: Vec<_> = std::fs::read_dir(&listings)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        std::fs::metadata(&entries[0]).unwrap().ino()
    };
    let before = listing(());
    cx.run(&["run", "--env", "mine", "--", "python", "-c", "pass"])
        .success();
    assert_eq!(listing(()), before);
    // Installing something afterwards is noticed.
    install("gamma");
    let run = cx
        .run(&["run", "--env", "mine", "--", "python", "-c", "import gamma"])
        .success();
    assert!(
        run.stderr.contains("changed since it was recorded") && run.stderr.contains("gamma==0.1"),
        "{}",
        run.stderr
    );
    assert_ne!(listing(()), before, "listed again after the install");
}

#[test]
fn activate_and_kernel() {
    if !uv_available() {
        return;
    }
    let cx = TestContext::new();
    let wheels = wheelhouse(&cx);
    let file = cx.write(
        "env.yml",
        pip_env("act", &wheels, &["alpha"])
            + "environment_variables:\n  TOKEN: ${secret:T}\n  PLAIN: x y\n",
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    let code = cx.run(&["env", "activate", "act"]).success().stdout;
    assert!(
        code.contains("export PATH=") && code.contains("export VIRTUAL_ENV="),
        "{code}"
    );
    assert!(
        code.contains("export TOKEN=\"${TERRARIUM_SECRET_T}\""),
        "{code}"
    );
    // The shell code works: evaluated by sh, python imports the locked package.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{code}\npython -c 'import alpha, os; print(alpha.__version__, os.environ[\"PLAIN\"], os.environ[\"TOKEN\"])'"))
        .env("TERRARIUM_SECRET_T", "tok")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1.0 x y tok",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `env shell` starts $SHELL inside the environment (here fed commands on stdin).
    let mut shell = cx
        .command()
        .args(["env", "shell", "act"])
        .env("SHELL", "/bin/sh")
        .env("TERRARIUM_SECRET_T", "tok")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = shell.stdin.take().unwrap();
        stdin.write_all(b"python -c 'import alpha, os; print(\"in shell\", alpha.__version__, os.environ[\"TERRARIUM_ENVIRONMENT\"])'\nexit 7\n").unwrap();
    }
    let out: common::Run = shell.wait_with_output().unwrap().into();
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "in shell 1.0 act:1", "{}", out.stderr);

    let kernels = cx.path("kernels");
    let spec_path = cx
        .run_path(&["env", "kernel", "act", "--kernels-dir"], &kernels, &[])
        .success()
        .stdout;
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(spec_path.trim()).unwrap()).unwrap();
    assert!(spec["argv"][0].as_str().unwrap().ends_with("bin/python"));
    assert_eq!(spec["argv"][2], "ipykernel_launcher");
    assert!(
        spec["env"].get("TOKEN").is_none(),
        "secrets are not written into kernelspecs"
    );
}

/// `cache gc` removes the packs and shipped programs (compute targets' `packs/`, `bin/`) no job
/// used for 31 days, with their digest files, and nothing else there.
#[test]
fn cache_gc_removes_packs_and_programs_no_job_used() {
    let cx = TestContext::new();
    let cache = cx.path("cache");
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86_400);
    let file = |path: &std::path::Path, old: bool| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
        if old {
            std::fs::File::options()
                .append(true)
                .open(path)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
    };
    let old_pack = cache.join("packs/aaaa-linux-64.tpack");
    let old_digest = cache.join("packs/aaaa-linux-64.tpack.sha256");
    let new_pack = cache.join("packs/bbbb-linux-64.tpack");
    let old_program = cache.join("bin/uv-10-1f");
    let writing = cache.join("bin/.terrarium-abc");
    file(&old_pack, true);
    file(&old_digest, true);
    file(&new_pack, false);
    file(&old_program, true);
    file(&writing, true);
    let out = cx.run(&["cache", "gc"]).success();
    assert!(
        out.stderr
            .contains("removed 2 pack(s) and program(s) no job used in 31 days"),
        "{}",
        out.stderr
    );
    assert!(!old_pack.exists() && !old_digest.exists() && !old_program.exists());
    assert!(new_pack.exists() && writing.exists());
}

#[test]
fn cache_gc_is_lru_and_spares_environments_in_use() {
    if !uv_available() {
        return;
    }
    let cx = TestContext::new();
    let wheels = wheelhouse(&cx);
    for (name, req) in [("one", "alpha"), ("two", "gamma")] {
        let file = cx.write(&format!("{name}.yml"), pip_env(name, &wheels, &[req]));
        cx.run_path(&["env", "create", "-f"], &file, &[]).success();
        cx.run(&["env", "build", name]).success();
    }
    // Use `one` last: `two` is the least recently used.
    cx.run(&["run", "--env", "one", "--", "python", "-c", "pass"])
        .success();
    let list = cx.run(&["cache", "list", "--json"]).success().json();
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let size_of_one = entries[0]["size_bytes"].as_u64().unwrap();
    let removed = cx
        .run(&[
            "cache",
            "gc",
            "--max-size",
            &size_of_one.to_string(),
            "--json",
        ])
        .success()
        .json();
    assert_eq!(removed.as_array().unwrap().len(), 1, "{removed}");
    let one_lock = cx.run(&["env", "show", "one", "--json"]).success().json()["lock_hash"].clone();
    let left = cx.run(&["cache", "list", "--json"]).success().json();
    assert_eq!(
        left[0]["lock_hash"], one_lock,
        "the most recently used one stays"
    );

    // An environment in use survives any budget.
    let mut child = cx
        .command()
        .args([
            "run",
            "--env",
            "one",
            "--",
            "python",
            "-c",
            "import time; print('ready', flush=True); time.sleep(3)",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
    }
    let removed = cx
        .run(&["cache", "gc", "--max-size", "0", "--json"])
        .success()
        .json();
    assert!(removed.as_array().unwrap().is_empty(), "in use: {removed}");
    let list = cx.run(&["cache", "list", "--json"]).success().json();
    assert_eq!(list[0]["in_use"], true);
    assert!(child.wait().unwrap().success());
    let removed = cx
        .run(&["cache", "gc", "--max-size", "0", "--json"])
        .success()
        .json();
    assert_eq!(removed.as_array().unwrap().len(), 1);
}

/// A secret printed in two pieces, flushed apart, is masked in what `run` prints and in the
/// local log file as it is written (not only in the copy stored in the workspace); the log file
/// is its owner's only.
#[test]
fn secrets_are_masked_in_the_local_log_as_it_is_written() {
    use std::os::unix::fs::PermissionsExt;
    let cx = TestContext::new();
    let python = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v python3"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let file = cx.write(
        "sys.yml",
        format!(
            "name: sys\npython:\n  user_managed: true\n  interpreter: {}\nenvironment_variables:\n  TOKEN: ${{secret:API_TOKEN}}\n",
            python.trim()
        ),
    );
    let secret = "s3cr3t-value-42";
    // Both streams: the value split across two writes, flushed 200 ms apart.
    let script = "import os, sys, time\n\
                  v = os.environ['TOKEN']\n\
                  for f in (sys.stdout, sys.stderr):\n    \
                      f.write('token=' + v[:3]); f.flush(); time.sleep(0.2)\n    \
                      f.write(v[3:] + ' end\\n'); f.flush()\n";
    let run: common::Run = cx
        .command()
        .args(["run", "--env"])
        .arg(&file)
        .args(["--", "python3", "-c", script])
        .env("TERRARIUM_SECRET_API_TOKEN", secret)
        .output()
        .unwrap()
        .into();
    let run = run.success();
    assert!(run.stdout.contains("token=*** end"), "{}", run.stdout);
    assert!(run.stderr.contains("token=*** end"), "{}", run.stderr);
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));

    let runs = cx.run(&["runs", "list", "--json"]).success().json();
    let id = runs[0]["id"].as_str().unwrap();
    let path = cx.workspace().join(format!("runs/{id}.log"));
    let log = std::fs::read_to_string(&path).unwrap();
    assert_eq!(log.matches("token=*** end\n").count(), 2, "{log}");
    assert!(!log.contains(secret), "{log}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{path:?}");
    let stored = cx.run(&["runs", "logs", id]).success().stdout;
    assert!(
        !stored.contains(secret) && stored.contains("token=***"),
        "{stored}"
    );
}

/// Local runs are followed, waited for and cancelled like jobs on compute targets; a run whose
/// `terrarium run` process died is recorded as lost, not left running.
#[test]
fn local_runs_are_waited_for_followed_cancelled_and_lost() {
    if !uv_available() {
        return;
    }
    let cx = TestContext::new();
    let wheels = wheelhouse(&cx);
    let file = cx.write("env.yml", pip_env("loc", &wheels, &["beta==2.0"]));
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    let program = "import time; print('started', flush=True); time.sleep(120)";
    let start = || {
        // The runs there were before, so that the new one is told apart.
        let before: Vec<String> = cx
            .run(&["runs", "list", "--json"])
            .success()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        // Returned to the caller, which waits for it.
        #[allow(clippy::zombie_processes)]
        let mut child = cx
            .command()
            .args(["run", "--env", "loc", "--", "python", "-c", program])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The newest run, once its program has printed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let runs = cx.run(&["runs", "list", "--json"]).success().json();
            let newest = runs[0]["id"]
                .as_str()
                .filter(|id| !before.contains(&id.to_string()));
            if let Some(id) = newest {
                let log = cx.workspace().join("runs").join(format!("{id}.log"));
                if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("started")) {
                    return (child, id.to_string());
                }
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the run did not start: {runs}");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };

    // Cancelled: the program stops, the run says so, and `runs wait` exits non-zero.
    let (mut child, id) = start();
    let out = cx.run(&["runs", "cancel", &id]).success();
    assert!(out.stderr.contains("cancelled"), "{}", out.stderr);
    assert!(!child.wait().unwrap().success());
    let shown = cx.run(&["runs", "show", &id, "--json"]).success().json();
    assert_eq!(shown["state"], "cancelled", "{shown}");
    assert_ne!(cx.run(&["runs", "wait", &id]).code, 0);
    let followed = cx.run(&["runs", "logs", &id, "--follow"]);
    assert!(followed.stdout.contains("started"), "{}", followed.stdout);

    // Its `terrarium run` killed: the run is lost, and nothing waits for ever.
    let (mut child, id) = start();
    child.kill().unwrap();
    child.wait().unwrap();
    // Its program lives on; stop it too.
    let pid = cx.workspace().join("runs").join(format!("{id}.pid"));
    let pid = std::fs::read_to_string(pid).unwrap();
    Command::new("kill").arg(pid.trim()).status().unwrap();
    let waited = cx.run(&["runs", "wait", &id]);
    assert_ne!(waited.code, 0);
    assert!(
        waited.stderr.contains("ended without recording"),
        "{}",
        waited.stderr
    );
    let shown = cx.run(&["runs", "show", &id, "--json"]).success().json();
    assert_eq!(shown["state"], "lost", "{shown}");

    // A run that ended: `runs wait` gives its exit code at once.
    let done = cx.run(&[
        "run",
        "--env",
        "loc",
        "--",
        "python",
        "-c",
        "raise SystemExit(4)",
    ]);
    assert_eq!(done.code, 4);
    let id = cx.run(&["runs", "list", "--json"]).success().json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cx.run(&["runs", "wait", &id]).code, 4);
}
