//! `terrarium image build`: OCI images of conda environments, written as OCI layouts and
//! checked with Debian's skopeo and umoci.

mod common;

#[path = "common/conda_channel.rs"]
mod conda_channel;
#[path = "common/registry.rs"]
mod registry;

use std::path::Path;
use std::process::Command;

use common::TestContext;
use conda_channel::{make_channel, Package};
use registry::{free_port, is_root, tool, Registry};
use serde_json::Value;

/// Run a tool; it must succeed (its stderr in the failure).
#[track_caller]
fn succeed(command: &mut Command) -> std::process::Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        command,
        String::from_utf8_lossy(&out.stderr)
    );
    out
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
    // Without the layer cache, so that the second build compresses every layer again.
    std::fs::remove_dir_all(cx.path("cache/images/layer-index")).unwrap();
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
    let out = succeed(Command::new(&skopeo).args(["inspect", "--config", &reference]));
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

    // The same image as a `docker load` archive, which skopeo reads.
    let archive = cx.path("tools.tar");
    cx.run(&[
        "image",
        "build",
        "tools:1",
        "--output",
        &format!("docker-archive:{}", archive.display()),
    ])
    .success();
    let out = succeed(
        Command::new(&skopeo)
            .args(["inspect"])
            .arg(format!("docker-archive:{}", archive.display())),
    );
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        inspected["Labels"]["org.terrarium.environment.lock-hash"],
        first["lock_hash"]
    );
    assert_eq!(
        inspected["Layers"].as_array().unwrap().len(),
        first["layers"].as_array().unwrap().len()
    );
    let copied = cx.path("from-archive");
    succeed(
        Command::new(&skopeo)
            .arg("copy")
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("oci:{}:copy", copied.display())),
    );

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

/// conda packages that depend on `__glibc` take the C library from the system: without a base
/// image the image would not run, so it is refused, naming the package; on a base it builds.
#[test]
fn conda_packages_that_need_glibc_need_a_base_image() {
    let cx = TestContext::new();
    let channel = make_channel(
        &cx.path("channel"),
        &[Package {
            name: "native",
            version: "1.0",
            depends: &["__glibc>=2.17"],
            files: &[("share/native/VERSION", "1.0\n", false)],
        }],
    );
    let file = cx.write(
        "environment.yml",
        format!(
            "name: native\nchannels:\n  - file://{}\ndependencies:\n  - native\n",
            channel.display()
        ),
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    let out = cx.path("out");
    let run = cx.run(&[
        "image",
        "build",
        "native",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        // The lock keeps the record's constraint, possibly normalized (`__glibc >=2.17`).
        run.stderr.contains("native 1.0 depends on `__glibc")
            && run.stderr.contains(">=2.17`")
            && run.stderr.contains("--base"),
        "{}",
        run.stderr
    );
    assert!(!out.exists());

    let Some(base) = std::env::var_os("TERRARIUM_TEST_BASE_IMAGE") else {
        assert!(std::env::var_os("CI").is_none(), "CI needs the base image");
        return;
    };
    cx.run(&[
        "image",
        "build",
        "native",
        "--base",
        base.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ])
    .success();
    assert!(out.join("index.json").is_file());
}

/// A TCP proxy to `port` that cuts every connection, and stops accepting, once `budget` bytes
/// have gone through towards the registry: a registry that dies in the middle of a push.
fn dying_proxy(port: u16, budget: usize) -> u16 {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            if sent.load(Ordering::SeqCst) >= budget {
                return;
            }
            let server = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            let sent = Arc::clone(&sent);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = match c_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if sent.fetch_add(n, Ordering::SeqCst) + n > budget {
                        let _ = c_read.shutdown(std::net::Shutdown::Both);
                        let _ = s_write.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                    if s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
            });
        }
    });
    proxy_port
}

#[test]
fn push_uploads_only_missing_blobs_and_survives_a_registry_that_dies() {
    let cx = TestContext::new();
    // A larger package, so that a push is long enough to be cut in the middle.
    let big: String = (0..60_000u32)
        .map(|i| format!("{:08x}", i.wrapping_mul(2_654_435_761)))
        .collect();
    let channel = make_channel(
        &cx.path("channel"),
        &[
            Package {
                name: "libalpha",
                version: "1.0",
                depends: &[],
                files: &[("share/libalpha/VERSION", "1.0\n", false)],
            },
            Package {
                name: "libalpha",
                version: "1.1",
                depends: &[],
                files: &[("share/libalpha/VERSION", "1.1\n", false)],
            },
            Package {
                name: "weights",
                version: "1.0",
                depends: &[],
                files: &[("share/weights.txt", &big, false)],
            },
            Package {
                name: "tool",
                version: "1.0",
                depends: &["libalpha", "weights"],
                files: &[("bin/tool", "#!/bin/sh\necho tool\n", true)],
            },
        ],
    );
    define(&cx, &channel, "1.0");
    let Some(registry) = Registry::start(&cx) else {
        return;
    };
    let target = format!("127.0.0.1:{}/team/tools", registry.port);
    let push = |reference: &str, target: &str| {
        cx.run(&["image", "build", reference, "--push", target, "--json"])
    };

    // A registry that dies mid-push: a clear error, exit 1, and a retry that completes.
    let proxy = dying_proxy(registry.port, 100_000);
    let failed = push("tools:1", &format!("127.0.0.1:{proxy}/team/tools"));
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("pushing tools:1 to 127.0.0.1:"),
        "{}",
        failed.stderr
    );
    assert!(failed
        .stderr
        .contains("pushing again uploads only what the registry still lacks"));
    let first = push("tools:1", &target).success().json();
    let size = first["size"].as_u64().unwrap();
    assert!(first["push"]["uploaded_blobs"].as_u64().unwrap() >= 1);

    // The build is recorded; asking again for the same image in the same place returns at once.
    let builds = cx
        .run(&["image", "list", "tools", "--json"])
        .success()
        .json();
    assert_eq!(builds.as_array().unwrap().len(), 1, "{builds}");
    assert_eq!(builds[0]["digest"], first["digest"]);
    assert_eq!(builds[0]["pushed_to"], format!("{target}:tools-1"));
    assert!(builds[0]["log"]
        .as_str()
        .unwrap()
        .contains("blobs uploaded"));
    let again = push("tools:1", &target).success().json();
    assert_eq!(again["reused"], true, "{again}");
    // Under another tag it is built again (the same digest) and only the manifest is sent.
    let tagged = push("tools:1", &format!("{target}:stable"))
        .success()
        .json();
    assert_eq!(tagged["digest"], first["digest"]);
    assert_eq!(tagged["push"]["uploaded_blobs"], 0, "{tagged}");

    // The registry serves it: skopeo reads it back over plain HTTP.
    if let Some(skopeo) = tool("skopeo") {
        let out = Command::new(skopeo)
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{target}:tools-1"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(inspected["Digest"], first["digest"]);
        assert_eq!(
            inspected["Labels"]["org.terrarium.environment.name"],
            "tools"
        );
    }

    // A one-package change uploads that package's layer, the metadata layer and the config:
    // a small part of the image.
    define(&cx, &channel, "1.1");
    let changed = push("tools:2", &target).success().json();
    assert_eq!(changed["push"]["uploaded_blobs"], 3, "{changed}");
    let uploaded = changed["push"]["uploaded_bytes"].as_u64().unwrap();
    assert!(uploaded * 10 < size, "{uploaded} of {size} bytes");

    // Unreachable registries and bad references get clear errors.
    let dead = free_port();
    let run = push("tools:1", &format!("127.0.0.1:{dead}/team/tools"));
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("cannot reach the registry 127.0.0.1:"),
        "{}",
        run.stderr
    );
    let run = push("tools:1", "no-registry-here");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("invalid image reference"),
        "{}",
        run.stderr
    );
}

/// Every file under `dir`: path, mode and contents or link target.
fn tree(dir: &Path) -> Vec<(String, u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push((rel, 0o120000, target.display().to_string().into_bytes()));
            } else if meta.is_dir() {
                out.push((rel, meta.permissions().mode() & 0o7777, Vec::new()));
                stack.push(path);
            } else {
                out.push((
                    rel,
                    meta.permissions().mode() & 0o7777,
                    std::fs::read(&path).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn unpack(umoci: &str, image: &str, bundle: &Path) -> Value {
    let mut command = Command::new(umoci);
    command.arg("unpack");
    if !is_root() {
        command.arg("--rootless");
    }
    let out = command
        .args(["--image", image])
        .arg(bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap()
}

/// The Dockerfile is accurate: buildah builds it (no daemon, no RUN) into an image with the
/// same files, modes, variables, labels and command as `image build`'s.
#[test]
fn the_dockerfile_builds_the_same_image() {
    let cx = TestContext::new();
    let channel = channel(&cx);
    define(&cx, &channel, "1.0");
    let (Some(umoci), Some(buildah)) = (tool("umoci"), tool("buildah")) else {
        return;
    };
    build(&cx, "tools:1", "ours");
    let context = cx.path("context");
    cx.run(&[
        "image",
        "dockerfile",
        "tools:1",
        "--output",
        context.to_str().unwrap(),
    ])
    .success();
    let dockerfile = std::fs::read_to_string(context.join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("FROM scratch"), "{dockerfile}");
    assert!(
        dockerfile.contains("ENV TOKEN=\"\\${secret:API_TOKEN}\""),
        "{dockerfile}"
    );
    // A second run into the same directory is refused: nothing is overwritten.
    let again = cx.run(&[
        "image",
        "dockerfile",
        "tools:1",
        "--output",
        context.to_str().unwrap(),
    ]);
    assert_eq!(again.code, 2);

    let storage = |cmd: &mut Command| {
        cmd.arg("--storage-driver")
            .arg("vfs")
            .arg("--root")
            .arg(cx.path("buildah-root"))
            .arg("--runroot")
            .arg(cx.path("buildah-runroot"));
    };
    let mut bud = Command::new(&buildah);
    storage(&mut bud);
    let out = bud
        .args([
            "bud",
            "--quiet",
            "--layers",
            "-t",
            "localhost/tools:dockerfile",
        ])
        .arg(&context)
        .output()
        .unwrap();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(std::env::var_os("CI").is_none(), "buildah failed: {stderr}");
        eprintln!("skipped: buildah cannot build here: {stderr}");
        return;
    }
    let mut push = Command::new(&buildah);
    storage(&mut push);
    let theirs = cx.path("theirs");
    let out = push
        .args(["push", "--quiet", "localhost/tools:dockerfile"])
        .arg(format!("oci:{}:tools", theirs.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let ours_config = unpack(
        &umoci,
        &format!("{}:tools-1", cx.path("ours").display()),
        &cx.path("bundle-ours"),
    );
    let theirs_config = unpack(
        &umoci,
        &format!("{}:tools", theirs.display()),
        &cx.path("bundle-theirs"),
    );
    assert!(
        tree(&cx.path("bundle-ours/rootfs")) == tree(&cx.path("bundle-theirs/rootfs")),
        "the file trees differ"
    );
    let mut ours_env = ours_config["process"]["env"].clone();
    let mut theirs_env = theirs_config["process"]["env"].clone();
    for env in [&mut ours_env, &mut theirs_env] {
        env.as_array_mut().unwrap().retain(|v| {
            !v.as_str().unwrap().starts_with("TERM=") && !v.as_str().unwrap().starts_with("HOME=")
        });
    }
    assert_eq!(ours_env, theirs_env);
    assert_eq!(
        ours_config["process"]["args"],
        theirs_config["process"]["args"]
    );
    let labels = |config: &Value| {
        let mut labels = config["annotations"].as_object().unwrap().clone();
        labels.retain(|k, _| k.starts_with("org.terrarium."));
        labels
    };
    assert_eq!(labels(&ours_config), labels(&theirs_config));
    assert!(!labels(&ours_config).is_empty());
}

/// A user-managed environment defined by a Dockerfile is built by the builder the user names;
/// without one, or without it installed, a clear error.
#[test]
fn dockerfile_environments_are_built_by_the_named_builder() {
    let cx = TestContext::new();
    cx.write("ctx/hello.txt", "hello from the context\n");
    cx.write(
        "ctx/Dockerfile",
        "FROM scratch\nCOPY hello.txt /hello.txt\nENV GREETING=hi\n",
    );
    // Azure ML v2's shape: the build context and its Dockerfile.
    let definition = cx.write("docker-env.yml", "name: from-docker\nbuild:\n  path: ctx\n");
    cx.run_path(&["env", "create", "-f"], &definition, &[])
        .success();
    let out = cx.path("out");
    let run = cx.run(&[
        "image",
        "build",
        "from-docker",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("--builder buildah or --builder docker"),
        "{}",
        run.stderr
    );
    let empty = cx.path("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let run: common::Run = cx
        .command()
        .args([
            "image",
            "build",
            "from-docker",
            "--builder",
            "buildah",
            "--output",
        ])
        .arg(&out)
        .env("PATH", &empty)
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("no `buildah` on PATH"),
        "{}",
        run.stderr
    );

    let (Some(_), Some(umoci)) = (tool("buildah"), tool("umoci")) else {
        return;
    };
    let storage = cx.write(
        "storage.conf",
        format!(
            "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
            cx.path("containers-run").display(),
            cx.path("containers-root").display()
        ),
    );
    let run: common::Run = cx
        .command()
        .args([
            "image",
            "build",
            "from-docker",
            "--builder",
            "buildah",
            "--json",
            "--output",
        ])
        .arg(&out)
        .env("CONTAINERS_STORAGE_CONF", &storage)
        .output()
        .unwrap()
        .into();
    let built = run.success().json();
    assert_eq!(built["builder"], "buildah");
    assert!(built["digest"].as_str().unwrap().starts_with("sha256:"));
    let config = unpack(
        &umoci,
        &format!("{}:from-docker-1", out.display()),
        &cx.path("bundle"),
    );
    assert_eq!(
        std::fs::read_to_string(cx.path("bundle/rootfs/hello.txt")).unwrap(),
        "hello from the context\n"
    );
    assert!(config["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "GREETING=hi"));
    let builds = cx
        .run(&["image", "list", "from-docker", "--json"])
        .success()
        .json();
    assert_eq!(builds[0]["digest"], built["digest"]);

    // The build uses the context stored with the version: the folder changing, or going, does
    // not change what version 1 is built from.
    cx.write("ctx/hello.txt", "changed\n");
    std::fs::remove_dir_all(cx.path("ctx")).unwrap();
    let again = cx.path("out-again");
    let run: common::Run = cx
        .command()
        .args([
            "image",
            "build",
            "from-docker",
            "--builder",
            "buildah",
            "--output",
        ])
        .arg(&again)
        .env("CONTAINERS_STORAGE_CONF", &storage)
        .output()
        .unwrap()
        .into();
    run.success();
    unpack(
        &umoci,
        &format!("{}:from-docker-1", again.display()),
        &cx.path("bundle-again"),
    );
    assert_eq!(
        std::fs::read_to_string(cx.path("bundle-again/rootfs/hello.txt")).unwrap(),
        "hello from the context\n"
    );
}

/// A pip-only environment on a Debian base image with Python: the base is pushed to the
/// registry, the image built on it mounts the base's layers instead of uploading them, and the
/// environment's Python runs inside the image with runc and imports the locked packages.
#[test]
fn pip_environment_on_a_base_image_runs_in_runc() {
    let Some(base) = std::env::var_os("TERRARIUM_TEST_BASE_IMAGE") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs the base image: scripts/test-tools.sh builds it"
        );
        eprintln!("skipped: set TERRARIUM_TEST_BASE_IMAGE (scripts/test-tools.sh)");
        return;
    };
    let base = base.to_string_lossy().to_string();
    if !common::uv_available() {
        return;
    }
    let cx = TestContext::new();
    let wheels = cx.path("wheels");
    common::make_wheels(&wheels, &["alpha==1.0:beta>=2:alpha-cli", "beta==2.1"]);
    let file = cx.write(
        "env.yml",
        format!(
            "name: pipenv\npython:\n  pip:\n    - --no-index\n    - --find-links {}\n    - alpha\nenvironment_variables:\n  MODE: fast\n",
            wheels.display()
        ),
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();

    // Without a base: refused with the reason.
    let run = cx.run(&[
        "image",
        "build",
        "pipenv",
        "--output",
        cx.path("x").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("needs a base image"), "{}", run.stderr);
    // A bad base reference: a clear error.
    let run = cx.run(&["image", "build", "pipenv", "--base", "oci:/nowhere:tag"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("base image oci:/nowhere:tag"),
        "{}",
        run.stderr
    );

    let (Some(skopeo), Some(umoci)) = (tool("skopeo"), tool("umoci")) else {
        return;
    };
    let Some(registry) = Registry::start(&cx) else {
        return;
    };
    let base_ref = format!("127.0.0.1:{}/library/debian-python:bookworm", registry.port);
    succeed(Command::new(&skopeo).args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &base,
        &format!("docker://{base_ref}"),
    ]));
    // A repository of this run's own: a registry kept from an earlier run has the base's
    // layers in `team/pipenv` already, and nothing would be mounted.
    let target = format!(
        "127.0.0.1:{}/team/pipenv-{}:v1",
        registry.port,
        std::process::id()
    );
    let built = cx
        .run(&[
            "image", "build", "pipenv", "--base", &base_ref, "--push", &target, "--json",
        ])
        .success()
        .json();
    assert!(
        built["push"]["mounted_blobs"].as_u64().unwrap() >= 1,
        "{built}"
    );
    assert!(built["base_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let builds = cx
        .run(&["image", "list", "pipenv", "--json"])
        .success()
        .json();
    assert_eq!(builds[0]["base"], base_ref.as_str());

    // Pull it back, unpack it, run the environment's Python in it.
    let layout = cx.path("pulled");
    succeed(
        Command::new(&skopeo)
            .args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                &format!("docker://{target}"),
            ])
            .arg(format!("oci:{}:v1", layout.display())),
    );
    let bundle = cx.path("bundle");
    let config = unpack(&umoci, &format!("{}:v1", layout.display()), &bundle);
    let env: Vec<String> = config["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        env.contains(&"VIRTUAL_ENV=/opt/terrarium/envs/pipenv".to_string()),
        "{env:?}"
    );
    assert!(env.contains(&"MODE=fast".to_string()), "{env:?}");
    let cfg = std::fs::read_to_string(bundle.join("rootfs/opt/terrarium/envs/pipenv/pyvenv.cfg"))
        .unwrap();
    assert!(cfg.contains("home = /usr/bin"), "{cfg}");

    let Some(runc) = tool("runc") else {
        return;
    };
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root for runc");
        eprintln!("skipped: runc needs root here");
        return;
    }
    let mut runtime = config.clone();
    runtime["process"]["args"] = serde_json::json!([
        "/opt/terrarium/envs/pipenv/bin/python",
        "-c",
        "import alpha, beta, sys; print(alpha.__version__, beta.__version__, sys.prefix)"
    ]);
    runtime["process"]["terminal"] = serde_json::json!(false);
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(&runtime).unwrap(),
    )
    .unwrap();
    let id = format!("terrarium-test-{}", std::process::id());
    let out = Command::new(&runc)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .output()
        .unwrap();
    let _ = Command::new(&runc)
        .args(["delete", "--force", &id])
        .output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1.0 2.1 /opt/terrarium/envs/pipenv"
    );

    // `run --target container`: the same, through the CLI, recorded like any run, with the
    // working directory mounted at /work, and the run's id given to the program and written to
    // --id-file.
    let id_file = cx.path("container-run-id");
    let run = cx.run(&[
        "run", "--target", "container", "--base", &base, "--env", "pipenv", "--experiment", "boxed",
        "--id-file", id_file.to_str().unwrap(), "--",
        "python", "-c",
        "import alpha, os; print('in container', alpha.__version__, os.getcwd(), os.environ['MODE']); print('run', os.environ['TERRARIUM_RUN_ID']); open('result.txt', 'w').write('written inside')",
    ]);
    let run = run.success();
    assert!(
        run.stdout.contains("in container 1.0 /work fast"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    let run_id = std::fs::read_to_string(&id_file).unwrap();
    assert!(
        run.stdout.contains(&format!("run {run_id}")),
        "{}",
        run.stdout
    );
    assert_eq!(
        std::fs::read_to_string(cx.path("result.txt")).unwrap(),
        "written inside"
    );
    let runs = cx
        .run(&["runs", "list", "--experiment", "boxed", "--json"])
        .success()
        .json();
    assert_eq!(runs[0]["target"], "container", "{runs}");
    assert_eq!(runs[0]["exit_code"], 0);
    assert_eq!(runs[0]["id"], run_id.trim_end(), "{runs}");
    let log = cx
        .run(&["runs", "logs", runs[0]["id"].as_str().unwrap()])
        .success()
        .stdout;
    assert!(log.contains("in container 1.0"), "{log}");
    // A failing command's exit code comes through.
    let run = cx.run(&[
        "run",
        "--target",
        "container",
        "--base",
        &base,
        "--env",
        "pipenv",
        "--",
        "python",
        "-c",
        "raise SystemExit(4)",
    ]);
    assert_eq!(run.code, 4, "{}", run.stderr);
}

/// `image build --deployment`: the deployment's environment, model and entry script in an
/// image whose entrypoint starts the service; run with runc, it answers /score. Changing the
/// model changes only the model's layer.
#[test]
fn a_deployment_image_serves_the_model() {
    let Some(base) = std::env::var_os("TERRARIUM_TEST_BASE_IMAGE") else {
        assert!(std::env::var_os("CI").is_none(), "CI needs the base image");
        return;
    };
    let base = base.to_string_lossy().to_string();
    if !common::uv_available() {
        return;
    }
    let cx = TestContext::new();
    let wheels = cx.path("wheels");
    common::make_wheels(&wheels, &["alpha==1.0"]);
    let file = cx.write(
        "env.yml",
        format!(
            "name: scoring\npython:\n  pip:\n    - --no-index\n    - --find-links {}\n    - alpha\n",
            wheels.display()
        ),
    );
    cx.run_path(&["env", "create", "-f"], &file, &[]).success();
    cx.write("model/weights.json", "[1.0, 2.0, 3.0]");
    let entry = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scoring/linear.py");
    let deploy = |extra: &[&str]| {
        cx.command()
            .args([
                "deploy", "svc", "--detach", "--port", "0", "--env", "scoring", "--model",
            ])
            .arg(cx.path("model"))
            .arg("--entry")
            .arg(&entry)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = deploy(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cx.run(&["deployments", "stop", "svc"]).success();

    // Without a base: refused with the reason.
    let run = cx.run(&["image", "build", "scoring", "--deployment", "svc"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--base"), "{}", run.stderr);

    // The front goes into images that may have no C library: a dynamically linked one (the
    // shell) is refused.
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let run = cx.run(&[
        "image",
        "build",
        "scoring",
        "--deployment",
        "svc",
        "--base",
        &base,
        "--front",
        sh.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("dynamically linked") && run.stderr.contains("build-front.sh"),
        "{}",
        run.stderr
    );
    // The statically linked front, from scripts/build-front.sh (read by the binary itself).
    if std::env::var_os("TERRARIUM_FRONT").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI builds the front: eval \"$(scripts/build-front.sh)\""
        );
        return;
    }

    let built = cx
        .run(&[
            "image",
            "build",
            "scoring",
            "--deployment",
            "svc",
            "--base",
            &base,
            "--output",
            cx.path("img").to_str().unwrap(),
            "--json",
        ])
        .success()
        .json();
    let holds: Vec<String> = built["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["holds"].as_str().unwrap().to_string())
        .collect();
    assert!(
        holds.iter().any(|h| h.starts_with("model sha256:")),
        "{holds:?}"
    );
    assert!(holds.iter().any(|h| h == "entry script"), "{holds:?}");

    // A changed model: only the model layer is new.
    cx.write("model/weights.json", "[2.0, 2.0, 2.0]");
    let out = deploy(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cx.run(&["deployments", "stop", "svc"]).success();
    let rebuilt = cx
        .run(&[
            "image",
            "build",
            "scoring",
            "--deployment",
            "svc",
            "--base",
            &base,
            "--output",
            cx.path("img2").to_str().unwrap(),
            "--json",
        ])
        .success()
        .json();
    let old: Vec<&str> = built["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    let new: Vec<&str> = rebuilt["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| !old.contains(&l["digest"].as_str().unwrap()))
        .map(|l| l["holds"].as_str().unwrap())
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(new[0].starts_with("model sha256:"), "{new:?}");

    let (Some(umoci), Some(runc)) = (tool("umoci"), tool("runc")) else {
        return;
    };
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root for runc");
        return;
    }
    let bundle = cx.path("bundle");
    let config = unpack(
        &umoci,
        &format!("{}:scoring-1", cx.path("img2").display()),
        &bundle,
    );
    let mut runtime = config.clone();
    runtime["process"]["terminal"] = serde_json::json!(false);
    if let Some(ns) = runtime["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
    }
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(&runtime).unwrap(),
    )
    .unwrap();
    let id = format!("terrarium-serve-{}", std::process::id());
    let log = std::fs::File::create(cx.path("service.log")).unwrap();
    let mut service = Command::new(&runc)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let http = reqwest::blocking::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let answer = loop {
        let ready = http
            .get("http://127.0.0.1:5001/health")
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok());
        if ready.as_ref().is_some_and(|h| h["status"] == "READY") {
            break http
                .post("http://127.0.0.1:5001/score")
                .body(r#"{"data": [[1, 1, 1]]}"#)
                .send()
                .unwrap()
                .json::<Value>()
                .unwrap();
        }
        if std::time::Instant::now() > deadline || service.try_wait().unwrap().is_some() {
            let _ = Command::new(&runc).args(["kill", &id, "KILL"]).output();
            let _ = service.wait();
            let _ = Command::new(&runc)
                .args(["delete", "--force", &id])
                .output();
            panic!(
                "the service did not start: {}",
                std::fs::read_to_string(cx.path("service.log")).unwrap()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = Command::new(&runc).args(["kill", &id, "TERM"]).output();
    let _ = service.wait();
    let _ = Command::new(&runc)
        .args(["delete", "--force", &id])
        .output();
    assert_eq!(answer["predictions"], serde_json::json!([6.0]), "{answer}");
}
