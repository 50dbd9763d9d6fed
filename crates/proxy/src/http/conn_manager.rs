//! The HTTP connection manager's runtime (Envoy's `ConnectionManagerImpl` state):
//! what every stream of a connection manager reads — its config, the routes resolved
//! against the clusters, the HTTP filters, loggers, tracer and stats — and the facts
//! of the downstream connection a stream arrived on. The codec loop that serves a
//! connection is `network/hcm.rs`; one stream's path is `http/stream.rs`.

use crate::access_log::Logger;
use crate::http::body::RequestTap;
use crate::http::connection::ConnInfo;
use crate::http::route_table::RouteTable;
use crate::stream_info::StreamInfo;
use crate::Snapshot;
use arc_swap::ArcSwap;
use ferry_config::hcm::HttpConnectionManager;
use ferry_config::route::RouteConfig;
use ferry_upstream::ClusterManager;
use std::sync::Arc;
use std::time::Instant;

/// An HCM ready to serve: its config, clusters and access loggers.
pub struct HcmRuntime {
    /// The validated config.
    pub config: Arc<HttpConnectionManager>,
    /// Clusters of the snapshot.
    pub clusters: Arc<ClusterManager>,
    /// Access loggers.
    pub loggers: Arc<[Logger]>,
    /// The route configuration with what each route resolves to; replaced alone by
    /// [`HcmRuntime::replace_route_config`] (a stream keeps the table it started with).
    pub routes: ArcSwap<RouteTable>,
    /// Whether an access log reads the request headers (a stream then keeps a copy).
    pub logs_read_request_headers: bool,
    /// The stats store (per-route filter state registers its stats there).
    store: Arc<ferry_stats::Store>,
    /// Set by admin `/healthcheck/fail` (for filters built with a new route table).
    health_failed: Arc<std::sync::atomic::AtomicBool>,
    /// This host's address, appended to `x-forwarded-for` for loopback peers.
    pub local_address: Option<std::net::IpAddr>,
    /// The HTTP filters before the router, in order.
    pub filters: Vec<Arc<dyn crate::http::filter_manager::HttpFilter>>,
    /// The router's config (the terminal filter of `http_filters`).
    pub router: crate::http::router::config::RouterConfig,
    /// `http.<stat_prefix>.*`.
    pub stats: Arc<HcmStats>,
    /// `listener.<address>.http.<stat_prefix>.*`.
    pub listener_stats: Arc<crate::stats::ListenerHttpStats>,
    /// `node.cluster` (`--service-cluster`).
    pub node_cluster: String,
    /// Whether an access log reads the upstream connection (its id or local address):
    /// only then does a single-attempt request watch which connection it gets.
    pub log_upstream_connection: bool,
    /// The HCM's tracer (`tracing`), if it has one.
    pub tracer: Option<Arc<crate::trace::Tracer>>,
    /// Whether its connections drain while the server is health check failed (the
    /// listener's `drain_type` is `DEFAULT`).
    drain_on_health_fail: bool,
}

pub use crate::stats::HcmStats;

/// One stream of a connection manager (Envoy's `ActiveStream`): what it carries from
/// its start to its response — the connection manager, the connection, the stream's
/// record, its request counters and its start.
pub struct ActiveStream<'a> {
    /// The connection manager.
    pub hcm: &'a Arc<HcmRuntime>,
    /// The downstream connection.
    pub conn: &'a Arc<ConnInfo>,
    /// The stream's record.
    pub info: StreamInfo,
    /// The request body's counters.
    pub tap: Arc<RequestTap>,
    /// When the stream started.
    pub start: Instant,
    /// Whether the stream keeps a copy of its request headers (something reads them).
    pub keep_request_headers: bool,
}

impl HcmRuntime {
    /// Builds the runtime (starts access log writers); `listener_scope` is the
    /// listener's stats scope (`listener.<address>.`).
    pub fn new(
        config: Arc<HttpConnectionManager>,
        snapshot: &Snapshot,
        listener_scope: &str,
        drain_type: ferry_config::listener::DrainType,
    ) -> HcmRuntime {
        let loggers: Vec<Logger> = config
            .access_logs
            .iter()
            .map(|l| Logger::new(l, snapshot))
            .collect();
        let log_upstream_connection = loggers.iter().any(|l| {
            l.reads(&|op| {
                use ferry_config::format::Operator as O;
                matches!(
                    op,
                    O::UpstreamLocalAddress
                        | O::UpstreamLocalAddressWithoutPort
                        | O::UpstreamLocalPort
                        | O::UpstreamConnectionId
                )
            })
        });
        let env = crate::http::filter_manager::Env {
            stat_prefix: &config.stat_prefix,
            stats: &snapshot.stats,
            health_failed: snapshot.health_failed.clone(),
            node_cluster: &snapshot.bootstrap.node_cluster,
        };
        let filters = config
            .http_filters
            .iter()
            .enumerate()
            .filter_map(|(i, f)| crate::http::filters::build(f, i, &env))
            .collect::<Vec<_>>();
        let routes = RouteTable::build(
            config.route_config.clone(),
            &snapshot.clusters,
            &filters,
            &env,
        );
        let stats = Arc::new(HcmStats::default());
        snapshot
            .stats
            .register(format!("http.{}.", config.stat_prefix), &stats);
        let listener_stats = Arc::new(crate::stats::ListenerHttpStats::default());
        snapshot.stats.register(
            format!("{listener_scope}http.{}.", config.stat_prefix),
            &listener_stats,
        );
        let tracer = config.tracing.as_ref().map(|t| {
            Arc::new(crate::trace::Tracer::new(
                t.clone(),
                &crate::trace::Env {
                    clusters: &snapshot.clusters,
                    stats: &snapshot.stats,
                    node_id: &snapshot.bootstrap.node_id,
                    node_cluster: &snapshot.bootstrap.node_cluster,
                    zone: &snapshot.bootstrap.node_zone,
                    local_address: snapshot.local_address,
                },
            ))
        });
        HcmRuntime {
            tracer,
            listener_stats,
            filters,
            router: config
                .router
                .config
                .downcast_ref::<crate::http::router::config::RouterConfig>()
                .cloned()
                .unwrap_or_default(),
            stats,
            node_cluster: snapshot.bootstrap.node_cluster.clone(),
            logs_read_request_headers: !loggers.is_empty(),
            log_upstream_connection,
            routes: ArcSwap::from_pointee(routes),
            store: snapshot.stats.clone(),
            health_failed: snapshot.health_failed.clone(),
            drain_on_health_fail: drain_type == ferry_config::listener::DrainType::Default,
            local_address: snapshot.local_address,
            config,
            clusters: snapshot.clusters.clone(),
            loggers: loggers.into(),
        }
    }

    /// Whether a stream's connection should close (HTTP/1.1) or go away (HTTP/2)
    /// after it: the server is health check failed (`/healthcheck/fail`) and the
    /// listener drains then (Envoy's `drainClose` for a `DEFAULT` listener).
    pub fn drain_close(&self) -> bool {
        self.drain_on_health_fail
            && self
                .health_failed
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Replaces the route configuration alone (RDS): clusters, filters, loggers and
    /// connections stay; streams already routed finish on the table they started with.
    pub fn replace_route_config(&self, config: Arc<RouteConfig>) {
        let env = crate::http::filter_manager::Env {
            stat_prefix: &self.config.stat_prefix,
            stats: &self.store,
            health_failed: self.health_failed.clone(),
            node_cluster: &self.node_cluster,
        };
        let table = RouteTable::build(config, &self.clusters, &self.filters, &env);
        self.routes.store(Arc::new(table));
    }

    /// Whether a stream on `table` keeps a copy of its request headers: an access log,
    /// or a header value template that reads `%REQ(...)%`, reads them.
    pub fn keeps_request_headers(&self, table: &RouteTable) -> bool {
        self.logs_read_request_headers || table.reads_request_headers
    }
}
