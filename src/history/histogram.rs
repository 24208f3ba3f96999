//! Durations by power-of-two-fourths buckets: a tool's five minutes in a fixed 480 bytes,
//! merged by adding, read back as percentiles within one bucket (19%). Kept per tool and five
//! minutes, so the tools view reads at most 2,016 small rows a tool for a week, however many
//! calls there were.

/// Four buckets per doubling, from 1 µs to 2^30 µs (18 min, beyond any client's budget).
pub const BUCKETS: usize = 120;
const PER_DOUBLING: f64 = 4.0;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    counts: [u32; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
        }
    }
}

/// `floor(4 · log2(micros))`, in integers: the log of the fourth power (exact below 2^30,
/// where the buckets end). Through `f64::log2` every call cost the history's writer 70
/// instructions more (bench/instructions, profiled).
fn bucket(micros: u64) -> usize {
    let m = u128::from(micros.clamp(1, 1 << 30));
    let log = 127 - (m * m * m * m).leading_zeros();
    (log as usize).min(BUCKETS - 1)
}

/// The bucket's upper bound, in milliseconds (what a percentile reports).
fn upper_ms(bucket: usize) -> f64 {
    2f64.powf((bucket + 1) as f64 / PER_DOUBLING) / 1000.0
}

impl Histogram {
    pub fn record(&mut self, micros: u64) {
        let b = bucket(micros);
        self.counts[b] = self.counts[b].saturating_add(1);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine = mine.saturating_add(theirs);
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| u64::from(*c)).sum()
    }

    /// The duration (ms) below which `q` (0–1) of the calls finished; `None` with none.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (b, count) in self.counts.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= rank {
                return Some(upper_ms(b));
            }
        }
        Some(upper_ms(BUCKETS - 1))
    }

    /// As stored: little-endian counts.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.counts.iter().flat_map(|c| c.to_le_bytes()).collect()
    }

    /// A stored histogram; anything of another length is taken as empty.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut histogram = Histogram::default();
        if bytes.len() == BUCKETS * 4 {
            for (count, chunk) in histogram.counts.iter_mut().zip(bytes.chunks_exact(4)) {
                *count = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
            }
        }
        histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_a_bucket_of_the_truth() {
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(ms * 1000);
        }
        for (q, truth) in [(0.5, 50.0), (0.95, 95.0), (0.99, 99.0)] {
            let got = h.quantile(q).unwrap();
            assert!(
                got >= truth && got <= truth * 1.19 + 0.001,
                "p{q}: {got} for {truth}"
            );
        }
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    /// A duration's bucket is the one whose bounds hold it (as `upper_ms` reports them),
    /// for every duration to 2^20 µs and around every bound beyond.
    #[test]
    fn a_duration_falls_in_the_bucket_that_holds_it() {
        let holds = |micros: u64| {
            let b = bucket(micros);
            let (low, high) = (2f64.powf(b as f64 / PER_DOUBLING), upper_ms(b) * 1000.0);
            let m = micros.max(1) as f64;
            assert!(
                (low <= m * (1.0 + 1e-12) && (m < high * (1.0 + 1e-12) || b == BUCKETS - 1)),
                "{micros} µs in bucket {b}: [{low}, {high})"
            );
        };
        (0..1 << 20).for_each(holds);
        for b in 80..=121 {
            let bound = 2f64.powf(b as f64 / PER_DOUBLING) as u64;
            (bound.saturating_sub(2)..bound + 2).for_each(holds);
        }
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(4), 8);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn histograms_merge_and_round_trip() {
        let mut a = Histogram::default();
        a.record(10);
        let mut b = Histogram::default();
        b.record(100_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(Histogram::from_bytes(&a.to_bytes()), a);
        assert_eq!(Histogram::from_bytes(b"short"), Histogram::default());
    }
}
