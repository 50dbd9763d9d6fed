//! Envoy's substitution format strings (`%REQ(X?Y):N%` and friends): the command
//! operators and templates that access logs, OTLP log records and `%VARIABLE%` header
//! values render.

use crate::Ctx;
use std::borrow::Cow;

/// A command operator of a format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// `%START_TIME%` or `%START_TIME(strftime)%`.
    StartTime(Option<String>),
    /// `%START_TIME_LOCAL%`: the start time in the local time zone.
    StartTimeLocal(Option<String>),
    /// `%EMIT_TIME%`: when the line is written.
    EmitTime(Option<String>),
    /// `%EMIT_TIME_LOCAL%`.
    EmitTimeLocal(Option<String>),
    /// `%REQ(main?alt)%`: a request header (or pseudo-header `:path`, `:method`, `:authority`, `:scheme`).
    Req(String, Option<String>),
    /// `%REQ_WITHOUT_QUERY(main?alt)%` (the `envoy.formatter.req_without_query`
    /// extension): a request header with its query string removed.
    ReqWithoutQuery(String, Option<String>),
    /// `%RESP(main?alt)%`: a response header.
    Resp(String, Option<String>),
    /// `%TRAILER(main?alt)%`: a response trailer.
    Trailer(String, Option<String>),
    /// `%PROTOCOL%`: HTTP/1.1, HTTP/2...
    Protocol,
    /// `%UPSTREAM_PROTOCOL%`: the protocol of the upstream request.
    UpstreamProtocol,
    /// `%RESPONSE_CODE%`.
    ResponseCode,
    /// `%RESPONSE_CODE_DETAILS%`.
    ResponseCodeDetails,
    /// `%RESPONSE_FLAGS%`: NR, UH, UF...
    ResponseFlags,
    /// `%RESPONSE_FLAGS_LONG%`: NoRouteFound, NoHealthyUpstream...
    ResponseFlagsLong,
    /// `%BYTES_RECEIVED%`: request body bytes.
    BytesReceived,
    /// `%BYTES_SENT%`: response body bytes.
    BytesSent,
    /// `%REQUEST_HEADERS_BYTES%`: names and values of the request headers.
    RequestHeadersBytes,
    /// `%RESPONSE_HEADERS_BYTES%`.
    ResponseHeadersBytes,
    /// `%RESPONSE_TRAILERS_BYTES%`.
    ResponseTrailersBytes,
    /// `%DURATION%`: ms from start to last byte sent.
    Duration,
    /// `%REQUEST_DURATION%`: ms from start to last request byte received.
    RequestDuration,
    /// `%REQUEST_TX_DURATION%`: ms from start to last request byte sent upstream.
    RequestTxDuration,
    /// `%RESPONSE_DURATION%`: ms from start to first upstream response byte.
    ResponseDuration,
    /// `%RESPONSE_TX_DURATION%`: ms from first upstream byte to last byte sent.
    ResponseTxDuration,
    /// `%COMMON_DURATION(START:END:PRECISION)%`.
    CommonDuration(TimePoint, TimePoint, Precision),
    /// `%UPSTREAM_REQUEST_ATTEMPT_COUNT%`.
    UpstreamRequestAttemptCount,
    /// `%UPSTREAM_HOST%`: ip:port of the upstream host.
    UpstreamHost,
    /// `%UPSTREAM_HOST_NAME%`: the host's hostname, else its address.
    UpstreamHostName,
    /// `%UPSTREAM_HOST_NAME_WITHOUT_PORT%`.
    UpstreamHostNameWithoutPort,
    /// `%UPSTREAM_CLUSTER%`.
    UpstreamCluster,
    /// `%UPSTREAM_CLUSTER_RAW%` (ferry has no `alt_stat_name`: the same name).
    UpstreamClusterRaw,
    /// `%UPSTREAM_LOCAL_ADDRESS%`.
    UpstreamLocalAddress,
    /// `%UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%`.
    UpstreamLocalAddressWithoutPort,
    /// `%UPSTREAM_LOCAL_PORT%`.
    UpstreamLocalPort,
    /// `%UPSTREAM_REMOTE_ADDRESS%`.
    UpstreamRemoteAddress,
    /// `%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`.
    UpstreamRemoteAddressWithoutPort,
    /// `%UPSTREAM_REMOTE_PORT%`.
    UpstreamRemotePort,
    /// `%UPSTREAM_CONNECTION_ID%` (0 when there was no upstream connection).
    UpstreamConnectionId,
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`.
    DownstreamRemoteAddress,
    /// `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`.
    DownstreamRemoteAddressWithoutPort,
    /// `%DOWNSTREAM_REMOTE_PORT%`.
    DownstreamRemotePort,
    /// `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%`.
    DownstreamDirectRemoteAddress,
    /// `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%`.
    DownstreamDirectRemoteAddressWithoutPort,
    /// `%DOWNSTREAM_DIRECT_REMOTE_PORT%`.
    DownstreamDirectRemotePort,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%` (and `DOWNSTREAM_DIRECT_LOCAL_ADDRESS`: no original
    /// destination restore in ferry, so they are the same).
    DownstreamLocalAddress,
    /// `%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%` (and the `DIRECT` form).
    DownstreamLocalAddressWithoutPort,
    /// `%DOWNSTREAM_LOCAL_PORT%` (and the `DIRECT` form).
    DownstreamLocalPort,
    /// `%REQUESTED_SERVER_NAME%`.
    RequestedServerName,
    /// `%ROUTE_NAME%`.
    RouteName,
    /// `%VIRTUAL_CLUSTER_NAME%` (ferry refuses `virtual_clusters`: always unset).
    VirtualClusterName,
    /// `%FILTER_CHAIN_NAME%`.
    FilterChainName,
    /// `%HOSTNAME%`.
    Hostname,
    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
    UpstreamTransportFailureReason,
    /// `%CONNECTION_ID%`.
    ConnectionId,
    /// `%STREAM_ID%`: the stream's request id.
    StreamId,
    /// `%UNIQUE_ID%`: a fresh UUID per rendering.
    UniqueId,
    /// `%ENVIRONMENT(X):Z%`: read once, when the config is loaded (as Envoy does).
    Environment(Option<String>),
    /// `%GRPC_STATUS(FORMAT)%` and `%GRPC_STATUS_NUMBER%`.
    GrpcStatus(GrpcStatusFormat),
    /// `%ACCESS_LOG_TYPE%`: `DownstreamEnd`, `TcpConnectionEnd`...
    AccessLogType,
    /// `%TRACE_ID%`: the trace id of the stream's span (`StreamInfo::trace_id`).
    TraceId,
    /// An operator Envoy knows whose data ferry never has (TLS properties while ferry
    /// has no TLS, dynamic metadata and filter state no ferry filter sets): always
    /// unset, rendered `-` as Envoy renders them when empty.
    Unset(&'static str),
}

/// The time points of `%COMMON_DURATION%` (Envoy's short names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimePoint {
    /// `DS_RX_BEG`: first downstream byte received (the stream's start).
    DownstreamRxBegin,
    /// `DS_RX_END`: last downstream byte received.
    DownstreamRxEnd,
    /// `US_CX_BEG`: upstream connect started (ferry does not record it: unset).
    UpstreamConnectBegin,
    /// `US_CX_END`: upstream connect completed (not recorded: unset).
    UpstreamConnectEnd,
    /// `US_HS_END`: upstream TLS handshake completed (no TLS: unset).
    UpstreamHandshakeEnd,
    /// `US_TX_BEG`: first upstream byte sent (not recorded: unset).
    UpstreamTxBegin,
    /// `US_TX_END`: last upstream byte sent.
    UpstreamTxEnd,
    /// `US_RX_BEG`: first upstream byte received.
    UpstreamRxBegin,
    /// `US_RX_END`: last upstream byte received.
    UpstreamRxEnd,
    /// `DS_TX_BEG`: first downstream byte sent.
    DownstreamTxBegin,
    /// `DS_TX_END`: last downstream byte sent.
    DownstreamTxEnd,
    /// A custom time point set by a filter (none in ferry: unset).
    Custom(String),
}

/// The unit of `%COMMON_DURATION%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// `ms` (the default).
    Millis,
    /// `us`.
    Micros,
    /// `ns`.
    Nanos,
}

/// How `%GRPC_STATUS%` renders a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcStatusFormat {
    /// `CAMEL_STRING` (default): `InvalidArgument`.
    Camel,
    /// `SNAKE_STRING`: `INVALID_ARGUMENT`.
    Snake,
    /// `NUMBER`: `3`.
    Number,
}

impl Operator {
    /// Whether the value is a number (rendered unquoted in JSON logs).
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            Operator::ResponseCode
                | Operator::BytesReceived
                | Operator::BytesSent
                | Operator::RequestHeadersBytes
                | Operator::ResponseHeadersBytes
                | Operator::ResponseTrailersBytes
                | Operator::Duration
                | Operator::RequestDuration
                | Operator::RequestTxDuration
                | Operator::ResponseDuration
                | Operator::ResponseTxDuration
                | Operator::CommonDuration(..)
                | Operator::UpstreamRequestAttemptCount
                | Operator::UpstreamLocalPort
                | Operator::UpstreamRemotePort
                | Operator::UpstreamConnectionId
                | Operator::DownstreamRemotePort
                | Operator::DownstreamDirectRemotePort
                | Operator::DownstreamLocalPort
                | Operator::ConnectionId
                | Operator::GrpcStatus(GrpcStatusFormat::Number)
        )
    }
}

/// One piece of a parsed format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text copied as is.
    Literal(String),
    /// An operator, with its optional `:N` length limit.
    Op(Operator, Option<usize>),
}

/// A parsed format string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    /// The pieces, in order.
    pub pieces: Vec<Piece>,
}

/// What a [`Template`] is rendered against: the request, response and connection.
pub trait Values {
    /// The value of `op`, or None when it is not available (rendered as `missing`).
    fn value(&self, op: &Operator) -> Option<Cow<'_, str>>;
}

impl Template {
    /// Parses a format string; unknown operators are errors at the current path.
    pub fn parse(text: &str, ctx: &mut Ctx) -> Template {
        Template::parse_with(text, Formatters::default(), ctx)
    }

    /// [`Template::parse`] with the format string's `formatters` extensions.
    pub fn parse_with(text: &str, fmt: Formatters, ctx: &mut Ctx) -> Template {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('%') {
            lit.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('%') {
                lit.push('%');
                rest = r;
                continue;
            }
            let Some(end) = find_op_end(rest) else {
                ctx.error(format!("unterminated operator in {text:?}"));
                lit.push('%');
                continue;
            };
            let token = &rest[..end];
            rest = &rest[end + 1..];
            match parse_op(token, fmt) {
                Ok((op, len)) => {
                    if !lit.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Op(op, len));
                }
                Err(e) => ctx.error(e),
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        Template { pieces }
    }

    /// A template that is plain text with no operators, if it is one.
    pub fn as_literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Renders into `out`; unavailable values become `missing` ("-" in logs, "" in headers).
    pub fn render(&self, values: &dyn Values, missing: &str, out: &mut String) {
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Op(op, len) => match values.value(op) {
                    Some(v) => match len {
                        Some(n) => out.extend(v.chars().take(*n)),
                        None => out.push_str(&v),
                    },
                    None => out.push_str(missing),
                },
            }
        }
    }
}

/// The `%` that closes an operator, skipping `%` inside parentheses.
fn find_op_end(s: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '%' if depth <= 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// Envoy's command syntax rules (`CommandSyntaxChecker`): whether an operator takes a
/// parameter and whether it takes a `:N` length.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// `COMMAND_ONLY`: neither.
    CommandOnly,
    /// `PARAMS_OPTIONAL`: a parameter may be given, no length.
    ParamsOptional,
    /// `PARAMS_REQUIRED`: a parameter must be given, no length.
    ParamsRequired,
    /// `PARAMS_REQUIRED | LENGTH_ALLOWED`.
    ParamsRequiredLength,
    /// `PARAMS_OPTIONAL | LENGTH_ALLOWED`.
    ParamsOptionalLength,
}

fn check_syntax(
    syntax: Syntax,
    name: &str,
    arg: Option<&str>,
    len: Option<usize>,
) -> Result<(), String> {
    let has_arg = arg.is_some_and(|a| !a.is_empty());
    match syntax {
        Syntax::CommandOnly if has_arg || len.is_some() => {
            return Err(format!("{name} does not take any parameters or length"))
        }
        Syntax::ParamsRequired | Syntax::ParamsRequiredLength if !has_arg => {
            return Err(format!("{name} requires parameters"))
        }
        Syntax::ParamsOptional | Syntax::ParamsRequired if len.is_some() => {
            return Err(format!("{name} does not allow length to be specified."))
        }
        _ => {}
    }
    Ok(())
}

/// Operators that Envoy renders from data ferry never has: always unset (`-`).
const UNSET: &[&str] = &[
    "DYNAMIC_METADATA",
    "FILTER_STATE",
    "UPSTREAM_FILTER_STATE",
    "CONNECTION_TERMINATION_DETAILS",
    "DOWNSTREAM_TRANSPORT_FAILURE_REASON",
    "DOWNSTREAM_HANDSHAKE_DURATION",
    "UPSTREAM_CONNECTION_POOL_READY_DURATION",
    "DOWNSTREAM_LOCAL_URI_SAN",
    "DOWNSTREAM_LOCAL_DNS_SAN",
    "DOWNSTREAM_LOCAL_IP_SAN",
    "DOWNSTREAM_LOCAL_EMAIL_SAN",
    "DOWNSTREAM_LOCAL_OTHERNAME_SAN",
    "DOWNSTREAM_LOCAL_SUBJECT",
    "DOWNSTREAM_PEER_URI_SAN",
    "DOWNSTREAM_PEER_DNS_SAN",
    "DOWNSTREAM_PEER_IP_SAN",
    "DOWNSTREAM_PEER_EMAIL_SAN",
    "DOWNSTREAM_PEER_OTHERNAME_SAN",
    "DOWNSTREAM_PEER_SUBJECT",
    "DOWNSTREAM_PEER_ISSUER",
    "DOWNSTREAM_PEER_SERIAL",
    "DOWNSTREAM_PEER_CERT",
    "DOWNSTREAM_PEER_CERT_V_START",
    "DOWNSTREAM_PEER_CERT_V_END",
    "DOWNSTREAM_PEER_FINGERPRINT_256",
    "DOWNSTREAM_PEER_FINGERPRINT_1",
    "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_256",
    "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_1",
    "DOWNSTREAM_PEER_CHAIN_SERIALS",
    "DOWNSTREAM_TLS_SESSION_ID",
    "DOWNSTREAM_TLS_CIPHER",
    "DOWNSTREAM_TLS_VERSION",
    "TLS_JA3_FINGERPRINT",
    "UPSTREAM_PEER_URI_SAN",
    "UPSTREAM_PEER_DNS_SAN",
    "UPSTREAM_PEER_IP_SAN",
    "UPSTREAM_LOCAL_URI_SAN",
    "UPSTREAM_LOCAL_DNS_SAN",
    "UPSTREAM_LOCAL_IP_SAN",
    "UPSTREAM_PEER_SUBJECT",
    "UPSTREAM_PEER_ISSUER",
    "UPSTREAM_PEER_CERT",
    "UPSTREAM_PEER_CERT_V_START",
    "UPSTREAM_PEER_CERT_V_END",
    "UPSTREAM_TLS_SESSION_ID",
    "UPSTREAM_TLS_CIPHER",
    "UPSTREAM_TLS_VERSION",
];

/// Extensions a format string may use besides the built-in operators
/// (`SubstitutionFormatString.formatters`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Formatters {
    /// `envoy.formatter.req_without_query`: `%REQ_WITHOUT_QUERY(...)%`.
    pub req_without_query: bool,
}

fn parse_op(token: &str, fmt: Formatters) -> Result<(Operator, Option<usize>), String> {
    // NAME, NAME(ARG), NAME(ARG):LEN, NAME:LEN
    let (head, len) = match token.rfind(':') {
        Some(i)
            if token[i + 1..].chars().all(|c| c.is_ascii_digit())
                && !token[i + 1..].is_empty()
                && !token[..i].ends_with('(') =>
        {
            let n = token[i + 1..].parse::<usize>().map_err(|e| e.to_string())?;
            (&token[..i], Some(n))
        }
        _ => (token, None),
    };
    let (name, arg) = match head.find('(') {
        Some(i) if head.ends_with(')') => (&head[..i], Some(&head[i + 1..head.len() - 1])),
        Some(_) => return Err(format!("malformed operator %{token}%")),
        None => (head, None),
    };
    let header_arg = |arg: Option<&str>| -> Result<(String, Option<String>), String> {
        let arg = arg.unwrap_or_default();
        let mut it = arg.splitn(2, '?');
        let main = it.next().unwrap_or_default().to_ascii_lowercase();
        let alt = it.next().map(str::to_ascii_lowercase);
        if main.is_empty() || alt.as_ref().is_some_and(|a| a.contains('?')) {
            return Err(format!("%{name}% needs a header name (X or X?Y)"));
        }
        Ok((main, alt))
    };
    use Syntax::*;
    let only = |op: Operator| (CommandOnly, Ok(op));
    let (syntax, op): (Syntax, Result<Operator, String>) = match name {
        "START_TIME" => (ParamsOptional, Ok(Operator::StartTime(time_format(arg)?))),
        "START_TIME_LOCAL" => (
            ParamsOptional,
            Ok(Operator::StartTimeLocal(time_format(arg)?)),
        ),
        "EMIT_TIME" => (ParamsOptional, Ok(Operator::EmitTime(time_format(arg)?))),
        "EMIT_TIME_LOCAL" => (
            ParamsOptional,
            Ok(Operator::EmitTimeLocal(time_format(arg)?)),
        ),
        "REQ" => (
            ParamsRequiredLength,
            header_arg(arg).map(|(a, b)| Operator::Req(a, b)),
        ),
        "REQ_WITHOUT_QUERY" if fmt.req_without_query => (
            ParamsRequiredLength,
            header_arg(arg).map(|(a, b)| Operator::ReqWithoutQuery(a, b)),
        ),
        "RESP" => (
            ParamsRequiredLength,
            header_arg(arg).map(|(a, b)| Operator::Resp(a, b)),
        ),
        "TRAILER" => (
            ParamsRequiredLength,
            header_arg(arg).map(|(a, b)| Operator::Trailer(a, b)),
        ),
        "PROTOCOL" => only(Operator::Protocol),
        "UPSTREAM_PROTOCOL" => only(Operator::UpstreamProtocol),
        "RESPONSE_CODE" => only(Operator::ResponseCode),
        "RESPONSE_CODE_DETAILS" => match arg {
            None | Some("") | Some("ALLOW_WHITESPACES") => {
                (ParamsOptional, Ok(Operator::ResponseCodeDetails))
            }
            Some(other) => (
                ParamsOptional,
                Err(format!("RESPONSE_CODE_DETAILS does not take {other:?}")),
            ),
        },
        "RESPONSE_FLAGS" => only(Operator::ResponseFlags),
        "RESPONSE_FLAGS_LONG" => only(Operator::ResponseFlagsLong),
        "BYTES_RECEIVED" => only(Operator::BytesReceived),
        "BYTES_SENT" => only(Operator::BytesSent),
        "REQUEST_HEADERS_BYTES" => only(Operator::RequestHeadersBytes),
        "RESPONSE_HEADERS_BYTES" => only(Operator::ResponseHeadersBytes),
        "RESPONSE_TRAILERS_BYTES" => only(Operator::ResponseTrailersBytes),
        "DURATION" => only(Operator::Duration),
        "REQUEST_DURATION" => only(Operator::RequestDuration),
        "REQUEST_TX_DURATION" => only(Operator::RequestTxDuration),
        "RESPONSE_DURATION" => only(Operator::ResponseDuration),
        "RESPONSE_TX_DURATION" => only(Operator::ResponseTxDuration),
        "COMMON_DURATION" => (ParamsRequired, common_duration(arg.unwrap_or_default())),
        "UPSTREAM_REQUEST_ATTEMPT_COUNT" => only(Operator::UpstreamRequestAttemptCount),
        "UPSTREAM_HOST" => only(Operator::UpstreamHost),
        "UPSTREAM_HOST_NAME" => only(Operator::UpstreamHostName),
        "UPSTREAM_HOST_NAME_WITHOUT_PORT" => only(Operator::UpstreamHostNameWithoutPort),
        "UPSTREAM_CLUSTER" => only(Operator::UpstreamCluster),
        "UPSTREAM_CLUSTER_RAW" => only(Operator::UpstreamClusterRaw),
        "UPSTREAM_LOCAL_ADDRESS" => only(Operator::UpstreamLocalAddress),
        "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => only(Operator::UpstreamLocalAddressWithoutPort),
        "UPSTREAM_LOCAL_PORT" => only(Operator::UpstreamLocalPort),
        "UPSTREAM_REMOTE_ADDRESS" => only(Operator::UpstreamRemoteAddress),
        "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => only(Operator::UpstreamRemoteAddressWithoutPort),
        "UPSTREAM_REMOTE_PORT" => only(Operator::UpstreamRemotePort),
        "UPSTREAM_CONNECTION_ID" => only(Operator::UpstreamConnectionId),
        "DOWNSTREAM_REMOTE_ADDRESS" => only(Operator::DownstreamRemoteAddress),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            only(Operator::DownstreamRemoteAddressWithoutPort)
        }
        "DOWNSTREAM_REMOTE_PORT" => only(Operator::DownstreamRemotePort),
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => only(Operator::DownstreamDirectRemoteAddress),
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
            only(Operator::DownstreamDirectRemoteAddressWithoutPort)
        }
        "DOWNSTREAM_DIRECT_REMOTE_PORT" => only(Operator::DownstreamDirectRemotePort),
        "DOWNSTREAM_LOCAL_ADDRESS" | "DOWNSTREAM_DIRECT_LOCAL_ADDRESS" => {
            only(Operator::DownstreamLocalAddress)
        }
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT"
        | "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT" => {
            only(Operator::DownstreamLocalAddressWithoutPort)
        }
        "DOWNSTREAM_LOCAL_PORT" | "DOWNSTREAM_DIRECT_LOCAL_PORT" => {
            only(Operator::DownstreamLocalPort)
        }
        "REQUESTED_SERVER_NAME" => only(Operator::RequestedServerName),
        "ROUTE_NAME" => only(Operator::RouteName),
        "VIRTUAL_CLUSTER_NAME" => only(Operator::VirtualClusterName),
        "FILTER_CHAIN_NAME" => only(Operator::FilterChainName),
        "HOSTNAME" => only(Operator::Hostname),
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => only(Operator::UpstreamTransportFailureReason),
        "CONNECTION_ID" => only(Operator::ConnectionId),
        "STREAM_ID" => only(Operator::StreamId),
        "UNIQUE_ID" => only(Operator::UniqueId),
        "ENVIRONMENT" => (
            ParamsRequiredLength,
            Ok(Operator::Environment(
                arg.and_then(|k| std::env::var(k).ok()).map(|mut v| {
                    if let Some(n) = len {
                        v = v.chars().take(n).collect();
                    }
                    v
                }),
            )),
        ),
        "GRPC_STATUS" => (
            ParamsOptional,
            match arg.unwrap_or_default() {
                "" | "CAMEL_STRING" => Ok(Operator::GrpcStatus(GrpcStatusFormat::Camel)),
                "SNAKE_STRING" => Ok(Operator::GrpcStatus(GrpcStatusFormat::Snake)),
                "NUMBER" => Ok(Operator::GrpcStatus(GrpcStatusFormat::Number)),
                _ => Err(
                    "GrpcStatusFormatter only supports CAMEL_STRING, SNAKE_STRING or NUMBER."
                        .to_string(),
                ),
            },
        ),
        "GRPC_STATUS_NUMBER" => only(Operator::GrpcStatus(GrpcStatusFormat::Number)),
        "ACCESS_LOG_TYPE" => only(Operator::AccessLogType),
        "TRACE_ID" => only(Operator::TraceId),
        "DYNAMIC_METADATA" => (
            ParamsRequiredLength,
            Ok(Operator::Unset("DYNAMIC_METADATA")),
        ),
        "FILTER_STATE" | "UPSTREAM_FILTER_STATE" => (
            ParamsOptionalLength,
            filter_state(arg.unwrap_or_default()).map(|()| {
                Operator::Unset(if name == "FILTER_STATE" {
                    "FILTER_STATE"
                } else {
                    "UPSTREAM_FILTER_STATE"
                })
            }),
        ),
        "DOWNSTREAM_PEER_CERT_V_START"
        | "DOWNSTREAM_PEER_CERT_V_END"
        | "UPSTREAM_PEER_CERT_V_START"
        | "UPSTREAM_PEER_CERT_V_END" => (
            ParamsOptional,
            Ok(Operator::Unset(
                UNSET.iter().copied().find(|n| *n == name).unwrap_or("TLS"),
            )),
        ),
        other => match UNSET.iter().copied().find(|n| *n == other) {
            Some(n) => only(Operator::Unset(n)),
            None => return Err(format!("operator %{other}% is not supported")),
        },
    };
    check_syntax(syntax, name, arg, len)?;
    // ENVIRONMENT is truncated once, when read; the length applies to nothing else.
    let len = if matches!(op, Ok(Operator::Environment(_))) {
        None
    } else {
        len
    };
    Ok((op?, len))
}

/// A `START_TIME(...)` format: refused when it would print a newline (Envoy).
fn time_format(arg: Option<&str>) -> Result<Option<String>, String> {
    match arg {
        None | Some("") => Ok(None),
        Some(f) if f.contains("%n") || f.contains("%En") || f.contains("%On") => {
            Err("Invalid header configuration. Format string contains newline.".into())
        }
        Some(f) => Ok(Some(f.to_string())),
    }
}

fn common_duration(arg: &str) -> Result<Operator, String> {
    let parts: Vec<&str> = arg.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(format!("Invalid common duration configuration: {arg}."));
    }
    let point = |p: &str| match p {
        "DS_RX_BEG" => TimePoint::DownstreamRxBegin,
        "DS_RX_END" => TimePoint::DownstreamRxEnd,
        "US_CX_BEG" => TimePoint::UpstreamConnectBegin,
        "US_CX_END" => TimePoint::UpstreamConnectEnd,
        "US_HS_END" => TimePoint::UpstreamHandshakeEnd,
        "US_TX_BEG" => TimePoint::UpstreamTxBegin,
        "US_TX_END" => TimePoint::UpstreamTxEnd,
        "US_RX_BEG" => TimePoint::UpstreamRxBegin,
        "US_RX_END" => TimePoint::UpstreamRxEnd,
        "DS_TX_BEG" => TimePoint::DownstreamTxBegin,
        "DS_TX_END" => TimePoint::DownstreamTxEnd,
        other => TimePoint::Custom(other.to_string()),
    };
    let precision = match parts.get(2) {
        None | Some(&"ms") => Precision::Millis,
        Some(&"us") => Precision::Micros,
        Some(&"ns") => Precision::Nanos,
        Some(other) => return Err(format!("Invalid common duration precision: {other}.")),
    };
    Ok(Operator::CommonDuration(
        point(parts[0]),
        point(parts[1]),
        precision,
    ))
}

/// Checks `FILTER_STATE(KEY:F:FIELD)` as Envoy does (no ferry filter sets filter state).
fn filter_state(arg: &str) -> Result<(), String> {
    let mut it = arg.splitn(3, ':');
    let key = it.next().unwrap_or_default();
    let ty = it.next().unwrap_or_default();
    let field = it.next().unwrap_or_default();
    if key.is_empty() {
        return Err("Invalid filter state configuration, key cannot be empty.".into());
    }
    if !matches!(ty, "" | "PLAIN" | "TYPED" | "FIELD") {
        return Err("Invalid filter state serialize type, only support PLAIN/TYPED/FIELD.".into());
    }
    if (ty == "FIELD") == field.is_empty() {
        return Err(
            "Invalid filter state serialize type, FIELD should be used with the field name.".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::DEFAULT_FORMAT;

    #[test]
    fn parses_default_format() {
        let mut c = Ctx::default();
        let t = Template::parse(DEFAULT_FORMAT, &mut c);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert!(t.pieces.contains(&Piece::Op(
            Operator::Req("x-envoy-original-path".into(), Some(":path".into())),
            None
        )));
    }

    #[test]
    fn parses_length_and_escape() {
        let mut c = Ctx::default();
        let t = Template::parse("%%a %REQ(user-agent):5% %START_TIME(%s)%", &mut c);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(t.pieces[0], Piece::Literal("%a ".into()));
        assert_eq!(
            t.pieces[1],
            Piece::Op(Operator::Req("user-agent".into(), None), Some(5))
        );
        assert_eq!(
            t.pieces[3],
            Piece::Op(Operator::StartTime(Some("%s".into())), None)
        );
    }

    #[test]
    fn unknown_operator_is_an_error() {
        let mut c = Ctx::default();
        Template::parse("%NOPE%", &mut c);
        assert_eq!(c.errors.len(), 1);
        assert!(c.errors[0].message.contains("NOPE"));
    }

    #[test]
    fn envoys_syntax_rules_hold() {
        for bad in [
            "%PROTOCOL:5%",
            "%START_TIME:5%",
            "%UPSTREAM_REMOTE_PORT(x)%",
            "%COMMON_DURATION(DS_RX_BEG)%",
            "%COMMON_DURATION(DS_RX_BEG:DS_TX_END:s)%",
            "%GRPC_STATUS(FOO)%",
            "%DYNAMIC_METADATA%",
            "%FILTER_STATE(:PLAIN)%",
            "%REQ_WITHOUT_QUERY(:path)%",
            "%CLUSTER_METADATA(a)%",
        ] {
            let mut c = Ctx::default();
            Template::parse(bad, &mut c);
            assert_eq!(c.errors.len(), 1, "{bad} must be refused");
        }
        let mut c = Ctx::default();
        let fmt = Formatters {
            req_without_query: true,
        };
        let t = Template::parse_with(
            "%REQ_WITHOUT_QUERY(:path):3% %ENVIRONMENT(X):2% %DOWNSTREAM_TLS_VERSION% %COMMON_DURATION(DS_RX_BEG:DS_TX_END:us)%",
            fmt,
            &mut c,
        );
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(
            t.pieces[0],
            Piece::Op(Operator::ReqWithoutQuery(":path".into(), None), Some(3))
        );
    }
}
