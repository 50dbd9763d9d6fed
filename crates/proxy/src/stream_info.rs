//! `StreamInfo`: the record of one HTTP stream or TCP connection that every stage
//! writes as the request goes (Envoy's `StreamInfo`), and that access logs, stats and
//! tracing read when it ends.

use ferry_config::access_log_filter::LogType;
use ferry_config::ResponseFlags;
use http::HeaderMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Everything about a finished (or finishing) HTTP stream or TCP connection.
#[derive(Debug, Clone, Default)]
pub struct StreamInfo {
    /// Which kind of log line this is (`%ACCESS_LOG_TYPE%`, `log_type_filter`).
    pub log_type: LogType,
    /// When the first request byte arrived.
    pub start_time: Option<SystemTime>,
    /// Request headers, with `:method`, `:path`, `:authority`, `:scheme` available.
    pub request_headers: HeaderMap,
    /// Request pseudo-headers.
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Authority (Host).
    pub authority: String,
    /// The path sent upstream when the route rewrote it: Envoy rewrites the request's
    /// `:path` in place, so logs see it (and the original in `x-envoy-original-path`).
    pub rewritten_path: Option<String>,
    /// The authority sent upstream when the route rewrote it (`x-envoy-original-host`).
    pub rewritten_authority: Option<String>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// HTTP/1.1, HTTP/2...
    pub protocol: &'static str,
    /// Response status.
    pub response_code: Option<u16>,
    /// Why the response is what it is (`via_upstream`, `route_not_found`...).
    pub response_code_details: Option<&'static str>,
    /// Response headers.
    pub response_headers: HeaderMap,
    /// Response trailers.
    pub response_trailers: HeaderMap,
    /// Envoy response flags (`NR`, `UH`, ...).
    pub response_flags: ResponseFlags,
    /// Request body bytes.
    pub bytes_received: u64,
    /// Response body bytes.
    pub bytes_sent: u64,
    /// Start to last byte sent (`DS_TX_END`).
    pub duration: Option<Duration>,
    /// Start to last request byte (`DS_RX_END`).
    pub request_duration: Option<Duration>,
    /// Start to first upstream response byte (`US_RX_BEG`).
    pub response_duration: Option<Duration>,
    /// Start to the response headers going downstream (`DS_TX_BEG`).
    pub first_byte_sent: Option<Duration>,
    /// The response body ended normally (not reset, not abandoned).
    pub response_complete: bool,
    /// Upstream attempts made (`%UPSTREAM_REQUEST_ATTEMPT_COUNT%`).
    pub attempt_count: u32,
    /// Upstream host address.
    pub upstream_host: Option<SocketAddr>,
    /// The upstream host (its hostname for `%UPSTREAM_HOST_NAME%`).
    pub host: Option<Arc<ferry_upstream::Host>>,
    /// The upstream connection of the response (recorded only when a log reads it).
    pub upstream_conn: Option<ferry_upstream::ConnectionInfo>,
    /// The upstream request's protocol (`%UPSTREAM_PROTOCOL%`).
    pub upstream_protocol: Option<&'static str>,
    /// Upstream cluster name.
    pub upstream_cluster: Option<Arc<str>>,
    /// The downstream remote address (the trusted client address from
    /// `x-forwarded-for` unless `use_remote_address`).
    pub downstream_remote: Option<SocketAddr>,
    /// The downstream peer of the connection.
    pub downstream_direct_remote: Option<SocketAddr>,
    /// Downstream local address.
    pub downstream_local: Option<SocketAddr>,
    /// The listener filter chain's `name` (`%FILTER_CHAIN_NAME%`).
    pub filter_chain_name: Option<Arc<str>>,
    /// Matched route name.
    pub route_name: Option<String>,
    /// Connection id.
    pub connection_id: u64,
    /// Upstream transport failure reason.
    pub upstream_failure: Option<String>,
    /// The stream's `x-request-id` (for `always_set_request_id_in_response`,
    /// `%STREAM_ID%` and the runtime filter's sampling).
    pub request_id: Option<http::HeaderValue>,
    /// A gRPC request (`content-type: application/grpc*`): local replies take gRPC form.
    pub is_grpc: bool,
    /// The health check filter answered (or passed through) this request as a health check.
    pub health_check: bool,
    /// The trace id of the stream's span (`%TRACE_ID%`), when it has a recorded span.
    pub trace_id: Option<String>,
    /// The tracing decision said "trace" (`traceable_filter`).
    pub traced: bool,
    /// The stream's span while it is open (sampled streams of a traced connection
    /// manager); the tracer takes it when the stream ends.
    pub span: Option<Box<crate::trace::span::Span>>,
}

impl StreamInfo {
    /// The gRPC status: `grpc-status` from the trailers, else the headers, else mapped
    /// from the HTTP status (Envoy's `Grpc::Common::getGrpcStatus`).
    pub fn grpc_status(&self) -> Option<u32> {
        let parse = |h: &HeaderMap| {
            h.get("grpc-status").map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .unwrap_or(u32::MAX)
            })
        };
        parse(&self.response_trailers)
            .or_else(|| parse(&self.response_headers))
            .or_else(|| {
                self.response_code
                    .filter(|c| *c != 0)
                    .map(crate::grpc_status::grpc_status_of)
            })
    }
}
