//! The lock: the exact artifacts an environment version installs, per platform.
//!
//! This crate holds the lock types and their canonical hash, the standard formats a lock is
//! written in (`pixi.lock`, PEP 751 `pylock.toml`), the diff between two locks, and the check
//! that a lock belongs to a definition. It never solves and never touches the network: making
//! a lock is `terrarium-resolve`'s job, installing one `terrarium-env`'s, and both of those,
//! the server and the CLI share these types.
//!
//! Design goals:
//! - the same lock is always the same bytes (sorted keys, pretty JSON) and the same hash,
//!   whatever order a map kept while it was in memory;
//! - a lock written by any earlier lock format is read, with the hash it had (a fixture per
//!   format version);
//! - one diff and one check, used by the CLI and the server alike.

pub mod check;
mod error;
pub mod formats;
pub mod lock;
pub mod uv;

pub use error::LockError;
pub use lock::{Lock, LockKind, LockedConda, LockedPypi, LockedPython, PlatformLock, LOCK_VERSION};

/// The conda platform name of this machine (`linux-64`), the key of its section in a lock.
pub fn current_platform() -> String {
    use rattler_conda_types::Subdir;
    Subdir::current().unwrap_or(Subdir::Linux64).to_string()
}
