//! Health check and outlier detection event logs: the JSON lines a proxy writes when a
//! host is ejected and brought back, or fails and passes its active health checks.
//! Each scenario runs on ferry and on Envoy, and the lines must be the same apart from
//! the time values.

use ferry_test_util::bootstrap::HcmBootstrap;
use ferry_test_util::logs::lines_when;
use ferry_test_util::ports::rewrite_bootstrap;
use ferry_test_util::switchable::{backends, cluster, wait_for_answers, wait_for_flags};
use ferry_test_util::{Flavor, Proxy};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

/// Starts `flavor` routing to `cluster_yaml`, with `top` (YAML) added to the bootstrap.
async fn start(flavor: Flavor, cluster_yaml: &str, top: &str) -> Proxy {
    let yaml = HcmBootstrap::new().cluster_yaml(cluster_yaml).yaml() + top;
    let rw = rewrite_bootstrap(&yaml, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:#}"));
    ferry_test_util::proc::start(flavor, &rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The lines of an event log with the time values (which differ from run to run)
/// replaced by `T` and `S`, once there are `n` of them.
async fn events(path: &Path, n: usize) -> Vec<String> {
    let ts = regex::Regex::new(r#""timestamp":"[0-9T:.Z-]+""#).unwrap_or_else(|e| panic!("{e}"));
    let secs =
        regex::Regex::new(r#""secs_since_last_action":"[0-9]+""#).unwrap_or_else(|e| panic!("{e}"));
    lines_when(path, n)
        .await
        .iter()
        .map(|l| {
            assert!(
                serde_json::from_str::<serde_json::Value>(l).is_ok(),
                "not JSON: {l}"
            );
            let l = ts.replace(l, r#""timestamp":"T""#);
            secs.replace(&l, r#""secs_since_last_action":"S""#)
                .into_owned()
        })
        .collect()
}

async fn outlier(flavor: Flavor) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("outlier.log");
    let be = backends(&["a", "b"]).await;
    let hosts = [be[0].addr(), be[1].addr()];
    let od = "
outlier_detection:
  consecutive_5xx: 3
  interval: 0.1s
  base_ejection_time: 0.5s
  max_ejection_percent: 50";
    let top = format!(
        "cluster_manager:\n  outlier_detection:\n    event_log_path: {}\n",
        log.display()
    );
    let proxy = start(flavor, &cluster(od, &hosts), &top).await;
    be[0].set_traffic(500);
    wait_for_answers(&proxy, 6, "ejected host a", |a| a.iter().all(|b| b == "b")).await;
    be[0].set_traffic(200);
    wait_for_flags(&proxy, hosts[0], "healthy").await;
    let got = events(&log, 2).await;
    let a = hosts[0];
    assert_eq!(
        got,
        [
            format!(
                r#"{{"type":"CONSECUTIVE_5XX","timestamp":"T","cluster_name":"backend","upstream_url":"{a}","action":"EJECT","num_ejections":1,"enforced":true,"eject_consecutive_event":{{}}}}"#
            ),
            // An unejection has no type of its own: the enum's default is written.
            format!(
                r#"{{"type":"CONSECUTIVE_5XX","timestamp":"T","secs_since_last_action":"S","cluster_name":"backend","upstream_url":"{a}","action":"UNEJECT","num_ejections":1,"enforced":false}}"#
            ),
        ],
        "{flavor}:\n{}",
        proxy.log()
    );
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_ejections_and_unejections_are_logged() {
    outlier(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        outlier(Flavor::Envoy).await;
    }
}

fn host_json(a: SocketAddr) -> String {
    format!(
        r#""host":{{"socket_address":{{"protocol":"TCP","address":"{}","port_value":{},"resolver_name":"","ipv4_compat":false,"network_namespace_filepath":""}}}}"#,
        a.ip(),
        a.port()
    )
}

const LOCALITY: &str = r#""locality":{"region":"","zone":"","sub_zone":""}"#;

async fn health(flavor: Flavor) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (old, new) = (dir.path().join("old.log"), dir.path().join("new.log"));
    let be = backends(&["a"]).await;
    let a = be[0].addr();
    // The deprecated event_log_path and a file event sink get the same events.
    let hc = format!(
        "
health_checks:
- timeout: 1s
  interval: 0.1s
  no_traffic_interval: 0.1s
  unhealthy_threshold: 2
  healthy_threshold: 2
  http_health_check: {{path: /healthz}}
  event_log_path: {}
  event_logger:
  - name: envoy.health_check.event_sink.file
    typed_config:
      '@type': type.googleapis.com/envoy.extensions.health_check.event_sinks.file.v3.HealthCheckEventFileSink
      event_log_path: {}",
        old.display(),
        new.display()
    );
    let proxy = start(flavor, &cluster(&hc, &[a]), "").await;
    // The first check passes; then a 503 fails the host at once; then two passing
    // checks bring it back. Failures after the first are not logged without
    // always_log_health_check_failures.
    be[0].set_health(503);
    wait_for_flags(&proxy, a, "/failed_active_hc").await;
    be[0].set_health(200);
    wait_for_flags(&proxy, a, "healthy").await;
    let prefix = format!(
        r#"{{"health_checker_type":"HTTP",{},"cluster_name":"backend""#,
        host_json(a)
    );
    let want = [
        format!(
            r#"{prefix},"add_healthy_event":{{"first_check":true}},"timestamp":"T",{LOCALITY}}}"#
        ),
        format!(
            r#"{prefix},"eject_unhealthy_event":{{"failure_type":"ACTIVE","http_status_code":503}},"timestamp":"T",{LOCALITY}}}"#
        ),
        format!(
            r#"{prefix},"add_healthy_event":{{"first_check":false}},"timestamp":"T",{LOCALITY}}}"#
        ),
    ];
    for log in [&new, &old] {
        assert_eq!(events(log, 3).await, want, "{flavor}:\n{}", proxy.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_transitions_are_logged() {
    health(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        health(Flavor::Envoy).await;
    }
}

async fn health_failures(flavor: Flavor) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("hc.log");
    let be = backends(&["a"]).await;
    let a = be[0].addr();
    be[0].set_health(503);
    let hc = format!(
        "
health_checks:
- timeout: 1s
  interval: 0.1s
  no_traffic_interval: 0.1s
  unhealthy_threshold: 1
  healthy_threshold: 1
  always_log_health_check_failures: true
  always_log_health_check_success: true
  http_health_check: {{path: /healthz}}
  event_log_path: {}",
        log.display()
    );
    let proxy = start(flavor, &cluster(&hc, &[a]), "").await;
    // The first check fails (the host starts failed: no ejection), and every later
    // failure is logged too; then passing checks are logged after the transition.
    let got = events(&log, 2).await;
    let prefix = format!(
        r#"{{"health_checker_type":"HTTP",{},"cluster_name":"backend""#,
        host_json(a)
    );
    let failure = |first: bool| {
        format!(
            r#"{prefix},"timestamp":"T","health_check_failure_event":{{"failure_type":"ACTIVE","first_check":{first},"http_status_code":503}},{LOCALITY}}}"#
        )
    };
    assert_eq!(got[..2], [failure(true), failure(false)], "{flavor}");
    be[0].set_health(200);
    wait_for_flags(&proxy, a, "healthy").await;
    let success =
        format!(r#"{prefix},"timestamp":"T",{LOCALITY},"successful_health_check_event":{{}}}}"#);
    let added = format!(
        r#"{prefix},"add_healthy_event":{{"first_check":false}},"timestamp":"T",{LOCALITY}}}"#
    );
    let got = ferry_test_util::admin::poll(std::time::Duration::from_secs(10), || async {
        let got = events(&log, 0).await;
        got.contains(&success).then_some(got)
    })
    .await
    .unwrap_or_else(|| panic!("{flavor}: no successful check logged"));
    let at = got.iter().position(|l| *l == added);
    assert!(at.is_some(), "{flavor}: {got:#?}");
    // Before the transition only failures; after it only successes.
    let at = at.unwrap_or_default();
    assert!(
        got[..at]
            .iter()
            .all(|l| *l == failure(false) || *l == failure(true)),
        "{flavor}: {got:#?}"
    );
    assert!(
        got[at + 1..].iter().all(|l| *l == success),
        "{flavor}: {got:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_and_success_is_logged_when_asked() {
    health_failures(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        health_failures(Flavor::Envoy).await;
    }
}
