//! `terrarium env diff`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::commands::Context;
use crate::printer;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The old version.
    old: String,
    /// The new version.
    new: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn lock_change(
    key: &str,
    kind: terrarium_spec::diff::ChangeKind,
    old: Option<&String>,
    new: Option<&String>,
) -> terrarium_spec::diff::Change {
    terrarium_spec::diff::Change {
        section: "locked",
        key: key.to_string(),
        kind,
        old: old.cloned(),
        new: new.cloned(),
    }
}

#[derive(Serialize)]
struct DiffOutput {
    old: String,
    new: String,
    old_content_hash: String,
    new_content_hash: String,
    identical: bool,
    changes: Vec<terrarium_spec::diff::Change>,
}

pub fn diff(context: &Context, args: DiffArgs) -> Result<ExitCode> {
    let old_ref = super::parse_reference(&args.old)?;
    let new_ref = super::parse_reference(&args.new)?;
    let store = context.store()?;
    let old = store.resolve(&old_ref)?;
    let new = store.resolve(&new_ref)?;
    let mut diff = terrarium_spec::diff(&old.definition, &new.definition);
    // With two locks, the resolved packages too (this machine's platform).
    if let (Some(a), Some(b)) = (&old.lock_hash, &new.lock_hash) {
        if a != b {
            let platform = terrarium_resolve::current_platform();
            let packages =
                |hash: &str| -> Result<std::collections::BTreeMap<String, (String, String)>> {
                    let lock = terrarium_resolve::Lock::from_json(&store.get_lock(hash)?)?;
                    Ok(lock
                        .packages(&platform)
                        .into_iter()
                        .map(|(name, version, source)| {
                            (format!("{source}:{name}"), (version.clone(), version))
                        })
                        .collect())
                };
            let (old_packages, new_packages) = (packages(a)?, packages(b)?);
            for (key, (version, _)) in &old_packages {
                match new_packages.get(key) {
                    None => diff.changes.push(lock_change(
                        key,
                        terrarium_spec::diff::ChangeKind::Removed,
                        Some(version),
                        None,
                    )),
                    Some((v, _)) if v != version => diff.changes.push(lock_change(
                        key,
                        terrarium_spec::diff::ChangeKind::Changed,
                        Some(version),
                        Some(v),
                    )),
                    Some(_) => {}
                }
            }
            for (key, (version, _)) in &new_packages {
                if !old_packages.contains_key(key) {
                    diff.changes.push(lock_change(
                        key,
                        terrarium_spec::diff::ChangeKind::Added,
                        None,
                        Some(version),
                    ));
                }
            }
        }
    }
    if args.json {
        printer::json(&DiffOutput {
            old: format!("{}:{}", old.name, old.version),
            new: format!("{}:{}", new.name, new.version),
            identical: old.content_hash == new.content_hash,
            old_content_hash: old.content_hash,
            new_content_hash: new.content_hash,
            changes: diff.changes,
        })?;
    } else {
        println!("--- {}:{} ({})", old.name, old.version, old.content_hash);
        println!("+++ {}:{} ({})", new.name, new.version, new.content_hash);
        print!("{diff}");
    }
    Ok(ExitCode::SUCCESS)
}
