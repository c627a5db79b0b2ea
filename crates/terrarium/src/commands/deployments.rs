//! `terrarium deployments list|show|logs|stop|shim`

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use terrarium_store::{DeploymentRecord, DeploymentState};

use super::deploy::{
    check_serving, hostname, logs_dir, pid_alive, remove_pidfile, says_running, serving_pid,
    validate_deployment_name, Serving,
};
use super::Context;
use crate::printer::{self, user_error};

#[derive(Debug, Subcommand)]
pub enum DeploymentsCommand {
    /// Deployments, by name.
    List(ListArgs),
    /// One deployment.
    Show(ShowArgs),
    /// A deployment's log: the front's and the workers' output.
    Logs(NameArgs),
    /// Stop a deployment, finishing the requests in flight.
    Stop(StopArgs),
    /// Write the worker shim as a wheel, to install into a user-managed environment.
    Shim(ShimArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    name: String,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    name: String,
    /// How long to wait for requests in flight, in seconds.
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

#[derive(Debug, Args)]
pub struct ShimArgs {
    /// The directory to write `terrarium_worker-<version>-py3-none-any.whl` into.
    #[arg(long, value_name = "DIR")]
    wheel: PathBuf,
}

pub fn run(context: &Context, command: DeploymentsCommand) -> Result<ExitCode> {
    if let DeploymentsCommand::Shim(args) = &command {
        let path = terrarium_serve::shim::wheel(&args.wheel)
            .with_context(|| format!("cannot write a wheel into {}", args.wheel.display()))?;
        println!("{}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let store = context.store()?;
    let logs = logs_dir(context)?;
    match command {
        DeploymentsCommand::List(args) => {
            let deployments: Vec<DeploymentRecord> = store
                .list_deployments()?
                .into_iter()
                .map(|d| reconcile(store.as_ref(), &logs, d))
                .collect();
            if args.json {
                printer::json(&deployments)?;
            } else {
                println!(
                    "{:<20}  {:<28}  {:<8}  {:>7}  {:<26}  STARTED",
                    "NAME", "ENVIRONMENT", "STATE", "WORKERS", "URL"
                );
                for d in deployments {
                    println!(
                        "{:<20}  {:<28}  {:<8}  {:>7}  {:<26}  {}",
                        d.name,
                        format!("{}:{}", d.environment, d.version),
                        d.state,
                        d.workers,
                        d.url.as_deref().unwrap_or("-"),
                        d.started_at
                    );
                }
            }
        }
        DeploymentsCommand::Show(args) => {
            let d = reconcile(store.as_ref(), &logs, store.get_deployment(&args.name)?);
            if args.json {
                printer::json(&d)?;
            } else {
                println!("name:        {}", d.name);
                println!("environment: {}:{}", d.environment, d.version);
                if let Some(lock) = &d.lock_hash {
                    println!("lock:        {lock}");
                }
                println!("model:       {} ({})", d.model_path, d.model_hash);
                if let Some(entry) = &d.entry {
                    println!("entry:       {entry}");
                }
                println!("state:       {}", d.state);
                if let Some(reason) = &d.reason {
                    println!("reason:      {reason}");
                }
                println!("workers:     {}", d.workers);
                println!("url:         {}", d.url.as_deref().unwrap_or("-"));
                println!(
                    "process:     {} on {}",
                    d.pid.map_or("-".into(), |p| p.to_string()),
                    d.host
                );
                println!("started:     {} by {}", d.started_at, d.actor);
                if let Some(stopped) = &d.stopped_at {
                    println!("stopped:     {stopped}");
                }
                if let Some(log) = &d.log_path {
                    println!("log:         {log}");
                }
            }
        }
        DeploymentsCommand::Logs(args) => {
            validate_deployment_name(&args.name)?;
            let d = store.get_deployment(&args.name)?;
            if d.host != hostname() {
                return Err(user_error(
                    format!(
                        "deployment {} runs on {}; its log is on that machine",
                        d.name, d.host
                    ),
                    Some(&format!(
                        "run `terrarium deployments logs {}` there",
                        d.name
                    )),
                ));
            }
            // Always the workspace's own log file, never the record's `log_path`: anyone who
            // may write records could point that at any file this user can read.
            let path = logs.join(format!("{}.log", d.name));
            let text =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            use std::io::Write as _;
            std::io::stdout().write_all(&text)?;
        }
        DeploymentsCommand::Stop(args) => {
            validate_deployment_name(&args.name)?;
            let d = store.get_deployment(&args.name)?;
            let serving = if d.host != hostname() {
                if says_running(&d) {
                    return Err(user_error(
                        format!("deployment {} runs on {}; stop it there", d.name, d.host),
                        None,
                    ));
                }
                Serving::Gone
            } else if says_running(&d) || serving_pid(&logs, &d.name).is_some() {
                // A record that says stopped is checked too when the pidfile says it serves.
                check_serving(&logs, &d)
            } else {
                Serving::Gone
            };
            let pid = match serving {
                Serving::Verified(pid) => pid,
                Serving::Gone => {
                    let d = reconcile(store.as_ref(), &logs, d);
                    printer::status(&format!(
                        "deployment {} is not running ({})",
                        d.name, d.state
                    ));
                    return Ok(ExitCode::SUCCESS);
                }
                Serving::Unverified(why) => {
                    return Err(user_error(
                        format!(
                            "{why}; the record of deployment {} may have been changed by someone else; nothing was signalled",
                            d.name
                        ),
                        Some(&format!(
                            "`terrarium deployments show {}` shows the record; only the process that the deployment's pidfile in {} names is ever signalled",
                            d.name,
                            logs.display()
                        )),
                    ));
                }
            };
            let status = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .context("cannot run kill")?;
            if !status.success() && pid_alive(pid) {
                return Err(user_error(
                    format!("cannot signal process {pid} of deployment {}", d.name),
                    None,
                ));
            }
            let deadline = Instant::now() + Duration::from_secs(args.wait);
            while pid_alive(pid) {
                if Instant::now() > deadline {
                    return Err(user_error(
                        format!(
                            "deployment {} (pid {pid}) is still finishing requests after {} s",
                            d.name, args.wait
                        ),
                        Some("wait longer with --wait, or kill the process"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // The process removes its pidfile as it exits; not if it was killed meanwhile.
            remove_pidfile(&logs, &d.name, pid);
            let d = reconcile(store.as_ref(), &logs, store.get_deployment(&args.name)?);
            printer::status(&format!("deployment {} stopped ({})", d.name, d.state));
        }
        DeploymentsCommand::Shim(_) => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// A record that says running, for a process on this machine that is gone (killed, or the
/// machine rebooted), is recorded as stopped. A live process that cannot be confirmed as the
/// deployment leaves the record as it is: it may be a changed record for one that still runs.
fn reconcile(
    store: &dyn terrarium_store::Store,
    logs: &Path,
    mut d: DeploymentRecord,
) -> DeploymentRecord {
    if says_running(&d) && d.host == hostname() && matches!(check_serving(logs, &d), Serving::Gone)
    {
        d.state = DeploymentState::Stopped;
        d.reason = Some("the serving process is gone".into());
        d.stopped_at = Some(terrarium_store::now());
        if let Err(err) = store.put_deployment(&d) {
            printer::warn(&format!("cannot record that {} stopped: {err}", d.name));
        }
    }
    d
}
