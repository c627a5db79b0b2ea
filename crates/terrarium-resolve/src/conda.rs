//! The conda part of a lock: rattler's repodata gateway reads the definition's channels in
//! order, and the resolvo solver picks exact records with strict channel priority.

use std::path::Path;
use std::str::FromStr;

use rattler_conda_types::{
    Channel, ChannelConfig, GenericVirtualPackage, MatchSpec, ParseStrictness, RepoDataRecord,
    Subdir,
};
use rattler_repodata_gateway::Gateway;
use rattler_solve::{ChannelPriority, SolverImpl, SolverTask};
use rattler_virtual_packages::{VirtualPackageOverrides, VirtualPackages};
use terrarium_lock::LockedConda;
use terrarium_spec::model::Conda;

use crate::ResolveError;

/// Virtual packages for `platform`: detected on this machine for the current platform (with
/// the `CONDA_OVERRIDE_*` variables honoured), the platform's minimal set otherwise, plus any
/// given explicitly (`__cuda=12.4`), which replace detected ones of the same name.
pub fn virtual_packages(
    platform: Subdir,
    given: &[String],
) -> Result<Vec<GenericVirtualPackage>, ResolveError> {
    let detected =
        VirtualPackages::detect_for_platform(platform, &VirtualPackageOverrides::from_env(), None)
            .map_err(|e| ResolveError::Invalid(format!("cannot detect virtual packages: {e}")))?;
    let mut packages: Vec<GenericVirtualPackage> =
        detected.into_generic_virtual_packages().collect();
    for spec in given {
        let package = parse_virtual_package(spec)?;
        packages.retain(|p| p.name != package.name);
        packages.push(package);
    }
    Ok(packages)
}

/// `__cuda=12.4` or `__glibc=2.31=0`.
pub fn parse_virtual_package(spec: &str) -> Result<GenericVirtualPackage, ResolveError> {
    let bad = || {
        ResolveError::Invalid(format!(
            "invalid virtual package `{spec}`: expected __NAME=VERSION[=BUILD]"
        ))
    };
    let mut parts = spec.splitn(3, '=');
    let name = parts
        .next()
        .filter(|n| n.starts_with("__"))
        .ok_or_else(bad)?;
    let version = parts.next().ok_or_else(bad)?;
    let build = parts.next().unwrap_or("0");
    Ok(GenericVirtualPackage {
        name: rattler_conda_types::PackageName::from_str(name).map_err(|_| bad())?,
        version: rattler_conda_types::Version::from_str(version).map_err(|_| bad())?,
        build_string: build.parse().map_err(|_| bad())?,
    })
}

/// Solve the conda dependencies for one platform.
pub fn solve(
    conda: &Conda,
    platform: Subdir,
    virtual_packages: Vec<GenericVirtualPackage>,
    cache_dir: &Path,
) -> Result<Vec<LockedConda>, ResolveError> {
    let root = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/"));
    let config = ChannelConfig::default_with_root_dir(root);
    let channels = conda
        .channels
        .iter()
        .map(|c| {
            Channel::from_str(c, &config).map_err(|e| ResolveError::Channel {
                channel: c.clone(),
                message: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let specs = conda
        .dependencies
        .iter()
        .map(|s| {
            MatchSpec::from_str(s, ParseStrictness::Lenient)
                .map_err(|e| ResolveError::Invalid(format!("invalid match spec `{s}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if channels.is_empty() {
        return Err(ResolveError::Invalid(
            "the conda section has dependencies but no channels".into(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ResolveError::io(cache_dir, "cannot start the async runtime for", e))?;
    let records = runtime.block_on(async {
        let gateway = Gateway::builder()
            .with_cache_dir(cache_dir.join("repodata"))
            .finish();
        let repodata = gateway
            .query(channels.clone(), [platform, Subdir::NoArch], specs.clone())
            .recursive(true)
            .await
            .map_err(|e| ResolveError::Channel {
                channel: conda.channels.join(", "),
                message: terrarium_spec::error::error_chain(&e),
            })?;
        let task = SolverTask {
            virtual_packages,
            specs: specs.clone(),
            channel_priority: ChannelPriority::Strict,
            ..SolverTask::from_iter(&repodata)
        };
        rattler_solve::resolvo::Solver
            .solve(task)
            .map(|result| result.records)
            .map_err(|e| match e {
                rattler_solve::SolveError::Unsolvable(reasons) => {
                    ResolveError::CondaUnsatisfiable(reasons.join("\n"))
                }
                other => ResolveError::CondaUnsatisfiable(other.to_string()),
            })
    })?;
    let mut locked: Vec<LockedConda> = records
        .into_iter()
        .map(to_locked)
        .collect::<Result<_, _>>()?;
    locked.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(locked)
}

fn to_locked(record: RepoDataRecord) -> Result<LockedConda, ResolveError> {
    let sha256 = record
        .package_record
        .sha256
        .map(|h| hex::encode(h.as_slice()))
        .ok_or_else(|| {
            ResolveError::Invalid(format!("the channel gives no sha256 for {}", record.url))
        })?;
    Ok(LockedConda {
        name: record.package_record.name.as_normalized().to_string(),
        version: record.package_record.version.to_string(),
        build: record.package_record.build.to_string(),
        url: record.url.to_string(),
        sha256,
        record: serde_json::to_value(&record).map_err(|e| ResolveError::Format(e.to_string()))?,
    })
}
