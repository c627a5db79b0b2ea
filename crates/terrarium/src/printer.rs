//! Output: data to stdout, status, warnings and errors to stderr.

use std::process::ExitCode;

use serde::Serialize;
use terrarium_spec::{SpecError, Warning};
use terrarium_store::StoreError;

/// Exit code for errors in the user's input or request.
pub const EXIT_USER_ERROR: u8 = 2;
/// Exit code for unexpected failures.
pub const EXIT_FAILURE: u8 = 1;

/// An error with a hint for the user.
#[derive(Debug)]
pub struct UserError {
    pub message: String,
    pub hint: Option<String>,
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

pub fn user_error(message: impl Into<String>, hint: Option<&str>) -> anyhow::Error {
    UserError {
        message: message.into(),
        hint: hint.map(str::to_string),
    }
    .into()
}

pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn warnings(warnings: &[Warning]) {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
}

pub fn warn(message: &str) {
    eprintln!("warning: {message}");
}

pub fn status(message: &str) {
    eprintln!("{message}");
}

/// Print `error: ...`, each cause as `Caused by: ...`, then a hint, and pick the exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  Caused by: {cause}");
    }
    let mut user = false;
    let mut hint = None;
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<UserError>() {
            user = true;
            hint = hint.or(e.hint.clone());
        } else if let Some(e) = cause.downcast_ref::<SpecError>() {
            user |= !matches!(e, SpecError::Io { source, .. } if source.kind() != std::io::ErrorKind::NotFound);
        } else if let Some(e) = cause.downcast_ref::<terrarium_resolve::ResolveError>() {
            user |= e.is_user_error();
        } else if let Some(e) = cause.downcast_ref::<terrarium_lock::LockError>() {
            user |= e.is_user_error();
        } else if let Some(e) = cause.downcast_ref::<terrarium_env::EnvError>() {
            user |= e.is_user_error();
        } else if let Some(e) = cause.downcast_ref::<terrarium_image::base::BaseError>() {
            user |= e.is_user_error();
        } else if let Some(e) = cause.downcast_ref::<terrarium_image::ImageError>() {
            user |= e.is_user_error();
        } else if let Some(e) = cause.downcast_ref::<terrarium_image::StageError>() {
            user |= e.is_user_error();
            hint = hint.or(stage_hint(e).map(str::to_string));
        } else if let Some(e) = cause.downcast_ref::<terrarium_image::registry::RegistryError>() {
            user |= e.is_user_error();
        } else if let Some(e) = cause.downcast_ref::<terrarium_serve::DeploymentError>() {
            user |= e.is_user_error();
        } else if let Some(e) = cause.downcast_ref::<terrarium_compute::ComputeError>() {
            user |= e.is_user_error();
            if let terrarium_compute::ComputeError::Store(e) = e {
                hint = hint.or(store_hint(e));
            }
        } else if let Some(e) = cause.downcast_ref::<StoreError>() {
            user |= e.is_user_error();
            hint = hint.or(store_hint(e));
        }
    }
    if let Some(hint) = hint {
        eprintln!("hint: {hint}");
    }
    ExitCode::from(if user { EXIT_USER_ERROR } else { EXIT_FAILURE })
}

/// What to do about a store error: the library says what is wrong, the CLI says which command
/// helps. A team server's answers carry the same cases as codes.
fn store_hint(err: &StoreError) -> Option<String> {
    let code = match err {
        StoreError::Remote { code, .. } => code.as_str(),
        StoreError::NotFound(_) => "not_found",
        StoreError::Curated(_) => "curated",
        StoreError::Archived(_) => "archived",
        StoreError::Referenced { .. } => "referenced",
        StoreError::VersionConflict { .. } => "conflict",
        _ => return None,
    };
    Some(match (code, err) {
        ("not_found", StoreError::NotFound(subject)) if subject.starts_with("run ") => {
            "`terrarium runs list` shows the runs in this workspace".into()
        }
        ("not_found", StoreError::NotFound(subject)) if subject.starts_with("deployment ") => {
            "`terrarium deployments list` shows the deployments in this workspace".into()
        }
        ("not_found", StoreError::NotFound(subject)) if subject.starts_with("compute target ") => {
            "`terrarium compute list` shows the compute targets of this workspace".into()
        }
        ("not_found", StoreError::NotFound(subject)) if subject.starts_with("token ") => {
            "`terrarium token list` shows the tokens of this workspace".into()
        }
        ("not_found", StoreError::NotFound(subject))
            if subject.starts_with("environment")
                || subject.starts_with("version")
                || subject.starts_with("label") =>
        {
            "`terrarium env list` shows the environments in this workspace".into()
        }
        ("curated", StoreError::Curated(name)) => {
            format!("`terrarium env clone {name} NEW-NAME` makes an editable copy")
        }
        ("curated", _) => "`terrarium env clone NAME NEW-NAME` makes an editable copy".into(),
        ("archived", _) => {
            "an archived version is still there by NAME:VERSION; `terrarium env restore NAME[:VERSION]` brings it back".into()
        }
        ("referenced", StoreError::Referenced { reference, .. }) => format!(
            "`terrarium env archive {reference}` hides it instead; labels move with `terrarium env label` and go with `terrarium env unlabel`"
        ),
        ("referenced", _) => "archive it instead (`terrarium env archive NAME:VERSION`)".into(),
        ("conflict", _) => {
            "register without --version to get a new version: versions are immutable".into()
        }
        _ => return None,
    })
}

/// What to do about an image that cannot be made: the flags that help.
fn stage_hint(err: &terrarium_image::StageError) -> Option<&'static str> {
    use terrarium_image::StageError as E;
    Some(match err {
        E::NoImagePlatform { .. } => "relock with --platform linux-64",
        E::NotConda { .. } => "pass --base IMAGE (an image with the Python the environment was locked for), or add python to its conda dependencies",
        E::NeedsGlibc { .. } | E::NeedsLoader { .. } => {
            "pass --base IMAGE, an image with glibc (e.g. Debian or Ubuntu)"
        }
        E::PipOnlyWithoutBase { .. } => "pass --base IMAGE, e.g. --base python:3.11-slim",
        E::NoPython { .. } => "choose a base image with that Python",
        E::UserManaged { .. } => "build its image with the Dockerfile you install it with (`image build --builder buildah` for a Dockerfile environment), or register a system-managed definition",
        E::NoPlatform { .. } => "relock with --platform including it",
        E::BaseReference(_) => "give REGISTRY/REPOSITORY[:TAG] or oci:DIR[:TAG]",
        E::FrontUnreadable { .. } | E::NotAFront { .. } | E::DynamicFront { .. } => {
            "build it with scripts/build-front.sh (cargo build --release -p terrarium-serve with +crt-static) and pass --front PATH or set TERRARIUM_FRONT, or install it next to terrarium"
        }
        _ => return None,
    })
}

/// A spinner on stderr when it is a terminal; silent otherwise.
pub struct Spinner {
    bar: Option<indicatif::ProgressBar>,
}

impl Spinner {
    pub fn start(message: &str) -> Self {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(message.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Self { bar: Some(bar) }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl terrarium_env::Reporter for Spinner {
    fn step(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
        }
    }
}

/// A library's long steps (`terrarium_image::Reporter`), each a spinner while it lasts.
#[derive(Default)]
pub struct Progress {
    spinner: std::cell::RefCell<Option<Spinner>>,
}

impl terrarium_image::Reporter for Progress {
    fn start(&self, message: &str) {
        if let Some(previous) = self.spinner.replace(Some(Spinner::start(message))) {
            previous.finish();
        }
    }

    fn step(&self, message: &str) {
        if let Some(spinner) = self.spinner.borrow().as_ref() {
            terrarium_env::Reporter::step(spinner, message);
        }
    }

    fn finish(&self) {
        if let Some(spinner) = self.spinner.take() {
            spinner.finish();
        }
    }
}

/// A byte count for people (the web UI's format).
pub use terrarium_server::human_size;
