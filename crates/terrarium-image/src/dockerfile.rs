//! A Dockerfile and build context that build the same image with `docker build` (or buildah,
//! kaniko, ...), for teams whose pipeline must build images itself.
//!
//! Nothing is installed by the Dockerfile: the context holds the installed files, one
//! directory per layer, and the Dockerfile copies them in the same order, so the image has the
//! same files, layering, variables, labels and command as `terrarium image build`'s.

use std::path::Path;

use crate::layer::Source;
use crate::{environment, groups, BuildInput, ImageError};

/// Write `Dockerfile` and `layers/` into `dir` (which must not exist or be empty).
pub fn write(input: &BuildInput, dir: &Path) -> Result<(), ImageError> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| ImageError::io(dir, e))?
            .next()
            .is_some()
    {
        return Err(ImageError::NotEmpty(dir.to_path_buf()));
    }
    let from = input
        .base
        .as_ref()
        .map_or("scratch".to_string(), |b| b.reference.clone());
    let mut text = format!(
        "# Written by `terrarium image dockerfile`: builds the same image as `terrarium image build`.\n\
         # Build it with: docker build -t IMAGE .\n\
         FROM {from}\n"
    );
    for (index, (comment, entries)) in groups(input)?.into_iter().enumerate() {
        let name = format!("{:02}-{}", index + 1, slug(&comment));
        let layer_dir = dir.join("layers").join(&name);
        for (path, source) in &entries {
            copy(source, &layer_dir.join(path))?;
        }
        text.push_str(&format!("# {comment}\nCOPY layers/{name}/ /\n"));
    }
    let base_path = input.base.as_ref().and_then(|b| {
        b.config
            .config
            .as_ref()?
            .env
            .as_ref()?
            .iter()
            .find_map(|v| v.strip_prefix("PATH=").map(String::from))
    });
    for (key, value) in environment(input, base_path.as_deref()) {
        text.push_str(&format!("ENV {key}={}\n", quote(&value)));
    }
    for (key, value) in &input.labels {
        text.push_str(&format!("LABEL {}={}\n", quote(key), quote(value)));
    }
    text.push_str("WORKDIR /\n");
    for port in &input.exposed_ports {
        text.push_str(&format!("EXPOSE {port}\n"));
    }
    if !input.entrypoint.is_empty() {
        let entrypoint = serde_json::to_string(&input.entrypoint).expect("strings serialize");
        text.push_str(&format!("ENTRYPOINT {entrypoint}\nCMD []\n"));
    } else if !input.cmd.is_empty() {
        let cmd = serde_json::to_string(&input.cmd).expect("strings serialize");
        text.push_str(&format!("CMD {cmd}\n"));
    }
    let path = dir.join("Dockerfile");
    std::fs::write(&path, text).map_err(|e| ImageError::io(&path, e))
}

fn copy(source: &Source, target: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ImageError::io(parent, e))?;
    }
    match source {
        Source::Bytes(_, mode) if mode & 0o170000 == 0o40000 => {
            std::fs::create_dir_all(target).map_err(|e| ImageError::io(target, e))
        }
        Source::Bytes(bytes, mode) => {
            std::fs::write(target, bytes).map_err(|e| ImageError::io(target, e))?;
            std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode & 0o777))
                .map_err(|e| ImageError::io(target, e))
        }
        Source::Path(path) => {
            let meta = std::fs::symlink_metadata(path).map_err(|e| ImageError::io(path, e))?;
            if meta.file_type().is_symlink() {
                let link = std::fs::read_link(path).map_err(|e| ImageError::io(path, e))?;
                std::os::unix::fs::symlink(link, target).map_err(|e| ImageError::io(target, e))
            } else if meta.is_dir() {
                std::fs::create_dir_all(target).map_err(|e| ImageError::io(target, e))
            } else {
                std::fs::copy(path, target).map_err(|e| ImageError::io(target, e))?;
                Ok(())
            }
        }
    }
}

/// A Dockerfile word: double-quoted, with `"`, `\` and `$` escaped (so `${secret:NAME}`
/// references stay literal), newlines as `\n`.
fn quote(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn slug(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').to_string()
}
