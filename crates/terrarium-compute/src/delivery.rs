//! How an environment reaches a target's nodes, and the task script that makes sure it has.
//!
//! Two ways, chosen by the target's `delivery` option:
//! - **shared**: the submitting machine builds the prefix once per lock in the target's `cache`,
//!   a filesystem every node sees; each task checks that the prefix is its lock's.
//! - **pack**: the submitting machine writes the lock's pack (`env pack`) once into the shared
//!   `cache`, with the `terrarium` and `uv` binaries that install it; each node builds the
//!   environment from the pack into its own `node_cache`, once per node and lock (the build is
//!   atomic and locked, so tasks starting at once on one node build it once), with no network.
//!   `env unpack` refuses a pack whose files do not match the lock hash the job names, and then
//!   nothing runs.
//!
//! Either way a task runs nothing until `$TERRARIUM_PREFIX` holds the lock's environment, and it
//! holds the prefix's in-use lock while it runs so that `cache gc` on the node leaves it be.

use std::path::{Path, PathBuf};

use crate::{ComputeError, OptionSpec, Target, NO_PREFIX_EXIT};

/// How long an engine may not answer a follower before the run is given up as lost.
pub const DEFAULT_LOST_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

pub const LOST_AFTER: OptionSpec = OptionSpec {
    key: "lost_after",
    help: "how long the engine may not answer `runs wait` or an attached `run` before the run is recorded as lost (default: 10m)",
    required: false,
    check: |v| crate::resources::parse_duration(v).map(|_| ()),
};

/// The default node cache: a directory of the submitting user's on each node's own disk,
/// `/var/tmp/terrarium-node-cache-UID`, created private to them.
pub fn default_node_cache() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    PathBuf::from(format!("/var/tmp/terrarium-node-cache-{uid}"))
}

pub const DELIVERY: OptionSpec = OptionSpec {
    key: "delivery",
    help: "how environments reach the nodes: `shared` (built once in `cache`, which every node sees) or `pack` (each node builds from a pack in `cache` into its own `node_cache`) (default: shared)",
    required: false,
    check: |v| v.parse::<Delivery>().map(|_| ()),
};

pub const NODE_CACHE: OptionSpec = OptionSpec {
    key: "node_cache",
    help: "with delivery=pack: where each node builds environments, on its own disk (default: /var/tmp/terrarium-node-cache-UID, private to the user)",
    required: false,
    check: crate::check_absolute,
};

pub const TERRARIUM: OptionSpec = OptionSpec {
    key: "terrarium",
    help: "with delivery=pack: the `terrarium` program on the nodes (default: this machine's, copied into `cache`)",
    required: false,
    check: crate::check_absolute,
};

pub const PACK_REGISTRY: OptionSpec = OptionSpec {
    key: "pack_registry",
    help: "with delivery=pack: a registry repository (REGISTRY/REPOSITORY) the pack is pushed to as an OCI artifact, which each node fetches it from by digest; with `terrarium` set to where the nodes have it (and uv on their PATH or in TERRARIUM_UV for locks with PyPI packages), the nodes need not see `cache` at all (a registry that is not on loopback is spoken to over HTTPS)",
    required: false,
    check: crate::check_repository,
};

pub const PACK_SERVER: OptionSpec = OptionSpec {
    key: "pack_server",
    help: "with delivery=pack: a team server (http(s)://HOST[:PORT], started with `--packs`) the pack is uploaded to with the submitter's token (contributor); each node fetches it by digest through a signed link that lives `pack_link_lifetime`, with no token; with `terrarium` set to where the nodes have it (and uv on their PATH or in TERRARIUM_UV for locks with PyPI packages), the nodes need not see `cache` at all",
    required: false,
    check: crate::check_server_url,
};

pub const PACK_LINK_LIFETIME: OptionSpec = OptionSpec {
    key: "pack_link_lifetime",
    help: "with pack_server: how long a job may wait in the queue and still fetch its pack, e.g. 12h or 7d (default: 7d, at most 30d)",
    required: false,
    check: |v| {
        let seconds = crate::resources::parse_duration(v)?;
        if seconds > 30 * 24 * 3600 {
            Err("a pack link lives 30 days at most".to_string())
        } else {
            Ok(())
        }
    },
};

/// How environments reach a target's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Shared,
    Pack,
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Shared => "shared",
            Self::Pack => "pack",
        })
    }
}

impl std::str::FromStr for Delivery {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "shared" => Ok(Self::Shared),
            "pack" => Ok(Self::Pack),
            other => Err(format!(
                "`{}` is not a delivery: use `shared` or `pack`",
                other.escape_debug()
            )),
        }
    }
}

impl Target {
    /// How this target's nodes get environments.
    pub fn delivery(&self) -> Delivery {
        self.option("delivery")
            .and_then(|v| v.parse().ok())
            .unwrap_or(Delivery::Shared)
    }

    /// Where this target's nodes build environments from packs.
    pub fn node_cache(&self) -> PathBuf {
        self.option("node_cache")
            .map_or_else(default_node_cache, PathBuf::from)
    }

    /// How long the engine may not answer a follower before its run is lost.
    pub fn lost_after(&self) -> std::time::Duration {
        // The option was checked when the target was stored.
        self.option("lost_after")
            .and_then(|text| crate::resources::parse_duration(text).ok())
            .map_or(DEFAULT_LOST_AFTER, std::time::Duration::from_secs)
    }

    /// One line saying how environments reach the nodes, for `compute show`.
    pub fn delivery_line(&self, cache: &Path) -> String {
        if self.kind == crate::Kind::Kubernetes {
            return format!(
                "image: built from the lock, pushed to {}/NAME:VERSION and run by digest{}",
                self.option("registry").unwrap_or("?"),
                self.option("base")
                    .map(|b| format!(" (pip-only environments on {b})"))
                    .unwrap_or_default()
            );
        }
        match self.delivery() {
            Delivery::Shared => format!(
                "shared: built once per lock in {}, which every node must see",
                cache.display()
            ),
            Delivery::Pack => format!(
                "pack: each node builds from {} into {}, once per lock, with {}",
                match (self.option("pack_registry"), self.option("pack_server")) {
                    (Some(r), _) => format!("{r} (an OCI artifact, fetched by digest)"),
                    (None, Some(s)) => format!(
                        "the team server {s} (uploaded at submit, fetched by digest through a signed link)"
                    ),
                    (None, None) => format!("{}/packs", cache.display()),
                },
                self.node_cache().display(),
                self.option("terrarium").map_or(
                    "this machine's terrarium, copied into the cache".into(),
                    |t| { t.to_string() }
                )
            ),
        }
    }
}

/// With delivery=pack: what a node builds its environment from.
#[derive(Debug, Clone)]
pub struct PackSource {
    /// The pack, on the shared filesystem.
    pub pack: PathBuf,
    /// Where the nodes fetch the pack from instead: `REGISTRY/REPOSITORY@sha256:...` when the
    /// target has a `pack_registry`, a team server's signed link when it has a `pack_server`.
    pub reference: Option<String>,
    /// The node's cache (`TERRARIUM_CACHE_DIR` for the build).
    pub node_cache: PathBuf,
    /// The `terrarium` program on the node.
    pub terrarium: PathBuf,
    /// The `uv` program on the node, when the lock installs from PyPI.
    pub uv: Option<PathBuf>,
    /// The pack's lock, for checks at submit (the submitting machine need not build it).
    pub lock: std::sync::Arc<terrarium_lock::Lock>,
}

/// How long `cache gc` keeps a pack or a shipped program no job used: longer than a job may
/// wait in a queue for it (a pack link lives 30 days at most).
pub const KEEP_UNUSED: std::time::Duration = std::time::Duration::from_secs(31 * 24 * 3600);

/// Mark a file in the cache as used now (its modification time); best effort.
pub fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Remove the packs (`packs/*.tpack`, with their digest files) and shipped programs (`bin/*`)
/// in the cache `cache` that no job used for `keep`; return what was removed and its size.
pub fn sweep_unused(cache: &Path, keep: std::time::Duration) -> (Vec<PathBuf>, u64) {
    let mut removed = Vec::new();
    let mut freed = 0;
    let Some(before) = std::time::SystemTime::now().checked_sub(keep) else {
        return (removed, freed);
    };
    for dir in [cache.join("packs"), cache.join("bin")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            // Files being written (`.NAME-...` temporaries) and digest files go with their pack.
            if !meta.is_file() || name.starts_with('.') || name.ends_with(".sha256") {
                continue;
            }
            if meta.modified().is_ok_and(|at| at < before)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                freed += meta.len();
                let _ = std::fs::remove_file(entry.path().with_extension("tpack.sha256"));
                removed.push(entry.path());
            }
        }
    }
    (removed, freed)
}

/// Copy a program into `dir` (on the shared filesystem) once, under a name that changes when
/// the program does, and return the copy's path. The copy is written beside and renamed into
/// place, so a node never runs a half-written program.
pub fn ship_program(program: &Path, dir: &Path, name: &str) -> Result<PathBuf, ComputeError> {
    let meta = std::fs::metadata(program).map_err(|e| ComputeError::io(program, "read", e))?;
    let stamp = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let shipped = dir.join(format!("{name}-{}-{stamp:x}", meta.len()));
    if shipped.is_file() {
        // Used now: `cache gc` keeps what jobs still use.
        touch(&shipped);
        return Ok(shipped);
    }
    std::fs::create_dir_all(dir).map_err(|e| ComputeError::io(dir, "create", e))?;
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .tempfile_in(dir)
        .map_err(|e| ComputeError::io(dir, "write in", e))?;
    std::fs::copy(program, temp.path()).map_err(|e| ComputeError::io(program, "copy", e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| ComputeError::io(temp.path(), "make executable", e))?;
    temp.persist(&shipped)
        .map_err(|e| ComputeError::io(&shipped, "write", e.error))?;
    Ok(shipped)
}

/// A pack's source as logs show it: a signed link without its query (its signature).
pub fn redacted(source: &str) -> String {
    if source.starts_with("http://") || source.starts_with("https://") {
        source
            .split(['?', '#'])
            .next()
            .unwrap_or(source)
            .to_string()
    } else {
        source.to_string()
    }
}

/// The `bash -c` script each task runs its command (`"$@"`) through. It makes sure
/// `$TERRARIUM_PREFIX` holds the environment of the lock `$TERRARIUM_LOCK_HASH` on this node,
/// building it from the pack first with delivery=pack, then runs the command holding the
/// prefix's in-use lock. A node that builds says so on the task's stderr, in `env unpack`'s own
/// words after `terrarium: HOSTNAME: `, so that a job's logs show which nodes built (and a job
/// that built nothing says nothing); a failed build shows all the build said. When the prefix
/// is not the lock's, it says so and exits [`NO_PREFIX_EXIT`], running nothing.
pub fn task_script(environment: &str, in_use: &Path, source: Option<&PackSource>) -> String {
    let environment = environment.replace(['"', '\\', '$', '`', '\n'], "_");
    let check = "grep -qF \"\\\"$TERRARIUM_LOCK_HASH\\\"\" \"$TERRARIUM_PREFIX/.terrarium/env.json\" 2>/dev/null";
    let mut script = String::new();
    if let Some(source) = source {
        let q = |p: &Path| crate::shell_quote(&p.display().to_string());
        // The node's cache, made private to the job's user when it is new.
        let nc = q(&source.node_cache);
        let uv = source
            .uv
            .as_ref()
            .map(|uv| format!(" TERRARIUM_UV={}", q(uv)))
            .unwrap_or_default();
        script.push_str(&format!(
            "{check} || {{ (umask 077 && mkdir -p {nc}) && built=$(TERRARIUM_CACHE_DIR={nc}{uv} {} env unpack {} --lock-hash \"$TERRARIUM_LOCK_HASH\" 2>&1 </dev/null >/dev/null) && {{ printf '%s\\n' \"$built\" | sed \"s|^|terrarium: $(hostname): |\" >&2; true; }}; }} || {{ printf '%s\\n' \"$built\" >&2; echo \"terrarium: $(hostname) could not build the environment {environment} from {} (lock $TERRARIUM_LOCK_HASH)\" >&2; exit {NO_PREFIX_EXIT}; }}; ",
            q(&source.terrarium),
            source
                .reference
                .as_deref()
                .map_or_else(|| q(&source.pack), crate::shell_quote),
            source
                .reference
                .as_deref()
                .map_or_else(|| source.pack.display().to_string(), redacted)
                .replace(['"', '\\', '$', '`', '\n'], "_"),
        ));
    }
    let unseen = if source.is_some() {
        "does not hold"
    } else {
        "does not see"
    };
    let hint = if source.is_some() {
        ""
    } else {
        ": the target's cache must be on a filesystem every node sees"
    };
    let refuse = format!(
        "{check} || {{ echo \"terrarium: $(hostname) {unseen} the environment {environment} at $TERRARIUM_PREFIX (lock $TERRARIUM_LOCK_HASH){hint}\" >&2; exit {NO_PREFIX_EXIT}; }}"
    );
    // Checked, then checked again holding the prefix's in-use lock, so that `cache gc` cannot
    // take the prefix away between the check and the command.
    script.push_str(&format!(
        "{refuse}; exec flock --shared {} /bin/bash -c {} terrarium-task \"$@\"",
        crate::shell_quote(&in_use.display().to_string()),
        crate::shell_quote(&format!("{refuse}; exec \"$@\""))
    ));
    script
}
