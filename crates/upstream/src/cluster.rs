//! A cluster: its config, the current host set (published with `ArcSwap`) and the
//! load balancers of each priority, built over the hosts that health allows.

use crate::health::flags::{self, Coarse};
use crate::health::ClusterHealth;
use crate::lb::priority::{self, Counts, Loads};
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
    /// The cluster's name (shared by the records of the requests it serves).
    pub name: Arc<str>,
    /// The validated config the cluster was built from.
    pub config: ClusterConfig,
    /// `cluster.<name>.*` stats.
    pub stats: Arc<ClusterStats>,
    /// The EDS subscription's stats of an EDS cluster (`cluster.<name>.*`).
    pub eds_stats: Option<Arc<crate::stats::EdsStats>>,
    /// `circuit_breakers`, per priority.
    pub breakers: crate::circuit_breaker::Breakers,
    host_set: ArcSwap<HostSet>,
    ready: watch::Sender<bool>,
    /// Health checking, outlier detection and warming.
    pub(crate) health: ClusterHealth,
}

/// Hosts with a balancer over them.
struct Subset {
    hosts: Vec<Arc<Host>>,
    lb: Lb,
}

impl Subset {
    fn new(policy: &LbPolicy, hosts: Vec<Arc<Host>>) -> Option<Subset> {
        (!hosts.is_empty()).then(|| Subset {
            lb: Lb::build(policy, &hosts),
            hosts,
        })
    }
}

/// The hosts of one priority, split by health.
struct PriorityHosts {
    /// Too few healthy hosts: all hosts are used.
    panic: bool,
    healthy: Option<Subset>,
    degraded: Option<Subset>,
    /// All hosts (built only in panic).
    all: Option<Subset>,
}

/// Host counts by health, for the `membership_*` gauges.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Membership {
    pub total: usize,
    pub healthy: usize,
    pub degraded: usize,
    pub excluded: usize,
}

/// An immutable snapshot of a cluster's hosts with their balancers.
pub(crate) struct HostSet {
    all: Arc<Vec<Arc<Host>>>,
    /// Non-empty priorities, highest (lowest number) first.
    priorities: Vec<PriorityHosts>,
    loads: Loads,
    /// The (priority index, degraded) that takes all the load, if one does.
    single: Option<(usize, bool)>,
    /// The priority draw uses the request hash (hashing balancers), else a random number.
    hash_draw: bool,
    fail_traffic_on_panic: bool,
    pub(crate) membership: Membership,
}

impl HostSet {
    /// Groups `hosts` by priority, splits each priority by health (the hosts' flags now)
    /// and builds the balancers that the priority loads and panic mode call for.
    pub(crate) fn new(
        policy: &LbPolicy,
        common: &ferry_config::cluster::CommonLbConfig,
        hosts: Arc<Vec<Arc<Host>>>,
    ) -> HostSet {
        let mut by_priority: BTreeMap<u32, Vec<Arc<Host>>> = BTreeMap::new();
        for h in hosts.iter() {
            by_priority.entry(h.priority).or_default().push(h.clone());
        }
        let mut membership = Membership::default();
        let mut counts = Vec::with_capacity(by_priority.len());
        let mut split = Vec::with_capacity(by_priority.len());
        for hosts in by_priority.into_values() {
            let mut c = Counts {
                hosts: hosts.len(),
                ..Counts::default()
            };
            let (mut healthy, mut degraded) = (Vec::new(), Vec::new());
            for h in &hosts {
                let f = h.health_flags();
                if flags::excluded(f) {
                    c.excluded += 1;
                    continue;
                }
                match flags::coarse(f) {
                    Coarse::Healthy => healthy.push(h.clone()),
                    Coarse::Degraded => degraded.push(h.clone()),
                    Coarse::Unhealthy => {}
                }
            }
            c.healthy = healthy.len();
            c.degraded = degraded.len();
            membership.total += c.hosts;
            membership.healthy += c.healthy;
            membership.degraded += c.degraded;
            membership.excluded += c.excluded;
            counts.push(c);
            split.push((hosts, healthy, degraded));
        }
        let loads = priority::loads(&counts, common.healthy_panic_threshold);
        let priorities = split
            .into_iter()
            .zip(&loads.panic)
            .map(|((all, healthy, degraded), panic)| {
                if *panic {
                    PriorityHosts {
                        panic: true,
                        healthy: None,
                        degraded: None,
                        all: Subset::new(policy, all),
                    }
                } else {
                    PriorityHosts {
                        panic: false,
                        healthy: Subset::new(policy, healthy),
                        degraded: Subset::new(policy, degraded),
                        all: None,
                    }
                }
            })
            .collect();
        let single = loads
            .healthy
            .iter()
            .position(|l| *l == 100)
            .map(|i| (i, false))
            .or_else(|| {
                loads
                    .degraded
                    .iter()
                    .position(|l| *l == 100)
                    .map(|i| (i, true))
            });
        HostSet {
            all: hosts,
            priorities,
            loads,
            single,
            hash_draw: matches!(policy, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. }),
            fail_traffic_on_panic: common.fail_traffic_on_panic,
            membership,
        }
    }

    /// Picks a priority by the priority loads, then a host of its healthy (or degraded)
    /// hosts — or of all its hosts in panic, counting `lb_healthy_panic`.
    pub(crate) fn choose<R: Rng>(
        &self,
        hash: Option<u64>,
        rng: &mut R,
        stats: &ClusterStats,
    ) -> Option<Arc<Host>> {
        if self.priorities.is_empty() {
            return None;
        }
        let (i, degraded) = match self.single {
            Some(s) => s,
            None => {
                let draw = match hash {
                    Some(h) if self.hash_draw => h,
                    _ => rng.random(),
                };
                priority::choose(&self.loads, draw)
            }
        };
        let p = self.priorities.get(i)?;
        let subset = if p.panic {
            stats.lb_healthy_panic.inc();
            if self.fail_traffic_on_panic {
                return None;
            }
            p.all.as_ref()
        } else if degraded {
            p.degraded.as_ref()
        } else {
            p.healthy.as_ref()
        }?;
        let j = subset.lb.choose(&subset.hosts, hash, rng)?;
        subset.hosts.get(j).cloned()
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
    /// A cluster with `hosts` (not ready yet: see [`Cluster::mark_ready`]). Health
    /// checks and outlier detection start with [`Cluster::start_health`].
    ///
    /// With `previous` (the cluster of the same name it replaces), what outlives a
    /// replacement is kept, as Envoy keeps it by name: the stats, the circuit breakers
    /// when their thresholds did not change, the health check and outlier stats, and
    /// the state of the `hosts` that are the previous cluster's (their pools, health
    /// flags and outlier records live in the `Host`).
    pub(crate) fn new(
        config: ClusterConfig,
        hosts: Vec<Arc<Host>>,
        previous: Option<&Cluster>,
        store: &ferry_stats::Store,
        logs: &crate::log_file::ClusterLogs,
    ) -> Arc<Cluster> {
        let stats = match previous {
            Some(p) => p.stats.clone(),
            None => {
                let stats = Arc::new(ClusterStats::default());
                store.register(format!("cluster.{}.", config.name), &stats);
                stats
            }
        };
        let eds_stats = match (
            &config.discovery,
            previous.and_then(|p| p.eds_stats.clone()),
        ) {
            (ferry_config::cluster::Discovery::Eds(_), Some(kept)) => Some(kept),
            (ferry_config::cluster::Discovery::Eds(_), None) => {
                let eds = Arc::new(crate::stats::EdsStats::default());
                store.register(format!("cluster.{}.", config.name), &eds);
                Some(eds)
            }
            _ => None,
        };
        let previous_hosts = previous.map(|p| p.hosts()).unwrap_or_default();
        let carried = |h: &Arc<Host>| previous_hosts.iter().any(|p| Arc::ptr_eq(p, h));
        // The default transport socket is picked for each new host.
        let new_hosts = hosts.iter().filter(|h| !carried(h)).count();
        stats.default_total_match_count.add(new_hosts as u64);
        // Warmed up once created (Envoy's gauge is set when warming ends); nothing is
        // ever buffered outside the codecs.
        stats.warming_state.set(0);
        stats.upstream_cx_rx_bytes_buffered.set(0);
        let breakers = match previous {
            Some(p) if p.config.circuit_breakers == config.circuit_breakers => p.breakers.clone(),
            _ => {
                crate::circuit_breaker::Breakers::new(&config.circuit_breakers, &config.name, store)
            }
        };
        let cluster = Arc::new_cyclic(|this| {
            let health = ClusterHealth::new(
                this.clone(),
                &config,
                previous.map(|p| &p.health),
                store,
                logs,
            );
            for h in &hosts {
                if carried(h) {
                    health.carry(h);
                } else {
                    health.adopt(h, false);
                }
            }
            let host_set = ArcSwap::from_pointee(HostSet::new(
                &config.lb_policy,
                &config.common_lb,
                Arc::new(Vec::new()),
            ));
            Cluster {
                name: Arc::from(config.name.as_str()),
                config,
                stats,
                eds_stats,
                breakers,
                host_set,
                ready: watch::Sender::new(false),
                health,
            }
        });
        cluster.publish(Arc::new(hosts));
        cluster
    }

    /// Picks a host by the cluster's `lb_policy` among the hosts health allows; None
    /// (counting `upstream_cx_none_healthy`) when there is none.
    ///
    /// `hash` is the request hash (from the route's `hash_policy`) used by `RING_HASH`
    /// and `MAGLEV`; when None those policies pick a random host, as Envoy does.
    pub fn choose_host(&self, hash: Option<u64>) -> Option<Arc<Host>> {
        let host = self
            .host_set
            .load()
            .choose(hash, &mut rand::rng(), &self.stats);
        if host.is_none() {
            self.stats.upstream_cx_none_healthy.inc();
        }
        host
    }

    /// Current hosts (all priorities), for admin `/clusters`.
    pub fn hosts(&self) -> Arc<Vec<Arc<Host>>> {
        self.host_set.load().all.clone()
    }

    /// Resolves once the cluster is warm: its first host set is known (DNS clusters after
    /// the first resolution attempt; static clusters immediately) and, with a health
    /// check, every initial host has been checked once.
    pub async fn ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Publishes a new host set (rebuilding the balancers) and marks the cluster
    /// discovered. Hosts whose address stayed keep their state (the caller reuses them).
    pub(crate) fn set_hosts(&self, hosts: Vec<Arc<Host>>) {
        {
            let _g = self.health.publish.lock();
            let old = self.hosts();
            self.change_members(&old, &hosts);
            self.publish(Arc::new(hosts));
        }
        self.mark_ready();
    }

    /// Builds and stores the host set of `hosts` with their current health, and updates
    /// the `membership_*` gauges. Callers hold the publish lock (or own the cluster).
    pub(crate) fn publish(&self, hosts: Arc<Vec<Arc<Host>>>) {
        let set = HostSet::new(&self.config.lb_policy, &self.config.common_lb, hosts);
        let old = self.host_set.load();
        if old.all.len() != set.all.len()
            || !old
                .all
                .iter()
                .zip(set.all.iter())
                .all(|(a, b)| Arc::ptr_eq(a, b))
        {
            self.stats.membership_change.inc();
        }
        let m = set.membership;
        self.stats.membership_total.set(m.total as u64);
        self.stats.membership_healthy.set(m.healthy as u64);
        self.stats.membership_degraded.set(m.degraded as u64);
        self.stats.membership_excluded.set(m.excluded as u64);
        self.host_set.store(Arc::new(set));
    }

    /// Lets `ready()` return.
    pub(crate) fn set_ready(&self) {
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
    use crate::health::flags::*;
    use ferry_config::cluster::CommonLbConfig;
    use rand::SeedableRng;

    fn host_set(policy: &LbPolicy, hosts: Vec<Arc<Host>>) -> HostSet {
        HostSet::new(policy, &CommonLbConfig::default(), Arc::new(hosts))
    }

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
        let set = host_set(&LbPolicy::Random, hosts);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let h = set
                .choose(None, &mut rng, &ClusterStats::default())
                .unwrap();
            assert_eq!(h.address.to_string(), "10.0.0.2:80");
        }
        // Priority 0 empty: priority 1 takes over.
        let set = host_set(
            &LbPolicy::RoundRobin,
            vec![host("10.0.0.1", 1), host("10.0.0.3", 2)],
        );
        assert_eq!(
            set.choose(None, &mut rng, &ClusterStats::default())
                .unwrap()
                .priority,
            1
        );
        let empty = host_set(&LbPolicy::RoundRobin, vec![]);
        assert!(empty
            .choose(None, &mut rng, &ClusterStats::default())
            .is_none());
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
            let set = host_set(&policy, hosts.clone());
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            for hash in [1u64, 99, u64::MAX] {
                let a = set
                    .choose(Some(hash), &mut rng, &ClusterStats::default())
                    .unwrap();
                for _ in 0..10 {
                    assert!(Arc::ptr_eq(
                        &a,
                        &set.choose(Some(hash), &mut rng, &ClusterStats::default())
                            .unwrap()
                    ));
                }
            }
            let mut seen = std::collections::HashSet::new();
            for _ in 0..200 {
                seen.insert(
                    set.choose(None, &mut rng, &ClusterStats::default())
                        .unwrap()
                        .address,
                );
            }
            assert_eq!(seen.len(), 4, "{policy:?}");
        }
    }

    fn picks(
        set: &HostSet,
        common_stats: &ClusterStats,
        n: usize,
    ) -> Vec<Option<std::net::SocketAddr>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        (0..n)
            .map(|_| set.choose(None, &mut rng, common_stats).map(|h| h.address))
            .collect()
    }

    #[test]
    fn unhealthy_hosts_leave_the_rotation_until_panic() {
        let stats = ClusterStats::default();
        let hosts: Vec<_> = (1..=4).map(|i| host(&format!("10.0.0.{i}"), 0)).collect();
        hosts[0].flag_set(FAILED_ACTIVE_HC);
        let set = host_set(&LbPolicy::RoundRobin, hosts.clone());
        assert_eq!(
            set.membership,
            Membership {
                total: 4,
                healthy: 3,
                degraded: 0,
                excluded: 0
            }
        );
        assert!(picks(&set, &stats, 30)
            .iter()
            .all(|a| *a != Some(hosts[0].address)));
        assert_eq!(stats.lb_healthy_panic.value(), 0);
        // 1 of 4 healthy (25% < 50%): panic, every host takes traffic.
        hosts[1].flag_set(FAILED_OUTLIER_CHECK);
        hosts[2].flag_set(FAILED_EDS_HEALTH);
        let set = host_set(&LbPolicy::RoundRobin, hosts.clone());
        let seen: std::collections::HashSet<_> = picks(&set, &stats, 40).into_iter().collect();
        assert_eq!(seen.len(), 4);
        assert_eq!(stats.lb_healthy_panic.value(), 40);
        // Panic disabled: only the healthy host.
        let no_panic = CommonLbConfig {
            healthy_panic_threshold: 0.0,
            ..CommonLbConfig::default()
        };
        let set = HostSet::new(&LbPolicy::RoundRobin, &no_panic, Arc::new(hosts.clone()));
        assert!(picks(&set, &stats, 20)
            .iter()
            .all(|a| *a == Some(hosts[3].address)));
        // ... and none when it fails too.
        hosts[3].flag_set(FAILED_ACTIVE_HC);
        let set = HostSet::new(&LbPolicy::RoundRobin, &no_panic, Arc::new(hosts.clone()));
        assert!(picks(&set, &stats, 5).iter().all(Option::is_none));
        // fail_traffic_on_panic: no host instead of all hosts.
        let fail = CommonLbConfig {
            fail_traffic_on_panic: true,
            ..CommonLbConfig::default()
        };
        let set = HostSet::new(&LbPolicy::RoundRobin, &fail, Arc::new(hosts.clone()));
        assert!(picks(&set, &stats, 5).iter().all(Option::is_none));
    }

    #[test]
    fn load_spills_to_the_next_priority_by_health() {
        let stats = ClusterStats::default();
        let hosts = vec![
            host("10.0.0.1", 0),
            host("10.0.0.2", 0),
            host("10.0.1.1", 1),
            host("10.0.1.2", 1),
        ];
        hosts[0].flag_set(FAILED_ACTIVE_HC);
        // P0 is 50% healthy: 70% of the load (overprovisioning 1.4), P1 30%.
        let set = host_set(&LbPolicy::Random, hosts.clone());
        let p1 = picks(&set, &stats, 2000)
            .iter()
            .filter(|a| a.is_some_and(|a| a.to_string().starts_with("10.0.1.")))
            .count();
        assert!((450..750).contains(&p1), "{p1}");
        assert_eq!(stats.lb_healthy_panic.value(), 0);
    }

    #[test]
    fn degraded_and_excluded_hosts() {
        let stats = ClusterStats::default();
        let hosts: Vec<_> = (1..=5).map(|i| host(&format!("10.0.0.{i}"), 0)).collect();
        for h in &hosts[1..4] {
            h.flag_set(DEGRADED_EDS_HEALTH);
        }
        // Excluded: out of the arithmetic and of the rotation (panic would use it).
        hosts[4].flag_set(EDS_STATUS_DRAINING);
        let set = host_set(&LbPolicy::Random, hosts.clone());
        assert_eq!(
            set.membership,
            Membership {
                total: 5,
                healthy: 1,
                degraded: 3,
                excluded: 1
            }
        );
        // Healthy availability 140 * 1/4 = 35%: the rest goes to the degraded hosts.
        let all = picks(&set, &stats, 2000);
        let healthy = all.iter().filter(|a| **a == Some(hosts[0].address)).count();
        assert!((550..850).contains(&healthy), "{healthy}");
        assert!(all.iter().all(|a| *a != Some(hosts[4].address)));
    }

    #[test]
    fn hosts_that_stay_keep_their_health_across_updates() {
        let yaml = r#"
static_resources:
  clusters:
  - name: c
    health_checks:
    - {timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {}}
    outlier_detection: {}
"#;
        let config = ferry_config::load(yaml, ferry_config::Format::Yaml)
            .unwrap()
            .bootstrap
            .clusters
            .remove(0);
        let (a, b) = (host("10.0.0.1", 0), host("10.0.0.2", 0));
        let c = Cluster::new(
            config,
            vec![a.clone(), b.clone()],
            None,
            &ferry_stats::Store::new(),
            &Default::default(),
        );
        // With a health check, hosts start failed until their first check.
        assert_eq!(a.health_flags_string(), "/failed_active_hc");
        assert_eq!(c.stats.membership_healthy.value(), 0);
        a.flag_clear(FAILED_ACTIVE_HC);
        a.flag_set(FAILED_OUTLIER_CHECK);
        // Re-resolution: a stays (same host), b goes, n arrives.
        let n = host("10.0.0.3", 0);
        c.set_hosts(vec![a.clone(), n.clone()]);
        assert_eq!(a.health_flags_string(), "/failed_outlier_check");
        assert_eq!(n.health_flags_string(), "/failed_active_hc");
        assert_eq!(c.stats.membership_total.value(), 2);
        assert!(b.hc.lock().retired);
    }
}
