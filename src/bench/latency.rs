//! Latency percentiles from millions of samples in constant memory: a
//! log-linear histogram (as HdrHistogram does) with 1.6 % resolution.

/// Sub-buckets per power of two: the relative resolution is 1/64.
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two covered: nanoseconds up to 2^40 (18 minutes).
const OCTAVES: usize = 41;

/// Counts of durations in nanoseconds, by bucket.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; OCTAVES * SUB],
            total: 0,
        }
    }
}

impl Histogram {
    /// Counts one duration of `nanos`.
    pub fn record(&mut self, nanos: u64) {
        let index = bucket(nanos).min(self.counts.len() - 1);
        self.counts[index] += 1;
        self.total += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// The duration below which a share `q` (0.5 for the median) of the
    /// samples lie, in nanoseconds: the upper bound of its bucket. `None`
    /// when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(upper_bound(index));
            }
        }
        None
    }
}

/// Values below `SUB` have a bucket each; above, each power of two is cut
/// into `SUB` equal parts.
fn bucket(nanos: u64) -> usize {
    if nanos < SUB as u64 {
        return nanos as usize;
    }
    let octave = 63 - nanos.leading_zeros() - SUB_BITS + 1;
    let sub = (nanos >> (octave - 1)) as usize - SUB;
    octave as usize * SUB + sub
}

fn upper_bound(index: usize) -> u64 {
    let (octave, sub) = (index / SUB, index % SUB);
    if octave == 0 {
        return sub as u64;
    }
    let width = 1u64 << (octave - 1);
    ((SUB + sub) as u64) * width + width - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values_within_two_percent() {
        for nanos in [0, 1, 63, 64, 65, 127, 128, 1000, 123_456, 9_876_543_210] {
            let bound = upper_bound(bucket(nanos));
            assert!(bound >= nanos, "{nanos} -> {bound}");
            assert!(
                bound as f64 <= nanos as f64 * 1.032 + 1.0,
                "{nanos} -> {bound}"
            );
        }
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut histogram = Histogram::default();
        for micros in 1..=1000u64 {
            histogram.record(micros * 1000);
        }
        let median = histogram.quantile(0.5).unwrap() as f64;
        let p99 = histogram.quantile(0.99).unwrap() as f64;
        assert!((500_000.0..=516_000.0).contains(&median), "{median}");
        assert!((990_000.0..=1_022_000.0).contains(&p99), "{p99}");
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
