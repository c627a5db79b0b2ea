//! Packs: `env pack` writes a lock and every package file it names into one archive, and
//! `env unpack` builds from it on a "node" that has none of the sources (the wheelhouse and
//! the channel are deleted first) and its own empty caches; a pack that does not match its
//! lock is refused before anything is built, leaving nothing behind.

mod common;

#[path = "common/conda_channel.rs"]
mod conda_channel;
#[path = "common/registry.rs"]
mod registry;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{make_wheels, uv_available, Run, TestContext};
use conda_channel::{make_channel, python_package_files, Package};
use registry::Registry;

/// The binary as a node without the workspace, with its own environment and uv caches.
fn node_command(cx: &TestContext, node: &str) -> Command {
    let mut cmd = cx.command_without_workspace();
    cmd.env("TERRARIUM_CACHE_DIR", cx.path(&format!("{node}/cache")))
        .env("UV_CACHE_DIR", cx.path(&format!("{node}/uv")));
    cmd
}

/// As `node_command`, with the workspace (to run or verify by reference).
fn node_in_workspace(cx: &TestContext, node: &str, args: &[&str]) -> Run {
    let mut cmd = node_command(cx, node);
    cmd.arg("--workspace").arg(cx.workspace()).args(args);
    cmd.output().unwrap().into()
}

fn unpack(cx: &TestContext, node: &str, pack: &Path, rest: &[&str]) -> Run {
    node_command(cx, node)
        .args(["env", "unpack"])
        .arg(pack)
        .args(rest)
        .output()
        .unwrap()
        .into()
}

fn pack(cx: &TestContext, reference: &str, out: &Path, rest: &[&str]) -> serde_json::Value {
    cx.run_path(&["env", "pack", reference, "--json", "-o"], out, rest)
        .success()
        .json()
}

fn pip_env(name: &str, wheels: &Path, requirements: &[&str]) -> String {
    let mut text = format!(
        "name: {name}\npython:\n  pip:\n    - --no-index\n    - --find-links {}\n",
        wheels.display()
    );
    for r in requirements {
        text.push_str(&format!("    - \"{r}\"\n"));
    }
    text
}

/// Every file and directory under `dir` (none if it does not exist), for "nothing left" checks.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The entries of a plain tar, in order.
fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// A tar of regular files whose names are written as given, `..` included.
fn raw_tar(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn a_pip_environment_packs_and_unpacks_offline() {
    if !uv_available() {
        return;
    }
    let cx = TestContext::new();
    let wheels = cx.path("wheels");
    make_wheels(
        &wheels,
        &["alpha==1.0:beta>=2", "beta==2.1", "gamma==0.1:alpha"],
    );
    let file = cx.write("env.yml", pip_env("wh", &wheels, &["gamma"]));
    let created = cx
        .run_path(&["env", "create", "--json", "-f"], &file, &[])
        .success()
        .json();

    let tar = cx.path("wh.tar");
    let packed = pack(&cx, "wh", &tar, &[]);
    assert_eq!(packed["lock_hash"], created["lock_hash"]);
    assert_eq!(packed["files"], 3);
    assert_eq!(
        packed["size_bytes"].as_u64().unwrap(),
        std::fs::metadata(&tar).unwrap().len()
    );
    // Reproducible: the same lock packs to the same bytes.
    let again = cx.path("wh-again.tar");
    pack(&cx, "wh:1", &again, &[]);
    assert_eq!(std::fs::read(&tar).unwrap(), std::fs::read(&again).unwrap());
    let zst = cx.path("wh.tar.zst");
    pack(&cx, "wh", &zst, &["--compression", "zstd"]);

    // The node has the pack and nothing else: no wheelhouse, empty caches, no workspace.
    std::fs::remove_dir_all(&wheels).unwrap();
    // (Packing needs the sources: the caches hold unpacked packages, not their archives.)
    let late = cx.path("late.tar");
    let run = cx.run_path(&["env", "pack", "wh", "-o"], &late, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot fetch file://") && run.stderr.contains("alpha-1.0"),
        "{}",
        run.stderr
    );
    assert!(!late.exists());
    let unpacked = unpack(&cx, "node", &tar, &["--json"]).success().json();
    assert_eq!(unpacked["built"], true);
    assert_eq!(unpacked["lock_hash"], created["lock_hash"]);
    assert_eq!(unpacked["files"], 3);
    let prefix = unpacked["prefix"].as_str().unwrap().to_string();
    assert!(
        prefix.starts_with(&cx.path("node/cache/envs").display().to_string()),
        "{prefix}"
    );
    // It is the cache's environment for that lock: `verify` and `run` find it built.
    node_in_workspace(&cx, "node", &["env", "verify", "wh"]).success();
    let run = node_in_workspace(
        &cx,
        "node",
        &[
            "run",
            "--env",
            "wh",
            "--",
            "python",
            "-c",
            "import sys, gamma, beta; print(beta.__version__, sys.prefix)",
        ],
    )
    .success();
    assert_eq!(run.stdout.trim(), format!("2.1 {prefix}"), "{}", run.stderr);
    // A second unpack of the same lock builds nothing.
    let second = unpack(&cx, "node", &tar, &["--json"]).success().json();
    assert_eq!(second["built"], false);
    assert_eq!(second["prefix"], unpacked["prefix"]);
    let envs: Vec<String> = std::fs::read_dir(cx.path("node/cache/envs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".lock"))
        .collect();
    assert_eq!(envs.len(), 1, "one prefix, no staging left: {envs:?}");

    // The zstd pack on another node, into a directory of its own.
    let dir = cx.path("node2/prefix");
    let into = unpack(
        &cx,
        "node2",
        &zst,
        &["--prefix", dir.to_str().unwrap(), "--json"],
    )
    .success()
    .json();
    assert_eq!(into["prefix"], dir.display().to_string());
    let out = Command::new(dir.join("bin/python"))
        .args(["-c", "import sys, gamma; print(sys.prefix)"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        dir.display().to_string()
    );
    // Not into a directory that has files.
    let refused = unpack(&cx, "node2", &zst, &["--prefix", dir.to_str().unwrap()]).user_error();
    assert!(
        refused.stderr.contains("is not empty"),
        "{}",
        refused.stderr
    );
}

#[test]
fn a_conda_environment_packs_and_unpacks_offline() {
    let cx = TestContext::new();
    let channel = make_channel(
        &cx.path("channel"),
        &[
            Package { name: "libalpha", version: "1.0", depends: &[], files: &[("share/libalpha/VERSION", "1.0\n", false)] },
            Package { name: "libbeta", version: "1.0", depends: &["libalpha >=1"], files: &[("share/libbeta/VERSION", "1.0\n", false)] },
            Package {
                name: "tool",
                version: "1.0",
                depends: &["libbeta"],
                files: &[("bin/tool", "#!/bin/sh\necho \"tool 1.0 with libbeta $(cat \"$CONDA_PREFIX/share/libbeta/VERSION\")\"\n", true)],
            },
        ],
    );
    let file = cx.write(
        "environment.yml",
        format!(
            "name: tools\nchannels:\n  - file://{}\ndependencies:\n  - tool\n",
            channel.display()
        ),
    );
    let created = cx
        .run_path(&["env", "create", "--json", "-f"], &file, &[])
        .success()
        .json();
    let tar = cx.path("tools.tar");
    let packed = pack(&cx, "tools", &tar, &[]);
    assert_eq!(packed["files"], 3);
    let again = cx.path("tools-again.tar");
    pack(&cx, "tools", &again, &[]);
    assert_eq!(std::fs::read(&tar).unwrap(), std::fs::read(&again).unwrap());
    let names: Vec<String> = entries(&std::fs::read(&tar).unwrap())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "pack.json",
            "lock.json",
            "conda/libalpha-1.0-0.tar.bz2",
            "conda/libbeta-1.0-0.tar.bz2",
            "conda/tool-1.0-0.tar.bz2",
        ]
    );

    std::fs::remove_dir_all(&channel).unwrap();
    let unpacked = unpack(&cx, "node", &tar, &["--json"]).success().json();
    assert_eq!(unpacked["built"], true);
    assert_eq!(unpacked["lock_hash"], created["lock_hash"]);
    node_in_workspace(&cx, "node", &["env", "verify", "tools"]).success();
    let run = node_in_workspace(&cx, "node", &["run", "--env", "tools", "--", "tool"]).success();
    assert_eq!(
        run.stdout.trim(),
        "tool 1.0 with libbeta 1.0",
        "{}",
        run.stderr
    );
    let second = unpack(&cx, "node", &tar, &["--json"]).success().json();
    assert_eq!(second["built"], false);

    // Concurrent unpacks of one lock on a fresh node build it once.
    let children: Vec<_> = (0..3)
        .map(|_| {
            node_command(&cx, "node3")
                .args(["env", "unpack", "--json"])
                .arg(&tar)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let built: Vec<bool> = children
        .into_iter()
        .map(|child| {
            let run: Run = child.wait_with_output().unwrap().into();
            run.success().json()["built"].as_bool().unwrap()
        })
        .collect();
    assert_eq!(built.iter().filter(|b| **b).count(), 1, "{built:?}");
}

/// A conda interpreter with wheels on top: the wheels are installed from the pack by uv with
/// no index, and their entry points name the final prefix.
#[test]
fn a_conda_and_pip_environment_unpacks_offline() {
    if !uv_available() {
        return;
    }
    let cx = TestContext::new();
    let (version, files) = python_package_files();
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
    make_wheels(&wheels, &["alpha==1.0:beta>=2:alpha-cli", "beta==2.1"]);
    let text = format!(
        "name: mixed\nchannels:\n  - file://{}\ndependencies:\n  - python\n  - pip:\n    - --no-index\n    - --find-links {}\n    - alpha\n",
        channel.display(),
        wheels.display()
    );
    let file = cx.write("environment.yml", text);
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    let tar = cx.path("mixed.tar");
    let packed = pack(&cx, "mixed", &tar, &[]);
    assert_eq!(packed["files"], 3);

    std::fs::remove_dir_all(&channel).unwrap();
    std::fs::remove_dir_all(&wheels).unwrap();
    let unpacked = unpack(&cx, "node", &tar, &["--json"]).success().json();
    assert_eq!(unpacked["built"], true);
    let prefix = PathBuf::from(unpacked["prefix"].as_str().unwrap());
    node_in_workspace(&cx, "node", &["env", "verify", "mixed"]).success();
    let run =
        node_in_workspace(&cx, "node", &["run", "--env", "mixed", "--", "alpha-cli"]).success();
    assert_eq!(run.stdout.trim(), "alpha 1.0", "{}", run.stderr);
    let script = std::fs::read_to_string(prefix.join("bin/alpha-cli")).unwrap();
    assert!(
        script.contains(&prefix.display().to_string()) && !script.contains(".tmp-"),
        "{script}"
    );
}

#[test]
fn a_pack_that_does_not_match_its_lock_is_refused_and_leaves_nothing() {
    if !uv_available() {
        return;
    }
    let cx = TestContext::new();
    let wheels = cx.path("wheels");
    make_wheels(&wheels, &["alpha==1.0:beta>=2", "beta==2.0", "beta==2.1"]);
    let file = cx.write("env.yml", pip_env("wh", &wheels, &["alpha"]));
    let created = cx
        .run_path(&["env", "create", "--json", "-f"], &file, &[])
        .success()
        .json();
    let lock_hash = created["lock_hash"].as_str().unwrap().to_string();
    let good = cx.path("good.tar");
    pack(&cx, "wh", &good, &[]);
    let other = cx.write(
        "other.yml",
        pip_env("other", &wheels, &["alpha", "beta==2.0"]),
    );
    cx.run_path(&["env", "create", "-f"], &other, &[]).success();
    let other = cx.path("other.tar");
    pack(&cx, "other", &other, &[]);
    std::fs::remove_dir_all(&wheels).unwrap();

    let good_entries = entries(&std::fs::read(&good).unwrap());
    let wheel = good_entries
        .iter()
        .position(|(n, _)| n == "wheels/alpha-1.0-py3-none-any.whl")
        .unwrap();
    let mut cases: Vec<(&str, PathBuf, Vec<&str>, String)> = Vec::new();

    let mut e = good_entries.clone();
    let middle = e[wheel].1.len() / 2;
    e[wheel].1[middle] ^= 0x01;
    cases.push((
        "a byte flipped in a wheel",
        cx.write("flipped.tar", raw_tar(&e)),
        vec![],
        "wheels/alpha-1.0-py3-none-any.whl in the pack is not the file the lock names".into(),
    ));

    let mut e = good_entries.clone();
    let lock = String::from_utf8(e[1].1.clone()).unwrap();
    assert!(lock.contains("\"version\": \"2.1\""), "{lock}");
    e[1].1 = lock
        .replace("\"version\": \"2.1\"", "\"version\": \"2.0\"")
        .into_bytes();
    cases.push((
        "the lock edited",
        cx.write("edited-lock.tar", raw_tar(&e)),
        vec![],
        "the pack's lock.json was changed".into(),
    ));

    let mut e = good_entries.clone();
    e.push(("wheels/../../escaped".into(), b"#!/bin/sh\n".to_vec()));
    cases.push((
        "an entry that climbs out",
        cx.write("escape.tar", raw_tar(&e)),
        vec![],
        "the pack entry `wheels/../../escaped` escapes".into(),
    ));

    cases.push((
        "a good pack of another lock than the one asked for",
        other.clone(),
        vec!["--lock-hash", &lock_hash],
        format!("not {lock_hash}"),
    ));

    let mut compared = 0;
    for (what, path, args, expected) in &cases {
        for into_prefix in [false, true] {
            let node = format!("node-{compared}");
            let dir = cx.path(&format!("{node}/prefixes/env"));
            let mut rest = args.clone();
            let dir_text = dir.display().to_string();
            if into_prefix {
                rest.extend(["--prefix", dir_text.as_str()]);
            }
            let run = unpack(&cx, &node, path, &rest).user_error();
            assert!(
                run.stderr.contains(expected.as_str()),
                "{what}: {}",
                run.stderr
            );
            assert!(run.stdout.is_empty(), "{what}: {}", run.stdout);
            // Nothing built, nothing staged, nothing in any cache.
            for left in ["cache", "uv", "prefixes"] {
                let found = tree(&cx.path(&format!("{node}/{left}")));
                let found: Vec<_> = found
                    .into_iter()
                    .filter(|p| !(p.is_dir() && tree(p).is_empty()))
                    .collect();
                assert!(found.is_empty(), "{what}: left behind {found:?}");
            }
            assert!(!dir.exists(), "{what}");
            compared += 1;
        }
    }
    assert_eq!(compared, 8);
    assert!(!cx.path("escaped").exists());

    // The good pack still unpacks there.
    unpack(&cx, "node-0", &good, &["--lock-hash", &lock_hash]).success();
}

/// `env pack --push` puts the pack in a registry as an OCI artifact and prints its reference by
/// digest; a node with no shared filesystem unpacks from that reference. A reference to another
/// digest, or to an image that is not a pack, is refused with nothing built.
#[test]
fn a_pack_pushed_to_a_registry_is_unpacked_from_it() {
    if !uv_available() {
        return;
    }
    let cx = TestContext::new();
    let Some(registry) = Registry::start(&cx) else {
        assert!(std::env::var_os("CI").is_none(), "CI has docker-registry");
        eprintln!("skipped: no docker-registry");
        return;
    };
    let wheels = cx.path("wheels");
    make_wheels(&wheels, &["alpha==1.0:beta>=2", "beta==2.1"]);
    let file = cx.write("env.yml", pip_env("reg", &wheels, &["alpha"]));
    let created = cx
        .run_path(&["env", "create", "--json", "-f"], &file, &[])
        .success()
        .json();
    let repository = format!("{}/packs-{}", registry.address(), std::process::id());
    let pushed = cx
        .run(&["env", "pack", "reg", "--push", &repository, "--json"])
        .success()
        .json();
    let reference = pushed["pushed"]["reference"].as_str().unwrap().to_string();
    assert!(
        reference.starts_with(&format!("{repository}@sha256:")),
        "{pushed}"
    );
    assert_eq!(pushed["pushed"]["uploaded_blobs"], 2, "{pushed}");
    // Pushed again: nothing uploaded, the same reference (the manifest is reproducible).
    let again = cx
        .run(&["env", "pack", "reg", "--push", &repository, "--json"])
        .success()
        .json();
    assert_eq!(again["pushed"]["reference"], reference.as_str());
    assert_eq!(again["pushed"]["uploaded_blobs"], 0, "{again}");
    // Without --json the reference is the one line on stdout.
    let plain = cx
        .run(&["env", "pack", "reg", "--push", &repository])
        .success();
    assert_eq!(plain.stdout.trim(), reference);

    // A node: no workspace, no pack file, only the reference.
    let lock_hash = created["lock_hash"].as_str().unwrap();
    let node = node_command(&cx, "node-a")
        .args([
            "env",
            "unpack",
            &reference,
            "--lock-hash",
            lock_hash,
            "--json",
        ])
        .output()
        .unwrap();
    let node: Run = node.into();
    let unpacked = node.success().json();
    assert_eq!(unpacked["built"], true);
    assert_eq!(unpacked["lock_hash"], lock_hash);
    let prefix = PathBuf::from(unpacked["prefix"].as_str().unwrap());
    assert!(prefix.join("bin/python").exists());
    // The fetched pack does not stay behind in the node's cache.
    let packs: Vec<_> = std::fs::read_dir(cx.path("node-a/cache/packs"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(packs.is_empty(), "{packs:?}");

    // Another digest: refused, nothing built.
    let wrong = format!("{repository}@sha256:{}", "0".repeat(64));
    let run: Run = node_command(&cx, "node-b")
        .args(["env", "unpack", &wrong])
        .output()
        .unwrap()
        .into();
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("cannot fetch the pack"),
        "{}",
        run.stderr
    );
    assert!(tree(&cx.path("node-b/cache/envs")).is_empty());
    // A lock the job does not name: the pack is fetched, checked, refused.
    let run: Run = node_command(&cx, "node-b")
        .args([
            "env",
            "unpack",
            &reference,
            "--lock-hash",
            &format!("sha256:{}", "1".repeat(64)),
        ])
        .output()
        .unwrap()
        .into();
    assert_ne!(run.code, 0);
    assert!(
        tree(&cx.path("node-b/cache/envs")).is_empty(),
        "{:?}",
        tree(&cx.path("node-b/cache/envs"))
    );
    drop(registry);
}
