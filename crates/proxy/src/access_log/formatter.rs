//! Access-log formatting: the value of each command operator for a stream
//! ([`Values`] for [`StreamInfo`]), and JSON log objects.

use crate::stream_info::StreamInfo;
use ferry_config::access_log::JsonField;
use ferry_config::format::{GrpcStatusFormat, Operator, Precision, TimePoint, Values};
use http::HeaderMap;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// A JSON log object: each field rendered from `record` (a lone operator keeps its type).
pub(crate) fn json_object(
    fields: &[(String, JsonField)],
    record: &dyn Values,
) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (k, f) in fields {
        let v = match f {
            JsonField::Literal(v) => v.clone(),
            JsonField::Object(inner) => json_object(inner, record),
            JsonField::Template(t) => {
                // A lone operator keeps its type: numbers as numbers, missing as null.
                if let [ferry_config::format::Piece::Op(op, None)] = t.pieces.as_slice() {
                    match record.value(op) {
                        None => serde_json::Value::Null,
                        Some(s) if op.is_numeric() => s
                            .parse::<i64>()
                            .map(serde_json::Value::from)
                            .unwrap_or(serde_json::Value::String(s.into_owned())),
                        Some(s) => serde_json::Value::String(s.into_owned()),
                    }
                } else {
                    let mut s = String::new();
                    t.render(record, "-", &mut s);
                    serde_json::Value::String(s)
                }
            }
        };
        map.insert(k.clone(), v);
    }
    serde_json::Value::Object(map)
}

/// Envoy's START_TIME default format; `local` adds the zone offset (`%z`).
fn format_time(t: SystemTime, fmt: Option<&str>, local: bool) -> String {
    match local {
        false => strftime(
            chrono::DateTime::<chrono::Utc>::from(t),
            fmt,
            "%Y-%m-%dT%H:%M:%S%.3fZ",
        ),
        true => strftime(
            chrono::DateTime::<chrono::Local>::from(t),
            fmt,
            "%Y-%m-%dT%H:%M:%S%.3f%z",
        ),
    }
}

fn strftime<Tz: chrono::TimeZone>(
    dt: chrono::DateTime<Tz>,
    fmt: Option<&str>,
    default: &str,
) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let Some(f) = fmt else {
        return dt.format(default).to_string();
    };
    // Envoy's %E3S / %E6S / %Es / %f extensions in chrono terms.
    let f = f
        .replace("%E3S", "%S%.3f")
        .replace("%E6S", "%S%.6f")
        .replace("%E9S", "%S%.9f")
        .replace("%Es", "%s");
    let mut out = String::new();
    use std::fmt::Write;
    if write!(out, "{}", dt.format(&f)).is_err() {
        return dt.format(default).to_string();
    }
    out
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<Cow<'a, str>> {
    h.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()))
}

/// Names and values of a header map, as Envoy's `HeaderMap::byteSize` counts them.
fn header_bytes(h: &HeaderMap, skip_host: bool) -> u64 {
    h.iter()
        .filter(|(n, _)| !(skip_host && *n == http::header::HOST))
        .map(|(n, v)| (n.as_str().len() + v.len()) as u64)
        .sum()
}

impl StreamInfo {
    fn request_header(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            // Empty for a head the codec refused: logged as "-".
            ":method" if !self.method.is_empty() => Some(Cow::Borrowed(self.method.as_str())),
            ":path" if self.rewritten_path.is_some() => {
                self.rewritten_path.as_deref().map(Cow::Borrowed)
            }
            "x-envoy-original-path" if self.rewritten_path.is_some() => {
                Some(Cow::Borrowed(self.path.as_str()))
            }
            ":authority" | "host" if self.rewritten_authority.is_some() => {
                self.rewritten_authority.as_deref().map(Cow::Borrowed)
            }
            "x-envoy-original-host" if self.rewritten_authority.is_some() => {
                Some(Cow::Borrowed(self.authority.as_str()))
            }
            ":path" if !self.path.is_empty() => Some(Cow::Borrowed(self.path.as_str())),
            ":authority" | "host" if !self.authority.is_empty() => {
                Some(Cow::Borrowed(self.authority.as_str()))
            }
            ":scheme" if !self.method.is_empty() => Some(Cow::Borrowed(self.scheme)),
            ":method" | ":path" | ":authority" | "host" | ":scheme" => None,
            other => header(&self.request_headers, other),
        }
    }

    fn req(&self, a: &str, b: Option<&str>) -> Option<Cow<'_, str>> {
        self.request_header(a)
            .or_else(|| b.and_then(|b| self.request_header(b)))
    }

    /// A `%COMMON_DURATION%` time point, as an offset from the start.
    fn time_point(&self, p: &TimePoint) -> Option<Duration> {
        let upstream = self.attempt_count > 0;
        match p {
            TimePoint::DownstreamRxBegin => self.start_time.map(|_| Duration::ZERO),
            TimePoint::DownstreamRxEnd => self.request_duration,
            // The request body streams upstream as it arrives: its last byte goes out
            // when it comes in.
            TimePoint::UpstreamTxEnd => self.request_duration.filter(|_| upstream),
            TimePoint::UpstreamRxBegin => self.response_duration,
            // Likewise the response body: its last byte is received as it is sent on.
            TimePoint::UpstreamRxEnd => self
                .duration
                .filter(|_| self.response_duration.is_some() && self.response_complete),
            TimePoint::DownstreamTxBegin => self.first_byte_sent,
            TimePoint::DownstreamTxEnd => self.duration.filter(|_| self.response_complete),
            TimePoint::UpstreamConnectBegin
            | TimePoint::UpstreamConnectEnd
            | TimePoint::UpstreamHandshakeEnd
            | TimePoint::UpstreamTxBegin
            | TimePoint::Custom(_) => None,
        }
    }
}

fn ms(d: Option<Duration>) -> Option<Cow<'static, str>> {
    d.map(|d| Cow::Owned(d.as_millis().to_string()))
}

fn num(n: impl ToString) -> Option<Cow<'static, str>> {
    Some(Cow::Owned(n.to_string()))
}

const GRPC_CAMEL: [&str; 17] = [
    "Ok",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

const GRPC_SNAKE: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl Values for StreamInfo {
    fn value(&self, op: &Operator) -> Option<Cow<'_, str>> {
        match op {
            Operator::StartTime(f) => self
                .start_time
                .map(|t| Cow::Owned(format_time(t, f.as_deref(), false))),
            Operator::StartTimeLocal(f) => self
                .start_time
                .map(|t| Cow::Owned(format_time(t, f.as_deref(), true))),
            Operator::EmitTime(f) => Some(Cow::Owned(format_time(
                SystemTime::now(),
                f.as_deref(),
                false,
            ))),
            Operator::EmitTimeLocal(f) => Some(Cow::Owned(format_time(
                SystemTime::now(),
                f.as_deref(),
                true,
            ))),
            Operator::Req(a, b) => self.req(a, b.as_deref()),
            Operator::ReqWithoutQuery(a, b) => self.req(a, b.as_deref()).map(|v| match v {
                Cow::Borrowed(s) => Cow::Borrowed(s.split('?').next().unwrap_or_default()),
                Cow::Owned(s) => Cow::Owned(s.split('?').next().unwrap_or_default().to_string()),
            }),
            Operator::Resp(a, b) => header(&self.response_headers, a)
                .or_else(|| b.as_deref().and_then(|b| header(&self.response_headers, b))),
            Operator::Trailer(a, b) => header(&self.response_trailers, a).or_else(|| {
                b.as_deref()
                    .and_then(|b| header(&self.response_trailers, b))
            }),
            Operator::Protocol => {
                (!self.protocol.is_empty()).then_some(Cow::Borrowed(self.protocol))
            }
            Operator::UpstreamProtocol => self.upstream_protocol.map(Cow::Borrowed),
            Operator::ResponseCode => num(self.response_code.unwrap_or(0)),
            Operator::ResponseCodeDetails => self.response_code_details.map(Cow::Borrowed),
            Operator::ResponseFlags => Some(Cow::Owned(
                self.response_flags
                    .render(false)
                    .unwrap_or_else(|| "-".into()),
            )),
            Operator::ResponseFlagsLong => Some(Cow::Owned(
                self.response_flags
                    .render(true)
                    .unwrap_or_else(|| "-".into()),
            )),
            Operator::BytesReceived => num(self.bytes_received),
            Operator::BytesSent => num(self.bytes_sent),
            Operator::RequestHeadersBytes => num(self.request_headers_bytes()),
            Operator::ResponseHeadersBytes => num(match self.response_code {
                // `:status` and its three digits.
                Some(c) if c > 0 => 10 + header_bytes(&self.response_headers, false),
                _ => 0,
            }),
            Operator::ResponseTrailersBytes => num(header_bytes(&self.response_trailers, false)),
            Operator::Duration => ms(self.duration),
            Operator::RequestDuration => ms(self.request_duration),
            Operator::RequestTxDuration => ms(self.time_point(&TimePoint::UpstreamTxEnd)),
            Operator::ResponseDuration => ms(self.response_duration),
            Operator::ResponseTxDuration => match (self.duration, self.response_duration) {
                (Some(d), Some(r)) => ms(Some(d.saturating_sub(r))),
                _ => None,
            },
            Operator::CommonDuration(a, b, precision) => {
                let (a, b) = (self.time_point(a)?, self.time_point(b)?);
                let d = b.checked_sub(a)?;
                num(match precision {
                    Precision::Millis => d.as_millis(),
                    Precision::Micros => d.as_micros(),
                    Precision::Nanos => d.as_nanos(),
                })
            }
            Operator::UpstreamRequestAttemptCount => num(self.attempt_count),
            Operator::UpstreamLocalAddress => self
                .upstream_conn
                .and_then(|c| c.local)
                .map(|a| Cow::Owned(a.to_string())),
            Operator::UpstreamLocalAddressWithoutPort => self
                .upstream_conn
                .and_then(|c| c.local)
                .map(|a| Cow::Owned(a.ip().to_string())),
            Operator::UpstreamLocalPort => self
                .upstream_conn
                .and_then(|c| c.local)
                .and_then(|a| num(a.port())),
            Operator::UpstreamConnectionId => num(self.upstream_conn.map_or(0, |c| c.id)),
            Operator::UpstreamHost | Operator::UpstreamRemoteAddress => {
                self.upstream_host.map(|a| Cow::Owned(a.to_string()))
            }
            Operator::UpstreamRemoteAddressWithoutPort => {
                self.upstream_host.map(|a| Cow::Owned(a.ip().to_string()))
            }
            Operator::UpstreamRemotePort => self.upstream_host.and_then(|a| num(a.port())),
            Operator::UpstreamHostName | Operator::UpstreamHostNameWithoutPort => {
                let host = self.host.as_ref()?;
                let name = if host.hostname.is_empty() {
                    Cow::Owned(host.address.to_string())
                } else {
                    Cow::Borrowed(host.hostname.as_str())
                };
                if matches!(op, Operator::UpstreamHostNameWithoutPort) {
                    let bare = ferry_config::route::strip_port(&name).to_string();
                    Some(Cow::Owned(bare))
                } else {
                    Some(name)
                }
            }
            Operator::UpstreamCluster | Operator::UpstreamClusterRaw => {
                self.upstream_cluster.as_deref().map(Cow::Borrowed)
            }
            Operator::DownstreamRemoteAddress => {
                self.downstream_remote.map(|a| Cow::Owned(a.to_string()))
            }
            Operator::DownstreamRemoteAddressWithoutPort => self
                .downstream_remote
                .map(|a| Cow::Owned(a.ip().to_string())),
            Operator::DownstreamRemotePort => self.downstream_remote.and_then(|a| num(a.port())),
            Operator::DownstreamDirectRemoteAddress => {
                self.direct_remote().map(|a| Cow::Owned(a.to_string()))
            }
            Operator::DownstreamDirectRemoteAddressWithoutPort => {
                self.direct_remote().map(|a| Cow::Owned(a.ip().to_string()))
            }
            Operator::DownstreamDirectRemotePort => {
                self.direct_remote().and_then(|a| num(a.port()))
            }
            Operator::DownstreamLocalAddress => {
                self.downstream_local.map(|a| Cow::Owned(a.to_string()))
            }
            Operator::DownstreamLocalAddressWithoutPort => self
                .downstream_local
                .map(|a| Cow::Owned(a.ip().to_string())),
            Operator::DownstreamLocalPort => self.downstream_local.and_then(|a| num(a.port())),
            Operator::RequestedServerName | Operator::VirtualClusterName => None,
            Operator::FilterChainName => self.filter_chain_name.as_deref().map(Cow::Borrowed),
            Operator::RouteName => self.route_name.as_deref().map(Cow::Borrowed),
            Operator::Hostname => Some(Cow::Owned(hostname())),
            Operator::UpstreamTransportFailureReason => self
                .upstream_failure
                .as_deref()
                .filter(|r| !r.is_empty())
                .map(|r| Cow::Owned(r.replace(' ', "_"))),
            Operator::ConnectionId => num(self.connection_id),
            Operator::StreamId => self
                .request_id
                .as_ref()
                .map(|v| String::from_utf8_lossy(v.as_bytes())),
            Operator::UniqueId => Some(Cow::Owned(uuid::Uuid::new_v4().to_string())),
            Operator::Environment(v) => Some(Cow::Owned(v.as_deref().unwrap_or("-").to_string())),
            Operator::GrpcStatus(format) => {
                if !self.is_grpc {
                    return None;
                }
                let code = self.grpc_status()?;
                let names = match format {
                    GrpcStatusFormat::Number => return num(code),
                    GrpcStatusFormat::Camel => &GRPC_CAMEL,
                    GrpcStatusFormat::Snake => &GRPC_SNAKE,
                };
                match names.get(code as usize) {
                    Some(n) => Some(Cow::Borrowed(n)),
                    None => num(code),
                }
            }
            Operator::AccessLogType => Some(Cow::Borrowed(self.log_type.name())),
            Operator::TraceId => self.trace_id.as_deref().map(Cow::Borrowed),
            Operator::Unset(_) => None,
        }
    }
}

impl StreamInfo {
    /// The peer of the connection (the remote address when only that is known).
    fn direct_remote(&self) -> Option<SocketAddr> {
        self.downstream_direct_remote.or(self.downstream_remote)
    }

    /// Envoy's request header map size: the pseudo-headers (`:authority` stands for
    /// `host`) and every header's name and value.
    fn request_headers_bytes(&self) -> u64 {
        if self.method.is_empty() {
            return 0;
        }
        let pseudo = [
            (":method", self.method.len()),
            (":path", self.path.len()),
            (":authority", self.authority.len()),
            (":scheme", self.scheme.len()),
        ];
        let pseudo: usize = pseudo.iter().map(|(n, v)| n.len() + v).sum();
        pseudo as u64 + header_bytes(&self.request_headers, true)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
