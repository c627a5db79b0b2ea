//! Names, versions, labels and references (`NAME`, `NAME:VERSION`, `NAME@LABEL`).

use std::fmt;

use crate::error::ReferenceError;

/// Names under this prefix are reserved for curated environments.
pub const CURATED_PREFIX: &str = "curated/";

/// The label that always means "the newest version that is not archived".
pub const LATEST: &str = "latest";

/// Names under this prefix are given by Terrarium to nameless definitions (a requirements
/// file, most conda files and Dockerfiles): `anonymous/` and the start of the content hash,
/// so the same content always has the same name and different content never shares one.
pub const ANONYMOUS_PREFIX: &str = "anonymous/";

/// The name of a nameless definition whose content hash is `content_hash` (`sha256:HEX`).
pub fn anonymous_name(content_hash: &str) -> String {
    let hex = content_hash.strip_prefix("sha256:").unwrap_or(content_hash);
    format!("{ANONYMOUS_PREFIX}{}", &hex[..hex.len().min(16)])
}

pub fn is_anonymous(name: &str) -> bool {
    name.starts_with(ANONYMOUS_PREFIX)
}

/// A name: 1-255 of letters, digits, `.`, `_`, `-`, starting with a letter or digit. Curated
/// and anonymous names are the same under the `curated/` and `anonymous/` prefixes.
pub fn validate_name(name: &str) -> Result<(), String> {
    let body = name
        .strip_prefix(CURATED_PREFIX)
        .or_else(|| name.strip_prefix(ANONYMOUS_PREFIX))
        .unwrap_or(name);
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

/// A path a definition carries that names files on disk (a build context, the Dockerfile inside
/// it): plain relative components only. Exports join it onto their output folder and builds onto
/// the context, so an absolute path or a `..` would read or write outside them. A URL (`scheme://`)
/// is accepted as a remote location; it is never joined onto a local path.
pub fn validate_relative_path(path: &str) -> Result<(), String> {
    if path.contains("://") {
        return if path.chars().any(char::is_control) {
            Err(format!("invalid location `{}`", path.escape_debug()))
        } else {
            Ok(())
        };
    }
    let bad = |why: &str| Err(format!("`{}` {why}", path.escape_debug()));
    if path.is_empty() {
        return bad("is empty");
    }
    if path.chars().any(char::is_control) {
        return bad("holds a control character");
    }
    let bytes = path.as_bytes();
    if path.starts_with(['/', '\\'])
        || (bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic())
    {
        return bad("is an absolute path: give a path relative to the definition's folder");
    }
    if path.split(['/', '\\']).any(|part| part == "..") {
        return bad("leaves the definition's folder (`..`): give a path inside it");
    }
    Ok(())
}

/// Whether `path` is a local relative path of plain components (see [`validate_relative_path`]),
/// the only kind a writer may join onto its output folder.
pub fn is_local_relative_path(path: &str) -> bool {
    !path.contains("://") && validate_relative_path(path).is_ok()
}

/// A free-form display name (a token's, an experiment's): 1-255 characters, no control
/// characters and no bidirectional-text controls, which could make a name read as another in a
/// listing or an audit line.
pub fn validate_display_name(kind: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.chars().count() > 255 {
        return Err(format!("a {kind} name needs 1-255 characters"));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || is_bidi_control(*c)) {
        return Err(format!(
            "the {kind} name `{}` holds the character U+{:04X}; control and bidirectional-text characters are not allowed",
            name.escape_debug(),
            c as u32
        ));
    }
    Ok(())
}

/// Unicode's bidirectional formatting characters (embeddings, overrides, isolates, marks).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
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
    /// Parse `NAME`, `NAME:VERSION` or `NAME@LABEL` (`NAME@latest` is `NAME`). The one parser of
    /// references: every command, the server and the client read them with it. A label is split
    /// off at the first `@`, else a version at the last `:` (names hold neither).
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let parsed = if let Some((name, label)) = text.split_once('@') {
            Self::label(name, label)
        } else if let Some((name, version)) = text.rsplit_once(':') {
            Self::version(name, version)
        } else {
            Self::latest(text)
        };
        parsed.map_err(|reason| ReferenceError {
            text: text.to_string(),
            reason,
        })
    }

    /// `NAME`, from a name given on its own (a URL's path segment); why it is not valid.
    pub fn latest(name: &str) -> Result<Self, String> {
        validate_name(name)?;
        Ok(Self::Latest(name.to_string()))
    }

    /// `NAME:VERSION`, from its parts given apart; why they are not valid.
    pub fn version(name: &str, version: &str) -> Result<Self, String> {
        validate_name(name)?;
        validate_version(version)?;
        Ok(Self::Version(name.to_string(), version.to_string()))
    }

    /// `NAME@LABEL` (`NAME@latest` is `NAME`), from its parts given apart; why they are not
    /// valid.
    pub fn label(name: &str, label: &str) -> Result<Self, String> {
        validate_name(name)?;
        validate_version(label).map_err(|_| {
            format!("invalid label `{label}`: use letters, digits, `.`, `_` or `-`")
        })?;
        Ok(if label == LATEST {
            Self::Latest(name.to_string())
        } else {
            Self::Label(name.to_string(), label.to_string())
        })
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
        // Each wrong part is named, after the reference as given.
        for (text, reason) in [
            ("bad name", "invalid name `bad name`"),
            ("a:b c", "invalid version `b c`"),
            ("a@b c", "invalid label `b c`"),
            ("a:1@prod", "invalid name `a:1`"),
            ("", "the environment has no name"),
        ] {
            let err = Reference::parse(text).unwrap_err();
            assert_eq!(err.text, text);
            assert!(err.reason.starts_with(reason), "{text}: {}", err.reason);
            assert!(err
                .to_string()
                .starts_with(&format!("invalid reference `{text}`: {reason}")));
        }
        // From parts, by the same rules.
        assert_eq!(
            Reference::version("a", "3").unwrap(),
            Reference::parse("a:3").unwrap()
        );
        assert_eq!(
            Reference::label("a", "latest").unwrap(),
            Reference::Latest("a".into())
        );
        assert!(Reference::version("a", "1@prod").is_err());
        assert!(Reference::version("a:b", "1").is_err());
        assert!(Reference::latest("a:3").is_err());
    }

    #[test]
    fn relative_paths() {
        for ok in [
            ".",
            "docker",
            "docker/Dockerfile",
            "./ctx",
            "a..b/c",
            "https://host/ctx.tar",
        ] {
            assert!(validate_relative_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "\\\\server\\share",
            "C:\\x",
            "..",
            "../../../../home/user/.bashrc",
            "ctx/../../x",
            "ctx\\..\\x",
            "a\nb",
        ] {
            assert!(validate_relative_path(bad).is_err(), "{bad:?}");
        }
        assert!(!is_local_relative_path("https://host/ctx.tar"));
    }

    #[test]
    fn display_names() {
        assert!(validate_display_name("token", "ci runner 1").is_ok());
        assert!(validate_display_name("token", "naïve").is_ok());
        assert!(validate_display_name("token", "admin\u{202E}nimda").is_err());
        assert!(validate_display_name("token", "a\u{2066}b").is_err());
        assert!(validate_display_name("token", "a\tb").is_err());
        assert!(validate_display_name("token", " ").is_err());
    }
}
