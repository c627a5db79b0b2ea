//! `terrarium server`: serve a workspace to a team over HTTP.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use terrarium_store::Store;

use crate::workspace;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The workspace database: `sqlite://DIR` (a workspace directory) or `postgres://...`.
    #[arg(long, value_name = "URL")]
    db: String,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8765", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Serve requests without a token, as `contributor`. Refused on non-loopback addresses.
    #[arg(long)]
    allow_anonymous_local: bool,
    /// Database connections per server process.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// The largest request body in bytes (run logs may be 16 MiB).
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    body_limit: usize,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 30)]
    request_timeout: u64,
    /// Seconds a client may take to send a request's headers.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Open connections at most (fewer when the open-files limit is lower); at the cap the
    /// longest-idle one is closed for a new one.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Keep packs for compute nodes in this directory (targets with `pack_server` upload
    /// there; nodes fetch through signed links). Without it the server keeps none. Packs may
    /// be large (64 GiB at most each): give it a filesystem with room.
    #[arg(long, value_name = "DIR")]
    packs: Option<std::path::PathBuf>,
}

pub fn run(args: ServerArgs) -> Result<ExitCode> {
    if args.allow_anonymous_local && !args.listen.ip().is_loopback() {
        return Err(crate::printer::user_error(
            format!(
                "--allow-anonymous-local is refused on {}: anonymous access is only for loopback addresses",
                args.listen.ip()
            ),
            Some("create tokens with `terrarium token create --db URL --role admin` instead"),
        ));
    }
    let db = std::path::PathBuf::from(&args.db);
    let first = workspace::open_database(&db)?;
    terrarium_store::curated::seed(first.as_ref())?;
    let mut stores: Vec<Arc<dyn Store>> = vec![Arc::from(first)];
    for _ in 1..args.connections.max(1) {
        stores.push(Arc::from(workspace::open_database(&db)?));
    }
    let mut config = terrarium_server::ServerConfig::new(args.listen);
    config.allow_anonymous_local = args.allow_anonymous_local;
    config.body_limit = args.body_limit;
    config.request_timeout = Duration::from_secs(args.request_timeout.max(1));
    config.header_timeout = Duration::from_secs(args.header_timeout.max(1));
    config.max_connections = args.max_connections.max(1);
    config.packs = args.packs;
    terrarium_server::serve(config, stores).context("the server failed")?;
    Ok(ExitCode::SUCCESS)
}
