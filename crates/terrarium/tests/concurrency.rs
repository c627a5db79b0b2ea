//! Many processes registering at once: no duplicate or lost version, and identical content
//! yields one version. The workspace is fresh, so creation and migration race too.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;

use common::{TestContext, CONDA_ENV};

const PROCESSES: usize = 8;

fn register_all(cx: &TestContext, files: &[std::path::PathBuf]) -> Vec<serde_json::Value> {
    let children: Vec<_> = files
        .iter()
        .map(|file| {
            cx.command()
                .args(["env", "create", "--no-lock", "--json", "-f"])
                .arg(file)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|child| {
            let run: common::Run = child.wait_with_output().unwrap().into();
            run.success().json()
        })
        .collect()
}

#[test]
fn eight_processes_register_changed_definitions() {
    let cx = TestContext::new();
    let files: Vec<_> = (0..PROCESSES)
        .map(|i| {
            cx.write(
                &format!("env{i}.yml"),
                CONDA_ENV
                    .replace("name: demo", "name: race")
                    .replace("numpy=1.26", &format!("numpy=1.{}", 10 + i)),
            )
        })
        .collect();
    let records = register_all(&cx, &files);
    let versions: BTreeSet<String> = records
        .iter()
        .map(|r| r["version"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = (1..=PROCESSES).map(|v| v.to_string()).collect();
    assert_eq!(
        versions, expected,
        "versions must be 1..{PROCESSES} with no gap or duplicate"
    );
    let hashes: BTreeSet<&str> = records
        .iter()
        .map(|r| r["content_hash"].as_str().unwrap())
        .collect();
    assert_eq!(hashes.len(), PROCESSES);
    let history = cx
        .run(&["env", "history", "race", "--json"])
        .success()
        .json();
    assert_eq!(history["versions"].as_array().unwrap().len(), PROCESSES);
    // Each version holds the definition its process sent.
    for record in &records {
        let shown = cx
            .run(&[
                "env",
                "show",
                &format!("race:{}", record["version"].as_str().unwrap()),
                "--json",
            ])
            .success()
            .json();
        assert_eq!(shown["content_hash"], record["content_hash"]);
    }
}

#[test]
fn eight_processes_register_the_same_definition() {
    let cx = TestContext::new();
    let files: Vec<_> = (0..PROCESSES)
        .map(|i| {
            cx.write(
                &format!("same{i}.yml"),
                CONDA_ENV.replace("name: demo", "name: same"),
            )
        })
        .collect();
    let records = register_all(&cx, &files);
    assert!(records.iter().all(|r| r["version"] == "1"), "{records:?}");
    let history = cx
        .run(&["env", "history", "same", "--json"])
        .success()
        .json();
    assert_eq!(history["versions"].as_array().unwrap().len(), 1);
}
