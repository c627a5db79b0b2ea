//! `terrarium env create`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;
use terrarium_spec::{formats, Format};
use terrarium_store::{RegisterRequest, Source};

use crate::commands::Context;
use crate::printer::{self, user_error};
use crate::workspace;

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The definition: a file (native/Azure ML v2 YAML, conda environment.yml,
    /// requirements.txt, Dockerfile) or a directory (Azure ML v2 folder with its
    /// environment.yml, Azure ML v1, conda prefix, virtualenv, a Dockerfile's folder): whatever
    /// `env export` writes.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "PATH",
        required_unless_present = "image",
        conflicts_with = "image"
    )]
    file: Option<PathBuf>,
    /// Create a docker-runtime, user-managed environment from an existing image.
    #[arg(long, value_name = "REFERENCE")]
    image: Option<String>,
    /// The name (required when the file has none).
    #[arg(long)]
    name: Option<String>,
    /// An explicit version; registering different content under an existing version fails.
    #[arg(long)]
    version: Option<String>,
    /// The input format (detected when omitted).
    #[arg(long, value_parser = super::parse_format)]
    format: Option<Format>,
    /// Set the description.
    #[arg(long)]
    description: Option<String>,
    /// Add a tag KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    tags: Vec<(String, String)>,
    /// Register without locking; the lock is made (once) at first use.
    #[arg(long)]
    no_lock: bool,
    #[command(flatten)]
    lock: crate::environments::LockArgs,
    /// Print the version as JSON.
    #[arg(long)]
    json: bool,
    /// With --json: add the version exported in this format (native, aml-v2, aml-v1, conda,
    /// requirements, dockerfile) as `export`, with its files as `env export` writes them.
    #[arg(long, value_name = "FORMAT", requires = "json", value_parser = super::export::parse_definition_format)]
    export: Option<Format>,
}

pub fn create(context: &Context, args: CreateArgs) -> Result<ExitCode> {
    let mut with_context = None;
    let mut read_from = String::new();
    let (mut definition, source, warnings) = if let Some(image) = &args.image {
        let definition = formats::from_image(image).map_err(|e| user_error(e, None))?;
        (
            definition,
            Source {
                kind: "import".into(),
                file: None,
                format: Some(format!("image:{image}")),
            },
            Vec::new(),
        )
    } else {
        let Some(file) = args.file.as_ref() else {
            return Err(user_error(
                "pass a definition (-f PATH) or an image (--image REFERENCE)",
                None,
            ));
        };
        let imported = formats::import(file, args.format)?;
        if imported.definition.docker.build_context_digest.is_some() {
            with_context = Some(imported.clone());
        }
        read_from = format!(", read from {} as {}", file.display(), imported.format);
        let absolute = std::path::absolute(file).unwrap_or_else(|_| file.clone());
        let source = Source {
            kind: "import".into(),
            file: Some(absolute.display().to_string()),
            format: Some(imported.format.name().to_string()),
        };
        (imported.definition, source, imported.warnings)
    };
    printer::warnings(&warnings);
    if let Some(name) = args.name {
        definition.name = name;
    }
    if definition.name.is_empty() {
        return Err(user_error(
            "the definition has no name",
            Some("pass --name NAME"),
        ));
    }
    if let Some(version) = args.version {
        definition.version = Some(version);
    }
    if let Some(description) = args.description {
        definition.description = Some(description);
    }
    definition.tags.extend(args.tags);
    let store = context.store()?;
    // The build context's files are content (by digest): the workspace keeps them before a
    // version names them, so builds and exports have them from anywhere.
    if let Some(imported) = &with_context {
        crate::environments::keep_context(store.as_ref(), imported)?;
    }
    let name = definition.name.clone();
    // Lock before registering, so that a definition that cannot be resolved leaves nothing
    // behind, unless the same content is already registered (then its lock stands).
    let lockable = !definition.python.user_managed
        && (definition.runtime != terrarium_spec::model::Runtime::Docker
            || definition.has_packages());
    let mut lock = None;
    if !args.no_lock && lockable {
        definition.normalize();
        let hash = terrarium_spec::content_hash(&definition);
        let existing = match &definition.version {
            Some(v) => store
                .resolve(&terrarium_spec::names::Reference::Version(
                    name.clone(),
                    v.clone(),
                ))
                .ok(),
            None => store
                .resolve(&terrarium_spec::names::Reference::Latest(name.clone()))
                .ok(),
        };
        let already_locked = existing
            .as_ref()
            .is_some_and(|r| r.content_hash == hash && r.lock_hash.is_some());
        if !already_locked {
            let made = terrarium_compute::environment::make_lock(
                &definition,
                &args.lock.options()?,
                &crate::printer::Spinner::lazy(),
            )
            .with_context(|| {
                format!("cannot lock `{name}` (register with --no-lock to lock at first use)")
            })?;
            lock = Some((made.lock_hash(), made.to_json()));
        }
    }
    let outcome = store
        .register(RegisterRequest {
            definition,
            source,
            parent: None,
            actor: workspace::actor(),
            allow_curated: false,
            force_new: false,
            lock: lock.clone(),
        })
        .with_context(|| format!("cannot register `{name}`"))?;
    // Same content as an unlocked version: give that version this lock.
    let outcome = match (&lock, &outcome.record.lock_hash) {
        (Some((hash, json)), None) => {
            store.set_lock(&outcome.record.name, &outcome.record.version, hash, json)?;
            let record = store.resolve(&terrarium_spec::names::Reference::Version(
                outcome.record.name.clone(),
                outcome.record.version.clone(),
            ))?;
            terrarium_store::RegisterOutcome {
                record,
                created: outcome.created,
            }
        }
        _ => outcome,
    };
    let record = &outcome.record;
    if args.json {
        printer::json(&super::export::RecordJson::new(record, args.export)?)?;
    } else {
        printer::line(format_args!("{}:{}", record.name, record.version))?;
        if outcome.created {
            printer::status(&format!(
                "created {}:{} ({}){read_from}",
                record.name, record.version, record.content_hash
            ));
        } else {
            printer::status(&format!(
                "unchanged: {}:{} already has this content ({}){read_from}",
                record.name, record.version, record.content_hash
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
