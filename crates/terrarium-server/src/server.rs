//! `terrarium server`: listening, layers, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use terrarium_store::Store;

use crate::error::ApiError;
use crate::state::{AppState, SharedState};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Serve requests without a token (as `contributor`). Refused on non-loopback addresses.
    pub allow_anonymous_local: bool,
    /// The largest request body, except run logs (which may be 16 MiB).
    pub body_limit: usize,
    /// How long one request may take before it is answered with `timeout`.
    pub request_timeout: Duration,
    /// How long a graceful shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// How long a client may take to send a request's head.
    pub header_timeout: Duration,
    /// Open connections at most (fewer when the open-files limit is lower).
    pub max_connections: usize,
    /// Where packs for compute nodes are kept (`PUT /api/v1/packs/...`); none without it.
    pub packs: Option<std::path::PathBuf>,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            allow_anonymous_local: false,
            body_limit: 2 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            packs: None,
        }
    }
}

/// The whole application, for a pool of stores.
pub fn app(state: SharedState, config: &ServerConfig) -> Router {
    let api = crate::api::router();
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(crate::api::openapi_json))
        .nest("/api/v1", api)
        .nest("/ui", crate::ui::router())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
        })
        // Authentication, the audit trail and the request timeout are one layer: the timeout
        // must know whether the request's change committed (see `auth::access`).
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            crate::auth::access,
        ))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(state)
}

/// Serve `stores` (one per database connection) until SIGINT or SIGTERM; then finish the
/// requests in flight and return.
pub fn serve(config: ServerConfig, stores: Vec<Arc<dyn Store>>) -> std::io::Result<()> {
    if config.allow_anonymous_local && !config.listen.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "--allow-anonymous-local is refused on {}: anonymous access is only for loopback addresses (127.0.0.1, ::1)",
                config.listen.ip()
            ),
        ));
    }
    let packs = match &config.packs {
        Some(dir) => Some(Arc::new(crate::packs::PackStore::open(dir).map_err(
            |err| {
                std::io::Error::new(
                    err.kind(),
                    format!("cannot keep packs in {}: {err}", dir.display()),
                )
            },
        )?)),
        None => None,
    };
    let stores_count = stores.len();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(stores.len().max(4) * 2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut state = AppState::new(stores, config.allow_anonymous_local);
        state.request_timeout = config.request_timeout;
        // Packs no link was given for since any link could still live are removed at start
        // and every hour.
        if let Some(packs) = packs.clone() {
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(3600));
                loop {
                    every.tick().await;
                    let store = Arc::clone(&packs);
                    if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || {
                        store.sweep(crate::packs::KEEP_AFTER_LAST_LINK)
                    })
                    .await
                    {
                        if n > 0 {
                            eprintln!("terrarium server: removed {n} pack(s) no link was given for in 31 days");
                        }
                    }
                }
            });
        }
        state.packs = packs;
        let state = Arc::new(state);
        let app = app(state, &config);
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let address = listener.local_addr()?;
        eprintln!("terrarium server listening on http://{address}");
        let log: terrarium_serve::Log =
            Arc::new(|line: &str| eprintln!("terrarium server: {line}"));
        let stopping = async {
            shutdown_signal().await;
            eprintln!("terrarium server: stopping; finishing requests in flight");
        };
        // The scoring front's listener: a deadline for each request's head, and a cap on
        // connections at which the longest-idle one makes room. In-flight requests end within
        // the request timeout, so the grace period bounds a shutdown.
        let served = terrarium_serve::listen::serve(
            vec![listener],
            app,
            config.header_timeout,
            terrarium_serve::listen::connection_cap(config.max_connections, 16 + stores_count),
            log,
            stopping,
        );
        if tokio::time::timeout(config.shutdown_grace + config.request_timeout, served)
            .await
            .is_err()
        {
            eprintln!("terrarium server: requests still running; stopping anyway");
        }
        eprintln!("terrarium server: stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
