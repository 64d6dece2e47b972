//! Process-wide allocator settings for the `ferry` program, and when to
//! hand freed memory back to the OS.

use std::time::{Duration, Instant};

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
/// Also keeps glibc to one heap ("arena"). By default each allocating
/// thread may get a heap of its own, up to eight per core, and what is
/// freed in a heap stays there: after 900 clients of the std runtime (two
/// threads each) left, the server held 60-68 MiB that not even
/// `malloc_trim` gave back, against 10 MiB with two heaps (issue 12's
/// join of ~1,000 members; the soak saw the same creep wave after wave).
/// Two were still one too many: `malloc_trim` returns the free top of the
/// main heap only, and the event loop's thread allocated in the second,
/// whose free top stayed resident up to the trim threshold above. After
/// 497 members left (`ferry bench hostile --attacks large-room`, memory
/// read after 10 s), smol and tokio held 20-23 MiB against a start of 8 in
/// about one run of two; with one heap every runtime was back at 10-11,
/// run after run. `ferry bench fanout` (std, mio, the runtimes whose
/// threads allocate most) moved within its noise: 1 -> 100 std 3.64M
/// deliveries/s with two heaps, 3.59M with one; 10 -> 100 3.12M, 3.35M.
/// Small allocations are served from each thread's cache without taking a
/// heap's lock, and the std runtime's threads take the hub's lock for
/// their work anyway.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const TRIM_THRESHOLD: libc::c_int = 16 << 20;
        const ARENAS: libc::c_int = 1;
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

/// When a server hands freed memory back ([`release_free_memory`]): after
/// clients leave, once what they held is actually free, and at most once a
/// second.
///
/// A leave is announced when the hub closes the client, but its memory
/// (the frames still queued for it, its connection state) is freed only
/// when the adapter removes it, up to [`ferry_core::CLOSE_LINGER`] later
/// (§6.9 of PROTOCOL.md). A trim a fixed second after the first leave of a
/// wave ran before the last connections of the wave were removed, and
/// nothing trimmed again until another client left.
#[derive(Debug, Default)]
pub struct ReleasePlan {
    due: Option<Instant>,
    last_leave: Option<Instant>,
    last_trim: Option<Instant>,
}

impl ReleasePlan {
    /// How long after its leave a connection's memory is surely free: the
    /// close linger, and a margin for the loop to get to it.
    pub const FREED_WITHIN: Duration =
        Duration::from_millis(ferry_core::CLOSE_LINGER.as_millis() as u64 + 250);
    /// The least time between two trims: a trim walks every heap under its
    /// lock, so a reconnecting flood must not make the server trim on and
    /// on.
    pub const MIN_GAP: Duration = Duration::from_secs(1);

    /// A client left at `now`.
    pub fn on_leave(&mut self, now: Instant) {
        self.last_leave = Some(now);
        if self.due.is_none() {
            self.due = Some(self.not_before(now + Self::FREED_WITHIN));
        }
    }

    /// When the next trim is due, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Whether to trim at `now`; if so, the trim is taken as done and a
    /// last one planned for leaves whose memory may not be free yet.
    pub fn take_due(&mut self, now: Instant) -> bool {
        if self.due.is_none_or(|at| at > now) {
            return false;
        }
        self.last_trim = Some(now);
        self.due = self
            .last_leave
            .map(|left| left + Self::FREED_WITHIN)
            .filter(|freed| *freed > now)
            .map(|freed| self.not_before(freed));
        true
    }

    fn not_before(&self, at: Instant) -> Instant {
        self.last_trim
            .map_or(at, |trimmed| at.max(trimmed + Self::MIN_GAP))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs the plan over `leaves` (ms after a start) and returns the
    /// trims it makes, in ms, polling every 10 ms up to `until`.
    fn trims(leaves: &[u64], until: u64) -> Vec<u64> {
        let start = Instant::now();
        let mut plan = ReleasePlan::default();
        let mut done = Vec::new();
        for t in (0..=until).step_by(10) {
            let now = start + ms(t);
            for _ in leaves.iter().filter(|&&l| l == t) {
                plan.on_leave(now);
            }
            if plan.take_due(now) {
                done.push(t);
            }
        }
        done
    }

    #[test]
    fn a_wave_of_leaves_is_trimmed_after_the_last_ones_linger() {
        let wave: Vec<u64> = (0..=900).step_by(10).collect();
        let done = trims(&wave, 10_000);
        let last = *done.last().unwrap();
        assert!(last >= 900 + 1250, "last trim at {last} ms: {done:?}");
        assert_eq!(done.len(), 2, "{done:?}");
    }

    #[test]
    fn a_single_leave_costs_one_trim_once_its_memory_is_free() {
        assert_eq!(trims(&[100], 10_000), vec![1350]);
    }

    #[test]
    fn a_flood_of_leaves_trims_at_most_once_a_second() {
        let flood: Vec<u64> = (0..=20_000).step_by(10).collect();
        let done = trims(&flood, 25_000);
        for pair in done.windows(2) {
            assert!(pair[1] - pair[0] >= 1000, "{done:?}");
        }
        assert!(done.len() >= 16, "{done:?}");
        assert!(*done.last().unwrap() >= 20_000 + 1250, "{done:?}");
    }

    #[test]
    fn nothing_is_trimmed_without_leaves() {
        assert!(trims(&[], 5_000).is_empty());
    }
}
