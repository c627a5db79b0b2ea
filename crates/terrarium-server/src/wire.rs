//! The JSON bodies of the REST API, shared by the server and [`crate::client`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use terrarium_spec::Definition;
use terrarium_store::{RunState, RunUpdate, Source, TokenRecord, VersionRecord};
use utoipa::ToSchema;

/// The version of the API under `/api/`.
pub const API_PREFIX: &str = "/api/v1";

/// A page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many items match, over all pages.
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
}

/// Register a definition (`POST /api/v1/environments`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// The definition in Terrarium's JSON form (the fields of the native YAML); it must have
    /// a name. It is checked with the same rules as a file.
    #[schema(value_type = Object)]
    pub definition: Definition,
    /// Where it came from; `manual` when absent.
    #[serde(default)]
    pub source: Option<Source>,
    /// `NAME:VERSION` it was derived from; the latest version when absent.
    #[serde(default)]
    pub parent: Option<String>,
    /// Make a new version even when the content equals the latest (used by `relock`).
    #[serde(default)]
    pub force_new: bool,
    /// The lock to store with a new version.
    #[serde(default)]
    pub lock: Option<LockBody>,
}

/// A lock, as its hash and its JSON text.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockBody {
    pub lock_hash: String,
    /// The lock's JSON, as `terrarium env lock --json` prints it.
    pub lock: String,
}

/// The answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterResponse {
    /// False when an existing version had the same content.
    pub created: bool,
    pub record: VersionRecord,
}

/// Point a label at a version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelBody {
    pub version: String,
}

/// Change a version's description and tags (no new version).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataBody {
    #[serde(default)]
    pub description: Option<String>,
    /// Remove the description.
    #[serde(default)]
    pub clear_description: bool,
    #[serde(default)]
    pub set_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub remove_tags: Vec<String>,
}

/// The lock hash a version has after `PUT .../lock`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LockHashResponse {
    pub lock_hash: String,
}

/// How a run ended.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishRunBody {
    pub finished_at: String,
    pub exit_code: i32,
}

/// What an engine said of a run's job (`POST /api/v1/runs/{id}/state`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"state": "running", "started_at": "2026-01-01T00:05:00Z", "node_list": "node[1-2]"}))]
pub struct RunStateBody {
    /// `queued`, `running`, `completed`, `failed`, `cancelled`, `timed_out`, `node_failed`
    /// or `lost`.
    #[schema(value_type = String)]
    pub state: RunState,
    /// When the engine says the job started.
    #[serde(default)]
    pub started_at: Option<String>,
    /// When it ended; only with a final state.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Only with a final state.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The nodes it runs or ran on, as the engine names them.
    #[serde(default)]
    pub node_list: Option<String>,
    /// The engine's reason for the state.
    #[serde(default)]
    pub reason: Option<String>,
}

impl From<&RunUpdate> for RunStateBody {
    fn from(update: &RunUpdate) -> Self {
        Self {
            state: update.state,
            started_at: update.started_at.clone(),
            finished_at: update.finished_at.clone(),
            exit_code: update.exit_code,
            node_list: update.node_list.clone(),
            reason: update.reason.clone(),
        }
    }
}

impl From<RunStateBody> for RunUpdate {
    fn from(body: RunStateBody) -> Self {
        Self {
            state: body.state,
            started_at: body.started_at,
            finished_at: body.finished_at,
            exit_code: body.exit_code,
            node_list: body.node_list,
            reason: body.reason,
        }
    }
}

/// Add a compute target (`POST /api/v1/compute`). Who added it, and when, the server records.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "hpc", "kind": "slurm", "options": {"partition": "gpu", "time": "2h"}}))]
pub struct ComputeBody {
    /// 1-255 letters, digits, `.`, `_` or `-`, starting with a letter or digit; not `local`
    /// or `container`.
    pub name: String,
    /// The engine: `slurm` or `ray`.
    pub kind: String,
    /// The kind's options (`slurm`: partition, account, qos, time, conf, logs, cache; `ray`:
    /// address, cache, logs, token_file).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Create an API token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateBody {
    /// What the token is for; recorded as the actor of its requests.
    pub name: String,
    /// `reader`, `contributor` or `admin`.
    pub role: String,
    /// A lifetime such as `30d`, `12h` or `90m`; no expiry when absent.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// A new token: the secret is shown once, here, and never again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub token: String,
    pub id: String,
    pub name: String,
    pub role: String,
    pub expires_at: Option<String>,
}

impl TokenCreated {
    pub fn new(token: String, record: &TokenRecord) -> Self {
        Self {
            token,
            id: record.id.clone(),
            name: record.name.clone(),
            role: record.role.clone(),
            expires_at: record.expires_at.clone(),
        }
    }
}

/// Who the caller is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub actor: String,
    pub role: String,
    pub token_id: Option<String>,
}

/// One difference between two versions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiffChange {
    /// `python`, `conda`, `environment_variables`, ..., or `locked` for resolved packages.
    pub section: String,
    pub key: String,
    /// `added`, `removed` or `changed`.
    pub kind: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// The differences between two versions of an environment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiffResponse {
    pub old: String,
    pub new: String,
    pub old_content_hash: String,
    pub new_content_hash: String,
    pub identical: bool,
    pub changes: Vec<DiffChange>,
}

/// An exported definition: files relative to the output (one file has the empty name).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportResponse {
    pub format: String,
    pub files: Vec<ExportedFile>,
    /// Fields the format cannot carry.
    pub dropped: Vec<String>,
    pub notes: Vec<String>,
}

impl ExportResponse {
    /// A definition exported in `format`, in this shape: the one rule for the server's export
    /// answer and the CLI's `--json --export`.
    pub fn of(
        definition: &terrarium_spec::Definition,
        format: terrarium_spec::Format,
    ) -> Result<Self, terrarium_spec::SpecError> {
        let exported = terrarium_spec::export(definition, format)?;
        Ok(Self {
            format: format.name().to_string(),
            files: exported
                .files
                .into_iter()
                .map(|(path, content)| ExportedFile { path, content })
                .collect(),
            dropped: exported.dropped,
            notes: exported.notes.iter().map(ToString::to_string).collect(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportedFile {
    pub path: String,
    pub content: String,
}

/// The stable shape of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status, repeated.
    pub status: u16,
    /// A stable machine-readable code: `not_found`, `invalid`, `conflict`, `curated`,
    /// `referenced`, `archived`, `unauthorized`, `forbidden`, `payload_too_large`, `timeout`,
    /// `internal`, ...
    pub code: String,
    pub message: String,
    /// For `not_found`: what was not found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// A pack the server keeps, and a signed link that fetches it without a token until
/// `expires_at`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PackLink {
    /// `sha256:HEX` of the pack file.
    pub digest: String,
    pub size: u64,
    /// The link's path and query on this server (`/api/v1/packs/...?expires=...&signature=...`).
    pub link: String,
    pub expires_at: String,
}
