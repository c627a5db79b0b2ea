//! A test context: a fresh workspace and the real `terrarium` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod server;

pub struct TestContext {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(
            self.code, 0,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn user_error(self) -> Self {
        assert_eq!(
            self.code, 2,
            "expected exit 2\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl TestContext {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn workspace(&self) -> PathBuf {
        self.dir.path().join("workspace")
    }

    /// A file in the test's scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn command(&self) -> Command {
        let mut cmd = self.command_without_workspace();
        cmd.arg("--workspace").arg(self.workspace());
        cmd
    }

    /// The binary with the test's settings but no `--workspace`, for other workspace kinds.
    pub fn command_without_workspace(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_terrarium"));
        cmd.env("TERRARIUM_USER", "tester");
        cmd.env_remove("TERRARIUM_WORKSPACE");
        cmd.env_remove("TERRARIUM_HOME");
        cmd.env("RUST_BACKTRACE", "0");
        cmd.env("TERRARIUM_CACHE_DIR", self.dir.path().join("cache"));
        cmd.env("UV_CACHE_DIR", self.dir.path().join("uv-cache"));
        cmd.env_remove("TERRARIUM_SECRETS_FILE");
        cmd.env_remove("TERRARIUM_ERRORS");
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// Poll `runs show ID` until the run is in `state`, failing after `seconds`.
    pub fn wait_for_state(&self, id: &str, state: &str, seconds: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let shown = self.run(&["runs", "show", id, "--json"]).success().json();
            if shown["state"] == state {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{shown}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.command().args(args).output().unwrap().into()
    }

    pub fn run_path(&self, args: &[&str], path: &Path, rest: &[&str]) -> Run {
        self.command()
            .args(args)
            .arg(path)
            .args(rest)
            .output()
            .unwrap()
            .into()
    }

    /// Everything a workspace holds, for "nothing changed" checks.
    pub fn snapshot(&self) -> String {
        let list = self.run(&["env", "list", "--archived", "--json"]).success();
        let mut out = list.stdout.clone();
        for record in list.json().as_array().unwrap() {
            let name = record["name"].as_str().unwrap();
            out.push_str(
                &self
                    .run(&["env", "history", name, "--json"])
                    .success()
                    .stdout,
            );
        }
        out
    }
}

/// The uv the tests use: `$TERRARIUM_UV` (set by scripts/test-tools.sh) or `uv` on PATH. Tests
/// never download uv. Under CI a missing uv fails; elsewhere the test is skipped with a message.
pub fn uv_available() -> bool {
    let found = std::env::var_os("TERRARIUM_UV").is_some()
        || std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("uv").is_file()));
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "uv is needed: run scripts/test-tools.sh and set TERRARIUM_UV"
        );
        eprintln!("skipped: no uv (set TERRARIUM_UV, see scripts/test-tools.sh)");
    }
    found
}

/// Write pure-Python wheels into `dir` with tests/fixtures/make_wheel.py
/// (`alpha==1.0:beta>=2` means alpha 1.0 depends on beta>=2).
pub fn make_wheels(dir: &Path, specs: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_wheel.py");
    let status = Command::new("python3")
        .arg(script)
        .arg(dir)
        .args(specs)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "make_wheel.py failed");
}

pub const CONDA_ENV: &str = "\
name: demo
channels:
  - conda-forge
dependencies:
  - python=3.11
  - numpy=1.26
  - pip
  - pip:
      - scikit-learn==1.5.2
variables:
  OMP_NUM_THREADS: \"4\"
";
