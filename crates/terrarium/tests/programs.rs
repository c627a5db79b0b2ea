//! What programs that drive the CLI rely on (the Python SDK among them): errors as one line of
//! JSON with `TERRARIUM_ERRORS=json`, the run's id in a file and in the program's environment,
//! `env build --json` for every kind of environment, and a stdout closed early.

mod common;

use std::process::{Command, Stdio};

use common::TestContext;

/// The JSON error line a command printed last on stderr, and the text before it.
#[track_caller]
fn json_error(run: &common::Run) -> (serde_json::Value, String) {
    let text = run.stderr.trim_end_matches('\n');
    let (before, last) = text.rsplit_once('\n').unwrap_or(("", text));
    let value: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the last stderr line is not JSON ({e}):\n{}", run.stderr));
    (value["error"].clone(), format!("{before}\n"))
}

/// `args` with and without `TERRARIUM_ERRORS=json`: the same exit code and the same text for
/// people, then one JSON line.
#[track_caller]
fn both_ways(cx: &TestContext, args: &[&str]) -> (common::Run, serde_json::Value) {
    both_ways_with(|| cx.command(), args)
}

#[track_caller]
fn both_ways_with(
    command: impl Fn() -> Command,
    args: &[&str],
) -> (common::Run, serde_json::Value) {
    let plain: common::Run = command().args(args).output().unwrap().into();
    assert!(
        !plain.stderr.contains("{\"error\""),
        "no JSON unless asked:\n{}",
        plain.stderr
    );
    let run: common::Run = command()
        .args(args)
        .env("TERRARIUM_ERRORS", "json")
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, plain.code, "{}", run.stderr);
    let (error, before) = json_error(&run);
    assert_eq!(before, plain.stderr, "the text for people is unchanged");
    (run, error)
}

/// A user-managed environment on this machine's python3: nothing to resolve or build.
fn system_python(cx: &TestContext) -> (std::path::PathBuf, String) {
    let python = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v python3"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let file = cx.write(
        "sys.yml",
        format!("name: sys\npython:\n  user_managed: true\n  interpreter: {python}\n"),
    );
    (file, python)
}

#[test]
fn errors_for_programs_name_the_case_and_the_place() {
    let cx = TestContext::new();
    let mut compared = 0;

    // A bad pip requirement on line 7 of a conda file.
    let conda = cx.write(
        "environment.yml",
        "name: bad\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - pip:\n      - torch ===\n",
    );
    let (run, error) = both_ways(
        &cx,
        &["env", "create", "--no-lock", "-f", conda.to_str().unwrap()],
    );
    assert_eq!(run.code, 2);
    assert_eq!(error["code"], "invalid_definition", "{error}");
    assert_eq!(
        error["location"],
        serde_json::json!({"file": conda.display().to_string(), "line": 7, "field": "dependencies[1].pip"})
    );
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("invalid requirement `torch ===`"),
        "{message}"
    );
    assert!(error.get("hint").is_none(), "no hint, no key: {error}");
    compared += 1;

    // A value of the wrong type in an Azure ML v1 file: the field and its line.
    let aml = cx.write(
        "aml/azureml_environment.json",
        "{\"name\": \"x\",\n \"python\": [1]\n}\n",
    );
    let (_, error) = both_ways(
        &cx,
        &[
            "env",
            "validate",
            aml.parent().unwrap().to_str().unwrap(),
            "--format",
            "aml-v1",
            "--json",
        ],
    );
    assert_eq!(error["code"], "invalid_definition", "{error}");
    assert_eq!(error["location"]["line"], 2, "{error}");
    assert_eq!(error["location"]["field"], "python", "{error}");
    assert!(
        error["location"]["file"]
            .as_str()
            .unwrap()
            .ends_with("azureml_environment.json"),
        "{error}"
    );
    compared += 1;

    // A definition that is not there: the file, without line or field.
    let (_, error) = both_ways(&cx, &["env", "create", "-f", "no-such-file.yml"]);
    assert_eq!(error["code"], "invalid_definition", "{error}");
    assert_eq!(
        error["location"],
        serde_json::json!({"file": "no-such-file.yml"})
    );
    assert_eq!(
        error["causes"].as_array().unwrap().len(),
        1,
        "the OS's reason is a cause: {error}"
    );
    compared += 1;

    // A missing environment, with the hint people get.
    let (run, error) = both_ways(&cx, &["env", "show", "no-such-env"]);
    assert_eq!(run.code, 2);
    assert_eq!(
        error,
        serde_json::json!({
            "code": "not_found",
            "message": "environment `no-such-env` not found",
            "causes": [],
            "hint": "`terrarium env list` shows the environments in this workspace",
        })
    );
    compared += 1;

    // Curated environments are read-only.
    let (_, error) = both_ways(&cx, &["env", "archive", "curated/sklearn"]);
    assert_eq!(error["code"], "curated", "{error}");
    compared += 1;

    // An explicit version that exists with other content.
    let (file, _) = system_python(&cx);
    cx.run_path(
        &["env", "create", "--no-lock", "--version", "7", "-f"],
        &file,
        &[],
    )
    .success();
    let changed = cx.write(
        "sys2.yml",
        "name: sys\npython:\n  user_managed: true\n  interpreter: /usr/bin/python3\nenvironment_variables:\n  A: \"1\"\n",
    );
    let (_, error) = both_ways(
        &cx,
        &[
            "env",
            "create",
            "--no-lock",
            "--version",
            "7",
            "-f",
            changed.to_str().unwrap(),
        ],
    );
    assert_eq!(error["code"], "conflict", "{error}");
    compared += 1;

    // Any other request at fault: a bad reference, a command line that does not parse.
    let (_, error) = both_ways(&cx, &["env", "show", "Bad Name!"]);
    assert_eq!(error["code"], "invalid", "{error}");
    assert!(error["hint"].is_string(), "{error}");
    let (run, error) = both_ways(&cx, &["env", "no-such-command"]);
    assert_eq!(run.code, 2);
    assert_eq!(error["code"], "invalid", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("no-such-command"),
        "{error}"
    );
    compared += 2;

    // Something failed (exit code 1): a workspace that cannot be created.
    let blocker = cx.write("not-a-dir", "");
    let (run, error) = both_ways_with(
        || cx.command_without_workspace(),
        &[
            "--workspace",
            blocker.join("ws").to_str().unwrap(),
            "env",
            "list",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(error["code"], "failure", "{error}");
    assert!(!error["causes"].as_array().unwrap().is_empty(), "{error}");
    compared += 1;

    assert_eq!(compared, 9, "every case was compared");
}

#[test]
fn a_run_writes_its_id_before_the_program_starts_and_gives_it_to_the_program() {
    let cx = TestContext::new();
    let (file, _) = system_python(&cx);
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    let id_file = cx.path("out/run-id");
    std::fs::create_dir_all(id_file.parent().unwrap()).unwrap();
    // The program reads the file: it was there before it started.
    let script = format!(
        "import os; print(os.environ['TERRARIUM_RUN_ID'], open({:?}).read() == os.environ['TERRARIUM_RUN_ID'] + '\\n')",
        id_file.display().to_string()
    );
    let run = cx
        .run(&[
            "run",
            "--env",
            "sys",
            "--id-file",
            id_file.to_str().unwrap(),
            "--",
            "python3",
            "-c",
            &script,
        ])
        .success();
    let recorded = cx.run(&["runs", "list", "--json"]).success().json();
    let id = recorded[0]["id"].as_str().unwrap();
    assert_eq!(run.stdout, format!("{id} True\n"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(&id_file).unwrap(),
        format!("{id}\n")
    );
    assert_eq!(recorded[0]["state"], "completed");

    // A file that cannot be written: the run is recorded as failed, and the program never ran.
    let marker = cx.path("ran");
    let run = cx.run(&[
        "run",
        "--env",
        "sys",
        "--id-file",
        cx.path("no-such-dir/run-id").to_str().unwrap(),
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!marker.exists(), "the program did not start");
    let recorded = cx.run(&["runs", "list", "--json"]).success().json();
    assert_eq!(recorded.as_array().unwrap().len(), 2);
    assert_eq!(recorded[0]["state"], "failed", "{recorded}");

    // Jobs on compute targets get the id in their environment; --id-file is refused there.
    cx.run(&["compute", "add", "hpc", "--kind", "slurm", "--no-check"])
        .success();
    let dry = cx
        .run(&[
            "run",
            "--env",
            "sys",
            "--target",
            "hpc",
            "--dry-run",
            "--",
            "true",
        ])
        .success();
    assert!(
        dry.stdout
            .contains("variables from sbatch's environment: TERRARIUM_RUN_ID"),
        "{}",
        dry.stdout
    );
    cx.run(&[
        "run",
        "--env",
        "sys",
        "--target",
        "hpc",
        "--id-file",
        id_file.to_str().unwrap(),
        "--",
        "true",
    ])
    .user_error();
}

#[test]
fn env_build_json_covers_user_managed_environments() {
    let cx = TestContext::new();
    let (file, python) = system_python(&cx);
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    let built = cx.run(&["env", "build", "sys", "--json"]).success().json();
    assert_eq!(built["name"], "sys");
    assert_eq!(built["version"], "1");
    assert!(
        built["lock_hash"].as_str().unwrap().starts_with("sha256:"),
        "{built}"
    );
    assert_eq!(built["prefix"], serde_json::Value::Null);
    assert_eq!(built["built"], false);
    assert_eq!(built["user_managed"], true);
    assert_eq!(built["interpreter"], python.as_str(), "{built}");
    // Without --json, nothing on stdout: there is no prefix to print.
    let plain = cx.run(&["env", "build", "sys"]).success();
    assert_eq!(plain.stdout, "");
    assert!(plain.stderr.contains("user-managed"), "{}", plain.stderr);
}

/// Commands whose stdout's reader has gone (`terrarium env list | head -1`) end quietly with
/// success, whichever way they print.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let cx = TestContext::new();
    let (file, _) = system_python(&cx);
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    let cases: &[&[&str]] = &[
        &["env", "list", "--json"],
        &["env", "list"],
        &["env", "show", "curated/sklearn"],
        &["env", "export", "curated/sklearn", "--format", "conda"],
        &["env", "build", "sys", "--json"],
        &["curated", "list"],
        &["runs", "list"],
    ];
    let mut compared = 0;
    for args in cases {
        // A pipe whose reading end is closed before the command starts: its first write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = cx
            .command()
            .args(*args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("error"),
            "{args:?}: {stderr}"
        );
        compared += 1;
    }
    assert_eq!(compared, cases.len());

    // A reader that goes away part way (`env list --json | head -c1`): more than a pipe holds
    // (a 300 kB description), so that the command is still writing when the pipe closes.
    let big = cx.write(
        "big.yml",
        format!(
            "name: big\ndescription: {}\npython:\n  user_managed: true\n  interpreter: /usr/bin/python3\n",
            "x".repeat(300_000)
        ),
    );
    cx.run_path(&["env", "create", "--no-lock", "-f"], &big, &[])
        .success();
    let mut child = cx
        .command()
        .args(["env", "list", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first, b"[");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
}
