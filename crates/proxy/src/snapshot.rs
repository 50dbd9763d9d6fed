//! An immutable view of the running configuration.

use ferry_config::Bootstrap;
use ferry_upstream::ClusterManager;
use std::sync::Arc;

/// What a connection needs from the config, fixed for its lifetime.
#[derive(Clone)]
pub struct Snapshot {
    /// The validated bootstrap.
    pub bootstrap: Arc<Bootstrap>,
    /// Clusters built from it.
    pub clusters: Arc<ClusterManager>,
    /// The decoded bootstrap as JSON, for `/config_dump`.
    pub config_json: Arc<str>,
    /// This host's address (Envoy's local_info address: the first non-loopback
    /// interface address), appended to `x-forwarded-for` for loopback peers.
    pub local_address: Option<std::net::IpAddr>,
    /// The process's stats store, where runtimes register their stats.
    pub stats: Arc<ferry_stats::Store>,
    /// Set by admin `/healthcheck/fail` (read by the health check filter).
    pub health_failed: Arc<std::sync::atomic::AtomicBool>,
    /// Opens access and event log files; reopens them all on SIGUSR1 / `/reopen_logs`.
    pub log_files: ferry_upstream::log_file::LogFiles,
    /// `--drain-time-s`.
    pub drain_time: std::time::Duration,
    /// Route configurations from RDS, by name.
    pub route_configs: Arc<crate::http::route_config_provider::RouteConfigProviders>,
}

/// The first non-loopback, non-link-local interface address, IPv4 first, as Envoy's
/// `Network::Utility::getLocalAddress` picks it.
pub fn local_address() -> Option<std::net::IpAddr> {
    let addrs: Vec<std::net::IpAddr> = nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|ifa| {
            let a = ifa.address?;
            if let Some(v4) = a.as_sockaddr_in() {
                Some(std::net::IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip()))
            }
        })
        .filter(|ip| match ip {
            std::net::IpAddr::V4(v4) => {
                !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified()
            }
            std::net::IpAddr::V6(v6) => {
                !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
            }
        })
        .collect();
    addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("listeners", &self.bootstrap.listeners.len())
            .field("clusters", &self.bootstrap.clusters.len())
            .finish()
    }
}
