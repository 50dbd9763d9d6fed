//! `STATIC` clusters: each endpoint's IP address is a host.

use crate::Host;
use ferry_config::cluster::{Cluster as ClusterConfig, Locality};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The hosts of a static cluster, in config order, reusing each host of `previous`
/// whose endpoint is unchanged (address, hostname, weight, priority and locality): it
/// keeps its pool, health and outlier state. Its EDS health flags follow the config.
pub(crate) fn hosts_reusing(config: &ClusterConfig, previous: &[Arc<Host>]) -> Vec<Arc<Host>> {
    hosts_of(&config.name, &config.localities, previous)
}

/// The hosts of `localities` (cluster `cluster`), reusing those of `previous` as
/// [`hosts_reusing`] does.
pub(crate) fn hosts_of(
    cluster: &str,
    localities: &[Locality],
    previous: &[Arc<Host>],
) -> Vec<Arc<Host>> {
    let mut hosts = Vec::new();
    for locality in localities {
        for ep in &locality.endpoints {
            // The config layer refuses names in STATIC clusters; skip defensively.
            let Ok(ip) = ep.host.parse::<IpAddr>() else {
                tracing::warn!(%cluster, host = %ep.host, "not an IP address in a STATIC cluster; skipped");
                continue;
            };
            let hostname = ep.hostname.clone().unwrap_or_else(|| ip.to_string());
            let address = SocketAddr::new(ip, ep.port);
            let same = |h: &&Arc<Host>| {
                h.address == address
                    && h.hostname == hostname
                    && h.weight == ep.weight.max(1)
                    && h.priority == locality.priority
                    && h.locality == locality.name
                    && !hosts.iter().any(|k: &Arc<Host>| Arc::ptr_eq(k, h))
            };
            let host = match previous.iter().find(same) {
                Some(kept) => {
                    use crate::health::flags::FAILED_EDS_HEALTH;
                    use crate::health::flags::{DEGRADED_EDS_HEALTH, EDS_STATUS_DRAINING};
                    kept.flag_clear(FAILED_EDS_HEALTH | DEGRADED_EDS_HEALTH | EDS_STATUS_DRAINING);
                    kept.clone()
                }
                None => Host::new(
                    address,
                    hostname,
                    ep.weight,
                    locality.priority,
                    locality.name.clone(),
                ),
            };
            host.flag_set(crate::health::flags::from_eds(ep.health));
            hosts.push(host);
        }
    }
    hosts
}
