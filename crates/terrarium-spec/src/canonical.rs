//! Canonical form and content hash.
//!
//! The hash covers what changes the built environment, and nothing else:
//! - included: runtime, Python version/interpreter/user-managed flag, pip requirements and index
//!   options, conda channels and dependencies, environment variables, docker (base image,
//!   Dockerfile text, a digest of the build context's other files, shm size, gpu, platform),
//!   spark, inference routes and preserved foreign-format fields (`extensions`);
//! - the build context's path is not included (moving a context does not change it; changing
//!   its files does, through the digest);
//! - excluded: name, version, description, tags;
//! - pip requirements, conda dependencies, spark packages and environment variables are sets:
//!   their order does not matter, and each entry is normalized first (`Scikit_Learn>=1` equals
//!   `scikit-learn >= 1`; `numpy=1.26` equals `numpy 1.26.*`);
//! - conda channels, extra index URLs, find-links and spark repositories keep their order,
//!   because order sets priority.
//!
//! The canonical form is JSON with sorted keys and no whitespace; the hash is its SHA-256.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::model::Definition;

/// Bumped only if the canonical form changes; part of the hashed text.
pub const CANONICAL_VERSION: u32 = 1;

/// The canonical JSON text of a definition.
pub fn canonical_json(definition: &Definition) -> String {
    let mut definition = definition.clone();
    definition.normalize();
    let d = &definition;

    let mut pip: Vec<String> = d.python.pip.iter().map(crate::pip::normalize).collect();
    pip.sort();
    pip.dedup();

    let conda = d.conda.as_ref().map(|c| {
        let mut deps: Vec<String> = c
            .dependencies
            .iter()
            .map(|s| crate::conda::normalize(s))
            .collect();
        deps.sort();
        deps.dedup();
        let channels: Vec<String> = c
            .channels
            .iter()
            .map(|c| c.trim().trim_end_matches('/').to_string())
            .collect();
        json!({ "channels": channels, "dependencies": deps })
    });

    let mut spark_packages = d.spark.packages.clone();
    spark_packages.sort();
    spark_packages.dedup();

    let value = json!({
        "canonical_version": CANONICAL_VERSION,
        "runtime": d.runtime.as_str(),
        "python": {
            "version": d.python.version,
            "interpreter": d.python.interpreter,
            "user_managed": d.python.user_managed,
            "pip": pip,
            "index": d.python.index,
        },
        "conda": conda,
        "environment_variables": d.environment_variables,
        "docker": {
            "base_image": d.docker.base_image,
            "base_dockerfile": d.docker.base_dockerfile,
            "build_context_digest": d.docker.build_context_digest,
            "shm_size": d.docker.shm_size,
            "gpu": d.docker.gpu,
            "platform": d.docker.platform,
        },
        "spark": {
            "repositories": d.spark.repositories,
            "packages": spark_packages,
            "precache": d.spark.precache,
        },
        "inference": d.inference,
        "extensions": d.extensions,
    });
    sorted(value).to_string()
}

/// The value with every object's keys in sorted order. serde_json's map is sorted or
/// insertion-ordered depending on a cargo feature (`preserve_order`) that any crate in the
/// build can turn on, so canonical text never relies on it.
pub fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// `sha256:<hex>` of the canonical form.
pub fn content_hash(definition: &Definition) -> String {
    let digest = Sha256::digest(canonical_json(definition).as_bytes());
    format!("sha256:{}", hex::encode(digest))
}
