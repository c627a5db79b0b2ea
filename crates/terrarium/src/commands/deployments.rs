//! `terrarium deployments list|show|logs|stop|shim`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use terrarium_serve::deployment::{self, DeploymentError, Folder, Stop};
use terrarium_store::{DeploymentRecord, DeploymentState};

use super::deploy::{folder, recorded, validate_deployment_name};
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
    let folder = folder(context)?;
    match command {
        DeploymentsCommand::List(args) => {
            let deployments: Vec<DeploymentRecord> = store
                .list_deployments()?
                .into_iter()
                .map(|d| reconcile(store.as_ref(), &folder, d))
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
            let d = reconcile(store.as_ref(), &folder, store.get_deployment(&args.name)?);
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
            let text = folder.read_log(&recorded(&d)).map_err(|err| match err {
                DeploymentError::Elsewhere { .. } => user_error(
                    format!("{err}; its log is on that machine"),
                    Some(&format!(
                        "run `terrarium deployments logs {}` there",
                        d.name
                    )),
                ),
                err => err.into(),
            })?;
            use std::io::Write as _;
            std::io::stdout()
                .write_all(&text)
                .map_err(crate::printer::stdout_error)?;
        }
        DeploymentsCommand::Stop(args) => {
            validate_deployment_name(&args.name)?;
            let d = store.get_deployment(&args.name)?;
            let stop = folder
                .stop(&recorded(&d), Duration::from_secs(args.wait))
                .map_err(|err| match err {
                    DeploymentError::Elsewhere { .. } => {
                        user_error(format!("{err}; stop it there"), None)
                    }
                    DeploymentError::Unverified { .. } => user_error(
                        err.to_string(),
                        Some(&format!(
                            "`terrarium deployments show {}` shows the record; only the process that the deployment's pidfile in {} names is ever signalled",
                            d.name,
                            folder.dir().display()
                        )),
                    ),
                    DeploymentError::StillRunning { .. } => user_error(
                        err.to_string(),
                        Some("wait longer with --wait, or kill the process"),
                    ),
                    err => err.into(),
                })?;
            match stop {
                Stop::NotRunning => {
                    let d = reconcile(store.as_ref(), &folder, d);
                    printer::status(&format!(
                        "deployment {} is not running ({})",
                        d.name, d.state
                    ));
                }
                Stop::Stopped { .. } => {
                    let d = reconcile(store.as_ref(), &folder, store.get_deployment(&args.name)?);
                    printer::status(&format!("deployment {} stopped ({})", d.name, d.state));
                }
            }
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
    folder: &Folder,
    mut d: DeploymentRecord,
) -> DeploymentRecord {
    if folder.is_gone(&recorded(&d)) {
        d.state = DeploymentState::Stopped;
        d.reason = Some(deployment::GONE.into());
        d.stopped_at = Some(terrarium_store::now());
        if let Err(err) = store.put_deployment(&d) {
            printer::warn(&format!("cannot record that {} stopped: {err}", d.name));
        }
    }
    d
}
