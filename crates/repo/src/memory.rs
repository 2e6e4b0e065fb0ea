//! Asking the allocator to return freed memory after large operations.
//!
//! The binary registers how (`tessera::memory`, glibc's `malloc_trim`):
//! the library crates hold no unsafe code. Without a registration, nothing
//! runs. It lives here, below the server, because a merge trims between
//! the batches it stores (see [`crate::monorepo::Monorepo::advance`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static RELEASE: OnceLock<fn()> = OnceLock::new();
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Sets what the release functions run; the first call wins.
pub fn set_release(release: fn()) {
    let _ = RELEASE.set(release);
}

/// Takes the one release slot: `None` when nothing is registered or a
/// release is running already.
fn claim() -> Option<fn()> {
    let release = RELEASE.get().copied()?;
    (!RUNNING.swap(true, Ordering::AcqRel)).then_some(release)
}

/// Runs the registered release on a blocking thread, so that the request
/// that asked does not wait for it; one at a time. Call after operations
/// that allocated a lot, not per request. Needs a Tokio runtime.
pub fn release_free_memory() {
    if let Some(release) = claim() {
        drop(spawn(release));
    }
}

/// Runs a claimed release on a blocking thread. The slot is given back by
/// that task itself: whoever waits for it may be dropped meanwhile.
fn spawn(release: fn()) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        release();
        RUNNING.store(false, Ordering::Release);
    })
}

/// As [`release_free_memory`], but waits until the release ran: for a long
/// operation between its phases, so that what one phase freed is gone
/// before the next one allocates.
pub async fn release_free_memory_now() {
    if let Some(release) = claim() {
        let _ = spawn(release).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn count() {
        std::thread::sleep(std::time::Duration::from_millis(50));
        CALLS.fetch_add(1, Ordering::SeqCst);
    }

    /// Until no release runs; a slot never handed back fails the test.
    async fn idle() {
        for _ in 0..2000 {
            if !super::RUNNING.load(Ordering::Acquire) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the release slot was never handed back");
    }

    #[test]
    fn a_release_gives_its_slot_back_even_when_its_waiter_is_dropped() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        runtime.block_on(async {
            super::set_release(count);
            super::release_free_memory_now().await;
            assert_eq!(CALLS.load(Ordering::SeqCst), 1);
            // Started, then abandoned by its caller: it still runs, and
            // frees the slot for the next one.
            let abandoned = tokio::time::timeout(std::time::Duration::from_millis(5), super::release_free_memory_now());
            assert!(abandoned.await.is_err(), "the release takes longer than its waiter waits");
            idle().await;
            assert_eq!(CALLS.load(Ordering::SeqCst), 2);
            super::release_free_memory_now().await;
            assert_eq!(CALLS.load(Ordering::SeqCst), 3, "the slot was handed back");
            // One at a time: a release asked for while one runs is skipped.
            super::release_free_memory();
            super::release_free_memory_now().await;
            idle().await;
            assert_eq!(CALLS.load(Ordering::SeqCst), 4);
        });
    }
}
