//! Active health checking through a running proxy: HTTP, TCP and gRPC checks take a
//! failing host out of the rotation and bring it back; panic mode; a response with
//! `x-envoy-immediate-health-check-fail`. Each scenario runs on ferry and on Envoy.

use ferry_test_util::admin::{host_field, stat};
use ferry_test_util::switchable::{
    answers, backends, cluster, start, wait_for_answers, wait_for_flags, Scripted,
};
use ferry_test_util::Flavor;
use std::net::SocketAddr;

const HTTP_CHECK: &str = "
health_checks:
- timeout: 1s
  interval: 0.1s
  no_traffic_interval: 0.1s
  unhealthy_threshold: 2
  healthy_threshold: 2
  http_health_check: {path: /healthz}";

async fn http_check_takes_a_host_out_and_back(flavor: Flavor) {
    let be = backends(&["a", "b"]).await;
    let hosts = [be[0].addr(), be[1].addr()];
    let proxy = start(flavor, &cluster(HTTP_CHECK, &hosts)).await;
    let admin = proxy.admin_port();
    // Warm: every host was checked before the listener opened.
    assert!(
        be[0].health_checks() >= 1 && be[1].health_checks() >= 1,
        "{flavor}"
    );
    wait_for_answers(&proxy, 4, "used both hosts", |a| {
        a.contains(&"a".into()) && a.contains(&"b".into())
    })
    .await;
    // The check request: GET, Host = the cluster's name, user-agent Envoy/HC.
    let (method, authority, headers) = be[0].last_check().unwrap_or_else(|| panic!("no check"));
    assert_eq!(method, http::Method::GET, "{flavor}");
    assert_eq!(authority, "backend", "{flavor}");
    assert_eq!(
        headers.get("user-agent").and_then(|v| v.to_str().ok()),
        Some("Envoy/HC"),
        "{flavor}"
    );

    // A status outside expected_statuses fails the host at once.
    be[0].set_health(503);
    wait_for_answers(&proxy, 6, "left host a out", |a| a.iter().all(|b| b == "b")).await;
    wait_for_flags(&proxy, hosts[0], "/failed_active_hc").await;
    assert_eq!(
        stat(admin, "cluster.backend.health_check.healthy").await,
        1,
        "{flavor}"
    );
    assert_eq!(
        stat(admin, "cluster.backend.membership_healthy").await,
        1,
        "{flavor}"
    );
    assert!(
        stat(admin, "cluster.backend.health_check.failure").await >= 1,
        "{flavor}"
    );

    // Back after healthy_threshold passing checks.
    be[0].set_health(200);
    wait_for_flags(&proxy, hosts[0], "healthy").await;
    wait_for_answers(&proxy, 4, "brought host a back", |a| {
        a.contains(&"a".into())
    })
    .await;
    assert_eq!(
        stat(admin, "cluster.backend.health_check.healthy").await,
        2,
        "{flavor}"
    );
    assert!(
        stat(admin, "cluster.backend.health_check.attempt").await >= 4,
        "{flavor}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_health_check_takes_a_failing_host_out_and_back() {
    http_check_takes_a_host_out_and_back(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        http_check_takes_a_host_out_and_back(Flavor::Envoy).await;
    }
}

/// "GET /healthz" over raw TCP; healthy when the answer contains "200 OK".
const TCP_CHECK: &str = "
health_checks:
- timeout: 0.5s
  interval: 0.1s
  no_traffic_interval: 0.1s
  unhealthy_threshold: 1
  healthy_threshold: 1
  tcp_health_check:
    send: {text: '474554202f6865616c74687a20485454502f312e310d0a486f73743a20780d0a0d0a'}
    receive: [{text: '323030204f4b'}]";

async fn tcp_check(flavor: Flavor) {
    let be = backends(&["a", "b"]).await;
    let hosts = [be[0].addr(), be[1].addr()];
    let proxy = start(flavor, &cluster(TCP_CHECK, &hosts)).await;
    wait_for_answers(&proxy, 4, "used both hosts", |a| {
        a.contains(&"a".into()) && a.contains(&"b".into())
    })
    .await;
    // "503 Service Unavailable" never matches: the check times out.
    be[0].set_health(503);
    wait_for_flags(&proxy, hosts[0], "/failed_active_hc/active_hc_timeout").await;
    wait_for_answers(&proxy, 6, "left host a out", |a| a.iter().all(|b| b == "b")).await;
    assert!(
        stat(
            proxy.admin_port(),
            "cluster.backend.health_check.network_failure"
        )
        .await
            >= 1,
        "{flavor}"
    );
    be[0].set_health(200);
    wait_for_flags(&proxy, hosts[0], "healthy").await;
    wait_for_answers(&proxy, 4, "brought host a back", |a| {
        a.contains(&"a".into())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_health_check_with_send_and_receive() {
    tcp_check(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        tcp_check(Flavor::Envoy).await;
    }
}

const GRPC_SERVICE: &str = "ferry.test.Svc";

/// A tonic health server on 127.0.0.1:0 with `GRPC_SERVICE` SERVING.
async fn grpc_backend() -> (SocketAddr, tonic_health::server::HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(GRPC_SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    (addr, reporter)
}

async fn grpc_check(flavor: Flavor) {
    let (a, reporter_a) = grpc_backend().await;
    let (b, _reporter_b) = grpc_backend().await;
    let extra = format!(
        "
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: {{http2_protocol_options: {{}}}}
health_checks:
- timeout: 1s
  interval: 0.1s
  no_traffic_interval: 0.1s
  unhealthy_threshold: 1
  healthy_threshold: 1
  grpc_health_check: {{service_name: {GRPC_SERVICE}}}"
    );
    let proxy = start(flavor, &cluster(&extra, &[a, b])).await;
    let admin = proxy.admin_port();
    wait_for_flags(&proxy, a, "healthy").await;
    wait_for_flags(&proxy, b, "healthy").await;
    reporter_a
        .set_service_status(GRPC_SERVICE, tonic_health::ServingStatus::NotServing)
        .await;
    wait_for_flags(&proxy, a, "/failed_active_hc").await;
    assert_eq!(
        stat(admin, "cluster.backend.membership_healthy").await,
        1,
        "{flavor}"
    );
    assert_eq!(
        host_field(admin, "backend", &b.to_string(), "health_flags")
            .await
            .as_deref(),
        Some("healthy"),
        "{flavor}"
    );
    reporter_a
        .set_service_status(GRPC_SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    wait_for_flags(&proxy, a, "healthy").await;
    assert_eq!(
        stat(admin, "cluster.backend.membership_healthy").await,
        2,
        "{flavor}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_check_follows_the_serving_status() {
    grpc_check(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        grpc_check(Flavor::Envoy).await;
    }
}

async fn panic_mode(flavor: Flavor) {
    let be = backends(&["a", "b", "c"]).await;
    let hosts: Vec<_> = be.iter().map(Scripted::addr).collect();
    let proxy = start(flavor, &cluster(HTTP_CHECK, &hosts)).await;
    let admin = proxy.admin_port();
    // Two of three fail their checks: 33% healthy is below the 50% panic threshold, so
    // every host takes traffic again (their traffic still succeeds).
    be[0].set_health(503);
    be[1].set_health(503);
    wait_for_flags(&proxy, hosts[0], "/failed_active_hc").await;
    wait_for_flags(&proxy, hosts[1], "/failed_active_hc").await;
    wait_for_answers(&proxy, 9, "used all hosts in panic", |a| {
        ["a", "b", "c"].iter().all(|n| a.contains(&n.to_string()))
    })
    .await;
    // Once panic routing is established (the batch above may straddle its start on a
    // busy machine), every request counts as a panic pick.
    let before = stat(admin, "cluster.backend.lb_healthy_panic").await;
    let _ = answers(&proxy, 9).await;
    assert!(
        stat(admin, "cluster.backend.lb_healthy_panic").await >= before + 9,
        "{flavor}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_routing_when_most_hosts_fail() {
    panic_mode(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        panic_mode(Flavor::Envoy).await;
    }
}

async fn no_panic(flavor: Flavor) {
    let be = backends(&["a", "b", "c"]).await;
    let hosts: Vec<_> = be.iter().map(Scripted::addr).collect();
    let extra = format!(
        "{}\ncommon_lb_config: {{healthy_panic_threshold: {{value: 0}}}}",
        HTTP_CHECK.trim()
    );
    let proxy = start(flavor, &cluster(&extra, &hosts)).await;
    let admin = proxy.admin_port();
    be[0].set_health(503);
    be[1].set_health(503);
    wait_for_answers(&proxy, 6, "used only the healthy host", |a| {
        a.iter().all(|b| b == "c")
    })
    .await;
    // Nothing healthy and no panic: 503 "no healthy upstream".
    be[2].set_health(503);
    wait_for_answers(&proxy, 2, "answered no healthy upstream", |a| {
        a.iter().all(|b| b == "503 no healthy upstream")
    })
    .await;
    assert!(
        stat(admin, "cluster.backend.upstream_cx_none_healthy").await >= 2,
        "{flavor}"
    );
    assert_eq!(
        stat(admin, "cluster.backend.lb_healthy_panic").await,
        0,
        "{flavor}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_threshold_zero_leaves_no_healthy_upstream() {
    no_panic(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        no_panic(Flavor::Envoy).await;
    }
}

async fn immediate_fail(flavor: Flavor) {
    let be = backends(&["a", "b"]).await;
    let hosts = [be[0].addr(), be[1].addr()];
    // Checks a minute apart: only the traffic's answer can change a's health.
    let check = "
health_checks:
- timeout: 1s
  interval: 60s
  unhealthy_threshold: 3
  healthy_threshold: 3
  http_health_check: {path: /healthz}";
    let proxy = start(flavor, &cluster(check, &hosts)).await;
    let admin = proxy.admin_port();
    be[0].set_immediate_fail(true);
    wait_for_answers(&proxy, 4, "left host a out", |a| a.iter().all(|b| b == "b")).await;
    wait_for_flags(
        &proxy,
        hosts[0],
        "/failed_active_hc/excluded_via_immediate_hc_fail",
    )
    .await;
    assert_eq!(
        stat(admin, "cluster.backend.health_check.passive_failure").await,
        1,
        "{flavor}"
    );
    assert_eq!(
        stat(admin, "cluster.backend.membership_excluded").await,
        1,
        "{flavor}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_health_check_fail_header_excludes_the_host() {
    immediate_fail(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        immediate_fail(Flavor::Envoy).await;
    }
}
