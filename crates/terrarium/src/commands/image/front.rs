//! The service front that goes into a deployment's image: the `terrarium-serve` binary, linked
//! statically so that it runs on any base image, or on none.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::printer::user_error;

const HINT: &str = "build it with scripts/build-front.sh (cargo build --release -p terrarium-serve with +crt-static) and pass --front PATH or set TERRARIUM_FRONT, or install it next to terrarium";

/// `--front`, else `TERRARIUM_FRONT`, else `terrarium-serve` next to this executable; it must be
/// a statically linked ELF executable.
pub(super) fn find(explicit: Option<&Path>) -> Result<PathBuf> {
    let (path, from) = match (explicit, std::env::var_os("TERRARIUM_FRONT")) {
        (Some(path), _) => (path.to_path_buf(), "--front"),
        (None, Some(path)) if !path.is_empty() => (PathBuf::from(path), "TERRARIUM_FRONT"),
        _ => {
            let exe = std::env::current_exe().context("cannot find the terrarium binary")?;
            (exe.with_file_name("terrarium-serve"), "next to terrarium")
        }
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) => {
            return Err(user_error(
                format!(
                    "the deployment image needs the service front, and {} ({from}) cannot be read: {err}",
                    path.display()
                ),
                Some(HINT),
            ))
        }
    };
    match super::elf::interpreter(&bytes) {
        Err(why) => Err(user_error(
            format!("{} ({from}) is not the service front: {why}", path.display()),
            Some(HINT),
        )),
        Ok(Some(interpreter)) => Err(user_error(
            format!(
                "{} ({from}) is dynamically linked (it needs {interpreter}); the image's front must be statically linked",
                path.display()
            ),
            Some(HINT),
        )),
        Ok(None) => Ok(path),
    }
}
