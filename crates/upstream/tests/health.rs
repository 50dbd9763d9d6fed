//! Health checking and outlier detection tasks belong to their cluster manager: they
//! run while it lives and stop when it is dropped, even if a cluster outlives it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_upstream::ClusterManager;
use std::time::Duration;
use tokio::net::TcpListener;

const DEADLINE: Duration = Duration::from_secs(20);

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(flavor = "current_thread")]
async fn health_tasks_stop_when_the_manager_is_dropped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let _ = listener.accept().await;
        }
    });
    let yaml = format!(
        r#"
static_resources:
  clusters:
  - name: c
    health_checks:
    - {{timeout: 1s, interval: 0.05s, no_traffic_interval: 0.05s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {{}}}}
    outlier_detection: {{interval: 0.05s}}
    load_assignment:
      cluster_name: c
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {p}}}}}}}
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {p}}}}}}}
"#,
        p = addr.port()
    );
    let clusters = ferry_config::load(&yaml, ferry_config::Format::Yaml)
        .unwrap()
        .bootstrap
        .clusters;
    let baseline = alive();
    let cm = ClusterManager::new(&clusters, &ferry_stats::Store::new());
    let cluster = cm.get("c").unwrap().clone();
    tokio::time::timeout(DEADLINE, cluster.ready())
        .await
        .expect("the cluster warms once both hosts were checked");
    // Two health check sessions and the outlier detector.
    assert!(
        alive() >= baseline + 3,
        "{} tasks, baseline {baseline}",
        alive()
    );
    assert_eq!(cluster.stats.membership_healthy.value(), 2);
    drop(cm);
    let end = tokio::time::Instant::now() + DEADLINE;
    while alive() > baseline && tokio::time::Instant::now() < end {
        // The poll interval of a condition wait.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(alive(), baseline, "tasks outlived the cluster manager");
    drop(cluster);
}
