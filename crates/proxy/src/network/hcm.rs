//! `envoy.filters.network.http_connection_manager`: the HTTP codec for one downstream
//! connection (HTTP/1.1, HTTP/2 prior knowledge, or either by detection), its limits
//! and timeouts, and graceful close on drain.

use crate::access_log::Logger;
use crate::server::Server;
use crate::stream_info::StreamInfo;
use crate::Snapshot;
use ferry_config::hcm::{CodecType, HttpConnectionManager};
use ferry_config::ResponseFlag;
use ferry_upstream::ClusterManager;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// An HCM ready to serve: its config, clusters and access loggers.
pub struct HcmRuntime {
    /// The validated config.
    pub config: Arc<HttpConnectionManager>,
    /// Clusters of the snapshot.
    pub clusters: Arc<ClusterManager>,
    /// Access loggers.
    pub loggers: Arc<[Logger]>,
    /// Whether a stream must keep a copy of its request headers: an access log, or a
    /// header value template that reads `%REQ(...)%`. Decided once, not per request.
    pub keep_request_headers: bool,
    /// Per virtual host, per route: what the route resolves to, resolved once here so
    /// that no request looks a cluster up by name.
    pub routes: Vec<Vec<RouteTarget>>,
    /// This host's address, appended to `x-forwarded-for` for loopback peers.
    pub local_address: Option<std::net::IpAddr>,
    /// The HTTP filters before the router, in order.
    pub filters: Vec<Arc<dyn crate::http::filter_manager::HttpFilter>>,
    /// `http.<stat_prefix>.*`.
    pub stats: Arc<HcmStats>,
    /// `listener.<address>.http.<stat_prefix>.*`.
    pub listener_stats: Arc<crate::stats::ListenerHttpStats>,
    /// `node.cluster` (`--service-cluster`).
    pub node_cluster: String,
    /// Whether an access log reads the upstream connection (its id or local address):
    /// only then does a single-attempt request watch which connection it gets.
    pub log_upstream_connection: bool,
    /// The HCM's tracer (`tracing`), if it has one.
    pub tracer: Option<Arc<crate::trace::Tracer>>,
}

pub use crate::stats::HcmStats;

/// A route's upstream side, resolved against the snapshot's clusters.
#[derive(Debug, Default)]
pub struct RouteTarget {
    /// `cluster`: one entry; `weighted_clusters`: one per entry, in order (None: the
    /// cluster does not exist); `cluster_header`: empty (looked up per request).
    pub clusters: Vec<Option<Arc<ferry_upstream::Cluster>>>,
    /// `x-envoy-expected-rq-timeout-ms` for the route timeout.
    pub expected_timeout: Option<http::HeaderValue>,
    /// What the route says of each HTTP filter (`typed_per_filter_config`), by filter
    /// index, with the per-route configs' state.
    pub filters: crate::http::filter_manager::RouteFilterConfigs,
    /// `request_mirror_policies` clusters, in order (None: the cluster does not exist,
    /// or is named per request by `cluster_header`).
    pub mirrors: Vec<Option<Arc<ferry_upstream::Cluster>>>,
}

impl HcmRuntime {
    /// Builds the runtime (starts access log writers); `listener_scope` is the
    /// listener's stats scope (`listener.<address>.`).
    pub fn new(
        config: Arc<HttpConnectionManager>,
        snapshot: &Snapshot,
        listener_scope: &str,
    ) -> HcmRuntime {
        let loggers: Vec<Logger> = config
            .access_logs
            .iter()
            .map(|l| Logger::new(l, snapshot))
            .collect();
        let keep_request_headers = !loggers.is_empty() || templates_read_request_headers(&config);
        let log_upstream_connection = loggers.iter().any(|l| {
            l.reads(&|op| {
                use ferry_config::access_log::Operator as O;
                matches!(
                    op,
                    O::UpstreamLocalAddress
                        | O::UpstreamLocalAddressWithoutPort
                        | O::UpstreamLocalPort
                        | O::UpstreamConnectionId
                )
            })
        });
        let env = crate::http::filters::Env {
            stat_prefix: &config.stat_prefix,
            stats: &snapshot.stats,
            health_failed: snapshot.health_failed.clone(),
            node_cluster: &snapshot.bootstrap.node_cluster,
        };
        let filters = config
            .http_filters
            .iter()
            .enumerate()
            .map(|(i, f)| crate::http::filters::build(f, i, &env))
            .collect::<Vec<_>>();
        let routes = resolve_routes(&config, &snapshot.clusters, &filters, &env);
        let stats = Arc::new(HcmStats::default());
        snapshot
            .stats
            .register(format!("http.{}.", config.stat_prefix), &stats);
        let listener_stats = Arc::new(crate::stats::ListenerHttpStats::default());
        snapshot.stats.register(
            format!("{listener_scope}http.{}.", config.stat_prefix),
            &listener_stats,
        );
        let tracer = config.tracing.as_ref().map(|t| {
            Arc::new(crate::trace::Tracer::new(
                t.clone(),
                &crate::trace::Env {
                    clusters: &snapshot.clusters,
                    stats: &snapshot.stats,
                    node_id: &snapshot.bootstrap.node_id,
                    node_cluster: &snapshot.bootstrap.node_cluster,
                    zone: &snapshot.bootstrap.node_zone,
                    local_address: snapshot.local_address,
                },
            ))
        });
        HcmRuntime {
            tracer,
            listener_stats,
            filters,
            stats,
            node_cluster: snapshot.bootstrap.node_cluster.clone(),
            keep_request_headers,
            log_upstream_connection,
            routes,
            local_address: snapshot.local_address,
            config,
            clusters: snapshot.clusters.clone(),
            loggers: loggers.into(),
        }
    }
}

/// Facts about the downstream connection a stream arrived on.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Our address.
    pub local: SocketAddr,
    /// Connection id.
    pub id: u64,
    /// State shared with the HTTP/1.1 framing guard: conflicting requests, streams in
    /// flight, whether the connection speaks HTTP/2.
    pub shared: Arc<super::h1_guard::ConnShared>,
    /// HTTP/2 streams in flight, for the connection idle timeout.
    pub streams: StreamCount,
    /// The listener's `per_connection_buffer_limit_bytes` (caps what a request may
    /// buffer for retries and mirrors).
    pub buffer_limit: u32,
    /// Local rate limit buckets of this connection
    /// (`local_rate_limit_per_downstream_connection`).
    pub buckets: crate::http::filters::local_ratelimit::ConnectionBuckets,
    /// The protocol counted in `downstream_cx_http{1,2}_*` (0 until the first stream,
    /// then 1 or 2).
    protocol: std::sync::atomic::AtomicU8,
}

/// Open HTTP/2 streams of a connection and when the last one ended. (HTTP/1.1 idleness
/// is the codec's wait for the next request's headers.)
#[derive(Debug)]
pub struct StreamCount {
    opened: Instant,
    last_end_nanos: AtomicU64,
}

impl StreamCount {
    fn new() -> Self {
        StreamCount {
            opened: Instant::now(),
            last_end_nanos: AtomicU64::new(0),
        }
    }

    /// When the connection became idle, if it is (no stream in flight).
    fn idle_since(&self, active: &AtomicUsize) -> Option<Instant> {
        if active.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(self.opened + Duration::from_nanos(self.last_end_nanos.load(Ordering::Relaxed)))
    }
}

/// Ends a stream's count when dropped (with the response body).
#[derive(Debug)]
pub struct StreamGuard(Arc<ConnInfo>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let s = &self.0.streams;
        s.last_end_nanos
            .store(s.opened.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.0.shared.stream_ended();
    }
}

static CONNECTION_IDS: AtomicU64 = AtomicU64::new(1);

/// An HTTP/2 request whose header list exceeds `max_request_headers_kb` or
/// `max_headers_count`: hyper resets the stream (RST_STREAM INTERNAL_ERROR) when the
/// service fails, as Envoy resets it.
#[derive(Debug)]
struct HeaderListTooLarge;

impl std::fmt::Display for HeaderListTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request header list over max_request_headers_kb or max_headers_count")
    }
}

impl std::error::Error for HeaderListTooLarge {}

/// An HTTP/2 header list's size as RFC 9113 counts it: name, value and 32 bytes per
/// field, pseudo-headers included.
fn header_list_size<B>(req: &http::Request<B>) -> usize {
    let uri = req.uri();
    let pseudo = [
        (":method", req.method().as_str().len()),
        (":scheme", uri.scheme_str().map_or(0, str::len)),
        (
            ":authority",
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":path",
            uri.path_and_query().map_or(1, |p| p.as_str().len()),
        ),
    ];
    let pseudo: usize = pseudo.iter().map(|(n, v)| n.len() + v + 32).sum();
    let fields: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 32)
        .sum();
    pseudo + fields
}

/// Access-logs a stream reset before it reached the router (flag DR, as Envoy).
fn log_reset(hcm: &HcmRuntime, conn: &ConnInfo, details: &'static str) {
    if hcm.loggers.is_empty() {
        return;
    }
    let info = StreamInfo {
        start_time: Some(std::time::SystemTime::now()),
        duration: Some(Duration::ZERO),
        ..conn.codec_error("HTTP/2", ResponseFlag::DownstreamRemoteReset, details)
    };
    log_all(&hcm.loggers, &info);
}

/// Counts (`downstream_cx_protocol_error`) and access-logs the heads the HTTP/1.1
/// guard refuses, as Envoy logs codec errors.
fn refusal_log(
    loggers: &Arc<[Logger]>,
    conn: Arc<ConnInfo>,
    stats: Arc<HcmStats>,
) -> Option<super::h1_guard::RefusalLog> {
    let loggers = loggers.clone();
    Some(Arc::new(move |r: super::h1_guard::Refused| {
        stats.downstream_cx_protocol_error.inc();
        if loggers.is_empty() {
            return;
        }
        let info = StreamInfo {
            start_time: Some(r.start_time),
            response_code: Some(r.refusal.status().as_u16()),
            bytes_sent: r.bytes_sent,
            duration: Some(r.started.elapsed()),
            ..conn.codec_error(
                "HTTP/1.1",
                ResponseFlag::DownstreamProtocolError,
                r.refusal.details(),
            )
        };
        log_all(&loggers, &info);
    }))
}

fn log_all(loggers: &[Logger], info: &StreamInfo) {
    for l in loggers {
        l.log(info);
    }
}

impl ConnInfo {
    /// A connection's facts, with a new id and no stream yet.
    pub fn new(peer: SocketAddr, local: SocketAddr, buffer_limit: u32) -> ConnInfo {
        ConnInfo {
            peer,
            local,
            id: CONNECTION_IDS.fetch_add(1, Ordering::Relaxed),
            shared: Arc::new(super::h1_guard::ConnShared::default()),
            streams: StreamCount::new(),
            buffer_limit,
            buckets: Default::default(),
            protocol: Default::default(),
        }
    }

    /// This connection's token bucket for the local rate limit filter at `index`.
    pub fn local_bucket(
        &self,
        index: usize,
        config: ferry_config::filters::local_ratelimit::TokenBucket,
    ) -> Arc<crate::http::filters::local_ratelimit::Bucket> {
        self.buckets.get(index, config)
    }

    /// The access-log record of a stream the codec refused before it reached the
    /// router: no request, the connection's addresses, Envoy's flag and details.
    fn codec_error(
        &self,
        protocol: &'static str,
        flag: ResponseFlag,
        details: &'static str,
    ) -> StreamInfo {
        let mut response_flags = ferry_config::ResponseFlags::default();
        response_flags.set(flag);
        StreamInfo {
            protocol,
            response_code_details: Some(details),
            response_flags,
            downstream_remote: Some(self.peer),
            downstream_direct_remote: Some(self.peer),
            downstream_local: Some(self.local),
            connection_id: self.id,
            ..Default::default()
        }
    }

    /// A stream (request) starts; the returned guard ends it when dropped, with its
    /// response body.
    pub fn open_stream(self: &Arc<ConnInfo>, http2: bool) -> StreamGuard {
        if http2 {
            self.shared.http2.store(true, Ordering::Relaxed);
        }
        self.shared.active.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.clone())
    }

    /// Counts the connection's protocol in `stats` at its first stream.
    pub fn count_protocol(&self, http2: bool, stats: &HcmStats) {
        if self.protocol.load(Ordering::Relaxed) != 0 {
            return;
        }
        let p = if http2 { 2 } else { 1 };
        if self
            .protocol
            .compare_exchange(0, p, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            if http2 {
                stats.downstream_cx_http2_total.inc();
                stats.downstream_cx_http2_active.inc();
            } else {
                stats.downstream_cx_http1_total.inc();
                stats.downstream_cx_http1_active.inc();
            }
        }
    }

    /// Whether the connection has carried an HTTP/2 stream (an HTTP/1.1 connection's
    /// idleness is left to the codec).
    fn saw_http2(&self) -> bool {
        self.shared.http2.load(Ordering::Relaxed)
    }
}

/// Serves one downstream connection until it closes.
pub(crate) async fn serve(
    server: &Arc<Server>,
    hcm: Arc<HcmRuntime>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    buffer_limit: u32,
) {
    let cfg = hcm.config.clone();
    let conn = Arc::new(ConnInfo::new(peer, local, buffer_limit));
    let shared = conn.shared.clone();
    let stats = hcm.stats.clone();
    stats.downstream_cx_total.inc();
    stats.downstream_cx_active.inc();
    // ferry buffers nothing outside the codecs (Envoy's gauge moves with its buffers).
    stats.downstream_cx_rx_bytes_buffered.set(0);
    let opened = std::time::Instant::now();
    let idle_conn = conn.clone();
    let end_conn = conn.clone();
    let (loggers, log_conn) = (hcm.loggers.clone(), conn.clone());
    let header_bytes = (cfg.max_request_headers_kb as usize) * 1024;
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let hcm = hcm.clone();
        let conn = conn.clone();
        async move {
            if req.version() == http::Version::HTTP_2 {
                // Envoy's HTTP/2 codec resets such streams; HTTP/1.1 heads are the guard's.
                let refused = if header_list_size(&req) > header_bytes {
                    Some("http2.header_list_size_too_large")
                } else if req.headers().len() + 4 > hcm.config.max_headers_count as usize {
                    // The four pseudo-headers count, as in Envoy's header map.
                    Some("http2.too_many_headers")
                } else {
                    None
                };
                if let Some(details) = refused {
                    log_reset(&hcm, &conn, details);
                    return Err(HeaderListTooLarge);
                }
            }
            Ok(crate::http::stream::handle(hcm, conn, req).await)
        }
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    match cfg.codec_type {
        CodecType::Auto => {}
        CodecType::Http1 => builder = builder.http1_only(),
        CodecType::Http2 => builder = builder.http2_only(),
    }
    {
        let mut h1 = builder.http1();
        h1.timer(TokioTimer::new())
            // hyper's read buffer grows up to this; a head must fit whole. Bodies
            // stream through it, so it need not (and, for memory, should not) grow
            // to `per_connection_buffer_limit_bytes`.
            .max_buf_size(header_bytes.max(8192))
            .keep_alive(true);
        // The guard enforces `max_headers_count` (Envoy's 431). hyper parses up to 100
        // headers in place; a larger limit makes it allocate room for each parse.
        if cfg.max_headers_count as usize > 100 {
            h1.max_headers(cfg.max_headers_count as usize);
        }
        // Waiting for the next request's headers is what an idle keep-alive
        // connection does. `None` disables hyper's own 30 s default.
        h1.header_read_timeout(cfg.idle_timeout);
    }
    {
        let mut h2 = builder.http2();
        // `per_connection_buffer_limit_bytes` bounds what a stream may have in flight
        // toward us before the peer must wait (HTTP/2 flow control).
        // HTTP/2 windows must lie in [65535, 2^31-1].
        let window = |w: u32| w.clamp(65_535, (1 << 31) - 1);
        // Header lists are judged by the service (a reset, as Envoy does); h2 itself
        // answers 431 only beyond a far larger bound.
        h2.timer(TokioTimer::new())
            .max_header_list_size((header_bytes * 4).max(256 * 1024) as u32)
            .initial_stream_window_size(window(
                cfg.http2_initial_stream_window_size.unwrap_or(buffer_limit),
            ))
            .initial_connection_window_size(window(
                cfg.http2_initial_connection_window_size
                    .unwrap_or(buffer_limit),
            ));
        if let Some(n) = cfg.http2_max_concurrent_streams {
            h2.max_concurrent_streams(n);
        }
    }
    let limits = super::h1_guard::Limits {
        max_head_bytes: header_bytes,
        max_headers: cfg.max_headers_count as usize,
        server: match cfg.server_header {
            ferry_config::hcm::ServerHeader::PassThrough => None,
            _ => Some(cfg.server_name.clone()),
        },
    };
    let io = TokioIo::new(super::h1_guard::H1Guard::new(
        ferry_upstream::counted_io::CountedIo::new(stream, stats.clone()),
        shared,
        limits,
        refusal_log(&loggers, log_conn, stats.clone()),
    ));
    let conn_fut = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn_fut);
    let mut drain = server.drain_signal();
    let max_duration = async {
        match cfg.max_connection_duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(max_duration);
    // HTTP/2: close (GOAWAY) after `idle_timeout` without a stream in flight.
    let h2_idle = async {
        let Some(idle) = cfg
            .idle_timeout
            .filter(|_| cfg.codec_type != CodecType::Http1)
        else {
            return std::future::pending().await;
        };
        let h2_only = cfg.codec_type == CodecType::Http2;
        loop {
            match idle_conn.streams.idle_since(&idle_conn.shared.active) {
                Some(since) if since + idle <= Instant::now() => {
                    if h2_only || idle_conn.saw_http2() {
                        return;
                    }
                    // HTTP/1.1 (or not known yet): the codec's header timeout governs.
                    tokio::time::sleep(idle).await;
                }
                Some(since) => tokio::time::sleep_until(since + idle).await,
                None => tokio::time::sleep(idle).await,
            }
        }
    };
    tokio::pin!(h2_idle);
    let mut closing = false;
    loop {
        tokio::select! {
            res = conn_fut.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "downstream connection ended with an error");
                }
                break;
            }
            _ = drain.wait_for(|d| *d), if !closing => {
                closing = true;
                stats.downstream_cx_drain_close.inc();
                conn_fut.as_mut().graceful_shutdown();
            }
            _ = &mut max_duration, if !closing => {
                closing = true;
                stats.downstream_cx_max_duration_reached.inc();
                conn_fut.as_mut().graceful_shutdown();
            }
            _ = &mut h2_idle, if !closing => {
                closing = true;
                stats.downstream_cx_idle_timeout.inc();
                conn_fut.as_mut().graceful_shutdown();
            }
        }
    }
    // The connection is gone (Envoy's downstream_cx_destroy*).
    stats.downstream_cx_active.dec();
    stats.downstream_cx_destroy.inc();
    match end_conn.protocol.load(Ordering::Relaxed) {
        1 => stats.downstream_cx_http1_active.dec(),
        2 => stats.downstream_cx_http2_active.dec(),
        _ => {}
    }
    let with_requests = end_conn.shared.active.load(Ordering::Relaxed) > 0;
    if closing {
        stats.downstream_cx_destroy_local.inc();
    } else {
        stats.downstream_cx_destroy_remote.inc();
    }
    if with_requests {
        stats.downstream_cx_destroy_active_rq.inc();
        if closing {
            stats.downstream_cx_destroy_local_active_rq.inc();
        } else {
            stats.downstream_cx_destroy_remote_active_rq.inc();
        }
    }
    stats
        .downstream_cx_length_ms
        .record(crate::stats::ms_since(opened));
}

/// Whether any header mutation of the route configuration renders `%REQ(...)%`.
fn templates_read_request_headers(cfg: &HttpConnectionManager) -> bool {
    use ferry_config::access_log::{Operator, Piece};
    use ferry_config::route::{Action, ClusterSpecifier};
    use ferry_config::HeaderMutations;
    let reads = |m: &HeaderMutations| {
        m.request_add.iter().chain(m.response_add.iter()).any(|h| {
            h.value
                .pieces
                .iter()
                .any(|p| matches!(p, Piece::Op(Operator::Req(..), _)))
        })
    };
    let rc = &cfg.route_config;
    reads(&rc.headers)
        || rc.virtual_hosts.iter().any(|vh| {
            reads(&vh.headers)
                || vh.routes.iter().any(|r| {
                    reads(&r.headers)
                        || matches!(&r.action, Action::Route(ra) if matches!(&ra.cluster,
                            ClusterSpecifier::Weighted(w) if w.clusters.iter().any(|c| reads(&c.headers))))
                })
        })
}

fn resolve_routes(
    cfg: &HttpConnectionManager,
    clusters: &ClusterManager,
    filters: &[Arc<dyn crate::http::filter_manager::HttpFilter>],
    env: &crate::http::filters::Env<'_>,
) -> Vec<Vec<RouteTarget>> {
    use crate::http::filter_manager::RouteFilterConfigs;
    use ferry_config::route::{Action, ClusterSpecifier};
    cfg.route_config
        .virtual_hosts
        .iter()
        .map(|vh| {
            vh.routes
                .iter()
                .map(|r| match &r.action {
                    Action::Route(ra) => RouteTarget {
                        filters: RouteFilterConfigs::resolve(filters, &r.per_filter, env),
                        clusters: match &ra.cluster {
                            ClusterSpecifier::Name(n) => vec![clusters.get(n).cloned()],
                            ClusterSpecifier::Weighted(w) => w
                                .clusters
                                .iter()
                                .map(|c| clusters.get(&c.name).cloned())
                                .collect(),
                            ClusterSpecifier::Header(_) => Vec::new(),
                        },
                        expected_timeout: ra.timeout.and_then(|t| {
                            http::HeaderValue::from_str(&t.as_millis().to_string()).ok()
                        }),
                        mirrors: ra
                            .mirrors
                            .iter()
                            .map(|m| match &m.cluster {
                                ferry_config::retry::MirrorCluster::Name(n) => {
                                    clusters.get(n).cloned()
                                }
                                ferry_config::retry::MirrorCluster::Header(_) => None,
                            })
                            .collect(),
                    },
                    _ => RouteTarget {
                        filters: RouteFilterConfigs::resolve(filters, &r.per_filter, env),
                        ..RouteTarget::default()
                    },
                })
                .collect()
        })
        .collect()
}
