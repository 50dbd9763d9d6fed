//! Clusters: discovery type, endpoints with localities and priorities, load balancing
//! policy and upstream protocol options.

use crate::util::{duration, host_port, socket_addr, timeout};
use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::cluster::v3 as pb;
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
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
    let options = |r: &mut DnsResolver, o: &Option<core::DnsResolverOptions>| {
        if let Some(o) = o {
            r.use_tcp = o.use_tcp_for_dns_lookups;
            r.no_default_search_domain = o.no_default_search_domain;
        }
    };
    if let Some(t) = &c.typed_dns_resolver_config {
        ctx.at("typed_dns_resolver_config", |ctx| {
            if t.name != "envoy.network.dns_resolver.cares" {
                return; // named by the support walk
            }
            let Some(any) = &t.typed_config else {
                return;
            };
            let cares: cares::CaresDnsResolverConfig = match ferry_envoy_api::unpack(any) {
                Ok(v) => v,
                Err(e) => {
                    ctx.error_at("typed_config", e.to_string());
                    return;
                }
            };
            ctx.at("typed_config", |ctx| {
                r.resolvers = resolver_addresses(&cares.resolvers, "resolvers", ctx);
                r.use_resolvers_as_fallback = cares.use_resolvers_as_fallback;
                options(&mut r, &cares.dns_resolver_options);
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
            r.resolvers = resolver_addresses(&d.resolvers, "resolvers", ctx);
            options(&mut r, &d.dns_resolver_options);
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
    crate::listener::metadata(&c.metadata, ctx);
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
    let discovery = match &c.cluster_discovery_type {
        None | Some(pb::cluster::ClusterDiscoveryType::Type(0)) => Discovery::Static,
        Some(pb::cluster::ClusterDiscoveryType::Type(1)) => Discovery::StrictDns(dns(ctx)),
        Some(pb::cluster::ClusterDiscoveryType::Type(2)) => Discovery::LogicalDns(dns(ctx)),
        Some(pb::cluster::ClusterDiscoveryType::Type(t)) => {
            let name = pb::cluster::DiscoveryType::try_from(*t)
                .map(|d| d.as_str_name().to_string())
                .unwrap_or_else(|_| t.to_string());
            ctx.error_at("type", format!("{name} is not supported"));
            return None;
        }
        Some(pb::cluster::ClusterDiscoveryType::ClusterType(_)) => {
            ctx.error_at("cluster_type", "custom cluster types are not supported");
            return None;
        }
    };
    let lb_policy = match c.lb_policy {
        0 => LbPolicy::RoundRobin,
        1 => LbPolicy::LeastRequest {
            choice_count: match &c.lb_config {
                Some(pb::cluster::LbConfig::LeastRequestLbConfig(l)) => {
                    let n = l.choice_count.map(|v| v.value).unwrap_or(2);
                    if n < 2 {
                        ctx.error_at("least_request_lb_config.choice_count", "must be at least 2");
                    }
                    n.max(2)
                }
                _ => 2,
            },
        },
        2 => {
            let (mut min, mut max) = (1024u64, 8 * 1024 * 1024u64);
            if let Some(pb::cluster::LbConfig::RingHashLbConfig(r)) = &c.lb_config {
                if r.hash_function != 0 {
                    ctx.error_at(
                        "ring_hash_lb_config.hash_function",
                        "only XX_HASH is supported",
                    );
                }
                min = r.minimum_ring_size.map(|v| v.value).unwrap_or(min);
                max = r.maximum_ring_size.map(|v| v.value).unwrap_or(max);
                if min > max {
                    ctx.error_at(
                        "ring_hash_lb_config",
                        "minimum_ring_size must not exceed maximum_ring_size",
                    );
                }
            }
            LbPolicy::RingHash {
                minimum_ring_size: min,
                maximum_ring_size: max,
            }
        }
        3 => LbPolicy::Random,
        5 => LbPolicy::Maglev {
            table_size: match &c.lb_config {
                Some(pb::cluster::LbConfig::MaglevLbConfig(m)) => {
                    let n = m.table_size.map(|v| v.value).unwrap_or(65537);
                    if !is_prime(n) {
                        ctx.error_at(
                            "maglev_lb_config.table_size",
                            format!("{n} is not a prime number"),
                        );
                    }
                    n
                }
                _ => 65537,
            },
        },
        other => {
            let name = pb::cluster::LbPolicy::try_from(other)
                .map(|d| d.as_str_name().to_string())
                .unwrap_or_else(|_| other.to_string());
            ctx.error_at("lb_policy", format!("{name} is not supported"));
            LbPolicy::RoundRobin
        }
    };
    if let Some(cfg) = &c.lb_config {
        let ok = matches!(
            (cfg, &lb_policy),
            (
                pb::cluster::LbConfig::LeastRequestLbConfig(_),
                LbPolicy::LeastRequest { .. }
            ) | (
                pb::cluster::LbConfig::RingHashLbConfig(_),
                LbPolicy::RingHash { .. }
            ) | (
                pb::cluster::LbConfig::MaglevLbConfig(_),
                LbPolicy::Maglev { .. }
            )
        );
        if !ok {
            ctx.error("the lb config does not match lb_policy");
        }
    }

    let mut localities = Vec::new();
    if let Some(la) = &c.load_assignment {
        ctx.at("load_assignment", |ctx| {
            for (i, l) in la.endpoints.iter().enumerate() {
                ctx.at(format!("endpoints[{i}]"), |ctx| {
                    let mut endpoints = Vec::new();
                    for (j, e) in l.lb_endpoints.iter().enumerate() {
                        use ferry_envoy_api::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
                        ctx.at(format!("lb_endpoints[{j}]"), |ctx| {
                            crate::listener::metadata(&e.metadata, ctx);
                            let Some(HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
                                ctx.error_at("endpoint", "is required");
                                return;
                            };
                            let Some((host, port)) = ctx.at("endpoint.address", |c| host_port(&ep.address, c)) else {
                                return;
                            };
                            let weight = e.load_balancing_weight.map(|w| w.value).unwrap_or(1);
                            if weight == 0 {
                                ctx.error_at("load_balancing_weight", "must be at least 1");
                            }
                            if matches!(discovery, Discovery::Static) && host.parse::<std::net::IpAddr>().is_err() {
                                ctx.error_at(
                                    "endpoint.address.socket_address.address",
                                    format!("{host:?} is not an IP address (a STATIC cluster does not resolve names)"),
                                );
                                return;
                            }
                            let health = match e.health_status {
                                2 | 4 => EndpointHealth::Unhealthy,
                                3 => EndpointHealth::Draining,
                                5 => EndpointHealth::Degraded,
                                _ => EndpointHealth::Healthy,
                            };
                            endpoints.push(Endpoint {
                                host,
                                port,
                                weight: weight.max(1),
                                hostname: (!ep.hostname.is_empty()).then(|| ep.hostname.clone()),
                                health,
                            });
                        });
                    }
                    let name = l
                        .locality
                        .as_ref()
                        .map(|l| format!("{}/{}/{}", l.region, l.zone, l.sub_zone))
                        .unwrap_or_default();
                    localities.push(Locality {
                        name,
                        priority: l.priority,
                        weight: l.load_balancing_weight.map(|w| w.value),
                        endpoints,
                    });
                });
            }
        });
    }
    if let Discovery::LogicalDns(_) = discovery {
        let n: usize = localities.iter().map(|l| l.endpoints.len()).sum();
        if n != 1 {
            ctx.error_at("load_assignment", "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint");
        }
    }

    // Protocol options: the typed extension (v3) or the legacy cluster fields.
    let mut protocol = UpstreamProtocol::Http1;
    let mut common: Option<core::HttpProtocolOptions> = c.common_http_protocol_options;
    if c.http2_protocol_options.is_some() {
        protocol = UpstreamProtocol::Http2;
    }
    for (key, any) in &c.typed_extension_protocol_options {
        ctx.at(format!("typed_extension_protocol_options[{key}]"), |ctx| {
            if key != "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" {
                return; // named by the support walk
            }
            let opts: upstream_http::HttpProtocolOptions = match ferry_envoy_api::unpack(any) {
                Ok(o) => o,
                Err(e) => {
                    ctx.error(e.to_string());
                    return;
                }
            };
            use upstream_http::http_protocol_options::explicit_http_config::ProtocolConfig;
            use upstream_http::http_protocol_options::UpstreamProtocolOptions;
            match &opts.upstream_protocol_options {
                Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) => match &e.protocol_config {
                    Some(ProtocolConfig::Http2ProtocolOptions(_)) => {
                        protocol = UpstreamProtocol::Http2
                    }
                    Some(ProtocolConfig::HttpProtocolOptions(_)) => {
                        protocol = UpstreamProtocol::Http1
                    }
                    _ => ctx.error_at(
                        "explicit_http_config",
                        "only http_protocol_options and http2_protocol_options are supported",
                    ),
                },
                None => {}
                Some(_) => ctx.error("only explicit_http_config is supported"),
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
    Some(Cluster {
        name: c.name.clone(),
        discovery,
        connect_timeout: duration(&c.connect_timeout, "connect_timeout", ctx)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
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
        circuit_breakers: c
            .circuit_breakers
            .as_ref()
            .map(|cb| {
                ctx.at("circuit_breakers", |c| {
                    crate::circuit_breaker::from_proto(cb, c)
                })
            })
            .unwrap_or_default(),
    })
}

fn common_lb_config(c: &pb::Cluster, ctx: &mut Ctx) -> CommonLbConfig {
    let mut out = CommonLbConfig::default();
    let Some(l) = &c.common_lb_config else {
        return out;
    };
    ctx.at("common_lb_config", |ctx| {
        crate::trace::percent_fields(&l.healthy_panic_threshold, "healthy_panic_threshold", ctx);
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
