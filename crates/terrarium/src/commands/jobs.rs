//! Runs that are jobs on a compute target: `run --target NAME` submits one; `runs logs
//! --follow`, `runs wait` and an attached `run` follow one to its end.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use terrarium_compute::{delivery, runs, Delivery, JobSpec, PackSource, Prefix, Resources};
use terrarium_store::{RunRecord, RunState, Store};

use super::run::RunArgs;
use super::Context;
use crate::environments;
use crate::printer::{self, user_error};
use crate::workspace;

/// What a job asks of its target, and how `run` waits for it.
#[derive(Debug, Default, Args)]
pub struct JobArgs {
    /// Nodes, one task on each (compute targets).
    #[arg(long, value_name = "N")]
    nodes: Option<u32>,
    /// CPUs per task (compute targets).
    #[arg(long, value_name = "N")]
    cpus: Option<u32>,
    /// GPUs per node (compute targets).
    #[arg(long, value_name = "N")]
    gpus: Option<u32>,
    /// Memory per node, e.g. 512M, 8G (compute targets).
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Time limit, e.g. 90m, 2h, 1:30:00 (compute targets; default: the target's `time`).
    #[arg(long, value_name = "DURATION")]
    time: Option<String>,
    /// Print the run's id and return once the job is submitted (compute targets).
    #[arg(long)]
    detach: bool,
    /// Print exactly what would be submitted, and submit nothing (compute targets).
    #[arg(long)]
    dry_run: bool,
}

impl JobArgs {
    /// The first job flag given, for refusing them on `local` and `container`.
    pub fn given(&self) -> Option<&'static str> {
        [
            (self.nodes.is_some(), "--nodes"),
            (self.cpus.is_some(), "--cpus"),
            (self.gpus.is_some(), "--gpus"),
            (self.memory.is_some(), "--memory"),
            (self.time.is_some(), "--time"),
            (self.detach, "--detach"),
            (self.dry_run, "--dry-run"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

fn compute_error(err: terrarium_compute::ComputeError) -> anyhow::Error {
    anyhow::Error::new(err)
}

/// `run --target NAME`: the target must be a compute target of the workspace.
pub fn submit(context: &Context, args: RunArgs) -> Result<ExitCode> {
    let store = context.store()?;
    let target_name = args.target.clone();
    let record = match store.get_compute(&target_name) {
        Ok(record) => record,
        Err(terrarium_store::StoreError::NotFound(_)) => {
            return Err(user_error(
                format!("there is no compute target `{target_name}` in this workspace"),
                Some("`local` and `container` are built in; add a target with `terrarium compute add NAME --kind slurm`, see them with `terrarium compute list`"),
            ))
        }
        Err(err) => return Err(err.into()),
    };
    let target = runs::target(&record).map_err(compute_error)?;
    let engine = target.engine().map_err(compute_error)?;
    // Kubernetes runs the environment's image; the others run its prefix on the nodes.
    let runs_image = target.kind == terrarium_compute::Kind::Kubernetes;
    if args.base.is_some() && !runs_image {
        return Err(user_error(
            format!(
                "--base is for runs in an image (`container`, or a Kubernetes target), not on {} target `{target_name}`",
                target.kind
            ),
            Some("leave out --base"),
        ));
    }
    let job_args = &args.job;
    let resources = Resources::parse(
        job_args.nodes.unwrap_or(1),
        job_args.cpus,
        job_args.gpus,
        job_args.memory.as_deref(),
        job_args.time.as_deref(),
    )
    .map_err(compute_error)?;

    let version = environments::resolve_or_register(
        context,
        store.as_ref(),
        "--env",
        &args.env,
        "run",
        args.name.as_deref(),
    )?;
    let (lock, lock_hash) = terrarium_compute::environment::ensure_lock(
        store.as_ref(),
        &version,
        &args.lock.options()?,
        &crate::printer::Spinner::lazy(),
    )?;
    if lock.kind == terrarium_lock::LockKind::UserManaged {
        environments::check_user_managed(&lock, &version);
    }
    let cache = match target.option("cache") {
        Some(cache) => PathBuf::from(cache),
        None => terrarium_compute::environment::cache_dir()?,
    };
    let id = super::run::new_run_id();
    let log_dir = runs::log_dir(&target, &context.runs_dir()?, &id).map_err(compute_error)?;
    let cwd = std::env::current_dir()?;
    let platform = terrarium_lock::current_platform();

    // The prefix the job runs in (not built for a dry run, which only shows where it would be).
    let user_managed = lock.kind == terrarium_lock::LockKind::UserManaged;
    let (env, prefix) = if user_managed || runs_image {
        (None, None)
    } else {
        match target.delivery() {
            // Built now, once per lock, on the filesystem every node sees.
            Delivery::Shared => {
                let envs = terrarium_env::EnvCache::new(&cache);
                let key = terrarium_env::EnvCache::key(&lock, &platform);
                let env = if job_args.dry_run {
                    None
                } else {
                    terrarium_compute::environment::materialize_in(
                        &lock,
                        &cache,
                        &crate::printer::Spinner::lazy(),
                    )?
                };
                let prefix = Prefix {
                    path: envs.root().join(&key),
                    lock_hash: lock.lock_hash(),
                    in_use: envs.root().join(format!("{key}.lock")),
                    source: None,
                };
                (env, Some(prefix))
            }
            // Packed now, once per lock, on the shared filesystem; each node builds from it.
            Delivery::Pack => (
                None,
                Some(pack_prefix(
                    context,
                    &target,
                    &lock,
                    &cache,
                    &platform,
                    job_args.dry_run,
                )?),
            ),
        }
    };
    let image = if runs_image {
        let base = args.base.as_deref().or(target.option("base"));
        Some(target_image(
            store.as_ref(),
            &target,
            &version,
            base,
            job_args.dry_run,
        )?)
    } else {
        None
    };
    let vars: Vec<(String, String)> = if runs_image {
        // The image holds the environment's own variables (PATH and the like); the
        // definition's go with the job, their secrets as references the engine hands on.
        version
            .definition
            .environment_variables
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    } else if job_args.dry_run {
        // A dry run resolves no secrets: it shows the names of the variables only.
        version
            .definition
            .environment_variables
            .keys()
            .map(|k| (k.clone(), String::new()))
            .collect()
    } else {
        terrarium_compute::environment::process_env(
            &version,
            &lock,
            prefix.as_ref().map(|p| p.path.as_path()),
        )?
    }
    .into_iter()
    .chain([(crate::env_vars::TERRARIUM_RUN_ID.to_string(), id.clone())])
    .collect();
    let secret_names: Vec<String> = version
        .definition
        .environment_variables
        .iter()
        .filter(|(_, v)| v.contains("${secret:"))
        .map(|(k, _)| k.clone())
        .collect();
    let job = JobSpec {
        run_id: id.clone(),
        environment: format!("{}:{}", version.name, version.version),
        command: args.command.clone(),
        env: vars,
        secret_names,
        cwd: cwd.clone(),
        prefix,
        resources,
        log_dir: log_dir.clone(),
        spark: version.definition.spark.clone(),
        image,
    };
    if job_args.dry_run {
        print!("{}", engine.render(&job).map_err(compute_error)?);
        return Ok(ExitCode::SUCCESS);
    }
    let run = RunRecord {
        id: id.clone(),
        experiment: args.experiment.clone(),
        environment: version.name.clone(),
        version: version.version.clone(),
        lock_hash: Some(lock_hash),
        command: args.command.clone(),
        cwd: cwd.display().to_string(),
        target: target_name.clone(),
        actor: workspace::actor(),
        started_at: terrarium_store::now(),
        finished_at: None,
        exit_code: None,
        log_path: None,
        state: RunState::Queued,
        job: None,
    };
    // What the job's secrets were at submit, as a fingerprint beside its logs: its logs are
    // kept in the workspace, masked, only by a machine that has the same values (an image's
    // secrets are the cluster's, unknown here: nothing is written, nothing kept).
    if !runs_image && !job.secret_names.is_empty() {
        let fingerprint =
            secrets_fingerprint(&terrarium_compute::environment::secret_values(&version));
        std::fs::create_dir_all(&log_dir)
            .and_then(|()| std::fs::write(log_dir.join(SECRETS_FINGERPRINT), fingerprint))
            .with_context(|| format!("cannot write in {}", log_dir.display()))?;
    }
    let run =
        runs::submit(store.as_ref(), &target, engine.as_ref(), &job, run).map_err(compute_error)?;
    drop(env);
    let job_id = run.job.as_ref().map_or("", |j| j.job_id.as_str());
    printer::status(&format!(
        "run {id}: {}:{} submitted to {} target `{target_name}` as job {job_id}",
        version.name, version.version, target.kind
    ));
    if job_args.detach {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    follow(context, store.as_ref(), run, true)
}

/// The environment's image in a Kubernetes target's registry, by digest: built from the lock
/// and pushed there first when it is not (as `image build --push` does, and recorded the
/// same way). A dry run builds nothing: it names the image a build pushed before, or the tag
/// it would push.
fn target_image(
    store: &dyn Store,
    target: &terrarium_compute::Target,
    version: &terrarium_store::VersionRecord,
    base: Option<&str>,
    dry_run: bool,
) -> Result<String> {
    let registry = target.option("registry").unwrap_or_default();
    // A repository is lowercase letters, digits and `._-/`.
    let repository: String = version
        .name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '_' | '-' | '/') => c,
            _ => '-',
        })
        .collect();
    let tag: String = version
        .version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let push = format!("{registry}/{repository}:{tag}");
    let by_digest = |digest: &str| format!("{registry}/{repository}@{digest}");
    // The latest build already pushed there (asked only when nothing is built now: a build
    // looks for itself).
    let pushed = || -> Result<Option<terrarium_store::ImageBuildRecord>> {
        Ok(store
            .list_image_builds(&version.name, Some(&version.version))?
            .into_iter()
            .rev()
            .find(|b| b.pushed_to.as_deref() == Some(push.as_str())))
    };
    if version.definition.docker.base_dockerfile.is_some() {
        // Built by a container builder only: one pushed here before is used.
        return match pushed()? {
            Some(build) => Ok(by_digest(&build.digest)),
            None => Err(user_error(
                format!(
                    "{}:{} is defined by a Dockerfile, and its image is not in {registry} yet",
                    version.name, version.version
                ),
                Some(&format!(
                    "build and push it first: terrarium image build {}:{} --builder buildah --push {push}",
                    version.name, version.version
                )),
            )),
        };
    }
    if dry_run {
        return Ok(match pushed()? {
            Some(build) => by_digest(&build.digest),
            None => push,
        });
    }
    let args = super::image::BuildArgs::for_push(
        format!("{}:{}", version.name, version.version),
        push.clone(),
        base.map(str::to_string),
    );
    let built = super::image::build_image(store, version, &args).with_context(|| {
        format!(
            "cannot build and push the image of {}:{} to {registry} (the target's `registry`)",
            version.name, version.version
        )
    })?;
    Ok(by_digest(&built.digest))
}

/// With delivery=pack: the lock's pack in the target's shared cache (written once per lock),
/// the programs that install it on the nodes, and where each node builds it.
fn pack_prefix(
    context: &Context,
    target: &terrarium_compute::Target,
    lock: &terrarium_lock::Lock,
    cache: &std::path::Path,
    platform: &str,
    dry_run: bool,
) -> Result<Prefix> {
    if !lock.platforms.contains_key(platform) {
        return Err(user_error(
            format!("the lock has no packages for {platform}, the platform of this machine and its nodes"),
            Some("relock with --platform including it (`terrarium env relock REF --platform ...`)"),
        ));
    }
    let lock_hash = lock.lock_hash();
    let hex = lock_hash.strip_prefix("sha256:").unwrap_or(&lock_hash);
    // A pack holds one platform's files.
    let pack = cache.join("packs").join(format!("{hex}-{platform}.tpack"));
    let bin = cache.join("bin");
    let node_cache = target.node_cache();
    let shipped = |program: &std::path::Path, name: &str| -> Result<std::path::PathBuf> {
        if dry_run {
            Ok(bin.join(name))
        } else {
            Ok(delivery::ship_program(program, &bin, name)?)
        }
    };
    let terrarium = match target.option("terrarium") {
        Some(path) => std::path::PathBuf::from(path),
        None => shipped(&std::env::current_exe()?, "terrarium")?,
    };
    // Nodes that fetch the pack from a registry and have their own `terrarium` need not see
    // the cache: they find their own uv (TERRARIUM_UV or PATH) when the lock needs one.
    let own_programs = (target.option("pack_registry").is_some()
        || target.option("pack_server").is_some())
        && target.option("terrarium").is_some();
    let uv = match terrarium_compute::environment::find_uv(
        lock,
        platform,
        &terrarium_compute::environment::cache_dir()?,
    )? {
        Some(_) if own_programs => None,
        Some(uv) => Some(shipped(&uv.path, "uv")?),
        None => None,
    };
    if pack.is_file() {
        // Used now: `cache gc` keeps what jobs still use.
        delivery::touch(&pack);
    }
    if !dry_run && !pack.is_file() {
        std::fs::create_dir_all(cache.join("packs"))
            .with_context(|| format!("cannot create {}", cache.join("packs").display()))?;
        let spinner = printer::Spinner::start("packing");
        let written = terrarium_env::pack::write(
            lock,
            platform,
            &pack,
            terrarium_env::pack::Compression::None,
            &spinner,
        );
        spinner.finish();
        written?;
        // Readable by the other users who share the cache and find it there.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pack, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot make {} readable", pack.display()))?;
    }
    // With a pack registry the nodes fetch the pack from it, by the digest of the artifact;
    // with a pack server, through a signed link to the pack's digest.
    let reference = match target.option("pack_registry") {
        None => match target.option("pack_server") {
            None => None,
            Some(server) if dry_run => Some(format!(
                "{}/api/v1/packs/sha256:digest-of-the-pack?expires=...&signature=...",
                server.trim_end_matches('/')
            )),
            Some(server) => Some(server_pack_link(context, target, server, &pack)?),
        },
        Some(repository) if dry_run => Some(format!(
            "{repository}@sha256:digest-of-the-pack-pushed-at-submit"
        )),
        Some(repository) => {
            let target_ref =
                terrarium_image::registry::ImageRef::parse(repository).map_err(|e| {
                    user_error(e.to_string(), Some("set pack_registry=REGISTRY/REPOSITORY"))
                })?;
            let tag = format!("{}-{platform}", &hex[..12.min(hex.len())]);
            let spinner = printer::Spinner::start("pushing the pack");
            let pushed = terrarium_image::artifact::push_pack(
                &pack,
                &target_ref,
                &tag,
                &lock_hash,
                platform,
                &[],
            );
            spinner.finish();
            let pushed = pushed.with_context(|| {
                format!("cannot push the pack to {repository} (the target's `pack_registry`)")
            })?;
            Some(pushed.reference)
        }
    };
    let envs = terrarium_env::EnvCache::new(&node_cache);
    let key = terrarium_env::EnvCache::key(lock, platform);
    Ok(Prefix {
        path: envs.root().join(&key),
        lock_hash,
        in_use: envs.root().join(format!("{key}.lock")),
        source: Some(PackSource {
            pack,
            reference,
            node_cache,
            terrarium,
            uv,
            lock: std::sync::Arc::new(lock.clone()),
        }),
    })
}

/// Upload the pack to the team server `server` unless it keeps it already, and return a signed
/// link the nodes fetch it through (no token on the nodes).
fn server_pack_link(
    context: &Context,
    target: &terrarium_compute::Target,
    server: &str,
    pack: &std::path::Path,
) -> Result<String> {
    let digest = pack_digest(pack)?;
    // The target's option was checked when it was stored; the server takes whole minutes.
    let seconds = target
        .option("pack_link_lifetime")
        .and_then(|v| terrarium_compute::resources::parse_duration(v).ok())
        .unwrap_or(7 * 86_400);
    let lifetime = format!("{}m", seconds.div_ceil(60).max(1));
    let client =
        terrarium_server::client::RemoteStore::new(server, pack_server_token(context, server)?)
            .map_err(|e| {
                user_error(e.to_string(), Some("set pack_server=http(s)://HOST[:PORT]"))
            })?;
    let failed = |e: terrarium_store::StoreError| {
        let message = format!("cannot give the pack to {server} (the target's `pack_server`): {e}");
        match e {
            terrarium_store::StoreError::Remote {
                status: 401 | 403, ..
            } => user_error(
                message,
                Some("use that server as the workspace (its token in TERRARIUM_TOKEN), or set TERRARIUM_PACK_SERVER_TOKEN to a contributor token of it"),
            ),
            terrarium_store::StoreError::Remote { code, .. } if code == "no_packs" => user_error(
                message,
                Some("start the server with `terrarium server --packs DIR`, or use pack_registry"),
            ),
            _ => anyhow::anyhow!(message),
        }
    };
    let link = match client.pack_link(&digest, &lifetime).map_err(failed)? {
        Some(link) => link,
        None => {
            let spinner = printer::Spinner::start("uploading the pack");
            let sent = client.upload_pack(&digest, pack, &lifetime);
            spinner.finish();
            sent.map_err(failed)?
        }
    };
    Ok(format!("{}{}", client.url(), link.link))
}

/// The token to give the pack server `server`. The workspace's own token goes only to the
/// workspace's own server: a target's `pack_server` is any contributor's to set, and would
/// otherwise collect the token of everyone who submits to it. Another server takes the token
/// in TERRARIUM_PACK_SERVER_TOKEN.
fn pack_server_token(context: &Context, server: &str) -> Result<Option<String>> {
    let workspace = crate::workspace::workspace_dir(context.workspace.clone())
        .ok()
        .map(|dir| dir.to_string_lossy().into_owned())
        .filter(|dir| terrarium_server::client::is_server_url(dir));
    if workspace.is_some_and(|w| terrarium_server::client::same_origin(&w, server)) {
        return crate::workspace::token();
    }
    Ok(std::env::var(terrarium_compute::PACK_SERVER_TOKEN)
        .ok()
        .filter(|t| !t.is_empty()))
}

/// The sha256 of a pack file in the shared cache, kept beside it once computed (the pack is
/// written once and never changed; the nodes check its files against the lock anyway).
fn pack_digest(pack: &std::path::Path) -> Result<String> {
    let sidecar = pack.with_extension("tpack.sha256");
    if let Ok(text) = std::fs::read_to_string(&sidecar) {
        if terrarium_server::packs::check_digest(text.trim()).is_ok() {
            return Ok(text.trim().to_string());
        }
    }
    let digest = terrarium_server::packs::file_digest(pack)
        .with_context(|| format!("cannot read {}", pack.display()))?;
    // Best effort: a cache another user owns may refuse the write; the digest is computed again.
    if let Some(dir) = sidecar.parent() {
        if let Ok(temp) = tempfile::NamedTempFile::new_in(dir) {
            if std::fs::write(temp.path(), &digest).is_ok() {
                let _ = temp.persist(&sidecar);
            }
        }
    }
    Ok(digest)
}

/// Follow a job run to its end, printing its logs as they grow when `print` is set; the exit
/// code is the job's.
pub fn follow(
    context: &Context,
    store: &dyn Store,
    mut run: RunRecord,
    print: bool,
) -> Result<ExitCode> {
    let was_final = run.state.is_final();
    // The target is looked up once: its logs are read often, its engine asked every 250 ms
    // (each ask starts a client program or makes a request).
    let logs = job_logs(context, store, &run)?;
    let interval = logs.as_ref().map_or(STATE_EVERY, |(engine, _)| {
        engine.log_interval().min(STATE_EVERY)
    });
    // An engine that does not answer (a Ray head that died) keeps no logs to read: what was
    // copied so far is printed, and the state decides when to stop.
    let read_logs = || -> Result<Vec<terrarium_compute::TaskLog>> {
        match &logs {
            Some((engine, dir)) => match engine.logs(dir) {
                Ok(logs) => Ok(logs),
                Err(
                    terrarium_compute::ComputeError::Unreachable { .. }
                    | terrarium_compute::ComputeError::Silent { .. },
                ) => Ok(Vec::new()),
                Err(err) => Err(compute_error(err)),
            },
            None => Ok(Vec::new()),
        }
    };
    let mut tails = Tails::default();
    let mut last_state = None;
    // The engine is asked on a thread of its own (each ask starts a client program or makes a
    // request, tens of milliseconds), so that the logs are read every `interval` meanwhile.
    let (updates, states) = std::sync::mpsc::channel::<Result<(RunRecord, bool)>>();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| -> Result<ExitCode> {
        let asking = run.clone();
        let stop = &stop;
        let engine = logs
            .as_ref()
            .map(|(engine, dir)| (engine.as_ref(), dir.as_path()));
        let runs_dir = context.runs_dir()?;
        scope.spawn(move || {
            let mut run = asking;
            let mut silent_since = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let answer =
                    runs::refresh_following(store, run.clone(), &runs_dir, &mut silent_since)
                        .map_err(compute_error);
                let end = answer.as_ref().map_or(true, |r| r.state.is_final());
                if let Ok(refreshed) = &answer {
                    run = refreshed.clone();
                }
                let silent = silent_since.is_some();
                if updates.send(answer.map(|r| (r, silent))).is_err() || end {
                    return;
                }
                match (engine, &run.job) {
                    (Some((engine, dir)), Some(job)) => {
                        engine.wait_for_change(&job.job_id, dir, STATE_EVERY)
                    }
                    _ => std::thread::sleep(STATE_EVERY),
                }
            }
        });
        let result = (|| -> Result<ExitCode> {
            let mut warned = false;
            loop {
                loop {
                    let answer = match states.try_recv() {
                        Ok(answer) => answer,
                        Err(std::sync::mpsc::TryRecvError::Empty) => break,
                        // The asking thread ended without a final state: it panicked.
                        Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                            if run.state.is_final() {
                                break;
                            }
                            anyhow::bail!(
                                "lost the thread that asks the engine about run {}",
                                run.id
                            );
                        }
                    };
                    let (refreshed, silent) = answer?;
                    run = refreshed;
                    if silent && !warned && !run.state.is_final() {
                        printer::warn(&format!(
                            "run {}: the engine of target `{}` does not answer; waiting (the target's `lost_after` says how long)",
                            run.id, run.target
                        ));
                        warned = true;
                    }
                }
                if print {
                    tails.print(&read_logs()?, false)?;
                }
                if last_state != Some(run.state) {
                    if last_state.is_some() || run.state != RunState::Queued {
                        printer::status(&format!("run {}: {}", run.id, describe(&run)));
                    }
                    last_state = Some(run.state);
                }
                if run.state.is_final() {
                    if print {
                        tails.print(&read_logs()?, true)?;
                    }
                    if !was_final {
                        keep_job_log(context, store, &run);
                    }
                    let code = match (run.state, run.exit_code) {
                        (RunState::Completed, _) => 0,
                        (_, Some(code)) if code != 0 => code,
                        _ => 1,
                    };
                    return Ok(ExitCode::from(code.clamp(0, 255) as u8));
                }
                std::thread::sleep(interval);
            }
        })();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    })
}

const STATE_EVERY: Duration = Duration::from_millis(250);

/// The state, with the exit code and the engine's reason when there are any.
pub fn describe(run: &RunRecord) -> String {
    let mut text = run.state.to_string();
    if let Some(code) = run.exit_code.filter(|_| run.state.is_final()) {
        text.push_str(&format!(", exit code {code}"));
    }
    if let Some(reason) = run.job.as_ref().and_then(|j| j.reason.as_deref()) {
        text.push_str(&format!(" ({reason})"));
    }
    text
}

/// The file beside a job's logs holding [`secrets_fingerprint`] of its secrets at submit.
const SECRETS_FINGERPRINT: &str = "secrets.sha256";

/// The SHA-256 of secret values (each followed by a NUL), in hex: whether two sets are the
/// same, without keeping the values.
fn secrets_fingerprint(values: &[String]) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for value in values {
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    format!("{:x}", hasher.finalize())
}

/// Keep a job's logs in the workspace once it has ended, as a local run's are, so that every
/// client (the SDKs, the R client, the web UI) can show them: each task's log after a
/// `==> TASK <==` line, the last 8 MiB, with the values of the environment's secrets masked.
/// Done by the machine that saw the job end; nothing is kept when the environment names secrets
/// and this machine does not hold the values the job was submitted with (the fingerprint
/// written beside the logs at submit: another machine, a rotated secret, or an image's
/// secrets), since they could not be masked; nor when the run is another user's (the server
/// refuses).
pub fn keep_job_log(context: &Context, store: &dyn Store, run: &RunRecord) {
    let kept = (|| -> Result<()> {
        let record = store.resolve(&terrarium_spec::names::Reference::Version(
            run.environment.clone(),
            run.version.clone(),
        ))?;
        let Some(secrets) = terrarium_compute::environment::secret_values_all(&record) else {
            return Ok(());
        };
        let names_secrets = record
            .definition
            .environment_variables
            .values()
            .any(|v| v.contains("${secret:"));
        if names_secrets {
            let Some((_, dir)) = job_logs(context, store, run)? else {
                return Ok(());
            };
            let submitted = std::fs::read_to_string(dir.join(SECRETS_FINGERPRINT)).ok();
            if submitted.as_deref().map(str::trim) != Some(secrets_fingerprint(&secrets).as_str()) {
                return Ok(());
            }
        }
        // The end of each log: at most 8 MiB kept, and a secret cut at the cut's edge is
        // read whole.
        const MAX: u64 = 8 * 1024 * 1024;
        let margin = secrets.iter().map(|s| s.len() as u64).max().unwrap_or(0);
        let mut text = Vec::new();
        for log in log_files(context, store, run)? {
            if let Ok(bytes) = read_tail(&log.path, MAX + margin) {
                text.extend_from_slice(format!("==> {} <==\n", log.task).as_bytes());
                text.extend_from_slice(&bytes);
            }
        }
        if text.is_empty() {
            return Ok(());
        }
        let mut text = super::run::mask_secrets(&secrets, &text);
        if text.len() as u64 > MAX {
            text.drain(..text.len() - MAX as usize);
        }
        match store.put_run_log(&run.id, &text) {
            Err(terrarium_store::StoreError::Remote { status: 403, .. }) => Ok(()),
            other => Ok(other?),
        }
    })();
    if let Err(err) = kept {
        printer::warn(&format!(
            "cannot keep the logs of run {} in the workspace: {err:#}",
            run.id
        ));
    }
}

/// The last `max` bytes of a file.
fn read_tail(path: &std::path::Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > max {
        file.seek(std::io::SeekFrom::Start(len - max))?;
    }
    let mut bytes = Vec::with_capacity(len.min(max) as usize);
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A job run's log files: the batch's and each task's, found from the target's layout.
pub fn log_files(
    context: &Context,
    store: &dyn Store,
    run: &RunRecord,
) -> Result<Vec<terrarium_compute::TaskLog>> {
    match job_logs(context, store, run)? {
        Some((engine, dir)) => {
            let mut logs = engine.logs(&dir).map_err(compute_error)?;
            // The engine's own copies are extra: when they cannot be fetched now, say so and
            // show what is here.
            match engine.ended_logs(&dir) {
                Ok(ended) => logs.extend(ended),
                Err(err) => printer::warn(&format!("{err}")),
            }
            Ok(logs)
        }
        None => Ok(Vec::new()),
    }
}

/// The engine that keeps a job run's logs and their directory, from the target's layout;
/// `None` when the target is gone from the workspace.
fn job_logs(
    context: &Context,
    store: &dyn Store,
    run: &RunRecord,
) -> Result<Option<(Box<dyn terrarium_compute::Engine>, PathBuf)>> {
    let record = match store.get_compute(&run.target) {
        Ok(record) => record,
        Err(terrarium_store::StoreError::NotFound(_)) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let target = runs::target(&record).map_err(compute_error)?;
    let dir = runs::log_dir(&target, &context.runs_dir()?, &run.id).map_err(compute_error)?;
    Ok(Some((target.engine().map_err(compute_error)?, dir)))
}

/// How far each log file has been printed.
#[derive(Default)]
pub(crate) struct Tails {
    printed: std::collections::BTreeMap<PathBuf, u64>,
}

impl Tails {
    /// Print what each file gained; a last line without its newline waits for it unless this
    /// is the `end`.
    pub(crate) fn print(&mut self, logs: &[terrarium_compute::TaskLog], end: bool) -> Result<()> {
        let several = logs.len() > 1;
        let mut out = std::io::stdout().lock();
        for log in logs {
            let done = self.printed.get(&log.path).copied().unwrap_or(0);
            let Ok(mut file) = std::fs::File::open(&log.path) else {
                continue;
            };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len <= done {
                continue;
            }
            file.seek(SeekFrom::Start(done))?;
            let mut bytes = Vec::new();
            file.take(len - done).read_to_end(&mut bytes)?;
            // Whole lines only, so that tasks' lines do not interleave mid-line.
            let upto = match bytes.iter().rposition(|&b| b == b'\n') {
                _ if end => bytes.len(),
                Some(at) => at + 1,
                None => continue,
            };
            for line in bytes[..upto].split_inclusive(|&b| b == b'\n') {
                if several && log.task != "batch" {
                    write!(out, "[{}] ", log.task).map_err(crate::printer::stdout_error)?;
                }
                out.write_all(line).map_err(crate::printer::stdout_error)?;
                if end && !line.ends_with(b"\n") {
                    out.write_all(b"\n").map_err(crate::printer::stdout_error)?;
                }
            }
            self.printed.insert(log.path.clone(), done + upto as u64);
        }
        out.flush().map_err(crate::printer::stdout_error)?;
        Ok(())
    }
}
