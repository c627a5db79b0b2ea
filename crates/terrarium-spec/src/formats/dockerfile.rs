//! Dockerfiles, in both directions.
//!
//! Import: a Dockerfile is a docker-runtime, user-managed environment whose build is the file
//! itself (Azure ML's `Environment.from_dockerfile`). Export: the file that builds the
//! environment: verbatim for a Dockerfile environment, otherwise a recipe that installs the
//! packages with micromamba or pip on top of the base image.
//!
//! Validation reads a Dockerfile the way BuildKit does (moby/buildkit
//! `frontend/dockerfile/parser` and `instructions`): parser directives, line continuations with
//! comment and blank lines inside them, heredocs, the exec (JSON) and shell forms, global `ARG`s
//! and multi-stage builds. What `docker build` accepts is accepted; what it refuses is refused
//! with the file and the line of the instruction.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::error::{Location, SpecError};
use crate::formats::{dropped, ExportNote, Exported, Format, Imported};
use crate::model::{Definition, Runtime};
use crate::source::SourceFile;

pub fn import(path: &Path) -> Result<Imported, SpecError> {
    let path = if path.is_dir() {
        path.join("Dockerfile")
    } else {
        path.to_path_buf()
    };
    let source = SourceFile::read(&path)?;
    validate(&source)?;
    let mut definition = Definition {
        runtime: Runtime::Docker,
        ..Definition::default()
    };
    definition.python.user_managed = true;
    // A Dockerfile that copies files from its folder: that folder is its build context, part
    // of the environment's content (Azure ML v2's `build: {path: ., dockerfile_path: ...}`).
    if uses_context(&source)? {
        let dir = path.parent().unwrap_or(Path::new("."));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Dockerfile".into());
        definition.docker.build_context_digest =
            crate::context::context_digest(dir, Path::new(&name))?;
        definition.docker.build_context = Some(".".to_string());
        if name != "Dockerfile" {
            definition.docker.dockerfile_path = Some(name);
        }
    }
    definition.docker.base_dockerfile = Some(source.text);
    Ok(Imported {
        definition,
        format: Format::Dockerfile,
        warnings: Vec::new(),
        files: vec![path],
    })
}

/// Whether the Dockerfile copies files from its build context: a `COPY` or `ADD` (not
/// `--from` another stage or image) with a source that is neither a heredoc nor a URL. Such a
/// Dockerfile's folder is part of its environment.
pub fn uses_context(source: &SourceFile) -> Result<bool, SpecError> {
    let parsed = parse(source)?;
    Ok(parsed.instructions.iter().any(|instruction| {
        matches!(instruction.keyword, Keyword::Copy | Keyword::Add)
            && !instruction.from_elsewhere
            && instruction.args.split_last().is_some_and(|(_, sources)| {
                sources.iter().any(|src| {
                    !src.starts_with("<<") && !src.contains("://") && !src.starts_with("git@")
                })
            })
    }))
}

/// Check the Dockerfile as BuildKit would before building it; returns the first stage's base
/// image, with global `ARG` defaults expanded (`ARG PY=3.11` + `FROM python:${PY}-slim` gives
/// `python:3.11-slim`). A base image that needs a value the file does not give (an `ARG` without
/// a default, a platform variable) is returned as written.
pub fn validate(source: &SourceFile) -> Result<String, SpecError> {
    let parsed = parse(source)?;
    // Global build arguments: `None` when the default cannot be worked out from the file.
    let mut globals: BTreeMap<String, Option<String>> = BTreeMap::new();
    for instruction in &parsed.instructions {
        match instruction.keyword {
            Keyword::Arg => {
                for word in &instruction.args {
                    // `ARG NAME` without a default leaves an earlier default in place, as in
                    // BuildKit; a build argument given at build time would override both.
                    if let Some((name, value)) = word.split_once('=') {
                        let value = expand(value, &globals, parsed.escape);
                        globals.insert(name.to_string(), value);
                    }
                }
            }
            Keyword::From => {
                // `parse` refuses a `FROM` without an image.
                let raw = &instruction.args[0];
                return Ok(expand(raw, &globals, parsed.escape)
                    .filter(|image| !image.is_empty())
                    .unwrap_or_else(|| raw.clone()));
            }
            other => {
                return Err(SpecError::invalid(
                    Location::line(&source.path, instruction.line),
                    format!("`{other}` before the first `FROM`; only `ARG` may come before it"),
                ))
            }
        }
    }
    Err(SpecError::invalid(
        Location::file(&source.path),
        "no `FROM` instruction",
    ))
}

/// A Dockerfile instruction. Dockerfiles may spell them in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
}

impl Keyword {
    const ALL: [Keyword; 18] = [
        Keyword::Add,
        Keyword::Arg,
        Keyword::Cmd,
        Keyword::Copy,
        Keyword::Entrypoint,
        Keyword::Env,
        Keyword::Expose,
        Keyword::From,
        Keyword::Healthcheck,
        Keyword::Label,
        Keyword::Maintainer,
        Keyword::Onbuild,
        Keyword::Run,
        Keyword::Shell,
        Keyword::Stopsignal,
        Keyword::User,
        Keyword::Volume,
        Keyword::Workdir,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Arg => "ARG",
            Self::Cmd => "CMD",
            Self::Copy => "COPY",
            Self::Entrypoint => "ENTRYPOINT",
            Self::Env => "ENV",
            Self::Expose => "EXPOSE",
            Self::From => "FROM",
            Self::Healthcheck => "HEALTHCHECK",
            Self::Label => "LABEL",
            Self::Maintainer => "MAINTAINER",
            Self::Onbuild => "ONBUILD",
            Self::Run => "RUN",
            Self::Shell => "SHELL",
            Self::Stopsignal => "STOPSIGNAL",
            Self::User => "USER",
            Self::Volume => "VOLUME",
            Self::Workdir => "WORKDIR",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One instruction: a logical line, its continuations joined.
#[derive(Debug)]
struct Instruction {
    /// The line it starts on.
    line: usize,
    keyword: Keyword,
    /// The arguments after the `--flags`, split the way BuildKit splits this instruction's.
    args: Vec<String>,
    /// Written in the exec (JSON array) form.
    json: bool,
    /// For `ONBUILD`, the instruction it registers.
    trigger: Option<Box<Instruction>>,
    /// `COPY --from=...`: copies from a stage or image, not from the build context.
    from_elsewhere: bool,
}

impl Instruction {
    /// `RUN`, `COPY` and `ADD` in shell form read heredocs, also as an `ONBUILD` trigger.
    fn takes_heredocs(&self) -> bool {
        let instruction = self.trigger.as_deref().unwrap_or(self);
        matches!(
            instruction.keyword,
            Keyword::Run | Keyword::Copy | Keyword::Add
        ) && !instruction.json
    }
}

struct Parsed {
    instructions: Vec<Instruction>,
    /// The escape and line-continuation character: `\`, or `` ` `` by the `escape` directive.
    escape: char,
}

fn parse(source: &SourceFile) -> Result<Parsed, SpecError> {
    let error = |line: usize, message: String| {
        SpecError::invalid(Location::line(&source.path, line), message)
    };
    let mut lines = Lines::new(&source.text);
    let mut directives = Directives::default();
    let mut instructions = Vec::new();
    while let Some((start, raw)) = lines.next() {
        let first = raw.trim_start();
        directives.read(first).map_err(|m| error(start, m))?;
        if is_comment(first) {
            continue;
        }
        let escape = directives.escape;
        let (text, mut ended) = trim_continuation(first, escape);
        if ended && text.is_empty() {
            continue;
        }
        let mut text = text.to_string();
        // Inside a continuation Docker drops comment lines and skips empty ones; a
        // continuation at the end of the file just ends the instruction.
        while !ended {
            let Some((number, raw)) = lines.next() else {
                break;
            };
            directives.read(raw).map_err(|m| error(number, m))?;
            if is_comment(raw) || raw.trim_start().is_empty() {
                continue;
            }
            let (part, end) = trim_continuation(raw, escape);
            text.push_str(part);
            ended = end;
        }
        let mut instruction = parse_instruction(&text, escape).map_err(|m| error(start, m))?;
        instruction.line = start;
        if instruction.takes_heredocs() && text.contains("<<") {
            for heredoc in heredocs_in_line(&text) {
                let mut terminated = false;
                for (_, body) in lines.by_ref() {
                    let body = if heredoc.chomp {
                        body.trim_start_matches('\t')
                    } else {
                        body
                    };
                    if body == heredoc.name {
                        terminated = true;
                        break;
                    }
                }
                if !terminated {
                    return Err(error(
                        start,
                        format!(
                            "heredoc `{0}` is not terminated: no line `{0}` follows it",
                            heredoc.name
                        ),
                    ));
                }
            }
        }
        instructions.push(instruction);
    }
    Ok(Parsed {
        instructions,
        escape: directives.escape,
    })
}

/// The lines of a file, numbered from 1, without their line endings.
struct Lines<'a> {
    lines: std::iter::Enumerate<std::str::Split<'a, char>>,
    last: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let count = text.split('\n').count();
        // A final line ending does not start another line.
        let last = if text.is_empty() || text.ends_with('\n') {
            count - 1
        } else {
            count
        };
        Self {
            lines: text.split('\n').enumerate(),
            last,
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let (index, line) = self.lines.next()?;
        (index < self.last).then(|| (index + 1, line.trim_end_matches(['\r', '\n'])))
    }
}

/// Parser directives (`# syntax=`, `# escape=`, `# check=`): only at the very top of the file,
/// before any other comment, blank line or instruction; each at most once.
struct Directives {
    escape: char,
    done: bool,
    seen: Vec<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Self {
            escape: '\\',
            done: false,
            seen: Vec::new(),
        }
    }
}

impl Directives {
    fn read(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(format!("only one `{key}` parser directive can be used"));
        }
        if key == "escape" {
            self.escape = match value {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(format!(
                        "invalid escape character `{other}` in the `escape` parser directive \
                         (it can be \\ or `)"
                    ))
                }
            };
        }
        self.seen.push(key);
        Ok(())
    }
}

/// `# key = value`, as BuildKit's `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let key_end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let (key, rest) = rest.split_at(key_end);
    let value = rest
        .trim_start_matches(is_re_space)
        .strip_prefix('=')?
        .trim_matches(is_re_space);
    (!value.is_empty()).then_some((key, value))
}

/// `\s` in Go's regular expressions.
fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{c}')
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Strips a line-continuation character (the escape character, last on the line but for spaces
/// and tabs, and not itself escaped); returns the rest and whether the instruction ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    if let Some(before) = line.trim_end_matches([' ', '\t']).strip_suffix(escape) {
        if !before.ends_with(escape) {
            return (before, false);
        }
    }
    (line, true)
}

/// Whitespace as BuildKit splits instruction arguments on it.
fn is_arg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\u{b}' | '\u{c}')
}

fn split_args(text: &str) -> Vec<String> {
    text.split(is_arg_space)
        .filter(|word| !word.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_instruction(text: &str, escape: char) -> Result<Instruction, String> {
    let text = text.trim();
    let (command, rest) = match text.find(is_arg_space) {
        Some(end) => (&text[..end], text[end..].trim_start_matches(is_arg_space)),
        None => (text, ""),
    };
    let keyword = Keyword::parse(command).ok_or_else(|| unknown_instruction(command))?;
    let flags = &rest[..rest.len() - skip_flags(rest, escape).len()];
    let rest = skip_flags(rest, escape).trim();
    let mut instruction = Instruction {
        line: 0,
        keyword,
        args: Vec::new(),
        json: false,
        trigger: None,
        from_elsewhere: flags
            .split(is_arg_space)
            .any(|flag| flag.starts_with("--from=") || flag == "--from"),
    };
    let at_least_one = || format!("`{keyword}` needs at least one argument");
    match keyword {
        Keyword::Run | Keyword::Cmd | Keyword::Entrypoint => {
            (instruction.args, instruction.json) = maybe_json(rest)?;
        }
        Keyword::Shell => {
            (instruction.args, instruction.json) = maybe_json(rest)?;
            if instruction.args.is_empty() {
                return Err(at_least_one());
            }
            if !instruction.json {
                return Err(
                    "`SHELL` must be written in the JSON form, e.g. `SHELL [\"/bin/bash\", \"-c\"]`"
                        .to_string(),
                );
            }
        }
        Keyword::Add | Keyword::Copy => {
            (instruction.args, instruction.json) = maybe_json_list(rest)?;
            let Some((destination, sources)) = instruction.args.split_last() else {
                return Err(format!("`{keyword}` needs a source and a destination"));
            };
            if sources.is_empty() {
                return Err(format!("`{keyword}` needs a source and a destination"));
            }
            if heredoc_word(destination).is_some() {
                return Err(format!(
                    "`{keyword}` cannot take a heredoc as its destination"
                ));
            }
        }
        Keyword::Volume => {
            (instruction.args, instruction.json) = maybe_json_list(rest)?;
            if instruction.args.is_empty() {
                return Err(at_least_one());
            }
            if instruction.args.iter().any(|v| v.trim().is_empty()) {
                return Err("`VOLUME` cannot name an empty path".to_string());
            }
        }
        Keyword::Arg => {
            instruction.args = shell_words(rest, escape);
            if instruction.args.is_empty() {
                return Err(at_least_one());
            }
            if instruction.args.iter().any(|word| word.starts_with('=')) {
                return Err("`ARG` names cannot be blank".to_string());
            }
        }
        Keyword::Env | Keyword::Label => instruction.args = name_values(keyword, rest, escape)?,
        Keyword::Expose => {
            instruction.args = split_args(rest);
            if instruction.args.is_empty() {
                return Err(at_least_one());
            }
        }
        Keyword::From => {
            instruction.args = split_args(rest);
            match instruction.args.as_slice() {
                [] => return Err("`FROM` needs an image".to_string()),
                [_] => {}
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    if !is_stage_name(&name.to_ascii_lowercase()) {
                        return Err(format!(
                            "invalid build stage name `{name}`: it must start with a letter and \
                             hold only letters, digits, `-`, `_` and `.`"
                        ));
                    }
                }
                _ => {
                    return Err(format!(
                        "`FROM` takes an image and an optional `AS <name>`, not `{rest}`"
                    ))
                }
            }
        }
        Keyword::Healthcheck => {
            let (kind, command) = match rest.find(char::is_whitespace) {
                Some(end) => (&rest[..end], rest[end..].trim_start()),
                None => (rest, ""),
            };
            (instruction.args, instruction.json) = maybe_json(command)?;
            match kind.to_ascii_uppercase().as_str() {
                "" => return Err(at_least_one()),
                "NONE" if instruction.args.is_empty() => {}
                "NONE" => return Err("`HEALTHCHECK NONE` takes no arguments".to_string()),
                "CMD" if instruction.args.is_empty() => {
                    return Err("`HEALTHCHECK CMD` needs a command".to_string())
                }
                "CMD" => {}
                _ => {
                    return Err(format!(
                        "unknown `HEALTHCHECK` type `{kind}` (it can be CMD or NONE)"
                    ))
                }
            }
        }
        Keyword::Maintainer | Keyword::Stopsignal | Keyword::User | Keyword::Workdir => {
            if rest.is_empty() {
                return Err(format!("`{keyword}` needs an argument"));
            }
            instruction.args = vec![rest.to_string()];
        }
        Keyword::Onbuild => {
            if rest.is_empty() {
                return Err("`ONBUILD` needs an instruction".to_string());
            }
            // Docker checks a trigger only when a child build runs it; a broken trigger breaks
            // every child build, so it is checked here as the instruction it is.
            let trigger = parse_instruction(rest, escape)?;
            match trigger.keyword {
                Keyword::Onbuild => {
                    return Err("`ONBUILD ONBUILD` is not allowed".to_string());
                }
                Keyword::From | Keyword::Maintainer => {
                    return Err(format!(
                        "`{}` is not allowed as an `ONBUILD` trigger",
                        trigger.keyword
                    ))
                }
                _ => instruction.trigger = Some(Box::new(trigger)),
            }
        }
    }
    Ok(instruction)
}

fn unknown_instruction(command: &str) -> String {
    let mut message = format!("unknown Dockerfile instruction `{command}`");
    // As BuildKit: the closest instruction less than three edits away, in the same case.
    let lower = command.to_ascii_lowercase();
    let closest = Keyword::ALL
        .into_iter()
        .map(|k| (edit_distance(&lower, &k.name().to_ascii_lowercase()), k))
        .filter(|(distance, _)| *distance < 3)
        .min_by_key(|(distance, _)| *distance);
    if let Some((_, keyword)) = closest {
        let suggestion = if command == lower {
            keyword.name().to_ascii_lowercase()
        } else {
            keyword.name().to_string()
        };
        message.push_str(&format!("; did you mean `{suggestion}`?"));
    }
    message
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `^[a-z][a-z0-9-_.]*$`, BuildKit's rule for (lower-cased) stage names.
fn is_stage_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// The arguments after the leading `--flag`s (`--mount=...`, `--platform=...`, `--from=...`).
/// Flags are not checked: BuildKit adds new ones often, and an unknown one is its error to give.
fn skip_flags(line: &str, escape: char) -> &str {
    let mut chars = line.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            return "";
        };
        if !line[start..].starts_with("--") {
            return &line[start..];
        }
        // One flag word; quotes and escapes may hide spaces in it. A bare `--` ends the flags.
        let mut quote = None;
        let mut end = line.len();
        while let Some((i, c)) = chars.next() {
            match quote {
                None if c.is_whitespace() => {
                    end = i;
                    break;
                }
                None if c == '\'' || c == '"' => quote = Some(c),
                Some(q) if c == q => quote = None,
                _ if c == escape => {
                    chars.next();
                }
                _ => {}
            }
        }
        if &line[start..end] == "--" {
            return &line[end..];
        }
    }
}

/// The JSON (exec) form when the arguments are a JSON array: BuildKit treats anything else,
/// invalid JSON included, as the shell form. An array of anything but strings is an error.
fn json_array(rest: &str) -> Result<Option<Vec<String>>, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|value| match value {
            serde_json::Value::String(s) => Ok(s),
            other => Err(format!(
                "a JSON (exec form) array must hold only strings, not `{other}`"
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `RUN`, `CMD`, `ENTRYPOINT`, `SHELL`: a JSON array, or the whole text as one shell command.
fn maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match json_array(rest)? {
        Some(args) => (args, true),
        None => (vec![rest.to_string()], false),
    })
}

/// `ADD`, `COPY`, `VOLUME`: a JSON array, or words split on whitespace.
fn maybe_json_list(rest: &str) -> Result<(Vec<String>, bool), String> {
    Ok(match json_array(rest)? {
        Some(args) => (args, true),
        None => (split_args(rest), false),
    })
}

/// `ENV` and `LABEL`: `name=value ...`, or the legacy `name value`.
fn name_values(keyword: Keyword, rest: &str, escape: char) -> Result<Vec<String>, String> {
    let words = shell_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(format!("`{keyword}` needs at least one argument"));
    };
    if !first.contains('=') {
        return match rest.split_once(is_arg_space) {
            Some((name, value)) => Ok(vec![name.to_string(), value.to_string()]),
            None => Err(format!(
                "`{keyword} {rest}` has no value: write `{keyword} name=value`"
            )),
        };
    }
    for word in &words {
        if !word.contains('=') {
            return Err(format!(
                "`{word}` in `{keyword}` is not of the form name=value"
            ));
        }
        if word.starts_with('=') {
            return Err(format!("`{keyword}` names cannot be blank"));
        }
    }
    Ok(words)
}

/// Words as BuildKit splits `ARG`, `ENV` and `LABEL` arguments: on whitespace outside quotes,
/// keeping the quotes and escapes for the expansion that follows.
fn shell_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut blank_ok = false;
    let mut quote = None;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if in_word && (blank_ok || !word.is_empty()) {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
                blank_ok = false;
            }
            None => {
                in_word = true;
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    blank_ok = true;
                }
                if c == escape {
                    if let Some(next) = chars.next() {
                        word.push(c);
                        word.push(next);
                    }
                    continue;
                }
                word.push(c);
            }
            Some(q) => {
                if c == q {
                    quote = None;
                } else if c == escape && q != '\'' {
                    match chars.next() {
                        Some(next) => {
                            word.push(c);
                            word.push(next);
                        }
                        None => quote = None,
                    }
                    continue;
                }
                word.push(c);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// A heredoc an instruction opens: `<<EOF`, `<<-EOF` (leading tabs stripped), `<<"EOF"`.
#[derive(Debug, PartialEq)]
struct Heredoc {
    name: String,
    chomp: bool,
}

/// The heredocs a line opens, in order, as BuildKit finds them: words of the form
/// `[n]<<[-]word` outside quotes; `<<` may be followed by spaces (`cat << EOF`).
fn heredocs_in_line(line: &str) -> Vec<Heredoc> {
    raw_words(line)
        .iter()
        .filter_map(|word| heredoc_word(word))
        .collect()
}

/// Shell words with their quotes and escapes kept; `<<` keeps the spaces after it in its word.
/// An unterminated quote gives no words, as in BuildKit.
fn raw_words(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                let start = i;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Vec::new(),
                        Some('\\') if c == '"' => i += 2,
                        Some(&q) if q == c => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                word.extend(&chars[start..i.min(chars.len())]);
            }
            '<' if chars.get(i + 1) == Some(&'<') => {
                word.push_str("<<");
                i += 2;
                while let Some(&space @ (' ' | '\t' | '\r')) = chars.get(i) {
                    word.push(space);
                    i += 1;
                }
            }
            '\\' => {
                word.extend(&chars[i..(i + 2).min(chars.len())]);
                i += 2;
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                i += 1;
            }
            c => {
                word.push(c);
                i += 1;
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// `^(\d*)<<(-?)\s*([^<]*)$` and a single word after it, as BuildKit's `ParseHeredoc`.
fn heredoc_word(word: &str) -> Option<Heredoc> {
    let rest = word
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(is_re_space);
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let name = unquote_word(rest)?;
    Some(Heredoc { name, chomp })
}

/// The one shell word `text` is, quotes removed; `None` for no word or several.
fn unquote_word(text: &str) -> Option<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    c => word.push(c),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        c @ ('"' | '$' | '\\') => word.push(c),
                        c => {
                            word.push('\\');
                            word.push(c);
                        }
                    },
                    c => word.push(c),
                }
            },
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    if words.len() == 1 {
        words.pop()
    } else {
        None
    }
}

/// Shell-style expansion of a `FROM` image or a global `ARG` default, as BuildKit does it:
/// quotes removed, `$NAME`, `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:+alt}`,
/// `${NAME+alt}`, `${NAME:?}`. `None` when the result depends on a value the file does not give
/// (an unset or unknown argument without a default, a modifier not handled here).
fn expand(word: &str, args: &BTreeMap<String, Option<String>>, escape: char) -> Option<String> {
    let mut expander = Expander {
        chars: word.chars().collect(),
        pos: 0,
        args,
        escape,
    };
    expander.until(None)
}

struct Expander<'a> {
    chars: Vec<char>,
    pos: usize,
    args: &'a BTreeMap<String, Option<String>>,
    escape: char,
}

/// What a variable is while expanding.
enum Value<'a> {
    Unset,
    Set(&'a str),
}

impl<'a> Expander<'a> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Expands up to `stop` (consumed), or to the end when `stop` is `None`.
    fn until(&mut self, stop: Option<char>) -> Option<String> {
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return stop.is_none().then_some(out);
            };
            match c {
                c if Some(c) == stop => return Some(out),
                '$' => out.push_str(&self.dollar()?),
                '\'' => loop {
                    match self.bump()? {
                        '\'' => break,
                        c => out.push(c),
                    }
                },
                '"' => loop {
                    match self.bump()? {
                        '"' => break,
                        '$' => out.push_str(&self.dollar()?),
                        c if c == self.escape => match self.peek() {
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                self.pos += 1;
                                out.push(next);
                            }
                            _ => out.push(c),
                        },
                        c => out.push(c),
                    }
                },
                c if c == self.escape => out.extend(self.bump()),
                c => out.push(c),
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                    name.push(c);
                    self.pos += 1;
                }
            }
            Some(c @ ('@' | '*' | '#' | '?' | '-' | '$' | '!')) => {
                name.push(c);
                self.pos += 1;
            }
            _ => {
                while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
                    name.push(c);
                    self.pos += 1;
                }
            }
        }
        name
    }

    /// The value of `name`; `None` when the file does not tell it.
    fn lookup(&self, name: &str) -> Option<Value<'a>> {
        match self.args.get(name) {
            None => Some(Value::Unset),
            Some(None) => None,
            Some(Some(value)) => Some(Value::Set(value)),
        }
    }

    /// After a `$`.
    fn dollar(&mut self) -> Option<String> {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Some("$".to_string());
            }
            return match self.lookup(&name)? {
                Value::Set(value) => Some(value.to_string()),
                Value::Unset => None,
            };
        }
        self.pos += 1;
        let name = self.name();
        if name.is_empty() {
            return None;
        }
        let mut modifier = self.bump()?;
        if modifier == '}' {
            return match self.lookup(&name)? {
                Value::Set(value) => Some(value.to_string()),
                Value::Unset => None,
            };
        }
        let null_is_unset = modifier == ':';
        if null_is_unset {
            modifier = self.bump()?;
        }
        if !matches!(modifier, '-' | '+' | '?') {
            return None;
        }
        let word = self.until(Some('}'))?;
        let value = match self.lookup(&name)? {
            Value::Set(value) if !(null_is_unset && value.is_empty()) => Some(value),
            _ => None,
        };
        match (modifier, value) {
            ('-', Some(value)) => Some(value.to_string()),
            ('-', None) => Some(word),
            ('+', Some(_)) => Some(word),
            ('+', None) => Some(String::new()),
            ('?', Some(value)) => Some(value.to_string()),
            _ => None,
        }
    }
}

pub fn export(d: &Definition) -> Result<Exported, SpecError> {
    let mut notes = Vec::new();
    // A Dockerfile environment with nothing on top: the file itself, byte for byte.
    if let Some(text) = &d.docker.base_dockerfile {
        if !d.has_packages() && d.environment_variables.is_empty() {
            return Ok(Exported {
                files: vec![(String::new(), text.clone())],
                dropped: dropped(
                    d,
                    &[
                        "version",
                        "description",
                        "tags",
                        "runtime",
                        "python.version",
                        "python.interpreter",
                        "python.user_managed",
                        "python.index",
                        "conda",
                        "docker.base_image",
                        "docker.build_context",
                        "docker.dockerfile_path",
                        "docker.shm_size",
                        "docker.gpu",
                        "docker.platform",
                        "spark.repositories",
                        "spark.packages",
                        "spark.precache",
                        "inference",
                        "extensions",
                    ],
                )
                .into_iter()
                .filter(|f| !matches!(f.as_str(), "runtime" | "python.user_managed"))
                .collect(),
                notes,
            });
        }
        return Err(SpecError::Unsupported {
            format: "dockerfile",
            message: "the environment has both a base Dockerfile and packages or variables; \
                      build it with `terrarium image` or export as aml-v1/aml-v2"
                .to_string(),
        });
    }
    let mut out = String::new();
    out.push_str("# syntax=docker/dockerfile:1.7\n");
    out.push_str(&format!("# Environment {}", d.name));
    if let Some(v) = &d.version {
        out.push_str(&format!(":{v}"));
    }
    out.push_str(&format!(
        " ({}), written by terrarium.\n",
        crate::content_hash(d)
    ));
    if let Some(conda) = &d.conda {
        let base = d
            .docker
            .base_image
            .clone()
            .unwrap_or_else(|| "mambaorg/micromamba:2.0.5".to_string());
        out.push_str(&format!("FROM {base}\n"));
        if d.docker.base_image.is_some() {
            out.push_str("# The base image must provide micromamba on PATH.\n");
        }
        let env_yaml =
            crate::yaml::render(&super::conda_env::conda_yaml(d, Some("terrarium"), false));
        out.push_str("COPY <<'TERRARIUM_ENV' /tmp/terrarium-environment.yml\n");
        out.push_str(&env_yaml);
        out.push_str("TERRARIUM_ENV\n");
        out.push_str("RUN micromamba create -y -p /opt/terrarium/env -f /tmp/terrarium-environment.yml \\\n    && micromamba clean -a -y\n");
        out.push_str("ENV PATH=/opt/terrarium/env/bin:$PATH\n");
        let _ = conda;
    } else if d.has_packages() {
        let base = d.docker.base_image.clone().unwrap_or_else(|| {
            format!(
                "python:{}-slim",
                d.python.version.clone().unwrap_or_else(|| "3.11".into())
            )
        });
        out.push_str(&format!("FROM {base}\n"));
        out.push_str("COPY <<'TERRARIUM_REQUIREMENTS' /tmp/terrarium-requirements.txt\n");
        out.push_str(&crate::pip::write_requirements(
            &d.python.index,
            &d.python.pip,
        ));
        out.push_str("TERRARIUM_REQUIREMENTS\n");
        out.push_str("RUN python -m venv /opt/terrarium/env \\\n    && /opt/terrarium/env/bin/pip install --no-cache-dir -r /tmp/terrarium-requirements.txt\n");
        out.push_str("ENV PATH=/opt/terrarium/env/bin:$PATH\n");
    } else {
        // Nothing to install (an empty requirements file, say): the base image, or for a
        // Python environment the Python it asks for.
        let base = match &d.docker.base_image {
            Some(base) => base.clone(),
            None if d.runtime == Runtime::Python => format!(
                "python:{}-slim",
                d.python.version.clone().unwrap_or_else(|| "3.11".into())
            ),
            None => {
                return Err(SpecError::Unsupported {
                    format: "dockerfile",
                    message: "the environment has no base image, Dockerfile or packages"
                        .to_string(),
                })
            }
        };
        out.push_str(&format!("FROM {base}\n"));
    }
    let mut secret_refs = Vec::new();
    for (key, value) in &d.environment_variables {
        if value.contains("${secret:") {
            secret_refs.push(key.clone());
            continue;
        }
        out.push_str(&format!(
            "ENV {key}={}\n",
            serde_json::to_string(value).expect("string")
        ));
    }
    if !secret_refs.is_empty() {
        notes.push(ExportNote::SecretVariablesNotWritten { names: secret_refs });
    }
    notes.push(ExportNote::PackagesAsBuildSteps);
    Ok(Exported {
        files: vec![(String::new(), out)],
        dropped: dropped(
            d,
            &[
                "version",
                "description",
                "tags",
                "python.interpreter",
                "python.user_managed",
                "docker.build_context",
                "docker.dockerfile_path",
                "docker.shm_size",
                "docker.gpu",
                "docker.platform",
                "spark.repositories",
                "spark.packages",
                "spark.precache",
                "inference",
                "extensions",
            ],
        ),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<String, SpecError> {
        validate(&SourceFile::from_text(Path::new("Dockerfile"), text))
    }

    fn error(text: &str) -> String {
        check(text).unwrap_err().to_string()
    }

    #[test]
    fn validates() {
        assert_eq!(
            check("ARG V=1\nFROM --platform=linux/amd64 python:3.11 AS base\nRUN a \\\n  b\n")
                .unwrap(),
            "python:3.11"
        );
        assert_eq!(
            check("FROM x\nRUN <<EOF\nnot an instruction\nEOF\n").unwrap(),
            "x"
        );
        let err = error("FROM x\nRUNN y\n");
        assert!(
            err.starts_with("Dockerfile:2: unknown Dockerfile instruction `RUNN`"),
            "{err}"
        );
        assert!(check("RUN x\n").is_err());
        assert!(check("# nothing\n").is_err());
    }

    #[test]
    fn continuations() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a \\ \t", '\\'), ("a ", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        // An escaped escape character does not continue the line.
        assert_eq!(trim_continuation("a \\\\", '\\'), ("a \\\\", true));
        assert_eq!(trim_continuation("dir c:\\", '`'), ("dir c:\\", true));
        assert_eq!(trim_continuation("a `", '`'), ("a ", false));
        // Comment and blank lines inside a continuation are dropped, indented or not.
        assert_eq!(
            check("FROM x\nRUN a \\\n# c\n    # c \\\n\n   \n  && b\nUSER me\n").unwrap(),
            "x"
        );
        // The continuation of the last line ends the instruction.
        assert_eq!(check("FROM x\nRUN a \\").unwrap(), "x");
        assert_eq!(check("FROM x \\\n").unwrap(), "x");
    }

    #[test]
    fn directives() {
        assert_eq!(check("# escape=`\nFROM x\nRUN a `\n  b\n").unwrap(), "x");
        assert_eq!(
            check("#syntax = docker/dockerfile:1.4\n# CHECK=skip=all\n  # escape=\\\nFROM x\n")
                .unwrap(),
            "x"
        );
        // After a comment or a blank line, `# escape=` is a comment: the backtick continues
        // nothing and the next line is an instruction of its own.
        for text in [
            "# a comment\n# escape=`\nFROM x\nRUN a `\nb\n",
            "\n# escape=`\nFROM x\nRUN a `\nb\n",
            "# unknown=1\n# escape=`\nFROM x\nRUN a `\nb\n",
        ] {
            let err = error(text);
            assert!(
                err.starts_with("Dockerfile:5: unknown Dockerfile instruction `b`"),
                "{err}"
            );
        }
        let err = error("# syntax=a\n# syntax=b\nFROM x\n");
        assert!(
            err.starts_with("Dockerfile:2: only one `syntax` parser directive"),
            "{err}"
        );
        let err = error("# escape=x\nFROM x\n");
        assert!(
            err.starts_with("Dockerfile:1: invalid escape character `x`"),
            "{err}"
        );
    }

    #[test]
    fn heredoc_words() {
        let doc = |name: &str, chomp| Heredoc {
            name: name.to_string(),
            chomp,
        };
        for (line, expected) in [
            ("RUN <<EOF", vec![doc("EOF", false)]),
            ("RUN <<-EOF", vec![doc("EOF", true)]),
            ("RUN <<'EOF'", vec![doc("EOF", false)]),
            ("RUN <<\"EOF\" bash", vec![doc("EOF", false)]),
            ("RUN 3<<EOF", vec![doc("EOF", false)]),
            ("RUN cat << EOF > /x", vec![doc("EOF", false)]),
            ("RUN <<eo'f'", vec![doc("eof", false)]),
            ("RUN <<'one two'", vec![doc("one two", false)]),
            (
                "COPY <<a.txt <<b.txt /dest/",
                vec![doc("a.txt", false), doc("b.txt", false)],
            ),
            ("RUN '<<EOF'", vec![]),
            ("RUN \"<<EOF\"", vec![]),
            ("RUN <<<EOF", vec![]),
            ("RUN cat<<EOF", vec![]),
            ("RUN echo <<", vec![]),
            // BuildKit splits `<<-` from a word after a space: not a heredoc.
            ("RUN <<- EOF", vec![]),
            ("RUN echo 'unterminated <<EOF", vec![]),
        ] {
            assert_eq!(heredocs_in_line(line), expected, "{line}");
        }
    }

    #[test]
    fn heredocs() {
        let text = "FROM x\nRUN <<-EOF\n\techo\n\tEOF\nCOPY <<a <<b /d/\nA\na\nB\nb\nUSER me\n";
        assert_eq!(check(text).unwrap(), "x");
        // Without `-`, an indented terminator is part of the body; so is one with trailing
        // spaces.
        let err = error("FROM x\nRUN <<EOF\n\techo\n\tEOF\nEOF \n");
        assert!(
            err.starts_with("Dockerfile:2: heredoc `EOF` is not terminated"),
            "{err}"
        );
        // Exec form and other instructions take no heredocs.
        let err = error("FROM x\nRUN [\"<<EOF\"]\nEOF\n");
        assert!(
            err.starts_with("Dockerfile:3: unknown Dockerfile instruction `EOF`"),
            "{err}"
        );
        let err = error("FROM x\nLABEL a=<<EOF\nEOF\n");
        assert!(err.starts_with("Dockerfile:3: unknown"), "{err}");
        assert_eq!(
            check("FROM x\nONBUILD RUN <<EOF\nnot an instruction\nEOF\n").unwrap(),
            "x"
        );
        assert!(error("FROM x\nCOPY a <<EOF\nEOF\n").contains("heredoc as its destination"));
    }

    #[test]
    fn instruction_arguments() {
        for (text, message) in [
            ("FROM\n", "`FROM` needs an image"),
            ("FROM a AS\n", "`FROM` takes an image"),
            ("FROM a b c\n", "`FROM` takes an image"),
            ("FROM a AS 1st\n", "invalid build stage name `1st`"),
            ("FROM a\nCMD [\"x\", 1]\n", "must hold only strings"),
            (
                "FROM a\nSHELL /bin/sh -c\n",
                "`SHELL` must be written in the JSON form",
            ),
            ("FROM a\nENV A\n", "has no value"),
            ("FROM a\nENV A=1 B\n", "`B` in `ENV` is not of the form"),
            (
                "FROM a\nCOPY a\n",
                "`COPY` needs a source and a destination",
            ),
            ("FROM a\nWORKDIR\n", "`WORKDIR` needs an argument"),
            (
                "FROM a\nHEALTHCHECK CMD\n",
                "`HEALTHCHECK CMD` needs a command",
            ),
            ("FROM a\nHEALTHCHECK NONE x\n", "takes no arguments"),
            (
                "FROM a\nHEALTHCHECK PING x\n",
                "unknown `HEALTHCHECK` type `PING`",
            ),
            (
                "FROM a\nONBUILD FROM b\n",
                "`FROM` is not allowed as an `ONBUILD` trigger",
            ),
            (
                "FROM a\nONBUILD ONBUILD RUN b\n",
                "`ONBUILD ONBUILD` is not allowed",
            ),
            (
                "FROM a\nONBUILD RUNN b\n",
                "unknown Dockerfile instruction `RUNN`",
            ),
            ("ENV A=1\nFROM a\n", "`ENV` before the first `FROM`"),
        ] {
            let err = error(text);
            assert!(err.contains(message), "{text:?}: {err}");
        }
        for text in [
            "from a as Build\nrun x\n",
            "FROM a\nCMD [python, app.py]\n",
            "FROM a\nCMD [\"python\", \"app.py\"] \n",
            "FROM a\nENTRYPOINT []\n",
            "FROM a\nENV PATH /opt/bin:$PATH\n",
            "FROM a\nLABEL a=\"b c\" d=e\n",
            "FROM a\nHEALTHCHECK --interval=5m --timeout=3s CMD curl -f http://x/ || exit 1\n",
            "FROM a\nHEALTHCHECK NONE\n",
            "FROM a\nMAINTAINER Jane Doe <jane@example.com>\n",
            "FROM a\nRUN --mount=type=cache,target=/root/.cache \"--\" pip install x\n",
            "FROM a\nVOLUME [\"/data\"]\nVOLUME /a /b\n",
        ] {
            assert!(check(text).is_ok(), "{text:?}: {:?}", check(text));
        }
    }

    #[test]
    fn suggestions() {
        assert!(error("FORM x\n")
            .ends_with("unknown Dockerfile instruction `FORM`; did you mean `FROM`?"));
        assert!(error("FROM x\nruun y\n").ends_with("did you mean `run`?"));
        assert!(error("FROM x\nInstall y\n").ends_with("`Install`"));
    }

    #[test]
    fn base_images() {
        for (text, base) in [
            ("ARG PY=3.11\nFROM python:${PY}-slim\n", "python:3.11-slim"),
            ("ARG B=python T=3.12\nFROM $B:$T\n", "python:3.12"),
            ("ARG B=\"python\"\nFROM ${B}\n", "python"),
            ("ARG V=3.11\nARG B=python:${V}\nFROM ${B}\n", "python:3.11"),
            ("ARG B\nFROM ${B:-ubuntu:22.04}\n", "ubuntu:22.04"),
            ("ARG B=\nFROM ${B:-ubuntu}\n", "ubuntu"),
            ("ARG B=x\nARG B\nFROM $B\n", "x"),
            ("ARG B\nFROM $B\n", "$B"),
            ("ARG B=\nFROM ${B}\n", "${B}"),
            ("FROM ${B}:${T}\n", "${B}:${T}"),
            ("ARG B=$UNSET\nFROM $B\n", "$B"),
            ("ARG B=a\nFROM ${B%a}\n", "${B%a}"),
            (
                "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n",
                "golang:1.22",
            ),
            ("FROM scratch\n", "scratch"),
            ("FROM a AS one\nFROM one\nFROM b\n", "a"),
            ("# escape=`\nARG T=1\nFROM `$x:$T\n", "$x:1"),
        ] {
            assert_eq!(check(text).unwrap(), base, "{text:?}");
        }
    }

    #[test]
    fn lines() {
        let collect = |text| Lines::new(text).collect::<Vec<_>>();
        assert_eq!(collect(""), vec![]);
        assert_eq!(collect("a"), vec![(1, "a")]);
        assert_eq!(collect("a\r\n\nb\n"), vec![(1, "a"), (2, ""), (3, "b")]);
        assert_eq!(collect("\u{feff}a\n"), vec![(1, "a")]);
    }

    #[test]
    fn which_dockerfiles_use_their_context() {
        let uses = |text: &str| {
            uses_context(&SourceFile::from_text(Path::new("Dockerfile"), text)).unwrap()
        };
        assert!(uses("FROM python:3.11\nCOPY requirements.txt /app/\n"));
        assert!(uses("FROM python:3.11\nADD --chown=1:1 src /app/src\n"));
        assert!(uses(
            "FROM python:3.11 AS b\nRUN true\nFROM b\nCOPY . /app\n"
        ));
        assert!(!uses("FROM python:3.11\nRUN pip install numpy\n"));
        assert!(!uses(
            "FROM golang AS b\nRUN go build\nFROM scratch\nCOPY --from=b /out /bin/app\n"
        ));
        assert!(!uses(
            "FROM python:3.11\nCOPY <<EOF /etc/app.conf\nx=1\nEOF\n"
        ));
        assert!(!uses(
            "FROM python:3.11\nADD https://example.com/a.tar.gz /opt/\n"
        ));
    }
}
