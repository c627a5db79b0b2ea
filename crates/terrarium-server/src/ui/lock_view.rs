//! The lock's contents as a table: every package per platform, with size and source.

use std::collections::BTreeMap;

use maud::{html, Markup};
use terrarium_spec::error::error_chain;

/// Sizes of PyPI artifacts by URL, from the PEP 751 text (`size` of wheels and sdists).
fn pylock_sizes(pylock: &str) -> BTreeMap<String, u64> {
    let mut sizes = BTreeMap::new();
    let Ok(doc) = pylock.parse::<toml::Table>() else {
        return sizes;
    };
    let packages = doc.get("packages").and_then(|p| p.as_array());
    for package in packages.into_iter().flatten() {
        let wheels = package.get("wheels").and_then(|w| w.as_array());
        let artifacts = wheels
            .into_iter()
            .flatten()
            .chain(package.get("sdist"))
            .chain(package.get("archive"));
        for artifact in artifacts {
            if let (Some(url), Some(size)) = (
                artifact.get("url").and_then(|u| u.as_str()),
                artifact.get("size").and_then(|s| s.as_integer()),
            ) {
                sizes.insert(url.to_string(), size as u64);
            }
        }
    }
    sizes
}

/// Where an artifact comes from: its host and channel or index path, without credentials.
fn source_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "file" => "local file".to_string(),
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or("");
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{host}{port}", parsed.scheme())
        }
        Err(_) => url.to_string(),
    }
}

pub fn render(lock_json: &str) -> Markup {
    let lock = match terrarium_lock::Lock::from_json(lock_json) {
        Ok(lock) => lock,
        Err(err) => {
            return html! { p.fail { "The stored lock cannot be read: " (error_chain(&err)) } }
        }
    };
    html! {
        @for (platform, locked) in &lock.platforms {
            @let sizes = locked.pylock.as_deref().map(pylock_sizes).unwrap_or_default();
            @let conda_total: u64 = locked.conda.iter().filter_map(|c| c.record.get("size").and_then(|s| s.as_u64())).sum();
            @let pypi_total: u64 = locked.pypi.iter().filter_map(|p| sizes.get(&p.url)).sum();
            h2 { (platform) }
            p.muted {
                (locked.conda.len()) " conda and " (locked.pypi.len()) " PyPI packages, "
                (crate::human_size(conda_total + pypi_total)) " to download"
                @if let Some(python) = &locked.python { " · Python " (python.version) }
            }
            table.lock id={ "lock-" (platform) } {
                thead { tr { th { "Package" } th { "Version" } th { "Kind" } th { "Size" } th { "Source" } th { "sha256" } } }
                tbody {
                    @for c in &locked.conda {
                        tr {
                            td { (c.name) } td.mono { (c.version) " " span.muted { (c.build) } } td { "conda" }
                            td { @match c.record.get("size").and_then(|s| s.as_u64()) { Some(s) => (crate::human_size(s)), None => "—" } }
                            td.mono { (source_of(&c.url)) } td.mono.muted { (c.sha256.get(..12).unwrap_or(&c.sha256)) }
                        }
                    }
                    @for p in &locked.pypi {
                        tr {
                            td { (p.name) } td.mono { (p.version) } td { "pypi" }
                            td { @match sizes.get(&p.url) { Some(s) => (crate::human_size(*s)), None => "—" } }
                            td.mono { (source_of(&p.url)) } td.mono.muted { (p.sha256.get(..12).unwrap_or(&p.sha256)) }
                        }
                    }
                }
            }
        }
    }
}
