//! Local replies: the responses ferry makes itself, with Envoy's codes, bodies and
//! response flags. One place maps a failure to what the client sees.

use bytes::Bytes;
use ferry_config::ResponseFlag;
use ferry_upstream::{Body, UpstreamError};
use http_body_util::{BodyExt, Empty, Full};

/// Why the proxy answered locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalReason {
    /// No virtual host or route matched: 404, NR.
    NoRoute,
    /// The route's cluster does not exist: `cluster_not_found_response_code`, NC.
    NoCluster(http::StatusCode),
    /// The cluster has no host to pick: 503, UH.
    NoHealthyUpstream,
    /// Connecting upstream failed: 503, UF.
    ConnectFailure,
    /// The upstream closed or reset before response headers: 503, UC.
    UpstreamReset,
    /// The route timeout elapsed before response headers: 504, UT.
    UpstreamTimeout,
    /// An upgrade the HCM does not allow: 403.
    UpgradeFailed,
    /// A malformed request (conflicting framing, a bad chunk): 400, DPE.
    BadRequest,
    /// The client went away before the response started: DC (nobody reads the reply).
    DownstreamReset,
    /// `stream_idle_timeout` before the response started: SI; 504 while waiting on the
    /// upstream (request complete), 408 while waiting on the client.
    StreamIdleTimeout {
        /// Whether the request had been received in full.
        request_complete: bool,
    },
    /// `request_timeout`: the request was not complete in time: 408.
    RequestTimeout,
    /// A circuit breaker is open (`max_requests`, `max_pending_requests`...): 503, UO,
    /// `x-envoy-overloaded: true`.
    Overflow,
    /// `per_try_timeout` on the last attempt: 504, UT.
    PerTryTimeout,
    /// `per_try_idle_timeout` on the last attempt: 504, UT.
    PerTryIdleTimeout,
    /// The request body outgrew the buffer limit while a retry waited: 507.
    RetryBufferOverflow,
    /// The route's `max_stream_duration` elapsed before the response: 504
    /// "downstream duration timeout" (gRPC: DEADLINE_EXCEEDED).
    MaxStreamDuration,
}

impl LocalReason {
    /// The status code.
    pub fn status(self) -> http::StatusCode {
        match self {
            LocalReason::NoRoute => http::StatusCode::NOT_FOUND,
            LocalReason::NoCluster(s) => s,
            LocalReason::NoHealthyUpstream
            | LocalReason::ConnectFailure
            | LocalReason::UpstreamReset => http::StatusCode::SERVICE_UNAVAILABLE,
            LocalReason::UpstreamTimeout => http::StatusCode::GATEWAY_TIMEOUT,
            LocalReason::UpgradeFailed => http::StatusCode::FORBIDDEN,
            LocalReason::BadRequest => http::StatusCode::BAD_REQUEST,
            LocalReason::DownstreamReset => http::StatusCode::BAD_REQUEST,
            LocalReason::StreamIdleTimeout {
                request_complete: true,
            } => http::StatusCode::GATEWAY_TIMEOUT,
            LocalReason::StreamIdleTimeout {
                request_complete: false,
            }
            | LocalReason::RequestTimeout => http::StatusCode::REQUEST_TIMEOUT,
            LocalReason::Overflow => http::StatusCode::SERVICE_UNAVAILABLE,
            LocalReason::PerTryTimeout | LocalReason::PerTryIdleTimeout => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            LocalReason::RetryBufferOverflow => http::StatusCode::INSUFFICIENT_STORAGE,
            LocalReason::MaxStreamDuration => http::StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Envoy's response flag.
    pub fn flag(self) -> Option<ResponseFlag> {
        Some(match self {
            LocalReason::NoRoute => ResponseFlag::NoRouteFound,
            LocalReason::NoCluster(_) => ResponseFlag::NoClusterFound,
            LocalReason::NoHealthyUpstream => ResponseFlag::NoHealthyUpstream,
            LocalReason::ConnectFailure => ResponseFlag::UpstreamConnectionFailure,
            LocalReason::UpstreamReset => ResponseFlag::UpstreamConnectionTermination,
            LocalReason::UpstreamTimeout
            | LocalReason::PerTryTimeout
            | LocalReason::PerTryIdleTimeout => ResponseFlag::UpstreamRequestTimeout,
            LocalReason::BadRequest => ResponseFlag::DownstreamProtocolError,
            LocalReason::DownstreamReset => ResponseFlag::DownstreamConnectionTermination,
            LocalReason::StreamIdleTimeout { .. } => ResponseFlag::StreamIdleTimeout,
            LocalReason::Overflow => ResponseFlag::UpstreamOverflow,
            LocalReason::UpgradeFailed
            | LocalReason::RequestTimeout
            | LocalReason::RetryBufferOverflow
            | LocalReason::MaxStreamDuration => return None,
        })
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%`.
    pub fn details(self) -> &'static str {
        match self {
            LocalReason::NoRoute => "route_not_found",
            LocalReason::NoCluster(_) => "cluster_not_found",
            LocalReason::NoHealthyUpstream => "no_healthy_upstream",
            LocalReason::ConnectFailure => {
                "upstream_reset_before_response_started{remote_connection_failure}"
            }
            LocalReason::UpstreamReset => {
                "upstream_reset_before_response_started{connection_termination}"
            }
            LocalReason::UpstreamTimeout => "upstream_response_timeout",
            LocalReason::UpgradeFailed => "upgrade_failed",
            LocalReason::BadRequest => "http1.codec_error",
            LocalReason::DownstreamReset => "downstream_remote_disconnect",
            LocalReason::StreamIdleTimeout { .. } => "stream_idle_timeout",
            LocalReason::RequestTimeout => "request_overall_timeout",
            LocalReason::Overflow => "upstream_reset_before_response_started{overflow}",
            LocalReason::PerTryTimeout => "upstream_per_try_timeout",
            LocalReason::PerTryIdleTimeout => "upstream_per_try_idle_timeout",
            LocalReason::RetryBufferOverflow => "request_payload_exceeded_retry_buffer_limit",
            LocalReason::MaxStreamDuration => "max_duration_timeout",
        }
    }

    /// The body Envoy sends (`None`: empty).
    pub fn body(self) -> Option<&'static str> {
        match self {
            LocalReason::NoRoute | LocalReason::NoCluster(_) | LocalReason::UpgradeFailed => None,
            LocalReason::BadRequest => Some("Bad Request"),
            LocalReason::DownstreamReset => None,
            LocalReason::StreamIdleTimeout { .. } => Some("stream timeout"),
            LocalReason::RequestTimeout => Some("request timeout"),
            LocalReason::NoHealthyUpstream => Some("no healthy upstream"),
            LocalReason::UpstreamTimeout => Some("upstream request timeout"),
            // Envoy 1.40 keeps the transport failure reason for the access log
            // (%UPSTREAM_TRANSPORT_FAILURE_REASON%), not the body.
            LocalReason::ConnectFailure => {
                Some("upstream connect error or disconnect/reset before headers. reset reason: remote connection failure")
            }
            LocalReason::UpstreamReset => {
                Some("upstream connect error or disconnect/reset before headers. reset reason: connection termination")
            }
            LocalReason::Overflow => {
                Some("upstream connect error or disconnect/reset before headers. reset reason: overflow")
            }
            LocalReason::PerTryTimeout | LocalReason::PerTryIdleTimeout => {
                Some("upstream request timeout")
            }
            LocalReason::RetryBufferOverflow => {
                Some("exceeded request buffer limit while retrying upstream")
            }
            LocalReason::MaxStreamDuration => Some("downstream duration timeout"),
        }
    }

    /// Classifies an upstream error.
    pub fn from_upstream(e: &UpstreamError) -> LocalReason {
        match e {
            UpstreamError::ConnectFailure(_) | UpstreamError::ConnectTimeout => {
                LocalReason::ConnectFailure
            }
            UpstreamError::Overflow(_) => LocalReason::Overflow,
            UpstreamError::ConnectionTermination(_)
            | UpstreamError::RemoteReset { .. }
            | UpstreamError::Protocol(_)
            | UpstreamError::RequestBody(_) => LocalReason::UpstreamReset,
        }
    }
}

/// Envoy's wording of a connect failure's transport reason.
pub fn transport_failure(e: &UpstreamError) -> Option<String> {
    match e {
        UpstreamError::ConnectFailure(io) => {
            Some(format!("delayed connect error: {}", io_reason(io)))
        }
        UpstreamError::ConnectTimeout => Some("connection timeout".into()),
        _ => None,
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "Connection refused".into(),
        std::io::ErrorKind::TimedOut => "Connection timed out".into(),
        _ => match e.raw_os_error() {
            Some(code) => format!("{code}"),
            None => e.to_string(),
        },
    }
}

/// Builds a local reply response.
pub fn response(status: http::StatusCode, body: Option<Bytes>) -> http::Response<Body> {
    let mut b = http::Response::builder().status(status);
    let body = match body {
        Some(bytes) if !bytes.is_empty() => {
            b = b
                .header(http::header::CONTENT_LENGTH, bytes.len())
                .header(http::header::CONTENT_TYPE, "text/plain");
            Full::new(bytes).map_err(|never| match never {}).boxed()
        }
        _ => Empty::new().map_err(|never| match never {}).boxed(),
    };
    match b.body(body) {
        Ok(r) => r,
        Err(_) => http::Response::new(Empty::new().map_err(|never| match never {}).boxed()),
    }
}

/// The gRPC status Envoy maps an HTTP status to (`Grpc::Utility::httpToGrpcStatus`).
pub fn grpc_status_of(http_status: u16) -> u32 {
    match http_status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// A local reply to a gRPC request, as Envoy sends it: HTTP 200, trailers-only, with
/// `grpc-status` mapped from the HTTP status and `grpc-message` from the body.
pub fn grpc_response(status: http::StatusCode, message: Option<&str>) -> http::Response<Body> {
    grpc_response_with_code(grpc_status_of(status.as_u16()), message)
}

/// A trailers-only gRPC response with this `grpc-status`.
pub fn grpc_response_with_code(code: u32, message: Option<&str>) -> http::Response<Body> {
    let mut resp = response(http::StatusCode::OK, None);
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", http::HeaderValue::from(code));
    if let Some(m) = message.and_then(|m| http::HeaderValue::from_str(m).ok()) {
        h.insert("grpc-message", m);
    }
    resp
}
