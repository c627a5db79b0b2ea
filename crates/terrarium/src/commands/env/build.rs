//! `terrarium env build` and `terrarium env verify`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::commands::Context;
use crate::environments::{self, LockArgs};
use crate::printer::{self, user_error};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// NAME, NAME:VERSION, NAME@LABEL, or a definition file (registered first).
    reference: String,
    #[command(flatten)]
    lock: LockArgs,
    /// Print the prefix as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// NAME, NAME:VERSION or NAME@LABEL.
    reference: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn build(context: &Context, args: BuildArgs) -> Result<ExitCode> {
    let store = context.store()?;
    let record = environments::resolve_or_register(
        context,
        store.as_ref(),
        "REFERENCE",
        &args.reference,
        "import",
        None,
    )?;
    let (lock, hash) = terrarium_compute::environment::ensure_lock(
        store.as_ref(),
        &record,
        &args.lock.options()?,
        &crate::printer::Spinner::lazy(),
    )?;
    let env = terrarium_compute::environment::materialize(&lock, &crate::printer::Spinner::lazy())?;
    let Some(env) = env else {
        // User-managed: its interpreter is used as it is.
        let platform = terrarium_lock::current_platform();
        let interpreter = lock
            .platforms
            .get(&platform)
            .and_then(|section| section.python.as_ref())
            .and_then(|python| python.interpreter.clone());
        if args.json {
            printer::json(&Built {
                name: &record.name,
                version: &record.version,
                lock_hash: &hash,
                prefix: None,
                built: false,
                user_managed: true,
                interpreter,
            })?;
        }
        printer::status(&format!(
            "{}:{} is user-managed: nothing to build",
            record.name, record.version
        ));
        return Ok(ExitCode::SUCCESS);
    };
    if args.json {
        printer::json(&Built {
            name: &record.name,
            version: &record.version,
            lock_hash: &hash,
            prefix: Some(&env.prefix),
            built: env.built,
            user_managed: false,
            interpreter: None,
        })?;
    } else {
        printer::line(env.prefix.display())?;
        printer::status(&format!(
            "{} {}:{} ({hash})",
            if env.built { "built" } else { "already built:" },
            record.name,
            record.version
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// What `env build --json` prints.
#[derive(serde::Serialize)]
struct Built<'a> {
    name: &'a str,
    version: &'a str,
    lock_hash: &'a str,
    /// The built prefix; none for a user-managed environment.
    prefix: Option<&'a std::path::Path>,
    /// False when it was built already, and for a user-managed environment.
    built: bool,
    user_managed: bool,
    /// A user-managed environment's interpreter, when its lock records one for this platform.
    #[serde(skip_serializing_if = "Option::is_none")]
    interpreter: Option<String>,
}

pub fn verify(context: &Context, args: VerifyArgs) -> Result<ExitCode> {
    let reference = super::parse_reference(&args.reference)?;
    let store = context.store()?;
    let record = store.resolve(&reference)?;
    let Some(hash) = &record.lock_hash else {
        return Err(user_error(
            format!("{}:{} has no lock yet", record.name, record.version),
            Some("build it first with `terrarium env build`"),
        ));
    };
    let lock = terrarium_lock::Lock::from_json(&store.get_lock(hash)?)?;
    let cache = terrarium_env::EnvCache::new(&terrarium_compute::environment::cache_dir()?);
    let platform = terrarium_lock::current_platform();
    let Some(env) = cache.lookup(&lock, &platform)? else {
        return Err(user_error(
            format!(
                "{}:{} is not built on this machine",
                record.name, record.version
            ),
            Some("build it first with `terrarium env build`"),
        ));
    };
    let report = terrarium_env::verify(&env.prefix, &lock, &platform)?;
    if args.json {
        printer::json(&report)?;
    } else {
        for problem in &report.problems {
            printer::line(format_args!("{problem}"))?;
        }
        printer::status(&format!(
            "{}: {} packages and {} files checked, {} problem(s)",
            env.prefix.display(),
            report.packages_checked,
            report.files_checked,
            report.problems.len()
        ));
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
