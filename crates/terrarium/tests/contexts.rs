//! Docker build contexts are part of their environment: hashed into its content at import
//! (`.dockerignore` honoured), kept in the workspace by digest (locally and through a team
//! server), and used by builds from any directory.

mod common;

use common::server::{bootstrap_token, remote, Server};
use common::TestContext;

const DOCKERFILE: &str = "\
# A training image, in the shape public projects use.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt \\
    # comments inside a continuation are fine
    && rm -rf /root/.cache
COPY src/ ./src/
CMD [\"python\", \"src/train.py\"]
";

fn project(cx: &TestContext, dir: &str) -> std::path::PathBuf {
    cx.write(&format!("{dir}/Dockerfile"), DOCKERFILE);
    cx.write(&format!("{dir}/requirements.txt"), "numpy==1.26.4\n");
    cx.write(&format!("{dir}/src/train.py"), "print('training')\n");
    cx.write(&format!("{dir}/data/big.csv"), "1,2,3\n");
    cx.write(&format!("{dir}/.dockerignore"), "data\n**/__pycache__\n");
    cx.path(dir)
}

#[test]
fn a_dockerfile_that_copies_carries_its_folder() {
    let cx = TestContext::new();
    let dir = project(&cx, "proj");
    let dockerfile = dir.join("Dockerfile");
    let first = cx
        .run_path(
            &["env", "create", "--name", "trainer", "--json", "-f"],
            &dockerfile,
            &[],
        )
        .success()
        .json();
    assert_eq!(first["version"], "1");
    let digest = first["definition"]["docker"]["build_context_digest"]
        .as_str()
        .expect("a context digest")
        .to_string();

    // An ignored file changes nothing; a copied one makes a new version.
    cx.write("proj/data/big.csv", "4,5,6\n");
    cx.write("proj/src/__pycache__/train.cpython-311.pyc", "junk");
    let same = cx
        .run_path(
            &["env", "create", "--name", "trainer", "--json", "-f"],
            &dockerfile,
            &[],
        )
        .success()
        .json();
    assert_eq!(same["version"], "1", "{same}");
    cx.write("proj/requirements.txt", "numpy==2.0.0\n");
    let changed = cx
        .run_path(
            &["env", "create", "--name", "trainer", "--json", "-f"],
            &dockerfile,
            &[],
        )
        .success()
        .json();
    assert_eq!(changed["version"], "2", "{changed}");

    // The original folder is gone: the stored context still builds, from anywhere.
    std::fs::remove_dir_all(&dir).unwrap();
    let out = cx.path("elsewhere/v1");
    cx.run(&[
        "image",
        "dockerfile",
        "trainer:1",
        "-o",
        out.to_str().unwrap(),
    ])
    .success();
    assert_eq!(
        std::fs::read_to_string(out.join("requirements.txt")).unwrap(),
        "numpy==1.26.4\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("Dockerfile")).unwrap(),
        DOCKERFILE
    );
    assert!(out.join("src/train.py").is_file());
    assert!(
        !out.join("data").exists(),
        "ignored files are not part of the context"
    );
    let out2 = cx.path("elsewhere/v2");
    cx.run(&[
        "image",
        "dockerfile",
        "trainer:2",
        "-o",
        out2.to_str().unwrap(),
    ])
    .success();
    assert_eq!(
        std::fs::read_to_string(out2.join("requirements.txt")).unwrap(),
        "numpy==2.0.0\n"
    );
    assert!(digest.starts_with("sha256:"));
}

/// A Dockerfile that copies nothing from its folder has no context: its folder may hold
/// anything.
#[test]
fn a_dockerfile_that_copies_nothing_has_no_context() {
    let cx = TestContext::new();
    cx.write(
        "plain/Dockerfile",
        "FROM python:3.11-slim\nRUN pip install numpy\n",
    );
    cx.write("plain/notes.txt", "unrelated\n");
    let created = cx
        .run_path(
            &["env", "create", "--name", "plain", "--json", "-f"],
            &cx.path("plain/Dockerfile"),
            &[],
        )
        .success()
        .json();
    assert!(
        created["definition"]["docker"]["build_context_digest"].is_null(),
        "{created}"
    );
}

/// Through a team server: the context goes up at registration and comes down for a build on
/// another machine (here: another home, the folder removed); the server keeps only a context
/// whose files are the ones its digest names.
#[test]
fn contexts_travel_through_a_team_server() {
    let cx = TestContext::new();
    let db = format!("sqlite://{}", cx.path("server-ws").display());
    let token = bootstrap_token(&cx, &db, "contributor", "alice");
    let server = Server::start(&cx, &db, &[]);
    let dir = project(&cx, "proj");
    let dockerfile = dir.join("Dockerfile");
    remote(
        &cx,
        &server.url,
        Some(&token),
        &[
            "env",
            "create",
            "--name",
            "trainer",
            "-f",
            dockerfile.to_str().unwrap(),
        ],
    )
    .success();
    // Registering the same folder again sends nothing: the server has the context.
    remote(
        &cx,
        &server.url,
        Some(&token),
        &[
            "env",
            "create",
            "--name",
            "trainer",
            "-f",
            dockerfile.to_str().unwrap(),
        ],
    )
    .success();
    let uploads = cx
        .command_without_workspace()
        .args(["audit", "--db", &db, "--json", "--limit", "1000"])
        .output()
        .unwrap();
    let uploads: common::Run = uploads.into();
    let uploads = uploads.success().json();
    let puts = uploads
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .unwrap_or("")
                .starts_with("PUT /api/v1/contexts/")
        })
        .count();
    assert_eq!(puts, 1, "{uploads}");
    std::fs::remove_dir_all(&dir).unwrap();
    let out = cx.path("other-machine/out");
    remote(
        &cx,
        &server.url,
        Some(&token),
        &[
            "image",
            "dockerfile",
            "trainer",
            "-o",
            out.to_str().unwrap(),
        ],
    )
    .success();
    assert!(out.join("src/train.py").is_file());

    // An archive that is not the context its digest names is refused.
    let digest = format!("sha256:{}", "ab".repeat(32));
    let (status, body) = common::server::http(
        &server.url,
        "PUT",
        &format!("/api/v1/contexts/{digest}"),
        Some(&token),
        Some(b"not a gzipped tar"),
    );
    assert_eq!(status, 400, "{body}");
}
