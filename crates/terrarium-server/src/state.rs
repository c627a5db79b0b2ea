//! Shared server state: a small pool of stores, each with its own database connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use terrarium_store::audit::AuditScope;
use terrarium_store::Store;

use crate::error::ApiError;

tokio::task_local! {
    /// The audit scope of the mutating request this task serves (set by `auth::access`).
    pub static AUDIT: Option<Arc<AuditScope>>;
}

pub struct AppState {
    stores: Vec<Arc<dyn Store>>,
    next: AtomicUsize,
    /// Requests without a token act as `contributor` (only on loopback listeners).
    pub allow_anonymous: bool,
    /// How long one request may take before it is answered with `timeout`.
    pub request_timeout: std::time::Duration,
}

impl AppState {
    pub fn new(stores: Vec<Arc<dyn Store>>, allow_anonymous: bool) -> Self {
        assert!(!stores.is_empty());
        Self {
            stores,
            next: AtomicUsize::new(0),
            allow_anonymous,
            request_timeout: std::time::Duration::from_secs(30),
        }
    }

    /// Run blocking store work off the async workers, on the next connection in turn.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, ApiError> + Send + 'static,
    {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.stores.len();
        let store = Arc::clone(&self.stores[index]);
        // The request's audit row goes into the transaction of the change it describes.
        let scope = AUDIT.try_with(Clone::clone).ok().flatten();
        tokio::task::spawn_blocking(move || {
            terrarium_store::audit::with_scope(scope, || f(store.as_ref()))
        })
        .await
        .map_err(|err| ApiError::internal(format!("request task failed: {err}")))?
    }
}

pub type SharedState = Arc<AppState>;
