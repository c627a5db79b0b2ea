//! `terrarium runs list|show|logs`

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};

use terrarium_compute::local;
use terrarium_store::{RunRecord, RunState, RunUpdate, Store};

use super::Context;
use crate::printer::{self, user_error};

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Recorded runs, newest first.
    List(ListArgs),
    /// One run.
    Show(ShowArgs),
    /// A run's saved output; for a job on a compute target, each task's.
    Logs(LogsArgs),
    /// Wait for a run to end; exits with its exit code.
    Wait(WaitArgs),
    /// Cancel a run: its job on a compute target, or its program on this machine.
    Cancel(CancelArgs),
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
    /// For a run on a compute target: keep printing as the job writes, until it ends.
    #[arg(long, short)]
    follow: bool,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    id: String,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    id: String,
}

pub fn run(context: &Context, command: RunsCommand) -> Result<ExitCode> {
    let store = context.store()?;
    match command {
        RunsCommand::List(args) => {
            let runs = store
                .list_runs(args.experiment.as_deref(), args.limit)?
                .into_iter()
                .map(|run| refresh(context, store.as_ref(), run))
                .collect::<Result<Vec<_>>>()?;
            if args.json {
                printer::json(&runs)?;
            } else {
                println!(
                    "{:<24}  {:<12}  {:<28}  {:<12}  {:<11}  {:>4}  COMMAND",
                    "ID", "EXPERIMENT", "ENVIRONMENT", "TARGET", "STATE", "EXIT"
                );
                for r in runs {
                    println!(
                        "{:<24}  {:<12}  {:<28}  {:<12}  {:<11}  {:>4}  {}",
                        r.id,
                        r.experiment,
                        format!("{}:{}", r.environment, r.version),
                        r.target,
                        r.state,
                        r.exit_code.map_or("-".to_string(), |c| c.to_string()),
                        r.command.join(" ")
                    );
                }
            }
        }
        RunsCommand::Show(args) => {
            let run = refresh(context, store.as_ref(), store.get_run(&args.id)?)?;
            if args.json {
                printer::json(&run)?;
            } else {
                println!("id:          {}", run.id);
                println!("experiment:  {}", run.experiment);
                println!("environment: {}:{}", run.environment, run.version);
                println!("lock hash:   {}", run.lock_hash.as_deref().unwrap_or("-"));
                println!("command:     {}", run.command.join(" "));
                println!("directory:   {}", run.cwd);
                println!("target:      {}", run.target);
                println!("state:       {}", super::jobs::describe(&run));
                if let Some(job) = &run.job {
                    println!(
                        "job:         {} job {} ({} node(s))",
                        job.kind, job.job_id, job.nodes
                    );
                    println!("queued:      {}", job.queued_at);
                    if let Some(nodes) = &job.node_list {
                        println!("nodes:       {nodes}");
                    }
                }
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
        RunsCommand::Logs(args) if args.follow => {
            let run = store.get_run(&args.id)?;
            if run.job.is_none() {
                return follow_local(context, store.as_ref(), run, true);
            }
            return super::jobs::follow(context, store.as_ref(), run, true);
        }
        RunsCommand::Wait(args) => {
            let run = store.get_run(&args.id)?;
            if run.job.is_none() {
                return follow_local(context, store.as_ref(), run, false);
            }
            return super::jobs::follow(context, store.as_ref(), run, false);
        }
        RunsCommand::Cancel(args) => {
            let run = store.get_run(&args.id)?;
            if run.job.is_none() {
                return cancel_local(context, store.as_ref(), run);
            }
            let run = refresh(context, store.as_ref(), run)?;
            if run.state.is_final() {
                printer::status(&format!(
                    "run {} has already ended: {}",
                    run.id,
                    super::jobs::describe(&run)
                ));
                return Ok(ExitCode::SUCCESS);
            }
            let record = store.get_compute(&run.target)?;
            let Some(job) = run.job.as_ref() else {
                unreachable!("local runs are cancelled above")
            };
            let runs_dir = context.runs_dir()?;
            terrarium_compute::runs::target(&record)
                .and_then(|t| {
                    let log_dir = terrarium_compute::runs::log_dir(&t, &runs_dir, &run.id)?;
                    t.engine()?.cancel_in(&job.job_id, &log_dir)
                })
                .map_err(anyhow::Error::new)?;
            printer::status(&format!(
                "run {}: cancel sent to job {}",
                run.id, job.job_id
            ));
            return super::jobs::follow(context, store.as_ref(), run, false)
                .map(|_| ExitCode::SUCCESS);
        }
        RunsCommand::Logs(args) if store.get_run(&args.id)?.job.is_some() => {
            let run = refresh(context, store.as_ref(), store.get_run(&args.id)?)?;
            let logs = super::jobs::log_files(context, store.as_ref(), &run)?;
            if logs.is_empty() {
                return Err(user_error(
                    format!("run {} has written no log yet", run.id),
                    None,
                ));
            }
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for log in logs {
                if let Ok(bytes) = std::fs::read(&log.path) {
                    writeln!(out, "==> {} <==", log.task).map_err(crate::printer::stdout_error)?;
                    out.write_all(&bytes)
                        .map_err(crate::printer::stdout_error)?;
                }
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
            std::io::stdout()
                .write_all(&text)
                .map_err(crate::printer::stdout_error)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A run as it is now: a job on a compute target is asked of its engine.
fn refresh(
    context: &Context,
    store: &dyn terrarium_store::Store,
    run: terrarium_store::RunRecord,
) -> Result<terrarium_store::RunRecord> {
    let was_final = run.state.is_final();
    let run = terrarium_compute::runs::refresh(store, run, &context.runs_dir()?)
        .map_err(anyhow::Error::new)?;
    // The job ended as this read asked: its logs go into the workspace too.
    if !was_final && run.state.is_final() {
        super::jobs::keep_job_log(context, store, &run);
    }
    Ok(run)
}

/// Follow a run on this machine (`local`, `container`) to its end, printing its output as it
/// grows when `print` is set. A run whose `terrarium run` process ended without recording its
/// end is recorded as lost.
fn follow_local(
    context: &Context,
    store: &dyn Store,
    mut run: RunRecord,
    print: bool,
) -> Result<ExitCode> {
    let files = local::RunFiles::new(&context.runs_dir()?, &run.id).map_err(anyhow::Error::new)?;
    let mut tails = super::jobs::Tails::default();
    let log = [terrarium_compute::TaskLog {
        task: "run".into(),
        path: files.log.clone(),
    }];
    let mut warned = false;
    loop {
        // Asked before the record is read: a process that has let go of its log recorded its
        // end first.
        let live = local::liveness(&files);
        run = store.get_run(&run.id)?;
        let end = run.state.is_final() || live == local::Liveness::Ended;
        if print {
            tails.print(&log, end)?;
        }
        if run.state.is_final() {
            break;
        }
        match live {
            local::Liveness::Ended => {
                run = store.update_run(
                    &run.id,
                    &RunUpdate {
                        state: RunState::Lost,
                        started_at: None,
                        finished_at: Some(terrarium_store::now()),
                        exit_code: None,
                        node_list: None,
                        reason: None,
                    },
                )?;
                printer::warn(&format!(
                    "run {}: the `terrarium run` process that ran it ended without recording its end",
                    run.id
                ));
                break;
            }
            local::Liveness::Elsewhere if !warned => {
                printer::warn(&format!(
                    "run {} was started on another machine: waiting for it to record its end",
                    run.id
                ));
                warned = true;
            }
            _ => {}
        }
        // A run elsewhere is only seen through the workspace: asked less often.
        std::thread::sleep(std::time::Duration::from_millis(
            if live == local::Liveness::Elsewhere {
                1000
            } else {
                100
            },
        ));
    }
    printer::status(&format!("run {}: {}", run.id, super::jobs::describe(&run)));
    let code = match (run.state, run.exit_code) {
        (RunState::Completed, _) => 0,
        (_, Some(code)) if code != 0 => code,
        _ => 1,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// How long a cancelled local program has to stop before it is killed.
const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Cancel a run on this machine: its program is asked to stop (SIGTERM), and its `terrarium
/// run` records it as cancelled.
fn cancel_local(context: &Context, store: &dyn Store, run: RunRecord) -> Result<ExitCode> {
    if run.state.is_final() {
        printer::status(&format!(
            "run {} has already ended: {}",
            run.id,
            super::jobs::describe(&run)
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let files = local::RunFiles::new(&context.runs_dir()?, &run.id).map_err(anyhow::Error::new)?;
    if local::liveness(&files) == local::Liveness::Elsewhere {
        return Err(user_error(
            format!("run {} was started on another machine", run.id),
            Some("cancel it there: Ctrl-C where it runs, or `terrarium runs cancel ID` on that machine"),
        ));
    }
    if local::cancel(&files).map_err(anyhow::Error::new)? {
        printer::status(&format!("run {}: asked its program to stop", run.id));
        // A program that ignores SIGTERM gets SIGKILL after a grace period.
        let deadline = std::time::Instant::now() + CANCEL_GRACE;
        while local::liveness(&files) == local::Liveness::Running {
            if std::time::Instant::now() > deadline {
                if local::kill(&files) {
                    printer::warn(&format!(
                        "run {}: its program did not stop within {} s; killed it",
                        run.id,
                        CANCEL_GRACE.as_secs()
                    ));
                }
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    follow_local(context, store, run, false).map(|_| ExitCode::SUCCESS)
}
