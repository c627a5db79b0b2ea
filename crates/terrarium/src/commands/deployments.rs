//! `terrarium deployments list|show|logs|stop|shim`

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use terrarium_store::DeploymentRecord;

use super::deploy::{hostname, is_running, pid_alive};
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
    match command {
        DeploymentsCommand::List(args) => {
            let deployments: Vec<DeploymentRecord> = store
                .list_deployments()?
                .into_iter()
                .map(|d| reconcile(store.as_ref(), d))
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
            let d = reconcile(store.as_ref(), store.get_deployment(&args.name)?);
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
            let d = store.get_deployment(&args.name)?;
            let path = d.log_path.clone().unwrap_or_default();
            if d.host != hostname() {
                return Err(user_error(
                    format!(
                        "deployment {} runs on {}; its log is there, in {path}",
                        d.name, d.host
                    ),
                    None,
                ));
            }
            let text = std::fs::read(&path).with_context(|| format!("cannot read {path}"))?;
            use std::io::Write as _;
            std::io::stdout().write_all(&text)?;
        }
        DeploymentsCommand::Stop(args) => {
            let d = store.get_deployment(&args.name)?;
            if !is_running(&d) {
                let d = reconcile(store.as_ref(), d);
                printer::status(&format!(
                    "deployment {} is not running ({})",
                    d.name, d.state
                ));
                return Ok(ExitCode::SUCCESS);
            }
            if d.host != hostname() {
                return Err(user_error(
                    format!("deployment {} runs on {}; stop it there", d.name, d.host),
                    None,
                ));
            }
            let pid = d.pid.expect("a running deployment has a pid");
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
            let d = reconcile(store.as_ref(), store.get_deployment(&args.name)?);
            printer::status(&format!("deployment {} stopped ({})", d.name, d.state));
        }
        DeploymentsCommand::Shim(_) => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// A record that says running, for a process on this machine that is gone (killed, or the
/// machine rebooted), is recorded as stopped.
fn reconcile(store: &dyn terrarium_store::Store, mut d: DeploymentRecord) -> DeploymentRecord {
    let says_running = d.state == "starting" || d.state == "ready";
    if says_running && d.host == hostname() && !d.pid.is_some_and(pid_alive) {
        d.state = "stopped".into();
        d.reason = Some("the serving process is gone".into());
        d.stopped_at = Some(terrarium_store::now());
        if let Err(err) = store.put_deployment(&d) {
            printer::warn(&format!("cannot record that {} stopped: {err}", d.name));
        }
    }
    d
}
