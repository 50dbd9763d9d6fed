//! HTTP tracing as Envoy's connection manager does it: the sampling decision carried in
//! `x-request-id`, one server span per request, the span context propagated upstream in
//! the provider's headers, and spans exported in batches off the request path.
//!
//! An unsampled request costs a decision and (with a provider) its propagation headers;
//! only a sampled one allocates a [`Span`], once, which travels in the stream's
//! [`StreamInfo`] until the response ends and is then queued for export.

pub mod context;
mod export;
mod otel;
pub mod span;
mod zipkin;

use crate::stats::HcmStats;
use crate::stream_info::StreamInfo;
use context::SpanContext;
use ferry_config::trace::{CustomTagValue, Decorator, Provider, Tracing, SAMPLING_DENOMINATOR};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::SystemTime;

const X_REQUEST_ID: &str = "x-request-id";
const X_CLIENT_TRACE_ID: &str = "x-client-trace-id";
const X_ENVOY_FORCE_TRACE: &str = "x-envoy-force-trace";
const X_ENVOY_DECORATOR_OPERATION: &str = "x-envoy-decorator-operation";

/// Why a request is (not) traced (Envoy's `Tracing::Reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not sampled.
    NotTraceable,
    /// A health check: never traced.
    HealthCheck,
    /// `random_sampling` picked it (or the request id already said so).
    Sampling,
    /// `x-envoy-force-trace`.
    ServiceForced,
    /// `x-client-trace-id` within `client_sampling`.
    ClientForced,
}

impl Reason {
    /// Whether spans of this request are recorded.
    pub fn traced(self) -> bool {
        matches!(
            self,
            Reason::Sampling | Reason::ServiceForced | Reason::ClientForced
        )
    }
}

/// Where the trace reason lives in a UUID request id: the version digit (Envoy's
/// `UUIDRequestIDExtension`, `TRACE_BYTE_POSITION`).
const TRACE_BYTE_POSITION: usize = 14;

/// The reason packed in a request id (`getTraceReason`).
fn reason_of(id: &[u8]) -> Reason {
    if id.len() != 36 {
        return Reason::NotTraceable;
    }
    match id[TRACE_BYTE_POSITION] {
        b'9' => Reason::Sampling,
        b'a' => Reason::ServiceForced,
        b'b' => Reason::ClientForced,
        _ => Reason::NotTraceable,
    }
}

/// Packs `reason` in a request id (`setTraceReason`); ids that are not UUIDs are kept.
fn set_reason(h: &mut HeaderMap, reason: Reason) {
    let Some(id) = h.get(X_REQUEST_ID) else {
        return;
    };
    if id.len() != 36 {
        return;
    }
    let mut bytes = id.as_bytes().to_vec();
    bytes[TRACE_BYTE_POSITION] = match reason {
        Reason::Sampling => b'9',
        Reason::ServiceForced => b'a',
        Reason::ClientForced => b'b',
        Reason::NotTraceable | Reason::HealthCheck => b'8',
    };
    if let Ok(v) = HeaderValue::from_bytes(&bytes) {
        h.insert(HeaderName::from_static(X_REQUEST_ID), v);
    }
}

/// Envoy's `ConnectionManagerUtility::mutateTracingRequestHeader`: the request id's
/// first 8 hex digits (mod 10000) draw the random and overall sampling, so that every
/// proxy on the path agrees; the reason is written back into the id.
pub fn decide(cfg: &Tracing, h: &mut HeaderMap) -> Reason {
    let Some(id) = h.get(X_REQUEST_ID) else {
        return Reason::NotTraceable;
    };
    let Some(draw) = id
        .as_bytes()
        .get(..8)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| u64::from_str_radix(s, 16).ok())
    else {
        return Reason::NotTraceable;
    };
    let draw = draw % u64::from(SAMPLING_DENOMINATOR);
    let mut reason = reason_of(id.as_bytes());
    if reason == Reason::NotTraceable {
        let client = h.contains_key(X_CLIENT_TRACE_ID)
            && rand::random_range(0..SAMPLING_DENOMINATOR) < cfg.client_sampling;
        if client {
            reason = Reason::ClientForced;
        } else if h.contains_key(X_ENVOY_FORCE_TRACE) {
            reason = Reason::ServiceForced;
        } else if draw < u64::from(cfg.random_sampling) {
            reason = Reason::Sampling;
        }
        if reason != Reason::NotTraceable {
            set_reason(h, reason);
        }
    }
    if reason != Reason::NotTraceable && draw >= u64::from(cfg.overall_sampling) {
        reason = Reason::NotTraceable;
        set_reason(h, reason);
    }
    reason
}

pub use span::Span;

ferry_stats::stat_group! {
    /// `tracing.zipkin.*` (Envoy's names; `spans_dropped` is ferry's: spans the full
    /// export queue turned away).
    pub struct ZipkinStats {
        counters: {
            reports_dropped,
            reports_failed,
            reports_sent,
            reports_skipped_no_cluster,
            spans_sent,
            timer_flushed,
            spans_dropped,
        }
        gauges: {}
    }
}

ferry_stats::stat_group! {
    /// `tracing.opentelemetry.*` (Envoy's names; `spans_dropped` is ferry's: spans the
    /// full export queue turned away).
    pub struct OpenTelemetryStats {
        counters: {
            http_reports_failed,
            http_reports_sent,
            http_reports_success,
            spans_sent,
            timer_flushed,
            spans_dropped,
        }
        gauges: {}
    }
}

/// What a provider started for a request.
pub(crate) enum Started {
    /// A sampled span, recorded until the stream ends.
    Recorded(Box<Span>),
    /// An unsampled span: only its context (propagated) and whether its trace id is
    /// written in 32 digits.
    Unsampled(SpanContext, bool),
}

/// Where a connection manager's spans go.
enum Driver {
    Zipkin(zipkin::Zipkin),
    OpenTelemetry(otel::OpenTelemetry),
}

/// One connection manager's tracer: its `tracing` config and provider.
pub struct Tracer {
    config: Arc<Tracing>,
    driver: Option<Driver>,
    node_id: String,
    zone: String,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("provider", &self.config.provider.is_some())
            .finish()
    }
}

/// What a tracer needs from the snapshot.
pub struct Env<'a> {
    /// Clusters (the collector's).
    pub clusters: &'a Arc<ferry_upstream::ClusterManager>,
    /// Where the provider's stats are registered.
    pub stats: &'a ferry_stats::Store,
    /// `node.id`.
    pub node_id: &'a str,
    /// `node.cluster`: the Zipkin service name.
    pub node_cluster: &'a str,
    /// `node.locality.zone`.
    pub zone: &'a str,
    /// This host's address (Zipkin's local endpoint).
    pub local_address: Option<std::net::IpAddr>,
}

impl Tracer {
    /// Builds the tracer and starts its exporter (call within the runtime).
    pub fn new(config: Arc<Tracing>, env: &Env<'_>) -> Tracer {
        let driver = config.provider.as_ref().map(|p| match p {
            Provider::Zipkin(z) => Driver::Zipkin(zipkin::Zipkin::new(z.clone(), env)),
            Provider::OpenTelemetry(o) => {
                Driver::OpenTelemetry(otel::OpenTelemetry::new(o.clone(), env))
            }
        });
        Tracer {
            config,
            driver,
            node_id: env.node_id.to_string(),
            zone: env.zone.to_string(),
        }
    }

    /// Decides whether the request is traced (counting the reason in `tracing.*`),
    /// starts its span and writes the span context into the request headers, which go
    /// upstream. Records the outcome in `info`.
    /// `trace_id_for_logs`: `%TRACE_ID%` is wanted even for an unsampled request
    /// (Envoy's span exists, unsampled, and has an id); ferry formats it only when an
    /// access log may read it.
    pub fn start(
        &self,
        h: &mut HeaderMap,
        info: &mut StreamInfo,
        stats: &HcmStats,
        trace_id_for_logs: bool,
        decorator: Option<&Decorator>,
    ) {
        // The request id is marked first (as Envoy does before its filters run); a
        // health check is then never traced, and Envoy counts it twice: as
        // `not_traceable` and as `health_check`.
        let mut reason = decide(&self.config, h);
        if info.health_check {
            reason = Reason::HealthCheck;
            stats.tracing_not_traceable.inc();
        }
        match reason {
            Reason::NotTraceable => stats.tracing_not_traceable.inc(),
            Reason::HealthCheck => stats.tracing_health_check.inc(),
            Reason::Sampling => stats.tracing_random_sampling.inc(),
            Reason::ServiceForced => stats.tracing_service_forced.inc(),
            Reason::ClientForced => stats.tracing_client_enabled.inc(),
        }
        info.request_id = h.get(X_REQUEST_ID).cloned();
        info.traced = reason.traced();
        // The operation name: the route's decorator; on ingress, a caller's
        // `x-envoy-decorator-operation` overrides it (and goes no further); on egress the
        // decorator is passed on when it says so.
        let mut operation = decorator.map(|d| d.operation.clone());
        if self.config.egress {
            if let Some(d) = decorator.filter(|d| d.propagate) {
                if let Ok(v) = HeaderValue::from_str(&d.operation) {
                    h.insert(HeaderName::from_static(X_ENVOY_DECORATOR_OPERATION), v);
                }
            }
        } else if let Some(v) = h.remove(X_ENVOY_DECORATOR_OPERATION) {
            if let Some(op) = v.to_str().ok().filter(|v| !v.is_empty()) {
                operation = Some(op.to_string());
            }
        }
        let started = match &self.driver {
            None => None,
            Some(Driver::Zipkin(z)) => {
                z.start(h, info, reason.traced(), self.config.egress, operation)
            }
            Some(Driver::OpenTelemetry(o)) => {
                o.start(h, info, reason.traced(), self.config.egress, operation)
            }
        };
        match started {
            Some(Started::Recorded(mut span)) => {
                info.trace_id = Some(span.context.trace_id_hex(span.wide_trace_id));
                self.request_tags(&mut span, h, info);
                info.span = Some(span);
            }
            Some(Started::Unsampled(ctx, wide)) if trace_id_for_logs => {
                info.trace_id = Some(ctx.trace_id_hex(wide));
            }
            _ => {}
        }
    }

    /// The request's tags (Envoy's `finalizeDownstreamSpan`, request side).
    fn request_tags(&self, span: &mut Span, h: &HeaderMap, info: &StreamInfo) {
        let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        span.tag("node_id", self.node_id.clone());
        span.tag("zone", self.zone.clone());
        if let Some(id) = text(X_REQUEST_ID) {
            span.tag("guid:x-request-id", id);
        }
        let path = text("x-envoy-original-path").unwrap_or(&info.path);
        let mut cut = path.len().min(self.config.max_path_tag_length);
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        let proto = text("x-forwarded-proto").unwrap_or(info.scheme);
        let host = text("host").unwrap_or(&info.authority);
        span.tag("http.url", format!("{proto}://{host}{}", &path[..cut]));
        span.tag("http.method", info.method.clone());
        span.tag(
            "downstream_cluster",
            text("x-envoy-downstream-service-cluster").unwrap_or("-"),
        );
        span.tag("user_agent", text("user-agent").unwrap_or("-"));
        span.tag("http.protocol", info.protocol);
        if let Some(peer) = info.downstream_direct_remote {
            span.tag("peer.address", peer.ip().to_string());
        }
        if let Some(id) = text(X_CLIENT_TRACE_ID) {
            span.tag("guid:x-client-trace-id", id);
        }
        for t in &self.config.custom_tags {
            match &t.value {
                CustomTagValue::Literal(v) => span.tag(t.tag.clone(), v.clone()),
                CustomTagValue::RequestHeader {
                    name,
                    default_value,
                } => {
                    let v = h
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(default_value);
                    if !v.is_empty() {
                        span.tag(t.tag.clone(), v);
                    }
                }
            }
        }
    }

    /// Ends the stream's span, if it has one: the response's tags, then the export
    /// queue (never waits; a full queue drops the span and counts it).
    pub fn finish(&self, info: &mut StreamInfo) {
        let Some(mut span) = info.span.take() else {
            return;
        };
        span.end = SystemTime::now();
        span.tag("request_size", info.bytes_received.to_string());
        span.tag("response_size", info.bytes_sent.to_string());
        span.tag("component", "proxy");
        if let Some(c) = &info.upstream_cluster {
            span.tag("upstream_cluster", c.to_string());
            span.tag("upstream_cluster.name", c.to_string());
        }
        let code = info.response_code.unwrap_or(0);
        span.tag("http.status_code", code.to_string());
        let flags = info
            .response_flags
            .render(false)
            .unwrap_or_else(|| "-".into());
        span.tag("response_flags", flags);
        if code == 0 || code >= 500 {
            span.tag("error", "true");
        }
        match &self.driver {
            Some(Driver::Zipkin(z)) => z.report(span),
            Some(Driver::OpenTelemetry(o)) => o.report(span),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg(random: u32, overall: u32, client: u32) -> Tracing {
        Tracing {
            client_sampling: client,
            random_sampling: random,
            overall_sampling: overall,
            verbose: false,
            max_path_tag_length: 256,
            custom_tags: Vec::new(),
            provider: None,
            egress: false,
        }
    }

    fn with_id(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_str(id).unwrap());
        h
    }

    const ID: &str = "0000004d-91ed-43d2-a988-5e53a9472f4b"; // draw 77

    #[test]
    fn random_sampling_uses_the_request_id() {
        let mut h = with_id(ID);
        assert_eq!(decide(&cfg(78, 10_000, 10_000), &mut h), Reason::Sampling);
        assert_eq!(&h[X_REQUEST_ID].as_bytes()[14..15], b"9");
        // The id now says "sampled": later hops keep the decision.
        assert_eq!(decide(&cfg(0, 10_000, 10_000), &mut h), Reason::Sampling);
        let mut h = with_id(ID);
        assert_eq!(
            decide(&cfg(77, 10_000, 10_000), &mut h),
            Reason::NotTraceable
        );
        assert_eq!(h[X_REQUEST_ID], ID, "an unsampled id is left as it was");
    }

    #[test]
    fn forced_client_and_overall() {
        let mut h = with_id(ID);
        h.insert(X_ENVOY_FORCE_TRACE, HeaderValue::from_static("1"));
        assert_eq!(
            decide(&cfg(0, 10_000, 10_000), &mut h),
            Reason::ServiceForced
        );
        assert_eq!(&h[X_REQUEST_ID].as_bytes()[14..15], b"a");
        let mut h = with_id(ID);
        h.insert(X_CLIENT_TRACE_ID, HeaderValue::from_static("c"));
        assert_eq!(
            decide(&cfg(0, 10_000, 10_000), &mut h),
            Reason::ClientForced
        );
        assert_eq!(&h[X_REQUEST_ID].as_bytes()[14..15], b"b");
        let mut h = with_id(ID);
        h.insert(X_CLIENT_TRACE_ID, HeaderValue::from_static("c"));
        assert_eq!(decide(&cfg(0, 10_000, 0), &mut h), Reason::NotTraceable);
        // overall_sampling turns a sampled request back.
        let mut h = with_id(ID);
        h.insert(X_ENVOY_FORCE_TRACE, HeaderValue::from_static("1"));
        assert_eq!(
            decide(&cfg(10_000, 77, 10_000), &mut h),
            Reason::NotTraceable
        );
        assert_eq!(&h[X_REQUEST_ID].as_bytes()[14..15], b"8");
        // Not a request id Envoy can read.
        let mut h = with_id("xyz");
        assert_eq!(
            decide(&cfg(10_000, 10_000, 10_000), &mut h),
            Reason::NotTraceable
        );
    }
}
