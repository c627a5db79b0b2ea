//! Differences between two definitions, by section and key, for people and for `--json`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::model::Definition;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One difference: in `section`, the entry `key` was added, removed or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub section: &'static str,
    pub key: String,
    pub kind: ChangeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

/// All differences, in a stable order (section, then key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub changes: Vec<Change>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Compare two definitions.
pub fn diff(old: &Definition, new: &Definition) -> Diff {
    let mut old = old.clone();
    old.normalize();
    let mut new = new.clone();
    new.normalize();
    let mut changes = Vec::new();

    let mut scalar = |section, key: &str, a: Option<String>, b: Option<String>| {
        if a != b {
            changes.push(Change {
                section,
                key: key.to_string(),
                kind: match (&a, &b) {
                    (None, Some(_)) => ChangeKind::Added,
                    (Some(_), None) => ChangeKind::Removed,
                    _ => ChangeKind::Changed,
                },
                old: a,
                new: b,
            });
        }
    };
    let show = |v: &dyn fmt::Debug| Some(format!("{v:?}"));

    scalar(
        "general",
        "description",
        old.description.clone(),
        new.description.clone(),
    );
    scalar("general", "tags", tags(&old.tags), tags(&new.tags));
    scalar(
        "general",
        "runtime",
        Some(old.runtime.as_str().into()),
        Some(new.runtime.as_str().into()),
    );
    scalar(
        "python",
        "version",
        old.python.version.clone(),
        new.python.version.clone(),
    );
    scalar(
        "python",
        "interpreter",
        old.python.interpreter.clone(),
        new.python.interpreter.clone(),
    );
    scalar(
        "python",
        "user_managed",
        Some(old.python.user_managed.to_string()),
        Some(new.python.user_managed.to_string()),
    );
    for (key, a, b) in [
        (
            "index_url",
            old.python.index.index_url.clone(),
            new.python.index.index_url.clone(),
        ),
        (
            "extra_index_urls",
            list(&old.python.index.extra_index_urls),
            list(&new.python.index.extra_index_urls),
        ),
        (
            "find_links",
            list(&old.python.index.find_links),
            list(&new.python.index.find_links),
        ),
        (
            "no_index",
            Some(old.python.index.no_index.to_string()),
            Some(new.python.index.no_index.to_string()),
        ),
    ] {
        scalar("python", key, a, b);
    }
    let channels = |d: &Definition| d.conda.as_ref().and_then(|c| list(&c.channels));
    scalar("conda", "channels", channels(&old), channels(&new));
    for (key, a, b) in [
        (
            "base_image",
            old.docker.base_image.clone(),
            new.docker.base_image.clone(),
        ),
        (
            "base_dockerfile",
            old.docker.base_dockerfile.clone(),
            new.docker.base_dockerfile.clone(),
        ),
        (
            "build_context",
            old.docker.build_context.clone(),
            new.docker.build_context.clone(),
        ),
        (
            "build_context_digest",
            old.docker.build_context_digest.clone(),
            new.docker.build_context_digest.clone(),
        ),
        (
            "dockerfile_path",
            old.docker.dockerfile_path.clone(),
            new.docker.dockerfile_path.clone(),
        ),
        (
            "shm_size",
            old.docker.shm_size.clone(),
            new.docker.shm_size.clone(),
        ),
        (
            "gpu",
            Some(old.docker.gpu.to_string()),
            Some(new.docker.gpu.to_string()),
        ),
        (
            "platform",
            old.docker.platform.clone(),
            new.docker.platform.clone(),
        ),
    ] {
        scalar("docker", key, a, b);
    }
    scalar(
        "spark",
        "repositories",
        list(&old.spark.repositories),
        list(&new.spark.repositories),
    );
    scalar(
        "spark",
        "precache",
        Some(old.spark.precache.to_string()),
        Some(new.spark.precache.to_string()),
    );
    scalar(
        "inference",
        "routes",
        old.inference.as_ref().and_then(|i| show(i)),
        new.inference.as_ref().and_then(|i| show(i)),
    );

    keyed(&mut changes, "pip", pip_entries(&old), pip_entries(&new));
    keyed(
        &mut changes,
        "conda",
        conda_entries(&old),
        conda_entries(&new),
    );
    keyed(
        &mut changes,
        "environment_variables",
        plain(old.environment_variables.clone()),
        plain(new.environment_variables.clone()),
    );
    keyed(
        &mut changes,
        "spark.packages",
        spark_entries(&old),
        spark_entries(&new),
    );
    let ext = |d: &Definition| plain(d.extensions.iter().map(|(k, v)| (k.clone(), v.to_string())));
    keyed(&mut changes, "extensions", ext(&old), ext(&new));

    Diff { changes }
}

fn tags(tags: &BTreeMap<String, String>) -> Option<String> {
    (!tags.is_empty()).then(|| {
        tags.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

fn list(items: &[String]) -> Option<String> {
    (!items.is_empty()).then(|| items.join(", "))
}

/// Entries by key: (normalized form compared, text shown).
type Entries = BTreeMap<String, (String, String)>;

fn pip_entries(d: &Definition) -> Entries {
    d.python
        .pip
        .iter()
        .map(|r| {
            let normalized = crate::pip::normalize(r);
            let key = crate::pip::package_name(r).unwrap_or_else(|| normalized.clone());
            (key, (normalized, r.to_line()))
        })
        .collect()
}

fn conda_entries(d: &Definition) -> Entries {
    d.conda
        .iter()
        .flat_map(|c| &c.dependencies)
        .map(|s| {
            let normalized = crate::conda::normalize(s);
            let key = crate::conda::package_name(s).unwrap_or_else(|| normalized.clone());
            (key, (normalized, s.clone()))
        })
        .collect()
}

fn spark_entries(d: &Definition) -> Entries {
    d.spark
        .packages
        .iter()
        .map(|p| {
            let key = p
                .rsplit_once(':')
                .map_or(p.as_str(), |(ga, _)| ga)
                .to_string();
            (key, (p.clone(), p.clone()))
        })
        .collect()
}

fn plain(map: impl IntoIterator<Item = (String, String)>) -> Entries {
    map.into_iter().map(|(k, v)| (k, (v.clone(), v))).collect()
}

fn keyed(changes: &mut Vec<Change>, section: &'static str, old: Entries, new: Entries) {
    for (key, (a, shown_a)) in &old {
        match new.get(key) {
            None => changes.push(Change {
                section,
                key: key.clone(),
                kind: ChangeKind::Removed,
                old: Some(shown_a.clone()),
                new: None,
            }),
            Some((b, shown_b)) if a != b => changes.push(Change {
                section,
                key: key.clone(),
                kind: ChangeKind::Changed,
                old: Some(shown_a.clone()),
                new: Some(shown_b.clone()),
            }),
            Some(_) => {}
        }
    }
    for (key, (_, shown_b)) in &new {
        if !old.contains_key(key) {
            changes.push(Change {
                section,
                key: key.clone(),
                kind: ChangeKind::Added,
                old: None,
                new: Some(shown_b.clone()),
            });
        }
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return writeln!(f, "no differences");
        }
        let mut section = "";
        for change in &self.changes {
            if change.section != section {
                section = change.section;
                writeln!(f, "{section}:")?;
            }
            let one_line = |s: &Option<String>| s.as_deref().unwrap_or("").replace('\n', "\\n");
            match change.kind {
                ChangeKind::Added => writeln!(f, "  + {}: {}", change.key, one_line(&change.new))?,
                ChangeKind::Removed => {
                    writeln!(f, "  - {}: {}", change.key, one_line(&change.old))?
                }
                ChangeKind::Changed => writeln!(
                    f,
                    "  ~ {}: {} -> {}",
                    change.key,
                    one_line(&change.old),
                    one_line(&change.new)
                )?,
            }
        }
        Ok(())
    }
}
