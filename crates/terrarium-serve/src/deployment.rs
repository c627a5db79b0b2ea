//! A deployment on this machine: the service run as a named deployment, its log, its pidfile,
//! and whether the process a record names is still the deployment.
//!
//! The record of a deployment lives in the workspace (maybe on a team server anyone with write
//! access can change); this module never trusts it to say which process to signal. What it
//! trusts is the pidfile the serving process writes into the deployments [`Folder`] itself, with
//! its start time (a pid given again to a later process is told apart) and a nonce (a
//! deployment removes only its own pidfile), checked against `/proc` and the process's command
//! line. The caller keeps the record; this module takes plain data from it ([`Recorded`]) and
//! reports the service's changes through a [`Recorder`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub use crate::error::DeploymentError;
use crate::{Event, Log, LogFlush, ServeConfig, Stopped};

/// What a deployment's record says of its process: plain data copied from the workspace's
/// record, which anyone with write access to the workspace may have changed.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub name: &'a str,
    /// The machine that serves it.
    pub host: &'a str,
    pub pid: Option<u32>,
    /// The record says it is starting or ready: its process should be running.
    pub live: bool,
}

impl Recorded<'_> {
    /// Whether the record says it is served by this machine.
    pub fn is_here(&self) -> bool {
        self.host == hostname()
    }
}

/// A change in a deployment's life, for its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// It listens; its URL (`http://` and its first address).
    Listening(String),
    /// Every worker has finished `init()`: it serves.
    Ready,
    /// It could not start, or could not serve; why.
    Failed(String),
    /// A signal stopped it, after the requests in flight were finished.
    Stopped,
}

/// Keeps a deployment's record as its service goes (the CLI: in the workspace). Called in
/// order, from one thread of its own: a store may block, and may be a remote workspace.
pub trait Recorder: Send + 'static {
    fn record(&mut self, change: &Change) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// What the record's process is, for a record that says it runs on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serving {
    /// The record's process is the deployment: its pidfile names it, with the same start time,
    /// and its command line is `... deploy NAME ...`. Only this may be signalled.
    Verified(u32),
    /// Nothing serves it: the record's process, and the pidfile's, are gone.
    Gone,
    /// A live process that cannot be confirmed as the deployment; why, in a sentence.
    Unverified(String),
}

/// What [`Folder::stop`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Nothing served the deployment here: there was nothing to signal.
    NotRunning,
    /// Its process was signalled and has finished.
    Stopped { pid: u32 },
}

/// The reason recorded for a deployment found not running although its record said it was.
pub const GONE: &str = "the serving process is gone";

/// The folder of a workspace's deployments on this machine: `NAME.log` and `NAME.pid` of each.
#[derive(Debug, Clone)]
pub struct Folder {
    dir: PathBuf,
}

impl Folder {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `NAME.log`, the deployment's log (the front's and the workers' output).
    pub fn log_path(&self, name: &str) -> Result<PathBuf, DeploymentError> {
        check_file_name(name)?;
        Ok(self.dir.join(format!("{name}.log")))
    }

    /// Open deployment `name`'s log for a new run of its service (replacing the last run's),
    /// readable by its owner only: the workers' output may hold anything their environment
    /// holds, secrets included. Each line is stamped with the time, written through a buffer
    /// flushed every 100 ms (see [`crate::buffered_log`]; keep the [`LogFlush`]), and given to
    /// `also` as well, when there is one.
    pub fn open_log(
        &self,
        name: &str,
        also: Option<Log>,
    ) -> Result<(Log, LogFlush), DeploymentError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let path = self.log_path(name)?;
        let write = |source| DeploymentError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(|source| DeploymentError::Write {
            path: self.dir.clone(),
            source,
        })?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(write)?;
        // A log left by an older version is made owner-only too.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(write)?;
        let (file, flush) = crate::buffered_log(file);
        let format = time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
        );
        let log: Log = Arc::new(move |line: &str| {
            let stamp = time::OffsetDateTime::now_utc()
                .format(&format)
                .unwrap_or_default();
            let line = format!("{stamp} {line}");
            file(&line);
            if let Some(also) = &also {
                also(&line);
            }
        });
        Ok((log, flush))
    }

    /// Deployment `name`'s log, as this machine keeps it. Always the folder's own file, never a
    /// path a record names: anyone who may write records could point that at any file this
    /// user can read.
    pub fn read_log(&self, recorded: &Recorded<'_>) -> Result<Vec<u8>, DeploymentError> {
        if !recorded.is_here() {
            return Err(DeploymentError::Elsewhere {
                name: recorded.name.to_string(),
                host: recorded.host.to_string(),
            });
        }
        let path = self.log_path(recorded.name)?;
        std::fs::read(&path).map_err(|source| DeploymentError::Read { path, source })
    }

    /// Claim deployment `name` for this process: write its pidfile, which says which process
    /// serves it, before any record names this process. The pidfile is removed when the
    /// returned guard is dropped, if it is still this process's.
    pub fn claim(&self, name: &str) -> Result<PidFileGuard, DeploymentError> {
        PidFile::write_own(&self.dir, name)
    }

    /// The pid of the process serving deployment `name` on this machine, per its pidfile.
    pub fn serving_pid(&self, name: &str) -> Option<u32> {
        match PidFile::state(&self.dir, name) {
            PidState::Running(file) => Some(file.pid),
            _ => None,
        }
    }

    /// Whether deployment `name` runs, and as which process: on this machine the pidfile says
    /// (whatever a record says); elsewhere, its record (with pid 0 when it names none).
    pub fn running(&self, name: &str, recorded: Option<&Recorded<'_>>) -> Option<u32> {
        self.serving_pid(name).or_else(|| {
            recorded
                .filter(|r| !r.is_here() && r.live)
                .map(|r| r.pid.unwrap_or(0))
        })
    }

    /// Check the record's process against the local pidfile and `/proc`.
    pub fn check(&self, recorded: &Recorded<'_>) -> Serving {
        let name = recorded.name;
        match (recorded.pid, PidFile::state(&self.dir, name)) {
            (Some(pid), PidState::Running(file)) if file.pid == pid => Serving::Verified(pid),
            (recorded, PidState::Running(file)) => {
                let recorded = match recorded {
                    Some(pid) if pid_alive(pid) => not_the_deployment(pid, name),
                    Some(pid) => format!("the record names process {pid}, which is gone"),
                    None => "the record names no process".to_string(),
                };
                Serving::Unverified(format!(
                    "{recorded}; deployment {name} runs as process {} (its pidfile says so)",
                    file.pid
                ))
            }
            // The pidfile's process ended (its pid may be in use again): the deployment is gone.
            (Some(pid), PidState::Exited(file)) if file.pid == pid => Serving::Gone,
            (Some(pid), _) if pid_alive(pid) => Serving::Unverified(not_the_deployment(pid, name)),
            _ => Serving::Gone,
        }
    }

    /// Whether a record that says the deployment runs on this machine is wrong: its process
    /// is gone (killed, or the machine rebooted), and the record should say stopped ([`GONE`]).
    /// A live process that cannot be confirmed as the deployment is not "gone": it may be a
    /// changed record for one that still runs.
    pub fn is_gone(&self, recorded: &Recorded<'_>) -> bool {
        recorded.live && recorded.is_here() && self.check(recorded) == Serving::Gone
    }

    /// Stop the deployment: signal (SIGTERM) the process its pidfile vouches for, and wait up to
    /// `wait` for it to finish the requests in flight. Nothing is signalled unless the record's
    /// process is the pidfile's.
    pub fn stop(&self, recorded: &Recorded<'_>, wait: Duration) -> Result<Stop, DeploymentError> {
        let name = recorded.name;
        let serving = if !recorded.is_here() {
            if recorded.live {
                return Err(DeploymentError::Elsewhere {
                    name: name.to_string(),
                    host: recorded.host.to_string(),
                });
            }
            Serving::Gone
        } else if recorded.live || self.serving_pid(name).is_some() {
            // A record that says stopped is checked too when the pidfile says it serves.
            self.check(recorded)
        } else {
            Serving::Gone
        };
        let pid = match serving {
            Serving::Verified(pid) => pid,
            Serving::Gone => return Ok(Stop::NotRunning),
            Serving::Unverified(why) => {
                return Err(DeploymentError::Unverified {
                    name: name.to_string(),
                    why,
                })
            }
        };
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map_err(DeploymentError::Kill)?;
        if !status.success() && pid_alive(pid) {
            return Err(DeploymentError::Signal {
                name: name.to_string(),
                pid,
            });
        }
        let deadline = Instant::now() + wait;
        while pid_alive(pid) {
            if Instant::now() > deadline {
                return Err(DeploymentError::StillRunning {
                    name: name.to_string(),
                    pid,
                    wait,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The process removes its pidfile as it exits; not if it was killed meanwhile.
        self.remove_pidfile(name, pid);
        Ok(Stop::Stopped { pid })
    }

    /// Remove deployment `name`'s pidfile once its process `pid` has exited.
    fn remove_pidfile(&self, name: &str, pid: u32) {
        if let PidState::Exited(file) = PidFile::state(&self.dir, name) {
            if file.pid == pid {
                PidFile::remove_if_nonce(&self.dir, name, &file.nonce);
            }
        }
    }
}

/// Run the service as a deployment until a signal, or until its workers fail to start, and keep
/// its record through `recorder`: each [`Change`] in order, on a thread of its own. A change
/// that cannot be recorded while the service runs is logged; the last one (stopped, or failed
/// to serve) is an error.
pub fn serve(
    config: ServeConfig,
    log: Log,
    mut recorder: impl Recorder,
) -> Result<Stopped, DeploymentError> {
    let (changes_tx, changes_rx) = std::sync::mpsc::channel::<Change>();
    let keeper = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for change in changes_rx {
                if let Err(err) = recorder.record(&change) {
                    log(&format!("cannot record the deployment's state: {err}"));
                }
            }
            recorder
        })
    };
    let outcome = crate::serve(config, Arc::clone(&log), move |event| {
        let change = match event {
            Event::Listening(addresses) => match addresses.first() {
                Some(address) => Change::Listening(format!("http://{address}")),
                None => return,
            },
            Event::Ready => Change::Ready,
            Event::Failed(reason) => Change::Failed(reason),
            Event::Stopping => return,
        };
        let _ = changes_tx.send(change);
    });
    let mut recorder = match keeper.join() {
        Ok(recorder) => recorder,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    match outcome {
        Ok(Stopped::Signal) => {
            recorder
                .record(&Change::Stopped)
                .map_err(DeploymentError::Record)?;
            Ok(Stopped::Signal)
        }
        // Recorded as it happened.
        Ok(Stopped::Failed(reason)) => Ok(Stopped::Failed(reason)),
        Err(err) => {
            recorder
                .record(&Change::Failed(err.to_string()))
                .map_err(DeploymentError::Record)?;
            Err(DeploymentError::Serve(err))
        }
    }
}

/// SHA-256 over the directory's regular files (and symlinks, followed): relative path, size and
/// contents, in path order. `sha256:HEX`.
pub fn hash_dir(dir: &Path) -> Result<String, DeploymentError> {
    let read = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DeploymentError::Read { path, source }
    };
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).map_err(read(&current))? {
            let entry = entry.map_err(read(&current))?;
            let kind = entry.file_type().map_err(read(&entry.path()))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() || kind.is_symlink() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        let relative = file.strip_prefix(dir).unwrap_or(&file);
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        let mut reader = std::fs::File::open(&file).map_err(read(&file))?;
        let size = std::io::copy(&mut reader, &mut hasher).map_err(read(&file))?;
        hasher.update(size.to_be_bytes());
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// This machine's name, as records name the machine that serves a deployment.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether process `pid` runs. A zombie (exited, not yet reaped) does not.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// A deployment's name becomes file names in the folder: a plain file name that is not hidden.
/// (Which names a deployment may have is the caller's rule; this one only keeps the files inside
/// the folder, whatever a record says.)
fn check_file_name(name: &str) -> Result<(), DeploymentError> {
    let ok = name.chars().next().is_some_and(|c| c.is_alphanumeric())
        && !name.contains(['/', '\\', '\0']);
    if ok {
        Ok(())
    } else {
        Err(DeploymentError::InvalidName(name.to_string()))
    }
}

/// Why live process `pid` is not taken for deployment `name`.
fn not_the_deployment(pid: u32, name: &str) -> String {
    let command = command_line(pid).unwrap_or_default();
    if is_deploy_command(&command, name) {
        format!(
            "process {pid} runs `{}` but no pidfile of this workspace vouches for it",
            shown_command(&command)
        )
    } else {
        format!(
            "process {pid} is not deployment {name} (its command line is `{}`)",
            shown_command(&command)
        )
    }
}

/// `<folder>/<name>.pid`: which process serves a deployment on this machine. It is written by
/// the serving process itself, in the workspace's local folder, so unlike the record (which may
/// live on a team server anyone can write to) it can be trusted to say which process to signal.
/// The start time tells a process from a later one given the same pid; the nonce tells this
/// deployment's pidfile from the next one's, so that a process removes only its own.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PidFile {
    /// The format's version.
    version: u32,
    pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks after boot.
    start_time: u64,
    /// 16 random bytes, hex.
    nonce: String,
}

enum PidState {
    /// No pidfile, or one this version cannot read.
    Missing,
    /// Its process has ended, or the pid is another process's now.
    Exited(PidFile),
    /// Its process runs, and is the deployment.
    Running(PidFile),
    /// Its process runs but is not `deploy NAME` (its command line changed).
    Foreign,
}

/// Removes the serving process's pidfile when the process stops serving (see [`Folder::claim`]).
#[derive(Debug)]
pub struct PidFileGuard {
    dir: PathBuf,
    name: String,
    nonce: String,
}

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        PidFile::remove_if_nonce(&self.dir, &self.name, &self.nonce);
    }
}

impl PidFile {
    const VERSION: u32 = 1;

    fn path(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{name}.pid"))
    }

    /// Write this process's pidfile for deployment `name`: mode 0600, and atomically (a temporary
    /// file renamed over the old one), so a reader never sees half of it.
    fn write_own(dir: &Path, name: &str) -> Result<PidFileGuard, DeploymentError> {
        check_file_name(name)?;
        let pid = std::process::id();
        let start_time = start_time(pid).ok_or(DeploymentError::System {
            what: "this process's start time",
            source: None,
        })?;
        let mut nonce = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut nonce))
            .map_err(|source| DeploymentError::System {
                what: "/dev/urandom",
                source: Some(source),
            })?;
        let file = PidFile {
            version: Self::VERSION,
            pid,
            start_time,
            nonce: hex::encode(nonce),
        };
        let in_dir = |source| DeploymentError::Write {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(in_dir)?;
        let path = Self::path(dir, name);
        // tempfile creates its files with mode 0600.
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(in_dir)?;
        let json = serde_json::to_vec(&file).expect("a pidfile serializes");
        temp.write_all(&json)
            .and_then(|()| temp.as_file().sync_all())
            .map_err(in_dir)?;
        temp.persist(&path).map_err(|err| DeploymentError::Write {
            path: path.clone(),
            source: err.error,
        })?;
        Ok(PidFileGuard {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            nonce: file.nonce,
        })
    }

    fn read(dir: &Path, name: &str) -> Option<PidFile> {
        // Names from a record are not trusted to stay inside the folder.
        check_file_name(name).ok()?;
        let text = std::fs::read(Self::path(dir, name)).ok()?;
        serde_json::from_slice::<PidFile>(&text)
            .ok()
            .filter(|f| f.version == Self::VERSION)
    }

    fn state(dir: &Path, name: &str) -> PidState {
        let Some(file) = Self::read(dir, name) else {
            return PidState::Missing;
        };
        if !pid_alive(file.pid) || start_time(file.pid) != Some(file.start_time) {
            return PidState::Exited(file);
        }
        match command_line(file.pid) {
            Some(command) if is_deploy_command(&command, name) => PidState::Running(file),
            _ => PidState::Foreign,
        }
    }

    /// Remove the pidfile if it is still the one with `nonce` (not a newer deployment's).
    fn remove_if_nonce(dir: &Path, name: &str, nonce: &str) {
        if Self::read(dir, name).is_some_and(|now| now.nonce == nonce) {
            let _ = std::fs::remove_file(Self::path(dir, name));
        }
    }
}

/// A process's start time, field 22 of `/proc/<pid>/stat` (the fields after the command name,
/// which may hold spaces and parentheses, start at field 3).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// A process's arguments, from `/proc/<pid>/cmdline`.
fn command_line(pid: u32) -> Option<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        bytes
            .split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

/// Whether a command line is `... deploy ... NAME ...`, as the serving process's is.
fn is_deploy_command(command: &[String], name: &str) -> bool {
    command.iter().any(|arg| arg == "deploy") && command.iter().any(|arg| arg == name)
}

/// A command line for a message: its arguments joined, control characters escaped.
fn shown_command(command: &[String]) -> String {
    command
        .iter()
        .map(|arg| arg.escape_debug().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_hash_covers_paths_sizes_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), "1").unwrap();
        std::fs::write(dir.path().join("sub/b"), "2").unwrap();
        let first = hash_dir(dir.path()).unwrap();
        assert!(first.starts_with("sha256:") && first.len() == 7 + 64);
        assert_eq!(hash_dir(dir.path()).unwrap(), first);
        std::fs::write(dir.path().join("sub/b"), "3").unwrap();
        let changed = hash_dir(dir.path()).unwrap();
        assert_ne!(changed, first);
        std::fs::rename(dir.path().join("sub/b"), dir.path().join("sub/c")).unwrap();
        assert_ne!(hash_dir(dir.path()).unwrap(), changed);
        assert!(matches!(
            hash_dir(&dir.path().join("missing")),
            Err(DeploymentError::Read { .. })
        ));
    }

    #[test]
    fn names_stay_inside_the_folder() {
        let folder = Folder::new("/tmp/deployments");
        assert!(folder.log_path("svc-1").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a\0b"] {
            assert!(folder.log_path(bad).is_err(), "{bad:?}");
            assert!(folder.claim(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_claim_is_this_process_and_goes_with_its_guard() {
        let dir = tempfile::tempdir().unwrap();
        let folder = Folder::new(dir.path());
        let here = hostname();
        let guard = folder.claim("svc").unwrap();
        let pidfile = dir.path().join("svc.pid");
        assert!(pidfile.is_file());
        // The test binary's command line is not `deploy svc`: not taken for the deployment.
        assert_eq!(folder.serving_pid("svc"), None);
        let recorded = Recorded {
            name: "svc",
            host: &here,
            pid: Some(std::process::id()),
            live: true,
        };
        assert!(matches!(folder.check(&recorded), Serving::Unverified(_)));
        assert!(!folder.is_gone(&recorded));
        drop(guard);
        assert!(!pidfile.exists());
        // A record elsewhere is believed for whether it runs, never for what to signal.
        let elsewhere = Recorded {
            host: "another-machine",
            ..recorded
        };
        assert_eq!(
            folder.running("svc", Some(&elsewhere)),
            Some(std::process::id())
        );
        assert!(matches!(
            folder.stop(&elsewhere, Duration::ZERO),
            Err(DeploymentError::Elsewhere { .. })
        ));
        assert!(matches!(
            folder.read_log(&elsewhere),
            Err(DeploymentError::Elsewhere { .. })
        ));
    }
}
