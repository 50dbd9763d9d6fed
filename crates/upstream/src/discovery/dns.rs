//! `STRICT_DNS` and `LOGICAL_DNS` clusters: a task resolves every endpoint name with
//! the system resolver each `dns_refresh_rate`.
//!
//! STRICT_DNS: every address (after `dns_lookup_family`) is a host. LOGICAL_DNS: only
//! the first. A failed resolution keeps the endpoint's previous hosts. Hosts whose
//! address stays the same are kept (with their stats and pooled connections).
//! `respect_dns_ttl` is not honoured: the system resolver does not report TTLs.

use crate::{Cluster, Host};
use ferry_config::cluster::{Dns, DnsLookupFamily};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

/// Resolves the cluster's endpoints now and every refresh period, until the cluster is dropped.
pub(crate) async fn run(cluster: Weak<Cluster>, dns: Dns, logical: bool) {
    let mut interval = tokio::time::interval(dns.refresh_rate);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Per endpoint (locality index, endpoint index): the hosts of its last good resolution.
    let mut current: HashMap<(usize, usize), Vec<Arc<Host>>> = HashMap::new();
    loop {
        interval.tick().await;
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
                )
            })
            .collect();
        let name = c.config.name.clone();
        drop(c);
        let mut changed = false;
        for (key, host, port, weight, hostname, priority, locality) in targets {
            let addrs = match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(addrs) => filter(addrs.collect(), dns.family),
                Err(e) => {
                    tracing::warn!(cluster = %name, %host, error = %e, "DNS resolution failed; keeping the previous hosts");
                    continue;
                }
            };
            if addrs.is_empty() {
                tracing::warn!(cluster = %name, %host, family = ?dns.family, "DNS resolution returned no address of the lookup family; keeping the previous hosts");
                continue;
            }
            let addrs = if logical { addrs[..1].to_vec() } else { addrs };
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
                        None => Host::new(
                            *a,
                            hostname.clone().unwrap_or_else(|| host.clone()),
                            weight,
                            priority,
                            locality.clone(),
                        ),
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
    }
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
}
