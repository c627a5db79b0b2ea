//! `terrarium run --target container`: the environment's image, unpacked once into a bundle
//! (umoci), run with runc; the working directory is mounted at `/work`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use super::Context;
use crate::environments;
use crate::printer::user_error;

/// An image unpacked for runc.
pub struct ContainerImage {
    runc: PathBuf,
    rootfs: PathBuf,
    template: Value,
}

/// A program on PATH.
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
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

/// Build (or find) the version's image and its unpacked bundle.
pub fn prepare(
    context: &Context,
    record: &terrarium_store::VersionRecord,
    base: Option<&str>,
) -> Result<ContainerImage> {
    let runc = find_program("runc").ok_or_else(|| {
        user_error(
            "--target container needs runc on PATH",
            Some("install it (Debian: apt-get install runc)"),
        )
    })?;
    let umoci = find_program("umoci").ok_or_else(|| {
        user_error(
            "--target container needs umoci on PATH to unpack the image",
            Some("install it (Debian: apt-get install umoci)"),
        )
    })?;
    if !is_root() {
        return Err(user_error(
            "--target container runs runc, which needs root here",
            Some("run as root, or use --target local"),
        ));
    }
    let cache = environments::cache_dir()?;
    let layout = cache
        .join("images")
        .join(record.name.replace('/', "--"))
        .join(&record.version);
    // The image, as `image build` makes it: built once, recorded, reused.
    let store = context.store()?;
    let args = crate::commands::image::BuildArgs::for_container(
        format!("{}:{}", record.name, record.version),
        layout.clone(),
        base.map(str::to_string),
    );
    let built =
        crate::commands::image::build_image(store.as_ref(), record, &args).with_context(|| {
            format!(
                "cannot build the image of {}:{} to run it in a container",
                record.name, record.version
            )
        })?;
    let digest = built.digest.trim_start_matches("sha256:").to_string();
    let tag = format!("{}-{}", record.name.replace('/', "-"), record.version);
    let bundles = cache.join("bundles");
    let bundle = bundles.join(&digest);
    if !bundle.join("config.json").is_file() {
        std::fs::create_dir_all(&bundles)?;
        let staging = bundles.join(format!(".tmp-{digest}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let status = Command::new(&umoci)
            .args(["unpack", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&staging)
            .stdout(std::process::Stdio::null())
            .status()
            .context("cannot run umoci")?;
        if !status.success() {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(user_error(
                format!(
                    "umoci could not unpack {}:{tag} ({status})",
                    layout.display()
                ),
                None,
            ));
        }
        if let Err(err) = std::fs::rename(&staging, &bundle) {
            let _ = std::fs::remove_dir_all(&staging);
            if !bundle.join("config.json").is_file() {
                return Err(err).context("cannot move the unpacked bundle into place");
            }
        }
    }
    let template: Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)
        .context("the unpacked bundle's config.json")?;
    Ok(ContainerImage {
        runc,
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
    ) -> Result<tempfile::TempDir> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("terrarium-run-{id}-"))
            .tempdir()?;
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
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec_pretty(&config)?,
        )?;
        Ok(dir)
    }

    pub fn command(&self, bundle: &tempfile::TempDir, id: &str) -> Command {
        let mut command = Command::new(&self.runc);
        command
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(format!("terrarium-{id}"));
        command
    }
}
