//! Against a real Slurm cluster (`eval "$(scripts/slurm.sh start DIR)"`, which `.ci/run` does):
//! submit, state, logs and cancel through the engine, and the prefix check on the node.

mod common;

use common::{logs, prefix, wait};

use std::path::Path;
use std::time::{Duration, Instant};

use terrarium_compute::{JobSpec, JobState, Kind, Prefix, Resources, Target};

fn conf() -> Option<String> {
    let conf = std::env::var("TERRARIUM_TEST_SLURM_CONF").ok();
    if conf.is_none() {
        eprintln!("skipped: TERRARIUM_TEST_SLURM_CONF is not set (scripts/slurm.sh start DIR)");
    }
    conf
}

fn target(conf: &str, extra: &[(&str, &str)]) -> Target {
    let mut options: std::collections::BTreeMap<String, String> =
        [("conf".to_string(), conf.to_string())].into();
    for (k, v) in extra {
        options.insert(k.to_string(), v.to_string());
    }
    Target {
        name: "test-slurm".into(),
        kind: Kind::Slurm,
        options,
    }
}

fn job(dir: &Path, command: &[&str], prefix: Option<Prefix>) -> JobSpec {
    JobSpec {
        run_id: format!("t{}", std::process::id()),
        environment: "test:1".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        env: vec![("TERRARIUM_TEST_SECRET".into(), "hunter2".into())],
        secret_names: vec!["TERRARIUM_TEST_SECRET".into()],
        cwd: dir.to_path_buf(),
        prefix,
        resources: Resources::parse(1, Some(1), None, Some("100M"), None).unwrap(),
        log_dir: dir.join("logs"),
        spark: Default::default(),
        image: None,
    }
}

#[test]
fn a_job_runs_in_its_prefix_and_its_exit_code_comes_back() {
    let Some(conf) = conf() else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = target(&conf, &[("partition", "debug")]).engine().unwrap();
    assert!(engine.check().unwrap().contains("debug"));

    let job = job(
        dir.path(),
        &[
            "/bin/sh",
            "-c",
            "echo \"secret=$TERRARIUM_TEST_SECRET prefix=$TERRARIUM_PREFIX\"; exit 3",
        ],
        Some(prefix(dir.path(), "sha256:aa")),
    );
    let id = engine.submit(&job).unwrap();
    let status = wait(engine.as_ref(), &id);
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    assert_eq!(status.exit_code, Some(3));
    assert!(status.finished_at.is_some());
    let logs = logs(engine.as_ref(), &dir.path().join("logs"));
    assert!(logs.contains("[task 0]"), "{logs}");
    assert!(
        logs.contains(&format!(
            "secret=hunter2 prefix={}",
            dir.path().join("prefix").display()
        )),
        "{logs}"
    );
    // The variables reach the job through sbatch's environment, never the script on disk.
    let script = std::fs::read_to_string(dir.path().join("logs/job.sh")).unwrap();
    assert!(!script.contains("hunter2"), "{script}");

    let ok = JobSpec {
        run_id: format!("{}-ok", job.run_id),
        command: vec!["/bin/true".into()],
        log_dir: dir.path().join("logs-ok"),
        spark: Default::default(),
        image: None,
        ..job
    };
    let id = engine.submit(&ok).unwrap();
    let status = wait(engine.as_ref(), &id);
    assert_eq!(
        (status.state, status.exit_code),
        (JobState::Completed, Some(0))
    );
}

#[test]
fn a_node_without_the_locked_prefix_runs_nothing() {
    let Some(conf) = conf() else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = target(&conf, &[]).engine().unwrap();
    let mut wrong = prefix(dir.path(), "sha256:aa");
    wrong.lock_hash = "sha256:bb".into();
    let marker = dir.path().join("ran");
    let job = job(
        dir.path(),
        &["/bin/touch", marker.to_str().unwrap()],
        Some(wrong),
    );
    let id = engine.submit(&job).unwrap();
    let status = wait(engine.as_ref(), &id);
    assert_eq!(status.state, JobState::Failed);
    assert_eq!(
        status.exit_code,
        Some(terrarium_compute::slurm::NO_PREFIX_EXIT)
    );
    assert!(!marker.exists());
    let logs = logs(engine.as_ref(), &dir.path().join("logs"));
    assert!(
        logs.contains("does not see the environment test:1"),
        "{logs}"
    );
}

#[test]
fn a_cancelled_job_is_cancelled() {
    let Some(conf) = conf() else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = target(&conf, &[]).engine().unwrap();
    let job = job(dir.path(), &["/bin/sleep", "300"], None);
    let id = engine.submit(&job).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.status(&id).unwrap().state != JobState::Running {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    engine.cancel(&id).unwrap();
    assert_eq!(wait(engine.as_ref(), &id).state, JobState::Cancelled);
}

#[test]
fn a_target_that_cannot_take_jobs_says_why() {
    let Some(conf) = conf() else { return };
    let err = target(&conf, &[("partition", "gpu")])
        .engine()
        .unwrap()
        .check()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`test-slurm`") && err.contains("no partition `gpu`") && err.contains("debug"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("slurm.conf");
    let err = target(missing.to_str().unwrap(), &[])
        .engine()
        .unwrap()
        .check()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("option `conf`") && err.contains("is not a file"),
        "{err}"
    );
    // A job the controller never had is lost, not running.
    let status = target(&conf, &[])
        .engine()
        .unwrap()
        .status("999999")
        .unwrap();
    assert_eq!(status.state, JobState::Lost);
}

#[test]
fn a_time_limit_gives_timed_out() {
    let Some(conf) = conf() else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = target(&conf, &[]).engine().unwrap();
    let mut job = job(dir.path(), &["/bin/sleep", "600"], None);
    // Slurm's smallest limit is a minute; it ends the job about then.
    job.resources.time_seconds = Some(60);
    let id = engine.submit(&job).unwrap();
    let status = wait(engine.as_ref(), &id);
    assert_eq!(status.state, JobState::TimedOut, "{status:?}");
    assert_eq!(status.reason.as_deref(), Some("TimeLimit"));
}

/// A cluster of its own (its node is killed): `scripts/slurm.sh` with a node timeout of 5 s
/// and no requeue, so that the node's death ends the job.
struct OwnCluster {
    dir: tempfile::TempDir,
    conf: String,
}

impl OwnCluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/slurm.sh");
        let out = std::process::Command::new(&script)
            .args(["start", dir.path().join("slurm").to_str().unwrap()])
            .env("SLURMD_TIMEOUT", "5")
            .env("JOB_REQUEUE", "0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = dir.path().join("slurm/slurm.conf").display().to_string();
        Self { dir, conf }
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/slurm.sh");
        let _ = std::process::Command::new(script)
            .args(["stop", self.dir.path().join("slurm").to_str().unwrap()])
            .output();
    }
}

#[test]
fn a_node_that_dies_mid_job_gives_node_failed() {
    if conf().is_none() {
        return;
    }
    let cluster = OwnCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = target(&cluster.conf, &[]).engine().unwrap();
    let job = job(dir.path(), &["/bin/sleep", "90"], None);
    let id = engine.submit(&job).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.status(&id).unwrap().state != JobState::Running {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    // The node dies: its slurmd, and the job's step daemon with everything under it (a
    // slurmd killed alone leaves the step running, and it reports the job itself).
    let pid = std::fs::read_to_string(cluster.dir.path().join("slurm/slurmd.pid")).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    let step = std::process::Command::new("pkill")
        .args(["-KILL", "-f", &format!("^slurmstepd: \\[{id}\\.")])
        .status()
        .unwrap();
    assert!(step.success(), "no step daemon of job {id}");
    let status = wait(engine.as_ref(), &id);
    assert_eq!(status.state, JobState::NodeFailed, "{status:?}");
}
