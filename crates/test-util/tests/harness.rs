//! Proves the differential harness: the echo backend behaves as documented,
//! and Envoy compared with itself shows no differences while the comparison
//! still sees what matters (status, headers, body, upstream requests).

use std::time::{Duration, Instant};

use ferry_test_util::diff::{self, compare, normalize, Observed, Request, NO_RESPONSE};
use ferry_test_util::{backend, proc, require_envoy, run_scenario_with, Flavor};

type TestResult = anyhow::Result<()>;

#[tokio::test]
async fn backend_echoes_over_http1_and_h2c() -> TestResult {
    let b = backend::start("echo").await;
    for req in [
        Request::new("POST", "/some/path?x=1")
            .header("X-Custom", "v")
            .body("hello"),
        Request::new("POST", "/some/path?x=1")
            .header("X-Custom", "v")
            .body("hello")
            .http2(),
    ] {
        let o = diff::send(b.addr().port(), &req).await?;
        assert_eq!(o.status, 200, "{req}");
        assert_eq!(o.header("x-backend"), Some("echo"));
        let echo = o
            .echo()
            .ok_or_else(|| anyhow::anyhow!("no echo: {}", o.body_text()))?;
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["path"], "/some/path?x=1");
        assert_eq!(echo["body"], "hello");
        assert_eq!(echo["backend"], "echo");
        assert_eq!(echo["headers"]["x-custom"], "v");
        assert_eq!(echo["headers"]["host"], diff::DEFAULT_AUTHORITY);
    }
    assert_eq!(b.requests(), 2);
    assert_eq!(b.connections(), 2);
    Ok(())
}

#[tokio::test]
async fn backend_special_paths() -> TestResult {
    let b = backend::start("special").await;
    let port = b.addr().port();

    let o = diff::send(port, &Request::get("/status/503")).await?;
    assert_eq!(o.status, 503);
    assert!(o.echo().is_some());
    let o = diff::send(port, &Request::get("/status/204").http2()).await?;
    assert_eq!(o.status, 204);
    assert!(o.body.is_empty());

    let o = diff::send(port, &Request::get("/headers?a=1&b=two%20words")).await?;
    assert_eq!(o.header("a"), Some("1"));
    assert_eq!(o.header("b"), Some("two words"));

    let started = Instant::now();
    let o = diff::send(port, &Request::get("/delay/200")).await?;
    assert_eq!(o.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    for req in [Request::get("/reset"), Request::get("/reset").http2()] {
        let err = diff::send(port, &req).await;
        assert!(err.is_err(), "{req} got a response: {err:?}");
    }
    assert_eq!(b.requests(), 6);
    Ok(())
}

#[test]
fn compare_reports_every_kind_of_difference() {
    let mut a = Observed {
        status: 200,
        body: b"x".to_vec(),
        ..Observed::default()
    };
    a.headers.insert("server".into(), vec!["envoy".into()]);
    a.upstream_requests.insert("backend".into(), 1);
    assert!(compare(&a, &a.clone()).is_empty());

    let mut b = a.clone();
    b.status = 503;
    b.headers.insert("server".into(), vec!["other".into()]);
    b.headers.insert("extra".into(), vec!["1".into()]);
    b.body = b"y".to_vec();
    b.upstream_requests.insert("backend".into(), 2);
    let d = compare(&a, &b);
    assert_eq!(d.len(), 5, "{d:#?}");
    assert!(d[0].starts_with("status:"), "{d:#?}");
    assert!(d.iter().any(|l| l.contains("header extra: left=(absent)")));
}

#[test]
fn normalize_masks_what_legitimately_differs() {
    let echo = |id: &str, xff: &str| {
        serde_json::json!({"method": "GET", "path": "/", "body": "", "backend": "b",
            "headers": {"x-request-id": id, "x-forwarded-for": xff,
                        "x-envoy-expected-rq-timeout-ms": "15000"}})
        .to_string()
        .into_bytes()
    };
    let observed = |id: &str, date: &str, ust: &str, xff: &str| {
        let mut o = Observed {
            status: 200,
            body: echo(id, xff),
            ..Observed::default()
        };
        o.headers.insert("date".into(), vec![date.into()]);
        o.headers.insert("x-request-id".into(), vec![id.into()]);
        o.headers
            .insert("x-envoy-upstream-service-time".into(), vec![ust.into()]);
        o
    };
    let mut a = observed("aaa", "Mon", "1", "10.0.0.1:1234");
    let mut b = observed("bbb", "Tue", "7", "10.0.0.1:999");
    normalize(&mut a);
    normalize(&mut b);
    assert_eq!(compare(&a, &b), Vec::<String>::new());
    assert!(!a.headers.contains_key("date"));
    assert_eq!(
        a.header("x-envoy-upstream-service-time"),
        Some(diff::MASKED)
    );

    // What must agree still differs after normalizing.
    let mut c = observed("ccc", "Mon", "1", "10.0.0.2");
    normalize(&mut c);
    assert_eq!(compare(&a, &c).len(), 1);
}

const SCENARIO: &str = r#"
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 0.0.0.0, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {path: "/direct"}
                direct_response: {status: 200, body: {inline_string: "direct answer"}}
              - match: {prefix: "/old"}
                redirect: {path_redirect: "/new", response_code: MOVED_PERMANENTLY}
              - match: {prefix: "/app"}
                route: {cluster: backend}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http_protocol_options: {}}
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: backend.internal, port_value: 80}}}
"#;

#[tokio::test]
async fn envoy_against_itself_shows_no_differences() -> TestResult {
    if !require_envoy() {
        return Ok(());
    }
    let mut requests = Vec::new();
    for http2 in [false, true] {
        let with = |r: Request| if http2 { r.http2() } else { r };
        requests.push(with(Request::get("/direct")));
        requests.push(with(Request::get("/nowhere")));
        requests.push(with(Request::get("/app/x?q=1").header("x-test", "1")));
        requests.push(with(Request::new("POST", "/app/post").body("payload")));
        requests.push(with(Request::get("/app/status/503")));
        requests.push(with(Request::get("/old/path")));
    }
    let report = run_scenario_with(
        Flavor::Envoy,
        Flavor::Envoy,
        SCENARIO,
        &requests,
        &["backend"],
    )
    .await?;
    assert_eq!(report.differences, Vec::<String>::new());

    // The scenario exercised what it claims to: check the left side's view.
    for (i, (o, _)) in report.observed.iter().enumerate() {
        let req = &requests[i];
        let upstream = o.upstream_requests.get("backend").copied();
        match req.path.as_str() {
            "/direct" => {
                assert_eq!((o.status, o.body_text().as_str()), (200, "direct answer"));
                assert_eq!(upstream, None);
            }
            "/nowhere" => assert_eq!((o.status, upstream), (404, None), "{req}"),
            "/old/path" => {
                assert_eq!(o.status, 301, "{req}");
                assert_eq!(o.header("location"), Some("http://ferry.test/new"));
            }
            path => {
                let expected = if path.contains("503") { 503 } else { 200 };
                assert_eq!(o.status, expected, "{req}: {}", o.body_text());
                assert_eq!(upstream, Some(1), "{req}");
                assert_eq!(o.header("server"), Some("envoy"));
                assert_eq!(
                    o.header("x-envoy-upstream-service-time"),
                    Some(diff::MASKED)
                );
                let echo = o.echo().ok_or_else(|| anyhow::anyhow!("{req}: no echo"))?;
                assert_eq!(echo["path"], path);
                assert_eq!(echo["headers"]["x-request-id"], diff::MASKED);
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn proxy_start_failure_quotes_the_log() -> TestResult {
    if !require_envoy() {
        return Ok(());
    }
    let bad = "static_resources:\n  clusters:\n  - name: x\n    type: NOT_A_TYPE\n";
    let rewritten = ferry_test_util::rewrite_bootstrap(bad, &Default::default())?;
    let err = proc::start_envoy(&rewritten.yaml)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("envoy started on a bad bootstrap"))?;
    let text = format!("{err:#}");
    assert!(text.contains("exited before it was ready"), "{text}");
    assert!(text.contains("NOT_A_TYPE"), "{text}");
    Ok(())
}

#[tokio::test]
async fn a_dead_listener_is_no_response() -> TestResult {
    let port = ferry_test_util::free_port();
    let err = diff::send(port, &Request::get("/")).await;
    assert!(err.is_err());
    assert_eq!(NO_RESPONSE, 0);
    Ok(())
}
