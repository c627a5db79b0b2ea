//! `terrarium`: reproducible, versioned environments for machine-learning work.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod env_vars;
mod environments;
mod printer;
mod workspace;

/// Reproducible, versioned environments for machine-learning work.
#[derive(Debug, Parser)]
#[command(name = "terrarium", version, about)]
struct Cli {
    /// The workspace directory [env: TERRARIUM_WORKSPACE; default: $TERRARIUM_HOME or the
    /// platform's data directory].
    #[arg(long, global = true, value_name = "DIR")]
    workspace: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, inspect, version and export environments.
    #[command(subcommand)]
    Env(commands::env::EnvCommand),
    /// The curated environments shipped with Terrarium.
    #[command(subcommand)]
    Curated(commands::curated::CuratedCommand),
    /// Run a command in an environment version (registering a definition file first).
    Run(commands::run::RunArgs),
    /// Recorded runs.
    #[command(subcommand)]
    Runs(commands::runs::RunsCommand),
    /// The cache of built environments.
    #[command(subcommand)]
    Cache(commands::cache::CacheCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let context = commands::Context {
        workspace: cli.workspace,
    };
    let result = match cli.command {
        Command::Env(command) => commands::env::run(&context, command),
        Command::Curated(command) => commands::curated::run(&context, command),
        Command::Run(args) => commands::run::run(&context, args),
        Command::Runs(command) => commands::runs::run(&context, command),
        Command::Cache(command) => commands::cache::run(&context, command),
    };
    match result {
        Ok(code) => code,
        Err(err) => printer::report(&err),
    }
}
