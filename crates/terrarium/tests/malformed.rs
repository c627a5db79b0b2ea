//! Malformed input: a clear error naming file, line and field, exit code 2, and a workspace
//! left exactly as it was.

mod common;

use common::{TestContext, CONDA_ENV};

/// Register one good environment, try `file`, and check the failure and the unchanged workspace.
#[track_caller]
fn rejects(cx: &TestContext, file: &std::path::Path, extra: &[&str], expected: &[&str]) -> String {
    let before = cx.snapshot();
    let run = cx.run_path(
        &["env", "create", "--no-lock", "--name", "bad", "-f"],
        file,
        extra,
    );
    assert_eq!(
        run.code, 2,
        "expected exit 2\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    for part in expected {
        assert!(
            run.stderr.contains(part),
            "stderr lacks `{part}`:\n{}",
            run.stderr
        );
    }
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert_eq!(cx.snapshot(), before, "the workspace changed");
    // validate reports the same error.
    let validate = cx.run_path(&["env", "validate"], file, extra);
    assert_eq!(validate.code, 2, "{}", validate.stderr);
    run.stderr
}

fn context() -> TestContext {
    let cx = TestContext::new();
    let good = cx.write("good.yml", CONDA_ENV);
    cx.run_path(&["env", "create", "--no-lock", "-f"], &good, &[])
        .success();
    cx
}

#[test]
fn truncated_yaml() {
    let cx = context();
    // Cut in the middle of a flow sequence.
    let text = "name: t\nchannels: [conda-forge,\ndependencies:\n  - python=3.11\n";
    let file = cx.write("truncated.yml", text);
    rejects(&cx, &file, &[], &["truncated.yml:", "invalid YAML"]);
    // Cut inside a quoted string.
    let file = cx.write(
        "truncated2.yml",
        "name: t\ndescription: \"an unterminated\n",
    );
    rejects(&cx, &file, &[], &["truncated2.yml:", "invalid YAML"]);
}

#[test]
fn a_file_that_is_not_a_mapping_says_what_the_top_must_be() {
    let cx = context();
    for (name, text, found) in [
        ("scalar.yml", "just a sentence\n", "found a scalar"),
        ("list.yml", "- numpy\n- pandas\n", "found a list"),
    ] {
        let file = cx.write(name, text);
        // As a conda file, and as whatever the file is taken for without --format.
        for extra in [&["--format", "conda"][..], &[]] {
            let stderr = rejects(
                &cx,
                &file,
                extra,
                &[
                    &format!("{name}:1: expected a mapping of fields (such as `name:`)"),
                    found,
                ],
            );
            assert!(!stderr.contains("field ``"), "{stderr}");
        }
        // For programs, the location names the file and line, and no field.
        let run: common::Run = cx
            .command()
            .env("TERRARIUM_ERRORS", "json")
            .args(["env", "validate", "--format", "conda"])
            .arg(&file)
            .output()
            .unwrap()
            .into();
        let last = run.stderr.lines().last().unwrap_or_default();
        let error: serde_json::Value = serde_json::from_str(last).expect(last);
        let location = &error["error"]["location"];
        assert_eq!(location["line"], 1, "{error}");
        assert!(location.get("field").is_none(), "{error}");
    }
    // An empty conda file says so.
    let empty = cx.write("empty.yml", "# nothing yet\n");
    rejects(
        &cx,
        &empty,
        &["--format", "conda"],
        &["empty.yml:1: the file is empty"],
    );
}

#[test]
fn unknown_key_warns_and_still_registers() {
    let cx = context();
    let file = cx.write(
        "extra.yml",
        "name: extra\nimage: python:3.11-slim\nimgae_typo: python:3.12\n",
    );
    let run = cx
        .run_path(&["env", "create", "--no-lock", "-f"], &file, &[])
        .success();
    assert!(
        run.stderr.contains("warning: ")
            && run
                .stderr
                .contains("extra.yml:3: field `imgae_typo`: unknown key"),
        "{}",
        run.stderr
    );
    let nested = cx.write(
        "nested.yml",
        "name: nested\npython:\n  version: \"3.11\"\n  pipp: [numpy]\n",
    );
    let run = cx
        .run_path(&["env", "create", "--no-lock", "-f"], &nested, &[])
        .success();
    assert!(
        run.stderr
            .contains("nested.yml:4: field `python.pipp`: unknown key"),
        "{}",
        run.stderr
    );
    // A block value starts below its key; the warning names the key's line.
    let block = cx.write(
        "block.yml",
        "name: block\nimage: python:3.11-slim\npythn:\n  version: \"3.11\"\n",
    );
    let run = cx
        .run_path(&["env", "create", "--no-lock", "-f"], &block, &[])
        .success();
    assert!(
        run.stderr
            .contains("block.yml:3: field `pythn`: unknown key"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_requirement_line() {
    let cx = context();
    let file = cx.write(
        "requirements.txt",
        "numpy==1.26.4\n# comment\n\nscikit-learn >=< 1.5\n",
    );
    rejects(
        &cx,
        &file,
        &[],
        &[
            "requirements.txt:4:",
            "invalid requirement `scikit-learn >=< 1.5`",
        ],
    );
    // In an included file: that file and its line.
    cx.write("base.txt", "pandas\nnot a valid requirement!!\n");
    let file = cx.write("top.txt", "-r base.txt\nnumpy\n");
    rejects(&cx, &file, &[], &["base.txt:2:", "invalid requirement"]);
    // A bad hash.
    let file = cx.write("hash.txt", "numpy==1.26.4 --hash=sha256:xyz\n");
    rejects(&cx, &file, &[], &["hash.txt:1:", "invalid hash"]);
}

#[test]
fn bad_requirement_in_yaml_names_the_field() {
    let cx = context();
    let file = cx.write("env.yml", "name: t\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip:\n    - numpy\n    - \"torch ===\"\n");
    rejects(
        &cx,
        &file,
        &[],
        &[
            "env.yml:7:",
            "field `dependencies[1].pip`",
            "invalid requirement `torch ===`",
        ],
    );
    let file = cx.write(
        "native.yml",
        "name: t\npython:\n  version: \"3.11\"\n  pip:\n    - numpy\n    - bad requirement here\n",
    );
    rejects(&cx, &file, &[], &["native.yml:6:", "field `python.pip`"]);
}

#[test]
fn bad_match_spec() {
    let cx = context();
    let file = cx.write(
        "env.yml",
        "name: t\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - numpy >=<1.26\n",
    );
    rejects(
        &cx,
        &file,
        &[],
        &[
            "env.yml:6:",
            "field `dependencies[1]`",
            "invalid conda match spec `numpy >=<1.26`",
        ],
    );
    let file = cx.write(
        "v2.yml",
        "name: t\nconda_file:\n  channels: [conda-forge]\n  dependencies:\n    - \"*\"\n",
    );
    rejects(
        &cx,
        &file,
        &[],
        &["v2.yml:5:", "field `conda_file.dependencies[0]`"],
    );
}

#[test]
fn non_utf8_file() {
    let cx = context();
    let mut bytes = b"name: t\nchannels: [conda-forge]\ndependencies:\n  - caf".to_vec();
    bytes.extend([0xe9, b'\n']);
    let file = cx.write("latin1.yml", bytes);
    rejects(
        &cx,
        &file,
        &[],
        &["latin1.yml:4:", "not valid UTF-8", "0xe9"],
    );
}

#[test]
fn fifty_megabyte_file() {
    let cx = context();
    let mut text = String::from("name: big\nchannels: [conda-forge]\ndependencies:\n");
    while text.len() < 50 * 1024 * 1024 {
        text.push_str("  - numpy\n");
    }
    let file = cx.write("big.yml", text);
    rejects(&cx, &file, &[], &["big.yml", "larger than 8 MiB"]);
}

#[test]
fn wrong_types_and_values() {
    let cx = context();
    let file = cx.write(
        "types.yml",
        "name: t\nimage: python:3.11\ndocker:\n  gpu: maybe\n",
    );
    rejects(
        &cx,
        &file,
        &[],
        &[
            "types.yml:4:",
            "field `docker.gpu`",
            "expected true or false",
        ],
    );
    let file = cx.write(
        "routes.yml",
        "name: t\ninference_config:\n  scoring_route:\n    path: /score\n    port: 99999\n",
    );
    rejects(
        &cx,
        &file,
        &[],
        &[
            "routes.yml:5:",
            "field `inference_config.scoring_route.port`",
        ],
    );
    let file = cx.write(
        "secret.yml",
        "name: t\nimage: python:3.11\nenvironment_variables:\n  TOKEN: ${secret:bad name}\n",
    );
    rejects(
        &cx,
        &file,
        &[],
        &[
            "secret.yml:4:",
            "field `environment_variables.TOKEN`",
            "invalid secret reference",
        ],
    );
    let file = cx.write("runtime.yml", "name: t\nruntime: ruby\n");
    rejects(
        &cx,
        &file,
        &[],
        &[
            "runtime.yml:2:",
            "field `runtime`",
            "expected python, spark or docker",
        ],
    );
    let file = cx.write("dup.yml", "name: t\nimage: a\nimage: b\n");
    rejects(&cx, &file, &[], &["dup.yml:3:", "duplicate key"]);
    let file = cx.write(
        "spark.yml",
        "name: t\nruntime: spark\nspark:\n  packages:\n    - io.delta:delta-spark\n",
    );
    rejects(&cx, &file, &[], &["spark.yml:5:", "group:artifact:version"]);
}

#[test]
fn bad_dockerfile_and_directories() {
    let cx = context();
    let file = cx.write("Dockerfile", "FROM python:3.11\nRUNN pip install numpy\n");
    rejects(
        &cx,
        &file,
        &[],
        &["Dockerfile:2:", "unknown Dockerfile instruction `RUNN`"],
    );
    // A broken Azure ML v1 directory: invalid JSON.
    cx.write(
        "v1/azureml_environment.json",
        "{\n  \"name\": \"x\",\n  \"python\": {\n}\n,}\n",
    );
    rejects(
        &cx,
        &cx.path("v1"),
        &[],
        &["azureml_environment.json:5:", "invalid JSON"],
    );
    // A directory that is no known format.
    std::fs::create_dir_all(cx.path("empty")).unwrap();
    rejects(
        &cx,
        &cx.path("empty"),
        &[],
        &["cannot tell the format of this directory"],
    );
    // A missing file.
    rejects(&cx, &cx.path("missing.yml"), &[], &["missing.yml"]);
    // A conda file referenced from an Azure ML v2 file that is missing.
    let file = cx.write("v2.yml", "name: t\nconda_file: conda.yml\n");
    rejects(
        &cx,
        &file,
        &[],
        &["v2.yml:2:", "field `conda_file`", "cannot read"],
    );
}

#[test]
fn bad_names_and_references() {
    let cx = context();
    let file = cx.write("n.yml", "name: t\nimage: python:3.11\n");
    let run = cx
        .run_path(
            &["env", "create", "--no-lock", "--name", "has space", "-f"],
            &file,
            &[],
        )
        .user_error();
    assert!(
        run.stderr.contains("invalid name `has space`"),
        "{}",
        run.stderr
    );
    let run = cx.run(&["env", "show", "no-such-env"]).user_error();
    assert!(
        run.stderr.contains("environment `no-such-env` not found"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: "), "{}", run.stderr);
    let run = cx.run(&["env", "show", "demo:99"]).user_error();
    assert!(
        run.stderr.contains("version demo:99 not found"),
        "{}",
        run.stderr
    );
    let run = cx.run(&["env", "show", "demo@nope"]).user_error();
    assert!(
        run.stderr.contains("label demo@nope not found"),
        "{}",
        run.stderr
    );
    let run = cx.run(&["env", "export", "demo", "--format", "yaml"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown format `yaml`"),
        "{}",
        run.stderr
    );
}

/// A definition's build paths name files an export writes and a build reads: a path that is
/// absolute or leaves the folder is refused at import (and so by `validate` and the server).
#[test]
fn build_paths_that_leave_their_folder() {
    let cx = context();
    cx.write("ctx/Dockerfile", "FROM python:3.11-slim\n");
    let file = cx.write(
        "escape.yml",
        "name: escape\nbuild:\n  path: ctx\n  dockerfile_path: ../../../../home/user/.bashrc\n",
    );
    rejects(
        &cx,
        &file,
        &[],
        &[
            "escape.yml:4",
            "build.dockerfile_path",
            "leaves the definition's folder",
        ],
    );
    let file = cx.write("absolute.yml", "name: absolute\nbuild:\n  path: /etc\n");
    rejects(
        &cx,
        &file,
        &[],
        &["absolute.yml:3", "build.path", "absolute path"],
    );
}

/// A document far larger than any definition is refused quickly, naming the file and line.
#[test]
fn too_many_entries() {
    let cx = context();
    let mut text = String::from("name: big\nenvironment_variables:\n");
    for i in 0..60_000 {
        text.push_str(&format!("  VAR_{i}: x\n"));
    }
    let file = cx.write("big.yml", &text);
    rejects(&cx, &file, &[], &["big.yml:", "more than 100000 entries"]);
}
