//! `envoy.filters.network.http_connection_manager`: the HTTP codec for one downstream
//! connection (HTTP/1.1, HTTP/2 prior knowledge, or either by detection), its limits
//! and timeouts, and graceful close on drain.

use crate::access_log::Logger;
use crate::http::conn_manager::HcmRuntime;
use crate::http::connection::ConnInfo;
use crate::network::Drain;
use crate::stats::HcmStats;
use crate::stream_info::StreamInfo;
use ferry_config::hcm::CodecType;
use ferry_config::ResponseFlag;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

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

/// Serves one downstream connection until it closes.
pub(crate) async fn serve(hcm: Arc<HcmRuntime>, downstream: super::Downstream) {
    let super::Downstream {
        stream,
        peer,
        local,
        buffer_limit,
        mut drain,
        drain_time,
        mut shutdown,
    } = downstream;
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

    let builder = codec(&cfg, header_bytes, buffer_limit);
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
    let max_duration = async {
        match cfg.max_connection_duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(max_duration);
    // HTTP/2: close (GOAWAY) after `idle_timeout` without a stream in flight.
    let h2_idle = h2_idle(&cfg, &idle_conn);
    tokio::pin!(h2_idle);
    let mut closing = false;
    // An updated listener's HTTP/1.1 connection closes when still idle at this time.
    let idle_close = tokio::time::sleep(std::time::Duration::MAX);
    tokio::pin!(idle_close);
    let mut idle_close_set = false;
    loop {
        tokio::select! {
            res = conn_fut.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "downstream connection ended with an error");
                }
                break;
            }
            state = async {
                drain
                    .wait_for(|d| *d != Drain::Serving)
                    .await
                    .map(|d| *d)
                    .unwrap_or(Drain::Closing)
            }, if !closing && !idle_close_set => {
                if state == Drain::Updated && !end_conn.is_http2() {
                    // Told on its next response; closed when still idle at the end.
                    end_conn.start_draining();
                    idle_close.as_mut().reset(tokio::time::Instant::now() + drain_time);
                    idle_close_set = true;
                    continue;
                }
                closing = true;
                stats.downstream_cx_drain_close.inc();
                conn_fut.as_mut().graceful_shutdown();
            }
            _ = async { let _ = shutdown.wait_for(|d| *d).await; }, if !closing => {
                closing = true;
                stats.downstream_cx_drain_close.inc();
                conn_fut.as_mut().graceful_shutdown();
            }
            _ = end_conn.go_away.notified(), if !closing => {
                closing = true;
                stats.downstream_cx_drain_close.inc();
                conn_fut.as_mut().graceful_shutdown();
            }
            _ = &mut idle_close, if idle_close_set && !closing => {
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
    count_close(&stats, &end_conn, closing, opened);
}

/// The codec of one connection, configured from the connection manager: HTTP/1.1 and
/// HTTP/2 limits, timers and flow-control windows.
fn codec(
    cfg: &ferry_config::hcm::HttpConnectionManager,
    header_bytes: usize,
    buffer_limit: u32,
) -> auto::Builder<TokioExecutor> {
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
    builder
}

/// Resolves when an HTTP/2 connection has had no stream in flight for `idle_timeout`
/// (never for HTTP/1.1 connections, whose idleness is the codec's header timeout).
async fn h2_idle(cfg: &ferry_config::hcm::HttpConnectionManager, idle_conn: &ConnInfo) {
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
}

/// Counts a closed connection in Envoy's `downstream_cx_destroy*` and its length.
fn count_close(stats: &HcmStats, conn: &ConnInfo, closing: bool, opened: std::time::Instant) {
    stats.downstream_cx_active.dec();
    stats.downstream_cx_destroy.inc();
    match conn.protocol.load(Ordering::Relaxed) {
        1 => stats.downstream_cx_http1_active.dec(),
        2 => stats.downstream_cx_http2_active.dec(),
        _ => {}
    }
    let with_requests = conn.shared.active.load(Ordering::Relaxed) > 0;
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
