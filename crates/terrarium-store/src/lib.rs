//! Workspace metadata: environments, their immutable versions, labels and history.
//!
//! [`Store`] is the backend-agnostic interface; [`SqliteStore`] is the embedded default and
//! [`PostgresStore`] the shared one for teams and servers. The
//! versioning rules (Azure ML compatible) are part of the contract every backend implements:
//! - register without a version: identical content to the latest version returns it; otherwise
//!   version = highest automatic version + 1, never reusing a number;
//! - register with a version: same content is a no-op, other content is an error;
//! - `latest` is the most recently created version that is not archived;
//! - `curated/` names are written only by curated seeding.
//!
//! Every mutation is one transaction, so concurrent processes never lose or duplicate versions.
//!
//! The rules and their SQL are written once (`sql`), over a small transaction interface each
//! backend implements; a backend keeps only its connection, migrations and transactions.
//!
//! A workspace setting (a directory, `sqlite://DIR`, `postgres://...`) opens its database
//! ([`open`], [`Location`]); [`curated::seed`] keeps the curated environments in it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use terrarium_spec::names::{self, Reference};
use terrarium_spec::Definition;
pub use terrarium_spec::RunState;

pub mod audit;
pub mod curated;
mod error;
mod location;
mod postgres;
mod sql;
mod sqlite;

pub use error::StoreError;
pub use location::{is_database_url, open, Location};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Where a version came from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// `manual`, `import`, `run`, `deploy`, `clone`, `curated`, `relock`.
    pub kind: String,
    /// The file it was imported from, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The format of that file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// Where a deployment is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentState {
    /// Its workers are loading the entry script and running `init()`.
    Starting,
    /// Serving requests.
    Ready,
    /// It could not start or serve (the record's `reason` says why).
    Failed,
    /// It was stopped, or its process is gone.
    Stopped,
}

impl DeploymentState {
    pub const ALL: [DeploymentState; 4] =
        [Self::Starting, Self::Ready, Self::Failed, Self::Stopped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }

    /// Starting or ready: its process should be running.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Starting | Self::Ready)
    }
}

impl std::fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DeploymentState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "state `{}` is not one of starting, ready, failed, stopped",
                    text.escape_debug()
                )
            })
    }
}

/// The kinds of [`Source`] there are.
pub const SOURCE_KINDS: &[&str] = &[
    "manual", "import", "run", "deploy", "clone", "curated", "relock",
];

impl Source {
    pub fn new(kind: &str) -> Self {
        Self {
            kind: kind.to_string(),
            file: None,
            format: None,
        }
    }

    /// Check a source that came from a request: a known kind, a known format, and a file name
    /// of printable characters (it is shown in listings and the web UI).
    pub fn validate(&self) -> Result<(), StoreError> {
        if !SOURCE_KINDS.contains(&self.kind.as_str()) {
            return Err(StoreError::Invalid(format!(
                "source.kind `{}` is not one of {}",
                self.kind.escape_debug(),
                SOURCE_KINDS.join(", ")
            )));
        }
        // `image:REF` for an environment made from an image (`env create --image REF`).
        if let Some(format) = self.format.as_deref().filter(|f| {
            f.strip_prefix("image:").is_none_or(|image| {
                terrarium_spec::formats::validate_image_reference(image).is_err()
            })
        }) {
            terrarium_spec::Format::parse(format).ok_or_else(|| {
                StoreError::Invalid(format!(
                    "source.format `{}` is not a known format",
                    format.escape_debug()
                ))
            })?;
        }
        if let Some(file) = &self.file {
            if file.is_empty() || file.len() > 4096 || file.chars().any(char::is_control) {
                return Err(StoreError::Invalid(
                    "source.file must be 1-4096 printable characters".to_string(),
                ));
            }
        }
        Ok(())
    }
}

/// One version of an environment, as commands print it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub name: String,
    pub version: String,
    pub content_hash: String,
    /// User labels pointing here, plus `latest` when this is the latest version.
    pub labels: Vec<String>,
    /// True when the version or its whole environment is archived.
    pub archived: bool,
    pub created_at: String,
    pub created_by: String,
    pub source: Source,
    /// `NAME:VERSION` this version was cloned or modified from.
    pub parent: Option<String>,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub curated: bool,
    /// The lock this version resolved to, once it has one; never changes afterwards.
    pub lock_hash: Option<String>,
    /// The definition, in Terrarium's JSON form (the fields of the native YAML).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub definition: Definition,
}

/// What to register.
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    /// Must have a name; `version` is optional.
    pub definition: Definition,
    pub source: Source,
    /// Overrides the default parent (the latest version at registration time).
    pub parent: Option<String>,
    pub actor: String,
    /// Only curated seeding may write `curated/` names.
    pub allow_curated: bool,
    /// Always create a new version, even for identical content (`relock`).
    pub force_new: bool,
    /// The lock to store with a new version, as (lock hash, lock JSON).
    pub lock: Option<(String, String)>,
}

/// The result of registering.
#[derive(Debug, Clone)]
pub struct RegisterOutcome {
    pub record: VersionRecord,
    /// False when an existing version had the same content.
    pub created: bool,
}

/// A history entry that is not a version: label moves, archive, metadata updates, deletes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub name: String,
    pub version: Option<String>,
    pub action: String,
    pub detail: Option<String>,
    pub actor: String,
    pub at: String,
}

/// Changes to a version's metadata, which do not make a new version.
#[derive(Debug, Clone, Default)]
pub struct MetadataUpdate {
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub set_tags: BTreeMap<String, String>,
    pub remove_tags: Vec<String>,
}

/// One run of a command in an environment version.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub experiment: String,
    /// The environment's name.
    pub environment: String,
    pub version: String,
    pub lock_hash: Option<String>,
    pub command: Vec<String>,
    pub cwd: String,
    /// Where it ran: `local`, `container`, or the name of a compute target.
    pub target: String,
    pub actor: String,
    /// When it was recorded: for a job on a compute target, when it was submitted until the
    /// engine says it started.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    pub log_path: Option<String>,
    /// Where the run is; for a job, as its engine last said.
    #[serde(default = "running")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub state: RunState,
    /// For a job on a compute target: the engine's side of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<EngineJob>,
}

fn running() -> RunState {
    RunState::Running
}

/// A run's job on a compute target.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineJob {
    /// The target's kind (`slurm`, ...).
    pub kind: String,
    /// The engine's id of the job.
    pub job_id: String,
    /// Nodes asked for.
    pub nodes: u32,
    pub queued_at: String,
    /// The nodes it ran on, as the engine names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_list: Option<String>,
    /// The engine's last word on why it is in its state (`TimeLimit`, `NonZeroExitCode`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the job's logs are (a directory on the target's shared filesystem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<String>,
}

/// What an engine said of a job, to record on its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunUpdate {
    pub state: RunState,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    pub node_list: Option<String>,
    pub reason: Option<String>,
}

impl RunRecord {
    /// Apply what an engine said, as [`Store::update_run`] records it: a run in a final state
    /// keeps it, and what the update leaves out stays as it was (the reason goes with the
    /// state it explained).
    pub fn apply(&mut self, update: &RunUpdate) {
        if self.state.is_final() {
            return;
        }
        self.state = update.state;
        if let Some(started_at) = &update.started_at {
            self.started_at = started_at.clone();
        }
        self.finished_at = update.finished_at.clone().or(self.finished_at.take());
        self.exit_code = update.exit_code.or(self.exit_code);
        if let Some(job) = &mut self.job {
            job.node_list = update.node_list.clone().or(job.node_list.take());
            job.reason = update.reason.clone();
        }
    }
}

/// A compute target (Slurm, Ray, ...) in the workspace: its kind and options.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeRecord {
    pub name: String,
    pub kind: String,
    pub options: BTreeMap<String, String>,
    pub created_at: String,
    pub created_by: String,
}

/// The targets `terrarium run` has built in: no compute target may take their names.
pub const BUILTIN_TARGETS: &[&str] = &["local", "container"];

/// A compute target's name: a plain [name](names::validate_name), without the `curated/` or
/// `anonymous/` prefix environments may have, and not one of the [`BUILTIN_TARGETS`].
pub fn validate_compute_name(name: &str) -> Result<(), StoreError> {
    names::validate_name(name)
        .and_then(|()| {
            if name.contains('/') {
                Err(format!(
                    "invalid compute target name `{name}`: use letters, digits, `.`, `_` or `-`"
                ))
            } else if BUILTIN_TARGETS.contains(&name) {
                Err(format!(
                    "`{name}` is a built-in target, not a compute target"
                ))
            } else {
                Ok(())
            }
        })
        .map_err(StoreError::Invalid)
}

/// A scoring service of a model in an environment version (`terrarium deploy`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub name: String,
    /// The environment's name.
    pub environment: String,
    pub version: String,
    pub lock_hash: Option<String>,
    /// The model directory, as given.
    pub model_path: String,
    /// SHA-256 over the model directory's files (relative paths and contents, sorted).
    pub model_hash: String,
    /// The entry script (`init()`, `run()`).
    pub entry: Option<String>,
    pub workers: u32,
    /// Where it is served: `http://host:port`.
    pub url: Option<String>,
    /// The machine and process serving it, to stop it.
    pub host: String,
    pub pid: Option<u32>,
    pub state: DeploymentState,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    pub actor: String,
    pub started_at: String,
    pub stopped_at: Option<String>,
    pub log_path: Option<String>,
}

/// One image built from an environment version (`terrarium image build`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageBuildRecord {
    /// The environment's name.
    pub environment: String,
    pub version: String,
    pub lock_hash: String,
    /// The base image as given, and its manifest digest; none for a scratch image.
    pub base: Option<String>,
    pub base_digest: Option<String>,
    /// The image's manifest digest.
    pub digest: String,
    /// Where it was pushed (`registry/repository:tag`), if it was.
    pub pushed_to: Option<String>,
    /// The OCI layout it was written to, if kept.
    pub output: Option<String>,
    /// Compressed bytes of its layers, config and manifest.
    pub size: u64,
    pub layers: u32,
    pub seconds: f64,
    /// What the build said.
    pub log: String,
    pub actor: String,
    pub built_at: String,
}

/// An API token as stored: only its SHA-256 hash, never the token itself.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The public part of the token, shown in lists and the audit trail.
    pub id: String,
    /// What the token is for (`ci`, `alice`, ...): the actor recorded for its requests.
    pub name: String,
    /// `reader`, `contributor` or `admin`.
    pub role: String,
    #[serde(skip)]
    pub token_hash: String,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// One mutating request, as the audit trail keeps it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Assigned by the store; ignored when appending.
    pub id: i64,
    pub at: String,
    /// `NAME (token ID)`, or `anonymous`, or `local:USER` for direct database access.
    pub actor: String,
    /// What was asked, e.g. `POST /api/v1/environments`.
    pub action: String,
    /// The environment, run or token acted on, when there is one.
    pub target: Option<String>,
    /// The HTTP status of the answer.
    pub status: i32,
    /// The client's address.
    pub remote: String,
}

/// The workspace metadata store.
pub trait Store: Send + Sync {
    /// Register a definition, applying the versioning rules above.
    fn register(&self, request: RegisterRequest) -> Result<RegisterOutcome, StoreError>;

    /// Resolve `NAME`, `NAME:VERSION` or `NAME@LABEL`.
    fn resolve(&self, reference: &Reference) -> Result<VersionRecord, StoreError>;

    /// The latest version of every environment; archived environments only when asked.
    fn list(&self, include_archived: bool) -> Result<Vec<VersionRecord>, StoreError>;

    /// Every version of one environment, oldest first, archived ones included.
    fn versions(&self, name: &str) -> Result<Vec<VersionRecord>, StoreError>;

    /// The non-version history of one environment, oldest first.
    fn events(&self, name: &str) -> Result<Vec<Event>, StoreError>;

    /// Point a user label at a version (moving it if it exists).
    fn set_label(
        &self,
        name: &str,
        version: &str,
        label: &str,
        actor: &str,
    ) -> Result<(), StoreError>;

    /// Remove a user label.
    fn remove_label(&self, name: &str, label: &str, actor: &str) -> Result<(), StoreError>;

    /// Change description and tags without a new version.
    fn update_metadata(
        &self,
        name: &str,
        version: &str,
        update: &MetadataUpdate,
        actor: &str,
    ) -> Result<VersionRecord, StoreError>;

    /// Archive or restore one version, or with `version: None` the whole environment.
    fn set_archived(
        &self,
        name: &str,
        version: Option<&str>,
        archived: bool,
        actor: &str,
    ) -> Result<(), StoreError>;

    /// Delete a version that nothing references.
    fn delete_version(&self, name: &str, version: &str, actor: &str) -> Result<(), StoreError>;

    /// Give a version its lock, if it has none yet. Returns the version's lock hash afterwards,
    /// which is the existing one when another process locked it first.
    fn set_lock(
        &self,
        name: &str,
        version: &str,
        lock_hash: &str,
        lock: &str,
    ) -> Result<String, StoreError>;

    /// A stored lock's JSON.
    fn get_lock(&self, lock_hash: &str) -> Result<String, StoreError>;

    /// Record a run that is starting.
    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError>;

    /// Record how a run ended.
    fn finish_run(&self, id: &str, finished_at: &str, exit_code: i32) -> Result<(), StoreError>;

    /// Runs, newest first, optionally of one experiment.
    fn list_runs(
        &self,
        experiment: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError>;

    fn get_run(&self, id: &str) -> Result<RunRecord, StoreError>;

    /// Store a run's output (replacing what was stored).
    fn put_run_log(&self, id: &str, log: &[u8]) -> Result<(), StoreError>;

    /// A run's stored output, if any was stored.
    fn get_run_log(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Record what an engine said of a run's job. A run in a final state keeps it: the update
    /// is ignored and the run returned as it is.
    fn update_run(&self, id: &str, update: &RunUpdate) -> Result<RunRecord, StoreError>;

    /// Add a compute target; a name already taken is [`StoreError::Invalid`].
    fn add_compute(&self, target: &ComputeRecord) -> Result<(), StoreError>;

    fn get_compute(&self, name: &str) -> Result<ComputeRecord, StoreError>;

    /// Every compute target, by name.
    fn list_compute(&self) -> Result<Vec<ComputeRecord>, StoreError>;

    /// Remove a compute target; refused ([`StoreError::Referenced`]) while a run on it has not
    /// ended.
    fn remove_compute(&self, name: &str) -> Result<(), StoreError>;

    /// Store a new API token.
    fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError>;

    /// The token with this hash, revoked and expired ones included (the caller decides).
    fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Every token, oldest first.
    fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Revoke a token; revoking twice keeps the first time.
    fn revoke_token(&self, id: &str, at: &str) -> Result<TokenRecord, StoreError>;

    /// Append to the audit trail.
    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;

    /// Correct the answer's status on an audit row a change wrote in its transaction (see
    /// [`audit`]); the row itself already exists.
    fn set_audit_status(&self, id: i64, status: i32) -> Result<(), StoreError>;

    /// The audit trail, newest first.
    fn list_audit(&self, limit: usize, offset: usize) -> Result<Vec<AuditEntry>, StoreError>;

    /// Record an image built from `build.environment:build.version`.
    fn add_image_build(&self, build: &ImageBuildRecord) -> Result<(), StoreError>;

    /// The images built from `name` (every version, or one), newest first.
    fn list_image_builds(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Vec<ImageBuildRecord>, StoreError>;

    /// Create or replace the record of deployment `deployment.name`.
    fn put_deployment(&self, deployment: &DeploymentRecord) -> Result<(), StoreError>;

    fn get_deployment(&self, name: &str) -> Result<DeploymentRecord, StoreError>;

    /// Every deployment, by name.
    fn list_deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError>;

    /// Keep a packed build context under its digest (`sha256:HEX`, see
    /// `terrarium_spec::context`); keeping one twice is a no-op. The caller checks that the
    /// archive is the context the digest names.
    fn put_context(&self, digest: &str, archive: &[u8]) -> Result<(), StoreError>;

    /// A packed build context, by digest. The caller checks it (`context::unpack` does).
    fn get_context(&self, digest: &str) -> Result<Vec<u8>, StoreError>;

    /// Whether the workspace keeps the build context `digest`, without reading it.
    fn has_context(&self, digest: &str) -> Result<bool, StoreError>;

    /// A small key-value area for the workspace itself (e.g. the curated bundle's hash).
    fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError>;
}

/// What every backend checks before it registers `definition`, and its content hash: a valid
/// name and version; `curated/` names only when seeding curated environments; an `anonymous/`
/// name only as the one its content gives ([`names::anonymous_name`]), so that no one can
/// register other content under it.
pub(crate) fn check_registration(
    definition: &Definition,
    allow_curated: bool,
) -> Result<String, StoreError> {
    let name = &definition.name;
    names::validate_name(name).map_err(StoreError::Invalid)?;
    if names::is_curated(name) && !allow_curated {
        return Err(StoreError::Curated(name.clone()));
    }
    if let Some(version) = &definition.version {
        names::validate_version(version).map_err(StoreError::Invalid)?;
        // Automatic versions continue after the highest number: keep far from overflow.
        let numeric = version.chars().all(|c| c.is_ascii_digit());
        if numeric
            && version
                .parse::<u64>()
                .map_or(true, |n| n >= 1_000_000_000_000)
        {
            return Err(StoreError::Invalid(format!(
                "version `{version}` is too large a number; numeric versions are below 1000000000000"
            )));
        }
    }
    let hash = terrarium_spec::content_hash(definition);
    if names::is_anonymous(name) && *name != names::anonymous_name(&hash) {
        return Err(StoreError::Invalid(format!(
            "`{name}` is an anonymous name, which Terrarium gives a nameless definition from its content; give this one a name of its own"
        )));
    }
    Ok(hash)
}

/// A context digest is `sha256:` and 64 lowercase hex digits.
pub fn check_context_digest(digest: &str) -> Result<(), StoreError> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "`{}` is not a build context digest (sha256: and 64 lowercase hex digits)",
            digest.escape_debug()
        )))
    }
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format).expect("formattable time")
}
