//! Active health checking (`Cluster.health_checks`): HTTP, TCP and gRPC checks with
//! Envoy's intervals, thresholds and defaults.

use crate::matcher::{string_matcher, StringMatcher};
use crate::util::{duration, AppendAction, HeaderMutations};
use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
use std::path::PathBuf;
use std::time::Duration;

/// Envoy's default `no_traffic_interval`.
pub const DEFAULT_NO_TRAFFIC_INTERVAL: Duration = Duration::from_secs(60);

/// One active health check of a cluster (Envoy supports a single one per cluster).
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// `timeout`: how long a check may take before it fails (`NETWORK_TIMEOUT`).
    pub timeout: Duration,
    /// `interval` between checks of a host that passes.
    pub interval: Duration,
    /// `initial_jitter`: the first check waits a random time below this (0 = at once).
    pub initial_jitter: Duration,
    /// `interval_jitter`: a random time below this is added to every interval.
    pub interval_jitter: Duration,
    /// `interval_jitter_percent`: a random part below this percentage of the interval is added.
    pub interval_jitter_percent: u32,
    /// `unhealthy_threshold`: failures (network ones, or retriable statuses) before a
    /// healthy host is marked unhealthy.
    pub unhealthy_threshold: u32,
    /// `healthy_threshold`: successes before an unhealthy host is marked healthy (the
    /// very first check needs one).
    pub healthy_threshold: u32,
    /// `alt_port`: check this port instead of the host's.
    pub alt_port: Option<u16>,
    /// `reuse_connection` (default true): keep the connection between checks.
    pub reuse_connection: bool,
    /// `no_traffic_interval` (default 60 s): used until the cluster has had traffic.
    pub no_traffic_interval: Duration,
    /// `no_traffic_healthy_interval` (default `no_traffic_interval`): the same, for hosts
    /// that pass.
    pub no_traffic_healthy_interval: Duration,
    /// `unhealthy_interval` (default `interval`): between checks of a failing host.
    pub unhealthy_interval: Duration,
    /// `unhealthy_edge_interval` (default `unhealthy_interval`): after a failure that has
    /// not yet crossed `unhealthy_threshold`.
    pub unhealthy_edge_interval: Duration,
    /// `healthy_edge_interval` (default `interval`): after a success that has not yet
    /// crossed `healthy_threshold`.
    pub healthy_edge_interval: Duration,
    /// `always_log_health_check_failures`: log every failure to the event logs, not
    /// only the first check's and the transitions.
    pub always_log_health_check_failures: bool,
    /// `always_log_health_check_success`: log every success, not only transitions.
    pub always_log_health_check_success: bool,
    /// Files health check events are appended to, one JSON object per line: the
    /// deprecated `event_log_path`, then each `event_logger` of type
    /// `envoy.health_check.event_sink.file`.
    pub event_logs: Vec<PathBuf>,
    /// What is checked.
    pub kind: HealthCheckKind,
}

/// The kind of check (`health_checker` oneof).
#[derive(Debug, Clone)]
pub enum HealthCheckKind {
    /// `http_health_check`.
    Http(HttpHealthCheck),
    /// `tcp_health_check`.
    Tcp(TcpHealthCheck),
    /// `grpc_health_check`.
    Grpc(GrpcHealthCheck),
}

/// `http_health_check`.
#[derive(Debug, Clone)]
pub struct HttpHealthCheck {
    /// `host`: the `Host`/`:authority` of the check (default: the cluster's name).
    pub host: Option<String>,
    /// `path`.
    pub path: String,
    /// `method` (default GET).
    pub method: http::Method,
    /// `send`: a request body.
    pub send: Option<Vec<u8>>,
    /// `receive`: blocks the response body must contain, in order.
    pub receive: Vec<Vec<u8>>,
    /// `response_buffer_size` (default 1024; 0 = the whole body): how much of the body
    /// `receive` looks at.
    pub response_buffer_size: usize,
    /// `request_headers_to_add` (plain values).
    pub request_headers_to_add: Vec<(http::HeaderName, http::HeaderValue, AppendAction)>,
    /// `request_headers_to_remove`.
    pub request_headers_to_remove: Vec<http::HeaderName>,
    /// `expected_statuses` as half-open ranges (default `[200, 201)`).
    pub expected_statuses: Vec<(u16, u16)>,
    /// `retriable_statuses`: failures that count towards `unhealthy_threshold` instead of
    /// marking the host unhealthy at once.
    pub retriable_statuses: Vec<(u16, u16)>,
    /// `codec_client_type: HTTP2` (else HTTP/1.1).
    pub http2: bool,
    /// `service_name_matcher`: the response's `x-envoy-upstream-healthchecked-cluster`
    /// must match.
    pub service_name_matcher: Option<StringMatcher>,
}

impl HttpHealthCheck {
    /// Whether `status` is in `expected_statuses`.
    pub fn expected(&self, status: u16) -> bool {
        in_ranges(&self.expected_statuses, status)
    }

    /// Whether `status` is in `retriable_statuses`.
    pub fn retriable(&self, status: u16) -> bool {
        in_ranges(&self.retriable_statuses, status)
    }
}

fn in_ranges(ranges: &[(u16, u16)], status: u16) -> bool {
    ranges.iter().any(|(s, e)| (*s..*e).contains(&status))
}

/// `tcp_health_check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpHealthCheck {
    /// `send`: bytes written after connecting (empty: nothing).
    pub send: Vec<u8>,
    /// `receive`: blocks the response must contain, in order (empty: connect-only check).
    pub receive: Vec<Vec<u8>>,
}

/// `grpc_health_check`: `grpc.health.v1.Health/Check` over HTTP/2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcHealthCheck {
    /// `service_name` asked about (empty: the server as a whole).
    pub service_name: String,
    /// `authority` (default: the cluster's name).
    pub authority: Option<String>,
    /// `initial_metadata`: request headers (plain values).
    pub initial_metadata: Vec<(http::HeaderName, http::HeaderValue, AppendAction)>,
}

/// Converts `health_checks` (at most one, as in Envoy).
pub fn from_proto(checks: &[core::HealthCheck], ctx: &mut Ctx) -> Option<HealthCheck> {
    if checks.len() > 1 {
        ctx.error_at(
            "health_checks",
            "multiple health checks are not supported (Envoy allows one)",
        );
    }
    // Every check is converted (for its errors); the first is the cluster's.
    let mut first = None;
    for (i, hc) in checks.iter().enumerate() {
        let converted = ctx.at(format!("health_checks[{i}]"), |ctx| one(hc, ctx));
        if i == 0 {
            first = converted;
        }
    }
    first
}

fn required_positive(
    d: &Option<ferry_envoy_api::pb::google::protobuf::Duration>,
    field: &str,
    ctx: &mut Ctx,
) -> Option<Duration> {
    match duration(d, field, ctx) {
        None if d.is_none() => {
            ctx.error_at(field, "is required");
            None
        }
        Some(v) if v.is_zero() => {
            ctx.error_at(field, "must be greater than 0");
            None
        }
        v => v,
    }
}

fn optional_positive(
    d: &Option<ferry_envoy_api::pb::google::protobuf::Duration>,
    field: &str,
    ctx: &mut Ctx,
) -> Option<Duration> {
    let v = duration(d, field, ctx)?;
    if v.is_zero() {
        ctx.error_at(field, "must be greater than 0");
        return None;
    }
    Some(v)
}

fn one(hc: &core::HealthCheck, ctx: &mut Ctx) -> Option<HealthCheck> {
    use core::health_check::HealthChecker;
    crate::fields!(ctx, hc => core::HealthCheck {
        timeout, interval, initial_jitter, interval_jitter, interval_jitter_percent,
        unhealthy_threshold, healthy_threshold, alt_port, reuse_connection,
        health_checker: ["http_health_check", "tcp_health_check", "grpc_health_check"],
        no_traffic_interval, no_traffic_healthy_interval, unhealthy_interval,
        unhealthy_edge_interval, healthy_edge_interval, always_log_health_check_failures,
        always_log_health_check_success, event_log_path, event_logger,
    } refused {
        tls_options, event_service, transport_socket_match_criteria,
    });
    let timeout = required_positive(&hc.timeout, "timeout", ctx);
    let interval = required_positive(&hc.interval, "interval", ctx);
    let unhealthy_threshold = hc.unhealthy_threshold.map(|v| v.value);
    let healthy_threshold = hc.healthy_threshold.map(|v| v.value);
    if unhealthy_threshold.is_none() {
        ctx.error_at("unhealthy_threshold", "is required");
    }
    if healthy_threshold.is_none() {
        ctx.error_at("healthy_threshold", "is required");
    }
    let alt_port = match hc.alt_port.map(|v| v.value) {
        Some(p) if p == 0 || p > 65535 => {
            ctx.error_at("alt_port", format!("{p} is not a port"));
            None
        }
        p => p.map(|p| p as u16),
    };
    let no_traffic_interval =
        optional_positive(&hc.no_traffic_interval, "no_traffic_interval", ctx)
            .unwrap_or(DEFAULT_NO_TRAFFIC_INTERVAL);
    let no_traffic_healthy_interval = optional_positive(
        &hc.no_traffic_healthy_interval,
        "no_traffic_healthy_interval",
        ctx,
    )
    .unwrap_or(no_traffic_interval);
    let unhealthy_interval = optional_positive(&hc.unhealthy_interval, "unhealthy_interval", ctx);
    let unhealthy_edge_interval =
        optional_positive(&hc.unhealthy_edge_interval, "unhealthy_edge_interval", ctx);
    let healthy_edge_interval =
        optional_positive(&hc.healthy_edge_interval, "healthy_edge_interval", ctx);
    let kind = match &hc.health_checker {
        Some(HealthChecker::HttpHealthCheck(h)) => ctx
            .at("http_health_check", |c| http_check(h, c))
            .map(HealthCheckKind::Http),
        Some(HealthChecker::TcpHealthCheck(t)) => ctx.at("tcp_health_check", |c| {
            crate::fields!(c, t => core::health_check::TcpHealthCheck {
                send, receive,
            } refused {
                proxy_protocol_config,
            });
            let send = payloads(t.send.as_slice(), "send", c).concat();
            let receive = payloads(&t.receive, "receive", c);
            Some(HealthCheckKind::Tcp(TcpHealthCheck { send, receive }))
        }),
        Some(HealthChecker::GrpcHealthCheck(g)) => ctx.at("grpc_health_check", |c| {
            crate::fields!(c, g => core::health_check::GrpcHealthCheck {
                service_name, authority, initial_metadata,
            });
            let initial_metadata = plain_headers(&g.initial_metadata, "initial_metadata", c);
            Some(HealthCheckKind::Grpc(GrpcHealthCheck {
                service_name: g.service_name.clone(),
                authority: (!g.authority.is_empty()).then(|| g.authority.clone()),
                initial_metadata,
            }))
        }),
        Some(HealthChecker::CustomHealthCheck(_)) => None, // refused by fields! above
        None => {
            ctx.error(
                "one of http_health_check, tcp_health_check or grpc_health_check is required",
            );
            None
        }
    };
    let event_logs = event_logs(hc, ctx);
    let interval = interval?;
    let unhealthy_interval = unhealthy_interval.unwrap_or(interval);
    Some(HealthCheck {
        timeout: timeout?,
        interval,
        initial_jitter: duration(&hc.initial_jitter, "initial_jitter", ctx).unwrap_or_default(),
        interval_jitter: duration(&hc.interval_jitter, "interval_jitter", ctx).unwrap_or_default(),
        interval_jitter_percent: hc.interval_jitter_percent,
        unhealthy_threshold: unhealthy_threshold?,
        healthy_threshold: healthy_threshold?,
        alt_port,
        reuse_connection: hc.reuse_connection.map(|v| v.value).unwrap_or(true),
        no_traffic_interval,
        no_traffic_healthy_interval,
        unhealthy_interval,
        unhealthy_edge_interval: unhealthy_edge_interval.unwrap_or(unhealthy_interval),
        healthy_edge_interval: healthy_edge_interval.unwrap_or(interval),
        always_log_health_check_failures: hc.always_log_health_check_failures,
        always_log_health_check_success: hc.always_log_health_check_success,
        event_logs,
        kind: kind?,
    })
}

fn event_logs(hc: &core::HealthCheck, ctx: &mut Ctx) -> Vec<PathBuf> {
    use ferry_envoy_api::pb::envoy::extensions::health_check::event_sinks::file::v3::HealthCheckEventFileSink;
    let mut out = Vec::new();
    if !hc.event_log_path.is_empty() {
        out.push(PathBuf::from(&hc.event_log_path));
    }
    for (i, l) in hc.event_logger.iter().enumerate() {
        ctx.at(format!("event_logger[{i}]"), |c| {
            crate::util::typed_extension_config_fields(l, c);
            let Some(any) = &l.typed_config else {
                c.error_at("typed_config", "is required");
                return;
            };
            let file = "envoy.extensions.health_check.event_sinks.file.v3.HealthCheckEventFileSink";
            if crate::support::known_type(c, &l.name, any, &[file]).is_none() {
                return;
            }
            c.at("typed_config", |c| {
                let Some(sink) = crate::any::unpack::<HealthCheckEventFileSink>(any, c) else {
                    return;
                };
                crate::fields!(c, &sink => HealthCheckEventFileSink as "envoy.health_check.event_sink.file" {
                    event_log_path,
                });
                if sink.event_log_path.is_empty() {
                    c.error_at("event_log_path", "is required");
                } else {
                    out.push(PathBuf::from(sink.event_log_path));
                }
            });
        });
    }
    out
}

fn http_check(h: &core::health_check::HttpHealthCheck, ctx: &mut Ctx) -> Option<HttpHealthCheck> {
    crate::fields!(ctx, h => core::health_check::HttpHealthCheck {
        host, path, send, receive, response_buffer_size, request_headers_to_add,
        request_headers_to_remove, expected_statuses, retriable_statuses, codec_client_type,
        service_name_matcher, method,
    });
    if h.path.is_empty() {
        ctx.error_at("path", "is required");
    }
    let method = match h.method {
        0 | 1 => http::Method::GET,
        2 => http::Method::HEAD,
        3 => http::Method::POST,
        4 => http::Method::PUT,
        5 => http::Method::DELETE,
        7 => http::Method::OPTIONS,
        8 => http::Method::TRACE,
        9 => http::Method::PATCH,
        other => {
            ctx.error_at(
                "method",
                format!("{other} is not allowed in a health check"),
            );
            http::Method::GET
        }
    };
    let send = h
        .send
        .as_ref()
        .map(|p| payloads(std::slice::from_ref(p), "send", ctx).concat());
    if send.is_some()
        && !matches!(
            method,
            http::Method::POST | http::Method::PUT | http::Method::PATCH | http::Method::OPTIONS
        )
    {
        ctx.error_at("send", "a body needs method POST, PUT, PATCH or OPTIONS");
    }
    let receive = payloads(&h.receive, "receive", ctx);
    let http2 = match h.codec_client_type {
        0 => false,
        1 => true,
        _ => {
            ctx.error_at("codec_client_type", "only HTTP1 and HTTP2 are supported");
            false
        }
    };
    let request_headers_to_add =
        plain_headers(&h.request_headers_to_add, "request_headers_to_add", ctx);
    let request_headers_to_remove =
        HeaderMutations::from_proto(&[], &h.request_headers_to_remove, &[], &[], ctx)
            .request_remove;
    let expected_statuses = ctx.at("expected_statuses", |c| ranges(&h.expected_statuses, c));
    let retriable_statuses = ctx.at("retriable_statuses", |c| ranges(&h.retriable_statuses, c));
    let service_name_matcher = h
        .service_name_matcher
        .as_ref()
        .and_then(|m| ctx.at("service_name_matcher", |c| string_matcher(m, c)));
    Some(HttpHealthCheck {
        host: (!h.host.is_empty()).then(|| h.host.clone()),
        path: h.path.clone(),
        method,
        send,
        receive,
        response_buffer_size: h.response_buffer_size.map(|v| v.value).unwrap_or(1024) as usize,
        request_headers_to_add,
        request_headers_to_remove,
        expected_statuses: if expected_statuses.is_empty() {
            vec![(200, 201)]
        } else {
            expected_statuses
        },
        retriable_statuses,
        http2,
        service_name_matcher,
    })
}

/// Status ranges: half-open, within [100, 600).
fn ranges(
    rs: &[ferry_envoy_api::pb::envoy::r#type::v3::Int64Range],
    ctx: &mut Ctx,
) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for (i, r) in rs.iter().enumerate() {
        ctx.at(format!("[{i}]"), |c| {
            crate::util::int64_range_fields(r, c);
            if r.start < 100 || r.start >= 600 || r.end <= r.start || r.end > 600 {
                c.error(format!(
                    "[{}, {}) is not a range of statuses within [100, 600)",
                    r.start, r.end
                ));
                return;
            }
            out.push((r.start as u16, r.end as u16));
        });
    }
    out
}

/// Headers to add whose values have no `%OPERATOR%` (a check has no request to draw from).
fn plain_headers(
    opts: &[core::HeaderValueOption],
    field: &str,
    ctx: &mut Ctx,
) -> Vec<(http::HeaderName, http::HeaderValue, AppendAction)> {
    let mutations = ctx.at(field, |c| {
        // Parsed as request headers of a route, then checked for operators.
        HeaderMutations::from_proto(opts, &[], &[], &[], c)
    });
    let mut out = Vec::new();
    for (i, h) in mutations.request_add.into_iter().enumerate() {
        let Some(text) = h.value.as_literal() else {
            ctx.error_at(
                &format!("{field}[{i}].header.value"),
                "formatter operators are not supported in health check headers",
            );
            continue;
        };
        match http::HeaderValue::from_str(text) {
            Ok(v) => out.push((h.name, v, h.action)),
            Err(_) => ctx.error_at(
                &format!("{field}[{i}].header.value"),
                format!("invalid header value {text:?}"),
            ),
        }
    }
    out
}

/// Payloads (`text` is hex, `binary` raw bytes).
fn payloads(ps: &[core::health_check::Payload], field: &str, ctx: &mut Ctx) -> Vec<Vec<u8>> {
    use core::health_check::payload::Payload as P;
    let mut out = Vec::new();
    for (i, p) in ps.iter().enumerate() {
        let path = if field == "send" {
            field.to_string()
        } else {
            format!("{field}[{i}]")
        };
        ctx.at(path, |ctx| {
            crate::fields!(ctx, p => core::health_check::Payload {
                payload: ["text", "binary"],
            });
            match &p.payload {
                Some(P::Text(t)) => match hex(t) {
                    Some(b) if !b.is_empty() => out.push(b),
                    _ => ctx.error_at("text", format!("{t:?} is not a non-empty hex string")),
                },
                Some(P::Binary(b)) => out.push(b.clone()),
                None => ctx.error("text or binary is required"),
            }
        });
    }
    out
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::bootstrap::load;
    use crate::health_check::*;
    use ferry_envoy_api::Format;

    fn cluster(hc: &str) -> String {
        format!(
            r#"
static_resources:
  clusters:
  - name: svc
    health_checks:
{hc}
    load_assignment:
      cluster_name: svc
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 80}}}}}}
"#
        )
    }

    fn loaded(hc: &str) -> Result<HealthCheck, String> {
        match load(&cluster(hc), Format::Yaml) {
            Ok(l) => Ok(l.bootstrap.clusters[0]
                .health_check
                .clone()
                .expect("a health check")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn http_defaults_follow_envoy() {
        let hc = loaded(
            "    - {timeout: 1s, interval: 2s, unhealthy_threshold: 3, healthy_threshold: 2, http_health_check: {path: /healthz}}",
        )
        .unwrap();
        assert_eq!(hc.no_traffic_interval, Duration::from_secs(60));
        assert_eq!(hc.no_traffic_healthy_interval, Duration::from_secs(60));
        assert_eq!(hc.unhealthy_interval, Duration::from_secs(2));
        assert_eq!(hc.unhealthy_edge_interval, Duration::from_secs(2));
        assert_eq!(hc.healthy_edge_interval, Duration::from_secs(2));
        assert!(hc.reuse_connection);
        let HealthCheckKind::Http(h) = hc.kind else {
            panic!("http")
        };
        assert!(h.expected(200) && !h.expected(201) && !h.expected(204));
        assert_eq!(h.method, http::Method::GET);
        assert!(!h.http2);
    }

    #[test]
    fn edge_intervals_default_to_their_base() {
        let hc = loaded(
            "    - {timeout: 1s, interval: 2s, unhealthy_interval: 5s, unhealthy_threshold: 3, healthy_threshold: 2, tcp_health_check: {send: {text: '0102'}, receive: [{text: 'ff'}]}}",
        )
        .unwrap();
        assert_eq!(hc.unhealthy_edge_interval, Duration::from_secs(5));
        assert_eq!(hc.healthy_edge_interval, Duration::from_secs(2));
        let HealthCheckKind::Tcp(t) = hc.kind else {
            panic!("tcp")
        };
        assert_eq!(
            t,
            TcpHealthCheck {
                send: vec![1, 2],
                receive: vec![vec![0xff]]
            }
        );
    }

    #[test]
    fn bad_checks_are_named_by_path() {
        let e = loaded(
            "    - {interval: 0s, unhealthy_threshold: 3, http_health_check: {path: /h, codec_client_type: HTTP3, expected_statuses: [{start: 200, end: 100}], request_headers_to_add: [{header: {key: x, value: '%START_TIME%'}}]}}",
        )
        .unwrap_err();
        let p = "static_resources.clusters[0].health_checks[0]";
        for want in [
            format!("{p}.timeout: is required"),
            format!("{p}.interval: must be greater than 0"),
            format!("{p}.healthy_threshold: is required"),
            format!("{p}.http_health_check.codec_client_type: only HTTP1 and HTTP2 are supported"),
            format!("{p}.http_health_check.expected_statuses[0]: [200, 100) is not a range"),
            format!(
                "{p}.http_health_check.request_headers_to_add[0].header.value: formatter operators"
            ),
        ] {
            assert!(e.contains(&want), "{want}\nnot in:\n{e}");
        }
        let e = loaded(
            "    - {timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {send: {text: 'zz'}}}",
        )
        .unwrap_err();
        assert!(
            e.contains("tcp_health_check.send.text: \"zz\" is not a non-empty hex string"),
            "{e}"
        );
    }
}
