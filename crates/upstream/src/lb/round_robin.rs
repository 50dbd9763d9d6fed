//! `ROUND_ROBIN`: plain rotation when all weights are equal; otherwise Envoy's
//! weighted EDF order. The EDF order of one full cycle (sum of weights / gcd picks,
//! each host exactly weight / gcd times) is precomputed so that a pick is one atomic
//! increment; cycles longer than [`MAX_SCHEDULE`] fall back to a locked EDF scheduler.

use super::edf::Edf;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The longest precomputed weighted schedule.
const MAX_SCHEDULE: u64 = 1 << 16;

/// A round-robin balancer.
pub(crate) struct RoundRobin {
    next: AtomicUsize,
    kind: Kind,
}

enum Kind {
    Equal(usize),
    Schedule(Vec<u32>),
    Locked(Mutex<Edf>, Vec<f64>),
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl RoundRobin {
    /// Builds the balancer for hosts with these weights.
    pub(crate) fn new(weights: &[u32]) -> RoundRobin {
        // Envoy starts each balancer at a random host so that proxies do not move in step.
        let next = AtomicUsize::new(rand::random_range(0..weights.len().max(1)));
        let equal = weights.windows(2).all(|w| w[0] == w[1]);
        let kind = if equal {
            Kind::Equal(weights.len())
        } else {
            let g = weights.iter().fold(0u64, |g, w| gcd(g, u64::from(*w)));
            let cycle: u64 = weights.iter().map(|w| u64::from(*w) / g.max(1)).sum();
            let mut edf = Edf::default();
            for (i, w) in weights.iter().enumerate() {
                edf.add(i, f64::from(*w));
            }
            if cycle <= MAX_SCHEDULE {
                let mut schedule = Vec::with_capacity(cycle as usize);
                for _ in 0..cycle {
                    if let Some(i) = edf.pick() {
                        schedule.push(i as u32);
                        edf.add(i, f64::from(weights[i]));
                    }
                }
                next.store(0, Ordering::Relaxed);
                Kind::Schedule(schedule)
            } else {
                Kind::Locked(
                    Mutex::new(edf),
                    weights.iter().map(|w| f64::from(*w)).collect(),
                )
            }
        };
        RoundRobin { next, kind }
    }

    /// Picks the next host index.
    pub(crate) fn choose(&self) -> Option<usize> {
        match &self.kind {
            Kind::Equal(0) => None,
            Kind::Equal(n) => Some(self.next.fetch_add(1, Ordering::Relaxed) % n),
            Kind::Schedule(s) if s.is_empty() => None,
            Kind::Schedule(s) => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % s.len();
                Some(s[i] as usize)
            }
            Kind::Locked(edf, weights) => {
                let mut edf = edf.lock();
                let i = edf.pick()?;
                edf.add(i, weights[i]);
                Some(i)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(rr: &RoundRobin, n: usize, picks: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for _ in 0..picks {
            c[rr.choose().unwrap_or(usize::MAX)] += 1;
        }
        c
    }

    #[test]
    fn equal_weights_rotate() {
        let rr = RoundRobin::new(&[1, 1, 1]);
        let first = rr.choose().unwrap_or(9);
        assert_eq!(rr.choose(), Some((first + 1) % 3));
        assert_eq!(rr.choose(), Some((first + 2) % 3));
        assert_eq!(counts(&rr, 3, 300), vec![100, 100, 100]);
    }

    #[test]
    fn weighted_exact_over_a_cycle() {
        let rr = RoundRobin::new(&[1, 2, 3]);
        for _ in 0..4 {
            assert_eq!(counts(&rr, 3, 6), vec![1, 2, 3]);
        }
        // Reduced by the gcd: a cycle of 2 + 4 picks is 1 + 2.
        let rr = RoundRobin::new(&[2, 4]);
        assert_eq!(counts(&rr, 2, 3), vec![1, 2]);
        // Interleaved, not batched.
        let rr = RoundRobin::new(&[1, 3]);
        let order: Vec<_> = (0..4).filter_map(|_| rr.choose()).collect();
        assert_eq!(order, vec![1, 1, 0, 1]);
    }

    #[test]
    fn long_cycle_uses_locked_edf() {
        let rr = RoundRobin::new(&[100_000, 1, 99_999]);
        assert!(matches!(rr.kind, Kind::Locked(..)));
        let c = counts(&rr, 3, 200_000);
        assert_eq!(c, vec![100_000, 1, 99_999]);
    }

    #[test]
    fn empty() {
        assert_eq!(RoundRobin::new(&[]).choose(), None);
    }
}
