//! Whether a lock belongs to a definition.
//!
//! A lock decides what every later build of a version installs, and a team server accepts
//! locks that clients made. So a lock sent with a version is checked against its definition:
//! - every conda package comes from one of the definition's channels, and its repodata record
//!   agrees with the name, version, URL and sha256 the lock shows;
//! - every PyPI artifact comes from the definition's indexes or find-links locations, or is a
//!   URL or path the definition names itself;
//! - every package the definition asks for is locked, at a version it allows;
//! - a user-managed definition has a user-managed lock and the other way round.
//!
//! What this cannot tell: whether the packages that nothing asked for by name (dependencies)
//! are the ones a solver would pick. They still come only from the definition's own sources.

use std::str::FromStr;

use pep508_rs::{Requirement, VerbatimUrl, VersionOrUrl};
use rattler_conda_types::{
    Channel, ChannelConfig, MatchSpec, Matches, PackageName, ParseStrictness, RepoDataRecord,
};
use terrarium_spec::Definition;

use crate::lock::{Lock, LockKind, LockedConda, PlatformLock};
use crate::LockError;

/// Why a lock does not belong to a definition.
fn mismatch(text: impl Into<String>) -> LockError {
    LockError::Mismatch(text.into())
}

impl Lock {
    /// Check that this lock belongs to `definition` (see the module's documentation); the
    /// error is a [`LockError::Mismatch`] that says why not.
    pub fn check_against(&self, definition: &Definition) -> Result<(), LockError> {
        let user_managed = definition.python.user_managed;
        match (user_managed, self.kind) {
            (true, LockKind::UserManaged) => return Ok(()),
            (false, LockKind::Resolved) => {}
            (true, LockKind::Resolved) => {
                return Err(mismatch(
                    "the definition is user-managed but the lock was resolved",
                ))
            }
            (false, LockKind::UserManaged) => return Err(mismatch(
                "the lock records a user-managed environment but the definition is system-managed",
            )),
        }
        let sources = Sources::of(definition)?;
        for (platform, section) in &self.platforms {
            check_conda(definition, &sources, platform, section)?;
            check_pypi(definition, &sources, platform, section)?;
            if let (Some(wanted), Some(python)) = (
                &definition.python.interpreter,
                section.python.as_ref().and_then(|p| p.interpreter.as_ref()),
            ) {
                if wanted != python {
                    return Err(mismatch(format!(
                        "{platform}: the lock's interpreter `{python}` is not the definition's `{wanted}`"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Where a definition allows artifacts to come from, as URL prefixes.
struct Sources {
    /// Channel base URLs (`https://conda.anaconda.org/conda-forge/`).
    channels: Vec<String>,
    /// Relative channel paths, which resolve against the locking machine's directory: any
    /// local channel directory of that name.
    relative_channels: Vec<String>,
    /// Index and find-links URL prefixes for PyPI artifacts.
    pypi: Vec<String>,
    /// Relative find-links paths and paths named by requirements.
    relative_pypi: Vec<String>,
}

impl Sources {
    fn of(definition: &Definition) -> Result<Self, LockError> {
        let mut sources = Sources {
            channels: Vec::new(),
            relative_channels: Vec::new(),
            pypi: Vec::new(),
            relative_pypi: Vec::new(),
        };
        if let Some(conda) = &definition.conda {
            let config = ChannelConfig::default_with_root_dir(std::path::PathBuf::from("/"));
            for channel in &conda.channels {
                if is_relative_path(channel) {
                    sources.relative_channels.push(trim_relative(channel));
                    continue;
                }
                let parsed = Channel::from_str(channel, &config)
                    .map_err(|e| mismatch(format!("channel `{channel}`: {e}")))?;
                sources.channels.push(with_slash(parsed.base_url.as_str()));
            }
        }
        let index = &definition.python.index;
        let mut indexes: Vec<&str> = Vec::new();
        if !index.no_index {
            indexes.push(
                index
                    .index_url
                    .as_deref()
                    .unwrap_or("https://pypi.org/simple"),
            );
            indexes.extend(index.extra_index_urls.iter().map(String::as_str));
        }
        for url in indexes {
            let parsed =
                url::Url::parse(url).map_err(|e| mismatch(format!("index URL `{url}`: {e}")))?;
            // An index serves files from its own host; PyPI's from files.pythonhosted.org.
            let origin = format!("{}/", parsed.origin().ascii_serialization());
            if parsed.host_str() == Some("pypi.org") {
                sources
                    .pypi
                    .push("https://files.pythonhosted.org/".to_string());
            }
            if parsed.scheme() == "file" {
                sources.pypi.push(with_slash(parsed.as_str()));
            } else {
                sources.pypi.push(origin);
            }
        }
        let mut add_location = |location: &str| {
            if location.contains("://") {
                sources.pypi.push(location.to_string());
            } else if location.starts_with('/') {
                sources
                    .pypi
                    .push(format!("file://{}", with_slash(location)));
                sources.pypi.push(with_slash(location));
            } else {
                sources.relative_pypi.push(trim_relative(location));
            }
        };
        for link in &index.find_links {
            add_location(link);
        }
        for requirement in &definition.python.pip {
            let spec = requirement.spec.trim();
            if requirement.editable || !spec.contains(['<', '>', '=', '~', '!']) {
                // `-e PATH`, `name @ URL`, a bare URL or path: the definition names the source.
                let location = spec.rsplit_once(" @ ").map_or(spec, |(_, url)| url.trim());
                if location.contains("://") || location.contains('/') || location == "." {
                    add_location(location);
                }
            }
        }
        Ok(sources)
    }

    fn allows_conda(&self, url: &str) -> bool {
        self.channels
            .iter()
            .any(|prefix| url.starts_with(prefix.as_str()))
            || (url.starts_with("file://") && contains_dir(url, &self.relative_channels))
    }

    fn allows_pypi(&self, url: &str) -> bool {
        self.pypi
            .iter()
            .any(|prefix| url.starts_with(prefix.as_str()))
            || ((url.starts_with("file://") || !url.contains("://"))
                && (contains_dir(url, &self.relative_pypi)
                    || self
                        .relative_pypi
                        .iter()
                        .any(|p| url == p || url.starts_with(&format!("{p}/")))))
    }
}

fn is_relative_path(channel: &str) -> bool {
    channel.starts_with("./") || channel.starts_with("../") || channel == "."
}

fn trim_relative(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_end_matches('/')
        .to_string()
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

/// Whether `url`'s path has the directory `dir` (one or more components) inside it.
fn contains_dir(url: &str, dirs: &[String]) -> bool {
    dirs.iter()
        .filter(|d| !d.is_empty() && !d.split('/').any(|c| c == ".."))
        .any(|d| url.contains(&format!("/{d}/")))
}

fn check_conda(
    definition: &Definition,
    sources: &Sources,
    platform: &str,
    section: &PlatformLock,
) -> Result<(), LockError> {
    let mut records = Vec::with_capacity(section.conda.len());
    for package in &section.conda {
        let record = conda_record(package).map_err(|why| {
            mismatch(format!("{platform}: conda package {}: {why}", package.name))
        })?;
        if !sources.allows_conda(&package.url) {
            return Err(mismatch(format!(
                "{platform}: conda package {} comes from {}, which is not one of the definition's channels",
                package.name, package.url
            )));
        }
        records.push(record);
    }
    let Some(conda) = &definition.conda else {
        return if section.conda.is_empty() {
            Ok(())
        } else {
            Err(mismatch(format!(
                "{platform}: the lock has conda packages but the definition has no conda section"
            )))
        };
    };
    for text in &conda.dependencies {
        let Ok(spec) = MatchSpec::from_str(text, ParseStrictness::Lenient) else {
            return Err(mismatch(format!("the dependency `{text}` does not parse")));
        };
        let Some(name) = spec.name.as_exact() else {
            continue;
        };
        if name.as_normalized().starts_with("__") {
            continue; // a virtual package: the machine provides it.
        }
        let locked: Vec<&RepoDataRecord> = records
            .iter()
            .filter(|r| r.package_record.name == *name)
            .collect();
        if locked.is_empty() {
            return Err(mismatch(format!(
                "{platform}: the definition asks for `{text}` but the lock has no {}",
                name.as_normalized()
            )));
        }
        if !locked.iter().any(|r| spec.matches(*r)) {
            let record = &locked[0].package_record;
            return Err(mismatch(format!(
                "{platform}: the lock has {} {} {}, which `{text}` does not allow",
                record.name.as_normalized(),
                record.version,
                record.build
            )));
        }
    }
    Ok(())
}

/// The repodata record a conda package installs from, checked against what the lock shows
/// beside it (the installer reads the record).
fn conda_record(package: &LockedConda) -> Result<RepoDataRecord, String> {
    let record: RepoDataRecord =
        serde_json::from_value(package.record.clone()).map_err(|e| format!("its record: {e}"))?;
    let name = PackageName::from_str(&package.name).map_err(|e| e.to_string())?;
    let sha = record
        .package_record
        .sha256
        .map(|h| hex::encode(h.as_slice()));
    if record.package_record.name != name
        || record.package_record.version.to_string() != package.version
        || record.package_record.build != package.build
        || record.url.as_str() != package.url
        || sha.as_deref() != Some(package.sha256.as_str())
    {
        return Err("its record does not match its name, version, build, URL or sha256".into());
    }
    Ok(record)
}

fn check_pypi(
    definition: &Definition,
    sources: &Sources,
    platform: &str,
    section: &PlatformLock,
) -> Result<(), LockError> {
    for package in &section.pypi {
        if !sources.allows_pypi(&package.url) {
            return Err(mismatch(format!(
                "{platform}: PyPI package {} comes from {}, which is not one of the definition's indexes or find-links",
                package.name, package.url
            )));
        }
    }
    for requirement in &definition.python.pip {
        if requirement.editable {
            continue;
        }
        let Ok(parsed) = Requirement::<VerbatimUrl>::from_str(requirement.spec.trim()) else {
            continue; // a bare URL: its source was checked above.
        };
        let name = terrarium_spec::pip::normalize_name(parsed.name.as_ref());
        let locked = section
            .pypi
            .iter()
            .find(|p| terrarium_spec::pip::normalize_name(&p.name) == name);
        let Some(locked) = locked else {
            // A requirement with a marker may not apply to this platform or Python.
            if parsed.marker.is_true() {
                return Err(mismatch(format!(
                    "{platform}: the definition asks for `{}` but the lock has no {name}",
                    requirement.spec
                )));
            }
            continue;
        };
        if let Some(VersionOrUrl::VersionSpecifier(specifiers)) = &parsed.version_or_url {
            let version = pep440_rs::Version::from_str(&locked.version).map_err(|e| {
                mismatch(format!(
                    "{platform}: {name} has version `{}`: {e}",
                    locked.version
                ))
            })?;
            if !specifiers.contains(&version) {
                return Err(mismatch(format!(
                    "{platform}: the lock has {name} {}, which `{}` does not allow",
                    locked.version, requirement.spec
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::lock::LockedPypi;
    use terrarium_spec::model::{Conda, PipRequirement};

    const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    fn conda_package(channel: &str, name: &str, version: &str) -> LockedConda {
        let file = format!("{name}-{version}-py311_0.conda");
        let url = format!("{channel}/linux-64/{file}");
        LockedConda {
            name: name.into(),
            version: version.into(),
            build: "py311_0".into(),
            url: url.clone(),
            sha256: SHA.into(),
            record: serde_json::json!({
                "name": name, "version": version, "build": "py311_0", "build_number": 0,
                "subdir": "linux-64", "depends": [], "sha256": SHA, "url": url,
                "channel": channel, "fn": file,
            }),
        }
    }

    fn pypi_package(url: &str, name: &str, version: &str) -> LockedPypi {
        LockedPypi {
            name: name.into(),
            version: version.into(),
            url: url.into(),
            sha256: SHA.into(),
        }
    }

    fn definition() -> Definition {
        let mut d = Definition {
            name: "web".into(),
            ..Definition::default()
        };
        d.conda = Some(Conda {
            channels: vec!["conda-forge".into()],
            dependencies: vec!["numpy>=1.26".into(), "__cuda".into()],
        });
        d.python.pip = vec![PipRequirement {
            spec: "requests==2.31.0".into(),
            hashes: Vec::new(),
            editable: false,
        }];
        d
    }

    fn lock(conda: Vec<LockedConda>, pypi: Vec<LockedPypi>) -> Lock {
        let mut platforms = BTreeMap::new();
        platforms.insert(
            "linux-64".to_string(),
            PlatformLock {
                conda,
                pypi,
                ..PlatformLock::default()
            },
        );
        Lock {
            lock_version: 1,
            kind: LockKind::Resolved,
            content_hash: String::new(),
            platforms,
            tools: BTreeMap::new(),
        }
    }

    const FORGE: &str = "https://conda.anaconda.org/conda-forge";
    const FILES: &str =
        "https://files.pythonhosted.org/packages/ab/requests-2.31.0-py3-none-any.whl";

    fn check(conda: Vec<LockedConda>, pypi: Vec<LockedPypi>) -> Result<(), String> {
        lock(conda, pypi)
            .check_against(&definition())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_lock_the_solver_could_have_made_passes() {
        check(
            vec![
                conda_package(FORGE, "numpy", "1.26.4"),
                conda_package(FORGE, "libblas", "3.9"),
            ],
            vec![pypi_package(FILES, "requests", "2.31.0")],
        )
        .unwrap();
    }

    #[test]
    fn packages_from_elsewhere_are_refused() {
        let err = check(
            vec![conda_package(
                "https://evil.example/chan",
                "numpy",
                "1.26.4",
            )],
            vec![pypi_package(FILES, "requests", "2.31.0")],
        )
        .unwrap_err();
        assert!(
            err.contains("not one of the definition's channels"),
            "{err}"
        );
        let err = check(
            vec![conda_package(FORGE, "numpy", "1.26.4")],
            vec![pypi_package(
                "https://evil.example/requests-2.31.0-py3-none-any.whl",
                "requests",
                "2.31.0",
            )],
        )
        .unwrap_err();
        assert!(err.contains("not one of the definition's indexes"), "{err}");
    }

    #[test]
    fn versions_the_definition_does_not_allow_are_refused() {
        let err = check(
            vec![conda_package(FORGE, "numpy", "1.20.0")],
            vec![pypi_package(FILES, "requests", "2.31.0")],
        )
        .unwrap_err();
        assert!(err.contains("does not allow"), "{err}");
        let err = check(
            vec![conda_package(FORGE, "numpy", "1.26.4")],
            vec![pypi_package(FILES, "requests", "2.0.0")],
        )
        .unwrap_err();
        assert!(err.contains("does not allow"), "{err}");
        let err = check(vec![conda_package(FORGE, "numpy", "1.26.4")], vec![]).unwrap_err();
        assert!(err.contains("has no requests"), "{err}");
    }

    #[test]
    fn a_record_that_disagrees_with_its_package_is_refused() {
        let mut package = conda_package(FORGE, "numpy", "1.26.4");
        package.record["url"] = serde_json::json!("https://evil.example/numpy.conda");
        let err = check(
            vec![package],
            vec![pypi_package(FILES, "requests", "2.31.0")],
        )
        .unwrap_err();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn kinds_must_agree_and_find_links_are_sources() {
        let mut l = lock(vec![conda_package(FORGE, "numpy", "1.26.4")], vec![]);
        l.kind = LockKind::UserManaged;
        assert!(l.check_against(&definition()).is_err());

        let mut d = Definition {
            name: "local".into(),
            ..Definition::default()
        };
        d.python.index.no_index = true;
        d.python.index.find_links = vec!["/srv/wheels".into()];
        d.python.pip = vec![PipRequirement {
            spec: "demo>=1".into(),
            hashes: Vec::new(),
            editable: false,
        }];
        let good = lock(
            vec![],
            vec![pypi_package(
                "file:///srv/wheels/demo-1.0-py3-none-any.whl",
                "demo",
                "1.0",
            )],
        );
        good.check_against(&d).unwrap();
        let pypi = lock(vec![], vec![pypi_package(FILES, "demo", "1.0")]);
        assert!(
            pypi.check_against(&d).is_err(),
            "--no-index allows no index"
        );
        let outside = lock(
            vec![],
            vec![pypi_package(
                "file:///srv/wheels-evil/demo-1.0-py3-none-any.whl",
                "demo",
                "1.0",
            )],
        );
        assert!(outside.check_against(&d).is_err());
    }
}
