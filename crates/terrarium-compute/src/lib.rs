//! Running a command in an environment version, on this machine or on a compute target, and
//! following it there.
//!
//! [`environment`] (the `build` feature) gets a version ready on this machine: its lock, made
//! once at first use, its prefix, built once per lock, and the variables its processes get.
//! [`container`] runs in the version's image with runc; [`local`] keeps a local run's files.
//!
//! Terrarium builds no scheduler: a target names an engine the team already runs (Slurm, Ray,
//! Spark, Kubernetes), and this crate submits a job to it, reads the job's state and logs from
//! it, and cancels it.
//! Each engine is a module behind one trait, [`Engine`]. The job's state always comes from the
//! engine, never from a guess; a job the engine no longer knows is [`JobState::Lost`].
//!
//! The environment reaches the nodes as a built prefix on a filesystem they share, or as a pack
//! each node builds from into its own cache ([`delivery`]); either way the job checks, on the
//! node, that the prefix is the one its lock names before it runs anything.

pub mod container;
pub mod delivery;
#[cfg(feature = "build")]
pub mod environment;
pub mod error;
pub mod kubernetes;
pub mod local;
pub mod ray;
pub mod resources;
pub mod runs;
pub mod slurm;
pub mod spark;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use delivery::{Delivery, PackSource};
pub use error::ComputeError;
pub use resources::Resources;

/// The kinds of compute target. `local` and `container` are built into `terrarium run` and are
/// not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Slurm,
    Ray,
    Spark,
    Kubernetes,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[Kind::Slurm, Kind::Ray, Kind::Spark, Kind::Kubernetes];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slurm => "slurm",
            Self::Ray => "ray",
            Self::Spark => "spark",
            Self::Kubernetes => "kubernetes",
        }
    }

    /// The options a target of this kind takes.
    pub fn options(self) -> &'static [OptionSpec] {
        match self {
            Self::Slurm => slurm::OPTIONS,
            Self::Ray => ray::OPTIONS,
            Self::Spark => spark::OPTIONS,
            Self::Kubernetes => kubernetes::OPTIONS,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = ComputeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| ComputeError::UnknownKind {
                given: text.to_string(),
                known: Self::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// One option of a kind of target: its key, what it means, and how its value is checked.
#[derive(Debug)]
pub struct OptionSpec {
    pub key: &'static str,
    pub help: &'static str,
    /// Whether a target of the kind must set it.
    pub required: bool,
    pub check: fn(&str) -> Result<(), String>,
}

/// A compute target as the workspace stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub kind: Kind,
    pub options: BTreeMap<String, String>,
}

impl Target {
    /// Check every option against its kind: known keys, well-formed values, the required ones
    /// set. Nothing is asked of the engine here; [`Engine::check`] does that.
    pub fn validate(&self) -> Result<(), ComputeError> {
        let specs = self.kind.options();
        if let Some(spec) = specs
            .iter()
            .find(|spec| spec.required && !self.options.contains_key(spec.key))
        {
            return Err(ComputeError::Option {
                target: self.name.clone(),
                option: spec.key.into(),
                reason: format!("{} targets need it: {}", self.kind, spec.help),
            });
        }
        for (key, value) in &self.options {
            let spec =
                specs
                    .iter()
                    .find(|spec| spec.key == key)
                    .ok_or_else(|| ComputeError::Option {
                        target: self.name.clone(),
                        option: key.clone(),
                        reason: format!(
                            "not an option of {} targets (they take: {})",
                            self.kind,
                            specs.iter().map(|s| s.key).collect::<Vec<_>>().join(", ")
                        ),
                    })?;
            (spec.check)(value).map_err(|reason| ComputeError::Option {
                target: self.name.clone(),
                option: key.clone(),
                reason,
            })?;
        }
        if self.options.contains_key("pack_registry") && self.options.contains_key("pack_server") {
            return Err(ComputeError::Option {
                target: self.name.clone(),
                option: "pack_server".into(),
                reason: "set `pack_registry` or `pack_server`, not both: the nodes fetch the pack from one place".into(),
            });
        }
        if let Some(option) = ["pack_registry", "pack_server"]
            .into_iter()
            .find(|o| self.options.contains_key(*o))
            .filter(|_| self.kind != Kind::Kubernetes && self.delivery() != Delivery::Pack)
        {
            return Err(ComputeError::Option {
                target: self.name.clone(),
                option: option.into(),
                reason: "it is for delivery=pack: set `delivery=pack` too".into(),
            });
        }
        if self.options.contains_key("pack_link_lifetime")
            && !self.options.contains_key("pack_server")
        {
            return Err(ComputeError::Option {
                target: self.name.clone(),
                option: "pack_link_lifetime".into(),
                reason: "it is the lifetime of a team server's pack links: set `pack_server` too"
                    .into(),
            });
        }
        Ok(())
    }

    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }

    /// The engine for this target.
    pub fn engine(&self) -> Result<Box<dyn Engine>, ComputeError> {
        self.validate()?;
        Ok(match self.kind {
            Kind::Slurm => Box::new(slurm::Slurm::new(self.clone())),
            Kind::Ray => Box::new(ray::Ray::new(self.clone())?),
            Kind::Spark => Box::new(spark::Spark::new(self.clone())),
            Kind::Kubernetes => Box::new(kubernetes::Kubernetes::new(self.clone())),
        })
    }
}

/// What to run, where its environment is, and what it needs.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The run's id in the workspace (the job is named after it).
    pub run_id: String,
    /// `NAME:VERSION`, for the job's own record.
    pub environment: String,
    pub command: Vec<String>,
    /// Variables the job runs with. They are handed to the engine in the submitting process's
    /// environment, never written into a script.
    pub env: Vec<(String, String)>,
    /// Names of `env` entries whose values are secret: shown masked in a dry run.
    pub secret_names: Vec<String>,
    /// The working directory on the nodes.
    pub cwd: PathBuf,
    /// The built environment on the shared filesystem, and its lock hash; `None` for a
    /// user-managed environment, which the nodes must already hold.
    pub prefix: Option<Prefix>,
    pub resources: Resources,
    /// Where the job writes its logs: a directory on the filesystem the nodes share.
    pub log_dir: PathBuf,
    /// The definition's Spark settings (Maven packages and repositories), for Spark targets.
    pub spark: terrarium_spec::model::Spark,
    /// The environment's image, by digest (`REGISTRY/REPOSITORY@sha256:...`), for targets that
    /// run images (Kubernetes). Their `env` values keep `${secret:NAME}` references, which the
    /// engine hands to the cluster as references, never as values.
    pub image: Option<String>,
}

impl JobSpec {
    /// The names of the job's variables, for what a dry run shows (`NAME (secret)` for the
    /// secret ones): never their values.
    pub fn variable_names(&self) -> Vec<String> {
        self.env
            .iter()
            .map(|(k, _)| {
                if self.secret_names.contains(k) {
                    format!("{k} (secret)")
                } else {
                    k.clone()
                }
            })
            .collect()
    }
}

/// A built environment prefix that a job runs in.
#[derive(Debug, Clone)]
pub struct Prefix {
    pub path: PathBuf,
    pub lock_hash: String,
    /// The lock file held shared while the job runs, so that `cache gc` leaves the prefix be.
    pub in_use: PathBuf,
    /// With delivery=pack, what each node builds the prefix from; `None` when the prefix is
    /// built already on a filesystem every node sees.
    pub source: Option<PackSource>,
}

/// A job's state, as the engine reports it: the run states every run has.
pub use terrarium_spec::RunState as JobState;

/// What the engine says of a job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub state: JobState,
    /// The job's exit code once it has ended (128 + N for a signal N).
    pub exit_code: Option<i32>,
    /// RFC 3339, UTC, when the engine says.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The nodes the job ran on.
    pub nodes: Vec<String>,
    /// The engine's reason, when it gives one (e.g. `TimeLimit`, `NonZeroExitCode`).
    pub reason: Option<String>,
}

/// One task's (or node's) output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLog {
    /// `batch`, or `task N`.
    pub task: String,
    pub path: PathBuf,
}

/// One engine: submit a job, ask its state, find its logs, cancel it.
pub trait Engine: Send + Sync {
    /// Ask the engine whether this target can take jobs: its programs are here, it answers,
    /// and what the options name (a partition, say) exists. Returns a line describing it.
    fn check(&self) -> Result<String, ComputeError>;

    /// Exactly what [`Engine::submit`] would hand the engine (a batch script, a job document).
    fn render(&self, job: &JobSpec) -> Result<String, ComputeError>;

    /// Submit; returns the engine's id of the job.
    fn submit(&self, job: &JobSpec) -> Result<String, ComputeError>;

    fn status(&self, job_id: &str) -> Result<JobStatus, ComputeError>;

    /// The job's log files, in order (those that exist yet). An engine that keeps the logs
    /// itself (Ray) first brings its copy in `log_dir` up to date.
    fn logs(&self, log_dir: &std::path::Path) -> Result<Vec<TaskLog>, ComputeError>;

    /// Logs the engine keeps elsewhere that are fetched once the job has ended (a Spark
    /// cluster's executor logs), copied into `log_dir`; shown by `runs logs` after
    /// [`Engine::logs`], not while a run is followed.
    fn ended_logs(&self, _log_dir: &std::path::Path) -> Result<Vec<TaskLog>, ComputeError> {
        Ok(Vec::new())
    }

    /// How often a follower may call [`Engine::logs`]: often when they are files on a shared
    /// filesystem, less when each call asks the engine over the network.
    fn log_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(20)
    }

    fn cancel(&self, job_id: &str) -> Result<(), ComputeError>;

    /// [`Engine::status`] of a job whose run keeps its logs in `log_dir` (found from the
    /// target's layout, never from a record). An engine that keeps no record of its own jobs
    /// (Spark's client mode: the driver runs on this machine) reads it there.
    fn status_in(
        &self,
        job_id: &str,
        _log_dir: &std::path::Path,
    ) -> Result<JobStatus, ComputeError> {
        self.status(job_id)
    }

    /// Wait until the job may have changed, before a follower asks [`Engine::status_in`]
    /// again: `poll`, for an engine that can only be asked; an engine that can tell of a change
    /// (a Kubernetes watch) returns when it comes, or after its own bound.
    fn wait_for_change(
        &self,
        _job_id: &str,
        _log_dir: &std::path::Path,
        poll: std::time::Duration,
    ) {
        std::thread::sleep(poll);
    }

    /// The run of a submitted job is now recorded in the workspace. An engine whose job is a
    /// process of this machine (Spark's driver) holds it until then, so that a submitter killed
    /// between the two leaves no job running unrecorded.
    fn recorded(&self, _job_id: &str, _log_dir: &std::path::Path) -> Result<(), ComputeError> {
        Ok(())
    }

    /// [`Engine::cancel`], likewise.
    fn cancel_in(&self, job_id: &str, _log_dir: &std::path::Path) -> Result<(), ComputeError> {
        self.cancel(job_id)
    }
}

/// Exit code of a job (or task) whose node does not see the environment's prefix.
pub const NO_PREFIX_EXIT: i32 = 97;

/// Send `signal` (`-TERM`, `-KILL`) with kill(1) to process `pid`, or to the process group it
/// leads when `group`; whether it was delivered. This crate has no unsafe code, so no kill(2).
pub(crate) fn kill(signal: &str, pid: u32, group: bool) -> bool {
    let target = if group {
        format!("-{pid}")
    } else {
        pid.to_string()
    };
    pid > 1
        && std::process::Command::new("kill")
            .args([signal, "--", &target])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Why a connection failed, in a few words, when the error's causes hold an I/O error that
/// says (`connection refused`, `timed out`); each engine words the rest from its client's error.
pub(crate) fn io_why(err: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut source = Some(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Some("connection refused"),
                std::io::ErrorKind::TimedOut => return Some("timed out"),
                _ => {}
            }
        }
        source = cause.source();
    }
    None
}

/// Whether a variable of the submitting process is one of its own credentials: the workspace
/// token, a pack server's token, or the source of a secret (`TERRARIUM_SECRET_*`). A job or a
/// program gets the values its environment names, under the names it gives them, never these.
pub fn is_client_credential(name: &str) -> bool {
    name == "TERRARIUM_TOKEN" || name == PACK_SERVER_TOKEN || name.starts_with("TERRARIUM_SECRET_")
}

/// The variable holding the token for a `pack_server` that is not the workspace's own server.
pub const PACK_SERVER_TOKEN: &str = "TERRARIUM_PACK_SERVER_TOKEN";

/// Keep this process's credentials ([`is_client_credential`]) out of what `command` inherits;
/// call it before setting the job's own variables.
pub fn scrub_credentials(command: &mut std::process::Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_client_credential) {
            command.env_remove(&name);
        }
    }
}

/// An option value that must be an absolute path.
pub(crate) fn check_absolute(value: &str) -> Result<(), String> {
    if std::path::Path::new(value).is_absolute() && !value.contains('\n') {
        Ok(())
    } else {
        Err(format!(
            "`{}` must be an absolute path",
            value.escape_debug()
        ))
    }
}

/// An option value that must be a server's address, `http(s)://HOST[:PORT]` (with no path
/// beyond `/`, query or credentials).
pub(crate) fn check_server_url(value: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "`{}` is not a server address (http(s)://HOST[:PORT]): {why}",
            value.escape_debug()
        ))
    };
    let Some(rest) = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
    else {
        return bad("it must start with http:// or https://");
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return bad("give only the host and port, with no path, query or user");
    }
    Ok(())
}

/// An option value that must be `REGISTRY/REPOSITORY` with no tag: a registry host (with a
/// `.` or a port, or `localhost`), then lowercase path components.
pub(crate) fn check_repository(value: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "`{}` is not REGISTRY/REPOSITORY (e.g. registry.example.com/team/ml): {why}",
            value.escape_debug()
        ))
    };
    let Some((host, repository)) = value.split_once('/') else {
        return bad("it names no repository");
    };
    if !(host.contains('.') || host.contains(':') || host == "localhost")
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return bad(
            "the first part must be a registry host (with a `.` or a port, or `localhost`)",
        );
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    };
    if !repository.split('/').all(component_ok) {
        return bad("a repository is lowercase letters, digits and `._-`, in `/`-separated parts, with no tag");
    }
    Ok(())
}

/// Quote `text` for a POSIX shell: as is when it is plainly safe, else in single quotes.
pub fn shell_quote(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("python"), "python");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn unknown_options_and_kinds_are_named() {
        let target = Target {
            name: "hpc".into(),
            kind: Kind::Slurm,
            options: [("partitoin".to_string(), "gpu".to_string())].into(),
        };
        let err = target.validate().unwrap_err().to_string();
        assert!(
            err.contains("`hpc`") && err.contains("`partitoin`"),
            "{err}"
        );
        assert!(err.contains("partition"), "{err}");
        assert!("kubernetes".parse::<Kind>().is_ok());
        assert!("k8s".parse::<Kind>().is_err());
    }
}
