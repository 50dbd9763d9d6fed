//! Listeners replaced and removed alone on a running server (as LDS does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A listener called `name` on `port` answering every request with `body`.
fn listener(name: &str, port: u16, body: &str) -> ferry_config::listener::Listener {
    let action = format!("direct_response: {{status: 200, body: {{inline_string: {body}}}}}");
    crate::testing::hcm_bootstrap(name, port, &action, "[]").listeners[0].clone()
}

/// Sends one request on `c` and returns the response body ("" when the connection
/// was closed instead).
async fn get(c: &mut tokio::net::TcpStream) -> String {
    let _ = c.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut chunk = [0u8; 1024];
        let n = match tokio::time::timeout_at(deadline, c.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0,
            Err(_) => panic!("no answer in time: {}", String::from_utf8_lossy(&buf)),
        };
        if n == 0 {
            return String::new();
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return body[..len].to_string();
            }
        }
    }
}

/// A drained connection closes: at once if idle, or — when a request raced the drain
/// signal — after answering it (with `body`, from the runtime it was accepted with).
async fn drained(c: &mut tokio::net::TcpStream, body: &str) {
    let first = get(c).await;
    assert!(first.is_empty() || first == body, "{first:?}");
    assert_eq!(get(c).await, "", "the connection stays open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_replaced_and_removed_alone() {
    let yaml = "static_resources: {}";
    let loaded = match crate::load(yaml, ferry_config::Format::Yaml) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let server = Server::start(loaded, ServerOptions::default())
        .await
        .unwrap();
    server
        .add_or_update_listener(listener("l", 0, "one"))
        .unwrap();
    server
        .add_or_update_listener(listener("other", 0, "other"))
        .unwrap();
    let addr_of = |name: &str| {
        server
            .bound()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
            .unwrap()
    };
    let addr = addr_of("l");
    let other = addr_of("other");
    let mut old = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(get(&mut old).await, "one");
    let mut kept = tokio::net::TcpStream::connect(other).await.unwrap();
    assert_eq!(get(&mut kept).await, "other");

    // In place (same address): new connections get the new chains; the old
    // connection, idle, is closed gracefully; the other listener is untouched.
    server
        .add_or_update_listener(listener("l", 0, "two"))
        .unwrap();
    assert_eq!(addr_of("l"), addr);
    let mut new = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(get(&mut new).await, "two");
    drained(&mut old, "one").await;
    assert_eq!(get(&mut kept).await, "other");

    // Removed: it stops accepting, its connections close; the other goes on.
    assert!(server.remove_listener("l"));
    assert!(!server.remove_listener("l"));
    drained(&mut new, "two").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(get(&mut kept).await, "other");
    let lm = &server._manager_stats.1;
    assert_eq!(lm.listener_added.value(), 2);
    assert_eq!(lm.listener_modified.value(), 1);
    assert_eq!(lm.listener_removed.value(), 1);
    assert_eq!(lm.total_listeners_active.value(), 1);
    assert_eq!(server.bound().len(), 1);
}
