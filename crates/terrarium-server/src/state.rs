//! Shared server state: a small pool of stores, each with its own database connection.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use terrarium_store::audit::AuditScope;
use terrarium_store::Store;

use crate::error::ApiError;

tokio::task_local! {
    /// The audit scope of the mutating request this task serves (set by `auth::access`).
    pub static AUDIT: Option<Arc<AuditScope>>;
}

pub struct AppState {
    stores: Vec<Arc<dyn Store>>,
    /// The stores not in use, by index; `available` has a permit for each.
    idle: Arc<Mutex<Vec<usize>>>,
    available: Arc<Semaphore>,
    /// Requests without a token act as `contributor` (only on loopback listeners).
    pub allow_anonymous: bool,
    /// How long one request may take before it is answered with `timeout`.
    pub request_timeout: std::time::Duration,
    /// Where packs for compute nodes are kept, when the server keeps them (`--packs DIR`).
    pub packs: Option<Arc<crate::packs::PackStore>>,
}

impl AppState {
    pub fn new(stores: Vec<Arc<dyn Store>>, allow_anonymous: bool) -> Self {
        assert!(!stores.is_empty());
        Self {
            idle: Arc::new(Mutex::new((0..stores.len()).collect())),
            available: Arc::new(Semaphore::new(stores.len())),
            stores,
            allow_anonymous,
            request_timeout: std::time::Duration::from_secs(30),
            packs: None,
        }
    }

    /// Run blocking store work off the async workers, on a connection no other request is
    /// using. A request waits for one here, as a task, rather than on a blocking thread queued
    /// behind a slow request on a connection picked in turn.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, ApiError> + Send + 'static,
    {
        let permit = Arc::clone(&self.available)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::internal("the server is shutting down"))?;
        let checkout = Checkout {
            index: self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .expect("a permit means an idle store"),
            idle: Arc::clone(&self.idle),
            _permit: permit,
        };
        let store = Arc::clone(&self.stores[checkout.index]);
        // The request's audit row goes into the transaction of the change it describes.
        let scope = AUDIT.try_with(Clone::clone).ok().flatten();
        // The checkout moves into the task: a request that times out gives its connection back
        // only when the work on it has ended.
        tokio::task::spawn_blocking(move || {
            let _checkout = checkout;
            terrarium_store::audit::with_scope(scope, || f(store.as_ref()))
        })
        .await
        .map_err(|err| ApiError::internal(format!("request task failed: {err}")))?
    }
}

/// A store in use: its index goes back to the idle list (before the permit is released) on drop.
struct Checkout {
    index: usize,
    idle: Arc<Mutex<Vec<usize>>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.index);
    }
}

pub type SharedState = Arc<AppState>;
