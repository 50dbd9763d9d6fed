//! `envoy.tracers.opentelemetry`: W3C `traceparent`/`tracestate` propagation, spans
//! exported as OTLP `ExportTraceServiceRequest`s over gRPC to a host of the cluster
//! named by `grpc_service.envoy_grpc`.

use super::context::{self, SpanContext};
use super::export::{self, Queue, Report};
use super::{Env, OpenTelemetryStats, Span, Started};
use crate::stream_info::StreamInfo;
use ferry_config::trace::OpenTelemetry as Config;
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Status};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `telemetry.sdk.version` and the scope's version (Envoy writes its build version).
const VERSION: &str = concat!("ferry/", env!("CARGO_PKG_VERSION"));
/// OTLP span flags: the context says whether the parent is remote, and it is.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;
/// Bounds an export without a `grpc_service.timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct OpenTelemetry {
    queue: Queue,
}

struct Reporter {
    config: Config,
    clusters: Arc<ferry_upstream::ClusterManager>,
    stats: Arc<OpenTelemetryStats>,
    resource: Resource,
    channels: crate::grpc_client::ClusterChannels,
}

use crate::otlp::attribute as string_kv;

impl OpenTelemetry {
    pub(super) fn new(config: Config, env: &Env<'_>) -> OpenTelemetry {
        let stats = Arc::new(OpenTelemetryStats::default());
        env.stats.register("tracing.opentelemetry.", &stats);
        let resource = Resource {
            attributes: std::iter::once(string_kv("service.name", config.service_name.clone()))
                .chain(crate::otlp::sdk_attributes())
                .collect(),
            ..Default::default()
        };
        let channels =
            crate::grpc_client::ClusterChannels::new(&ferry_config::grpc_service::GrpcTarget {
                cluster: config.cluster.clone(),
                authority: config.authority.clone(),
                timeout: config.timeout,
            });
        let reporter = Arc::new(Reporter {
            config,
            clusters: env.clusters.clone(),
            stats,
            resource,
            channels,
        });
        OpenTelemetry {
            queue: export::start(reporter),
        }
    }

    /// Envoy's OpenTelemetry `Driver::startSpan`: a valid `traceparent` is continued
    /// (its sampled flag wins); an invalid one means no span and no propagation; without
    /// one, a new trace follows the local decision. The new span's context goes upstream
    /// in `traceparent`, with the caller's `tracestate`.
    pub(super) fn start(
        &self,
        h: &mut HeaderMap,
        info: &StreamInfo,
        traced: bool,
        egress: bool,
        operation: Option<String>,
    ) -> Option<Started> {
        let parent = if h.contains_key(context::TRACEPARENT) {
            Some(context::extract_w3c(h)?)
        } else {
            None
        };
        let ctx = match parent {
            Some(p) => SpanContext {
                span_id: context::random_id(),
                parent_id: p.span_id,
                ..p
            },
            None => SpanContext {
                trace_id_high: context::random_id(),
                trace_id: context::random_id(),
                span_id: context::random_id(),
                parent_id: 0,
                sampled: Some(traced),
            },
        };
        context::inject_w3c(h, &ctx);
        let tracestate = h
            .get(context::TRACESTATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Some(ts) = &tracestate {
            if let Ok(v) = HeaderValue::from_str(ts) {
                h.insert(HeaderName::from_static(context::TRACESTATE), v);
            }
        }
        if ctx.sampled != Some(true) {
            return Some(Started::Unsampled(ctx, true));
        }
        Some(Started::Recorded(Box::new(Span {
            context: ctx,
            wide_trace_id: true,
            name: operation.unwrap_or_else(|| match egress {
                true => format!("egress {}", info.authority),
                false => "ingress".into(),
            }),
            start: info.start_time.unwrap_or_else(SystemTime::now),
            end: SystemTime::now(),
            shared: false,
            client: egress,
            tracestate,
            tags: Vec::with_capacity(24),
        })))
    }

    pub(super) fn report(&self, span: Box<Span>) {
        self.queue.push(span);
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A span in OTLP form.
fn to_otlp(span: &Span) -> opentelemetry_proto::tonic::trace::v1::Span {
    let c = &span.context;
    let mut flags = HAS_IS_REMOTE | u32::from(c.sampled == Some(true));
    if c.parent_id != 0 {
        flags |= IS_REMOTE;
    }
    // A 5xx (or no response) marks the span as failed, as Envoy's `error` tag does.
    let error = span.tags.iter().any(|(k, v)| k == "error" && v == "true");
    let mut trace_id = Vec::with_capacity(16);
    trace_id.extend_from_slice(&c.trace_id_high.to_be_bytes());
    trace_id.extend_from_slice(&c.trace_id.to_be_bytes());
    opentelemetry_proto::tonic::trace::v1::Span {
        trace_id,
        span_id: c.span_id.to_be_bytes().to_vec(),
        parent_span_id: if c.parent_id != 0 {
            c.parent_id.to_be_bytes().to_vec()
        } else {
            Vec::new()
        },
        trace_state: span.tracestate.clone().unwrap_or_default(),
        name: span.name.clone(),
        kind: if span.client {
            SpanKind::Client
        } else {
            SpanKind::Server
        } as i32,
        flags,
        status: error.then(|| Status {
            code: StatusCode::Error as i32,
            message: String::new(),
        }),
        start_time_unix_nano: nanos(span.start),
        end_time_unix_nano: nanos(span.end).max(nanos(span.start)),
        attributes: span
            .tags
            .iter()
            .map(|(k, v)| string_kv(k, v.clone()))
            .collect(),
        ..Default::default()
    }
}

impl Report for Reporter {
    async fn send(&self, batch: Vec<Box<Span>>) {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "envoy".into(),
                        version: VERSION.into(),
                        ..Default::default()
                    }),
                    spans: batch.iter().map(|s| to_otlp(s)).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let Some(channel) = self.channels.channel(&self.clusters) else {
            self.stats.http_reports_failed.inc();
            return;
        };
        self.stats.http_reports_sent.inc();
        let timeout = self.config.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let mut client = TraceServiceClient::new(channel);
        match tokio::time::timeout(timeout, client.export(request)).await {
            Ok(Ok(_)) => self.stats.http_reports_success.inc(),
            _ => self.stats.http_reports_failed.inc(),
        }
    }

    fn spans_sent(&self, n: u64) {
        self.stats.spans_sent.add(n);
    }

    fn timer_flushed(&self) {
        self.stats.timer_flushed.inc();
    }

    fn spans_dropped(&self, n: u64) {
        self.stats.spans_dropped.add(n);
    }
}
