//! The environment definition: what the user asked for, in one format-independent model.
//!
//! Entries keep the text the user wrote (`numpy=1.26`, `scikit-learn >=1.3`), so exports look
//! like the input. Comparison and hashing use normalized forms (see [`crate::canonical`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The kind of workload the environment serves.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    #[default]
    Python,
    Spark,
    Docker,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::Spark => "spark",
            Self::Docker => "docker",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "python" => Some(Self::Python),
            "spark" => Some(Self::Spark),
            "docker" => Some(Self::Docker),
            _ => None,
        }
    }
}

/// A complete environment definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Definition {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    pub runtime: Runtime,
    pub python: Python,
    /// `None` for pip-only environments (a base interpreter plus PyPI, no conda).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conda: Option<Conda>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub environment_variables: BTreeMap<String, String>,
    pub docker: Docker,
    pub spark: Spark,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference: Option<Inference>,
    /// Fields of foreign formats that Terrarium does not model but must keep, e.g. an Azure ML v1
    /// `databricks` section, keyed `aml_v1.databricks`. Only values that differ from that
    /// format's defaults are kept.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

/// The Python part: interpreter and PyPI packages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Python {
    /// A version constraint such as `3.11` for pip-only environments. For conda environments the
    /// version lives in the conda dependencies (`python=3.11`) instead, so it has one home.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// An explicit interpreter, e.g. `/usr/bin/python3` (user-managed or pip-only environments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// The user installs everything; Terrarium only records it.
    #[serde(skip_serializing_if = "is_false")]
    pub user_managed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pip: Vec<PipRequirement>,
    #[serde(skip_serializing_if = "IndexOptions::is_empty")]
    pub index: IndexOptions,
}

/// Package index options, as pip and uv take them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_url: Option<String>,
    /// Order matters: it is the order in which indexes are consulted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_index_urls: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub find_links: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub no_index: bool,
}

impl IndexOptions {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// The options as requirements-file lines (`--index-url URL`, ...).
    pub fn to_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(url) = &self.index_url {
            lines.push(format!("--index-url {url}"));
        }
        for url in &self.extra_index_urls {
            lines.push(format!("--extra-index-url {url}"));
        }
        for url in &self.find_links {
            lines.push(format!("--find-links {url}"));
        }
        if self.no_index {
            lines.push("--no-index".to_string());
        }
        lines
    }
}

/// One PyPI requirement as written (PEP 508, a direct URL, or `-e` path), with optional hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipRequirement {
    pub spec: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub editable: bool,
}

impl PipRequirement {
    pub fn new(spec: impl Into<String>) -> Self {
        Self {
            spec: spec.into(),
            hashes: Vec::new(),
            editable: false,
        }
    }

    /// The requirements-file line for this requirement.
    pub fn to_line(&self) -> String {
        let mut line = if self.editable {
            format!("-e {}", self.spec)
        } else {
            self.spec.clone()
        };
        for hash in &self.hashes {
            line.push_str(" --hash=");
            line.push_str(hash);
        }
        line
    }
}

/// The conda part: ordered channels and match specs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conda {
    /// Order matters: earlier channels have priority.
    pub channels: Vec<String>,
    pub dependencies: Vec<String>,
}

/// How the container around the environment is made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Docker {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
    /// The Dockerfile's text (not its path), so that a change to it changes the content hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_dockerfile: Option<String>,
    /// A build context directory for `base_dockerfile`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_context: Option<String>,
    /// The Dockerfile's path inside `build_context` (Azure ML v2 `build.dockerfile_path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile_path: Option<String>,
    /// SHA-256 over the build context's files other than the Dockerfile (see
    /// [`crate::context::context_digest`]); `None` when there are none. The context's path is
    /// not part of the content hash, this digest is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_context_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub gpu: bool,
    /// `os/arch`, e.g. `linux/arm64`. `None` means `linux/amd64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

impl Docker {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Spark session packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Spark {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Maven coordinates `group:artifact:version`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    pub precache: bool,
}

impl Default for Spark {
    fn default() -> Self {
        Self {
            repositories: Vec::new(),
            packages: Vec::new(),
            precache: true,
        }
    }
}

impl Spark {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// The HTTP routes of a scoring service (Azure ML v2 `inference_config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Inference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_route: Option<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_route: Option<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scoring_route: Option<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub path: String,
    pub port: u16,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Definition {
    /// Whether the environment has packages for Terrarium to resolve.
    pub fn has_packages(&self) -> bool {
        !self.python.pip.is_empty()
            || self
                .conda
                .as_ref()
                .is_some_and(|c| !c.dependencies.is_empty())
    }

    /// Bring the definition into its one representation for each fact, so that formats that
    /// spell a fact differently produce the same definition:
    /// - in a conda environment the Python version is the `python` conda dependency;
    /// - a conda section with neither channels nor dependencies is no conda section.
    pub fn normalize(&mut self) {
        if let Some(conda) = &mut self.conda {
            if conda.channels.is_empty() && conda.dependencies.is_empty() {
                self.conda = None;
            }
        }
        if let Some(conda) = &mut self.conda {
            let has_python = conda
                .dependencies
                .iter()
                .any(|d| crate::conda::package_name(d).as_deref() == Some("python"));
            if let Some(version) = self.python.version.take() {
                if !has_python {
                    conda.dependencies.insert(0, format!("python={version}"));
                }
            }
        }
        for requirement in &mut self.python.pip {
            requirement.hashes.sort();
            requirement.hashes.dedup();
        }
    }

    /// The Python version the definition asks for, from `python.version` or the conda
    /// `python` dependency.
    pub fn python_version(&self) -> Option<String> {
        if let Some(version) = &self.python.version {
            return Some(version.clone());
        }
        let conda = self.conda.as_ref()?;
        conda.dependencies.iter().find_map(|d| {
            (crate::conda::package_name(d).as_deref() == Some("python"))
                .then(|| crate::conda::version_text(d))
                .flatten()
        })
    }
}
