//! `envoy.stat_sinks.open_telemetry`: OTLP metrics over gRPC to a cluster, as Envoy
//! writes them (one metric per stat, tag-extracted name, tags as attributes; counters
//! as deltas or cumulative sums, gauges, histograms with Envoy's buckets).

use crate::grpc_client::ClusterChannels;
use crate::otlp::{attribute, nanos, resource};
use crate::server::Server;
use ferry_config::stats::OtlpSink;
use ferry_stats::Value;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

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
