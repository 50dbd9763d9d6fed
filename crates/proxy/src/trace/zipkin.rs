//! `envoy.tracers.zipkin`: B3 propagation (and W3C with `USE_B3_WITH_W3C_PROPAGATION`),
//! spans posted as Zipkin v2 JSON (`HTTP_JSON`) to a host of the collector cluster.

use super::context::{self, B3Format, SpanContext};
use super::export::{self, Queue, Report};
use super::{Env, Span, Started, ZipkinStats};
use crate::stream_info::StreamInfo;
use bytes::Bytes;
use ferry_config::trace::Zipkin as Config;
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Envoy's collector request timeout (runtime `tracing.zipkin.request_timeout`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Zipkin {
    config: Config,
    queue: Queue,
}

struct Reporter {
    config: Config,
    clusters: Arc<ferry_upstream::ClusterManager>,
    stats: Arc<ZipkinStats>,
    local_endpoint: Value,
    local_address: String,
}

impl Zipkin {
    pub(super) fn new(config: Config, env: &Env<'_>) -> Zipkin {
        let stats = Arc::new(ZipkinStats::default());
        env.stats.register("tracing.zipkin.", &stats);
        let mut local = Map::new();
        local.insert("serviceName".into(), env.node_cluster.into());
        match env.local_address {
            Some(std::net::IpAddr::V4(ip)) => {
                local.insert("ipv4".into(), ip.to_string().into());
            }
            Some(std::net::IpAddr::V6(ip)) => {
                local.insert("ipv6".into(), ip.to_string().into());
            }
            None => {}
        }
        local.insert("port".into(), 0.into());
        let reporter = Arc::new(Reporter {
            config: config.clone(),
            clusters: env.clusters.clone(),
            stats,
            local_endpoint: Value::Object(local),
            local_address: env
                .local_address
                .map(|a| a.to_string())
                .unwrap_or_else(|| "127.0.0.1".into()),
        });
        Zipkin {
            config,
            queue: export::start(reporter),
        }
    }

    /// Envoy's Zipkin `Driver::startSpan` and `injectContext`: the incoming B3 context
    /// (or W3C, when enabled and no B3 is present) is continued; its sampling flag wins
    /// over the local decision. The context always goes upstream; a span is recorded
    /// only when sampled.
    pub(super) fn start(
        &self,
        h: &mut HeaderMap,
        info: &StreamInfo,
        traced: bool,
        egress: bool,
        operation: Option<String>,
    ) -> Option<Started> {
        let c = &self.config;
        // A server span shares its caller's span; a client span is always a child.
        let shared = c.shared_span_context && !egress;
        let b3 = context::extract_b3(h);
        let (incoming, format) = match b3 {
            Some((ctx, f)) => (Some(ctx), f),
            None if c.w3c && !context::has_b3(h) => (context::extract_w3c(h), B3Format::Multi),
            None => (None, B3Format::Multi),
        };
        let sampled = incoming
            .and_then(|i| i.sampled)
            .or_else(|| context::b3_sampled(h))
            .unwrap_or(traced);
        let ctx = match incoming {
            None => {
                let id = context::random_id();
                SpanContext {
                    trace_id_high: if c.trace_id_128bit {
                        context::random_id()
                    } else {
                        0
                    },
                    trace_id: id,
                    span_id: id,
                    parent_id: 0,
                    sampled: Some(sampled),
                }
            }
            Some(i) if shared => SpanContext {
                sampled: Some(sampled),
                ..i
            },
            Some(i) => SpanContext {
                span_id: context::random_id(),
                parent_id: i.span_id,
                sampled: Some(sampled),
                ..i
            },
        };
        let wide = c.trace_id_128bit || ctx.trace_id_high != 0;
        context::inject_b3(h, &ctx, format, wide);
        if c.w3c {
            context::inject_w3c(h, &ctx);
        }
        if !sampled {
            return Some(Started::Unsampled(ctx, wide));
        }
        Some(Started::Recorded(Box::new(Span {
            context: ctx,
            wide_trace_id: wide,
            name: operation.unwrap_or_else(|| info.authority.clone()),
            start: info.start_time.unwrap_or_else(SystemTime::now),
            end: SystemTime::now(),
            shared,
            client: egress,
            tracestate: None,
            tags: Vec::with_capacity(24),
        })))
    }

    pub(super) fn report(&self, span: Box<Span>) {
        self.queue.push(span);
    }
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A span as Zipkin v2 JSON, the fields Envoy's `JsonV2Serializer` writes for a server
/// (or, on egress, client) span: its end as an `ss` (`cr`) annotation.
fn to_json(span: &Span, local_endpoint: &Value) -> Value {
    let start = micros(span.start);
    let end = micros(span.end).max(start);
    let tags: Map<String, Value> = span
        .tags
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
        .collect();
    let mut o = Map::new();
    o.insert(
        "traceId".into(),
        span.context.trace_id_hex(span.wide_trace_id).into(),
    );
    o.insert("id".into(), format!("{:016x}", span.context.span_id).into());
    if span.context.parent_id != 0 {
        o.insert(
            "parentId".into(),
            format!("{:016x}", span.context.parent_id).into(),
        );
    }
    o.insert(
        "kind".into(),
        if span.client { "CLIENT" } else { "SERVER" }.into(),
    );
    o.insert("name".into(), span.name.clone().into());
    o.insert("timestamp".into(), start.into());
    o.insert("duration".into(), (end - start).into());
    o.insert("localEndpoint".into(), local_endpoint.clone());
    if span.shared {
        o.insert("shared".into(), true.into());
    }
    o.insert(
        "annotations".into(),
        json!([{"timestamp": end, "value": if span.client { "cr" } else { "ss" }}]),
    );
    o.insert("tags".into(), Value::Object(tags));
    Value::Object(o)
}

impl Report for Reporter {
    async fn send(&self, batch: Vec<Box<Span>>) {
        let body: Vec<Value> = batch
            .iter()
            .map(|s| to_json(s, &self.local_endpoint))
            .collect();
        let body = Value::Array(body).to_string();
        let Some(cluster) = self.clusters.get(&self.config.collector_cluster) else {
            self.stats.reports_skipped_no_cluster.inc();
            return;
        };
        // Envoy's async client answers a failed exchange (no host, connection failure,
        // timeout) with a local 503/504, which the reporter counts as dropped.
        let Some(host) = cluster.choose_host(None) else {
            self.stats.reports_dropped.inc();
            return;
        };
        let req = http::Request::post(self.config.collector_endpoint.as_str())
            .header(http::header::HOST, self.config.collector_hostname.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-envoy-internal", "true")
            .header("x-forwarded-for", self.local_address.as_str())
            .header(
                "x-envoy-expected-rq-timeout-ms",
                HeaderValue::from(REQUEST_TIMEOUT.as_millis() as u64),
            )
            .body(
                http_body_util::Full::new(Bytes::from(body))
                    .map_err(|never| match never {})
                    .boxed(),
            );
        let Ok(req) = req else {
            self.stats.reports_failed.inc();
            return;
        };
        let start = std::time::Instant::now();
        let sent = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let resp = host
                .send(&cluster, ferry_config::route::Priority::Default, req)
                .await?;
            let status = resp.status();
            // Read the (small) answer so the connection can be reused.
            let _ = resp.into_body().collect().await;
            Ok::<_, ferry_upstream::UpstreamError>(status)
        })
        .await;
        match sent {
            Ok(Ok(status)) => {
                cluster.stats.charge(
                    status.as_u16(),
                    true,
                    Some(start.elapsed().as_millis() as u64),
                );
                // Envoy counts anything but 202 Accepted as dropped by the collector.
                if status == http::StatusCode::ACCEPTED {
                    self.stats.reports_sent.inc();
                } else {
                    self.stats.reports_dropped.inc();
                }
            }
            Ok(Err(_)) | Err(_) => self.stats.reports_dropped.inc(),
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
