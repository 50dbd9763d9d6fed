//! `STRICT_DNS` and `LOGICAL_DNS` clusters: a task resolves every endpoint name, then
//! again after `dns_refresh_rate` — or after the answer's TTL with `respect_dns_ttl`.
//!
//! Names are resolved by a DNS stub resolver (hickory) of the cluster's own: the name
//! servers of `typed_dns_resolver_config` (c-ares options), `dns_resolution_config` or
//! `dns_resolvers`, else the system's (/etc/resolv.conf, with /etc/hosts first), as
//! Envoy's c-ares resolver does. Answers are not cached between refreshes.
//!
//! STRICT_DNS: every address (after `dns_lookup_family`) is a host, and a name that no
//! longer exists (NXDOMAIN, or no record of the family) leaves its endpoint without
//! hosts, as in Envoy. LOGICAL_DNS: only the first address, and an empty answer keeps
//! the previous host. A failed resolution (timeout, server failure) keeps the endpoint's
//! previous hosts and is retried after `dns_failure_refresh_rate` (jittered exponential
//! back-off), else after the refresh rate. Hosts whose address stays the same are kept
//! (with their stats and pooled connections).
//!
//! Differences from Envoy: all names of a cluster are refreshed together, after the
//! shortest wait any of them asks for (Envoy keeps a timer per name); answers from
//! /etc/hosts or for IP literals carry no TTL, so they refresh at `dns_refresh_rate`.

use crate::{Cluster, Host};
use ferry_config::cluster::{Dns, DnsLookupFamily, DnsResolver};
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{TokioResolver, MAX_TTL};
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// What one name resolved to.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Addresses (after `dns_lookup_family`), and the smallest TTL among them, if the
    /// answer came from DNS (None for /etc/hosts and IP literals).
    Found(Vec<SocketAddr>, Option<Duration>),
    /// The name does not exist or has no address of the lookup family.
    Empty,
}

/// Resolves the cluster's endpoints now and after each refresh period, until the cluster
/// is dropped.
pub(crate) async fn run(cluster: Weak<Cluster>, dns: Dns, logical: bool) {
    let resolver = match resolver(&dns) {
        Ok(r) => r,
        Err(e) => {
            if let Some(c) = cluster.upgrade() {
                tracing::error!(cluster = %c.config.name, error = %e, "cannot build the DNS resolver; the cluster has no hosts");
                c.mark_ready();
            }
            return;
        }
    };
    // Per endpoint (locality index, endpoint index): the hosts of its last good resolution.
    let mut current: HashMap<(usize, usize), Vec<Arc<Host>>> = HashMap::new();
    let mut backoff = Backoff::default();
    loop {
        let Some(c) = cluster.upgrade() else {
            return;
        };
        let targets: Vec<_> = c
            .config
            .localities
            .iter()
            .enumerate()
            .flat_map(|(li, l)| {
                l.endpoints
                    .iter()
                    .enumerate()
                    .map(move |(ei, e)| ((li, ei), l, e))
            })
            .map(|(key, l, e)| {
                (
                    key,
                    e.host.clone(),
                    e.port,
                    e.weight,
                    e.hostname.clone(),
                    l.priority,
                    l.name.clone(),
                    e.health,
                )
            })
            .collect();
        let name = c.config.name.clone();
        drop(c);
        resolver.clear_cache();
        let mut changed = false;
        let mut failed = false;
        let mut ttl: Option<Duration> = None;
        // Every name at once (Envoy resolves each independently): a slow one does not
        // hold back the others.
        let answers = futures_util::future::join_all(
            targets
                .iter()
                .map(|(_, host, port, ..)| resolve(&resolver, host, *port, dns.family)),
        )
        .await;
        for ((key, host, _, weight, hostname, priority, locality, health), answer) in
            targets.into_iter().zip(answers)
        {
            let addrs = match answer {
                Ok(Answer::Found(addrs, t)) => {
                    ttl = match (ttl, t) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    addrs
                }
                Ok(Answer::Empty) if logical => {
                    tracing::warn!(cluster = %name, %host, family = ?dns.family, "DNS returned no address; keeping the previous host");
                    continue;
                }
                Ok(Answer::Empty) => {
                    tracing::warn!(cluster = %name, %host, family = ?dns.family, "DNS returned no address; the endpoint has no hosts");
                    Vec::new()
                }
                Err(e) => {
                    failed = true;
                    tracing::warn!(cluster = %name, %host, error = %e, "DNS resolution failed; keeping the previous hosts");
                    continue;
                }
            };
            let addrs = if logical {
                addrs.into_iter().take(1).collect()
            } else {
                addrs
            };
            let previous = current.remove(&key).unwrap_or_default();
            let same = previous.len() == addrs.len()
                && previous.iter().zip(&addrs).all(|(h, a)| h.address == *a);
            let hosts = if same {
                previous
            } else {
                changed = true;
                addrs
                    .iter()
                    .map(|a| match previous.iter().find(|h| h.address == *a) {
                        Some(h) => h.clone(),
                        None => {
                            let h = Host::new(
                                *a,
                                hostname.clone().unwrap_or_else(|| host.clone()),
                                weight,
                                priority,
                                locality.clone(),
                            );
                            h.flag_set(crate::health::flags::from_eds(health));
                            h
                        }
                    })
                    .collect()
            };
            current.insert(key, hosts);
        }
        let Some(c) = cluster.upgrade() else {
            return;
        };
        if changed {
            let mut keys: Vec<_> = current.keys().copied().collect();
            keys.sort_unstable();
            let hosts = keys
                .iter()
                .flat_map(|k| current[k].iter().cloned())
                .collect();
            c.set_hosts(hosts);
        } else {
            c.mark_ready();
        }
        drop(c);
        tokio::time::sleep(next_refresh(&dns, failed, ttl, &mut backoff)).await;
    }
}

/// How long to wait before the next resolution.
fn next_refresh(dns: &Dns, failed: bool, ttl: Option<Duration>, backoff: &mut Backoff) -> Duration {
    let base = match (failed, dns.failure_refresh_rate) {
        (true, Some((base, max))) => backoff.next(base, max),
        _ => {
            backoff.reset();
            match ttl {
                Some(t) if dns.respect_ttl && !t.is_zero() => t,
                _ => dns.refresh_rate,
            }
        }
    };
    match dns.jitter {
        Some(j) => base + rand::rng().random_range(Duration::ZERO..j),
        None => base,
    }
}

/// Envoy's jittered exponential back-off: a random wait below an interval that doubles
/// after each failure, from `base` up to `max`.
#[derive(Debug, Default)]
struct Backoff {
    interval: Option<Duration>,
}

impl Backoff {
    fn next(&mut self, base: Duration, max: Duration) -> Duration {
        let interval = self.interval.unwrap_or(base).min(max);
        self.interval = Some((interval * 2).min(max));
        rand::rng().random_range(Duration::ZERO..=interval)
    }

    fn reset(&mut self) {
        self.interval = None;
    }
}

/// The cluster's stub resolver.
fn resolver(dns: &Dns) -> Result<TokioResolver, hickory_resolver::net::NetError> {
    let r = &dns.resolver;
    let system = hickory_resolver::system_conf::read_system_conf();
    // The configured resolvers override the system's, or with `use_resolvers_as_fallback`
    // stand in only when the system has none.
    let fallback_unneeded = r.use_resolvers_as_fallback && has_servers(&system);
    let use_configured = !r.resolvers.is_empty() && !fallback_unneeded;
    let (config, mut opts) = match system {
        _ if use_configured => (name_servers(r), ResolverOpts::default()),
        Ok((config, opts)) => {
            let (domain, search, servers) = config.into_parts();
            let servers = servers
                .into_iter()
                .map(|s| {
                    let port = s.connections.first().map(|c| c.port).unwrap_or(53);
                    NameServerConfig::new(s.ip, true, connections(r.use_tcp, port))
                })
                .collect();
            let (domain, search) = if r.no_default_search_domain {
                (None, Vec::new())
            } else {
                (domain, search)
            };
            (ResolverConfig::from_parts(domain, search, servers), opts)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the system's DNS configuration; only /etc/hosts and the configured resolvers answer");
            (name_servers(r), ResolverOpts::default())
        }
    };
    opts.timeout = r.query_timeout;
    opts.attempts = r.query_tries.saturating_sub(1) as usize;
    opts.cache_size = 0;
    opts.ip_strategy = match dns.family {
        DnsLookupFamily::V4Only => LookupIpStrategy::Ipv4Only,
        DnsLookupFamily::V6Only => LookupIpStrategy::Ipv6Only,
        DnsLookupFamily::Auto => LookupIpStrategy::Ipv6thenIpv4,
        DnsLookupFamily::V4Preferred => LookupIpStrategy::Ipv4thenIpv6,
        DnsLookupFamily::All => LookupIpStrategy::Ipv4AndIpv6,
    };
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    *builder.options_mut() = opts;
    builder.build()
}

fn has_servers(
    system: &Result<(ResolverConfig, ResolverOpts), hickory_resolver::net::NetError>,
) -> bool {
    matches!(system, Ok((c, _)) if !c.name_servers().is_empty())
}

fn name_servers(r: &DnsResolver) -> ResolverConfig {
    ResolverConfig::from_name_servers(
        r.resolvers
            .iter()
            .map(|a| NameServerConfig::new(a.ip(), true, connections(r.use_tcp, a.port())))
            .collect(),
    )
}

/// How to reach a name server: TCP only with `use_tcp_for_dns_lookups`, else UDP with
/// TCP for truncated answers (as c-ares does).
fn connections(use_tcp: bool, port: u16) -> Vec<ConnectionConfig> {
    let with_port = |mut c: ConnectionConfig| {
        c.port = port;
        c
    };
    if use_tcp {
        vec![with_port(ConnectionConfig::tcp())]
    } else {
        vec![
            with_port(ConnectionConfig::udp()),
            with_port(ConnectionConfig::tcp()),
        ]
    }
}

/// Resolves one endpoint name.
async fn resolve(
    resolver: &TokioResolver,
    host: &str,
    port: u16,
    family: DnsLookupFamily,
) -> Result<Answer, hickory_resolver::net::NetError> {
    let lookup = match resolver.lookup_ip(host).await {
        Ok(l) => l,
        Err(e) if e.is_no_records_found() => return Ok(Answer::Empty),
        Err(e) => return Err(e),
    };
    let mut ttl: Option<u32> = None;
    let mut addrs = Vec::new();
    for record in lookup.as_lookup().answers() {
        if let Some(ip) = record.data.ip_addr() {
            addrs.push(SocketAddr::new(ip, port));
            ttl = Some(ttl.map_or(record.ttl, |t| t.min(record.ttl)));
        }
    }
    let addrs = filter(addrs, family);
    if addrs.is_empty() {
        return Ok(Answer::Empty);
    }
    // hickory gives answers from /etc/hosts and IP literals the maximum TTL.
    let ttl = ttl
        .filter(|t| *t < MAX_TTL)
        .map(|t| Duration::from_secs(u64::from(t)));
    Ok(Answer::Found(addrs, ttl))
}

/// Applies `dns_lookup_family` to resolved addresses, dropping duplicates.
pub(crate) fn filter(addrs: Vec<SocketAddr>, family: DnsLookupFamily) -> Vec<SocketAddr> {
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for a in addrs {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    let v4: Vec<SocketAddr> = unique.iter().copied().filter(SocketAddr::is_ipv4).collect();
    let v6: Vec<SocketAddr> = unique.iter().copied().filter(SocketAddr::is_ipv6).collect();
    match family {
        DnsLookupFamily::V4Only => v4,
        DnsLookupFamily::V6Only => v6,
        DnsLookupFamily::Auto if !v6.is_empty() => v6,
        DnsLookupFamily::Auto => v4,
        DnsLookupFamily::V4Preferred if !v4.is_empty() => v4,
        DnsLookupFamily::V4Preferred => v6,
        DnsLookupFamily::All => unique,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lookup_family() {
        let a4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let b4: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let a6: SocketAddr = "[::1]:80".parse().unwrap();
        let both = vec![a4, a6, b4, a4];
        assert_eq!(filter(both.clone(), DnsLookupFamily::V4Only), vec![a4, b4]);
        assert_eq!(filter(both.clone(), DnsLookupFamily::V6Only), vec![a6]);
        assert_eq!(filter(both.clone(), DnsLookupFamily::Auto), vec![a6]);
        assert_eq!(filter(vec![a4], DnsLookupFamily::Auto), vec![a4]);
        assert_eq!(
            filter(both.clone(), DnsLookupFamily::V4Preferred),
            vec![a4, b4]
        );
        assert_eq!(filter(vec![a6], DnsLookupFamily::V4Preferred), vec![a6]);
        assert_eq!(filter(both, DnsLookupFamily::All), vec![a4, a6, b4]);
    }

    fn dns(respect_ttl: bool, failure: Option<(Duration, Duration)>) -> Dns {
        Dns {
            respect_ttl,
            failure_refresh_rate: failure,
            ..Dns::default()
        }
    }

    #[test]
    fn refresh_follows_ttl_only_when_asked() {
        let mut b = Backoff::default();
        let ttl = Some(Duration::from_secs(30));
        assert_eq!(
            next_refresh(&dns(false, None), false, ttl, &mut b),
            Duration::from_secs(5)
        );
        assert_eq!(
            next_refresh(&dns(true, None), false, ttl, &mut b),
            Duration::from_secs(30)
        );
        // No TTL (hosts file) or a zero TTL: the refresh rate.
        assert_eq!(
            next_refresh(&dns(true, None), false, None, &mut b),
            Duration::from_secs(5)
        );
        let zero = Some(Duration::ZERO);
        assert_eq!(
            next_refresh(&dns(true, None), false, zero, &mut b),
            Duration::from_secs(5)
        );
        // A failure without dns_failure_refresh_rate retries at the refresh rate.
        assert_eq!(
            next_refresh(&dns(true, None), true, None, &mut b),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn failures_back_off_up_to_max_and_reset_on_success() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(4));
        let d = dns(false, Some((base, max)));
        let mut b = Backoff::default();
        for limit in [1, 2, 4, 4, 4] {
            let wait = next_refresh(&d, true, None, &mut b);
            assert!(wait <= Duration::from_secs(limit), "{wait:?} > {limit}s");
        }
        assert_eq!(
            next_refresh(&d, false, None, &mut b),
            Duration::from_secs(5)
        );
        assert_eq!(b.interval, None);
    }

    #[test]
    fn jitter_is_added_below_its_bound() {
        let mut d = dns(false, None);
        d.jitter = Some(Duration::from_millis(500));
        for _ in 0..50 {
            let wait = next_refresh(&d, false, None, &mut Backoff::default());
            assert!(wait >= Duration::from_secs(5) && wait < Duration::from_millis(5500));
        }
    }
}
