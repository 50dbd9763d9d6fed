//! `LEAST_REQUEST`: with equal weights, the best of `choice_count` random hosts by
//! active requests (power of two choices); with unequal weights, Envoy's EDF with a
//! host weight of `weight / (active + 1)` (active_request_bias 1.0), behind a short lock.

use super::edf::Edf;
use crate::Host;
use parking_lot::Mutex;
use rand::Rng;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A least-request balancer.
pub(crate) struct LeastRequest {
    choice_count: u32,
    weighted: Option<Mutex<Edf>>,
}

fn active(host: &Host) -> u64 {
    host.stats.rq_active.load(Ordering::Relaxed)
}

fn effective_weight(host: &Host) -> f64 {
    f64::from(host.weight.max(1)) / (active(host) as f64 + 1.0)
}

impl LeastRequest {
    /// Builds the balancer for hosts with these weights.
    pub(crate) fn new(weights: &[u32], choice_count: u32) -> LeastRequest {
        let equal = weights.windows(2).all(|w| w[0] == w[1]);
        let weighted = (!equal).then(|| {
            let mut edf = Edf::default();
            for (i, w) in weights.iter().enumerate() {
                edf.add(i, f64::from(*w));
            }
            Mutex::new(edf)
        });
        LeastRequest {
            choice_count: choice_count.max(2),
            weighted,
        }
    }

    /// Picks a host index.
    pub(crate) fn choose<R: Rng>(&self, hosts: &[Arc<Host>], rng: &mut R) -> Option<usize> {
        if hosts.is_empty() {
            return None;
        }
        if let Some(edf) = &self.weighted {
            let mut edf = edf.lock();
            let i = edf.pick()?;
            edf.add(i, effective_weight(&hosts[i]));
            return Some(i);
        }
        let mut best: Option<usize> = None;
        for _ in 0..self.choice_count {
            let i = rng.random_range(0..hosts.len());
            best = match best {
                Some(b) if active(&hosts[b]) <= active(&hosts[i]) => Some(b),
                _ => Some(i),
            };
        }
        best
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;

    fn hosts(weights: &[u32]) -> Vec<Arc<Host>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let addr = format!("10.0.0.{}:80", i + 1).parse().unwrap();
                Host::new(addr, String::new(), *w, 0, String::new())
            })
            .collect()
    }

    #[test]
    fn p2c_avoids_the_busy_host() {
        let hosts = hosts(&[1, 1, 1, 1]);
        hosts[0].stats.rq_active.store(10, Ordering::Relaxed);
        let lb = LeastRequest::new(&[1, 1, 1, 1], 2);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            counts[lb.choose(&hosts, &mut rng).unwrap()] += 1;
        }
        // Host 0 wins only when both choices are host 0: 1/16 of the picks.
        assert!((450..=800).contains(&counts[0]), "{counts:?}");
        for c in &counts[1..] {
            assert!((2900..=3400).contains(c), "{counts:?}");
        }
    }

    #[test]
    fn choice_count_all_hosts_always_picks_least() {
        let hosts = hosts(&[1, 1]);
        hosts[1].stats.rq_active.store(3, Ordering::Relaxed);
        let lb = LeastRequest::new(&[1, 1], 64);
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        for _ in 0..100 {
            assert_eq!(lb.choose(&hosts, &mut rng), Some(0));
        }
    }

    #[test]
    fn weighted_idle_hosts_follow_weights() {
        let hosts = hosts(&[1, 3]);
        let lb = LeastRequest::new(&[1, 3], 2);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut counts = [0u32; 2];
        for _ in 0..4000 {
            counts[lb.choose(&hosts, &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts, [1000, 3000]);
    }

    #[test]
    fn weighted_busy_host_gets_less() {
        let hosts = hosts(&[1, 3]);
        hosts[1].stats.rq_active.store(5, Ordering::Relaxed);
        let lb = LeastRequest::new(&[1, 3], 2);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut counts = [0u32; 2];
        for _ in 0..4000 {
            counts[lb.choose(&hosts, &mut rng).unwrap()] += 1;
        }
        // Effective weights 1 and 3/6: host 0 gets about two thirds.
        assert!(counts[0] > counts[1], "{counts:?}");
    }
}
