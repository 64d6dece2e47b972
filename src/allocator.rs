//! Process-wide allocator settings for the `ferry` program.

/// Keeps memory freed at the top of glibc's heaps, up to 16 MiB, instead of
/// handing it back to the OS at once.
///
/// Received file data is allocated on a server's loop thread and freed on
/// the file writer's thread a moment later, chunk after chunk. With glibc's
/// default (trim above 128 KiB), almost every freed run was returned with
/// `madvise` and page-faulted in again for the next read: 15-20 % of the
/// server's CPU in a 1 GiB transfer (`ferry bench transfer`, and
/// `GLIBC_TUNABLES=glibc.malloc.trim_threshold=...` side by side). Peak
/// resident memory grows by about 2 MiB.
///
/// Also keeps glibc to two heaps ("arenas"). By default each allocating
/// thread may get a heap of its own, up to eight per core, and what is
/// freed in a heap stays there: after 900 clients of the std runtime (two
/// threads each) left, the server held 60-68 MiB that not even
/// `malloc_trim` gave back, against 10 MiB with two heaps (issue 12's
/// join of ~1,000 members; the soak saw the same creep wave after wave).
/// Small allocations are served from each thread's cache without taking a
/// heap's lock, and the std runtime's threads take the hub's lock for
/// their work anyway.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const TRIM_THRESHOLD: libc::c_int = 16 << 20;
        const ARENAS: libc::c_int = 2;
        // SAFETY: `mallopt` only sets a glibc malloc parameter; it is called
        // first thing in `main`, and a refusal (return 0) changes nothing.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}

/// Hands memory freed inside glibc's heaps back to the OS.
///
/// The trim threshold above only returns memory freed at the very top of
/// a heap. After a flood of clients or a stalled relay leaves, what they
/// held is free but scattered below live allocations, and stays resident:
/// 1.6 GiB was still held after an attacking pair disconnected (issue 12).
/// `malloc_trim` releases every free page of every heap. It walks the heaps
/// under their locks, so `ferry serve` calls it from its own thread, at
/// most once a second, after clients leave; never from an event loop.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` only returns free pages to the OS; it has
        // no preconditions and its result (whether anything was released)
        // is not needed.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
