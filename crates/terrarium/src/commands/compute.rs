//! `terrarium compute add|list|show|remove`: the workspace's compute targets.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use terrarium_compute::{runs, Kind, Target};
use terrarium_store::ComputeRecord;

use super::Context;
use crate::printer::{self, user_error};
use crate::workspace;

#[derive(Debug, Subcommand)]
pub enum ComputeCommand {
    /// Add a compute target. Its options are checked, and the engine is asked whether it can
    /// take jobs, before anything is stored.
    #[command(after_long_help = options_help())]
    Add(AddArgs),
    /// The compute targets (`local` and `container` are built in and not listed).
    List(ListArgs),
    /// One compute target, and whether its engine answers now.
    Show(ShowArgs),
    /// Remove a compute target (refused while a run on it has not ended).
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    name: String,
    /// The engine: slurm, ray, spark or kubernetes.
    #[arg(long)]
    kind: String,
    /// An option, KEY=VALUE (repeatable); see `terrarium compute add --help`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Store it without asking the engine (it may not be reachable from here yet).
    #[arg(long)]
    no_check: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
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
pub struct RemoveArgs {
    name: String,
}

/// Every kind's options, from the tables the options are checked against.
fn options_help() -> String {
    let mut text = String::new();
    for kind in Kind::ALL {
        text.push_str(&format!("{kind} options:\n"));
        for spec in kind.options() {
            let required = if spec.required { " (required)" } else { "" };
            text.push_str(&format!("  {}{required}: {}\n", spec.key, spec.help));
        }
        text.push('\n');
    }
    text
}

pub fn run(context: &Context, command: ComputeCommand) -> Result<ExitCode> {
    let store = context.store()?;
    match command {
        ComputeCommand::Add(args) => {
            if matches!(args.name.as_str(), "local" | "container") {
                return Err(user_error(
                    format!("`{}` is built in and cannot be added", args.name),
                    Some("pick another name"),
                ));
            }
            terrarium_spec::names::validate_name(&args.name)
                .map_err(|e| user_error(format!("invalid compute target name: {e}"), None))?;
            let kind: Kind = args
                .kind
                .parse()
                .map_err(|e: terrarium_compute::ComputeError| user_error(e.to_string(), None))?;
            let mut options = BTreeMap::new();
            for pair in &args.set {
                let Some((key, value)) = pair.split_once('=') else {
                    return Err(user_error(
                        format!("--set `{pair}` must be KEY=VALUE"),
                        Some(&format!(
                            "{kind} targets take: {}",
                            kind.options()
                                .iter()
                                .map(|o| o.key)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    ));
                };
                options.insert(key.trim().to_string(), value.trim().to_string());
            }
            let target = Target {
                name: args.name.clone(),
                kind,
                options,
            };
            let engine = target
                .engine()
                .map_err(|e| user_error(e.to_string(), None))?;
            let checked = if args.no_check {
                None
            } else {
                Some(engine.check().map_err(|e| {
                    user_error(
                        e.to_string(),
                        Some("fix the option, start the engine, or add it with --no-check"),
                    )
                })?)
            };
            let record = ComputeRecord {
                name: target.name.clone(),
                kind: kind.as_str().into(),
                options: target.options.clone(),
                created_at: terrarium_store::now(),
                created_by: workspace::actor(),
            };
            store.add_compute(&record)?;
            if args.json {
                printer::json(&record)?;
            } else {
                printer::status(&format!(
                    "added compute target `{}` ({})",
                    record.name,
                    checked.unwrap_or_else(|| format!("{kind}, not checked"))
                ));
            }
        }
        ComputeCommand::List(args) => {
            let targets = store.list_compute()?;
            if args.json {
                printer::json(&targets)?;
            } else {
                println!("{:<20}  {:<8}  OPTIONS", "NAME", "KIND");
                for t in targets {
                    println!("{:<20}  {:<8}  {}", t.name, t.kind, options(&t));
                }
            }
        }
        ComputeCommand::Show(args) => {
            let record = store.get_compute(&args.name)?;
            let target = runs::target(&record);
            // Where the nodes get environments from: the shared cache, or packs in it.
            let delivery = match &target {
                Ok(target) => {
                    let cache = match target.option("cache") {
                        Some(cache) => std::path::PathBuf::from(cache),
                        None => terrarium_compute::environment::cache_dir()?,
                    };
                    Some(target.delivery_line(&cache))
                }
                Err(_) => None,
            };
            let check = target.and_then(|t| t.engine()).and_then(|e| e.check());
            if args.json {
                let mut value = serde_json::to_value(&record)?;
                value["check"] = match &check {
                    Ok(line) => serde_json::json!({"ok": true, "engine": line}),
                    Err(err) => serde_json::json!({"ok": false, "error": err.to_string()}),
                };
                value["environments"] = delivery.into();
                printer::json(&value)?;
            } else {
                println!("name:     {}", record.name);
                println!("kind:     {}", record.kind);
                for (key, value) in &record.options {
                    println!("  {key} = {value}");
                }
                println!("created:  {} by {}", record.created_at, record.created_by);
                if let Some(delivery) = delivery {
                    println!("environments: {delivery}");
                }
                match check {
                    Ok(line) => println!("engine:   {line}"),
                    Err(err) => println!("engine:   cannot take jobs now: {err}"),
                }
            }
        }
        ComputeCommand::Remove(args) => {
            store.remove_compute(&args.name)?;
            printer::status(&format!("removed compute target `{}`", args.name));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn options(record: &ComputeRecord) -> String {
    record
        .options
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}
