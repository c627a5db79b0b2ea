//! Nameless definition files (requirements files, most conda files and Dockerfiles) work
//! wherever a file does: registered anonymously under the name their content gives, reused
//! for the same content, never versions of one another, kept out of `env list` unless asked,
//! and named later with `env clone` or at once with `--name`.

mod common;

use common::{make_wheels, uv_available, TestContext};

/// A nameless, user-managed definition: needs no resolver.
fn nameless(greeting: &str) -> String {
    let python = which("python3");
    format!(
        "python:\n  user_managed: true\n  interpreter: {python}\nenvironment_variables:\n  GREETING: {greeting}\n"
    )
}

fn which(program: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn names(cx: &TestContext, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["env", "list", "--json"];
    args.extend_from_slice(extra);
    cx.run(&args)
        .success()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .filter(|n| !n.starts_with("curated/"))
        .collect()
}

fn last_run(cx: &TestContext) -> serde_json::Value {
    let runs = cx.run(&["runs", "list", "--json"]).success().json();
    let runs = runs.as_array().cloned().unwrap_or_default();
    runs.first().cloned().expect("a run was recorded")
}

#[test]
fn a_nameless_file_runs_and_is_reused_by_content() {
    let cx = TestContext::new();
    let first = cx.write("env.yml", nameless("hello"));
    let run = cx
        .run_path(
            &["run", "--env"],
            &first,
            &["--", "sh", "-c", "echo $GREETING"],
        )
        .success();
    assert!(run.stdout.contains("hello"), "{}", run.stdout);
    assert!(
        run.stderr.contains("(nameless) as anonymous/"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("env clone anonymous/"),
        "{}",
        run.stderr
    );
    let recorded = last_run(&cx);
    let name = recorded["environment"].as_str().unwrap().to_string();
    assert!(name.starts_with("anonymous/"), "{recorded}");
    assert_eq!(recorded["version"], "1");

    // The same content, from another file: the same version, registered once.
    let copy = cx.write("copy/env.yml", nameless("hello"));
    let again = cx
        .run_path(&["run", "--env"], &copy, &["--", "true"])
        .success();
    assert!(!again.stderr.contains("registered"), "{}", again.stderr);
    assert_eq!(last_run(&cx)["environment"], name.as_str());

    // Other content: another environment, not a version of the first.
    let other = cx.write("other.yml", nameless("bonjour"));
    cx.run_path(&["run", "--env"], &other, &["--", "true"])
        .success();
    let other_name = last_run(&cx)["environment"].as_str().unwrap().to_string();
    assert_ne!(other_name, name);
    assert_eq!(last_run(&cx)["version"], "1");
    let history = cx
        .run(&["env", "history", &name, "--json"])
        .success()
        .json();
    assert_eq!(
        history["versions"].as_array().map(Vec::len),
        Some(1),
        "{history}"
    );

    // Out of the way in `env list` unless asked; named later with `env clone`.
    assert!(names(&cx, &[]).is_empty(), "{:?}", names(&cx, &[]));
    let listed = cx.run(&["env", "list"]).success();
    assert!(
        listed.stderr.contains("2 anonymous environments"),
        "{}",
        listed.stderr
    );
    let all = names(&cx, &["--anonymous"]);
    assert!(all.contains(&name) && all.contains(&other_name), "{all:?}");
    cx.run(&["env", "clone", &name, "greeter"]).success();
    assert_eq!(names(&cx, &[]), ["greeter"]);
}

#[test]
fn name_registers_a_file_under_that_name() {
    let cx = TestContext::new();
    let file = cx.write("env.yml", nameless("hi"));
    cx.run_path(
        &["run", "--name", "team-env", "--env"],
        &file,
        &["--", "true"],
    )
    .success();
    assert_eq!(last_run(&cx)["environment"], "team-env");
    assert_eq!(names(&cx, &[]), ["team-env"]);
    // --name with a reference, not a file, is a mistake said plainly.
    let refused = cx
        .run(&["run", "--name", "x", "--env", "team-env", "--", "true"])
        .user_error();
    assert!(refused.stderr.contains("--name"), "{}", refused.stderr);
}

/// An `anonymous/` name belongs to the content that gives it: nobody can register other
/// content under one.
#[test]
fn anonymous_names_cannot_be_taken() {
    let cx = TestContext::new();
    let file = cx.write(
        "squat.yml",
        format!("name: anonymous/0123456789abcdef\n{}", nameless("x")),
    );
    let refused = cx
        .run_path(&["env", "create", "--no-lock", "-f"], &file, &[])
        .user_error();
    assert!(
        refused.stderr.contains("anonymous name"),
        "{}",
        refused.stderr
    );
}

/// A requirements file has no name: it locks, builds and runs, and the same file reuses its
/// version.
#[test]
fn a_requirements_file_runs() {
    if !uv_available() {
        return;
    }
    let cx = TestContext::new();
    let wheels = cx.path("wheels");
    make_wheels(&wheels, &["alpha==1.0"]);
    let requirements = cx.write(
        "requirements.txt",
        format!(
            "--no-index\n--find-links {}\nalpha==1.0\n",
            wheels.display()
        ),
    );
    let script = [
        "--",
        "python",
        "-c",
        "import alpha; print('alpha', alpha.__version__)",
    ];
    let run = cx
        .run_path(&["run", "--env"], &requirements, &script)
        .success();
    assert!(run.stdout.contains("alpha 1.0"), "{}", run.stdout);
    let name = last_run(&cx)["environment"].as_str().unwrap().to_string();
    assert!(name.starts_with("anonymous/"), "{name}");
    let again = cx
        .run_path(&["env", "build", "--json"], &requirements, &[])
        .success()
        .json();
    assert_eq!(again["name"].as_str(), Some(name.as_str()), "{again}");
}
