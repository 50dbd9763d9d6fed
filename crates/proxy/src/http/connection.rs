//! The downstream connection a stream arrived on, as its streams see it: addresses,
//! id, the HTTP/1.1 guard's shared state, the streams in flight, the connection's own
//! rate limit buckets, and the protocol counted.

use crate::stats::HcmStats;
use crate::stream_info::StreamInfo;
use ferry_config::ResponseFlag;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

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
    pub shared: Arc<crate::network::h1_guard::ConnShared>,
    /// HTTP/2 streams in flight, for the connection idle timeout.
    pub streams: StreamCount,
    /// The listener's `per_connection_buffer_limit_bytes` (caps what a request may
    /// buffer for retries and mirrors).
    pub buffer_limit: u32,
    /// Local rate limit buckets of this connection
    /// (`local_rate_limit_per_downstream_connection`).
    pub buckets: crate::token_bucket::ConnectionBuckets,
    /// The protocol counted in `downstream_cx_http{1,2}_*` (0 until the first stream,
    /// then 1 or 2).
    pub(crate) protocol: std::sync::atomic::AtomicU8,
    /// Draining (an updated listener): HTTP/1.1 responses say `connection: close`.
    draining: std::sync::atomic::AtomicBool,
    /// Woken when a stream finds the server draining: an HTTP/2 connection sends its
    /// GOAWAY.
    pub(crate) go_away: tokio::sync::Notify,
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
    pub(crate) fn idle_since(&self, active: &AtomicUsize) -> Option<Instant> {
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

impl ConnInfo {
    /// A connection's facts, with a new id and no stream yet.
    pub fn new(peer: SocketAddr, local: SocketAddr, buffer_limit: u32) -> ConnInfo {
        ConnInfo {
            peer,
            local,
            id: CONNECTION_IDS.fetch_add(1, Ordering::Relaxed),
            shared: Arc::new(crate::network::h1_guard::ConnShared::default()),
            streams: StreamCount::new(),
            buffer_limit,
            buckets: Default::default(),
            protocol: Default::default(),
            draining: Default::default(),
            go_away: tokio::sync::Notify::new(),
        }
    }

    /// From now on, HTTP/1.1 responses close the connection.
    pub(crate) fn start_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether HTTP/1.1 responses close the connection.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the connection speaks HTTP/2 (after its first stream).
    pub(crate) fn is_http2(&self) -> bool {
        self.protocol.load(std::sync::atomic::Ordering::Relaxed) == 2
    }

    /// This connection's token bucket for the local rate limit filter at `index`.
    pub fn local_bucket(
        &self,
        index: usize,
        config: crate::token_bucket::TokenBucket,
    ) -> Arc<crate::token_bucket::Bucket> {
        self.buckets.get(index, config)
    }

    /// The access-log record of a stream the codec refused before it reached the
    /// router: no request, the connection's addresses, Envoy's flag and details.
    pub(crate) fn codec_error(
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
    pub(crate) fn saw_http2(&self) -> bool {
        self.shared.http2.load(Ordering::Relaxed)
    }
}
