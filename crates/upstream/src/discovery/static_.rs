//! `STATIC` clusters: each endpoint's IP address is a host.

use crate::Host;
use ferry_config::cluster::Cluster as ClusterConfig;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The hosts of a static cluster, in config order.
pub(crate) fn hosts(config: &ClusterConfig) -> Vec<Arc<Host>> {
    let mut hosts = Vec::new();
    for locality in &config.localities {
        for ep in &locality.endpoints {
            // The config layer refuses names in STATIC clusters; skip defensively.
            let Ok(ip) = ep.host.parse::<IpAddr>() else {
                tracing::warn!(cluster = %config.name, host = %ep.host, "not an IP address in a STATIC cluster; skipped");
                continue;
            };
            let hostname = ep.hostname.clone().unwrap_or_else(|| ip.to_string());
            let host = Host::new(
                SocketAddr::new(ip, ep.port),
                hostname,
                ep.weight,
                locality.priority,
                locality.name.clone(),
            );
            host.flag_set(crate::health::flags::from_eds(ep.health));
            hosts.push(host);
        }
    }
    hosts
}
