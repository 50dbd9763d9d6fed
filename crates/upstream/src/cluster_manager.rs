//! The cluster manager: builds every cluster from config, runs their DNS refresh and
//! idle-connection reaper tasks, looks clusters up by name, and replaces or removes one
//! cluster at a time (as CDS does) without touching the others.
//!
//! Whoever routes to a cluster holds its [`ClusterSlot`] (resolved by name once, when
//! routes are built): a replaced cluster is picked up by the next request, with no
//! rebuild of what routes to it and no lookup by name per request. A replacement keeps
//! the hosts whose endpoints stayed (their connection pools, health flags and outlier
//! records), the cluster's stats, and its circuit breakers when their thresholds did
//! not change; requests in flight finish on the cluster they started with.

use crate::discovery::{dns, static_};
use crate::log_file::{ClusterLogs, Target};
use crate::Cluster;
use arc_swap::{ArcSwap, ArcSwapOption};
use ferry_config::cluster::{Cluster as ClusterConfig, Discovery};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::AbortHandle;

/// One cluster name's current cluster (empty while no cluster has that name).
#[derive(Debug, Default)]
pub struct ClusterSlot {
    cluster: ArcSwapOption<Cluster>,
}

impl ClusterSlot {
    /// The cluster now, if there is one.
    pub fn get(&self) -> Option<Arc<Cluster>> {
        self.cluster.load_full()
    }
}

/// The clusters one reaper task looks after.
type ReaperGroup = Arc<Mutex<Vec<Weak<Cluster>>>>;

/// The clusters at one moment, in the order they were added.
#[derive(Default)]
struct Clusters {
    list: Vec<Arc<Cluster>>,
    by_name: HashMap<String, usize>,
}

/// All clusters of a proxy.
pub struct ClusterManager {
    clusters: ArcSwap<Clusters>,
    /// Handles by name, made on first request (a route may name a cluster that comes
    /// later).
    slots: Mutex<HashMap<String, Arc<ClusterSlot>>>,
    /// Serialises replacements.
    update: Mutex<()>,
    /// Each cluster's discovery tasks, aborted when it is replaced or removed.
    tasks: Mutex<HashMap<String, Vec<AbortHandle>>>,
    /// Clusters by how often their idle connections are looked for: one reaper task per
    /// period, not one per cluster (a task per cluster costs memory at 10,000).
    reapers: Mutex<BTreeMap<Duration, ReaperGroup>>,
    reaper_tasks: Mutex<Vec<AbortHandle>>,
    logs: ClusterLogs,
    runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for ClusterManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterManager")
            .field("clusters", &self.clusters.load().list)
            .finish_non_exhaustive()
    }
}

impl Drop for ClusterManager {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().values().flatten() {
            t.abort();
        }
        for t in self.reaper_tasks.get_mut().iter() {
            t.abort();
        }
        for c in &self.clusters.load().list {
            c.stop_health();
        }
    }
}

/// How often idle pooled connections are looked for: a quarter of the idle timeout,
/// between 100 ms and 1 min.
fn reap_period(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// What the cluster manager takes from the bootstrap besides the clusters.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `cluster_manager.outlier_detection.event_log_path`.
    pub outlier_event_log: Option<std::path::PathBuf>,
    /// Opens (and reopens) the event log files.
    pub log_files: crate::log_file::LogFiles,
}

impl ClusterManager {
    /// Builds all clusters; spawns DNS refresh tasks for `STRICT_DNS`/`LOGICAL_DNS`
    /// clusters, health check and outlier detection tasks, and idle-connection reapers
    /// on the current tokio runtime. The tasks stop when the manager is dropped.
    pub fn new(clusters: &[ClusterConfig], store: &ferry_stats::Store) -> Arc<ClusterManager> {
        ClusterManager::with_options(clusters, store, &Options::default())
    }

    /// [`ClusterManager::new`] with the bootstrap's cluster manager `options`.
    pub fn with_options(
        clusters: &[ClusterConfig],
        store: &ferry_stats::Store,
        options: &Options,
    ) -> Arc<ClusterManager> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        if runtime.is_none() {
            tracing::error!(
                "cluster manager built outside a tokio runtime: DNS clusters will not resolve"
            );
        }
        let manager = ClusterManager {
            clusters: ArcSwap::from_pointee(Clusters::default()),
            slots: Mutex::new(HashMap::new()),
            update: Mutex::new(()),
            tasks: Mutex::new(HashMap::new()),
            reapers: Mutex::new(BTreeMap::new()),
            reaper_tasks: Mutex::new(Vec::new()),
            logs: ClusterLogs {
                outlier: options
                    .outlier_event_log
                    .as_ref()
                    .map(|p| options.log_files.open(Target::path(p))),
                files: options.log_files.clone(),
            },
            runtime,
        };
        // The first cluster of a name wins at start (a bootstrap is validated for
        // duplicates; this is the last line of defence).
        let mut built: Vec<Arc<Cluster>> = Vec::with_capacity(clusters.len());
        let mut by_name = HashMap::with_capacity(clusters.len());
        for config in clusters {
            if by_name.contains_key(&config.name) {
                tracing::warn!(cluster = %config.name, "duplicate cluster name; the first one is used");
                continue;
            }
            by_name.insert(config.name.clone(), built.len());
            built.push(manager.build(config, None, store));
        }
        manager.clusters.store(Arc::new(Clusters {
            list: built,
            by_name,
        }));
        Arc::new(manager)
    }

    /// Builds one cluster, replacing `previous` (same name) if given, and starts its
    /// tasks.
    fn build(
        &self,
        config: &ClusterConfig,
        previous: Option<&Arc<Cluster>>,
        store: &ferry_stats::Store,
    ) -> Arc<Cluster> {
        let previous_hosts = previous.map(|p| p.hosts()).unwrap_or_default();
        let logs = &self.logs;
        let cluster = match &config.discovery {
            // An EDS cluster's hosts are set as a STATIC cluster's are (its assignment
            // comes from the xDS client, through `set_endpoints` or in its config).
            Discovery::Static | Discovery::Eds(_) => {
                let hosts = static_::hosts_reusing(config, &previous_hosts);
                let cluster =
                    Cluster::new(config.clone(), hosts, previous.map(|p| &**p), store, logs);
                if let Some(rt) = &self.runtime {
                    cluster.start_health(rt);
                }
                cluster.mark_ready();
                cluster
            }
            Discovery::StrictDns(d) | Discovery::LogicalDns(d) => {
                let logical = matches!(config.discovery, Discovery::LogicalDns(_));
                // A replaced DNS cluster keeps its resolved hosts until the next
                // resolution says otherwise.
                let hosts = previous_hosts.to_vec();
                let replaced = previous.is_some() && !hosts.is_empty();
                let cluster =
                    Cluster::new(config.clone(), hosts, previous.map(|p| &**p), store, logs);
                if let Some(rt) = &self.runtime {
                    cluster.start_health(rt);
                    let task = rt.spawn(dns::run(Arc::downgrade(&cluster), d.clone(), logical));
                    self.tasks
                        .lock()
                        .insert(config.name.clone(), vec![task.abort_handle()]);
                }
                if replaced {
                    cluster.mark_ready();
                }
                cluster
            }
        };
        if let Some(idle) = config.idle_timeout {
            self.reap(reap_period(idle), &cluster);
        }
        cluster
    }

    /// Adds `cluster` to the reaper of `period` (starting it if it is the first).
    fn reap(&self, period: Duration, cluster: &Arc<Cluster>) {
        let mut reapers = self.reapers.lock();
        if let Some(group) = reapers.get(&period) {
            group.lock().push(Arc::downgrade(cluster));
            return;
        }
        let group = Arc::new(Mutex::new(vec![Arc::downgrade(cluster)]));
        reapers.insert(period, group.clone());
        let Some(rt) = &self.runtime else {
            return;
        };
        let task = rt.spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let alive: Vec<Arc<Cluster>> = {
                    let mut g = group.lock();
                    g.retain(|w| w.strong_count() > 0);
                    g.iter().filter_map(Weak::upgrade).collect()
                };
                for cluster in alive {
                    cluster.reap_connections();
                }
            }
        });
        self.reaper_tasks.lock().push(task.abort_handle());
    }

    /// Adds the cluster `config` names, or replaces the cluster of that name (keeping
    /// the state described in the module's documentation). Every other cluster is left
    /// as it is. Returns the new cluster.
    pub fn add_or_update(
        &self,
        config: &ClusterConfig,
        store: &ferry_stats::Store,
    ) -> Arc<Cluster> {
        let _serial = self.update.lock();
        let current = self.clusters.load_full();
        let previous = current
            .by_name
            .get(&config.name)
            .and_then(|i| current.list.get(*i))
            .cloned();
        if let Some(tasks) = self.tasks.lock().remove(&config.name) {
            for t in tasks {
                t.abort();
            }
        }
        let cluster = self.build(config, previous.as_ref(), store);
        let mut list = current.list.clone();
        let mut by_name = current.by_name.clone();
        match by_name.get(&config.name) {
            Some(i) => list[*i] = cluster.clone(),
            None => {
                by_name.insert(config.name.clone(), list.len());
                list.push(cluster.clone());
            }
        }
        self.clusters.store(Arc::new(Clusters { list, by_name }));
        if let Some(slot) = self.slots.lock().get(&config.name) {
            slot.cluster.store(Some(cluster.clone()));
        }
        // The previous cluster's checks stop; its requests in flight finish.
        if let Some(p) = previous {
            p.stop_health();
        }
        cluster
    }

    /// Removes the cluster called `name` (its requests in flight finish). Whether there
    /// was one.
    pub fn remove(&self, name: &str) -> bool {
        let _serial = self.update.lock();
        let current = self.clusters.load_full();
        let Some(&index) = current.by_name.get(name) else {
            return false;
        };
        if let Some(tasks) = self.tasks.lock().remove(name) {
            for t in tasks {
                t.abort();
            }
        }
        let mut list = current.list.clone();
        let removed = list.remove(index);
        let by_name = list
            .iter()
            .enumerate()
            .map(|(i, c)| (c.config.name.clone(), i))
            .collect();
        self.clusters.store(Arc::new(Clusters { list, by_name }));
        if let Some(slot) = self.slots.lock().get(name) {
            slot.cluster.store(None);
        }
        removed.stop_health();
        true
    }

    /// Replaces the host set of the STATIC cluster called `name` (as EDS replaces a
    /// cluster's load assignment): hosts whose endpoint stayed keep their pools, health
    /// and outlier state; new hosts start as the cluster's config says (failed until
    /// their first check with a health check); hosts that left stop being checked and
    /// finish their requests. False when there is no such STATIC cluster.
    pub fn set_endpoints(
        &self,
        name: &str,
        localities: Vec<ferry_config::cluster::Locality>,
    ) -> bool {
        let _serial = self.update.lock();
        let Some(cluster) = self.get(name) else {
            return false;
        };
        if !matches!(
            cluster.config.discovery,
            Discovery::Static | Discovery::Eds(_)
        ) {
            return false;
        }
        let hosts = static_::hosts_of(&cluster.config.name, &localities, &cluster.hosts());
        cluster.set_hosts(hosts);
        true
    }

    /// The cluster called `name` now.
    pub fn get(&self, name: &str) -> Option<Arc<Cluster>> {
        let current = self.clusters.load();
        current
            .by_name
            .get(name)
            .and_then(|i| current.list.get(*i))
            .cloned()
    }

    /// The handle of the cluster called `name`, which follows its replacements (made
    /// empty while there is no such cluster).
    pub fn slot(&self, name: &str) -> Arc<ClusterSlot> {
        let mut slots = self.slots.lock();
        if let Some(s) = slots.get(name) {
            return s.clone();
        }
        let slot = Arc::new(ClusterSlot {
            cluster: ArcSwapOption::new(self.get(name)),
        });
        slots.insert(name.to_string(), slot.clone());
        slot
    }

    /// All clusters now, in the order they were added.
    pub fn clusters(&self) -> Vec<Arc<Cluster>> {
        self.clusters.load().list.clone()
    }
}
