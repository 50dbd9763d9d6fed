//! xDS on ferry or Envoy, driven by the scripted ADS server of `ferry-test-util`:
//! push-to-applied time of a route change (RDS: from the push until a client sees the
//! new route), of 1,000 EDS clusters with their assignments (from the push until both
//! are ACKed, which the proxy does once they are applied), and the proxy's RSS with
//! them loaded. Prints one JSON object.
//!
//! `FERRY_BIN` (or `ENVOY_BIN`) names the binary; `bench/run.sh` builds it in release.

use clap::Parser;
use ferry_test_util::diff::send;
use ferry_test_util::proc::{start, Flavor};
use ferry_test_util::xds::{
    cluster, cluster_load_assignment, listener, route_configuration, XdsServer, CLUSTER, ENDPOINTS,
    LISTENER, ROUTE,
};
use ferry_test_util::{free_port, Request};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// `ferry` or `envoy`.
    #[arg(long, default_value = "ferry")]
    target: String,
    /// Route changes pushed one after another.
    #[arg(long, default_value_t = 50)]
    pushes: usize,
    /// EDS clusters pushed at once.
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
}

fn bootstrap(xds: std::net::SocketAddr) -> String {
    format!(
        r#"
node: {{id: bench, cluster: bench}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]
  cds_config: {{ads: {{}}, resource_api_version: V3}}
  lds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
"#,
        admin = free_port(),
        port = xds.port()
    )
}

fn rds_listener(port: u16) -> String {
    format!(
        r#"
name: ingress
address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: ingress
      rds: {{route_config_name: routes, config_source: {{ads: {{}}, resource_api_version: V3}}}}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    )
}

fn routes(version: usize) -> String {
    format!(
        r#"
name: routes
virtual_hosts:
- name: all
  domains: ["*"]
  routes: [{{match: {{prefix: "/"}}, direct_response: {{status: 200, body: {{inline_string: "v{version}"}}}}}}]
"#
    )
}

fn eds_cluster(i: usize) -> String {
    format!(
        "name: c{i}\ntype: EDS\nconnect_timeout: 1s\n\
         eds_cluster_config: {{eds_config: {{ads: {{}}, resource_api_version: V3}}}}\n"
    )
}

fn assignment(i: usize) -> String {
    format!(
        "cluster_name: c{i}\nendpoints:\n- lb_endpoints:\n  - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
        10000 + i % 50000
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let flavor = match args.target.as_str() {
        "envoy" => Flavor::Envoy,
        _ => Flavor::Ferry,
    };
    let xds = XdsServer::start().await;
    let port = free_port();
    xds.set(CLUSTER, "0", vec![]);
    xds.set(LISTENER, "0", vec![listener(&rds_listener(port))]);
    xds.set(ROUTE, "0", vec![route_configuration(&routes(0))]);
    let proxy = start(flavor, &bootstrap(xds.addr())).await?;
    let rss_before = rss_kib(proxy.pid());

    // Route changes: from the push until a client sees the new body.
    let mut route_ms = Vec::new();
    for i in 1..=args.pushes {
        let want = format!("v{i}");
        let pushed = Instant::now();
        xds.set(ROUTE, &i.to_string(), vec![route_configuration(&routes(i))]);
        loop {
            let o = send(port, &Request::get("/")).await?;
            if o.body_text() == want {
                break;
            }
            if pushed.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("route change {i} not applied in 30 s");
            }
        }
        route_ms.push(pushed.elapsed().as_secs_f64() * 1000.0);
    }
    route_ms.sort_by(f64::total_cmp);

    // EDS clusters: from the push until CDS and EDS are both ACKed.
    let clusters: Vec<_> = (0..args.clusters)
        .map(|i| cluster(&eds_cluster(i)))
        .collect();
    let assignments: Vec<_> = (0..args.clusters)
        .map(|i| cluster_load_assignment(&assignment(i)))
        .collect();
    let pushed = Instant::now();
    xds.set(ENDPOINTS, "1", assignments);
    xds.set(CLUSTER, "1", clusters);
    let cds = xds.wait_ack(CLUSTER, "1").await.is_some();
    let eds = xds.wait_ack(ENDPOINTS, "1").await.is_some();
    let eds_ms = pushed.elapsed().as_secs_f64() * 1000.0;
    let rss_after = rss_kib(proxy.pid());
    let out = serde_json::json!({
        "target": args.target,
        "route_change_ms": {
            "p50": percentile(&route_ms, 0.5),
            "p99": percentile(&route_ms, 0.99),
            "pushes": args.pushes,
        },
        "eds_clusters": {
            "clusters": args.clusters,
            "applied": cds && eds,
            "push_to_ack_ms": eds_ms,
        },
        "rss_kib": {"before": rss_before, "with_clusters": rss_after},
    });
    println!("{out}");
    Ok(())
}
