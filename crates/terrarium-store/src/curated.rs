//! The curated environments shipped with Terrarium (the repository's `curated/` folder, built
//! into the binary), and seeding them into a workspace.
//!
//! Seeding is cheap when nothing changed: one read of the stored hash of the whole bundle.
//! A definition whose content changed becomes a new version, by the usual versioning rules;
//! `curated/` names are written by nothing else.

use sha2::{Digest, Sha256};
use terrarium_spec::Definition;

use crate::{RegisterRequest, Source, Store, StoreError};

/// The curated definitions: (file name, YAML).
pub const BUNDLE: &[(&str, &str)] = &[
    (
        "python-minimal.yml",
        include_str!("../../../curated/python-minimal.yml"),
    ),
    ("sklearn.yml", include_str!("../../../curated/sklearn.yml")),
    (
        "pytorch-cpu.yml",
        include_str!("../../../curated/pytorch-cpu.yml"),
    ),
    (
        "tensorflow-cpu.yml",
        include_str!("../../../curated/tensorflow-cpu.yml"),
    ),
    (
        "lightgbm-xgboost.yml",
        include_str!("../../../curated/lightgbm-xgboost.yml"),
    ),
    (
        "inference-minimal.yml",
        include_str!("../../../curated/inference-minimal.yml"),
    ),
    ("spark.yml", include_str!("../../../curated/spark.yml")),
];

/// The workspace's key for the hash of the bundle it was seeded with.
const BUNDLE_KEY: &str = "curated_bundle";

/// The curated definitions, parsed and normalized.
pub fn definitions() -> Result<Vec<Definition>, StoreError> {
    BUNDLE
        .iter()
        .map(|(file, text)| {
            let path = std::path::Path::new("curated").join(file);
            let source = terrarium_spec::source::SourceFile::from_text(&path, text);
            let imported =
                terrarium_spec::formats::native::import_source(&source).map_err(|source| {
                    StoreError::CuratedInvalid {
                        file: file.to_string(),
                        source,
                    }
                })?;
            let mut definition = imported.definition;
            definition.normalize();
            Ok(definition)
        })
        .collect()
}

/// The hash of the whole bundle: file names and contents.
fn bundle_hash() -> String {
    let mut hasher = Sha256::new();
    for (file, text) in BUNDLE {
        hasher.update(file.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

/// Register the curated definitions whose content changed since the workspace was last
/// seeded (as `terrarium`, source `curated`).
pub fn seed(store: &dyn Store) -> Result<(), StoreError> {
    let bundle = bundle_hash();
    if store.meta_get(BUNDLE_KEY)?.as_deref() == Some(bundle.as_str()) {
        return Ok(());
    }
    for definition in definitions()? {
        store.register(RegisterRequest {
            definition,
            source: Source::new("curated"),
            parent: None,
            actor: "terrarium".to_string(),
            allow_curated: true,
            force_new: false,
            lock: None,
        })?;
    }
    store.meta_set(BUNDLE_KEY, &bundle)?;
    Ok(())
}
