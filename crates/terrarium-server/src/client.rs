//! [`RemoteStore`]: the [`Store`] trait over the REST API, so the CLI works the same against
//! `--workspace https://host:port` as against a local workspace.

use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use terrarium_spec::names::Reference;
use terrarium_store::{
    AuditEntry, ComputeRecord, DeploymentRecord, Event, ImageBuildRecord, MetadataUpdate,
    RegisterOutcome, RegisterRequest, RunRecord, RunUpdate, Store, StoreError, TokenRecord,
    VersionRecord,
};

use crate::ui::segment;
use crate::wire::{
    ComputeBody, ErrorBody, FinishRunBody, LabelBody, LockBody, LockHashResponse, MetadataBody,
    PackLink, Page, RegisterBody, RegisterResponse, RunStateBody, TokenCreateBody, TokenCreated,
    WhoAmI, API_PREFIX,
};

/// Whether a workspace setting is a server URL.
pub fn is_server_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://")
}

/// Whether a proxy variable names an `https://` proxy, which a plain-HTTP request would reach
/// over TLS.
fn tls_proxy() -> bool {
    ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
        .iter()
        .filter_map(std::env::var_os)
        .any(|value| names_tls_proxy(&value))
}

/// Whether a proxy variable's value may need TLS (an `https://` proxy, or one we cannot read).
fn names_tls_proxy(value: &std::ffi::OsStr) -> bool {
    value
        .to_str()
        .is_none_or(|text| text.trim().to_ascii_lowercase().starts_with("https://"))
}

/// A workspace served by `terrarium server`.
#[derive(Debug)]
pub struct RemoteStore {
    base: String,
    token: Option<String>,
    http: Client,
}

impl RemoteStore {
    /// A client for `url` (`https://host:port`), authenticating with `token`.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, StoreError> {
        let parsed = url::Url::parse(url)
            .map_err(|err| StoreError::Invalid(format!("invalid workspace URL `{url}`: {err}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(StoreError::Invalid(format!(
                "invalid workspace URL `{url}`: expected http(s)://HOST[:PORT]"
            )));
        }
        let mut builder = Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("terrarium/", env!("CARGO_PKG_VERSION")));
        if parsed.scheme() == "http" && !tls_proxy() {
            // Plain HTTP needs no certificate roots: loading the system's (every file in
            // /etc/ssl/certs) was most of a CLI call's time against a server on loopback. A
            // redirect to https:// (a proxy in front that forces TLS) is refused with the URL
            // to use instead, rather than failing on a certificate nothing could verify.
            builder = builder
                .tls_certs_only(Vec::new())
                .redirect(reqwest::redirect::Policy::custom(|attempt| {
                    if attempt.url().scheme() == "https" {
                        let to = attempt.url().clone();
                        attempt.error(format!(
                            "the server redirects to {to}: use the https:// address as the workspace"
                        ))
                    } else if attempt.previous().len() >= 10 {
                        attempt.error("too many redirects")
                    } else {
                        attempt.follow()
                    }
                }));
        }
        let http = builder
            .build()
            .map_err(|err| StoreError::Transport(format!("cannot make an HTTP client: {err}")))?;
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{API_PREFIX}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    fn send(&self, request: RequestBuilder) -> Result<Response, StoreError> {
        let response = request.send().map_err(|err| {
            StoreError::Transport(format!(
                "cannot reach the workspace server at {}: {}",
                self.base,
                terrarium_spec::error::error_chain(&err)
            ))
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().unwrap_or_default();
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) if body.error.code == "not_found" && body.error.subject.is_some() => {
                Err(StoreError::NotFound(body.error.subject.unwrap_or_default()))
            }
            Ok(body) => Err(StoreError::Remote {
                status: status.as_u16(),
                code: body.error.code,
                message: hint(status, body.error.message),
            }),
            Err(_) => Err(StoreError::Transport(format!(
                "{} answered {status} with something that is not the Terrarium API",
                self.base
            ))),
        }
    }

    fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, StoreError> {
        let response = self.send(request)?;
        response.json().map_err(|err| {
            StoreError::Transport(format!("unexpected answer from {}: {err}", self.base))
        })
    }

    /// Every item of a paged list.
    fn all<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, StoreError> {
        let mut items = Vec::new();
        loop {
            let mut q = query.to_vec();
            q.push(("limit", "1000".to_string()));
            q.push(("offset", items.len().to_string()));
            let page: Page<T> = self.json(self.request(Method::GET, path).query(&q))?;
            let done = page.items.is_empty() || items.len() + page.items.len() >= page.total;
            items.extend(page.items);
            if done {
                return Ok(items);
            }
        }
    }

    /// Create a token on the server (admin only). The answer holds the token, shown once.
    pub fn create_token_remote(
        &self,
        name: &str,
        role: &str,
        expires_in: Option<&str>,
    ) -> Result<TokenCreated, StoreError> {
        self.json(
            self.request(Method::POST, "/tokens")
                .json(&TokenCreateBody {
                    name: name.to_string(),
                    role: role.to_string(),
                    expires_in: expires_in.map(str::to_string),
                }),
        )
    }

    pub fn whoami(&self) -> Result<WhoAmI, StoreError> {
        self.json(self.request(Method::GET, "/whoami"))
    }

    /// A new signed link to the pack `digest` the server keeps, living `lifetime` (`7d`);
    /// `None` when the server does not keep it.
    pub fn pack_link(&self, digest: &str, lifetime: &str) -> Result<Option<PackLink>, StoreError> {
        crate::packs::check_digest(digest).map_err(|e| StoreError::Invalid(e.message))?;
        let path = format!("/packs/{}/link", segment(digest));
        match self.json(
            self.request(Method::POST, &path)
                .query(&[("lifetime", lifetime)]),
        ) {
            Ok(link) => Ok(Some(link)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Send the pack file at `path`, whose sha256 is `digest`, for the server to keep; the
    /// answer holds a signed link to it, living `lifetime`.
    pub fn upload_pack(
        &self,
        digest: &str,
        path: &std::path::Path,
        lifetime: &str,
    ) -> Result<PackLink, StoreError> {
        crate::packs::check_digest(digest).map_err(|e| StoreError::Invalid(e.message))?;
        // The server refuses these before it takes a byte, which a client still sending sees
        // only as a broken connection: they are checked here first.
        match crate::auth::parse_lifetime(lifetime) {
            Ok(d) if d <= crate::packs::MAX_LINK_LIFETIME => {}
            Ok(_) => {
                return Err(StoreError::Invalid(
                    "a pack link lives 30 days at most".to_string(),
                ))
            }
            Err(message) => return Err(StoreError::Invalid(message)),
        }
        let file = std::fs::File::open(path).map_err(|err| {
            StoreError::Transport(format!("cannot read {}: {err}", path.display()))
        })?;
        let size = file
            .metadata()
            .map_err(|err| StoreError::Transport(format!("cannot read {}: {err}", path.display())))?
            .len();
        let sent = self.json(
            self.request(Method::PUT, &format!("/packs/{}", segment(digest)))
                .query(&[("lifetime", lifetime)])
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                // As long as the bytes keep going: the server drops an upload that stalls.
                .timeout(Duration::from_secs(7 * 24 * 3600))
                .body(reqwest::blocking::Body::sized(file, size)),
        );
        match sent {
            // A refusal by role ends the upload before the answer can be read.
            Err(StoreError::Transport(message)) => match self.whoami() {
                Ok(me) if me.role == "reader" => Err(StoreError::Remote {
                    status: 403,
                    code: "forbidden".to_string(),
                    message: format!(
                        "uploading a pack needs the contributor role; {} has reader",
                        me.actor
                    ),
                }),
                _ => Err(StoreError::Transport(message)),
            },
            other => other,
        }
    }
}

/// Fetch a pack from a team server's signed link (`https://HOST/api/v1/packs/sha256:HEX?...`)
/// into `dest`, checking its bytes against the digest the link names. No error shows the
/// link's query (its signature): job logs are read by the whole team.
pub fn download_pack(link: &str, dest: &std::path::Path) -> Result<(), StoreError> {
    let query = link.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let scrub = |text: String| {
        if query.is_empty() {
            text
        } else {
            text.replace(query, "…")
        }
    };
    download_pack_unscrubbed(link, dest).map_err(|err| match err {
        StoreError::Invalid(m) => StoreError::Invalid(scrub(m)),
        StoreError::Transport(m) => StoreError::Transport(scrub(m)),
        StoreError::Remote {
            status,
            code,
            message,
        } => StoreError::Remote {
            status,
            code,
            message: scrub(message),
        },
        other => other,
    })
}

fn download_pack_unscrubbed(link: &str, dest: &std::path::Path) -> Result<(), StoreError> {
    let parsed = url::Url::parse(link)
        .map_err(|err| StoreError::Invalid(format!("`{}` is not a link: {err}", redacted(link))))?;
    let digest = parsed
        .path()
        .strip_prefix(&format!("{API_PREFIX}/packs/"))
        .filter(|_| matches!(parsed.scheme(), "http" | "https"))
        .map(|d| percent_encoding::percent_decode_str(d).decode_utf8_lossy().into_owned())
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "`{}` is not a team server's pack link (http(s)://HOST{API_PREFIX}/packs/sha256:...)",
                redacted(link)
            ))
        })?;
    crate::packs::check_digest(&digest).map_err(|e| StoreError::Invalid(e.message))?;
    let http = Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("terrarium/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|err| StoreError::Transport(format!("cannot make an HTTP client: {err}")))?;
    let host = redacted(link);
    // reqwest's errors name the URL, signature and all: it is taken out of them.
    let mut response = http.get(parsed).send().map_err(|err| {
        StoreError::Transport(format!(
            "cannot reach {host}: {}",
            terrarium_spec::error::error_chain(&err.without_url())
        ))
    })?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|body| body.error.message)
            .unwrap_or_else(|_| format!("it answered {status}"));
        return Err(StoreError::Remote {
            status: status.as_u16(),
            code: "pack".to_string(),
            message: format!("cannot fetch the pack from {host}: {message}"),
        });
    }
    use sha2::Digest as _;
    use std::io::{Read as _, Write as _};
    let failed = |err: std::io::Error| {
        StoreError::Transport(format!("cannot fetch the pack from {host}: {err}"))
    };
    let mut file = std::fs::File::create(dest).map_err(failed)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 18];
    let mut size: u64 = 0;
    loop {
        let n = response.read(&mut buffer).map_err(failed)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > crate::packs::MAX_PACK_BYTES {
            return Err(StoreError::Invalid(format!(
                "{host} sent more than a pack may hold ({})",
                crate::human_size(crate::packs::MAX_PACK_BYTES)
            )));
        }
        hasher.update(&buffer[..n]);
        file.write_all(&buffer[..n]).map_err(failed)?;
    }
    file.sync_all().map_err(failed)?;
    let got = format!("sha256:{}", hex::encode(hasher.finalize()));
    if got != digest {
        return Err(StoreError::Invalid(format!(
            "the pack from {host} is {got}, not the {digest} its link names"
        )));
    }
    Ok(())
}

/// Whether two server addresses name the same origin: scheme, host and port.
pub fn same_origin(a: &str, b: &str) -> bool {
    let origin = |text: &str| {
        url::Url::parse(text).ok().map(|u| {
            (
                u.scheme().to_string(),
                u.host_str().map(str::to_ascii_lowercase),
                u.port_or_known_default(),
            )
        })
    };
    matches!((origin(a), origin(b)), (Some(x), Some(y)) if x == y)
}

/// A link without its query (a signed link's signature is not for logs).
pub fn redacted(link: &str) -> String {
    link.split(['?', '#']).next().unwrap_or(link).to_string()
}

fn hint(status: StatusCode, message: String) -> String {
    match status {
        StatusCode::UNAUTHORIZED => {
            format!("{message} (set TERRARIUM_TOKEN, or `token` in the config file)")
        }
        _ => message,
    }
}

fn env_path(name: &str) -> String {
    format!("/environments/{}", segment(name))
}

fn version_path(name: &str, version: &str) -> String {
    format!("{}/versions/{}", env_path(name), segment(version))
}

impl Store for RemoteStore {
    fn register(&self, request: RegisterRequest) -> Result<RegisterOutcome, StoreError> {
        if request.allow_curated {
            return Err(StoreError::Invalid(
                "curated environments are seeded by the server".to_string(),
            ));
        }
        let body = RegisterBody {
            definition: request.definition,
            source: Some(request.source),
            parent: request.parent,
            force_new: request.force_new,
            lock: request
                .lock
                .map(|(lock_hash, lock)| LockBody { lock_hash, lock }),
        };
        let response: RegisterResponse =
            self.json(self.request(Method::POST, "/environments").json(&body))?;
        Ok(RegisterOutcome {
            record: response.record,
            created: response.created,
        })
    }

    fn resolve(&self, reference: &Reference) -> Result<VersionRecord, StoreError> {
        let path = match reference {
            Reference::Latest(name) => env_path(name),
            Reference::Version(name, version) => version_path(name, version),
            Reference::Label(name, label) => {
                format!("{}/labels/{}", env_path(name), segment(label))
            }
        };
        self.json(self.request(Method::GET, &path))
    }

    fn list(&self, include_archived: bool) -> Result<Vec<VersionRecord>, StoreError> {
        self.all(
            "/environments",
            &[("include_archived", include_archived.to_string())],
        )
    }

    fn versions(&self, name: &str) -> Result<Vec<VersionRecord>, StoreError> {
        self.all(&format!("{}/versions", env_path(name)), &[])
    }

    fn events(&self, name: &str) -> Result<Vec<Event>, StoreError> {
        self.all(&format!("{}/events", env_path(name)), &[])
    }

    fn set_label(
        &self,
        name: &str,
        version: &str,
        label: &str,
        _actor: &str,
    ) -> Result<(), StoreError> {
        let path = format!("{}/labels/{}", env_path(name), segment(label));
        self.send(self.request(Method::PUT, &path).json(&LabelBody {
            version: version.to_string(),
        }))?;
        Ok(())
    }

    fn remove_label(&self, name: &str, label: &str, _actor: &str) -> Result<(), StoreError> {
        let path = format!("{}/labels/{}", env_path(name), segment(label));
        self.send(self.request(Method::DELETE, &path))?;
        Ok(())
    }

    fn update_metadata(
        &self,
        name: &str,
        version: &str,
        update: &MetadataUpdate,
        _actor: &str,
    ) -> Result<VersionRecord, StoreError> {
        let body = MetadataBody {
            description: update.description.clone().flatten(),
            clear_description: matches!(update.description, Some(None)),
            set_tags: update.set_tags.clone(),
            remove_tags: update.remove_tags.clone(),
        };
        self.json(
            self.request(Method::PATCH, &version_path(name, version))
                .json(&body),
        )
    }

    fn set_archived(
        &self,
        name: &str,
        version: Option<&str>,
        archived: bool,
        _actor: &str,
    ) -> Result<(), StoreError> {
        let base = match version {
            Some(version) => version_path(name, version),
            None => env_path(name),
        };
        let action = if archived { "archive" } else { "restore" };
        self.send(self.request(Method::POST, &format!("{base}/{action}")))?;
        Ok(())
    }

    fn delete_version(&self, name: &str, version: &str, _actor: &str) -> Result<(), StoreError> {
        self.send(self.request(Method::DELETE, &version_path(name, version)))?;
        Ok(())
    }

    fn set_lock(
        &self,
        name: &str,
        version: &str,
        lock_hash: &str,
        lock: &str,
    ) -> Result<String, StoreError> {
        let path = format!("{}/lock", version_path(name, version));
        let response: LockHashResponse =
            self.json(self.request(Method::PUT, &path).json(&LockBody {
                lock_hash: lock_hash.to_string(),
                lock: lock.to_string(),
            }))?;
        Ok(response.lock_hash)
    }

    fn get_lock(&self, lock_hash: &str) -> Result<String, StoreError> {
        let response =
            self.send(self.request(Method::GET, &format!("/locks/{}", segment(lock_hash))))?;
        response.text().map_err(|err| {
            StoreError::Transport(format!("reading a lock from {}: {err}", self.base))
        })
    }

    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.send(self.request(Method::POST, "/runs").json(run))?;
        Ok(())
    }

    fn finish_run(&self, id: &str, finished_at: &str, exit_code: i32) -> Result<(), StoreError> {
        let path = format!("/runs/{}/finish", segment(id));
        self.send(self.request(Method::POST, &path).json(&FinishRunBody {
            finished_at: finished_at.to_string(),
            exit_code,
        }))?;
        Ok(())
    }

    fn list_runs(
        &self,
        experiment: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let mut query = vec![("limit", limit.clamp(1, 1000).to_string())];
        if let Some(experiment) = experiment {
            query.push(("experiment", experiment.to_string()));
        }
        let page: Page<RunRecord> = self.json(self.request(Method::GET, "/runs").query(&query))?;
        Ok(page.items)
    }

    fn get_run(&self, id: &str) -> Result<RunRecord, StoreError> {
        self.json(self.request(Method::GET, &format!("/runs/{}", segment(id))))
    }

    fn put_run_log(&self, id: &str, log: &[u8]) -> Result<(), StoreError> {
        let path = format!("/runs/{}/log", segment(id));
        self.send(
            self.request(Method::PUT, &path)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(log.to_vec()),
        )?;
        Ok(())
    }

    fn get_run_log(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.send(self.request(Method::GET, &format!("/runs/{}/log", segment(id)))) {
            Ok(response) => Ok(Some(
                response
                    .bytes()
                    .map_err(|err| {
                        StoreError::Transport(format!("reading a log from {}: {err}", self.base))
                    })?
                    .to_vec(),
            )),
            Err(StoreError::NotFound(subject)) if subject.starts_with("the log of") => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn update_run(&self, id: &str, update: &RunUpdate) -> Result<RunRecord, StoreError> {
        let path = format!("/runs/{}/state", segment(id));
        match self.json(
            self.request(Method::POST, &path)
                .json(&RunStateBody::from(update)),
        ) {
            // The run has ended: as the trait says, it keeps its state and is returned as it is.
            Err(StoreError::Remote { status: 409, .. }) => self.get_run(id),
            answer => answer,
        }
    }

    /// The server records who added the target and when: `created_by` and `created_at` are
    /// its own.
    fn add_compute(&self, target: &ComputeRecord) -> Result<(), StoreError> {
        self.send(self.request(Method::POST, "/compute").json(&ComputeBody {
            name: target.name.clone(),
            kind: target.kind.clone(),
            options: target.options.clone(),
        }))?;
        Ok(())
    }

    fn get_compute(&self, name: &str) -> Result<ComputeRecord, StoreError> {
        self.json(self.request(Method::GET, &format!("/compute/{}", segment(name))))
    }

    fn list_compute(&self) -> Result<Vec<ComputeRecord>, StoreError> {
        self.all("/compute", &[])
    }

    fn remove_compute(&self, name: &str) -> Result<(), StoreError> {
        self.send(self.request(Method::DELETE, &format!("/compute/{}", segment(name))))?;
        Ok(())
    }

    fn create_token(&self, _token: &TokenRecord) -> Result<(), StoreError> {
        Err(StoreError::Invalid(
            "tokens of a server workspace are made by the server".to_string(),
        ))
    }

    fn token_by_hash(&self, _token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        Err(StoreError::Invalid(
            "tokens are checked by the server".to_string(),
        ))
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.all("/tokens", &[])
    }

    fn revoke_token(&self, id: &str, _at: &str) -> Result<TokenRecord, StoreError> {
        self.json(self.request(Method::DELETE, &format!("/tokens/{}", segment(id))))
    }

    fn append_audit(&self, _entry: &AuditEntry) -> Result<(), StoreError> {
        Err(StoreError::Invalid(
            "the server writes its audit trail".to_string(),
        ))
    }

    fn set_audit_status(&self, _id: i64, _status: i32) -> Result<(), StoreError> {
        Err(StoreError::Invalid(
            "the server writes its audit trail".to_string(),
        ))
    }

    fn list_audit(&self, limit: usize, offset: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.json(self.request(Method::GET, "/audit").query(&[
            ("limit", limit.clamp(1, 1000).to_string()),
            ("offset", offset.to_string()),
        ]))
    }

    fn add_image_build(&self, build: &ImageBuildRecord) -> Result<(), StoreError> {
        let path = format!("/environments/{}/images", segment(&build.environment));
        self.send(self.request(Method::POST, &path).json(build))?;
        Ok(())
    }

    fn list_image_builds(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Vec<ImageBuildRecord>, StoreError> {
        let path = format!("/environments/{}/images", segment(name));
        let query: Vec<(&str, String)> = version
            .map(|v| ("version", v.to_string()))
            .into_iter()
            .collect();
        self.all(&path, &query)
    }

    fn put_deployment(&self, deployment: &DeploymentRecord) -> Result<(), StoreError> {
        let path = format!("/deployments/{}", segment(&deployment.name));
        self.send(self.request(Method::PUT, &path).json(deployment))?;
        Ok(())
    }

    fn get_deployment(&self, name: &str) -> Result<DeploymentRecord, StoreError> {
        self.json(self.request(Method::GET, &format!("/deployments/{}", segment(name))))
    }

    fn list_deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.all("/deployments", &[])
    }

    fn put_context(&self, digest: &str, archive: &[u8]) -> Result<(), StoreError> {
        terrarium_store::check_context_digest(digest)?;
        self.send(
            self.request(Method::PUT, &format!("/contexts/{}", segment(digest)))
                .header(reqwest::header::CONTENT_TYPE, "application/gzip")
                .body(archive.to_vec()),
        )?;
        Ok(())
    }

    fn has_context(&self, digest: &str) -> Result<bool, StoreError> {
        terrarium_store::check_context_digest(digest)?;
        let path = format!("/contexts/{}", segment(digest));
        // HEAD: the answer's status, not the archive.
        let response = self.request(Method::HEAD, &path).send().map_err(|err| {
            StoreError::Transport(format!(
                "cannot reach the workspace server at {}: {}",
                self.base,
                terrarium_spec::error::error_chain(&err)
            ))
        })?;
        match response.status() {
            status if status.is_success() => Ok(true),
            reqwest::StatusCode::NOT_FOUND => Ok(false),
            // A HEAD answer has no body to explain a refusal: ask again for the error.
            _ => self.send(self.request(Method::GET, &path)).map(|_| true),
        }
    }

    fn get_context(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        terrarium_store::check_context_digest(digest)?;
        let response =
            self.send(self.request(Method::GET, &format!("/contexts/{}", segment(digest))))?;
        Ok(response
            .bytes()
            .map_err(|err| {
                StoreError::Transport(format!("reading a build context from {}: {err}", self.base))
            })?
            .to_vec())
    }

    fn meta_get(&self, _key: &str) -> Result<Option<String>, StoreError> {
        Err(StoreError::Invalid(
            "workspace settings are not available over the API".to_string(),
        ))
    }

    fn meta_set(&self, _key: &str, _value: &str) -> Result<(), StoreError> {
        Err(StoreError::Invalid(
            "workspace settings are not available over the API".to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::names_tls_proxy;

    /// A server on loopback that answers every request with `response`, `count` times.
    fn answering(response: &'static str, count: usize) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(count) {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(response.as_bytes());
            }
        });
        url
    }

    #[test]
    fn a_plain_http_server_that_redirects_to_https_gets_the_address_to_use() {
        if super::tls_proxy() {
            return; // this machine's proxy keeps the roots, and the redirect is followed
        }
        let url = answering(
            "HTTP/1.1 301 Moved Permanently\r\nLocation: https://terrarium.example/api/v1/whoami\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            1,
        );
        let store = super::RemoteStore::new(&url, None).unwrap();
        let err = store.whoami().unwrap_err().to_string();
        assert!(
            err.contains("redirects to https://terrarium.example/")
                && err.contains("use the https:// address as the workspace"),
            "{err}"
        );
    }

    #[test]
    fn only_a_proxy_that_may_need_tls_keeps_the_certificate_roots() {
        assert!(names_tls_proxy(OsStr::new("https://proxy:3128")));
        assert!(names_tls_proxy(OsStr::new(" HTTPS://Proxy:3128 ")));
        assert!(!names_tls_proxy(OsStr::new("http://proxy:3128")));
        assert!(!names_tls_proxy(OsStr::new("proxy:3128")));
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            assert!(names_tls_proxy(OsStr::from_bytes(b"\xffhttp://proxy")));
        }
    }
}
