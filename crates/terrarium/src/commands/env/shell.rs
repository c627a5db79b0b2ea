//! `terrarium env shell`, `terrarium env activate` and `terrarium env kernel`

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result};
use clap::Args;

use crate::commands::Context;
use crate::environments::{self, LockArgs};
use crate::printer;

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// NAME, NAME:VERSION, NAME@LABEL, or a definition file.
    reference: String,
    #[command(flatten)]
    lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct KernelArgs {
    /// NAME, NAME:VERSION, NAME@LABEL, or a definition file.
    reference: String,
    /// Where Jupyter looks for kernels [default: $JUPYTER_DATA_DIR/kernels or ~/.local/share/jupyter/kernels].
    #[arg(long, value_name = "DIR")]
    kernels_dir: Option<PathBuf>,
    #[command(flatten)]
    lock: LockArgs,
}

/// Start `$SHELL` inside the environment.
pub fn shell(context: &Context, args: ShellArgs) -> Result<ExitCode> {
    let store = context.store()?;
    let record = environments::resolve_or_register(
        context,
        store.as_ref(),
        "REFERENCE",
        &args.reference,
        "import",
        None,
    )?;
    let (lock, _) = terrarium_compute::environment::ensure_lock(
        store.as_ref(),
        &record,
        &args.lock.options()?,
        &crate::printer::Spinner::lazy(),
    )?;
    let env = terrarium_compute::environment::materialize(&lock, &crate::printer::Spinner::lazy())?;
    let vars = terrarium_compute::environment::process_env(
        &record,
        &lock,
        env.as_ref().map(|e| e.prefix.as_path()),
    )?;
    let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into());
    printer::status(&format!(
        "entering {}:{} (exit the shell to leave)",
        record.name, record.version
    ));
    let status = Command::new(&shell)
        .envs(vars)
        .status()
        .with_context(|| format!("cannot start {shell}"))?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

/// Print shell code that activates the environment: `eval "$(terrarium env activate REF)"`.
/// Secrets are not printed: variables that reference them read `$TERRARIUM_SECRET_<NAME>`.
pub fn activate(context: &Context, args: ShellArgs) -> Result<ExitCode> {
    let store = context.store()?;
    let record = environments::resolve_or_register(
        context,
        store.as_ref(),
        "REFERENCE",
        &args.reference,
        "import",
        None,
    )?;
    let (lock, _) = terrarium_compute::environment::ensure_lock(
        store.as_ref(),
        &record,
        &args.lock.options()?,
        &crate::printer::Spinner::lazy(),
    )?;
    let env = terrarium_compute::environment::materialize(&lock, &crate::printer::Spinner::lazy())?;
    let mut out = String::new();
    if let Some(env) = &env {
        out.push_str(&format!(
            "export PATH={}:\"$PATH\"\n",
            quote(&env.bin_dir().display().to_string())
        ));
        let var = if lock.platforms.values().any(|p| !p.conda.is_empty()) {
            "CONDA_PREFIX"
        } else {
            "VIRTUAL_ENV"
        };
        out.push_str(&format!(
            "export {var}={}\n",
            quote(&env.prefix.display().to_string())
        ));
    }
    out.push_str(&format!(
        "export TERRARIUM_ENVIRONMENT={}\n",
        quote(&format!("{}:{}", record.name, record.version))
    ));
    for (key, value) in &record.definition.environment_variables {
        out.push_str(&format!("export {key}={}\n", shell_value(value)));
    }
    printer::out(&out)?;
    // The prefix stays cached after this process exits; the activated shell uses it in place.
    Ok(ExitCode::SUCCESS)
}

/// Install a Jupyter kernelspec that runs the environment's Python.
pub fn kernel(context: &Context, args: KernelArgs) -> Result<ExitCode> {
    let store = context.store()?;
    let record = environments::resolve_or_register(
        context,
        store.as_ref(),
        "REFERENCE",
        &args.reference,
        "import",
        None,
    )?;
    let (lock, _) = terrarium_compute::environment::ensure_lock(
        store.as_ref(),
        &record,
        &args.lock.options()?,
        &crate::printer::Spinner::lazy(),
    )?;
    let env = terrarium_compute::environment::materialize(&lock, &crate::printer::Spinner::lazy())?;
    let python = match &env {
        Some(env) => env.python(),
        None => lock
            .platforms
            .get(&terrarium_lock::current_platform())
            .and_then(|p| p.python.as_ref())
            .and_then(|p| p.interpreter.clone())
            .map(PathBuf::from)
            .context("the lock names no interpreter")?,
    };
    let has_ipykernel = Command::new(&python)
        .args(["-c", "import ipykernel"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_ipykernel {
        eprintln!("warning: ipykernel is not installed in {}:{}; add it to the definition for the kernel to start", record.name, record.version);
    }
    let dir = match args.kernels_dir {
        Some(dir) => dir,
        None => match std::env::var_os("JUPYTER_DATA_DIR") {
            Some(d) => PathBuf::from(d).join("kernels"),
            None => dirs::data_dir()
                .context("no data directory")?
                .join("jupyter")
                .join("kernels"),
        },
    };
    let kernel_name = format!(
        "terrarium-{}-{}",
        record.name.replace('/', "-"),
        record.version
    )
    .to_lowercase();
    let kernel_dir = dir.join(&kernel_name);
    std::fs::create_dir_all(&kernel_dir)
        .with_context(|| format!("cannot create {}", kernel_dir.display()))?;
    let mut env_vars = serde_json::Map::new();
    if let Some(env) = &env {
        env_vars.insert(
            "PATH".into(),
            format!("{}:${{PATH}}", env.bin_dir().display()).into(),
        );
    }
    env_vars.insert(
        "TERRARIUM_ENVIRONMENT".into(),
        format!("{}:{}", record.name, record.version).into(),
    );
    for (key, value) in &record.definition.environment_variables {
        if !value.contains("${secret:") {
            env_vars.insert(key.clone(), value.clone().into());
        }
    }
    let spec = serde_json::json!({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": format!("{}:{} (terrarium)", record.name, record.version),
        "language": "python",
        "env": env_vars,
        "metadata": {"terrarium": {"environment": record.name, "version": record.version, "lock_hash": record.lock_hash}},
    });
    let path = kernel_dir.join("kernel.json");
    std::fs::write(&path, serde_json::to_string_pretty(&spec)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    printer::line(path.display())?;
    printer::status(&format!("installed kernel `{kernel_name}`"));
    Ok(ExitCode::SUCCESS)
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Values with `${secret:NAME}` become `"${TERRARIUM_SECRET_NAME}"` so that no secret is printed.
fn shell_value(value: &str) -> String {
    if !value.contains("${secret:") {
        return quote(value);
    }
    let mut out = String::from("\"");
    let mut rest = value;
    while let Some(start) = rest.find("${secret:") {
        out.push_str(&escape_double(&rest[..start]));
        let after = &rest[start + 9..];
        let end = after.find('}').unwrap_or(after.len());
        out.push_str(&format!(
            "${{TERRARIUM_SECRET_{}}}",
            after[..end].replace('-', "_")
        ));
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(&escape_double(rest));
    out.push('"');
    out
}

fn escape_double(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "\\$")
        .replace('`', "\\`")
}
