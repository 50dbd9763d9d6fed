//! Retries, timeouts, hedging, mirroring and circuit breakers, against scripted
//! upstreams, on ferry and — for what is deterministic — on Envoy 1.40 with the same
//! bootstrap: status codes, headers, upstream request counts, response flags.

use ferry_test_util::bootstrap::HcmBootstrap;
use ferry_test_util::diff::{send, Observed, Request};
use ferry_test_util::proc::{flavors, Flavor, Proxy};
use ferry_test_util::scripted::{Scripted, Step};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A bootstrap whose one route is `route` (YAML of the route action's extra fields)
/// to cluster `backend`, logging `%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%`.
fn bootstrap(route: &str, vhost_extra: &str, cluster_extra: &str, log: &Path) -> String {
    let b = HcmBootstrap::new()
        // Requests from 127.0.0.1 are internal: their x-envoy-* control headers count.
        .hcm("use_remote_address: true\ninternal_address_config: {cidr_ranges: [{address_prefix: 127.0.0.1, prefix_len: 32}]}")
        .hcm(&format!(
            r#"access_log:
- name: envoy.access_loggers.file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: {}
    log_format: {{text_format_source: {{inline_string: "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n"}}}}"#,
            log.display()
        ))
        .route(&format!("match: {{prefix: \"/\"}}\nroute:\n  cluster: backend\n{}", indent(route, 2)))
        .cluster("backend", cluster_extra)
        .cluster("mirror", "");
    let mut yaml = b.yaml();
    if !vhost_extra.is_empty() {
        // Virtual-host fields go right after `domains`.
        yaml = yaml.replacen(
            "              domains: [\"*\"]\n",
            &format!(
                "              domains: [\"*\"]\n{}",
                indent(vhost_extra, 14)
            ),
            1,
        );
    }
    yaml
}

fn indent(yaml: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    yaml.trim_matches('\n')
        .lines()
        .map(|l| format!("{pad}{}\n", l.trim_end()))
        .collect()
}

async fn proxy(flavor: Flavor, yaml: &str, backends: &[(&str, SocketAddr)]) -> Proxy {
    ferry_test_util::proc::start_with(flavor, yaml, backends).await
}

fn port(p: &Proxy) -> u16 {
    p.listener_port().unwrap_or_else(|| panic!("no listener"))
}

async fn get(p: &Proxy, req: Request) -> Observed {
    send(port(p), &req)
        .await
        .unwrap_or_else(|e| panic!("{:?}: {e:#}", p.flavor()))
}

/// Sends `req` from a task of its own (for requests that must be in flight together).
fn spawn_get(port: u16, req: Request) -> tokio::task::JoinHandle<anyhow::Result<Observed>> {
    tokio::spawn(async move { send(port, &req).await })
}

/// The response of a request sent with [`spawn_get`].
async fn joined(h: tokio::task::JoinHandle<anyhow::Result<Observed>>) -> Observed {
    h.await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The access log's lines once it has `n` of them.
async fn log_lines(path: &Path, n: usize) -> Vec<String> {
    ferry_test_util::logs::lines_when(path, n).await
}

/// A stat of the proxy's admin `/stats`, once `pred` holds.
async fn stat_when(p: &Proxy, name: &str, pred: impl Fn(u64) -> bool) -> u64 {
    ferry_test_util::admin::stat_when(p.admin_port(), name, pred).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_5xx_succeed_on_the_retry_with_attempt_counts() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![Step::Status(503), Step::Status(500)]).await;
        let yaml = bootstrap(
            "retry_policy: {retry_on: 5xx, num_retries: 2, retry_back_off: {base_interval: 0.001s}}",
            "include_request_attempt_count: true\ninclude_attempt_count_in_response: true",
            "",
            &log,
        );
        let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
        let r = get(&p, Request::get("/a")).await;
        assert_eq!(r.status, 200, "{flavor:?}: {r:?}");
        assert_eq!(r.header("x-envoy-attempt-count"), Some("3"), "{flavor:?}");
        assert_eq!(up.count(), 3, "{flavor:?}");
        let attempts: Vec<String> = up
            .seen()
            .iter()
            .map(|s| {
                s.headers
                    .get("x-envoy-attempt-count")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string()
            })
            .collect();
        assert_eq!(attempts, ["1", "2", "3"], "{flavor:?}");
        // A GET goes without a body, on every attempt.
        assert!(
            up.seen()
                .iter()
                .all(|s| !s.headers.contains_key("transfer-encoding")),
            "{flavor:?}: {:?}",
            up.seen()[0].headers
        );
        assert_eq!(
            log_lines(&log, 1).await,
            ["200 - via_upstream"],
            "{flavor:?}"
        );
        assert_eq!(
            stat_when(&p, "cluster.backend.upstream_rq_retry", |v| v == 2).await,
            2,
            "{flavor:?}"
        );
        assert_eq!(
            stat_when(&p, "cluster.backend.upstream_rq_retry_success", |v| v == 1).await,
            1,
            "{flavor:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_return_the_last_response_flagged_urx() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start_with_default(vec![], Step::Status(503)).await;
        let yaml = bootstrap(
            "retry_policy: {retry_on: gateway-error, num_retries: 1, retry_back_off: {base_interval: 0.001s}}",
            "",
            "",
            &log,
        );
        let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
        let r = get(&p, Request::get("/a")).await;
        assert_eq!(r.status, 503, "{flavor:?}");
        assert_eq!(
            r.body_text(),
            "ok",
            "{flavor:?}: the upstream's own response"
        );
        assert_eq!(up.count(), 2, "{flavor:?}");
        assert_eq!(
            log_lines(&log, 1).await,
            ["503 URX via_upstream"],
            "{flavor:?}"
        );
        assert_eq!(
            stat_when(
                &p,
                "cluster.backend.upstream_rq_retry_limit_exceeded",
                |v| v == 1
            )
            .await,
            1,
            "{flavor:?}"
        );
        // A status retry_on does not name is not retried.
        up.push([Step::Status(500)]);
        let r = get(&p, Request::get("/b")).await;
        assert_eq!((r.status, up.count()), (500, 3), "{flavor:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_headers_drive_retries() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![Step::Reset]).await;
        // No retry policy on the route: the request's headers ask for retries.
        let yaml = bootstrap("", "", "", &log);
        let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
        let r = get(&p, Request::get("/a").header("x-envoy-retry-on", "reset")).await;
        assert_eq!((r.status, up.count()), (200, 2), "{flavor:?}");
        // x-envoy-max-retries and retriable status codes from headers.
        up.push([Step::Status(418), Step::Status(418), Step::Status(418)]);
        let r = get(
            &p,
            Request::get("/b")
                .header("x-envoy-retry-on", "retriable-status-codes")
                .header("x-envoy-retriable-status-codes", "418")
                .header("x-envoy-max-retries", "3"),
        )
        .await;
        assert_eq!((r.status, up.count()), (200, 6), "{flavor:?}");
        // Without a retry header, a reset is answered 503 UC.
        up.push([Step::Reset]);
        let r = get(&p, Request::get("/c")).await;
        assert_eq!((r.status, up.count()), (503, 7), "{flavor:?}");
        let lines = log_lines(&log, 3).await;
        assert!(lines[2].starts_with("503 UC "), "{flavor:?}: {lines:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeouts_retry_and_the_last_one_answers_504() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![Step::Hang]).await;
        let yaml = bootstrap(
            "retry_policy: {retry_on: 5xx, num_retries: 1, per_try_timeout: 0.2s, retry_back_off: {base_interval: 0.001s}}",
            "",
            "",
            &log,
        );
        let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
        let r = get(&p, Request::get("/a")).await;
        assert_eq!((r.status, up.count()), (200, 2), "{flavor:?}");
        // Both attempts hang: the last per-try timeout answers.
        up.push([Step::Hang, Step::Hang]);
        let r = get(&p, Request::get("/b")).await;
        assert_eq!(r.status, 504, "{flavor:?}");
        assert_eq!(r.body_text(), "upstream request timeout", "{flavor:?}");
        let lines = log_lines(&log, 2).await;
        assert_eq!(
            lines[1], "504 URX,UT upstream_per_try_timeout",
            "{flavor:?}"
        );
        assert_eq!(
            stat_when(&p, "cluster.backend.upstream_rq_per_try_timeout", |v| v
                == 3)
            .await,
            3,
            "{flavor:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_header_bounds_the_request_and_the_per_try_header_sets_a_per_try_timeout() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![Step::Hang]).await;
        let yaml = bootstrap("timeout: 60s", "", "", &log);
        let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
        let r = get(
            &p,
            Request::get("/a").header("x-envoy-upstream-rq-timeout-ms", "200"),
        )
        .await;
        assert_eq!(r.status, 504, "{flavor:?}");
        // The header is consumed; the expected timeout goes upstream instead.
        let seen = up.seen();
        assert!(!seen[0]
            .headers
            .contains_key("x-envoy-upstream-rq-timeout-ms"));
        assert_eq!(
            seen[0]
                .headers
                .get("x-envoy-expected-rq-timeout-ms")
                .map(|v| v.as_bytes().to_vec()),
            Some(b"200".to_vec()),
            "{flavor:?}"
        );
        up.push([Step::Hang]);
        let r = get(
            &p,
            Request::get("/b")
                .header("x-envoy-upstream-rq-per-try-timeout-ms", "150")
                .header("x-envoy-retry-on", "5xx"),
        )
        .await;
        assert_eq!((r.status, up.count()), (200, 3), "{flavor:?}");
        let seen = up.seen();
        assert_eq!(
            seen[1]
                .headers
                .get("x-envoy-expected-rq-timeout-ms")
                .map(|v| v.as_bytes().to_vec()),
            Some(b"150".to_vec()),
            "{flavor:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_replayed_within_the_buffer_limit_only() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![Step::Status(503)]).await;
        let yaml = bootstrap(
            "retry_policy: {retry_on: 5xx, num_retries: 1, retry_back_off: {base_interval: 0.001s}}",
            "per_request_buffer_limit_bytes: 4096",
            "",
            &log,
        );
        let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
        let small = vec![b'x'; 3000];
        let r = get(&p, Request::new("POST", "/a").body(small.clone())).await;
        assert_eq!((r.status, up.count()), (200, 2), "{flavor:?}");
        assert!(
            up.seen().iter().all(|s| s.body == small),
            "{flavor:?}: replayed whole"
        );
        // Replayed with its length, as it came (not re-framed as chunked).
        assert!(
            up.seen().iter().all(
                |s| s.headers.get("content-length").is_some_and(|v| v == "3000")
                    && !s.headers.contains_key("transfer-encoding")
            ),
            "{flavor:?}: {:?}",
            up.seen()[0].headers
        );
        // Over the limit: no retry, the upstream's 503 goes back.
        up.push([Step::Status(503)]);
        let big = vec![b'y'; 64 * 1024];
        let r = get(&p, Request::new("POST", "/b").body(big.clone())).await;
        assert_eq!((r.status, up.count()), (503, 3), "{flavor:?}");
        assert_eq!(up.seen()[2].body, big, "{flavor:?}: streamed whole");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_hosts_sends_the_retry_to_another_host() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let dead = Scripted::start_with_default(vec![], Step::Status(503)).await;
        let live = Scripted::start(vec![]).await;
        let yaml = bootstrap(
            "retry_policy:\n  retry_on: 5xx\n  num_retries: 1\n  retry_back_off: {base_interval: 0.001s}\n  retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}}]\n  host_selection_retry_max_attempts: 100",
            "",
            "lb_policy: RANDOM",
            &log,
        )
        // A second endpoint in `backend` (the first cluster), below the first one.
        .replacen(
            "port_value: 1}}}\n",
            "port_value: 1}}}\n        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}\n",
            1,
        );
        assert!(yaml.contains("port_value: 2"), "{yaml}");
        let p = proxy(
            flavor,
            &yaml,
            &[("127.0.0.1:1", dead.addr()), ("127.0.0.1:2", live.addr())],
        )
        .await;
        for i in 0..10 {
            let r = get(&p, Request::get(&format!("/{i}"))).await;
            assert_eq!(r.status, 200, "{flavor:?}: request {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedging_on_per_try_timeout_takes_the_first_good_response() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("access.log");
    let up = Scripted::start(vec![Step::Delay(Duration::from_secs(3), 200)]).await;
    let yaml = bootstrap(
        "retry_policy: {retry_on: 5xx, num_retries: 1, per_try_timeout: 0.2s}\nhedge_policy: {hedge_on_per_try_timeout: true}",
        "",
        "",
        &log,
    );
    let p = proxy(Flavor::Ferry, &yaml, &[("backend", up.addr())]).await;
    let r = get(&p, Request::get("/a")).await;
    assert_eq!(r.status, 200);
    // Both attempts were in flight at once: the first was not cancelled.
    assert_eq!(up.count(), 2);
    assert_eq!(up.max_in_flight(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_breaker_trips_at_its_limit_and_recovers() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![Step::Hang, Step::Hang]).await;
        let yaml = bootstrap(
            "timeout: 3s",
            "",
            "circuit_breakers: {thresholds: [{max_requests: 2, track_remaining: true}]}",
            &log,
        );
        let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
        let port = port(&p);
        let held: Vec<_> = (0..2)
            .map(|i| spawn_get(port, Request::get(&format!("/held{i}"))))
            .collect();
        up.wait_in_flight(2).await;
        assert_eq!(up.in_flight(), 2, "{flavor:?}");
        assert_eq!(
            stat_when(
                &p,
                "cluster.backend.circuit_breakers.default.rq_open",
                |v| v == 1
            )
            .await,
            1,
            "{flavor:?}"
        );
        let r = get(&p, Request::get("/over")).await;
        assert_eq!(r.status, 503, "{flavor:?}");
        assert_eq!(r.header("x-envoy-overloaded"), Some("true"), "{flavor:?}");
        assert_eq!(
            up.count(),
            2,
            "{flavor:?}: the overflow never reached the upstream"
        );
        assert_eq!(
            stat_when(&p, "cluster.backend.upstream_rq_active_overflow", |v| v
                == 1)
            .await,
            1,
            "{flavor:?}"
        );
        // The held requests time out (504); the breaker closes again.
        for h in held {
            let r = joined(h).await;
            assert_eq!(r.status, 504, "{flavor:?}");
        }
        assert_eq!(
            stat_when(
                &p,
                "cluster.backend.circuit_breakers.default.rq_open",
                |v| v == 0
            )
            .await,
            0,
            "{flavor:?}"
        );
        assert_eq!(
            stat_when(
                &p,
                "cluster.backend.circuit_breakers.default.remaining_rq",
                |v| v == 2
            )
            .await,
            2,
            "{flavor:?}"
        );
        let r = get(&p, Request::get("/after")).await;
        assert_eq!(r.status, 200, "{flavor:?}");
        let lines = log_lines(&log, 1).await;
        assert!(
            lines
                .iter()
                .any(|l| l == "503 UO upstream_reset_before_response_started{overflow}"),
            "{flavor:?}: {lines:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_breaker_stops_a_retry_storm() {
    let breakers = [
        "circuit_breakers: {thresholds: [{max_retries: 1}]}",
        "circuit_breakers: {thresholds: [{retry_budget: {budget_percent: {value: 0}, min_retry_concurrency: 1}}]}",
    ];
    for (flavor, breaker) in flavors()
        .into_iter()
        .flat_map(|f| breakers.iter().map(move |b| (f, *b)))
    {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        // Every request fails slowly, so that retries overlap.
        let up = Scripted::start_with_default(vec![], Step::Delay(Duration::from_millis(300), 503))
            .await;
        let yaml = bootstrap(
            "retry_policy: {retry_on: 5xx, num_retries: 3, retry_back_off: {base_interval: 0.001s}}",
            "",
            breaker,
            &log,
        );
        let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
        let port = port(&p);
        let all: Vec<_> = (0..6)
            .map(|i| spawn_get(port, Request::get(&format!("/{i}"))))
            .collect();
        for h in all {
            let r = joined(h).await;
            assert_eq!(r.status, 503, "{flavor:?}");
        }
        let overflow = stat_when(&p, "cluster.backend.upstream_rq_retry_overflow", |v| v > 0).await;
        assert!(overflow > 0, "{flavor:?}");
        // Without the breaker, 6 × 4 attempts; with it, far fewer.
        assert!(
            up.count() < 24,
            "{flavor:?}: {} upstream requests",
            up.count()
        );
        let lines = log_lines(&log, 6).await;
        assert!(
            lines.iter().any(|l| l.starts_with("503 UO")),
            "{flavor:?}: {lines:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_get_a_copy_with_a_shadow_host() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let main = Scripted::start(vec![]).await;
        let mirror = Scripted::start(vec![]).await;
        let yaml = bootstrap("request_mirror_policies: [{cluster: mirror}]", "", "", &log);
        let p = proxy(
            flavor,
            &yaml,
            &[("backend", main.addr()), ("mirror", mirror.addr())],
        )
        .await;
        let r = get(
            &p,
            Request::new("POST", "/m")
                .header("host", "shop.example:8080")
                .body("payload"),
        )
        .await;
        assert_eq!(r.status, 200, "{flavor:?}");
        mirror.wait_count(1).await;
        let seen = mirror.seen();
        assert_eq!(seen.len(), 1, "{flavor:?}");
        assert_eq!(seen[0].path, "/m");
        assert_eq!(&seen[0].body[..], b"payload", "{flavor:?}");
        let host = seen[0]
            .headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(host, "shop.example-shadow:8080", "{flavor:?}");
        assert_eq!(main.count(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_requests_cannot_ask_for_retries_or_timeouts() {
    for flavor in flavors() {
        let up = Scripted::start(vec![Step::Status(503)]).await;
        // No internal_address_config: every request is external.
        let yaml = HcmBootstrap::new().cluster("backend", "").yaml();
        let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
        let r = get(
            &p,
            Request::get("/a")
                .header("x-envoy-retry-on", "5xx")
                .header("x-envoy-upstream-rq-timeout-ms", "1"),
        )
        .await;
        assert_eq!((r.status, up.count()), (503, 1), "{flavor:?}");
        let seen = &up.seen()[0].headers;
        assert!(
            !seen.contains_key("x-envoy-retry-on"),
            "{flavor:?}: {seen:?}"
        );
        assert!(!seen.contains_key("x-envoy-internal"), "{flavor:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_breaker_queues_requests_as_pending_and_overflows_beyond() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![Step::Delay(Duration::from_millis(1500), 200)]).await;
        let yaml = bootstrap(
            "",
            "",
            "circuit_breakers: {thresholds: [{max_connections: 1, max_pending_requests: 1}]}",
            &log,
        );
        let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
        let port = port(&p);
        // A holds the one connection; B waits for it as a pending request.
        let a = spawn_get(port, Request::get("/a"));
        up.wait_in_flight(1).await;
        let b = spawn_get(port, Request::get("/b"));
        assert_eq!(
            stat_when(&p, "cluster.backend.upstream_rq_pending_active", |v| v == 1).await,
            1,
            "{flavor:?}"
        );
        // C finds the pending queue full.
        let c = get(&p, Request::get("/c")).await;
        assert_eq!(c.status, 503, "{flavor:?}");
        assert_eq!(c.header("x-envoy-overloaded"), Some("true"), "{flavor:?}");
        for h in [a, b] {
            let r = joined(h).await;
            assert_eq!(r.status, 200, "{flavor:?}");
        }
        assert_eq!(up.count(), 2, "{flavor:?}");
        assert_eq!(
            up.max_in_flight(),
            1,
            "{flavor:?}: one connection at a time"
        );
        assert_eq!(
            stat_when(&p, "cluster.backend.upstream_rq_pending_overflow", |v| v
                == 1)
            .await,
            1,
            "{flavor:?}"
        );
        assert!(
            stat_when(&p, "cluster.backend.upstream_cx_overflow", |v| v >= 1).await >= 1,
            "{flavor:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_stream_duration_bounds_the_stream_and_grpc_timeouts_within_it() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start_with_default(vec![], Step::Hang).await;
        let yaml = bootstrap(
            "max_stream_duration: {max_stream_duration: 0.3s, grpc_timeout_header_max: 0s}",
            "",
            "",
            &log,
        );
        let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
        let r = get(&p, Request::get("/a")).await;
        assert_eq!(r.status, 504, "{flavor:?}");
        assert_eq!(r.body_text(), "downstream duration timeout", "{flavor:?}");
        // gRPC: grpc-timeout (uncapped here) bounds the stream; DEADLINE_EXCEEDED.
        let r = get(
            &p,
            Request::new("POST", "/svc/M")
                .header("content-type", "application/grpc")
                .header("grpc-timeout", "100m"),
        )
        .await;
        assert_eq!(r.status, 200, "{flavor:?}");
        assert_eq!(r.header("grpc-status"), Some("4"), "{flavor:?}");
        assert_eq!(
            log_lines(&log, 2).await,
            ["504 - max_duration_timeout", "200 - max_duration_timeout"],
            "{flavor:?}"
        );
        assert_eq!(
            stat_when(&p, "http.ingress.downstream_rq_max_duration_reached", |v| v
                == 2)
            .await,
            2,
            "{flavor:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_counts_requests_given_a_connection_not_pending_ones() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![Step::Delay(Duration::from_millis(1500), 200)]).await;
        let yaml = bootstrap(
            "",
            "",
            "circuit_breakers: {thresholds: [{max_connections: 1, max_pending_requests: 1, max_requests: 1}]}",
            &log,
        );
        let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
        let port = port(&p);
        let first = spawn_get(port, Request::get("/first"));
        up.wait_in_flight(1).await;
        // One waits for the connection (pending, not yet a request of the breaker's);
        // the others find the pending queue full.
        let others: Vec<_> = (0..3)
            .map(|i| spawn_get(port, Request::get(&format!("/{i}"))))
            .collect();
        let mut statuses = Vec::new();
        for h in others {
            let r = joined(h).await;
            statuses.push(r.status);
        }
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 503, 503], "{flavor:?}");
        let r = joined(first).await;
        assert_eq!(r.status, 200, "{flavor:?}");
        assert_eq!(
            stat_when(&p, "cluster.backend.upstream_rq_pending_overflow", |v| v
                == 2)
            .await,
            2,
            "{flavor:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeouts_start_when_the_request_has_a_connection() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![Step::Delay(Duration::from_millis(800), 200)]).await;
        let yaml = bootstrap(
            "retry_policy: {retry_on: 5xx, num_retries: 0, per_try_timeout: 0.4s}",
            "",
            "circuit_breakers: {thresholds: [{max_connections: 1}]}",
            &log,
        );
        let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
        let port = port(&p);
        // The first request holds the only connection for 0.8 s (its per-try timeout
        // raised by header); the second waits for the connection longer than its own
        // per-try timeout, which only starts once it has one: no 504.
        let first = spawn_get(
            port,
            Request::get("/first").header("x-envoy-upstream-rq-per-try-timeout-ms", "5000"),
        );
        up.wait_in_flight(1).await;
        let second = get(&p, Request::get("/second")).await;
        assert_eq!(second.status, 200, "{flavor:?}");
        let first = joined(first).await;
        assert_eq!(first.status, 200, "{flavor:?}");
        let seen: Vec<String> = up.seen().iter().map(|s| s.path.clone()).collect();
        assert_eq!(
            seen.iter().filter(|p| *p == "/second").count(),
            1,
            "{flavor:?}: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_idle_timeouts_cover_the_response_body() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        // A body that keeps coming, a byte per 0.1 s for 1 s in all, outlives the idle
        // timeout (0.5 s) without ever being idle that long; a body that stops is cut.
        let up = Scripted::start(vec![
            Step::Drip(10, Duration::from_millis(100)),
            Step::Stall,
        ])
        .await;
        let yaml = bootstrap(
            "retry_policy: {retry_on: 5xx, num_retries: 1, per_try_idle_timeout: 0.5s}",
            "",
            "",
            &log,
        );
        let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
        let r = get(&p, Request::get("/drip")).await;
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "xxxxxxxxxx"),
            "{flavor:?}"
        );
        // The headers went downstream already: the stream is reset, not retried.
        let cut = send(port(&p), &Request::get("/stall")).await;
        assert!(cut.is_err(), "{flavor:?}: {cut:?}");
        let lines = log_lines(&log, 2).await;
        assert_eq!(lines[0], "200 - via_upstream", "{flavor:?}");
        assert_eq!(
            lines[1], "200 UT upstream_per_try_idle_timeout",
            "{flavor:?}"
        );
        assert_eq!(
            stat_when(
                &p,
                "cluster.backend.upstream_rq_per_try_idle_timeout",
                |v| v == 1
            )
            .await,
            1,
            "{flavor:?}"
        );
        assert_eq!(up.count(), 2, "{flavor:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_and_idle_timeouts_over_a_body_reset_the_stream_with_their_flags() {
    for flavor in flavors() {
        for (route, logged) in [
            ("timeout: 0.5s", "200 UT response_timeout"),
            ("idle_timeout: 0.5s", "200 SI stream_idle_timeout"),
        ] {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let log = dir.path().join("access.log");
            let up = Scripted::start(vec![Step::Stall]).await;
            let yaml = bootstrap(route, "", "", &log);
            let p = proxy(flavor, &yaml, &[("backend", up.addr())]).await;
            let cut = send(port(&p), &Request::get("/stall")).await;
            assert!(cut.is_err(), "{flavor:?} {route}: {cut:?}");
            assert_eq!(log_lines(&log, 1).await, [logged], "{flavor:?} {route}");
        }
    }
}
