//! Names, versions, labels and references (`NAME`, `NAME:VERSION`, `NAME@LABEL`).

use std::fmt;

/// Names under this prefix are reserved for curated environments.
pub const CURATED_PREFIX: &str = "curated/";

/// The label that always means "the newest version that is not archived".
pub const LATEST: &str = "latest";

/// A name: 1-255 of letters, digits, `.`, `_`, `-`, starting with a letter or digit. Curated
/// names are the same under the `curated/` prefix.
pub fn validate_name(name: &str) -> Result<(), String> {
    let body = name.strip_prefix(CURATED_PREFIX).unwrap_or(name);
    let ok = !body.is_empty()
        && body.len() <= 255
        && body
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else if name.is_empty() {
        Err("the environment has no name".to_string())
    } else {
        Err(format!(
            "invalid name `{name}`: use 1-255 letters, digits, `.`, `_` or `-`, starting with a \
             letter or digit"
        ))
    }
}

/// A version: like a name, at most 64 characters (`1`, `2`, `1.0.3`).
pub fn validate_version(version: &str) -> Result<(), String> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && version
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid version `{version}`: use letters, digits, `.`, `_` or `-`"
        ))
    }
}

/// A label such as `production`; `latest` is reserved.
pub fn validate_label(label: &str) -> Result<(), String> {
    if label == LATEST {
        return Err("`latest` is managed by Terrarium and cannot be set or removed".to_string());
    }
    validate_version(label)
        .map_err(|_| format!("invalid label `{label}`: use letters, digits, `.`, `_` or `-`"))
}

pub fn is_curated(name: &str) -> bool {
    name.starts_with(CURATED_PREFIX)
}

/// A reference to one version of an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `NAME`: the latest version.
    Latest(String),
    /// `NAME:VERSION`
    Version(String, String),
    /// `NAME@LABEL`
    Label(String, String),
}

impl Reference {
    pub fn parse(text: &str) -> Result<Self, String> {
        let reference = if let Some((name, label)) = text.split_once('@') {
            validate_version(label).map_err(|_| format!("invalid label in `{text}`"))?;
            if label == LATEST {
                Self::Latest(name.to_string())
            } else {
                Self::Label(name.to_string(), label.to_string())
            }
        } else if let Some((name, version)) = text.rsplit_once(':') {
            validate_version(version).map_err(|e| format!("in `{text}`: {e}"))?;
            Self::Version(name.to_string(), version.to_string())
        } else {
            Self::Latest(text.to_string())
        };
        validate_name(reference.name()).map_err(|e| format!("invalid reference `{text}`: {e}"))?;
        Ok(reference)
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Latest(n) | Self::Version(n, _) | Self::Label(n, _) => n,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest(n) => write!(f, "{n}"),
            Self::Version(n, v) => write!(f, "{n}:{v}"),
            Self::Label(n, l) => write!(f, "{n}@{l}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(
            Reference::parse("a").unwrap(),
            Reference::Latest("a".into())
        );
        assert_eq!(
            Reference::parse("a:3").unwrap(),
            Reference::Version("a".into(), "3".into())
        );
        assert_eq!(
            Reference::parse("a@prod").unwrap(),
            Reference::Label("a".into(), "prod".into())
        );
        assert_eq!(
            Reference::parse("a@latest").unwrap(),
            Reference::Latest("a".into())
        );
        assert_eq!(
            Reference::parse("curated/sklearn:1").unwrap(),
            Reference::Version("curated/sklearn".into(), "1".into())
        );
        assert!(Reference::parse("bad name").is_err());
        assert!(validate_label("latest").is_err());
    }
}
