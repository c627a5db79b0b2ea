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
    match elf_interpreter(&bytes) {
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

/// The program interpreter (`PT_INTERP`) of a 64-bit little-endian ELF executable: `None` when it
/// has none, that is, when it is statically linked.
fn elf_interpreter(bytes: &[u8]) -> Result<Option<String>, String> {
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

#[cfg(test)]
mod tests {
    use super::elf_interpreter;

    #[test]
    fn a_dynamic_executable_names_its_interpreter() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let interpreter = elf_interpreter(&exe)
            .unwrap()
            .expect("test binaries are dynamic");
        assert!(interpreter.contains("ld-linux"), "{interpreter}");
    }

    #[test]
    fn other_files_are_refused() {
        assert!(elf_interpreter(b"#!/bin/sh\necho hi\n").is_err());
        assert!(elf_interpreter(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0").is_err());
        // Program headers said to lie far beyond the file, or at offsets that overflow.
        let mut exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        exe[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(elf_interpreter(&exe).is_err());
        exe[32..40].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(elf_interpreter(&exe).is_err());
        // Another machine (aarch64 is 183).
        let mut exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        exe[18..20].copy_from_slice(&183u16.to_le_bytes());
        assert_eq!(
            elf_interpreter(&exe),
            Err("not an x86-64 executable".into())
        );
    }
}
