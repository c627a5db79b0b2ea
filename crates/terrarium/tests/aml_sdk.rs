//! Azure ML SDK v1 interoperability, checked with Microsoft's own `azureml-core`:
//! a directory the SDK saves imports into Terrarium, and Terrarium's export loads back in the
//! SDK with every field intact.
//!
//! Needs a Python with `azureml-core` in `TERRARIUM_TEST_AML_PYTHON` (`.ci/run` makes one).
//! Without it the test fails under CI (`CI` set) and is skipped with a message elsewhere.

mod common;

use std::process::Command;

use common::TestContext;

fn sdk_python() -> Option<String> {
    match std::env::var("TERRARIUM_TEST_AML_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "TERRARIUM_TEST_AML_PYTHON must point at a Python with azureml-core in CI"
            );
            eprintln!("skipped: set TERRARIUM_TEST_AML_PYTHON to a Python with azureml-core");
            None
        }
    }
}

fn python(python: &str, script: &str, args: &[&std::path::Path]) -> String {
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

const SAVE: &str = r#"
import sys, warnings
warnings.filterwarnings("ignore")
from azureml.core import Environment
from azureml.core.conda_dependencies import CondaDependencies
from azureml.core.environment import SparkPackage
env = Environment("sdk-env")
env.version = "4"
env.python.conda_dependencies = CondaDependencies.create(
    python_version="3.10", conda_packages=["numpy=1.26", "scipy"],
    pip_packages=["scikit-learn==1.3.0", "pandas>=2"])
env.environment_variables = {"OMP_NUM_THREADS": "4", "HF_TOKEN": "${secret:HF_TOKEN}"}
env.docker.base_dockerfile = "FROM python:3.10-slim\nRUN echo built\n"
env.docker.shm_size = "16g"
env.docker.arguments = ["--ipc=host"]
env.docker.base_image_registry.address = "myregistry.azurecr.io"
env.docker.base_image_registry.password = "must-not-travel"
env.spark.repositories = ["https://repo1.maven.org/maven2"]
env.spark.packages = [SparkPackage("io.delta", "delta-spark_2.12", "3.2.0")]
env.spark.precache_packages = False
env.save_to_directory(sys.argv[1], overwrite=True)
"#;

const DESCRIBE: &str = r#"
import sys, json, warnings
warnings.filterwarnings("ignore")
from azureml.core import Environment
env = Environment.load_from_directory(sys.argv[1])
cd = env.python.conda_dependencies
print(json.dumps({
    "name": env.name,
    "version": env.version,
    "variables": env.environment_variables,
    "conda": sorted(cd.conda_packages),
    "pip": sorted(cd.pip_packages),
    "channels": list(cd.conda_channels),
    "dockerfile": env.docker.base_dockerfile,
    "base_image": env.docker.base_image,
    "shm_size": env.docker.shm_size,
    "arguments": env.docker.arguments,
    "registry": env.docker.base_image_registry.address,
    "password": env.docker.base_image_registry.password,
    "spark_repositories": env.spark.repositories,
    "spark_packages": [[p.group, p.artifact, p.version] for p in env.spark.packages],
    "precache": env.spark.precache_packages,
    "user_managed": env.python.user_managed_dependencies,
}, sort_keys=True))
"#;

#[test]
fn sdk_directory_round_trips_through_terrarium() {
    let Some(py) = sdk_python() else { return };
    let cx = TestContext::new();
    let saved = cx.path("saved");
    python(&py, SAVE, &[&saved]);

    let record = cx
        .run_path(&["env", "create", "--no-lock", "--json", "-f"], &saved, &[])
        .success();
    assert!(
        record.stderr.contains("registry password was not imported"),
        "{}",
        record.stderr
    );
    let record = record.json();
    assert_eq!(record["name"], "sdk-env");
    assert_eq!(record["version"], "4");
    assert_eq!(record["source"]["format"], "aml-v1");

    let exported = cx.path("exported");
    cx.run_path(
        &["env", "export", "sdk-env:4", "--format", "aml-v1", "-o"],
        &exported,
        &[],
    )
    .success();

    let original: serde_json::Value =
        serde_json::from_str(&python(&py, DESCRIBE, &[&saved])).unwrap();
    let round: serde_json::Value =
        serde_json::from_str(&python(&py, DESCRIBE, &[&exported])).unwrap();
    for key in [
        "name",
        "version",
        "variables",
        "conda",
        "pip",
        "channels",
        "dockerfile",
        "base_image",
        "shm_size",
        "arguments",
        "registry",
        "spark_repositories",
        "spark_packages",
        "precache",
        "user_managed",
    ] {
        assert_eq!(
            original[key], round[key],
            "field `{key}` changed through Terrarium"
        );
    }
    // The one field that must not travel.
    assert_eq!(original["password"], "must-not-travel");
    assert!(round["password"].is_null());

    // And Terrarium reads its own export back to the same content hash.
    let back = cx
        .run_path(&["env", "validate", "--json"], &exported, &[])
        .success()
        .json();
    assert_eq!(back["content_hash"], record["content_hash"]);
}

#[test]
fn native_environment_exports_to_an_sdk_loadable_directory() {
    let Some(py) = sdk_python() else { return };
    let cx = TestContext::new();
    let file = cx.write(
        "env.yml",
        "name: native-env\nimage: python:3.11-slim\nconda_file:\n  channels: [conda-forge]\n  dependencies:\n    - python=3.11\n    - pip:\n        - numpy==1.26.4\nenvironment_variables:\n  A: \"1\"\ndocker:\n  shm_size: 4g\n",
    );
    cx.run_path(&["env", "create", "--no-lock", "-f"], &file, &[])
        .success();
    let out = cx.path("v1");
    cx.run_path(
        &["env", "export", "native-env", "--format", "aml-v1", "-o"],
        &out,
        &[],
    )
    .success();
    let loaded: serde_json::Value = serde_json::from_str(&python(&py, DESCRIBE, &[&out])).unwrap();
    assert_eq!(loaded["name"], "native-env");
    assert_eq!(loaded["version"], "1");
    assert_eq!(loaded["base_image"], "python:3.11-slim");
    assert_eq!(loaded["shm_size"], "4g");
    assert_eq!(loaded["variables"]["A"], "1");
    assert_eq!(loaded["pip"], serde_json::json!(["numpy==1.26.4"]));
    assert_eq!(loaded["channels"], serde_json::json!(["conda-forge"]));
}
