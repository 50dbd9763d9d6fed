//! Raw bytes to a proxy and whatever comes back: for requests no HTTP client would
//! send (malformed heads, conflicting framing, pipelines).

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long an exchange waits for the peer to close.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// What came back from [`exchange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Every byte received, as text.
    pub text: String,
    /// Whether the peer closed the connection within [`EXCHANGE_TIMEOUT`].
    pub closed: bool,
}

impl Exchange {
    /// The first line (the status line of the first response).
    pub fn status_line(&self) -> &str {
        self.text.lines().next().unwrap_or_default()
    }

    /// Everything after the first response's head.
    pub fn after_head(&self) -> &str {
        self.text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }
}

/// Connects to 127.0.0.1:`port`, writes `bytes`, and reads until the peer closes (or
/// [`EXCHANGE_TIMEOUT`] passes).
pub async fn exchange(port: u16, bytes: &[u8]) -> anyhow::Result<Exchange> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(bytes).await?;
    let mut out = Vec::new();
    let closed = tokio::time::timeout(EXCHANGE_TIMEOUT, s.read_to_end(&mut out))
        .await
        .is_ok();
    Ok(Exchange {
        text: String::from_utf8_lossy(&out).into_owned(),
        closed,
    })
}
