//! `terrarium run`: run a command in an environment version, and record the run.

use std::io::{Read, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use clap::Args;
use terrarium_store::RunRecord;

use super::Context;
use crate::environments::{self, LockArgs};
use crate::{printer, workspace};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The environment: NAME, NAME:VERSION, NAME@LABEL, or a definition file (registered first).
    #[arg(long = "env", value_name = "REF|FILE")]
    env: String,
    /// The experiment the run belongs to.
    #[arg(long, default_value = "default")]
    experiment: String,
    #[command(flatten)]
    lock: LockArgs,
    /// Where to run: `local` (the built prefix on this machine) or `container` (the
    /// environment's image, unpacked and run with runc, the working directory mounted at /work).
    #[arg(long, value_enum, default_value = "local")]
    target: Target,
    /// For `--target container`: the base image to build the environment's image on (as for
    /// `image build --base`).
    #[arg(long, value_name = "IMAGE")]
    base: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Local,
    Container,
}

pub fn run(context: &Context, args: RunArgs) -> Result<ExitCode> {
    let store = context.store()?;
    let record = environments::resolve_or_register(context, store.as_ref(), &args.env, "run")?;
    let (lock, lock_hash) =
        environments::ensure_lock(store.as_ref(), &record, &args.lock.options()?)?;
    if lock.kind == terrarium_resolve::LockKind::UserManaged {
        environments::check_user_managed(&lock, &record);
    }
    let container = match args.target {
        Target::Local => None,
        Target::Container => Some(super::container::prepare(
            context,
            &record,
            args.base.as_deref(),
        )?),
    };
    let env = if container.is_some() {
        None
    } else {
        environments::materialize(&lock)?
    };
    let vars = match &container {
        Some(_) => {
            // In the container the image's variables apply; the definition's are resolved
            // here (secrets only now, when the process starts).
            let mut vars = Vec::new();
            for (key, value) in &record.definition.environment_variables {
                vars.push((key.clone(), environments::resolve_secrets(value)?));
            }
            vars
        }
        None => environments::process_env(&record, &lock, env.as_ref())?,
    };

    let id = new_run_id();
    let logs = context.runs_dir()?;
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let log_path = logs.join(format!("{id}.log"));
    let cwd = std::env::current_dir()?;
    let run = RunRecord {
        id: id.clone(),
        experiment: args.experiment.clone(),
        environment: record.name.clone(),
        version: record.version.clone(),
        lock_hash: Some(lock_hash),
        command: args.command.clone(),
        cwd: cwd.display().to_string(),
        target: match args.target {
            Target::Local => "local".into(),
            Target::Container => "container".into(),
        },
        actor: workspace::actor(),
        started_at: terrarium_store::now(),
        finished_at: None,
        exit_code: None,
        log_path: Some(log_path.display().to_string()),
    };
    store.create_run(&run)?;
    printer::status(&format!(
        "run {id}: {}:{} ({})",
        record.name,
        record.version,
        args.command.join(" ")
    ));

    let bundle;
    let mut command = match &container {
        None => {
            let mut command = Command::new(&args.command[0]);
            command.args(&args.command[1..]).envs(vars);
            command
        }
        Some(image) => {
            bundle = image.bundle(&id, &args.command, &vars, &cwd)?;
            image.command(&bundle, &id)
        }
    };
    command
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let code = match command.spawn() {
        Ok(mut child) => {
            let log = Arc::new(Mutex::new(
                std::fs::File::create(&log_path)
                    .with_context(|| format!("cannot write {}", log_path.display()))?,
            ));
            let out = child
                .stdout
                .take()
                .map(|s| tee(s, std::io::stdout(), log.clone()));
            let err = child
                .stderr
                .take()
                .map(|s| tee(s, std::io::stderr(), log.clone()));
            let status = child.wait()?;
            for handle in [out, err].into_iter().flatten() {
                let _ = handle.join();
            }
            exit_code(status)
        }
        Err(err) => {
            let message = format!("cannot run `{}`: {err}\n", args.command[0]);
            eprint!("error: {message}");
            std::fs::write(&log_path, &message)?;
            127
        }
    };
    // The log goes into the workspace too, so every client and the web UI can show it.
    // Secret values are masked in the stored copy, which the whole team can read.
    match read_log_tail(&log_path) {
        Ok(log) => {
            let log = mask(log, &environments::secret_values(&record));
            if let Err(err) = store.put_run_log(&id, &log) {
                printer::warn(&format!(
                    "cannot store the log of run {id} in the workspace: {err}"
                ));
            }
        }
        Err(err) => printer::warn(&format!("cannot read {}: {err}", log_path.display())),
    }
    store.finish_run(&id, &terrarium_store::now(), code)?;
    printer::status(&format!("run {id} finished with exit code {code}"));
    drop(env);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Replace every occurrence of each secret with `***`.
fn mask(mut log: Vec<u8>, secrets: &[String]) -> Vec<u8> {
    for secret in secrets {
        let needle = secret.as_bytes();
        let mut out = Vec::with_capacity(log.len());
        let mut i = 0;
        while i < log.len() {
            if log[i..].starts_with(needle) {
                out.extend_from_slice(b"***");
                i += needle.len();
            } else {
                out.push(log[i]);
                i += 1;
            }
        }
        log = out;
    }
    log
}

/// The end of a log, at most what the workspace keeps (8 MiB).
fn read_log_tail(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    const MAX: u64 = 8 * 1024 * 1024;
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX {
        file.seek(SeekFrom::Start(len - MAX))?;
    }
    let mut buffer = Vec::with_capacity(len.min(MAX) as usize);
    file.read_to_end(&mut buffer)?;
    Ok(buffer)
}

/// Copy a child's stream to ours as it arrives, and to the log in whole lines, so that lines
/// of stdout and stderr interleave in the log but never split each other.
fn tee(
    mut source: impl Read + Send + 'static,
    mut sink: impl Write + Send + 'static,
    log: Arc<Mutex<std::fs::File>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            match source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = sink.write_all(&buf[..n]);
                    let _ = sink.flush();
                    pending.extend_from_slice(&buf[..n]);
                    if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
                        if let Ok(mut file) = log.lock() {
                            let _ = file.write_all(&pending[..=end]);
                        }
                        pending.drain(..=end);
                    }
                }
            }
        }
        if !pending.is_empty() {
            if let Ok(mut file) = log.lock() {
                let _ = file.write_all(&pending);
            }
        }
    })
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// `20261128T041530-3fa2`: sortable by time, unique per process and moment.
fn new_run_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]");
    let stamp = now.format(&format).unwrap_or_default();
    let mut seed = now.unix_timestamp_nanos() as u64 ^ (u64::from(std::process::id()) << 32);
    seed ^= seed >> 33;
    seed = seed.wrapping_mul(0xff51_afd7_ed55_8ccd);
    seed ^= seed >> 33;
    format!("{stamp}-{:06x}", seed & 0xff_ffff)
}
