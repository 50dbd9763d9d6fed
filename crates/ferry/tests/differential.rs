//! Differential tests: real Envoy and ferry run the same bootstrap; a client sends the
//! same requests to both and must see the same status, headers (less dates and
//! generated ids/timings) and body. A difference fails unless docs/envoy-compat.md
//! lists it with its reason.

use ferry_test_util::{require_envoy, run_scenario, Request};

const ROUTING: &str = r#"
static_resources:
  listeners:
  - name: main
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          codec_type: AUTO
          route_config:
            name: local
            response_headers_to_add:
            - header: { key: x-rc, value: "route-config" }
            virtual_hosts:
            - name: exact
              domains: ["exact.test", "exact.test:*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "exact vhost\n" } }
            - name: wildcard
              domains: ["*.wild.test"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 202, body: { inline_string: "suffix wildcard\n" } }
            - name: main
              domains: ["*"]
              response_headers_to_add:
              - header: { key: x-vh, value: "vhost" }
              routes:
              - match: { path: "/direct" }
                direct_response: { status: 200, body: { inline_string: "hello direct\n" } }
              - match: { path: "/empty" }
                direct_response: { status: 204 }
              - match: { prefix: "/redirect" }
                redirect: { host_redirect: "example.com", path_redirect: "/moved", response_code: FOUND }
              - match: { prefix: "/https" }
                redirect: { https_redirect: true }
              - match: { prefix: "/strip" }
                redirect: { prefix_rewrite: "/new", strip_query: true }
              - match: { prefix: "/api/", headers: [ { name: x-version, string_match: { exact: "2" } } ] }
                route: { cluster: backend, prefix_rewrite: "/v2/" }
              - match: { prefix: "/api/" }
                route: { cluster: backend, prefix_rewrite: "/v1/" }
                request_headers_to_add:
                - header: { key: x-added, value: "route" }
                - header: { key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" }
                response_headers_to_add:
                - header: { key: x-route, value: "r1" }
              - match: { safe_regex: { regex: "/re/[0-9]+" } }
                route:
                  cluster: backend
                  regex_rewrite: { pattern: { regex: "^/re/([0-9]+)$" }, substitution: "/numbers/\\1" }
              - match: { prefix: "/CaSe", case_sensitive: false }
                direct_response: { status: 200, body: { inline_string: "case insensitive\n" } }
              - match: { prefix: "/q", query_parameters: [ { name: debug, present_match: true } ] }
                direct_response: { status: 200, body: { inline_string: "debug on\n" } }
              - match: { prefix: "/range", headers: [ { name: x-n, range_match: { start: 10, end: 20 } } ] }
                direct_response: { status: 200, body: { inline_string: "in range\n" } }
              - match: { prefix: "/invert", headers: [ { name: x-env, string_match: { exact: prod }, invert_match: true } ] }
                direct_response: { status: 200, body: { inline_string: "not prod\n" } }
              - match: { prefix: "/host" }
                route: { cluster: backend, host_rewrite_literal: "rewritten.test" }
              - match: { prefix: "/nohost" }
                route: { cluster: empty }
              - match: { prefix: "/svc" }
                route: { cluster: backend }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } }
  - name: empty
    type: STATIC
    connect_timeout: 1s
    load_assignment: { cluster_name: empty }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
"#;

fn requests() -> Vec<Request> {
    vec![
        Request::get("/direct"),
        Request::get("/direct").http2(),
        Request::get("/empty"),
        Request::get("/nothing-here").header("host", "unknown.test"),
        Request::get("/anything").header("host", "exact.test"),
        Request::get("/anything").header("host", "exact.test:8080"),
        Request::get("/anything").header("host", "a.wild.test"),
        Request::get("/redirect/x?a=1"),
        Request::get("/https/page?q=1").header("host", "site.test:80"),
        Request::get("/strip/rest?x=y"),
        Request::get("/api/users"),
        Request::get("/api/users").header("x-version", "2"),
        Request::get("/api/xff").header("x-forwarded-for", "10.9.8.7, 10.1.1.1"),
        Request::get("/api/users?x=1").http2(),
        Request::get("/re/123"),
        Request::get("/case/ok"),
        Request::get("/q?debug"),
        Request::get("/q"),
        Request::get("/range").header("x-n", "15"),
        Request::get("/range").header("x-n", "25"),
        Request::get("/invert").header("x-env", "dev"),
        Request::get("/invert").header("x-env", "prod"),
        Request::get("/host/a"),
        Request::get("/nohost"),
        Request::get("/svc/status/503"),
        Request::get("/svc/headers?x-up=1"),
        Request::new("POST", "/svc/post").body("some body bytes"),
        Request::new("POST", "/svc/post").body("h2 body").http2(),
        Request::get("/svc/echo").header("x-request-id", "keep-me"),
        Request::get("/svc/echo").header("x-forwarded-for", "10.0.0.1"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_matches_envoy() {
    if !require_envoy() {
        return;
    }
    let diffs = run_scenario(ROUTING, &requests(), &["backend"])
        .await
        .unwrap_or_else(|e| panic!("scenario failed to run: {e:#}"));
    assert!(
        diffs.is_empty(),
        "ferry differs from Envoy:\n{}",
        diffs.join("\n")
    );
}

const SEED_LIKE: &str = include_str!("../../../../shared/fixtures/seed-front-proxy-v2.yaml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_matches_envoy() {
    if !require_envoy() {
        return;
    }
    // Envoy 1.40 no longer reads v2 names, so both run the v3 equivalent here;
    // tests/proxy.rs runs the v2 file as written through ferry.
    let v3 = SEED_LIKE
        .replace("envoy.http_connection_manager", "envoy.filters.network.http_connection_manager")
        .replace(
            "type.googleapis.com/envoy.config.filter.network.http_connection_manager.v2.HttpConnectionManager",
            "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        )
        .replace("codec_type: auto", "codec_type: AUTO")
        .replace("type: strict_dns", "type: STRICT_DNS")
        .replace("lb_policy: round_robin", "lb_policy: ROUND_ROBIN")
        .replace(
            "- name: envoy.router\n            typed_config: {}",
            "- name: envoy.filters.http.router\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        );
    let reqs = vec![
        Request::get("/service"),
        Request::get("/service/a?b=c").http2(),
        Request::get("/other"),
    ];
    let diffs = run_scenario(&v3, &reqs, &["local_service"])
        .await
        .unwrap_or_else(|e| panic!("scenario failed to run: {e:#}"));
    assert!(
        diffs.is_empty(),
        "ferry differs from Envoy:\n{}",
        diffs.join("\n")
    );
}

const FAILURES: &str = r#"
static_resources:
  listeners:
  - name: main
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: local
            virtual_hosts:
            - name: main
              domains: ["*"]
              routes:
              - match: { prefix: "/uh" }
                route: { cluster: empty }
              - match: { prefix: "/uf" }
                route: { cluster: dead }
              - match: { prefix: "/ut" }
                route: { cluster: backend, timeout: 0.2s }
              - match: { prefix: "/si" }
                route: { cluster: backend, timeout: 0s, idle_timeout: 0.3s }
              - match: { prefix: "/nc404" }
                route: { cluster_header: x-cluster, cluster_not_found_response_code: NOT_FOUND }
              - match: { prefix: "/nc" }
                route: { cluster_header: x-cluster }
              - match: { prefix: "/weighted" }
                route:
                  weighted_clusters:
                    clusters:
                    - name: backend
                      weight: 100
                      request_headers_to_add: [ { header: { key: x-wc, value: "backend" } } ]
                      response_headers_to_add: [ { header: { key: x-wc-resp, value: "wc-resp" } } ]
                    - name: empty
                      weight: 0
              - match: { prefix: "/" }
                route: { cluster: backend }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - name: idle
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: idle
          stream_idle_timeout: 0.3s
          route_config:
            virtual_hosts:
            - name: main
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: backend, timeout: 0s }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } }
  - name: dead
    connect_timeout: 1s
    load_assignment:
      cluster_name: dead
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } }
  - name: empty
    connect_timeout: 1s
    load_assignment: { cluster_name: empty }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_match_envoy() {
    if !require_envoy() {
        return;
    }
    let reqs = vec![
        Request::get("/uh"),
        Request::get("/uf"),
        Request::get("/uf").http2(),
        Request::get("/ut/delay/2000"),
        // A body with a Content-Length: the route timeout starts when it has arrived.
        Request::new("POST", "/ut/delay/2000").body("hello"),
        Request::new("POST", "/ut/delay/2000")
            .body("hello over h2")
            .http2(),
        Request::get("/si/delay/2000"),
        Request::get("/idle/delay/2000").listener(1),
        Request::get("/uc/reset"),
        Request::get("/nc"),
        Request::get("/nc").header("x-cluster", "nope"),
        Request::get("/nc").header("x-cluster", "backend"),
        Request::get("/nc404"),
        Request::get("/weighted"),
        Request::get("/big").header("x-big", &"a".repeat(70 * 1024)),
        // Over HTTP/2, Envoy resets such a stream while the h2 codec answers 431
        // (docs/envoy-compat.md).
        Request::get("/svc/status/500"),
    ];
    let diffs = run_scenario(FAILURES, &reqs, &["backend"])
        .await
        .unwrap_or_else(|e| panic!("scenario failed to run: {e:#}"));
    assert!(
        diffs.is_empty(),
        "ferry differs from Envoy:\n{}",
        diffs.join("\n")
    );
}

const EDGE_HEADERS: &str = r#"
static_resources:
  listeners:
  - name: edge
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          use_remote_address: true
          server_name: ferry-edge
          via: edge-proxy
          always_set_request_id_in_response: true
          route_config:
            virtual_hosts:
            - name: main
              domains: ["*"]
              routes:
              - match: { prefix: "/auto" }
                route: { cluster: backend, auto_host_rewrite: true }
              - match: { prefix: "/" }
                route: { cluster: backend }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - name: passthrough
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inner
          server_header_transformation: PASS_THROUGH
          generate_request_id: false
          route_config:
            virtual_hosts:
            - name: main
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: backend }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_headers_match_envoy() {
    if !require_envoy() {
        return;
    }
    let reqs = vec![
        Request::get("/svc/echo"),
        Request::get("/svc/echo")
            .header("x-forwarded-for", "10.0.0.9")
            .header("x-request-id", "external"),
        Request::get("/svc/echo")
            .header("x-envoy-retry-on", "5xx")
            .header("x-envoy-original-path", "/spoofed")
            .header("x-envoy-internal", "true")
            .header("x-envoy-custom", "kept"),
        Request::get("/svc/echo")
            .header("via", "1.1 client-proxy")
            .http2(),
        Request::get("/svc/headers?server=backend-server"),
        Request::get("/auto/x"),
        Request::get("/nowhere/status/404"),
        Request::get("/svc/echo").listener(1),
        Request::get("/svc/headers?server=backend-server").listener(1),
    ];
    let diffs = run_scenario(EDGE_HEADERS, &reqs, &["backend"])
        .await
        .unwrap_or_else(|e| panic!("scenario failed to run: {e:#}"));
    assert!(
        diffs.is_empty(),
        "ferry differs from Envoy:\n{}",
        diffs.join("\n")
    );
}

/// Raw bytes to a proxy; the status line and body of its answer.
async fn raw_answer(port: u16, bytes: &[u8]) -> (String, String) {
    let x = ferry_test_util::raw::exchange(port, bytes)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    (x.status_line().to_string(), x.after_head().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http1_is_refused_like_envoy() {
    if !require_envoy() {
        return;
    }
    let be = ferry_test_util::backend::start("backend").await;
    let mut map = std::collections::BTreeMap::new();
    map.insert("backend".to_string(), be.addr());
    let rw = ferry_test_util::rewrite_bootstrap(FAILURES, &map).unwrap_or_else(|e| panic!("{e:#}"));
    let envoy = ferry_test_util::start_envoy(&rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let rw2 =
        ferry_test_util::rewrite_bootstrap(FAILURES, &map).unwrap_or_else(|e| panic!("{e:#}"));
    let ferry = ferry_test_util::start_ferry(&rw2.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let big = format!(
        "GET /svc HTTP/1.1\r\nHost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let many: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
    let many = format!("GET /svc HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad request line", b"GARBAGE\r\n\r\n".to_vec()),
        ("invalid header name", b"GET /svc HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n".to_vec()),
        (
            "content-length and transfer-encoding",
            b"POST /svc HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        ("oversized headers", big.into_bytes()),
        ("too many headers", many.into_bytes()),
    ];
    let mut diffs = Vec::new();
    for (name, bytes) in cases {
        let (ep, fp) = (
            envoy.listener_port().unwrap_or_default(),
            ferry.listener_port().unwrap_or_default(),
        );
        let e = raw_answer(ep, &bytes).await;
        let f = raw_answer(fp, &bytes).await;
        if e != f {
            diffs.push(format!("{name}: envoy={e:?} ferry={f:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "ferry differs from Envoy:\n{}",
        diffs.join("\n")
    );
    // Pipelined, a bad request after a good one: both answer 200, then Envoy's 400 (with
    // its body) once the 200 has gone out, and close.
    let pipelined: &[u8] =
        b"GET /svc/one HTTP/1.1\r\nHost: a\r\n\r\nGET /svc HTTP/1.1\r\nBad Header: x\r\n\r\n";
    for port in [
        envoy.listener_port().unwrap_or_default(),
        ferry.listener_port().unwrap_or_default(),
    ] {
        let (status, rest) = raw_answer(port, pipelined).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "port {port}");
        let refusal = rest
            .find("HTTP/1.1 400 Bad Request\r\n")
            .map(|i| &rest[i..])
            .unwrap_or_else(|| panic!("port {port}: no 400 after the 200: {rest}"));
        assert!(
            refusal.contains("\r\ncontent-length: 11\r\n")
                && refusal.contains("\r\nconnection: close\r\n")
                && refusal.ends_with("\r\n\r\nBad Request"),
            "port {port}: {refusal}"
        );
    }
}

/// `socket_address.ipv4_compat`: a listener on the IPv6 wildcard takes IPv4 connections
/// only when it is set, on Envoy and on ferry (IPv6 connections always).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_compat_decides_whether_an_ipv6_listener_takes_ipv4() {
    use ferry_test_util::free_port;
    let listener = |name: &str, port: u16, compat: bool| {
        format!(
            r#"
  - name: {name}
    address: {{socket_address: {{address: "::", port_value: {port}, ipv4_compat: {compat}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: "/"}}, direct_response: {{status: 200}}}}]
          http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]"#
        )
    };
    for flavor in ferry_test_util::proc::flavors() {
        let (compat, strict) = (free_port(), free_port());
        let yaml = format!(
            "admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\nstatic_resources:\n  listeners:{}{}\n",
            free_port(),
            listener("compat", compat, true),
            listener("strict", strict, false),
        );
        let _proxy = ferry_test_util::proc::start(flavor, &yaml)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let reaches = |host: &'static str, port: u16| async move {
            tokio::net::TcpStream::connect((host, port)).await.is_ok()
        };
        let seen = [
            reaches("127.0.0.1", compat).await,
            reaches("::1", compat).await,
            reaches("127.0.0.1", strict).await,
            reaches("::1", strict).await,
        ];
        assert_eq!(seen, [true, true, false, true], "{flavor}");
    }
}
