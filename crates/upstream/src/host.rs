//! An upstream host: its address, weight, locality, stats, health and connection pool.

use crate::outlier::{HostMonitor, Outcome};
use crate::pool::Pool;
use crate::{Body, Cluster, UpstreamError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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
    /// Envoy's health flags (`health::flags`), set by active health checking, outlier
    /// detection and the endpoint's EDS status.
    health: AtomicU32,
    /// Active health checking thresholds of this host.
    pub(crate) hc: parking_lot::Mutex<crate::health::session::Session>,
    /// Outlier detection counters, fed by every attempt.
    pub(crate) outlier: HostMonitor,
}

/// Per-host counters and gauges, as Envoy's admin `/clusters` reports them.
#[derive(Debug, Default)]
pub struct HostStats {
    /// Requests in flight (until the response body ends or the request fails).
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

impl HostStats {
    /// Every counter with its Envoy name, for admin `/clusters`.
    pub fn counters(&self) -> [(&'static str, u64); 7] {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("cx_active", v(&self.cx_active)),
            ("cx_connect_fail", v(&self.cx_connect_fail)),
            ("cx_total", v(&self.cx_total)),
            ("rq_active", v(&self.rq_active)),
            ("rq_error", v(&self.rq_error)),
            ("rq_success", v(&self.rq_success)),
            ("rq_total", v(&self.rq_total)),
        ]
    }
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

/// What happens when a response ends (or is dropped): the request stops being active
/// and, for HTTP/1.1, its connection is marked finished so the next checkout waits for
/// it rather than opening another.
struct EndOfResponse {
    host: std::sync::Weak<Host>,
    cluster: Arc<crate::ClusterStats>,
    /// The request's `max_requests` admission (taken when the pool gave it a
    /// connection), held until the response ends.
    _admission: Option<crate::circuit_breaker::Admission>,
    finished: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Drop for EndOfResponse {
    fn drop(&mut self) {
        if let Some(host) = self.host.upgrade() {
            host.stats.rq_active.fetch_sub(1, Ordering::Relaxed);
            // A request slot or a connection may be free: wake requests waiting for one.
            host.pool.wake_waiters();
        }
        self.cluster.upstream_rq_active.dec();
    }
}

pin_project_lite::pin_project! {
    /// An upstream response body that reports its end.
    struct Tracked {
        #[pin]
        inner: hyper::body::Incoming,
        end: Option<EndOfResponse>,
    }
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, crate::BoxError>>> {
        use std::task::Poll;
        let this = self.project();
        let mut this = this;
        let polled = this.inner.as_mut().poll_frame(cx);
        // The end shows as `None`, or — since the reader stops once the body says so
        // (Content-Length reached) — as a last frame after which the body has ended.
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if ended {
            if let Some(end) = this.end.take() {
                if let Some(f) = &end.finished {
                    f.store(true, Ordering::Release);
                }
            }
        }
        if let Poll::Ready(Some(Err(_))) = &polled {
            this.end.take();
        }
        polled.map(|o| o.map(|r| r.map_err(|e| Box::new(e) as crate::BoxError)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
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
            health: AtomicU32::new(0),
            hc: parking_lot::Mutex::new(Default::default()),
            outlier: HostMonitor::default(),
        })
    }

    /// The health flags (bits of `health::flags`).
    pub(crate) fn health_flags(&self) -> u32 {
        self.health.load(Ordering::Acquire)
    }

    /// Whether any of `flag` is set.
    pub(crate) fn flag_get(&self, flag: u32) -> bool {
        self.health_flags() & flag != 0
    }

    /// Sets `flag`.
    pub(crate) fn flag_set(&self, flag: u32) {
        self.health.fetch_or(flag, Ordering::AcqRel);
    }

    /// Clears `flag`.
    pub(crate) fn flag_clear(&self, flag: u32) {
        self.health.fetch_and(!flag, Ordering::AcqRel);
    }

    /// Envoy's admin rendering of the health flags: `healthy` or e.g.
    /// `/failed_active_hc/failed_outlier_check`.
    pub fn health_flags_string(&self) -> String {
        crate::health::flags::describe(self.health_flags())
    }

    /// The success rate outlier detection computed for this host at its last interval
    /// (`local`: the local-origin one), or -1 (admin `/clusters`).
    pub fn success_rate(&self, local: bool) -> f64 {
        self.outlier.success_rate(local)
    }

    /// Reports that an attempt on this host timed out (the router's per-try or global
    /// timeout; Envoy's `LOCAL_ORIGIN_TIMEOUT`): a gateway error (504) for outlier
    /// detection, or a local-origin failure with `split_external_local_origin_errors`.
    pub fn report_timeout(&self) {
        self.outlier.put(self, Outcome::Timeout);
    }

    /// Sends a request over this host's connection pool (HTTP/1.1 keep-alive reuse, or
    /// one shared HTTP/2 connection with multiplexing, by `cluster.config.protocol`).
    ///
    /// Respects the cluster's `connect_timeout`, `idle_timeout` and
    /// `max_requests_per_connection`. The request URI should be origin-form; the
    /// authority for HTTP/2 is taken from the `Host` header or the host address.
    /// Returns the response headers with the streaming body; when the body ends, the
    /// request stops counting as active and an HTTP/1.1 connection becomes reusable.
    ///
    /// The circuit breakers of `priority` apply: over `max_requests`, or with no
    /// connection free and `max_pending_requests` reached, the request fails with
    /// [`UpstreamError::Overflow`] without being sent.
    pub async fn send(
        &self,
        cluster: &Cluster,
        priority: ferry_config::route::Priority,
        req: http::Request<Body>,
    ) -> Result<http::Response<Body>, UpstreamError> {
        self.send_observed(cluster, priority, req, None).await
    }

    /// [`Host::send`], marking `dispatch` when the request is given a connection.
    pub async fn send_observed(
        &self,
        cluster: &Cluster,
        priority: ferry_config::route::Priority,
        req: http::Request<Body>,
        dispatch: Option<&crate::pool::Dispatch>,
    ) -> Result<http::Response<Body>, UpstreamError> {
        let breaker = cluster.breakers.get(priority);
        self.stats.rq_total.fetch_add(1, Ordering::Relaxed);
        self.stats.rq_active.fetch_add(1, Ordering::Relaxed);
        cluster.stats.upstream_rq_total.inc();
        cluster.stats.upstream_rq_active.inc();
        // Ends the request's activity however this future ends: dropped (a timeout, the
        // client gone), failed, or — moved into the body — when the response ends.
        let mut end = EndOfResponse {
            host: self.this.clone(),
            cluster: cluster.stats.clone(),
            _admission: None,
            finished: None,
        };
        let grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let gate = crate::pool::Gate { breaker, dispatch };
        let result = self.pool.send(self, cluster, &gate, req).await;
        match &result {
            Ok((resp, _, _)) => {
                if resp.status().is_server_error() {
                    self.stats.rq_error.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.stats.rq_success.fetch_add(1, Ordering::Relaxed);
                }
                self.outlier.put(self, Outcome::ConnectSuccess);
                // A gRPC status in the headers (trailers-only) counts as its HTTP mapping.
                let grpc_status = grpc
                    .then(|| resp.headers().get("grpc-status"))
                    .flatten()
                    .and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
                let status = match grpc_status {
                    Some(g) => crate::outlier::grpc_to_http_status(g),
                    None => resp.status().as_u16(),
                };
                self.outlier.put(self, Outcome::Status(status));
                if resp
                    .headers()
                    .contains_key("x-envoy-immediate-health-check-fail")
                {
                    cluster.immediate_health_check_fail(self);
                }
            }
            Err(e) => {
                self.stats.rq_error.fetch_add(1, Ordering::Relaxed);
                match e {
                    UpstreamError::ConnectFailure(_) | UpstreamError::ConnectTimeout => {
                        self.outlier.put(self, Outcome::ConnectFailed)
                    }
                    // A connection was had; the stream failed before a response.
                    UpstreamError::ConnectionTermination(_)
                    | UpstreamError::RemoteReset { .. }
                    | UpstreamError::Protocol(_) => {
                        self.outlier.put(self, Outcome::ConnectSuccess);
                        self.outlier.put(self, Outcome::ConnectFailed);
                    }
                    // A circuit breaker refused it, or the client's body failed:
                    // nothing about the host.
                    UpstreamError::Overflow(_) | UpstreamError::RequestBody(_) => {}
                }
            }
        };
        let (resp, finished, admission) = result?;
        end.finished = finished;
        end._admission = Some(admission);
        let (parts, body) = resp.into_parts();
        let body = Tracked {
            inner: body,
            end: Some(end),
        };
        Ok(http::Response::from_parts(
            parts,
            http_body_util::BodyExt::boxed(body),
        ))
    }

    /// A raw TCP connection (for `tcp_proxy`), with the cluster's `connect_timeout`,
    /// within the default priority's `max_connections`. The admission is held by the
    /// caller for as long as the connection is open.
    pub async fn connect_tcp(
        &self,
        cluster: &Cluster,
    ) -> Result<(tokio::net::TcpStream, crate::circuit_breaker::Admission), UpstreamError> {
        use crate::circuit_breaker::Resource;
        let breaker = cluster.breakers.get(ferry_config::route::Priority::Default);
        let Some(admission) = breaker.try_acquire(Resource::Connections) else {
            cluster.stats.upstream_cx_overflow.inc();
            return Err(UpstreamError::Overflow(Resource::Connections));
        };
        Ok((crate::pool::connect(self, cluster).await?, admission))
    }
}
