//! The worker shim: small, dependency-free Python shipped inside the binary.
//!
//! For system-managed environments it is written once into Terrarium's cache and put on the
//! workers' `PYTHONPATH`; nothing is written into the environment itself, whose prefix stays
//! byte-identical to its lock. User-managed environments must carry it themselves, as Azure ML
//! requires `azureml-defaults` in deployable user-managed environments: [`wheel`] builds an
//! installable wheel for that.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The package's files, relative to the directory that goes on `sys.path`.
pub const FILES: &[(&str, &str)] = &[
    (
        "terrarium_worker/__init__.py",
        include_str!("../python/terrarium_worker/__init__.py"),
    ),
    (
        "terrarium_worker/__main__.py",
        include_str!("../python/terrarium_worker/__main__.py"),
    ),
    (
        "terrarium_worker/_compat/azureml_inference_server_http/__init__.py",
        include_str!(
            "../python/terrarium_worker/_compat/azureml_inference_server_http/__init__.py"
        ),
    ),
    (
        "terrarium_worker/_compat/azureml_inference_server_http/api/__init__.py",
        include_str!(
            "../python/terrarium_worker/_compat/azureml_inference_server_http/api/__init__.py"
        ),
    ),
    (
        "terrarium_worker/_compat/azureml_inference_server_http/api/aml_request.py",
        include_str!(
            "../python/terrarium_worker/_compat/azureml_inference_server_http/api/aml_request.py"
        ),
    ),
    (
        "terrarium_worker/_compat/azureml_inference_server_http/api/aml_response.py",
        include_str!(
            "../python/terrarium_worker/_compat/azureml_inference_server_http/api/aml_response.py"
        ),
    ),
    (
        "terrarium_worker/_compat/azureml/contrib/services/aml_request.py",
        include_str!("../python/terrarium_worker/_compat/azureml/contrib/services/aml_request.py"),
    ),
    (
        "terrarium_worker/_compat/azureml/contrib/services/aml_response.py",
        include_str!("../python/terrarium_worker/_compat/azureml/contrib/services/aml_response.py"),
    ),
];

/// The shim's version, as `terrarium_worker.__version__` says it.
pub const VERSION: &str = "2";

/// A content hash of the shim, so that each build of it has its own directory.
pub fn digest() -> String {
    let mut hasher = Sha256::new();
    for (path, text) in FILES {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..8])
}

/// Write the shim under `cache` (once per shim version) and return the directory to put on
/// `PYTHONPATH`. Written to a temporary directory and renamed, so a crash leaves nothing that
/// looks complete.
pub fn install(cache: &Path) -> std::io::Result<PathBuf> {
    let target = cache.join(format!("worker-shim-{}", digest()));
    if target.join(FILES[0].0).is_file() {
        return Ok(target);
    }
    std::fs::create_dir_all(cache)?;
    let staging = tempfile::Builder::new()
        .prefix(".worker-shim-")
        .tempdir_in(cache)?;
    for (path, text) in FILES {
        let file = staging.path().join(path);
        std::fs::create_dir_all(file.parent().expect("files are in a package"))?;
        std::fs::write(file, text)?;
    }
    match std::fs::rename(staging.path(), &target) {
        Ok(()) => {
            // Renamed away: nothing for the guard to remove.
            let _ = staging.keep();
            Ok(target)
        }
        // Another process installed it first.
        Err(_) if target.join(FILES[0].0).is_file() => Ok(target),
        Err(err) => Err(err),
    }
}

/// Whether the interpreter `python` can import the shim (a user-managed environment must carry
/// it: `python -m terrarium_worker --check`). An error when `python` cannot be run at all.
pub fn is_installed(python: &Path) -> std::io::Result<bool> {
    let output = std::process::Command::new(python)
        .args(["-m", "terrarium_worker", "--socket", "-", "--check"])
        .stdin(std::process::Stdio::null())
        .output()?;
    Ok(output.status.success())
}

/// Build `terrarium_worker-<VERSION>-py3-none-any.whl` in `dir`, for `pip install` into a
/// user-managed environment. Returns its path.
pub fn wheel(dir: &Path) -> std::io::Result<PathBuf> {
    use base64_urlsafe as b64;
    let name = format!("terrarium_worker-{VERSION}-py3-none-any.whl");
    let dist_info = format!("terrarium_worker-{VERSION}.dist-info");
    let metadata = format!(
        "Metadata-Version: 2.1\nName: terrarium-worker\nVersion: {VERSION}\nSummary: Terrarium's scoring worker shim (standard library only)\nRequires-Python: >=3.8\n"
    );
    let wheel_file =
        "Wheel-Version: 1.0\nGenerator: terrarium\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
    let mut entries: Vec<(String, Vec<u8>)> = FILES
        .iter()
        .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
        .collect();
    entries.push((format!("{dist_info}/METADATA"), metadata.into_bytes()));
    entries.push((format!("{dist_info}/WHEEL"), wheel_file.as_bytes().to_vec()));
    let mut record = String::new();
    for (path, data) in &entries {
        let hash = b64::encode(&Sha256::digest(data));
        record.push_str(&format!("{path},sha256={hash},{}\n", data.len()));
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    entries.push((format!("{dist_info}/RECORD"), record.into_bytes()));

    std::fs::create_dir_all(dir)?;
    let path = dir.join(&name);
    let staging = tempfile::NamedTempFile::new_in(dir)?;
    {
        let mut zip = zip::ZipWriter::new(staging.as_file());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default());
        for (entry, data) in &entries {
            zip.start_file(entry.as_str(), options)
                .map_err(std::io::Error::other)?;
            zip.write_all(data)?;
        }
        zip.finish().map_err(std::io::Error::other)?;
    }
    staging.persist(&path).map_err(|err| err.error)?;
    Ok(path)
}

/// The URL-safe, unpadded base64 that wheel RECORD files use (PEP 376/427).
mod base64_urlsafe {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[cfg(test)]
    #[test]
    fn matches_python() {
        // base64.urlsafe_b64encode(b"\xfb\xff\x01ab").rstrip(b"=")
        assert_eq!(encode(b"\xfb\xff\x01ab"), "-_8BYWI");
        assert_eq!(encode(b""), "");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn install_is_idempotent_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::install(dir.path()).unwrap();
        let b = super::install(dir.path()).unwrap();
        assert_eq!(a, b);
        for (path, text) in super::FILES {
            assert_eq!(&std::fs::read_to_string(a.join(path)).unwrap(), text);
        }
    }

    #[test]
    fn version_matches_the_python_package() {
        assert!(super::FILES[0]
            .1
            .contains(&format!("__version__ = \"{}\"", super::VERSION)));
    }
}
