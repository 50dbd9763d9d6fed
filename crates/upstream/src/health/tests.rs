//! The health check loop in virtual time, against a scripted probe: the intervals
//! (no traffic, healthy edge, unhealthy, unhealthy edge), the thresholds and the
//! host's flags, to the millisecond, with no socket and no real wait.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::health::session::Failure;
use std::collections::VecDeque;
use std::time::Duration;

/// A probe answering from a script (healthy or not), recording when it was asked.
pub(crate) struct Script {
    answers: VecDeque<bool>,
    asked: Arc<Mutex<Vec<u64>>>,
    start: tokio::time::Instant,
}

impl Script {
    pub(crate) async fn check(&mut self) -> Verdict {
        self.asked
            .lock()
            .push(self.start.elapsed().as_millis() as u64);
        match self.answers.pop_front() {
            Some(true) | None => Verdict::Healthy { degraded: false },
            Some(false) => Verdict::Unhealthy {
                failure: Failure::Network,
                retriable: false,
                status: 0,
            },
        }
    }
}

fn cluster(health_check: &str) -> Arc<Cluster> {
    let yaml = format!(
        r#"
static_resources:
  clusters:
  - name: c
    health_checks:
    - {health_check}
    load_assignment:
      cluster_name: c
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 9}}}}}}}}]}}]
"#
    );
    let config = ferry_config::load(&yaml, ferry_config::Format::Yaml)
        .unwrap()
        .bootstrap
        .clusters
        .remove(0);
    let hosts = crate::discovery::static_::hosts_reusing(&config, &[]);
    Cluster::new(
        config,
        hosts,
        None,
        &ferry_stats::Store::new(),
        &Default::default(),
    )
}

/// Runs the check loop of the cluster's host against `answers` until it has been
/// asked `rounds` times; returns when it was asked (ms) and the host's flags after
/// each answer.
async fn run(c: &Arc<Cluster>, answers: &[bool], rounds: usize) -> (Vec<u64>, Vec<String>) {
    let host = c.hosts()[0].clone();
    let check = c.health.check.clone().unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let probe = Probe::Scripted(Script {
        answers: answers.iter().copied().collect(),
        asked: asked.clone(),
        start: tokio::time::Instant::now(),
    });
    let task = tokio::spawn(run_checks(Arc::downgrade(c), host.clone(), check, probe));
    let mut flags = Vec::new();
    let mut seen = 0;
    while seen < rounds {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let n = asked.lock().len();
        if n > seen {
            // The verdict is applied right after the probe answers.
            tokio::task::yield_now().await;
            flags.push(host.health_flags_string());
            seen = n;
        }
    }
    task.abort();
    let times = asked.lock().clone();
    (times, flags)
}

#[tokio::test(start_paused = true)]
async fn without_traffic_the_no_traffic_intervals_apply() {
    let c = cluster(
        "{timeout: 1s, interval: 1s, no_traffic_interval: 5s, no_traffic_healthy_interval: 7s, unhealthy_threshold: 2, healthy_threshold: 2, tcp_health_check: {}}",
    );
    let (times, flags) = run(&c, &[true, true, false, false, true], 5).await;
    // Healthy at once on the first success; no traffic: 7 s while healthy, 5 s
    // while a change is pending or the host is unhealthy.
    assert_eq!(times, [0, 7000, 14000, 19000, 24000]);
    assert_eq!(flags[0], "healthy");
    assert_eq!(flags[2], "healthy", "one failure of two: still healthy");
    assert_eq!(flags[3], "/failed_active_hc");
    assert_eq!(
        flags[4], "/failed_active_hc",
        "one success of two: still failed"
    );
}

#[tokio::test(start_paused = true)]
async fn with_traffic_the_edge_intervals_apply() {
    let c = cluster(
        "{timeout: 1s, interval: 1s, unhealthy_interval: 3s, unhealthy_edge_interval: 2s, healthy_edge_interval: 0.5s, unhealthy_threshold: 2, healthy_threshold: 2, tcp_health_check: {}}",
    );
    // The cluster has had traffic.
    c.stats.upstream_cx_total.inc();
    let (times, flags) = run(&c, &[true, false, false, false, true, true], 6).await;
    // healthy (1 s) · failing, pending (edge 2 s) · unhealthy (3 s) · unhealthy (3 s)
    // · recovering, pending (edge 0.5 s) · healthy.
    assert_eq!(times, [0, 1000, 3000, 6000, 9000, 9500]);
    assert_eq!(flags[2], "/failed_active_hc");
    assert_eq!(flags[4], "/failed_active_hc");
    assert_eq!(flags[5], "healthy");
}
