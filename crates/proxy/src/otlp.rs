//! OTLP over gRPC to a cluster (`grpc_service.envoy_grpc.cluster_name`): a channel to a
//! host the cluster's load balancer picks, made again when that host changes, and the
//! conversion of the stats to OTLP metrics as Envoy's `envoy.stat_sinks.open_telemetry`
//! writes them (one metric per stat, tag-extracted name, tags as attributes).

use crate::server::Server;
use ferry_config::stats::OtlpSink;
use ferry_stats::Value;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::transport::{Channel, Endpoint};

/// A gRPC channel to one host of a cluster.
#[derive(Debug)]
pub(crate) struct ClusterChannel {
    cluster: String,
    current: Option<(SocketAddr, Channel)>,
}

impl ClusterChannel {
    pub(crate) fn new(cluster: &str) -> ClusterChannel {
        ClusterChannel {
            cluster: cluster.to_string(),
            current: None,
        }
    }

    /// A channel to a host of the cluster (None when it has none).
    pub(crate) fn channel(&mut self, server: &Server) -> Option<Channel> {
        let snap = server.snapshot.load();
        let cluster = snap.clusters.get(&self.cluster)?;
        let host = cluster.choose_host(None)?;
        if let Some((addr, ch)) = &self.current {
            if *addr == host.address {
                return Some(ch.clone());
            }
        }
        let endpoint = Endpoint::from_shared(format!("http://{}", host.address))
            .ok()?
            .connect_timeout(cluster.config.connect_timeout);
        let ch = endpoint.connect_lazy();
        self.current = Some((host.address, ch.clone()));
        Some(ch)
    }
}

fn string_value(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.to_string())),
    })
}

/// An attribute with a string value.
pub(crate) fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: string_value(value),
        ..Default::default()
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The resource every export describes: this process.
pub(crate) fn resource() -> Resource {
    Resource {
        attributes: vec![
            attribute("telemetry.sdk.name", "ferry"),
            attribute("telemetry.sdk.language", "rust"),
            attribute("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
        ],
        ..Default::default()
    }
}

/// The `envoy.stat_sinks.open_telemetry` sink's state between flushes.
pub(crate) struct MetricsSink {
    config: OtlpSink,
    channel: ClusterChannel,
    /// Counters' values at the last export (for deltas).
    last: HashMap<String, u64>,
    started: SystemTime,
    last_flush: SystemTime,
}

impl MetricsSink {
    pub(crate) fn new(config: &OtlpSink) -> MetricsSink {
        let now = SystemTime::now();
        MetricsSink {
            channel: ClusterChannel::new(&config.cluster),
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
        let Some(channel) = self.channel.channel(server) else {
            tracing::debug!(cluster = %self.config.cluster, "OTLP metrics: the cluster has no host");
            return;
        };
        let mut client = MetricsServiceClient::new(channel);
        let timeout = self.config.timeout.unwrap_or(interval);
        match tokio::time::timeout(timeout, client.export(request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => {
                tracing::debug!(cluster = %self.config.cluster, %status, "OTLP metrics export failed")
            }
            Err(_) => {
                tracing::debug!(cluster = %self.config.cluster, "OTLP metrics export timed out")
            }
        }
    }
}
