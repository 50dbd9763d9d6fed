//! A cluster: its config, the current host set (published with `ArcSwap`) and the
//! load balancer of each priority.

use crate::lb::Lb;
use crate::stats::ClusterStats;
use crate::Host;
use arc_swap::ArcSwap;
use ferry_config::cluster::{Cluster as ClusterConfig, LbPolicy};
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// A cluster of upstream hosts.
pub struct Cluster {
    /// The validated config the cluster was built from.
    pub config: ClusterConfig,
    /// `cluster.<name>.*` stats.
    pub stats: Arc<ClusterStats>,
    /// `circuit_breakers`, per priority.
    pub breakers: crate::circuit_breaker::Breakers,
    host_set: ArcSwap<HostSet>,
    ready: watch::Sender<bool>,
}

/// An immutable snapshot of a cluster's hosts with their balancers.
pub(crate) struct HostSet {
    all: Arc<Vec<Arc<Host>>>,
    /// Non-empty priorities, highest (lowest number) first.
    priorities: Vec<PriorityHosts>,
}

struct PriorityHosts {
    hosts: Vec<Arc<Host>>,
    lb: Lb,
}

impl HostSet {
    /// Groups `hosts` by priority and builds a balancer for each.
    pub(crate) fn new(policy: &LbPolicy, hosts: Vec<Arc<Host>>) -> HostSet {
        let mut by_priority: BTreeMap<u32, Vec<Arc<Host>>> = BTreeMap::new();
        for h in &hosts {
            by_priority.entry(h.priority).or_default().push(h.clone());
        }
        let priorities = by_priority
            .into_values()
            .map(|hosts| PriorityHosts {
                lb: Lb::build(policy, &hosts),
                hosts,
            })
            .collect();
        HostSet {
            all: Arc::new(hosts),
            priorities,
        }
    }

    /// Picks a host of the highest priority that has hosts (all hosts are healthy:
    /// there is no health checking yet, so priority 0 takes all traffic when not empty).
    pub(crate) fn choose<R: Rng>(&self, hash: Option<u64>, rng: &mut R) -> Option<Arc<Host>> {
        let p = self.priorities.first()?;
        let i = p.lb.choose(&p.hosts, hash, rng)?;
        p.hosts.get(i).cloned()
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.config.name)
            .field("hosts", &self.host_set.load().all.len())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A cluster with `hosts`; `ready` says whether the first host set is known.
    pub(crate) fn new(
        config: ClusterConfig,
        hosts: Vec<Arc<Host>>,
        ready: bool,
        store: &ferry_stats::Store,
    ) -> Cluster {
        let stats = Arc::new(ClusterStats::default());
        store.register(format!("cluster.{}.", config.name), &stats);
        stats.membership_total.set(hosts.len() as u64);
        stats.membership_healthy.set(hosts.len() as u64);
        let host_set = ArcSwap::from_pointee(HostSet::new(&config.lb_policy, hosts));
        let breakers =
            crate::circuit_breaker::Breakers::new(&config.circuit_breakers, &config.name, store);
        Cluster {
            config,
            stats,
            breakers,
            host_set,
            ready: watch::Sender::new(ready),
        }
    }

    /// Picks a host by the cluster's `lb_policy`.
    ///
    /// `hash` is the request hash (from the route's `hash_policy`) used by `RING_HASH`
    /// and `MAGLEV`; when None those policies pick a random host, as Envoy does.
    pub fn choose_host(&self, hash: Option<u64>) -> Option<Arc<Host>> {
        self.host_set.load().choose(hash, &mut rand::rng())
    }

    /// Current hosts (all priorities), for admin `/clusters`.
    pub fn hosts(&self) -> Arc<Vec<Arc<Host>>> {
        self.host_set.load().all.clone()
    }

    /// Resolves once the cluster has its first host set (DNS clusters after the first
    /// resolution attempt; static clusters immediately).
    pub async fn ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Publishes a new host set (rebuilding the balancers) and marks the cluster ready.
    pub(crate) fn set_hosts(&self, hosts: Vec<Arc<Host>>) {
        self.stats.membership_total.set(hosts.len() as u64);
        self.stats.membership_healthy.set(hosts.len() as u64);
        self.host_set
            .store(Arc::new(HostSet::new(&self.config.lb_policy, hosts)));
        self.mark_ready();
    }

    /// Marks the cluster ready (after a first resolution attempt, even a failed one).
    pub(crate) fn mark_ready(&self) {
        self.ready.send_if_modified(|r| !std::mem::replace(r, true));
    }

    /// Drops idle and closed pooled connections of every host.
    pub(crate) fn reap_connections(&self) {
        for host in self.hosts().iter() {
            host.pool.reap(self.config.idle_timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;

    fn host(ip: &str, priority: u32) -> Arc<Host> {
        Host::new(
            format!("{ip}:80").parse().unwrap(),
            ip.into(),
            1,
            priority,
            String::new(),
        )
    }

    #[test]
    fn highest_priority_with_hosts_wins() {
        let hosts = vec![
            host("10.0.0.1", 1),
            host("10.0.0.2", 0),
            host("10.0.0.3", 2),
        ];
        let set = HostSet::new(&LbPolicy::Random, hosts);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let h = set.choose(None, &mut rng).unwrap();
            assert_eq!(h.address.to_string(), "10.0.0.2:80");
        }
        // Priority 0 empty: priority 1 takes over.
        let set = HostSet::new(
            &LbPolicy::RoundRobin,
            vec![host("10.0.0.1", 1), host("10.0.0.3", 2)],
        );
        assert_eq!(set.choose(None, &mut rng).unwrap().priority, 1);
        let empty = HostSet::new(&LbPolicy::RoundRobin, vec![]);
        assert!(empty.choose(None, &mut rng).is_none());
    }

    #[test]
    fn hash_policies_are_sticky_and_random_without_hash() {
        let hosts: Vec<_> = (1..=4).map(|i| host(&format!("10.0.0.{i}"), 0)).collect();
        for policy in [
            LbPolicy::RingHash {
                minimum_ring_size: 1024,
                maximum_ring_size: 8 << 20,
            },
            LbPolicy::Maglev { table_size: 65537 },
        ] {
            let set = HostSet::new(&policy, hosts.clone());
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            for hash in [1u64, 99, u64::MAX] {
                let a = set.choose(Some(hash), &mut rng).unwrap();
                for _ in 0..10 {
                    assert!(Arc::ptr_eq(&a, &set.choose(Some(hash), &mut rng).unwrap()));
                }
            }
            let mut seen = std::collections::HashSet::new();
            for _ in 0..200 {
                seen.insert(set.choose(None, &mut rng).unwrap().address);
            }
            assert_eq!(seen.len(), 4, "{policy:?}");
        }
    }
}
