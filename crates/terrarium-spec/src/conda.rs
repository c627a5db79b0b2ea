//! Conda match specs, parsed with rattler's own parser so that what Terrarium accepts is what
//! the conda solver will accept.

use rattler_conda_types::{MatchSpec, PackageNameMatcher, ParseStrictness};

/// Parse a match spec, returning rattler's reason on failure.
pub fn parse(spec: &str) -> Result<MatchSpec, String> {
    let trimmed = spec.trim();
    if trimmed.is_empty() {
        return Err("empty match spec".to_string());
    }
    let parsed =
        MatchSpec::from_str(trimmed, ParseStrictness::Lenient).map_err(|e| e.to_string())?;
    match &parsed.name {
        PackageNameMatcher::Exact(_) => Ok(parsed),
        _ => Err("a dependency must name one package, not a pattern".to_string()),
    }
}

/// The normalized form used for hashing and comparison: rattler's canonical rendering, so that
/// `numpy=1.26`, `numpy 1.26.*` and `NumPy=1.26` compare equal.
pub fn normalize(spec: &str) -> String {
    match parse(spec) {
        Ok(parsed) => parsed.to_string(),
        Err(_) => spec.trim().to_string(),
    }
}

/// The normalized package name of a spec, if it parses.
pub fn package_name(spec: &str) -> Option<String> {
    match parse(spec).ok()?.name {
        PackageNameMatcher::Exact(name) => Some(name.as_normalized().to_string()),
        _ => None,
    }
}

/// The version constraint of a spec as text (`3.11.*` for `python=3.11`).
pub fn version_text(spec: &str) -> Option<String> {
    let parsed = parse(spec).ok()?;
    let version = parsed.version?.to_string();
    Some(
        version
            .strip_prefix("==")
            .map(str::to_string)
            .unwrap_or_else(|| version.strip_suffix(".*").unwrap_or(&version).to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_spellings() {
        assert_eq!(normalize("numpy=1.26"), normalize("numpy 1.26.*"));
        assert_eq!(package_name("conda-forge::NumPy>=1"), Some("numpy".into()));
        assert_eq!(version_text("python=3.11"), Some("3.11".into()));
        assert!(parse("numpy >=<1").is_err());
        assert!(parse("*").is_err());
    }
}
