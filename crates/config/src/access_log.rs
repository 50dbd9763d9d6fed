//! Envoy's substitution format strings (`%REQ(X?Y):N%` and friends), used by access
//! logs and by `%VARIABLE%` values in `*_headers_to_add`; and access log sinks.

use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::accesslog::v3 as accesslog;
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
use ferry_envoy_api::pb::envoy::extensions::access_loggers::{
    file::v3 as file, stream::v3 as stream,
};
use std::borrow::Cow;

/// Envoy's default access log format.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// A command operator of a format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// `%START_TIME%` or `%START_TIME(strftime)%`.
    StartTime(Option<String>),
    /// `%REQ(main?alt)%`: a request header (or pseudo-header `:path`, `:method`, `:authority`, `:scheme`).
    Req(String, Option<String>),
    /// `%RESP(main?alt)%`: a response header.
    Resp(String, Option<String>),
    /// `%TRAILER(main?alt)%`: a response trailer.
    Trailer(String, Option<String>),
    /// `%PROTOCOL%`: HTTP/1.1, HTTP/2...
    Protocol,
    /// `%RESPONSE_CODE%`.
    ResponseCode,
    /// `%RESPONSE_CODE_DETAILS%`.
    ResponseCodeDetails,
    /// `%RESPONSE_FLAGS%`: NR, UH, UF...
    ResponseFlags,
    /// `%BYTES_RECEIVED%`: request body bytes.
    BytesReceived,
    /// `%BYTES_SENT%`: response body bytes.
    BytesSent,
    /// `%DURATION%`: ms from start to last byte sent.
    Duration,
    /// `%REQUEST_DURATION%`: ms from start to last request byte received.
    RequestDuration,
    /// `%RESPONSE_DURATION%`: ms from start to first upstream response byte.
    ResponseDuration,
    /// `%RESPONSE_TX_DURATION%`: ms from first upstream byte to last byte sent.
    ResponseTxDuration,
    /// `%UPSTREAM_HOST%`: ip:port of the upstream host.
    UpstreamHost,
    /// `%UPSTREAM_CLUSTER%`.
    UpstreamCluster,
    /// `%UPSTREAM_LOCAL_ADDRESS%`.
    UpstreamLocalAddress,
    /// `%UPSTREAM_REMOTE_ADDRESS%`.
    UpstreamRemoteAddress,
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`.
    DownstreamRemoteAddress,
    /// `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`.
    DownstreamRemoteAddressWithoutPort,
    /// `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%`.
    DownstreamDirectRemoteAddress,
    /// `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%`.
    DownstreamDirectRemoteAddressWithoutPort,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`.
    DownstreamLocalAddress,
    /// `%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%`.
    DownstreamLocalAddressWithoutPort,
    /// `%DOWNSTREAM_LOCAL_PORT%`.
    DownstreamLocalPort,
    /// `%REQUESTED_SERVER_NAME%`.
    RequestedServerName,
    /// `%ROUTE_NAME%`.
    RouteName,
    /// `%HOSTNAME%`.
    Hostname,
    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
    UpstreamTransportFailureReason,
    /// `%CONNECTION_ID%`.
    ConnectionId,
}

impl Operator {
    /// Whether the value is a number (rendered unquoted in JSON logs).
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            Operator::ResponseCode
                | Operator::BytesReceived
                | Operator::BytesSent
                | Operator::Duration
                | Operator::RequestDuration
                | Operator::ResponseDuration
                | Operator::ResponseTxDuration
                | Operator::DownstreamLocalPort
                | Operator::ConnectionId
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
            match parse_op(token) {
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

fn parse_op(token: &str) -> Result<(Operator, Option<usize>), String> {
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
        let arg = arg.ok_or_else(|| format!("%{name}% needs a header name"))?;
        let mut it = arg.splitn(2, '?');
        let main = it.next().unwrap_or_default().to_ascii_lowercase();
        let alt = it.next().map(str::to_ascii_lowercase);
        if main.is_empty() {
            return Err(format!("%{name}% needs a header name"));
        }
        Ok((main, alt))
    };
    let op = match name {
        "START_TIME" => Operator::StartTime(arg.map(str::to_string)),
        "REQ" => {
            let (a, b) = header_arg(arg)?;
            Operator::Req(a, b)
        }
        "RESP" => {
            let (a, b) = header_arg(arg)?;
            Operator::Resp(a, b)
        }
        "TRAILER" => {
            let (a, b) = header_arg(arg)?;
            Operator::Trailer(a, b)
        }
        "PROTOCOL" => Operator::Protocol,
        "RESPONSE_CODE" => Operator::ResponseCode,
        "RESPONSE_CODE_DETAILS" => Operator::ResponseCodeDetails,
        "RESPONSE_FLAGS" => Operator::ResponseFlags,
        "BYTES_RECEIVED" => Operator::BytesReceived,
        "BYTES_SENT" => Operator::BytesSent,
        "DURATION" => Operator::Duration,
        "REQUEST_DURATION" => Operator::RequestDuration,
        "RESPONSE_DURATION" => Operator::ResponseDuration,
        "RESPONSE_TX_DURATION" => Operator::ResponseTxDuration,
        "UPSTREAM_HOST" => Operator::UpstreamHost,
        "UPSTREAM_CLUSTER" => Operator::UpstreamCluster,
        "UPSTREAM_LOCAL_ADDRESS" => Operator::UpstreamLocalAddress,
        "UPSTREAM_REMOTE_ADDRESS" => Operator::UpstreamRemoteAddress,
        "DOWNSTREAM_REMOTE_ADDRESS" => Operator::DownstreamRemoteAddress,
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Operator::DownstreamRemoteAddressWithoutPort,
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => Operator::DownstreamDirectRemoteAddress,
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
            Operator::DownstreamDirectRemoteAddressWithoutPort
        }
        "DOWNSTREAM_LOCAL_ADDRESS" => Operator::DownstreamLocalAddress,
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => Operator::DownstreamLocalAddressWithoutPort,
        "DOWNSTREAM_LOCAL_PORT" => Operator::DownstreamLocalPort,
        "REQUESTED_SERVER_NAME" => Operator::RequestedServerName,
        "ROUTE_NAME" => Operator::RouteName,
        "HOSTNAME" => Operator::Hostname,
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => Operator::UpstreamTransportFailureReason,
        "CONNECTION_ID" => Operator::ConnectionId,
        other => return Err(format!("operator %{other}% is not supported")),
    };
    Ok((op, len))
}

/// Where an access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// `envoy.access_loggers.stdout`.
    Stdout,
    /// `envoy.access_loggers.stderr`.
    Stderr,
    /// `envoy.access_loggers.file` (`/dev/stdout` is stdout).
    File(std::path::PathBuf),
}

/// The format of an access log line.
#[derive(Debug, Clone)]
pub enum LogFormat {
    /// A text template (a line ends where the template says; Envoy's default ends in "\n").
    Text(Template),
    /// `json_format`: keys and templates (nested objects allowed), one JSON object per line.
    Json(Vec<(String, JsonField)>),
}

/// A value in a `json_format` object.
#[derive(Debug, Clone)]
pub enum JsonField {
    /// A template (numeric operators alone render as numbers).
    Template(Template),
    /// A nested object.
    Object(Vec<(String, JsonField)>),
    /// A literal number, boolean or null.
    Literal(serde_json::Value),
}

/// One access log of a listener or HCM.
#[derive(Debug, Clone)]
pub struct AccessLog {
    /// Where lines go.
    pub sink: Sink,
    /// How a line is formatted.
    pub format: LogFormat,
}

/// Converts `access_log` entries; unsupported loggers have been named by [`crate::support`].
pub fn from_proto(logs: &[accesslog::AccessLog], ctx: &mut Ctx) -> Vec<AccessLog> {
    use accesslog::access_log::ConfigType;
    let mut out = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        ctx.at(format!("[{i}]"), |c| {
            let Some(ConfigType::TypedConfig(any)) = &log.config_type else {
                c.error_at("typed_config", "is required");
                return;
            };
            let ty = any.type_url.rsplit('/').next().unwrap_or_default();
            let parsed = c.at("typed_config", |c| match ty {
                "envoy.extensions.access_loggers.file.v3.FileAccessLog" => {
                    let f: file::FileAccessLog = unpack(any, c)?;
                    let sink = Sink::File(f.path.clone().into());
                    let format = match (&f.access_log_format, f.path.is_empty()) {
                        (_, true) => {
                            c.error_at("path", "is required");
                            return None;
                        }
                        (None, _) => default_format(c),
                        (Some(file::file_access_log::AccessLogFormat::Format(s)), _) => {
                            c.at("format", |c| LogFormat::Text(Template::parse(s, c)))
                        }
                        (Some(file::file_access_log::AccessLogFormat::JsonFormat(j)), _) => {
                            c.at("json_format", |c| LogFormat::Json(json_fields(j, c)))
                        }
                        (Some(file::file_access_log::AccessLogFormat::LogFormat(s)), _) => {
                            c.at("log_format", |c| substitution(s, c))
                        }
                        (Some(_), _) => {
                            c.error("typed_json_format is not supported");
                            return None;
                        }
                    };
                    Some(AccessLog { sink, format })
                }
                "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog" => {
                    let s: stream::StdoutAccessLog = unpack(any, c)?;
                    let format = match &s.access_log_format {
                        None => default_format(c),
                        Some(stream::stdout_access_log::AccessLogFormat::LogFormat(f)) => {
                            c.at("log_format", |c| substitution(f, c))
                        }
                    };
                    Some(AccessLog {
                        sink: Sink::Stdout,
                        format,
                    })
                }
                "envoy.extensions.access_loggers.stream.v3.StderrAccessLog" => {
                    let s: stream::StderrAccessLog = unpack(any, c)?;
                    let format = match &s.access_log_format {
                        None => default_format(c),
                        Some(stream::stderr_access_log::AccessLogFormat::LogFormat(f)) => {
                            c.at("log_format", |c| substitution(f, c))
                        }
                    };
                    Some(AccessLog {
                        sink: Sink::Stderr,
                        format,
                    })
                }
                other => {
                    c.error(format!("{other} is not supported"));
                    None
                }
            });
            out.extend(parsed);
        });
    }
    out
}

fn unpack<T: prost::Message + Default + prost::Name>(
    any: &ferry_envoy_api::pb::google::protobuf::Any,
    c: &mut Ctx,
) -> Option<T> {
    match ferry_envoy_api::unpack::<T>(any) {
        Ok(v) => Some(v),
        Err(e) => {
            c.error(e.to_string());
            None
        }
    }
}

fn default_format(c: &mut Ctx) -> LogFormat {
    LogFormat::Text(Template::parse(DEFAULT_FORMAT, c))
}

fn substitution(s: &core::SubstitutionFormatString, c: &mut Ctx) -> LogFormat {
    use core::data_source::Specifier;
    use core::substitution_format_string::Format as F;
    match &s.format {
        Some(F::TextFormat(t)) => c.at("text_format", |c| LogFormat::Text(Template::parse(t, c))),
        Some(F::JsonFormat(j)) => c.at("json_format", |c| LogFormat::Json(json_fields(j, c))),
        Some(F::TextFormatSource(src)) => c.at("text_format_source", |c| match &src.specifier {
            Some(Specifier::InlineString(t)) => LogFormat::Text(Template::parse(t, c)),
            Some(Specifier::InlineBytes(b)) => {
                LogFormat::Text(Template::parse(&String::from_utf8_lossy(b), c))
            }
            Some(Specifier::Filename(f)) => match std::fs::read_to_string(f) {
                Ok(t) => LogFormat::Text(Template::parse(&t, c)),
                Err(e) => {
                    c.error_at("filename", format!("{f}: {e}"));
                    default_format(c)
                }
            },
            _ => {
                c.error("only inline_string, inline_bytes and filename are supported");
                default_format(c)
            }
        }),
        None => default_format(c),
    }
}

fn json_fields(
    s: &ferry_envoy_api::pb::google::protobuf::Struct,
    c: &mut Ctx,
) -> Vec<(String, JsonField)> {
    use ferry_envoy_api::pb::google::protobuf::value::Kind;
    let mut keys: Vec<&String> = s.fields.keys().collect();
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let v = &s.fields[k];
        let field = c.at(k.clone(), |c| match &v.kind {
            Some(Kind::StringValue(t)) => JsonField::Template(Template::parse(t, c)),
            Some(Kind::StructValue(inner)) => JsonField::Object(json_fields(inner, c)),
            Some(Kind::NumberValue(n)) => JsonField::Literal(serde_json::json!(n)),
            Some(Kind::BoolValue(b)) => JsonField::Literal(serde_json::Value::Bool(*b)),
            _ => JsonField::Literal(serde_json::Value::Null),
        });
        out.push((k.clone(), field));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
