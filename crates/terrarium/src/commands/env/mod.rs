//! `terrarium env ...`: the environment registry.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use terrarium_spec::names::Reference;
use terrarium_spec::Format;

use super::Context;
use crate::printer::user_error;

mod archive;
mod build;
mod clone;
mod create;
mod delete;
mod diff;
mod export;
mod history;
mod label;
pub mod list;
mod lock;
mod pack;
mod shell;
mod show;
mod unpack;
mod update;
mod validate;

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Register an environment from a file, directory or image (a new version if it changed).
    Create(create::CreateArgs),
    /// List environments (their latest versions).
    List(list::ListArgs),
    /// Show one version.
    Show(show::ShowArgs),
    /// Every version of an environment, with parents, authors and sources, and its events.
    History(history::HistoryArgs),
    /// Differences between two versions.
    Diff(diff::DiffArgs),
    /// Point a label at a version (moves it if it exists).
    Label(label::LabelArgs),
    /// Remove a label.
    Unlabel(label::UnlabelArgs),
    /// Change a version's description or tags (no new version).
    Update(update::UpdateArgs),
    /// Hide a version (NAME:VERSION) or a whole environment (NAME) from lists.
    Archive(archive::ArchiveArgs),
    /// Undo `archive`.
    Restore(archive::ArchiveArgs),
    /// Delete a version that no label refers to.
    Delete(delete::DeleteArgs),
    /// Make a new, editable environment from any version (curated ones included).
    Clone(clone::CloneArgs),
    /// Write a version in another format.
    Export(export::ExportArgs),
    /// Check a definition file without registering it.
    Validate(validate::ValidateArgs),
    /// Lock a version registered with --no-lock (or show its lock).
    Lock(lock::LockCommandArgs),
    /// Resolve again into a new version: same definition, fresh lock.
    Relock(lock::RelockArgs),
    /// Build the environment's prefix from its lock (cached by lock hash).
    Build(build::BuildArgs),
    /// Check every installed file of a built environment against the installers' records.
    Verify(build::VerifyArgs),
    /// Write the lock and every package file it names into one archive, for offline builds.
    Pack(pack::PackArgs),
    /// Build the environment of a pack (from `env pack`) with no network.
    Unpack(unpack::UnpackArgs),
    /// Start a shell inside the environment.
    Shell(shell::ShellArgs),
    /// Print shell code that activates the environment: eval "$(terrarium env activate REF)".
    Activate(shell::ShellArgs),
    /// Install a Jupyter kernelspec for the environment.
    Kernel(shell::KernelArgs),
}

pub fn run(context: &Context, command: EnvCommand) -> Result<ExitCode> {
    match command {
        EnvCommand::Create(args) => create::create(context, args),
        EnvCommand::List(args) => list::list(context, args),
        EnvCommand::Show(args) => show::show(context, args),
        EnvCommand::History(args) => history::history(context, args),
        EnvCommand::Diff(args) => diff::diff(context, args),
        EnvCommand::Label(args) => label::label(context, args),
        EnvCommand::Unlabel(args) => label::unlabel(context, args),
        EnvCommand::Update(args) => update::update(context, args),
        EnvCommand::Archive(args) => archive::archive(context, args, true),
        EnvCommand::Restore(args) => archive::archive(context, args, false),
        EnvCommand::Delete(args) => delete::delete(context, args),
        EnvCommand::Clone(args) => clone::clone(context, args),
        EnvCommand::Export(args) => export::export(context, args),
        EnvCommand::Validate(args) => validate::validate(context, args),
        EnvCommand::Lock(args) => lock::lock(context, args),
        EnvCommand::Relock(args) => lock::relock(context, args),
        EnvCommand::Build(args) => build::build(context, args),
        EnvCommand::Verify(args) => build::verify(context, args),
        EnvCommand::Pack(args) => pack::pack(context, args),
        EnvCommand::Unpack(args) => unpack::unpack(context, args),
        EnvCommand::Shell(args) => shell::shell(context, args),
        EnvCommand::Activate(args) => shell::activate(context, args),
        EnvCommand::Kernel(args) => shell::kernel(context, args),
    }
}

/// Parse the `REFERENCE` argument: `NAME`, `NAME:VERSION` or `NAME@LABEL`.
pub fn parse_reference(text: &str) -> Result<Reference> {
    parse_reference_arg("REFERENCE", text)
}

/// Parse a reference argument; `arg` names it in the error (`REFERENCE`, `OLD`, `--env`).
pub fn parse_reference_arg(arg: &str, text: &str) -> Result<Reference> {
    Reference::parse(text).map_err(|e| {
        user_error(
            format!("invalid {arg} `{}`: {}", e.text.escape_debug(), e.reason),
            Some(&format!("{arg} is NAME, NAME:VERSION or NAME@LABEL")),
        )
    })
}

/// Parse a `--format` value.
pub fn parse_format(text: &str) -> Result<Format, String> {
    Format::parse(text).ok_or_else(|| {
        let names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
        format!(
            "unknown format `{text}`; expected one of: {}",
            names.join(", ")
        )
    })
}

/// Parse `KEY=VALUE`.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, found `{text}`")),
    }
}
