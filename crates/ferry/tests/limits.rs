//! HCM limits and timeouts, and an upstream that dies mid-response, through a running
//! ferry with real sockets.

use ferry_test_util::bootstrap::HcmBootstrap;
use ferry_test_util::diff::send;
use ferry_test_util::{backend, rewrite_bootstrap, start_ferry, Request};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);

fn bootstrap(hcm_extra: &str) -> String {
    HcmBootstrap::new()
        .hcm(hcm_extra)
        .cluster("backend", "")
        .yaml()
}

async fn ferry(hcm_extra: &str, backend: SocketAddr) -> ferry_test_util::Proxy {
    let mut map = BTreeMap::new();
    map.insert("backend".to_string(), backend);
    let rw = rewrite_bootstrap(&bootstrap(hcm_extra), &map).unwrap_or_else(|e| panic!("{e:#}"));
    start_ferry(&rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn port(p: &ferry_test_util::Proxy) -> u16 {
    p.listener_port().unwrap_or_else(|| panic!("no listener"))
}

/// Sends raw bytes and reads until ferry closes the connection; panics if it has not
/// closed by the deadline.
async fn closed_exchange(port: u16, bytes: &[u8]) -> String {
    let x = ferry_test_util::raw::exchange(port, bytes)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        x.closed,
        "the connection was not closed; received:\n{}",
        x.text
    );
    x.text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_headers_get_431() {
    let be = backend::start("limits").await;
    let proxy = ferry(
        "          common_http_protocol_options: { max_headers_count: 10 }",
        be.addr(),
    )
    .await;
    let mut req = Request::get("/few");
    for i in 0..5 {
        req = req.header(&format!("x-h{i}"), "v");
    }
    let o = send(port(&proxy), &req)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(o.status, 200);
    let mut req = Request::get("/many");
    for i in 0..20 {
        req = req.header(&format!("x-h{i}"), "v");
    }
    let o = send(port(&proxy), &req)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(o.status, 431);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_answers_408_to_a_slow_body() {
    let be = backend::start("slow").await;
    let proxy = ferry("          request_timeout: 0.3s", be.addr()).await;
    // Promise 100 bytes, send 5, then stall.
    let reply = closed_exchange(
        port(&proxy),
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nhello",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.ends_with("request timeout"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_idle_timeout() {
    let be = backend::start("idle").await;
    let proxy = ferry(
        "          common_http_protocol_options: { idle_timeout: 0.3s }",
        be.addr(),
    )
    .await;
    // The response arrives, then, with no further request, ferry closes the connection.
    let reply = closed_exchange(port(&proxy), b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"path\":\"/one\""), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connection_duration_closes_gracefully() {
    let be = backend::start("dur").await;
    let proxy = ferry(
        "          common_http_protocol_options: { max_connection_duration: 0.3s }",
        be.addr(),
    )
    .await;
    let reply = closed_exchange(port(&proxy), b"GET /d HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

/// A raw upstream: reads a request, writes `reply` whatever it was, then closes the
/// connection — or, with `stall`, keeps it open reading whatever comes.
async fn scripted_upstream(reply: &'static [u8], stall: bool) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply).await;
                while stall && matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// A backend that answers headers and part of the body, then closes (985 bytes early).
async fn dies_mid_response() -> SocketAddr {
    scripted_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly part of it",
        false,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset_after_headers_resets_the_downstream_and_ferry_keeps_serving() {
    let dying = dies_mid_response().await;
    let proxy = ferry("", dying).await;
    let reply = closed_exchange(port(&proxy), b"GET /partial HTTP/1.1\r\nHost: a\r\n\r\n").await;
    // Headers were already forwarded: the status stands, the body is cut short and the
    // connection closed (Envoy resets the stream; HTTP/1.1 has only the close).
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(body.len() < 1000, "{reply}");
    // The process still serves new connections.
    let reply = closed_exchange(
        port(&proxy),
        b"GET /again HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bootstraps_load_like_yaml() {
    let be = backend::start("json").await;
    let mut map = BTreeMap::new();
    map.insert("backend".to_string(), be.addr());
    let rw = rewrite_bootstrap(&bootstrap(""), &map).unwrap_or_else(|e| panic!("{e:#}"));
    let value: serde_json::Value = serde_yaml::from_str(&rw.yaml).unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("ferry-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("bootstrap.json");
    std::fs::write(&path, value.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A JSON syntax error names the format and position.
    std::fs::write(&path, "{\"static_resources\": ").unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Json syntax"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_after_idle_timeout() {
    use http_body_util::BodyExt;
    let be = backend::start("h2idle").await;
    let proxy = ferry(
        "          common_http_protocol_options: { idle_timeout: 0.3s }",
        be.addr(),
    )
    .await;
    let stream = TcpStream::connect(("127.0.0.1", port(&proxy)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let conn = tokio::spawn(conn);
    let req = http::Request::get("http://h2.test/h2")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let resp = send
        .send_request(req)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await;
    // No more streams: ferry sends GOAWAY and the connection ends on its own.
    let ended = tokio::time::timeout(DEADLINE, conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection was not closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_that_never_opens_a_stream_is_closed_after_idle_timeout() {
    let be = backend::start("h2silent").await;
    let proxy = ferry(
        "          common_http_protocol_options: { idle_timeout: 0.3s }",
        be.addr(),
    )
    .await;
    let stream = TcpStream::connect(("127.0.0.1", port(&proxy)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_send, conn) =
        hyper::client::conn::http2::handshake::<_, _, http_body_util::Empty<bytes::Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ended = tokio::time::timeout(DEADLINE, conn).await;
    assert!(ended.is_ok(), "the silent HTTP/2 connection was not closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_closes_the_connection() {
    let be = backend::start("clte").await;
    let proxy = ferry("", be.addr()).await;
    let reply = closed_exchange(port(&proxy), b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(
        !reply.contains("/smuggled"),
        "a request after the conflict was served: {reply}"
    );
    assert_eq!(be.requests(), 0);
}

/// `per_connection_buffer_limit_bytes` far below the body size, on the listeners and on
/// HTTP/1.1 and HTTP/2 clusters: a 1 MiB body still streams through whole, each way,
/// over HTTP/1.1, h2c and tcp_proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_larger_than_the_buffer_limits_stream_through() {
    let b = backend::start("limited").await;
    let yaml = r#"
static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    per_connection_buffer_limit_bytes: 4096
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: main
              domains: ["*"]
              routes:
              - match: { prefix: "/h2" }
                route: { cluster: h2 }
              - match: { prefix: "/" }
                route: { cluster: h1 }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - name: tcp
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    per_connection_buffer_limit_bytes: 1024
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: h1
  clusters:
  - name: h1
    per_connection_buffer_limit_bytes: 1024
    load_assignment:
      cluster_name: h1
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } }
  - name: h2
    per_connection_buffer_limit_bytes: 1024
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: h2
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
"#;
    let map: BTreeMap<String, SocketAddr> =
        [("h1".to_string(), b.addr()), ("h2".to_string(), b.addr())]
            .into_iter()
            .collect();
    let rw = rewrite_bootstrap(yaml, &map).unwrap_or_else(|e| panic!("{e:#}"));
    let proxy = start_ferry(&rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let ports = proxy.listener_ports();
    let (port, tcp) = (ports[0], ports[1]);
    let body: String = (0..1024 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    for (req, via) in [
        (Request::new("POST", "/h1").body(body.clone()), port),
        (Request::new("POST", "/h1").body(body.clone()).http2(), port),
        (Request::new("POST", "/h2").body(body.clone()), port),
        (Request::new("POST", "/h2").body(body.clone()).http2(), port),
        (Request::new("POST", "/tcp").body(body.clone()), tcp),
    ] {
        let what = format!("{} {} h2={}", req.method, req.path, req.http2);
        let o = send(via, &req)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_eq!(o.status, 200, "{what}: {}\n{}", o.body_text(), proxy.log());
        let echo = o.echo().unwrap_or_else(|| panic!("{what}: no echo"));
        assert!(
            echo["body"].as_str() == Some(body.as_str()),
            "{what}: body changed"
        );
    }
}

/// A backend that answers headers and a first chunk at once, whatever the request, then
/// stalls (reading whatever comes) without ending the response.
async fn answers_then_stalls() -> SocketAddr {
    scripted_upstream(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        true,
    )
    .await
}

/// The route timeout runs from the end of the request (Envoy) — also when the response
/// headers came first: once the upload ends, a stalled response is cut off after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_is_armed_when_a_request_ends_after_the_response_headers() {
    let stalls = answers_then_stalls().await;
    let mut map = BTreeMap::new();
    map.insert("backend".to_string(), stalls);
    let yaml = HcmBootstrap::new()
        .route("match: {prefix: \"/\"}\nroute: {cluster: backend, timeout: 1s}")
        .cluster("backend", "")
        .yaml();
    let rw = rewrite_bootstrap(&yaml, &map).unwrap_or_else(|e| panic!("{e:#}"));
    let mut flavors = vec![ferry_test_util::Flavor::Ferry];
    if ferry_test_util::require_envoy() {
        flavors.push(ferry_test_util::Flavor::Envoy);
    }
    for flavor in flavors {
        let proxy = ferry_test_util::proc::start(flavor, &rw.yaml)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let mut s = TcpStream::connect(("127.0.0.1", port(&proxy)))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        s.write_all(
            b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        // The response starts while the request is still open.
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("hello") {
            match tokio::time::timeout(DEADLINE, s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                other => panic!("{flavor}: no response start: {other:?} {got:?}"),
            }
        }
        // The request ends: the route timeout (1 s) starts, and the stalled response is
        // cut off — no last chunk, the connection closed.
        s.write_all(b"0\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let closed = tokio::time::timeout(DEADLINE, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            closed.is_ok(),
            "{flavor}: still open after the route timeout: {text}"
        );
        assert!(text.starts_with("HTTP/1.1 200"), "{flavor}: {text}");
        assert!(
            !text.ends_with("0\r\n\r\n"),
            "{flavor}: the response was ended: {text}"
        );
    }
}

/// A request with two Host headers goes upstream with one: the one it was routed by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_host_header_reaches_the_upstream_once() {
    let be = backend::start("hosts").await;
    let proxy = ferry("", be.addr()).await;
    let x = ferry_test_util::raw::exchange(
        port(&proxy),
        b"GET /h HTTP/1.1\r\nHost: a.example\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    if x.status_line() == "HTTP/1.1 200 OK" {
        let echo: serde_json::Value = serde_json::from_str(x.after_head())
            .unwrap_or_else(|e| panic!("{e}: {}", x.after_head()));
        assert_eq!(echo["headers"]["host"], "a.example", "{echo}");
    } else {
        // Refusing the request outright is also safe.
        assert!(
            x.status_line().starts_with("HTTP/1.1 400"),
            "{}",
            x.status_line()
        );
    }
}

/// Over HTTP/2, more headers than `max_headers_count` reset the stream, as in Envoy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_with_too_many_headers_are_reset() {
    let be = backend::start("h2count").await;
    let proxy = ferry(
        "common_http_protocol_options: { max_headers_count: 10 }",
        be.addr(),
    )
    .await;
    let mut few = Request::get("/few").http2();
    let mut many = Request::get("/many").http2();
    for i in 0..4 {
        few = few.header(&format!("x-h{i}"), "v");
    }
    for i in 0..12 {
        many = many.header(&format!("x-h{i}"), "v");
    }
    let ok = send(port(&proxy), &few)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(ok.status, 200);
    let reset = send(port(&proxy), &many).await;
    assert!(reset.is_err(), "{reset:?}");
    assert_eq!(be.requests(), 1);
}
