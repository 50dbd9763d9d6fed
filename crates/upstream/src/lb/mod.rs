//! Load balancers: each picks an index into the hosts of one priority.
//!
//! A balancer is built once per host set (on config load and DNS change) and is
//! immutable afterwards except for its atomics (and the weighted least-request EDF,
//! which sits behind a short `parking_lot` lock as Envoy's per-worker scheduler would).

pub(crate) mod edf;
pub(crate) mod least_request;
pub(crate) mod maglev;
pub(crate) mod priority;
pub(crate) mod random;
pub(crate) mod ring_hash;
pub(crate) mod round_robin;

use crate::Host;
use ferry_config::cluster::LbPolicy;
use rand::Rng;
use std::sync::Arc;

/// The load balancer of one priority's hosts.
pub(crate) enum Lb {
    /// `ROUND_ROBIN`.
    RoundRobin(round_robin::RoundRobin),
    /// `LEAST_REQUEST`.
    LeastRequest(least_request::LeastRequest),
    /// `RANDOM`.
    Random,
    /// `RING_HASH`.
    RingHash(ring_hash::Ring),
    /// `MAGLEV`.
    Maglev(maglev::Maglev),
}

impl Lb {
    /// Builds the balancer of `policy` for `hosts`.
    pub(crate) fn build(policy: &LbPolicy, hosts: &[Arc<Host>]) -> Lb {
        let weights: Vec<u32> = hosts.iter().map(|h| h.weight.max(1)).collect();
        match policy {
            LbPolicy::RoundRobin => Lb::RoundRobin(round_robin::RoundRobin::new(&weights)),
            LbPolicy::LeastRequest { choice_count } => {
                Lb::LeastRequest(least_request::LeastRequest::new(&weights, *choice_count))
            }
            LbPolicy::Random => Lb::Random,
            LbPolicy::RingHash {
                minimum_ring_size,
                maximum_ring_size,
            } => Lb::RingHash(ring_hash::Ring::new(
                &keyed(hosts),
                *minimum_ring_size,
                *maximum_ring_size,
            )),
            LbPolicy::Maglev { table_size } => {
                Lb::Maglev(maglev::Maglev::new(&keyed(hosts), *table_size))
            }
        }
    }

    /// Picks an index into `hosts` (the same hosts the balancer was built for).
    pub(crate) fn choose<R: Rng>(
        &self,
        hosts: &[Arc<Host>],
        hash: Option<u64>,
        rng: &mut R,
    ) -> Option<usize> {
        if hosts.is_empty() {
            return None;
        }
        match self {
            Lb::RoundRobin(rr) => rr.choose(),
            Lb::LeastRequest(lr) => lr.choose(hosts, rng),
            Lb::Random => random::choose(hosts.len(), rng),
            // Without a request hash Envoy uses a random one.
            Lb::RingHash(ring) => ring.choose(hash.unwrap_or_else(|| rng.random())),
            Lb::Maglev(table) => table.choose(hash.unwrap_or_else(|| rng.random())),
        }
    }
}

/// `(address as Envoy prints it, weight)` of each host, the input of the hashing balancers.
fn keyed(hosts: &[Arc<Host>]) -> Vec<(String, u32)> {
    hosts
        .iter()
        .map(|h| (h.address.to_string(), h.weight.max(1)))
        .collect()
}

/// Host weights normalized to sum to 1, with the smallest and largest normalized weight.
pub(crate) fn normalize(weights: &[u32]) -> (Vec<f64>, f64, f64) {
    let total: f64 = weights.iter().map(|w| f64::from(*w)).sum();
    let normalized: Vec<f64> = weights.iter().map(|w| f64::from(*w) / total).collect();
    let min = normalized.iter().copied().fold(f64::INFINITY, f64::min);
    let max = normalized.iter().copied().fold(0.0, f64::max);
    (normalized, min, max)
}
