//! The xDS client: listeners and clusters from a control plane (`dynamic_resources`),
//! applied one resource at a time through the server's per-resource paths
//! (`Server::add_or_update_listener`, `ClusterManager::add_or_update`) so that an update
//! drops no request. [`ads`] runs the aggregated stream (state of the world); each
//! response is converted with the same converters as the bootstrap
//! (`ferry_config::dynamic`), applied, and ACKed — or NACKed with every problem's
//! resource name and field path, the previous configuration staying in force.

mod ads;
pub(crate) mod apply;
pub(crate) mod dump;
mod file;

use crate::server::Server;
use ferry_config::dynamic::ConfigSource;
use std::sync::Arc;

ferry_stats::stat_group! {
    /// `control_plane.*`.
    pub struct ControlPlaneStats {
        counters: { rate_limit_enforced }
        gauges: { connected_state, pending_requests }
    }
}

ferry_stats::stat_group! {
    /// `cluster_manager.cds.*` and `listener_manager.lds.*`: one subscription's updates.
    pub struct SubscriptionStats {
        counters: { update_attempt, update_success, update_rejected, update_failure, update_empty }
        gauges: { version, update_time }
    }
}

/// A type of resource the client subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ResourceType {
    /// CDS: `envoy.config.cluster.v3.Cluster`.
    Cluster,
    /// LDS: `envoy.config.listener.v3.Listener`.
    Listener,
    /// RDS: `envoy.config.route.v3.RouteConfiguration`, by the names listeners use.
    RouteConfiguration,
    /// EDS: `envoy.config.endpoint.v3.ClusterLoadAssignment`, by the service names of
    /// EDS clusters.
    ClusterLoadAssignment,
}

impl ResourceType {
    /// The type URL of its resources.
    pub(crate) fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            ResourceType::RouteConfiguration => {
                "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
            }
            ResourceType::ClusterLoadAssignment => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
        }
    }

    fn from_type_url(url: &str) -> Option<ResourceType> {
        [
            ResourceType::Cluster,
            ResourceType::Listener,
            ResourceType::RouteConfiguration,
            ResourceType::ClusterLoadAssignment,
        ]
        .into_iter()
        .find(|t| t.type_url() == url)
    }
}

/// Starts the xDS client when the bootstrap has `dynamic_resources` on ADS: clusters
/// first, then listeners (Envoy's order, so that listeners find their clusters).
pub(crate) fn start(server: &Arc<Server>) {
    let snapshot = server.snapshot.load_full();
    let dynamic = &snapshot.bootstrap.dynamic;
    if dynamic.ads.is_none() && dynamic.cds.is_none() && dynamic.lds.is_none() {
        return;
    }
    let stats = Stats::register(&snapshot.stats);
    // File sources are read now, clusters first.
    let mut types = Vec::new();
    for (t, source) in [
        (ResourceType::Cluster, &dynamic.cds),
        (ResourceType::Listener, &dynamic.lds),
    ] {
        match source {
            Some(ConfigSource::Ads { .. }) => types.push(t),
            Some(ConfigSource::Path {
                path,
                watched_directory,
            }) => file::start(
                server,
                t,
                path.clone(),
                watched_directory.clone(),
                stats.clone(),
            ),
            None => {}
        }
    }
    let Some(ads) = dynamic.ads.clone() else {
        return;
    };
    // Static listeners that take their routes from RDS wait for them too.
    let mut waited = types.clone();
    if !snapshot.route_configs.names_in_use().is_empty() {
        waited.push(ResourceType::RouteConfiguration);
    }
    // So do static EDS clusters.
    if !apply::eds_names_in_use(server).is_empty() {
        waited.push(ResourceType::ClusterLoadAssignment);
    }
    if waited.is_empty() {
        return;
    }
    let init = Init::start(server, &waited, [&dynamic.cds, &dynamic.lds]);
    tokio::spawn(ads::run(server.clone(), ads, types, stats, init));
}

/// The server's initialization (Envoy's init manager, for xDS): INITIALIZING until the
/// first response of every subscribed type is applied (or refused), or until the
/// `initial_fetch_timeout`s have passed (clusters', then listeners': their sum).
pub(crate) struct Init {
    server: std::sync::Weak<Server>,
    pending: parking_lot::Mutex<std::collections::HashSet<ResourceType>>,
}

impl Init {
    fn start(
        server: &Arc<Server>,
        types: &[ResourceType],
        sources: [&Option<ConfigSource>; 2],
    ) -> Arc<Init> {
        server.set_initializing(true);
        let init = Arc::new(Init {
            server: Arc::downgrade(server),
            pending: parking_lot::Mutex::new(types.iter().copied().collect()),
        });
        let timeouts: Option<Vec<std::time::Duration>> = sources
            .iter()
            .filter_map(|s| s.as_ref())
            .map(ConfigSource::initial_fetch_timeout)
            .collect();
        if let Some(timeouts) = timeouts {
            let limit: std::time::Duration = timeouts.iter().sum();
            let init = init.clone();
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                if !init.pending.lock().is_empty() {
                    tracing::warn!("xDS: initial fetch timed out; serving without it");
                }
                init.finish();
            });
        }
        init
    }

    /// The first response of `t` was handled.
    pub(crate) fn received(&self, t: ResourceType) {
        let mut pending = self.pending.lock();
        if pending.remove(&t) && pending.is_empty() {
            drop(pending);
            self.finish();
        }
    }

    fn finish(&self) {
        self.pending.lock().clear();
        if let Some(server) = self.server.upgrade() {
            server.set_initializing(false);
        }
    }
}

/// The client's stats.
#[derive(Clone)]
pub(crate) struct Stats {
    pub(crate) control_plane: Arc<ControlPlaneStats>,
    pub(crate) cds: Arc<SubscriptionStats>,
    pub(crate) lds: Arc<SubscriptionStats>,
    pub(crate) rds: Arc<SubscriptionStats>,
    pub(crate) eds: Arc<SubscriptionStats>,
}

impl Stats {
    fn register(store: &ferry_stats::Store) -> Stats {
        let stats = Stats {
            control_plane: Arc::default(),
            cds: Arc::default(),
            lds: Arc::default(),
            rds: Arc::default(),
            eds: Arc::default(),
        };
        store.register("control_plane.", &stats.control_plane);
        store.register("cluster_manager.cds.", &stats.cds);
        store.register("listener_manager.lds.", &stats.lds);
        // Envoy counts RDS per connection manager (`http.<prefix>.rds.<name>.*`);
        // ferry counts the one RDS subscription of its ADS stream.
        store.register("control_plane.rds.", &stats.rds);
        // Envoy counts EDS per cluster (`cluster.<name>.update_*`); ferry counts the
        // one EDS subscription.
        store.register("control_plane.eds.", &stats.eds);
        stats
    }

    pub(crate) fn of(&self, t: ResourceType) -> &SubscriptionStats {
        match t {
            ResourceType::Cluster => &self.cds,
            ResourceType::Listener => &self.lds,
            ResourceType::RouteConfiguration => &self.rds,
            ResourceType::ClusterLoadAssignment => &self.eds,
        }
    }
}
