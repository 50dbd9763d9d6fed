//! Access logs: the values of a finished stream, rendered with the configured format,
//! written by a background task per log file so the request path never blocks on I/O.
//! A log's `filter` decides, per stream, whether it writes a line.

use ferry_config::access_log::{
    AccessLog, GrpcStatusFormat, JsonField, LogFormat, Operator, Precision, Sink, TimePoint, Values,
};
use ferry_config::access_log_filter::{Filter, LogType, RESPONSE_FLAGS};
use ferry_config::otel_access_log::OtelAccessLog;
use ferry_upstream::log_file::{LogFile, Target};
use http::HeaderMap;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A configured access log with its writer.
#[derive(Debug, Clone)]
pub struct Logger {
    format: LogFormat,
    filter: Option<Filter>,
    out: Output,
}

/// Where a logger's records go.
#[derive(Debug, Clone)]
enum Output {
    /// Lines to a file (or a standard stream).
    File(LogFile),
    /// OTLP log records to a collector.
    Otlp(Arc<OtelAccessLog>, crate::otlp::LogExporter),
}

impl Logger {
    /// Opens `log`'s file through the snapshot's log files (shared with every log of the
    /// same path), or starts its OTLP exporter.
    pub fn new(log: &AccessLog, snapshot: &crate::Snapshot) -> Logger {
        let out = match &log.sink {
            Sink::Stdout => Output::File(snapshot.log_files.open(Target::Stdout)),
            Sink::Stderr => Output::File(snapshot.log_files.open(Target::Stderr)),
            Sink::File(p) => Output::File(snapshot.log_files.open(Target::path(p))),
            Sink::OpenTelemetry(o) => {
                Output::Otlp(o.clone(), crate::otlp::LogExporter::start(o, snapshot))
            }
        };
        Logger {
            format: log.format.clone(),
            filter: log.filter.clone(),
            out,
        }
    }

    /// Whether the log's format reads a value that `pred` picks.
    pub fn reads(&self, pred: &dyn Fn(&Operator) -> bool) -> bool {
        use ferry_config::access_log::{Piece, Template};
        let in_template = |t: &Template| {
            t.pieces
                .iter()
                .any(|p| matches!(p, Piece::Op(op, _) if pred(op)))
        };
        fn in_fields(
            fields: &[(String, JsonField)],
            f: &dyn Fn(&ferry_config::access_log::Template) -> bool,
        ) -> bool {
            fields.iter().any(|(_, v)| match v {
                JsonField::Template(t) => f(t),
                JsonField::Object(inner) => in_fields(inner, f),
                JsonField::Literal(_) => false,
            })
        }
        match &self.format {
            LogFormat::Text(t) => in_template(t),
            LogFormat::Json(fields) => in_fields(fields, &in_template),
        }
    }

    /// Formats and queues one line, unless the log's filter leaves the stream out.
    pub fn log(&self, info: &StreamInfo) {
        if let Some(f) = &self.filter {
            if !evaluate(f, info) {
                return;
            }
        }
        let out = match &self.out {
            Output::File(out) => out,
            Output::Otlp(config, exporter) => {
                exporter.send(crate::otlp::log_record(config, info));
                return;
            }
        };
        let mut line = String::with_capacity(256);
        match &self.format {
            LogFormat::Text(t) => t.render(info, "-", &mut line),
            LogFormat::Json(fields) => {
                let v = json_object(fields, info);
                line = v.to_string();
                line.push('\n');
            }
        }
        out.write(line);
    }
}

/// Whether `f` lets a line for `info` through (Envoy's `AccessLog::FilterImpl`s).
fn evaluate(f: &Filter, info: &StreamInfo) -> bool {
    match f {
        Filter::StatusCode(op, v) => op.holds(u64::from(info.response_code.unwrap_or(0)), *v),
        Filter::Duration(op, v) => match info.duration {
            Some(d) => op.holds(d.as_millis() as u64, *v),
            None => false,
        },
        Filter::NotHealthCheck => !info.health_check,
        Filter::Traceable => info.traced,
        Filter::Runtime {
            percent,
            independent,
        } => {
            // Envoy samples by the request id (its first 8 hex digits mod 10000) so
            // that every log of a request agrees, unless told to draw independently.
            let by_id = info
                .request_id
                .as_ref()
                .filter(|_| !independent)
                .and_then(|id| {
                    let hex = id.as_bytes().get(..8)?;
                    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
                })
                .map(|v| v % 10_000);
            let draw = by_id.unwrap_or_else(rand::random::<u64>);
            draw % u64::from(percent.denominator) < u64::from(percent.numerator)
        }
        Filter::And(fs) => fs.iter().all(|f| evaluate(f, info)),
        Filter::Or(fs) => fs.iter().any(|f| evaluate(f, info)),
        Filter::Header(m) => {
            let view = crate::http::route_match::RequestView {
                method: &info.method,
                path: &info.path,
                authority: &info.authority,
                scheme: info.scheme,
                headers: &info.request_headers,
                status: "",
            };
            crate::http::route_match::header_matches(m, &view)
        }
        Filter::ResponseFlag(flags) => {
            if flags.is_empty() {
                !info.response_flags.is_empty()
            } else {
                info.response_flags
                    .iter()
                    .any(|f| flags.iter().any(|w| w == f))
            }
        }
        Filter::GrpcStatus { statuses, exclude } => {
            // An unparseable status counts as Unknown (2), as in Envoy.
            let status = info.grpc_status().unwrap_or(2);
            statuses.contains(&status) != *exclude
        }
        Filter::LogType { types, exclude } => {
            Filter::log_type_matches(types, *exclude, info.log_type)
        }
    }
}

fn json_object(fields: &[(String, JsonField)], record: &dyn Values) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (k, f) in fields {
        let v = match f {
            JsonField::Literal(v) => v.clone(),
            JsonField::Object(inner) => json_object(inner, record),
            JsonField::Template(t) => {
                // A lone operator keeps its type: numbers as numbers, missing as null.
                if let [ferry_config::access_log::Piece::Op(op, None)] = t.pieces.as_slice() {
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
    pub response_flags: Vec<&'static str>,
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
    pub upstream_cluster: Option<String>,
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
    pub span: Option<Box<crate::trace::Span>>,
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
                    .map(crate::http::local_reply::grpc_status_of)
            })
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

    fn flags(&self, long: bool) -> Cow<'_, str> {
        if self.response_flags.is_empty() {
            return Cow::Borrowed("-");
        }
        // In the order they were set (as Envoy keeps them), each once.
        let mut out = String::new();
        for (i, flag) in self.response_flags.iter().enumerate() {
            if self.response_flags[..i].contains(flag) {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            let long = long
                .then(|| {
                    RESPONSE_FLAGS
                        .iter()
                        .find(|(s, _)| s == flag)
                        .map(|(_, l)| *l)
                })
                .flatten();
            out.push_str(long.unwrap_or(flag));
        }
        Cow::Owned(out)
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
            Operator::ResponseFlags => Some(self.flags(false)),
            Operator::ResponseFlagsLong => Some(self.flags(true)),
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
