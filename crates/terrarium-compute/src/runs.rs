//! A run that is a job on a compute target, kept in the workspace: submitted and recorded,
//! brought up to date from its engine when it is read, followed, cancelled.

use std::path::{Path, PathBuf};

use terrarium_store::{ComputeRecord, EngineJob, RunRecord, RunState, RunUpdate, Store};

use crate::{ComputeError, Engine, JobSpec, JobStatus, Kind, Target};

/// The target a stored record describes.
pub fn target(record: &ComputeRecord) -> Result<Target, ComputeError> {
    let target = Target {
        name: record.name.clone(),
        kind: record.kind.parse()?,
        options: record.options.clone(),
    };
    target.validate()?;
    Ok(target)
}

/// A job's log directory: `<logs>/<run id>`, from the target's `logs` option or `default`.
/// Built from the layout and the run's id (checked), never read from a record.
pub fn log_dir(target: &Target, default: &Path, run_id: &str) -> Result<PathBuf, ComputeError> {
    check_run_id(&target.name, run_id)?;
    let root = target
        .option("logs")
        .map_or(default.to_path_buf(), PathBuf::from);
    Ok(root.join(run_id))
}

/// A run id becomes a file name: it must be a plain one (letters, digits, `-`, `_`), whoever
/// recorded it. `target` names where it was read for, in the error.
pub fn check_run_id(target: &str, run_id: &str) -> Result<(), ComputeError> {
    let plain = !run_id.is_empty()
        && run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        Ok(())
    } else {
        Err(ComputeError::Answer {
            target: target.to_string(),
            request: "a run id".into(),
            reason: format!("`{}` is not one", run_id.escape_debug()),
        })
    }
}

/// Submit `job` and record its run, queued. A job the engine refuses leaves no run behind;
/// when the record cannot be written after the job was submitted, the job is cancelled.
pub fn submit(
    store: &dyn Store,
    target: &Target,
    engine: &dyn Engine,
    job: &JobSpec,
    mut run: RunRecord,
) -> Result<RunRecord, ComputeError> {
    // The engine checks the job at submit (sbatch refuses an unknown partition, say), before
    // anything is recorded; `compute add` and `compute show` ask it in full.
    let job_id = engine.submit(job)?;
    run.state = RunState::Queued;
    run.target = target.name.clone();
    run.job = Some(EngineJob {
        kind: target.kind.as_str().into(),
        job_id: job_id.clone(),
        nodes: job.resources.nodes,
        queued_at: run.started_at.clone(),
        node_list: None,
        reason: None,
        log_dir: Some(job.log_dir.display().to_string()),
    });
    if let Err(err) = store.create_run(&run) {
        let _ = engine.cancel_in(&job_id, &job.log_dir);
        return Err(err.into());
    }
    if let Err(err) = engine.recorded(&job_id, &job.log_dir) {
        // A job that cannot be told it is recorded does not start: the run has ended.
        let _ = engine.cancel_in(&job_id, &job.log_dir);
        let update = RunUpdate {
            state: RunState::Failed,
            started_at: None,
            finished_at: Some(terrarium_store::now()),
            exit_code: None,
            node_list: None,
            reason: Some(err.to_string()),
        };
        let _ = store.update_run(&run.id, &update);
        return Err(err);
    }
    Ok(run)
}

/// The run as its engine says it is now, recorded. A run that is not a job, or has ended, is
/// returned as it is. When the target is gone from the workspace, the run is lost. `runs_dir`
/// is the workspace's runs directory, where jobs keep their logs unless the target says.
pub fn refresh(
    store: &dyn Store,
    run: RunRecord,
    runs_dir: &Path,
) -> Result<RunRecord, ComputeError> {
    let Some(job) = run.job.clone() else {
        return Ok(run);
    };
    if run.state.is_final() {
        return Ok(run);
    }
    let status = match store.get_compute(&run.target) {
        Ok(record) => {
            let target = target(&record)?;
            let log_dir = log_dir(&target, runs_dir, &run.id)?;
            target.engine()?.status_in(&job.job_id, &log_dir)?
        }
        Err(terrarium_store::StoreError::NotFound(_)) => JobStatus {
            state: RunState::Lost,
            exit_code: None,
            started_at: None,
            finished_at: None,
            nodes: Vec::new(),
            reason: Some(format!(
                "the compute target `{}` was removed from the workspace",
                run.target
            )),
        },
        Err(err) => return Err(err.into()),
    };
    record(store, &run, &status)
}

/// Like [`refresh`], for a follower that asks again and again: while the engine does not
/// answer, the run stays as it is, until it has not answered for the target's `lost_after`;
/// then the run is recorded as lost, with what the engine last failed with as its reason.
/// `silent_since` is when the engine stopped answering this follower (kept between calls).
pub fn refresh_following(
    store: &dyn Store,
    run: RunRecord,
    runs_dir: &Path,
    silent_since: &mut Option<std::time::Instant>,
) -> Result<RunRecord, ComputeError> {
    let err = match refresh(store, run.clone(), runs_dir) {
        Ok(run) => {
            *silent_since = None;
            return Ok(run);
        }
        // Only silence counts: an engine that answers, even with a refusal (a bad token),
        // is not gone, and its error is shown as it is.
        Err(err @ (ComputeError::Unreachable { .. } | ComputeError::Silent { .. })) => err,
        Err(err) => return Err(err),
    };
    let since = *silent_since.get_or_insert_with(std::time::Instant::now);
    let lost_after = target(&store.get_compute(&run.target)?)?.lost_after();
    if since.elapsed() < lost_after {
        return Ok(run);
    }
    let status = JobStatus {
        state: RunState::Lost,
        exit_code: None,
        started_at: None,
        finished_at: None,
        nodes: Vec::new(),
        reason: Some(format!(
            "the engine did not answer for {} s: {err}",
            since.elapsed().as_secs()
        )),
    };
    record(store, &run, &status)
}

/// Record what the engine said, when it changes anything.
pub fn record(
    store: &dyn Store,
    run: &RunRecord,
    status: &JobStatus,
) -> Result<RunRecord, ComputeError> {
    let job = run.job.as_ref();
    let unchanged = status.state == run.state
        && status.reason == job.and_then(|j| j.reason.clone())
        && status
            .started_at
            .as_ref()
            .is_none_or(|s| *s == run.started_at);
    if unchanged {
        return Ok(run.clone());
    }
    let update = RunUpdate {
        state: status.state,
        started_at: status.started_at.clone(),
        finished_at: status
            .finished_at
            .clone()
            .or_else(|| status.state.is_final().then(terrarium_store::now)),
        exit_code: status.exit_code,
        node_list: (!status.nodes.is_empty()).then(|| status.nodes.join(",")),
        reason: status.reason.clone(),
    };
    match store.update_run(&run.id, &update) {
        Ok(run) => Ok(run),
        // Through a team server only the run's author or an admin records what the engine
        // says; anyone else is shown it, unrecorded.
        Err(terrarium_store::StoreError::Remote { status: 403, .. }) => {
            let mut shown = run.clone();
            shown.apply(&update);
            Ok(shown)
        }
        Err(err) => Err(err.into()),
    }
}

/// The kinds that take jobs, for help texts.
pub fn kinds() -> String {
    Kind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
