//! A fixed-size log-linear histogram of durations: bounded memory however
//! many values it records, quantiles within 1/8 of the true value.
//!
//! Values below 16 ns each have a bucket of their own; above, every power
//! of two is cut into [`SUB`] equal buckets. Values past 2^[`MAX_EXP`] ns
//! (about 18 minutes) share the last power's buckets.

/// Buckets per power of two (a power of two itself).
const SUB: u64 = 8;
/// log2(SUB).
const SUB_BITS: u32 = SUB.trailing_zeros();
/// Values below this have a bucket each.
const LINEAR: u64 = 2 * SUB;
/// Highest power of two with buckets of its own.
const MAX_EXP: u32 = 40;
/// Number of buckets.
const BUCKETS: usize = (LINEAR + (MAX_EXP + 1 - (SUB_BITS + 1)) as u64 * SUB) as usize;

/// Counts of durations in nanoseconds.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    count: u64,
    total: u64,
    max: u64,
}

impl Histogram {
    pub(crate) fn new() -> Histogram {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            count: 0,
            total: 0,
            max: 0,
        }
    }

    /// Record one value, in nanoseconds.
    pub(crate) fn record(&mut self, ns: u64) {
        self.counts[bucket(ns)] += 1;
        self.count += 1;
        self.total = self.total.saturating_add(ns);
        self.max = self.max.max(ns);
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// The value below which a fraction `q` (0..=1) of the recorded values
    /// lie: the middle of that value's bucket, never above the maximum; 0
    /// when nothing was recorded.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bounds(i);
                return (low + width / 2).min(self.max);
            }
        }
        self.max
    }
}

/// The bucket of `ns`.
fn bucket(ns: u64) -> usize {
    if ns < LINEAR {
        return ns as usize;
    }
    let exp = (63 - ns.leading_zeros()).min(MAX_EXP);
    let sub = if exp == MAX_EXP && ns >> MAX_EXP > 1 {
        SUB - 1
    } else {
        (ns >> (exp - SUB_BITS)) & (SUB - 1)
    };
    (LINEAR + (exp - SUB_BITS - 1) as u64 * SUB + sub) as usize
}

/// Lowest value and width of bucket `i`.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, 1);
    }
    let exp = (i - LINEAR) / SUB + u64::from(SUB_BITS) + 1;
    let sub = (i - LINEAR) % SUB;
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    ((1u64 << exp) + sub * width, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_the_bucket_that_bounds_it() {
        for ns in (0..5000).chain([1 << 20, (1 << 20) + 12345, 1 << MAX_EXP]) {
            let i = bucket(ns);
            let (low, width) = bounds(i);
            assert!(
                low <= ns && ns < low + width,
                "{ns} in bucket {i} = [{low}, +{width})"
            );
        }
        assert_eq!(
            bucket(u64::MAX),
            BUCKETS - 1,
            "huge values share the last bucket"
        );
        assert_eq!(bucket((1 << (MAX_EXP + 1)) - 1), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_an_eighth() {
        let mut h = Histogram::new();
        // 1..=1000 µs, each once.
        for us in 1..=1000u64 {
            h.record(us * 1000);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max(), 1_000_000);
        for (q, want) in [(0.5, 500_000.0), (0.99, 990_000.0)] {
            let got = h.quantile(q) as f64;
            assert!(
                (got - want).abs() / want <= 0.125,
                "q{q}: {got} ns, want about {want}"
            );
        }
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }

    #[test]
    fn an_outlier_moves_p99_but_not_p50() {
        let mut h = Histogram::new();
        for _ in 0..98 {
            h.record(10_000);
        }
        h.record(5_000_000);
        h.record(5_000_000);
        assert!(h.quantile(0.5) < 12_000, "{}", h.quantile(0.5));
        assert!(h.quantile(0.99) > 4_000_000, "{}", h.quantile(0.99));
    }
}
