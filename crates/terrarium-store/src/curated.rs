//! The curated environments shipped with Terrarium (the repository's `curated/` folder, built
//! into the binary), and seeding them into a workspace.
//!
//! Seeding is cheap when nothing changed: one read of the stored hash of the whole bundle.
//! A definition whose content changed becomes a new version, by the usual versioning rules;
//! `curated/` names are written by nothing else.

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

/// The hash of the whole bundle, file names and contents, computed when the binary is built:
/// every command that opens a workspace compares it with the stored one, and hashing the
/// bundle there (SHA-256 of 20 KB) was a visible part of a warm `terrarium run`. It only tells
/// one bundle from the next (the bundle is part of the binary, so nobody chooses it), so a
/// 64-bit FNV-1a, which a `const fn` can compute, is enough.
const BUNDLE_HASH: u64 = {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < BUNDLE.len() {
        let (file, text) = BUNDLE[i];
        let mut part = 0;
        while part < 2 {
            let bytes = if part == 0 {
                file.as_bytes()
            } else {
                text.as_bytes()
            };
            let mut j = 0;
            while j < bytes.len() {
                hash ^= bytes[j] as u64;
                hash = hash.wrapping_mul(0x0100_0000_01b3);
                j += 1;
            }
            // A separator, so that moving bytes between a name and its text changes the hash.
            hash ^= 0xff;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
            part += 1;
        }
        i += 1;
    }
    hash
};

/// The stored form of [`BUNDLE_HASH`].
fn bundle_hash() -> String {
    format!("fnv1a64:{BUNDLE_HASH:016x}")
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
