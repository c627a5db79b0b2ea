//! The Dockerfile corpus: every file under `dockerfiles/valid` is accepted, with the base image
//! listed in `VALID`; every file under `dockerfiles/invalid` is refused at the line and with the
//! message listed in `INVALID`. Cases are counted: a file without an entry, an entry without a
//! file, or a case that was not compared fails the test. Every valid file, imported, is
//! exported to every format and read back, with the round trips counted per format.

mod common;

use std::path::{Path, PathBuf};

use common::{Floor, Tally, EXPORTS};

use terrarium_spec::formats::{self, dockerfile, Format};
use terrarium_spec::source::SourceFile;
use terrarium_spec::SpecError;

/// File name, and the base image `validate` reports (the first stage's, `ARG` defaults expanded).
const VALID: &[(&str, &str)] = &[
    ("python-official.Dockerfile", "debian:bookworm-slim"),
    ("python-app-args.Dockerfile", "python:3.11-slim"),
    ("go-multistage.Dockerfile", "golang:1.22-alpine"),
    ("python-multistage.Dockerfile", "python:3.12-slim"),
    (
        "aml-openmpi-conda.Dockerfile",
        "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04",
    ),
    ("heredoc-scripts.Dockerfile", "ubuntu:24.04"),
    (
        "windows-escape.Dockerfile",
        "mcr.microsoft.com/windows/servercore:ltsc2022",
    ),
    ("directives-node.Dockerfile", "node:20-alpine"),
    ("exec-and-shell-forms.Dockerfile", "ubuntu:22.04"),
    ("healthcheck-onbuild.Dockerfile", "nginx:1.27-alpine"),
    ("lowercase-instructions.Dockerfile", "alpine:3.20"),
    (
        "cuda-pytorch.Dockerfile",
        "nvidia/cuda:12.1.1-cudnn8-runtime-ubuntu22.04",
    ),
    // No default to expand: the text as written.
    ("build-arg-base.Dockerfile", "${BASE_IMAGE}"),
    (
        "arg-default-modifiers.Dockerfile",
        "docker.io/library/python:3.11-slim",
    ),
    (
        "jupyter-stacks.Dockerfile",
        "quay.io/jupyter/scipy-notebook",
    ),
    (
        "miniconda-env.Dockerfile",
        "continuumio/miniconda3:24.1.2-0",
    ),
    ("micromamba.Dockerfile", "mambaorg/micromamba:1.5.8"),
    ("platform-stage-ref.Dockerfile", "ubuntu:22.04"),
    ("terrarium-export.Dockerfile", "mambaorg/micromamba:2.0.5"),
    ("legacy-syntax.Dockerfile", "centos:7"),
    ("continuation-at-eof.Dockerfile", "alpine:3.19"),
];

/// File name, the line the error names (`None`: the whole file), and a part of its message.
const INVALID: &[(&str, Option<usize>, &str)] = &[
    (
        "typo-from.Dockerfile",
        Some(2),
        "unknown Dockerfile instruction `FORM`; did you mean `FROM`?",
    ),
    // Line 12: the count runs through a continuation with a comment and a blank line in it,
    // and through a heredoc whose body holds an instruction-like line.
    (
        "unknown-after-heredoc.Dockerfile",
        Some(12),
        "unknown Dockerfile instruction `EXPOSEE`; did you mean `EXPOSE`?",
    ),
    (
        "unterminated-heredoc.Dockerfile",
        Some(3),
        "heredoc `EOF` is not terminated",
    ),
    ("no-from.Dockerfile", None, "no `FROM` instruction"),
    ("comments-only.Dockerfile", None, "no `FROM` instruction"),
    (
        "run-before-from.Dockerfile",
        Some(2),
        "`RUN` before the first `FROM`",
    ),
    // The `escape` directive after a comment is a comment: the backtick continues nothing.
    (
        "directive-too-late.Dockerfile",
        Some(5),
        "unknown Dockerfile instruction `Write-Host`",
    ),
    (
        "shell-not-json.Dockerfile",
        Some(2),
        "`SHELL` must be written in the JSON form",
    ),
    (
        "exec-form-not-strings.Dockerfile",
        Some(3),
        "must hold only strings, not `8000`",
    ),
    (
        "bad-escape-directive.Dockerfile",
        Some(1),
        "invalid escape character `^`",
    ),
    (
        "onbuild-from.Dockerfile",
        Some(2),
        "`FROM` is not allowed as an `ONBUILD` trigger",
    ),
    (
        "from-extra-args.Dockerfile",
        Some(1),
        "`FROM` takes an image and an optional `AS <name>`",
    ),
];

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/dockerfiles")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

fn name(path: &Path) -> &str {
    path.file_name().unwrap().to_str().unwrap()
}

#[test]
fn valid_dockerfiles_are_accepted_with_their_base_image() {
    let files = corpus("valid");
    let mut compared = 0;
    for file in &files {
        let name = name(file);
        let (_, expected) = VALID
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} has no entry in VALID"));
        let source = SourceFile::read(file).unwrap();
        let base = dockerfile::validate(&source).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(base, *expected, "{name}");

        // The same file with Windows line endings.
        let crlf = SourceFile::from_text(file, &source.text.replace('\n', "\r\n"));
        let base = dockerfile::validate(&crlf).unwrap_or_else(|e| panic!("{name} (CRLF): {e}"));
        assert_eq!(base, *expected, "{name} (CRLF)");

        // Imported as an environment, the file is kept byte for byte.
        let imported = formats::import(file, Some(Format::Dockerfile))
            .unwrap_or_else(|e| panic!("import {name}: {e}"));
        assert_eq!(
            imported.definition.docker.base_dockerfile.as_deref(),
            Some(source.text.as_str()),
            "{name}"
        );
        compared += 1;
    }
    eprintln!(
        "valid Dockerfiles compared: {compared} (of {} entries)",
        VALID.len()
    );
    assert_eq!(compared, VALID.len(), "entries in VALID without a file");
    assert_eq!(compared, 21, "the valid corpus changed size");
}

/// The fewest round trips of the valid corpus each export format must compare: whole (but
/// for the fields it drops), and at all (whole, or but for the fields its notes say it
/// changes). What it compares today; raise a floor when a format compares more.
const ROUND_TRIP_FLOORS: &[Floor] = &[
    Floor::new(Format::Native, 21, 21),
    Floor::new(Format::AmlV2, 21, 21),
    Floor::new(Format::AmlV1, 21, 21),
    Floor::new(Format::Conda, 21, 21),
    Floor::new(Format::Requirements, 21, 21),
    Floor::new(Format::Dockerfile, 21, 21),
];

/// Each valid file, imported, exports to every format and reads back with what the export
/// says it carries.
#[test]
fn valid_dockerfiles_round_trip_through_every_format() {
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for file in corpus("valid") {
        let name = name(&file);
        // The text is what is compared: a build context's files (here the corpus folder) are
        // the workspace's to write beside an export, which `tests/exports.rs` covers.
        let definition = formats::without_fields(
            &formats::import(&file, Some(Format::Dockerfile))
                .unwrap_or_else(|e| panic!("import {name}: {e}"))
                .definition,
            &[
                "docker.build_context".into(),
                "docker.dockerfile_path".into(),
            ],
        );
        for format in EXPORTS {
            let Ok(exported) = formats::export(&definition, format) else {
                tally.refused(format);
                continue;
            };
            match common::round_trip(&definition, format, &exported) {
                Ok(compared) => tally.compared(format, compared),
                Err(err) => failures.push(format!("{name} -> {err}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    tally.assert_floors("Dockerfile corpus round trips", ROUND_TRIP_FLOORS);
}

#[test]
fn invalid_dockerfiles_are_refused_at_the_line() {
    let files = corpus("invalid");
    let mut compared = 0;
    for file in &files {
        let name = name(file);
        let (_, line, message) = INVALID
            .iter()
            .find(|(n, _, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} has no entry in INVALID"));
        let source = SourceFile::read(file).unwrap();
        let err = dockerfile::validate(&source)
            .map(|base| panic!("{name} was accepted, base image {base}"))
            .unwrap_err();
        let SpecError::Invalid {
            location,
            message: got,
        } = &err
        else {
            panic!("{name}: not an invalid-input error: {err:?}");
        };
        assert_eq!(location.file, *file, "{name}");
        assert_eq!(location.line, *line, "{name}: {err}");
        assert!(got.contains(message), "{name}: {err}");
        // The error names the file and line in its text too.
        let prefix = match line {
            Some(line) => format!("{}:{line}: ", file.display()),
            None => format!("{}: ", file.display()),
        };
        assert!(err.to_string().starts_with(&prefix), "{err}");

        assert!(
            formats::import(file, Some(Format::Dockerfile)).is_err(),
            "{name} imported"
        );
        compared += 1;
    }
    eprintln!(
        "invalid Dockerfiles compared: {compared} (of {} entries)",
        INVALID.len()
    );
    assert_eq!(compared, INVALID.len(), "entries in INVALID without a file");
    assert_eq!(compared, 12, "the invalid corpus changed size");
}

/// The native format checks an inline `docker.base_dockerfile` with the same rules.
#[test]
fn native_inline_dockerfile_uses_the_same_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("environment.yml");
    let dockerfile = "\
# escape=`
ARG PY=3.11
FROM python:${PY}-slim
RUN pip install numpy `
    # a comment inside the continuation
    pandas

RUN <<EOF
echo not an instruction
EOF
";
    let indented: String = dockerfile
        .lines()
        .map(|line| format!("    {line}\n"))
        .collect();
    std::fs::write(
        &path,
        format!("name: inline\ndocker:\n  base_dockerfile: |\n{indented}"),
    )
    .unwrap();
    let imported = formats::import(&path, Some(Format::Native)).unwrap();
    assert_eq!(
        imported.definition.docker.base_dockerfile.as_deref(),
        Some(dockerfile)
    );

    std::fs::write(
        &path,
        "name: inline\ndocker:\n  base_dockerfile: |\n    FROM python:3.11\n    RUN <<EOF\n    echo\n",
    )
    .unwrap();
    let err = formats::import(&path, Some(Format::Native))
        .unwrap_err()
        .to_string();
    assert!(err.contains("heredoc `EOF` is not terminated"), "{err}");
}

/// A Dockerfile-like line: an instruction or directive prefix, then characters the parser
/// treats specially (quotes, escapes, heredoc markers, variables, JSON brackets, non-ASCII).
fn line() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    (
        prop::sample::select(vec![
            "",
            "FROM ",
            "from ",
            "RUN ",
            "ARG ",
            "COPY ",
            "ADD ",
            "ONBUILD RUN ",
            "# escape=",
            "# syntax=",
            "HEALTHCHECK ",
            "ENV ",
            "LABEL ",
            "CMD ",
            "SHELL ",
            "EOF",
            "\t",
        ]),
        "[ \t#`\\\\<\"'${}=:,\\[\\]a-zA-Z0-9é-]{0,24}",
    )
        .prop_map(|(prefix, rest)| format!("{prefix}{rest}"))
}

proptest::proptest! {
    /// `validate` never panics, and line endings do not change its answer.
    #[test]
    fn any_text_gives_an_answer_whatever_the_line_endings(
        lines in proptest::collection::vec(line(), 0..16),
    ) {
        let text = lines.join("\n");
        let path = Path::new("Dockerfile");
        let lf = dockerfile::validate(&SourceFile::from_text(path, &text)).map_err(|e| e.to_string());
        let crlf = dockerfile::validate(&SourceFile::from_text(path, &text.replace('\n', "\r\n")))
            .map_err(|e| e.to_string());
        proptest::prop_assert_eq!(lf, crlf);
    }
}
