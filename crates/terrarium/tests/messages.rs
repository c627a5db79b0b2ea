//! What users see, pinned: the CLI's stderr and exit code for the errors the README shows and
//! the ones a new user meets first, with the test's folder written as `[TMP]`. A change to any
//! of these messages shows up in review as a changed snapshot (`tests/snapshots/`).

mod common;

use common::TestContext;

/// Exit code and stderr, with the test's own folder replaced.
fn shown(cx: &TestContext, run: common::Run) -> String {
    let tmp = cx.dir.path().display().to_string();
    format!(
        "exit code: {}\n{}",
        run.code,
        run.stderr.replace(&tmp, "[TMP]")
    )
}

#[test]
fn the_readme_error() {
    let cx = TestContext::new();
    // The README's example: a bad pip requirement on line 7 of a conda file.
    let file = cx.write(
        "environment.yml",
        "name: bad\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - pip:\n      - torch ===\n",
    );
    let run = cx.run_path(&["env", "create", "--no-lock", "-f"], &file, &[]);
    insta::assert_snapshot!("readme_error", shown(&cx, run));
}

#[test]
fn first_steps_that_go_wrong() {
    let cx = TestContext::new();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "missing_file",
            vec!["env", "create", "-f", "no-such-file.yml"],
        ),
        ("unknown_environment", vec!["env", "show", "no-such-env"]),
        ("unknown_run", vec!["runs", "show", "no-such-run"]),
        (
            "curated_is_read_only",
            vec!["env", "archive", "curated/sklearn"],
        ),
        ("bad_reference", vec!["env", "show", "Bad Name!"]),
        (
            "name_with_a_reference",
            vec![
                "run",
                "--name",
                "x",
                "--env",
                "curated/sklearn",
                "--",
                "true",
            ],
        ),
    ];
    let mut compared = 0;
    for (name, args) in cases {
        let run = cx.run(&args);
        insta::assert_snapshot!(name, shown(&cx, run));
        compared += 1;
    }
    assert_eq!(compared, 6, "every case was compared");
    // A definition path that leaves its folder.
    cx.write("ctx/Dockerfile", "FROM python:3.11-slim\n");
    let file = cx.write(
        "escape.yml",
        "name: escape\nbuild:\n  path: ctx\n  dockerfile_path: ../../etc/passwd\n",
    );
    let run = cx.run_path(&["env", "create", "--no-lock", "-f"], &file, &[]);
    insta::assert_snapshot!("path_leaves_its_folder", shown(&cx, run));
}
