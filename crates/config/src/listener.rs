//! Listeners, filter chains and their network filters.

use crate::hcm::HttpConnectionManager;
use crate::util::{duration, listen_addr};
use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
use ferry_envoy_api::pb::envoy::config::listener::v3 as pb;
use ferry_envoy_api::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Envoy's default `per_connection_buffer_limit_bytes`.
pub const DEFAULT_BUFFER_LIMIT: u32 = 1024 * 1024;
/// Envoy's default TCP proxy `idle_timeout`.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// A listener.
#[derive(Debug, Clone)]
pub struct Listener {
    /// `name` (generated when empty, as Envoy does).
    pub name: String,
    /// `address`.
    pub address: SocketAddr,
    /// `address.socket_address.ipv4_compat`: an IPv6 wildcard address also takes IPv4
    /// connections.
    pub ipv4_compat: bool,
    /// `filter_chains`.
    pub filter_chains: Vec<FilterChain>,
    /// `default_filter_chain`.
    pub default_filter_chain: Option<FilterChain>,
    /// `per_connection_buffer_limit_bytes`.
    pub buffer_limit: u32,
    /// `stat_prefix`: the listener's stats scope (`listener.<stat_prefix>.`; empty: its
    /// address).
    pub stat_prefix: String,
}

/// A filter chain.
#[derive(Debug, Clone)]
pub struct FilterChain {
    /// `name`.
    pub name: String,
    /// `filter_chain_match`.
    pub matcher: FilterChainMatch,
    /// The network filters before the terminal one, in order
    /// (`envoy.filters.network.local_ratelimit`).
    pub read_filters: Vec<crate::filters::ReadFilter>,
    /// The terminal network filter.
    pub filter: NetworkFilter,
}

/// `filter_chain_match`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterChainMatch {
    /// `destination_port`.
    pub destination_port: Option<u16>,
    /// `server_names` (lower-cased; `*.x` wildcards allowed).
    pub server_names: Vec<String>,
    /// `transport_protocol` (`raw_buffer` or `tls`; empty = any).
    pub transport_protocol: String,
    /// `application_protocols`.
    pub application_protocols: Vec<String>,
}

/// The network filter that handles a connection.
#[derive(Debug, Clone)]
pub enum NetworkFilter {
    /// `envoy.filters.network.http_connection_manager`.
    Http(Arc<HttpConnectionManager>),
    /// `envoy.filters.network.tcp_proxy`.
    Tcp(Arc<TcpProxy>),
}

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
    pub access_logs: Vec<crate::access_log::AccessLog>,
}

/// Converts a listener; `index` names it when it has no name.
pub fn from_proto(l: &pb::Listener, index: usize, ctx: &mut Ctx) -> Option<Listener> {
    crate::fields!(ctx, l => pb::Listener {
        name, address, stat_prefix, filter_chains, default_filter_chain,
        per_connection_buffer_limit_bytes, traffic_direction, metadata,
    } refused {
        use_original_dst, deprecated_v1, drain_type, listener_filters, transparent, freebind,
        tcp_fast_open_queue_length, socket_options, listener_filters_timeout,
        continue_on_listener_filters_timeout, udp_listener_config, api_listener,
        connection_balance_config, reuse_port, access_log, tcp_backlog_size, bind_to_port,
        enable_reuse_port, enable_mptcp, ignore_global_conn_limit, filter_chain_matcher,
        additional_addresses, max_connections_to_accept_per_socket_event,
        bypass_overload_manager, fcds_config, tcp_keepalive,
        per_connection_buffer_high_watermark_timeout, stats_matcher,
    } refused_oneofs {
        listener_specifier,
    });
    metadata(&l.metadata, ctx);
    // The filter chains are converted (and their errors reported) even when the address
    // is wrong.
    let address = ctx.at("address", |c| listen_addr(&l.address, c));
    let name = if l.name.is_empty() {
        format!("listener_{index}")
    } else {
        l.name.clone()
    };
    let mut filter_chains = Vec::new();
    for (i, fc) in l.filter_chains.iter().enumerate() {
        if let Some(fc) = ctx.at(format!("filter_chains[{i}]"), |c| filter_chain(fc, c)) {
            filter_chains.push(fc);
        }
    }
    let mut default_filter_chain = match &l.default_filter_chain {
        Some(fc) => ctx.at("default_filter_chain", |c| filter_chain(fc, c)),
        None => None,
    };
    // On an OUTBOUND listener, the connection managers' spans are egress spans.
    if l.traffic_direction == 2 {
        for fc in filter_chains
            .iter_mut()
            .chain(default_filter_chain.as_mut())
        {
            if let NetworkFilter::Http(h) = &mut fc.filter {
                if h.tracing.is_some() {
                    let h = Arc::make_mut(h);
                    if let Some(t) = h.tracing.as_mut() {
                        Arc::make_mut(t).egress = true;
                    }
                }
            }
        }
    }
    if l.filter_chains.is_empty() && l.default_filter_chain.is_none() {
        ctx.error_at("filter_chains", "at least one filter chain is required");
    }
    for i in 0..filter_chains.len() {
        for j in 0..i {
            if filter_chains[i].matcher == filter_chains[j].matcher {
                ctx.error_at(
                    &format!("filter_chains[{i}]"),
                    format!("multiple filter chains with the same matching rules are defined (also filter_chains[{j}])"),
                );
            }
        }
    }
    let (address, ipv4_compat) = address?;
    Some(Listener {
        name,
        address,
        ipv4_compat,
        filter_chains,
        default_filter_chain,
        stat_prefix: l.stat_prefix.clone(),
        buffer_limit: l
            .per_connection_buffer_limit_bytes
            .map(|v| v.value)
            .unwrap_or(DEFAULT_BUFFER_LIMIT),
    })
}

fn filter_chain(fc: &pb::FilterChain, ctx: &mut Ctx) -> Option<FilterChain> {
    crate::fields!(ctx, fc => pb::FilterChain {
        filter_chain_match, filters, name, metadata,
    } refused {
        use_proxy_proto, transport_socket_connect_timeout,
    } refused_extensions {
        transport_socket,
    });
    metadata(&fc.metadata, ctx);
    let m = fc.filter_chain_match.clone().unwrap_or_default();
    ctx.at("filter_chain_match", |ctx| {
        crate::fields!(ctx, &m => pb::FilterChainMatch {
            destination_port, server_names, transport_protocol, application_protocols,
        } refused {
            prefix_ranges, address_suffix, suffix_len, source_prefix_ranges, source_ports,
            source_type, direct_source_prefix_ranges,
        });
    });
    let matcher = FilterChainMatch {
        destination_port: match m.destination_port.map(|v| v.value) {
            Some(p) if (1..=65535).contains(&p) => Some(p as u16),
            Some(p) => {
                ctx.error_at(
                    "filter_chain_match.destination_port",
                    format!("{p} is not a port"),
                );
                None
            }
            None => None,
        },
        server_names: m
            .server_names
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        transport_protocol: m.transport_protocol.clone(),
        application_protocols: m.application_protocols.clone(),
    };
    if fc.filters.is_empty() {
        ctx.error_at("filters", "a terminal network filter is required");
        return None;
    }
    // Before the terminal filter: read filters (local rate limits).
    let mut read_filters = Vec::new();
    for (i, f) in fc.filters[..fc.filters.len() - 1].iter().enumerate() {
        ctx.at(format!("filters[{i}]"), |c| {
            crate::fields!(c, f => pb::Filter { name, config_type: ["typed_config"] });
            let Some(pb::filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                c.error_at("typed_config", "is required");
                return;
            };
            let ty = crate::any::type_name(any);
            if matches!(ty, HCM | TCP_PROXY) {
                c.error("a terminal filter must be the last network filter");
            } else if let Some(filter) = crate::filters::read_filter(&f.name, any, c) {
                read_filters.push(filter);
            }
            // Other types are named by the support walk.
        });
    }
    let f = fc.filters.last()?;
    let idx = fc.filters.len() - 1;
    let filter = ctx.at(format!("filters[{idx}]"), |c| network_filter(f, c))?;
    Some(FilterChain {
        name: fc.name.clone(),
        matcher,
        read_filters,
        filter,
    })
}

const HCM: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY: &str = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

fn network_filter(f: &pb::Filter, ctx: &mut Ctx) -> Option<NetworkFilter> {
    crate::fields!(ctx, f => pb::Filter { name, config_type: ["typed_config"] });
    let Some(pb::filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        ctx.error_at("typed_config", "is required");
        return None;
    };
    ctx.at("typed_config", |c| match crate::any::type_name(any) {
        HCM => {
            let h = crate::any::unpack(any, c)?;
            Some(NetworkFilter::Http(Arc::new(crate::hcm::from_proto(
                &h, c,
            )?)))
        }
        TCP_PROXY => {
            let t: tcp::TcpProxy = crate::any::unpack(any, c)?;
            Some(NetworkFilter::Tcp(Arc::new(tcp_proxy(&t, c)?)))
        }
        // Named by the support walk.
        _ => None,
    })
}

fn tcp_proxy(t: &tcp::TcpProxy, ctx: &mut Ctx) -> Option<TcpProxy> {
    use tcp::tcp_proxy::ClusterSpecifier as C;
    crate::fields!(ctx, t => tcp::TcpProxy as "envoy.filters.network.tcp_proxy" {
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
                crate::fields!(ctx, w => tcp::tcp_proxy::WeightedCluster { clusters });
                let mut v = Vec::new();
                for (i, c) in w.clusters.iter().enumerate() {
                    ctx.at(format!("clusters[{i}]"), |ctx| {
                        crate::fields!(ctx, c => tcp::tcp_proxy::weighted_cluster::ClusterWeight {
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
            crate::access_log::from_proto(&t.access_log, c)
        }),
    })
}

/// Declares a `metadata` field's `Metadata` (accepted, not used: ferry has no filter that
/// reads metadata); the one place for every message that holds one.
pub(crate) fn metadata(m: &Option<core::Metadata>, ctx: &mut Ctx) {
    if let Some(m) = m {
        ctx.at("metadata", |ctx| {
            crate::fields!(ctx, m => core::Metadata {
                filter_metadata,
            } refused {
                typed_filter_metadata,
            });
        });
    }
}
