//! A connection manager's route configuration as requests use it: the validated
//! configuration, and what each route resolves to — its clusters' slots (which follow
//! cluster replacements), its per-filter configs, its expected-timeout header —
//! resolved once, so that no request looks anything up by name. A table is replaced
//! whole when its route configuration is (RDS); streams keep the table they started
//! with.

use crate::http::filter_manager::{Env, HttpFilter, RouteFilterConfigs};
use ferry_config::route::{Action, ClusterSpecifier, RouteConfig};
use ferry_upstream::{ClusterManager, ClusterSlot};
use std::sync::Arc;

/// A route configuration with its routes resolved.
#[derive(Debug)]
pub struct RouteTable {
    /// The validated route configuration.
    pub config: Arc<RouteConfig>,
    /// Per virtual host, per route: what the route resolves to.
    pub targets: Vec<Vec<RouteTarget>>,
    /// Whether a header value template of the configuration renders `%REQ(...)%`.
    pub reads_request_headers: bool,
}

impl RouteTable {
    /// Resolves `config` against the clusters and the connection manager's filters.
    pub fn build(
        config: Arc<RouteConfig>,
        clusters: &ClusterManager,
        filters: &[Arc<dyn HttpFilter>],
        env: &Env<'_>,
    ) -> RouteTable {
        RouteTable {
            targets: resolve_routes(&config, clusters, filters, env),
            reads_request_headers: templates_read_request_headers(&config),
            config,
        }
    }

    /// What route `route` of virtual host `vh` resolves to.
    pub fn target(&self, vh: usize, route: usize) -> Option<&RouteTarget> {
        self.targets.get(vh).and_then(|r| r.get(route))
    }
}

/// A route's upstream side, resolved against the cluster manager once: each cluster
/// named by its slot, which follows the cluster's replacements (and is empty while the
/// cluster does not exist).
#[derive(Debug, Default)]
pub struct RouteTarget {
    /// `cluster`: one entry; `weighted_clusters`: one per entry, in order;
    /// `cluster_header`: empty (looked up per request).
    pub clusters: Vec<Arc<ClusterSlot>>,
    /// `x-envoy-expected-rq-timeout-ms` for the route timeout.
    pub expected_timeout: Option<http::HeaderValue>,
    /// What the route says of each HTTP filter (`typed_per_filter_config`), by filter
    /// index, with the per-route configs' state.
    pub filters: crate::http::filter_manager::RouteFilterConfigs,
    /// `request_mirror_policies` clusters, in order (None: named per request by
    /// `cluster_header`).
    pub mirrors: Vec<Option<Arc<ClusterSlot>>>,
}

/// Whether any header mutation of the route configuration renders `%REQ(...)%`.
fn templates_read_request_headers(rc: &RouteConfig) -> bool {
    use ferry_config::format::{Operator, Piece};
    use ferry_config::HeaderMutations;
    let reads = |m: &HeaderMutations| {
        m.request_add.iter().chain(m.response_add.iter()).any(|h| {
            h.value
                .pieces
                .iter()
                .any(|p| matches!(p, Piece::Op(Operator::Req(..), _)))
        })
    };
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
    rc: &RouteConfig,
    clusters: &ClusterManager,
    filters: &[Arc<dyn HttpFilter>],
    env: &Env<'_>,
) -> Vec<Vec<RouteTarget>> {
    rc.virtual_hosts
        .iter()
        .map(|vh| {
            vh.routes
                .iter()
                .map(|r| match &r.action {
                    Action::Route(ra) => RouteTarget {
                        filters: RouteFilterConfigs::resolve(filters, &r.per_filter, env),
                        clusters: match &ra.cluster {
                            ClusterSpecifier::Name(n) => vec![clusters.slot(n)],
                            ClusterSpecifier::Weighted(w) => {
                                w.clusters.iter().map(|c| clusters.slot(&c.name)).collect()
                            }
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
                                    Some(clusters.slot(n))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::http::conn_manager::HcmRuntime;
    use crate::testing::{cluster, hcm_bootstrap, hcm_of};
    use crate::Snapshot;
    use std::sync::Arc;

    /// A bootstrap with clusters `a` and `b` and a route `/` to `cluster`.
    fn bootstrap(to: &str) -> ferry_config::Bootstrap {
        let clusters = format!("[{}, {}]", cluster("a", 2), cluster("b", 3));
        hcm_bootstrap("l", 1, &format!("route: {{cluster: {to}}}"), &clusters)
    }

    /// The cluster the first route resolves to now.
    fn routed(hcm: &HcmRuntime) -> Arc<ferry_upstream::Cluster> {
        let table = hcm.routes.load();
        table.target(0, 0).unwrap().clusters[0].get().unwrap()
    }

    #[tokio::test]
    async fn a_route_configuration_and_a_cluster_are_each_replaced_alone() {
        let b = bootstrap("a");
        let stats = Arc::new(ferry_stats::Store::default());
        let clusters = ferry_upstream::ClusterManager::new(&b.clusters, &stats);
        let snapshot = Snapshot {
            bootstrap: Arc::new(b.clone()),
            clusters: clusters.clone(),
            config_json: Arc::from("{}"),
            local_address: None,
            stats: stats.clone(),
            health_failed: Default::default(),
            log_files: Default::default(),
            route_configs: Default::default(),
            drain_time: std::time::Duration::from_secs(600),
        };
        let hcm = HcmRuntime::new(
            hcm_of(&b),
            &snapshot,
            "listener.test.",
            ferry_config::listener::DrainType::Default,
        );
        let (a, cluster_b) = (clusters.get("a").unwrap(), clusters.get("b").unwrap());
        assert!(Arc::ptr_eq(&routed(&hcm), &a));
        // RDS: a new route configuration; the clusters are not touched, and a stream
        // that loaded the old table keeps it.
        let old = hcm.routes.load_full();
        let new_routes = hcm_of(&bootstrap("b")).route_config.clone();
        hcm.replace_route_config(new_routes);
        assert!(Arc::ptr_eq(&routed(&hcm), &cluster_b));
        assert!(Arc::ptr_eq(&clusters.get("a").unwrap(), &a));
        let kept = old.target(0, 0).unwrap().clusters[0].get().unwrap();
        assert!(Arc::ptr_eq(&kept, &a));
        // CDS: cluster b replaced; the route table follows it without being rebuilt.
        let table = hcm.routes.load_full();
        let mut changed = b.clusters[1].clone();
        changed.connect_timeout = std::time::Duration::from_secs(9);
        let replaced = clusters.add_or_update(&changed, &stats);
        assert!(Arc::ptr_eq(&hcm.routes.load_full(), &table));
        assert!(Arc::ptr_eq(&routed(&hcm), &replaced));
        assert!(Arc::ptr_eq(&replaced.hosts()[0], &cluster_b.hosts()[0]));
        assert!(Arc::ptr_eq(&clusters.get("a").unwrap(), &a));
    }
}
