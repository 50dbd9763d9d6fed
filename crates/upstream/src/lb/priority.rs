//! Priority load and panic mode, as Envoy's `LoadBalancerBase` computes them.
//!
//! Each priority's availability is `min(100, 140 × healthy / hosts)` (overprovisioning
//! factor 1.4), counted without excluded hosts; load goes to the highest priorities
//! first, healthy before degraded, normalised when the total availability is below
//! 100. A priority whose healthy + degraded share is below `healthy_panic_threshold`
//! is in panic and uses all its hosts; when every priority is in panic, load follows
//! the number of hosts.

/// Envoy's default overprovisioning factor, in percent.
pub(crate) const OVERPROVISIONING_FACTOR: u64 = 140;

/// Host counts of one priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// All hosts.
    pub hosts: usize,
    /// Healthy hosts.
    pub healthy: usize,
    /// Degraded hosts.
    pub degraded: usize,
    /// Excluded hosts (not in the denominator).
    pub excluded: usize,
}

/// The load of each priority in percent (healthy and degraded) and its panic flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loads {
    /// Percent of requests to each priority's healthy hosts.
    pub healthy: Vec<u32>,
    /// Percent of requests to each priority's degraded hosts.
    pub degraded: Vec<u32>,
    /// Whether each priority is in panic (uses all its hosts).
    pub panic: Vec<bool>,
}

fn availability(c: &Counts, n: usize) -> u32 {
    let total = c.hosts.saturating_sub(c.excluded) as u64;
    if total == 0 {
        return 0;
    }
    (OVERPROVISIONING_FACTOR * n as u64 / total).min(100) as u32
}

/// Distributes `total` over priorities by availability; returns the first available
/// priority and what is left.
fn distribute(
    out: &mut [u32],
    avail: &[u32],
    mut total: u32,
    normalized: u32,
) -> (Option<usize>, u32) {
    let mut first = None;
    for (i, a) in avail.iter().enumerate() {
        if first.is_none() && *a > 0 {
            first = Some(i);
        }
        out[i] = total.min(a * 100 / normalized);
        total -= out[i];
    }
    (first, total)
}

fn in_panic(c: &Counts, threshold: f64) -> bool {
    let total = c.hosts.saturating_sub(c.excluded);
    let (h, d) = if total == 0 {
        (0.0, 0.0)
    } else {
        (
            100.0 * c.healthy as f64 / total as f64,
            100.0 * c.degraded as f64 / total as f64,
        )
    };
    h + d < threshold
}

/// Loads for priorities with `counts` (highest priority first) and a panic threshold in
/// percent.
pub(crate) fn loads(counts: &[Counts], panic_threshold: f64) -> Loads {
    let n = counts.len();
    let mut out = Loads {
        healthy: vec![0; n],
        degraded: vec![0; n],
        panic: vec![false; n],
    };
    if n == 0 {
        return out;
    }
    let health: Vec<u32> = counts.iter().map(|c| availability(c, c.healthy)).collect();
    let degraded: Vec<u32> = counts.iter().map(|c| availability(c, c.degraded)).collect();
    let normalized = health
        .iter()
        .zip(&degraded)
        .map(|(h, d)| h + d)
        .sum::<u32>()
        .min(100);
    if normalized > 0 {
        let (first_healthy, rest) = distribute(&mut out.healthy, &health, 100, normalized);
        let (first_degraded, rest) = distribute(&mut out.degraded, &degraded, rest, normalized);
        if rest > 0 {
            match (first_healthy, first_degraded) {
                (Some(i), _) => out.healthy[i] += rest,
                (None, Some(i)) => out.degraded[i] += rest,
                (None, None) => {}
            }
        }
    }
    // Panic.
    let threshold = panic_threshold.min(100.0);
    if threshold == 0.0 && normalized == 0 {
        out.healthy[0] = 100;
        return out;
    }
    for (i, c) in counts.iter().enumerate() {
        out.panic[i] = normalized != 100 && in_panic(c, threshold);
    }
    if out.panic.iter().all(|p| *p) {
        // Total panic: load by the number of hosts.
        let total: usize = counts.iter().map(|c| c.hosts).sum();
        if total == 0 {
            out.healthy[0] = 100;
            return out;
        }
        let mut left = 100u32;
        let mut first = None;
        for (i, c) in counts.iter().enumerate() {
            if first.is_none() && c.hosts > 0 {
                first = Some(i);
            }
            let l = (100 * c.hosts / total) as u32;
            out.healthy[i] = l;
            out.degraded[i] = 0;
            left -= l;
        }
        if let Some(i) = first {
            out.healthy[i] += left;
        }
    }
    out
}

/// Which priority (index) and whether its degraded hosts serve a request, from a value
/// in 0..100 (Envoy: `hash % 100 + 1` against cumulative loads).
pub(crate) fn choose(loads: &Loads, hash: u64) -> (usize, bool) {
    let h = (hash % 100 + 1) as u32;
    let mut acc = 0;
    for (i, l) in loads.healthy.iter().enumerate() {
        acc += l;
        if h <= acc {
            return (i, false);
        }
    }
    for (i, l) in loads.degraded.iter().enumerate() {
        acc += l;
        if h <= acc {
            return (i, true);
        }
    }
    (0, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(hosts: usize, healthy: usize) -> Counts {
        Counts {
            hosts,
            healthy,
            ..Counts::default()
        }
    }

    #[test]
    fn overprovisioning_keeps_load_until_below_72_percent() {
        // 8 of 10 healthy: 112% capped at 100, all load stays at P0.
        let l = loads(&[c(10, 8), c(10, 10)], 50.0);
        assert_eq!(l.healthy, vec![100, 0]);
        assert_eq!(l.panic, vec![false, false]);
        // 5 of 10 healthy: P0 70%, P1 takes the rest.
        let l = loads(&[c(10, 5), c(10, 10)], 50.0);
        assert_eq!(l.healthy, vec![70, 30]);
        // Normalised total availability is 100, so no priority is in panic.
        assert_eq!(l.panic, vec![false, false]);
    }

    #[test]
    fn envoy_documentation_example() {
        // Health 10% / 20% / 10% and degraded 20% / 10% / 0% (in availability units),
        // giving 16/28/14 healthy and 28/14/0 degraded in Envoy's docs. Availability
        // comes from counts here: 1 in 14 hosts healthy is 10%, and so on.
        let counts = [
            Counts {
                hosts: 14,
                healthy: 1,
                degraded: 2,
                excluded: 0,
            },
            Counts {
                hosts: 14,
                healthy: 2,
                degraded: 1,
                excluded: 0,
            },
            Counts {
                hosts: 14,
                healthy: 1,
                degraded: 0,
                excluded: 0,
            },
        ];
        let l = loads(&counts, 0.0);
        assert_eq!(l.healthy, vec![16, 28, 14]);
        assert_eq!(l.degraded, vec![28, 14, 0]);
        assert_eq!(l.healthy.iter().chain(&l.degraded).sum::<u32>(), 100);
    }

    #[test]
    fn panic_below_threshold_and_total_panic() {
        // One priority, 1 of 3 healthy (33% < 50%): panic, all load to P0.
        let l = loads(&[c(3, 1)], 50.0);
        assert_eq!(l.panic, vec![true]);
        assert_eq!(l.healthy, vec![100]);
        // Exactly half is not panic.
        assert_eq!(loads(&[c(2, 1)], 50.0).panic, vec![false]);
        // Threshold 0 disables panic, even with nothing healthy.
        let l = loads(&[c(2, 0)], 0.0);
        assert_eq!(
            (l.healthy.clone(), l.panic.clone()),
            (vec![100], vec![false])
        );
        // Both priorities in panic: load by host count (3 and 1 hosts).
        let l = loads(&[c(3, 0), c(1, 0)], 50.0);
        assert_eq!(l.panic, vec![true, true]);
        assert_eq!(l.healthy, vec![75, 25]);
        // Excluded hosts are not counted: 1 healthy of 2 non-excluded.
        let l = loads(
            &[Counts {
                hosts: 3,
                healthy: 1,
                degraded: 0,
                excluded: 1,
            }],
            50.0,
        );
        assert_eq!(l.panic, vec![false]);
    }

    #[test]
    fn choose_walks_cumulative_load() {
        let l = Loads {
            healthy: vec![70, 0],
            degraded: vec![0, 30],
            panic: vec![false, false],
        };
        assert_eq!(choose(&l, 0), (0, false));
        assert_eq!(choose(&l, 69), (0, false));
        assert_eq!(choose(&l, 70), (1, true));
        assert_eq!(choose(&l, 199), (1, true));
    }
}
