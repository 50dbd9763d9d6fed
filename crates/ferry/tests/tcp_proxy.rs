//! `envoy.filters.network.tcp_proxy` through ferry: bytes both ways between a
//! downstream connection and a TCP echo server, and `weighted_clusters`.

use ferry_test_util::{rewrite_bootstrap, start_ferry};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one exchange may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// A TCP echo server on 127.0.0.1:0 that counts the connections it accepted.
struct Echo {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
}

async fn echo_server() -> Echo {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"));
    let connections = Arc::new(AtomicU64::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Echo { addr, connections }
}

fn listener(tcp_proxy: &str) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: tcp_listener
    address: {{socket_address: {{address: 0.0.0.0, port_value: 10000}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          {tcp_proxy}
  clusters:
  - name: first
    type: STATIC
    load_assignment:
      cluster_name: first
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}}}
  - name: second
    type: STATIC
    load_assignment:
      cluster_name: second
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 2}}}}}}
"#
    )
}

async fn ferry(tcp_proxy: &str, first: SocketAddr, second: SocketAddr) -> ferry_test_util::Proxy {
    let mut map = BTreeMap::new();
    map.insert("first".to_string(), first);
    map.insert("second".to_string(), second);
    let rw = rewrite_bootstrap(&listener(tcp_proxy), &map).unwrap_or_else(|e| panic!("{e:#}"));
    start_ferry(&rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Writes `msg` and reads exactly as many bytes back.
async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    let exchange = async {
        s.write_all(msg).await?;
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).await?;
        std::io::Result::Ok(back)
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("echo timed out"))
        .unwrap_or_else(|e| panic!("echo: {e}"))
}

/// Sends `msg` on a new connection, half-closes, and reads the echo to EOF.
async fn one_shot(port: u16, msg: &[u8]) -> Vec<u8> {
    let exchange = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(msg).await?;
        s.shutdown().await?;
        let mut back = Vec::new();
        s.read_to_end(&mut back).await?;
        std::io::Result::Ok(back)
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("one-shot echo timed out"))
        .unwrap_or_else(|e| panic!("one-shot echo: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_proxy_echoes_several_writes_both_ways() {
    let echo = echo_server().await;
    let unused = echo_server().await;
    let proxy = ferry("cluster: first", echo.addr, unused.addr).await;
    let port = proxy.listener_port().unwrap_or_default();

    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    for i in 0..5 {
        let msg = format!("write {i}: {}\n", "x".repeat(i * 1000));
        let back = round_trip(&mut s, msg.as_bytes()).await;
        assert_eq!(back, msg.as_bytes(), "write {i}");
    }
    // A payload bigger than any one buffer arrives whole and in order.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(&mut s, &big).await, big);

    // Half-close: the echo server sees EOF, finishes, and ferry closes downstream.
    assert_eq!(one_shot(port, b"last words").await, b"last words");
    // At least our two; the readiness probe of start_ferry may add one more.
    assert!(echo.connections.load(Ordering::SeqCst) >= 2);
    assert_eq!(unused.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_clusters_100_0_send_every_connection_to_the_first() {
    let first = echo_server().await;
    let second = echo_server().await;
    let proxy = ferry(
        "weighted_clusters: {clusters: [{name: first, weight: 100}, {name: second, weight: 0}]}",
        first.addr,
        second.addr,
    )
    .await;
    let port = proxy.listener_port().unwrap_or_default();
    for i in 0..20 {
        let msg = format!("connection {i}");
        assert_eq!(one_shot(port, msg.as_bytes()).await, msg.as_bytes());
    }
    // The readiness probe of start_ferry may have added one connection.
    assert!(first.connections.load(Ordering::SeqCst) >= 20);
    assert_eq!(second.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connect_failure_closes_the_downstream_connection() {
    let closed: SocketAddr = format!("127.0.0.1:{}", ferry_test_util::free_port())
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let unused = echo_server().await;
    let proxy = ferry("cluster: first", closed, unused.addr).await;
    let port = proxy.listener_port().unwrap_or_default();
    let exchange = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        // The write may race the close; only the read's outcome matters.
        let _ = s.write_all(b"anyone there?").await;
        let mut back = Vec::new();
        match s.read_to_end(&mut back).await {
            Ok(_) => std::io::Result::Ok(back),
            // A reset is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(back),
            Err(e) => Err(e),
        }
    };
    let back = tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("downstream was not closed after the connect failure"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(back.is_empty(), "{back:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_a_quiet_connection_but_not_a_busy_one() {
    let echo = echo_server().await;
    let unused = echo_server().await;
    let proxy = ferry(
        "cluster: first\n          idle_timeout: 0.5s",
        echo.addr,
        unused.addr,
    )
    .await;
    let port = proxy.listener_port().unwrap_or_default();
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    // Traffic keeps it open past several idle periods.
    for i in 0..6 {
        let msg = format!("tick {i}");
        assert_eq!(round_trip(&mut s, msg.as_bytes()).await, msg.as_bytes());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Then silence: ferry closes it (EOF), without the client closing anything.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("idle connection was not closed"))
        .unwrap_or(0);
    assert_eq!(n, 0);
}
