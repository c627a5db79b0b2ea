//! Output: data to stdout, status, warnings and errors to stderr.
//!
//! An error is printed for people (`error: ...`, `Caused by: ...`, `hint: ...`) and, when
//! `TERRARIUM_ERRORS=json` is set, once more for programs as the last line of stderr (see
//! [`ErrorReport`]). Data written to a stdout that nobody reads any more (`terrarium env list |
//! head -1`) ends the command quietly, with success, as for uv and ripgrep.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;
use terrarium_spec::{Location, SpecError, Warning};
use terrarium_store::StoreError;

use crate::env_vars;

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

/// Whoever read our stdout has gone (`EPIPE`): what is left to print has no reader.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Write data to stdout; a reader that has gone becomes [`StdoutClosed`].
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        other => Ok(other?),
    }
}

/// An error writing stdout directly: a reader that has gone becomes [`StdoutClosed`], so the
/// command ends quietly.
pub fn stdout_error(err: std::io::Error) -> anyhow::Error {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        err.into()
    }
}

/// Data for stdout, as it is (`print!`).
pub fn out(text: impl std::fmt::Display) -> anyhow::Result<()> {
    write_stdout(text.to_string().as_bytes())
}

/// One line of data for stdout (`println!`): `printer::line(format_args!(...))`.
pub fn line(text: impl std::fmt::Display) -> anyhow::Result<()> {
    write_stdout(format!("{text}\n").as_bytes())
}

/// For a caller that cannot return the error of [`out`] or [`line`]: what `println!` does, but
/// quietly when stdout's reader has gone.
pub fn print_failed(err: &anyhow::Error) -> ! {
    if err.is::<StdoutClosed>() {
        std::process::exit(0);
    }
    panic!("failed printing to stdout: {err:#}");
}

pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    line(serde_json::to_string_pretty(value)?)
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

/// Commands that still print with `println!` panic when stdout's reader has gone; that panic
/// ends the process quietly, as [`StdoutClosed`] does, instead of printing a panic message.
pub fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // The standard library's message for a failed `print!`.
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// What kind of error it was, for programs: the team server's error codes where it has one
/// for the case, so that the CLI and the REST API name each case alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// No environment, version, label, run, deployment, compute target or token by that name.
    NotFound,
    /// The version exists with other content: versions are immutable.
    Conflict,
    /// A curated environment, which is read-only.
    Curated,
    /// A version something still refers to.
    Referenced,
    /// An archived version or environment.
    Archived,
    /// A definition that is not valid, or not there; the location says where.
    InvalidDefinition,
    /// Any other request at fault (exit code 2).
    Invalid,
    /// Something failed (exit code 1).
    Failure,
    /// A workspace server could not be reached, or answered something that is not the API (the
    /// Python SDK's REST client says `transport` too).
    Transport,
    /// A team server's own code for a refusal the others do not name (`unauthorized`,
    /// `forbidden`, `payload_too_large`, ...).
    Server(String),
}

impl ErrorCode {
    /// The code of a team server's answer.
    fn from_server(code: &str, user: bool) -> Self {
        match code {
            "not_found" => Self::NotFound,
            "conflict" => Self::Conflict,
            "curated" => Self::Curated,
            "referenced" => Self::Referenced,
            "archived" => Self::Archived,
            "invalid_definition" => Self::InvalidDefinition,
            "invalid" => Self::Invalid,
            _ if !user => Self::Failure,
            other => Self::Server(other.to_string()),
        }
    }

    /// The code of a store error, when it is one of the cases above.
    fn of_store(err: &StoreError) -> Option<Self> {
        Some(match err {
            StoreError::NotFound(_) => Self::NotFound,
            StoreError::VersionConflict { .. } => Self::Conflict,
            StoreError::Curated(_) => Self::Curated,
            StoreError::Referenced { .. } => Self::Referenced,
            StoreError::Archived(_) => Self::Archived,
            StoreError::Invalid(_) => Self::Invalid,
            StoreError::Remote { code, status, .. } => Self::from_server(code, *status < 500),
            StoreError::Transport(_) => Self::Transport,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Curated => "curated",
            Self::Referenced => "referenced",
            Self::Archived => "archived",
            Self::InvalidDefinition => "invalid_definition",
            Self::Invalid => "invalid",
            Self::Failure => "failure",
            Self::Transport => "transport",
            Self::Server(code) => code,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// An error as programs read it (`TERRARIUM_ERRORS=json`): one line on stderr,
/// `{"error":{"code","message","causes","hint","location":{"file","line","field"}}}`, the
/// hint and location (and its line and field) only when known. `message` and `causes` are
/// the `error:` and `Caused by:` lines.
#[derive(Debug, Serialize)]
pub struct ErrorReport {
    pub code: ErrorCode,
    pub message: String,
    pub causes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<ErrorLocation>,
    /// Whether the request was at fault (exit code 2) rather than something failing (1).
    #[serde(skip)]
    pub user: bool,
}

/// Where a definition's problem is.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct ErrorLocation {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl From<&Location> for ErrorLocation {
    fn from(location: &Location) -> Self {
        Self {
            file: location.file.display().to_string(),
            line: location.line,
            field: location.field.clone(),
        }
    }
}

impl ErrorReport {
    /// Classify an error by its causes: whose fault it is, which case, the hint, and where.
    pub fn new(err: &anyhow::Error) -> Self {
        let mut user = false;
        let mut hint = None;
        let mut code = None;
        let mut location = None;
        for cause in err.chain() {
            if let Some(e) = cause.downcast_ref::<UserError>() {
                user = true;
                hint = hint.or(e.hint.clone());
            } else if let Some(e) = cause.downcast_ref::<SpecError>() {
                match e {
                    SpecError::Invalid { location: at, .. } => {
                        user = true;
                        if code.is_none() {
                            code = Some(ErrorCode::InvalidDefinition);
                            location = Some(at.into());
                        }
                    }
                    // A definition, or a file it names, that is not there.
                    SpecError::Io { path, source, .. }
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        user = true;
                        if code.is_none() {
                            code = Some(ErrorCode::InvalidDefinition);
                            location = Some((&Location::file(path)).into());
                        }
                    }
                    SpecError::Io { .. } => {}
                    SpecError::Unsupported { .. } => user = true,
                }
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
            } else if let Some(e) = cause.downcast_ref::<terrarium_image::registry::RegistryError>()
            {
                user |= e.is_user_error();
            } else if let Some(e) = cause.downcast_ref::<terrarium_serve::DeploymentError>() {
                user |= e.is_user_error();
            } else if let Some(e) =
                cause.downcast_ref::<terrarium_compute::environment::EnvironmentError>()
            {
                user |= e.is_user_error();
                hint = hint.or(environment_hint(e));
            } else if let Some(e) = cause.downcast_ref::<terrarium_compute::ComputeError>() {
                user |= e.is_user_error();
                hint = hint.or(compute_hint(e));
                if let terrarium_compute::ComputeError::Store(e) = e {
                    hint = hint.or(store_hint(e));
                    code = code.or(ErrorCode::of_store(e));
                }
            } else if let Some(e) = cause.downcast_ref::<StoreError>() {
                user |= e.is_user_error();
                hint = hint.or(store_hint(e));
                code = code.or(ErrorCode::of_store(e));
            }
        }
        let code = code.unwrap_or(if user {
            ErrorCode::Invalid
        } else {
            ErrorCode::Failure
        });
        Self {
            code,
            message: err.to_string(),
            causes: err.chain().skip(1).map(ToString::to_string).collect(),
            hint,
            location,
            user,
        }
    }

    /// The line programs read: `{"error": {...}}`.
    pub fn json_line(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            error: &'a ErrorReport,
        }
        serde_json::to_string(&Line { error: self }).unwrap_or_default()
    }
}

/// Whether errors are also printed for programs (`TERRARIUM_ERRORS=json`).
fn json_errors() -> bool {
    std::env::var(env_vars::TERRARIUM_ERRORS).is_ok_and(|v| v == "json")
}

/// Print `error: ...`, each cause as `Caused by: ...`, then a hint (and with
/// `TERRARIUM_ERRORS=json` the same as one line of JSON), and pick the exit code. An error
/// that is only stdout's reader going away ends quietly.
pub fn report(err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|cause| cause.is::<StdoutClosed>()) {
        return ExitCode::SUCCESS;
    }
    let report = ErrorReport::new(err);
    eprintln!("error: {}", report.message);
    for cause in &report.causes {
        eprintln!("  Caused by: {cause}");
    }
    if let Some(hint) = &report.hint {
        eprintln!("hint: {hint}");
    }
    if json_errors() {
        eprintln!("{}", report.json_line());
    }
    ExitCode::from(if report.user {
        EXIT_USER_ERROR
    } else {
        EXIT_FAILURE
    })
}

/// A command line that does not parse: clap's own message and usage (help and `--version`
/// print to stdout and succeed), then with `TERRARIUM_ERRORS=json` the line for programs.
pub fn report_usage(err: &clap::Error) -> ExitCode {
    let _ = err.print();
    if !err.use_stderr() {
        return ExitCode::SUCCESS;
    }
    if json_errors() {
        let rendered = err.render().to_string();
        let first = rendered.lines().next().unwrap_or_default();
        let report = ErrorReport {
            code: ErrorCode::Invalid,
            message: first.strip_prefix("error: ").unwrap_or(first).to_string(),
            causes: Vec::new(),
            hint: None,
            location: None,
            user: true,
        };
        eprintln!("{}", report.json_line());
    }
    ExitCode::from(EXIT_USER_ERROR)
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

/// What to do about an environment that cannot be locked, built or entered.
fn environment_hint(err: &terrarium_compute::environment::EnvironmentError) -> Option<String> {
    use terrarium_compute::environment::{EnvironmentError as E, TERRARIUM_SECRETS_FILE};
    Some(match err {
        E::NothingToLock => {
            "build and run its image: `terrarium image build REF --builder buildah`".to_string()
        }
        E::NoPlatform { .. } => "relock with --platform including it".to_string(),
        E::SecretUnset { name, var } => {
            format!("set {var}, or put `{name}=...` in the file named by {TERRARIUM_SECRETS_FILE}")
        }
        _ => return None,
    })
}

/// What to do about a run that cannot start on this machine's container runtime.
fn compute_hint(err: &terrarium_compute::ComputeError) -> Option<String> {
    use terrarium_compute::ComputeError as E;
    Some(match err {
        E::ContainerTool { program } => format!("install it (Debian: apt-get install {program})"),
        E::ContainerNeedsRoot => "run as root, or use --target local".to_string(),
        _ => return None,
    })
}

/// A spinner on stderr when it is a terminal; silent otherwise. As a library's reporter, it
/// shows from the first step reported (`resolving`, `building`), so a call that finds its
/// work done shows nothing. It is cleared when finished or dropped.
pub struct Spinner {
    bar: std::cell::OnceCell<Option<indicatif::ProgressBar>>,
}

impl Spinner {
    pub fn start(message: &str) -> Self {
        let spinner = Self::lazy();
        spinner.show(message);
        spinner
    }

    /// A spinner that shows nothing until a step is reported.
    pub fn lazy() -> Self {
        Self {
            bar: std::cell::OnceCell::new(),
        }
    }

    fn show(&self, message: &str) {
        use std::io::IsTerminal;
        let bar = self.bar.get_or_init(|| {
            std::io::stderr().is_terminal().then(|| {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.enable_steady_tick(std::time::Duration::from_millis(100));
                bar
            })
        });
        if let Some(bar) = bar {
            bar.set_message(message.to_string());
        }
    }

    pub fn finish(&self) {
        if let Some(Some(bar)) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.finish();
    }
}

impl terrarium_env::Reporter for Spinner {
    fn step(&self, message: &str) {
        self.show(message);
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
