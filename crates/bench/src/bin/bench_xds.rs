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
use ferry_test_util::xds::yaml;
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

/// The route configuration at `version`: its direct response names the version.
fn routes_at(version: usize) -> String {
    yaml::routes(&format!(
        "direct_response: {{status: 200, body: {{inline_string: \"v{version}\"}}}}"
    ))
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
    xds.set(LISTENER, "0", vec![listener(&yaml::rds_listener(port))]);
    xds.set(ROUTE, "0", vec![route_configuration(&routes_at(0))]);
    let proxy = start(flavor, &yaml::bootstrap(xds.addr())).await?;
    let rss_before = rss_kib(proxy.pid());

    // Route changes: from the push until a client sees the new body.
    let mut route_ms = Vec::new();
    for i in 1..=args.pushes {
        let want = format!("v{i}");
        let pushed = Instant::now();
        xds.set(
            ROUTE,
            &i.to_string(),
            vec![route_configuration(&routes_at(i))],
        );
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
        .map(|i| cluster(&yaml::eds_cluster(&format!("c{i}"))))
        .collect();
    let assignments: Vec<_> = (0..args.clusters)
        .map(|i| {
            let host: std::net::SocketAddr = ([127, 0, 0, 1], 10000 + (i % 50000) as u16).into();
            cluster_load_assignment(&yaml::assignment(&format!("c{i}"), &[host]))
        })
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
