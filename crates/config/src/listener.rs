//! Listeners, filter chains and their network filters.

use crate::hcm::HttpConnectionManager;
use crate::util::listen_addr;
use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::listener::v3 as pb;
use ferry_envoy_api::pb::google::protobuf::Any;
use std::net::SocketAddr;
use std::sync::Arc;

/// Envoy's default `per_connection_buffer_limit_bytes`.
pub const DEFAULT_BUFFER_LIMIT: u32 = 1024 * 1024;
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
    /// `drain_type`: whether its connections also drain while the server is health
    /// check failed (`DEFAULT`), or only when the listener is modified or removed
    /// (`MODIFY_ONLY`).
    pub drain_type: DrainType,
}

/// `Listener.drain_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DrainType {
    /// `DEFAULT`.
    #[default]
    Default,
    /// `MODIFY_ONLY`.
    ModifyOnly,
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
    pub read_filters: Vec<crate::filters::Filter>,
    /// The terminal network filter.
    pub filter: TerminalFilter,
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

/// The network filter that handles a connection (the last of a filter chain).
#[derive(Debug, Clone)]
pub enum TerminalFilter {
    /// `envoy.filters.network.http_connection_manager`.
    Http(Arc<HttpConnectionManager>),
    /// A registered terminal filter (`envoy.filters.network.tcp_proxy`).
    Filter(crate::filters::Filter),
}

/// Converts a listener; `index` names it when it has no name.
pub fn from_proto(l: &pb::Listener, index: usize, ctx: &mut Ctx) -> Option<Listener> {
    crate::fields!(ctx, l => pb::Listener {
        name, address, stat_prefix, filter_chains, default_filter_chain,
        per_connection_buffer_limit_bytes, traffic_direction, metadata, drain_type,
    } refused {
        use_original_dst, deprecated_v1, listener_filters, transparent, freebind,
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
    crate::util::metadata(&l.metadata, ctx);
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
            if let TerminalFilter::Http(h) = &mut fc.filter {
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
        drain_type: match pb::listener::DrainType::try_from(l.drain_type) {
            Ok(pb::listener::DrainType::ModifyOnly) => DrainType::ModifyOnly,
            _ => DrainType::Default,
        },
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
    crate::util::metadata(&fc.metadata, ctx);
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
    // Read filters (local rate limits), then the terminal filter.
    let mut read_filters = Vec::new();
    let mut terminal = None;
    let last = fc.filters.len() - 1;
    for (i, f) in fc.filters.iter().enumerate() {
        ctx.at(format!("filters[{i}]"), |c| {
            crate::fields!(c, f => pb::Filter { name, config_type: ["typed_config"] });
            let Some(pb::filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                c.error_at("typed_config", "is required");
                return;
            };
            let is_terminal = if crate::any::type_name(any) == HCM {
                true
            } else {
                match c.extensions.network_filter(crate::any::type_name(any)) {
                    Some(factory) => factory.terminal(),
                    None => return crate::support::refuse_extension_type(c, &f.name, any),
                }
            };
            match (i == last, is_terminal) {
                (false, true) => c.error("a terminal filter must be the last network filter"),
                (true, false) => c.error("the last network filter must be a terminal filter"),
                (false, false) => {
                    read_filters.extend(crate::filters::network_filter(&f.name, any, c))
                }
                (true, true) => terminal = terminal_filter(&f.name, any, c),
            }
        });
    }
    Some(FilterChain {
        name: fc.name.clone(),
        matcher,
        read_filters,
        filter: terminal?,
    })
}

const HCM: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// The terminal filter: the HTTP connection manager (this crate's model), or a
/// registered filter (`envoy.filters.network.tcp_proxy`).
fn terminal_filter(name: &str, any: &Any, ctx: &mut Ctx) -> Option<TerminalFilter> {
    if crate::any::type_name(any) == HCM {
        return ctx.at("typed_config", |c| {
            let h = crate::any::unpack(any, c)?;
            Some(TerminalFilter::Http(Arc::new(crate::hcm::from_proto(
                &h, c,
            )?)))
        });
    }
    crate::filters::network_filter(name, any, ctx).map(TerminalFilter::Filter)
}
