//! The HTTP front: Azure ML's scoring routes, MLflow's, and a health check, in front of the
//! worker pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;

use crate::pool::{Health, Outcome, Pool, SubmitError};
use crate::protocol::RequestHeader;
use crate::swagger::Swagger;
use crate::Log;

/// azmlinfsrv's limit on request-id headers.
const HEADER_LIMIT: usize = 100;

pub struct App {
    pub pool: Arc<Pool>,
    pub swagger: Swagger,
    pub log: Log,
    pub server_version: String,
}

/// The request's ids, as azmlinfsrv derives them.
#[derive(Clone)]
struct RequestIds {
    request_id: String,
    legacy_client_request_id: String,
    client_request_id: String,
}

/// Routes from the definition's `inference_config`, beside the standard ones.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    pub scoring: Option<String>,
    pub liveness: Option<String>,
    pub readiness: Option<String>,
}

/// The front's routes. Every answer the front makes itself has azmlinfsrv's error shape
/// ([`message`]); a request's body must arrive whole within `body_timeout` (408 after) and
/// within `body_limit` bytes (413).
pub fn router(app: Arc<App>, routes: &Routes, body_limit: usize, body_timeout: Duration) -> Router {
    let mut router = Router::new()
        .route("/", get(liveness))
        .route("/score", any(score))
        .route("/swagger.json", get(swagger))
        .route("/health", get(health))
        .route("/invocations", post(invocations))
        .route("/ping", get(ping));
    let standard = [
        "/",
        "/score",
        "/swagger.json",
        "/health",
        "/invocations",
        "/ping",
    ];
    let mut add = |path: &Option<String>, handler: axum::routing::MethodRouter<Arc<App>>| {
        if let Some(path) = path {
            if !standard.contains(&path.as_str()) {
                router = std::mem::take(&mut router).route(path, handler);
            }
        }
    };
    add(&routes.scoring, any(score));
    add(&routes.liveness, get(liveness));
    add(&routes.readiness, get(readiness));
    let body = BodyRules {
        app: Arc::clone(&app),
        limit: body_limit,
        timeout: body_timeout,
    };
    router
        // After every route is added: it applies to the routes there are.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(body, read_body))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            request_ids,
        ))
        .with_state(app)
}

/// `{"message": "..."}` exactly as azmlinfsrv writes it (Python's `json.dumps`: `": "` after
/// keys, non-ASCII escaped), so that clients comparing bytes see no difference.
fn message(status: StatusCode, text: impl Into<String>) -> Response {
    let body = format!("{{\"message\": {}}}", python_json_string(&text.into()));
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "x-ms-run-function-failed",
        HeaderValue::from_static("False"),
    );
    response
}

async fn method_not_allowed() -> Response {
    // As werkzeug words it; axum adds the `Allow` header.
    message(
        StatusCode::METHOD_NOT_ALLOWED,
        "405 Method Not Allowed: The method is not allowed for the requested URL.",
    )
}

async fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "404 Not Found: The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.",
    )
}

#[derive(Clone)]
struct BodyRules {
    app: Arc<App>,
    limit: usize,
    timeout: Duration,
}

/// Why a request's body was not read.
enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// A request's whole body, read before its handler runs: within the size limit, and within the
/// timeout, so that a client sending it slowly (or not at all) holds its connection for a
/// bounded time, and a request reaches the workers' queue only once it has arrived whole.
async fn read_body(State(rules): State<BodyRules>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let read = if declared.is_some_and(|n| n > rules.limit as u64) {
        // No use reading what will be refused.
        Ok(Err(BodyError::TooLarge))
    } else {
        tokio::time::timeout(rules.timeout, collect(body, rules.limit)).await
    };
    let mut response = match read {
        Ok(Ok(body)) => return next.run(Request::from_parts(parts, body)).await,
        // axum's words for it, as the front said before it read bodies itself.
        Ok(Err(BodyError::TooLarge)) => message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Failed to buffer the request body: length limit exceeded",
        ),
        Ok(Err(BodyError::Read(err))) => message(
            StatusCode::BAD_REQUEST,
            format!("Failed to buffer the request body: {err}"),
        ),
        Err(_) => message(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "The request's body did not arrive within {} ms.",
                rules.timeout.as_millis()
            ),
        ),
    };
    // The rest of the body may still be on its way: the connection cannot be reused.
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        HeaderValue::from_static("close"),
    );
    let id = parts
        .extensions
        .get::<RequestIds>()
        .map_or("", |ids| ids.request_id.as_str());
    (rules.app.log)(&format!(
        "{} {} {} {:.3}ms {id}",
        parts.method,
        parts.uri,
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0,
    ));
    response
}

/// The body's bytes, at most `limit` of them.
async fn collect(mut body: Body, limit: usize) -> Result<Body, BodyError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut size = 0;
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
            // Trailers: nothing a handler reads.
            continue;
        };
        size += data.len();
        if size > limit {
            return Err(BodyError::TooLarge);
        }
        chunks.push(data);
    }
    // One chunk (the usual case) is passed on without a copy.
    Ok(match chunks.len() {
        0 => Body::empty(),
        1 => Body::from(chunks.remove(0)),
        _ => Body::from(chunks.concat()),
    })
}

/// Request ids on every response, and the azmlinfsrv header rules.
async fn request_ids(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let request_id = match get("x-request-id") {
        id if id.is_empty() => new_request_id(),
        id => id,
    };
    if request_id.len() > HEADER_LIMIT {
        return message(
            StatusCode::from_u16(431).unwrap(),
            format!("x-request-id must not exceed {HEADER_LIMIT} characters"),
        );
    }
    let mut legacy = get("x-ms-request-id");
    let mut client = get("x-ms-client-request-id");
    if !legacy.is_empty() {
        if client.is_empty() {
            client = legacy.clone();
        }
    } else {
        legacy = if client.is_empty() {
            request_id.clone()
        } else {
            client.clone()
        };
    }
    if legacy.len() > HEADER_LIMIT || client.len() > HEADER_LIMIT {
        return message(
            StatusCode::from_u16(431).unwrap(),
            format!("x-ms-request-id and x-ms-client-request-id must not exceed {HEADER_LIMIT} characters"),
        );
    }
    let trace = headers.get("traceid").cloned();
    let ids = RequestIds {
        request_id,
        legacy_client_request_id: legacy,
        client_request_id: client,
    };
    let mut request = request;
    request.extensions_mut().insert(ids.clone());
    let mut response = next.run(request).await;
    let out = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&app.server_version) {
        out.insert("x-ms-server-version", v);
    }
    for (name, value) in [
        ("x-request-id", &ids.request_id),
        ("x-ms-request-id", &ids.legacy_client_request_id),
        ("x-ms-client-request-id", &ids.client_request_id),
    ] {
        if !value.is_empty() {
            if let Ok(v) = HeaderValue::from_str(value) {
                out.insert(name, v);
            }
        }
    }
    if let Some(trace) = trace {
        out.insert("traceid", trace);
    }
    response
}

async fn liveness() -> Response {
    ([("content-type", "text/html; charset=utf-8")], "Healthy").into_response()
}

async fn readiness(State(app): State<Arc<App>>) -> Response {
    match app.pool.health() {
        Health::Ready | Health::Busy => {
            ([("content-type", "text/html; charset=utf-8")], "Ready").into_response()
        }
        other => message(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {other:?}"),
        ),
    }
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let status = app.pool.status();
    let code = match status.status {
        Health::Failed => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    (code, axum::Json(status)).into_response()
}

async fn ping(State(app): State<Arc<App>>) -> Response {
    match app.pool.health() {
        Health::Ready | Health::Busy => {
            ([("content-type", "application/json")], "\n").into_response()
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, "\n").into_response(),
    }
}

/// The query as pairs, which any query string is: a typed query would answer a repeated
/// `version` with a plain-text 400, where Flask takes the first.
async fn swagger(
    State(app): State<Arc<App>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let version = query.iter().find(|(k, _)| k == "version").map(|(_, v)| v);
    match app.swagger.get(version.map(String::as_str)) {
        Ok(doc) => {
            let mut response = axum::Json(doc).into_response();
            response.headers_mut().insert(
                "x-ms-run-function-failed",
                HeaderValue::from_static("False"),
            );
            response
        }
        Err(text) => message(StatusCode::NOT_FOUND, text),
    }
}

async fn score(
    state: State<Arc<App>>,
    peer: ConnectInfo<SocketAddr>,
    ids: axum::Extension<RequestIds>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    dispatch(state, peer, ids, "score", method, uri, headers, body).await
}

async fn invocations(
    state: State<Arc<App>>,
    peer: ConnectInfo<SocketAddr>,
    ids: axum::Extension<RequestIds>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    dispatch(state, peer, ids, "invocations", method, uri, headers, body).await
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    State(app): State<Arc<App>>,
    peer: ConnectInfo<SocketAddr>,
    axum::Extension(ids): axum::Extension<RequestIds>,
    route: &'static str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    if route == "score" && ![Method::GET, Method::POST, Method::OPTIONS].contains(&method) {
        return message(
            StatusCode::METHOD_NOT_ALLOWED,
            "The method is not allowed for the requested URL.",
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return message(rejection.status(), rejection.body_text());
        }
    };
    let mut header = RequestHeader {
        kind: "request",
        id: ids.request_id.clone(),
        route,
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers: Vec::new(),
        remote_addr: None,
    };
    if app.pool.headers_wanted() {
        header.headers = headers
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect();
        header.remote_addr = Some(peer.0.ip().to_string());
    }
    let receiver = match app.pool.submit(header, body.to_vec()) {
        Ok(receiver) => receiver,
        Err(SubmitError::Full) => {
            let mut response = message(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is at capacity: every worker is busy and the queue is full. Retry later.",
            );
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            return response;
        }
        Err(SubmitError::Closed) => {
            let reason = app
                .pool
                .reason()
                .unwrap_or_else(|| "the service is stopping".into());
            return message(StatusCode::SERVICE_UNAVAILABLE, reason);
        }
    };
    let response = match receiver.await {
        Ok(Outcome::Response {
            status,
            headers,
            body,
            exec_ms,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, body).into_response();
            let out = response.headers_mut();
            out.remove(axum::http::header::CONTENT_TYPE);
            for (name, value) in headers {
                let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) else {
                    continue;
                };
                if is_hop_by_hop(&name) {
                    continue;
                }
                out.append(name, value);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("{exec_ms:.3}")) {
                out.insert("x-ms-run-fn-exec-ms", v);
            }
            response
        }
        Ok(Outcome::TimedOut(timeout)) => failed(
            &app,
            &ids,
            &format!("Scoring timeout after {} ms", timeout.as_millis()),
        ),
        // The pool logged why.
        Ok(Outcome::Invalid(_)) => failed(
            &app,
            &ids,
            "An unexpected error occurred in scoring script. Check the logs for more info.",
        ),
        Ok(Outcome::Crashed(reason)) => {
            (app.log)(&format!("request {}: {reason}", ids.request_id));
            failed(
                &app,
                &ids,
                "The worker serving this request exited; it is being restarted. Check the logs for more info.",
            )
        }
        Err(_) => failed(&app, &ids, "The request was dropped by its worker."),
    };
    let mut response = response;
    if response.status().is_server_error() {
        if let Ok(v) = HeaderValue::from_str(&ids.request_id) {
            response.headers_mut().insert("x-terrarium-error-id", v);
        }
    }
    (app.log)(&format!(
        "{method} {} {} {:.3}ms {}",
        uri,
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0,
        ids.request_id
    ));
    response
}

fn failed(_app: &App, _ids: &RequestIds, text: &str) -> Response {
    let mut response = message(StatusCode::INTERNAL_SERVER_ERROR, text);
    response
        .headers_mut()
        .insert("x-ms-run-function-failed", HeaderValue::from_static("True"));
    response
}

/// A random (version 4) UUID, as azmlinfsrv makes request ids, from a per-thread generator
/// seeded once by the OS: not a `getrandom` call per request.
fn new_request_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let seed = uuid::Uuid::new_v4().as_u64_pair();
            (seed.0 ^ seed.1) | 1
        });
    }
    // xorshift64*, twice for 128 bits.
    let next = || {
        STATE.with(|state| {
            let mut x = state.get();
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            state.set(x);
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        })
    };
    let bytes = ((u128::from(next()) << 64) | u128::from(next())).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// A JSON string as Python's `json.dumps` writes it (`ensure_ascii=True`).
fn python_json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7f => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "upgrade"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn strings_as_python_json_dumps_writes_them() {
        // json.dumps('a"b\\c\n\x01é😀\x7f')
        assert_eq!(
            super::python_json_string("a\"b\\c\n\u{1}é😀\u{7f}"),
            format!(r#""a\"b\\c\n\u0001\u00e9\ud83d\ude00{}""#, '\u{7f}')
        );
    }
}
