//! OpenTelemetry export on ferry and on Envoy 1.40 with the same bootstrap: the
//! `envoy.stat_sinks.open_telemetry` stats sink and the
//! `envoy.access_loggers.open_telemetry` access logger, received by the test's OTLP/gRPC
//! collector (`ferry_test_util::collector::Otlp`, shared with the tracing tests) and
//! compared.

use ferry_test_util::bootstrap::HcmBootstrap;
use ferry_test_util::collector::Otlp;
use ferry_test_util::diff::{send, Request};
use ferry_test_util::proc::{flavors, Flavor, Proxy};
use ferry_test_util::scripted::{Scripted, Step};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// The bootstrap: one route to `backend`, an `otel` cluster (HTTP/2) for the collector,
/// and `top` added.
fn bootstrap(hcm: &str, top: &str) -> String {
    let otel = "typed_extension_protocol_options:\n  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n    \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n    explicit_http_config: {http2_protocol_options: {}}";
    let mut b = HcmBootstrap::new()
        .cluster("backend", "")
        .cluster("otel", otel);
    if !hcm.is_empty() {
        b = b.hcm(hcm);
    }
    b.yaml() + top
}

async fn start(flavor: Flavor, yaml: &str, up: &Scripted, otel: SocketAddr) -> Proxy {
    ferry_test_util::proc::start_with(flavor, yaml, &[("backend", up.addr()), ("otel", otel)]).await
}

async fn traffic(p: &Proxy, up: &Scripted) {
    let port = p.listener_port().unwrap_or_default();
    up.push([Step::Status(200), Step::Status(200), Step::Status(404)]);
    for path in ["/a", "/b", "/missing"] {
        send(port, &Request::get(path))
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e:#}", p.flavor()));
    }
}

/// Points of admin's own traffic (not the same from one proxy to the other).
fn admin(attrs: &[KeyValue]) -> bool {
    attrs
        .iter()
        .any(|a| a.key == "envoy.http_conn_manager_prefix" && string_of(&a.value) == "admin")
}

fn attr_keys(attrs: &[KeyValue]) -> String {
    let mut k: Vec<&str> = attrs.iter().map(|a| a.key.as_str()).collect();
    k.sort();
    k.join(",")
}

fn string_of(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// (metric name, kind, attribute keys) of every data point received for the cluster
/// `backend` or the `ingress` connection manager.
fn metric_points(reqs: &[ExportMetricsServiceRequest]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in reqs {
        for rm in &r.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    let points: Vec<(String, &'static str)> = match &m.data {
                        Some(Data::Sum(s)) => s
                            .data_points
                            .iter()
                            .filter(|d| !admin(&d.attributes))
                            .map(|d| {
                                (
                                    attr_keys(&d.attributes),
                                    if s.is_monotonic {
                                        "sum"
                                    } else {
                                        "sum-nonmonotonic"
                                    },
                                )
                            })
                            .collect(),
                        Some(Data::Gauge(g)) => g
                            .data_points
                            .iter()
                            .filter(|d| !admin(&d.attributes))
                            .map(|d| (attr_keys(&d.attributes), "gauge"))
                            .collect(),
                        Some(Data::Histogram(h)) => h
                            .data_points
                            .iter()
                            .filter(|d| !admin(&d.attributes))
                            .map(|d| (attr_keys(&d.attributes), "histogram"))
                            .collect(),
                        _ => vec![(String::new(), "other")],
                    };
                    for (keys, kind) in points {
                        out.insert(format!("{} {kind} [{keys}]", m.name));
                    }
                }
            }
        }
    }
    out
}

/// The counter value of `name` with attribute `key=value` in the last export.
fn counter(
    reqs: &[ExportMetricsServiceRequest],
    name: &str,
    key: &str,
    value: &str,
) -> Option<i64> {
    let last = reqs.last()?;
    for rm in &last.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in sm.metrics.iter().filter(|m| m.name == name) {
                if let Some(Data::Sum(s)) = &m.data {
                    for d in &s.data_points {
                        if d.attributes
                            .iter()
                            .any(|a| a.key == key && string_of(&a.value) == value)
                        {
                            if let Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v)) = d.value {
                                return Some(v);
                            }
                        }
                    }
                }
            }
        }
    }
    None
}

async fn metrics(flavor: Flavor) -> BTreeSet<String> {
    let collector = Otlp::start().await;
    let top = "stats_flush_interval: 0.2s\nstats_sinks:\n- name: envoy.stat_sinks.open_telemetry\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig\n    grpc_service: {envoy_grpc: {cluster_name: otel}}\n";
    let up = Scripted::start(vec![]).await;
    let p = start(flavor, &bootstrap("", top), &up, collector.addr()).await;
    traffic(&p, &up).await;
    let got = ferry_test_util::admin::poll(Duration::from_secs(10), || {
        let reqs = collector.metric_requests();
        async move {
            (counter(&reqs, "cluster.upstream_rq", "envoy.response_code", "200") == Some(2))
                .then_some(reqs)
        }
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{flavor:?}: no export with cluster.upstream_rq 200 = 2\n{}",
            p.log()
        )
    });
    if let Ok(path) = std::env::var("OTLP_DUMP") {
        let _ = std::fs::write(format!("{path}.{flavor:?}"), format!("{:#?}", got.last()));
    }
    let points = metric_points(&got);
    eprintln!(
        "{flavor:?}: {} points; sample: {:#?}",
        points.len(),
        points
            .iter()
            .filter(|p| p.contains("cluster.upstream_rq") || p.contains("upstream_rq_time"))
            .collect::<Vec<_>>()
    );
    points
        .into_iter()
        .filter(|p| p.starts_with("cluster.") || p.starts_with("http."))
        .filter(|p| !p.starts_with("http.admin"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_telemetry_stats_sink_exports_counters_gauges_and_histograms() {
    let mut seen = Vec::new();
    for flavor in flavors() {
        seen.push(metrics(flavor).await);
    }
    if seen.len() == 2 {
        let only_envoy: Vec<&String> = seen[1].difference(&seen[0]).collect();
        let only_ferry: Vec<&String> = seen[0].difference(&seen[1]).collect();
        assert!(
            only_envoy.is_empty() && only_ferry.is_empty(),
            "metrics differ:\nonly Envoy: {only_envoy:#?}\nonly ferry: {only_ferry:#?}"
        );
    }
}

/// (resource attributes, body, attributes) of every log record received, sorted.
fn log_records(reqs: &[ExportLogsServiceRequest]) -> Vec<String> {
    let kv = |attrs: &[KeyValue]| -> String {
        let mut a: Vec<String> = attrs
            .iter()
            .map(|a| format!("{}={}", a.key, string_of(&a.value)))
            .collect();
        a.sort();
        a.join(",")
    };
    let mut out = Vec::new();
    for r in reqs {
        for rl in &r.resource_logs {
            let resource = rl
                .resource
                .as_ref()
                .map(|r| kv(&r.attributes))
                .unwrap_or_default();
            for sl in &rl.scope_logs {
                for l in &sl.log_records {
                    assert!(l.time_unix_nano > 0, "a record without its time");
                    out.push(format!(
                        "resource[{resource}] body[{}] attributes[{}]",
                        string_of(&l.body),
                        kv(&l.attributes)
                    ));
                }
            }
        }
    }
    out.sort();
    out
}

async fn access_log(flavor: Flavor) -> Vec<String> {
    let collector = Otlp::start().await;
    let hcm = r#"access_log:
- name: envoy.access_loggers.open_telemetry
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig
    common_config:
      log_name: requests
      grpc_service: {envoy_grpc: {cluster_name: otel}}
      transport_api_version: V3
      buffer_flush_interval: 0.1s
    body: {string_value: "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%"}
    attributes:
      values:
      - key: status
        value: {string_value: "%RESPONSE_CODE%"}
      - key: cluster
        value: {string_value: "%UPSTREAM_CLUSTER%"}
      - key: flags
        value: {string_value: "%RESPONSE_FLAGS%"}
    resource_attributes:
      values:
      - key: service.name
        value: {string_value: orders}"#;
    let up = Scripted::start(vec![]).await;
    let p = start(flavor, &bootstrap(hcm, ""), &up, collector.addr()).await;
    traffic(&p, &up).await;
    let got = ferry_test_util::admin::poll(Duration::from_secs(10), || {
        let reqs = collector.log_requests();
        async move {
            let records = log_records(&reqs);
            (records.len() >= 3).then_some(records)
        }
    })
    .await
    .unwrap_or_else(|| panic!("{flavor:?}: no 3 log records\n{}", p.log()));
    assert_eq!(got.len(), 3, "{flavor:?}: {got:#?}");
    assert!(
        got[0].contains("body[GET /a 200]")
            && got[0].contains("status=200")
            && got[0].contains("service.name=orders"),
        "{flavor:?}: {got:#?}"
    );
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_telemetry_access_log_sends_formatted_records() {
    let mut seen = Vec::new();
    for flavor in flavors() {
        seen.push(access_log(flavor).await);
    }
    if seen.len() == 2 {
        assert_eq!(seen[0], seen[1], "log records (ferry, then Envoy)");
    }
}
