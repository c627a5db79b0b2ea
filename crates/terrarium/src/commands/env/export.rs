//! `terrarium env export`

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;
use serde::Serialize;
use terrarium_server::wire::ExportResponse;
use terrarium_spec::{formats, Format};
use terrarium_store::VersionRecord;

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
    /// Where to write (missing folders are made): a file; for aml-v2 a folder, or its YAML file
    /// (`DIR/environment.yml`, the conda file and build context beside it); for aml-v1 a
    /// folder. Single-file formats go to stdout when omitted.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    output: Option<PathBuf>,
    /// Replace existing files (or an earlier export's folder).
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

/// A definition format that can be exported, for `--export` of `env create`, `env show` and
/// `env list`.
pub fn parse_definition_format(text: &str) -> Result<Format, String> {
    let format = super::parse_format(text)?;
    if !format.can_export() {
        return Err(format!("`{format}` is an import-only format"));
    }
    Ok(format)
}

/// A version's record as `--json` prints it, with the version exported in one format when
/// asked (`env create --export`, `env show --export`, and each record of `env list --export`),
/// so that a program gets the records and the files `env export` would write in one run. The
/// export has the team server's shape
/// (`GET /api/v1/environments/{name}/versions/{version}/export`): the definition's files,
/// not a build context's.
#[derive(Serialize)]
pub struct RecordJson<'a> {
    #[serde(flatten)]
    record: &'a VersionRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    export: Option<ExportResponse>,
}

impl<'a> RecordJson<'a> {
    pub fn new(record: &'a VersionRecord, format: Option<Format>) -> Result<Self> {
        let export = match format {
            None => None,
            Some(format) => Some(ExportResponse::of(&record.definition, format)?),
        };
        Ok(Self { record, export })
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
    let lock = terrarium_lock::Lock::from_json(&store.get_lock(hash)?)?;
    let text = match format {
        ExportFormat::PixiLock => terrarium_lock::formats::pixi_lock(&lock, &record.definition)?,
        ExportFormat::Pylock => {
            let platform = args
                .platform
                .clone()
                .unwrap_or_else(terrarium_lock::current_platform);
            terrarium_lock::formats::pylock(&lock, &platform)?
        }
        ExportFormat::Definition(_) => unreachable!(),
    };
    match &args.output {
        None => {
            printer::out(&text)?;
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
    let mut target = Target::new(args.format, args.output.as_deref())?;
    let mut exported = terrarium_spec::export(&record.definition, args.format)?;
    // The build context's files are not in the definition, only their digest: the workspace
    // keeps them, and they go where the format reads them, so the export reads back whole.
    let docker = &record.definition.docker;
    let mut context_files = None;
    // The workspace's note, not the format's: said after the export's notes.
    let mut context_note = None;
    let folder = formats::context_folder(&record.definition, args.format).filter(|folder| {
        // A native file in its own context folder would change the context it names.
        args.format != Format::Native
            || !Path::new(folder)
                .components()
                .all(|c| c == std::path::Component::CurDir)
    });
    if let (Some(folder), Some(digest), false) = (
        folder,
        &docker.build_context_digest,
        matches!(target, Target::Stdout),
    ) {
        match store.get_context(digest) {
            Ok(archive) => {
                exported.dropped.retain(|f| f != "docker.build_context");
                // A single file (native, a Dockerfile) gets its context folder beside it.
                if let Target::File(path) = &target {
                    target = Target::beside(path);
                }
                let dockerfile = match (&target, args.format) {
                    // Read back, the Dockerfile is the file of the name it is written as.
                    (Target::Beside { main, .. }, Format::Dockerfile) => main.clone(),
                    _ => docker
                        .dockerfile_path
                        .clone()
                        .unwrap_or_else(|| "Dockerfile".to_string()),
                };
                context_files = Some(ContextFiles {
                    folder: folder.to_string(),
                    dockerfile,
                    digest: digest.clone(),
                    archive,
                });
            }
            Err(terrarium_store::StoreError::NotFound(_)) => {
                context_note = Some(format!(
                    "the files of the build context `{folder}` ({digest}) are not in this \
                     workspace, so they were not written; register the definition again from \
                     its folder to keep them"
                ))
            }
            Err(err) => return Err(err.into()),
        }
    }
    if !exported.dropped.is_empty() {
        printer::warn(&format!(
            "the {} format cannot carry these fields of {}:{}, which were not written: {}",
            args.format,
            record.name,
            record.version,
            exported.dropped.join(", ")
        ));
    }
    for note in exported
        .notes
        .iter()
        .map(ToString::to_string)
        .chain(context_note)
    {
        eprintln!("note: {note}");
    }
    let written = match &target {
        Target::Stdout => {
            printer::out(&exported.files[0].1)?;
            return Ok(ExitCode::SUCCESS);
        }
        Target::File(path) => {
            write_file_atomic(path, &exported.files[0].1, args.force)?;
            path.display().to_string()
        }
        Target::Dir(path) => {
            let names =
                write_dir_atomic(path, &exported.files, context_files.as_ref(), args.force)?;
            format!("{} ({})", path.display(), names.join(", "))
        }
        Target::Beside { dir, main } => {
            if let Some((other, _)) = exported.files[1..]
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(main))
            {
                return Err(user_error(
                    format!(
                        "the {} export writes `{other}` beside its main file, which cannot have that name too",
                        args.format
                    ),
                    Some("name the main file otherwise, e.g. -o DIR/environment.yml"),
                ));
            }
            let mut files = exported.files.clone();
            files[0].0 = main.clone();
            let names = write_beside(dir, &files, context_files.as_ref(), args.force)?;
            let path = dir.join(main);
            match names.len() {
                1 => path.display().to_string(),
                _ => format!(
                    "{}, with {} beside it",
                    path.display(),
                    names[1..].join(", ")
                ),
            }
        }
    };
    printer::status(&format!(
        "wrote {}:{} as {} to {written}",
        record.name, record.version, args.format
    ));
    Ok(ExitCode::SUCCESS)
}

/// Where an export goes.
#[derive(Debug, PartialEq)]
enum Target {
    Stdout,
    /// One file.
    File(PathBuf),
    /// A folder made for the export, whole.
    Dir(PathBuf),
    /// Files in `dir`, beside the main file `main` (`-o DIR/environment.yml`).
    Beside {
        dir: PathBuf,
        main: String,
    },
}

impl Target {
    fn new(format: Format, output: Option<&Path>) -> Result<Self> {
        let Some(path) = output else {
            if format.exports_directory() {
                return Err(user_error(
                    format!("the {format} format writes a directory"),
                    Some(match format {
                        Format::AmlV2 => "pass -o DIR, or -o DIR/environment.yml",
                        _ => "pass -o DIR",
                    }),
                ));
            }
            return Ok(Self::Stdout);
        };
        let text = path.to_string_lossy();
        let names_folder = text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR);
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|_| !names_folder);
        let lower = file_name.as_deref().unwrap_or_default().to_lowercase();
        let yaml = lower.ends_with(".yml") || lower.ends_with(".yaml");
        if !format.exports_directory() {
            if path.is_dir() || names_folder {
                let hint = format!(
                    "the {format} format writes one file: name it, e.g. -o {}",
                    path.join(default_file_name(format)).display()
                );
                return Err(user_error(
                    format!("{} is a folder", path.display()),
                    Some(&hint),
                ));
            }
            return Ok(Self::File(path.to_path_buf()));
        }
        match format {
            Format::AmlV2 if yaml => Ok(Self::beside(path)),
            Format::AmlV1 if lower == terrarium_spec::formats::aml_v1::DEFINITION_FILE => {
                Ok(Self::beside(path))
            }
            Format::AmlV1 if yaml || lower.ends_with(".json") => Err(user_error(
                format!(
                    "the aml-v1 format is a folder holding {}, {} and {}: it cannot be named {}",
                    terrarium_spec::formats::aml_v1::DEFINITION_FILE,
                    terrarium_spec::formats::aml_v1::CONDA_FILE,
                    terrarium_spec::formats::aml_v1::DOCKERFILE_FILE,
                    file_name.unwrap_or_default()
                ),
                Some("pass -o DIR"),
            )),
            _ => Ok(Self::Dir(path.to_path_buf())),
        }
    }

    /// The files of an export beside `path`, which names the main one.
    fn beside(path: &Path) -> Self {
        Self::Beside {
            dir: parent(path),
            main: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

fn default_file_name(format: Format) -> &'static str {
    match format {
        Format::Requirements => "requirements.txt",
        Format::Dockerfile => "Dockerfile",
        _ => "environment.yml",
    }
}

/// A build context kept in the workspace, to write into the export's `folder`.
struct ContextFiles {
    folder: String,
    /// The Dockerfile's path in the folder (not part of the context).
    dockerfile: String,
    digest: String,
    archive: Vec<u8>,
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
/// Missing parent folders are made.
fn write_file_atomic(path: &Path, text: &str, force: bool) -> Result<()> {
    refuse_existing(path, force)?;
    let dir = parent(path);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Build the directory beside `path`, then rename it into place. Returns the names at its top.
fn write_dir_atomic(
    path: &Path,
    files: &[(String, String)],
    context: Option<&ContextFiles>,
    force: bool,
) -> Result<Vec<String>> {
    check_names(files, path)?;
    refuse_existing(path, force)?;
    if path.exists() && !path.is_dir() {
        return Err(user_error(
            format!("{} is a file; this export is a folder", path.display()),
            None,
        ));
    }
    if path.exists() && !is_previous_export(path) {
        // --force replaces an export, never a folder of other things.
        return Err(user_error(
            format!(
                "{} is a folder that does not hold an export; not replacing it",
                path.display()
            ),
            Some("write the export into a new folder, or name its main file (-o DIR/environment.yml)"),
        ));
    }
    let dir = parent(path);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let staged = stage(&dir, path, files, context)?;
    if path.exists() {
        let old = tempfile::Builder::new()
            .prefix(".terrarium-old-")
            .tempdir_in(&dir)?;
        let parked = old.path().join("old");
        std::fs::rename(path, &parked)?;
        if let Err(err) = std::fs::rename(staged.dir.path(), path) {
            std::fs::rename(&parked, path)?;
            return Err(err.into());
        }
    } else {
        std::fs::rename(staged.dir.path(), path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    // Renamed into place: nothing is left to remove.
    let _ = staged.dir.keep();
    Ok(top_names(&staged.entries))
}

/// Whether the folder `--force` would replace is empty or an earlier export.
fn is_previous_export(path: &Path) -> bool {
    let Ok(mut entries) = std::fs::read_dir(path) else {
        return false;
    };
    entries.next().is_none()
        || [
            "environment.yml",
            "environment.yaml",
            terrarium_spec::formats::aml_v1::DEFINITION_FILE,
        ]
        .iter()
        .any(|name| path.join(name).is_file())
}

/// Write the files into `dir`, the main one (first) last, each atomically (staged in `dir`,
/// then renamed into place), so that the main file never names a companion not yet there.
/// Refuses to replace any existing file without `force`, naming them all, before writing any.
/// Returns the names at the top of what was written, the main one first.
fn write_beside(
    dir: &Path,
    files: &[(String, String)],
    context: Option<&ContextFiles>,
    force: bool,
) -> Result<Vec<String>> {
    let shown = dir.join(&files[0].0);
    check_names(files, &shown)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let staged = stage(dir, &shown, files, context)?;
    let main = PathBuf::from(&files[0].0);
    let mut existing = Vec::new();
    for rel in &staged.entries {
        let dest = dir.join(rel);
        // Each folder on the way must be a folder, not a file or a link to elsewhere.
        let mut at = dir.to_path_buf();
        for component in rel.parent().into_iter().flat_map(Path::components) {
            at.push(component);
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if !meta.is_dir() => {
                    return Err(user_error(
                        format!(
                            "{} is in the way: the export writes {} inside a folder of that name",
                            at.display(),
                            dest.display()
                        ),
                        None,
                    ))
                }
                _ => {}
            }
        }
        match std::fs::symlink_metadata(&dest) {
            Ok(meta) if meta.is_dir() => {
                return Err(user_error(
                    format!(
                        "{} is a folder; the export writes a file there",
                        dest.display()
                    ),
                    None,
                ))
            }
            Ok(_) => existing.push(dest.display().to_string()),
            Err(_) => {}
        }
    }
    if !existing.is_empty() && !force {
        let (what, verb) = match existing.len() {
            1 => (existing[0].clone(), "exists"),
            _ => (existing.join(", "), "exist"),
        };
        return Err(user_error(
            format!("{what} already {verb}"),
            Some("pass --force to replace"),
        ));
    }
    let mut order: Vec<&PathBuf> = staged.entries.iter().filter(|e| **e != main).collect();
    order.push(&main);
    for rel in order {
        let dest = dir.join(rel);
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
        }
        std::fs::rename(staged.dir.path().join(rel), &dest)
            .with_context(|| format!("cannot write {}", dest.display()))?;
    }
    let mut names = top_names(&staged.entries);
    let first = main.to_string_lossy().into_owned();
    names.retain(|n| *n != first);
    names.insert(0, first);
    Ok(names)
}

/// An export built in a temporary folder, and every file and link in it (relative).
struct Staged {
    dir: tempfile::TempDir,
    entries: Vec<PathBuf>,
}

/// Names come from the definition (a build context, a Dockerfile path): each must stay inside
/// the folder being written, whatever a record says. Checked before anything is made.
fn check_names(files: &[(String, String)], shown: &Path) -> Result<()> {
    for (name, _) in files {
        if !is_plain_relative(Path::new(name)) {
            return Err(user_error(
                format!(
                    "refusing to write `{}` outside {}",
                    name.escape_debug(),
                    shown.display()
                ),
                Some("the definition names a file outside its folder; fix its build path"),
            ));
        }
    }
    Ok(())
}

/// Build the export's files in a temporary folder in `dir`: the build context's files first,
/// then the export's own, which win over a context file of the same name (the definition is
/// what the export writes). `shown` names the export in messages.
fn stage(
    dir: &Path,
    shown: &Path,
    files: &[(String, String)],
    context: Option<&ContextFiles>,
) -> Result<Staged> {
    let tmp = tempfile::Builder::new()
        .prefix(".terrarium-export-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    if let Some(context) = context {
        let folder = Path::new(&context.folder);
        if !is_plain_relative(folder) {
            return Err(user_error(
                format!(
                    "refusing to write the build context `{}` outside {}",
                    context.folder.escape_debug(),
                    shown.display()
                ),
                Some("the definition names a folder outside its own; fix its build path"),
            ));
        }
        terrarium_spec::context::unpack(
            &context.archive,
            &tmp.path().join(folder),
            &context.digest,
        )
        .with_context(|| format!("the stored build context {} is damaged", context.digest))?;
    }
    let mut rewritten = Vec::new();
    for (name, text) in files {
        let file = tmp.path().join(name);
        if clear_way(tmp.path(), Path::new(name))? {
            rewritten.push(name.trim_start_matches("./").to_string());
        }
        if let Some(p) = file.parent() {
            std::fs::create_dir_all(p)?;
        }
        let mut out = std::fs::File::create(&file)
            .with_context(|| format!("cannot write {}", file.display()))?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
    }
    if let Some(context) = context {
        // The export's own files may lie in the context (`build.path: .`): then the folder
        // read back is another context, and the environment another content.
        let found = terrarium_spec::context::context_digest(
            &tmp.path().join(&context.folder),
            Path::new(&context.dockerfile),
        )?;
        if found.as_deref() != Some(context.digest.as_str()) {
            let why = if rewritten.is_empty() {
                "the export's own files are in it".to_string()
            } else {
                format!("the export rewrites {} in it", rewritten.join(", "))
            };
            printer::warn(&format!(
                "the build context `{}` is written, but {why}: read back, its digest and the \
                 content hash differ",
                context.folder
            ));
        }
    }
    let mut entries = Vec::new();
    list_entries(tmp.path(), Path::new(""), &mut entries)?;
    entries.sort();
    Ok(Staged { dir: tmp, entries })
}

/// Remove what a context put at `rel` or on the way to it (a file, or a link that would lead
/// the write elsewhere). Returns whether something was there.
fn clear_way(root: &Path, rel: &Path) -> Result<bool> {
    let mut at = root.to_path_buf();
    let mut components = rel.components().peekable();
    while let Some(component) = components.next() {
        at.push(component);
        let Ok(meta) = std::fs::symlink_metadata(&at) else {
            return Ok(false);
        };
        let last = components.peek().is_none();
        if last || !meta.is_dir() {
            if meta.is_dir() {
                std::fs::remove_dir_all(&at)?;
            } else {
                std::fs::remove_file(&at)?;
            }
            return Ok(true);
        }
    }
    Ok(false)
}

/// Every file and link under `dir` (links are not followed), relative to the walk's root.
fn list_entries(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            list_entries(root, &path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// The first component of each entry, once each, folders marked with `/`.
fn top_names(entries: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let mut components = entry.components();
        let first = components
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = if components.next().is_some() {
            format!("{first}/")
        } else {
            first
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
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
            assert!(
                write_dir_atomic(&out, &files, None, false).is_err(),
                "{name:?}"
            );
            assert!(!out.exists(), "nothing is left behind for {name:?}");
            assert!(write_beside(&out, &files, None, false).is_err(), "{name:?}");
            assert!(!out.join("environment.yml").exists());
            assert!(!dir.path().join("escaped").exists());
        }
        let files = vec![("ctx/Dockerfile".to_string(), "FROM x\n".to_string())];
        write_dir_atomic(&out, &files, None, false).unwrap();
        assert!(out.join("ctx/Dockerfile").is_file());
    }

    #[test]
    fn where_an_export_goes() {
        let path = |p: &str| Some(PathBuf::from(p));
        let target = |format, p: &str| Target::new(format, path(p).as_deref()).unwrap();
        assert_eq!(
            target(Format::AmlV2, "out/environment.yml"),
            Target::Beside {
                dir: "out".into(),
                main: "environment.yml".into()
            }
        );
        assert_eq!(
            target(Format::AmlV2, "env.YAML"),
            Target::Beside {
                dir: ".".into(),
                main: "env.YAML".into()
            }
        );
        assert_eq!(
            target(Format::AmlV2, "out/env"),
            Target::Dir("out/env".into())
        );
        assert_eq!(
            target(Format::AmlV2, "out/env.yml/"),
            Target::Dir("out/env.yml/".into())
        );
        assert_eq!(
            target(Format::AmlV1, "out/azureml_environment.json"),
            Target::Beside {
                dir: "out".into(),
                main: "azureml_environment.json".into()
            }
        );
        assert!(Target::new(Format::AmlV1, path("out/env.yml").as_deref()).is_err());
        assert!(Target::new(Format::AmlV2, None).is_err());
        assert_eq!(
            target(Format::Conda, "a/b/environment.yml"),
            Target::File("a/b/environment.yml".into())
        );
        assert_eq!(
            Target::new(Format::Requirements, None).unwrap(),
            Target::Stdout
        );
    }
}
