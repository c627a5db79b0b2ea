//! Choosing the base interpreter of a pip-only environment.

use std::path::PathBuf;
use std::process::Command;

use terrarium_spec::Definition;

use crate::uv::which;
use crate::ResolveError;

/// An interpreter on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    pub path: PathBuf,
    pub version: String,
}

impl Interpreter {
    pub fn probe(path: PathBuf) -> Option<Interpreter> {
        let output = Command::new(&path)
            .args(["-c", "import platform; print(platform.python_version())"])
            .output()
            .ok()?;
        if !output.status.success() {
            return None;
        }
        let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
        // Absolute, but not canonical: a virtualenv's `bin/python` is a symlink whose target
        // is the base interpreter, and the environment is the link's directory.
        let path = std::path::absolute(&path).unwrap_or(path);
        Some(Interpreter { path, version })
    }
}

/// `python.interpreter` if given; else the first of `python3.X` (for `python.version` 3.X),
/// `python3` and `python` on PATH whose version matches `python.version`.
pub fn find(definition: &Definition) -> Result<Interpreter, ResolveError> {
    let wanted = definition.python.version.clone();
    let matches = |interp: &Interpreter| match &wanted {
        None => true,
        Some(want) => version_matches(&interp.version, want),
    };
    if let Some(path) = &definition.python.interpreter {
        let path = PathBuf::from(path);
        let path = if path.components().count() == 1 {
            which(&path.to_string_lossy()).unwrap_or(path)
        } else {
            path
        };
        let interp = Interpreter::probe(path.clone()).ok_or_else(|| {
            ResolveError::Interpreter(format!("the interpreter {} does not run", path.display()))
        })?;
        if !matches(&interp) {
            return Err(ResolveError::Interpreter(format!(
                "the interpreter {} is Python {}, but the definition asks for {}",
                path.display(),
                interp.version,
                wanted.unwrap_or_default()
            )));
        }
        return Ok(interp);
    }
    let mut names = Vec::new();
    if let Some(want) = &wanted {
        let minor: Vec<&str> = want.trim_start_matches("==").split('.').take(2).collect();
        if minor.len() == 2 {
            names.push(format!("python{}.{}", minor[0], minor[1]));
        }
    }
    names.push("python3".into());
    names.push("python".into());
    let mut seen = Vec::new();
    for name in names {
        if let Some(interp) = which(&name).and_then(Interpreter::probe) {
            if matches(&interp) {
                return Ok(interp);
            }
            seen.push(format!("{} ({})", interp.path.display(), interp.version));
        }
    }
    Err(ResolveError::Interpreter(format!(
        "no Python {} found on PATH{}; install it or set python.interpreter",
        wanted.unwrap_or_else(|| "interpreter".into()),
        if seen.is_empty() {
            String::new()
        } else {
            format!(" (found {})", seen.join(", "))
        }
    )))
}

/// `3.11.2` matches `3.11`, `3.11.2`, `3.11.*`, `==3.11.2`.
pub fn version_matches(actual: &str, wanted: &str) -> bool {
    let wanted = wanted
        .trim()
        .trim_start_matches("==")
        .trim_end_matches(".*");
    let a: Vec<&str> = actual.split('.').collect();
    let w: Vec<&str> = wanted.split('.').collect();
    w.len() <= a.len() && a.iter().zip(&w).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions() {
        assert!(super::version_matches("3.11.2", "3.11"));
        assert!(super::version_matches("3.11.2", "==3.11.2"));
        assert!(!super::version_matches("3.11.2", "3.1"));
        assert!(!super::version_matches("3.12.0", "3.11"));
    }
}
