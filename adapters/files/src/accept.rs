//! What every server runtime does when `accept` fails.
//!
//! A failed `accept` is about one connection, which died before it was
//! taken (try the next at once), or about the server: it is out of
//! descriptors (EMFILE, ENFILE) or of kernel memory. Then the connections
//! waiting stay in the listen backlog, and trying again at once fails the
//! same way: a loop that does spins a core the clients being served need,
//! and an edge-triggered loop that waits for the next connection instead
//! strands those already waiting until someone else connects. Runtimes
//! wait [`ACCEPT_BACKOFF`] and try again. The operator hears of a failure
//! at most once per [`ACCEPT_QUIET`], and of the end of the run of
//! failures it began: a server held at its limit, taking one connection
//! whenever another ends, would otherwise say so twice per connection.
//!
//! ```
//! use ferry_files::{AcceptFailures, AcceptRetry, ServerNotice, ACCEPT_QUIET};
//! use std::io;
//! use std::time::Instant;
//!
//! let mut failures = AcceptFailures::default();
//! let now = Instant::now();
//! let full = io::Error::from_raw_os_error(24); // EMFILE
//! let AcceptRetry::Later { notice: Some(first) } = failures.failed(&full, now) else {
//!     panic!("out of descriptors is the server's failure, told the first time");
//! };
//! assert!(matches!(first, ServerNotice::AcceptFailed { .. }));
//! // The rest of the run is not told again, its end is.
//! assert_eq!(failures.failed(&full, now), AcceptRetry::Later { notice: None });
//! assert!(matches!(
//!     failures.accepted(),
//!     Some(ServerNotice::AcceptResumed { failures: 2 })
//! ));
//! // A new run soon after is not told, nor is its end.
//! assert_eq!(failures.failed(&full, now), AcceptRetry::Later { notice: None });
//! assert_eq!(failures.accepted(), None);
//! // After a quiet period, it is.
//! let later = now + ACCEPT_QUIET;
//! assert!(matches!(failures.failed(&full, later), AcceptRetry::Later { notice: Some(_) }));
//!
//! let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
//! assert_eq!(failures.failed(&aborted, later), AcceptRetry::Now);
//! ```

use crate::ServerNotice;
use std::io;
use std::time::{Duration, Instant};

/// How long a runtime waits after `accept` failed for want of descriptors
/// or memory before trying again.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What to do after a failed `accept`: a closed choice, so that a match
/// on it needs no arm for later variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptRetry {
    /// The connection died before it was taken: take the next at once.
    Now,
    /// The server is out of descriptors or memory: try again after
    /// [`ACCEPT_BACKOFF`]. `notice` is the operator's, on the first
    /// failure of a run.
    Later {
        /// [`ServerNotice::AcceptFailed`], the first time in a run.
        notice: Option<ServerNotice>,
    },
}

/// How often at most the operator hears that accepting failed.
pub const ACCEPT_QUIET: Duration = Duration::from_secs(60);

/// A listener's failed accepts, and what its operator was told of them.
#[derive(Debug, Default)]
pub struct AcceptFailures {
    /// When the operator was last told of a failure.
    told_at: Option<Instant>,
    /// Server-wide failures in the run the operator was told of, while it
    /// lasts; 0 when no told run is under way.
    told_run: u64,
}

impl AcceptFailures {
    /// `accept` failed with `error` at `now` (never `WouldBlock`: that is
    /// no failure).
    pub fn failed(&mut self, error: &io::Error, now: Instant) -> AcceptRetry {
        if matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
        ) {
            return AcceptRetry::Now;
        }
        if self.told_run > 0 {
            self.told_run += 1;
            return AcceptRetry::Later { notice: None };
        }
        let due = self
            .told_at
            .is_none_or(|at| now.saturating_duration_since(at) >= ACCEPT_QUIET);
        if !due {
            return AcceptRetry::Later { notice: None };
        }
        self.told_at = Some(now);
        self.told_run = 1;
        AcceptRetry::Later {
            notice: Some(ServerNotice::AcceptFailed {
                error: error.to_string(),
                retry_in: ACCEPT_BACKOFF,
            }),
        }
    }

    /// A connection was taken: ends a run of failures, saying so
    /// ([`ServerNotice::AcceptResumed`]) if its start was told.
    pub fn accepted(&mut self) -> Option<ServerNotice> {
        let failures = std::mem::take(&mut self.told_run);
        (failures > 0).then_some(ServerNotice::AcceptResumed { failures })
    }
}
