//! Histograms with Envoy's default buckets: a sample costs two relaxed atomic adds
//! (the bucket and the sum), and a histogram that never recorded costs one pointer.
//! Quantiles are computed from the buckets when listed, for the last flush interval
//! and for all time (Envoy's `P50(interval,cumulative)`).

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Envoy's default bucket bounds (`histogram_bucket_settings` unset), in the unit of
/// the histogram (milliseconds for times).
pub const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// The quantiles Envoy lists (`P0` … `P100`).
pub const QUANTILES: [f64; 10] = [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0];

/// The same quantiles in percent, as labelled (`supported_quantiles`, `P99.5`).
pub const PERCENTS: [f64; 10] = [0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 100.0];

/// Index of the bucket holding `v`: the first bound ≥ v, or the overflow bucket.
fn bucket(v: u64) -> usize {
    let v = v as f64;
    BUCKETS.partition_point(|b| *b < v)
}

/// A histogram's counts: one per bucket plus the overflow bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Samples per bucket (not cumulative); the last one is above every bound.
    pub buckets: [u64; BUCKETS.len() + 1],
    /// Sum of the samples.
    pub sum: u64,
    /// Smallest and largest sample (when there is one).
    pub min_max: Option<(u64, u64)>,
}

impl Counts {
    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Adds `other`'s samples (two histograms listed under one name).
    pub fn merge(&mut self, other: &Counts) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.sum += other.sum;
        self.min_max = match (self.min_max, other.min_max) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (a, b) => a.or(b),
        };
    }

    /// The `q` quantile (0–1), interpolated within its bucket; None without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        let (min, max) = self.min_max?;
        if total == 0 {
            return None;
        }
        let (min, max) = (min as f64, max as f64);
        if q <= 0.0 {
            return Some(min);
        }
        if q >= 1.0 {
            return Some(max);
        }
        let rank = q * total as f64;
        let mut before = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (before + n) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] }.max(min);
                let upper = BUCKETS.get(i).copied().unwrap_or(max).min(max);
                let within = (rank - before as f64) / n as f64;
                return Some(lower + (upper - lower).max(0.0) * within);
            }
            before += n;
        }
        Some(max)
    }

    /// Cumulative counts at each bound (Prometheus `le` buckets, `+Inf` excluded).
    pub fn cumulative(&self) -> [u64; BUCKETS.len()] {
        let mut out = [0; BUCKETS.len()];
        let mut acc = 0;
        for (i, o) in out.iter_mut().enumerate() {
            acc += self.buckets[i];
            *o = acc;
        }
        out
    }

    fn minus(&self, earlier: &Counts) -> Counts {
        let mut out = Counts::default();
        for (i, o) in out.buckets.iter_mut().enumerate() {
            *o = self.buckets[i].saturating_sub(earlier.buckets[i]);
        }
        out.sum = self.sum.saturating_sub(earlier.sum);
        // The interval's extremes are not kept: its min and max are its buckets' bounds
        // clamped to the all-time ones.
        if out.count() > 0 {
            let first = out.buckets.iter().position(|n| *n > 0).unwrap_or(0);
            let last = out.buckets.iter().rposition(|n| *n > 0).unwrap_or(0);
            let (min, max) = self.min_max.unwrap_or((0, 0));
            let lo = if first == 0 {
                0
            } else {
                BUCKETS[first - 1] as u64
            };
            let hi = BUCKETS.get(last).map_or(max, |b| *b as u64);
            out.min_max = Some((lo.max(min), hi.min(max)));
        }
        out
    }
}

#[derive(Debug)]
struct Inner {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    /// (counts at the last flush, counts of the interval that ended then).
    flushed: Mutex<(Counts, Counts)>,
}

/// A histogram (Envoy `Histogram`, unit-less: callers record milliseconds for times).
#[derive(Debug, Default)]
pub struct Histogram(OnceLock<Box<Inner>>);

impl Histogram {
    /// Records one sample.
    #[inline]
    pub fn record(&self, v: u64) {
        let inner = self.0.get_or_init(|| {
            Box::new(Inner {
                buckets: Default::default(),
                sum: AtomicU64::new(0),
                min: AtomicU64::new(u64::MAX),
                max: AtomicU64::new(0),
                flushed: Mutex::new(Default::default()),
            })
        });
        inner.buckets[bucket(v)].fetch_add(1, Ordering::Relaxed);
        inner.sum.fetch_add(v, Ordering::Relaxed);
        if v < inner.min.load(Ordering::Relaxed) {
            inner.min.fetch_min(v, Ordering::Relaxed);
        }
        if v > inner.max.load(Ordering::Relaxed) {
            inner.max.fetch_max(v, Ordering::Relaxed);
        }
    }

    /// Whether a sample was ever recorded.
    pub fn used(&self) -> bool {
        self.0.get().is_some()
    }

    /// All-time counts.
    pub fn cumulative(&self) -> Counts {
        let Some(inner) = self.0.get() else {
            return Counts::default();
        };
        let mut c = Counts::default();
        for (o, b) in c.buckets.iter_mut().zip(inner.buckets.iter()) {
            *o = b.load(Ordering::Relaxed);
        }
        c.sum = inner.sum.load(Ordering::Relaxed);
        let (min, max) = (
            inner.min.load(Ordering::Relaxed),
            inner.max.load(Ordering::Relaxed),
        );
        if min <= max {
            c.min_max = Some((min, max));
        }
        c
    }

    /// Counts of the last complete flush interval.
    pub fn interval(&self) -> Counts {
        self.0
            .get()
            .map(|i| i.flushed.lock().1.clone())
            .unwrap_or_default()
    }

    /// Ends a flush interval: what was recorded since the last flush becomes the
    /// interval's counts (Envoy merges histograms at each stats flush).
    pub fn flush(&self) {
        let Some(inner) = self.0.get() else {
            return;
        };
        let now = self.cumulative();
        let mut f = inner.flushed.lock();
        f.1 = now.minus(&f.0);
        f.0 = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_envoys_buckets() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 1);
        assert_eq!(bucket(2), 2);
        assert_eq!(bucket(5), 2);
        assert_eq!(bucket(3_600_000), 18);
        assert_eq!(bucket(3_600_001), 19);
    }

    #[test]
    fn quantiles_interval_and_cumulative() {
        let h = Histogram::default();
        assert!(!h.used());
        assert_eq!(h.cumulative().quantile(0.5), None);
        for v in [1, 2, 3, 4, 100] {
            h.record(v);
        }
        let c = h.cumulative();
        assert_eq!(c.count(), 5);
        assert_eq!(c.sum, 110);
        assert_eq!(c.quantile(0.0), Some(1.0));
        assert_eq!(c.quantile(1.0), Some(100.0));
        // Rank 2.5 of 5 falls in (1, 5] which holds 3 samples after 1: 1 + 4 × 0.5.
        assert_eq!(c.quantile(0.5), Some(3.0));
        assert_eq!(c.cumulative()[..4], [0, 1, 4, 4]);
        // Nothing flushed yet: the interval is empty.
        assert_eq!(h.interval().count(), 0);
        h.flush();
        assert_eq!(h.interval().count(), 5);
        h.record(7);
        h.flush();
        let i = h.interval();
        assert_eq!((i.count(), i.sum), (1, 7));
        assert_eq!(i.quantile(0.5), Some(7.5));
        h.flush();
        assert_eq!(h.interval().count(), 0);
    }
}
