//! Access logs: the values of a finished stream, rendered with the configured format,
//! written by a background task per log so the request path never blocks on I/O.

use ferry_config::access_log::{AccessLog, JsonField, LogFormat, Operator, Sink, Values};
use ferry_upstream::log_file::{LogFile, Target};
use http::HeaderMap;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// A configured access log with its writer.
#[derive(Debug, Clone)]
pub struct Logger {
    format: LogFormat,
    out: LogFile,
}

impl Logger {
    /// Starts the writer task for `log` on the current runtime.
    pub fn new(log: &AccessLog) -> Logger {
        let target = match &log.sink {
            Sink::Stdout => Target::Stdout,
            Sink::Stderr => Target::Stderr,
            Sink::File(p) => Target::path(p),
        };
        Logger {
            format: log.format.clone(),
            out: LogFile::open(target),
        }
    }

    /// Formats and queues one line.
    pub fn log(&self, record: &dyn Values) {
        let mut line = String::with_capacity(256);
        match &self.format {
            LogFormat::Text(t) => t.render(record, "-", &mut line),
            LogFormat::Json(fields) => {
                let v = json_object(fields, record);
                line = v.to_string();
                line.push('\n');
            }
        }
        self.out.write(line);
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
    /// Envoy response flags (`NR`, `UH`, ...), comma-separated when several.
    pub response_flags: Vec<&'static str>,
    /// Request body bytes.
    pub bytes_received: u64,
    /// Response body bytes.
    pub bytes_sent: u64,
    /// Start to last byte sent.
    pub duration: Option<Duration>,
    /// Start to last request byte.
    pub request_duration: Option<Duration>,
    /// Start to first upstream response byte.
    pub response_duration: Option<Duration>,
    /// Upstream host address.
    pub upstream_host: Option<SocketAddr>,
    /// Upstream cluster name.
    pub upstream_cluster: Option<String>,
    /// The downstream remote address (the trusted client address from
    /// `x-forwarded-for` unless `use_remote_address`).
    pub downstream_remote: Option<SocketAddr>,
    /// The downstream peer of the connection.
    pub downstream_direct_remote: Option<SocketAddr>,
    /// Downstream local address.
    pub downstream_local: Option<SocketAddr>,
    /// Matched route name.
    pub route_name: Option<String>,
    /// Connection id.
    pub connection_id: u64,
    /// Upstream transport failure reason.
    pub upstream_failure: Option<String>,
    /// The stream's `x-request-id` (for `always_set_request_id_in_response`).
    pub request_id: Option<http::HeaderValue>,
    /// A gRPC request (`content-type: application/grpc*`): local replies take gRPC form.
    pub is_grpc: bool,
}

/// Envoy's START_TIME default format.
fn format_time(t: SystemTime, fmt: Option<&str>) -> String {
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    match fmt {
        None => dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Some(f) => {
            // Envoy's %E3S / %E6S / %Es / %f extensions in chrono terms.
            let f = f
                .replace("%E3S", "%S%.3f")
                .replace("%E6S", "%S%.6f")
                .replace("%E9S", "%S%.9f")
                .replace("%Es", "%s");
            let mut out = String::new();
            use std::fmt::Write;
            if write!(out, "{}", dt.format(&f)).is_err() {
                return dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            }
            out
        }
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<Cow<'a, str>> {
    h.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()))
}

impl StreamInfo {
    fn request_header(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            // Empty for a head the codec refused: logged as "-".
            ":method" if !self.method.is_empty() => Some(Cow::Borrowed(self.method.as_str())),
            ":path" if !self.path.is_empty() => Some(Cow::Borrowed(self.path.as_str())),
            ":authority" | "host" if !self.authority.is_empty() => {
                Some(Cow::Borrowed(self.authority.as_str()))
            }
            ":scheme" => Some(Cow::Borrowed(self.scheme)),
            other => header(&self.request_headers, other),
        }
    }
}

fn ms(d: Option<Duration>) -> Option<Cow<'static, str>> {
    d.map(|d| Cow::Owned(d.as_millis().to_string()))
}

impl Values for StreamInfo {
    fn value(&self, op: &Operator) -> Option<Cow<'_, str>> {
        match op {
            Operator::StartTime(f) => self
                .start_time
                .map(|t| Cow::Owned(format_time(t, f.as_deref()))),
            Operator::Req(a, b) => self
                .request_header(a)
                .or_else(|| b.as_deref().and_then(|b| self.request_header(b))),
            Operator::Resp(a, b) => header(&self.response_headers, a)
                .or_else(|| b.as_deref().and_then(|b| header(&self.response_headers, b))),
            Operator::Trailer(a, b) => header(&self.response_trailers, a).or_else(|| {
                b.as_deref()
                    .and_then(|b| header(&self.response_trailers, b))
            }),
            Operator::Protocol => {
                (!self.protocol.is_empty()).then_some(Cow::Borrowed(self.protocol))
            }
            Operator::ResponseCode => Some(Cow::Owned(self.response_code.unwrap_or(0).to_string())),
            Operator::ResponseCodeDetails => self.response_code_details.map(Cow::Borrowed),
            Operator::ResponseFlags => Some(if self.response_flags.is_empty() {
                Cow::Borrowed("-")
            } else {
                Cow::Owned(self.response_flags.join(","))
            }),
            Operator::BytesReceived => Some(Cow::Owned(self.bytes_received.to_string())),
            Operator::BytesSent => Some(Cow::Owned(self.bytes_sent.to_string())),
            Operator::Duration => ms(self.duration),
            Operator::RequestDuration => ms(self.request_duration),
            Operator::ResponseDuration => ms(self.response_duration),
            Operator::ResponseTxDuration => match (self.duration, self.response_duration) {
                (Some(d), Some(r)) => ms(Some(d.saturating_sub(r))),
                _ => None,
            },
            Operator::UpstreamHost | Operator::UpstreamRemoteAddress => {
                self.upstream_host.map(|a| Cow::Owned(a.to_string()))
            }
            Operator::UpstreamCluster => self.upstream_cluster.as_deref().map(Cow::Borrowed),
            Operator::UpstreamLocalAddress => None,
            Operator::DownstreamRemoteAddress | Operator::DownstreamDirectRemoteAddress => {
                self.downstream_remote.map(|a| Cow::Owned(a.to_string()))
            }
            Operator::DownstreamRemoteAddressWithoutPort
            | Operator::DownstreamDirectRemoteAddressWithoutPort => self
                .downstream_remote
                .map(|a| Cow::Owned(a.ip().to_string())),
            Operator::DownstreamLocalAddress => {
                self.downstream_local.map(|a| Cow::Owned(a.to_string()))
            }
            Operator::DownstreamLocalAddressWithoutPort => self
                .downstream_local
                .map(|a| Cow::Owned(a.ip().to_string())),
            Operator::DownstreamLocalPort => self
                .downstream_local
                .map(|a| Cow::Owned(a.port().to_string())),
            Operator::RequestedServerName => None,
            Operator::RouteName => self.route_name.as_deref().map(Cow::Borrowed),
            Operator::Hostname => Some(Cow::Owned(hostname())),
            Operator::UpstreamTransportFailureReason => {
                self.upstream_failure.as_deref().map(Cow::Borrowed)
            }
            Operator::ConnectionId => Some(Cow::Owned(self.connection_id.to_string())),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
