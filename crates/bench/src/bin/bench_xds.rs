//! xDS on ferry or Envoy, driven by the scripted ADS server of `ferry-test-util` over
//! state of the world or delta: push-to-applied time of a route change (RDS: from the
//! push until a client sees the new route), of 1,000 EDS clusters with their
//! assignments (from the push until both are ACKed, which the proxy does once they are
//! applied), of one assignment changed among the 1,000 (state of the world sends them
//! all again, delta the one), and the proxy's RSS with them loaded. Prints one JSON
//! object.
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
    /// `sotw` (ADS, state of the world) or `delta` (ADS, delta).
    #[arg(long, default_value = "sotw")]
    protocol: String,
    /// Single assignment changes pushed one after another among the clusters.
    #[arg(long, default_value_t = 20)]
    changes: usize,
}

/// The assignment of cluster `c<i>`: one host, whose port moves with `shift`.
fn assignment_of(i: usize, shift: usize) -> ferry_test_util::xds::Any {
    let port = 10000 + ((i + shift) % 50000) as u16;
    let host: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    cluster_load_assignment(&yaml::assignment(&format!("c{i}"), &[host]))
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
    let transport = match args.protocol.as_str() {
        "delta" => yaml::Transport::DeltaAds,
        _ => yaml::Transport::Ads,
    };
    let proxy = start(flavor, &yaml::bootstrap_over(xds.addr(), transport)).await?;
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
    let mut assignments: Vec<_> = (0..args.clusters).map(|i| assignment_of(i, 0)).collect();
    let pushed = Instant::now();
    xds.set(ENDPOINTS, "1", assignments.clone());
    xds.set(CLUSTER, "1", clusters);
    let cds = xds.wait_ack(CLUSTER, "1").await.is_some();
    let eds = xds.wait_ack(ENDPOINTS, "1").await.is_some();
    let eds_ms = pushed.elapsed().as_secs_f64() * 1000.0;
    let rss_after = rss_kib(proxy.pid());

    // One assignment changed at a time: from the push until it is ACKed.
    let mut change_ms = Vec::new();
    for n in 0..args.changes {
        let i = n * 37 % args.clusters.max(1);
        assignments[i] = assignment_of(i, n + 1);
        let version = format!("change-{n}");
        let pushed = Instant::now();
        xds.set(ENDPOINTS, &version, assignments.clone());
        if xds.wait_ack(ENDPOINTS, &version).await.is_none() {
            anyhow::bail!("assignment change {n} not ACKed");
        }
        change_ms.push(pushed.elapsed().as_secs_f64() * 1000.0);
    }
    change_ms.sort_by(f64::total_cmp);
    let out = serde_json::json!({
        "target": args.target,
        "protocol": args.protocol,
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
        "one_assignment_changed_ms": {
            "p50": percentile(&change_ms, 0.5),
            "p99": percentile(&change_ms, 0.99),
            "changes": args.changes,
        },
        "rss_kib": {"before": rss_before, "with_clusters": rss_after},
    });
    println!("{out}");
    Ok(())
}
