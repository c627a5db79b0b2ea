//! A local conda channel, written by the tests: noarch packages made with
//! rattler_package_streaming and indexed with rattler_index, as a real channel would be.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One package: name, version, dependencies, and files (relative path, content, executable).
pub struct Package<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub depends: &'a [&'a str],
    pub files: &'a [(&'a str, &'a str, bool)],
}

/// Write `packages` into `channel/noarch` and index the channel.
pub fn make_channel(channel: &Path, packages: &[Package<'_>]) -> PathBuf {
    let noarch = channel.join("noarch");
    std::fs::create_dir_all(&noarch).unwrap();
    for package in packages {
        let work = tempfile::tempdir().unwrap();
        let root = work.path();
        let mut paths = Vec::new();
        let mut paths_json = Vec::new();
        for (rel, content, executable) in package.files {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            // `@copy:/abs/path` copies a file (e.g. an interpreter binary) instead of text.
            let bytes = match content.strip_prefix("@copy:") {
                Some(source) => std::fs::read(source).unwrap(),
                None => content.as_bytes().to_vec(),
            };
            std::fs::write(&path, &bytes).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                &path,
                std::fs::Permissions::from_mode(if *executable { 0o755 } else { 0o644 }),
            )
            .unwrap();
            paths.push(path.clone());
            paths_json.push(serde_json::json!({
                "_path": rel,
                "path_type": "hardlink",
                "sha256": hex(&Sha256::digest(&bytes)),
                "size_in_bytes": bytes.len(),
            }));
        }
        let info = root.join("info");
        std::fs::create_dir_all(&info).unwrap();
        let index = serde_json::json!({
            "name": package.name,
            "version": package.version,
            "build": "0",
            "build_number": 0,
            "depends": package.depends,
            "noarch": "generic",
            "subdir": "noarch",
            "license": "MIT",
            "timestamp": 1_700_000_000_000u64,
        });
        std::fs::write(
            info.join("index.json"),
            serde_json::to_string_pretty(&index).unwrap(),
        )
        .unwrap();
        std::fs::write(
            info.join("paths.json"),
            serde_json::to_string_pretty(
                &serde_json::json!({"paths_version": 1, "paths": paths_json}),
            )
            .unwrap(),
        )
        .unwrap();
        paths.push(info.join("index.json"));
        paths.push(info.join("paths.json"));
        let out = std::fs::File::create(
            noarch.join(format!("{}-{}-0.tar.bz2", package.name, package.version)),
        )
        .unwrap();
        rattler_package_streaming::write::write_tar_bz2_package(
            out,
            root,
            &paths,
            rattler_conda_types::compression_level::CompressionLevel::Default,
            None,
            None,
        )
        .unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(rattler_index::index_fs(rattler_index::IndexFsConfig {
            channel: channel.to_path_buf(),
            target_platform: None,
            repodata_patch: None,
            write_zst: false,
            write_shards: false,
            repodata_revisions: Vec::new(),
            package_revision_assignment: Default::default(),
            force: true,
            max_parallel: 2,
            multi_progress: None,
        }))
        .unwrap();
    channel.to_path_buf()
}

/// A conda `python` package for tests: a copy of this machine's interpreter binary plus a
/// `pyvenv.cfg` pointing at its standard library, so the prefix is a working Python that uv can
/// install into, as a conda-forge `python` would be.
pub fn python_package_files() -> (String, Vec<(String, String, bool)>) {
    let out = std::process::Command::new("python3")
        .args(["-c", "import os, sys; print(os.path.realpath(sys.executable)); print('%d.%d.%d' % sys.version_info[:3])"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let executable = lines.next().unwrap().to_string();
    let version = lines.next().unwrap().to_string();
    let minor: Vec<&str> = version.split('.').take(2).collect();
    let home = Path::new(&executable)
        .parent()
        .unwrap()
        .display()
        .to_string();
    (
        version.clone(),
        vec![
            (
                format!("@copy:{executable}"),
                "bin/python".to_string(),
                true,
            ),
            (
                format!(
                    "home = {home}\ninclude-system-site-packages = false\nversion = {version}\n"
                ),
                "pyvenv.cfg".to_string(),
                false,
            ),
            (
                String::new(),
                format!(
                    "lib/python{}.{}/site-packages/_conda_python.pth",
                    minor[0], minor[1]
                ),
                false,
            ),
        ],
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
