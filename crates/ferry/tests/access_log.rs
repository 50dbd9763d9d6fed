//! Access logs of the HCM: Envoy's default text format to a file, a `json_format`
//! to another file, and a `text_format_source` to stdout. The same bootstrap runs
//! on ferry and, when available, on real Envoy, and both must pass the same checks.

use ferry_test_util::bootstrap::HcmBootstrap;
use ferry_test_util::diff::send;
use ferry_test_util::{backend, rewrite_bootstrap, Flavor, Request};
use regex::Regex;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// How long the logs may take to show the lines. Envoy flushes access log files
/// every `file_flush_interval` (10 s by default), so this is well above that.
const DEADLINE: Duration = Duration::from_secs(30);

fn bootstrap(default_log: &Path, json_log: &Path) -> String {
    HcmBootstrap::new()
        .listener_name("logged")
        .hcm(&format!(
            r#"
            access_log:
            - name: envoy.access_loggers.file
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                path: {default_log}
            - name: envoy.access_loggers.file
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                path: {json_log}
                log_format:
                  json_format:
                    code: "%RESPONSE_CODE%"
                    flags: "%RESPONSE_FLAGS%"
                    method: "%REQ(:METHOD)%"
                    path: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"
                    upstream: "%UPSTREAM_CLUSTER%"
                    bytes: "%BYTES_SENT%"
            - name: envoy.access_loggers.stdout
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
                log_format:
                  text_format_source: {{inline_string: "%RESPONSE_CODE% %PROTOCOL%\n"}}"#,
            default_log = default_log.display(),
            json_log = json_log.display(),
        ))
        .route("match: {path: \"/x\"}\nroute: {cluster: backend}")
        .cluster("backend", "")
        .yaml()
}

/// The lines of `path` once it has at least `n`, polled until [`DEADLINE`].
async fn lines_when(path: &Path, n: usize, what: &str) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n && text.ends_with('\n') {
            return lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: wanted {n} lines in {}, have:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the two requests on `flavor` and checks its three access logs.
async fn check(flavor: Flavor, backend: SocketAddr) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let default_log = dir.path().join("default.log");
    let json_log = dir.path().join("json.log");
    let mut map = BTreeMap::new();
    map.insert("backend".to_string(), backend);
    let rw = rewrite_bootstrap(&bootstrap(&default_log, &json_log), &map)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let proxy = ferry_test_util::proc::start(flavor, &rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let port = proxy.listener_port().unwrap_or_default();

    let ok = send(port, &Request::get("/x"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(ok.status, 200, "{flavor}: {}", ok.body_text());
    let nr = send(port, &Request::get("/nope"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(nr.status, 404, "{flavor}");

    // Envoy's default format:
    // [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
    // %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
    // %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
    // "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"
    let lines = lines_when(&default_log, 2, &format!("{flavor} default format")).await;
    let proxied = Regex::new(
        r#"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /x HTTP/1\.1" 200 - 0 [1-9]\d* \d+ \d+ "-" "[^"]*" "[0-9a-f-]{36}" "[^"]*" "127\.0\.0\.1:\d+"$"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let no_route = Regex::new(
        r#"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /nope HTTP/1\.1" 404 NR 0 0 \d+ - "-" "[^"]*" "[0-9a-f-]{36}" "[^"]*" "-"$"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(proxied.is_match(&lines[0]), "{flavor}: {:?}", lines[0]);
    assert!(
        lines[0].ends_with(&format!("\"{backend}\"")),
        "{flavor}: {:?}",
        lines[0]
    );
    assert!(no_route.is_match(&lines[1]), "{flavor}: {:?}", lines[1]);

    let lines = lines_when(&json_log, 2, &format!("{flavor} json format")).await;
    let parse = |line: &str| -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{flavor}: {e}: {line}"))
    };
    let (a, b) = (parse(&lines[0]), parse(&lines[1]));
    assert_eq!(a["code"], 200, "{flavor}: {a}");
    assert_eq!(a["flags"], "-", "{flavor}: {a}");
    assert_eq!(a["method"], "GET", "{flavor}: {a}");
    assert_eq!(a["path"], "/x", "{flavor}: {a}");
    assert_eq!(a["upstream"], "backend", "{flavor}: {a}");
    assert!(
        a["bytes"].as_u64().is_some_and(|n| n > 0),
        "{flavor}: bytes is a positive number: {a}"
    );
    assert_eq!(b["code"], 404, "{flavor}: {b}");
    assert_eq!(b["flags"], "NR", "{flavor}: {b}");
    assert_eq!(b["path"], "/nope", "{flavor}: {b}");
    assert_eq!(b["bytes"], 0, "{flavor}: {b}");

    // The stdout logger writes into the process's captured output.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let log = proxy.log();
        let has = |want: &str| log.lines().any(|l| l == want);
        if has("200 HTTP/1.1") && has("404 HTTP/1.1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{flavor}: stdout access log lines missing from its output:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_json_and_stdout_access_logs_match_envoys_formats() {
    let be = backend::start("logged").await;
    check(Flavor::Ferry, be.addr()).await;
    if ferry_test_util::require_envoy() {
        check(Flavor::Envoy, be.addr()).await;
    }
}

/// Requests refused before they reach the router — by the HTTP/1.1 codec (400, 431) or
/// an HTTP/2 header list over the limit (stream reset) — are logged as Envoy logs them:
/// no method or path, flag DPE (DR for the reset), and the codec's details.
async fn check_refusals(flavor: Flavor) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("refusals.log");
    let yaml = HcmBootstrap::new()
        .hcm(&format!(
            r#"
            max_request_headers_kb: 1
            access_log:
            - name: envoy.access_loggers.file
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                path: {log}
                log_format:
                  text_format_source:
                    inline_string: "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %BYTES_SENT%\n""#,
            log = log.display()
        ))
        .route("match: {prefix: \"/\"}\ndirect_response: {status: 200, body: {inline_string: ok}}")
        .yaml();
    let rw = rewrite_bootstrap(&yaml, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:#}"));
    let proxy = ferry_test_util::proc::start(flavor, &rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let port = proxy.listener_port().unwrap_or_default();
    let big = "a".repeat(2000);
    let cases: [(Vec<u8>, &str); 3] = [
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nBad Header: x\r\n\r\n".to_vec(),
            "HTTP/1.1 200 OK",
        ),
        (
            b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            format!("GET /d HTTP/1.1\r\nHost: x\r\nx-big: {big}\r\n\r\n").into_bytes(),
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
    ];
    for (bytes, status) in cases {
        let x = ferry_test_util::raw::exchange(port, &bytes)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(x.status_line(), status, "{flavor}");
    }
    let h2 = send(port, &Request::get("/e").header("x-big", &big).http2()).await;
    assert!(
        h2.is_err(),
        "{flavor}: the stream is reset, not answered: {h2:?}"
    );

    let lines = lines_when(&log, 5, &format!("{flavor} refusals")).await;
    assert_eq!(
        lines,
        [
            "GET /a HTTP/1.1 200 - direct_response 2",
            "- - HTTP/1.1 400 DPE http1.codec_error 11",
            "- - HTTP/1.1 400 DPE http1.content_length_and_chunked_not_allowed 11",
            "- - HTTP/1.1 431 DPE http1.headers_too_large 31",
            "- - HTTP/2 0 DR http2.header_list_size_too_large 0",
        ],
        "{flavor}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_refusals_are_logged_like_envoys() {
    check_refusals(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        check_refusals(Flavor::Envoy).await;
    }
}
