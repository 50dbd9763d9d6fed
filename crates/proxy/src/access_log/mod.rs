//! Access logs: the values of a finished stream, rendered with the configured format
//! ([`formatter`]), written by a background task per log file (or sent as OTLP log
//! records) so the request path never blocks on I/O. A log's `filter` decides, per
//! stream, whether it writes a line.

mod formatter;
mod open_telemetry;

use crate::stream_info::StreamInfo;
use ferry_config::access_log::{AccessLog, JsonField, LogFormat, Sink};
use ferry_config::access_log_filter::Filter;
use ferry_config::format::Operator;
use ferry_config::otel_access_log::OtelAccessLog;
use ferry_upstream::log_file::{LogFile, Target};
use std::sync::Arc;

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
    Otlp(Arc<OtelAccessLog>, open_telemetry::LogExporter),
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
                Output::Otlp(o.clone(), open_telemetry::LogExporter::start(o, snapshot))
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
        use ferry_config::format::{Piece, Template};
        let in_template = |t: &Template| {
            t.pieces
                .iter()
                .any(|p| matches!(p, Piece::Op(op, _) if pred(op)))
        };
        fn in_fields(
            fields: &[(String, JsonField)],
            f: &dyn Fn(&ferry_config::format::Template) -> bool,
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
                exporter.send(open_telemetry::log_record(config, info));
                return;
            }
        };
        let mut line = String::with_capacity(256);
        match &self.format {
            LogFormat::Text(t) => t.render(info, "-", &mut line),
            LogFormat::Json(fields) => {
                let v = formatter::json_object(fields, info);
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
            let view = crate::http::route_match::RequestView::of(info, &info.request_headers);
            crate::http::route_match::header_matches(m, &view)
        }
        Filter::ResponseFlag(flags) => {
            if flags.is_empty() {
                !info.response_flags.is_empty()
            } else {
                flags.iter().any(|f| info.response_flags.has(*f))
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
