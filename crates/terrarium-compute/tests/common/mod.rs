//! What the engine tests share: a stand-in prefix, waiting for a job's end, its logs.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use terrarium_compute::{Engine, JobStatus, Prefix};

/// A stand-in for a built environment: a prefix whose marker names `hash`.
pub fn prefix(dir: &Path, hash: &str) -> Prefix {
    let path = dir.join("prefix");
    std::fs::create_dir_all(path.join(".terrarium")).unwrap();
    std::fs::write(
        path.join(".terrarium/env.json"),
        format!("{{\"lock_hash\": \"{hash}\"}}"),
    )
    .unwrap();
    let in_use = dir.join("prefix.lock");
    std::fs::write(&in_use, "").unwrap();
    Prefix {
        path,
        lock_hash: hash.into(),
        in_use,
        source: None,
    }
}

pub fn wait(engine: &dyn Engine, id: &str) -> JobStatus {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = engine.status(id).unwrap();
        if status.state.is_final() {
            return status;
        }
        assert!(Instant::now() < deadline, "job {id} still {status:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn logs(engine: &dyn Engine, log_dir: &Path) -> String {
    engine
        .logs(log_dir)
        .unwrap()
        .iter()
        .map(|log| {
            format!(
                "[{}]\n{}",
                log.task,
                std::fs::read_to_string(&log.path).unwrap_or_default()
            )
        })
        .collect()
}
