//! PyPI requirements: PEP 508 parsing (with uv's `pep508_rs`) and the `requirements.txt` format.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use pep508_rs::{Requirement, VerbatimUrl};

use crate::error::{Location, SpecError, Warning};
use crate::model::{IndexOptions, PipRequirement};
use crate::source::SourceFile;

/// Parse one requirement (PEP 508, or a bare URL to a wheel or sdist) and return the spec to
/// store. Bare URLs become `name @ url`, with the name taken from the file name.
pub fn parse_requirement(text: &str) -> Result<String, String> {
    let text = text.trim();
    if looks_like_url(text) {
        let name = name_from_url(text).ok_or_else(|| {
            "cannot tell the package name from this URL; write it as `name @ URL`".to_string()
        })?;
        let spec = format!("{name} @ {text}");
        Requirement::<VerbatimUrl>::from_str(&spec).map_err(|e| first_line(&e.to_string()))?;
        return Ok(text.to_string());
    }
    Requirement::<VerbatimUrl>::from_str(text).map_err(|e| first_line(&e.to_string()))?;
    Ok(text.to_string())
}

/// The normalized form used for hashing and comparison.
pub fn normalize(requirement: &PipRequirement) -> String {
    let mut out = if requirement.editable {
        format!("-e {}", requirement.spec.trim())
    } else {
        let spec = requirement.spec.trim();
        let full = match looks_like_url(spec).then(|| name_from_url(spec)).flatten() {
            Some(name) => format!("{name} @ {spec}"),
            None => spec.to_string(),
        };
        match Requirement::<VerbatimUrl>::from_str(&full) {
            Ok(parsed) => parsed.to_string(),
            Err(_) => full,
        }
    };
    for hash in &requirement.hashes {
        out.push_str(" --hash=");
        out.push_str(hash);
    }
    out
}

/// The normalized PyPI name of a requirement (`scikit-learn` for `Scikit_Learn>=1`).
pub fn package_name(requirement: &PipRequirement) -> Option<String> {
    let spec = requirement.spec.trim();
    if requirement.editable || looks_like_url(spec) {
        return name_from_url(spec);
    }
    Requirement::<VerbatimUrl>::from_str(spec)
        .ok()
        .map(|r| r.name.to_string())
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

fn looks_like_url(text: &str) -> bool {
    [
        "http://", "https://", "file://", "git+", "hg+", "svn+", "bzr+",
    ]
    .iter()
    .any(|p| text.starts_with(p))
}

/// `numpy-1.26.0-cp311-...whl` -> `numpy`; `pkg-1.0.tar.gz` -> `pkg`; `...#egg=name` -> `name`.
fn name_from_url(url: &str) -> Option<String> {
    if let Some((_, egg)) = url.split_once("#egg=") {
        return Some(normalize_name(egg.split('&').next()?));
    }
    let file = url.split(['?', '#']).next()?.rsplit('/').next()?;
    let stem = file
        .strip_suffix(".whl")
        .or_else(|| file.strip_suffix(".tar.gz"))
        .or_else(|| file.strip_suffix(".zip"))?;
    let name = if file.ends_with(".whl") {
        stem.split('-').next()?
    } else {
        stem.rsplit_once('-')?.0
    };
    (!name.is_empty()).then(|| normalize_name(name))
}

/// PEP 503 normalization: lowercase, runs of `-`, `_` and `.` become one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// What a requirements file holds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Requirements {
    pub requirements: Vec<PipRequirement>,
    pub index: IndexOptions,
    pub warnings: Vec<Warning>,
    /// Every file read, the top one first (`-r` includes follow).
    pub files: Vec<PathBuf>,
}

/// Parse a `requirements.txt` file, following `-r` includes relative to the including file.
pub fn parse_requirements_file(source: &SourceFile) -> Result<Requirements, SpecError> {
    let mut out = Requirements::default();
    parse_into(source, &mut out, 0)?;
    Ok(out)
}

fn parse_into(source: &SourceFile, out: &mut Requirements, depth: usize) -> Result<(), SpecError> {
    out.files.push(source.path.clone());
    parse_lines(&source.path, logical_lines(&source.text), out, depth)
}

/// Parse requirement lines (already joined and stripped of comments) that come from `path`,
/// e.g. the `pip:` list of a conda environment file.
pub fn parse_lines(
    path: &Path,
    lines: Vec<(usize, String)>,
    out: &mut Requirements,
    depth: usize,
) -> Result<(), SpecError> {
    for (line_no, line) in lines {
        let err = |msg: String| SpecError::invalid(Location::line(path, line_no), msg);
        let mut words = shell_words(&line);
        if words.is_empty() {
            continue;
        }
        let first = words.remove(0);
        let (option, inline_value) = match first.split_once('=') {
            Some((o, v)) if first.starts_with('-') => (o.to_string(), Some(v.to_string())),
            _ => (first.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, SpecError> {
            match &inline_value {
                Some(v) => Ok(v.clone()),
                None if !words.is_empty() => Ok(words.remove(0)),
                None => Err(err(format!("option `{name}` needs a value"))),
            }
        };
        match option.as_str() {
            "-r" | "--requirement" => {
                let target = value(&option)?;
                if depth > 16 {
                    return Err(err("`-r` includes nest too deep (a cycle?)".into()));
                }
                let path = resolve(path, &target);
                if out.files.contains(&path) {
                    return Err(err(format!(
                        "`-r {target}` includes a file already read (a cycle)"
                    )));
                }
                let included = SourceFile::read(&path).map_err(|e| match e {
                    SpecError::Io { source: io, .. } => {
                        err(format!("cannot read `-r {target}`: {io}"))
                    }
                    other => other,
                })?;
                parse_into(&included, out, depth + 1)?;
            }
            "-i" | "--index-url" => out.index.index_url = Some(value(&option)?),
            "--extra-index-url" => out.index.extra_index_urls.push(value(&option)?),
            "-f" | "--find-links" => out.index.find_links.push(value(&option)?),
            "--no-index" => out.index.no_index = true,
            "-e" | "--editable" => {
                let target = value(&option)?;
                out.requirements.push(PipRequirement {
                    spec: target,
                    hashes: Vec::new(),
                    editable: true,
                });
            }
            "-c" | "--constraint" | "--trusted-host" | "--pre" | "--prefer-binary"
            | "--only-binary" | "--no-binary" | "--require-hashes" | "--use-feature" => {
                out.warnings.push(Warning {
                    location: Location::line(path, line_no),
                    message: format!("option `{option}` is not supported and was ignored"),
                });
            }
            opt if opt.starts_with('-') => {
                return Err(err(format!("unknown option `{opt}`")));
            }
            _ => {
                // A requirement; `--hash` options may follow it.
                let mut spec_words = vec![first];
                let mut hashes = Vec::new();
                let mut rest = words.into_iter();
                while let Some(word) = rest.next() {
                    if let Some(h) = word.strip_prefix("--hash=") {
                        hashes.push(validate_hash(h).map_err(&err)?);
                    } else if word == "--hash" {
                        let h = rest
                            .next()
                            .ok_or_else(|| err("option `--hash` needs a value".into()))?;
                        hashes.push(validate_hash(&h).map_err(&err)?);
                    } else if word.starts_with("--") {
                        return Err(err(format!("unknown option `{word}` after a requirement")));
                    } else {
                        spec_words.push(word);
                    }
                }
                let text = spec_words.join(" ");
                let spec = parse_requirement(&text)
                    .map_err(|reason| err(format!("invalid requirement `{text}`: {reason}")))?;
                out.requirements.push(PipRequirement {
                    spec,
                    hashes,
                    editable: false,
                });
            }
        }
    }
    Ok(())
}

fn validate_hash(hash: &str) -> Result<String, String> {
    match hash.split_once(':') {
        Some((algo, digest))
            if ["sha256", "sha384", "sha512", "md5"].contains(&algo)
                && !digest.is_empty()
                && digest.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            Ok(format!("{algo}:{}", digest.to_ascii_lowercase()))
        }
        _ => Err(format!(
            "invalid hash `{hash}`: expected ALGORITHM:HEXDIGEST"
        )),
    }
}

fn resolve(base: &Path, target: &str) -> PathBuf {
    let target = Path::new(target);
    if target.is_absolute() {
        target.to_path_buf()
    } else {
        base.parent().unwrap_or(Path::new(".")).join(target)
    }
}

/// Join `\` continuations and strip comments (` #` or a leading `#`), keeping the first line
/// number of each logical line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (index, raw) in text.lines().enumerate() {
        if current.is_empty() {
            start = index + 1;
        }
        let line = strip_comment(raw);
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let logical = current.trim().to_string();
        current.clear();
        if !logical.is_empty() {
            out.push((start, logical));
        }
    }
    let logical = current.trim().to_string();
    if !logical.is_empty() {
        out.push((start, logical));
    }
    out
}

fn strip_comment(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') {
        return "";
    }
    match line.find(" #").or_else(|| line.find("\t#")) {
        Some(pos) => line[..pos].trim_end(),
        None => line.trim_end(),
    }
}

/// Split on whitespace, but keep a PEP 508 marker (after `;`) and version lists together as
/// the requirement's words; options start with `-`.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut requirement = String::new();
    let mut in_requirement = false;
    for word in line.split_whitespace() {
        if word.starts_with("--hash") || (word.starts_with('-') && !in_requirement) {
            if in_requirement {
                words.push(std::mem::take(&mut requirement));
                in_requirement = false;
            }
            words.push(word.to_string());
        } else if words.is_empty() || in_requirement {
            if !requirement.is_empty() {
                requirement.push(' ');
            }
            requirement.push_str(word);
            in_requirement = true;
        } else {
            words.push(word.to_string());
        }
    }
    if in_requirement {
        words.push(requirement);
    }
    words
}

/// Write requirements-file text: index options first, then requirements.
pub fn write_requirements(index: &IndexOptions, requirements: &[PipRequirement]) -> String {
    let mut out = String::new();
    for line in index.to_lines() {
        out.push_str(&line);
        out.push('\n');
    }
    for requirement in requirements {
        out.push_str(&requirement.to_line());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Requirements, SpecError> {
        parse_requirements_file(&SourceFile::from_text(Path::new("requirements.txt"), text))
    }

    #[test]
    fn options_hashes_continuations() {
        let r = parse(
            "# comment\n--index-url https://i/simple\nnumpy==1.26.0 \\\n    --hash=sha256:ABCD \\\n    --hash=sha256:ef01\n\
             requests[socks] >= 2 ; python_version >= \"3.8\"  # why\n\
             https://x/pkgs/torch-2.1.0-cp311-none-linux_x86_64.whl\n-e ./local\n",
        )
        .unwrap();
        assert_eq!(r.index.index_url.as_deref(), Some("https://i/simple"));
        assert_eq!(r.requirements.len(), 4);
        assert_eq!(r.requirements[0].spec, "numpy==1.26.0");
        assert_eq!(r.requirements[0].hashes, vec!["sha256:abcd", "sha256:ef01"]);
        assert_eq!(
            r.requirements[1].spec,
            "requests[socks] >= 2 ; python_version >= \"3.8\""
        );
        assert_eq!(package_name(&r.requirements[2]).as_deref(), Some("torch"));
        assert!(r.requirements[3].editable);
    }

    #[test]
    fn bad_line_names_line() {
        let err = parse("numpy\n\nscipy >=< 1\n").unwrap_err().to_string();
        assert!(
            err.starts_with("requirements.txt:3: invalid requirement `scipy >=< 1`"),
            "{err}"
        );
    }

    #[test]
    fn normalized_names_and_spacing() {
        let a = normalize(&PipRequirement::new("Scikit_Learn>=1.3"));
        let b = normalize(&PipRequirement::new("scikit-learn >= 1.3"));
        assert_eq!(a, b);
    }
}
