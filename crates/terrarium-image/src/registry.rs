//! Pushing to an OCI registry over the distribution API: only the blobs it lacks, each
//! streamed from its file.
//!
//! Registries on loopback addresses are spoken to over plain HTTP, as Docker does; any other
//! over HTTPS unless named with `--insecure-registry`. Credentials come from
//! `~/.docker/config.json` (`auths`), or `TERRARIUM_REGISTRY_USERNAME` and
//! `TERRARIUM_REGISTRY_PASSWORD`; never from a definition. Basic and bearer-token
//! authentication (`WWW-Authenticate`) are both handled.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, StatusCode};
use terrarium_spec::error::error_chain;

use crate::digest::Verifier;
use crate::{Digest, Image, ImageError, MEDIA_MANIFEST};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid image reference `{0}`: {1}")]
    Reference(String, String),
    #[error("cannot reach the registry {registry}: {message}")]
    Unreachable { registry: String, message: String },
    #[error("the registry {registry} refused {what}: {status} {body}")]
    Refused {
        registry: String,
        what: String,
        status: u16,
        body: String,
    },
    #[error("{0}")]
    Io(String),
    /// A malformed digest asked for, or an answer that is not what its digest names.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// An answer whose `Docker-Content-Digest` header is not a digest.
    #[error("the registry {registry} sent a malformed Docker-Content-Digest for {what}")]
    ContentDigest {
        registry: String,
        what: String,
        #[source]
        source: ImageError,
    },
    /// An answer larger than what it can be (a manifest over 4 MiB).
    #[error("the registry {registry} sent more than {limit} bytes for {what}")]
    TooLarge {
        registry: String,
        what: String,
        limit: u64,
    },
}

impl RegistryError {
    /// Errors in what was asked for or answered (a bad reference, a malformed or corrupt
    /// answer) rather than failures to reach the registry.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Reference(..) => true,
            Self::Image(err) => err.is_user_error(),
            Self::ContentDigest { .. } | Self::TooLarge { .. } => true,
            Self::Unreachable { .. } | Self::Refused { .. } | Self::Io(_) => false,
        }
    }
}

/// `host[:port]/repository[:tag]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let bad = |why: &str| RegistryError::Reference(text.to_string(), why.to_string());
        let (registry, rest) = text
            .split_once('/')
            .ok_or_else(|| bad("expected REGISTRY/REPOSITORY[:TAG]"))?;
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad(
                "the first part must be a registry host (with a `.` or a port, or `localhost`)",
            ));
        }
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag.to_string())),
            _ => (rest, None),
        };
        if repository.is_empty()
            || !repository
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c))
        {
            return Err(bad("a repository is lowercase letters, digits and `._-/`"));
        }
        if let Some(tag) = &tag {
            if tag.is_empty()
                || tag.len() > 128
                || !tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(bad("a tag is up to 128 letters, digits and `._-`"));
            }
        }
        Ok(ImageRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
        })
    }
}

/// Whether the registry is on this machine (plain HTTP, as Docker does).
pub fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(registry, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub struct Registry {
    registry: String,
    base: String,
    http: Client,
    credentials: Option<(String, String)>,
    token: Option<String>,
}

/// What a push did.
#[derive(Debug, Default, Clone)]
pub struct PushReport {
    pub mounted_blobs: usize,
    pub uploaded_blobs: usize,
    pub uploaded_bytes: u64,
    pub skipped_blobs: usize,
}

impl Registry {
    pub fn new(registry: &str, insecure: &[String]) -> Result<Self, RegistryError> {
        let plain = is_loopback(registry) || insecure.iter().any(|h| h == registry);
        let scheme = if plain { "http" } else { "https" };
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(None)
            .build()
            .map_err(|e| RegistryError::Io(e.to_string()))?;
        Ok(Registry {
            registry: registry.to_string(),
            base: format!("{scheme}://{registry}"),
            http,
            credentials: credentials(registry),
            token: None,
        })
    }

    fn unreachable(&self, err: reqwest::Error) -> RegistryError {
        RegistryError::Unreachable {
            registry: self.registry.clone(),
            message: error_chain(&err),
        }
    }

    /// Send, answering one authentication challenge.
    fn send(
        &mut self,
        build: &dyn Fn(&Client) -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let mut request = build(&self.http)?;
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        } else if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().map_err(|e| self.unreachable(e))?;
        if response.status() != StatusCode::UNAUTHORIZED || self.token.is_some() {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let Some(params) = challenge.strip_prefix("Bearer ") else {
            return Ok(response);
        };
        let field = |name: &str| {
            params.split(',').find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k == name).then(|| v.trim_matches('"').to_string())
            })
        };
        let realm = field("realm").unwrap_or_default();
        let mut query = Vec::new();
        if let Some(service) = field("service") {
            query.push(("service", service));
        }
        if let Some(scope) = field("scope") {
            query.push(("scope", scope));
        }
        let mut token_url = url::Url::parse(&realm).map_err(|e| RegistryError::Unreachable {
            registry: self.registry.clone(),
            message: format!("bad token realm `{realm}`: {e}"),
        })?;
        token_url.query_pairs_mut().extend_pairs(&query);
        let mut token_request = self.http.get(token_url.as_str());
        if let Some((user, password)) = &self.credentials {
            token_request = token_request.basic_auth(user, Some(password));
        }
        let answer = token_request
            .send()
            .map_err(|e| self.unreachable(e))?
            .bytes()
            .map_err(|e| self.unreachable(e))?;
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        self.token = answer["token"]
            .as_str()
            .or(answer["access_token"].as_str())
            .map(String::from);
        let mut request = build(&self.http)?;
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request.send().map_err(|e| self.unreachable(e))
    }

    fn refused(&self, what: &str, response: Response) -> RegistryError {
        let status = response.status().as_u16();
        let body: String = response
            .text()
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect();
        RegistryError::Refused {
            registry: self.registry.clone(),
            what: what.to_string(),
            status,
            body,
        }
    }

    pub fn has_blob(&mut self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base);
        let response = self.send(&|http| Ok(http.head(&url)))?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refused(&format!("HEAD {digest}"), response)),
        }
    }

    /// Upload one blob, streamed from `path`.
    pub fn upload(
        &mut self,
        repository: &str,
        digest: &Digest,
        path: &Path,
    ) -> Result<u64, RegistryError> {
        let url = format!("{}/v2/{repository}/blobs/uploads/", self.base);
        let response = self.send(&|http| Ok(http.post(&url).header("content-length", "0")))?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.refused("starting an upload", response));
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Io("the registry gave no upload location".into()))?
            .to_string();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{separator}digest={digest}");
        let size = std::fs::metadata(path)
            .map_err(|e| RegistryError::Io(format!("{}: {e}", path.display())))?
            .len();
        let path = path.to_path_buf();
        let response = self.send(&|http| {
            let file = std::fs::File::open(&path)
                .map_err(|e| RegistryError::Io(format!("{}: {e}", path.display())))?;
            Ok(http
                .request(Method::PUT, &put)
                .header("content-type", "application/octet-stream")
                .body(reqwest::blocking::Body::sized(file, size)))
        })?;
        if response.status() != StatusCode::CREATED {
            return Err(self.refused(&format!("the blob {digest}"), response));
        }
        Ok(size)
    }

    /// A manifest (or index) by tag or digest: its bytes, media type and digest. Asked for by
    /// digest, the bytes must be that manifest; a `Docker-Content-Digest` answered must be
    /// theirs.
    pub fn get_manifest(
        &mut self,
        repository: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        // A tag has no `:`, so this is a digest, and a malformed one is refused unsent.
        let expected = reference
            .starts_with("sha256:")
            .then(|| reference.parse::<Digest>())
            .transpose()?;
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
        let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
            application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
        let response = self.send(&|http| Ok(http.get(&url).header("accept", accept)))?;
        if response.status() != StatusCode::OK {
            return Err(self.refused(&format!("the manifest {repository}:{reference}"), response));
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let media_type = header("content-type").unwrap_or_default();
        let claimed = header("docker-content-digest")
            .map(|d| d.parse::<Digest>())
            .transpose()
            .map_err(|source| RegistryError::ContentDigest {
                registry: self.registry.clone(),
                what: format!("the manifest {repository}:{reference}"),
                source,
            })?;
        // A manifest is small (registries refuse ones over 4 MiB): never read more.
        let limit = crate::base::MAX_JSON_BYTES;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(response, limit + 1), &mut bytes)
            .map_err(|e| RegistryError::Unreachable {
                registry: self.registry.clone(),
                message: format!("reading the manifest {repository}:{reference}: {e}"),
            })?;
        if bytes.len() as u64 > limit {
            return Err(RegistryError::TooLarge {
                registry: self.registry.clone(),
                what: format!("the manifest {repository}:{reference}"),
                limit,
            });
        }
        let origin = format!("{}/{repository}", self.registry);
        for digest in expected.iter().chain(&claimed) {
            digest.check(&bytes, None, &origin)?;
        }
        let digest = Digest::of(&bytes);
        Ok((bytes, media_type, digest))
    }

    /// Download a blob to `path`, streamed, checking its digest (and `size`, when known)
    /// before it takes that name.
    pub fn get_blob(
        &mut self,
        repository: &str,
        digest: &Digest,
        size: Option<u64>,
        path: &Path,
    ) -> Result<(), RegistryError> {
        use std::io::{Read, Write};
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base);
        let mut response = self.send(&|http| Ok(http.get(&url)))?;
        if response.status() != StatusCode::OK {
            return Err(self.refused(&format!("the blob {digest}"), response));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut staging = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| RegistryError::Io(format!("{}: {e}", dir.display())))?;
        let mut verifier = Verifier::default();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = response
                .read(&mut buf)
                .map_err(|e| RegistryError::Unreachable {
                    registry: self.registry.clone(),
                    message: e.to_string(),
                })?;
            if n == 0 {
                break;
            }
            verifier.update(&buf[..n]);
            // Past the size the manifest gives, it is the wrong blob: stop before it fills the
            // disk (`check` says so).
            if size.is_some_and(|size| verifier.bytes_seen() > size) {
                break;
            }
            staging
                .write_all(&buf[..n])
                .map_err(|e| RegistryError::Io(e.to_string()))?;
        }
        verifier.check(digest, size, &format!("{}/{repository}", self.registry))?;
        staging
            .persist(path)
            .map_err(|e| RegistryError::Io(format!("{}: {}", path.display(), e.error)))?;
        Ok(())
    }

    /// Ask the registry to link a blob from another repository (no upload). False when it
    /// cannot, and the blob must be uploaded.
    pub fn mount(
        &mut self,
        repository: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, RegistryError> {
        let url = format!(
            "{}/v2/{repository}/blobs/uploads/?mount={digest}&from={from}",
            self.base
        );
        let response = self.send(&|http| Ok(http.post(&url).header("content-length", "0")))?;
        Ok(response.status() == StatusCode::CREATED)
    }

    pub fn put_manifest(
        &mut self,
        repository: &str,
        tag: &str,
        manifest: &[u8],
    ) -> Result<(), RegistryError> {
        let url = format!("{}/v2/{repository}/manifests/{tag}", self.base);
        let body = manifest.to_vec();
        let response = self.send(&|http| {
            Ok(http
                .put(&url)
                .header("content-type", MEDIA_MANIFEST)
                .body(body.clone()))
        })?;
        if response.status() != StatusCode::CREATED {
            return Err(self.refused(&format!("the manifest {tag}"), response));
        }
        Ok(())
    }
}

/// Push `image` (its blobs in `blobs`) to `target`: the blobs the registry lacks, then the
/// manifest. A push that fails part-way leaves only whole blobs behind; pushing again uploads
/// the rest.
pub fn push(
    image: &Image,
    blobs: &Path,
    target: &ImageRef,
    tag: &str,
    insecure: &[String],
) -> Result<PushReport, RegistryError> {
    let mut registry = Registry::new(&target.registry, insecure)?;
    let mut report = PushReport::default();
    // The base's layers: mounted from the base's repository when it is in the same registry,
    // else uploaded from the local copy.
    for layer in &image.base_layers {
        if registry.has_blob(&target.repository, &layer.digest)? {
            report.skipped_blobs += 1;
            continue;
        }
        if let Some((base_registry, base_repository)) = &image.base_repository {
            if base_registry == &target.registry
                && registry.mount(&target.repository, &layer.digest, base_repository)?
            {
                report.mounted_blobs += 1;
                continue;
            }
        }
        let path = layer.digest.blob_path(blobs);
        report.uploaded_bytes += registry.upload(&target.repository, &layer.digest, &path)?;
        report.uploaded_blobs += 1;
    }
    let mut all: Vec<&Digest> = image.layers.iter().map(|l| &l.digest).collect();
    all.push(&image.config_digest);
    for digest in all {
        if registry.has_blob(&target.repository, digest)? {
            report.skipped_blobs += 1;
            continue;
        }
        let path = digest.blob_path(blobs);
        report.uploaded_bytes += registry.upload(&target.repository, digest, &path)?;
        report.uploaded_blobs += 1;
    }
    registry.put_manifest(&target.repository, tag, &image.manifest)?;
    report.uploaded_bytes += image.manifest.len() as u64;
    Ok(report)
}

/// Credentials for `registry`: `TERRARIUM_REGISTRY_USERNAME`/`_PASSWORD`, else
/// `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`) `auths`.
fn credentials(registry: &str) -> Option<(String, String)> {
    if let (Ok(user), Ok(password)) = (
        std::env::var("TERRARIUM_REGISTRY_USERNAME"),
        std::env::var("TERRARIUM_REGISTRY_PASSWORD"),
    ) {
        return Some((user, password));
    }
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))?;
    let text = std::fs::read(dir.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let auths = config["auths"].as_object()?;
    let entry = auths.iter().find_map(|(key, value)| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        (host == registry).then_some(value)
    })?;
    let encoded = entry["auth"].as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = ImageRef::parse("127.0.0.1:5000/team/train:v1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/train", Some("v1"))
        );
        assert_eq!(ImageRef::parse("localhost:5000/a").unwrap().tag, None);
        assert!(ImageRef::parse("train:v1").is_err());
        assert!(ImageRef::parse("registry.example.com/Upper").is_err());
        assert!(
            is_loopback("127.0.0.1:5000") && is_loopback("localhost") && is_loopback("[::1]:5000")
        );
        assert!(!is_loopback("registry.example.com:5000"));
    }
}
