//! The config of `envoy.filters.network.tcp_proxy`.

use ferry_config::any::unpack;
use ferry_config::util::duration;
use ferry_config::Ctx;
use ferry_envoy_api::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use ferry_envoy_api::pb::google::protobuf::Any;
use std::time::Duration;

/// Envoy's default TCP proxy `idle_timeout`.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// `envoy.filters.network.tcp_proxy`.
#[derive(Debug, Clone)]
pub struct TcpProxy {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// (cluster, weight); one entry for `cluster`.
    pub clusters: Vec<(String, u32)>,
    /// `idle_timeout` (default 1 h; None = disabled).
    pub idle_timeout: Option<Duration>,
    /// `access_log`.
    pub access_logs: Vec<ferry_config::access_log::AccessLog>,
}

/// Converts a `TcpProxy` from its `Any`.
pub fn from_any(any: &Any, ctx: &mut Ctx) -> Option<TcpProxy> {
    let t: tcp::TcpProxy = unpack(any, ctx)?;
    let t = &t;
    use tcp::tcp_proxy::ClusterSpecifier as C;
    ferry_config::fields!(ctx, t => tcp::TcpProxy as "envoy.filters.network.tcp_proxy" {
        stat_prefix, cluster_specifier: ["cluster", "weighted_clusters"], access_log, idle_timeout,
    } refused {
        downstream_idle_timeout, upstream_idle_timeout, max_connect_attempts, metadata_match,
        hash_policy, tunneling_config, max_downstream_connection_duration, on_demand,
        access_log_flush_interval, flush_access_log_on_connected, access_log_options,
        backoff_options, proxy_protocol_tlvs, max_downstream_connection_duration_jitter_percentage,
        upstream_connect_mode, max_early_data_bytes, proxy_protocol_tlv_merge_policy,
        check_drain_close,
    });
    if t.stat_prefix.is_empty() {
        ctx.error_at("stat_prefix", "is required");
    }
    let clusters = match &t.cluster_specifier {
        Some(C::Cluster(c)) => vec![(c.clone(), 1)],
        Some(C::WeightedClusters(w)) => {
            let v: Vec<(String, u32)> = ctx.at("weighted_clusters", |ctx| {
                ferry_config::fields!(ctx, w => tcp::tcp_proxy::WeightedCluster { clusters });
                let mut v = Vec::new();
                for (i, c) in w.clusters.iter().enumerate() {
                    ctx.at(format!("clusters[{i}]"), |ctx| {
                        ferry_config::fields!(ctx, c => tcp::tcp_proxy::weighted_cluster::ClusterWeight {
                            name, weight,
                        } refused {
                            metadata_match,
                        });
                    });
                    v.push((c.name.clone(), c.weight));
                }
                v
            });
            if v.is_empty() || v.iter().map(|(_, w)| *w as u64).sum::<u64>() == 0 {
                ctx.error_at(
                    "weighted_clusters",
                    "at least one cluster with a weight is required",
                );
                return None;
            }
            v
        }
        None => {
            ctx.error("cluster or weighted_clusters is required");
            return None;
        }
    };
    let idle_timeout = match &t.idle_timeout {
        None => Some(DEFAULT_TCP_IDLE_TIMEOUT),
        Some(_) => duration(&t.idle_timeout, "idle_timeout", ctx).filter(|d| !d.is_zero()),
    };
    Some(TcpProxy {
        stat_prefix: t.stat_prefix.clone(),
        clusters,
        idle_timeout,
        access_logs: ctx.at("access_log", |c| {
            ferry_config::access_log::from_proto(&t.access_log, c)
        }),
    })
}
