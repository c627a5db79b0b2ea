//! Standard lock formats, so other tools can read Terrarium's locks:
//! - `pixi.lock` (conda + PyPI, every platform) written with rattler_lock (the `pixi-lock`
//!   feature);
//! - PEP 751 `pylock.toml` for the PyPI part of one platform.

use crate::{Lock, LockError};

/// The environment name used inside the pixi.lock.
#[cfg(feature = "pixi-lock")]
pub const PIXI_ENVIRONMENT: &str = "default";

/// Render a lock as pixi.lock text.
#[cfg(feature = "pixi-lock")]
pub fn pixi_lock(
    lock: &Lock,
    definition: &terrarium_spec::Definition,
) -> Result<String, LockError> {
    use std::str::FromStr;

    use rattler_lock::{
        CondaPackageData, LockFileBuilder, PackageHashes, PlatformData, PlatformName,
        PypiDistributionData, UrlOrPath, Verbatim,
    };

    fn err(source: impl std::error::Error + Send + Sync + 'static) -> LockError {
        LockError::Export {
            format: "pixi.lock",
            source: Box::new(source),
        }
    }
    let platforms = lock
        .platforms
        .keys()
        .map(|p| {
            Ok(PlatformData {
                name: PlatformName::try_from(p.as_str()).map_err(err)?,
                subdir: p
                    .parse()
                    .map_err(|_| LockError::UnknownPlatform(p.clone()))?,
                virtual_packages: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, LockError>>()?;
    let mut builder = LockFileBuilder::new()
        .with_platforms(platforms)
        .map_err(err)?;
    let channels: Vec<String> = definition
        .conda
        .as_ref()
        .map(|c| c.channels.clone())
        .unwrap_or_default();
    builder.set_channels(
        PIXI_ENVIRONMENT,
        channels
            .iter()
            .map(|c| rattler_lock::Channel::from(c.as_str())),
    );
    for (platform, section) in &lock.platforms {
        for record in section.conda_records()? {
            builder
                .add_conda_package(PIXI_ENVIRONMENT, platform, CondaPackageData::from(record))
                .map_err(err)?;
        }
        for package in &section.pypi {
            let location = match url::Url::parse(&package.url) {
                Ok(url) => UrlOrPath::Url(url),
                Err(_) => UrlOrPath::from_str(&package.url).map_err(err)?,
            };
            let hash = if package.sha256.is_empty() {
                None
            } else {
                rattler_digest::parse_digest_from_hex::<rattler_digest::Sha256>(&package.sha256)
                    .map(PackageHashes::Sha256)
            };
            let data = PypiDistributionData {
                name: pep508_rs::PackageName::from_str(&package.name).map_err(err)?,
                version: pep440_rs::Version::from_str(&package.version).map_err(err)?,
                location: Verbatim::new(location),
                index_url: None,
                hash,
                requires_dist: Vec::new(),
                requires_python: None,
            };
            builder
                .add_pypi_package(PIXI_ENVIRONMENT, platform, data.into())
                .map_err(err)?;
        }
    }
    builder.finish().render_to_string().map_err(err)
}

/// The PyPI part of one platform as PEP 751 `pylock.toml`.
pub fn pylock(lock: &Lock, platform: &str) -> Result<String, LockError> {
    let section = lock
        .platforms
        .get(platform)
        .ok_or_else(|| LockError::NoPlatform(platform.to_string()))?;
    section
        .pylock
        .clone()
        .ok_or_else(|| LockError::NoPypi(platform.to_string()))
}
