//! The lock: exact artifacts per platform, made once per environment version.
//!
//! Stored as JSON with a version (`lock_version`). The lock hash covers everything that decides
//! the installed files (platform sections, kind), not the tools that made it or the definition
//! hash it came from, so two definitions that resolve identically share one prefix.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const LOCK_VERSION: u32 = 1;

/// How the environment's packages came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockKind {
    /// Resolved by Terrarium (system-managed).
    Resolved,
    /// Recorded from what the user installed (user-managed); never resolved.
    UserManaged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub lock_version: u32,
    pub kind: LockKind,
    /// The content hash of the definition this lock was made from.
    pub content_hash: String,
    /// Per conda platform name (`linux-64`, `osx-arm64`, ...).
    pub platforms: BTreeMap<String, PlatformLock>,
    /// Tools and versions that made the lock (`uv`, `rattler`).
    pub tools: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformLock {
    /// The interpreter: for pip-only environments the base interpreter on this machine; for
    /// conda environments the locked `python` package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<LockedPython>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conda: Vec<LockedConda>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pypi: Vec<LockedPypi>,
    /// The PyPI part as PEP 751 `pylock.toml` text, which installers consume directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pylock: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedPython {
    /// An interpreter path, for environments built on a base interpreter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// `3.11.2`
    pub version: String,
}

/// One conda package: the repodata record rattler installs from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedConda {
    pub name: String,
    pub version: String,
    pub build: String,
    pub url: String,
    pub sha256: String,
    /// The full `RepoDataRecord` JSON, so installation needs no repodata.
    pub record: serde_json::Value,
}

/// One PyPI distribution and the artifact to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedPypi {
    pub name: String,
    pub version: String,
    pub url: String,
    pub sha256: String,
}

impl Lock {
    /// `sha256:<hex>` over the installed-files-deciding part.
    pub fn lock_hash(&self) -> String {
        let value = serde_json::json!({
            "lock_version": self.lock_version,
            "kind": self.kind,
            "platforms": self.platforms,
        });
        // serde_json's map is sorted: the text is canonical.
        let value: serde_json::Value = serde_json::from_str(&value.to_string()).expect("json");
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(value.to_string().as_bytes()))
        )
    }

    /// Pretty JSON with sorted keys: the same lock is always the same bytes.
    pub fn to_json(&self) -> String {
        let value = serde_json::to_value(self).expect("lock serializes");
        serde_json::to_string_pretty(&terrarium_spec::canonical::sorted(value)).expect("json")
            + "\n"
    }

    pub fn from_json(text: &str) -> Result<Self, crate::ResolveError> {
        let lock: Lock =
            serde_json::from_str(text).map_err(|e| crate::ResolveError::Format(e.to_string()))?;
        if lock.lock_version > LOCK_VERSION {
            return Err(crate::ResolveError::Format(format!(
                "lock version {} is newer than this terrarium understands ({LOCK_VERSION})",
                lock.lock_version
            )));
        }
        Ok(lock)
    }

    /// All package names and versions for one platform, conda and PyPI, sorted.
    pub fn packages(&self, platform: &str) -> Vec<(String, String, &'static str)> {
        let mut out = Vec::new();
        if let Some(p) = self.platforms.get(platform) {
            out.extend(
                p.conda
                    .iter()
                    .map(|c| (c.name.clone(), c.version.clone(), "conda")),
            );
            out.extend(
                p.pypi
                    .iter()
                    .map(|c| (c.name.clone(), c.version.clone(), "pypi")),
            );
        }
        out.sort();
        out
    }
}
