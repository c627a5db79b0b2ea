//! Exports through the real CLI: every format's export reads back with `env create -f` and no
//! other flag, to the same content; `-o` makes what it names; detection and messages for
//! definitions as users write them.

mod common;

use std::path::{Path, PathBuf};

use common::{Run, TestContext};

/// An Azure ML v2 folder as users keep it: the YAML, its conda file beside it, and a build
/// context holding the Dockerfile and a file it copies.
fn aml_v2_folder(cx: &TestContext, dir: &str) -> PathBuf {
    cx.write(
        &format!("{dir}/environment.yml"),
        "\
$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json
name: scoring
version: 1
description: Scores transactions.
tags:
  team: risk
build:
  path: docker-context
  dockerfile_path: Dockerfile
conda_file: conda.yml
",
    );
    cx.write(
        &format!("{dir}/conda.yml"),
        "\
name: scoring
channels:
  - conda-forge
dependencies:
  - python=3.11
  - numpy=1.26
  - pip
  - pip:
      - scikit-learn==1.5.2
variables:
  OMP_NUM_THREADS: \"4\"
",
    );
    cx.write(
        &format!("{dir}/docker-context/Dockerfile"),
        "FROM mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04\nCOPY score.py /app/\n",
    );
    cx.write(
        &format!("{dir}/docker-context/score.py"),
        "def run(data):\n    return data\n",
    );
    cx.path(dir)
}

fn create(cx: &TestContext, path: &Path, extra: &[&str]) -> serde_json::Value {
    cx.run_path(&["env", "create", "--no-lock", "--json", "-f"], path, extra)
        .success()
        .json()
}

fn export(cx: &TestContext, reference: &str, format: &str, out: &Path) -> Run {
    cx.run_path(
        &["env", "export", reference, "--format", format, "-o"],
        out,
        &[],
    )
}

/// Each export format, with a definition it can carry whole, exported to a path whose folders
/// do not exist yet and read back with no `--format`: same content hash, format detected.
#[test]
fn every_export_reads_back_to_the_same_content() {
    let cx = TestContext::new();
    // The sources, one per shape of definition.
    let native = cx.write(
        "src/spark.yml",
        "\
name: spark-job
runtime: spark
python:
  version: \"3.11\"
  pip:
    - pyspark==3.5.1
environment_variables:
  SPARK_LOCAL_IP: 127.0.0.1
docker:
  shm_size: 8g
spark:
  packages:
    - org.apache.hadoop:hadoop-azure:3.3.4
  precache: false
",
    );
    let aml_v2 = aml_v2_folder(&cx, "src/aml");
    let conda = cx.write(
        "src/environment.yml",
        "\
channels:
  - conda-forge
  - bioconda
dependencies:
  - python=3.12
  - samtools=1.20
  - pip:
      - pysam==0.22.1
variables:
  LC_ALL: C.UTF-8
",
    );
    let requirements = cx.write(
        "src/requirements.txt",
        "\
# Pinned by pip-compile.
--index-url https://pypi.example.com/simple
--extra-index-url https://mirror.example.com/simple
requests==2.32.3 \\
    --hash=sha256:70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6
urllib3>=2; python_version >= \"3.10\"
",
    );
    // A Dockerfile that copies from its folder: the folder is its build context.
    let dockerfile = cx.write(
        "src/server/Dockerfile",
        "FROM python:3.12-slim\nRUN pip install --no-cache-dir uvicorn==0.30.6\nCOPY app.py /srv/\nCMD [\"uvicorn\", \"app:app\"]\n",
    );
    cx.write(
        "src/server/app.py",
        "async def app(scope, receive, send):\n    pass\n",
    );
    let sources: [(&str, &Path, &[&str]); 5] = [
        ("native", &native, &[]),
        ("aml-v2", &aml_v2, &[]),
        ("conda", &conda, &["--name", "genomics"]),
        ("requirements", &requirements, &["--name", "fetcher"]),
        ("dockerfile", &dockerfile, &["--name", "server"]),
    ];
    let mut originals = std::collections::BTreeMap::new();
    for (format, path, extra) in sources {
        let record = create(&cx, path, extra);
        assert_eq!(record["source"]["format"], format, "{record}");
        originals.insert(format, record);
    }
    let reference = |format: &str| {
        let r = &originals[format];
        format!(
            "{}:{}",
            r["name"].as_str().unwrap(),
            r["version"].as_str().unwrap()
        )
    };

    // (case, format, environment, where to write, what to read back, read back as)
    let cases = [
        (
            "native",
            "native",
            "native",
            "out/native/a/spark.yml",
            "out/native/a/spark.yml",
            "native",
        ),
        (
            "aml-v2 file",
            "aml-v2",
            "aml-v2",
            "out/v2file/b/environment.yml",
            "out/v2file/b",
            "aml-v2",
        ),
        (
            "aml-v2 dir",
            "aml-v2",
            "aml-v2",
            "out/v2dir/c",
            "out/v2dir/c",
            "aml-v2",
        ),
        (
            "aml-v1 dir",
            "aml-v1",
            "conda",
            "out/v1/d",
            "out/v1/d",
            "aml-v1",
        ),
        (
            "conda",
            "conda",
            "conda",
            "out/conda/e/environment.yml",
            "out/conda/e/environment.yml",
            "conda",
        ),
        (
            "requirements",
            "requirements",
            "requirements",
            "out/req/f/requirements.txt",
            "out/req/f/requirements.txt",
            "requirements",
        ),
        (
            "dockerfile",
            "dockerfile",
            "dockerfile",
            "out/docker/g/Dockerfile",
            "out/docker/g/Dockerfile",
            "dockerfile",
        ),
    ];
    let mut compared = 0;
    for &(case, format, source, out, read, read_as) in &cases {
        let original = &originals[source];
        let run = export(&cx, &reference(source), format, &cx.path(out)).success();
        assert!(
            !run.stderr.contains("cannot carry") && !run.stderr.contains("warning"),
            "{case}: {}",
            run.stderr
        );
        assert!(cx.path(out).exists(), "{case}: nothing at {out}");
        // Names are only needed where the format has no place for one.
        let name = original["name"].as_str().unwrap();
        let extra: &[&str] = match format {
            "requirements" | "dockerfile" => &["--name", name],
            _ => &[],
        };
        // The format as detected (a re-registration of the same content answers with the
        // version that has it, whose source is the original file).
        let validated = cx
            .run_path(&["env", "validate", "--json"], &cx.path(read), &[])
            .success()
            .json();
        assert_eq!(validated["format"], read_as, "{case}");
        let back = create(&cx, &cx.path(read), extra);
        assert_eq!(back["name"], original["name"], "{case}");
        assert_eq!(
            back["content_hash"], original["content_hash"],
            "{case}: the content changed on the way\nexport stderr:\n{}",
            run.stderr
        );
        assert_eq!(
            back["version"], original["version"],
            "{case}: a new version"
        );
        compared += 1;
    }
    eprintln!(
        "export round trips compared: {compared} (of {} cases)",
        cases.len()
    );
    assert_eq!(compared, 7, "every export format and layout was compared");
    // The build contexts' files came along (their digests are in the hashes compared).
    assert!(originals["dockerfile"]["definition"]["docker"]["build_context_digest"].is_string());
    for file in [
        "out/v2file/b/docker-context/score.py",
        "out/v2dir/c/docker-context/score.py",
        "out/docker/g/app.py",
    ] {
        assert!(cx.path(file).is_file(), "{file}");
    }
}

/// `-o DIR/NAME.yml` names the YAML of an Azure ML v2 export; its companions go beside it.
/// Parents are made; existing files are named and kept unless `--force`.
#[test]
fn an_aml_v2_export_named_by_its_yaml() {
    let cx = TestContext::new();
    create(&cx, &aml_v2_folder(&cx, "src"), &[]);
    let yaml = cx.path("deploy/envs/scoring.yaml");
    let run = export(&cx, "scoring", "aml-v2", &yaml).success();
    assert!(yaml.is_file(), "{}", run.stderr);
    let dir = cx.path("deploy/envs");
    assert!(dir.join("conda.yml").is_file());
    assert!(dir.join("docker-context/Dockerfile").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.join("docker-context/score.py")).unwrap(),
        "def run(data):\n    return data\n",
        "the build context's files come from the workspace"
    );
    assert!(
        run.stderr
            .contains("scoring.yaml, with conda.yml, docker-context/ beside it"),
        "{}",
        run.stderr
    );
    let text = std::fs::read_to_string(&yaml).unwrap();
    assert!(text.contains("conda_file: conda.yml"), "{text}");
    assert!(entries(&dir).iter().all(|n| !n.starts_with(".terrarium")));

    // Again: refused, naming what is there, and nothing is touched.
    std::fs::write(dir.join("conda.yml"), "edited by hand\n").unwrap();
    let run = export(&cx, "scoring", "aml-v2", &yaml).user_error();
    assert!(
        run.stderr
            .contains(&format!("{} already exist", yaml.display()))
            || run.stderr.contains(&yaml.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("conda.yml"), "{}", run.stderr);
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("conda.yml")).unwrap(),
        "edited by hand\n"
    );
    cx.run_path(
        &[
            "env", "export", "scoring", "--format", "aml-v2", "--force", "-o",
        ],
        &yaml,
        &[],
    )
    .success();
    assert_ne!(
        std::fs::read_to_string(dir.join("conda.yml")).unwrap(),
        "edited by hand\n"
    );
    assert!(entries(&dir).iter().all(|n| !n.starts_with(".terrarium")));

    // Read back from the folder, or from the file.
    let original = cx
        .run(&["env", "show", "scoring", "--json"])
        .success()
        .json();
    for path in [&dir, &yaml] {
        let back = cx
            .run_path(&["env", "validate", "--json"], path, &[])
            .success()
            .json();
        assert_eq!(back["format"], "aml-v2");
        assert_eq!(back["content_hash"], original["content_hash"]);
    }

    // The YAML cannot take its companion's name.
    let run = export(&cx, "scoring", "aml-v2", &cx.path("other/conda.yml")).user_error();
    assert!(
        run.stderr.contains("writes `conda.yml` beside"),
        "{}",
        run.stderr
    );
    assert!(!cx.path("other/conda.yml").exists());
    // Azure ML v1 is a folder of fixed names.
    let run = export(&cx, "scoring", "aml-v1", &cx.path("v1/env.yml")).user_error();
    assert!(
        run.stderr.contains("azureml_environment.json") && run.stderr.contains("-o DIR"),
        "{}",
        run.stderr
    );
    export(
        &cx,
        "scoring",
        "aml-v1",
        &cx.path("v1/azureml_environment.json"),
    )
    .success();
    assert!(cx.path("v1/conda_dependencies.yml").is_file());
    // Single-file formats: a folder is not a file name.
    let run = export(&cx, "scoring", "conda", &cx.path("deploy")).user_error();
    assert!(
        run.stderr.contains("is a folder") && run.stderr.contains("environment.yml"),
        "{}",
        run.stderr
    );
    // --force replaces an earlier export folder, never a folder of other things.
    std::fs::create_dir_all(cx.path("project/src")).unwrap();
    std::fs::write(cx.path("project/src/main.py"), "print()\n").unwrap();
    let run = cx
        .run_path(
            &[
                "env", "export", "scoring", "--format", "aml-v2", "--force", "-o",
            ],
            &cx.path("project"),
            &[],
        )
        .user_error();
    assert!(
        run.stderr.contains("does not hold an export"),
        "{}",
        run.stderr
    );
    assert!(cx.path("project/src/main.py").is_file());
}

/// A folder whose build context is the folder itself holds a Dockerfile beside its YAML: it is
/// still the Azure ML v2 environment, not a Dockerfile one.
#[test]
fn a_folder_that_is_its_own_build_context() {
    let cx = TestContext::new();
    cx.write(
        "app/environment.yml",
        "\
name: webapp
build:
  path: .
  dockerfile_path: Dockerfile
conda_file: conda.yml
",
    );
    cx.write(
        "app/conda.yml",
        "# The web app's packages.\nchannels: [conda-forge]\ndependencies: [python=3.11, flask=3.0]\n",
    );
    cx.write(
        "app/Dockerfile",
        "FROM python:3.11-slim\nCOPY conda.yml app.py /srv/\n",
    );
    cx.write("app/app.py", "import flask\n");
    // The definition's own files are the context's too, unless .dockerignore says otherwise.
    cx.write("app/.dockerignore", "environment.yml\n");
    let original = create(&cx, &cx.path("app"), &[]);
    assert_eq!(original["source"]["format"], "aml-v2");

    let out = cx.path("exported/webapp");
    let run = export(&cx, "webapp", "aml-v2", &out).success();
    for name in [
        "environment.yml",
        "conda.yml",
        "Dockerfile",
        "app.py",
        ".dockerignore",
    ] {
        assert!(out.join(name).is_file(), "{name}: {}", run.stderr);
    }
    let back = cx
        .run_path(&["env", "validate", "--json"], &out, &[])
        .success()
        .json();
    assert_eq!(back["format"], "aml-v2", "not read as a Dockerfile");
    // conda.yml is in the context and the export writes its own: said at export, and the
    // content read back is another one (so `env create` would refuse its version 1).
    assert!(
        run.stderr.contains("the export rewrites conda.yml in it")
            && run.stderr.contains("content hash differ"),
        "{}",
        run.stderr
    );
    assert_ne!(back["content_hash"], original["content_hash"]);

    // With the definition's files kept out of the context, the round trip is exact.
    cx.write("app/.dockerignore", "environment.yml\nconda.yml\n");
    let original = create(&cx, &cx.path("app"), &[]);
    let out = cx.path("exported/again");
    let run = export(&cx, "webapp", "aml-v2", &out).success();
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    let back = create(&cx, &out, &[]);
    assert_eq!(back["source"]["format"], "aml-v2");
    assert_eq!(back["content_hash"], original["content_hash"]);
    let validated = cx
        .run_path(&["env", "validate", "--json"], &out, &[])
        .success()
        .json();
    assert_eq!(validated["format"], "aml-v2");
    assert_eq!(
        validated["files"][0],
        format!("{}", out.join("environment.yml").display())
    );
}

/// Azure ML v2 files are reported as `aml-v2` wherever a format is shown; Terrarium's own
/// keys make a file `native`.
#[test]
fn azure_ml_v2_files_are_reported_as_such() {
    let cx = TestContext::new();
    let with_schema = cx.write(
        "a/environment.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\nname: a\nimage: mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cpu-inference:latest\n",
    );
    let keys_only = cx.write(
        "b/env.yaml",
        "name: b\nimage: python:3.11-slim\nconda_file: conda.yaml\n",
    );
    cx.write(
        "b/conda.yaml",
        "channels: [conda-forge]\ndependencies: [python=3.11, pandas=2.2]\n",
    );
    let native = cx.write(
        "c/environment.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\nname: c\nimage: python:3.11-slim\nruntime: docker\npython:\n  user_managed: true\n",
    );
    for (path, format) in [
        (&with_schema, "aml-v2"),
        (&keys_only, "aml-v2"),
        (&native, "native"),
    ] {
        let validated = cx
            .run_path(&["env", "validate", "--json"], path, &[])
            .success()
            .json();
        assert_eq!(validated["format"], format, "{}", path.display());
        let plain = cx.run_path(&["env", "validate"], path, &[]).success();
        assert!(
            plain.stdout.contains(&format!("valid {format} definition")),
            "{}",
            plain.stdout
        );
        let run = cx
            .run_path(&["env", "create", "--no-lock", "-f"], path, &[])
            .success();
        assert!(
            run.stderr.contains(&format!("as {format}")),
            "{}",
            run.stderr
        );
        let shown = cx
            .run(&["env", "show", run.stdout.trim(), "--json"])
            .success()
            .json();
        assert_eq!(shown["source"]["format"], format, "stored as {format}");
    }
    // Asking for aml-v2 on a native file reads it, and says what Azure ML would refuse.
    let run = cx
        .run_path(&["env", "validate", "--format", "aml-v2"], &native, &[])
        .success();
    assert!(
        run.stderr
            .contains("`runtime`, `python` are Terrarium extensions, not Azure ML v2"),
        "{}",
        run.stderr
    );
}

/// A conda file named a little differently from what the YAML says: the error still names
/// the file, line and field, and the file that is there.
#[test]
fn a_missing_conda_file_names_the_one_beside_it() {
    let cx = TestContext::new();
    let before = cx.snapshot();
    for (written, present) in [
        ("conda.yml", "conda.yaml"),
        ("conda_dependencies.yaml", "conda_dependencies.yml"),
        ("Conda.yml", "conda.yml"),
    ] {
        let dir = format!("case-{present}");
        let yaml = cx.write(
            &format!("{dir}/environment.yml"),
            format!("name: near\nimage: python:3.11-slim\nconda_file: {written}\n"),
        );
        cx.write(
            &format!("{dir}/{present}"),
            "channels: [conda-forge]\ndependencies: [numpy]\n",
        );
        let run = cx
            .run_path(&["env", "create", "--no-lock", "-f"], &yaml, &[])
            .user_error();
        assert!(
            run.stderr
                .contains(&format!("{}:3: field `conda_file`", yaml.display()))
                && run.stderr.contains(&format!("did you mean `{present}`?")),
            "{}",
            run.stderr
        );
    }
    assert_eq!(cx.snapshot(), before);
}

/// A requirements file with nothing in it yet imports with a warning, and the environment
/// exports.
#[test]
fn an_empty_requirements_file() {
    let cx = TestContext::new();
    let file = cx.write(
        "requirements.txt",
        "# Filled in once the model is chosen.\n\n# numpy\n",
    );
    let run = cx
        .run_path(
            &["env", "create", "--no-lock", "--name", "placeholder", "-f"],
            &file,
            &[],
        )
        .success();
    assert!(
        run.stderr.contains("warning: ") && run.stderr.contains("has no requirements"),
        "{}",
        run.stderr
    );
    let original = cx
        .run(&["env", "show", "placeholder", "--json"])
        .success()
        .json();
    for (format, out, read) in [
        (
            "requirements",
            "out/r/requirements.txt",
            "out/r/requirements.txt",
        ),
        ("native", "out/n/environment.yml", "out/n/environment.yml"),
        ("aml-v2", "out/v2/environment.yml", "out/v2"),
        ("aml-v1", "out/v1", "out/v1"),
        ("conda", "out/c/environment.yml", "out/c/environment.yml"),
    ] {
        let run = export(&cx, "placeholder", format, &cx.path(out)).success();
        assert!(
            !run.stderr.contains("cannot carry"),
            "{format}: {}",
            run.stderr
        );
        let back = cx
            .run_path(&["env", "validate", "--json"], &cx.path(read), &[])
            .success()
            .json();
        assert_eq!(back["content_hash"], original["content_hash"], "{format}");
    }
    // A Dockerfile of it is the Python it asks for.
    let run = export(
        &cx,
        "placeholder",
        "dockerfile",
        &cx.path("out/d/Dockerfile"),
    )
    .success();
    let text = std::fs::read_to_string(cx.path("out/d/Dockerfile")).unwrap();
    assert!(
        text.contains("FROM python:3.11-slim"),
        "{text}\n{}",
        run.stderr
    );
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// `env create --json --export FORMAT` and `env show --json --export FORMAT` add the version's
/// files in that format, the same files `env export` writes, to the record, whose other fields
/// are those printed without `--export`.
#[test]
fn create_and_show_add_an_export_to_their_json() {
    let cx = TestContext::new();
    let conda = cx.write(
        "src/environment.yml",
        "\
name: train
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
    - numpy==1.26.4
",
    );
    let created = create(&cx, &conda, &["--export", "aml-v1"]);
    let answer = created["export"].clone();
    assert_eq!(answer["format"], "aml-v1");
    let mut record = created.clone();
    record.as_object_mut().unwrap().remove("export");
    let shown = cx
        .run(&["env", "show", "train:1", "--json"])
        .success()
        .json();
    assert_eq!(record, shown);
    assert!(shown.get("export").is_none());

    // The files are what `env export` writes to a folder.
    let out = cx.path("out");
    export(&cx, "train:1", "aml-v1", &out).success();
    let files = answer["files"].as_array().unwrap();
    let mut names: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["azureml_environment.json", "conda_dependencies.yml"]
    );
    for file in files {
        let written = std::fs::read_to_string(out.join(file["path"].as_str().unwrap())).unwrap();
        assert_eq!(file["content"].as_str().unwrap(), written);
    }

    let shown = cx
        .run(&["env", "show", "train", "--json", "--export", "aml-v1"])
        .success()
        .json();
    assert_eq!(shown, created);

    // A single-file format has one file, of the empty name.
    let conda_export = cx
        .run(&["env", "show", "train", "--json", "--export", "conda"])
        .success()
        .json();
    let file = &conda_export["export"]["files"][0];
    assert_eq!(file["path"], "");
    let stdout = cx
        .run(&["env", "export", "train", "--format", "conda"])
        .success()
        .stdout;
    assert_eq!(file["content"].as_str().unwrap(), stdout);

    // Only with --json, and only in a format that can be written.
    let run = cx.run(&["env", "show", "train", "--export", "aml-v1"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = cx.run(&["env", "show", "train", "--json", "--export", "conda-prefix"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("import-only"), "{}", run.stderr);
}

/// `env list --json --export FORMAT` adds to each record the export `env show --json --export
/// FORMAT` gives it; the records are otherwise those printed without `--export`.
#[test]
fn list_adds_an_export_to_each_record() {
    let cx = TestContext::new();
    for (name, package) in [("train", "numpy==1.26.4"), ("score", "pandas==2.2.2")] {
        let conda = cx.write(
            &format!("{name}/environment.yml"),
            format!(
                "\
name: {name}
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
    - {package}
"
            ),
        );
        create(&cx, &conda, &[]);
    }
    let listed = cx
        .run(&["env", "list", "--json", "--export", "aml-v1"])
        .success()
        .json();
    let plain = cx.run(&["env", "list", "--json"]).success().json();
    let listed = listed.as_array().unwrap();
    let plain = plain.as_array().unwrap();
    // The curated environments are listed too.
    let names: Vec<&str> = listed.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"train") && names.contains(&"score"),
        "{names:?}"
    );
    assert_eq!(listed.len(), plain.len());
    let mut compared = 0;
    for (with_export, without) in listed.iter().zip(plain) {
        assert!(without.get("export").is_none());
        let mut record = with_export.clone();
        record.as_object_mut().unwrap().remove("export");
        assert_eq!(&record, without);
        let reference = format!(
            "{}:{}",
            with_export["name"].as_str().unwrap(),
            with_export["version"].as_str().unwrap()
        );
        let shown = cx
            .run(&["env", "show", &reference, "--json", "--export", "aml-v1"])
            .success()
            .json();
        assert_eq!(with_export, &shown);
        assert_eq!(with_export["export"]["format"], "aml-v1");
        compared += 1;
    }
    assert_eq!(compared, listed.len(), "every listed record was compared");

    // Only with --json, and only in a format that can be written.
    let run = cx.run(&["env", "list", "--export", "aml-v1"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = cx.run(&["env", "list", "--json", "--export", "conda-prefix"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("import-only"), "{}", run.stderr);
}
