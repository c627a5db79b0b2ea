//! `terrarium token create|list|revoke`: API tokens of a server workspace.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use terrarium_server::wire::TokenCreated;

use super::Context;
use crate::{printer, workspace};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once.
    Create(CreateArgs),
    /// List tokens (never their secrets).
    List(ListArgs),
    /// Revoke a token by its id.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct Target {
    /// Work on the database directly (`sqlite://DIR` or `postgres://...`), e.g. to bootstrap
    /// the first admin token; otherwise the workspace (a server, with an admin token).
    #[arg(long, value_name = "URL")]
    db: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// reader, contributor or admin.
    #[arg(long, value_parser = ["reader", "contributor", "admin"])]
    role: String,
    /// What the token is for; recorded as the author of its changes. Default: your user name.
    #[arg(long)]
    name: Option<String>,
    /// Lifetime, e.g. 30d, 12h, 90m. Default: no expiry.
    #[arg(long, value_name = "DURATION")]
    expires: Option<String>,
    /// Print JSON: {"token": ...}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    id: String,
    #[command(flatten)]
    target: Target,
}

/// The store to manage tokens in: the database given with --db, or the workspace.
fn store(context: &Context, target: &Target) -> Result<Box<dyn terrarium_store::Store>> {
    match &target.db {
        Some(db) => workspace::open_database(std::path::Path::new(db)),
        None => context.store(),
    }
}

pub fn run(context: &Context, command: TokenCommand) -> Result<ExitCode> {
    match command {
        TokenCommand::Create(args) => {
            let name = args.name.clone().unwrap_or_else(workspace::actor);
            let created = match &args.target.db {
                Some(db) => {
                    let store = workspace::open_database(std::path::Path::new(db))?;
                    let actor = format!("local:{}", workspace::actor());
                    let (token, record) = terrarium_server::auth::issue_token(
                        store.as_ref(),
                        &name,
                        &args.role,
                        args.expires.as_deref(),
                        &actor,
                    )?;
                    store.append_audit(&terrarium_store::AuditEntry {
                        id: 0,
                        at: terrarium_store::now(),
                        actor,
                        action: "token create (direct database access)".to_string(),
                        target: Some(format!("token {}", record.id)),
                        status: 201,
                        remote: "local".to_string(),
                    })?;
                    TokenCreated::new(token, &record)
                }
                None => {
                    let dir = workspace::workspace_dir(context.workspace.clone())?;
                    if !workspace::is_server_url(&dir) {
                        return Err(printer::user_error(
                            "tokens belong to server workspaces",
                            Some("pass --db sqlite://DIR or --db postgres://... to create one in a database directly, or point --workspace at a server"),
                        ));
                    }
                    workspace::remote(&dir.to_string_lossy())?.create_token_remote(
                        &name,
                        &args.role,
                        args.expires.as_deref(),
                    )?
                }
            };
            if args.json {
                printer::json(&created)?;
            } else {
                println!("{}", created.token);
                printer::status(&format!(
                    "token {} ({}, {}{}) created; it is shown only this once",
                    created.id,
                    created.name,
                    created.role,
                    created
                        .expires_at
                        .as_deref()
                        .map(|at| format!(", expires {at}"))
                        .unwrap_or_default()
                ));
            }
        }
        TokenCommand::List(args) => {
            let tokens = store(context, &args.target)?.list_tokens()?;
            if args.json {
                printer::json(&tokens)?;
            } else {
                println!(
                    "{:<14} {:<20} {:<12} {:<26} STATE",
                    "ID", "NAME", "ROLE", "CREATED"
                );
                let now = terrarium_store::now();
                for t in tokens {
                    let state = match (&t.revoked_at, &t.expires_at) {
                        (Some(at), _) => format!("revoked {at}"),
                        (None, Some(at)) if *at <= now => format!("expired {at}"),
                        (None, Some(at)) => format!("expires {at}"),
                        (None, None) => "active".to_string(),
                    };
                    println!(
                        "{:<14} {:<20} {:<12} {:<26} {state}",
                        t.id, t.name, t.role, t.created_at
                    );
                }
            }
        }
        TokenCommand::Revoke(args) => {
            let record =
                store(context, &args.target)?.revoke_token(&args.id, &terrarium_store::now())?;
            printer::status(&format!(
                "token {} ({}) revoked at {}",
                record.id,
                record.name,
                record.revoked_at.as_deref().unwrap_or("?")
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
