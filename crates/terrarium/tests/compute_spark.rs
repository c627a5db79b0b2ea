//! Runs on a Spark target through the CLI: `spark-submit` from the environment itself, in
//! local mode, with pyspark from the wheels `scripts/test-tools.sh` builds once from PyPI
//! (`TERRARIUM_TEST_SPARK_WHEELS`) and the machine's Java.

mod common;

use common::{uv_available, TestContext};

fn spark_wheels() -> Option<String> {
    let wheels = std::env::var("TERRARIUM_TEST_SPARK_WHEELS").ok();
    if wheels.is_none() {
        eprintln!("skipped: TERRARIUM_TEST_SPARK_WHEELS is not set (scripts/test-tools.sh)");
    }
    wheels
}

/// A workspace with a pyspark environment `sp` and a local-mode Spark target `local2`.
fn setup(wheels: &str) -> TestContext {
    let cx = TestContext::new();
    let file = cx.write(
        "env.yml",
        format!(
            "name: sp\npython:\n  pip:\n    - --no-index\n    - --find-links {wheels}\n    - pyspark\nenvironment_variables:\n  GREETING: hello\n"
        ),
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    cx.run(&[
        "compute",
        "add",
        "local2",
        "--kind",
        "spark",
        "--set",
        "master=local[2]",
        "--set",
        "conf=spark.ui.enabled=false",
    ])
    .success();
    cx.write(
        "job.py",
        "import os, sys, time\n\
         from pyspark.sql import SparkSession\n\
         spark = SparkSession.builder.getOrCreate()\n\
         rdd = spark.sparkContext.parallelize(range(4), 2)\n\
         print('sum', rdd.map(lambda x: x * x).sum(), os.environ['GREETING'], flush=True)\n\
         workers = set(rdd.map(lambda _: __import__('sys').executable).collect())\n\
         print('workers use the environment', workers == {sys.executable}, sys.prefix == os.environ['TERRARIUM_PREFIX'], flush=True)\n\
         time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)\n\
         spark.stop()\n\
         sys.exit(int(sys.argv[1]))\n",
    );
    cx
}

fn spark(cx: &TestContext, args: &[&str]) -> common::Run {
    cx.command()
        .current_dir(cx.path(""))
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .args(args)
        .output()
        .unwrap()
        .into()
}

#[test]
fn a_spark_run_uses_the_environment_on_driver_and_executors() {
    let Some(wheels) = spark_wheels() else { return };
    if !uv_available() {
        return;
    }
    let cx = setup(&wheels);
    let shown = cx
        .run(&["compute", "show", "local2", "--json"])
        .success()
        .json();
    assert!(
        shown["check"]["engine"]
            .as_str()
            .is_some_and(|e| e.starts_with("spark master local[2]")),
        "{shown}"
    );
    let dry = spark(
        &cx,
        &[
            "run",
            "--env",
            "sp",
            "--target",
            "local2",
            "--dry-run",
            "--",
            "job.py",
            "3",
        ],
    )
    .success();
    assert!(
        dry.stdout.contains("bin/spark-submit --master 'local[2]'"),
        "{}",
        dry.stdout
    );

    // Attached: the driver's output streams, the run exits with the driver's code.
    let out = spark(
        &cx,
        &[
            "run", "--env", "sp", "--target", "local2", "--", "python", "job.py", "3",
        ],
    );
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("sum 14 hello"), "{}", out.stdout);
    assert!(
        out.stdout.contains("workers use the environment True True"),
        "{}",
        out.stdout
    );
    let run = &cx.run(&["runs", "list", "--json"]).success().json()[0];
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["exit_code"], 3);
    assert_eq!(run["job"]["kind"], "spark");
    assert_eq!(run["job"]["node_list"], "localhost");

    // Detached, then cancelled: the driver and its JVM stop, the run says so.
    let id = spark(
        &cx,
        &[
            "run", "--env", "sp", "--target", "local2", "--detach", "--", "job.py", "0", "300",
        ],
    )
    .success()
    .stdout
    .trim()
    .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let logs = cx.run(&["runs", "logs", &id]);
        if logs.stdout.contains("workers use the environment") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", logs.stdout);
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    cx.run(&["runs", "cancel", &id]).success();
    let shown = cx.run(&["runs", "show", &id, "--json"]).success().json();
    assert_eq!(shown["state"], "cancelled", "{shown}");
    let pid: u32 = shown["job"]["job_id"].as_str().unwrap().parse().unwrap();
    // Gone (or a zombie waiting for its reaper, with no command line).
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(cmdline.is_empty(), "{}", String::from_utf8_lossy(&cmdline));
}

/// A standalone master and worker (`eval "$(scripts/spark.sh start DIR)"`, which `.ci/run`
/// does): the executors on the worker use the environment's Python, the cluster's version is
/// read and checked, and the application id is recorded.
#[test]
fn a_spark_run_on_a_standalone_cluster() {
    let Some(wheels) = spark_wheels() else { return };
    let Ok(master) = std::env::var("TERRARIUM_TEST_SPARK_MASTER") else {
        eprintln!("skipped: TERRARIUM_TEST_SPARK_MASTER is not set (scripts/spark.sh start DIR)");
        return;
    };
    if !uv_available() {
        return;
    }
    let ui = std::env::var("TERRARIUM_TEST_SPARK_MASTER_UI").unwrap();
    let cx = setup(&wheels);
    cx.run(&[
        "compute",
        "add",
        "cluster",
        "--kind",
        "spark",
        "--set",
        &format!("master={master}"),
        "--set",
        &format!("master_ui={ui}"),
        "--set",
        "executor_memory=512m",
        "--set",
        "conf=spark.ui.enabled=false;spark.cores.max=2",
    ])
    .success();
    let shown = cx
        .run(&["compute", "show", "cluster", "--json"])
        .success()
        .json();
    assert!(
        shown["check"]["engine"]
            .as_str()
            .is_some_and(|e| e.contains("(Spark 4.0.1)")),
        "{shown}"
    );
    let out = spark(
        &cx,
        &[
            "run", "--env", "sp", "--target", "cluster", "--", "job.py", "0",
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("workers use the environment True True"),
        "{}",
        out.stdout
    );
    let run = &cx.run(&["runs", "list", "--json"]).success().json()[0];
    assert_eq!(run["state"], "completed", "{run}");
    assert!(
        run["job"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("application app-")),
        "{run}"
    );

    // What the executors wrote is fetched from the worker once the driver has ended, and shown
    // by `runs logs` after the driver's own log.
    cx.write(
        "executors.py",
        "import sys\n\
         from pyspark.sql import SparkSession\n\
         spark = SparkSession.builder.getOrCreate()\n\
         def say(x):\n    print('executor says', x, file=sys.stderr, flush=True)\n    return x\n\
         print('total', spark.sparkContext.parallelize(range(4), 2).map(say).sum(), flush=True)\n\
         spark.stop()\n",
    );
    let out = spark(
        &cx,
        &[
            "run",
            "--env",
            "sp",
            "--target",
            "cluster",
            "--",
            "executors.py",
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let id = cx.run(&["runs", "list", "--json"]).success().json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let logs = cx.run(&["runs", "logs", &id]).success();
    assert!(logs.stdout.contains("==> driver <=="), "{}", logs.stdout);
    assert!(
        logs.stdout.contains("==> executor 0 stderr <=="),
        "{}",
        logs.stdout
    );
    assert!(logs.stdout.contains("executor says 3"), "{}", logs.stdout);
    // Fetched once: the copies are read back the second time.
    let again = cx.run(&["runs", "logs", &id]).success();
    assert_eq!(again.stdout, logs.stdout);
}

/// With delivery=pack nothing is shared with the workers: the driver builds from the pack into
/// this machine's node cache, and Spark ships the pack, the programs and the executors' Python
/// script to each executor (`--files`), which run the environment built from it.
#[test]
fn a_spark_run_with_delivery_pack_ships_the_environment_to_the_executors() {
    let Some(wheels) = spark_wheels() else { return };
    let Ok(master) = std::env::var("TERRARIUM_TEST_SPARK_MASTER") else {
        eprintln!("skipped: TERRARIUM_TEST_SPARK_MASTER is not set (scripts/spark.sh start DIR)");
        return;
    };
    if !uv_available() {
        return;
    }
    let cx = setup(&wheels);
    let node_cache = cx.path("node-cache");
    cx.run(&[
        "compute",
        "add",
        "packed",
        "--kind",
        "spark",
        "--set",
        &format!("master={master}"),
        "--set",
        "delivery=pack",
        "--set",
        &format!("node_cache={}", node_cache.display()),
        "--set",
        &format!("cache={}", cx.path("submit-cache").display()),
        "--set",
        "conf=spark.ui.enabled=false;spark.cores.max=2",
    ])
    .success();
    let dry = spark(
        &cx,
        &[
            "run",
            "--env",
            "sp",
            "--target",
            "packed",
            "--dry-run",
            "--",
            "job.py",
            "0",
        ],
    )
    .success();
    assert!(
        dry.stdout
            .contains("spark.pyspark.python=./terrarium-python")
            && dry.stdout.contains("--files ")
            && dry.stdout.contains(".tpack"),
        "{}",
        dry.stdout
    );
    cx.write(
        "packed.py",
        "import os, sys\n\
         from pyspark.sql import SparkSession\n\
         spark = SparkSession.builder.getOrCreate()\n\
         def where(_):\n    import os, sys\n    return (sys.executable, os.environ.get('TERRARIUM_PREFIX'), sorted(f for f in os.listdir('.') if f.endswith('.tpack') or f == 'terrarium-python'))\n\
         seen = set(tuple([e, p, tuple(f)]) for e, p, f in spark.sparkContext.parallelize(range(4), 2).map(where).collect())\n\
         print('driver', sys.executable, flush=True)\n\
         for e, p, f in seen:\n    print('executor', e, p, ' '.join(f), flush=True)\n\
         spark.stop()\n",
    );
    let out = spark(
        &cx,
        &[
            "run",
            "--env",
            "sp",
            "--target",
            "packed",
            "--",
            "packed.py",
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let prefix_root = format!("{}/envs/", node_cache.display());
    let driver = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("driver "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(driver.starts_with(&prefix_root), "{driver}");
    let executors: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("executor "))
        .collect();
    assert!(!executors.is_empty(), "{}", out.stdout);
    for line in executors {
        // The environment's Python from the node cache, started through the shipped script,
        // with the pack beside it in the executor's working directory.
        let parts: Vec<&str> = line.split(' ').collect();
        assert!(parts[0].starts_with(&prefix_root), "{line}");
        assert!(parts[1].starts_with(&prefix_root), "{line}");
        assert!(parts[2..].iter().any(|f| f.ends_with(".tpack")), "{line}");
        assert!(parts.contains(&"terrarium-python"), "{line}");
    }
    // The pack was written once on this machine; nothing was built in the submitting cache.
    let packs = std::fs::read_dir(cx.path("submit-cache/packs"))
        .unwrap()
        .count();
    assert_eq!(packs, 1);
    assert!(!cx.path("submit-cache/envs").exists());
}

/// The definition's `spark.packages` and `spark.repositories` reach the driver as `--packages`
/// and `--repositories`: a jar the test compiles, in a Maven-layout repository it writes, is
/// resolved and called from Python.
#[test]
fn spark_packages_come_from_the_definitions_repositories() {
    let Some(wheels) = spark_wheels() else { return };
    if !uv_available() {
        return;
    }
    let have = |tool: &str| {
        std::process::Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("javac") {
        eprintln!("skipped: no javac to build the test's jar");
        return;
    }
    let cx = TestContext::new();
    // org.example:tiny:1.0, a class with one static method, in a Maven layout.
    let src = cx.path("src/org/example");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("Tiny.java"),
        "package org.example; public class Tiny { public static String greet() { return \"tiny 1.0 from the jar\"; } }\n",
    )
    .unwrap();
    let classes = cx.path("classes");
    let javac = std::process::Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg(src.join("Tiny.java"))
        .output()
        .unwrap();
    assert!(javac.status.success(), "{javac:?}");
    let repo = cx.path("maven");
    let dir = repo.join("org/example/tiny/1.0");
    std::fs::create_dir_all(&dir).unwrap();
    let jar = std::process::Command::new("jar")
        .arg("cf")
        .arg(dir.join("tiny-1.0.jar"))
        .arg("-C")
        .arg(&classes)
        .arg(".")
        .output()
        .unwrap();
    assert!(jar.status.success(), "{jar:?}");
    std::fs::write(
        dir.join("tiny-1.0.pom"),
        "<project xmlns=\"http://maven.apache.org/POM/4.0.0\"><modelVersion>4.0.0</modelVersion><groupId>org.example</groupId><artifactId>tiny</artifactId><version>1.0</version></project>\n",
    )
    .unwrap();
    let file = cx.write(
        "env.yml",
        format!(
            "name: spj\npython:\n  pip:\n    - --no-index\n    - --find-links {wheels}\n    - pyspark\nspark:\n  repositories:\n    - file://{}\n  packages:\n    - org.example:tiny:1.0\n  precache: false\n",
            repo.display()
        ),
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    cx.run(&[
        "compute",
        "add",
        "local1",
        "--kind",
        "spark",
        "--set",
        "master=local[1]",
        "--set",
        &format!(
            "conf=spark.ui.enabled=false;spark.jars.ivy={}",
            cx.path("ivy").display()
        ),
    ])
    .success();
    cx.write(
        "jar.py",
        "from pyspark.sql import SparkSession\n\
         spark = SparkSession.builder.getOrCreate()\n\
         print(spark.sparkContext._jvm.org.example.Tiny.greet(), flush=True)\n\
         spark.stop()\n",
    );
    let dry = spark(
        &cx,
        &[
            "run",
            "--env",
            "spj",
            "--target",
            "local1",
            "--dry-run",
            "--",
            "jar.py",
        ],
    )
    .success();
    assert!(
        dry.stdout
            .contains("--packages org.example:tiny:1.0 --repositories file://"),
        "{}",
        dry.stdout
    );
    let out = spark(
        &cx,
        &["run", "--env", "spj", "--target", "local1", "--", "jar.py"],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("tiny 1.0 from the jar"),
        "{}",
        out.stdout
    );
}
