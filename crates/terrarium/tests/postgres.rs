//! The same CLI against a PostgreSQL workspace (`--workspace postgres://...`).

mod common;

use std::process::Stdio;

use common::{TestContext, CONDA_ENV};

/// A fresh database on `TERRARIUM_TEST_POSTGRES`; skipped (failing under CI) without one.
fn database() -> Option<String> {
    common::server::postgres_database("terrarium_cli")
}

fn run(cx: &TestContext, url: &str, args: &[&str]) -> common::Run {
    let mut cmd = cx.command_without_workspace();
    cmd.arg("--workspace").arg(url).args(args);
    cmd.env("TERRARIUM_HOME", cx.path("home"));
    cmd.output().unwrap().into()
}

#[test]
fn registry_on_postgres() {
    let Some(url) = database() else { return };
    let cx = TestContext::new();
    let file = cx.write("environment.yml", CONDA_ENV);
    let file = file.to_str().unwrap();
    let v1 = run(
        &cx,
        &url,
        &["env", "create", "--no-lock", "--json", "-f", file],
    )
    .success()
    .json();
    assert_eq!(v1["version"], "1");
    assert_eq!(
        run(
            &cx,
            &url,
            &["env", "create", "--no-lock", "--json", "-f", file]
        )
        .success()
        .json()["version"],
        "1"
    );
    run(&cx, &url, &["env", "label", "demo:1", "production"]).success();
    assert_eq!(
        run(&cx, &url, &["env", "show", "demo@production", "--json"])
            .success()
            .json()["content_hash"],
        v1["content_hash"]
    );
    let curated = run(&cx, &url, &["curated", "list", "--json"])
        .success()
        .json();
    assert!(curated.as_array().unwrap().len() >= 7);
    let err = run(&cx, &url, &["env", "show", "nope"]).user_error();
    assert!(
        err.stderr.contains("environment `nope` not found"),
        "{}",
        err.stderr
    );

    // 8 CLI processes registering changed definitions at once.
    let files: Vec<_> = (0..8)
        .map(|i| {
            cx.write(
                &format!("e{i}.yml"),
                CONDA_ENV
                    .replace("name: demo", "name: pgrace")
                    .replace("numpy=1.26", &format!("numpy=1.{}", 10 + i)),
            )
        })
        .collect();
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            let mut cmd = cx.command_without_workspace();
            cmd.arg("--workspace")
                .arg(&url)
                .args(["env", "create", "--no-lock", "--json", "-f"])
                .arg(f);
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut versions: Vec<u32> = children
        .into_iter()
        .map(|c| {
            let r: common::Run = c.wait_with_output().unwrap().into();
            r.success().json()["version"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());
}
