//! Accepting connections so that a few slow or idle clients cannot starve the others.
//!
//! - Each request's head must arrive within `header_timeout` (hyper closes the connection
//!   otherwise); its body is bounded by the request timeout (`auth::access`).
//! - At most `max_connections` are open. When the cap is reached, the connection that has
//!   waited longest for a request (idle keep-alive, or a head still trickling in) is closed to
//!   make room; connections with a request in progress are never closed. Only when every
//!   connection is busy does accepting wait.
//! - A failed `accept` (too many open files) pauses accepting briefly instead of spinning.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt as _;

/// How connections are limited.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl Limits {
    /// 1,024 connections, or half the open-file limit when that is lower (each connection is
    /// a file; the database and logs need some too), and 10 s for a request's head.
    pub fn default_for_this_process() -> Self {
        let files = open_file_limit().unwrap_or(4096);
        Self {
            max_connections: (files / 2).clamp(8, 1024),
            header_timeout: Duration::from_secs(10),
        }
    }
}

#[allow(unsafe_code)]
fn open_file_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and reads nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    ok.then(|| usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

struct Slot {
    /// When the connection began waiting for its next request; `None` while one runs.
    idle_since: Option<Instant>,
    close: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    slots: Mutex<HashMap<u64, Slot>>,
    /// Signalled when a connection ends.
    freed: Notify,
}

impl Table {
    fn slots(&self) -> MutexGuard<'_, HashMap<u64, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_idle(&self, id: u64, idle: bool) {
        if let Some(slot) = self.slots().get_mut(&id) {
            slot.idle_since = idle.then(Instant::now);
        }
    }

    /// Make room for one more connection: true when there is room now.
    fn make_room(&self, max: usize) -> bool {
        let slots = self.slots();
        if slots.len() < max {
            return true;
        }
        if let Some(slot) = slots
            .values()
            .filter(|slot| slot.idle_since.is_some())
            .min_by_key(|slot| slot.idle_since)
        {
            slot.close.notify_one();
        }
        false
    }
}

/// Serve `app` on `listener` until `shutdown` completes; then stop accepting, let requests in
/// flight finish for up to `grace`, and return.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let table = Arc::new(Table::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        // Wait for a free slot, closing the longest-idle connection to get one.
        while !table.make_room(limits.max_connections) {
            tokio::select! {
                _ = table.freed.notified() => {}
                // Every connection is busy and none ends: check again soon.
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = &mut shutdown => return finish(graceful, grace).await,
            }
        }
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and the like: let connections end before trying again.
                    eprintln!("terrarium server: cannot accept a connection: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return finish(graceful, grace).await,
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let close = Arc::new(Notify::new());
        table.slots().insert(
            id,
            Slot {
                idle_since: Some(Instant::now()),
                close: Arc::clone(&close),
            },
        );
        let service = {
            let table = Arc::clone(&table);
            let app = app.clone();
            hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                table.set_idle(id, false);
                request.extensions_mut().insert(ConnectInfo(remote));
                let table = Arc::clone(&table);
                let response = app.clone().oneshot(request.map(axum::body::Body::new));
                async move {
                    let response = response.await;
                    table.set_idle(id, true);
                    response
                }
            })
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        let table = Arc::clone(&table);
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                // Dropping the connection closes it.
                _ = close.notified() => {}
            }
            table.slots().remove(&id);
            table.freed.notify_one();
        });
    }
}

async fn finish(
    graceful: hyper_util::server::graceful::GracefulShutdown,
    grace: Duration,
) -> std::io::Result<()> {
    eprintln!("terrarium server: stopping; finishing requests in flight");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!(
            "terrarium server: requests still running after {} s; stopping anyway",
            grace.as_secs()
        );
    }
    Ok(())
}
