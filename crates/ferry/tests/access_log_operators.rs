//! Access log command operators, filters and log reopening: the same bootstrap runs on
//! ferry and real Envoy, the same requests go to both, and the log lines must agree
//! (values that differ by nature — times, ids, ephemeral ports — are compared by shape).

use ferry_test_util::bootstrap::HcmBootstrap;
use ferry_test_util::diff::send;
use ferry_test_util::proc::{admin_post, flavors, start_with};
use ferry_test_util::{backend, Flavor, Request};
use std::path::Path;
use std::time::Duration;

/// Envoy flushes log files every 50 ms in tests; this is far above.
const DEADLINE: Duration = Duration::from_secs(20);

/// The file's lines once its last line satisfies `done`.
async fn lines_until(path: &Path, what: &str, done: impl Fn(&str) -> bool) -> Vec<String> {
    let found =
        ferry_test_util::logs::lines_until(path, DEADLINE, |l| l.last().is_some_and(|l| done(l)))
            .await;
    found.unwrap_or_else(|| {
        panic!(
            "{what}: {} never ended as expected:\n{:#?}",
            path.display(),
            ferry_test_util::logs::lines(path)
        )
    })
}

fn log(path: &Path, format: &str, filter: &str) -> String {
    format!(
        r#"
- name: envoy.access_loggers.file
  {filter}
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: {path}
    log_format:
      text_format_source: {{inline_string: "{format}\n"}}
      formatters:
      - name: envoy.formatter.req_without_query
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery"#,
        path = path.display()
    )
}

/// Operators whose values both proxies must print identically.
const EXACT: &[&str] = &[
    "%REQ(:PATH)%",
    "%RESPONSE_CODE%",
    "%RESPONSE_FLAGS%",
    "%RESPONSE_FLAGS_LONG%",
    "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "%REQ(:PATH):4%",
    "%GRPC_STATUS%",
    "%GRPC_STATUS_NUMBER%",
    "%GRPC_STATUS(SNAKE_STRING)%",
    "%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "%UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%",
    "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%",
    "%ENVIRONMENT(CARGO_PKG_NAME)%",
    "%ENVIRONMENT(CARGO_PKG_NAME):2%",
    "%ENVIRONMENT(FERRY_SURELY_UNSET_VARIABLE)%",
    "%ACCESS_LOG_TYPE%",
    "%VIRTUAL_CLUSTER_NAME%",
    "%DYNAMIC_METADATA(com.example:key)%",
    "%FILTER_STATE(some.key:PLAIN)%",
    "%DOWNSTREAM_PEER_SUBJECT%",
    "%DOWNSTREAM_TLS_VERSION%",
    "%UPSTREAM_TLS_VERSION%",
    "%TRACE_ID%",
    "%UPSTREAM_HOST_NAME_WITHOUT_PORT%",
    "%UPSTREAM_CLUSTER_RAW%",
    "%UPSTREAM_PROTOCOL%",
    "%ROUTE_NAME%",
    "%RESPONSE_TRAILERS_BYTES%",
];

/// Operators compared by shape (digits, hex and times masked).
const SHAPED: &[&str] = &[
    "%UPSTREAM_REMOTE_PORT%",
    "%UPSTREAM_LOCAL_PORT%",
    "%UPSTREAM_CONNECTION_ID%",
    "%DOWNSTREAM_REMOTE_PORT%",
    "%DOWNSTREAM_LOCAL_PORT%",
    "%STREAM_ID%",
    "%UNIQUE_ID%",
    "%START_TIME_LOCAL%",
    "%EMIT_TIME%",
    "%START_TIME(%s.%3f)%",
    "%COMMON_DURATION(DS_RX_BEG:DS_TX_END:ns)%",
    "%COMMON_DURATION(DS_RX_BEG:DS_RX_END:us)%",
    "%COMMON_DURATION(DS_RX_BEG:US_RX_BEG)%",
    "%COMMON_DURATION(DS_TX_BEG:DS_TX_END:us)%",
    "%REQUEST_TX_DURATION%",
    "%REQUEST_HEADERS_BYTES%",
    "%RESPONSE_HEADERS_BYTES%",
];

/// A value with its digits and hex runs replaced, so that only its form is compared.
fn shape(v: &str) -> String {
    let mut out = String::new();
    let mut in_run = false;
    for c in v.chars() {
        if c.is_ascii_hexdigit() {
            if !in_run {
                out.push('#');
            }
            in_run = true;
        } else {
            in_run = false;
            out.push(c);
        }
    }
    out
}

const REQUESTS: usize = 5;

fn requests() -> Vec<Request> {
    vec![
        Request::get("/x?q=1"),
        Request::get("/nope"),
        Request::new("POST", "/x/grpc")
            .header("content-type", "application/grpc")
            .body("abc"),
        // (Without a body: ferry does not read the body of a request it answers locally,
        // so its REQUEST_DURATION stays unset where Envoy's has the body's end.)
        Request::new("POST", "/nope").header("content-type", "application/grpc"),
        Request::get("/rewrite/y?z=2").http2(),
    ]
}

async fn operator_lines(flavor: Flavor, backend: std::net::SocketAddr) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let exact = dir.path().join("exact.log");
    let shaped = dir.path().join("shaped.log");
    let logs = format!(
        "access_log:{}{}",
        log(&exact, &EXACT.join("|"), ""),
        log(&shaped, &SHAPED.join("|"), "")
    );
    let yaml = HcmBootstrap::new()
        .hcm(&logs)
        .route("match: {prefix: \"/x\"}\nroute: {cluster: backend}\nname: to_backend")
        .route("match: {prefix: \"/rewrite\"}\nroute: {cluster: backend, prefix_rewrite: /x}")
        .cluster("backend", "")
        .yaml();
    let proxy = start_with(flavor, &yaml, &[("backend", backend)]).await;
    let port = proxy.listener_port().unwrap_or_default();
    for r in requests() {
        send(port, &r)
            .await
            .unwrap_or_else(|e| panic!("{flavor} {r}: {e:#}"));
    }
    let a = lines_until(&exact, &format!("{flavor} exact"), |_| {
        std::fs::read_to_string(&exact)
            .unwrap_or_default()
            .lines()
            .count()
            >= REQUESTS
    })
    .await;
    let b = lines_until(&shaped, &format!("{flavor} shaped"), |_| {
        std::fs::read_to_string(&shaped)
            .unwrap_or_default()
            .lines()
            .count()
            >= REQUESTS
    })
    .await;
    let b = b.iter().map(|l| shape(l)).collect();
    vec![a, b]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_render_as_envoys() {
    let be = backend::start("logged").await;
    let mut seen: Vec<(Flavor, Vec<Vec<String>>)> = Vec::new();
    for flavor in flavors() {
        let lines = operator_lines(flavor, be.addr()).await;
        eprintln!(
            "{flavor}:\n{}",
            lines
                .iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        seen.push((flavor, lines));
    }
    let (_, ferry) = &seen[0];
    // ferry's own expectations, Envoy or not.
    let first: Vec<&str> = ferry[0][0].split('|').collect();
    assert_eq!(first[0], "/x?q=1", "{first:?}");
    assert_eq!(first[4], "1", "one attempt: {first:?}");
    assert_eq!(first[5], "/x", "{first:?}");
    assert_eq!(first[13], "ferry", "{first:?}");
    assert_eq!(first[14], "fe", "{first:?}");
    if let Some((_, envoy)) = seen.get(1) {
        for (i, (f, e)) in ferry.iter().zip(envoy).enumerate() {
            for (lf, le) in f.iter().zip(e) {
                let names = if i == 0 { EXACT } else { SHAPED };
                let diff: Vec<String> = lf
                    .split('|')
                    .zip(le.split('|'))
                    .zip(names)
                    .filter(|((a, b), _)| a != b)
                    .map(|((a, b), n)| format!("{n}: ferry {a:?}, envoy {b:?}"))
                    .collect();
                assert!(
                    diff.is_empty(),
                    "ferry and Envoy differ:\n{}",
                    diff.join("\n")
                );
            }
        }
    }
}

/// Filters under test, each `or`-ed with a sentinel header so that every log ends with
/// the sentinel request's line (then everything before it has been written).
const FILTERS: &[(&str, &str)] = &[
    ("status", "status_code_filter: {comparison: {op: GE, value: {default_value: 400, runtime_key: k}}}"),
    ("status_eq", "status_code_filter: {comparison: {op: EQ, value: {default_value: 200, runtime_key: k}}}"),
    ("duration", "duration_filter: {comparison: {op: GE, value: {default_value: 60000, runtime_key: k}}}"),
    ("duration_le", "duration_filter: {comparison: {op: LE, value: {default_value: 60000, runtime_key: k}}}"),
    ("not_hc", "not_health_check_filter: {}"),
    ("flag_nr", "response_flag_filter: {flags: [NR]}"),
    ("any_flag", "response_flag_filter: {}"),
    ("runtime_default", "runtime_filter: {runtime_key: k}"),
    ("runtime_half", "runtime_filter: {runtime_key: k, percent_sampled: {numerator: 50}}"),
    ("runtime_all_independent", "runtime_filter: {runtime_key: k, percent_sampled: {numerator: 100}, use_independent_randomness: true}"),
    ("and", "and_filter: {filters: [{status_code_filter: {comparison: {op: EQ, value: {default_value: 200, runtime_key: k}}}}, {header_filter: {header: {name: x-log, present_match: true}}}]}"),
    ("header", "header_filter: {header: {name: x-log, string_match: {exact: please}}}"),
    ("grpc", "grpc_status_filter: {statuses: [UNIMPLEMENTED]}"),
    ("grpc_exclude", "grpc_status_filter: {statuses: [UNKNOWN, OK], exclude: true}"),
    ("log_type", "log_type_filter: {types: [DownstreamEnd]}"),
    ("log_type_exclude", "log_type_filter: {types: [DownstreamEnd], exclude: true}"),
    ("traceable", "traceable_filter: {}"),
];

fn filter_requests() -> Vec<Request> {
    // Fixed request ids, so that the runtime filter's sample is known: the first 8 hex
    // digits mod 10000, then mod 100, against 50 — 0x01 is in, 0x63 (99) is out.
    const IN: &str = "00000001-0000-4000-8000-000000000000";
    const OUT: &str = "00000063-0000-4000-8000-000000000000";
    vec![
        Request::get("/x").header("x-request-id", IN),
        Request::get("/nope").header("x-request-id", OUT),
        Request::get("/x")
            .header("x-log", "please")
            .header("x-request-id", IN),
        Request::get("/x")
            .header("x-log", "other")
            .header("x-request-id", OUT),
        Request::get("/healthz").header("x-request-id", IN),
        Request::new("POST", "/nope")
            .header("content-type", "application/grpc")
            .header("x-request-id", OUT),
    ]
}

async fn filtered_lines(
    flavor: Flavor,
    backend: std::net::SocketAddr,
) -> Vec<(String, Vec<String>)> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut logs = String::from("access_log:");
    for (name, f) in FILTERS {
        let filter = format!(
            "filter: {{or_filter: {{filters: [{{{f}}}, {{header_filter: {{header: {{name: x-sentinel}}}}}}]}}}}"
        );
        logs.push_str(&log(
            &dir.path().join(name),
            "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %REQ(X-LOG)%",
            &filter,
        ));
    }
    let yaml = HcmBootstrap::new()
        .hcm(&logs)
        .route("match: {prefix: \"/x\"}\nroute: {cluster: backend}")
        .cluster("backend", "")
        .yaml()
        // The health check filter before the router.
        .replacen(
            "          http_filters:\n",
            r#"          http_filters:
          - name: envoy.filters.http.health_check
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
              pass_through_mode: false
              headers: [{name: ":path", string_match: {exact: /healthz}}]
"#,
            1,
        );
    let proxy = start_with(flavor, &yaml, &[("backend", backend)]).await;
    let port = proxy.listener_port().unwrap_or_default();
    for r in filter_requests() {
        send(port, &r)
            .await
            .unwrap_or_else(|e| panic!("{flavor} {r}: {e:#}"));
    }
    send(port, &Request::get("/sentinel").header("x-sentinel", "1"))
        .await
        .unwrap_or_else(|e| panic!("{flavor}: {e:#}"));
    let mut out = Vec::new();
    for (name, _) in FILTERS {
        let mut lines = lines_until(&dir.path().join(name), &format!("{flavor} {name}"), |l| {
            l.starts_with("GET /sentinel")
        })
        .await;
        lines.pop();
        out.push((name.to_string(), lines));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_the_lines_envoys_do() {
    let be = backend::start("logged").await;
    let mut seen = Vec::new();
    for flavor in flavors() {
        seen.push((flavor, filtered_lines(flavor, be.addr()).await));
    }
    let ferry = &seen[0].1;
    let get = |name: &str| -> &Vec<String> {
        &ferry
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name}"))
            .1
    };
    assert_eq!(
        get("status"),
        &["GET /nope 404 -", "POST /nope 200 -"][..1],
        "{ferry:#?}"
    );
    assert_eq!(
        get("runtime_half"),
        &["GET /x 200 -", "GET /x 200 please", "GET /healthz 200 -"][..],
        "{ferry:#?}"
    );
    assert!(get("traceable").is_empty(), "{ferry:#?}");
    assert!(get("runtime_default").is_empty(), "{ferry:#?}");
    assert_eq!(get("not_hc").len(), 5, "{ferry:#?}");
    if let Some((_, envoy)) = seen.get(1) {
        for ((name, f), (_, e)) in ferry.iter().zip(envoy) {
            assert_eq!(f, e, "filter {name}: ferry (left) and Envoy (right) differ");
        }
    }
}

/// logrotate's move-then-signal: after the file is renamed, SIGUSR1 or admin
/// `/reopen_logs` makes the proxy write new lines to a new file at the configured path.
async fn check_reopen(flavor: Flavor, backend: std::net::SocketAddr) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("access.log");
    let logs = format!("access_log:{}", log(&path, "%REQ(:PATH)%", ""));
    let yaml = HcmBootstrap::new()
        .hcm(&logs)
        .route("match: {prefix: \"/\"}\nroute: {cluster: backend}")
        .cluster("backend", "")
        .yaml();
    let proxy = start_with(flavor, &yaml, &[("backend", backend)]).await;
    let port = proxy.listener_port().unwrap_or_default();
    let get = |p: &'static str| async move {
        send(port, &Request::get(p))
            .await
            .unwrap_or_else(|e| panic!("{flavor} {p}: {e:#}"));
    };
    get("/one").await;
    lines_until(&path, &format!("{flavor} before"), |l| l == "/one").await;
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap_or_else(|e| panic!("{e}"));
    let (status, _) = admin_post(proxy.admin_port(), "/reopen_logs")
        .await
        .unwrap_or_else(|e| panic!("{flavor}: {e:#}"));
    assert_eq!(status, 200, "{flavor}");
    get("/two").await;
    let lines = lines_until(&path, &format!("{flavor} after /reopen_logs"), |l| {
        l == "/two"
    })
    .await;
    assert_eq!(lines, ["/two"], "{flavor}");
    // The same with SIGUSR1.
    std::fs::rename(&path, dir.path().join("access.log.2")).unwrap_or_else(|e| panic!("{e}"));
    let pid = nix::unistd::Pid::from_raw(proxy.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1)
        .unwrap_or_else(|e| panic!("{e}"));
    // The signal is handled asynchronously: requests until one lands in the new file.
    let found = ferry_test_util::admin::poll(DEADLINE, || async {
        get("/three").await;
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines().any(|l| l == "/three").then_some(())
    })
    .await;
    assert!(
        found.is_some(),
        "{flavor}: nothing written to a new file after SIGUSR1"
    );
    let old = std::fs::read_to_string(&rotated).unwrap_or_default();
    assert_eq!(old.lines().collect::<Vec<_>>(), ["/one"], "{flavor}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_reopen_after_rotation() {
    let be = backend::start("logged").await;
    for flavor in flavors() {
        check_reopen(flavor, be.addr()).await;
    }
}
