//! Against a real Ray head (`eval "$(scripts/ray.sh start DIR)"`, which `.ci/run` does):
//! submit, state, logs and stop through the Jobs API, the prefix check on the node, and the
//! check of the environment's `ray` against the cluster's. The head of scripts/ray.sh asks for a
//! token (`TERRARIUM_TEST_RAY_TOKEN_FILE`), so every request here carries one.

mod common;

use common::{logs, prefix, wait};

use std::path::Path;
use std::time::{Duration, Instant};

use terrarium_compute::{ComputeError, JobSpec, JobState, Kind, Prefix, Resources, Target};

fn address() -> Option<String> {
    let address = std::env::var("TERRARIUM_TEST_RAY_ADDRESS").ok();
    if address.is_none() {
        eprintln!("skipped: TERRARIUM_TEST_RAY_ADDRESS is not set (scripts/ray.sh start DIR)");
    }
    address
}

/// The head's token, when it has token authentication on.
fn token_file() -> Option<String> {
    std::env::var("TERRARIUM_TEST_RAY_TOKEN_FILE").ok()
}

fn target(address: &str) -> Target {
    let mut options: std::collections::BTreeMap<String, String> =
        [("address".to_string(), address.to_string())].into();
    if let Some(token) = token_file() {
        options.insert("token_file".into(), token);
    }
    Target {
        name: "test-ray".into(),
        kind: Kind::Ray,
        options,
    }
}

/// A job with a run id of its own: Ray keeps every submission id it was given.
fn job(dir: &Path, name: &str, command: &[&str], prefix: Option<Prefix>) -> JobSpec {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    JobSpec {
        run_id: format!("t{}-{nanos}-{name}", std::process::id()),
        environment: "test:1".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        env: vec![("TERRARIUM_TEST_SECRET".into(), "hunter2".into())],
        secret_names: vec!["TERRARIUM_TEST_SECRET".into()],
        cwd: dir.to_path_buf(),
        prefix,
        resources: Resources::parse(1, Some(1), None, Some("100M"), None).unwrap(),
        log_dir: dir.join(name),
        spark: Default::default(),
        image: None,
    }
}

#[test]
fn a_job_runs_in_its_prefix_and_its_exit_code_comes_back() {
    let Some(address) = address() else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = target(&address).engine().unwrap();
    let checked = engine.check().unwrap();
    assert!(checked.starts_with("ray 2."), "{checked}");

    let job = job(
        dir.path(),
        "fails",
        &[
            "/bin/sh",
            "-c",
            "echo \"secret=$TERRARIUM_TEST_SECRET prefix=$TERRARIUM_PREFIX pwd=$PWD\"; exit 3",
        ],
        Some(prefix(dir.path(), "sha256:aa")),
    );
    let started = Instant::now();
    let id = engine.submit(&job).unwrap();
    assert_eq!(id, format!("terrarium-{}", job.run_id));
    let status = wait(engine.as_ref(), &id);
    eprintln!("a failing job ended in {:?}", started.elapsed());
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    assert_eq!(status.exit_code, Some(3));
    assert_eq!(
        status.reason.as_deref(),
        Some("JOB_ENTRYPOINT_COMMAND_ERROR")
    );
    assert!(status.started_at.is_some() && status.finished_at.is_some());
    let logs = logs(engine.as_ref(), &job.log_dir);
    assert!(logs.starts_with("[task 0]\n"), "{logs}");
    assert!(
        logs.contains(&format!(
            "secret=hunter2 prefix={} pwd={}",
            dir.path().join("prefix").display(),
            dir.path().display()
        )),
        "{logs}"
    );
    // The variables went to Ray with the request; the record on disk holds none of them.
    let record = std::fs::read_to_string(job.log_dir.join("job.json")).unwrap();
    assert!(!record.contains("hunter2"), "{record}");
    assert!(record.contains("TERRARIUM_TEST_SECRET"), "{record}");

    let ok = JobSpec {
        run_id: format!("{}-ok", job.run_id),
        command: vec!["/bin/true".into()],
        log_dir: dir.path().join("ok"),
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
    let Some(address) = address() else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = target(&address).engine().unwrap();
    let mut wrong = prefix(dir.path(), "sha256:aa");
    wrong.lock_hash = "sha256:bb".into();
    let marker = dir.path().join("ran");
    let job = job(
        dir.path(),
        "wrong-prefix",
        &["/bin/touch", marker.to_str().unwrap()],
        Some(wrong),
    );
    let id = engine.submit(&job).unwrap();
    let status = wait(engine.as_ref(), &id);
    assert_eq!(status.state, JobState::Failed);
    assert_eq!(status.exit_code, Some(terrarium_compute::NO_PREFIX_EXIT));
    assert!(!marker.exists());
    let logs = logs(engine.as_ref(), &job.log_dir);
    assert!(
        logs.contains("does not see the environment test:1"),
        "{logs}"
    );
}

#[test]
fn a_stopped_job_is_cancelled() {
    let Some(address) = address() else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = target(&address).engine().unwrap();
    let job = job(
        dir.path(),
        "stopped",
        &["/bin/sh", "-c", "echo started; exec sleep 300"],
        Some(prefix(dir.path(), "sha256:aa")),
    );
    let id = engine.submit(&job).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !logs(engine.as_ref(), &job.log_dir).contains("started") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(engine.status(&id).unwrap().state, JobState::Running);
    let started = Instant::now();
    engine.cancel(&id).unwrap();
    let status = wait(engine.as_ref(), &id);
    eprintln!("stopped in {:?}: {status:?}", started.elapsed());
    assert_eq!(status.state, JobState::Cancelled);
    // Stopping a job that has ended is no error.
    engine.cancel(&id).unwrap();
}

#[test]
fn an_environment_with_another_ray_is_refused_at_submit() {
    let Some(address) = address() else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = target(&address).engine().unwrap();
    let prefix = prefix(dir.path(), "sha256:aa");
    let lock = |ray: &str| {
        format!(
            r#"{{"lock_version": 1, "kind": "resolved", "content_hash": "sha256:00", "tools": {{}},
                "platforms": {{"linux-64": {{"pypi": [
                    {{"name": "ray", "version": "{ray}", "url": "file:///ray.whl", "sha256": "00"}}]}}}}}}"#
        )
    };
    std::fs::write(prefix.path.join(".terrarium/lock.json"), lock("0.0.1")).unwrap();
    let marker = dir.path().join("ran");
    let job = job(
        dir.path(),
        "other-ray",
        &["/bin/touch", marker.to_str().unwrap()],
        Some(prefix.clone()),
    );
    let err = engine.submit(&job).unwrap_err();
    assert!(matches!(err, ComputeError::RayVersion { .. }), "{err:?}");
    assert!(err.is_user_error());
    let text = err.to_string();
    let cluster = engine.check().unwrap();
    let cluster = cluster
        .strip_prefix("ray ")
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    assert!(
        text.contains(&format!("runs ray {cluster}")) && text.contains("holds ray 0.0.1"),
        "{text}"
    );
    // Nothing was submitted.
    assert_eq!(
        engine
            .status(&format!("terrarium-{}", job.run_id))
            .unwrap()
            .state,
        JobState::Lost
    );

    // The cluster's own version passes. An environment that holds ray runs the job's Ray
    // workers (the job's supervisor among them) in its own Python, which must hold that ray:
    // here the cluster's own.
    std::fs::write(prefix.path.join(".terrarium/lock.json"), lock(cluster)).unwrap();
    let Ok(python) = std::env::var("TERRARIUM_TEST_RAY_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "scripts/ray.sh exports TERRARIUM_TEST_RAY_PYTHON"
        );
        eprintln!("stopped early: TERRARIUM_TEST_RAY_PYTHON is not set (scripts/ray.sh start DIR)");
        return;
    };
    // A script, not a link: a venv's Python finds its packages from where it is started.
    std::fs::create_dir_all(prefix.path.join("bin")).unwrap();
    let wrapper = prefix.path.join("bin/python");
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec {python} \"$@\"\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let job = JobSpec {
        run_id: format!("{}-same", job.run_id),
        ..job
    };
    let id = engine.submit(&job).unwrap();
    assert_eq!(wait(engine.as_ref(), &id).state, JobState::Completed);
    assert!(marker.exists());
}

#[test]
fn an_unknown_job_is_lost() {
    let Some(address) = address() else { return };
    let status = target(&address)
        .engine()
        .unwrap()
        .status("terrarium-never-submitted")
        .unwrap();
    assert_eq!(status.state, JobState::Lost);
    let dir = tempfile::tempdir().unwrap();
    assert!(target(&address)
        .engine()
        .unwrap()
        .logs(dir.path())
        .unwrap()
        .is_empty());
}

#[test]
fn a_cluster_with_tokens_refuses_requests_without_one() {
    let Some(address) = address() else { return };
    if token_file().is_none() {
        eprintln!("skipped: the head has no token (TERRARIUM_TEST_RAY_TOKEN_FILE is not set)");
        return;
    }
    let mut target = target(&address);
    target.options.remove("token_file");
    let err = target.engine().unwrap().check().unwrap_err().to_string();
    assert!(
        err.contains("`test-ray`") && err.contains("401") && err.contains("option `token_file`"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("token");
    std::fs::write(&wrong, "0000").unwrap();
    target
        .options
        .insert("token_file".into(), wrong.display().to_string());
    let err = target.engine().unwrap().check().unwrap_err().to_string();
    assert!(err.contains("403"), "{err}");
}

/// Needs no cluster: an address where nothing listens fails at once, naming the target and
/// the option.
#[test]
fn an_unreachable_address_fails_fast_and_says_where() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let address = format!("http://127.0.0.1:{port}");
    let engine = target(&address).engine().unwrap();
    let started = Instant::now();
    let err = engine.check().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(6), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("`test-ray`")
            && text.contains("option `address`")
            && text.contains(&address)
            && text.contains("connection refused"),
        "{text}"
    );
    assert!(engine.status("terrarium-x").is_err());
}
