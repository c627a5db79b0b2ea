//! The conda path: a local channel (written with rattler_package_streaming, indexed with
//! rattler_index), solved by rattler's resolvo, installed by rattler from hardlinked caches.

mod common;

#[path = "common/conda_channel.rs"]
mod conda_channel;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::TestContext;
use conda_channel::{make_channel, python_package_files, Package};

fn channel(cx: &TestContext) -> std::path::PathBuf {
    make_channel(
        &cx.path("channel"),
        &[
            Package { name: "libalpha", version: "1.0", depends: &[], files: &[("share/libalpha/VERSION", "1.0\n", false)] },
            Package { name: "libbeta", version: "1.0", depends: &["libalpha >=1"], files: &[("share/libbeta/VERSION", "1.0\n", false)] },
            // libbeta 2.0 needs a libalpha that does not exist.
            Package { name: "libbeta", version: "2.0", depends: &["libalpha >=2"], files: &[("share/libbeta/VERSION", "2.0\n", false)] },
            Package {
                name: "tool",
                version: "1.0",
                depends: &["libbeta"],
                files: &[("bin/tool", "#!/bin/sh\necho \"tool 1.0 with libbeta $(cat \"$CONDA_PREFIX/share/libbeta/VERSION\")\"\n", true)],
            },
        ],
    )
}

fn conda_env(name: &str, channel: &Path, deps: &[&str]) -> String {
    let mut text = format!(
        "name: {name}\nchannels:\n  - file://{}\ndependencies:\n",
        channel.display()
    );
    for dep in deps {
        text.push_str(&format!("  - \"{dep}\"\n"));
    }
    text
}

#[test]
fn conda_lock_build_run_verify() {
    let cx = TestContext::new();
    let channel = channel(&cx);
    let file = cx.write("environment.yml", conda_env("tools", &channel, &["tool"]));
    let created = cx
        .run_path(&["env", "create", "--json", "-f"], &file, &[])
        .success()
        .json();
    assert!(created["lock_hash"].is_string());
    let lock = cx.run(&["env", "lock", "tools", "--json"]).success().json();
    let packages: Vec<String> = lock["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}:{}={}",
                p["source"].as_str().unwrap(),
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        packages,
        ["conda:libalpha=1.0", "conda:libbeta=1.0", "conda:tool=1.0"]
    );

    // Deterministic: another workspace locks the same definition to the same bytes.
    let other = TestContext::new();
    let again = other
        .run_path(&["env", "create", "--json", "-f"], &file, &[])
        .success()
        .json();
    assert_eq!(again["lock_hash"], created["lock_hash"]);
    assert_eq!(
        cx.run(&["env", "export", "tools", "--format", "pixi-lock"])
            .success()
            .stdout,
        other
            .run(&["env", "export", "tools", "--format", "pixi-lock"])
            .success()
            .stdout
    );

    let run = cx.run(&["run", "--env", "tools", "--", "tool"]).success();
    assert_eq!(
        run.stdout.trim(),
        "tool 1.0 with libbeta 1.0",
        "{}",
        run.stderr
    );

    // Files are hardlinked from rattler's package cache.
    let prefix = cx
        .run(&["env", "build", "tools", "--json"])
        .success()
        .json()["prefix"]
        .as_str()
        .unwrap()
        .to_string();
    let version_file = Path::new(&prefix).join("share/libbeta/VERSION");
    assert!(
        version_file.metadata().unwrap().nlink() >= 2,
        "expected a hardlink from the package cache"
    );

    // The channel can go away: the lock and the caches are enough to rebuild.
    std::fs::remove_dir_all(&channel).unwrap();
    cx.run(&["cache", "gc", "--max-size", "0"]).success();
    cx.run(&["env", "build", "tools"]).success();
    cx.run(&["env", "verify", "tools"]).success();
    let prefix = cx
        .run(&["env", "build", "tools", "--json"])
        .success()
        .json()["prefix"]
        .as_str()
        .unwrap()
        .to_string();
    let version_file = Path::new(&prefix).join("share/libbeta/VERSION");
    // Replace (not edit in place) so that the package cache stays intact.
    std::fs::remove_file(&version_file).unwrap();
    std::fs::write(&version_file, "9.9\n").unwrap();
    let verify = cx.run(&["env", "verify", "tools", "--json"]);
    assert_eq!(verify.code, 1);
    assert!(
        verify.stdout.contains("share/libbeta/VERSION"),
        "{}",
        verify.stdout
    );
}

#[test]
fn conda_conflicts_and_missing_packages_are_named() {
    let cx = TestContext::new();
    let channel = channel(&cx);
    let before = cx.snapshot();
    let file = cx.write(
        "conflict.yml",
        conda_env("conflict", &channel, &["libbeta >=2"]),
    );
    let run = cx
        .run_path(&["env", "create", "-f"], &file, &[])
        .user_error();
    assert!(run.stderr.contains("cannot be resolved"), "{}", run.stderr);
    assert!(
        run.stderr.contains("libbeta") && run.stderr.contains("libalpha"),
        "{}",
        run.stderr
    );
    let file = cx.write(
        "missing.yml",
        conda_env("missing", &channel, &["no-such-package"]),
    );
    let run = cx
        .run_path(&["env", "create", "-f"], &file, &[])
        .user_error();
    assert!(run.stderr.contains("no-such-package"), "{}", run.stderr);
    assert_eq!(cx.snapshot(), before, "nothing registered");
}

#[test]
fn conda_plus_pip_entry_points_point_at_the_final_prefix() {
    let cx = TestContext::new();
    let (version, files) = python_package_files();
    // make_channel writes text files; the interpreter binary is copied in afterwards through
    // a marker, see conda_channel::make_channel.
    let files: Vec<(&str, &str, bool)> = files
        .iter()
        .map(|(content, path, x)| (path.as_str(), content.as_str(), *x))
        .collect();
    let channel = make_channel(
        &cx.path("channel"),
        &[Package {
            name: "python",
            version: &version,
            depends: &[],
            files: &files,
        }],
    );
    let wheels = cx.path("wheels");
    common::make_wheels(&wheels, &["alpha==1.0:beta>=2:alpha-cli", "beta==2.1"]);
    let text = format!(
        "name: mixed\nchannels:\n  - file://{}\ndependencies:\n  - python\n  - pip:\n    - --no-index\n    - --find-links {}\n    - alpha\n",
        channel.display(),
        wheels.display()
    );
    let file = cx.write("environment.yml", text);
    if !common::uv_available() {
        return;
    }
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    let lock = cx.run(&["env", "lock", "mixed", "--json"]).success().json();
    let sources: Vec<String> = lock["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}:{}",
                p["source"].as_str().unwrap(),
                p["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(sources, ["pypi:alpha", "pypi:beta", "conda:python"]);
    let run = cx
        .run(&["run", "--env", "mixed", "--", "alpha-cli"])
        .success();
    assert_eq!(run.stdout.trim(), "alpha 1.0", "{}", run.stderr);
    let prefix = cx
        .run(&["env", "build", "mixed", "--json"])
        .success()
        .json()["prefix"]
        .as_str()
        .unwrap()
        .to_string();
    let script = std::fs::read_to_string(Path::new(&prefix).join("bin/alpha-cli")).unwrap();
    assert!(
        script.starts_with(&format!("#!{prefix}/bin/python")),
        "{script}"
    );
    cx.run(&["env", "verify", "mixed"]).success();
}

#[test]
fn conda_locks_for_several_platforms() {
    let cx = TestContext::new();
    let channel = channel(&cx);
    let file = cx.write("environment.yml", conda_env("multi", &channel, &["tool"]));
    let created = cx
        .run_path(
            &[
                "env",
                "create",
                "--json",
                "--platform",
                "linux-64,osx-arm64,win-64",
                "--virtual-package",
                "__cuda=12.4",
                "-f",
            ],
            &file,
            &[],
        )
        .success()
        .json();
    assert!(created["lock_hash"].is_string());
    let lock = cx.run(&["env", "lock", "multi", "--json"]).success().json();
    assert_eq!(
        lock["platforms"],
        serde_json::json!(["linux-64", "osx-arm64", "win-64"])
    );
    let per_platform = |p: &str| {
        lock["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["platform"] == p)
            .count()
    };
    assert_eq!(
        (
            per_platform("linux-64"),
            per_platform("osx-arm64"),
            per_platform("win-64")
        ),
        (3, 3, 3)
    );
    let pixi = cx
        .run(&["env", "export", "multi", "--format", "pixi-lock"])
        .success()
        .stdout;
    for p in ["linux-64", "osx-arm64", "win-64"] {
        assert!(pixi.contains(p), "{pixi}");
    }
    // A bad platform or virtual package is a clear error.
    let bad = cx
        .run_path(
            &[
                "env",
                "create",
                "--name",
                "x",
                "--platform",
                "linux-65",
                "-f",
            ],
            &file,
            &[],
        )
        .user_error();
    assert!(
        bad.stderr.contains("unknown platform `linux-65`"),
        "{}",
        bad.stderr
    );
    let bad = cx
        .run_path(
            &[
                "env",
                "create",
                "--name",
                "y",
                "--virtual-package",
                "cuda",
                "-f",
            ],
            &file,
            &[],
        )
        .user_error();
    assert!(
        bad.stderr.contains("invalid virtual package `cuda`"),
        "{}",
        bad.stderr
    );
}

/// A conda lock made by a client is accepted by a team server (its hash survives the trip as
/// JSON, and it belongs to the definition), and a build through the server uses it.
#[test]
fn a_conda_lock_travels_through_a_team_server() {
    let cx = TestContext::new();
    let channel = channel(&cx);
    let db = format!("sqlite://{}", cx.path("server-ws").display());
    let token = common::server::bootstrap_token(&cx, &db, "contributor", "alice");
    let server = common::server::Server::start(&cx, &db, &[]);
    let file = cx.write("environment.yml", conda_env("tools", &channel, &["tool"]));
    let created = common::server::remote(
        &cx,
        &server.url,
        Some(&token),
        &["env", "create", "--json", "-f", file.to_str().unwrap()],
    )
    .success()
    .json();
    let hash = created["lock_hash"]
        .as_str()
        .expect("locked at registration");
    // Locked later, through `env lock` of a --no-lock version, too.
    let deferred = cx.write("deferred.yml", conda_env("later", &channel, &["libbeta"]));
    common::server::remote(
        &cx,
        &server.url,
        Some(&token),
        &[
            "env",
            "create",
            "--no-lock",
            "-f",
            deferred.to_str().unwrap(),
        ],
    )
    .success();
    let locked = common::server::remote(
        &cx,
        &server.url,
        Some(&token),
        &["env", "lock", "later", "--json"],
    )
    .success()
    .json();
    assert!(locked["lock_hash"].is_string(), "{locked}");
    let built = common::server::remote(
        &cx,
        &server.url,
        Some(&token),
        &["env", "build", "tools", "--json"],
    )
    .success()
    .json();
    assert_eq!(built["lock_hash"], hash);
}
