//! Base images are untrusted input: an OCI layout or a registry names files by digest, and a
//! digest that is not `sha256:` and 64 lowercase hex digits, or a blob whose bytes are not what
//! its digest and size say, must be refused before anything is read or written by that name.
//! Each test builds a malicious base in a temporary directory (or serves one from a tiny HTTP
//! server on 127.0.0.1) and checks that it is refused, with an error naming the digest, and
//! that nothing outside the output folder changed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use terrarium_image::base;

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Every file under `root` but those under `except`, with the digest of its bytes.
fn snapshot(root: &Path, except: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.starts_with(except) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), sha256(&std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// A temporary directory with an OCI layout in `in/base` and the output folder `out`: a
/// digest that climbs three levels from `in/base/blobs/sha256` lands in `in`, and from
/// `out/blobs/sha256` in the root.
struct Case {
    root: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        let case = Case {
            root: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(case.layout().join("blobs/sha256")).unwrap();
        case
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn layout(&self) -> PathBuf {
        self.root().join("in/base")
    }

    fn out(&self) -> PathBuf {
        self.root().join("out")
    }

    fn blobs(&self) -> PathBuf {
        self.out().join("blobs/sha256")
    }

    /// Store `bytes` in the layout under their digest.
    fn blob(&self, bytes: &[u8]) -> Value {
        let digest = sha256(bytes);
        let path = self
            .layout()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        std::fs::write(path, bytes).unwrap();
        json!({"mediaType": "application/octet-stream", "digest": digest, "size": bytes.len()})
    }

    fn index(&self, manifest: Value) {
        let index = json!({"schemaVersion": 2, "manifests": [manifest]});
        std::fs::write(
            self.layout().join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }

    /// A manifest naming `config` and `layers` (descriptors), its descriptor tagged `t`.
    fn manifest(&self, config: Value, layers: Vec<Value>) -> Value {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": terrarium_image::MEDIA_MANIFEST,
            "config": config,
            "layers": layers,
        });
        let mut descriptor = self.blob(&json_bytes(&manifest));
        descriptor["mediaType"] = json!(terrarium_image::MEDIA_MANIFEST);
        descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": "t"});
        descriptor
    }

    fn open(&self) -> Result<base::Base, base::BaseError> {
        let reference = format!("oci:{}:t", self.layout().display());
        base::open(&reference, &self.blobs(), &[])
    }

    /// Open the base, expecting a refusal that says `expected`; nothing outside `out` changed.
    #[track_caller]
    fn refused(&self, expected: &str) -> String {
        let before = snapshot(self.root(), &self.out());
        let result = self.open();
        assert_eq!(snapshot(self.root(), &self.out()), before);
        let err = match result {
            Ok(base) => panic!("the base was accepted: {base:?}"),
            Err(err) => chain(&err),
        };
        assert!(err.contains(expected), "{err}");
        err
    }
}

/// The error and its causes, as the CLI prints them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// JSON ending with a newline, which a test may turn into a space: other bytes, same size,
/// still valid JSON.
fn json_bytes(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap();
    bytes.push(b'\n');
    bytes
}

fn config_json() -> Vec<u8> {
    json_bytes(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(b"layer tar")]},
    }))
}

#[test]
fn a_config_digest_climbing_out_of_the_layout_is_refused() {
    let case = Case::new();
    // A file next to the layout that the image must never see.
    std::fs::write(
        case.root().join("in/secret.json"),
        br#"{"config":{"Env":["TOKEN=hunter2"]}}"#,
    )
    .unwrap();
    let layer = case.blob(b"layer");
    let config = json!({"mediaType": terrarium_image::MEDIA_CONFIG, "digest": "sha256:../../../secret.json", "size": 36});
    let manifest = case.manifest(config, vec![layer]);
    case.index(manifest);
    let err = case.refused("malformed digest");
    assert!(err.contains("sha256:../../../secret.json"), "{err}");
}

#[test]
fn a_layer_digest_climbing_out_of_the_output_is_refused() {
    let case = Case::new();
    // From `in/base/blobs/sha256` the digest names `in/escaped`; from `out/blobs/sha256`, the
    // root's `escaped`.
    std::fs::write(case.root().join("in/escaped"), b"written outside").unwrap();
    let config = case.blob(&config_json());
    let layer = json!({"mediaType": terrarium_image::MEDIA_LAYER, "digest": "sha256:../../../escaped", "size": 15});
    let manifest = case.manifest(config, vec![layer]);
    case.index(manifest);
    case.refused("malformed digest");
    assert!(!case.root().join("escaped").exists());
}

#[test]
fn uppercase_hex_in_the_index_is_refused() {
    let case = Case::new();
    let config = case.blob(&config_json());
    let layer = case.blob(b"layer");
    let mut manifest = case.manifest(config, vec![layer]);
    // The same blob under the uppercase name too, so that only the digest's form is wrong.
    let digest = manifest["digest"].as_str().unwrap().to_string();
    let upper = format!(
        "sha256:{}",
        digest.trim_start_matches("sha256:").to_uppercase()
    );
    let blobs = case.layout().join("blobs/sha256");
    std::fs::copy(
        blobs.join(digest.trim_start_matches("sha256:")),
        blobs.join(upper.trim_start_matches("sha256:")),
    )
    .unwrap();
    manifest["digest"] = json!(upper);
    case.index(manifest);
    let err = case.refused("malformed digest");
    assert!(err.contains(&upper), "{err}");
}

/// An index.json far larger than any image's is refused before it is read whole.
#[test]
fn an_enormous_index_is_refused() {
    let case = Case::new();
    let config = case.blob(&config_json());
    let layer = case.blob(b"layer");
    let manifest = case.manifest(config, vec![layer]);
    case.index(manifest);
    let index = case.layout().join("index.json");
    let mut text = std::fs::read(&index).unwrap();
    text.extend(std::iter::repeat_n(b' ', 5 * 1024 * 1024));
    std::fs::write(&index, text).unwrap();
    let err = case.refused("larger than 4 MiB");
    assert!(err.contains("index.json"), "{err}");
}

/// The manifest, the config and a layer in turn: stored under the digest of other bytes.
#[test]
fn a_blob_whose_bytes_are_not_its_digest_is_refused() {
    let mut compared = 0;
    for tampered in ["manifest", "config", "layer"] {
        let case = Case::new();
        let config = case.blob(&config_json());
        let layer = case.blob(b"layer\n");
        let manifest = case.manifest(config.clone(), vec![layer.clone()]);
        case.index(manifest.clone());
        let victim = match tampered {
            "manifest" => &manifest,
            "config" => &config,
            _ => &layer,
        };
        let digest = victim["digest"].as_str().unwrap();
        let size = victim["size"].as_u64().unwrap() as usize;
        let path = case
            .layout()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        // Same size, other bytes, still valid JSON: only the hash can tell.
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes[size - 1], b'\n');
        bytes[size - 1] = b' ';
        std::fs::write(&path, &bytes).unwrap();
        let err = case.refused(digest);
        assert!(err.contains(&sha256(&bytes)), "{tampered}: {err}");
        assert!(
            err.contains(&case.layout().display().to_string()),
            "{tampered}: {err}"
        );
        assert!(
            !case
                .blobs()
                .join(digest.trim_start_matches("sha256:"))
                .exists(),
            "{tampered}: the blob was kept"
        );
        compared += 1;
    }
    assert_eq!(compared, 3);
}

#[test]
fn a_descriptor_size_that_is_not_the_blobs_is_refused() {
    let case = Case::new();
    let config = case.blob(&config_json());
    let mut layer = case.blob(b"layer");
    layer["size"] = json!(4);
    let manifest = case.manifest(config, vec![layer.clone()]);
    case.index(manifest);
    let err = case.refused(layer["digest"].as_str().unwrap());
    assert!(err.contains("5 bytes, not 4"), "{err}");
}

#[test]
fn unknown_fields_of_the_base_config_are_not_copied() {
    let case = Case::new();
    let config = json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": "arm64",
        "os": "linux",
        "x-leak": "top-level secret",
        "config": {
            "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"],
            "Cmd": ["/bin/sh"],
            "User": "1000",
            "Labels": {"vendor": "base"},
            "Healthcheck": {"Test": ["CMD", "steal"]},
            "OnBuild": ["RUN steal"],
            "x-hidden": "nested secret",
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(b"layer tar")], "x-rootfs": 1},
        "history": [{"created_by": "base", "x-history": "secret"}],
    });
    let config = case.blob(&serde_json::to_vec(&config).unwrap());
    let layer = case.blob(b"layer");
    let manifest = case.manifest(config, vec![layer]);
    case.index(manifest);
    let base = case.open().unwrap();

    let staging = case.root().join("staging");
    std::fs::create_dir_all(staging.join("bin")).unwrap();
    std::fs::write(staging.join("bin/tool"), b"#!/bin/sh\n").unwrap();
    let input = terrarium_image::BuildInput {
        staging,
        target_prefix: "/opt/terrarium/envs/x".into(),
        env: vec![("MODE".into(), "fast".into())],
        labels: BTreeMap::new(),
        metadata: Vec::new(),
        cmd: Vec::new(),
        architecture: "amd64".into(),
        base: Some(base),
        extra: Vec::new(),
        entrypoint: Vec::new(),
        exposed_ports: Vec::new(),
        layer_cache: None,
    };
    let image = terrarium_image::build(&input, &case.blobs()).unwrap();
    let text = String::from_utf8(image.config.clone()).unwrap();
    for secret in [
        "x-leak",
        "x-hidden",
        "x-rootfs",
        "x-history",
        "Healthcheck",
        "OnBuild",
        "steal",
    ] {
        assert!(!text.contains(secret), "{secret} was copied: {text}");
    }
    // The known fields are kept.
    let built: Value = serde_json::from_slice(&image.config).unwrap();
    assert_eq!(built["created"], "2024-01-01T00:00:00Z");
    assert_eq!(built["architecture"], "arm64");
    assert_eq!(built["config"]["User"], "1000");
    assert_eq!(built["config"]["Cmd"], json!(["/bin/sh"]));
    assert_eq!(built["config"]["Labels"]["vendor"], "base");
    assert!(built["config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&json!("LANG=C.UTF-8")));
    assert_eq!(
        built["rootfs"]["diff_ids"][0],
        sha256(b"layer tar").as_str()
    );
    assert_eq!(built["history"][0]["created_by"], "base");
}

/// What the test registry answers to one path.
struct Response {
    content_type: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// A registry on 127.0.0.1 that answers each path from `routes` (404 otherwise), one request
/// per connection; its port. Bound before it is returned, so it is ready at once.
fn serve(routes: BTreeMap<String, Response>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let mut parts = request.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let head = |status: &str, content_type: &str, extra: &str, length: usize| {
                format!("HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n{extra}connection: close\r\n\r\n")
            };
            let _ = match routes.get(path) {
                Some(response) => {
                    let extra: String = response
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}\r\n"))
                        .collect();
                    let mut bytes = head(
                        "200 OK",
                        &response.content_type,
                        &extra,
                        response.body.len(),
                    )
                    .into_bytes();
                    if method != "HEAD" {
                        bytes.extend(&response.body);
                    }
                    stream.write_all(&bytes)
                }
                None => stream.write_all(head("404 Not Found", "text/plain", "", 0).as_bytes()),
            };
        }
    });
    port
}

fn blob_route(routes: &mut BTreeMap<String, Response>, bytes: &[u8]) -> Value {
    let digest = sha256(bytes);
    routes.insert(
        format!("/v2/team/base/blobs/{digest}"),
        Response {
            content_type: "application/octet-stream".into(),
            headers: Vec::new(),
            body: bytes.to_vec(),
        },
    );
    json!({"mediaType": terrarium_image::MEDIA_LAYER, "digest": digest, "size": bytes.len()})
}

fn manifest_route(
    routes: &mut BTreeMap<String, Response>,
    reference: &str,
    manifest: &Value,
    headers: Vec<(&'static str, String)>,
) -> Vec<u8> {
    let body = serde_json::to_vec(manifest).unwrap();
    routes.insert(
        format!("/v2/team/base/manifests/{reference}"),
        Response {
            content_type: manifest["mediaType"].as_str().unwrap().into(),
            headers,
            body: body.clone(),
        },
    );
    body
}

fn manifest(config: Value, layers: Vec<Value>) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": terrarium_image::MEDIA_MANIFEST,
        "config": config,
        "layers": layers,
    })
}

#[test]
fn a_registry_config_digest_naming_a_file_on_disk_is_refused() {
    let case = Case::new();
    // From `out/blobs/sha256`, three levels up is the root: a file already on disk that the
    // client would read as the config instead of downloading it.
    std::fs::write(
        case.root().join("secret.json"),
        br#"{"config":{"Env":["TOKEN=hunter2"]}}"#,
    )
    .unwrap();
    let mut routes = BTreeMap::new();
    let layer = blob_route(&mut routes, b"layer");
    let config = json!({"mediaType": terrarium_image::MEDIA_CONFIG, "digest": "sha256:../../../secret.json", "size": 36});
    manifest_route(
        &mut routes,
        "v1",
        &manifest(config, vec![layer]),
        Vec::new(),
    );
    let port = serve(routes);
    let before = snapshot(case.root(), &case.out());
    let result = base::open(
        &format!("127.0.0.1:{port}/team/base:v1"),
        &case.blobs(),
        &[],
    );
    assert_eq!(snapshot(case.root(), &case.out()), before);
    let err = chain(&result.expect_err("the base was accepted"));
    assert!(
        err.contains("malformed digest") && err.contains("sha256:../../../secret.json"),
        "{err}"
    );
}

#[test]
fn a_registry_manifest_that_is_not_its_digest_is_refused() {
    let case = Case::new();
    let mut routes = BTreeMap::new();
    let config = blob_route(&mut routes, &config_json());
    let layer = blob_route(&mut routes, b"layer");
    let other = blob_route(&mut routes, b"other layer");
    // The index names one manifest; asked for it by digest, the registry sends another.
    let named = serde_json::to_vec(&manifest(config.clone(), vec![layer])).unwrap();
    let digest = sha256(&named);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": terrarium_image::MEDIA_INDEX,
        "manifests": [{
            "mediaType": terrarium_image::MEDIA_MANIFEST,
            "digest": digest,
            "size": named.len(),
            "platform": {"os": "linux", "architecture": "amd64"},
        }],
    });
    manifest_route(&mut routes, "v1", &index, Vec::new());
    let sent = manifest_route(
        &mut routes,
        &digest,
        &manifest(config, vec![other]),
        Vec::new(),
    );
    let port = serve(routes);
    let result = base::open(
        &format!("127.0.0.1:{port}/team/base:v1"),
        &case.blobs(),
        &[],
    );
    let err = chain(&result.expect_err("the base was accepted"));
    assert!(
        err.contains(&digest) && err.contains(&sha256(&sent)),
        "{err}"
    );
}

#[test]
fn a_registry_content_digest_header_is_checked() {
    let malformed = "sha256:../../../etc/passwd".to_string();
    let mut compared = 0;
    for header in [malformed.clone(), sha256(b"other bytes")] {
        let case = Case::new();
        let mut routes = BTreeMap::new();
        let config = blob_route(&mut routes, &config_json());
        let layer = blob_route(&mut routes, b"layer");
        let sent = manifest_route(
            &mut routes,
            "v1",
            &manifest(config, vec![layer]),
            vec![("docker-content-digest", header.clone())],
        );
        let port = serve(routes);
        let result = base::open(
            &format!("127.0.0.1:{port}/team/base:v1"),
            &case.blobs(),
            &[],
        );
        let err = chain(&result.expect_err("the base was accepted"));
        let expected = if header == malformed {
            "malformed digest".to_string()
        } else {
            sha256(&sent)
        };
        assert!(err.contains(&header) && err.contains(&expected), "{err}");
        compared += 1;
    }
    assert_eq!(compared, 2);
}
