//! Local replies: the responses ferry makes itself, with Envoy's codes, bodies and
//! response flags. One place maps a failure to what the client sees: a
//! [`LocalReason`] (the router's and the connection manager's failures, upstream
//! errors classified by [`LocalReason::from_upstream`]) or a filter's [`LocalReply`]
//! becomes a response here, and its flag and details go into the stream's record.

use crate::stream_info::StreamInfo;
use bytes::Bytes;
use ferry_config::ResponseFlag;
use ferry_upstream::{Body, UpstreamError};
use http::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Empty, Full};

/// A local reply made by an HTTP filter.
#[derive(Debug)]
pub struct LocalReply {
    /// HTTP status (for gRPC requests, mapped to a gRPC status unless `grpc_status`).
    pub status: http::StatusCode,
    /// Body text.
    pub body: Option<String>,
    /// An explicit gRPC status (fault filter `grpc_status`).
    pub grpc_status: Option<u32>,
    /// Response flag, set on the stream when the reply is sent.
    pub flag: Option<ResponseFlag>,
    /// `%RESPONSE_CODE_DETAILS%`.
    pub details: &'static str,
    /// Extra response headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// The response for a filter's local reply (gRPC requests get a trailers-only gRPC
/// status), with its flag and details recorded in `info`.
pub fn filter_reply(reply: LocalReply, info: &mut StreamInfo) -> http::Response<Body> {
    let body = reply.body.as_deref();
    let mut resp = match (info.is_grpc, reply.grpc_status) {
        (true, Some(code)) => grpc_response_with_code(code, body),
        (true, None) => grpc_response(reply.status, body),
        (false, _) => response(
            reply.status,
            body.map(|b| Bytes::copy_from_slice(b.as_bytes())),
        ),
    };
    if let Some(f) = reply.flag {
        info.response_flags.set(f);
    }
    info.response_code_details = Some(reply.details);
    for (name, value) in reply.headers {
        resp.headers_mut().append(name, value);
    }
    resp
}

/// The response for `reason` (gRPC requests get a trailers-only gRPC status), with its
/// flag, details and transport `failure` recorded in `info`.
pub fn reason_reply(
    reason: LocalReason,
    failure: Option<String>,
    info: &mut StreamInfo,
) -> http::Response<Body> {
    info.upstream_failure = failure;
    let mut resp = if info.is_grpc && reason == LocalReason::MaxStreamDuration {
        // DEADLINE_EXCEEDED, as Envoy answers an expired gRPC stream.
        grpc_response_with_code(4, reason.body())
    } else if info.is_grpc {
        grpc_response(reason.status(), reason.body())
    } else {
        response(
            reason.status(),
            reason.body().map(|b| Bytes::from_static(b.as_bytes())),
        )
    };
    if let Some(f) = reason.flag() {
        info.response_flags.set(f);
    }
    info.response_code_details = Some(reason.details());
    if reason == LocalReason::Overflow {
        resp.headers_mut().insert(
            HeaderName::from_static("x-envoy-overloaded"),
            HeaderValue::from_static("true"),
        );
    }
    if reason == LocalReason::BadRequest {
        // A protocol error: the connection is not reused (Envoy closes it).
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

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

pub use crate::grpc_status::grpc_status_of;

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ferry_upstream::circuit_breaker::Resource;

    /// Every reason: status, flag, details — Envoy's, as the differential tests see them.
    #[test]
    fn every_reason_maps_to_envoys_status_flag_and_details() {
        use LocalReason as R;
        use ResponseFlag as F;
        let cases: &[(LocalReason, u16, Option<ResponseFlag>, &str)] = &[
            (R::NoRoute, 404, Some(F::NoRouteFound), "route_not_found"),
            (
                R::NoCluster(http::StatusCode::SERVICE_UNAVAILABLE),
                503,
                Some(F::NoClusterFound),
                "cluster_not_found",
            ),
            (
                R::NoHealthyUpstream,
                503,
                Some(F::NoHealthyUpstream),
                "no_healthy_upstream",
            ),
            (
                R::ConnectFailure,
                503,
                Some(F::UpstreamConnectionFailure),
                "upstream_reset_before_response_started{remote_connection_failure}",
            ),
            (
                R::UpstreamReset,
                503,
                Some(F::UpstreamConnectionTermination),
                "upstream_reset_before_response_started{connection_termination}",
            ),
            (
                R::UpstreamTimeout,
                504,
                Some(F::UpstreamRequestTimeout),
                "upstream_response_timeout",
            ),
            (R::UpgradeFailed, 403, None, "upgrade_failed"),
            (
                R::BadRequest,
                400,
                Some(F::DownstreamProtocolError),
                "http1.codec_error",
            ),
            (
                R::DownstreamReset,
                400,
                Some(F::DownstreamConnectionTermination),
                "downstream_remote_disconnect",
            ),
            (
                R::StreamIdleTimeout {
                    request_complete: true,
                },
                504,
                Some(F::StreamIdleTimeout),
                "stream_idle_timeout",
            ),
            (
                R::StreamIdleTimeout {
                    request_complete: false,
                },
                408,
                Some(F::StreamIdleTimeout),
                "stream_idle_timeout",
            ),
            (R::RequestTimeout, 408, None, "request_overall_timeout"),
            (
                R::Overflow,
                503,
                Some(F::UpstreamOverflow),
                "upstream_reset_before_response_started{overflow}",
            ),
            (
                R::PerTryTimeout,
                504,
                Some(F::UpstreamRequestTimeout),
                "upstream_per_try_timeout",
            ),
            (
                R::PerTryIdleTimeout,
                504,
                Some(F::UpstreamRequestTimeout),
                "upstream_per_try_idle_timeout",
            ),
            (
                R::RetryBufferOverflow,
                507,
                None,
                "request_payload_exceeded_retry_buffer_limit",
            ),
            (R::MaxStreamDuration, 504, None, "max_duration_timeout"),
        ];
        for (reason, status, flag, details) in cases {
            let mut info = StreamInfo::default();
            let resp = reason_reply(*reason, None, &mut info);
            assert_eq!(resp.status(), *status, "{reason:?}");
            let flags: Vec<ResponseFlag> = info.response_flags.iter().collect();
            assert_eq!(
                flags,
                flag.iter().copied().collect::<Vec<_>>(),
                "{reason:?}"
            );
            assert_eq!(info.response_code_details, Some(*details), "{reason:?}");
            let overloaded = resp.headers().get("x-envoy-overloaded").is_some();
            assert_eq!(overloaded, *reason == R::Overflow, "{reason:?}");
            let close = resp.headers().get(http::header::CONNECTION).is_some();
            assert_eq!(close, *reason == R::BadRequest, "{reason:?}");
        }
    }

    #[test]
    fn grpc_requests_get_a_trailers_only_status() {
        let mut info = StreamInfo {
            is_grpc: true,
            ..Default::default()
        };
        let resp = reason_reply(LocalReason::NoHealthyUpstream, None, &mut info);
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["grpc-status"], "14");
        assert_eq!(resp.headers()["grpc-message"], "no healthy upstream");
        let resp = reason_reply(LocalReason::MaxStreamDuration, None, &mut info);
        assert_eq!(resp.headers()["grpc-status"], "4");
    }

    #[test]
    fn upstream_errors_become_reasons_by_kind() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let cases = [
            (
                UpstreamError::ConnectFailure(refused),
                LocalReason::ConnectFailure,
            ),
            (UpstreamError::ConnectTimeout, LocalReason::ConnectFailure),
            (
                UpstreamError::ConnectionTermination("eof".into()),
                LocalReason::UpstreamReset,
            ),
            (
                UpstreamError::RemoteReset {
                    refused: true,
                    message: "refused".into(),
                },
                LocalReason::UpstreamReset,
            ),
            (
                UpstreamError::Overflow(Resource::Pending),
                LocalReason::Overflow,
            ),
        ];
        for (e, reason) in cases {
            assert_eq!(LocalReason::from_upstream(&e), reason, "{e:?}");
        }
        let timeout = transport_failure(&UpstreamError::ConnectTimeout);
        assert_eq!(timeout.as_deref(), Some("connection timeout"));
    }

    #[test]
    fn a_filter_reply_carries_its_flag_details_and_headers() {
        let mut info = StreamInfo::default();
        let reply = LocalReply {
            status: http::StatusCode::TOO_MANY_REQUESTS,
            body: Some("local_rate_limited".into()),
            grpc_status: None,
            flag: Some(ResponseFlag::RateLimited),
            details: "local_rate_limited",
            headers: vec![(
                HeaderName::from_static("x-ratelimit"),
                HeaderValue::from_static("1"),
            )],
        };
        let resp = filter_reply(reply, &mut info);
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["x-ratelimit"], "1");
        assert!(info.response_flags.has(ResponseFlag::RateLimited));
        assert_eq!(info.response_code_details, Some("local_rate_limited"));
    }
}
