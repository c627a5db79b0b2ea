//! Audit rows written in the same transaction as the change they describe.
//!
//! A server wraps the store calls of one request in an [`AuditScope`] ([`with_scope`]). Each
//! backend's write transaction then inserts the scope's row just before it commits, once per
//! request, so a committed change always has its row and a crash can never leave one without
//! the other. A scope that was cancelled (the request timed out and its client was told so)
//! makes every later write roll back, so a change the client was told did not happen never
//! lands.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{AuditEntry, StoreError};

/// The audit row of one request, and whether its change was committed or cancelled.
#[derive(Debug)]
pub struct AuditScope {
    entry: AuditEntry,
    state: Mutex<ScopeState>,
}

#[derive(Debug, Default)]
struct ScopeState {
    cancelled: bool,
    /// The id of the row written with the request's first committed change.
    recorded: Option<i64>,
}

impl AuditScope {
    /// A scope whose row is `entry` (its `status` is what a committed change records until the
    /// server knows the answer's status: see [`crate::Store::set_audit_status`]).
    pub fn new(entry: AuditEntry) -> Arc<Self> {
        Arc::new(Self {
            entry,
            state: Mutex::new(ScopeState::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, ScopeState> {
        // The state is two plain fields: a panic elsewhere cannot leave them half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stop the request's changes from landing. Returns false when one has already committed
    /// (then the request must be let finish, since its change happened). A commit in progress
    /// holds the lock, so the answer is exact.
    pub fn cancel(&self) -> bool {
        let mut state = self.state();
        if state.recorded.is_some() {
            return false;
        }
        state.cancelled = true;
        true
    }

    /// The id of the audit row, when a change of this request committed.
    pub fn recorded(&self) -> Option<i64> {
        self.state().recorded
    }

    pub fn entry(&self) -> &AuditEntry {
        &self.entry
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<AuditScope>>> = const { RefCell::new(None) };
}

/// Run `f` (store calls on this thread) inside `scope`.
pub fn with_scope<T>(scope: Option<Arc<AuditScope>>, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<Arc<AuditScope>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|current| *current.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|current| current.replace(scope));
    let _reset = Reset(previous);
    f()
}

/// Commit a backend's write transaction `tx`, first inserting the current scope's audit row
/// when this is the request's first change. `insert` returns the new row's id.
pub(crate) fn commit<Tx>(
    mut tx: Tx,
    insert: impl FnOnce(&mut Tx, &AuditEntry) -> Result<i64, StoreError>,
    commit: impl FnOnce(Tx) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let Some(scope) = CURRENT.with(|current| current.borrow().clone()) else {
        return commit(tx);
    };
    let mut state = scope.state();
    if state.cancelled {
        // Dropping the transaction rolls it back.
        return Err(StoreError::Cancelled);
    }
    if state.recorded.is_some() {
        return commit(tx);
    }
    let id = insert(&mut tx, &scope.entry)?;
    commit(tx)?;
    state.recorded = Some(id);
    Ok(())
}
