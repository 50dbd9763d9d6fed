//! OTLP over gRPC to a cluster (`grpc_service.envoy_grpc.cluster_name`): channels to the
//! hosts the cluster's load balancer picks (shared with the OpenTelemetry tracer); the
//! conversion of the stats to OTLP metrics as Envoy's `envoy.stat_sinks.open_telemetry`
//! writes them (one metric per stat, tag-extracted name, tags as attributes); and the
//! `envoy.access_loggers.open_telemetry` exporter, which batches log records off the
//! request path and drops (and counts) what a slow collector cannot take.

use crate::server::Server;
use ferry_config::otel_access_log::{OtelAccessLog, OtelValue};
use ferry_config::stats::{GrpcTarget, OtlpSink};
use ferry_stats::Value;
use ferry_upstream::ClusterManager;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

/// gRPC channels to the hosts of an `envoy_grpc` cluster: each call goes to a host the
/// cluster's load balancer picks; a host's channel is made once and kept. Calls carry
/// the configured `:authority` (the cluster's name by default), as Envoy's.
#[derive(Debug)]
pub(crate) struct ClusterChannels {
    cluster: String,
    authority: String,
    channels: parking_lot::Mutex<HashMap<SocketAddr, Channel>>,
}

impl ClusterChannels {
    pub(crate) fn new(target: &GrpcTarget) -> ClusterChannels {
        ClusterChannels {
            cluster: target.cluster.clone(),
            authority: target.authority.clone(),
            channels: Default::default(),
        }
    }

    /// The cluster's name.
    pub(crate) fn cluster(&self) -> &str {
        &self.cluster
    }

    /// A channel to a host of the cluster (None when it has none).
    pub(crate) fn channel(&self, clusters: &ClusterManager) -> Option<Channel> {
        let cluster = clusters.get(&self.cluster)?;
        let host = cluster.choose_host(None)?;
        let mut channels = self.channels.lock();
        if let Some(ch) = channels.get(&host.address) {
            return Some(ch.clone());
        }
        let ch = Endpoint::from_shared(format!("http://{}", host.address))
            .ok()?
            .origin(format!("http://{}", self.authority).parse().ok()?)
            .connect_timeout(cluster.config.connect_timeout)
            .connect_lazy();
        channels.insert(host.address, ch.clone());
        Some(ch)
    }
}

/// An attribute with a string value.
pub(crate) fn attribute(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// The SDK attributes of every OTLP resource ferry sends. They are Envoy's (`envoy`,
/// `cpp`), so that collectors and dashboards that select Envoy's telemetry keep
/// working; the version says `ferry/<version>`.
pub(crate) fn sdk_attributes() -> Vec<KeyValue> {
    vec![
        attribute("telemetry.sdk.language", "cpp"),
        attribute("telemetry.sdk.name", "envoy"),
        attribute(
            "telemetry.sdk.version",
            concat!("ferry/", env!("CARGO_PKG_VERSION")),
        ),
    ]
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The resource every metrics export describes: this process.
pub(crate) fn resource() -> Resource {
    Resource {
        attributes: sdk_attributes(),
        ..Default::default()
    }
}

/// The `envoy.stat_sinks.open_telemetry` sink's state between flushes.
pub(crate) struct MetricsSink {
    config: OtlpSink,
    channels: ClusterChannels,
    /// Counters' values at the last export (for deltas).
    last: HashMap<String, u64>,
    started: SystemTime,
    last_flush: SystemTime,
}

impl MetricsSink {
    pub(crate) fn new(config: &OtlpSink) -> MetricsSink {
        let now = SystemTime::now();
        MetricsSink {
            channels: ClusterChannels::new(&config.grpc),
            config: config.clone(),
            last: HashMap::new(),
            started: now,
            last_flush: now,
        }
    }

    /// The export of one flush: every used stat as a metric.
    fn request(
        &mut self,
        server: &Server,
        stats: &BTreeMap<String, Value>,
    ) -> ExportMetricsServiceRequest {
        let c = &self.config;
        let now = SystemTime::now();
        let (time, start) = (nanos(now), nanos(self.started));
        let interval_start = nanos(self.last_flush);
        let mut metrics = Vec::new();
        for (name, v) in stats {
            if !v.used() {
                continue;
            }
            let (extracted, tags) = server.stats_view.tags.produce(name);
            let mut metric_name = if c.use_tag_extracted_name {
                extracted
            } else {
                name.clone()
            };
            if !c.prefix.is_empty() {
                metric_name = format!("{}.{metric_name}", c.prefix);
            }
            let attributes: Vec<KeyValue> = if c.emit_tags_as_attributes {
                tags.iter().map(|(k, v)| attribute(k, v)).collect()
            } else {
                Vec::new()
            };
            let data = match v {
                Value::Counter(n) => {
                    let (value, temporality, from) = if c.counters_as_deltas {
                        let last = self.last.insert(name.clone(), n.value).unwrap_or(0);
                        let delta = n.value.checked_sub(last).unwrap_or(n.value);
                        (delta, AggregationTemporality::Delta, interval_start)
                    } else {
                        (n.value, AggregationTemporality::Cumulative, start)
                    };
                    metric::Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            attributes,
                            start_time_unix_nano: from,
                            time_unix_nano: time,
                            value: Some(number_data_point::Value::AsInt(value as i64)),
                            ..Default::default()
                        }],
                        aggregation_temporality: temporality as i32,
                        is_monotonic: true,
                    })
                }
                Value::Gauge(n) => metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        attributes,
                        time_unix_nano: time,
                        value: Some(number_data_point::Value::AsInt(n.value as i64)),
                        ..Default::default()
                    }],
                }),
                Value::Histogram(h) => {
                    let (counts, temporality, from) = if c.histograms_as_deltas {
                        (&h.interval, AggregationTemporality::Delta, interval_start)
                    } else {
                        (&h.cumulative, AggregationTemporality::Cumulative, start)
                    };
                    metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint {
                            attributes,
                            start_time_unix_nano: from,
                            time_unix_nano: time,
                            count: counts.count(),
                            sum: Some(counts.sum as f64),
                            bucket_counts: counts.buckets.to_vec(),
                            explicit_bounds: ferry_stats::BUCKETS.to_vec(),
                            ..Default::default()
                        }],
                        aggregation_temporality: temporality as i32,
                    })
                }
            };
            metrics.push(Metric {
                name: metric_name,
                data: Some(data),
                ..Default::default()
            });
        }
        self.last_flush = now;
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource()),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// Sends one flush; a collector that is down or slow costs this flush only.
    pub(crate) async fn flush(
        &mut self,
        server: &Server,
        stats: &BTreeMap<String, Value>,
        interval: Duration,
    ) {
        let request = self.request(server, stats);
        let clusters = server.snapshot.load().clusters.clone();
        let Some(channel) = self.channels.channel(&clusters) else {
            tracing::debug!(cluster = %self.channels.cluster(), "OTLP metrics: the cluster has no host");
            return;
        };
        let mut client = MetricsServiceClient::new(channel);
        let timeout = self.config.grpc.timeout.unwrap_or(interval);
        match tokio::time::timeout(timeout, client.export(request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => {
                tracing::debug!(cluster = %self.channels.cluster(), %status, "OTLP metrics export failed")
            }
            Err(_) => {
                tracing::debug!(cluster = %self.channels.cluster(), "OTLP metrics export timed out")
            }
        }
    }
}

/// Log records a logger may queue for its exporter; more are dropped.
const LOG_QUEUE: usize = 10_000;

/// The value of a body or attribute for one stream.
fn render(v: &OtelValue, info: &crate::access_log::StreamInfo) -> AnyValue {
    use any_value::Value as V;
    let value = match v {
        OtelValue::Text(t) => {
            let mut s = String::new();
            t.render(info, "-", &mut s);
            V::StringValue(s)
        }
        OtelValue::List(l) => V::KvlistValue(KeyValueList {
            values: rendered_list(l, info),
        }),
        OtelValue::Array(a) => V::ArrayValue(ArrayValue {
            values: a.iter().map(|v| render(v, info)).collect(),
        }),
        OtelValue::Bool(b) => V::BoolValue(*b),
        OtelValue::Int(i) => V::IntValue(*i),
        OtelValue::Double(d) => V::DoubleValue(*d),
    };
    AnyValue { value: Some(value) }
}

/// The log record of one stream.
pub(crate) fn log_record(c: &OtelAccessLog, info: &crate::access_log::StreamInfo) -> LogRecord {
    LogRecord {
        time_unix_nano: info.start_time.map(nanos).unwrap_or(0),
        body: c.body.as_ref().map(|b| render(b, info)),
        attributes: rendered_list(&c.attributes, info),
        ..Default::default()
    }
}

/// Keys with their values rendered for one stream.
fn rendered_list(l: &[(String, OtelValue)], info: &crate::access_log::StreamInfo) -> Vec<KeyValue> {
    l.iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(render(v, info)),
            ..Default::default()
        })
        .collect()
}

/// A logger's exporter: a bounded queue to a task that batches and exports.
#[derive(Debug, Clone)]
pub(crate) struct LogExporter {
    tx: mpsc::Sender<LogRecord>,
}

impl LogExporter {
    /// Starts the exporter task of `c` on the current runtime.
    pub(crate) fn start(c: &Arc<OtelAccessLog>, snapshot: &crate::Snapshot) -> LogExporter {
        let (tx, rx) = mpsc::channel(LOG_QUEUE);
        let mut attributes = Vec::new();
        if c.builtin_labels {
            let b = &snapshot.bootstrap;
            attributes.push(attribute("log_name", &c.log_name));
            attributes.push(attribute("zone_name", ""));
            attributes.push(attribute("cluster_name", &b.node_cluster));
            attributes.push(attribute("node_name", &b.node_id));
        }
        let empty = crate::access_log::StreamInfo::default();
        attributes.extend(rendered_list(&c.resource_attributes, &empty));
        let resource = Resource {
            attributes,
            ..Default::default()
        };
        tokio::spawn(export_logs(
            c.clone(),
            snapshot.clusters.clone(),
            resource,
            rx,
        ));
        LogExporter { tx }
    }

    /// Queues a record; a full queue drops it.
    pub(crate) fn send(&self, r: LogRecord) {
        if self.tx.try_send(r).is_err() {
            tracing::debug!("OTLP access log: queue full, record dropped");
        }
    }
}

async fn export_logs(
    c: Arc<OtelAccessLog>,
    clusters: Arc<ClusterManager>,
    resource: Resource,
    mut rx: mpsc::Receiver<LogRecord>,
) {
    let channels = ClusterChannels::new(&c.grpc);
    let mut batch: Vec<LogRecord> = Vec::new();
    let mut bytes = 0usize;
    let mut tick = tokio::time::interval(c.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => {
                    bytes += prost::Message::encoded_len(&r);
                    batch.push(r);
                    bytes >= c.buffer_size_bytes as usize
                }
                None => true,
            },
            _ = tick.tick() => true,
        };
        if !flush || batch.is_empty() {
            if rx.is_closed() && batch.is_empty() {
                return;
            }
            continue;
        }
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(resource.clone()),
                scope_logs: vec![ScopeLogs {
                    log_records: std::mem::take(&mut batch),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        bytes = 0;
        let Some(ch) = channels.channel(&clusters) else {
            tracing::debug!(cluster = %c.grpc.cluster, "OTLP access log: the cluster has no host");
            continue;
        };
        let mut client = LogsServiceClient::new(ch);
        let timeout = c
            .grpc
            .timeout
            .unwrap_or(c.flush_interval.max(Duration::from_secs(1)));
        match tokio::time::timeout(timeout, client.export(request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => {
                tracing::debug!(cluster = %c.grpc.cluster, %status, "OTLP access log export failed")
            }
            Err(_) => {
                tracing::debug!(cluster = %c.grpc.cluster, "OTLP access log export timed out")
            }
        }
    }
}
