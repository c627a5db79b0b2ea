//! `terrarium env export`

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;
use terrarium_spec::Format;

use crate::commands::Context;
use crate::printer::{self, user_error};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// NAME, NAME:VERSION or NAME@LABEL.
    reference: String,
    /// native, aml-v2, aml-v1, conda, requirements, dockerfile; or a lock format: pixi-lock, pylock.
    #[arg(long, value_parser = parse_export_format)]
    format: ExportFormat,
    /// For `pylock`: the platform whose PyPI packages to write [default: this machine's].
    #[arg(long)]
    platform: Option<String>,
    /// Where to write: a file, or a directory for aml-v1 and aml-v2. Single-file formats go to
    /// stdout when omitted.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    output: Option<PathBuf>,
    /// Replace an existing output.
    #[arg(long)]
    force: bool,
}

/// A definition format, or a format of the version's lock.
#[derive(Debug, Clone, Copy)]
pub enum ExportFormat {
    Definition(Format),
    PixiLock,
    Pylock,
}

fn parse_export_format(text: &str) -> Result<ExportFormat, String> {
    match text {
        "pixi-lock" => Ok(ExportFormat::PixiLock),
        "pylock" => Ok(ExportFormat::Pylock),
        other => super::parse_format(other)
            .map(ExportFormat::Definition)
            .map_err(|e| format!("{e}, pixi-lock, pylock")),
    }
}

pub fn export(context: &Context, args: ExportArgs) -> Result<ExitCode> {
    let format = match args.format {
        ExportFormat::Definition(format) => format,
        lock_format => return export_lock(context, &args, lock_format),
    };
    let args = ExportArgsResolved {
        reference: args.reference,
        format,
        output: args.output,
        force: args.force,
    };
    export_definition(context, args)
}

struct ExportArgsResolved {
    reference: String,
    format: Format,
    output: Option<PathBuf>,
    force: bool,
}

fn export_lock(context: &Context, args: &ExportArgs, format: ExportFormat) -> Result<ExitCode> {
    let reference = super::parse_reference(&args.reference)?;
    let store = context.store()?;
    let record = store.resolve(&reference)?;
    let Some(hash) = &record.lock_hash else {
        return Err(user_error(
            format!("{}:{} has no lock yet", record.name, record.version),
            Some("lock it with `terrarium env lock`"),
        ));
    };
    let lock = terrarium_resolve::Lock::from_json(&store.get_lock(hash)?)?;
    let text = match format {
        ExportFormat::PixiLock => terrarium_resolve::formats::pixi_lock(&lock, &record.definition)?,
        ExportFormat::Pylock => {
            let platform = args
                .platform
                .clone()
                .unwrap_or_else(terrarium_resolve::current_platform);
            terrarium_resolve::formats::pylock(&lock, &platform)?
        }
        ExportFormat::Definition(_) => unreachable!(),
    };
    match &args.output {
        None => {
            std::io::stdout().lock().write_all(text.as_bytes())?;
        }
        Some(path) => {
            write_file_atomic(path, &text, args.force)?;
            printer::status(&format!(
                "wrote the lock of {}:{} to {}",
                record.name,
                record.version,
                path.display()
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn export_definition(context: &Context, args: ExportArgsResolved) -> Result<ExitCode> {
    if !args.format.can_export() {
        return Err(user_error(
            format!("`{}` is an import-only format", args.format),
            None,
        ));
    }
    let reference = super::parse_reference(&args.reference)?;
    let store = context.store()?;
    let record = store.resolve(&reference)?;
    let exported = terrarium_spec::export(&record.definition, args.format)?;
    if !exported.dropped.is_empty() {
        eprintln!(
            "warning: the {} format cannot carry these fields of {}:{}, which were not written: {}",
            args.format,
            record.name,
            record.version,
            exported.dropped.join(", ")
        );
    }
    for note in &exported.notes {
        eprintln!("note: {note}");
    }
    match (&args.output, args.format.exports_directory()) {
        (None, true) => {
            return Err(user_error(
                format!("the {} format writes a directory", args.format),
                Some("pass -o DIR"),
            ))
        }
        (None, false) => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(exported.files[0].1.as_bytes())?;
        }
        (Some(path), false) => write_file_atomic(path, &exported.files[0].1, args.force)?,
        (Some(path), true) => write_dir_atomic(path, &exported.files, args.force)?,
    }
    if let Some(path) = &args.output {
        printer::status(&format!(
            "wrote {}:{} as {} to {}",
            record.name,
            record.version,
            args.format,
            path.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn refuse_existing(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        return Err(user_error(
            format!("{} already exists", path.display()),
            Some("pass --force to replace it"),
        ));
    }
    Ok(())
}

/// Write to a temporary file beside `path`, then rename: readers never see half a file.
fn write_file_atomic(path: &Path, text: &str, force: bool) -> Result<()> {
    refuse_existing(path, force)?;
    let dir = parent(path);
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Build the directory beside `path`, then rename it into place.
fn write_dir_atomic(path: &Path, files: &[(String, String)], force: bool) -> Result<()> {
    refuse_existing(path, force)?;
    let dir = parent(path);
    let tmp = tempfile::Builder::new()
        .prefix(".terrarium-export-")
        .tempdir_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    for (name, text) in files {
        // Names come from the definition (a build context, a Dockerfile path): each must stay
        // inside the folder being written, whatever a record says.
        if !is_plain_relative(Path::new(name)) {
            return Err(user_error(
                format!(
                    "refusing to write `{}` outside {}",
                    name.escape_debug(),
                    path.display()
                ),
                Some("the definition names a file outside its folder; fix its build path"),
            ));
        }
        let file = tmp.path().join(name);
        if let Some(p) = file.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    if path.exists() {
        let old = tempfile::Builder::new()
            .prefix(".terrarium-old-")
            .tempdir_in(&dir)?;
        let parked = old.path().join("old");
        std::fs::rename(path, &parked)?;
        if let Err(err) = std::fs::rename(tmp.path(), path) {
            std::fs::rename(&parked, path)?;
            return Err(err.into());
        }
        let _ = tmp.keep();
    } else {
        std::fs::rename(tmp.path(), path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let _ = tmp.keep();
    }
    Ok(())
}

/// Only normal components (no root, no `..`, no `.` tricks), so a join stays inside its base.
fn is_plain_relative(path: &Path) -> bool {
    path.components().next().is_some()
        && path.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_refuse_names_outside_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        for name in ["../escaped", "/tmp/absolute", "a/../../escaped", ""] {
            let files = vec![
                ("environment.yml".to_string(), "name: x\n".to_string()),
                (name.to_string(), "text".to_string()),
            ];
            assert!(write_dir_atomic(&out, &files, false).is_err(), "{name:?}");
            assert!(!out.exists(), "nothing is left behind for {name:?}");
            assert!(!dir.path().join("escaped").exists());
        }
        let files = vec![("ctx/Dockerfile".to_string(), "FROM x\n".to_string())];
        write_dir_atomic(&out, &files, false).unwrap();
        assert!(out.join("ctx/Dockerfile").is_file());
    }
}
