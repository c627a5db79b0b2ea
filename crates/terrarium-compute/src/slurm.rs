//! Slurm: a generated batch script submitted with `sbatch`, one task per node through `srun`;
//! state from `scontrol show job`, cancel with `scancel`.
//!
//! The batch script holds no variable values: they reach the job through `sbatch`'s own
//! environment (`--export=ALL`), so a secret is never written to a file by us. Each task checks,
//! on its node, that the environment's prefix is the one the lock names before it runs.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::resources::slurm_time;
use crate::{
    shell_quote, ComputeError, Engine, JobSpec, JobState, JobStatus, OptionSpec, Target, TaskLog,
};

/// How long a Slurm client command may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit code of a task whose node lacks the environment's prefix.
pub const NO_PREFIX_EXIT: i32 = crate::NO_PREFIX_EXIT;

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "partition",
        help: "the partition jobs go to (default: the cluster's default partition)",
        required: false,
        check: check_word,
    },
    OptionSpec {
        key: "account",
        help: "the account jobs are charged to",
        required: false,
        check: check_word,
    },
    OptionSpec {
        key: "qos",
        help: "the quality of service jobs ask for",
        required: false,
        check: check_word,
    },
    OptionSpec {
        key: "time",
        help: "the default time limit, when `run --time` is not given (90m, 2h, 1-00:00:00)",
        required: false,
        check: |v| crate::resources::parse_duration(v).map(|_| ()),
    },
    OptionSpec {
        key: "conf",
        help: "the Slurm configuration file the client commands read (as SLURM_CONF)",
        required: false,
        check: crate::check_absolute,
    },
    OptionSpec {
        key: "logs",
        help: "where jobs write their logs, one directory per run, on a filesystem every node and this machine see (default: the workspace's runs directory)",
        required: false,
        check: crate::check_absolute,
    },
    OptionSpec {
        key: "cache",
        help: "where environments are built (delivery=shared) or packed (delivery=pack), on a filesystem every node sees (default: this machine's Terrarium cache)",
        required: false,
        check: crate::check_absolute,
    },
    crate::delivery::DELIVERY,
    crate::delivery::NODE_CACHE,
    crate::delivery::PACK_REGISTRY,
    crate::delivery::PACK_SERVER,
    crate::delivery::PACK_LINK_LIFETIME,
    crate::delivery::TERRARIUM,
    crate::delivery::LOST_AFTER,
];

fn check_word(value: &str) -> Result<(), String> {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "`{}` must be letters, digits, `-`, `_` or `.`",
            value.escape_debug()
        ))
    }
}

pub struct Slurm {
    target: Target,
}

impl Slurm {
    pub fn new(target: Target) -> Self {
        Self { target }
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        if let Some(conf) = self.target.option("conf") {
            command.env("SLURM_CONF", conf);
        }
        command
    }

    /// Run a client command to its end, for at most [`CLIENT_TIMEOUT`]: Slurm's clients retry
    /// an unreachable controller (or a missing configuration file) for a minute or more.
    fn output(&self, mut command: Command, program: &str) -> Result<Output, ComputeError> {
        if let Some(conf) = self.target.option("conf") {
            if !Path::new(conf).is_file() {
                return Err(ComputeError::Option {
                    target: self.target.name.clone(),
                    option: "conf".into(),
                    reason: format!("{conf} is not a file"),
                });
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::NotFound => ComputeError::MissingProgram {
                    target: self.target.name.clone(),
                    program: program.into(),
                },
                _ => ComputeError::Engine {
                    target: self.target.name.clone(),
                    message: format!("cannot run `{program}`: {err}"),
                },
            })?;
        let read = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = read(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = read(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ComputeError::Silent {
                        target: self.target.name.clone(),
                        program: program.into(),
                        seconds: CLIENT_TIMEOUT.as_secs(),
                    });
                }
                Err(err) => {
                    return Err(ComputeError::Engine {
                        target: self.target.name.clone(),
                        message: format!("cannot wait for `{program}`: {err}"),
                    })
                }
            }
        };
        Ok(Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }

    fn refused(&self, program: &str, output: &Output) -> ComputeError {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        ComputeError::Engine {
            target: self.target.name.clone(),
            message: format!(
                "`{program}` failed ({}){}",
                output.status,
                if stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {stderr}")
                }
            ),
        }
    }

    /// The batch script itself.
    fn script(&self, job: &JobSpec) -> Result<String, ComputeError> {
        if job.command.is_empty() {
            return Err(ComputeError::Resources {
                what: "command",
                reason: "nothing to run".into(),
            });
        }
        let r = &job.resources;
        let mut s = String::from("#!/bin/bash\n");
        let mut directive = |text: String| {
            let _ = writeln!(s, "#SBATCH {text}");
        };
        directive(format!("--nodes={}", r.nodes));
        directive("--ntasks-per-node=1".into());
        if let Some(cpus) = r.cpus {
            directive(format!("--cpus-per-task={cpus}"));
        }
        if let Some(gpus) = r.gpus {
            directive(format!("--gres=gpu:{gpus}"));
        }
        if let Some(mib) = r.memory_mib {
            directive(format!("--mem={mib}M"));
        }
        let time = match (r.time_seconds, self.target.option("time")) {
            (Some(seconds), _) => Some(seconds),
            (None, Some(default)) => {
                Some(crate::resources::parse_duration(default).map_err(|reason| {
                    ComputeError::Option {
                        target: self.target.name.clone(),
                        option: "time".into(),
                        reason,
                    }
                })?)
            }
            (None, None) => None,
        };
        if let Some(seconds) = time {
            directive(format!("--time={}", slurm_time(seconds)));
        }
        for key in ["partition", "account", "qos"] {
            if let Some(value) = self.target.option(key) {
                directive(format!("--{key}={value}"));
            }
        }
        let _ = writeln!(
            s,
            "# terrarium run {}: {}",
            job.run_id,
            job.environment.replace('\n', " ")
        );
        s.push_str("set -u\n");
        // One task per node through `srun`; on one node the batch step is the task (a step
        // costs its launch, about a tenth of a second), its output the task's log.
        let task_log = job.log_dir.join("task-%t.log");
        let mut srun: Vec<String> = if job.resources.nodes > 1 {
            vec![
                "srun".to_string(),
                "--kill-on-bad-exit=1".into(),
                format!("--output={}", task_log.display()),
            ]
        } else {
            Vec::new()
        };
        match &job.prefix {
            Some(prefix) => {
                let _ = writeln!(
                    s,
                    "export TERRARIUM_PREFIX={} TERRARIUM_LOCK_HASH={}",
                    shell_quote(&prefix.path.display().to_string()),
                    shell_quote(&prefix.lock_hash)
                );
                // On every node: the prefix must be the lock's (built there first from the
                // pack, with delivery=pack), or nothing runs.
                let script = crate::delivery::task_script(
                    &job.environment,
                    &prefix.in_use,
                    prefix.source.as_ref(),
                );
                srun.extend([
                    "/bin/bash".into(),
                    "-c".into(),
                    script,
                    "terrarium-task".into(),
                ]);
                srun.extend(job.command.iter().cloned());
                let quoted: Vec<String> = srun.iter().map(|a| shell_quote(a)).collect();
                let _ = writeln!(s, "exec {}", quoted.join(" "));
            }
            None => {
                srun.extend(job.command.iter().cloned());
                let quoted: Vec<String> = srun.iter().map(|a| shell_quote(a)).collect();
                let _ = writeln!(s, "exec {}", quoted.join(" "));
            }
        }
        Ok(s)
    }

    /// The `sbatch` arguments, before the script's path.
    fn sbatch_args(&self, job: &JobSpec) -> Vec<String> {
        vec![
            "--parsable".into(),
            format!("--job-name=terrarium-{}", job.run_id),
            format!("--chdir={}", job.cwd.display()),
            format!(
                "--output={}",
                job.log_dir
                    .join(if job.resources.nodes > 1 {
                        "batch.log"
                    } else {
                        "task-0.log"
                    })
                    .display()
            ),
            "--export=ALL".into(),
            // A run is one attempt: a job whose node fails ends NODE_FAIL (`node_failed`)
            // rather than going back to the queue, as it would on a cluster with Slurm's
            // default JobRequeue=1, to wait there for as many nodes again and run a second time.
            "--no-requeue".into(),
        ]
    }
}

impl Engine for Slurm {
    fn check(&self) -> Result<String, ComputeError> {
        let mut command = self.command("sinfo");
        command.args(["--noheader", "--format=%P %a"]);
        let output = self.output(command, "sinfo")?;
        if !output.status.success() {
            return Err(self.refused("sinfo", &output));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let partitions: Vec<(String, String)> = text
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(p, a)| (p.trim_end_matches('*').to_string(), a.trim().to_string()))
            .collect();
        if let Some(wanted) = self.target.option("partition") {
            match partitions.iter().find(|(p, _)| p == wanted) {
                None => {
                    return Err(ComputeError::Option {
                        target: self.target.name.clone(),
                        option: "partition".into(),
                        reason: format!(
                            "the cluster has no partition `{wanted}` (it has: {})",
                            partitions
                                .iter()
                                .map(|(p, _)| p.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })
                }
                Some((_, avail)) if avail != "up" => {
                    return Err(ComputeError::Engine {
                        target: self.target.name.clone(),
                        message: format!("partition `{wanted}` is {avail}, not up"),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(format!(
            "slurm, partitions: {}",
            partitions
                .iter()
                .map(|(p, a)| format!("{p} ({a})"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    fn render(&self, job: &JobSpec) -> Result<String, ComputeError> {
        let script = self.script(job)?;
        // What the dry run shows of the submission itself: the command line and the names
        // (not the values) of the variables.
        let mut shown = String::new();
        let mut line = vec!["sbatch".to_string()];
        line.extend(self.sbatch_args(job));
        line.push(job.log_dir.join("job.sh").display().to_string());
        let _ = writeln!(
            shown,
            "# {}",
            line.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let names = job.variable_names();
        if !names.is_empty() {
            let _ = writeln!(
                shown,
                "# with these variables from sbatch's environment: {}",
                names.join(", ")
            );
        }
        Ok(format!("{shown}{script}"))
    }

    fn submit(&self, job: &JobSpec) -> Result<String, ComputeError> {
        let script = self.script(job)?;
        std::fs::create_dir_all(&job.log_dir)
            .map_err(|e| ComputeError::io(&job.log_dir, "create", e))?;
        let path = job.log_dir.join("job.sh");
        std::fs::write(&path, script).map_err(|e| ComputeError::io(&path, "write", e))?;
        let mut command = self.command("sbatch");
        command.args(self.sbatch_args(job)).arg(&path);
        // `--export=ALL` hands the job this process's variables: not its credentials.
        crate::scrub_credentials(&mut command);
        command.envs(job.env.iter().map(|(k, v)| (k, v)));
        let output = self.output(command, "sbatch")?;
        if !output.status.success() {
            return Err(self.refused("sbatch", &output));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        // `--parsable` prints `ID` or `ID;CLUSTER`.
        let id = text.trim().split(';').next().unwrap_or_default();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ComputeError::Answer {
                target: self.target.name.clone(),
                request: "sbatch".into(),
                reason: format!("expected a job id, got `{}`", text.trim().escape_debug()),
            });
        }
        Ok(id.to_string())
    }

    fn status(&self, job_id: &str) -> Result<JobStatus, ComputeError> {
        check_job_id(&self.target, job_id)?;
        let mut command = self.command("scontrol");
        command.args(["show", "job", "--oneliner", job_id]);
        let output = self.output(command, "scontrol")?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            if stderr.contains("Invalid job id") {
                // The controller has forgotten it (MinJobAge passed, or its state was lost).
                return Ok(JobStatus {
                    state: JobState::Lost,
                    exit_code: None,
                    started_at: None,
                    finished_at: None,
                    nodes: Vec::new(),
                    reason: Some("Slurm no longer knows this job".into()),
                });
            }
            return Err(self.refused("scontrol", &output));
        }
        parse_job(&String::from_utf8_lossy(&output.stdout)).map_err(|reason| ComputeError::Answer {
            target: self.target.name.clone(),
            request: format!("scontrol show job {job_id}"),
            reason,
        })
    }

    fn logs(&self, log_dir: &Path) -> Result<Vec<TaskLog>, ComputeError> {
        task_logs(log_dir)
    }

    fn cancel(&self, job_id: &str) -> Result<(), ComputeError> {
        check_job_id(&self.target, job_id)?;
        let mut command = self.command("scancel");
        command.arg(job_id);
        let output = self.output(command, "scancel")?;
        if !output.status.success() {
            return Err(self.refused("scancel", &output));
        }
        Ok(())
    }
}

fn check_job_id(target: &Target, job_id: &str) -> Result<(), ComputeError> {
    if !job_id.is_empty() && job_id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ComputeError::Answer {
            target: target.name.clone(),
            request: "a Slurm job id".into(),
            reason: format!("`{}` is not one", job_id.escape_debug()),
        })
    }
}

/// The batch log, then each task's, in task order.
pub fn task_logs(log_dir: &Path) -> Result<Vec<TaskLog>, ComputeError> {
    let mut logs = Vec::new();
    let batch = log_dir.join("batch.log");
    if batch.is_file() {
        logs.push(TaskLog {
            task: "batch".into(),
            path: batch,
        });
    }
    let entries = match std::fs::read_dir(log_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(logs),
        Err(err) => return Err(ComputeError::io(log_dir, "read", err)),
    };
    let mut tasks: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let n = name
                .strip_prefix("task-")?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((n, entry.path()))
        })
        .collect();
    tasks.sort();
    logs.extend(tasks.into_iter().map(|(n, path)| TaskLog {
        task: format!("task {n}"),
        path,
    }));
    Ok(logs)
}

/// `scontrol show job --oneliner` output: `Key=Value` pairs separated by spaces.
pub fn parse_job(text: &str) -> Result<JobStatus, String> {
    let field = |key: &str| -> Option<&str> {
        text.split_whitespace()
            .find_map(|token| token.strip_prefix(key)?.strip_prefix('='))
    };
    let raw_state = field("JobState").ok_or("no JobState")?;
    let state = match raw_state {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED"
        | "RESV_DEL_HOLD" | "SUSPENDED" => JobState::Queued,
        "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" | "RESIZING" => JobState::Running,
        "COMPLETED" => JobState::Completed,
        "CANCELLED" => JobState::Cancelled,
        "TIMEOUT" | "DEADLINE" => JobState::TimedOut,
        "NODE_FAIL" | "BOOT_FAIL" => JobState::NodeFailed,
        "FAILED" | "OUT_OF_MEMORY" | "PREEMPTED" | "SPECIAL_EXIT" | "REVOKED" => JobState::Failed,
        other => return Err(format!("unknown JobState `{}`", other.escape_debug())),
    };
    let exit_code = if state.is_final() {
        field("ExitCode").and_then(parse_exit_code)
    } else {
        None
    };
    let time = |key: &str| {
        field(key)
            .filter(|v| !matches!(*v, "Unknown" | "None" | "N/A"))
            .map(str::to_string)
    };
    let nodes = field("NodeList")
        .filter(|v| *v != "(null)")
        .map(|v| vec![v.to_string()])
        .unwrap_or_default();
    let reason = field("Reason").filter(|v| *v != "None").map(str::to_string);
    Ok(JobStatus {
        state,
        exit_code,
        started_at: if state == JobState::Queued {
            None
        } else {
            time("StartTime")
        },
        finished_at: if state.is_final() {
            time("EndTime")
        } else {
            None
        },
        nodes,
        reason,
    })
}

/// Slurm's `CODE:SIGNAL`: the code, or 128 + the signal when a signal ended it.
fn parse_exit_code(text: &str) -> Option<i32> {
    let (code, signal) = text.split_once(':')?;
    let code: i32 = code.parse().ok()?;
    let signal: i32 = signal.parse().ok()?;
    Some(if signal > 0 { 128 + signal } else { code })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Kind, Prefix, Resources};

    fn target(options: &[(&str, &str)]) -> Target {
        Target {
            name: "hpc".into(),
            kind: Kind::Slurm,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn job() -> JobSpec {
        JobSpec {
            run_id: "20261202T000000-abcdef".into(),
            environment: "sklearn:3".into(),
            command: vec![
                "python".into(),
                "train.py".into(),
                "--lr".into(),
                "0.1 0.2".into(),
            ],
            env: vec![
                ("TOKEN".into(), "s3cr3t".into()),
                ("OMP".into(), "2".into()),
            ],
            secret_names: vec!["TOKEN".into()],
            cwd: "/work/project".into(),
            prefix: Some(Prefix {
                path: "/shared/envs/abc".into(),
                lock_hash: "sha256:00ff".into(),
                in_use: "/shared/envs/abc.lock".into(),
                source: None,
            }),
            resources: Resources::parse(2, Some(4), Some(1), Some("8G"), Some("2h")).unwrap(),
            log_dir: "/shared/runs/20261202T000000-abcdef".into(),
            spark: Default::default(),
            image: None,
        }
    }

    #[test]
    fn the_script_asks_for_what_the_run_asked_and_holds_no_values() {
        let slurm = Slurm::new(target(&[("partition", "gpu"), ("qos", "high")]));
        let script = slurm.render(&job()).unwrap();
        for expected in [
            "#SBATCH --nodes=2",
            "#SBATCH --ntasks-per-node=1",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --mem=8192M",
            "#SBATCH --time=0-02:00:00",
            "#SBATCH --partition=gpu",
            "#SBATCH --qos=high",
            "TOKEN (secret), OMP",
            "exec srun --kill-on-bad-exit=1",
            " --no-requeue ",
            "exec flock --shared /shared/envs/abc.lock /bin/bash -c ",
            "'0.1 0.2'",
        ] {
            assert!(script.contains(expected), "{expected} in:\n{script}");
        }
        assert!(!script.contains("s3cr3t"), "{script}");
    }

    #[test]
    fn the_default_time_limit_applies_when_the_run_sets_none() {
        let slurm = Slurm::new(target(&[("time", "90m")]));
        let mut job = job();
        job.resources.time_seconds = None;
        assert!(slurm.render(&job).unwrap().contains("--time=0-01:30:00"));
    }

    #[test]
    fn states_from_scontrol() {
        let line = "JobId=5 JobName=x UserId=root(0) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0 StartTime=2026-12-02T07:00:01 EndTime=2026-12-02T07:00:02 NodeList=localhost";
        let status = parse_job(line).unwrap();
        assert_eq!(status.state, JobState::Failed);
        assert_eq!(status.exit_code, Some(3));
        assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
        assert_eq!(status.nodes, vec!["localhost".to_string()]);
        let timeout = parse_job("JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15").unwrap();
        assert_eq!(
            (timeout.state, timeout.exit_code),
            (JobState::TimedOut, Some(143))
        );
        let pending =
            parse_job("JobState=PENDING Reason=Priority ExitCode=0:0 StartTime=Unknown").unwrap();
        assert_eq!((pending.state, pending.exit_code), (JobState::Queued, None));
        assert_eq!(pending.started_at, None);
        assert_eq!(
            parse_job("JobState=NODE_FAIL ExitCode=0:0").unwrap().state,
            JobState::NodeFailed
        );
        assert!(parse_job("JobState=WHAT").is_err());
        assert!(parse_job("nothing").is_err());
    }

    #[test]
    fn job_ids_are_numbers() {
        let slurm = Slurm::new(target(&[]));
        assert!(slurm.cancel("1; rm -rf /").is_err());
        assert!(slurm.status("").is_err());
    }

    #[test]
    fn options_are_checked() {
        assert!(target(&[("partition", "gpu;x")]).validate().is_err());
        assert!(target(&[("conf", "relative/slurm.conf")])
            .validate()
            .is_err());
        assert!(target(&[("time", "forever")]).validate().is_err());
        assert!(
            target(&[("partition", "debug"), ("conf", "/etc/slurm/slurm.conf")])
                .validate()
                .is_ok()
        );
    }
}
