//! The HTTP connection manager's runtime (Envoy's `ConnectionManagerImpl` state):
//! what every stream of a connection manager reads — its config, the routes resolved
//! against the clusters, the HTTP filters, loggers, tracer and stats — and the facts
//! of the downstream connection a stream arrived on. The codec loop that serves a
//! connection is `network/hcm.rs`; one stream's path is `http/stream.rs`.

use crate::access_log::Logger;
use crate::http::body::RequestTap;
use crate::http::connection::ConnInfo;
use crate::stream_info::StreamInfo;
use crate::Snapshot;
use ferry_config::hcm::HttpConnectionManager;
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
    /// Whether a stream must keep a copy of its request headers: an access log, or a
    /// header value template that reads `%REQ(...)%`. Decided once, not per request.
    pub keep_request_headers: bool,
    /// Per virtual host, per route: what the route resolves to, resolved once here so
    /// that no request looks a cluster up by name.
    pub routes: Vec<Vec<RouteTarget>>,
    /// This host's address, appended to `x-forwarded-for` for loopback peers.
    pub local_address: Option<std::net::IpAddr>,
    /// The HTTP filters before the router, in order.
    pub filters: Vec<Arc<dyn crate::http::filter_manager::HttpFilter>>,
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
}

/// A route's upstream side, resolved against the snapshot's clusters.
#[derive(Debug, Default)]
pub struct RouteTarget {
    /// `cluster`: one entry; `weighted_clusters`: one per entry, in order (None: the
    /// cluster does not exist); `cluster_header`: empty (looked up per request).
    pub clusters: Vec<Option<Arc<ferry_upstream::Cluster>>>,
    /// `x-envoy-expected-rq-timeout-ms` for the route timeout.
    pub expected_timeout: Option<http::HeaderValue>,
    /// What the route says of each HTTP filter (`typed_per_filter_config`), by filter
    /// index, with the per-route configs' state.
    pub filters: crate::http::filter_manager::RouteFilterConfigs,
    /// `request_mirror_policies` clusters, in order (None: the cluster does not exist,
    /// or is named per request by `cluster_header`).
    pub mirrors: Vec<Option<Arc<ferry_upstream::Cluster>>>,
}

impl HcmRuntime {
    /// Builds the runtime (starts access log writers); `listener_scope` is the
    /// listener's stats scope (`listener.<address>.`).
    pub fn new(
        config: Arc<HttpConnectionManager>,
        snapshot: &Snapshot,
        listener_scope: &str,
    ) -> HcmRuntime {
        let loggers: Vec<Logger> = config
            .access_logs
            .iter()
            .map(|l| Logger::new(l, snapshot))
            .collect();
        let keep_request_headers = !loggers.is_empty() || templates_read_request_headers(&config);
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
            .map(|(i, f)| crate::http::filters::build(f, i, &env))
            .collect::<Vec<_>>();
        let routes = resolve_routes(&config, &snapshot.clusters, &filters, &env);
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
            stats,
            node_cluster: snapshot.bootstrap.node_cluster.clone(),
            keep_request_headers,
            log_upstream_connection,
            routes,
            local_address: snapshot.local_address,
            config,
            clusters: snapshot.clusters.clone(),
            loggers: loggers.into(),
        }
    }
}

/// Whether any header mutation of the route configuration renders `%REQ(...)%`.
fn templates_read_request_headers(cfg: &HttpConnectionManager) -> bool {
    use ferry_config::format::{Operator, Piece};
    use ferry_config::route::{Action, ClusterSpecifier};
    use ferry_config::HeaderMutations;
    let reads = |m: &HeaderMutations| {
        m.request_add.iter().chain(m.response_add.iter()).any(|h| {
            h.value
                .pieces
                .iter()
                .any(|p| matches!(p, Piece::Op(Operator::Req(..), _)))
        })
    };
    let rc = &cfg.route_config;
    reads(&rc.headers)
        || rc.virtual_hosts.iter().any(|vh| {
            reads(&vh.headers)
                || vh.routes.iter().any(|r| {
                    reads(&r.headers)
                        || matches!(&r.action, Action::Route(ra) if matches!(&ra.cluster,
                            ClusterSpecifier::Weighted(w) if w.clusters.iter().any(|c| reads(&c.headers))))
                })
        })
}

fn resolve_routes(
    cfg: &HttpConnectionManager,
    clusters: &ClusterManager,
    filters: &[Arc<dyn crate::http::filter_manager::HttpFilter>],
    env: &crate::http::filter_manager::Env<'_>,
) -> Vec<Vec<RouteTarget>> {
    use crate::http::filter_manager::RouteFilterConfigs;
    use ferry_config::route::{Action, ClusterSpecifier};
    cfg.route_config
        .virtual_hosts
        .iter()
        .map(|vh| {
            vh.routes
                .iter()
                .map(|r| match &r.action {
                    Action::Route(ra) => RouteTarget {
                        filters: RouteFilterConfigs::resolve(filters, &r.per_filter, env),
                        clusters: match &ra.cluster {
                            ClusterSpecifier::Name(n) => vec![clusters.get(n).cloned()],
                            ClusterSpecifier::Weighted(w) => w
                                .clusters
                                .iter()
                                .map(|c| clusters.get(&c.name).cloned())
                                .collect(),
                            ClusterSpecifier::Header(_) => Vec::new(),
                        },
                        expected_timeout: ra.timeout.and_then(|t| {
                            http::HeaderValue::from_str(&t.as_millis().to_string()).ok()
                        }),
                        mirrors: ra
                            .mirrors
                            .iter()
                            .map(|m| match &m.cluster {
                                ferry_config::retry::MirrorCluster::Name(n) => {
                                    clusters.get(n).cloned()
                                }
                                ferry_config::retry::MirrorCluster::Header(_) => None,
                            })
                            .collect(),
                    },
                    _ => RouteTarget {
                        filters: RouteFilterConfigs::resolve(filters, &r.per_filter, env),
                        ..RouteTarget::default()
                    },
                })
                .collect()
        })
        .collect()
}
