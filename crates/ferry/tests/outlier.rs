//! Outlier detection through a running proxy: a host answering 5xx is ejected after
//! `consecutive_5xx`, gets no traffic, and returns after its ejection time; connect
//! failures as local-origin errors; every host ejected with panic disabled gives 503 UH.
//! Each scenario runs on ferry and on Envoy.

use ferry_test_util::admin::{host_field, stat};
use ferry_test_util::switchable::{backends, cluster, start, wait_for_answers, wait_for_flags};
use ferry_test_util::Flavor;

async fn consecutive_5xx(flavor: Flavor) {
    let be = backends(&["a", "b"]).await;
    let hosts = [be[0].addr(), be[1].addr()];
    let od = "
outlier_detection:
  consecutive_5xx: 3
  interval: 0.1s
  base_ejection_time: 0.5s
  max_ejection_percent: 50";
    let proxy = start(flavor, &cluster(od, &hosts)).await;
    let admin = proxy.admin_port();
    be[0].set_traffic(500);
    // Round robin: a gets every other request, and three 500s in a row eject it.
    wait_for_answers(&proxy, 6, "ejected host a", |a| a.iter().all(|b| b == "b")).await;
    wait_for_flags(&proxy, hosts[0], "/failed_outlier_check").await;
    let s = |name: &'static str| async move {
        stat(admin, &format!("cluster.backend.outlier_detection.{name}")).await
    };
    assert_eq!(s("ejections_enforced_consecutive_5xx").await, 1, "{flavor}");
    assert_eq!(s("ejections_detected_consecutive_5xx").await, 1, "{flavor}");
    assert_eq!(s("ejections_enforced_total").await, 1, "{flavor}");
    assert_eq!(s("ejections_active").await, 1, "{flavor}");
    assert_eq!(
        stat(admin, "cluster.backend.membership_healthy").await,
        1,
        "{flavor}"
    );
    // After base_ejection_time (and the next sweep) a is back.
    be[0].set_traffic(200);
    wait_for_flags(&proxy, hosts[0], "healthy").await;
    wait_for_answers(&proxy, 4, "brought host a back", |a| {
        a.contains(&"a".into())
    })
    .await;
    assert_eq!(s("ejections_active").await, 0, "{flavor}");
    assert_eq!(
        host_field(admin, "backend", &hosts[1].to_string(), "success_rate")
            .await
            .as_deref(),
        Some("-1"),
        "{flavor}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_answering_5xx_is_ejected_and_returns() {
    consecutive_5xx(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        consecutive_5xx(Flavor::Envoy).await;
    }
}

async fn all_ejected(flavor: Flavor) {
    let be = backends(&["a", "b"]).await;
    let hosts = [be[0].addr(), be[1].addr()];
    let od = "
outlier_detection:
  consecutive_5xx: 2
  interval: 0.1s
  base_ejection_time: 60s
  max_ejection_percent: 100
common_lb_config: {healthy_panic_threshold: {value: 0}}";
    let proxy = start(flavor, &cluster(od, &hosts)).await;
    be[0].set_traffic(503);
    be[1].set_traffic(503);
    wait_for_answers(&proxy, 2, "answered no healthy upstream", |a| {
        a.iter().all(|b| b == "503 no healthy upstream")
    })
    .await;
    let admin = proxy.admin_port();
    assert_eq!(
        stat(admin, "cluster.backend.outlier_detection.ejections_active").await,
        2,
        "{flavor}"
    );
    assert!(
        stat(admin, "cluster.backend.upstream_cx_none_healthy").await >= 2,
        "{flavor}"
    );
    // 503 is a gateway error too, but its ejection is not enforced by default.
    assert_eq!(
        stat(
            admin,
            "cluster.backend.outlier_detection.ejections_enforced_consecutive_gateway_failure"
        )
        .await,
        0,
        "{flavor}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_ejected_without_panic_is_503_no_healthy_upstream() {
    all_ejected(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        all_ejected(Flavor::Envoy).await;
    }
}

async fn local_origin(flavor: Flavor) {
    let be = backends(&["b"]).await;
    // A port nothing listens on: every connection is refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        l.local_addr().unwrap_or_else(|e| panic!("{e}"))
    };
    let od = "
outlier_detection:
  split_external_local_origin_errors: true
  consecutive_local_origin_failure: 2
  interval: 0.1s
  base_ejection_time: 60s
  max_ejection_percent: 50";
    let proxy = start(flavor, &cluster(od, &[closed, be[0].addr()])).await;
    wait_for_answers(&proxy, 6, "ejected the closed host", |a| {
        a.iter().all(|b| b == "b")
    })
    .await;
    let admin = proxy.admin_port();
    let s = |name: &'static str| async move {
        stat(admin, &format!("cluster.backend.outlier_detection.{name}")).await
    };
    assert_eq!(
        s("ejections_enforced_consecutive_local_origin_failure").await,
        1,
        "{flavor}"
    );
    assert_eq!(s("ejections_detected_consecutive_5xx").await, 0, "{flavor}");
    wait_for_flags(&proxy, closed, "/failed_outlier_check").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_local_origin_errors_when_split() {
    local_origin(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        local_origin(Flavor::Envoy).await;
    }
}
