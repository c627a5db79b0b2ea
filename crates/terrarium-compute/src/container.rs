//! Runs in a container on this machine (`run --target container`): the environment's image,
//! unpacked once per image digest into a bundle (umoci), run with runc over the shared,
//! read-only root filesystem; the working directory is mounted at `/work`.
//!
//! Building the image is the caller's (the image builder records it on the version); this
//! module starts from its OCI layout.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::ComputeError;

/// The programs a container run needs, found on PATH, with root to run them.
pub struct Tools {
    runc: PathBuf,
    umoci: PathBuf,
}

impl Tools {
    /// runc and umoci on PATH, and root: what running in a container needs here.
    pub fn find() -> Result<Self, ComputeError> {
        let runc = find_program("runc").ok_or(ComputeError::ContainerTool { program: "runc" })?;
        let umoci =
            find_program("umoci").ok_or(ComputeError::ContainerTool { program: "umoci" })?;
        if !is_root() {
            return Err(ComputeError::ContainerNeedsRoot);
        }
        Ok(Self { runc, umoci })
    }
}

/// An image unpacked for runc.
pub struct ContainerImage {
    runc: PathBuf,
    rootfs: PathBuf,
    template: Value,
}

/// A program on PATH.
pub fn find_program(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// The bundle of the image `layout:tag` (whose manifest digest is `digest`), unpacked into
/// `cache/bundles/DIGEST` the first time, atomically: a bundle that is there is whole.
pub fn unpack(
    tools: &Tools,
    cache: &Path,
    layout: &Path,
    tag: &str,
    digest: &str,
) -> Result<ContainerImage, ComputeError> {
    let digest = digest.trim_start_matches("sha256:");
    if digest.is_empty() || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ComputeError::Unpack {
            image: format!("{}:{tag}", layout.display()),
            reason: format!("`{digest}` is not an image digest"),
        });
    }
    let bundles = cache.join("bundles");
    let bundle = bundles.join(digest);
    let image = format!("{}:{tag}", layout.display());
    if !bundle.join("config.json").is_file() {
        std::fs::create_dir_all(&bundles).map_err(|e| ComputeError::io(&bundles, "create", e))?;
        let staging = bundles.join(format!(".tmp-{digest}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let status = Command::new(&tools.umoci)
            .args(["unpack", "--image"])
            .arg(&image)
            .arg(&staging)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| ComputeError::io(&tools.umoci, "run", e))?;
        if !status.success() {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(ComputeError::Unpack {
                image,
                reason: format!("umoci {status}"),
            });
        }
        if let Err(err) = std::fs::rename(&staging, &bundle) {
            let _ = std::fs::remove_dir_all(&staging);
            // Another run unpacked the same image first: theirs is as good.
            if !bundle.join("config.json").is_file() {
                return Err(ComputeError::io(
                    &bundle,
                    "move the unpacked bundle to",
                    err,
                ));
            }
        }
    }
    let config = bundle.join("config.json");
    let text = std::fs::read(&config).map_err(|e| ComputeError::io(&config, "read", e))?;
    let template: Value = serde_json::from_slice(&text).map_err(|e| ComputeError::Unpack {
        image,
        reason: format!("the bundle's config.json: {e}"),
    })?;
    Ok(ContainerImage {
        runc: tools.runc.clone(),
        rootfs: bundle.join("rootfs"),
        template,
    })
}

impl ContainerImage {
    /// A bundle for one run: its own config.json over the shared, read-only root filesystem.
    pub fn bundle(
        &self,
        id: &str,
        command: &[String],
        vars: &[(String, String)],
        cwd: &Path,
    ) -> Result<tempfile::TempDir, ComputeError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("terrarium-run-{id}-"))
            .tempdir()
            .map_err(|e| ComputeError::io(std::env::temp_dir(), "create a directory in", e))?;
        let mut config = self.template.clone();
        let mut env: Vec<(String, String)> = config["process"]["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| {
                        let (k, v) = v.as_str()?.split_once('=')?;
                        Some((k.to_string(), v.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (key, value) in vars {
            match env.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value.clone(),
                None => env.push((key.clone(), value.clone())),
            }
        }
        config["process"]["env"] = json!(env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>());
        config["process"]["args"] = json!(command);
        config["process"]["cwd"] = json!("/work");
        config["process"]["terminal"] = json!(false);
        config["root"] = json!({"path": self.rootfs, "readonly": true});
        config["hostname"] = json!(id);
        let mounts = config["mounts"].as_array_mut();
        let work = json!({"destination": "/work", "type": "bind", "source": cwd, "options": ["rbind", "rw"]});
        let tmp = json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]});
        match mounts {
            Some(mounts) => {
                mounts.push(work);
                mounts.push(tmp);
            }
            None => config["mounts"] = json!([work, tmp]),
        }
        // The host's network, as a local run has.
        if let Some(namespaces) = config["linux"]["namespaces"].as_array_mut() {
            namespaces.retain(|n| n["type"] != "network");
        }
        let path = dir.path().join("config.json");
        let text = serde_json::to_vec_pretty(&config).map_err(|e| ComputeError::Unpack {
            image: self.rootfs.display().to_string(),
            reason: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(|e| ComputeError::io(&path, "write", e))?;
        Ok(dir)
    }

    /// The runc command that runs the run `id` in `bundle`.
    pub fn command(&self, bundle: &tempfile::TempDir, id: &str) -> Command {
        let mut command = Command::new(&self.runc);
        command
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(format!("terrarium-{id}"));
        command
    }
}
