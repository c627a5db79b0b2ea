//! `terrarium`: reproducible, versioned environments for machine-learning work.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, FromArgMatches, Parser, Subcommand};

mod commands;
mod env_vars;
mod environments;
mod printer;
mod workspace;

/// Reproducible, versioned environments for machine-learning work.
#[derive(Debug, Parser)]
#[command(name = "terrarium", version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,

    #[command(subcommand)]
    command: Command,
}

/// The options every command takes.
#[derive(Debug, Args)]
struct Global {
    /// The workspace: a directory, `postgres://...`, or a server `https://host:port`
    /// [env: TERRARIUM_WORKSPACE; default: the config file's `workspace`, else $TERRARIUM_HOME
    /// or the platform's data directory].
    #[arg(long, global = true, value_name = "DIR|URL")]
    workspace: Option<PathBuf>,
}

impl Cli {
    /// The command line, parsed. clap builds the whole command tree (every subcommand and its
    /// arguments) before it parses anything: about a fifth of a warm `terrarium run`'s
    /// instructions, and the most frequent command. So `run` is parsed first against a tree
    /// of itself alone; anything that tree does not accept as a run (`--help`, an error) is
    /// parsed again by the whole tree, which gives the usual help and messages.
    fn parse_args() -> Result<Self, clap::Error> {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if args.get(1).is_some_and(|a| a == "run") {
            let tree = Global::augment_args(clap::Command::new("terrarium")).subcommand(
                commands::run::RunArgs::augment_args(clap::Command::new("run")),
            );
            if let Ok(matches) = tree.try_get_matches_from(&args) {
                if let (Ok(global), Some(("run", run))) =
                    (Global::from_arg_matches(&matches), matches.subcommand())
                {
                    if let Ok(run) = commands::run::RunArgs::from_arg_matches(run) {
                        return Ok(Self {
                            global,
                            command: Command::Run(run),
                        });
                    }
                }
            }
        }
        Self::try_parse_from(args)
    }
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
    /// Serve a model as a web service in an environment version (Azure ML entry scripts).
    Deploy(commands::deploy::DeployArgs),
    /// Serve an entry script with a given Python, without a workspace (what deployment images run).
    Serve(terrarium_serve::standalone::ServeArgs),
    /// Deployments: list, show, logs, stop.
    #[command(subcommand)]
    Deployments(commands::deployments::DeploymentsCommand),
    /// Container images of environments: daemonless, layered, reproducible.
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// Recorded runs.
    #[command(subcommand)]
    Runs(commands::runs::RunsCommand),
    /// Compute targets (Slurm) that `run --target NAME` submits jobs to.
    #[command(subcommand)]
    Compute(commands::compute::ComputeCommand),
    /// The cache of built environments.
    #[command(subcommand)]
    Cache(commands::cache::CacheCommand),
    /// Serve a workspace to a team: REST API, tokens, audit trail and web UI.
    Server(commands::server::ServerArgs),
    /// API tokens of a server workspace.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// The audit trail of a workspace's changes.
    Audit(commands::audit::AuditArgs),
}

fn main() -> ExitCode {
    printer::exit_quietly_on_closed_stdout();
    let cli = match Cli::parse_args() {
        Ok(cli) => cli,
        Err(err) => return printer::report_usage(&err),
    };
    let context = commands::Context {
        workspace: cli.global.workspace,
    };
    let result = match cli.command {
        Command::Env(command) => commands::env::run(&context, command),
        Command::Curated(command) => commands::curated::run(&context, command),
        Command::Run(args) => commands::run::run(&context, args),
        Command::Deploy(args) => commands::deploy::run(&context, args),
        Command::Serve(args) => terrarium_serve::standalone::run(args).map_err(Into::into),
        Command::Deployments(command) => commands::deployments::run(&context, command),
        Command::Image(command) => commands::image::run(&context, command),
        Command::Runs(command) => commands::runs::run(&context, command),
        Command::Compute(command) => commands::compute::run(&context, command),
        Command::Cache(command) => commands::cache::run(&context, command),
        Command::Server(args) => commands::server::run(args),
        Command::Token(command) => commands::token::run(&context, command),
        Command::Audit(args) => commands::audit::run(&context, args),
    };
    match result {
        Ok(code) => code,
        Err(err) => printer::report(&err),
    }
}
