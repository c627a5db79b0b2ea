//! A deployment's image: the environment's layers, then Terrarium's service front (a
//! statically linked `terrarium-serve`, so that it runs on any base or none), the worker shim,
//! the model and the entry script, each its own layer, and an entrypoint that starts the
//! service on port 5001.

use std::path::{Path, PathBuf};

use crate::layer::Source;
use crate::{BuildInput, StageError};

/// The deployment an image serves.
#[derive(Debug, Clone, Copy)]
pub struct Deployment<'a> {
    pub name: &'a str,
    /// The model directory, copied whole.
    pub model_path: &'a Path,
    /// The model's hash, as recorded (a label, and what its layer says it holds).
    pub model_hash: &'a str,
    /// The entry script (`init()`, `run()`).
    pub entry: Option<&'a Path>,
    pub workers: u32,
    /// The service front, checked with [`check_front`].
    pub front: &'a Path,
    /// The worker shim's files, relative to the directory put on the workers' path.
    pub shim: &'a [(&'a str, &'a str)],
}

/// The service front must be a statically linked x86-64 executable: it needs nothing from the
/// base image. `origin` says where its path came from, for the error.
pub fn check_front(path: &Path, origin: &str) -> Result<(), StageError> {
    let bytes = std::fs::read(path).map_err(|source| StageError::FrontUnreadable {
        path: path.to_path_buf(),
        origin: origin.to_string(),
        source,
    })?;
    match crate::elf::interpreter(&bytes) {
        Err(reason) => Err(StageError::NotAFront {
            path: path.to_path_buf(),
            origin: origin.to_string(),
            reason,
        }),
        Ok(Some(interpreter)) => Err(StageError::DynamicFront {
            path: path.to_path_buf(),
            origin: origin.to_string(),
            interpreter,
        }),
        Ok(None) => Ok(()),
    }
}

/// Add the deployment's layers (the service front, the worker shim, the model, the entry
/// script) and the entrypoint that starts it.
pub(crate) fn add_layers(input: &mut BuildInput, d: &Deployment<'_>) -> Result<(), StageError> {
    input.extra.push((
        format!("terrarium {} service front", env!("CARGO_PKG_VERSION")),
        vec![
            (
                "opt/terrarium/bin/terrarium-serve".into(),
                Source::Path(d.front.to_path_buf()),
            ),
            // The workers' sockets go in a temporary directory; a scratch image has none.
            ("tmp".into(), Source::Bytes(Vec::new(), 0o41777)),
        ],
    ));
    input.extra.push((
        "worker shim".into(),
        d.shim
            .iter()
            .map(|(path, text)| {
                (
                    format!("opt/terrarium/shim/{path}"),
                    Source::Bytes(text.as_bytes().to_vec(), 0o100644),
                )
            })
            .collect(),
    ));
    let model = d.model_path;
    let mut entries = Vec::new();
    let mut stack = vec![model.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let unreadable = |source| StageError::Model {
            path: dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&dir).map_err(unreadable)? {
            let path = entry.map_err(unreadable)?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(model).expect("walked from the model");
                entries.push((
                    format!("opt/terrarium/model/{}", relative.display()),
                    Source::Path(path.clone()),
                ));
            }
        }
    }
    input
        .extra
        .push((format!("model {}", d.model_hash), entries));
    let mut entrypoint = vec![
        "/opt/terrarium/bin/terrarium-serve".to_string(),
        "--python".into(),
        format!("{}/bin/python", input.target_prefix),
        "--model".into(),
        "/opt/terrarium/model".into(),
        "--shim".into(),
        "/opt/terrarium/shim".into(),
        "--workers".into(),
        d.workers.to_string(),
        // Inside the container's own network namespace: reachable only through the port
        // the runtime publishes.
        "--host".into(),
        "0.0.0.0".into(),
        "--port".into(),
        "5001".into(),
    ];
    if let Some(entry) = d.entry {
        let name = entry
            .file_name()
            .ok_or_else(|| StageError::EntryName {
                path: entry.to_path_buf(),
            })?
            .to_string_lossy()
            .to_string();
        input.extra.push((
            "entry script".into(),
            vec![(
                format!("opt/terrarium/app/{name}"),
                Source::Path(PathBuf::from(entry)),
            )],
        ));
        entrypoint.push("--entry".into());
        entrypoint.push(format!("/opt/terrarium/app/{name}"));
    }
    input.entrypoint = entrypoint;
    input.exposed_ports = vec![5001];
    input
        .labels
        .insert("org.terrarium.deployment.name".into(), d.name.to_string());
    input.labels.insert(
        "org.terrarium.deployment.model-hash".into(),
        d.model_hash.to_string(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The front must be a static x86-64 executable; the shell is a dynamic one.
    #[test]
    fn the_front_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("terrarium-serve");
        assert!(matches!(
            check_front(&missing, "--front"),
            Err(StageError::FrontUnreadable { .. })
        ));
        std::fs::write(&missing, "#!/bin/sh\n").unwrap();
        assert!(matches!(
            check_front(&missing, "--front"),
            Err(StageError::NotAFront { .. })
        ));
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let err = check_front(&sh, "TERRARIUM_FRONT").unwrap_err();
        assert!(matches!(err, StageError::DynamicFront { .. }), "{err}");
        assert!(err.is_user_error());
        assert!(err
            .to_string()
            .contains("(TERRARIUM_FRONT) is dynamically linked"));
    }
}
