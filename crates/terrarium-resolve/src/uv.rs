//! Finding uv: `$TERRARIUM_UV`, else `uv` on PATH, else a copy bootstrapped from PyPI at the
//! pinned version into Terrarium's tool cache. The handle itself, and how uv is always run,
//! is `terrarium_lock::uv::Uv`, which installing a lock uses too.

use std::path::{Path, PathBuf};
use std::process::Command;

pub use terrarium_lock::uv::Uv;

use crate::ResolveError;

/// The uv version Terrarium bootstraps when none is on PATH.
pub const UV_VERSION: &str = "0.9.30";

/// Environment variable naming a uv binary to use.
pub const TERRARIUM_UV: &str = "TERRARIUM_UV";

/// The uv at `path`, if it runs.
fn probe(path: PathBuf) -> Option<Uv> {
    let output = Command::new(&path).arg("--version").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split_whitespace().nth(1)?.to_string();
    Some(Uv { path, version })
}

/// Find uv, bootstrapping it into `tools_dir` if needed.
pub fn find(tools_dir: &Path) -> Result<Uv, ResolveError> {
    if let Some(path) = std::env::var_os(TERRARIUM_UV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return probe(path.clone()).ok_or_else(|| {
            ResolveError::Uv(format!(
                "{TERRARIUM_UV}={} is not a working uv",
                path.display()
            ))
        });
    }
    if let Some(uv) = which("uv").and_then(probe) {
        return Ok(uv);
    }
    let cached = tools_dir.join(format!("uv-{UV_VERSION}")).join("uv");
    if let Some(uv) = probe(cached.clone()) {
        return Ok(uv);
    }
    bootstrap(tools_dir)?;
    probe(cached).ok_or_else(|| ResolveError::Uv("the bootstrapped uv does not run".into()))
}

/// Search PATH for an executable.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Download the pinned uv wheel from PyPI with the machine's pip and unpack its binary. The
/// wheel is PyPI's own artifact; pip checks it against the index's hash.
fn bootstrap(tools_dir: &Path) -> Result<(), ResolveError> {
    let python = which("python3").ok_or_else(|| {
        ResolveError::Uv(format!(
            "uv is not on PATH and there is no python3 to fetch it with; install uv {UV_VERSION} or set {TERRARIUM_UV}"
        ))
    })?;
    std::fs::create_dir_all(tools_dir)
        .map_err(|e| ResolveError::io(tools_dir, "cannot create", e))?;
    let work = tempfile::tempdir_in(tools_dir)
        .map_err(|e| ResolveError::io(tools_dir, "cannot write in", e))?;
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--dest",
        ])
        .arg(work.path())
        .arg(format!("uv=={UV_VERSION}"))
        .status()
        .map_err(|source| ResolveError::Spawn {
            program: python.clone(),
            source,
        })?;
    if !status.success() {
        return Err(ResolveError::Uv(format!(
            "could not download uv {UV_VERSION} from PyPI with pip"
        )));
    }
    let target = work.path().join("bin");
    let script = format!(
        "import glob, os, sys, zipfile\n\
         wheel = glob.glob(os.path.join(sys.argv[1], 'uv-*.whl'))[0]\n\
         with zipfile.ZipFile(wheel) as zf:\n\
         \x20   data = zf.read('uv-{UV_VERSION}.data/scripts/uv')\n\
         os.makedirs(sys.argv[2], exist_ok=True)\n\
         path = os.path.join(sys.argv[2], 'uv')\n\
         open(path, 'wb').write(data)\n\
         os.chmod(path, 0o755)\n"
    );
    let status = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(work.path())
        .arg(&target)
        .status()
        .map_err(|source| ResolveError::Spawn {
            program: python.clone(),
            source,
        })?;
    if !status.success() {
        return Err(ResolveError::Uv("could not unpack the uv wheel".into()));
    }
    let final_dir = tools_dir.join(format!("uv-{UV_VERSION}"));
    match std::fs::rename(&target, &final_dir) {
        Ok(()) => Ok(()),
        // Another process finished first: theirs is as good as ours.
        Err(_) if final_dir.join("uv").is_file() => Ok(()),
        Err(e) => Err(ResolveError::io(&final_dir, "cannot install uv into", e)),
    }
}
