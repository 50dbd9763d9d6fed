//! TCP health checks: connect, write `send`, and wait for every `receive` block in
//! order; with no `receive`, a successful connect is enough (and the connection closes).

use super::session::Failure;
use super::Verdict;
use ferry_config::health_check::TcpHealthCheck;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One host's TCP checker, with the connection kept between checks (`reuse_connection`).
pub(crate) struct TcpProbe {
    config: TcpHealthCheck,
    addr: SocketAddr,
    reuse: bool,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

/// Whether `blocks` are all found in `data`, in order, not necessarily adjacent
/// (Envoy's `TcpHealthCheckMatcher`).
pub(crate) fn contains_in_order(blocks: &[Vec<u8>], data: &[u8]) -> bool {
    let mut from = 0;
    for b in blocks {
        if b.is_empty() {
            continue;
        }
        let Some(i) = data
            .get(from..)
            .and_then(|rest| rest.windows(b.len()).position(|w| w == b.as_slice()))
        else {
            return false;
        };
        from += i + b.len();
    }
    true
}

/// Opens a health check connection (not counted as cluster traffic).
pub(crate) async fn connect(addr: SocketAddr) -> Result<TcpStream, std::io::Error> {
    let s = TcpStream::connect(addr).await?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

impl TcpProbe {
    pub(crate) fn new(config: TcpHealthCheck, addr: SocketAddr, reuse: bool) -> TcpProbe {
        TcpProbe {
            config,
            addr,
            reuse,
            conn: None,
            buf: Vec::new(),
        }
    }

    /// Drops the connection (after a timeout).
    pub(crate) fn reset(&mut self) {
        self.conn = None;
        self.buf.clear();
    }

    pub(crate) async fn check(&mut self) -> Verdict {
        let network = Verdict::failed(Failure::Network);
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => match connect(self.addr).await {
                Ok(c) => c,
                Err(_) => return network,
            },
        };
        if self.config.receive.is_empty() {
            // Connect-only (or send-only) check: connecting is the test; then close.
            if !self.config.send.is_empty() {
                let _ = conn.write_all(&self.config.send).await;
            }
            return Verdict::Healthy { degraded: false };
        }
        if !self.config.send.is_empty() && conn.write_all(&self.config.send).await.is_err() {
            self.buf.clear();
            return network;
        }
        let mut chunk = [0u8; 4096];
        loop {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    self.buf.clear();
                    return network;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
            if contains_in_order(&self.config.receive, &self.buf) {
                self.buf.clear();
                if self.reuse {
                    self.conn = Some(conn);
                }
                return Verdict::Healthy { degraded: false };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzzy_in_order_matching() {
        let b = |s: &str| s.as_bytes().to_vec();
        assert!(contains_in_order(&[b("PO"), b("NG")], b"xxPOyyNGzz"));
        assert!(!contains_in_order(&[b("NG"), b("PO")], b"xxPOyyNGzz"));
        assert!(!contains_in_order(&[b("PONG")], b"PON"));
        assert!(contains_in_order(&[], b""));
    }
}
