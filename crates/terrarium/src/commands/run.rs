//! `terrarium run`: run a command in an environment version, and record the run.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context as _, Result};
use clap::Args;
use terrarium_compute::{container, local};
use terrarium_store::RunRecord;

use super::Context;
use crate::environments::{self, LockArgs};
use crate::printer::{self, user_error};
use crate::{env_vars, workspace};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The environment: NAME, NAME:VERSION, NAME@LABEL, or a definition file (registered first).
    #[arg(long = "env", value_name = "REF|FILE")]
    pub(crate) env: String,
    /// Register the --env file under this name [default: the file's own name; a nameless
    /// file is registered anonymously, as `anonymous/HASH`].
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// The experiment the run belongs to.
    #[arg(long, default_value = "default")]
    pub(crate) experiment: String,
    #[command(flatten)]
    pub(crate) lock: LockArgs,
    /// Where to run: `local` (the built prefix on this machine), `container` (the
    /// environment's image, unpacked and run with runc, the working directory mounted at
    /// /work), or the name of a compute target (`terrarium compute list`).
    #[arg(long, default_value = "local", value_name = "TARGET")]
    pub(crate) target: String,
    /// For `--target container`: the base image to build the environment's image on (as for
    /// `image build --base`).
    #[arg(long, value_name = "IMAGE")]
    pub(crate) base: Option<String>,
    #[command(flatten)]
    pub(crate) job: super::jobs::JobArgs,
    /// For `local` and `container`: write the run's id (and a newline) to this file as soon as
    /// the run is recorded, before the command starts, for a program that started `terrarium
    /// run` and follows the run. The command itself finds the id in `TERRARIUM_RUN_ID`.
    #[arg(long, value_name = "PATH")]
    pub(crate) id_file: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Local,
    Container,
}

pub fn run(context: &Context, args: RunArgs) -> Result<ExitCode> {
    terrarium_spec::names::validate_display_name("experiment", &args.experiment)
        .map_err(|e| user_error(e, None))?;
    let target = match args.target.as_str() {
        "local" => Target::Local,
        "container" => Target::Container,
        _ if args.id_file.is_some() => {
            return Err(user_error(
                format!(
                    "--id-file is for runs on `local` or `container`, not on compute target `{}`",
                    args.target
                ),
                Some("with --detach, the id of a job's run is printed on stdout"),
            ))
        }
        _ => return super::jobs::submit(context, args),
    };
    if let Some(flag) = args.job.given() {
        return Err(user_error(
            format!(
                "{flag} is for runs on a compute target, not on `{}`",
                args.target
            ),
            Some("pass --target NAME of a compute target (`terrarium compute list`)"),
        ));
    }
    let store = context.store()?;
    let record = environments::resolve_or_register(
        context,
        store.as_ref(),
        "--env",
        &args.env,
        "run",
        args.name.as_deref(),
    )?;
    let (lock, lock_hash) = terrarium_compute::environment::ensure_lock(
        store.as_ref(),
        &record,
        &args.lock.options()?,
        &crate::printer::Spinner::lazy(),
    )?;
    if lock.kind == terrarium_lock::LockKind::UserManaged {
        environments::check_user_managed(&lock, &record);
    }
    let container = match target {
        Target::Local => None,
        Target::Container => Some(container_image(context, &record, args.base.as_deref())?),
    };
    let env = if container.is_some() {
        None
    } else {
        terrarium_compute::environment::materialize(&lock, &crate::printer::Spinner::lazy())?
    };
    let mut vars = match &container {
        Some(_) => {
            // In the container the image's variables apply; the definition's are resolved
            // here (secrets only now, when the process starts).
            let mut vars = Vec::new();
            for (key, value) in &record.definition.environment_variables {
                vars.push((
                    key.clone(),
                    terrarium_compute::environment::resolve_secrets(value)?,
                ));
            }
            vars
        }
        None => terrarium_compute::environment::process_env(
            &record,
            &lock,
            env.as_ref().map(|e| e.prefix.as_path()),
        )?,
    };

    let id = new_run_id();
    vars.push((env_vars::TERRARIUM_RUN_ID.to_string(), id.clone()));
    let logs = context.runs_dir()?;
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let log_path = logs.join(format!("{id}.log"));
    let cwd = std::env::current_dir()?;
    // The log is created and held before the run is recorded: from the moment the run can be
    // seen, `runs wait|cancel|logs --follow` find its process through it (a recorded run whose
    // log nobody holds is taken for lost).
    let log = create_log(&log_path)?;
    let running = match local::RunFiles::new(&logs, &id).and_then(local::Running::start) {
        Ok(running) => running,
        Err(err) => {
            let _ = std::fs::remove_file(&log_path);
            return Err(err.into());
        }
    };
    let run = RunRecord {
        id: id.clone(),
        experiment: args.experiment.clone(),
        environment: record.name.clone(),
        version: record.version.clone(),
        lock_hash: Some(lock_hash),
        command: args.command.clone(),
        cwd: cwd.display().to_string(),
        target: args.target.clone(),
        actor: workspace::actor(),
        started_at: terrarium_store::now(),
        finished_at: None,
        exit_code: None,
        log_path: Some(log_path.display().to_string()),
        state: terrarium_store::RunState::Running,
        job: None,
    };
    if let Err(err) = store.create_run(&run) {
        drop(running);
        let _ = std::fs::remove_file(&log_path);
        return Err(err.into());
    }
    printer::status(&format!(
        "run {id}: {}:{} ({})",
        record.name,
        record.version,
        args.command.join(" ")
    ));

    // Recorded: a failure before the command starts is recorded as the run's end too.
    let mut bundle = None;
    let prepared = (|| -> Result<Command> {
        if let Some(path) = &args.id_file {
            write_id_file(path, &id)?;
        }
        Ok(match &container {
            None => {
                let program = find_program(&args.command[0], &vars);
                let mut command = Command::new(&program);
                if program.as_os_str() != args.command[0].as_str() {
                    use std::os::unix::process::CommandExt;
                    // The program sees the name it was given, as from a shell.
                    command.arg0(&args.command[0]);
                }
                // The program gets its environment's variables, not this process's credentials.
                terrarium_compute::scrub_credentials(&mut command);
                command
                    .args(&args.command[1..])
                    .envs(vars.iter().map(|(k, v)| (k, v)));
                command
            }
            Some(image) => image.command(
                bundle.insert(image.bundle(&id, &args.command, &vars, &cwd)?),
                &id,
            ),
        })
    })();
    let mut command = match prepared {
        Ok(command) => command,
        Err(err) => {
            let update = terrarium_store::RunUpdate {
                state: terrarium_store::RunState::Failed,
                started_at: None,
                finished_at: Some(terrarium_store::now()),
                exit_code: None,
                node_list: None,
                reason: Some(format!("{err:#}")),
            };
            if let Err(store_err) = store.update_run(&id, &update) {
                printer::warn(&format!("cannot record the end of run {id}: {store_err}"));
            }
            return Err(err);
        }
    };
    command
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Secret values never reach the log file, nor our stdout and stderr (which CI keeps): each
    // stream is masked as it is copied.
    let secrets = terrarium_compute::environment::secret_values(&record);
    let mut cancelled = false;
    let code = match command.spawn() {
        Ok(mut child) => {
            // Without the id a cancel cannot reach the program; the run itself goes on.
            if let Err(err) = running.started(child.id()) {
                printer::warn(&format!(
                    "run {id} cannot be cancelled from elsewhere: {err}"
                ));
            }
            let mut log = log;
            copy_output(child.stdout.take(), child.stderr.take(), &mut log, &secrets);
            let status = child.wait()?;
            cancelled = running.exited();
            exit_code(status)
        }
        Err(err) => {
            let message = format!("cannot run `{}`: {err}\n", args.command[0]);
            let message = Masker::new(&secrets).mask_all(message.as_bytes());
            let _ = std::io::stderr().write_all(b"error: ");
            let _ = std::io::stderr().write_all(&message);
            let mut log = log;
            log.write_all(&message)
                .with_context(|| format!("cannot write {}", log_path.display()))?;
            127
        }
    };
    // The log goes into the workspace too, so every client and the web UI can show it. The file
    // was masked as it was written, so the stored copy, which the whole team can read, is too.
    match read_log_tail(&log_path) {
        Ok(log) => {
            if let Err(err) = store.put_run_log(&id, &log) {
                printer::warn(&format!(
                    "cannot store the log of run {id} in the workspace: {err}"
                ));
            }
        }
        Err(err) => printer::warn(&format!("cannot read {}: {err}", log_path.display())),
    }
    if cancelled {
        store.update_run(
            &id,
            &terrarium_store::RunUpdate {
                state: terrarium_store::RunState::Cancelled,
                started_at: None,
                finished_at: Some(terrarium_store::now()),
                exit_code: Some(code),
                node_list: None,
                reason: None,
            },
        )?;
        printer::status(&format!("run {id} cancelled (exit code {code})"));
    } else {
        store.finish_run(&id, &terrarium_store::now(), code)?;
        printer::status(&format!("run {id} finished with exit code {code}"));
    }
    drop(running);
    drop(env);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// For `--target container`: the version's image, built once (as `image build` makes it, and
/// recorded), unpacked once into a bundle for runc.
fn container_image(
    context: &Context,
    record: &terrarium_store::VersionRecord,
    base: Option<&str>,
) -> Result<container::ContainerImage> {
    let tools = container::Tools::find()?;
    let cache = terrarium_compute::environment::cache_dir()?;
    let layout = cache
        .join("images")
        .join(record.name.replace('/', "--"))
        .join(&record.version);
    let store = context.store()?;
    let args = super::image::BuildArgs::for_container(
        format!("{}:{}", record.name, record.version),
        layout.clone(),
        base.map(str::to_string),
    );
    let built = super::image::build_image(store.as_ref(), record, &args).with_context(|| {
        format!(
            "cannot build the image of {}:{} to run it in a container",
            record.name, record.version
        )
    })?;
    let tag = format!("{}-{}", record.name.replace('/', "-"), record.version);
    Ok(container::unpack(
        &tools,
        &cache,
        &layout,
        &tag,
        &built.digest,
    )?)
}

/// The program to start: a bare name is looked up here in the run's own `PATH` (the
/// environment's `bin` first), as the shell would. With the path resolved, the standard library
/// starts the child with `posix_spawn` (vfork) instead of `fork`, whose copy of this process's
/// page tables cost a warm run about a millisecond; it cannot when the child's `PATH` differs
/// from ours and the name is bare. A name not found is left bare, for `spawn` to report.
fn find_program(name: &str, vars: &[(String, String)]) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        return name.into();
    }
    let path = vars
        .iter()
        .rev()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| value.clone())
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| name.into())
}

/// Write the run's id to `path` whole: a reader polling for the file never sees part of it.
fn write_id_file(path: &Path, id: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(format!("{id}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A new run log, readable by its owner only: it holds the program's output, which may hold
/// anything. `create_new` also refuses a file (or symlink) that is already there.
fn create_log(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// All of `text` with the values of `secrets` masked (`***`), as a run's log is.
pub(crate) fn mask_secrets(secrets: &[String], text: &[u8]) -> Vec<u8> {
    Masker::new(secrets).mask_all(text)
}

/// Masks secret values in a stream that arrives in pieces: every byte covered by an occurrence
/// of a secret is replaced, a run of such bytes by one `***`, even when an occurrence is split
/// across pieces or overlaps another. To see a secret that is split, it holds back the end of
/// what it was given while that end could still grow into a secret: never more than the
/// longest secret less one byte, and nothing when the end cannot start a secret.
struct Masker {
    /// Non-empty, distinct.
    secrets: Vec<Vec<u8>>,
    /// Bytes given but not yet released.
    held: Vec<u8>,
    /// How many bytes at the start of `held` an occurrence already released covers.
    covered: usize,
    /// Whether the last bytes released were masked, so that masked bytes that follow belong to
    /// the same `***`.
    masking: bool,
}

impl Masker {
    fn new(secrets: &[String]) -> Self {
        let mut secrets: Vec<Vec<u8>> = secrets
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
            .collect();
        secrets.sort();
        secrets.dedup();
        Self {
            secrets,
            held: Vec::new(),
            covered: 0,
            masking: false,
        }
    }

    /// Take `input`; return what can be released now, masked.
    fn push(&mut self, input: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(input);
        self.release(false)
    }

    /// Release everything still held back, masked: the stream has ended.
    fn finish(&mut self) -> Vec<u8> {
        self.release(true)
    }

    /// All of `text`, masked.
    fn mask_all(mut self, text: &[u8]) -> Vec<u8> {
        let mut out = self.push(text);
        out.extend(self.finish());
        out
    }

    fn release(&mut self, end: bool) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        let mut cover_end = self.covered;
        // Release up to the first position where what follows could still become a secret.
        let mut release = held.len();
        let mut masked = vec![false; held.len()];
        for at in 0..held.len() {
            let rest = &held[at..];
            if !end
                && self
                    .secrets
                    .iter()
                    .any(|s| s.len() > rest.len() && s.starts_with(rest))
            {
                release = at;
                break;
            }
            for secret in &self.secrets {
                if rest.starts_with(secret) {
                    cover_end = cover_end.max(at + secret.len());
                }
            }
            if at < cover_end {
                masked[at] = true;
            }
        }
        let mut out = Vec::with_capacity(release);
        for (byte, masked) in held[..release].iter().zip(&masked) {
            if *masked {
                if !self.masking {
                    out.extend_from_slice(b"***");
                    self.masking = true;
                }
            } else {
                out.push(*byte);
                self.masking = false;
            }
        }
        self.covered = cover_end.saturating_sub(release);
        self.held = held[release..].to_vec();
        out
    }
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
/// of stdout and stderr interleave in the log but never split each other. Both copies are
/// masked before they are written.
/// Copy the program's stdout and stderr to ours and to the log until both end, each stream
/// masked as it goes and written to the log a line at a time. One loop on this thread polls
/// both pipes: a copying thread per stream cost a warm run two stacks and two malloc arenas.
fn copy_output(
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    log: &mut std::fs::File,
    secrets: &[String],
) {
    use std::os::fd::AsRawFd;
    struct Stream {
        source: Box<dyn Read>,
        fd: i32,
        sink: Box<dyn Write>,
        masker: Masker,
        /// What was copied since the last newline, for the log.
        pending: Vec<u8>,
    }
    impl Stream {
        fn copy(&mut self, text: &[u8], log: &mut std::fs::File) {
            let _ = self.sink.write_all(text);
            let _ = self.sink.flush();
            self.pending.extend_from_slice(text);
            if let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') {
                let _ = log.write_all(&self.pending[..=end]);
                self.pending.drain(..=end);
            }
        }
    }
    let mut streams: Vec<Stream> = Vec::with_capacity(2);
    if let Some(out) = stdout {
        streams.push(Stream {
            fd: out.as_raw_fd(),
            source: Box::new(out),
            sink: Box::new(std::io::stdout()),
            masker: Masker::new(secrets),
            pending: Vec::new(),
        });
    }
    if let Some(err) = stderr {
        streams.push(Stream {
            fd: err.as_raw_fd(),
            source: Box::new(err),
            sink: Box::new(std::io::stderr()),
            masker: Masker::new(secrets),
            pending: Vec::new(),
        });
    }
    let mut buf = [0u8; 8192];
    while !streams.is_empty() {
        let mut fds: Vec<libc::pollfd> = streams
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the whole call.
        #[allow(unsafe_code)]
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // Polling itself failed: read each stream to its end in turn.
            fds.iter_mut().for_each(|f| f.revents = libc::POLLIN);
        }
        let mut ended = Vec::new();
        for (i, f) in fds.iter().enumerate() {
            if f.revents == 0 {
                continue;
            }
            let stream = &mut streams[i];
            match stream.source.read(&mut buf) {
                Ok(0) => ended.push(i),
                Ok(n) => {
                    let masked = stream.masker.push(&buf[..n]);
                    stream.copy(&masked, log);
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => ended.push(i),
            }
        }
        for i in ended.into_iter().rev() {
            let mut stream = streams.remove(i);
            let rest = stream.masker.finish();
            stream.copy(&rest, log);
            if !stream.pending.is_empty() {
                let _ = log.write_all(&stream.pending);
            }
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// `20261128T041530-3fa2`: sortable by time, unique per process and moment.
pub(crate) fn new_run_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]");
    let stamp = now.format(&format).unwrap_or_default();
    let mut seed = now.unix_timestamp_nanos() as u64 ^ (u64::from(std::process::id()) << 32);
    seed ^= seed >> 33;
    seed = seed.wrapping_mul(0xff51_afd7_ed55_8ccd);
    seed ^= seed >> 33;
    format!("{stamp}-{:06x}", seed & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::Masker;

    fn secrets(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    /// `pieces` pushed one by one, then the end; also checks the hold-back bound on the way.
    fn masked(secrets: &[String], pieces: &[&[u8]]) -> Vec<u8> {
        let longest = secrets.iter().map(String::len).max().unwrap_or(0);
        let mut masker = Masker::new(secrets);
        let mut out = Vec::new();
        for piece in pieces {
            out.extend(masker.push(piece));
            assert!(masker.held.len() < longest.max(1), "held {:?}", masker.held);
        }
        out.extend(masker.finish());
        out
    }

    #[test]
    fn a_secret_split_at_every_position_is_masked() {
        let secret = secrets(&["s3cr3t-value"]);
        let text = b"token=s3cr3t-value and again s3cr3t-value\n";
        let mut cases = 0;
        for split in 0..=text.len() {
            let (a, b) = text.split_at(split);
            assert_eq!(
                String::from_utf8(masked(&secret, &[a, b])).unwrap(),
                "token=*** and again ***\n",
                "split at {split}"
            );
            cases += 1;
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(masked(&secret, &bytes), b"token=*** and again ***\n");
        assert_eq!(cases, text.len() + 1);
    }

    #[test]
    fn overlapping_and_nested_secrets_are_masked_whole() {
        // Overlapping: every byte either covers is masked, not just the first match.
        let s = secrets(&["abcd", "cdef"]);
        let text = b"x abcdef y";
        for split in 0..=text.len() {
            let (a, b) = text.split_at(split);
            assert_eq!(masked(&s, &[a, b]), b"x *** y", "split at {split}");
        }
        // Nested: the longer one is not left half shown.
        let s = secrets(&["pass", "password"]);
        let text = b"pass password passw";
        for split in 0..=text.len() {
            let (a, b) = text.split_at(split);
            assert_eq!(masked(&s, &[a, b]), b"*** *** ***w", "split at {split}");
        }
        // A secret that overlaps itself.
        assert_eq!(masked(&secrets(&["aba"]), &[b"xababay"]), b"x***y");
    }

    #[test]
    fn a_secret_at_the_end_and_a_prefix_at_the_end() {
        let s = secrets(&["s3cret"]);
        assert_eq!(masked(&s, &[b"value s3cret"]), b"value ***");
        // A prefix is held back while it could become the secret, then released as it is.
        let mut masker = Masker::new(&s);
        assert_eq!(masker.push(b"value s3cr"), b"value ");
        assert_eq!(masker.finish(), b"s3cr");
        // What cannot start a secret is never held back (prompts show at once).
        let mut masker = Masker::new(&s);
        assert_eq!(masker.push(b"Password: "), b"Password: ");
        assert!(masker.held.is_empty());
    }

    #[test]
    fn no_secrets_and_empty_secrets_change_nothing() {
        let text = b"plain text\n";
        assert_eq!(masked(&[], &[text]), text);
        // An empty value would match everywhere; it is ignored.
        assert_eq!(masked(&secrets(&[""]), &[text]), text);
        assert_eq!(Masker::new(&secrets(&["x"])).mask_all(b"a x b"), b"a *** b");
    }
}
