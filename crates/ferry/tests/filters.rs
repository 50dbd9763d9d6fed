//! HTTP filters before the router — fault injection, local rate limits, health checks —
//! and the network local rate limit, on ferry and (for what is deterministic) on
//! Envoy 1.40 with the same bootstrap: status codes, bodies, headers, response flags
//! and details in the access log, and stats.

use ferry_test_util::admin::stat_when;
use ferry_test_util::bootstrap::HcmBootstrap;
use ferry_test_util::diff::{send, Observed, Request};
use ferry_test_util::logs::lines_when;
use ferry_test_util::proc::{admin_get, flavors, start_with, Flavor, Proxy};
use ferry_test_util::scripted::Scripted;
use std::net::SocketAddr;
use std::path::Path;

const LOG_FORMAT: &str = "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\\n";

/// One HCM with `filters` (YAML list items, before the router) and `routes`, logging
/// code, flags and details to `log`.
fn bootstrap(filters: &str, routes: &[&str], log: &Path) -> String {
    let mut b = HcmBootstrap::new().hcm(&format!(
        r#"access_log:
- name: envoy.access_loggers.file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: {}
    log_format: {{text_format_source: {{inline_string: "{LOG_FORMAT}"}}}}"#,
        log.display()
    ));
    for r in routes {
        b = b.route(r);
    }
    let yaml = b.cluster("backend", "").yaml();
    // The filters go first in http_filters, before the router.
    yaml.replacen(
        "          http_filters:\n",
        &format!("          http_filters:\n{}", indent(filters, 10)),
        1,
    )
}

fn indent(yaml: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    yaml.trim_matches('\n')
        .lines()
        .map(|l| format!("{pad}{}\n", l.trim_end()))
        .collect()
}

fn dedent(yaml: &str) -> String {
    let lines: Vec<&str> = yaml.trim_matches('\n').lines().collect();
    let common = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(common..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn proxy(flavor: Flavor, yaml: &str, backend: SocketAddr) -> Proxy {
    start_with(flavor, yaml, &[("backend", backend)]).await
}

async fn get(p: &Proxy, req: Request) -> Observed {
    let port = p.listener_port().unwrap_or_else(|| panic!("no listener"));
    send(port, &req)
        .await
        .unwrap_or_else(|e| panic!("{:?}: {e:#}", p.flavor()))
}

const FAULT: &str =
    r#""@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"#;
const LOCAL_RL: &str = r#""@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"#;
/// A local rate limit on every request and enforced (both default to 0%).
const ENFORCED: &str = "filter_enabled: {runtime_key: e, default_value: {numerator: 100}}\n                filter_enforced: {runtime_key: f, default_value: {numerator: 100}}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_aborts_and_delays_as_configured() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![]).await;
        let filters = dedent(&format!(
            r#"
            - name: envoy.filters.http.fault
              typed_config:
                {FAULT}
                delay: {{fixed_delay: 0.1s, percentage: {{numerator: 100}}}}
                abort: {{http_status: 418, percentage: {{numerator: 100}}}}
            "#
        ));
        let yaml = bootstrap(&filters, &[], &log);
        let p = proxy(flavor, &yaml, up.addr()).await;
        let r = get(&p, Request::get("/a")).await;
        assert_eq!(r.status, 418, "{flavor:?}");
        assert_eq!(r.body_text(), "fault filter abort", "{flavor:?}");
        assert_eq!(up.count(), 0, "{flavor:?}");
        assert_eq!(
            lines_when(&log, 1).await,
            ["418 DI,FI fault_filter_abort"],
            "{flavor:?}"
        );
        let admin = p.admin_port();
        assert_eq!(
            stat_when(admin, "http.ingress.fault.aborts_injected", |v| v == 1).await,
            1
        );
        assert_eq!(
            stat_when(admin, "http.ingress.fault.delays_injected", |v| v == 1).await,
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_controlled_faults_and_grpc_aborts() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![]).await;
        let filters = dedent(&format!(
            r#"
            - name: envoy.filters.http.fault
              typed_config:
                {FAULT}
                abort: {{header_abort: {{}}, percentage: {{numerator: 100}}}}
                delay: {{header_delay: {{}}, percentage: {{numerator: 100}}}}
            "#
        ));
        let yaml = bootstrap(&filters, &[], &log);
        let p = proxy(flavor, &yaml, up.addr()).await;
        // Without fault headers nothing happens.
        let r = get(&p, Request::get("/a")).await;
        assert_eq!((r.status, up.count()), (200, 1), "{flavor:?}");
        let r = get(
            &p,
            Request::get("/b").header("x-envoy-fault-abort-request", "429"),
        )
        .await;
        assert_eq!(r.status, 429, "{flavor:?}");
        // A header percentage of 0 turns the fault off.
        let r = get(
            &p,
            Request::get("/c")
                .header("x-envoy-fault-abort-request", "429")
                .header("x-envoy-fault-abort-request-percentage", "0"),
        )
        .await;
        assert_eq!(r.status, 200, "{flavor:?}");
        // gRPC: a trailers-only response with the status asked for.
        let r = get(
            &p,
            Request::new("POST", "/svc/Method")
                .header("content-type", "application/grpc")
                .header("x-envoy-fault-abort-grpc-request", "14")
                .header("x-envoy-fault-delay-request", "50"),
        )
        .await;
        assert_eq!(r.status, 200, "{flavor:?}");
        assert_eq!(r.header("grpc-status"), Some("14"), "{flavor:?}");
        let lines = lines_when(&log, 4).await;
        assert_eq!(lines[1], "429 FI fault_filter_abort", "{flavor:?}");
        assert_eq!(lines[3], "200 DI,FI fault_filter_abort", "{flavor:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_route_fault_configs_override_the_filters() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![]).await;
        let filters = dedent(&format!(
            r#"
            - name: envoy.filters.http.fault
              typed_config:
                {FAULT}
            "#
        ));
        let faulty = format!(
            "match: {{prefix: \"/faulty\"}}\nroute: {{cluster: backend}}\ntyped_per_filter_config:\n  envoy.filters.http.fault:\n    {FAULT}\n    abort: {{http_status: 503, percentage: {{numerator: 100}}}}"
        );
        let yaml = bootstrap(
            &filters,
            &[&faulty, "match: {prefix: \"/\"}\nroute: {cluster: backend}"],
            &log,
        );
        let p = proxy(flavor, &yaml, up.addr()).await;
        assert_eq!(
            get(&p, Request::get("/faulty/x")).await.status,
            503,
            "{flavor:?}"
        );
        assert_eq!(
            get(&p, Request::get("/fine")).await.status,
            200,
            "{flavor:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_percentages_hit_their_share() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("access.log");
    let up = Scripted::start(vec![]).await;
    let filters = dedent(&format!(
        r#"
        - name: envoy.filters.http.fault
          typed_config:
            {FAULT}
            abort: {{http_status: 503, percentage: {{numerator: 30}}}}
        "#
    ));
    let yaml = bootstrap(&filters, &[], &log);
    let p = proxy(Flavor::Ferry, &yaml, up.addr()).await;
    let n = 400;
    let mut aborted = 0;
    for i in 0..n {
        if get(&p, Request::get(&format!("/{i}"))).await.status == 503 {
            aborted += 1;
        }
    }
    // Binomial(400, 0.3): mean 120, sd 9.2; ±6 sd.
    assert!((65..=175).contains(&aborted), "{aborted} of {n} aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rate_limit_admits_the_bucket_then_answers_429() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![]).await;
        let filters = dedent(&format!(
            r#"
            - name: envoy.filters.http.local_ratelimit
              typed_config:
                {LOCAL_RL}
                stat_prefix: http_local_rate_limiter
                token_bucket: {{max_tokens: 2, tokens_per_fill: 2, fill_interval: 3600s}}
                {ENFORCED}
                response_headers_to_add:
                - append_action: OVERWRITE_IF_EXISTS_OR_ADD
                  header: {{key: x-local-rate-limit, value: "true"}}
            "#
        ));
        let yaml = bootstrap(&filters, &[], &log);
        let p = proxy(flavor, &yaml, up.addr()).await;
        let statuses: Vec<u16> = {
            let mut v = Vec::new();
            for i in 0..4 {
                v.push(get(&p, Request::get(&format!("/{i}"))).await.status);
            }
            v
        };
        assert_eq!(statuses, [200, 200, 429, 429], "{flavor:?}");
        let r = get(&p, Request::get("/again")).await;
        assert_eq!(r.body_text(), "local_rate_limited", "{flavor:?}");
        assert_eq!(r.header("x-local-rate-limit"), Some("true"), "{flavor:?}");
        let lines = lines_when(&log, 5).await;
        assert_eq!(lines[2], "429 RL local_rate_limited", "{flavor:?}");
        let admin = p.admin_port();
        let prefix = "http_local_rate_limiter.http_local_rate_limit";
        assert_eq!(
            stat_when(admin, &format!("{prefix}.rate_limited"), |v| v == 3).await,
            3,
            "{flavor:?}"
        );
        assert_eq!(
            stat_when(admin, &format!("{prefix}.ok"), |v| v == 2).await,
            2,
            "{flavor:?}"
        );
        assert_eq!(
            stat_when(admin, &format!("{prefix}.enforced"), |v| v == 3).await,
            3,
            "{flavor:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rate_limit_per_connection_per_route_and_not_enforced() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![]).await;
        // Per connection: every request below comes on a new connection.
        let filters = dedent(&format!(
            r#"
            - name: envoy.filters.http.local_ratelimit
              typed_config:
                {LOCAL_RL}
                stat_prefix: per_conn
                token_bucket: {{max_tokens: 1, fill_interval: 3600s}}
                {ENFORCED}
                local_rate_limit_per_downstream_connection: true
            "#
        ));
        // /shadow: a route bucket that is counted, not enforced, and marks the request.
        let shadow = format!(
            "match: {{prefix: \"/shadow\"}}\nroute: {{cluster: backend}}\ntyped_per_filter_config:\n  envoy.filters.http.local_ratelimit:\n    {LOCAL_RL}\n    stat_prefix: route_limit\n    token_bucket: {{max_tokens: 1, fill_interval: 3600s}}\n    filter_enabled: {{runtime_key: e, default_value: {{numerator: 100}}}}\n    request_headers_to_add_when_not_enforced:\n    - header: {{key: x-would-be-limited, value: limited}}"
        );
        let yaml = bootstrap(
            &filters,
            &[&shadow, "match: {prefix: \"/\"}\nroute: {cluster: backend}"],
            &log,
        );
        let p = proxy(flavor, &yaml, up.addr()).await;
        for i in 0..3 {
            assert_eq!(
                get(&p, Request::get(&format!("/{i}"))).await.status,
                200,
                "{flavor:?}"
            );
        }
        for i in 0..2 {
            assert_eq!(
                get(&p, Request::get(&format!("/shadow/{i}"))).await.status,
                200,
                "{flavor:?}"
            );
        }
        let seen = up.seen();
        assert!(
            !seen[3].headers.contains_key("x-would-be-limited"),
            "{flavor:?}"
        );
        assert_eq!(
            seen[4]
                .headers
                .get("x-would-be-limited")
                .map(|v| v.as_bytes().to_vec()),
            Some(b"limited".to_vec()),
            "{flavor:?}"
        );
        let admin = p.admin_port();
        assert_eq!(
            stat_when(
                admin,
                "route_limit.http_local_rate_limit.rate_limited",
                |v| v == 1
            )
            .await,
            1,
            "{flavor:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_filter_answers_and_fails_with_the_admin() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![]).await;
        let filters = dedent(
            r#"
            - name: envoy.filters.http.health_check
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
                pass_through_mode: false
                headers: [{name: ":path", string_match: {exact: /healthz}}]
            "#,
        );
        let yaml = bootstrap(&filters, &[], &log);
        let p = proxy(flavor, &yaml, up.addr()).await;
        let r = get(&p, Request::get("/healthz")).await;
        assert_eq!((r.status, up.count()), (200, 0), "{flavor:?}");
        assert_eq!(r.header("x-envoy-immediate-health-check-fail"), None);
        // Other requests pass.
        assert_eq!(
            get(&p, Request::get("/work")).await.status,
            200,
            "{flavor:?}"
        );
        let (code, _) = ferry_test_util::proc::admin_post(p.admin_port(), "/healthcheck/fail")
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(code, 200);
        let r = get(&p, Request::get("/healthz")).await;
        assert_eq!(r.status, 503, "{flavor:?}");
        assert_eq!(
            r.header("x-envoy-immediate-health-check-fail"),
            Some("true"),
            "{flavor:?}"
        );
        // Traffic goes on, telling peers to drain this proxy.
        let r = get(&p, Request::get("/work")).await;
        assert_eq!(r.status, 200, "{flavor:?}");
        assert_eq!(
            r.header("x-envoy-immediate-health-check-fail"),
            Some("true"),
            "{flavor:?}"
        );
        let lines = lines_when(&log, 4).await;
        assert_eq!(
            lines,
            [
                "200 - health_check_ok",
                "200 - via_upstream",
                "503 LH health_check_failed",
                "200 - via_upstream"
            ],
            "{flavor:?}"
        );
        let (code, body) = admin_get(p.admin_port(), "/ready")
            .await
            .unwrap_or_default();
        assert_eq!(code, 503, "{flavor:?}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_local_rate_limit_closes_connections_over_the_bucket() {
    for flavor in flavors() {
        let up = Scripted::start(vec![]).await;
        let yaml = r#"static_resources:
  listeners:
  - name: tcp
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit
          stat_prefix: tcp_limit
          token_bucket: {max_tokens: 3, fill_interval: 3600s}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: backend
  clusters:
  - name: backend
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 1}}
"#;
        let p = proxy(flavor, yaml, up.addr()).await;
        // The readiness probe took a token or more (it connects to the listener); the
        // connections left in the bucket get through, the next one is closed unserved.
        let port = p.listener_port().unwrap_or_default();
        let mut served = 0;
        let mut refused = false;
        for i in 0..4 {
            match send(port, &Request::get(&format!("/{i}"))).await {
                Ok(r) if r.status == 200 => served += 1,
                _ => {
                    refused = true;
                    break;
                }
            }
        }
        assert!(refused && served <= 2, "{flavor:?}: {served} served");
        assert_eq!(up.count(), served, "{flavor:?}");
        let admin = p.admin_port();
        assert!(
            stat_when(admin, "local_rate_limit.tcp_limit.rate_limited", |v| v >= 1).await >= 1,
            "{flavor:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rate_limit_descriptors_limit_matching_requests_apart() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![]).await;
        let filters = dedent(&format!(
            r#"
            - name: envoy.filters.http.local_ratelimit
              typed_config:
                {LOCAL_RL}
                stat_prefix: by_client
                token_bucket: {{max_tokens: 100, fill_interval: 3600s}}
                {ENFORCED}
                descriptors:
                - entries: [{{key: client, value: alice}}]
                  token_bucket: {{max_tokens: 1, fill_interval: 3600s}}
            "#
        ));
        let route = "match: {prefix: \"/\"}\nroute:\n  cluster: backend\n  rate_limits:\n  - actions: [{request_headers: {header_name: x-client, descriptor_key: client}}]";
        let yaml = bootstrap(&filters, &[route], &log);
        let p = proxy(flavor, &yaml, up.addr()).await;
        let mut statuses = Vec::new();
        for client in ["alice", "alice", "bob", "bob", "carol"] {
            statuses.push(
                get(&p, Request::get("/x").header("x-client", client))
                    .await
                    .status,
            );
        }
        statuses.push(get(&p, Request::get("/anonymous")).await.status);
        assert_eq!(statuses, [200, 429, 200, 200, 200, 200], "{flavor:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_can_disable_a_filter() {
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let up = Scripted::start(vec![]).await;
        let filters = dedent(&format!(
            r#"
            - name: envoy.filters.http.fault
              typed_config:
                {FAULT}
                abort: {{http_status: 503, percentage: {{numerator: 100}}}}
            "#
        ));
        let exempt = "match: {prefix: \"/exempt\"}\nroute: {cluster: backend}\ntyped_per_filter_config:\n  envoy.filters.http.fault:\n    \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n    disabled: true";
        let yaml = bootstrap(
            &filters,
            &[exempt, "match: {prefix: \"/\"}\nroute: {cluster: backend}"],
            &log,
        );
        let p = proxy(flavor, &yaml, up.addr()).await;
        assert_eq!(
            get(&p, Request::get("/exempt")).await.status,
            200,
            "{flavor:?}"
        );
        assert_eq!(
            get(&p, Request::get("/other")).await.status,
            503,
            "{flavor:?}"
        );
    }
}
