//! Every environment variable Terrarium reads, in one place.

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

/// Terrarium's cache (built environments, conda packages, repodata, tools). Defaults to the
/// platform's cache directory (`~/.cache/terrarium` on Linux).
pub const TERRARIUM_CACHE_DIR: &str = "TERRARIUM_CACHE_DIR";

/// A file of `NAME=value` lines that `${secret:NAME}` references resolve from, after
/// `TERRARIUM_SECRET_<NAME>` variables.
pub const TERRARIUM_SECRETS_FILE: &str = "TERRARIUM_SECRETS_FILE";

/// Prefix of the variables that hold secrets: `${secret:HF_TOKEN}` reads
/// `TERRARIUM_SECRET_HF_TOKEN`.
pub const TERRARIUM_SECRET_PREFIX: &str = "TERRARIUM_SECRET_";

/// The API token for a server workspace (`terrarium token create` prints one).
pub const TERRARIUM_TOKEN: &str = "TERRARIUM_TOKEN";

/// The config file (`workspace = "..."`, `token = "..."`). Defaults to
/// `~/.config/terrarium/config.toml`.
pub const TERRARIUM_CONFIG: &str = "TERRARIUM_CONFIG";

/// The statically linked service front a deployment's image carries (`scripts/build-front.sh`),
/// when `image build --front` is not given. Defaults to `terrarium-serve` next to `terrarium`.
pub const TERRARIUM_FRONT: &str = "TERRARIUM_FRONT";
