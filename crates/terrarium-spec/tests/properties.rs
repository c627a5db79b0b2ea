//! Property tests: the content hash ignores order where order does not matter and metadata,
//! notices order where it does, and every format round-trips what it can carry.
//!
//! The round trips are counted per format over the run, and each format must compare a share
//! of the cases: a change that makes a format stop being compared fails the test instead of
//! passing unseen. Run with `--nocapture` to see the counts.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;

use common::{Floor, Tally, EXPORTS};
use proptest::prelude::*;
use proptest::sample::subsequence;
use proptest::test_runner::TestRunner;
use terrarium_spec::content_hash;
use terrarium_spec::formats::{self, Format};
use terrarium_spec::model::{Conda, Definition, Inference, PipRequirement, Route, Runtime};

const PIP: &[&str] = &[
    "numpy==1.26.4",
    "scikit-learn>=1.5,<2",
    "pandas[parquet]>=2.2",
    "torch==2.5.1+cpu",
    "requests ; python_version >= \"3.8\"",
    "mlflow-skinny~=2.16",
    "tqdm @ https://files.example.org/tqdm-4.66.5-py3-none-any.whl",
    "Flask>=3",
    "pyyaml!=6.0.0",
];

const CONDA: &[&str] = &[
    "python=3.11",
    "numpy>=1.26,<2",
    "conda-forge::pandas=2.2",
    "pip",
    "openjdk=17",
    "libgomp",
    "scipy 1.13.*",
    "xgboost=2.1=cpu*",
];

const CHANNELS: &[&str] = &[
    "conda-forge",
    "defaults",
    "nodefaults",
    "pytorch",
    "https://repo.example.org/conda/main",
];

const IMAGES: &[&str] = &[
    "python:3.11-slim",
    "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
    "localhost:5000/base@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
];

fn text() -> impl Strategy<Value = String> {
    // Printable text that tries YAML's corners: leading dashes, colons, quotes, numbers, `#`.
    prop_oneof![
        "[ -~]{0,24}".prop_filter("no secret syntax", |s| !s.contains("${")),
        Just("3.10".to_string()),
        Just("true".to_string()),
        Just("- dash".to_string()),
        Just("a: b # c".to_string()),
        Just("'quoted' \"double\"".to_string()),
        Just("${secret:HF_TOKEN}".to_string()),
        Just("ünïcödé ✓".to_string()),
    ]
}

fn definition(with_conda: bool) -> impl Strategy<Value = Definition> {
    let pip = subsequence(PIP, 0..=PIP.len());
    let conda = subsequence(CONDA, 1..=CONDA.len());
    let channels = subsequence(CHANNELS, 1..=3);
    let vars = proptest::collection::btree_map("[A-Z_][A-Z0-9_]{0,8}", text(), 0..4);
    let tags = proptest::collection::btree_map("[a-z]{1,6}", text(), 0..3);
    let docker = (
        proptest::option::of(proptest::sample::select(IMAGES)),
        proptest::option::of(Just("16g")),
        any::<bool>(),
        proptest::option::of(Just("linux/arm64")),
    );
    let spark = (
        subsequence(
            &[
                "io.delta:delta-spark_2.12:3.2.0",
                "org.apache.hadoop:hadoop-aws:3.3.4",
            ][..],
            0..=2,
        ),
        any::<bool>(),
    );
    let misc = (
        proptest::option::of(text()),
        tags,
        proptest::option::of(proptest::sample::select(&["3.10", "3.11", "3.12"][..])),
        any::<bool>(),
        proptest::option::of(Just("https://pypi.example.org/simple")),
    );
    (pip, conda, channels, vars, docker, spark, misc).prop_map(
        move |(pip, conda, channels, vars, docker, spark, misc)| {
            let (description, tags, python_version, inference, index_url) = misc;
            let mut d = Definition {
                name: "prop".to_string(),
                description,
                tags,
                environment_variables: vars,
                ..Definition::default()
            };
            d.python.pip = pip.into_iter().map(PipRequirement::new).collect();
            d.python.index.index_url = index_url.map(str::to_string);
            if with_conda {
                d.conda = Some(Conda {
                    channels: channels.into_iter().map(str::to_string).collect(),
                    dependencies: conda.into_iter().map(str::to_string).collect(),
                });
            } else {
                d.python.version = python_version.map(str::to_string);
            }
            d.docker.base_image = docker.0.map(str::to_string);
            d.docker.shm_size = docker.1.map(str::to_string);
            d.docker.gpu = docker.2;
            d.docker.platform = docker.3.map(str::to_string);
            d.spark.packages = spark.0.into_iter().map(str::to_string).collect();
            d.spark.precache = spark.1;
            if inference {
                d.inference = Some(Inference {
                    scoring_route: Some(Route {
                        path: "/score".into(),
                        port: 5001,
                    }),
                    ..Inference::default()
                });
            }
            if !d.has_packages() && d.docker.base_image.is_some() {
                d.runtime = Runtime::Docker;
            }
            d.normalize();
            d
        },
    )
}

/// The share of the run's cases (in percent) whose round trip each format must compare: whole
/// (but for the fields it drops), and at all (whole, or but for the fields its notes say it
/// changes). Measured over runs of 258 cases: native and requirements compare every case
/// whole; aml-v2, aml-v1 and conda 69-79% whole (not the pip-only environments with a Python
/// version, which they write as conda ones) and the rest but for those fields; dockerfile
/// none whole (it writes the packages as build steps) and every case but for those. The
/// floors under 100% leave a margin for the run's random cases.
const FLOOR_PERCENT: &[Floor] = &[
    Floor::new(Format::Native, 100, 100),
    Floor::new(Format::AmlV2, 60, 100),
    Floor::new(Format::AmlV1, 60, 100),
    Floor::new(Format::Conda, 60, 100),
    Floor::new(Format::Requirements, 100, 100),
    Floor::new(Format::Dockerfile, 0, 100),
];

fn shuffled(d: &Definition, seed: u64) -> Definition {
    let mut d = d.clone();
    let rotate = |n: usize| if n == 0 { 0 } else { (seed as usize) % n };
    let n = d.python.pip.len();
    d.python.pip.rotate_left(rotate(n));
    d.python.pip.reverse();
    if let Some(conda) = &mut d.conda {
        let n = conda.dependencies.len();
        conda.dependencies.rotate_left(rotate(n));
    }
    // Spelling variants that mean the same thing.
    for r in &mut d.python.pip {
        r.spec = r
            .spec
            .replace(">=", " >= ")
            .replace("scikit-learn", "Scikit_Learn");
    }
    d.name = format!("other-{seed}");
    d.version = Some(seed.to_string());
    d.description = Some(format!("changed {seed}"));
    d.tags = BTreeMap::from([("k".to_string(), seed.to_string())]);
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn hash_ignores_order_spelling_and_metadata(d in definition(true), seed in 1u64..1000) {
        prop_assert_eq!(content_hash(&d), content_hash(&shuffled(&d, seed)));
    }

    #[test]
    fn hash_ignores_order_without_conda(d in definition(false), seed in 1u64..1000) {
        prop_assert_eq!(content_hash(&d), content_hash(&shuffled(&d, seed)));
    }

    #[test]
    fn hash_sees_channel_order(d in definition(true)) {
        let mut swapped = d.clone();
        let channels = &mut swapped.conda.as_mut().unwrap().channels;
        prop_assume!(channels.len() >= 2);
        channels.swap(0, 1);
        prop_assert_ne!(content_hash(&d), content_hash(&swapped));
    }

    #[test]
    fn hash_sees_content_changes(d in definition(true)) {
        let mut changed = d.clone();
        changed.environment_variables.insert("TERRARIUM_PROP".into(), "1".into());
        prop_assert_ne!(content_hash(&d), content_hash(&changed));
        let mut changed = d.clone();
        changed.python.pip.push(PipRequirement::new("zzz-extra==1"));
        prop_assert_ne!(content_hash(&d), content_hash(&changed));
    }

    #[test]
    fn native_round_trip_is_exact(d in prop_oneof![definition(true), definition(false)]) {
        let exported = formats::export(&d, Format::Native).unwrap();
        prop_assert!(exported.dropped.is_empty());
        let mut back = common::write_and_import(&exported, Format::Native).map_err(TestCaseError::fail)?;
        back.normalize();
        // Everything survives, metadata included.
        prop_assert_eq!(&back.description, &d.description);
        prop_assert_eq!(&back.tags, &d.tags);
        prop_assert_eq!(content_hash(&back), content_hash(&d));
    }
}

#[test]
fn every_format_round_trips_what_it_carries() {
    let config = ProptestConfig {
        // Failures are saved in, and replayed from, properties.proptest-regressions.
        source_file: Some(file!()),
        ..ProptestConfig::with_cases(256)
    };
    let cases = RefCell::new(0usize);
    let tally = RefCell::new(Tally::default());
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop_oneof![definition(true), definition(false)], |d| {
        *cases.borrow_mut() += 1;
        for format in EXPORTS {
            let Ok(exported) = formats::export(&d, format) else {
                tally.borrow_mut().refused(format);
                continue;
            };
            let compared =
                common::round_trip(&d, format, &exported).map_err(TestCaseError::fail)?;
            tally.borrow_mut().compared(format, compared);
        }
        Ok(())
    });
    if let Err(err) = result {
        panic!("{err}");
    }
    tally
        .into_inner()
        .assert_shares("round trips", cases.into_inner(), FLOOR_PERCENT);
}
