//! `terrarium runs list|show|logs`

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};

use super::Context;
use crate::printer::{self, user_error};

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Recorded runs, newest first.
    List(ListArgs),
    /// One run.
    Show(ShowArgs),
    /// A run's saved output.
    Logs(LogsArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only runs of this experiment.
    #[arg(long)]
    experiment: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    id: String,
}

pub fn run(context: &Context, command: RunsCommand) -> Result<ExitCode> {
    let store = context.store()?;
    match command {
        RunsCommand::List(args) => {
            let runs = store.list_runs(args.experiment.as_deref(), args.limit)?;
            if args.json {
                printer::json(&runs)?;
            } else {
                println!(
                    "{:<24}  {:<12}  {:<28}  {:>4}  COMMAND",
                    "ID", "EXPERIMENT", "ENVIRONMENT", "EXIT"
                );
                for r in runs {
                    println!(
                        "{:<24}  {:<12}  {:<28}  {:>4}  {}",
                        r.id,
                        r.experiment,
                        format!("{}:{}", r.environment, r.version),
                        r.exit_code.map_or("-".to_string(), |c| c.to_string()),
                        r.command.join(" ")
                    );
                }
            }
        }
        RunsCommand::Show(args) => {
            let run = store.get_run(&args.id)?;
            if args.json {
                printer::json(&run)?;
            } else {
                println!("id:          {}", run.id);
                println!("experiment:  {}", run.experiment);
                println!("environment: {}:{}", run.environment, run.version);
                println!("lock hash:   {}", run.lock_hash.as_deref().unwrap_or("-"));
                println!("command:     {}", run.command.join(" "));
                println!("directory:   {}", run.cwd);
                println!("started:     {}", run.started_at);
                println!(
                    "finished:    {}",
                    run.finished_at.as_deref().unwrap_or("(running)")
                );
                println!(
                    "exit code:   {}",
                    run.exit_code.map_or("-".to_string(), |c| c.to_string())
                );
                println!("log:         {}", run.log_path.as_deref().unwrap_or("-"));
            }
        }
        RunsCommand::Logs(args) => {
            let run = store.get_run(&args.id)?;
            let text = match store.get_run_log(&run.id)? {
                Some(text) => text,
                // Runs recorded before logs were kept in the workspace, or still running.
                // The file is found from the workspace's layout, never from the record, which
                // anyone who can write records could point at any file.
                None => {
                    let safe_id = !run.id.is_empty()
                        && run
                            .id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    let path = context.runs_dir()?.join(format!("{}.log", run.id));
                    if !safe_id || !path.is_file() {
                        return Err(user_error(
                            format!("run {} has no log in this workspace yet", run.id),
                            None,
                        ));
                    }
                    std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?
                }
            };
            use std::io::Write;
            std::io::stdout().write_all(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
