//! Runs on this machine (`run --target local|container`): the `terrarium run` process that
//! started the program records its end, and other processes follow, wait for and cancel it
//! through files beside its log in the workspace's runs directory:
//! - `<id>.log`, locked by the `terrarium run` process for as long as it runs: a run whose log
//!   no process holds, and whose end is not recorded, lost its process;
//! - `<id>.pid`, the program's process id, once it has started;
//! - `<id>.cancel`, written by [`cancel`] before it signals the program, so that the run is
//!   recorded as cancelled rather than failed.
//!
//! The files are found from the layout and the run's id, never from a record.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::ComputeError;

/// The files of the local run `id` in `runs_dir`.
#[derive(Debug, Clone)]
pub struct RunFiles {
    pub log: PathBuf,
    pid: PathBuf,
    cancel: PathBuf,
}

impl RunFiles {
    /// Refuses an id that is not a plain name.
    pub fn new(runs_dir: &Path, id: &str) -> Result<Self, ComputeError> {
        crate::runs::check_run_id("local", id)?;
        Ok(Self {
            log: runs_dir.join(format!("{id}.log")),
            pid: runs_dir.join(format!("{id}.pid")),
            cancel: runs_dir.join(format!("{id}.cancel")),
        })
    }
}

/// Held by the `terrarium run` process while its program runs.
pub struct Running {
    files: RunFiles,
    /// The log, locked.
    _held: File,
}

impl Running {
    /// Lock the run's log (just created by the caller) for as long as this lives.
    pub fn start(files: RunFiles) -> Result<Self, ComputeError> {
        // Opened for writing: NFS refuses an exclusive lock on a file opened read-only.
        let held = std::fs::OpenOptions::new()
            .append(true)
            .open(&files.log)
            .map_err(|e| ComputeError::io(&files.log, "open", e))?;
        held.try_lock()
            .map_err(|e| ComputeError::io(&files.log, "lock", std::io::Error::other(e)))?;
        Ok(Self { files, _held: held })
    }

    /// The program started as process `pid`. When a cancel came before its id was written,
    /// the program is stopped now.
    pub fn started(&self, pid: u32) -> Result<(), ComputeError> {
        std::fs::write(&self.files.pid, pid.to_string())
            .map_err(|e| ComputeError::io(&self.files.pid, "write", e))?;
        if self.cancelled() {
            terminate(pid);
        }
        Ok(())
    }

    /// Whether [`cancel`] was asked for this run.
    pub fn cancelled(&self) -> bool {
        self.files.cancel.exists()
    }

    /// The program has exited and been waited for: its id goes at once (the system may give
    /// it to another process), and whether a cancel came before now is the answer. A cancel
    /// asked after this finds no id and signals nothing.
    pub fn exited(&self) -> bool {
        let _ = std::fs::remove_file(&self.files.pid);
        self.cancelled()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.files.pid);
        let _ = std::fs::remove_file(&self.files.cancel);
    }
}

/// Whether a local run's process is still there, as seen from this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Its `terrarium run` process holds the log.
    Running,
    /// The log is here and no process holds it.
    Ended,
    /// There is no log here: the run was started on another machine (through a team server).
    Elsewhere,
}

pub fn liveness(files: &RunFiles) -> Liveness {
    let file = match File::open(&files.log) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Liveness::Elsewhere,
        // Here but not ours to read (another user's run in a shared directory): whether its
        // process is alive cannot be told from here either.
        Err(_) => return Liveness::Elsewhere,
    };
    match file.try_lock_shared() {
        Ok(()) => Liveness::Ended,
        Err(_) => Liveness::Running,
    }
}

/// Ask a running local run's program to stop (SIGTERM). Returns false when the run's process
/// is not running here (ended, or on another machine).
pub fn cancel(files: &RunFiles) -> Result<bool, ComputeError> {
    if liveness(files) != Liveness::Running {
        return Ok(false);
    }
    // The marker first, then the id: a `terrarium run` that writes the id after this read
    // sees the marker when it checks right after, and stops its program itself.
    std::fs::write(&files.cancel, "").map_err(|e| ComputeError::io(&files.cancel, "write", e))?;
    let text = match std::fs::read_to_string(&files.pid) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(ComputeError::io(&files.pid, "read", err)),
    };
    // The id came from a file only this user can write, and the program is still ours: its
    // `terrarium run` process holds the log.
    if let Ok(pid) = text.trim().parse::<u32>() {
        if !terminate(pid) {
            return Err(ComputeError::Engine {
                target: "local".into(),
                message: format!("cannot signal process {pid} (kill -TERM failed)"),
            });
        }
    }
    Ok(true)
}

/// Send SIGTERM to process `pid` (with kill(1): this crate has no unsafe code).
fn terminate(pid: u32) -> bool {
    signal(pid, "-TERM")
}

/// Send `signal` to process `pid`; whether it was delivered.
fn signal(pid: u32, signal: &str) -> bool {
    crate::kill(signal, pid, false)
}

/// A cancelled run whose program has not stopped after SIGTERM: SIGKILL. Returns false when
/// there was nothing to signal.
pub fn kill(files: &RunFiles) -> bool {
    if liveness(files) != Liveness::Running {
        return false;
    }
    std::fs::read_to_string(&files.pid)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .is_some_and(|pid| signal(pid, "-KILL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_log_is_running_and_a_released_one_ended() {
        let dir = tempfile::tempdir().unwrap();
        let files = RunFiles::new(dir.path(), "20261202T000000-abc").unwrap();
        assert_eq!(liveness(&files), Liveness::Elsewhere);
        std::fs::write(&files.log, "").unwrap();
        let running = Running::start(files.clone()).unwrap();
        assert_eq!(liveness(&files), Liveness::Running);
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        running.started(child.id()).unwrap();
        assert!(cancel(&files).unwrap());
        assert!(running.cancelled());
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(15));
        drop(running);
        assert_eq!(liveness(&files), Liveness::Ended);
        assert!(!cancel(&files).unwrap());
        assert!(RunFiles::new(dir.path(), "../x").is_err());
    }
}
