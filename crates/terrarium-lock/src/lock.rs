//! The lock: exact artifacts per platform, made once per environment version.
//!
//! Stored as JSON with a version (`lock_version`). The lock hash covers everything that decides
//! the installed files (platform sections, kind), not the tools that made it or the definition
//! hash it came from, so two definitions that resolve identically share one prefix.

use std::collections::BTreeMap;

use rattler_conda_types::RepoDataRecord;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::LockError;

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

impl PlatformLock {
    /// The repodata records of the conda packages, which rattler installs from.
    pub fn conda_records(&self) -> Result<Vec<RepoDataRecord>, LockError> {
        self.conda
            .iter()
            .map(LockedConda::repodata_record)
            .collect()
    }
}

impl LockedConda {
    /// The stored repodata record.
    pub fn repodata_record(&self) -> Result<RepoDataRecord, LockError> {
        serde_json::from_value(self.record.clone()).map_err(|source| LockError::CondaRecord {
            name: self.name.clone(),
            source,
        })
    }
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
        // Keys sorted at every level, whatever order the maps keep: serde_json keeps insertion
        // order when any crate in the build turns on `preserve_order` (rattler does), and a
        // conda record read back from JSON has another order than the one rattler wrote.
        let value = terrarium_spec::canonical::sorted(value);
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

    pub fn from_json(text: &str) -> Result<Self, LockError> {
        let lock: Lock = serde_json::from_str(text).map_err(LockError::Parse)?;
        if lock.lock_version > LOCK_VERSION {
            return Err(LockError::NewerVersion {
                found: lock.lock_version,
                supported: LOCK_VERSION,
            });
        }
        Ok(lock)
    }

    /// The packages that differ from `self` to `new` on `platform`, as diff changes in the
    /// `locked` section, keyed `conda:NAME` or `pypi:NAME`: removed and changed in key order,
    /// then added. The one lock diff that `env diff` and the server's diff both show.
    pub fn diff(&self, new: &Lock, platform: &str) -> Vec<terrarium_spec::diff::Change> {
        use terrarium_spec::diff::{Change, ChangeKind};
        let packages = |lock: &Lock| -> BTreeMap<String, String> {
            lock.packages(platform)
                .into_iter()
                .map(|(name, version, source)| (format!("{source}:{name}"), version))
                .collect()
        };
        let (old, new) = (packages(self), packages(new));
        let change = |key: &String, kind, old: Option<&String>, new: Option<&String>| Change {
            section: "locked",
            key: key.clone(),
            kind,
            old: old.cloned(),
            new: new.cloned(),
        };
        let mut changes = Vec::new();
        for (key, version) in &old {
            match new.get(key) {
                None => changes.push(change(key, ChangeKind::Removed, Some(version), None)),
                Some(v) if v != version => {
                    changes.push(change(key, ChangeKind::Changed, Some(version), Some(v)))
                }
                Some(_) => {}
            }
        }
        for (key, version) in &new {
            if !old.contains_key(key) {
                changes.push(change(key, ChangeKind::Added, None, Some(version)));
            }
        }
        changes
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A conda + PyPI lock whose conda record keys are in the order rattler writes them (not
    /// sorted), as a lock is before it is first stored.
    fn lock() -> Lock {
        let record: serde_json::Value = serde_json::from_str(
            r#"{"name": "numpy", "version": "1.26.4", "build": "py311_0", "build_number": 0,
                "subdir": "linux-64", "depends": ["python >=3.11"], "sha256": "00", "url": "https://conda.anaconda.org/conda-forge/linux-64/numpy-1.26.4-py311_0.conda",
                "channel": "https://conda.anaconda.org/conda-forge/", "fn": "numpy-1.26.4-py311_0.conda"}"#,
        )
        .unwrap();
        let mut platforms = BTreeMap::new();
        platforms.insert(
            "linux-64".to_string(),
            PlatformLock {
                python: Some(LockedPython {
                    interpreter: None,
                    version: "3.11.9".into(),
                }),
                conda: vec![LockedConda {
                    name: "numpy".into(),
                    version: "1.26.4".into(),
                    build: "py311_0".into(),
                    url:
                        "https://conda.anaconda.org/conda-forge/linux-64/numpy-1.26.4-py311_0.conda"
                            .into(),
                    sha256: "00".into(),
                    record,
                }],
                pypi: vec![LockedPypi {
                    name: "requests".into(),
                    version: "2.31.0".into(),
                    url: "https://files.pythonhosted.org/packages/requests-2.31.0-py3-none-any.whl"
                        .into(),
                    sha256: "11".into(),
                }],
                pylock: Some("lock-version = \"1.0\"\n".into()),
            },
        );
        Lock {
            lock_version: LOCK_VERSION,
            kind: LockKind::Resolved,
            content_hash: "sha256:22".into(),
            platforms,
            tools: BTreeMap::new(),
        }
    }

    #[test]
    fn the_hash_survives_a_json_round_trip() {
        let lock = lock();
        let back = Lock::from_json(&lock.to_json()).unwrap();
        assert_eq!(back.lock_hash(), lock.lock_hash());
        assert_eq!(back, Lock::from_json(&back.to_json()).unwrap());
    }

    #[test]
    fn the_lock_diff() {
        let old = lock();
        let mut new = lock();
        let section = new.platforms.get_mut("linux-64").unwrap();
        section.pypi[0].version = "2.32.0".into();
        section.conda.clear();
        section.pypi.push(LockedPypi {
            name: "idna".into(),
            version: "3.7".into(),
            url: "https://files.pythonhosted.org/idna-3.7-py3-none-any.whl".into(),
            sha256: "33".into(),
        });
        let changes: Vec<String> = old
            .diff(&new, "linux-64")
            .iter()
            .map(|c| format!("{:?} {} {:?} {:?}", c.kind, c.key, c.old, c.new))
            .collect();
        assert_eq!(
            changes,
            [
                "Removed conda:numpy Some(\"1.26.4\") None",
                "Changed pypi:requests Some(\"2.31.0\") Some(\"2.32.0\")",
                "Added pypi:idna None Some(\"3.7\")",
            ]
        );
        assert!(old.diff(&old, "linux-64").is_empty());
    }

    /// Locks written by lock format 1 are read by every later Terrarium, with the same hash.
    #[test]
    fn lock_format_1_fixture() {
        let text = include_str!("../tests/fixtures/lock-v1.json");
        let lock = Lock::from_json(text).unwrap();
        assert_eq!(lock.lock_version, 1);
        assert_eq!(lock.packages("linux-64").len(), 2);
        assert_eq!(
            lock.lock_hash(),
            "sha256:5b5407eb9abe822fcad55be245116fa169744401e29861e4ea8f472135864b0d",
            "the lock hash of a stored lock must never change"
        );
    }
}
