//! Accepting the front's connections, so that slow or idle clients cannot starve the others.
//!
//! A client has [`Limits::header_timeout`] to send a request's line and headers, on a new
//! connection and between requests on a kept-alive one; then its connection is closed. At most
//! a cap of connections are held at once, fewer than [`Limits::max_connections`] when the
//! open-files limit is lower ([`connection_cap`]): past that limit `accept` fails and nobody is
//! served. At the cap, a new connection closes the oldest one that has no request in progress
//! (it sends nothing, or sends a request's head slowly) rather than wait behind it; only when
//! every connection is serving a request does it wait for one to finish. The body's deadline
//! is the router's ([`crate::http::router`]), since only a handler can answer 408.
//!
//! Nothing here is particular to scoring: it serves any axum [`Router`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tower_service::Service;

use crate::Log;

/// How long clients may take and how many may be connected: see the module's documentation.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a client may take to send a request's line and headers, on a new connection
    /// and between requests on a kept-alive one, before its connection is closed.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's whole body, before it gets 408.
    pub body_timeout: Duration,
    /// Connections held at once, at most.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// `wanted` connections, or fewer if the open-files limit has no room for them beside the
/// files open now and `reserved` more (the process's own: workers' sockets and pipes, logs).
pub fn connection_cap(wanted: usize, reserved: usize) -> usize {
    let Some(limit) = open_files_limit() else {
        return wanted.max(1);
    };
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count());
    wanted.min(limit.saturating_sub(open + reserved)).max(1)
}

/// The soft limit on open files (`ulimit -n`), where `/proc` tells it; `None` if unlimited.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Serve `router` on `listeners`, at most `cap` connections at once, until `stop` completes.
/// Then idle connections are closed, those serving a request finish it, and this returns when
/// every connection is closed.
pub async fn serve(
    listeners: Vec<TcpListener>,
    router: Router,
    header_timeout: Duration,
    cap: usize,
    log: Log,
    stop: impl Future<Output = ()>,
) {
    let cap = cap.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let (stopping, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        router,
        http,
        log,
        slots: Arc::new(Semaphore::new(cap)),
        open: Mutex::new(BTreeMap::new()),
        next_id: AtomicU64::new(0),
        stop: stop_rx,
    });
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(accept(listener, Arc::clone(&shared))))
        .collect();
    stop.await;
    stopping.send_replace(true);
    for task in accepting {
        let _ = task.await;
    }
    // Each connection holds a slot until it is closed.
    let _ = shared.slots.acquire_many(cap as u32).await;
}

struct Shared {
    router: Router,
    http: http1::Builder,
    log: Log,
    /// One per connection held.
    slots: Arc<Semaphore>,
    /// The connections held, oldest first.
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    stop: watch::Receiver<bool>,
}

#[derive(Default)]
struct Connection {
    /// Requests in progress: from their head's arrival until their response is written.
    requests: AtomicUsize,
    evicted: AtomicBool,
    evict: Notify,
}

impl Shared {
    /// Ask the oldest connection without a request in progress to close; false if there is none.
    fn evict_oldest_idle(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        for connection in open.values() {
            if connection.requests.load(Ordering::SeqCst) == 0
                && !connection.evicted.swap(true, Ordering::SeqCst)
            {
                connection.evict.notify_one();
                return true;
            }
        }
        false
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut stop = shared.stop.clone();
    let mut warned: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                continue;
            }
            Err(err) => {
                // Out of file descriptors, most likely (the cap leaves room for the process's
                // own, but other files may be open): an idle connection makes room. Either way,
                // never spin on an error.
                let out_of_files = matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                let evicted = out_of_files && shared.evict_oldest_idle();
                if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                    warned = Some(Instant::now());
                    (shared.log)(&format!(
                        "cannot accept a connection: {err}{}",
                        if evicted {
                            "; closing the oldest idle connection"
                        } else {
                            ""
                        }
                    ));
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                continue;
            }
        };
        let slot = match Arc::clone(&shared.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // At the cap: the oldest idle connection makes room. Again after a while, in
                // case it began a request meanwhile; when every connection is serving one, this
                // waits for one to finish.
                let acquire = Arc::clone(&shared.slots).acquire_owned();
                tokio::pin!(acquire);
                loop {
                    shared.evict_oldest_idle();
                    tokio::select! {
                        slot = &mut acquire => match slot {
                            Ok(slot) => break slot,
                            Err(_) => return,
                        },
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        let connection = Arc::new(Connection::default());
        shared
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&connection));
        let service = {
            let connection = Arc::clone(&connection);
            let router = shared.router.clone();
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                let busy = Busy::new(Arc::clone(&connection));
                let mut router = router.clone();
                request.extensions_mut().insert(ConnectInfo(peer));
                async move {
                    let Ok(()) = std::future::poll_fn(|cx| {
                        <Router as Service<hyper::Request<Incoming>>>::poll_ready(&mut router, cx)
                    })
                    .await;
                    let Ok(response) = router.call(request).await;
                    Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
                }
            })
        };
        let serving = shared.http.serve_connection(TokioIo::new(stream), service);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            // Dropped in reverse order: the socket is closed, then the connection forgotten,
            // then its slot freed.
            let _slot = slot;
            let _held = Held {
                shared: Arc::clone(&shared),
                id,
            };
            let mut stop = shared.stop.clone();
            let mut serving = std::pin::pin!(serving);
            let mut closing = false;
            loop {
                tokio::select! {
                    _ = serving.as_mut() => return,
                    _ = connection.evict.notified(), if !closing => {}
                    _ = stop.wait_for(|s| *s), if !closing => {}
                }
                // Evicted, or the service is stopping: an idle connection closes now, one
                // serving a request once it is answered.
                if connection.requests.load(Ordering::SeqCst) == 0 {
                    return;
                }
                closing = true;
                serving.as_mut().graceful_shutdown();
            }
        });
    }
}

/// Forgets a connection when it closes.
struct Held {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.shared
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// Counts a request in progress on its connection, from its head's arrival until its
/// response's body is written or dropped.
struct Busy(Arc<Connection>);

impl Busy {
    fn new(connection: Arc<Connection>) -> Busy {
        connection.requests.fetch_add(1, Ordering::SeqCst);
        Busy(connection)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response's body that keeps its connection busy until it is written: a connection is not
/// evicted between a response and its body.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_open_files_limit_bounds_the_cap() {
        let Some(limit) = super::open_files_limit() else {
            return;
        };
        assert!(super::connection_cap(usize::MAX, 0) < limit);
        assert_eq!(super::connection_cap(4, 0), 4.min(limit));
        assert_eq!(super::connection_cap(4, usize::MAX / 2), 1);
    }
}
