//! Every environment variable Terrarium reads, in one place, and the one it sets for the
//! programs it runs.

/// The workspace to use: a directory, `postgres://...`, or a server `https://host:port`. Same
/// as `--workspace`.
pub const TERRARIUM_WORKSPACE: &str = "TERRARIUM_WORKSPACE";

/// Terrarium's home directory: the default workspace lives here. Defaults to the platform's
/// data directory (`~/.local/share/terrarium` on Linux).
pub const TERRARIUM_HOME: &str = "TERRARIUM_HOME";

/// Who is acting, as recorded in history. Defaults to `$USER`.
pub const TERRARIUM_USER: &str = "TERRARIUM_USER";

/// The login name, used when `TERRARIUM_USER` is unset.
pub const USER: &str = "USER";

/// The login name, used when `TERRARIUM_USER` and `USER` are unset.
pub const LOGNAME: &str = "LOGNAME";

// Terrarium's cache (`TERRARIUM_CACHE_DIR`) and the secrets `${secret:NAME}` references read
// (`TERRARIUM_SECRET_<NAME>`, `TERRARIUM_SECRETS_FILE`) are read where environments are built
// and entered, and documented there: `terrarium_compute::environment`.

/// The API token for a server workspace (`terrarium token create` prints one).
pub const TERRARIUM_TOKEN: &str = "TERRARIUM_TOKEN";

/// The config file (`workspace = "..."`, `token = "..."`). Defaults to
/// `~/.config/terrarium/config.toml`.
pub const TERRARIUM_CONFIG: &str = "TERRARIUM_CONFIG";

/// The statically linked service front a deployment's image carries (`scripts/build-front.sh`),
/// when `image build --front` is not given. Defaults to `terrarium-serve` next to `terrarium`.
pub const TERRARIUM_FRONT: &str = "TERRARIUM_FRONT";

/// `json`: after an error's text for people, print it once more for programs, as the last
/// line of stderr: `{"error":{"code":...,"message":...,"causes":[...],"hint":...,
/// "location":{"file":...,"line":...,"field":...}}}` (hint and location only when known).
/// `code` is `not_found`, `conflict`, `curated`, `referenced`, `archived`,
/// `invalid_definition` (with the location), `invalid` or `failure`, or a team server's own
/// code for a refusal (`unauthorized`, `forbidden`, ...). The Python SDK sets it.
pub const TERRARIUM_ERRORS: &str = "TERRARIUM_ERRORS";

/// Set, not read: the run's id, in the environment of the program `terrarium run` runs (on
/// this machine, in a container, or as a job on a compute target).
pub const TERRARIUM_RUN_ID: &str = "TERRARIUM_RUN_ID";
