//! WebSocket through ferry: an HCM with `upgrade_configs: [{upgrade_type: websocket}]`
//! splices the upgraded connection to a real WebSocket echo backend; without
//! `upgrade_configs` the upgrade is refused as Envoy refuses it.

use ferry_test_util::bootstrap::HcmBootstrap;
use ferry_test_util::{rewrite_bootstrap, start_envoy, start_ferry};
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// How long one WebSocket exchange may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// A bootstrap with one HCM routing `/ws` to the cluster `ws`; `upgrades` is
/// spliced in as the HCM's `upgrade_configs` (empty: no such field).
fn bootstrap(upgrades: &str) -> String {
    HcmBootstrap::new()
        .listener_name("ws_listener")
        .hcm(upgrades)
        .route("match: {prefix: \"/ws\"}\nroute: {cluster: ws}")
        .cluster("ws", "")
        .yaml()
}

/// A WebSocket echo server on 127.0.0.1:0: every text or binary message comes back.
async fn ws_echo_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        if ws.send(msg).await.is_err() {
                            return;
                        }
                    } else if msg.is_close() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn rewrite(upgrades: &str, backend: SocketAddr) -> String {
    let mut map = BTreeMap::new();
    map.insert("ws".to_string(), backend);
    rewrite_bootstrap(&bootstrap(upgrades), &map)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_are_echoed_through_an_upgrade_enabled_hcm() {
    let backend = ws_echo_backend().await;
    let yaml = rewrite("upgrade_configs: [{upgrade_type: websocket}]", backend);
    let proxy = start_ferry(&yaml).await.unwrap_or_else(|e| panic!("{e:#}"));
    let port = proxy
        .listener_port()
        .unwrap_or_else(|| panic!("no listener"));
    let url = format!("ws://127.0.0.1:{port}/ws/echo");
    let (mut ws, resp) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(&url))
        .await
        .unwrap_or_else(|_| panic!("handshake timed out; ferry log:\n{}", proxy.log()))
        .unwrap_or_else(|e| panic!("handshake through ferry failed: {e}\n{}", proxy.log()));
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        let sent = format!("message {i}");
        tokio::time::timeout(DEADLINE, ws.send(Message::text(sent.clone())))
            .await
            .unwrap_or_else(|_| panic!("send {i} timed out"))
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
        let got = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .unwrap_or_else(|_| panic!("echo {i} timed out"))
            .unwrap_or_else(|| panic!("connection closed before echo {i}"))
            .unwrap_or_else(|e| panic!("echo {i}: {e}"));
        assert_eq!(got, Message::text(sent));
    }
    tokio::time::timeout(DEADLINE, ws.close(None))
        .await
        .unwrap_or_else(|_| panic!("close timed out"))
        .unwrap_or_else(|e| panic!("close: {e}"));
}

/// A raw WebSocket upgrade request; returns the response head (up to the blank line).
async fn raw_upgrade(port: u16) -> String {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(
            b"GET /ws/echo HTTP/1.1\r\nHost: ferry.test\r\nConnection: Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        std::io::Result::Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("upgrade request timed out"))
        .unwrap_or_else(|e| panic!("upgrade request: {e}"))
}

fn status_of(head: &str) -> &str {
    head.split_whitespace().nth(1).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_without_upgrade_configs_is_refused_with_403() {
    let backend = ws_echo_backend().await;
    let yaml = rewrite("", backend);
    let ferry = start_ferry(&yaml).await.unwrap_or_else(|e| panic!("{e:#}"));
    let head = raw_upgrade(ferry.listener_port().unwrap_or_default()).await;
    assert_eq!(status_of(&head), "403", "ferry answered:\n{head}");
    // The client library sees a refused handshake, not a WebSocket.
    let url = format!(
        "ws://127.0.0.1:{}/ws/echo",
        ferry.listener_port().unwrap_or_default()
    );
    let refused = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(&url))
        .await
        .unwrap_or_else(|_| panic!("handshake timed out"));
    assert!(refused.is_err(), "the upgrade must not succeed");

    if ferry_test_util::require_envoy() {
        let yaml = rewrite("", backend);
        let envoy = start_envoy(&yaml).await.unwrap_or_else(|e| panic!("{e:#}"));
        let envoy_head = raw_upgrade(envoy.listener_port().unwrap_or_default()).await;
        assert_eq!(
            status_of(&head),
            status_of(&envoy_head),
            "ferry:\n{head}\nenvoy:\n{envoy_head}"
        );
    }
}
