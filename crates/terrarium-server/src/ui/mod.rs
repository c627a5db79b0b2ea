//! The web UI: server-rendered HTML (maud), no JavaScript. Pages: environments (search and tag
//! filter), an environment's version timeline, one version (definition and lock contents),
//! the diff of any two versions, runs (their state, and for a job on a compute target what its
//! engine said) and their logs, compute targets.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Form, Router};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use terrarium_spec::names::Reference;
use terrarium_store::{ComputeRecord, RunRecord, RunState, VersionRecord};

use crate::auth::{Identity, COOKIE};
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::state::SharedState;

mod lock_view;

const STYLE: &str = include_str!("style.css");

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/", get(environments))
        .route("/style.css", get(style))
        .route("/login", get(login_form).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/environments/{name}", get(environment))
        .route("/environments/{name}/versions/{version}", get(version))
        .route("/diff", get(diff))
        .route("/runs", get(runs))
        .route("/runs/{id}", get(run))
        .route("/compute", get(compute))
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// What a path segment escapes: everything but letters, digits and `-`, `_`, `~` (RFC 3986's
/// unreserved characters, less `.`, so that no segment can read as `.` or `..`).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// A path segment, with `/` and other reserved characters escaped.
pub fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

fn env_href(name: &str) -> String {
    format!("/ui/environments/{}", segment(name))
}

fn version_href(name: &str, version: &str) -> String {
    format!(
        "/ui/environments/{}/versions/{}",
        segment(name),
        segment(version)
    )
}

fn page(title: &str, identity: Option<&Identity>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Terrarium" }
                link rel="stylesheet" href="/ui/style.css";
            }
            body {
                header {
                    a.brand href="/ui" { "Terrarium" }
                    nav {
                        a href="/ui" { "Environments" }
                        a href="/ui/runs" { "Runs" }
                        a href="/ui/compute" { "Compute" }
                        a href="/openapi.json" { "API" }
                    }
                    @if let Some(identity) = identity {
                        span.who { (identity.actor) " · " (identity.role.as_str()) }
                        form.logout method="post" action="/ui/logout" {
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn labels(record: &VersionRecord) -> Markup {
    html! {
        @for label in &record.labels { span.label { (label) } }
        @if record.archived { span.tag { "archived" } }
    }
}

fn tags(tags: &BTreeMap<String, String>) -> Markup {
    html! {
        @for (k, v) in tags {
            a.tag href={ "/ui?tag=" (segment(&format!("{k}={v}"))) } { (k) "=" (v) }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    q: Option<String>,
    tag: Option<String>,
    #[serde(default)]
    archived: Option<String>,
}

async fn environments(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Markup, ApiError> {
    let include_archived = query.archived.is_some();
    let records = state
        .blocking(move |store| Ok(store.list(include_archived)?))
        .await?;
    let shown: Vec<&VersionRecord> = records
        .iter()
        .filter(|r| crate::api::environments::matches(r, query.q.as_deref(), query.tag.as_deref()))
        .collect();
    let body = html! {
        h1 { "Environments" }
        form.inline method="get" action="/ui" {
            input type="search" name="q" placeholder="search name or description" value=[query.q.as_deref()];
            input type="text" name="tag" placeholder="tag, e.g. team=vision" value=[query.tag.as_deref()];
            label { input type="checkbox" name="archived" value="1" checked[include_archived]; " archived" }
            button type="submit" { "Filter" }
            span.muted id="count" { (shown.len()) " of " (records.len()) }
        }
        table id="environments" {
            thead { tr { th { "Name" } th { "Latest" } th { "Labels" } th { "Tags" } th { "Description" } th { "Created" } } }
            tbody {
                @for r in &shown {
                    tr class=[r.archived.then_some("archived")] {
                        td { a.env href=(env_href(&r.name)) { (r.name) } }
                        td { a href=(version_href(&r.name, &r.version)) { (r.version) } }
                        td { (labels(r)) }
                        td { (tags(&r.tags)) }
                        td { (r.description.as_deref().unwrap_or("")) }
                        td.muted { (r.created_at) " · " (r.created_by) }
                    }
                }
            }
        }
    };
    Ok(page("Environments", Some(&identity), body))
}

async fn environment(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath(name): ApiPath<String>,
) -> Result<Markup, ApiError> {
    let lookup = name.clone();
    let (versions, events) = state
        .blocking(move |store| Ok((store.versions(&lookup)?, store.events(&lookup)?)))
        .await?;
    let newest_first: Vec<&VersionRecord> = versions.iter().rev().collect();
    let default_new = newest_first.first().map(|r| r.version.clone());
    let default_old = newest_first
        .get(1)
        .or(newest_first.first())
        .map(|r| r.version.clone());
    let body = html! {
        h1 { (name) }
        h2 { "Compare versions" }
        form.inline method="get" action="/ui/diff" id="compare" {
            input type="hidden" name="name" value=(name);
            select name="old" id="old" {
                @for r in &newest_first { option value=(r.version) selected[Some(&r.version) == default_old.as_ref()] { (r.version) } }
            }
            "→"
            select name="new" id="new" {
                @for r in &newest_first { option value=(r.version) selected[Some(&r.version) == default_new.as_ref()] { (r.version) } }
            }
            button type="submit" id="diff-button" { "Diff" }
        }
        h2 { "Version history" }
        ol.timeline id="timeline" {
            @for r in &newest_first {
                li class=[r.archived.then_some("archived")] {
                    a.version href=(version_href(&r.name, &r.version)) { "version " (r.version) }
                    " " (labels(r))
                    div.muted {
                        (r.created_at) " · " (r.created_by) " · " (r.source.kind)
                        @if let Some(file) = &r.source.file { " from " code { (file) } }
                        @if let Some(parent) = &r.parent { " · from " (parent) }
                    }
                    div.mono.muted { (r.content_hash) }
                    @if let Some(d) = &r.description { div { (d) } }
                }
            }
        }
        @if !events.is_empty() {
            h2 { "Events" }
            table id="events" {
                thead { tr { th { "When" } th { "What" } th { "Version" } th { "Detail" } th { "Who" } } }
                tbody {
                    @for e in events.iter().rev() {
                        tr { td.muted { (e.at) } td { (e.action) } td { (e.version.as_deref().unwrap_or("")) } td { (e.detail.as_deref().unwrap_or("")) } td { (e.actor) } }
                    }
                }
            }
        }
    };
    Ok(page(&name, Some(&identity), body))
}

async fn version(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<Markup, ApiError> {
    let reference = Reference::version(&name, &version).map_err(ApiError::invalid)?;
    let (record, lock, runs, builds) = state
        .blocking(move |store| {
            let record = store.resolve(&reference)?;
            let builds = store.list_image_builds(&record.name, Some(&record.version))?;
            let lock = match &record.lock_hash {
                Some(hash) => Some(store.get_lock(hash)?),
                None => None,
            };
            let runs: Vec<RunRecord> = store
                .list_runs(None, 200)?
                .into_iter()
                .filter(|r| r.environment == record.name && r.version == record.version)
                .collect();
            Ok((record, lock, runs, builds))
        })
        .await?;
    let yaml = terrarium_spec::export(&record.definition, terrarium_spec::Format::Native)
        .ok()
        .and_then(|e| e.files.into_iter().next().map(|(_, text)| text))
        .unwrap_or_default();
    let title = format!("{}:{}", record.name, record.version);
    let body = html! {
        h1 { a href=(env_href(&record.name)) { (record.name) } " : " (record.version) " " (labels(&record)) }
        dl.kv {
            dt { "Content hash" } dd.mono { (record.content_hash) }
            dt { "Lock" } dd.mono { (record.lock_hash.as_deref().unwrap_or("not locked yet")) }
            dt { "Created" } dd { (record.created_at) " by " (record.created_by) }
            dt { "Source" } dd { (record.source.kind) @if let Some(f) = &record.source.file { " · " code { (f) } } @if let Some(f) = &record.source.format { " (" (f) ")" } }
            @if let Some(p) = &record.parent { dt { "Parent" } dd { (p) } }
            @if let Some(d) = &record.description { dt { "Description" } dd { (d) } }
            dt { "Tags" } dd { (tags(&record.tags)) }
        }
        h2 { "Locked packages" }
        @match &lock {
            Some(text) => (lock_view::render(text)),
            None => p.muted { "This version has no lock yet; it is locked at first use." },
        }
        h2 { "Definition" }
        pre id="definition" { (yaml) }
        h2 { "Images" }
        @if builds.is_empty() {
            p.muted { "No image has been built from this version (" code { "terrarium image build " (title) } ")." }
        } @else {
            table #images {
                thead { tr { th { "Built" } th { "Digest" } th { "Size" } th { "Layers" } th { "Base" } th { "Pushed to" } th { "Time" } th { "By" } } }
                tbody {
                    @for b in &builds {
                        tr {
                            td { (b.built_at) }
                            td.mono title=(b.log) { (b.digest) }
                            td { (crate::human_size(b.size)) }
                            td { (b.layers) }
                            td { (b.base.as_deref().unwrap_or("scratch")) }
                            td.mono { (b.pushed_to.as_deref().unwrap_or("-")) }
                            td { (format!("{:.1} s", b.seconds)) }
                            td { (b.actor) }
                        }
                    }
                }
            }
        }
        h2 { "Runs" }
        (runs_table(&runs))
    };
    Ok(page(&title, Some(&identity), body))
}

#[derive(Debug, Deserialize)]
struct DiffQuery {
    name: Option<String>,
    old: String,
    new: String,
}

async fn diff(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiQuery(query): ApiQuery<DiffQuery>,
) -> Result<Markup, ApiError> {
    // With `name`, `old` and `new` are versions of it; otherwise full references.
    let reference = |v: &str| match &query.name {
        Some(name) => Reference::version(name, v).map_err(ApiError::invalid),
        None => Reference::parse(v).map_err(|e| ApiError::invalid(e.to_string())),
    };
    let old = reference(&query.old)?;
    let new = reference(&query.new)?;
    let platform = terrarium_lock::current_platform();
    let diff = state
        .blocking(move |store| {
            crate::api::environments::diff_versions(store, &old, &new, &platform)
        })
        .await?;
    let title = format!("{} → {}", diff.old, diff.new);
    let body = html! {
        h1 { "Diff " (diff.old) " → " (diff.new) }
        p.mono.muted { (diff.old_content_hash) " → " (diff.new_content_hash) }
        @if diff.changes.is_empty() {
            p id="identical" { "No differences." }
        } @else {
            table id="changes" {
                thead { tr { th { "Section" } th { "Key" } th { "Change" } th { "Old" } th { "New" } } }
                tbody {
                    @for c in &diff.changes {
                        tr class=(c.kind) {
                            td { (c.section) } td.mono { (c.key) } td { (c.kind) }
                            td.mono { (c.old.as_deref().unwrap_or("")) } td.mono { (c.new.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&title, Some(&identity), body))
}

fn runs_table(runs: &[RunRecord]) -> Markup {
    html! {
        @if runs.is_empty() {
            p.muted { "No runs." }
        } @else {
            table id="runs" {
                thead { tr { th { "Run" } th { "Experiment" } th { "Environment" } th { "Command" } th { "Target" } th { "Started" } th { "State" } th { "Exit" } th { "Who" } } }
                tbody {
                    @for r in runs {
                        tr {
                            td { a.run href={ "/ui/runs/" (segment(&r.id)) } { (r.id) } }
                            td { (r.experiment) }
                            td { a href=(version_href(&r.environment, &r.version)) { (r.environment) ":" (r.version) } }
                            td.mono { (r.command.join(" ")) }
                            td {
                                (r.target)
                                @if let Some(job) = &r.job { span.muted { " · " (job.kind) " " (job.job_id) } }
                            }
                            td.muted { (r.started_at) }
                            td.state { (state_badge(r.state)) }
                            td {
                                @match r.exit_code {
                                    Some(0) => span.ok { "0" },
                                    Some(code) => span.fail { (code) },
                                    None => span.muted { "—" },
                                }
                            }
                            td { (r.actor) }
                        }
                    }
                }
            }
        }
    }
}

/// A run's state, coloured by how it ended.
fn state_badge(state: RunState) -> Markup {
    let class = match state {
        RunState::Completed => "ok",
        RunState::Queued | RunState::Running => "muted",
        _ => "fail",
    };
    html! { span class=(class) { (state) } }
}

#[derive(Debug, Default, Deserialize)]
struct RunsQuery {
    experiment: Option<String>,
}

async fn runs(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<Markup, ApiError> {
    let experiment = query.experiment.clone().filter(|e| !e.is_empty());
    let runs = state
        .blocking(move |store| Ok(store.list_runs(experiment.as_deref(), 500)?))
        .await?;
    let body = html! {
        h1 { "Runs" }
        form.inline method="get" action="/ui/runs" {
            input type="text" name="experiment" placeholder="experiment" value=[query.experiment.as_deref()];
            button type="submit" { "Filter" }
        }
        (runs_table(&runs))
    };
    Ok(page("Runs", Some(&identity), body))
}

async fn run(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
    ApiPath(id): ApiPath<String>,
) -> Result<Markup, ApiError> {
    let (record, log) = state
        .blocking(move |store| Ok((store.get_run(&id)?, store.get_run_log(&id)?)))
        .await?;
    let body = html! {
        h1 { "Run " (record.id) }
        dl.kv {
            dt { "Environment" } dd { a href=(version_href(&record.environment, &record.version)) { (record.environment) ":" (record.version) } }
            dt { "Experiment" } dd { (record.experiment) }
            dt { "Command" } dd.mono { (record.command.join(" ")) }
            dt { "Working directory" } dd.mono { (record.cwd) }
            dt { "Target" } dd { (record.target) }
            dt { "Lock" } dd.mono { (record.lock_hash.as_deref().unwrap_or("")) }
            dt { "State" } dd id="state" { (state_badge(record.state)) }
            dt { "Started" } dd { (record.started_at) " by " (record.actor) }
            dt { "Finished" } dd { (record.finished_at.as_deref().unwrap_or(if record.state.is_final() { "—" } else { "not yet" })) }
            dt { "Exit code" } dd { @match record.exit_code { Some(c) => (c), None => "—" } }
        }
        @if let Some(job) = &record.job {
            h2 { "Job" }
            dl.kv id="job" {
                dt { "Engine" } dd { (job.kind) }
                dt { "Job id" } dd.mono { (job.job_id) }
                dt { "Nodes" } dd { (job.nodes) @if let Some(list) = &job.node_list { " · " span.mono { (list) } } }
                dt { "Queued" } dd { (job.queued_at) }
                @if let Some(reason) = &job.reason { dt { "Reason" } dd { (reason) } }
                @if let Some(dir) = &job.log_dir { dt { "Logs" } dd.mono { (dir) } }
            }
        }
        h2 { "Log" }
        @match log {
            Some(bytes) => pre id="log" { (String::from_utf8_lossy(&bytes)) },
            None => p.muted { "No log was stored for this run." },
        }
    };
    Ok(page(&format!("Run {}", record.id), Some(&identity), body))
}

async fn compute(
    State(state): State<SharedState>,
    Extension(identity): Extension<Identity>,
) -> Result<Markup, ApiError> {
    let targets: Vec<ComputeRecord> = state.blocking(|store| Ok(store.list_compute()?)).await?;
    let body = html! {
        h1 { "Compute targets" }
        @if targets.is_empty() {
            p.muted { "No compute targets (" code { "terrarium compute add NAME --kind slurm" } "). Runs go to " code { "local" } " or " code { "container" } "." }
        } @else {
            table id="compute" {
                thead { tr { th { "Name" } th { "Kind" } th { "Options" } th { "Created" } } }
                tbody {
                    @for t in &targets {
                        tr {
                            td { (t.name) }
                            td { (t.kind) }
                            td { @for (k, v) in &t.options { span.tag.mono { (k) "=" (v) } } }
                            td.muted { (t.created_at) " · " (t.created_by) }
                        }
                    }
                }
            }
        }
    };
    Ok(page("Compute targets", Some(&identity), body))
}

async fn login_form() -> Markup {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            p { "Paste an API token (" code { "terrarium token create --role reader" } ")." }
            form method="post" action="/ui/login" {
                input type="password" name="token" size="60" autocomplete="off";
                " " button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// Whether the browser reached this server over TLS (directly, or through a proxy that says
/// so): then the cookie is `Secure`, so it is never sent over plain HTTP.
fn over_tls(headers: &axum::http::HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    text("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"))
        || text("origin").is_some_and(|o| o.starts_with("https://"))
}

/// Sign out: the browser forgets the token (it stays valid for the API until revoked).
async fn logout(headers: axum::http::HeaderMap) -> Response {
    let secure = if over_tls(&headers) { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/ui/login")).into_response()
}

async fn login(
    State(state): State<SharedState>,
    headers: axum::http::HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let secure = if over_tls(&headers) { "; Secure" } else { "" };
    let token = form.token.trim().to_string();
    let check = token.clone();
    match state
        .blocking(move |store| crate::auth::authenticate(store, &check))
        .await
    {
        Ok(_) => {
            let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
            ([(header::SET_COOKIE, cookie)], Redirect::to("/ui")).into_response()
        }
        Err(err) => (
            err.status,
            page(
                "Sign in",
                None,
                html! { h1 { "Sign in" } p.fail { (err.message) } p { a href="/ui/login" { "Try again" } } },
            ),
        )
            .into_response(),
    }
}
