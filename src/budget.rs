//! A budget of log lines per party (a source address group for `ferry
//! serve`, a sender's name for `ferry chat`), so that one party cannot fill
//! the log or the terminal: what is over budget is counted, not printed,
//! and said in one summary line once the party has gone quiet.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Lines one party may have printed at once, before its rate applies.
pub const DEFAULT_BURST: u32 = 20;
/// Lines per second one party may have printed in the long run.
pub const DEFAULT_PER_SECOND: u32 = 1;

/// A party whose lines were suppressed is summarised once it has been quiet
/// this long...
const QUIET: Duration = Duration::from_secs(1);
/// ...or this long after its first suppressed line, if it never goes quiet.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Token buckets of log lines, one per party.
#[derive(Debug)]
pub struct LogBudget<K> {
    burst: f64,
    per_second: f64,
    parties: HashMap<K, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Lines not printed since the last summary.
    suppressed: u64,
    /// When the first of them came.
    since: Instant,
    /// When the last of them came.
    last: Instant,
}

impl<K: Eq + Hash + Clone> LogBudget<K> {
    /// `burst` lines at once per party, then `per_second`. A burst of 0
    /// means no limit.
    pub fn new(burst: u32, per_second: u32) -> Self {
        LogBudget {
            burst: f64::from(burst),
            per_second: f64::from(per_second),
            parties: HashMap::new(),
        }
    }

    /// Whether a line about `party` may be printed now; if not, it is
    /// counted for the party's summary.
    pub fn admit(&mut self, party: &K, now: Instant) -> bool {
        if self.burst == 0.0 {
            return true;
        }
        let (burst, per_second) = (self.burst, self.per_second);
        let bucket = self.parties.entry(party.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
            suppressed: 0,
            since: now,
            last: now,
        });
        bucket.refill(now, burst, per_second);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return true;
        }
        if bucket.suppressed == 0 {
            bucket.since = now;
        }
        bucket.suppressed += 1;
        bucket.last = now;
        false
    }

    /// The summaries due now, as (party, lines suppressed); forgets the
    /// parties that have nothing left to say and a full budget again.
    pub fn due(&mut self, now: Instant) -> Vec<(K, u64)> {
        let (burst, per_second) = (self.burst, self.per_second);
        let mut due = Vec::new();
        self.parties.retain(|party, bucket| {
            bucket.refill(now, burst, per_second);
            if bucket.suppressed > 0
                && (now.saturating_duration_since(bucket.last) >= QUIET
                    || now.saturating_duration_since(bucket.since) >= SUMMARY_EVERY)
            {
                due.push((party.clone(), bucket.suppressed));
                bucket.suppressed = 0;
            }
            bucket.suppressed > 0 || bucket.tokens < burst
        });
        due
    }

    /// When the next summary may be due, for the caller's wait.
    pub fn next_due(&self) -> Option<Instant> {
        self.parties
            .values()
            .filter(|b| b.suppressed > 0)
            .map(|b| (b.last + QUIET).min(b.since + SUMMARY_EVERY))
            .min()
    }
}

impl Bucket {
    fn refill(&mut self, now: Instant, burst: f64, per_second: f64) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(burst);
        self.at = now;
    }
}

/// The summary line for `count` lines about `party` left unprinted.
pub fn summary(count: u64, party: &str) -> String {
    let lines = if count == 1 { "line" } else { "lines" };
    format!(
        "… {} more {lines} about {party} suppressed",
        thousands(count)
    )
}

/// `3912` as `3,912`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_a_rate_then_one_summary() {
        let start = Instant::now();
        let mut budget = LogBudget::new(20, 1);
        let admitted = (0..5000)
            .filter(|_| budget.admit(&"10.0.0.7", start))
            .count();
        assert_eq!(admitted, 20);
        // Another party is not affected.
        assert!(budget.admit(&"10.0.0.8", start));
        // Still flooding: nothing due yet.
        assert!(budget.due(start + Duration::from_millis(500)).is_empty());
        assert_eq!(budget.next_due(), Some(start + QUIET));
        // Two seconds on, the rate gives two lines more.
        let later = start + Duration::from_secs(2);
        let admitted = (0..100)
            .filter(|_| budget.admit(&"10.0.0.7", later))
            .count();
        assert_eq!(admitted, 2);
        // Quiet for a second: one summary of everything dropped.
        let quiet = later + QUIET;
        assert_eq!(budget.due(quiet), vec![("10.0.0.7", 4980 + 98)]);
        assert!(budget.due(quiet + QUIET).is_empty());
        assert_eq!(budget.next_due(), None);
        // Once its budget is full again, the party is forgotten.
        budget.due(quiet + Duration::from_secs(60));
        assert!(budget.parties.is_empty());
    }

    #[test]
    fn a_party_that_never_stops_is_summarised_every_so_often() {
        let start = Instant::now();
        let mut budget = LogBudget::new(1, 1);
        let mut summaries = 0;
        for ms in (0..30_000).step_by(10) {
            let now = start + Duration::from_millis(ms);
            budget.admit(&"x", now);
            summaries += budget.due(now).len();
        }
        assert_eq!(summaries, 2);
    }

    #[test]
    fn no_limit_with_a_burst_of_zero() {
        let mut budget = LogBudget::new(0, 0);
        let now = Instant::now();
        assert!((0..10_000).all(|_| budget.admit(&1, now)));
    }

    #[test]
    fn summaries_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(3912), "3,912");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(
            summary(3912, "10.0.0.7"),
            "… 3,912 more lines about 10.0.0.7 suppressed"
        );
    }
}
