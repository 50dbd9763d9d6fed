//! `envoy.access_loggers.open_telemetry`: OTLP log records (body and attributes from
//! format strings) batched off the request path to a cluster over gRPC; a bounded queue
//! drops (and counts) what a slow collector cannot take.

use crate::grpc_client::ClusterChannels;
use crate::otlp::{attribute, nanos};
use crate::stream_info::StreamInfo;
use ferry_config::otel_access_log::{OtelAccessLog, OtelValue};
use ferry_upstream::ClusterManager;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Log records a logger may queue for its exporter; more are dropped.
const LOG_QUEUE: usize = 10_000;

/// The value of a body or attribute for one stream.
fn render(v: &OtelValue, info: &StreamInfo) -> AnyValue {
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
pub(crate) fn log_record(c: &OtelAccessLog, info: &StreamInfo) -> LogRecord {
    LogRecord {
        time_unix_nano: info.start_time.map(nanos).unwrap_or(0),
        body: c.body.as_ref().map(|b| render(b, info)),
        attributes: rendered_list(&c.attributes, info),
        ..Default::default()
    }
}

/// Keys with their values rendered for one stream.
fn rendered_list(l: &[(String, OtelValue)], info: &StreamInfo) -> Vec<KeyValue> {
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
        let empty = StreamInfo::default();
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
