//! [`TokenBucket`]: the rate limit behind every flood budget.

use std::time::{Duration, Instant};

/// `capacity` tokens that refill at `per_second` tokens a second; each
/// priced action takes one. Counted in thousandths of a token so that slow
/// rates refill smoothly.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    level: u64,
    capacity: u64,
    per_second: u64,
    updated: Instant,
}

impl TokenBucket {
    const UNIT: u64 = 1000;

    /// A full bucket of `burst` tokens refilling at `per_second`.
    pub(crate) fn full(burst: u32, per_second: u32, now: Instant) -> TokenBucket {
        let capacity = u64::from(burst) * Self::UNIT;
        TokenBucket {
            level: capacity,
            capacity,
            per_second: u64::from(per_second),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated);
        let refill = (elapsed.as_millis() as u64).saturating_mul(self.per_second);
        if refill > 0 {
            self.level = self.level.saturating_add(refill).min(self.capacity);
            self.updated = now;
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.level >= Self::UNIT {
            self.level -= Self::UNIT;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens if there are that many (all or none).
    pub(crate) fn take_n(&mut self, now: Instant, n: u64) -> bool {
        self.refill(now);
        let cost = n.saturating_mul(Self::UNIT);
        if self.level >= cost {
            self.level -= cost;
            true
        } else {
            false
        }
    }

    /// When the bucket will be full again if nothing more is taken: until
    /// then it remembers what was spent.
    pub(crate) fn full_at(&self) -> Instant {
        let missing = self.capacity.saturating_sub(self.level);
        if missing == 0 || self.per_second == 0 {
            return self.updated;
        }
        let millis = missing.div_ceil(self.per_second);
        self.updated + Duration::from_millis(millis)
    }
}
