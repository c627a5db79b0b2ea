//! What an ELF file needs to run: its program interpreter (the C library's loader), for the
//! service front (which must need none) and for scratch images (which have none to give).

use std::path::{Path, PathBuf};

/// The program interpreter (`PT_INTERP`) of a 64-bit little-endian ELF executable: `None` when it
/// has none, that is, when it is statically linked.
pub(crate) fn interpreter(bytes: &[u8]) -> Result<Option<String>, String> {
    let field = |at: usize, len: usize| bytes.get(at..at.checked_add(len)?);
    let u16_at = |at: usize| field(at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at: usize| field(at, 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |at: usize| {
        field(at, 8).and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().unwrap())).ok())
    };
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    // e_type: 2 executable, 3 shared object (a static PIE is one).
    if !matches!(u16_at(16), Some(2 | 3)) {
        return Err("not an ELF executable".into());
    }
    // Images are built for linux-64.
    if u16_at(18) != Some(62) {
        return Err("not an x86-64 executable".into());
    }
    let truncated = || "a truncated ELF file".to_string();
    let phoff = u64_at(32).ok_or_else(truncated)?;
    let phentsize = u16_at(54).ok_or_else(truncated)? as usize;
    let phnum = u16_at(56).ok_or_else(truncated)? as usize;
    for i in 0..phnum {
        let header = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or_else(truncated)?;
        const PT_INTERP: u32 = 3;
        if u32_at(header).ok_or_else(truncated)? == PT_INTERP {
            let offset = u64_at(header.saturating_add(8)).ok_or_else(truncated)?;
            let size = u64_at(header.saturating_add(32)).ok_or_else(truncated)?;
            let name = field(offset, size).ok_or_else(truncated)?;
            let name = name.strip_suffix(b"\0").unwrap_or(name);
            return Ok(Some(String::from_utf8_lossy(name).into_owned()));
        }
    }
    Ok(None)
}

/// The first file under `staging` (the environment as it will sit at `prefix` in the image)
/// whose program interpreter the image would not have: it is outside the prefix, and a scratch
/// image holds nothing else. `(file, interpreter)`.
pub(crate) fn missing_interpreter(
    staging: &Path,
    prefix: &str,
) -> std::io::Result<Option<(PathBuf, String)>> {
    use std::io::Read as _;
    let mut stack = vec![staging.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let mut magic = [0u8; 4];
            let mut file = std::fs::File::open(&path)?;
            if file.read(&mut magic)? < 4 || &magic != b"\x7fELF" {
                continue;
            }
            let bytes = std::fs::read(&path)?;
            // Not an x86-64 executable or library, or malformed: not ours to judge.
            let Ok(Some(wanted)) = interpreter(&bytes) else {
                continue;
            };
            let inside = wanted
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| staging.join(rest).exists());
            if !inside {
                let relative = path.strip_prefix(staging).unwrap_or(&path).to_path_buf();
                return Ok(Some((relative, wanted)));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dynamically linked x86-64 executable of this machine's: the shell. (The project's own
    /// binaries are static-pie, `.cargo/config.toml`.)
    fn dynamic_executable() -> Vec<u8> {
        std::fs::read(std::fs::canonicalize("/bin/sh").unwrap()).unwrap()
    }

    #[test]
    fn a_dynamic_executable_names_its_interpreter() {
        let exe = dynamic_executable();
        let interpreter = interpreter(&exe)
            .unwrap()
            .expect("/bin/sh is dynamically linked");
        assert!(interpreter.contains("ld-linux"), "{interpreter}");
    }

    #[test]
    fn other_files_are_refused() {
        assert!(interpreter(b"#!/bin/sh\necho hi\n").is_err());
        assert!(interpreter(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0").is_err());
        // Program headers said to lie far beyond the file, or at offsets that overflow.
        let mut exe = dynamic_executable();
        exe[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(interpreter(&exe).is_err());
        exe[32..40].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(interpreter(&exe).is_err());
        // Another machine (aarch64 is 183).
        let mut exe = dynamic_executable();
        exe[18..20].copy_from_slice(&183u16.to_le_bytes());
        assert_eq!(interpreter(&exe), Err("not an x86-64 executable".into()));
    }

    /// A dynamically linked program in a staged environment names its missing loader; one
    /// whose loader is inside the prefix, or a plain file, does not.
    #[test]
    fn staged_programs_need_their_loader() {
        let staging = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(staging.path().join("bin")).unwrap();
        std::fs::write(staging.path().join("bin/script"), "#!/bin/sh\n").unwrap();
        assert_eq!(
            missing_interpreter(staging.path(), "/opt/terrarium/envs/e").unwrap(),
            None
        );
        let exe = dynamic_executable();
        let loader = interpreter(&exe).unwrap().unwrap();
        std::fs::write(staging.path().join("bin/tool"), &exe).unwrap();
        assert_eq!(
            missing_interpreter(staging.path(), "/opt/terrarium/envs/e").unwrap(),
            Some((PathBuf::from("bin/tool"), loader.clone()))
        );
        // The same loader, shipped inside the prefix: nothing missing.
        let prefix = Path::new(&loader).parent().unwrap().display().to_string();
        let inner = staging.path().join(Path::new(&loader).file_name().unwrap());
        std::fs::write(&inner, b"loader").unwrap();
        assert_eq!(missing_interpreter(staging.path(), &prefix).unwrap(), None);
    }
}
