//! The cluster manager: builds every cluster from config, runs their DNS refresh and
//! idle-connection reaper tasks, and looks clusters up by name.

use crate::discovery::{dns, static_};
use crate::log_file::Target;
use crate::Cluster;
use ferry_config::cluster::{Cluster as ClusterConfig, Discovery};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::AbortHandle;

/// All clusters of a proxy.
pub struct ClusterManager {
    clusters: Vec<Arc<Cluster>>,
    by_name: HashMap<String, usize>,
    /// Background tasks, aborted when the manager is dropped.
    tasks: Vec<AbortHandle>,
}

impl std::fmt::Debug for ClusterManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterManager")
            .field("clusters", &self.clusters)
            .finish_non_exhaustive()
    }
}

impl Drop for ClusterManager {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for c in &self.clusters {
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
        let mut manager = ClusterManager {
            clusters: Vec::with_capacity(clusters.len()),
            by_name: HashMap::new(),
            tasks: Vec::new(),
        };
        // Clusters by how often their idle connections are looked for: one reaper task
        // per period, not one per cluster (a task per cluster costs memory at 10,000).
        let mut reapers: BTreeMap<Duration, Vec<Weak<Cluster>>> = BTreeMap::new();
        let logs = crate::log_file::ClusterLogs {
            outlier: options
                .outlier_event_log
                .as_ref()
                .map(|p| options.log_files.open(Target::path(p))),
            files: options.log_files.clone(),
        };
        for config in clusters {
            if manager.by_name.contains_key(&config.name) {
                tracing::warn!(cluster = %config.name, "duplicate cluster name; the first one is used");
                continue;
            }
            let cluster = match &config.discovery {
                Discovery::Static => {
                    let cluster =
                        Cluster::new(config.clone(), static_::hosts(config), store, &logs);
                    if let Some(rt) = &runtime {
                        cluster.start_health(rt);
                    }
                    cluster.mark_ready();
                    cluster
                }
                Discovery::StrictDns(d) | Discovery::LogicalDns(d) => {
                    let logical = matches!(config.discovery, Discovery::LogicalDns(_));
                    let cluster = Cluster::new(config.clone(), Vec::new(), store, &logs);
                    if let Some(rt) = &runtime {
                        cluster.start_health(rt);
                        let task = rt.spawn(dns::run(Arc::downgrade(&cluster), d.clone(), logical));
                        manager.tasks.push(task.abort_handle());
                    }
                    cluster
                }
            };
            if let Some(idle) = config.idle_timeout {
                reapers
                    .entry(reap_period(idle))
                    .or_default()
                    .push(Arc::downgrade(&cluster));
            }
            manager
                .by_name
                .insert(config.name.clone(), manager.clusters.len());
            manager.clusters.push(cluster);
        }
        if let Some(rt) = &runtime {
            for (period, clusters) in reapers {
                let task = rt.spawn(async move {
                    let mut interval = tokio::time::interval(period);
                    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        interval.tick().await;
                        let mut alive = false;
                        for cluster in clusters.iter().filter_map(Weak::upgrade) {
                            cluster.reap_connections();
                            alive = true;
                        }
                        if !alive {
                            return;
                        }
                    }
                });
                manager.tasks.push(task.abort_handle());
            }
        }
        Arc::new(manager)
    }

    /// The cluster called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.by_name.get(name).and_then(|i| self.clusters.get(*i))
    }

    /// All clusters, in config order.
    pub fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.clusters.iter()
    }
}
