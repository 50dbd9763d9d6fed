//! An upstream host: its address, weight, locality, stats and connection pool.

use crate::pool::Pool;
use crate::{Body, Cluster, UpstreamError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// One upstream host (an address of a cluster).
pub struct Host {
    /// The address connections go to.
    pub address: SocketAddr,
    /// The endpoint's `hostname`, else the DNS name it was resolved from, else the IP.
    pub hostname: String,
    /// `load_balancing_weight` (at least 1).
    pub weight: u32,
    /// Priority of the host's locality (0 is highest).
    pub priority: u32,
    /// Locality as `region/zone/sub_zone` (empty when not set).
    pub locality: String,
    /// Per-host counters (Envoy's host stats in admin `/clusters`).
    pub stats: HostStats,
    pub(crate) pool: Pool,
    /// This host, for connection tasks that outlive a borrow of it.
    pub(crate) this: Weak<Host>,
}

/// Per-host counters and gauges, as Envoy's admin `/clusters` reports them.
#[derive(Debug, Default)]
pub struct HostStats {
    /// Requests in flight (until the response headers arrive or the request fails).
    pub rq_active: AtomicU64,
    /// Requests sent.
    pub rq_total: AtomicU64,
    /// Requests that failed or got a 5xx response.
    pub rq_error: AtomicU64,
    /// Requests that got a non-5xx response.
    pub rq_success: AtomicU64,
    /// Open pooled HTTP connections (raw `connect_tcp` streams are not tracked).
    pub cx_active: AtomicU64,
    /// Connections attempted.
    pub cx_total: AtomicU64,
    /// Connection attempts that failed or timed out.
    pub cx_connect_fail: AtomicU64,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("address", &self.address)
            .field("hostname", &self.hostname)
            .field("weight", &self.weight)
            .field("priority", &self.priority)
            .field("locality", &self.locality)
            .finish_non_exhaustive()
    }
}

/// Decrements `rq_active` even when the send future is dropped (e.g. a route timeout).
struct ActiveGuard<'a>(&'a AtomicU64);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Host {
    /// Creates a host with an empty connection pool.
    pub(crate) fn new(
        address: SocketAddr,
        hostname: String,
        weight: u32,
        priority: u32,
        locality: String,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Host {
            address,
            hostname,
            weight: weight.max(1),
            priority,
            locality,
            stats: HostStats::default(),
            pool: Pool::default(),
            this: this.clone(),
        })
    }

    /// Sends a request over this host's connection pool (HTTP/1.1 keep-alive reuse, or
    /// one shared HTTP/2 connection with multiplexing, by `cluster.config.protocol`).
    ///
    /// Respects the cluster's `connect_timeout`, `idle_timeout` and
    /// `max_requests_per_connection`. The request URI should be origin-form; the
    /// authority for HTTP/2 is taken from the `Host` header or the host address.
    /// Returns the response headers with the streaming body.
    pub async fn send(
        &self,
        cluster: &Cluster,
        req: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, UpstreamError> {
        self.stats.rq_total.fetch_add(1, Ordering::Relaxed);
        self.stats.rq_active.fetch_add(1, Ordering::Relaxed);
        let guard = ActiveGuard(&self.stats.rq_active);
        let result = self.pool.send(self, &cluster.config, req).await;
        drop(guard);
        match &result {
            Ok(resp) if !resp.status().is_server_error() => {
                self.stats.rq_success.fetch_add(1, Ordering::Relaxed)
            }
            _ => self.stats.rq_error.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    /// A raw TCP connection (for `tcp_proxy`), with the cluster's `connect_timeout`.
    pub async fn connect_tcp(
        &self,
        cluster: &Cluster,
    ) -> Result<tokio::net::TcpStream, UpstreamError> {
        crate::pool::connect(self, cluster.config.connect_timeout).await
    }
}
