//! Versioning semantics through the real CLI.

mod common;

use common::{TestContext, CONDA_ENV};

#[test]
fn register_is_idempotent_and_numbers_versions() {
    let cx = TestContext::new();
    let file = cx.write("environment.yml", CONDA_ENV);
    let first = cx
        .run_path(&["env", "create", "--no-lock", "--json", "-f"], &file, &[])
        .success()
        .json();
    for key in [
        "name",
        "version",
        "content_hash",
        "labels",
        "archived",
        "created_at",
        "source",
    ] {
        assert!(first.get(key).is_some(), "missing {key} in {first}");
    }
    assert_eq!(first["name"], "demo");
    assert_eq!(first["version"], "1");
    assert_eq!(first["labels"], serde_json::json!(["latest"]));
    assert_eq!(first["source"]["kind"], "import");
    assert_eq!(first["source"]["format"], "conda");
    assert!(first["source"]["file"]
        .as_str()
        .unwrap()
        .ends_with("environment.yml"));
    assert_eq!(first["created_by"], "tester");

    // Identical content: the same version, none created.
    let again = cx
        .run_path(&["env", "create", "--no-lock", "--json", "-f"], &file, &[])
        .success()
        .json();
    assert_eq!(again["version"], "1");
    assert_eq!(again["created_at"], first["created_at"]);

    // Reordered and respelled: still identical content.
    let reordered = CONDA_ENV.replace(
        "  - python=3.11\n  - numpy=1.26\n",
        "  - numpy 1.26.*\n  - python=3.11\n",
    );
    let file2 = cx.write("reordered.yml", reordered);
    let same = cx
        .run_path(&["env", "create", "--no-lock", "--json", "-f"], &file2, &[])
        .success()
        .json();
    assert_eq!(same["version"], "1");
    assert_eq!(same["content_hash"], first["content_hash"]);

    // A change: version 2, whose parent is 1.
    cx.write(
        "environment.yml",
        CONDA_ENV.replace("numpy=1.26", "numpy=1.25"),
    );
    let second = cx
        .run_path(&["env", "create", "--no-lock", "--json", "-f"], &file, &[])
        .success()
        .json();
    assert_eq!(second["version"], "2");
    assert_eq!(second["parent"], "demo:1");
    assert_ne!(second["content_hash"], first["content_hash"]);

    // Going back to the first content is a new version (it is not the latest).
    cx.write("environment.yml", CONDA_ENV);
    let third = cx
        .run_path(&["env", "create", "--no-lock", "--json", "-f"], &file, &[])
        .success()
        .json();
    assert_eq!(third["version"], "3");
    assert_eq!(third["content_hash"], first["content_hash"]);
}

#[test]
fn explicit_versions_are_immutable() {
    let cx = TestContext::new();
    let file = cx.write("environment.yml", CONDA_ENV);
    let v7 = cx
        .run_path(
            &[
                "env",
                "create",
                "--no-lock",
                "--json",
                "--version",
                "7",
                "-f",
            ],
            &file,
            &[],
        )
        .success()
        .json();
    assert_eq!(v7["version"], "7");
    // Same content, same version: no-op.
    cx.run_path(
        &["env", "create", "--no-lock", "--version", "7", "-f"],
        &file,
        &[],
    )
    .success();
    // Other content, same version: refused, nothing written.
    let before = cx.snapshot();
    cx.write(
        "environment.yml",
        CONDA_ENV.replace("numpy=1.26", "numpy=1.25"),
    );
    let err = cx
        .run_path(
            &["env", "create", "--no-lock", "--version", "7", "-f"],
            &file,
            &[],
        )
        .user_error();
    assert!(
        err.stderr
            .contains("demo:7 already exists with different content"),
        "{}",
        err.stderr
    );
    assert!(err.stderr.contains("immutable"), "{}", err.stderr);
    assert_eq!(cx.snapshot(), before);
    // The next automatic version follows the highest number.
    let next = cx
        .run_path(&["env", "create", "--no-lock", "--json", "-f"], &file, &[])
        .success()
        .json();
    assert_eq!(next["version"], "8");
    // Non-numeric explicit versions are allowed and do not disturb numbering.
    cx.write(
        "environment.yml",
        CONDA_ENV.replace("numpy=1.26", "numpy=1.24"),
    );
    let named = cx
        .run_path(
            &[
                "env",
                "create",
                "--no-lock",
                "--json",
                "--version",
                "2024.10-rc1",
                "-f",
            ],
            &file,
            &[],
        )
        .success()
        .json();
    assert_eq!(named["version"], "2024.10-rc1");
}

#[test]
fn labels_latest_archive_restore_delete() {
    let cx = TestContext::new();
    let file = cx.write("environment.yml", CONDA_ENV);
    cx.run_path(&["env", "create", "--no-lock", "-f"], &file, &[])
        .success();
    cx.write(
        "environment.yml",
        CONDA_ENV.replace("numpy=1.26", "numpy=1.25"),
    );
    cx.run_path(&["env", "create", "--no-lock", "-f"], &file, &[])
        .success();

    // Labels are movable.
    cx.run(&["env", "label", "demo:1", "production"]).success();
    assert_eq!(
        cx.run(&["env", "show", "demo@production", "--json"])
            .success()
            .json()["version"],
        "1"
    );
    cx.run(&["env", "label", "demo:2", "production"]).success();
    assert_eq!(
        cx.run(&["env", "show", "demo@production", "--json"])
            .success()
            .json()["version"],
        "2"
    );
    let shown = cx
        .run(&["env", "show", "demo:2", "--json"])
        .success()
        .json();
    assert_eq!(shown["labels"], serde_json::json!(["latest", "production"]));
    // `latest` is not a user label.
    let err = cx.run(&["env", "label", "demo:1", "latest"]).user_error();
    assert!(
        err.stderr.contains("`latest` is managed by Terrarium"),
        "{}",
        err.stderr
    );

    // latest skips archived versions.
    cx.run(&["env", "archive", "demo:2"]).success();
    assert_eq!(
        cx.run(&["env", "show", "demo", "--json"]).success().json()["version"],
        "1"
    );
    assert_eq!(
        cx.run(&["env", "show", "demo@latest", "--json"])
            .success()
            .json()["version"],
        "1"
    );
    // An archived version still resolves explicitly.
    assert_eq!(
        cx.run(&["env", "show", "demo:2", "--json"])
            .success()
            .json()["archived"],
        true
    );
    cx.run(&["env", "restore", "demo:2"]).success();
    assert_eq!(
        cx.run(&["env", "show", "demo", "--json"]).success().json()["version"],
        "2"
    );

    // Archiving the environment hides it from list, but explicit versions still resolve.
    cx.run(&["env", "archive", "demo"]).success();
    let list = cx.run(&["env", "list", "--json"]).success().json();
    assert!(list.as_array().unwrap().iter().all(|r| r["name"] != "demo"));
    let all = cx
        .run(&["env", "list", "--archived", "--json"])
        .success()
        .json();
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "demo" && r["archived"] == true));
    let err = cx.run(&["env", "show", "demo"]).user_error();
    assert!(err.stderr.contains("archived"), "{}", err.stderr);
    cx.run(&["env", "show", "demo:1"]).success();
    cx.run(&["env", "restore", "demo"]).success();
    cx.run(&["env", "show", "demo"]).success();

    // Delete: refused while a label points at the version; then allowed; numbers never reused.
    let err = cx.run(&["env", "delete", "demo:2"]).user_error();
    assert!(err.stderr.contains("production"), "{}", err.stderr);
    cx.run(&["env", "unlabel", "demo", "production"]).success();
    cx.run(&["env", "delete", "demo:2"]).success();
    cx.run(&["env", "show", "demo:2"]).user_error();
    assert_eq!(
        cx.run(&["env", "show", "demo", "--json"]).success().json()["version"],
        "1"
    );
    cx.write(
        "environment.yml",
        CONDA_ENV.replace("numpy=1.26", "numpy=1.23"),
    );
    let next = cx
        .run_path(&["env", "create", "--no-lock", "--json", "-f"], &file, &[])
        .success()
        .json();
    assert_eq!(next["version"], "3");
    // Delete needs an explicit version.
    cx.run(&["env", "delete", "demo"]).user_error();

    // History: every version with parent, author and source, and the events.
    let history = cx
        .run(&["env", "history", "demo", "--json"])
        .success()
        .json();
    let versions: Vec<_> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(versions, ["1", "3"]);
    let actions: Vec<_> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        ["label", "label", "archive", "restore", "archive", "restore", "unlabel", "delete"]
    );
    assert!(history["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "tester"));
}

#[test]
fn metadata_changes_without_new_version() {
    let cx = TestContext::new();
    let file = cx.write("environment.yml", CONDA_ENV);
    let v1 = cx
        .run_path(&["env", "create", "--no-lock", "--json", "-f"], &file, &[])
        .success()
        .json();
    let updated = cx
        .run(&[
            "env",
            "update",
            "demo",
            "--description",
            "Churn model",
            "--tag",
            "team=growth",
            "--json",
        ])
        .success()
        .json();
    assert_eq!(updated["version"], "1");
    assert_eq!(updated["content_hash"], v1["content_hash"]);
    assert_eq!(updated["description"], "Churn model");
    assert_eq!(updated["tags"]["team"], "growth");
    // Re-registering with a new description updates it, still without a new version.
    let again = cx
        .run_path(
            &[
                "env",
                "create",
                "--no-lock",
                "--json",
                "--description",
                "Churn model v2",
                "-f",
            ],
            &file,
            &[],
        )
        .success()
        .json();
    assert_eq!(again["version"], "1");
    assert_eq!(again["description"], "Churn model v2");
    let list = cx
        .run(&["env", "list", "--tag", "team=growth", "--json"])
        .success()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn diff_between_versions() {
    let cx = TestContext::new();
    let file = cx.write("environment.yml", CONDA_ENV);
    cx.run_path(&["env", "create", "--no-lock", "-f"], &file, &[])
        .success();
    cx.write(
        "environment.yml",
        CONDA_ENV
            .replace("numpy=1.26", "numpy=1.25")
            .replace(
                "scikit-learn==1.5.2",
                "scikit-learn==1.5.2\n      - pandas>=2",
            )
            .replace("OMP_NUM_THREADS: \"4\"", "OMP_NUM_THREADS: \"8\""),
    );
    cx.run_path(&["env", "create", "--no-lock", "-f"], &file, &[])
        .success();
    let diff = cx
        .run(&["env", "diff", "demo:1", "demo:2", "--json"])
        .success()
        .json();
    assert_eq!(diff["identical"], false);
    let changes = diff["changes"].as_array().unwrap();
    let find = |section: &str, key: &str| {
        changes
            .iter()
            .find(|c| c["section"] == section && c["key"] == key)
            .unwrap_or_else(|| panic!("no {section}/{key} in {diff}"))
            .clone()
    };
    assert_eq!(find("conda", "numpy")["kind"], "changed");
    assert_eq!(find("pip", "pandas")["kind"], "added");
    assert_eq!(find("environment_variables", "OMP_NUM_THREADS")["new"], "8");
    assert_eq!(changes.len(), 3, "{diff}");
    let human = cx.run(&["env", "diff", "demo:1", "demo:2"]).success();
    assert!(human.stdout.contains("+ pandas"), "{}", human.stdout);
    assert!(
        human.stdout.contains("~ numpy: numpy=1.26 -> numpy=1.25"),
        "{}",
        human.stdout
    );
}

#[test]
fn curated_are_read_only_and_clonable() {
    let cx = TestContext::new();
    let curated = cx.run(&["curated", "list", "--json"]).success().json();
    let names: Vec<_> = curated
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    for expected in [
        "curated/python-minimal",
        "curated/sklearn",
        "curated/pytorch-cpu",
        "curated/tensorflow-cpu",
        "curated/lightgbm-xgboost",
        "curated/inference-minimal",
        "curated/spark",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} missing from {names:?}"
        );
    }
    assert!(curated
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["curated"] == true && r["source"]["kind"] == "curated"));
    // Opening the workspace again does not make new curated versions.
    let again = cx.run(&["curated", "list", "--json"]).success().json();
    assert_eq!(again, curated);

    for args in [
        &["env", "label", "curated/sklearn:1", "prod"][..],
        &["env", "archive", "curated/sklearn"][..],
        &["env", "delete", "curated/sklearn:1"][..],
        &["env", "update", "curated/sklearn", "--description", "x"][..],
    ] {
        let err = cx.run(args).user_error();
        assert!(
            err.stderr.contains("curated environment and is read-only"),
            "{args:?}: {}",
            err.stderr
        );
    }
    let file = cx.write(
        "environment.yml",
        CONDA_ENV.replace("name: demo", "name: curated/mine"),
    );
    let err = cx
        .run_path(&["env", "create", "--no-lock", "-f"], &file, &[])
        .user_error();
    assert!(err.stderr.contains("read-only"), "{}", err.stderr);

    let clone = cx
        .run(&["env", "clone", "curated/sklearn", "my-sklearn", "--json"])
        .success()
        .json();
    assert_eq!(clone["version"], "1");
    assert_eq!(clone["parent"], "curated/sklearn:1");
    assert_eq!(clone["source"]["kind"], "clone");
    assert_eq!(clone["curated"], false);
    let original = cx
        .run(&["env", "show", "curated/sklearn", "--json"])
        .success()
        .json();
    assert_eq!(clone["content_hash"], original["content_hash"]);
    // The clone is editable.
    cx.run(&["env", "label", "my-sklearn:1", "prod"]).success();
}

#[test]
fn import_from_every_source_kind() {
    let cx = TestContext::new();
    let req = cx.write("requirements.txt", "numpy==1.26.4\npandas>=2.2\n");
    cx.run_path(
        &["env", "create", "--no-lock", "--name", "pip-only", "-f"],
        &req,
        &[],
    )
    .success();
    // No name: a clear error.
    let err = cx
        .run_path(&["env", "create", "--no-lock", "-f"], &req, &[])
        .user_error();
    assert!(
        err.stderr.contains("no name") && err.stderr.contains("--name"),
        "{}",
        err.stderr
    );
    let docker = cx.write(
        "Dockerfile",
        "FROM python:3.11-slim\nRUN pip install numpy\n",
    );
    let d = cx
        .run_path(
            &[
                "env",
                "create",
                "--no-lock",
                "--json",
                "--name",
                "from-dockerfile",
                "-f",
            ],
            &docker,
            &[],
        )
        .success()
        .json();
    assert_eq!(d["definition"]["runtime"], "docker");
    assert_eq!(d["definition"]["python"]["user_managed"], true);
    let image = cx
        .run(&[
            "env",
            "create",
            "--json",
            "--name",
            "from-image",
            "--image",
            "python:3.11-slim",
        ])
        .success()
        .json();
    assert_eq!(
        image["definition"]["docker"]["base_image"],
        "python:3.11-slim"
    );
    let err = cx
        .run(&[
            "env",
            "create",
            "--name",
            "bad-image",
            "--image",
            "Not An Image",
        ])
        .user_error();
    assert!(
        err.stderr.contains("invalid image reference"),
        "{}",
        err.stderr
    );

    // A real virtualenv made by this machine's Python.
    let venv = cx.path("venv");
    let status = std::process::Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(status.success());
    let v = cx
        .run_path(
            &[
                "env",
                "create",
                "--no-lock",
                "--json",
                "--name",
                "from-venv",
                "-f",
            ],
            &venv,
            &[],
        )
        .success()
        .json();
    assert_eq!(v["source"]["format"], "venv");
    let python = std::process::Command::new("python3")
        .args(["-c", "import platform; print(platform.python_version())"])
        .output()
        .unwrap();
    let version = String::from_utf8(python.stdout).unwrap().trim().to_string();
    assert_eq!(v["definition"]["python"]["version"], version);
}

#[test]
fn export_writes_every_format_atomically() {
    let cx = TestContext::new();
    let file = cx.write("environment.yml", CONDA_ENV);
    cx.run_path(&["env", "create", "--no-lock", "-f"], &file, &[])
        .success();
    for format in ["native", "conda", "requirements", "dockerfile"] {
        let out = cx.path(&format!("out-{format}"));
        let run = cx
            .run_path(
                &["env", "export", "demo", "--format", format, "-o"],
                &out,
                &[],
            )
            .success();
        assert!(out.is_file(), "{format}: {}", run.stderr);
        // Refuses to overwrite without --force.
        cx.run_path(
            &["env", "export", "demo", "--format", format, "-o"],
            &out,
            &[],
        )
        .user_error();
        cx.run_path(
            &["env", "export", "demo", "--format", format, "--force", "-o"],
            &out,
            &[],
        )
        .success();
    }
    // The conda export re-imports to the same content hash.
    let v1 = cx.run(&["env", "show", "demo", "--json"]).success().json();
    let back = cx
        .run_path(
            &["env", "validate", "--json"],
            &cx.path("out-conda"),
            &["--format", "conda"],
        )
        .success()
        .json();
    assert_eq!(back["content_hash"], v1["content_hash"]);
    // Dropped fields are named.
    let req = cx
        .run(&["env", "export", "demo", "--format", "requirements"])
        .success();
    assert!(
        req.stderr.contains("cannot carry")
            && req.stderr.contains("conda")
            && req.stderr.contains("environment_variables"),
        "{}",
        req.stderr
    );
    assert_eq!(req.stdout, "scikit-learn==1.5.2\n");
    // Directory formats.
    for format in ["aml-v1", "aml-v2"] {
        let out = cx.path(&format!("dir-{format}"));
        cx.run_path(
            &["env", "export", "demo", "--format", format, "-o"],
            &out,
            &[],
        )
        .success();
        assert!(out.is_dir());
        cx.run(&["env", "export", "demo", "--format", format])
            .user_error();
    }
    let back = cx
        .run_path(&["env", "validate", "--json"], &cx.path("dir-aml-v1"), &[])
        .success()
        .json();
    assert_eq!(back["content_hash"], v1["content_hash"]);
    let back = cx
        .run_path(
            &["env", "validate", "--json"],
            &cx.path("dir-aml-v2/environment.yml"),
            &[],
        )
        .success()
        .json();
    assert_eq!(back["content_hash"], v1["content_hash"]);
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(cx.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with(".terrarium")
                || e.file_name().to_string_lossy().starts_with(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The store says what is wrong; the CLI says which command helps, per kind of error.
#[test]
fn errors_come_with_the_hint_for_their_kind() {
    let cx = TestContext::new();
    let file = cx.write("env.yml", CONDA_ENV);
    cx.run_path(&["env", "create", "--no-lock", "-f"], &file, &[])
        .success();
    cx.run(&["env", "label", "demo:1", "production"]).success();
    let refused = cx.run(&["env", "delete", "demo:1"]).user_error();
    assert!(
        refused.stderr.contains("label(s) production point to it")
            && refused
                .stderr
                .contains("hint: `terrarium env archive demo:1`"),
        "{}",
        refused.stderr
    );
    let missing = cx.run(&["runs", "show", "no-such-run"]).user_error();
    assert!(
        missing.stderr.contains("hint: `terrarium runs list`"),
        "{}",
        missing.stderr
    );
    let missing = cx.run(&["env", "show", "no-such-env"]).user_error();
    assert!(
        missing.stderr.contains("hint: `terrarium env list`"),
        "{}",
        missing.stderr
    );
    let curated = cx.run(&["env", "archive", "curated/sklearn"]).user_error();
    assert!(
        curated
            .stderr
            .contains("hint: `terrarium env clone curated/sklearn NEW-NAME`"),
        "{}",
        curated.stderr
    );
}
