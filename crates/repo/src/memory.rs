//! Asking the allocator to return freed memory after large operations.
//!
//! The binary registers how (`tessera::memory`, glibc's `malloc_trim`):
//! this crate holds no unsafe code. Without a registration, nothing runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Sets what [`release_free_memory`] runs; the first call wins.
pub fn set_release(release: fn()) {
    let _ = RELEASE.set(release);
}

/// Runs the registered release on a blocking thread, so that the request
/// that asked does not wait for it; one at a time. Call after operations
/// that allocated a lot, not per request. Needs a Tokio runtime.
pub(crate) fn release_free_memory() {
    static RUNNING: AtomicBool = AtomicBool::new(false);
    let Some(release) = RELEASE.get().copied() else { return };
    if RUNNING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::task::spawn_blocking(move || {
        release();
        RUNNING.store(false, Ordering::Release);
    });
}
