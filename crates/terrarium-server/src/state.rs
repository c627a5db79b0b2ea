//! Shared server state: a small pool of stores, each with its own database connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use terrarium_store::Store;

use crate::error::ApiError;

pub struct AppState {
    stores: Vec<Arc<dyn Store>>,
    next: AtomicUsize,
    /// Requests without a token act as `contributor` (only on loopback listeners).
    pub allow_anonymous: bool,
}

impl AppState {
    pub fn new(stores: Vec<Arc<dyn Store>>, allow_anonymous: bool) -> Self {
        assert!(!stores.is_empty());
        Self {
            stores,
            next: AtomicUsize::new(0),
            allow_anonymous,
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
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|err| ApiError::internal(format!("request task failed: {err}")))?
    }
}

pub type SharedState = Arc<AppState>;
