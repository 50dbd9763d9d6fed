//! Clusters: discovery type, endpoints with localities and priorities, load balancing
//! policy and upstream protocol options.

use crate::util::{duration, host_port, socket_addr, timeout};
use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::cluster::v3 as pb;
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
use ferry_envoy_api::pb::envoy::config::endpoint::v3 as epb;
use ferry_envoy_api::pb::envoy::extensions::network::dns_resolver::cares::v3 as cares;
use ferry_envoy_api::pb::envoy::extensions::upstreams::http::v3 as upstream_http;
use std::time::Duration;

/// Envoy's default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy's default `dns_refresh_rate`.
pub const DEFAULT_DNS_REFRESH_RATE: Duration = Duration::from_secs(5);
/// Envoy's default upstream connection idle timeout (`common_http_protocol_options.idle_timeout`).
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// A cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// `name`.
    pub name: String,
    /// `type` and its DNS settings.
    pub discovery: Discovery,
    /// `connect_timeout` (default 5 s).
    pub connect_timeout: Duration,
    /// `lb_policy` with its config.
    pub lb_policy: LbPolicy,
    /// `common_lb_config`: panic threshold and host warming.
    pub common_lb: CommonLbConfig,
    /// `health_checks` (Envoy supports one).
    pub health_check: Option<crate::health_check::HealthCheck>,
    /// `outlier_detection`.
    pub outlier_detection: Option<crate::outlier::OutlierDetection>,
    /// Endpoints, grouped by locality and priority.
    pub localities: Vec<Locality>,
    /// Upstream HTTP protocol.
    pub protocol: UpstreamProtocol,
    /// Upstream connection idle timeout (default 1 h; None = disabled).
    pub idle_timeout: Option<Duration>,
    /// `max_requests_per_connection` (None = unlimited).
    pub max_requests_per_connection: Option<u32>,
    /// `per_connection_buffer_limit_bytes` (default 1 MiB).
    pub per_connection_buffer_limit_bytes: u32,
    /// `circuit_breakers`.
    pub circuit_breakers: crate::circuit_breaker::CircuitBreakers,
}

/// `common_lb_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommonLbConfig {
    /// `healthy_panic_threshold` in percent (default 50; 0 disables panic mode): below it,
    /// a priority's unhealthy hosts take traffic too.
    pub healthy_panic_threshold: f64,
    /// `zone_aware_lb_config.fail_traffic_on_panic`: no host instead of all hosts in panic.
    pub fail_traffic_on_panic: bool,
    /// `ignore_new_hosts_until_first_hc`: hosts added after warming are excluded until
    /// their first health check.
    pub ignore_new_hosts_until_first_hc: bool,
}

impl Default for CommonLbConfig {
    fn default() -> Self {
        CommonLbConfig {
            healthy_panic_threshold: 50.0,
            fail_traffic_on_panic: false,
            ignore_new_hosts_until_first_hc: false,
        }
    }
}

/// An endpoint's `health_status`, as EDS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointHealth {
    /// `UNKNOWN` or `HEALTHY`.
    #[default]
    Healthy,
    /// `UNHEALTHY` or `TIMEOUT` (Envoy's `/failed_eds_health`).
    Unhealthy,
    /// `DRAINING` (`/eds_status_draining`: unhealthy and excluded).
    Draining,
    /// `DEGRADED` (`/degraded_eds_health`).
    Degraded,
}

/// How a cluster finds its hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// `STATIC`: IP addresses as given.
    Static,
    /// `STRICT_DNS`: every address each name resolves to is a host.
    StrictDns(Dns),
    /// `LOGICAL_DNS`: the first address of the (single) name is the host.
    LogicalDns(Dns),
    /// `EDS`: the hosts come from a control plane, as a `ClusterLoadAssignment` (IP
    /// addresses, as `STATIC`).
    Eds(Eds),
}

/// `eds_cluster_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eds {
    /// `service_name` (default: the cluster's name): the assignment asked for.
    pub service_name: String,
    /// `eds_config`.
    pub source: crate::dynamic::ConfigSource,
}

/// DNS settings of a DNS cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// `dns_refresh_rate` (default 5 s).
    pub refresh_rate: Duration,
    /// `respect_dns_ttl`.
    pub respect_ttl: bool,
    /// `dns_lookup_family`.
    pub family: DnsLookupFamily,
    /// `dns_failure_refresh_rate` as (base, max); None = retry at `refresh_rate`.
    pub failure_refresh_rate: Option<(Duration, Duration)>,
    /// `dns_jitter`: each refresh waits up to this much longer (None = no jitter).
    pub jitter: Option<Duration>,
    /// Which name servers to ask, and how.
    pub resolver: DnsResolver,
}

impl Default for Dns {
    /// Envoy's defaults: refresh every 5 s, `AUTO` family, the system's resolver.
    fn default() -> Self {
        Dns {
            refresh_rate: DEFAULT_DNS_REFRESH_RATE,
            respect_ttl: false,
            family: DnsLookupFamily::Auto,
            failure_refresh_rate: None,
            jitter: None,
            resolver: DnsResolver::default(),
        }
    }
}

/// Envoy's c-ares defaults: 5 s per query attempt, 4 attempts.
pub const DEFAULT_DNS_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy's default number of query attempts.
pub const DEFAULT_DNS_QUERY_TRIES: u32 = 4;

/// The DNS resolver of a cluster: `typed_dns_resolver_config` (c-ares), else
/// `dns_resolution_config`, else the deprecated `dns_resolvers`/`use_tcp_for_dns_lookups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsResolver {
    /// Name servers to ask (empty: the system's, from /etc/resolv.conf).
    pub resolvers: Vec<std::net::SocketAddr>,
    /// `use_resolvers_as_fallback`: use `resolvers` only when the system has none.
    pub use_resolvers_as_fallback: bool,
    /// `dns_resolver_options.use_tcp_for_dns_lookups`.
    pub use_tcp: bool,
    /// `dns_resolver_options.no_default_search_domain`.
    pub no_default_search_domain: bool,
    /// `query_timeout_seconds` (default 5 s).
    pub query_timeout: Duration,
    /// `query_tries` (default 4).
    pub query_tries: u32,
}

impl Default for DnsResolver {
    fn default() -> Self {
        DnsResolver {
            resolvers: Vec::new(),
            use_resolvers_as_fallback: false,
            use_tcp: false,
            no_default_search_domain: false,
            query_timeout: DEFAULT_DNS_QUERY_TIMEOUT,
            query_tries: DEFAULT_DNS_QUERY_TRIES,
        }
    }
}

fn resolver_addresses(
    addrs: &[core::Address],
    field: &str,
    ctx: &mut Ctx,
) -> Vec<std::net::SocketAddr> {
    let mut out = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        ctx.at(format!("{field}[{i}]"), |ctx| {
            if let Some(mut sa) = socket_addr(&Some(a.clone()), ctx) {
                if sa.port() == 0 {
                    sa.set_port(53);
                }
                out.push(sa);
            }
        });
    }
    out
}

fn dns_resolver(c: &pb::Cluster, ctx: &mut Ctx) -> DnsResolver {
    let mut r = DnsResolver::default();
    let options = |r: &mut DnsResolver, o: &Option<core::DnsResolverOptions>, ctx: &mut Ctx| {
        if let Some(o) = o {
            // Nothing is refused: the declaration reports nothing.
            ctx.at("dns_resolver_options", |ctx| {
                crate::fields!(ctx, o => core::DnsResolverOptions {
                    use_tcp_for_dns_lookups, no_default_search_domain,
                });
            });
            r.use_tcp = o.use_tcp_for_dns_lookups;
            r.no_default_search_domain = o.no_default_search_domain;
        }
    };
    if let Some(t) = &c.typed_dns_resolver_config {
        ctx.at("typed_dns_resolver_config", |ctx| {
            crate::util::typed_extension_config_fields(t, ctx);
            let Some(any) = &t.typed_config else {
                return;
            };
            let cares_type = "envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig";
            if crate::support::known_type(ctx, &t.name, any, &[cares_type]).is_none() {
                return;
            }
            let cares: cares::CaresDnsResolverConfig = match ferry_envoy_api::unpack(any) {
                Ok(v) => v,
                Err(e) => {
                    ctx.error_at("typed_config", e.to_string());
                    return;
                }
            };
            ctx.at("typed_config", |ctx| {
                crate::fields!(ctx, &cares => cares::CaresDnsResolverConfig as "envoy.network.dns_resolver.cares" {
                    resolvers, use_resolvers_as_fallback, dns_resolver_options,
                    query_timeout_seconds, query_tries,
                } refused {
                    filter_unroutable_families, udp_max_queries, rotate_nameservers,
                    edns0_max_payload_size, max_udp_channel_duration, reinit_channel_on_timeout,
                    qcache_max_ttl,
                });
                r.resolvers = resolver_addresses(&cares.resolvers, "resolvers", ctx);
                r.use_resolvers_as_fallback = cares.use_resolvers_as_fallback;
                options(&mut r, &cares.dns_resolver_options, ctx);
                if let Some(t) = cares.query_timeout_seconds {
                    if t.value == 0 {
                        ctx.error_at("query_timeout_seconds", "must be at least 1");
                    }
                    r.query_timeout = Duration::from_secs(t.value.max(1));
                }
                if let Some(t) = cares.query_tries {
                    if t.value == 0 {
                        ctx.error_at("query_tries", "must be at least 1");
                    }
                    r.query_tries = t.value.max(1);
                }
            });
        });
    } else if let Some(d) = &c.dns_resolution_config {
        ctx.at("dns_resolution_config", |ctx| {
            crate::fields!(ctx, d => core::DnsResolutionConfig {
                resolvers, dns_resolver_options,
            });
            r.resolvers = resolver_addresses(&d.resolvers, "resolvers", ctx);
            options(&mut r, &d.dns_resolver_options, ctx);
        });
    } else {
        r.resolvers = resolver_addresses(&c.dns_resolvers, "dns_resolvers", ctx);
        r.use_tcp = c.use_tcp_for_dns_lookups;
    }
    r
}

/// `dns_lookup_family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsLookupFamily {
    /// `AUTO`: IPv6 if any, else IPv4.
    Auto,
    /// `V4_ONLY`.
    V4Only,
    /// `V6_ONLY`.
    V6Only,
    /// `V4_PREFERRED`: IPv4 if any, else IPv6.
    V4Preferred,
    /// `ALL`: both.
    All,
}

/// `lb_policy` and its config.
#[derive(Debug, Clone, PartialEq)]
pub enum LbPolicy {
    /// `ROUND_ROBIN` (weighted).
    RoundRobin,
    /// `LEAST_REQUEST`, power of `choice_count` choices (default 2).
    LeastRequest {
        /// `least_request_lb_config.choice_count`.
        choice_count: u32,
    },
    /// `RANDOM`.
    Random,
    /// `RING_HASH`.
    RingHash {
        /// `ring_hash_lb_config.minimum_ring_size` (default 1024).
        minimum_ring_size: u64,
        /// `ring_hash_lb_config.maximum_ring_size` (default 8M).
        maximum_ring_size: u64,
    },
    /// `MAGLEV`.
    Maglev {
        /// `maglev_lb_config.table_size` (default 65537, prime).
        table_size: u64,
    },
}

/// Endpoints of one locality at one priority.
#[derive(Debug, Clone)]
pub struct Locality {
    /// Region/zone/sub_zone, for display.
    pub name: String,
    /// `priority` (0 is highest).
    pub priority: u32,
    /// `load_balancing_weight` of the locality (None = not set).
    pub weight: Option<u32>,
    /// The endpoints.
    pub endpoints: Vec<Endpoint>,
}

/// One endpoint as configured (a DNS name for DNS clusters).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Address or DNS name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `load_balancing_weight` (default 1).
    pub weight: u32,
    /// `hostname` (for auto_host_rewrite), if set.
    pub hostname: Option<String>,
    /// `health_status`.
    pub health: EndpointHealth,
}

/// Which HTTP version the cluster speaks upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (Envoy's default).
    Http1,
    /// HTTP/2 prior knowledge (`http2_protocol_options` or explicit HTTP/2 config).
    Http2,
}

/// Converts a cluster.
pub fn from_proto(c: &pb::Cluster, ctx: &mut Ctx) -> Option<Cluster> {
    crate::util::metadata(&c.metadata, ctx);
    crate::fields!(ctx, c => pb::Cluster {
        name, cluster_discovery_type: ["type"], eds_cluster_config, connect_timeout, lb_policy,
        load_assignment,
        dns_refresh_rate, respect_dns_ttl, dns_lookup_family, dns_failure_refresh_rate,
        dns_jitter, dns_resolvers, use_tcp_for_dns_lookups, dns_resolution_config,
        typed_dns_resolver_config, typed_extension_protocol_options, http2_protocol_options,
        http_protocol_options, common_http_protocol_options, max_requests_per_connection,
        per_connection_buffer_limit_bytes,
        lb_config: ["ring_hash_lb_config", "maglev_lb_config", "least_request_lb_config"],
        metadata, circuit_breakers, health_checks, outlier_detection, common_lb_config,
    } refused {
        cleanup_interval, upstream_bind_config, lb_subset_config,
        protocol_selection, alt_stat_name, upstream_connection_options,
        close_connections_on_host_health_failure, ignore_health_on_host_removal, filters,
        load_balancing_policy, lrs_server, transport_socket_matches,
        upstream_http_protocol_options, track_timeout_budgets, track_cluster_stats,
        preconnect_policy, connection_pool_per_downstream_connection, wait_for_warm_on_init,
        lrs_report_endpoint_metrics, transport_socket_matcher,
        per_connection_buffer_high_watermark_timeout, stats_matcher, queuing_policies,
    } refused_extensions {
        transport_socket, upstream_config,
    });
    if c.name.is_empty() {
        ctx.error_at("name", "is required");
    }
    let dns = |ctx: &mut Ctx| Dns {
        refresh_rate: duration(&c.dns_refresh_rate, "dns_refresh_rate", ctx)
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_DNS_REFRESH_RATE),
        respect_ttl: c.respect_dns_ttl,
        failure_refresh_rate: c.dns_failure_refresh_rate.as_ref().and_then(|f| {
            ctx.at("dns_failure_refresh_rate", |ctx| {
                crate::fields!(ctx, f => pb::cluster::RefreshRate {
                    base_interval, max_interval,
                });
                let Some(base) = duration(&f.base_interval, "base_interval", ctx) else {
                    ctx.error_at("base_interval", "is required");
                    return None;
                };
                if base <= Duration::from_millis(1) {
                    ctx.error_at("base_interval", "must be greater than 1ms");
                    return None;
                }
                let max = duration(&f.max_interval, "max_interval", ctx).unwrap_or(base * 10);
                if max < base {
                    ctx.error_at("max_interval", "must not be less than base_interval");
                    return None;
                }
                Some((base, max))
            })
        }),
        jitter: duration(&c.dns_jitter, "dns_jitter", ctx).filter(|d| !d.is_zero()),
        resolver: dns_resolver(c, ctx),
        family: match c.dns_lookup_family {
            0 => DnsLookupFamily::Auto,
            1 => DnsLookupFamily::V4Only,
            2 => DnsLookupFamily::V6Only,
            3 => DnsLookupFamily::V4Preferred,
            4 => DnsLookupFamily::All,
            other => {
                ctx.error_at("dns_lookup_family", format!("unknown value {other}"));
                DnsLookupFamily::Auto
            }
        },
    };
    // An unsupported discovery type is reported here and the rest still converted (for
    // its errors); the cluster is dropped at the end.
    let discovery = match &c.cluster_discovery_type {
        None | Some(pb::cluster::ClusterDiscoveryType::Type(0)) => Some(Discovery::Static),
        Some(pb::cluster::ClusterDiscoveryType::Type(1)) => Some(Discovery::StrictDns(dns(ctx))),
        Some(pb::cluster::ClusterDiscoveryType::Type(2)) => Some(Discovery::LogicalDns(dns(ctx))),
        Some(pb::cluster::ClusterDiscoveryType::Type(3)) => eds(c, ctx).map(Discovery::Eds),
        Some(pb::cluster::ClusterDiscoveryType::Type(t)) => {
            let name = pb::cluster::DiscoveryType::try_from(*t)
                .map(|d| d.as_str_name().to_string())
                .unwrap_or_else(|_| t.to_string());
            ctx.error_at("type", format!("{name} is not supported"));
            None
        }
        // Refused by fields! above.
        Some(pb::cluster::ClusterDiscoveryType::ClusterType(_)) => None,
    };
    let lb_config = c.lb_config.as_ref().and_then(|l| lb_policy_config(l, ctx));
    let lb_policy = match c.lb_policy {
        0 => LbPolicy::RoundRobin,
        1 => match lb_config.clone() {
            Some(p @ LbPolicy::LeastRequest { .. }) => p,
            _ => LbPolicy::LeastRequest { choice_count: 2 },
        },
        2 => match lb_config.clone() {
            Some(p @ LbPolicy::RingHash { .. }) => p,
            _ => LbPolicy::RingHash {
                minimum_ring_size: 1024,
                maximum_ring_size: 8 * 1024 * 1024,
            },
        },
        3 => LbPolicy::Random,
        5 => match lb_config.clone() {
            Some(p @ LbPolicy::Maglev { .. }) => p,
            _ => LbPolicy::Maglev { table_size: 65537 },
        },
        other => {
            let name = pb::cluster::LbPolicy::try_from(other)
                .map(|d| d.as_str_name().to_string())
                .unwrap_or_else(|_| other.to_string());
            ctx.error_at("lb_policy", format!("{name} is not supported"));
            LbPolicy::RoundRobin
        }
    };
    if let Some(cfg) = &lb_config {
        if std::mem::discriminant(cfg) != std::mem::discriminant(&lb_policy) {
            ctx.error("the lb config does not match lb_policy");
        }
    }

    let localities = c
        .load_assignment
        .as_ref()
        .map(|la| {
            ctx.at("load_assignment", |ctx| {
                load_assignment(la, discovery.as_ref(), ctx)
            })
        })
        .unwrap_or_default();
    if let Some(Discovery::LogicalDns(_)) = discovery {
        let n: usize = localities.iter().map(|l| l.endpoints.len()).sum();
        if n != 1 {
            ctx.error_at("load_assignment", "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint");
        }
    }

    // Protocol options: the typed extension (v3) or the legacy cluster fields.
    let mut protocol = UpstreamProtocol::Http1;
    let mut common: Option<core::HttpProtocolOptions> = c.common_http_protocol_options;
    crate::util::upstream_protocol_options_fields(
        c.common_http_protocol_options.as_ref(),
        c.http_protocol_options.as_ref(),
        c.http2_protocol_options.as_ref(),
        ctx,
    );
    if c.http2_protocol_options.is_some() {
        protocol = UpstreamProtocol::Http2;
    }
    for (key, any) in &c.typed_extension_protocol_options {
        ctx.at(format!("typed_extension_protocol_options[{key}]"), |ctx| {
            let known = ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
            if crate::support::known_type(ctx, key, any, &known).is_none() {
                return;
            }
            let opts: upstream_http::HttpProtocolOptions = match ferry_envoy_api::unpack(any) {
                Ok(o) => o,
                Err(e) => {
                    ctx.error(e.to_string());
                    return;
                }
            };
            if let Some(p) = upstream_http_protocol(&opts, ctx) {
                protocol = p;
            }
            if opts.common_http_protocol_options.is_some() {
                common = opts.common_http_protocol_options;
            }
        });
    }
    let mut idle_timeout = Some(DEFAULT_UPSTREAM_IDLE_TIMEOUT);
    let mut max_requests_per_connection = c
        .max_requests_per_connection
        .map(|v| v.value)
        .filter(|v| *v > 0);
    if let Some(common) = &common {
        idle_timeout = timeout(
            &common.idle_timeout,
            idle_timeout,
            "common_http_protocol_options.idle_timeout",
            ctx,
        );
        if let Some(m) = common.max_requests_per_connection {
            max_requests_per_connection = Some(m.value).filter(|v| *v > 0);
        }
    }
    let common_lb = common_lb_config(c, ctx);
    let health_check = crate::health_check::from_proto(&c.health_checks, ctx);
    let outlier_detection = c
        .outlier_detection
        .as_ref()
        .map(|o| ctx.at("outlier_detection", |c| crate::outlier::from_proto(o, c)));
    let connect_timeout =
        duration(&c.connect_timeout, "connect_timeout", ctx).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let circuit_breakers = c
        .circuit_breakers
        .as_ref()
        .map(|cb| {
            ctx.at("circuit_breakers", |c| {
                crate::circuit_breaker::from_proto(cb, c)
            })
        })
        .unwrap_or_default();
    Some(Cluster {
        name: c.name.clone(),
        discovery: discovery?,
        connect_timeout,
        lb_policy,
        common_lb,
        health_check,
        outlier_detection,
        localities,
        protocol,
        idle_timeout,
        max_requests_per_connection,
        per_connection_buffer_limit_bytes: c
            .per_connection_buffer_limit_bytes
            .map(|v| v.value)
            .unwrap_or(1024 * 1024),
        circuit_breakers,
    })
}

/// Declares a `Locality` (`ctx` at it): a node's or a group of endpoints' region, zone
/// and sub-zone (all accepted: nothing is reported).
pub(crate) fn locality_fields(l: &core::Locality, ctx: &mut Ctx) {
    crate::fields!(ctx, l => core::Locality {
        region, zone, sub_zone,
    });
}

/// The policy a cluster's `lb_config` configures, whatever its `lb_policy` (a mismatch
/// is reported by the caller).
fn lb_policy_config(l: &pb::cluster::LbConfig, ctx: &mut Ctx) -> Option<LbPolicy> {
    use pb::cluster::LbConfig;
    match l {
        LbConfig::LeastRequestLbConfig(l) => ctx.at("least_request_lb_config", |ctx| {
            crate::fields!(ctx, l => pb::cluster::LeastRequestLbConfig {
                choice_count,
            } refused {
                active_request_bias, slow_start_config,
            });
            let n = l.choice_count.map(|v| v.value).unwrap_or(2);
            if n < 2 {
                ctx.error_at("choice_count", "must be at least 2");
            }
            Some(LbPolicy::LeastRequest {
                choice_count: n.max(2),
            })
        }),
        LbConfig::RingHashLbConfig(r) => ctx.at("ring_hash_lb_config", |ctx| {
            crate::fields!(ctx, r => pb::cluster::RingHashLbConfig {
                minimum_ring_size, maximum_ring_size, hash_function,
            });
            if r.hash_function != 0 {
                ctx.error_at("hash_function", "only XX_HASH is supported");
            }
            let min = r.minimum_ring_size.map(|v| v.value).unwrap_or(1024);
            let max = r
                .maximum_ring_size
                .map(|v| v.value)
                .unwrap_or(8 * 1024 * 1024);
            if min > max {
                ctx.error("minimum_ring_size must not exceed maximum_ring_size");
            }
            Some(LbPolicy::RingHash {
                minimum_ring_size: min,
                maximum_ring_size: max,
            })
        }),
        LbConfig::MaglevLbConfig(m) => ctx.at("maglev_lb_config", |ctx| {
            crate::fields!(ctx, m => pb::cluster::MaglevLbConfig {
                table_size,
            });
            let n = m.table_size.map(|v| v.value).unwrap_or(65537);
            if !is_prime(n) {
                ctx.error_at("table_size", format!("{n} is not a prime number"));
            }
            Some(LbPolicy::Maglev { table_size: n })
        }),
        // Refused by fields! in from_proto.
        LbConfig::OriginalDstLbConfig(_) | LbConfig::RoundRobinLbConfig(_) => None,
    }
}

/// One `lb_endpoints` entry (`ctx` at it).
/// An EDS cluster's `eds_cluster_config`.
fn eds(c: &pb::Cluster, ctx: &mut Ctx) -> Option<Eds> {
    let Some(e) = &c.eds_cluster_config else {
        ctx.error_at("eds_cluster_config", "is required for an EDS cluster");
        return None;
    };
    ctx.at("eds_cluster_config", |ctx| {
        crate::fields!(ctx, e => pb::cluster::EdsClusterConfig { eds_config, service_name });
        let Some(source) = &e.eds_config else {
            ctx.error_at("eds_config", "is required");
            return None;
        };
        let source = ctx.at("eds_config", |ctx| {
            crate::dynamic::config_source(source, ctx)
        })?;
        Some(Eds {
            service_name: if e.service_name.is_empty() {
                c.name.clone()
            } else {
                e.service_name.clone()
            },
            source,
        })
    })
}

/// A `ClusterLoadAssignment` (a cluster's `load_assignment`, or an EDS resource) as
/// its localities; `discovery` decides whether endpoints must be IP addresses.
pub fn load_assignment(
    la: &epb::ClusterLoadAssignment,
    discovery: Option<&Discovery>,
    ctx: &mut Ctx,
) -> Vec<Locality> {
    let mut localities = Vec::new();
    crate::fields!(ctx, la => epb::ClusterLoadAssignment {
        cluster_name, endpoints,
    } refused {
        policy, named_endpoints,
    });
    for (i, l) in la.endpoints.iter().enumerate() {
        ctx.at(format!("endpoints[{i}]"), |ctx| {
            crate::fields!(ctx, l => epb::LocalityLbEndpoints {
                locality, lb_endpoints, load_balancing_weight, priority,
            } refused {
                proximity, metadata,
            } refused_oneofs {
                lb_config,
            });
            let mut endpoints = Vec::new();
            for (j, e) in l.lb_endpoints.iter().enumerate() {
                ctx.at(format!("lb_endpoints[{j}]"), |ctx| {
                    if let Some(ep) = lb_endpoint(e, discovery, ctx) {
                        endpoints.push(ep);
                    }
                });
            }
            let name = l
                .locality
                .as_ref()
                .map(|loc| {
                    ctx.at("locality", |ctx| locality_fields(loc, ctx));
                    format!("{}/{}/{}", loc.region, loc.zone, loc.sub_zone)
                })
                .unwrap_or_default();
            localities.push(Locality {
                name,
                priority: l.priority,
                weight: l.load_balancing_weight.map(|w| w.value),
                endpoints,
            });
        });
    }
    localities
}

fn lb_endpoint(
    e: &epb::LbEndpoint,
    discovery: Option<&Discovery>,
    ctx: &mut Ctx,
) -> Option<Endpoint> {
    use epb::lb_endpoint::HostIdentifier;
    crate::fields!(ctx, e => epb::LbEndpoint {
        host_identifier: ["endpoint"], load_balancing_weight, health_status, metadata,
    });
    crate::util::metadata(&e.metadata, ctx);
    let ep = match &e.host_identifier {
        Some(HostIdentifier::Endpoint(ep)) => ep,
        // Refused by fields! above.
        Some(HostIdentifier::EndpointName(_)) => return None,
        None => {
            ctx.error_at("endpoint", "is required");
            return None;
        }
    };
    let (host, port) = ctx.at("endpoint", |ctx| {
        crate::fields!(ctx, ep => epb::Endpoint {
            address, hostname,
        } refused {
            health_check_config, additional_addresses, observability_name,
        });
        ctx.at("address", |c| host_port(&ep.address, c))
    })?;
    let weight = e.load_balancing_weight.map(|w| w.value).unwrap_or(1);
    if weight == 0 {
        ctx.error_at("load_balancing_weight", "must be at least 1");
    }
    if matches!(discovery, Some(Discovery::Static | Discovery::Eds(_)))
        && host.parse::<std::net::IpAddr>().is_err()
    {
        ctx.error_at(
            "endpoint.address.socket_address.address",
            format!("{host:?} is not an IP address (a STATIC cluster does not resolve names)"),
        );
        return None;
    }
    let health = match e.health_status {
        2 | 4 => EndpointHealth::Unhealthy,
        3 => EndpointHealth::Draining,
        5 => EndpointHealth::Degraded,
        _ => EndpointHealth::Healthy,
    };
    Some(Endpoint {
        host,
        port,
        weight: weight.max(1),
        hostname: (!ep.hostname.is_empty()).then(|| ep.hostname.clone()),
        health,
    })
}

/// The protocol an `envoy.extensions.upstreams.http.v3.HttpProtocolOptions` sets, if
/// any (`ctx` at it).
fn upstream_http_protocol(
    opts: &upstream_http::HttpProtocolOptions,
    ctx: &mut Ctx,
) -> Option<UpstreamProtocol> {
    use upstream_http::http_protocol_options::explicit_http_config::ProtocolConfig;
    use upstream_http::http_protocol_options::UpstreamProtocolOptions;
    crate::fields!(ctx, opts => upstream_http::HttpProtocolOptions as "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" {
        upstream_protocol_options: ["explicit_http_config"], common_http_protocol_options,
    } refused {
        upstream_http_protocol_options, http_filters, outlier_detection, request_mirror_policies,
        hash_policy, retry_policy,
    } refused_extensions {
        header_validation_config,
    });
    let common = opts.common_http_protocol_options.as_ref();
    crate::util::upstream_protocol_options_fields(common, None, None, ctx);
    let Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) = &opts.upstream_protocol_options
    else {
        // Unset, or refused by fields! above.
        return None;
    };
    ctx.at("explicit_http_config", |ctx| {
        crate::fields!(ctx, e => upstream_http::http_protocol_options::ExplicitHttpConfig {
            protocol_config: ["http_protocol_options", "http2_protocol_options"],
        });
        match &e.protocol_config {
            Some(ProtocolConfig::Http2ProtocolOptions(o)) => {
                crate::util::upstream_protocol_options_fields(None, None, Some(o), ctx);
                Some(UpstreamProtocol::Http2)
            }
            Some(ProtocolConfig::HttpProtocolOptions(o)) => {
                crate::util::upstream_protocol_options_fields(None, Some(o), None, ctx);
                Some(UpstreamProtocol::Http1)
            }
            // Refused by fields! above.
            Some(ProtocolConfig::Http3ProtocolOptions(_)) => None,
            None => {
                ctx.error("only http_protocol_options and http2_protocol_options are supported");
                None
            }
        }
    })
}

fn common_lb_config(c: &pb::Cluster, ctx: &mut Ctx) -> CommonLbConfig {
    let mut out = CommonLbConfig::default();
    let Some(l) = &c.common_lb_config else {
        return out;
    };
    ctx.at("common_lb_config", |ctx| {
        crate::fraction::percent_fields(&l.healthy_panic_threshold, "healthy_panic_threshold", ctx);
        crate::fields!(ctx, l => pb::cluster::CommonLbConfig {
            healthy_panic_threshold, ignore_new_hosts_until_first_hc,
            locality_config_specifier: ["zone_aware_lb_config"],
        } refused {
            update_merge_window, close_connections_on_host_set_change,
            consistent_hashing_lb_config, override_host_status,
        });
        if let Some(p) = &l.healthy_panic_threshold {
            if !(0.0..=100.0).contains(&p.value) {
                ctx.error_at(
                    "healthy_panic_threshold.value",
                    format!("{} is not a percentage", p.value),
                );
            }
            out.healthy_panic_threshold = p.value.clamp(0.0, 100.0);
        }
        out.ignore_new_hosts_until_first_hc = l.ignore_new_hosts_until_first_hc;
        use pb::cluster::common_lb_config::LocalityConfigSpecifier;
        if let Some(LocalityConfigSpecifier::ZoneAwareLbConfig(z)) = &l.locality_config_specifier {
            ctx.at("zone_aware_lb_config", |ctx| {
                crate::fields!(ctx, z => pb::cluster::common_lb_config::ZoneAwareLbConfig {
                    fail_traffic_on_panic,
                } refused {
                    routing_enabled, min_cluster_size,
                });
            });
            out.fail_traffic_on_panic = z.fail_traffic_on_panic;
        }
    });
    out
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut i = 2;
    while i * i <= n {
        if n.is_multiple_of(i) {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::bootstrap::load;
    use ferry_envoy_api::Format;

    fn cluster(extra: &str) -> String {
        format!(
            r#"
static_resources:
  clusters:
  - name: svc
    type: STRICT_DNS
{extra}
    load_assignment:
      cluster_name: svc
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: svc.test, port_value: 80}}}}}}
"#
        )
    }

    fn dns_of(extra: &str) -> Dns {
        let loaded = load(&cluster(extra), Format::Yaml).unwrap_or_else(|e| panic!("{e}"));
        match &loaded.bootstrap.clusters[0].discovery {
            Discovery::StrictDns(d) => d.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dns_resolver_sources_in_envoys_order() {
        assert_eq!(dns_of(""), Dns::default());
        let d = dns_of(
            r#"    respect_dns_ttl: true
    dns_jitter: 1s
    dns_failure_refresh_rate: {base_interval: 2s}
    dns_resolvers: [{socket_address: {address: 127.0.0.1, port_value: 5353}}]
    use_tcp_for_dns_lookups: true"#,
        );
        assert!(d.respect_ttl);
        assert_eq!(d.jitter, Some(Duration::from_secs(1)));
        assert_eq!(
            d.failure_refresh_rate,
            Some((Duration::from_secs(2), Duration::from_secs(20)))
        );
        assert_eq!(
            d.resolver.resolvers,
            vec!["127.0.0.1:5353".parse().unwrap()]
        );
        assert!(d.resolver.use_tcp);
        // dns_resolution_config wins over dns_resolvers; port 0 means 53.
        let d = dns_of(
            r#"    dns_resolvers: [{socket_address: {address: 127.0.0.1, port_value: 5353}}]
    dns_resolution_config:
      resolvers: [{socket_address: {address: "::1"}}]
      dns_resolver_options: {no_default_search_domain: true}"#,
        );
        assert_eq!(d.resolver.resolvers, vec!["[::1]:53".parse().unwrap()]);
        assert!(d.resolver.no_default_search_domain && !d.resolver.use_tcp);
        // typed_dns_resolver_config wins over both.
        let d = dns_of(
            r#"    dns_resolution_config: {resolvers: [{socket_address: {address: "::1"}}]}
    typed_dns_resolver_config:
      name: envoy.network.dns_resolver.cares
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
        resolvers: [{socket_address: {address: 127.0.0.2, port_value: 53}}]
        use_resolvers_as_fallback: true
        query_timeout_seconds: 2
        query_tries: 1"#,
        );
        assert_eq!(d.resolver.resolvers, vec!["127.0.0.2:53".parse().unwrap()]);
        assert!(d.resolver.use_resolvers_as_fallback);
        assert_eq!(d.resolver.query_timeout, Duration::from_secs(2));
        assert_eq!(d.resolver.query_tries, 1);
    }

    /// The converter refuses what it does not accept, once, at the field's path (the
    /// cluster's own fields and those of the messages it reads).
    #[test]
    fn refused_fields_are_named_once_by_path() {
        let yaml = r#"
static_resources:
  clusters:
  - name: svc
    cluster_type: {name: envoy.clusters.aggregate}
    alt_stat_name: x
    round_robin_lb_config: {}
    http2_protocol_options: {hpack_table_size: 1}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http3_protocol_options: {}}
    circuit_breakers: {per_host_thresholds: [{}], thresholds: [{retry_budget: {budget_interval: 1s}}]}
    load_assignment:
      cluster_name: svc
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 80}}, health_check_config: {port_value: 1}}
        - endpoint_name: other
"#;
        let errors = match load(yaml, Format::Yaml) {
            Ok(_) => panic!("must be refused"),
            Err(e) => e.to_string(),
        };
        let mut errors: Vec<&str> = errors.lines().collect();
        errors.sort();
        let p = "static_resources.clusters[0]";
        let t = "typed_extension_protocol_options[envoy.extensions.upstreams.http.v3.HttpProtocolOptions]";
        let mut want = vec![
            format!("{p}.alt_stat_name: field is not supported"),
            format!("{p}.circuit_breakers.per_host_thresholds: field is not supported"),
            format!("{p}.circuit_breakers.thresholds[0].retry_budget.budget_interval: field is not supported"),
            format!("{p}.cluster_type: field is not supported"),
            format!("{p}.http2_protocol_options.hpack_table_size: field is not supported"),
            format!("{p}.load_assignment.endpoints[0].lb_endpoints[0].endpoint.health_check_config: field is not supported"),
            format!("{p}.load_assignment.endpoints[0].lb_endpoints[1].endpoint_name: field is not supported"),
            format!("{p}.round_robin_lb_config: field is not supported"),
            format!("{p}.{t}.explicit_http_config.http3_protocol_options: field is not supported"),
        ];
        want.sort();
        assert_eq!(errors, want);
    }

    /// Limits ferry applies on connection managers only are refused on a cluster, in
    /// its own options and in its upstream protocol options.
    #[test]
    fn downstream_only_protocol_limits_are_refused_on_a_cluster() {
        let yaml = cluster(
            r#"    common_http_protocol_options: {max_connection_duration: 5s, max_headers_count: 50}
    http2_protocol_options: {max_concurrent_streams: 10}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {initial_stream_window_size: 65536}}"#,
        );
        let errors = load(&yaml, Format::Yaml).unwrap_err().to_string();
        let mut errors: Vec<&str> = errors.lines().collect();
        errors.sort();
        let p = "static_resources.clusters[0]";
        let t = "typed_extension_protocol_options[envoy.extensions.upstreams.http.v3.HttpProtocolOptions]";
        let why = "is not supported on a cluster (only on a connection manager)";
        assert_eq!(
            errors,
            [
                format!("{p}.common_http_protocol_options.max_connection_duration: {why}"),
                format!("{p}.common_http_protocol_options.max_headers_count: {why}"),
                format!("{p}.http2_protocol_options.max_concurrent_streams: {why}"),
                format!("{p}.{t}.explicit_http_config.http2_protocol_options.initial_stream_window_size: {why}"),
            ]
        );
    }

    #[test]
    fn bad_dns_settings_are_named_by_path() {
        let errors = match load(
            &cluster(
                r#"    dns_failure_refresh_rate: {base_interval: 5s, max_interval: 1s}
    dns_resolvers: [{socket_address: {address: dns.example, port_value: 53}}]
    typed_dns_resolver_config:
      name: envoy.network.dns_resolver.cares
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
        resolvers: [{socket_address: {address: not-an-ip, port_value: 53}}]
        query_tries: 0"#,
            ),
            Format::Yaml,
        ) {
            Ok(_) => panic!("must be refused"),
            Err(e) => e,
        }
        .to_string();
        let p = "static_resources.clusters[0]";
        for want in [
            format!("{p}.dns_failure_refresh_rate.max_interval: must not be less than base_interval"),
            format!("{p}.typed_dns_resolver_config.typed_config.resolvers[0].socket_address.address: \"not-an-ip\" is not an IP address"),
            format!("{p}.typed_dns_resolver_config.typed_config.query_tries: must be at least 1"),
        ] {
            assert!(errors.contains(&want), "{want}\nnot in:\n{errors}");
        }
    }
}
