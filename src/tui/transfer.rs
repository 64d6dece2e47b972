//! One row of the transfers pane: a file moving either way, with its
//! progress, rate, time left and outcome.

use ferry_core::frame::TransferId;
use ferry_core::ResumeKey;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Which way the file moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We send it.
    Sending,
    /// We receive it.
    Receiving,
}

/// Where a transfer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// An incoming offer waiting for the user's answer until `deadline`.
    Asking { deadline: Instant },
    /// Offered (or accepted by us), waiting for the other side.
    Waiting,
    /// Bytes are moving.
    Moving,
    /// The link dropped; it resumes once reconnected.
    Interrupted,
    /// Stored and verified.
    Verified,
    /// Declined by the receiver (or by us), with why.
    Declined(String),
    /// Failed or cancelled for good, with why.
    Failed(String),
}

impl Stage {
    /// Whether nothing more will happen to it.
    #[cfg(test)]
    pub fn is_over(&self) -> bool {
        matches!(
            self,
            Stage::Verified | Stage::Declined(_) | Stage::Failed(_)
        )
    }
}

/// A transfer as the user sees it. Its id belongs to one connection
/// (`generation`): after a reconnection the same file gets a new id.
#[derive(Debug, Clone)]
pub struct TransferRow {
    /// Which way.
    pub direction: Direction,
    /// The file name, safe to show.
    pub name: String,
    /// The other side's name, raw: the recipient when sending (empty: the
    /// server's inbox), the sender when receiving.
    pub peer: String,
    /// Size in bytes.
    pub size: u64,
    /// Bytes confirmed (sending) or stored (receiving).
    pub done: u64,
    /// Sending: the file to offer again after a reconnection.
    /// Receiving: where it was saved.
    pub path: Option<PathBuf>,
    /// Sending: the key the receiver handed out, to resume with.
    pub resume_key: Option<ResumeKey>,
    /// Where it stands.
    pub stage: Stage,
    /// The connection the id belongs to, and the id (none while a re-offer
    /// has not been numbered yet).
    pub generation: u64,
    /// The transfer id on that connection.
    pub id: Option<TransferId>,
    /// Where this run started (a resume starts past zero), and when: the
    /// rate counts only bytes moved by this run.
    run_from: u64,
    run_started: Option<Instant>,
    /// Bytes per second over this run.
    rate: Option<f64>,
}

impl TransferRow {
    /// A new row, waiting.
    pub fn new(direction: Direction, name: String, peer: String, size: u64) -> Self {
        TransferRow {
            direction,
            name,
            peer,
            size,
            done: 0,
            path: None,
            resume_key: None,
            stage: Stage::Waiting,
            generation: 0,
            id: None,
            run_from: 0,
            run_started: None,
            rate: None,
        }
    }

    /// Bytes start moving from `offset` (a resume when past zero).
    pub fn start(&mut self, offset: u64, now: Instant) {
        self.done = offset.min(self.size);
        self.run_from = self.done;
        self.run_started = Some(now);
        self.rate = None;
        self.stage = Stage::Moving;
    }

    /// `done` bytes are through.
    pub fn progress(&mut self, done: u64, now: Instant) {
        self.done = done.min(self.size);
        if let Some(started) = self.run_started {
            let secs = now.saturating_duration_since(started).as_secs_f64();
            // Under a tenth of a second says more about timer noise than
            // about the link.
            if secs >= 0.1 {
                self.rate = Some(self.done.saturating_sub(self.run_from) as f64 / secs);
            }
        }
    }

    /// Where this run started: past zero when it resumed.
    pub fn run_from(&self) -> u64 {
        self.run_from
    }

    /// Share done, 0.0 to 1.0 (an empty file is done when verified).
    pub fn ratio(&self) -> f64 {
        if self.size == 0 {
            return if self.stage == Stage::Verified {
                1.0
            } else {
                0.0
            };
        }
        self.done as f64 / self.size as f64
    }

    /// Bytes per second over this run, once measurable.
    pub fn rate(&self) -> Option<f64> {
        self.rate.filter(|_| self.stage == Stage::Moving)
    }

    /// Time left at the current rate.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate()?;
        (rate > 0.0)
            .then(|| Duration::from_secs_f64(self.size.saturating_sub(self.done) as f64 / rate))
    }

    /// Whether this row stands for an offer of `name` of `size` between us
    /// and `peer`, in `direction`: how a re-offer after a reconnection
    /// finds its row.
    pub fn is_same_file(&self, direction: Direction, name: &str, peer: &str, size: u64) -> bool {
        self.direction == direction && self.name == name && self.peer == peer && self.size == size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta_count_only_this_run() {
        let t0 = Instant::now();
        let mut row = TransferRow::new(Direction::Sending, "a".into(), String::new(), 1000);
        row.start(400, t0);
        assert_eq!(row.rate(), None);
        row.progress(600, t0 + Duration::from_secs(2));
        assert_eq!(row.rate(), Some(100.0));
        assert_eq!(row.eta(), Some(Duration::from_secs(4)));
        assert!((row.ratio() - 0.6).abs() < 1e-9);
        row.stage = Stage::Interrupted;
        assert_eq!(row.eta(), None);
    }
}
