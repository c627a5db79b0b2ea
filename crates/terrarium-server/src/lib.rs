//! The team workspace server and its client.
//!
//! - [`serve`] runs `terrarium server`: a stateless axum front for a [`Store`] (SQLite or
//!   PostgreSQL), so several replicas can serve one PostgreSQL workspace.
//!   - `api/`: the REST API under `/api/v1`, with its OpenAPI document at `/openapi.json`;
//!   - `auth`: API tokens (stored hashed), roles, and the audit trail of mutating requests;
//!   - `packs`: packs kept on disk for compute nodes, fetched through signed links;
//!   - `ui/`: the server-rendered web UI under `/ui`;
//!   - connections are accepted by the scoring front's listener (`terrarium_serve::listen`):
//!     a deadline for each request's head, and a cap on open connections.
//! - [`client::RemoteStore`] implements [`Store`] over that API, so every CLI command works
//!   against `--workspace https://host:port` as it does against a local workspace.
//!
//! [`Store`]: terrarium_store::Store

pub mod auth;
pub mod client;
pub mod packs;
pub mod wire;

mod api;
mod error;
mod server;
mod state;
mod ui;

pub use server::{serve, ServerConfig};

/// A byte count for people: `512 B`, `1.5 KiB`, `75.2 MiB`, ... up to TiB. The web UI's and
/// the CLI's listings.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
