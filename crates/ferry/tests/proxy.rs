//! Integration tests of `ferry proxy` with real sockets, real backends and real clients
//! (hyper in-process, curl for HTTP/1.1 and h2c).

use ferry_test_util::diff::send;
use ferry_test_util::{backend, rewrite_bootstrap, start_ferry, Request};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const SEED: &str = include_str!("../../../../shared/fixtures/seed-front-proxy-v2.yaml");

async fn seed_with(backend: SocketAddr) -> ferry_test_util::Proxy {
    let mut map = BTreeMap::new();
    map.insert("local_service".to_string(), backend);
    let rw = rewrite_bootstrap(SEED, &map).unwrap_or_else(|e| panic!("{e:#}"));
    start_ferry(&rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn port(p: &ferry_test_util::Proxy) -> u16 {
    p.listener_port().unwrap_or_else(|| panic!("no listener"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_v2_config_proxies_service_to_backend() {
    let be = backend::start("seed").await;
    let proxy = seed_with(be.addr()).await;
    let o = send(port(&proxy), &Request::get("/service/hello"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(o.status, 200, "{}", o.body_text());
    assert_eq!(o.header("x-backend"), Some("seed"));
    assert_eq!(o.header("server"), Some("envoy"));
    assert!(o.header("x-envoy-upstream-service-time").is_some());
    let echo = o.echo().unwrap_or_else(|| panic!("no echo"));
    assert_eq!(echo["path"], "/service/hello");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "http");
    assert_eq!(echo["headers"]["x-envoy-expected-rq-timeout-ms"], "15000");
    assert!(echo["headers"]["x-request-id"]
        .as_str()
        .is_some_and(|s| s.len() == 36));
    // No route: 404 with Envoy's empty body.
    let o = send(port(&proxy), &Request::get("/other"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(o.status, 404);
    assert!(o.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http1_and_h2c_prior_knowledge() {
    let be = backend::start("curl").await;
    let proxy = seed_with(be.addr()).await;
    let url = format!("http://127.0.0.1:{}/service/curl", port(&proxy));
    for extra in [&["--http1.1"][..], &["--http2-prior-knowledge"][..]] {
        let out = Command::new("curl")
            .args(["-s", "-i", "--max-time", "10"])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap_or_else(|e| panic!("curl: {e} (scripts/install-test-deps.sh installs it)"));
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap_or_default();
        if extra[0] == "--http1.1" {
            assert!(first.starts_with("HTTP/1.1 200"), "{text}");
        } else {
            assert!(first.starts_with("HTTP/2 200"), "{text}");
        }
        assert!(text.contains("x-backend: curl"), "{text}");
        assert!(text.contains("\"path\":\"/service/curl\""), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_upstream_connection() {
    let be = backend::start("ka").await;
    let proxy = seed_with(be.addr()).await;
    for _ in 0..50 {
        let o = send(port(&proxy), &Request::get("/service/ka"))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(o.status, 200);
    }
    assert_eq!(be.requests(), 50);
    assert_eq!(
        be.connections(),
        1,
        "upstream HTTP/1.1 connection should be reused"
    );
}

/// Raw bytes in, raw bytes out: what the codec answers to bad input.
async fn raw(port: u16, bytes: &[u8]) -> ferry_test_util::raw::Exchange {
    ferry_test_util::raw::exchange(port, bytes)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_and_close_and_the_proxy_keeps_serving() {
    let be = backend::start("bad").await;
    let proxy = seed_with(be.addr()).await;
    let p = port(&proxy);
    let cases: &[(&str, &[u8], &str)] = &[
        ("bad request line", b"GARBAGE\r\n\r\n", "HTTP/1.1 400"),
        ("invalid header name", b"GET /service HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", "HTTP/1.1 400"),
        (
            "content-length and transfer-encoding",
            b"POST /service HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 400",
        ),
        ("oversized chunk", b"POST /service HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n", "HTTP/1.1 400"),
    ];
    for (name, bytes, want) in cases {
        let reply = raw(p, bytes).await;
        assert!(reply.text.starts_with(want), "{name}: got {reply:?}");
        assert!(reply.closed, "{name}: the connection was not closed");
    }
    let big = format!(
        "GET /service HTTP/1.1\r\nHost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let reply = raw(p, big.as_bytes()).await;
    assert!(
        reply.text.starts_with("HTTP/1.1 431"),
        "oversized headers: got {reply:?}"
    );
    let o = send(p, &Request::get("/service/still-up"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(o.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_get_envoys_local_replies() {
    let be = backend::start("fail").await;
    let proxy = seed_with(be.addr()).await;
    let p = port(&proxy);
    // Reset before headers: 503 UC.
    let o = send(p, &Request::get("/service/reset"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(o.status, 503);
    assert!(
        o.body_text()
            .starts_with("upstream connect error or disconnect/reset before headers"),
        "{}",
        o.body_text()
    );
    // Connect failure: point the cluster at a closed port.
    let closed: SocketAddr = format!("127.0.0.1:{}", ferry_test_util::free_port())
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy2 = seed_with(closed).await;
    let o = send(port(&proxy2), &Request::get("/service"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(o.status, 503);
    assert!(
        o.body_text().contains("remote connection failure"),
        "{}",
        o.body_text()
    );
    // The first proxy is still serving.
    let o = send(p, &Request::get("/service/ok"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(o.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_lets_an_in_flight_request_finish() {
    let be = backend::start("drain").await;
    let proxy = seed_with(be.addr()).await;
    let p = port(&proxy);
    let pid = proxy.pid();
    let inflight = tokio::spawn(async move { send(p, &Request::get("/service/delay/1500")).await });
    // Wait until the backend has the request, then ask ferry to stop.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while be.requests() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "request never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    let o = inflight
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        o.status, 200,
        "in-flight request must complete during drain"
    );
    // New connections are refused once draining.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", p))
            .await
            .is_err()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener still accepting after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_idle_keep_alive_connections() {
    let be = backend::start("idle").await;
    let proxy = seed_with(be.addr()).await;
    let p = port(&proxy);
    let pid = proxy.pid();
    // A keep-alive connection that has finished its request and sits idle.
    let closed = tokio::task::spawn_blocking(move || {
        let mut s =
            std::net::TcpStream::connect(("127.0.0.1", p)).unwrap_or_else(|e| panic!("{e}"));
        s.set_read_timeout(Some(Duration::from_secs(20))).ok();
        s.write_all(b"GET /service/ka HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = Vec::new();
        // Read the response (content-length framed), then wait for the close.
        loop {
            match s.read(&mut buf) {
                Ok(0) => return (got, true),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&got).contains("\"path\":\"/service/ka\"") {
                        let _ = Command::new("kill")
                            .args(["-TERM", &pid.to_string()])
                            .status();
                    }
                }
                Err(_) => return (got, false),
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(String::from_utf8_lossy(&closed.0).starts_with("HTTP/1.1 200"));
    assert!(
        closed.1,
        "the idle keep-alive connection was not closed by the drain"
    );
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_follow_the_cpus_available_to_the_process() {
    // Under `taskset -c 0` only one CPU is available, whatever the host has.
    let has_taskset = Command::new("taskset")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(has_taskset, "taskset (util-linux) is needed");
    let be = backend::start("cpu").await;
    let mut map = BTreeMap::new();
    map.insert("local_service".to_string(), be.addr());
    let rw = rewrite_bootstrap(SEED, &map).unwrap_or_else(|e| panic!("{e:#}"));
    let dir = std::env::temp_dir().join(format!("ferry-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("seed.yaml");
    std::fs::write(&path, &rw.yaml).unwrap_or_else(|e| panic!("{e}"));
    for (args, want) in [(vec![], 1u64), (vec!["--concurrency", "3"], 3)] {
        let mut child = Command::new("taskset")
            .args([
                "-c",
                "0",
                env!("CARGO_BIN_EXE_ferry"),
                "proxy",
                "-l",
                "warn",
                "-c",
            ])
            .arg(&path)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let info = loop {
            match ferry_test_util::proc::admin_get(rw.admin_port, "/server_info").await {
                Ok((200, body)) => break body,
                _ => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "admin never answered"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        let v: serde_json::Value =
            serde_json::from_str(&info).unwrap_or_else(|e| panic!("{e}: {info}"));
        assert_eq!(v["command_line_options"]["concurrency"], want, "{info}");
    }
}

#[test]
fn demo_once_proxies_through_the_seed_configuration() {
    // The README's first command, as a smoke run on free ports. The first request goes
    // out as soon as the listener opens: the STRICT_DNS cluster must be warm by then.
    let ports: Vec<String> = (0..3)
        .map(|_| ferry_test_util::free_port().to_string())
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "demo",
            "--once",
            "--port",
            &ports[0],
            "--admin-port",
            &ports[1],
            "--backend-port",
            &ports[2],
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("GET /service -> 200 OK hello from the ferry demo backend"),
        "{stdout}"
    );
}
