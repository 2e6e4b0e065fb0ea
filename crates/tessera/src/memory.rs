//! Keeping the server's resident size close to what it uses: the one
//! place tessera calls into the C library.
//!
//! A merge or a push allocates and frees hundreds of megabytes in small
//! pieces on several threads. glibc's malloc gives each thread its own
//! arena (up to eight per core) and keeps freed memory inside them, and its
//! threshold for serving large blocks from `mmap` rises to 32 MiB once
//! such a block is freed: a server measured at 112 MiB of live heap held
//! 280 MiB resident after landing a 10,000-commit merge request
//! (bench/monorepo, heaptrack). Two arenas, a fixed `mmap` threshold of
//! 1 MiB (so large buffers go back to the system when freed; not lower, as
//! a compressor's state of a few hundred KiB is allocated per object
//! written, and 256 KiB made the merge that creates 100,000 directories
//! 2.4 times slower) and a trim after each large operation keep the
//! resident size near the live heap.

/// Sets malloc's arena count and `mmap` threshold, unless the environment
/// sets them (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`). Call before
/// any thread starts.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes malloc's parameters; called before
        // other threads exist, as glibc asks for M_ARENA_MAX.
        unsafe {
            if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
            if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            }
        }
    }
}

/// Returns freed memory to the system: all arenas, including free pages
/// in the middle of their heaps. The server calls it (through
/// `tessera_repo::memory`, which holds no unsafe code) after merges,
/// pushes and its first index load, on a blocking thread.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes malloc's own locks; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
