//! Every command that takes an environment reference reads it with the one parser
//! (`Reference::parse`): `NAME`, `NAME:VERSION` and `NAME@LABEL` each name the version they
//! should, and a bad reference is refused naming the argument and the forms it takes.

mod common;

use std::path::PathBuf;

use common::TestContext;
use serde_json::Value;

/// The three forms, with the version each names: `refs` has versions 1 and 2, `prod` is on 1.
const FORMS: [(&str, &str); 3] = [("refs", "2"), ("refs:1", "1"), ("refs@prod", "1")];

fn python3() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("python3"))
        .find(|p| p.is_file())
}

/// Two versions of a user-managed environment on this machine's Python (nothing to resolve or
/// install), and the label `prod` on the first.
fn workspace(cx: &TestContext, python: &std::path::Path) {
    for (file, value) in [("v1.yml", "1"), ("v2.yml", "2")] {
        let file = cx.write(
            file,
            format!(
                "name: refs\npython:\n  user_managed: true\n  interpreter: {}\nenvironment_variables:\n  V: \"{value}\"\n",
                python.display()
            ),
        );
        cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    }
    cx.run(&["env", "label", "refs:1", "prod"]).success();
}

#[test]
fn every_command_takes_the_three_forms() {
    let Some(python) = python3() else {
        eprintln!("skipped: no python3 on PATH");
        return;
    };
    let cx = TestContext::new();
    workspace(&cx, &python);
    let mut compared = 0;
    for (reference, version) in FORMS {
        let shown = cx.run(&["env", "show", reference, "--json"]).success();
        assert_eq!(shown.json()["version"], version, "env show {reference}");

        let lock = cx.run(&["env", "lock", reference, "--json"]).success();
        assert_eq!(lock.json()["version"], version, "env lock {reference}");

        let built = cx.run(&["env", "build", reference]).success();
        assert!(
            built.stderr.contains(&format!("refs:{version}")),
            "env build {reference}: {}",
            built.stderr
        );

        let images = cx.run(&["image", "list", reference, "--json"]).success();
        assert_eq!(
            images.json(),
            Value::Array(Vec::new()),
            "image list {reference}"
        );

        cx.run(&["run", "--env", reference, "--", "python3", "-c", "pass"])
            .success();
        let runs = cx.run(&["runs", "list", "--json"]).success().json();
        assert_eq!(runs[0]["version"], version, "run --env {reference}");

        // The environment resolves before the model is looked at: the error is the model's.
        let deploy = cx
            .run(&[
                "deploy", "svc", "--env", reference, "--model", "nowhere", "--entry", "x.py",
            ])
            .user_error();
        assert!(
            deploy.stderr.contains("--model nowhere"),
            "deploy --env {reference}: {}",
            deploy.stderr
        );

        let diff = cx
            .run(&["env", "diff", "refs:1", reference, "--json"])
            .success();
        assert_eq!(
            diff.json()["new"],
            format!("refs:{version}"),
            "env diff refs:1 {reference}"
        );
        compared += 1;
    }
    assert_eq!(compared, FORMS.len(), "every form was compared");

    // A label goes by NAME@LABEL as by NAME LABEL.
    cx.run(&["env", "unlabel", "refs@prod"]).success();
    cx.run(&["env", "show", "refs@prod"]).user_error();
}

#[test]
fn a_bad_reference_names_its_argument_and_the_forms() {
    let cx = TestContext::new();
    let cases: [(&[&str], &str, &str); 6] = [
        (
            &["env", "show", "Bad Name!"],
            "invalid REFERENCE `Bad Name!`: invalid name",
            "REFERENCE is NAME, NAME:VERSION or NAME@LABEL",
        ),
        (
            &["env", "lock", "a:b c"],
            "invalid REFERENCE `a:b c`: invalid version `b c`",
            "REFERENCE is NAME, NAME:VERSION or NAME@LABEL",
        ),
        (
            &["image", "list", "a@b c"],
            "invalid REFERENCE `a@b c`: invalid label `b c`",
            "REFERENCE is NAME, NAME:VERSION or NAME@LABEL",
        ),
        (
            &["env", "diff", "a:1", "a@"],
            "invalid NEW `a@`: invalid label ``",
            "NEW is NAME, NAME:VERSION or NAME@LABEL",
        ),
        (
            &["run", "--env", "Bad Name!", "--", "true"],
            "invalid --env `Bad Name!`: no such file, and not a reference: invalid name",
            "--env is NAME, NAME:VERSION, NAME@LABEL or a definition file",
        ),
        (
            &["deploy", "svc", "--env", "a:1@x", "--model", "m"],
            "invalid --env `a:1@x`: no such file, and not a reference: invalid name `a:1`",
            "--env is NAME, NAME:VERSION, NAME@LABEL or a definition file",
        ),
    ];
    let mut compared = 0;
    for (args, error, hint) in cases {
        let run = cx.run(args).user_error();
        assert!(
            run.stderr.contains(&format!("error: {error}")),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("hint: {hint}")),
            "{args:?}: {}",
            run.stderr
        );
        compared += 1;
    }
    assert_eq!(compared, cases.len());
}
