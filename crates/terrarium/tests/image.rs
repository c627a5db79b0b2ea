//! `terrarium image build`: OCI images of conda environments, written as OCI layouts and
//! checked with Debian's skopeo and umoci.

mod common;

#[path = "common/conda_channel.rs"]
mod conda_channel;

use std::path::Path;
use std::process::Command;

use common::TestContext;
use conda_channel::{make_channel, Package};
use serde_json::Value;

fn tool(name: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    if path.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs {name}: scripts/test-tools.sh installs it"
        );
        eprintln!("skipped: install Debian's {name}");
        return None;
    }
    Some(path)
}

fn channel(cx: &TestContext) -> std::path::PathBuf {
    make_channel(
        &cx.path("channel"),
        &[
            Package { name: "libalpha", version: "1.0", depends: &[], files: &[("share/libalpha/VERSION", "1.0\n", false)] },
            Package { name: "libalpha", version: "1.1", depends: &[], files: &[("share/libalpha/VERSION", "1.1\n", false)] },
            Package { name: "libbeta", version: "1.0", depends: &["libalpha >=1"], files: &[("share/libbeta/VERSION", "1.0\n", false)] },
            Package {
                name: "tool",
                version: "1.0",
                depends: &["libbeta"],
                files: &[("bin/tool", "#!/bin/sh\necho \"tool with libalpha $(cat \"$CONDA_PREFIX/share/libalpha/VERSION\")\"\n", true)],
            },
        ],
    )
}

fn define(cx: &TestContext, channel: &Path, alpha: &str) {
    let file = cx.write(
        "environment.yml",
        format!(
            "name: tools\nchannels:\n  - file://{}\ndependencies:\n  - tool\n  - libalpha =={alpha}\nvariables:\n  MODE: fast\n  TOKEN: ${{secret:API_TOKEN}}\n",
            channel.display()
        ),
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
}

fn build(cx: &TestContext, reference: &str, out: &str) -> Value {
    cx.run(&[
        "image",
        "build",
        reference,
        "--output",
        cx.path(out).to_str().unwrap(),
        "--json",
    ])
    .success()
    .json()
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn conda_environment_image_is_layered_reproducible_and_unpacks() {
    let cx = TestContext::new();
    let channel = channel(&cx);
    define(&cx, &channel, "1.0");

    // The same lock twice: byte-identical layouts.
    let first = build(&cx, "tools:1", "image-a");
    let second = build(&cx, "tools:1", "image-b");
    assert_eq!(first["digest"], second["digest"]);
    assert!(files(&cx.path("image-a")) == files(&cx.path("image-b")));

    // One layer per package, largest first, then the metadata layer last.
    let holds: Vec<&str> = first["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["holds"].as_str().unwrap())
        .collect();
    assert!(
        holds.contains(&"tool 1.0") && holds.contains(&"libalpha 1.0"),
        "{holds:?}"
    );
    assert_eq!(*holds.last().unwrap(), "environment metadata");
    let prefix = first["prefix"].as_str().unwrap().to_string();
    assert!(prefix.starts_with("/opt/terrarium/envs/"));

    let (Some(skopeo), Some(umoci)) = (tool("skopeo"), tool("umoci")) else {
        return;
    };
    let reference = format!("oci:{}:tools-1", cx.path("image-a").display());
    let out = Command::new(&skopeo)
        .args(["inspect", "--config", &reference])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.terrarium.environment.name"], "tools");
    assert_eq!(labels["org.terrarium.environment.version"], "1");
    assert_eq!(
        labels["org.terrarium.environment.lock-hash"],
        first["lock_hash"]
    );
    assert!(labels["org.terrarium.environment.definition"]
        .as_str()
        .unwrap()
        .contains("libalpha"));
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(
            &format!(
                "PATH={prefix}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            )
            .as_str()
        ),
        "{env:?}"
    );
    assert!(env.contains(&"MODE=fast"));
    // Secrets stay references; their values never reach an image.
    assert!(env.contains(&"TOKEN=${secret:API_TOKEN}"), "{env:?}");

    // umoci unpacks it into a runtime bundle; the environment works from the unpacked tree.
    let bundle = cx.path("bundle");
    let mut unpack = Command::new(&umoci);
    unpack.args(["unpack"]);
    if !is_root() {
        unpack.arg("--rootless");
    }
    let out = unpack
        .args([
            "--image",
            &format!("{}:tools-1", cx.path("image-a").display()),
        ])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = bundle.join("rootfs").join(prefix.trim_start_matches('/'));
    assert_eq!(
        std::fs::read_to_string(root.join("share/libalpha/VERSION")).unwrap(),
        "1.0\n"
    );
    let run = Command::new(root.join("bin/tool"))
        .env("CONDA_PREFIX", &root)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "tool with libalpha 1.0"
    );
    let runtime: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert!(runtime["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "MODE=fast"));

    // A one-package change: only that package's layer and the metadata layer are new.
    define(&cx, &channel, "1.1");
    let changed = build(&cx, "tools:2", "image-c");
    let digests = |v: &Value| -> Vec<String> {
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let before = digests(&first);
    let new: Vec<&Value> = changed["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| !before.contains(&l["digest"].as_str().unwrap().to_string()))
        .collect();
    let new_holds: Vec<&str> = new.iter().map(|l| l["holds"].as_str().unwrap()).collect();
    assert_eq!(
        new_holds,
        ["libalpha 1.1", "environment metadata"],
        "{changed}"
    );
}

#[test]
fn images_of_pip_only_environments_are_refused_with_a_reason() {
    let cx = TestContext::new();
    let file = cx.write(
        "env.yml",
        "name: pips\npython:\n  pip:\n    - numpy==2.1.0\n",
    );
    cx.run_path(
        &["env", "create", "--no-lock", "-f"],
        &file,
        &["--platform", "linux-64"],
    )
    .success();
    let run = cx.run(&[
        "image",
        "build",
        "pips",
        "--output",
        cx.path("out").to_str().unwrap(),
    ]);
    // Locking needs PyPI or a wheelhouse; without either the lock error is what is reported.
    assert_ne!(run.code, 0);
    assert!(!cx.path("out").join("index.json").exists());
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
