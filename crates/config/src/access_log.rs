//! Access logs: their sinks (stdout, stderr, file, OpenTelemetry), formats (text or
//! JSON, from `crate::format`'s templates) and filters.

use crate::format::{Formatters, Template};
use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::accesslog::v3 as accesslog;
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
use ferry_envoy_api::pb::envoy::extensions::access_loggers::{
    file::v3 as file, stream::v3 as stream,
};
use ferry_envoy_api::pb::envoy::extensions::formatter::req_without_query::v3::ReqWithoutQuery;

/// Envoy's default access log format.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// Where an access log goes.
#[derive(Debug, Clone)]
pub enum Sink {
    /// `envoy.access_loggers.stdout`.
    Stdout,
    /// `envoy.access_loggers.stderr`.
    Stderr,
    /// `envoy.access_loggers.file` (`/dev/stdout` is stdout).
    File(std::path::PathBuf),
    /// `envoy.access_loggers.open_telemetry`: OTLP logs to a cluster.
    OpenTelemetry(std::sync::Arc<crate::otel_access_log::OtelAccessLog>),
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
    /// `filter`: which streams are logged (all when None).
    pub filter: Option<crate::access_log_filter::Filter>,
}

const FILE: &str = "envoy.extensions.access_loggers.file.v3.FileAccessLog";
const STDOUT: &str = "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
const STDERR: &str = "envoy.extensions.access_loggers.stream.v3.StderrAccessLog";
const OPEN_TELEMETRY: &str =
    "envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig";

/// Converts `access_log` entries.
pub fn from_proto(logs: &[accesslog::AccessLog], ctx: &mut Ctx) -> Vec<AccessLog> {
    use accesslog::access_log::ConfigType;
    let mut out = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        ctx.at(format!("[{i}]"), |c| {
            crate::fields!(c, log => accesslog::AccessLog {
                name, config_type: ["typed_config"], filter,
            });
            let Some(ConfigType::TypedConfig(any)) = &log.config_type else {
                c.error_at("typed_config", "is required");
                return;
            };
            let filter = log
                .filter
                .as_ref()
                .and_then(|f| c.at("filter", |c| crate::access_log_filter::from_proto(f, c)));
            let Some(ty) = crate::support::known_type(c, &log.name, any, &[FILE, STDOUT, STDERR, OPEN_TELEMETRY]) else {
                return;
            };
            let parsed = c.at("typed_config", |c| match ty {
                FILE => {
                    use file::file_access_log::AccessLogFormat as F;
                    let f: file::FileAccessLog = crate::any::unpack(any, c)?;
                    crate::fields!(c, &f => file::FileAccessLog as "envoy.access_loggers.file" {
                        path, access_log_format: ["format", "json_format", "log_format"],
                    });
                    let sink = Sink::File(f.path.clone().into());
                    // The format is converted (its errors reported) even without a path.
                    let format = match &f.access_log_format {
                        None => default_format(c),
                        Some(F::Format(s)) => {
                            c.at("format", |c| LogFormat::Text(Template::parse(s, c)))
                        }
                        Some(F::JsonFormat(j)) => c.at("json_format", |c| {
                            LogFormat::Json(json_fields(j, Formatters::default(), c))
                        }),
                        Some(F::LogFormat(s)) => c.at("log_format", |c| substitution(s, c)),
                        // Refused by `fields!`.
                        Some(F::TypedJsonFormat(_)) => return None,
                    };
                    if f.path.is_empty() {
                        c.error_at("path", "is required");
                        return None;
                    }
                    Some(AccessLog {
                        sink,
                        format,
                        filter: filter.clone(),
                    })
                }
                STDOUT => {
                    let s: stream::StdoutAccessLog = crate::any::unpack(any, c)?;
                    crate::fields!(c, &s => stream::StdoutAccessLog as "envoy.access_loggers.stdout" {
                        access_log_format: ["log_format"],
                    });
                    let format = match &s.access_log_format {
                        None => default_format(c),
                        Some(stream::stdout_access_log::AccessLogFormat::LogFormat(f)) => {
                            c.at("log_format", |c| substitution(f, c))
                        }
                    };
                    Some(AccessLog {
                        sink: Sink::Stdout,
                        format,
                        filter: filter.clone(),
                    })
                }
                STDERR => {
                    let s: stream::StderrAccessLog = crate::any::unpack(any, c)?;
                    crate::fields!(c, &s => stream::StderrAccessLog as "envoy.access_loggers.stderr" {
                        access_log_format: ["log_format"],
                    });
                    let format = match &s.access_log_format {
                        None => default_format(c),
                        Some(stream::stderr_access_log::AccessLogFormat::LogFormat(f)) => {
                            c.at("log_format", |c| substitution(f, c))
                        }
                    };
                    Some(AccessLog {
                        sink: Sink::Stderr,
                        format,
                        filter: filter.clone(),
                    })
                }
                OPEN_TELEMETRY => {
                    let o = crate::any::unpack(any, c)?;
                    let otel = crate::otel_access_log::from_proto(&o, c)?;
                    Some(AccessLog {
                        sink: Sink::OpenTelemetry(std::sync::Arc::new(otel)),
                        // Unused: the record's body and attributes have their own formats.
                        format: LogFormat::Text(Template { pieces: Vec::new() }),
                        filter: filter.clone(),
                    })
                }
                _ => None,
            });
            out.extend(parsed);
        });
    }
    out
}

fn default_format(c: &mut Ctx) -> LogFormat {
    LogFormat::Text(Template::parse(DEFAULT_FORMAT, c))
}

fn substitution(s: &core::SubstitutionFormatString, c: &mut Ctx) -> LogFormat {
    use core::data_source::Specifier;
    use core::substitution_format_string::Format as F;
    crate::fields!(c, s => core::SubstitutionFormatString {
        format: ["text_format", "json_format", "text_format_source"], formatters,
    } refused {
        omit_empty_values, content_type, json_format_options,
    });
    let mut fmt = Formatters::default();
    for (i, f) in s.formatters.iter().enumerate() {
        c.at(format!("formatters[{i}]"), |c| {
            crate::util::typed_extension_config_fields(f, c)
        });
        let Some(any) = &f.typed_config else {
            c.error_at(&format!("formatters[{i}].typed_config"), "is required");
            continue;
        };
        let known = ["envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery"];
        let ty = c.at(format!("formatters[{i}]"), |c| {
            crate::support::known_type(c, &f.name, any, &known)
        });
        if ty.is_some() {
            let r: Option<ReqWithoutQuery> = c.at(format!("formatters[{i}].typed_config"), |c| {
                crate::any::unpack(any, c)
            });
            if let Some(r) = &r {
                crate::fields!(c, r => ReqWithoutQuery as "envoy.formatter.req_without_query" {});
                fmt.req_without_query = true
            }
        }
    }
    if let Some(F::TextFormatSource(src)) = &s.format {
        c.at("text_format_source", |c| {
            crate::util::data_source_fields(src, c)
        });
    }
    let text = |t: &str, c: &mut Ctx| LogFormat::Text(Template::parse_with(t, fmt, c));
    match &s.format {
        Some(F::TextFormat(t)) => c.at("text_format", |c| text(t, c)),
        Some(F::JsonFormat(j)) => c.at("json_format", |c| LogFormat::Json(json_fields(j, fmt, c))),
        Some(F::TextFormatSource(src)) => c.at("text_format_source", |c| match &src.specifier {
            Some(Specifier::InlineString(t)) => text(t, c),
            Some(Specifier::InlineBytes(b)) => text(&String::from_utf8_lossy(b), c),
            Some(Specifier::Filename(f)) => match std::fs::read_to_string(f) {
                Ok(t) => text(&t, c),
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
    fmt: Formatters,
    c: &mut Ctx,
) -> Vec<(String, JsonField)> {
    use ferry_envoy_api::pb::google::protobuf::value::Kind;
    let mut keys: Vec<&String> = s.fields.keys().collect();
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let v = &s.fields[k];
        let field = c.at(k.clone(), |c| match &v.kind {
            Some(Kind::StringValue(t)) => JsonField::Template(Template::parse_with(t, fmt, c)),
            Some(Kind::StructValue(inner)) => JsonField::Object(json_fields(inner, fmt, c)),
            Some(Kind::NumberValue(n)) => JsonField::Literal(serde_json::json!(n)),
            Some(Kind::BoolValue(b)) => JsonField::Literal(serde_json::Value::Bool(*b)),
            _ => JsonField::Literal(serde_json::Value::Null),
        });
        out.push((k.clone(), field));
    }
    out
}
