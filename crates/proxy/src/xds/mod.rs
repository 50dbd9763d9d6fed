//! The xDS client: listeners, clusters, route configurations and endpoints from a
//! control plane or from files, applied one resource at a time through the server's
//! per-resource paths (`Server::add_or_update_listener`, `add_or_update_cluster`,
//! `RouteConfigProviders::update`, `ClusterManager::set_endpoints`) so that an update
//! drops no request.
//!
//! - [`client`]: what every source shares — the resources applied, the names to
//!   subscribe to, initialization, TTLs;
//! - [`stream`]: one gRPC stream to a control plane (ADS, or a type's own
//!   `api_config_source`), reconnected with back-off and rate limited; it speaks
//!   [`sotw`] (state of the world) or [`delta`] (incremental);
//! - [`file`]: `path_config_source`, watched;
//! - [`apply`]: one update converted with the bootstrap's converters
//!   (`ferry_config::dynamic`) and applied, or refused with every problem's resource
//!   name and field path (the NACK), the previous configuration staying in force;
//! - [`dump`]: what `/config_dump` shows of it.

pub(crate) mod apply;
mod client;
mod delta;
pub(crate) mod dump;
mod file;
mod sotw;
mod stream;

use crate::server::Server;
use client::Client;
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
        counters: {
            update_attempt, update_success, update_rejected, update_failure,
            init_fetch_timeout,
        }
        gauges: { version, update_time }
    }
}

ferry_stats::stat_group! {
    /// `cluster_manager.cds.*` beyond the subscription's: the updates that changed the
    /// clusters.
    pub struct ConfigReloadStats {
        counters: { config_reload }
        gauges: { config_reload_time_ms }
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

    /// Whether the client asks for every resource of the type (LDS, CDS) rather than
    /// for the names in use (RDS, EDS).
    fn wildcard(self) -> bool {
        matches!(self, ResourceType::Cluster | ResourceType::Listener)
    }
}

/// Starts the xDS client when the bootstrap has `dynamic_resources`, or static
/// listeners or clusters that take route configurations or endpoints from xDS.
/// Clusters are asked for before listeners on a stream; unlike Envoy, which asks for
/// listeners once clusters have initialized, ferry asks for both at once (a listener
/// whose routes name a cluster not there yet is refused until it comes).
pub(crate) fn start(server: &Arc<Server>) {
    let snapshot = server.snapshot.load_full();
    let dynamic = &snapshot.bootstrap.dynamic;
    let wildcard: Vec<(ResourceType, ConfigSource)> = [
        (ResourceType::Cluster, &dynamic.cds),
        (ResourceType::Listener, &dynamic.lds),
    ]
    .into_iter()
    .filter_map(|(t, s)| Some((t, s.clone()?)))
    .collect();
    // Static listeners that take their routes from RDS wait for them, and static EDS
    // clusters for their endpoints.
    let mut waited: Vec<ResourceType> = wildcard.iter().map(|(t, _)| *t).collect();
    if !snapshot.route_configs.names_in_use().is_empty() {
        waited.push(ResourceType::RouteConfiguration);
    }
    if !apply::eds_in_use(server).is_empty() {
        waited.push(ResourceType::ClusterLoadAssignment);
    }
    if waited.is_empty() && dynamic.ads.is_none() {
        return;
    }
    // Initialization waits for the wildcard sources' initial fetch timeouts, one after
    // the other, then for the longest of the named sources' in use.
    let named_sources: Vec<ConfigSource> = snapshot
        .route_configs
        .names_in_use()
        .into_iter()
        .chain(apply::eds_in_use(server))
        .map(|(_, s)| s)
        .collect();
    let named_timeout = named_sources
        .iter()
        .map(ConfigSource::initial_fetch_timeout)
        .try_fold(std::time::Duration::ZERO, |max, t| Some(max.max(t?)));
    let timeout = named_timeout.and_then(|named| {
        wildcard
            .iter()
            .map(|(_, s)| s.initial_fetch_timeout())
            .try_fold(named, |sum, t| Some(sum + t?))
    });
    let stats = Stats::register(&snapshot.stats);
    let init = Init::start(server, &waited, timeout, &stats);
    let client = Client::new(server.clone(), stats, init, dynamic.ads.clone(), wildcard);
    client.start();
}

/// The server's initialization (Envoy's init manager, for xDS): INITIALIZING until the
/// first response of every subscribed type is applied (or refused), or until the
/// `initial_fetch_timeout`s have passed (see [`start`]).
pub(crate) struct Init {
    server: std::sync::Weak<Server>,
    pending: parking_lot::Mutex<std::collections::HashSet<ResourceType>>,
}

impl Init {
    fn start(
        server: &Arc<Server>,
        types: &[ResourceType],
        timeout: Option<std::time::Duration>,
        stats: &Stats,
    ) -> Arc<Init> {
        if !types.is_empty() {
            server.set_initializing(true);
        }
        let init = Arc::new(Init {
            server: Arc::downgrade(server),
            pending: parking_lot::Mutex::new(types.iter().copied().collect()),
        });
        if let Some(limit) = timeout {
            let init = init.clone();
            let stats = stats.clone();
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                let pending: Vec<ResourceType> = init.pending.lock().iter().copied().collect();
                for t in &pending {
                    tracing::warn!(
                        type_url = t.type_url(),
                        "xDS: initial fetch timed out; serving without it"
                    );
                    if let Some(sub) = stats.of(*t) {
                        sub.init_fetch_timeout.inc();
                    }
                }
                // Route configurations not come yet count it in theirs.
                if let (Some(server), true) = (
                    init.server.upgrade(),
                    pending.contains(&ResourceType::RouteConfiguration),
                ) {
                    let routes = server.snapshot.load().route_configs.clone();
                    for (name, _) in routes.names_in_use() {
                        match routes.stats(&name) {
                            Some(stats) if !routes.has(&name) => stats.init_fetch_timeout.inc(),
                            _ => {}
                        }
                    }
                }
                // EDS clusters still without hosts count it in their own stats.
                let server = init.server.upgrade();
                if let (Some(server), true) = (
                    server,
                    pending.contains(&ResourceType::ClusterLoadAssignment),
                ) {
                    for c in server.snapshot.load().clusters.clusters() {
                        match &c.eds_stats {
                            Some(eds) if c.hosts().is_empty() => eds.init_fetch_timeout.inc(),
                            _ => {}
                        }
                    }
                }
                init.finish();
            });
        }
        init
    }

    /// Everything of `t` that initialization waits for has come.
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

/// The client's stats. Route configurations are counted per subscription
/// (`http.<prefix>.rds.<name>.*`, with `RouteConfigProviders`) and assignments per
/// cluster (`cluster.<name>.update_*`), as Envoy counts them.
#[derive(Clone)]
pub(crate) struct Stats {
    pub(crate) control_plane: Arc<ControlPlaneStats>,
    pub(crate) cds: Arc<SubscriptionStats>,
    pub(crate) cds_reload: Arc<ConfigReloadStats>,
    pub(crate) lds: Arc<SubscriptionStats>,
}

impl Stats {
    fn register(store: &ferry_stats::Store) -> Stats {
        let stats = Stats {
            control_plane: Arc::default(),
            cds: Arc::default(),
            cds_reload: Arc::default(),
            lds: Arc::default(),
        };
        store.register("control_plane.", &stats.control_plane);
        store.register("cluster_manager.cds.", &stats.cds);
        store.register("cluster_manager.cds.", &stats.cds_reload);
        store.register("listener_manager.lds.", &stats.lds);
        stats
    }

    /// The stats of a wildcard subscription (LDS, CDS).
    pub(crate) fn of(&self, t: ResourceType) -> Option<&SubscriptionStats> {
        match t {
            ResourceType::Cluster => Some(&self.cds),
            ResourceType::Listener => Some(&self.lds),
            ResourceType::RouteConfiguration | ResourceType::ClusterLoadAssignment => None,
        }
    }
}

/// Envoy's `version` stat: a hash of `version_info`.
fn version_hash(version: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    version.hash(&mut h);
    h.finish()
}

/// Now, in milliseconds since the epoch (`update_time`).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// A resource's `ttl` (None: unset, or not a positive duration), at most a year.
fn ttl(d: Option<ferry_envoy_api::pb::google::protobuf::Duration>) -> Option<std::time::Duration> {
    const YEAR: u64 = 365 * 24 * 3600;
    let d = d?;
    let secs = u64::try_from(d.seconds).ok()?.min(YEAR);
    let nanos = u32::try_from(d.nanos).ok()?.min(999_999_999);
    Some(std::time::Duration::new(secs, nanos)).filter(|d| !d.is_zero())
}

/// The name of a resource of the four types (their field 1: `name`, or an
/// assignment's `cluster_name`), without decoding the rest.
pub(crate) fn resource_name(any: &ferry_envoy_api::pb::google::protobuf::Any) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Named {
        #[prost(string, tag = "1")]
        name: String,
    }
    <Named as prost::Message>::decode(any.value.as_slice())
        .map(|n| n.name)
        .unwrap_or_default()
}
