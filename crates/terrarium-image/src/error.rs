//! Image errors: [`ImageError`] for writing layers, blobs and layouts; [`StageError`] for
//! making an environment version's image (what goes in, the base, the push).
//!
//! Each says whether it is the user's (what was asked for, or given, cannot make an image)
//! or a failure of this machine or the network; callers choose the words around it (the
//! CLI's hints, the API's codes).

use std::path::{Path, PathBuf};

use crate::base::BaseError;
use crate::registry::RegistryError;
use crate::Digest;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading or writing a file failed (the cause is the source, shown once by the printer).
    #[error("cannot read or write {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A layer could not be made from the files given.
    #[error("{0}")]
    Layer(String),
    /// A Dockerfile's build context asked for in a directory that already holds files.
    #[error("{} is not empty; give a new directory for the build context", .0.display())]
    NotEmpty(PathBuf),
    /// A digest that is not `sha256:` and 64 lowercase hex digits (the text, cut to 100
    /// characters).
    #[error("malformed digest {0:?}: expected sha256: and 64 lowercase hex digits")]
    MalformedDigest(String),
    /// A blob whose bytes are not the ones its digest names.
    #[error("blob {digest} from {origin} hashes to {actual}")]
    DigestMismatch {
        digest: Digest,
        /// Where the bytes came from: `oci:DIR`, `REGISTRY/REPOSITORY`, a directory.
        origin: String,
        actual: Digest,
    },
    /// A blob whose length is not the size its descriptor gives.
    #[error("blob {digest} from {origin} is {actual} bytes, not {expected}")]
    SizeMismatch {
        digest: Digest,
        origin: String,
        expected: u64,
        actual: u64,
    },
}

impl ImageError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Errors in what was given (a base image's malformed or corrupt content, an output
    /// directory in use) rather than failures of this machine.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::NotEmpty(_)
            | Self::MalformedDigest(_)
            | Self::DigestMismatch { .. }
            | Self::SizeMismatch { .. } => true,
            Self::Io { .. } | Self::Layer(_) => false,
        }
    }
}

/// Why an environment version's image cannot be made. `environment` is `NAME:VERSION`.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The lock has no packages for the platform images are built for.
    #[error("{environment} has no lock for {platform}, the platform images are built for")]
    NoImagePlatform {
        environment: String,
        platform: String,
    },
    /// A pip-only environment asked for on a scratch image: it needs a base with its Python.
    #[error(
        "{environment} is not a conda environment: a scratch image holds only a self-contained conda environment; a pip-only environment needs a base image with its Python"
    )]
    NotConda { environment: String },
    /// A conda package that needs the system's C library, asked for on a scratch image.
    #[error(
        "{environment}: {package} {version} depends on `{constraint}`, the system's C library, which a scratch image does not have"
    )]
    NeedsGlibc {
        environment: String,
        package: String,
        version: String,
        constraint: String,
    },
    /// A staged program whose loader (outside the environment) a scratch image would not have.
    #[error(
        "{environment}: {prefix}/{} needs {loader}, the system C library's loader, which a scratch image does not have",
        file.display()
    )]
    NeedsLoader {
        environment: String,
        /// The in-image prefix.
        prefix: String,
        /// The program, relative to the prefix.
        file: PathBuf,
        loader: String,
    },
    /// A pip-only environment staged without a base image.
    #[error("{environment} is a pip-only environment: its image needs a base image with Python")]
    PipOnlyWithoutBase { environment: String },
    /// The base image has no interpreter for the Python the environment was locked for.
    #[error(
        "the base image {base} has no python{minor} in /usr/local/bin or /usr/bin; {environment} was locked for Python {version}"
    )]
    NoPython {
        base: String,
        minor: String,
        environment: String,
        version: String,
    },
    /// A user-managed environment: its user installed it, there is nothing to build.
    #[error(
        "{environment} is user-managed: Terrarium records what is installed but cannot build it into an image"
    )]
    UserManaged { environment: String },
    /// The lock has no packages for this machine, where a pip-only environment is built.
    #[error("the lock has no packages for this machine's platform ({platform})")]
    NoPlatform { platform: String },
    /// The base image's reference is not one.
    #[error(transparent)]
    BaseReference(RegistryError),
    /// The base image cannot be read, or is not what its digests say.
    #[error("cannot read the base image {reference}")]
    Base {
        reference: String,
        #[source]
        source: Box<BaseError>,
    },
    /// The service front for a deployment's image cannot be read. `origin` says where its path
    /// came from.
    #[error(
        "the deployment image needs the service front, and {} ({origin}) cannot be read",
        path.display()
    )]
    FrontUnreadable {
        path: PathBuf,
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// The file given as the service front is not an x86-64 ELF executable.
    #[error("{} ({origin}) is not the service front: {reason}", path.display())]
    NotAFront {
        path: PathBuf,
        origin: String,
        reason: String,
    },
    /// The service front is dynamically linked: it would need the base's C library.
    #[error(
        "{} ({origin}) is dynamically linked (it needs {interpreter}); the image's front must be statically linked",
        path.display()
    )]
    DynamicFront {
        path: PathBuf,
        origin: String,
        interpreter: String,
    },
    /// A deployment's model directory cannot be read.
    #[error("cannot read the model directory {}", path.display())]
    Model {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A deployment's entry script path has no file name.
    #[error("the entry script has no file name")]
    EntryName { path: PathBuf },
    /// The staging directory could not be made.
    #[error("cannot create a staging directory")]
    StagingDir(#[source] std::io::Error),
    /// The staged environment could not be read (to check it for a scratch image).
    #[error("cannot read the staged environment")]
    Staged(#[source] std::io::Error),
    /// A file operation while staging failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A container builder (or one of its steps) could not be started.
    #[error("cannot run {program}")]
    BuilderSpawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// A container builder's step failed: the Dockerfile, its context or the target is at
    /// fault (the builder's own output, on stderr, says how).
    #[error("{program} {step} failed ({status}); its output is above")]
    BuilderFailed {
        program: String,
        step: &'static str,
        status: std::process::ExitStatus,
    },
    /// The definition could not be written as JSON (for the image's label and metadata).
    #[error("cannot write the definition as JSON")]
    Definition(#[source] serde_json::Error),
    /// Installing or building the environment failed.
    #[error(transparent)]
    Env(#[from] terrarium_env::EnvError),
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Writing the image's layers, config and manifest failed.
    #[error("cannot build the image in {}", output.display())]
    Build {
        output: PathBuf,
        #[source]
        source: ImageError,
    },
    /// Writing the `docker load` archive failed.
    #[error("cannot write {}", path.display())]
    Archive {
        path: PathBuf,
        #[source]
        source: ImageError,
    },
    /// The push failed; the image is whole in its layout and a new push sends what is missing.
    #[error(
        "pushing {environment} to {registry}/{repository} failed; the image is complete in {}, and pushing again uploads only what the registry still lacks",
        layout.display()
    )]
    Push {
        environment: String,
        registry: String,
        repository: String,
        layout: PathBuf,
        #[source]
        source: Box<RegistryError>,
    },
}

impl StageError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Errors in what was asked for or given (the environment cannot go into this image, the
    /// base or the front is not usable) rather than failures of this machine or the network.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::NoImagePlatform { .. }
            | Self::NotConda { .. }
            | Self::NeedsGlibc { .. }
            | Self::NeedsLoader { .. }
            | Self::PipOnlyWithoutBase { .. }
            | Self::NoPython { .. }
            | Self::UserManaged { .. }
            | Self::NoPlatform { .. }
            | Self::BaseReference(_)
            | Self::FrontUnreadable { .. }
            | Self::NotAFront { .. }
            | Self::DynamicFront { .. }
            | Self::BuilderFailed { .. } => true,
            Self::Base { source, .. } => source.is_user_error(),
            Self::Env(err) => err.is_user_error(),
            Self::Image(err)
            | Self::Build { source: err, .. }
            | Self::Archive { source: err, .. } => err.is_user_error(),
            Self::Push { source, .. } => source.is_user_error(),
            Self::Model { .. }
            | Self::EntryName { .. }
            | Self::StagingDir(_)
            | Self::Staged(_)
            | Self::Io { .. }
            | Self::BuilderSpawn { .. }
            | Self::Definition(_) => false,
        }
    }
}
