//! Spark: `spark-submit` from the environment itself, in client mode, against the target's
//! master (`local[N]`, or a standalone `spark://host:port`).
//!
//! In client mode the driver is the `spark-submit` process, and it runs on this machine (a
//! standalone master refuses cluster mode for Python applications). Terrarium starts it
//! detached, in its own process group, and keeps the job's record beside its log: `driver.log`
//! (its output), `driver.pid`, `exit_code` once it has ended, and `cancelled` when it was
//! cancelled. The job id is the driver's process id; a driver that is gone without an exit
//! code is lost. The driver and every executor run the environment's own Python
//! (`PYSPARK_PYTHON`, `spark.pyspark.python`), whose prefix must be where executors see it:
//! this machine for `local[N]`, a filesystem the workers share for a standalone master.
//!
//! With `delivery=pack` no filesystem need be shared: the driver builds the environment from
//! the lock's pack into this machine's node cache, and Spark itself ships the pack, with the
//! `terrarium` (and `uv`) that install it and a small `terrarium-python` script, to every
//! executor (`--files`, served by the driver). An executor's Python is that script: it builds
//! the environment from the pack into its node's cache once per node and lock, checks it, and
//! runs the prefix's Python.
//!
//! The definition's `spark.packages` and `spark.repositories` become `--packages` and
//! `--repositories`; `spark.precache` (resolve them when the image is built) is for images and
//! ignored here, and the dry run says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{
    shell_quote, ComputeError, Engine, JobSpec, JobState, JobStatus, OptionSpec, Target, TaskLog,
};

/// The driver's output, in the run's log directory.
pub const DRIVER_LOG: &str = "driver.log";
const DRIVER_PID: &str = "driver.pid";
const EXIT_CODE: &str = "exit_code";
const CANCELLED: &str = "cancelled";
/// The handshake between the submitter and the driver's wrapper: `waiting` is written before
/// the driver is started; the submitter renames it to `recorded` once the run is recorded, and
/// the wrapper starts `spark-submit` only then. A wrapper that waited [`RECORD_WAIT_SECONDS`]
/// renames it to `abandoned` instead and starts nothing; whichever rename comes first wins.
const WAITING: &str = "waiting";
const RECORDED: &str = "recorded";
const ABANDONED: &str = "abandoned";
/// How long a driver waits for its run to be recorded.
const RECORD_WAIT_SECONDS: u32 = 60;
/// The exit code of a driver whose run was never recorded: nothing was started.
pub const NOT_RECORDED_EXIT: i32 = 125;
/// The executor logs copied from the workers, by task name and file name.
const EXECUTORS: &str = "executors.json";
/// At most this much of each executor log is copied.
const MAX_EXECUTOR_LOG: u64 = 16 << 20;

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "master",
        help: "the Spark master: local, local[N], local[*] or spark://HOST:PORT (a standalone cluster)",
        required: true,
        check: check_master,
    },
    OptionSpec {
        key: "executor_memory",
        help: "memory per executor, as Spark writes it (512m, 2g); `run --memory` overrides it",
        required: false,
        check: check_memory,
    },
    OptionSpec {
        key: "executor_cores",
        help: "cores per executor; `run --cpus` overrides it",
        required: false,
        check: |v| {
            v.parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(|_| ())
                .ok_or_else(|| format!("`{}` is not a positive number", v.escape_debug()))
        },
    },
    OptionSpec {
        key: "conf",
        help: "more Spark properties, `key=value` pairs separated by `;` (spark.sql.shuffle.partitions=8;spark.ui.enabled=false)",
        required: false,
        check: |v| parse_conf(v).map(|_| ()),
    },
    OptionSpec {
        key: "master_ui",
        help: "the standalone master's web UI (http://HOST:8080), where Terrarium reads the cluster's Spark version to check the environment's pyspark against it at submit",
        required: false,
        check: |v| {
            if (v.starts_with("http://") || v.starts_with("https://")) && !v.contains(char::is_whitespace) {
                Ok(())
            } else {
                Err(format!("`{}` is not a URL like http://127.0.0.1:8080", v.escape_debug()))
            }
        },
    },
    OptionSpec {
        key: "cache",
        help: "where environments are built (or packed, with delivery=pack): this machine's for local masters, a filesystem every worker sees for a standalone one with delivery=shared (default: this machine's Terrarium cache)",
        required: false,
        check: crate::check_absolute,
    },
    OptionSpec {
        key: "delivery",
        help: "how environments reach the executors: `shared` (built once in `cache`, which every worker sees) or `pack` (Spark ships the pack to each executor, which builds it into its node's `node_cache`; nothing need be shared) (default: shared)",
        required: false,
        check: |v| v.parse::<crate::Delivery>().map(|_| ()),
    },
    crate::delivery::NODE_CACHE,
    crate::delivery::TERRARIUM,
    OptionSpec {
        key: "logs",
        help: "where the driver's log and record are kept, one directory per run (default: the workspace's runs directory)",
        required: false,
        check: crate::check_absolute,
    },
];

fn check_master(value: &str) -> Result<(), String> {
    let local = value == "local"
        || value
            .strip_prefix("local[")
            .and_then(|rest| rest.strip_suffix(']'))
            .is_some_and(|n| n == "*" || n.parse::<u32>().is_ok_and(|n| n > 0));
    let standalone = value.strip_prefix("spark://").is_some_and(|rest| {
        !rest.is_empty()
            && rest.split(',').all(|hostport| {
                hostport.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty()
                        && host
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
                        && port.parse::<u16>().is_ok()
                })
            })
    });
    if local || standalone {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a master Terrarium can submit to: use local, local[N], local[*] or spark://HOST:PORT",
            value.escape_debug()
        ))
    }
}

fn check_memory(value: &str) -> Result<(), String> {
    let digits = value.trim_end_matches(['k', 'm', 'g', 't', 'K', 'M', 'G', 'T']);
    if !digits.is_empty()
        && digits.len() + 1 >= value.len()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a memory size like 512m or 2g",
            value.escape_debug()
        ))
    }
}

/// `key=value;key=value`, keys as Spark names them.
fn parse_conf(value: &str) -> Result<Vec<(String, String)>, String> {
    value
        .split(';')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, val) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{}` is not key=value", pair.escape_debug()))?;
            let key = key.trim();
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                || val.contains('\n')
            {
                return Err(format!("`{}` is not a Spark property", pair.escape_debug()));
            }
            if let Some(why) = forbidden_property(key) {
                return Err(format!("`{key}` cannot be set here: {why}"));
            }
            Ok((key.to_string(), val.to_string()))
        })
        .collect()
}

/// Properties a target's `conf` may not set: those that run a program or load code of the
/// target's choosing as whoever submits (the target is a record any contributor may write),
/// replace the environment's Python, or belong to `run`'s own flags.
fn forbidden_property(key: &str) -> Option<&'static str> {
    let code = "it would run or load code of the target's choosing";
    if key.starts_with("spark.pyspark.") || key.starts_with("spark.executorEnv.") {
        Some("the driver and executors run the environment's own Python")
    } else if key.ends_with("extraJavaOptions")
        || key.ends_with("extraClassPath")
        || key.ends_with("extraLibraryPath")
        || (key.starts_with("spark.jars") && key != "spark.jars.ivy")
        || matches!(
            key,
            "spark.files"
                | "spark.archives"
                | "spark.submit.pyFiles"
                | "spark.plugins"
                | "spark.extraListeners"
        )
        || key.contains("discoveryScript")
    {
        Some(code)
    } else if matches!(
        key,
        "spark.executor.memory" | "spark.executor.cores" | "spark.driver.memory"
    ) {
        Some("use the target's executor_memory and executor_cores, or run's --memory and --cpus")
    } else {
        None
    }
}

pub struct Spark {
    target: Target,
}

impl Spark {
    pub fn new(target: Target) -> Self {
        Self { target }
    }

    fn master(&self) -> &str {
        self.target.option("master").unwrap_or("local")
    }

    /// The driver's command line: `spark-submit` from the prefix, the master, the properties,
    /// the packages, then the script and its arguments. The command given to `run` is the
    /// script and its arguments, with or without a leading `python`.
    fn argv(&self, job: &JobSpec) -> Result<Vec<String>, ComputeError> {
        let Some(prefix) = &job.prefix else {
            return Err(ComputeError::Engine {
                target: self.target.name.clone(),
                message: format!(
                    "{} is user-managed: spark targets run `spark-submit` from a built environment that holds pyspark",
                    job.environment
                ),
            });
        };
        let r = &job.resources;
        for (given, flag, why) in [
            (r.nodes > 1, "--nodes", "the master decides how many executors run; set executor_cores and spark.cores.max (conf) instead"),
            (r.time_seconds.is_some(), "--time", "Spark has no time limit for applications"),
        ] {
            if given {
                return Err(ComputeError::Resources {
                    what: flag,
                    reason: format!("spark target `{}` takes no {flag}: {why}", self.target.name),
                });
            }
        }
        let mut command = job.command.as_slice();
        if command
            .first()
            .is_some_and(|p| matches!(p.as_str(), "python" | "python3"))
        {
            command = &command[1..];
        }
        let Some(script) = command.first().filter(|s| s.ends_with(".py")) else {
            return Err(ComputeError::Resources {
                what: "command",
                reason: format!(
                    "spark target `{}` runs a Python application: give the script and its arguments (`-- train.py ARGS` or `-- python train.py ARGS`)",
                    self.target.name
                ),
            });
        };
        let python = prefix.path.join("bin/python").display().to_string();
        let executor_python = self.executor_python(job);
        let mut argv = vec![
            prefix.path.join("bin/spark-submit").display().to_string(),
            "--master".into(),
            self.master().into(),
            "--name".into(),
            format!("terrarium-{}", job.run_id),
        ];
        // The target's properties first: Spark keeps the last value of a key, so Terrarium's
        // own (the environment's Python, the run's resources) come after them.
        if let Some(conf) = self.target.option("conf") {
            for (key, value) in parse_conf(conf).map_err(|reason| ComputeError::Option {
                target: self.target.name.clone(),
                option: "conf".into(),
                reason,
            })? {
                argv.extend(["--conf".into(), format!("{key}={value}")]);
            }
        }
        argv.extend([
            "--conf".into(),
            format!(
                "spark.pyspark.python={}",
                executor_python.as_deref().unwrap_or(&python)
            ),
            "--conf".into(),
            format!("spark.pyspark.driver.python={python}"),
        ]);
        if executor_python.is_some() {
            // Served by the driver to every executor, into its working directory.
            argv.extend(["--files".into(), shipped_files(job).join(",")]);
        }
        let local = self.master().starts_with("local");
        let memory = r
            .memory_mib
            .map(|mib| format!("{mib}m"))
            .or_else(|| self.target.option("executor_memory").map(str::to_string));
        if let Some(memory) = memory {
            // In local mode the executors live in the driver's JVM.
            let key = if local {
                "spark.driver.memory"
            } else {
                "spark.executor.memory"
            };
            argv.extend(["--conf".into(), format!("{key}={memory}")]);
        }
        if local && r.cpus.is_some() {
            return Err(ComputeError::Resources {
                what: "--cpus",
                reason: format!(
                    "spark target `{}` runs in local mode, where the master ({}) sets the threads",
                    self.target.name,
                    self.master()
                ),
            });
        }
        let cores = r
            .cpus
            .map(|c| c.to_string())
            .or_else(|| self.target.option("executor_cores").map(str::to_string));
        if let Some(cores) = cores {
            argv.extend(["--conf".into(), format!("spark.executor.cores={cores}")]);
        }
        if let Some(gpus) = r.gpus {
            argv.extend([
                "--conf".into(),
                format!("spark.executor.resource.gpu.amount={gpus}"),
            ]);
        }
        if !job.spark.packages.is_empty() {
            argv.extend(["--packages".into(), job.spark.packages.join(",")]);
        }
        if !job.spark.repositories.is_empty() {
            argv.extend(["--repositories".into(), job.spark.repositories.join(",")]);
        }
        argv.push(script.clone());
        argv.extend(command[1..].iter().cloned());
        Ok(argv)
    }

    /// The shell the driver runs under: the prefix checked (as on every engine), the driver
    /// run, and its exit code written where `status` finds it, atomically.
    fn wrapper(&self, job: &JobSpec) -> Result<Vec<String>, ComputeError> {
        let argv = self.argv(job)?;
        let prefix = job
            .prefix
            .as_ref()
            .expect("argv refuses jobs without a prefix");
        let exit = job.log_dir.join(EXIT_CODE);
        let exit = shell_quote(&exit.display().to_string());
        let recorded = shell_quote(&job.log_dir.join(RECORDED).display().to_string());
        let waiting = shell_quote(&job.log_dir.join(WAITING).display().to_string());
        let abandoned = shell_quote(&job.log_dir.join(ABANDONED).display().to_string());
        let tries = RECORD_WAIT_SECONDS * 20;
        // With delivery=pack the driver's machine is a node like the others: it builds from
        // the pack into its own node cache.
        let task =
            crate::delivery::task_script(&job.environment, &prefix.in_use, prefix.source.as_ref());
        let mut wrapper = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            // A handler, not an ignored signal (which the driver would inherit): the wrapper
            // outlives a cancel's SIGTERM and records the driver's exit code.
            // Two phases: nothing starts until the run is recorded (the submitter writes
            // `recorded`), so a submitter killed in between leaves no driver behind.
            format!("trap : TERM INT HUP; n=0; while [ ! -e {recorded} ] && [ $n -lt {tries} ]; do sleep 0.05; n=$((n+1)); done; if [ -e {recorded} ] || ! mv {waiting} {abandoned} 2>/dev/null; then \"$@\"; code=$?; else echo 'terrarium: the run was never recorded; the driver was not started' >&2; code={NOT_RECORDED_EXIT}; fi; echo $code > {exit}.tmp && mv {exit}.tmp {exit}"),
            "terrarium-driver".into(),
            "/bin/bash".into(),
            "-c".into(),
            task,
            "terrarium-task".into(),
        ];
        wrapper.extend(argv);
        Ok(wrapper)
    }

    /// With delivery=pack on a standalone master: the executors' Python, the
    /// [`EXECUTOR_PYTHON`] script Spark ships beside the pack (`None` otherwise: the executors
    /// run the prefix's Python where the driver's is).
    fn executor_python(&self, job: &JobSpec) -> Option<String> {
        let shipped = job.prefix.as_ref()?.source.is_some();
        (shipped && !self.master().starts_with("local")).then(|| format!("./{EXECUTOR_PYTHON}"))
    }

    /// The cluster's Spark version, read from the master's web UI when the target names it.
    fn cluster_version(&self) -> Result<Option<String>, ComputeError> {
        let Some(ui) = self.target.option("master_ui") else {
            return Ok(None);
        };
        let unreachable = |why: String| ComputeError::Option {
            target: self.target.name.clone(),
            option: "master_ui".into(),
            reason: format!("cannot read {ui}: {why}"),
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        let response = client
            .get(ui)
            .send()
            .and_then(|r| r.error_for_status())
            .map_err(|e| unreachable(e.to_string()))?;
        let page = read_capped(response, 4 << 20).map_err(|e| unreachable(e.to_string()))?;
        ui_version(&page)
            .map(Some)
            .ok_or_else(|| unreachable("the page shows no Spark version".into()))
    }

    /// Refuse an environment whose pyspark is not the cluster's Spark (major.minor): its driver
    /// could not talk to the master.
    fn check_version(&self, job: &JobSpec) -> Result<(), ComputeError> {
        let Some(cluster) = self.cluster_version()? else {
            return Ok(());
        };
        let Some(prefix) = &job.prefix else {
            return Ok(());
        };
        let locked = match &prefix.source {
            Some(source) => lock_pyspark(&source.lock),
            None => locked_pyspark(&prefix.path),
        };
        let Some(locked) = locked else {
            return Ok(());
        };
        if same_minor(&cluster, &locked) {
            return Ok(());
        }
        Err(ComputeError::Engine {
            target: self.target.name.clone(),
            message: format!(
                "the cluster runs Spark {cluster}, but the environment {} holds pyspark {locked}: they must be the same major.minor version",
                job.environment
            ),
        })
    }

    fn log_error(&self, url: &str, why: String) -> ComputeError {
        ComputeError::Engine {
            target: self.target.name.clone(),
            message: format!("cannot read the executors' logs from {url}: {why}"),
        }
    }

    fn job_files(log_dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        (
            log_dir.join(DRIVER_PID),
            log_dir.join(EXIT_CODE),
            log_dir.join(CANCELLED),
        )
    }

    /// The driver's process id, from the run's own `driver.pid` (never from a record alone),
    /// which must agree with the job id, on this machine: a driver started elsewhere is read
    /// and cancelled there.
    fn local_driver(&self, job_id: &str, log_dir: &Path) -> Result<u32, ComputeError> {
        let pid = self.check_job_id(job_id)?;
        let (pid_path, _, _) = Self::job_files(log_dir);
        let text = std::fs::read_to_string(&pid_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ComputeError::Engine {
                    target: self.target.name.clone(),
                    message: format!(
                        "{} is missing: the driver was started on another machine, or its record was lost",
                        pid_path.display()
                    ),
                }
            } else {
                ComputeError::io(&pid_path, "read", e)
            }
        })?;
        let mut fields = text.split_whitespace();
        let (recorded, host) = (fields.next(), fields.next().unwrap_or_default());
        if recorded != Some(job_id) {
            return Err(ComputeError::Answer {
                target: self.target.name.clone(),
                request: pid_path.display().to_string(),
                reason: format!("it names another driver than job {job_id}"),
            });
        }
        let here = hostname();
        if host != here {
            return Err(ComputeError::Engine {
                target: self.target.name.clone(),
                message: format!(
                    "the driver runs on {host}, not here ({here}): follow or cancel the run there"
                ),
            });
        }
        Ok(pid)
    }

    fn check_job_id(&self, job_id: &str) -> Result<u32, ComputeError> {
        job_id
            .parse::<u32>()
            .ok()
            .filter(|pid| *pid > 1)
            .ok_or_else(|| ComputeError::Answer {
                target: self.target.name.clone(),
                request: "a driver's process id".into(),
                reason: format!("`{}` is not one", job_id.escape_debug()),
            })
    }

    /// Whether process `pid` is this run's driver: alive, and started for this run (its
    /// command line names the run), so that a reused process id is never taken for it.
    fn is_driver(pid: u32, log_dir: &Path) -> bool {
        let Some(run_id) = log_dir.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            let marker = format!("terrarium-{run_id}");
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == marker.as_bytes())
        })
    }
}

impl Engine for Spark {
    fn check(&self) -> Result<String, ComputeError> {
        let java = Command::new("java")
            .arg("-version")
            .stdin(Stdio::null())
            .output()
            .map_err(|_| ComputeError::MissingProgram {
                target: self.target.name.clone(),
                program: "java".into(),
            })?;
        let version = String::from_utf8_lossy(&java.stderr)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        if let Some(hosts) = self.master().strip_prefix("spark://") {
            let reachable = hosts.split(',').any(|hostport| {
                use std::net::ToSocketAddrs;
                hostport.to_socket_addrs().is_ok_and(|mut addrs| {
                    addrs.any(|addr| {
                        std::net::TcpStream::connect_timeout(
                            &addr,
                            std::time::Duration::from_secs(5),
                        )
                        .is_ok()
                    })
                })
            });
            if !reachable {
                return Err(ComputeError::Option {
                    target: self.target.name.clone(),
                    option: "master".into(),
                    reason: format!("nothing answers at {} within 5 s", self.master()),
                });
            }
        }
        let spark = match self.cluster_version()? {
            Some(v) => format!(" (Spark {v})"),
            None => String::new(),
        };
        Ok(format!("spark master {}{spark}, {version}", self.master()))
    }

    fn render(&self, job: &JobSpec) -> Result<String, ComputeError> {
        let argv = self.argv(job)?;
        let mut text = format!(
            "# spark-submit in client mode, on this machine; its log: {}\n",
            job.log_dir.join(DRIVER_LOG).display()
        );
        if !job.env.is_empty() {
            let names = job.variable_names();
            text.push_str(&format!(
                "# variables (values not shown): {}\n",
                names.join(", ")
            ));
        }
        if job.spark.precache && !job.spark.packages.is_empty() {
            text.push_str("# spark.precache is for images; here the packages are resolved when the driver starts\n");
        }
        text.push_str(
            &argv
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        );
        text.push('\n');
        Ok(text)
    }

    fn submit(&self, job: &JobSpec) -> Result<String, ComputeError> {
        let wrapper = self.wrapper(job)?;
        self.check_version(job)?;
        let submit = Path::new(&wrapper[8]);
        let packed = job.prefix.as_ref().is_some_and(|p| p.source.is_some());
        // With delivery=pack the driver builds the prefix first; the lock says what it holds.
        if !packed && !submit.is_file() {
            return Err(ComputeError::Engine {
                target: self.target.name.clone(),
                message: format!(
                    "the environment {} has no `spark-submit` ({} is missing): add pyspark to it",
                    job.environment,
                    submit.display()
                ),
            });
        }
        std::fs::create_dir_all(&job.log_dir)
            .map_err(|e| ComputeError::io(&job.log_dir, "create", e))?;
        if self.executor_python(job).is_some() {
            if let Some(script) = executor_python_script(job) {
                let path = job.log_dir.join(EXECUTOR_PYTHON);
                std::fs::write(&path, script).map_err(|e| ComputeError::io(&path, "write", e))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| ComputeError::io(&path, "make executable", e))?;
            }
        }
        let waiting = job.log_dir.join(WAITING);
        std::fs::write(&waiting, b"").map_err(|e| ComputeError::io(&waiting, "write", e))?;
        let log_path = job.log_dir.join(DRIVER_LOG);
        let log = std::fs::File::create(&log_path)
            .map_err(|e| ComputeError::io(&log_path, "create", e))?;
        let err = log
            .try_clone()
            .map_err(|e| ComputeError::io(&log_path, "open", e))?;
        use std::os::unix::process::CommandExt;
        let prefix = job
            .prefix
            .as_ref()
            .expect("wrapper refuses jobs without a prefix");
        let python = prefix.path.join("bin/python");
        let executor_python = self
            .executor_python(job)
            .map_or_else(|| python.clone(), PathBuf::from);
        let mut child = Command::new(&wrapper[0]);
        crate::scrub_credentials(&mut child);
        let child = child
            .args(&wrapper[1..])
            .current_dir(&job.cwd)
            .envs(job.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PYSPARK_PYTHON", &executor_python)
            .env("PYSPARK_DRIVER_PYTHON", &python)
            .env("TERRARIUM_PREFIX", &prefix.path)
            .env("TERRARIUM_LOCK_HASH", &prefix.lock_hash)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            // Its own process group: it outlives this process, and cancel stops it whole.
            .process_group(0)
            .spawn()
            .map_err(|e| ComputeError::Engine {
                target: self.target.name.clone(),
                message: format!("cannot start spark-submit: {e}"),
            })?;
        let pid = child.id();
        let (pid_path, _, _) = Self::job_files(&job.log_dir);
        if let Err(err) = std::fs::write(&pid_path, format!("{pid} {}\n", hostname())) {
            // Without its record the driver could not be followed or cancelled: stop it.
            let _ = signal_group(pid, "-KILL");
            return Err(ComputeError::io(&pid_path, "write", err));
        }
        Ok(pid.to_string())
    }

    fn status(&self, _job_id: &str) -> Result<JobStatus, ComputeError> {
        Err(ComputeError::Engine {
            target: self.target.name.clone(),
            message: "a Spark driver's state is read from its run's log directory".into(),
        })
    }

    fn recorded(&self, job_id: &str, log_dir: &Path) -> Result<(), ComputeError> {
        self.check_job_id(job_id)?;
        match std::fs::rename(log_dir.join(WAITING), log_dir.join(RECORDED)) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(ComputeError::Engine {
                target: self.target.name.clone(),
                message: format!(
                    "the driver gave up waiting {RECORD_WAIT_SECONDS} s for its run to be recorded and started nothing; run it again"
                ),
            }),
            Err(err) => Err(ComputeError::io(log_dir.join(RECORDED), "write", err)),
        }
    }

    fn status_in(&self, job_id: &str, log_dir: &Path) -> Result<JobStatus, ComputeError> {
        let pid = self.local_driver(job_id, log_dir)?;
        let (_, exit_path, cancelled) = Self::job_files(log_dir);
        let app = application_id(&log_dir.join(DRIVER_LOG));
        let status = |state, exit_code, reason| JobStatus {
            state,
            exit_code,
            started_at: None,
            finished_at: None,
            nodes: vec!["localhost".into()],
            reason,
        };
        let ended = |text: String| {
            let Ok(code) = text.trim().parse::<i32>() else {
                return status(
                    JobState::Lost,
                    None,
                    Some(format!(
                        "the driver's exit code is unreadable: `{}`",
                        text.trim().escape_debug()
                    )),
                );
            };
            if code == NOT_RECORDED_EXIT && log_dir.join(ABANDONED).exists() {
                return status(
                    JobState::Failed,
                    Some(code),
                    Some("the run was not recorded in time; the driver was not started".into()),
                );
            }
            let state = if code == 0 {
                JobState::Completed
            } else if cancelled.exists() {
                JobState::Cancelled
            } else {
                JobState::Failed
            };
            status(state, Some(code), app.clone())
        };
        let read = || match std::fs::read_to_string(&exit_path) {
            Ok(text) => Ok(Some(text)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(ComputeError::io(&exit_path, "read", err)),
        };
        if let Some(text) = read()? {
            return Ok(ended(text));
        }
        if Self::is_driver(pid, log_dir) {
            return Ok(status(JobState::Running, None, app));
        }
        // It may have ended between the two looks.
        if let Some(text) = read()? {
            return Ok(ended(text));
        }
        if cancelled.exists() {
            return Ok(status(JobState::Cancelled, None, app));
        }
        Ok(status(
            JobState::Lost,
            None,
            Some(format!(
                "the driver (process {pid}) ended without recording its exit code"
            )),
        ))
    }

    fn logs(&self, log_dir: &Path) -> Result<Vec<TaskLog>, ComputeError> {
        let path = log_dir.join(DRIVER_LOG);
        Ok(if path.is_file() {
            vec![TaskLog {
                task: "driver".into(),
                path,
            }]
        } else {
            Vec::new()
        })
    }

    /// A standalone cluster's executor logs, from each worker that ran one of the
    /// application's executors (found through `master_ui`), once the driver has ended; copied
    /// beside the driver's log, and listed in `executors.json` so that they are fetched once.
    fn ended_logs(&self, log_dir: &Path) -> Result<Vec<TaskLog>, ComputeError> {
        let index = log_dir.join(EXECUTORS);
        let listed = |index: &Path| -> Vec<TaskLog> {
            std::fs::read_to_string(index)
                .ok()
                .and_then(|t| serde_json::from_str::<Vec<(String, String)>>(&t).ok())
                .unwrap_or_default()
                .into_iter()
                // Names this engine wrote, read back inside the run's directory only.
                .filter(|(_, file)| file.starts_with("executor-") && !file.contains('/'))
                .map(|(task, file)| TaskLog {
                    task,
                    path: log_dir.join(file),
                })
                .collect()
        };
        if index.is_file() {
            return Ok(listed(&index));
        }
        let (Some(ui), true) = (
            self.target.option("master_ui"),
            log_dir.join(EXIT_CODE).is_file(),
        ) else {
            return Ok(Vec::new());
        };
        let Some(app) = application(&log_dir.join(DRIVER_LOG)).filter(|a| a.starts_with("app-"))
        else {
            return Ok(Vec::new());
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| self.log_error(ui, e.to_string()))?;
        let get = |url: &str| -> Result<String, ComputeError> {
            let response = client
                .get(url)
                .send()
                .and_then(|r| r.error_for_status())
                .map_err(|e| self.log_error(url, e.to_string()))?;
            read_capped(response, MAX_EXECUTOR_LOG + (64 << 10))
                .map_err(|e| self.log_error(url, e.to_string()))
        };
        let master: serde_json::Value =
            serde_json::from_str(&get(&format!("{}/json/", ui.trim_end_matches('/')))?)
                .map_err(|e| self.log_error(ui, e.to_string()))?;
        let mut written = Vec::new();
        // The list is kept (and not fetched again) only when every worker answered.
        let mut complete = true;
        for worker in master["workers"].as_array().into_iter().flatten() {
            // Only a worker's own web UI: scheme, the host the worker reports, a port, no path.
            let host = worker["host"].as_str().unwrap_or_default();
            let Some(address) = worker["webuiaddress"]
                .as_str()
                .filter(|a| is_worker_ui(a, host))
            else {
                complete = false;
                continue;
            };
            let Ok(state) = get(&format!("{address}/json/")).and_then(|t| {
                serde_json::from_str::<serde_json::Value>(&t)
                    .map_err(|e| self.log_error(address, e.to_string()))
            }) else {
                complete = false;
                continue;
            };
            let executors = ["executors", "finishedexecutors"]
                .iter()
                .flat_map(|key| state[*key].as_array().cloned().unwrap_or_default())
                .filter(|e| e["appid"].as_str() == Some(app.as_str()))
                .filter_map(|e| e["id"].as_u64());
            for id in executors {
                for stream in ["stdout", "stderr"] {
                    let url = format!(
                        "{address}/log/?appId={app}&executorId={id}&logType={stream}&offset=0&byteLength={MAX_EXECUTOR_LOG}"
                    );
                    let Ok(text) = get(&url) else {
                        complete = false;
                        continue;
                    };
                    // The worker's first line says which bytes of which file these are.
                    let body = match text.split_once('\n') {
                        Some((first, rest)) if first.starts_with("==== ") => rest,
                        _ => text.as_str(),
                    };
                    let file = format!("executor-{id}-{stream}.log");
                    let path = log_dir.join(&file);
                    std::fs::write(&path, body).map_err(|e| ComputeError::io(&path, "write", e))?;
                    written.push((format!("executor {id} {stream}"), file));
                }
            }
        }
        if !complete {
            return Ok(written
                .into_iter()
                .map(|(task, file)| TaskLog {
                    task,
                    path: log_dir.join(file),
                })
                .collect());
        }
        let text = serde_json::to_string(&written).unwrap_or_default();
        std::fs::write(&index, text).map_err(|e| ComputeError::io(&index, "write", e))?;
        Ok(listed(&index))
    }

    fn cancel(&self, _job_id: &str) -> Result<(), ComputeError> {
        Err(ComputeError::Engine {
            target: self.target.name.clone(),
            message: "a Spark driver is cancelled through its run's log directory".into(),
        })
    }

    fn cancel_in(&self, job_id: &str, log_dir: &Path) -> Result<(), ComputeError> {
        let pid = self.local_driver(job_id, log_dir)?;
        if !Self::is_driver(pid, log_dir) {
            return Ok(());
        }
        let (_, exit_path, cancelled) = Self::job_files(log_dir);
        std::fs::write(&cancelled, "").map_err(|e| ComputeError::io(&cancelled, "write", e))?;
        // The whole group: the wrapper (which records the exit code), spark-submit, its JVM
        // and the Python workers.
        if !signal_group(pid, "-TERM") && Self::is_driver(pid, log_dir) {
            let _ = std::fs::remove_file(&cancelled);
            return Err(ComputeError::Engine {
                target: self.target.name.clone(),
                message: format!("cannot signal the driver's process group {pid}"),
            });
        }
        // A driver that does not stop is killed after a grace period.
        let deadline = std::time::Instant::now() + CANCEL_GRACE;
        while !exit_path.exists() && Self::is_driver(pid, log_dir) {
            if std::time::Instant::now() > deadline {
                signal_group(pid, "-KILL");
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(())
    }
}

/// How long a cancelled driver has to stop before its group is killed.
const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Send `signal` to process group `pgid`; whether it was delivered.
fn signal_group(pgid: u32, signal: &str) -> bool {
    crate::kill(signal, pgid, true)
}

/// This machine's name, as the kernel has it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// A response's body, refused past `limit` bytes.
fn read_capped(response: reqwest::blocking::Response, limit: u64) -> Result<String, String> {
    use std::io::Read;
    let mut body = Vec::new();
    response
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    if body.len() as u64 > limit {
        return Err(format!("the answer is larger than {limit} bytes"));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Whether `address` is `http(s)://HOST:PORT` (an optional trailing `/`) with the worker's own
/// host: the master's list of workers sends this client nowhere else.
fn is_worker_ui(address: &str, host: &str) -> bool {
    let Some(rest) = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
    else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.rsplit_once(':').is_some_and(|(h, port)| {
        !host.is_empty()
            && (h == host || (h == "localhost" && host == "127.0.0.1"))
            && port.parse::<u16>().is_ok()
    })
}

/// The version a Spark web UI page shows (`<span class="version" ...>4.0.1</span>`).
fn ui_version(page: &str) -> Option<String> {
    let at = page.find("class=\"version\"")?;
    let rest = &page[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')? + start;
    let version = rest[start..end].trim();
    (!version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-+".contains(&b)))
    .then(|| version.to_string())
}

/// Whether two versions share major and minor.
fn same_minor(a: &str, b: &str) -> bool {
    a.split('.').take(2).eq(b.split('.').take(2))
}

/// The pyspark version the lock a built prefix records holds (PyPI or conda-forge).
fn locked_pyspark(prefix: &Path) -> Option<String> {
    let text = std::fs::read_to_string(prefix.join(".terrarium/lock.json")).ok()?;
    lock_pyspark(&terrarium_lock::Lock::from_json(&text).ok()?)
}

/// The executors' Python with delivery=pack, shipped with `--files`.
pub const EXECUTOR_PYTHON: &str = "terrarium-python";

/// What Spark ships to every executor with delivery=pack: the pack, the programs that install
/// it, and the executors' Python, written in the run's log directory at submit.
fn shipped_files(job: &JobSpec) -> Vec<String> {
    let Some(source) = job.prefix.as_ref().and_then(|p| p.source.as_ref()) else {
        return Vec::new();
    };
    let mut files = vec![source.pack.clone(), source.terrarium.clone()];
    files.extend(source.uv.clone());
    files.push(job.log_dir.join(EXECUTOR_PYTHON));
    files.iter().map(|f| f.display().to_string()).collect()
}

/// The executors' Python with delivery=pack: a script that, in the executor's working
/// directory where Spark put the shipped files, builds the environment from the pack into the
/// node's cache (once per node and lock, as every engine's tasks do), checks it, and runs the
/// prefix's Python with Spark's arguments, holding the prefix's in-use lock. Nothing it says
/// goes to stdout, where the Python daemon answers Spark.
fn executor_python_script(job: &JobSpec) -> Option<String> {
    let prefix = job.prefix.as_ref()?;
    let source = prefix.source.as_ref()?;
    let here =
        |path: &Path| -> PathBuf { Path::new(".").join(path.file_name().unwrap_or_default()) };
    let local = crate::PackSource {
        pack: here(&source.pack),
        reference: None,
        node_cache: source.node_cache.clone(),
        terrarium: here(&source.terrarium),
        uv: source.uv.as_deref().map(here),
        lock: source.lock.clone(),
    };
    let task = crate::delivery::task_script(&job.environment, &prefix.in_use, Some(&local));
    Some(format!(
        "#!/bin/bash\n# The environment {} for a Spark executor (Terrarium, delivery=pack).\ncd \"$(dirname \"$0\")\" || exit {}\nexport TERRARIUM_PREFIX={} TERRARIUM_LOCK_HASH={}\nexec /bin/bash -c {} terrarium-task \"$TERRARIUM_PREFIX/bin/python\" \"$@\"\n",
        job.environment.replace(['\n', '\r'], " "),
        crate::NO_PREFIX_EXIT,
        shell_quote(&prefix.path.display().to_string()),
        shell_quote(&prefix.lock_hash),
        shell_quote(&task),
    ))
}

/// The pyspark version a lock holds (PyPI or conda-forge).
fn lock_pyspark(lock: &terrarium_lock::Lock) -> Option<String> {
    lock.platforms.values().find_map(|platform| {
        platform
            .pypi
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case("pyspark"))
            .map(|p| p.version.clone())
            .or_else(|| {
                platform
                    .conda
                    .iter()
                    .find(|p| p.name == "pyspark")
                    .map(|p| p.version.clone())
            })
    })
}

/// The application id Spark logged (`app-…` on a standalone master, `local-…` in local mode).
fn application_id(log: &Path) -> Option<String> {
    application(log).map(|id| format!("application {id}"))
}

/// The bare application id in a driver's log.
fn application(log: &Path) -> Option<String> {
    // Spark logs the id as it starts: the head of the log is enough, however long it grows.
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(log)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut head)
        .ok()?;
    let text = String::from_utf8_lossy(&head);
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|word| {
            (word.starts_with("app-")
                && word.len() >= 20
                && word[4..].bytes().all(|b| b.is_ascii_digit() || b == b'-'))
                || (word.starts_with("local-")
                    && word.len() >= 16
                    && word[6..].bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Kind, Prefix, Resources};

    fn target(master: &str) -> Target {
        Target {
            name: "sp".into(),
            kind: Kind::Spark,
            options: [
                ("master".to_string(), master.to_string()),
                ("conf".to_string(), "spark.ui.enabled=false".to_string()),
            ]
            .into(),
        }
    }

    fn job() -> JobSpec {
        JobSpec {
            run_id: "20261202T000000-abcdef".into(),
            environment: "spark:1".into(),
            command: vec!["python".into(), "job.py".into(), "a b".into()],
            env: vec![("TOKEN".into(), "s3cr3t".into())],
            secret_names: vec!["TOKEN".into()],
            cwd: "/work".into(),
            prefix: Some(Prefix {
                path: "/cache/envs/abc".into(),
                lock_hash: "sha256:00ff".into(),
                in_use: "/cache/envs/abc.lock".into(),
                source: None,
            }),
            resources: Resources::parse(1, Some(2), None, Some("1G"), None).unwrap(),
            log_dir: "/runs/20261202T000000-abcdef".into(),
            spark: terrarium_spec::model::Spark {
                repositories: vec!["file:///maven".into()],
                packages: vec!["org.example:tiny:1.0".into()],
                precache: true,
            },
            image: None,
        }
    }

    /// Two phases: a driver does not start until its run is recorded.
    #[test]
    fn a_driver_waits_for_its_run_to_be_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("env");
        std::fs::create_dir_all(prefix.join(".terrarium")).unwrap();
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        std::fs::write(
            prefix.join(".terrarium/env.json"),
            "{\"lock_hash\": \"sha256:00ff\"}",
        )
        .unwrap();
        let started = dir.path().join("started");
        let submit = prefix.join("bin/spark-submit");
        std::fs::write(&submit, format!("#!/bin/sh\ntouch {}\n", started.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&submit, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut job = job();
        job.spark = Default::default();
        job.resources = Resources::parse(1, None, None, None, None).unwrap();
        job.cwd = dir.path().into();
        job.log_dir = dir.path().join("runs").join(&job.run_id);
        job.prefix = Some(Prefix {
            path: prefix.clone(),
            lock_hash: "sha256:00ff".into(),
            in_use: dir.path().join("env.lock"),
            source: None,
        });
        let spark = Spark::new(target("local[1]"));
        let id = spark.submit(&job).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(800));
        assert!(
            !started.exists(),
            "the driver started before its run was recorded"
        );
        assert_eq!(
            spark.status_in(&id, &job.log_dir).unwrap().state,
            JobState::Running
        );
        spark.recorded(&id, &job.log_dir).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while spark.status_in(&id, &job.log_dir).unwrap().state == JobState::Running {
            assert!(
                std::time::Instant::now() < deadline,
                "the driver never ended"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(started.exists());
        assert_eq!(
            spark.status_in(&id, &job.log_dir).unwrap().state,
            JobState::Completed
        );
    }

    #[test]
    fn masters_and_options_are_checked() {
        for good in [
            "local",
            "local[2]",
            "local[*]",
            "spark://127.0.0.1:7077",
            "spark://a:7077,b:7077",
        ] {
            assert!(check_master(good).is_ok(), "{good}");
        }
        for bad in [
            "yarn",
            "local[0]",
            "spark://",
            "spark://h",
            "k8s://x",
            "spark://h:1;rm",
        ] {
            assert!(check_master(bad).is_err(), "{bad}");
        }
        assert!(
            check_memory("512m").is_ok()
                && check_memory("2g").is_ok()
                && check_memory("2gb").is_err()
        );
        assert!(parse_conf("a.b=1; c=2").unwrap().len() == 2);
        assert!(parse_conf("novalue").is_err());
    }

    #[test]
    fn the_command_line_asks_for_what_the_run_asked() {
        let spark = Spark::new(target("spark://127.0.0.1:7077"));
        let text = spark.render(&job()).unwrap();
        for expected in [
            "/cache/envs/abc/bin/spark-submit --master spark://127.0.0.1:7077 --name terrarium-20261202T000000-abcdef --conf spark.ui.enabled=false --conf spark.pyspark.python=",
            "spark.pyspark.python=/cache/envs/abc/bin/python",
            "spark.executor.memory=1024m",
            "spark.executor.cores=2",
            "spark.ui.enabled=false",
            "--packages org.example:tiny:1.0 --repositories file:///maven job.py 'a b'",
            "TOKEN (secret)",
            "spark.precache is for images",
        ] {
            assert!(text.contains(expected), "{expected} in:\n{text}");
        }
        assert!(!text.contains("s3cr3t"));
        let mut no_script = job();
        no_script.command = vec!["bash".into()];
        assert!(spark.render(&no_script).is_err());
        // In local mode the memory is the driver's, and the threads are the master's.
        let local = Spark::new(target("local[2]"));
        assert!(local
            .render(&job())
            .unwrap_err()
            .to_string()
            .contains("--cpus"));
        let mut no_cpus = job();
        no_cpus.resources.cpus = None;
        assert!(local
            .render(&no_cpus)
            .unwrap()
            .contains("spark.driver.memory=1024m"));
        let mut nodes = job();
        nodes.resources.nodes = 2;
        assert!(spark
            .render(&nodes)
            .unwrap_err()
            .to_string()
            .contains("--nodes"));
    }

    #[test]
    fn the_cluster_version_is_read_from_the_master_page() {
        let page = "<h3><a href=\"/\"><img src=\"/static/spark-logo.png\"/><span class=\"version\" style=\"margin-right: 15px;\">4.0.1</span></a> Spark Master</h3>";
        assert_eq!(ui_version(page).as_deref(), Some("4.0.1"));
        assert_eq!(ui_version("<html></html>"), None);
        assert!(same_minor("4.0.1", "4.0.3"));
        assert!(!same_minor("4.0.1", "3.5.1"));
        assert!(!same_minor("4.1.0", "4.0.1"));
    }

    #[test]
    fn only_a_workers_own_ui_is_asked() {
        assert!(is_worker_ui("http://127.0.0.1:8081", "127.0.0.1"));
        assert!(is_worker_ui("http://node1:8081/", "node1"));
        assert!(!is_worker_ui("http://169.254.169.254:80", "node1"));
        assert!(!is_worker_ui("http://node1:8081/admin?x", "node1"));
        assert!(!is_worker_ui("file:///etc/passwd", "node1"));
        assert!(!is_worker_ui("http://node1:8081", ""));
    }

    #[test]
    fn a_record_cannot_name_another_process() {
        let spark = Spark::new(target("local"));
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("20261202T000000-abcdef");
        std::fs::create_dir_all(&log_dir).unwrap();
        let me = std::process::id().to_string();
        // No driver.pid here: the record alone names no process.
        assert!(spark.status_in(&me, &log_dir).is_err());
        // A record that names another process than the run's own file.
        std::fs::write(
            log_dir.join(DRIVER_PID),
            format!("{} {}\n", std::process::id() + 1, hostname()),
        )
        .unwrap();
        assert!(spark.status_in(&me, &log_dir).is_err());
        // A driver started on another machine is read there.
        std::fs::write(log_dir.join(DRIVER_PID), format!("{me} elsewhere\n")).unwrap();
        assert!(spark
            .status_in(&me, &log_dir)
            .unwrap_err()
            .to_string()
            .contains("elsewhere"));
        // This process is alive but not this run's driver: lost, and cancel leaves it be.
        std::fs::write(log_dir.join(DRIVER_PID), format!("{me} {}\n", hostname())).unwrap();
        assert_eq!(
            spark.status_in(&me, &log_dir).unwrap().state,
            JobState::Lost
        );
        spark.cancel_in(&me, &log_dir).unwrap();
        assert!(!log_dir.join(CANCELLED).exists());
        // An exit code that is not a number is not taken for one.
        std::fs::write(log_dir.join(EXIT_CODE), "oops\n").unwrap();
        let status = spark.status_in(&me, &log_dir).unwrap();
        assert_eq!((status.state, status.exit_code), (JobState::Lost, None));
        assert!(spark.status_in("x; rm", &log_dir).is_err());
        // A target may not swap the environment's Python or load code.
        for key in [
            "spark.pyspark.python",
            "spark.driver.extraJavaOptions",
            "spark.jars",
            "spark.executor.memory",
        ] {
            assert!(parse_conf(&format!("{key}=x")).is_err(), "{key}");
        }
        assert!(parse_conf("spark.jars.ivy=/tmp/ivy;spark.sql.shuffle.partitions=4").is_ok());
    }
}
